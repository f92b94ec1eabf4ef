"""Which stretch of a unit's chain an export carries around its events.

From the unit's signed checkpoint before the events to the one after, so an auditor sees that
nothing between them was dropped or reordered. Where no checkpoint is near (units that do not
emit them yet), CONTEXT events each side. The stretch is contiguous and hash-linked; it stops
early at the unit's first event, at the newest event stored, or where the collector lacks an
event (each end says which).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.export_format import ChainEnd
from broker.influx_reader import InfluxReader, quote_string
from protocol.models import Event, Kind, WireError, parse
from protocol.signing import GENESIS, event_hash

CONTEXT = 50
"""Events carried each side of the export's events when no checkpoint is within REACH."""
REACH = 1000
"""How far (in events) to look for a checkpoint each side."""


class ChainError(Exception):
    """The export's own events are not one linked stretch in the store; the message says why."""


@dataclass(frozen=True, slots=True)
class ChainStretch:
    """Contiguous linked events, oldest first, and why they start and end where they do."""

    events: tuple[Event, ...]
    starts_at: ChainEnd
    ends_at: ChainEnd


def read_window(reader: InfluxReader, site: str, device: str, first: int, last: int) -> list[Event]:
    """The unit's stored events with seq first..last (any order, duplicates as stored).

    May raise broker.influx_reader.QueryFailed; a row that does not parse is left out."""
    query = (
        f'SELECT "raw" FROM "event" WHERE "site" = {quote_string(site)} '
        f'AND "device" = {quote_string(device)} AND "seq" >= {int(first)} '
        f'AND "seq" <= {int(last)}'
    )
    out: list[Event] = []
    for row in reader.rows(query):
        raw = row.get("raw")
        if isinstance(raw, str):
            try:
                out.append(parse(Event, raw.encode()))
            except WireError:
                continue
    return out


def stretch_around(
    stored: Iterable[Event], subject: Iterable[Event], *, context: int = CONTEXT
) -> ChainStretch:
    """The linked stretch of stored events holding every subject event (one unit's)."""
    by_seq: dict[int, list[Event]] = {}
    for event in stored:
        by_seq.setdefault(event.seq, []).append(event)
    wanted = sorted({e.seq: e for e in subject}.values(), key=lambda e: e.seq)
    if not wanted:
        raise ChainError("no events to export")
    middle = [wanted[0]]
    for seq in range(wanted[0].seq + 1, wanted[-1].seq + 1):
        fixed = next((e for e in wanted if e.seq == seq), None)
        nxt = fixed or _linking_after(by_seq.get(seq, []), middle[-1])
        if nxt is None or nxt.prev != event_hash(middle[-1]):
            raise ChainError(
                f"the collector holds no event of seq {seq} linking seq {seq - 1} to the next; "
                "the events of this export are not one unbroken stretch"
            )
        middle.append(nxt)
    before, starts_at = _walk(by_seq, middle[0], -1, context)
    after, ends_at = _walk(by_seq, middle[-1], +1, context)
    return ChainStretch((*reversed(before), *middle, *after), starts_at, ends_at)


def _walk(
    by_seq: dict[int, list[Event]], edge: Event, step: int, context: int
) -> tuple[list[Event], ChainEnd]:
    """Linked events outward from edge (nearest first), up to the nearest checkpoint within
    REACH, else up to context of them; and why the walk stopped there."""
    found: list[Event] = []
    here = edge
    end = ChainEnd.LIMIT
    while len(found) < REACH:
        if step < 0 and here.seq == 1:
            end = ChainEnd.GENESIS if here.prev == GENESIS else ChainEnd.GAP
            break
        seq = here.seq + step
        candidates = by_seq.get(seq, [])
        nxt = _linking_before(candidates, here) if step < 0 else _linking_after(candidates, here)
        if nxt is None:
            newer = step > 0 and not any(s > here.seq for s in by_seq)
            end = ChainEnd.HEAD if newer else ChainEnd.GAP
            break
        found.append(nxt)
        if nxt.kind is Kind.CHECKPOINT:
            return found, ChainEnd.CHECKPOINT
        here = nxt
    if len(found) > context:
        return found[:context], ChainEnd.LIMIT
    return found, end


def _linking_after(candidates: list[Event], before: Event) -> Event | None:
    link = event_hash(before)
    return next((e for e in candidates if e.prev == link), None)


def _linking_before(candidates: list[Event], after: Event) -> Event | None:
    return next((e for e in candidates if event_hash(e) == after.prev), None)
