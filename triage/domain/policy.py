"""After the model: check action items and dates against the email, and flag what looks risky."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from triage.domain.schemas import ActionItemAnswer, TriageAnswer

# A deadline more than this far after the message is a misread year, not a plan.
MAX_DUE_AHEAD = timedelta(days=3 * 365)
# The model resolves "tomorrow" against the message date; time zones can shift that a day.
DUE_GRACE = timedelta(days=1)

URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'\])]+", re.IGNORECASE)
# Phrases that address an AI or try to steer one; found in the email, or echoed in an answer.
_AI_INSTRUCTION = re.compile(
    r"ignore (all |any )?(the |your )?(previous|prior|above|earlier|system) "
    r"(instructions|prompts?|rules|messages)|disregard (all |any |the |your )*(previous|prior|"
    r"above|system) |(you are|act as) (an? )?(ai|ai assistant|language model|chatgpt|llm)\b|"
    r"(system|developer) prompt|new instructions?:|as an ai\b|\bdear (ai|assistant|chatgpt|"
    r"llm|bot)\b|\b(ai|llm|assistant|chatbot)s?, (please )?(ignore|classify|mark|forward)\b|"
    r"classify (this|me|it) as",
    re.IGNORECASE,
)
# Actions an answer should never tell the owner to do on a stranger's say-so.
_RISKY_OUTPUT = re.compile(
    r"\b(forward|send|share|reveal|disclose|give)\b[^.\n]{0,40}\b(password|passcode|credentials?"
    r"|api key|secret|2fa|one-time code|otp|pin)\b|ignore (the |your )?(previous|prior) ",
    re.IGNORECASE,
)
_QUOTE_TRIM = " \t\r\n\"'\u201c\u201d\u201e\u2018\u2019\u00ab\u00bb\u2026."
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class CheckedItem:
    """An action item after our checks; `due_date` is None when the model's date made no sense."""

    text: str
    owner: str
    due_date: date | None
    quote: str


@dataclass(frozen=True)
class Checked:
    items: tuple[CheckedItem, ...]
    flags: tuple[str, ...]
    injection_suspected: bool


def contains_ai_instructions(text: str) -> bool:
    """True when the text talks to an AI or tries to override its instructions."""
    return _AI_INSTRUCTION.search(text or "") is not None


def check_due_date(due: date | None, *, sent: date | None) -> tuple[date | None, str | None]:
    """Keep a plausible ISO date; a date before the message or years ahead becomes None + a flag."""
    if due is None or sent is None:
        return due, None
    if due < sent - DUE_GRACE:
        return None, "due_date_before_message"
    if due > sent + MAX_DUE_AHEAD:
        return None, "due_date_too_far"
    return due, None


def trim_quote(quote: str, email_text: str) -> str:
    """The email's own words for the quote when they can be found; the model's otherwise."""
    wanted = _WS.sub(" ", quote.strip(_QUOTE_TRIM)).strip()
    if not wanted:
        return ""
    haystack = _WS.sub(" ", email_text)
    at = haystack.lower().find(wanted.lower())
    if at >= 0:
        return haystack[at : at + len(wanted)]
    # "first part ... last part": keep the longest piece that really is in the email.
    pieces = [p.strip(_QUOTE_TRIM) for p in re.split(r"\.\.\.|…", wanted)]
    found = [p for p in pieces if len(p) >= 8 and p.lower() in haystack.lower()]
    if found:
        best = max(found, key=len)
        at = haystack.lower().find(best.lower())
        return haystack[at : at + len(best)]
    return wanted


def _check_item(
    item: ActionItemAnswer, *, sent: date | None, email_text: str
) -> tuple[CheckedItem, str | None]:
    due, flag = check_due_date(item.due_date, sent=sent)
    checked = CheckedItem(
        text=" ".join(item.text.split()),
        owner=item.owner.value,
        due_date=due,
        quote=trim_quote(item.quote, email_text),
    )
    if (
        flag is None
        and checked.quote
        and checked.quote.lower() not in _WS.sub(" ", email_text.lower())
    ):
        flag = "quote_not_in_email"
    return checked, flag


def check_answer(answer: TriageAnswer, *, sent: date | None, email_text: str) -> Checked:
    """Everything code decides about a validated answer before it is stored."""
    flags: list[str] = []
    items: list[CheckedItem] = []
    for item in answer.action_items:
        checked, flag = _check_item(item, sent=sent, email_text=email_text)
        items.append(checked)
        if flag:
            flags.append(flag)
    output = " ".join([answer.summary, *(f"{i.text} {i.quote}" for i in items)])
    if URL.search(" ".join([answer.summary, *(i.text for i in items)])):
        flags.append("links_in_output")
    if _RISKY_OUTPUT.search(output) or _AI_INSTRUCTION.search(output):
        flags.append("instructions_in_output")
    found_in_email = contains_ai_instructions(email_text)
    if answer.contains_ai_instructions or found_in_email:
        flags.append("ai_instructions")
    suspected = bool({"ai_instructions", "instructions_in_output"} & set(flags))
    return Checked(items=tuple(items), flags=_unique(flags), injection_suspected=suspected)


def _unique(flags: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(flags))
