"""Screening rules, each on real corpus mail that should and should not trip it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from triage.domain.email import ParsedEmail, parse_email
from triage.domain.screening import (
    DEFAULT_POLICY,
    action_for,
    auto_reply,
    bounce,
    bulk,
    check_rule_action,
    no_reply,
    screen,
)

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


def corpus(name: str) -> ParsedEmail:
    return parse_email((CORPUS / name).read_bytes())


@dataclass
class Mail:
    """A hand-made view for the header combinations the corpus lacks."""

    subject: str = "Hello"
    from_addr: str = "Alice <alice@example.com>"
    headers: dict[str, str] = field(default_factory=dict)


@pytest.mark.parametrize(
    "name",
    [
        "cpython-msg_05.eml",  # multipart/report; report-type=delivery-status
        "cpython-msg_16.eml",  # postmaster, multipart/report, also list headers
        "flanker-mailbox-full.eml",
        "imaptools-multi_address_bounce1.eml",
        "flanker-gmail-invalid-address.eml",  # X-Failed-Recipients, text/plain
        "flanker-broken-mime.eml",  # postmaster@ with "Undeliverable Mail"
    ],
)
def test_bounces_are_recognised(name: str) -> None:
    found = screen(corpus(name))
    assert found is not None and found.rule == "bounce", found


@pytest.mark.parametrize(
    "name",
    [
        "flanker-long-links.eml",  # sent from postmaster@, but a person's message
        "cpython-msg_01.eml",
        "flanker-disposition-notification.eml",  # a read receipt, not a failed delivery
    ],
)
def test_mail_that_is_not_a_bounce(name: str) -> None:
    assert bounce(corpus(name)) is None


def test_auto_replies_by_header_and_subject() -> None:
    assert auto_reply(Mail(headers={"auto-submitted": "auto-replied"}))
    assert auto_reply(Mail(headers={"x-autoreply": "yes"}))
    assert auto_reply(Mail(headers={"x-autorespond": "1"}))
    assert auto_reply(Mail(headers={"x-auto-response-suppress": "All"}))
    assert auto_reply(Mail(subject="Automatic reply: Budget 2027"))
    assert auto_reply(Mail(subject="Out of Office: back on Monday"))
    assert auto_reply(Mail(subject="Abwesenheitsnotiz: Re: Angebot"))
    assert auto_reply(corpus("flanker-disposition-notification.eml"))


def test_not_auto_replies() -> None:
    assert auto_reply(Mail(headers={"auto-submitted": "no"})) is None
    # Outlook stamps meeting mail with this; only "All"/"OOF" marks an autoresponder.
    assert auto_reply(Mail(headers={"x-auto-response-suppress": "RN, NRN"})) is None
    assert auto_reply(Mail(subject="Re: out of office hours support contract")) is None
    assert auto_reply(corpus("cpython-msg_01.eml")) is None


@pytest.mark.parametrize(
    "name",
    [
        "spamassassin-easy-ham-1-00062.eml",  # Precedence: Bulk + List-Unsubscribe
        "spamscope-mail_test_13.eml",  # List-Unsubscribe, List-Id (Mailchimp)
        "imaptools-bad_date_header.eml",  # Precedence: junk
    ],
)
def test_bulk_mail_is_recognised(name: str) -> None:
    assert bulk(corpus(name)) is not None
    found = screen(corpus(name))
    assert found is not None and found.rule == "bulk"


def test_personal_mail_is_not_bulk() -> None:
    assert bulk(corpus("cpython-msg_01.eml")) is None
    assert bulk(Mail(headers={"precedence": "first-class"})) is None


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("no-reply@crm.example.org", True),
        ("Gmail Team <gmail-noreply@google.com>", True),
        ("DoNotReply@bank.example", True),
        ("do_not_reply@shop.example", True),
        ("noreply+billing@service.example", True),
        ("Noreen <noreen@example.com>", False),
        ("reply@example.com", False),
        ("support@example.com", False),
    ],
)
def test_no_reply_senders(sender: str, expected: bool) -> None:
    assert (no_reply(Mail(from_addr=sender)) is not None) is expected


def test_no_reply_on_corpus() -> None:
    found = screen(corpus("imaptools-raw_email_encoded_stack_level_too_deep.eml"))
    assert found is not None and found.rule == "no_reply"
    assert "gmail-noreply" in found.reason


def test_a_person_writing_passes_every_rule() -> None:
    assert screen(corpus("cpython-msg_01.eml")) is None
    assert screen(Mail()) is None


def test_policy_defaults_and_overrides() -> None:
    assert action_for("bounce", None) == "skip"
    assert action_for("auto_reply", {}) == "skip"
    assert action_for("bulk", {}) == DEFAULT_POLICY["bulk"]
    assert action_for("bulk", {"bulk": "skip"}) == "skip"
    assert action_for("bounce", {"bounce": "model"}) == "model"
    assert action_for("bulk", {"bulk": "nonsense"}) == "model"  # never a silent skip


def test_policy_entries_are_checked() -> None:
    check_rule_action("bulk", "cheap")
    with pytest.raises(ValueError, match="unknown rule"):
        check_rule_action("spam", "skip")
    with pytest.raises(ValueError, match="unknown action"):
        check_rule_action("bulk", "delete")
