"""Writes batches of points to InfluxDB through influxdb-client's v2 write API, with retries.

The v2 write API is answered by InfluxDB 1.8+ (bucket "db/rp"), 2.x and 3 Core alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeAlias

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from urllib3.exceptions import HTTPError

from broker.config import InfluxConfig

log = logging.getLogger("jaga.collector.influx")


Record: TypeAlias = Point | str
"""What the collector writes: a Point, or a line of line protocol made straight (events)."""


class StoreUnavailable(Exception):
    """InfluxDB did not take the batch; the caller keeps the messages unacknowledged."""


class WriteRefused(Exception):
    """InfluxDB refused the batch as malformed (4xx): retrying will not help."""


class _Transient(Exception):
    pass


class InfluxWriter:
    """One synchronous write per batch; the caller acknowledges MQTT only after it returns."""

    def __init__(self, config: InfluxConfig, *, attempts: int = 3) -> None:
        self.config = config
        self._client = InfluxDBClient(
            url=config.url,
            token=config.token,
            org=config.org,
            timeout=config.timeout_ms,
            enable_gzip=False,
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._attempts = attempts
        self.written = 0

    def close(self) -> None:
        self._client.close()

    def write(self, points: Sequence[Record] | bytes, count: int | None = None) -> None:
        """Write points (or line protocol bytes); raise StoreUnavailable or WriteRefused."""
        if not points:
            return
        body = points if isinstance(points, bytes) else to_lines(points)
        if not body:
            return
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=0.2, max=2),
                retry=retry_if_exception_type(_Transient),
                reraise=False,
            ):
                with attempt:
                    self._write_once(body)
        except RetryError as exc:
            raise StoreUnavailable(str(exc.last_attempt.exception())) from None
        self.written += count if count is not None else len(points)

    def _write_once(self, body: bytes) -> None:
        try:  # one body of line protocol, nanosecond timestamps (every point we make is in ns)
            self._write.write(
                bucket=self.config.bucket,
                org=self.config.org,
                record=body,
                write_precision=WritePrecision.NS,
            )
        except ApiException as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                raise WriteRefused(
                    f"InfluxDB refused the batch ({exc.status}): {exc.body}"
                ) from None
            raise _Transient(f"InfluxDB answered {exc.status}: {exc.reason}") from None
        except (HTTPError, OSError) as exc:
            raise _Transient(f"InfluxDB unreachable at {self.config.url}: {exc}") from None

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:
            return False


def to_lines(points: Sequence[Record]) -> bytes:
    """Line protocol of points, one per line: what is written, and what the spool keeps.

    The same bytes influxdb-client would send for these points (it too joins each point's
    `to_line_protocol()` with newlines), made once here instead of record by record in it.
    """
    return "\n".join(
        line for p in points if (line := p if isinstance(p, str) else p.to_line_protocol())
    ).encode()
