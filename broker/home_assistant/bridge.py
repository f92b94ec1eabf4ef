"""The collector's Home Assistant bridge: discovery, states and coded arming over the
collector's own broker session (no second MQTT client).

Threads: the link's thread hands over HA's messages (`take`): HA's birth asks for everything
again, a panel command waits for its code check on the bridge's own thread (argon2 costs
~50 ms per account, never the collector's time). Everything else — publishing, arming —
happens in `turn`, on the collector's thread, between batches.

Restarts: discovery, states and pictures are retained, so a restarted HA or broker finds
them; on top, everything is published again whenever HA says `online`, whenever the
collector (re)connects, and the collector's own availability is `online` retained with
`offline` as its will. What the bridge knows (units' last states, what it announced) is kept
in `<data_dir>/home-assistant.json`, so a restarted collector neither forgets a state nor
leaves a removed unit's entities behind.

The collector's thread must keep up with 10,000 units (#21), so a turn does little:

- publishing everything again (10,000 units: ~114,000 messages, ~3 s in one turn here, and
  past 65,535 waiting publishes paho's message ids wrap and it refuses the rest) is spread
  over turns (`Pace`): the collector's status at once, then the panels, then units'
  discovery and states, then their pictures last, each turn taking a share of the thread
  and waiting while the session still has many publishes unsent;
- a picture is published in the turn after it is stored, only each unit's latest still;
- a panel is published when the alert engine said its site changed (`on_changes`, fed by
  wiring.py), with a slow refresh of all of them behind it, a batch of sites a turn
  (`PANEL_REFRESH_S`, `PANEL_REFRESH_BATCH`);
- the registry is parsed again only where a file changed (registry.py);
- the state file is written only when something in it changed (figures of heartbeats alone:
  at most once a minute).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from broker.alerts.people import CodeKind
from broker.home_assistant import topics
from broker.home_assistant.codes import PanelCodes
from broker.home_assistant.config import HomeAssistantConfig
from broker.home_assistant.discovery import Discovery, Panel, Unit, panel_entity, unit_entities
from broker.home_assistant.registry import Found, RegistryReader
from broker.home_assistant.state import UnitState, apply, panel_word, wired
from broker.i18n import translator
from kernel.files import Durability, atomic_write
from kernel.link import Message
from kernel.mqtt import Will
from protocol.alerting import DEFAULT_ZONE, Alert, ArmingHow, ArmingMode, ArmingState
from protocol.models import Event, Heartbeat, Status

if TYPE_CHECKING:
    from broker.alerts.changes import Changes
    from broker.alerts.config import AlertsConfig
    from broker.alerts.engine import AlertEngine

log = logging.getLogger("jaga.home_assistant")

ACTIONS = {"ARM_AWAY": "arm", "DISARM": "disarm"}
PANEL_REFRESH_S = 10.0
"""Every panel is worked out again about this often (published only where its word changed):
a change the engine told no one of (on_changes) shows within this, give or take the ..."""
PANEL_REFRESH_BATCH = 50
"""... panels so worked out in one turn (1,000 sites at once took ~60 ms of one turn)."""
SAVE_EVERY_S = 5.0
FIGURES_SAVE_EVERY_S = 60.0
"""Only heartbeats' figures changed (CPU temperature, outbox depth ...): kept at most this often
(a restarted collector has them again with the next heartbeats anyway)."""
STILL = "still"
"""The role of the picture an image entity shows (protocol.snapshot.ChunkRole)."""
UnitKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Pace:
    """How much of the collector's thread publishing everything again (and a burst of
    pictures) may take: each turn, `share` of the time since the turn before, between
    `min_s` and `max_s` (at least one unit per turn), and nothing more while the session
    has `max_waiting` publishes unsent."""

    share: float = 0.25
    min_s: float = 0.005
    max_s: float = 0.1
    max_waiting: int = 2000

    def slice_s(self, since_last_s: float) -> float:
        return min(self.max_s, max(self.min_s, self.share * since_last_s))


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a publish on the collector's session; False when not connected."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A panel command after its code check: whose code (None: refused, and why)."""

    site: str
    zone: str | None
    action: str
    account: str | None
    reason: str = ""
    duress: bool = False
    """The code was the person's duress PIN (a disarm raises its silent alert)."""
    paused_s: float = 0.0
    """This wrong code paused the site's keypad (PanelCodes): the control room is alerted."""
    duress_of: str | None = None
    """Refused on a paused keypad, but this person's duress PIN: their silent alert is raised."""


