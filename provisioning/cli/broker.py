"""`jaga-provision broker-config`: Mosquitto's files, from the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provisioning.broker_config import BrokerOptions, write_broker_config
from provisioning.cli.shared import DirOption, open_registry, reports_mistakes, say


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
