"""Encryption of model keys and IMAP passwords at rest, each ciphertext bound to its owner row."""

from __future__ import annotations

import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_SEPARATOR = b"\x00"


class SecretKeyError(Exception):
    """TRIAGE_SECRET_KEYS is missing or malformed."""


class SecretDecryptError(Exception):
    """A ciphertext did not decrypt, or belongs to another row."""


class SecretBox:
    """Encrypts with the first key, decrypts with any (so keys can be rotated).

    The owner (e.g. ``provider_settings:42``) is sealed inside the ciphertext and checked on
    decrypt, so a value copied into another row fails instead of being used for the wrong owner.
    """

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise SecretKeyError("no secret key given")
        try:
            self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
        except (ValueError, TypeError) as exc:
            raise SecretKeyError(
                "TRIAGE_SECRET_KEYS must hold Fernet keys (32 bytes, URL-safe base64), "
                "comma-separated; create one with `triage keys generate`"
            ) from exc

    @classmethod
    def from_setting(cls, value: str | None) -> SecretBox:
        if not value or not value.strip():
            raise SecretKeyError(
                "TRIAGE_SECRET_KEYS is not set; create a key with `triage keys generate`"
            )
        return cls([part for part in value.split(",") if part.strip()])

    def encrypt(self, plaintext: str, *, owner: str) -> str:
        token = self._fernet.encrypt(owner.encode() + _SEPARATOR + plaintext.encode())
        return token.decode()

    def decrypt(self, token: str, *, owner: str) -> str:
        try:
            sealed = self._fernet.decrypt(token.encode())
        except InvalidToken as exc:
            raise SecretDecryptError(f"secret of {owner} does not decrypt with any key") from exc
        sealed_owner, _, plaintext = sealed.partition(_SEPARATOR)
        if not hmac.compare_digest(sealed_owner, owner.encode()):
            raise SecretDecryptError(f"secret of {owner} belongs to another row")
        return plaintext.decode()

    def rotate(self, token: str) -> str:
        """Re-encrypt under the first key (owner binding is kept)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretDecryptError("value does not decrypt with any key") from exc


def generate_key() -> str:
    return Fernet.generate_key().decode()


def last4(secret: str) -> str:
    return secret[-4:] if len(secret) >= 8 else ""
