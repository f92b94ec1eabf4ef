"""Renewal that runs itself: when a unit renews (pure, time passed in) and the loop that does it.

The unit renews at 2/3 of its certificate's lifetime, moved by up to ±5 % of the lifetime: the
jitter comes from the certificate's serial, so every unit of a site enrolled the same day asks
at a different moment, and a reboot does not move the moment. Each renewal makes a new key
(agent/est_client.py) and is authenticated by the current certificate (EST simplereenroll with
TLS client auth). While the endpoint is away the unit retries with exponential backoff and
jitter (tenacity), never giving up; a refusal (revoked, superseded) stops the loop with its
message, since asking again cannot change it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from tenacity import Retrying, retry_if_exception_type, wait_exponential, wait_random

from agent.config import AgentConfig
from agent.est_client import (
    EstError,
    EstUnavailable,
    endpoint,
    finish_install,
    install,
    request_certificate,
)

RENEW_AT = 2 / 3
JITTER = 0.05
"""± this fraction of the lifetime around RENEW_AT."""
MIN_CHECK_S = 60.0
MAX_CHECK_S = 6 * 3600.0
log = logging.getLogger(__name__)


def jitter_of(serial: int) -> float:
    """A stable number in [-1, 1) from the certificate's serial."""
    digest = hashlib.sha256(str(serial).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**63 - 1.0


def renew_at(not_before: datetime, not_after: datetime, jitter: float) -> datetime:
    """When to renew: 2/3 of the lifetime, moved by jitter (in [-1, 1]) times 5 % of it."""
    lifetime = not_after - not_before
    fraction = RENEW_AT + JITTER * max(-1.0, min(1.0, jitter))
    return not_before + lifetime * fraction


def is_due(now: datetime, not_before: datetime, not_after: datetime, jitter: float) -> bool:
    return now >= renew_at(not_before, not_after, jitter)


def seconds_until_check(now: datetime, due: datetime) -> float:
    """How long to sleep before looking again: until due, between 1 minute and 6 hours."""
    wait = (due - now).total_seconds()
    return max(MIN_CHECK_S, min(MAX_CHECK_S, wait))


@dataclass(frozen=True, slots=True)
class UnitTls:
    base_url: str
    site: str
    device: str
    ca: Path
    cert: Path
    key: Path


def unit_tls(config: AgentConfig, server: str | None) -> UnitTls:
    """The unit's TLS files and endpoint from its config; EstError when it has no TLS."""
    if config.broker.tls is None:
        raise EstError("agent.toml has no [broker.tls]: nothing to renew")
    tls = config.broker.tls
    base = endpoint(config.broker.host, server)
    return UnitTls(base, config.site, config.device, tls.ca, tls.cert, tls.key)


def due_for(tls: UnitTls, now: datetime) -> tuple[bool, datetime]:
    cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    due = renew_at(
        cert.not_valid_before_utc, cert.not_valid_after_utc, jitter_of(cert.serial_number)
    )
    return now >= due, due


def renew(tls: UnitTls) -> x509.Certificate:
    """One renewal: new key, simplereenroll with the current pair, install the new pair."""
    finish_install(tls.key, tls.cert)
    new = request_certificate(
        tls.base_url, tls.site, tls.device, tls.ca, client=(tls.cert, tls.key)
    )
    install(new, tls.key, tls.cert)
    return new.cert


def renew_with_retries(
    tls: UnitTls,
    *,
    sleep: Callable[[float], None] = time.sleep,
    initial_s: float = 30.0,
    max_s: float = 3600.0,
) -> x509.Certificate:
    """renew(), retried with backoff while the endpoint is unreachable; refusals propagate."""
    retrying = Retrying(
        retry=retry_if_exception_type(EstUnavailable),
        wait=wait_exponential(multiplier=initial_s, max=max_s) + wait_random(0, initial_s),
        sleep=sleep,
        reraise=True,
        before_sleep=lambda state: log.warning(
            "renewal: endpoint unreachable (%s); retrying",
            state.outcome and state.outcome.exception(),
        ),
    )
    return retrying(renew, tls)


def run_forever(
    tls: UnitTls,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    on_renewed: Callable[[x509.Certificate], None] = lambda cert: None,
) -> None:
    """Check, sleep until due, renew (retrying), repeat; EstError (a refusal) ends it."""
    while True:
        due, when = due_for(tls, clock())
        if due:
            cert = renew_with_retries(tls, sleep=sleep)
            log.info("renewed: serial %s until %s", cert.serial_number, cert.not_valid_after_utc)
            on_renewed(cert)
            continue
        sleep(seconds_until_check(clock(), when))
