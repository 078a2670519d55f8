"""Pure rules of write-back: keyword atoms, move settings, and the RFC 5322 reply for Drafts."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from triage.domain.reply_mail import Original, reply_draft, reply_subject
from triage.domain.write_back import WriteBackSettings, keyword_for, parse_move


def test_keywords_are_imap_atoms() -> None:
    assert keyword_for("urgent") == "$Triage/urgent"
    assert keyword_for("needs_reply") == "$Triage/needs_reply"
    assert keyword_for('we ird (x) "y"\\] %*') == "$Triage/we-ird-x-y"
    assert keyword_for("   ") == "$Triage/unknown"


def test_settings_are_off_unless_turned_on() -> None:
    settings = WriteBackSettings.model_validate({})
    assert not settings.keywords and not settings.moves and not settings.append_drafts
    assert not settings.tags_or_moves
    assert WriteBackSettings.model_validate({"moves": {"fyi": "Later"}}).tags_or_moves


def test_moves_are_checked() -> None:
    assert parse_move("Newsletter=Reading/Later") == ("newsletter", "Reading/Later")
    for bad in ("newsletter", "=Folder", "fyi=", "fyi=Bad\r\nFolder", "no spaces=X"):
        with pytest.raises(ValueError):
            parse_move(bad)


def test_the_reply_threads_under_the_original_and_cannot_be_injected() -> None:
    original = Original(
        subject="Re: Budget\r\nBcc: victim@example.test",
        reply_to="Bob <bob@example.test>\r\nBcc: x@example.test",
        message_id="<orig@example.test>",
        references=("<root@example.test>", "<orig@example.test>"),
    )
    raw = reply_draft(
        original,
        body="Sounds good.",
        from_addr="me@example.test",
        draft_message_id="<draft-1@example.test>",
        date=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    )
    assert b"\r\n" in raw and b"\nBcc" not in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Re: Budget Bcc: victim@example.test"
    assert parsed["To"].startswith("Bob <bob@example.test>") and "Bcc" not in parsed
    assert parsed["In-Reply-To"] == "<orig@example.test>"
    assert parsed["References"] == "<root@example.test> <orig@example.test>"
    assert parsed["Message-ID"] == "<draft-1@example.test>"
    assert parsed.get_content().strip() == "Sounds good."


def test_reply_subjects_get_one_prefix() -> None:
    assert reply_subject("Hello") == "Re: Hello"
    assert reply_subject("RE: Hello") == "RE: Hello"
    assert reply_subject("") == "Re:"
