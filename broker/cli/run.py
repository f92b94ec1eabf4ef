"""`jaga-collector run`: the collector service, and the guard-post page beside it."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from broker.cli.shared import DEFAULT_CONFIG, ConfigOpt, fail, key_store, load
from broker.config import CollectorConfig

if TYPE_CHECKING:
    from broker.collector.service import Collector
    from broker.web.server import WebServer


def run(
    config: ConfigOpt = DEFAULT_CONFIG,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the collector until stopped (SIGTERM or Ctrl-C)."""
    from broker.collector.service import Collector
    from service.logs import setup_logging
    from service.units import supervise_collector

    setup_logging(log_level)
    cfg = load(config)
    try:
        collector = Collector(cfg, key_store(cfg))
    except OSError as exc:  # a TLS file or the data folder named in the config
        raise fail(f"{exc.strerror or exc}: {exc.filename or ''} (check collector.toml)") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    web = _start_web(cfg, collector)
    collector.start()
    try:
        # systemd: READY=1 once subscribed, STATUS= and health-gated WATCHDOG=1, STOPPING=1.
        with supervise_collector(collector, stop) as unit:
            collector.run(stop, on_tick=unit.tick)
    finally:
        if web is not None:
            web.stop()
        collector.close()


def _start_web(cfg: CollectorConfig, collector: Collector) -> WebServer | None:
    """The guard-post page on its own thread, fed by the collector's LiveState."""
    if cfg.web is None:
        return None
    from broker.evidence_events import EvidenceEvents
    from broker.influx_reader import InfluxReader
    from broker.web.registry import preload
    from broker.web.server import WebError, serve

    preload(collector.live, cfg.registry_dir)
    ql = InfluxReader(cfg.influx.influxql_url, cfg.influx.influxql_database, cfg.influx.token)
    try:
        return serve(
            collector.live,
            cfg.web,
            data_dir=cfg.data_dir,
            ack=collector.ack_from_web,
            operate=collector.operate,
            evidence=collector.evidence,
            events=EvidenceEvents(ql),
            live_view=collector.live_view,
            zone_of=lambda site: cfg.alerts.site(site).timezone,  # times as `02:29 WIB`
            ca_fingerprint=_ca_fingerprint(cfg.registry_dir / "ca" / "ca.crt"),
        )
    except WebError as exc:
        raise fail(str(exc)) from None


def _ca_fingerprint(path: Path) -> str | None:
    """The site CA's fingerprint for the page's footer; None (no footer) if it cannot be read."""
    from cryptography import x509

    from broker.export_trust import ca_fingerprint

    try:
        return ca_fingerprint(x509.load_pem_x509_certificate(path.read_bytes()))
    except (OSError, ValueError):
        return None
