"""Commands to a unit on jaga/v1/<site>/<device>/cmd/<name>, and the unit's answers.

Only the collector and operators may publish commands (broker ACL); `by` names who asked,
for the unit's log and the audit trail.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from protocol.models import WireModel

MAX_RESEND = 50_000
By = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@-]{1,80}$")]


class Resend(WireModel):
    """Publish events first_seq..last_seq again: the collector found them missing."""

    v: Literal[1] = 1
    by: By
    first_seq: int = Field(ge=1)
    last_seq: int = Field(ge=1)

    @model_validator(mode="after")
    def _range(self) -> Resend:
        if self.last_seq < self.first_seq:
            raise ValueError("last_seq is before first_seq")
        if self.last_seq - self.first_seq >= MAX_RESEND:
            raise ValueError(f"at most {MAX_RESEND} events per resend")
        return self


class CommandResult(WireModel):
    """What the unit did with a command."""

    v: Literal[1] = 1
    cmd: Annotated[str, StringConstraints(pattern=r"^[a-z-]{1,32}$")]
    ok: bool
    detail: Annotated[str, StringConstraints(max_length=500)] = ""
    ts: int = Field(ge=0)
