"""Whose PIN a code is: a person's disarm PIN, their duress PIN, or neither (refused).

PINs are kept as argon2 hashes in `[alerts.people.<name>]`, <name> being the login name on the
guard-post page or the operator certificate's name, like the page's passwords.
"""

from __future__ import annotations

from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from broker.alerts.config import PersonConfig
from broker.alerts.lifecycle import AlertError

_HASHER = PasswordHasher()


class CodeKind(StrEnum):
    NONE = "none"  # no code given, none needed
    PIN = "pin"  # the person's disarm PIN
    DURESS = "duress"  # the person's duress PIN: disarm as usual, tell the police silently


class WrongCode(AlertError):
    """A code that is neither of the person's PINs, or none where one is needed."""


def judge(people: dict[str, PersonConfig], account: str, code: str | None) -> CodeKind:
    """What the code given with a disarm by `account` is; WrongCode when it may not disarm."""
    person = people.get(account)
    if code is None or code == "":
        # Anyone with a PIN, even only a duress one, must type a code (a person with no PIN
        # at all disarms without one, as before PINs): typing nothing must not be the way a
        # duress-only person disarms without raising the alert. Their only valid code is the
        # duress PIN.
        if person is not None and (person.pin_hash or person.duress_pin_hash) is not None:
            raise WrongCode(f"{account} must give their PIN to disarm")
        return CodeKind.NONE
    if person is not None:
        # Both checks always run: a duress PIN must not answer sooner than the disarm PIN (each
        # argon2 check takes ~50 ms, over a second on a busy server; someone watches the guard).
        duress = person.duress_pin_hash is not None and _matches(person.duress_pin_hash, code)
        pin = person.pin_hash is not None and _matches(person.pin_hash, code)
        if duress:
            return CodeKind.DURESS
        if pin:
            return CodeKind.PIN
    raise WrongCode(f"wrong PIN for {account}")


def _matches(stored: str, code: str) -> bool:
    try:
        return _HASHER.verify(stored, code)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
