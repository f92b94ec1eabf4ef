"""`jaga-provision broker-config`: Mosquitto's files, from the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from broker.mosquitto import KICK_IDENTITY
from provisioning.broker_config import BrokerOptions, write_broker_config
from provisioning.cli.shared import DirOption, open_registry, reports_mistakes, say
from provisioning.errors import ProvisioningError
from provisioning.kick import kick, revoked_usernames


@reports_mistakes
def broker_config(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Folder to write into (default <registry>/broker)."),
    ] = None,
    install_dir: Annotated[
        Path | None,
        typer.Option(
            help="Absolute folder these files will live in on the broker machine "
            "(default: the --out folder)."
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="TLS listener port.")] = 8883,
    bind: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    persistence_dir: Annotated[
        Path, typer.Option(help="Where Mosquitto keeps its queues across restarts.")
    ] = Path("/var/lib/mosquitto/"),
    host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HOST",
            help="Name or address units use for the broker; repeat. Default: localhost, "
            "127.0.0.1; every site's broker host is added.",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            help="Mosquitto's `user`: who it becomes when started as root (default: mosquitto)."
        ),
    ] = None,
    renew_server_cert: Annotated[
        bool, typer.Option(help="Make a new broker server certificate even if one exists.")
    ] = False,
    dynsec_plugin: Annotated[
        Path | None,
        typer.Option(
            help="mosquitto_dynamic_security.so on the broker machine (default: found under "
            "/usr/lib/*/ here, else Debian amd64's path)."
        ),
    ] = None,
    dir: DirOption = None,
) -> None:
    """Write mosquitto.conf, the ACL, dynsec.json and the TLS files they need, from the registry."""
    files = write_broker_config(
        open_registry(ctx, dir),
        BrokerOptions(
            out_dir=out,
            install_dir=install_dir,
            port=port,
            bind=bind,
            persistence_dir=persistence_dir,
            hosts=tuple(host or ()),
            run_as_user=user,
            renew_server_cert=renew_server_cert,
            dynsec_plugin=dynsec_plugin,
        ),
    )
    if files.server_cert_made:
        say("made the broker server certificate (broker/server.crt)")
    say(f"wrote {files.config}")
    say(f"wrote {files.acl} ({len(files.identities)} identities)")
    say(f"wrote {files.dynsec} (no $share/ subscriptions for units and operators)")
    say(f"wrote ca.crt, crl.pem, server.crt, server.key in {files.out_dir}")
    for warning in files.warnings:
        say(f"warning: {warning}")
    say(
        "next: Mosquitto reads these as user mosquitto: chown -R mosquitto: the folder on the "
        "broker machine; start with mosquitto -c mosquitto.conf, or reload it (SIGHUP); restart "
        "it instead when a unit or an operator was added (dynsec.json is read only at start)"
    )


@reports_mistakes
def broker_kick(
    ctx: typer.Context,
    broker: Annotated[
        str, typer.Option(metavar="HOST[:PORT]", help="The broker to act on (port 8883 if none).")
    ] = "localhost",
    dir: DirOption = None,
) -> None:
    """Cut the live sessions of every revoked unit and identity now (dynamic-security plugin).

    Run it right after `device revoke` / `identity revoke` where the broker is reachable, and on
    the server from a timer (every 30 s) against its copy of the registry: it is idempotent."""
    host, _, port_text = broker.rpartition(":") if ":" in broker else (broker, "", "8883")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ProvisioningError(f"--broker {broker!r}: give HOST or HOST:PORT (port 1-65535)")
    registry = open_registry(ctx, dir)
    names = revoked_usernames(registry)
    if not names and not registry.identity_path("collector", KICK_IDENTITY, ".crt").exists():
        say("nothing revoked: no session to cut")
        return
    result = kick(registry, host, int(port_text), names)
    if result.lifted:
        say(
            f"gave back the session of {len(result.lifted)} client(s) whose certificate is "
            f"live again: {', '.join(result.lifted)}"
        )
    for error in result.errors:
        say(f"warning: the broker answered {error}")
    if not names:
        say("nothing revoked: no session to cut")
        return
    say(f"cut and muted {len(names)} revoked client(s): {', '.join(names)}")
    say(
        "they are refused at connect once the broker has the new CRL: broker-config, copy, "
        "reload (SIGHUP)"
    )
