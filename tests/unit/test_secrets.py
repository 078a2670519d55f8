"""Encryption at rest: rotation, owner binding, clear errors."""

from __future__ import annotations

import pytest

from triage.adapters.passwords import hash_password, verify_password
from triage.adapters.secrets import (
    SecretBox,
    SecretDecryptError,
    SecretKeyError,
    generate_key,
    last4,
)


def test_round_trip_and_owner_binding() -> None:
    box = SecretBox([generate_key()])
    token = box.encrypt("sk-live-abcdef", owner="provider_settings:1")
    assert "sk-live" not in token
    assert box.decrypt(token, owner="provider_settings:1") == "sk-live-abcdef"
    with pytest.raises(SecretDecryptError, match="another row"):
        box.decrypt(token, owner="provider_settings:2")


def test_rotation_old_key_still_decrypts_and_rotate_moves_to_new_key() -> None:
    old, new = generate_key(), generate_key()
    token = SecretBox([old]).encrypt("pw", owner="mail_accounts:3")
    both = SecretBox([new, old])
    assert both.decrypt(token, owner="mail_accounts:3") == "pw"
    rotated = both.rotate(token)
    assert SecretBox([new]).decrypt(rotated, owner="mail_accounts:3") == "pw"
    with pytest.raises(SecretDecryptError):
        SecretBox([generate_key()]).decrypt(token, owner="mail_accounts:3")


@pytest.mark.parametrize("value", [None, "", "  ", "not-a-key"])
def test_missing_or_bad_keys_give_a_clear_error(value: str | None) -> None:
    with pytest.raises(SecretKeyError, match="triage keys generate"):
        SecretBox.from_setting(value)


def test_last4_never_reveals_short_secrets() -> None:
    assert last4("sk-1234567890") == "7890"
    assert last4("short") == ""


def test_password_hash_verifies_only_the_right_password() -> None:
    stored = hash_password("correct horse")
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong", stored)
    assert not verify_password("x", "garbage")
    assert not verify_password("correct horse", None)


def test_password_hash_is_argon2id_and_salted() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert first.startswith("$argon2id$")
    assert first != second
    assert "same" not in first
