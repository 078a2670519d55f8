"""Drafts in the owner's voice: clean the model's reply, keep only known links, sample sent mail."""

from __future__ import annotations

import re
from dataclasses import dataclass

from triage.domain.policy import URL

# Lines a chat model puts around the reply that the owner would have to delete by hand.
_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|absolutely|okay|ok)\b[!,.]*\s*)?"
    r"(?:here(?:'s| is| are)\b[^\n]{0,80}?\b(?:draft|reply|response|answer|email|version)\b"
    r"[^\n]{0,40}|(?:draft(?:ed)? (?:reply|response)|reply|draft|response)\s*"
    r"|hier (?:ist|ein)[^\n]{0,60}(?:entwurf|antwort)[^\n]{0,20}"
    r"|voici[^\n]{0,60}(?:brouillon|réponse)[^\n]{0,20})[:.!]?\s*$",
    re.IGNORECASE,
)
_SURE_ONLY = re.compile(r"^\s*(sure|certainly|of course|absolutely)[!.,]*\s*$", re.IGNORECASE)
_SUBJECT_LINE = re.compile(r"^\s*(subject|betreff|objet|asunto)\s*:", re.IGNORECASE)
_META_TAIL = re.compile(
    r"^\s*(?:let me know if (?:you(?:'d| would)? (?:like|want|need)|there(?:'s| is)|i can)"
    r"|feel free to (?:adjust|edit|modify|change|tweak)|i hope this (?:helps|works)"
    r"|(?:you )?(?:can|may) (?:adjust|edit|modify|tweak) (?:this|the draft|it)"
    r"|(?:note|hinweis): (?:i|this draft|the draft)|is there anything else)",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*(```|~~~|---+|\*\*\*+)\s*\w*\s*$")
_QUOTED = re.compile(r"^\s*>")
# "On Mon, 3 Jun 2024, Alice wrote:" and the usual translations; the quote follows it.
_ATTRIBUTION = re.compile(
    r"^\s*(on .{0,120}wrote:|am .{0,120}schrieb.{0,80}:|le .{0,120}a écrit\s*:|"
    r"-{2,}\s*(original message|ursprüngliche nachricht|message d'origine)\s*-{2,}|"
    r"from: .+|von: .+|de: .+)\s*$",
    re.IGNORECASE,
)
_SIGNATURE = re.compile(r"^(-- ?|__+)$")
LINK_REMOVED = "[link removed]"


@dataclass(frozen=True)
class CleanDraft:
    body: str
    flags: tuple[str, ...]


def strip_meta(body: str) -> str:
    """The reply without "Here is a draft:" openers, fences, subject lines, "Let me know" tails."""
    lines = body.strip().strip('"“”').splitlines()
    while lines and (
        _PREAMBLE.match(lines[0])
        or _SURE_ONLY.match(lines[0])
        or _FENCE.match(lines[0])
        or _SUBJECT_LINE.match(lines[0])
        or not lines[0].strip()
    ):
        lines.pop(0)
    while lines and (
        _META_TAIL.match(lines[-1]) or _FENCE.match(lines[-1]) or not lines[-1].strip()
    ):
        lines.pop()
    return "\n".join(lines).strip()


def _normal_url(url: str) -> str:
    return url.rstrip(".,;:!?)>]'\"").lower().removesuffix("/")


def keep_known_links(body: str, thread_text: str) -> tuple[str, bool]:
    """Replace links that appear nowhere in the thread; True when one was removed."""
    known = {_normal_url(url) for url in URL.findall(thread_text)}
    removed = False

    def swap(match: re.Match[str]) -> str:
        nonlocal removed
        url = match.group(0)
        core = _normal_url(url)
        if core in known:
            return url
        removed = True
        return LINK_REMOVED + url[len(url.rstrip(".,;:!?)>]'\"")) :]

    return URL.sub(swap, body), removed


def clean_draft(body: str, *, thread_text: str) -> CleanDraft:
    """Everything code does to a model's draft before it is stored (it is never sent)."""
    text = strip_meta(body)
    text, removed = keep_known_links(text, thread_text)
    return CleanDraft(body=text, flags=("link_removed",) if removed else ())


def own_words(text: str) -> str:
    """What the owner wrote in a sent message: no quoted reply, no forwarded part, no signature."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if _SIGNATURE.match(line.rstrip()) or _ATTRIBUTION.match(line):
            break
        if not _QUOTED.match(line):
            kept.append(line.rstrip())
    return "\n".join(kept).strip()
