"""Rules that recognise machine mail before any model call: bounces, auto-replies, bulk lists."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Literal, Protocol, get_args

Action = Literal["skip", "cheap", "model"]
ACTIONS: tuple[Action, ...] = get_args(Action)

# Bounces and auto-replies carry nothing to act on; bulk and no-reply mail still deserves a
# label (newsletter, receipt, notification), but a user's `cheap` model is good enough for it
# (and without a cheap model it goes to the normal one).
DEFAULT_POLICY: Mapping[str, Action] = {
    "bounce": "skip",
    "auto_reply": "skip",
    "bulk": "cheap",
    "no_reply": "cheap",
}

_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?([\w-]+)", re.IGNORECASE)
_DAEMON_SENDER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)$", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status|notification|failure|has failed)|returned mail|"
    r"delivery failure|failure notice|mail system error|could not send|not delivered|"
    r"delayed mail|unzustellbar|non remis",
    re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|autoreply|"
    r"abwesenheit\w*|automatische antwort|réponse automatique|absence|respuesta automática|"
    r"risposta automatica|fuori sede|automatisch antwoord|afwezig|frånvaro)\b",
    re.IGNORECASE,
)
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
_NO_REPLY_LOCAL = re.compile(r"(^|[-_.+])(no|do[-_.]?not)[-_.]?reply([-_.+]|$)", re.IGNORECASE)


class MailView(Protocol):
    """What screening reads: a ParsedEmail or a stored message row both fit."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def from_addr(self) -> str: ...

    @property
    def subject(self) -> str: ...


@dataclass(frozen=True)
class Screened:
    """The first rule that fired, and why, in words a reviewer understands."""

    rule: str
    reason: str


Rule = Callable[[MailView], str | None]


def _header(mail: MailView, name: str) -> str:
    return str((mail.headers or {}).get(name) or "").strip()


def _sender_local(mail: MailView) -> str:
    address = parseaddr(mail.from_addr or "")[1] or mail.from_addr or ""
    return address.rpartition("@")[0] if "@" in address else address


def _report_type(mail: MailView) -> str | None:
    content_type = _header(mail, "content-type")
    if not content_type.lower().startswith("multipart/report"):
        return None
    found = _REPORT_TYPE.search(content_type)
    return found.group(1).lower() if found else ""


def bounce(mail: MailView) -> str | None:
    """A delivery status notification: the mail system telling us a message did not arrive."""
    if _report_type(mail) == "delivery-status":
        return "Content-Type: multipart/report; report-type=delivery-status"
    if _header(mail, "x-failed-recipients"):
        return "X-Failed-Recipients header"
    # Only with a bounce-like subject: people do write from postmaster@ addresses.
    if _DAEMON_SENDER.match(_sender_local(mail)) and _BOUNCE_SUBJECT.search(mail.subject or ""):
        return f"sender {_sender_local(mail)} with a delivery-failure subject"
    if _report_type(mail) == "" and _DAEMON_SENDER.match(_sender_local(mail)):
        return f"multipart/report from {_sender_local(mail)}"
    return None


def auto_reply(mail: MailView) -> str | None:
    """Out-of-office notes, autoresponders and read receipts (RFC 3834 Auto-Submitted)."""
    submitted = _header(mail, "auto-submitted").lower()
    if submitted and not submitted.startswith("no"):
        return f"Auto-Submitted: {submitted[:40]}"
    for name in ("x-autoreply", "x-autorespond"):
        if _header(mail, name):
            return f"{name} header"
    if _header(mail, "x-auto-response-suppress").lower() in {"all", "oof"}:
        return "X-Auto-Response-Suppress: " + _header(mail, "x-auto-response-suppress")
    if _report_type(mail) == "disposition-notification":
        return "read receipt (disposition-notification)"
    if _AUTO_SUBJECT.search(mail.subject or ""):
        return "auto-reply subject"
    return None


def bulk(mail: MailView) -> str | None:
    """Mailing lists, newsletters and other mail sent to many (RFC 2369 / 2919 headers)."""
    precedence = _header(mail, "precedence").lower()
    if precedence in _BULK_PRECEDENCE:
        return f"Precedence: {precedence}"
    if _header(mail, "list-unsubscribe"):
        return "List-Unsubscribe header"
    if _header(mail, "list-id"):
        return "List-Id header"
    return None


def no_reply(mail: MailView) -> str | None:
    """A sender address that says nobody reads replies (noreply@, do-not-reply@, ...)."""
    local = _sender_local(mail)
    if _NO_REPLY_LOCAL.search(local):
        return f"no-reply sender {local}@"
    return None


# Order matters: a bounce is also auto-submitted, and many bounces quote list headers.
RULES: tuple[tuple[str, Rule], ...] = (
    ("bounce", bounce),
    ("auto_reply", auto_reply),
    ("bulk", bulk),
    ("no_reply", no_reply),
)
RULE_NAMES: tuple[str, ...] = tuple(name for name, _ in RULES)


def screen(mail: MailView) -> Screened | None:
    """The first rule that fires, or None for mail that looks written by a person."""
    for name, rule in RULES:
        reason = rule(mail)
        if reason is not None:
            return Screened(rule=name, reason=reason)
    return None


def action_for(rule: str, policy: Mapping[str, str] | None) -> Action:
    """The user's choice for a rule, else the default; unknown values fall back to the model."""
    chosen = (policy or {}).get(rule, DEFAULT_POLICY.get(rule, "model"))
    return next((action for action in ACTIONS if action == chosen), "model")


def check_rule_action(rule: str, action: str) -> None:
    """Raise ValueError with the allowed values when a policy entry is not one we know."""
    if rule not in RULE_NAMES:
        raise ValueError(f"unknown rule {rule!r}; one of {', '.join(RULE_NAMES)}")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
