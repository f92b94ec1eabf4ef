"""Whatever a unit may send, if the model takes it, InfluxDB stores it: every model instance
that validates makes line protocol (broker.points, as the collector writes it) that a real
InfluxDB accepts. Integers are drawn up to each field's own bounds (read from the model, so a
bound loosened past int64 fails here) and past them; floats include NaN and infinities."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import annotated_types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import points
from broker.alerts.alert_points import alert_point
from broker.alerts.lifecycle import Change, ChangeKind
from devstack.influx import InfluxDB, QueryError
from protocol import models
from protocol.alerting import Alert
from protocol.models import Event, Heartbeat, Status, WireError, WireModel
from protocol.signing import canonical_bytes, event_hash
from tests.support import say
from tests.unit.test_hostile_models import SAMPLES

pytestmark = pytest.mark.integration

DB = "bounds"
NOW = 1_795_000_000_000_000_000
RUNS: Counter[str] = Counter()
UNBOUNDED = 2**70
"""Where a strategy reaches for a side the model leaves open: far past int64."""


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    db = InfluxDB(tmp_path_factory.mktemp("influx")).start()
    db.create_database(DB)
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    detail = ", ".join(f"{name} {n}" for name, n in sorted(RUNS.items()))
    say(request, f"influx bounds: {detail}")


def bounds(model: type[WireModel], name: str) -> tuple[float | None, float | None]:
    """(lowest, highest) value the model allows in the field; None: that side is open."""
    low: float | None = None
    high: float | None = None
    for m in model.model_fields[name].metadata:
        if isinstance(m, annotated_types.Ge):
            low = float(m.ge) if isinstance(m.ge, float) else m.ge  # type: ignore[assignment]
        elif isinstance(m, annotated_types.Gt):
            low = m.gt + 1  # type: ignore[operator]
        elif isinstance(m, annotated_types.Le):
            high = m.le  # type: ignore[assignment]
        elif isinstance(m, annotated_types.Lt):
            high = m.lt - 1  # type: ignore[operator]
    return low, high


def numbers(
    model: type[WireModel], name: str, sample: Any, *, hostile: bool
) -> st.SearchStrategy[Any]:
    """Values for a numeric field: inside its bounds (edges often); if hostile, also just past
    them and far out (NaN and infinities for a float)."""
    low, high = bounds(model, name)
    if isinstance(sample, float):
        lo = float(low if low is not None else -1e300)
        hi = float(high if high is not None else 1e300)
        inside = st.sampled_from([lo, hi]) | st.floats(lo, hi)
        wild = st.sampled_from([float("nan"), float("inf"), float("-inf")]) | st.floats()
        return inside | wild if hostile else inside
    lo_i = int(low) if low is not None else -UNBOUNDED
    hi_i = int(high) if high is not None else UNBOUNDED
    inside_i = st.sampled_from([lo_i, hi_i]) | st.integers(lo_i, hi_i)
    past = st.sampled_from([lo_i - 1, hi_i + 1, 2**63 - 1, 2**63, -(2**63) - 1])
    return inside_i | past | st.integers(-UNBOUNDED, UNBOUNDED) if hostile else inside_i


NUMERIC = {
    Event: ["seq", "ts", "mono_ns"],
    Heartbeat: [
        "ts",
        "uptime_s",
        "interval_s",
        "cpu_temp_c",
        "disk_free_mb",
        "outbox_depth",
        "last_seq",
        "cert_days_left",
        "connected_since_s",
        "evidence_used_mb",
        "evidence_held_mb",
        "evidence_refused",
    ],
    Status: ["cert_not_after"],
    Alert: ["count", "raised_at", "last_seen", "acked_at", "closed_at"],
}
FLOAT_SAMPLES = {"cpu_temp_c": 48.5}


@st.composite
def payloads(draw: st.DrawFn, model: type[WireModel]) -> bytes:
    data = dict(SAMPLES[model.__name__])
    hostile = draw(st.booleans())
    for name in NUMERIC[model]:
        if draw(st.booleans()):
            sample = FLOAT_SAMPLES.get(name, data.get(name, 0))
            data[name] = draw(numbers(model, name, sample, hostile=hostile))
    return json.dumps(data, allow_nan=True).encode()


def line_of(message: WireModel, payload: bytes) -> str:
    """The line the collector writes for the message (alerts: the engine's alert point)."""
    if isinstance(message, Event):
        return points.event_line(message, event_hash(message), payload)
    if isinstance(message, Heartbeat):
        return str(points.heartbeat_point(message, NOW).to_line_protocol())
    if isinstance(message, Status):
        return str(points.status_point(message, NOW).to_line_protocol())
    assert isinstance(message, Alert)
    return str(
        alert_point(Change(alert=message, kind=ChangeKind.RAISED)).to_point().to_line_protocol()
    )


HYPO = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("model", list(NUMERIC), ids=lambda m: m.__name__)
@HYPO
@given(data=st.data())
def test_every_message_the_model_takes_is_stored_by_influxdb(
    influx: InfluxDB, model: type[WireModel], data: st.DataObject
) -> None:
    payload = data.draw(payloads(model))
    try:
        message = models.parse(model, payload)
    except WireError as exc:
        assert str(exc)
        RUNS[f"{model.__name__} refused"] += 1
        return
    line = line_of(message, payload)
    try:
        influx.write_lines(line, DB)
    except QueryError as exc:
        raise AssertionError(f"{model.__name__} validated but InfluxDB refused: {exc}") from None
    RUNS[f"{model.__name__} stored"] += 1


def test_extreme_values_are_stored_exactly(influx: InfluxDB) -> None:
    """The largest figures a model allows come back from InfluxDB unchanged."""
    beat = Heartbeat.model_validate(
        {
            **SAMPLES["Heartbeat"],
            "device": "extreme-1",
            "uptime_s": models.MAX_UPTIME_S,
            "disk_free_mb": models.MAX_MB,
            "outbox_depth": models.MAX_COUNT,
            "last_seq": models.MAX_SEQ,
            "cert_days_left": -models.MAX_CERT_DAYS,
            "cpu_temp_c": -60.0,
        }
    )
    body = {
        **SAMPLES["Event"],
        "device": "extreme-1",
        "seq": models.MAX_SEQ,
        "mono_ns": 2**63 - 1,
        "ts": models.MAX_TS_NS - 1,
    }
    event = Event.model_validate({**body, "kind": models.Kind(body["kind"])})
    first = Event.model_validate({**body, "kind": models.Kind.DOOR, "ts": 0, "seq": 1})
    raw = json.dumps(body).encode()
    influx.write_lines(
        "\n".join(
            [
                str(points.heartbeat_point(beat, NOW).to_line_protocol()),
                points.event_line(event, event_hash(event), raw),
                points.event_line(first, event_hash(first), canonical_bytes(first)),
            ]
        ),
        DB,
    )
    [stored] = influx.query(
        "SELECT uptime_s, disk_free_mb, outbox_depth, last_seq, cert_days_left, cpu_temp_c "
        "FROM heartbeat WHERE device = 'extreme-1'",
        db=DB,
    )
    assert {k: v for k, v in stored.items() if k != "time"} == {
        "uptime_s": models.MAX_UPTIME_S,
        "disk_free_mb": models.MAX_MB,
        "outbox_depth": models.MAX_COUNT,
        "last_seq": models.MAX_SEQ,
        "cert_days_left": -models.MAX_CERT_DAYS,
        "cpu_temp_c": -60.0,
    }
    events = influx.query(
        "SELECT seq, mono_ns FROM event WHERE device = 'extreme-1' "
        f"AND time >= 0 AND time < {models.MAX_TS_NS}",
        db=DB,
    )
    assert [(e["time"], e["seq"]) for e in events] == [
        (0, 1),
        (models.MAX_TS_NS - 1, models.MAX_SEQ),
    ]
    assert events[1]["mono_ns"] == 2**63 - 1