class HomeAssistantBridge:
    """One per collector, for the sites it owns."""

    def __init__(
        self,
        config: HomeAssistantConfig,
        *,
        client_id: str,
        registry_dir: Path,
        data_dir: Path,
        sites: frozenset[str] | None,
        alerts: AlertsConfig,
        codes: PanelCodes,
        who: Callable[[str], str],
        publisher: Publisher,
        connected: Callable[[], bool],
        connections: Callable[[], int],
        picture_path: Callable[[str], Path],
        waiting: Callable[[], int] = lambda: 0,
        pace: Pace | None = None,
        registry: RegistryReader | None = None,
    ) -> None:
        self.config = config
        self.registry_dir = registry_dir
        self.sites = sites
        self.alerts = alerts
        self.codes = codes
        self.who = who
        """The person as the audit trail records them, from their name (the page's `who`)."""
        self.publisher = publisher
        self.connected = connected
        self.connections = connections
        """How many times the session has connected: each new one publishes everything."""
        self.picture_path = picture_path
        self.waiting = waiting
        """How many of the session's publishes wait unsent (a republish waits while many)."""
        self.pace = pace or Pace()
        self.registry = registry or RegistryReader(registry_dir, sites)
        self.collector_topic = topics.collector_status(client_id)
        self.refused = 0
        """Panel commands refused (wrong code, stale, malformed): each one logged."""
        self._ = translator(config.language).gettext
        self._path = data_dir / "home-assistant.json"
        self._units: dict[UnitKey, Unit] = {}
        self._states: dict[UnitKey, UnitState] = {}
        self._pictures: dict[UnitKey, str] = {}
        self._announced: dict[str, list[str]] = {}
        """Discovery topics published, by unit or panel key: what removal must empty."""
        self._announced_json: dict[str, str] = {}
        self._state_json: dict[UnitKey, str] = {}
        """Each key's `"key": ...` in the file as the last save wrote it, ..."""
        self._reannounce: set[str] = set()
        self._encode: set[UnitKey] = set()
        """... but these, changed since (or gone): encoded again at the next save."""
        self._panels: dict[str, Panel] = {}
        """By panel_key: one per site, or one per zone of a site that has zones (#18)."""
        self._panel_words: dict[str, str] = {}
        self._panels_due: set[str] = set()
        """Sites whose panels are worked out again at the next turn (the engine changed them)."""
        self._dirty: set[UnitKey] = set()
        self._pictures_due: set[UnitKey] = set()
        """Units with a new latest still to publish."""
        self._repanel: deque[str] = deque()
        """Panels (by panel_key) to publish again, then ..."""
        self._republish: deque[UnitKey] = deque()
        """... units whose discovery and state are still to be published again, then ..."""
        self._repicture: deque[UnitKey] = deque()
        """... units whose latest still is (unless published meanwhile: `_pictured`)."""
        self._pictured: set[UnitKey] = set()
        """Units whose latest still went out since the republish began."""
        self._republish_began = 0.0
        self._republish_turns = 0
        self._published_on = 0
        """The connection everything was last published on."""
        self._again = threading.Event()
        self._polled_at = float("-inf")
        self._registry_known = False
        """A first poll has read the registry (later ones act only on a change)."""
        self._panels_at = float("-inf")
        self._refresh: deque[str] = deque()
        """Sites whose panels the slow refresh has still to work out, a batch a turn."""
        self._turned_at = time.monotonic()
        self._saved_at = 0.0
        self._unsaved = False
        self._figures_unsaved = False
        self._checks: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=100)
        self._decided: queue.SimpleQueue[Decision] = queue.SimpleQueue()
        self._checker = threading.Thread(target=self._check_codes, name="ha-codes", daemon=True)
        self._load()

    @property
    def will(self) -> Will:
        """The collector's will: its entities go unavailable when it vanishes."""
        return Will(self.collector_topic, b"offline")

    def filters(self) -> list[str]:
        """What the collector's session subscribes to for HA: its birth, panel commands, and
        the collector's own status (a will the broker publishes late is answered at once)."""
        return [topics.status(self.config.prefix), topics.COMMAND_FILTER, self.collector_topic]

    def start(self) -> None:
        self._checker.start()

    def close(self) -> None:
        """Say offline (a clean stop publishes no will) and keep what we know."""
        self.publisher.publish(self.collector_topic, b"offline", retain=True)
        self._checks.put(None)
        self._save()

    # the link's thread ---------------------------------------------------------------------

    def take(self, msg: Message) -> bool:
        """HA's messages off the collector's session; False: not ours."""
        if msg.topic == topics.status(self.config.prefix):
            if msg.payload.strip() == b"online":
                self._again.set()
            return True
        if msg.topic == self.collector_topic:
            # Our will, published after we came back: not so, say everything again. A retained
            # one (the last session's, delivered as we subscribe) is no news: this session's
            # first turns publish everything already.
            if msg.payload == b"offline" and not msg.retain:
                self._again.set()
            return True
        site = topics.parse_command(msg.topic)
        if site is None:
            return False
        if self.sites is not None and site not in self.sites:
            return True  # another collector's site: it checks the code and carries it out
        if msg.retain:
            log.warning("retained panel command on %s dropped", msg.topic[:120])
            return True
        try:
            self._checks.put_nowait((site, msg.payload))
        except queue.Full:
            self._decided.put(Decision(site, None, "?", None, "too many commands waiting"))
        return True

    # the bridge's own thread -----------------------------------------------------------------

    def _check_codes(self) -> None:
        while (item := self._checks.get()) is not None:
            site, payload = item
            try:
                self._decided.put(self.decide(site, payload, time.time()))
            except Exception:
                log.exception("panel command for %s failed its check", site)

    def decide(self, site: str, payload: bytes, now_s: float) -> Decision:
        """Parse and check one panel command; the code goes to PanelCodes."""
        try:
            body = json.loads(payload)
            action = ACTIONS[str(body["action"])]
            code = body.get("code")
            zone = body.get("zone")
            ts = float(body["ts"])
        except (ValueError, KeyError, TypeError):
            return Decision(site, None, "?", None, "not a panel command (action, code, ts)")
        if zone is not None and not isinstance(zone, str):
            return Decision(site, None, action, None, "zone must be a name")
        if not isinstance(code, str):
            code = "" if code is None else str(code)
        if not math.isfinite(ts) or abs(now_s - ts) > self.config.command_max_age_s:
            return Decision(site, zone, action, None, f"sent {now_s - ts:.0f} s ago: too old")
        verdict = self.codes.check(site, code)
        if verdict.account is not None:
            self.codes.succeeded(site)
        return Decision(
            site,
            zone,
            action,
            verdict.account,
            verdict.reason,
            verdict.duress,
            verdict.paused_s,
            verdict.duress_of,
        )

    # the collector's thread ------------------------------------------------------------------

    def on_messages(self, accepted: Iterable[Event | Heartbeat | Status]) -> None:
        """Units' accepted messages (after they are stored): what HA shows of them. Never
        raises: a fault here must not stop the collector's batch."""
        try:
            for msg in accepted:
                key = (msg.site, msg.device)
                if key not in self._units:
                    continue
                state = self._states.setdefault(key, UnitState())
                online = state.online
                self._encode.add(key)  # its seqs move even when what HA shows does not
                if apply(state, msg):
                    self._dirty.add(key)
                    if isinstance(msg, Heartbeat) and state.online == online:
                        self._figures_unsaved = True  # figures only: kept less often
                    else:
                        self._unsaved = True
        except Exception:
            log.exception("Home Assistant: a unit's state failed; events are stored regardless")

    def on_picture(self, site: str, device: str, sha256: str, role: str = STILL) -> None:
        """A stored evidence picture: a unit's image entity shows its latest still, published
        at the next turn (never before the picture's batch is acknowledged; several stills
        of a unit in between: only the last). Never raises."""
        key = (site, device)
        try:
            if role == STILL and key in self._units and self._pictures.get(key) != sha256:
                self._pictures[key] = sha256
                self._pictures_due.add(key)
                self._unsaved = True
        except Exception:
            log.exception("Home Assistant: a picture failed; it is kept regardless")

    def on_changes(self, changes: Changes) -> None:
        """What the alert engine decided (every change the collector emits): the sites whose
        arming or alerts changed have their panels worked out again. Never raises."""
        try:
            self._panels_due.update(a.site for a in changes.arming)
            self._panels_due.update(c.alert.site for c in changes.alerts)
        except Exception:
            log.exception("Home Assistant: a change was not understood; panels refresh anyway")

    def republishing(self) -> bool:
        """Whether publishing everything again is still under way."""
        return bool(self._repanel or self._republish or self._repicture)

    def turn(
        self,
        engine: AlertEngine,
        emit: Callable[[Changes], None],
        audit: Callable[[Decision, int], None],
    ) -> None:
        """Between batches: carry out checked commands, publish what changed, poll the
        registry, and everything again after HA's birth or a reconnection (over turns)."""
        now = time.monotonic()
        deadline = now + self.pace.slice_s(now - self._turned_at)
        connected = self.connected()
        connection = self.connections()
        everything = connected and (connection != self._published_on or self._again.is_set())
        if now - self._polled_at >= self.config.registry_poll_s:
            self._polled_at = now
            self._poll_registry(connected and not everything)
        if everything:
            self._again.clear()
            self._published_on = connection
            self._begin_republish(now)
        while True:
            try:
                decision = self._decided.get_nowait()
            except queue.Empty:
                break
            self._carry_out(decision, engine, emit, audit)
            self._panels_due.add(decision.site)  # show the new state at once
        if connected:
            if not self._refresh and now - self._panels_at >= PANEL_REFRESH_S:
                self._panels_at = now
                self._refresh = deque(sorted({p.site for p in self._panels.values()}))
            for _ in range(min(PANEL_REFRESH_BATCH, len(self._refresh))):
                self._panels_due.add(self._refresh.popleft())
            if self._panels_due:
                self._publish_panels(engine, self._panels_due)
            for key in sorted(self._dirty):
                self._send_state(key)
            self._dirty.clear()
            self._send_pictures(deadline)
            self._republish_some(engine, deadline)
        if (self._unsaved and now - self._saved_at >= SAVE_EVERY_S) or (
            self._figures_unsaved and now - self._saved_at >= FIGURES_SAVE_EVERY_S
        ):
            self._save()
        self._turned_at = time.monotonic()

    def _carry_out(
        self,
        d: Decision,
        engine: AlertEngine,
        emit: Callable[[Changes], None],
        audit: Callable[[Decision, int], None],
    ) -> None:
        from broker.alerts.lifecycle import AlertError

        now = time.time_ns()
        if self.sites is not None and d.site not in self.sites:
            return  # another collector's site: it carries the command out
        if d.account is None:
            self.refused += 1
            log.warning("Home Assistant %s of %s refused: %s", d.action, d.site, d.reason)
            self._unsaved = True  # the wrong codes counted so far outlive a restart
            if d.paused_s:
                self._save()  # at once: a restart must not end the pause
            audit(d, now)
            if d.duress_of is not None and d.action == "disarm":  # refused, yet under duress
                try:
                    emit(
                        engine.duress(
                            d.site, self.who(d.duress_of), ArmingHow.MQTT, now, zone=d.zone
                        )
                    )
                except AlertError as exc:
                    log.error("Home Assistant duress alert of %s not raised: %s", d.site, exc)
            return
        who = self.who(d.account)
        self._unsaved = True  # a right code forgot the site's wrong ones (PanelCodes.succeeded)
        try:
            changes = operate(engine, d, who, now)
        except AlertError as exc:
            self.refused += 1
            log.warning("Home Assistant %s of %s by %s refused: %s", d.action, d.site, who, exc)
            audit(Decision(d.site, d.zone, d.action, None, f"{who}: {exc}"), now)
            if exc.changes is not None:  # decided regardless (a duress PIN's alert)
                emit(exc.changes)
            return
        log.info("Home Assistant %s of %s (zone %s) by %s", d.action, d.site, d.zone, who)
        emit(changes)

    # publishing ------------------------------------------------------------------------------

    def _begin_republish(self, now: float) -> None:
        """Everything again: the collector's status now; over the next turns
        (`_republish_some`) the panels, then the units, then their pictures."""
        self.publisher.publish(self.collector_topic, b"online", retain=True)
        self._panels_due.clear()  # every panel is in it
        self._panels_at, self._refresh = now, deque()
        self._repanel = deque(sorted(self._panels))
        self._republish = deque(sorted(self._units))
        self._repicture, self._pictured = deque(), set()
        self._republish_began, self._republish_turns = now, 0

    def _republish_some(self, engine: AlertEngine, deadline: float) -> None:
        """Panels (discovery and state), units' discovery and states, then their pictures,
        until this turn's slice is spent or the session has enough unsent (at least one a
        turn while it has room)."""
        if not self.republishing():
            return
        self._republish_turns += 1
        first = True
        while self.republishing():
            if not first and time.monotonic() >= deadline:
                return
            if self.waiting() >= self.pace.max_waiting:
                return  # the session sends what it has first; the rest at a later turn
            first = False
            if self._repanel:
                pkey = self._repanel[0]
                panel = self._panels.get(pkey)
                if panel is not None:
                    sent = self._announce(pkey, [self._panel_entity(panel)])
                    state, alerts = engine.arming_state(panel.site), engine.open_alerts(panel.site)
                    if not (self._publish_panel(pkey, panel, state, alerts, force=True) and sent):
                        return  # refused (the connection went): a reconnection starts again
                self._repanel.popleft()
            elif self._republish:
                key = self._republish[0]
                unit = self._units.get(key)
                if unit is not None:
                    sent = self._announce(unit_key(key), self._unit_entities(unit))
                    if not (self._send_state(key) and sent):
                        return  # refused (the connection went): a reconnection starts again
                    if key in self._pictures:
                        self._repicture.append(key)
                self._republish.popleft()
            else:
                key = self._repicture[0]
                fresh = key in self._units and key not in self._pictured
                if fresh and not self._send_picture(key):
                    return
                self._repicture.popleft()
        log.info(
            "Home Assistant: %d units and %d panels published again in %.1f s (%d turns)",
            len(self._units),
            len(self._panels),
            time.monotonic() - self._republish_began,
            self._republish_turns,
        )

    def _send_pictures(self, deadline: float) -> None:
        """New latest stills, one per unit, within this turn's slice (the rest next turn)."""
        first = True
        for key in sorted(self._pictures_due):
            if not first and time.monotonic() >= deadline:
                return
            if self.waiting() >= self.pace.max_waiting:
                return
            first = False
            if key in self._units and not self._send_picture(key):
                return
            self._pictures_due.discard(key)

    def _publish_panels(self, engine: AlertEngine, sites: set[str]) -> None:
        """The panels of `sites` whose word changed."""
        due = set(sites)
        self._panels_due -= due
        panels = [(key, panel) for key, panel in self._panels.items() if panel.site in due]
        if not panels:
            return
        alerts_of: dict[str, list[Alert]] = {}
        for alert in engine.open_alerts():
            alerts_of.setdefault(alert.site, []).append(alert)
        states: dict[str, ArmingState | None] = {}
        for key, panel in panels:
            if panel.site not in states:
                states[panel.site] = engine.arming_state(panel.site)
            state, alerts = states[panel.site], alerts_of.get(panel.site, [])
            if not self._publish_panel(key, panel, state, alerts, force=False):
                self._panels_due.add(panel.site)  # again at the next turn

    def _publish_panel(
        self,
        key: str,
        panel: Panel,
        state: ArmingState | None,
        alerts: list[Alert],
        *,
        force: bool,
    ) -> bool:
        """A panel's word, when it changed (force: anyway); False: the session refused it."""
        word = panel_word(*self._panel_view(panel, state, alerts))
        if word is None or (not force and self._panel_words.get(key) == word):
            return True
        topic = topics.panel_state(panel.site, panel.zone)
        if not self.publisher.publish(topic, word.encode(), retain=True):
            return False
        self._panel_words[key] = word
        return True

    def _panel_view(
        self, panel: Panel, state: ArmingState | None, alerts: list[Alert]
    ) -> tuple[ArmingMode | None, list[Alert]]:
        """The panel's arming mode and the alerts of its sensors (all of the site's: no zone)."""
        if state is None:
            return None, []
        if panel.zone is None:
            return state.state, alerts
        zone = state.zone(panel.zone)
        config = self.alerts.site(panel.site)
        mine = [a for a in alerts if config.zone_of(a.device, a.sensor or "") == panel.zone]
        return (zone.state if zone is not None else None), mine

    def _send_state(self, key: UnitKey) -> bool:
        """Publish a unit's state document; False: the session refused it."""
        state = self._states.get(key)
        if state is None:
            return True
        body = json.dumps(state.document(), sort_keys=True).encode()
        return self.publisher.publish(topics.unit_state(*key), body, retain=True)

    def _send_picture(self, key: UnitKey) -> bool:
        """Publish a unit's latest still; False: the session refused it."""
        sha = self._pictures.get(key)
        if sha is None:
            return True
        try:
            data = self.picture_path(sha).read_bytes()
        except OSError:
            return True  # pruned from the vault: HA keeps the one it has
        if not self.publisher.publish(topics.unit_image(*key), data, retain=True):
            return False
        self._pictured.add(key)
        return True

    def _announce(self, key: str, entities: Sequence[Discovery]) -> bool:
        """Publish discovery (and empty what is no longer wanted); False: a publish refused."""
        wanted = [d.topic for d in entities]
        sent = True
        for gone in set(self._announced.get(key, [])) - set(wanted):
            sent = self.publisher.publish(gone, b"", retain=True) and sent
        for d in entities:
            sent = self.publisher.publish(d.topic, d.payload(), retain=True) and sent
        if self._announced.get(key) != wanted:
            self._announced[key] = wanted
            self._reannounce.add(key)
            self._unsaved = True
        return sent

    def _panel_entity(self, panel: Panel) -> Discovery:
        return panel_entity(self.config.prefix, panel, self.collector_topic, self._)

    def _unit_entities(self, unit: Unit) -> list[Discovery]:
        return unit_entities(self.config.prefix, unit, self.collector_topic, self._)

    # the registry ----------------------------------------------------------------------------

    def _poll_registry(self, announce: bool) -> None:
        """Units and sites as the registry has them now; removed ones leave HA (announce: publish
        what is new at once, else the full publish that follows does). Nothing changed in the
        registry's files: nothing to do."""
        try:
            found: Found = self.registry.read()
        except Exception:
            log.exception("Home Assistant: the registry could not be read; trying again later")
            return
        if not found.changed and self._registry_known:
            return
        self._registry_known = True
        units, panels = found.units, found.panels
        for key, unit in units.items():
            if self._units.get(key) != unit:
                self._units[key] = unit
                wired(self._states.setdefault(key, UnitState()), unit.sensors)
                self._encode.add(key)
                self._unsaved = True
                if announce:
                    self._announce(unit_key(key), self._unit_entities(unit))
                    self._send_state(key)
        for key in sorted(set(self._units) - set(units)):
            del self._units[key]
            self._forget(unit_key(key))
            self._states.pop(key, None)
            self._encode.add(key)
            self._pictures.pop(key, None)
            self._pictures_due.discard(key)
            self._unsaved = True
            for topic in (topics.unit_state(*key), topics.unit_image(*key)):
                self.publisher.publish(topic, b"", retain=True)
            log.info("Home Assistant: unit %s/%s removed", *key)
        wanted = {
            panel_key(p): p
            for site in panels.values()
            for p in site_panels(site, self.alerts.site(site.site).zone_names())
        }
        for pkey, panel in wanted.items():
            if self._panels.get(pkey) != panel:
                self._panels[pkey] = panel
                self._panel_words.pop(pkey, None)
                self._panels_due.add(panel.site)
                if announce:
                    self._announce(pkey, [self._panel_entity(panel)])
        for pkey in sorted(set(self._panels) - set(wanted)):
            gone = self._panels.pop(pkey)
            self._forget(pkey)
            self.publisher.publish(topics.panel_state(gone.site, gone.zone), b"", retain=True)
        # Announced before a restart and unknown to the registry now: remove them too.
        live = {unit_key(k) for k in self._units} | set(self._panels)
        for stale in sorted(set(self._announced) - live):
            self._forget(stale)

    def _forget(self, key: str) -> None:
        topics_of = self._announced.pop(key, [])
        if topics_of:
            self._reannounce.add(key)
            self._unsaved = True
        for topic in topics_of:
            self.publisher.publish(topic, b"", retain=True)

    # the file --------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            raw: dict[str, Any] = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            log.warning("%s is unreadable: Home Assistant's states start unknown", self._path)
            return
        self._announced = {k: list(v) for k, v in raw.get("announced", {}).items()}
        self._reannounce.update(self._announced)
        self.codes.restore(raw.get("codes", {}))
        for key, state in raw.get("states", {}).items():
            site, _, device = key.partition("/")
            self._states[(site, device)] = UnitState.from_json(state)
            self._encode.add((site, device))
        for key, sha in raw.get("pictures", {}).items():
            site, _, device = key.partition("/")
            self._pictures[(site, device)] = sha

    def _save(self) -> None:
        """The file, from JSON kept ready: a key's announced topics are encoded again only
        after they changed (all 100,000 of 10,000 units took ~150 ms), a unit's state only
        after a message of it."""
        for name in self._reannounce:
            topics_of = self._announced.get(name)
            if topics_of is None:
                self._announced_json.pop(name, None)
            else:
                self._announced_json[name] = f"{json.dumps(name)}: {json.dumps(topics_of)}"
        self._reannounce.clear()
        for key in self._encode:
            state = self._states.get(key)
            if state is None:
                self._state_json.pop(key, None)
            else:
                name = json.dumps("/".join(key))
                self._state_json[key] = f"{name}: {json.dumps(state.to_json())}"
        self._encode.clear()
        pictures = {f"{s}/{d}": sha for (s, d), sha in self._pictures.items()}
        body = (
            f'{{"announced": {{{", ".join(self._announced_json.values())}}}, '
            f'"states": {{{", ".join(self._state_json.values())}}}, '
            f'"pictures": {json.dumps(pictures)}, "codes": {json.dumps(self.codes.state())}}}'
        )
        try:
            atomic_write(self._path, body.encode(), durability=Durability.FSYNC_FILE)
        except OSError as exc:
            log.warning("could not keep Home Assistant's states in %s: %s", self._path, exc)
            return
        self._saved_at = time.monotonic()
        self._unsaved = self._figures_unsaved = False


def operate(engine: AlertEngine, d: Decision, who: str, now: int) -> Changes:
    """The one call into Jaga's arming: by the person whose code matched, `how` mqtt; a
    disarm tells the engine which PIN it was (already checked: no argon2 on its thread)."""
    if d.action == "arm":
        return engine.arm(d.site, who, ArmingHow.MQTT, now, zone=d.zone)
    judged = CodeKind.DURESS if d.duress else CodeKind.PIN
    return engine.disarm(
        d.site, who, ArmingHow.MQTT, now, zone=d.zone, account=d.account, judged=judged
    )


def site_panels(site: Panel, zones: list[str]) -> list[Panel]:
    """One panel for a site without zones (every zone at once), else one per zone (#18)."""
    if zones == [DEFAULT_ZONE]:
        return [site]
    return [Panel(site.site, site.site_name, zone) for zone in zones]


def unit_key(key: UnitKey) -> str:
    return f"unit:{key[0]}/{key[1]}"


def panel_key(panel: Panel) -> str:
    """Where a panel's announced topics are kept: by site, and zone when it has one."""
    return f"panel:{panel.site}" if panel.zone is None else f"panel:{panel.site}/{panel.zone}"
