"""Password hashing for console users: Argon2id through argon2-cffi, with its safe defaults."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
# Verified against when a sign-in names no known user, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("no such user: a password nobody has")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    """True only for the right password; a missing or malformed hash is simply False."""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """True when the stored hash used weaker parameters than today's defaults."""
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True
