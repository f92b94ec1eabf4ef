"""An operator's arming operation as one value: what the guard-post page (and any other caller
on another thread, such as a Home Assistant bridge) hands the collector to carry out on the
alert engine's thread (`AlertBridge.operate`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

from broker.alerts import people
from broker.alerts.changes import Changes
from broker.alerts.config import PersonConfig
from protocol.alerting import ArmingHow


class Engine(Protocol):
    """The alert engine's operator calls (broker.alerts.engine.AlertEngine)."""

    def arm(
        self, site: str, by: str, how: ArmingHow | str, now: int, *, zone: str | None = ...
    ) -> Changes: ...
    def disarm(
        self,
        site: str,
        by: str,
        how: ArmingHow | str,
        now: int,
        *,
        zone: str | None = ...,
        code: str | None = ...,
        account: str | None = ...,
        judged: people.CodeKind | None = ...,
    ) -> Changes: ...
    def bypass(
        self,
        site: str,
        device: str,
        sensor: str,
        by: str,
        how: ArmingHow | str,
        now: int,
        *,
        for_s: float,
        reason: str,
    ) -> Changes: ...
    def unbypass(
        self, site: str, device: str, sensor: str, by: str, how: ArmingHow | str, now: int
    ) -> Changes: ...


@dataclass(frozen=True, slots=True)
class Operation:
    """Arm, disarm, bypass or lift a bypass (unbypass), by an authenticated person.

    by: the person as the audit trail records them (the page's `Account.who`).
    account: the name they authenticated as (login or certificate name); PINs and two-person
    zones go by it.
    zone: arm/disarm one zone; None: every zone of the site.
    code: disarm: the person's PIN (their duress PIN raises a silent duress alert).
    device, sensor: bypass and unbypass; for_s, reason: bypass only.
    """

    action: Literal["arm", "disarm", "bypass", "unbypass"]
    site: str
    by: str
    account: str
    how: ArmingHow = ArmingHow.WEB
    zone: str | None = None
    code: str | None = None
    device: str | None = None
    sensor: str | None = None
    for_s: float = 0.0
    reason: str = ""
    judged: people.CodeKind | None = None  # the code, once checked (`judge`)

    def judge(self, pins: dict[str, PersonConfig]) -> Operation:
        """The code checked now, on the caller's thread (argon2 is slow on purpose), and
        forgotten: the engine's thread gets only what it was. WrongCode if it may not."""
        if self.action != "disarm" or self.judged is not None:
            return self
        return replace(self, code=None, judged=people.judge(pins, self.account, self.code))

    def apply(self, engine: Engine, now: int) -> Changes:
        """Carry it out (AlertError when it is refused, with a message for the person)."""
        if self.action == "arm":
            return engine.arm(self.site, self.by, self.how, now, zone=self.zone)
        if self.action == "disarm":
            return engine.disarm(
                self.site,
                self.by,
                self.how,
                now,
                zone=self.zone,
                code=self.code,
                account=self.account,
                judged=self.judged,
            )
        from broker.alerts.lifecycle import AlertError

        if self.device is None or self.sensor is None:
            raise AlertError("say which sensor: device/sensor")
        if self.action == "unbypass":
            return engine.unbypass(self.site, self.device, self.sensor, self.by, self.how, now)
        return engine.bypass(
            self.site,
            self.device,
            self.sensor,
            self.by,
            self.how,
            now,
            for_s=self.for_s,
            reason=self.reason,
        )
