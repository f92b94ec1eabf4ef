"""`jaga-provision identity ...`: the collector's, operators' and witnesses' certificates and
sites."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from broker.home_assistant.topics import DEFAULT_PREFIX as HA_PREFIX
from broker.mosquitto import HA_PREFIX_PATTERN
from provisioning.ca import DEFAULT_CERT_DAYS, CertificateAuthority, RevokeReason
from provisioning.cli.shared import DirOption, open_registry, reports_mistakes, say
from provisioning.errors import ProvisioningError
from provisioning.identities import operator_sites, revoke_identity

identity_app = typer.Typer(
    help="Certificates for the collector, control-room operators, independent witnesses and "
    "Home Assistant."
)


class Role(StrEnum):
    collector = "collector"
    operator = "operator"
    witness = "witness"
    home_assistant = "home-assistant"


@identity_app.command("add")
@reports_mistakes
def identity_add(
    ctx: typer.Context,
    role: Annotated[Role, typer.Argument(help="collector, operator, witness or home-assistant.")],
    name: Annotated[str, typer.Argument(help="Name, e.g. main or budi (letters, digits, '-').")],
    site: Annotated[
        list[str] | None,
        typer.Option(
            help="Operator: a site they may read and command; witness: a site whose units' "
            "events it reads; Home Assistant: a site whose states it reads and whose panels "
            "it commands. Repeat for more."
        ),
    ] = None,
    all_sites: Annotated[
        bool,
        typer.Option(
            help="Operator or Home Assistant: every site (a central control room). A Home "
            "Assistant made before identities named their sites keeps every site."
        ),
    ] = False,
    prefix: Annotated[
        str | None,
        typer.Option(
            help="Home Assistant: its discovery prefix, as [home_assistant] prefix in "
            "collector.toml (default homeassistant)."
        ),
    ] = None,
    days: Annotated[
        int, typer.Option(help="How long the certificate is valid.")
    ] = DEFAULT_CERT_DAYS,
    dir: DirOption = None,
) -> None:
    """Make a key and certificate for a collector, an operator, a witness (and its sites) or a
    Home Assistant (it reads what the collector publishes for it, writes its panels' codes).

    A witness's certificate only lets it read its sites' events and publish its cosignatures;
    the key it signs them with is its own (`jaga-witness init`), never made here."""
    registry = open_registry(ctx, dir)
    registry.identity_path(role.value, name, ".crt")  # a bad name is the first thing to say
    if prefix is not None and role is not Role.home_assistant:
        raise ProvisioningError("--prefix is for a Home Assistant identity")
    if prefix is not None and not HA_PREFIX_PATTERN.fullmatch(prefix):
        raise ProvisioningError(
            f"--prefix {prefix!r}: HA's discovery prefix is letters, digits, '_' or '-'"
        )
    sites: list[str] = []
    if role is Role.operator:
        sites = operator_sites(registry, site or [], every_site=all_sites)
    elif role is Role.witness:
        if all_sites or not site:
            raise ProvisioningError(
                "a witness reads named sites only: give --site <site> (repeat it for more)"
            )
        sites = operator_sites(registry, site, every_site=False)
    elif role is Role.home_assistant:
        if not site and not all_sites:
            raise ProvisioningError(
                "a Home Assistant sees and commands named sites: give --site <site> (repeat "
                "it for more), or --all-sites"
            )
        sites = operator_sites(registry, site or [], every_site=all_sites)
    elif site or all_sites:
        raise ProvisioningError(
            "--site and --all-sites are for operators, witnesses and Home Assistant; a "
            "collector takes its sites from collector.toml (mqtt.sites)"
        )
    issued = CertificateAuthority(registry).issue_service(role.value, name, days=days)
    say(f"{role.value} {name!r}: certificate CN {role.value}:{name}")
    say(f"wrote {issued.cert_path}")
    say(f"wrote {issued.key_path} (mode 0600)")
    if role is Role.operator:
        path = registry.save_operator_sites(name, sites)
        say(f"wrote {path} (sites: {', '.join(sites)})")
    elif role is Role.witness:
        path = registry.save_witness_sites(name, sites)
        say(f"wrote {path} (sites: {', '.join(sites)})")
    elif role is Role.home_assistant:
        prefix = prefix or HA_PREFIX
        path = registry.save_home_assistant(name, prefix, sites)
        say(f"wrote {path} (discovery prefix: {prefix}; sites: {', '.join(sites)})")
    say(
        "next: jaga-provision broker-config, so the broker's ACL knows it; then restart the "
        "broker (systemctl restart mosquitto: a reload does not re-read dynsec.json)"
    )


@identity_app.command("sites")
@reports_mistakes
def identity_sites(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The operator's name.")],
    site: Annotated[
        list[str] | None, typer.Option(help="A site they may read and command. Repeat for more.")
    ] = None,
    all_sites: Annotated[bool, typer.Option(help="Every site.")] = False,
    dir: DirOption = None,
) -> None:
    """Set the sites an operator may read and command (replaces the list)."""
    registry = open_registry(ctx, dir)
    if registry.identity_certificate("operator", name) is None:
        raise ProvisioningError(
            f"no operator {name!r}: make one with `jaga-provision identity add operator {name}`"
        )
    path = registry.save_operator_sites(
        name, operator_sites(registry, site or [], every_site=all_sites)
    )
    say(f"wrote {path}")
    say("next: jaga-provision broker-config, then reload the broker (systemctl reload mosquitto)")


@identity_app.command("witness-key")
@reports_mistakes
def identity_witness_key(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The witness's name, e.g. bawaslu-bangka-barat.")],
    public_key: Annotated[
        Path, typer.Argument(help="witness.pub, as `jaga-witness init` wrote it (PEM).")
    ],
    dir: DirOption = None,
) -> None:
    """Keep the public key a witness handed over, so evidence exports carry it beside its
    cosignatures (auditors check it against the fingerprint the witness published)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    from kernel.files import Durability, atomic_write
    from protocol.cosignature import fingerprint

    registry = open_registry(ctx, dir)
    if registry.identity_certificate("witness", name) is None:
        raise ProvisioningError(
            f"no witness {name!r}: make one with `jaga-provision identity add witness {name} "
            "--site <site>`"
        )
    try:
        key = load_pem_public_key(public_key.read_bytes())
    except OSError as exc:
        raise ProvisioningError(f"{public_key}: {exc.strerror or exc}") from None
    except ValueError:
        raise ProvisioningError(f"{public_key}: not a PEM public key (witness.pub)") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ProvisioningError(f"{public_key}: a witness key is Ed25519 (`jaga-witness init`)")
    path = registry.identity_path("witness", name, ".pub")
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    atomic_write(path, pem, durability=Durability.FSYNC_FILE_AND_DIR, mode=0o644)
    say(f"wrote {path}: witness {name!r}, key fingerprint {fingerprint(key)}")
    say("compare that fingerprint with the one the witness published before trusting it")


@identity_app.command("revoke")
@reports_mistakes
def identity_revoke(
    ctx: typer.Context,
    role: Annotated[Role, typer.Argument(help="collector, operator or witness.")],
    name: Annotated[str, typer.Argument(help="The identity's name, e.g. budi.")],
    reason: Annotated[
        RevokeReason, typer.Option(help="Why: written into the CRL.")
    ] = RevokeReason.UNSPECIFIED,
    dir: DirOption = None,
) -> None:
    """Revoke a collector, operator or witness: its certificate goes into the CRL, the broker
    refuses it."""
    registry = open_registry(ctx, dir)
    serials, folder = revoke_identity(registry, role.value, name, reason)
    listed = ", ".join(str(s) for s in serials) or "none logged"
    say(f"revoked {role.value} {name!r}: serial(s) {listed}")
    say(f"wrote {registry.crl_path}; its files moved to {folder}")
    say(
        "next: jaga-provision broker-config (copies the CRL, drops it from the ACL), then reload "
        "the broker: systemctl reload mosquitto (SIGHUP). Until then it still gets in."
    )
