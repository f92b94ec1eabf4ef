"""Password hashes for the page's accounts (argon2id via argon2-cffi); no password is ever kept."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

DEFAULT_HASHER = PasswordHasher()
"""argon2id with argon2-cffi's RFC 9106 low-memory profile (t=3, 64 MiB, p=4): ~50 ms here."""


def hash_password(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    """The `$argon2id$...` string that goes into collector.toml."""
    if not password:
        raise ValueError("an empty password cannot guard anything")
    return hasher.hash(password)


def verify_password(
    stored_hash: str, password: str, hasher: PasswordHasher = DEFAULT_HASHER
) -> bool:
    """True when password matches; any malformed hash is simply a mismatch.

    The cost (memory, time) is the one written in stored_hash, whatever hasher's own is."""
    try:
        return hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def burn_time(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> None:
    """Spend what a real check costs, so an unknown name answers as slowly as a known one."""
    verify_password(_dummy_hash(), password, hasher)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return DEFAULT_HASHER.hash("no account has this password")
