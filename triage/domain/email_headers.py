"""Reads a message's headers defensively: decoded, length-capped values, addresses and dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from triage.domain.html_text import strip_invisible
from triage.domain.mime_charset import decode_strict

MAX_HEADER_CHARS = 2000
# The year 9999 in one zone can be 10000 in another: psycopg, like Python, cannot load it.
_LAST_YEAR = 9999
# Raw values are cut before parsing so a 5 MB header costs no more than a normal one;
# encoded words roughly triple the length of the text they carry, hence the headroom.
_RAW_CAP = 4 * MAX_HEADER_CHARS
# A fold (line break plus indentation) reads as one space; stray CR/LF are dropped, and so
# are NULs, which nothing displays and Postgres text columns refuse.
_FOLD = re.compile(r"[\r\n]+[ \t]*|\x00+")
_SURROGATES = re.compile("[\udc80-\udcff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# "addr@host", "Plain Name <addr@host>", "\"Quoted, Name\" <addr@host>" and the old
# "addr@host (Comment)" need no decoding, so they are read with regexes; the (slow) policy
# address parser would hand back exactly the same text (the corpus tests compare the two).
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_ADDR_SPEC = rf"([{_ATEXT}.]+@[A-Za-z0-9.-]+)"
_PLAIN_ADDRESS = re.compile(rf"^(?:([{_ATEXT} ]*?)\s*<)?{_ADDR_SPEC}(?(1)>|)$")
_QUOTED_ADDRESS = re.compile(rf'^"([^"\\]*)"\s*<{_ADDR_SPEC}>$')
_COMMENTED_ADDRESS = re.compile(rf"^{_ADDR_SPEC}\s*\([^()\\]*\)$")  # the comment is dropped
# RFC 5322 specials: a display name holding one is written quoted.
_SPECIALS = frozenset('()<>@,:;."[]')


class HeaderReader:
    """One message's headers, read once; every accessor degrades instead of raising."""

    def __init__(self, msg: Message, defects: list[str], charset_hint: str | None = None):
        self._raw: dict[str, list[str]] = {}
        self._defects = defects
        self._hint = charset_hint
        for name, value in msg.raw_items():
            self._raw.setdefault(name.lower(), []).append(value if isinstance(value, str) else "")

    def raw(self, name: str) -> str | None:
        """The first value, unfolded, cut to a safe length, 8-bit bytes decoded; None if absent."""
        values = self._raw.get(name)
        return self._prepare(name, values[0]) if values else None

    def raw_all(self, name: str) -> list[str]:
        return [self._prepare(name, v) for v in self._raw.get(name, ())]

    def text(self, name: str) -> str | None:
        """The decoded value (RFC 2047 words resolved), or None when the header is absent."""
        raw = self.raw(name)
        if raw is None:
            return None
        if raw.isascii() and "=?" not in raw:
            return _clean(raw)  # nothing to decode: skip the (slow) structured parser
        return _clean(self._parsed(name, raw) or raw)

    def addresses(self, name: str) -> tuple[str, ...]:
        """Every address in every copy of the header as "Name <addr>"; raw text if none parse."""
        found: list[str] = []
        for raw in self.raw_all(name):
            found.extend(self._parse_addresses(name, raw))
        return tuple(dict.fromkeys(_clean(a) for a in found if a.strip()))

    def date(self) -> datetime | None:
        """The Date header as an aware datetime (no zone means UTC); None if absent or garbage."""
        raw = self.raw("date")
        if not raw:
            return None
        try:
            value = parsedate_to_datetime(raw)
            value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
            if value.astimezone(UTC).year >= _LAST_YEAR:  # may not exist in every time zone
                raise ValueError("beyond what databases and drivers can read back")
        except (ValueError, TypeError, IndexError, OverflowError):
            self._defects.append("header Date unparseable")
            return None
        return value

    def _prepare(self, name: str, value: str) -> str:
        if len(value) > _RAW_CAP:
            self._defects.append(f"header {name} longer than {_RAW_CAP} chars, cut")
            value = value[:_RAW_CAP]
        value = _FOLD.sub(" ", value).strip()
        if _SURROGATES.search(value):
            self._defects.append(f"header {name} has raw 8-bit bytes")
            value = _decode_8bit(value, self._hint)
        return value

    def _parsed(self, name: str, raw: str) -> str | None:
        # The policy's parsers raise on some garbage (IndexError on odd Message-IDs,
        # for one); whatever they raise, the raw text is still worth keeping.
        try:
            return str(policy.default.header_fetch_parse(name, raw))
        except Exception:
            self._defects.append(f"header {name} unparseable")
        try:
            return str(make_header(decode_header(raw)))
        except Exception:
            return None

    def _parse_addresses(self, name: str, raw: str) -> list[str]:
        plain = _plain_addresses(raw)
        if plain is not None:
            return plain
        try:
            header = policy.default.header_fetch_parse(name, raw)
            found = [str(a) for a in header.addresses]
        except Exception:
            self._defects.append(f"header {name} unparseable")
            found = [f"{n} <{a}>" if n else a for n, a in getaddresses([raw]) if a]
        if found or ":" in raw:
            return found  # a group such as "undisclosed-recipients:;" legitimately has none
        return [self._parsed(name, raw) or raw]  # "whatever is there" beats nothing


def _plain_addresses(raw: str) -> list[str] | None:
    """The common address lists, as the policy parser would render them; None for the rest."""
    if not raw.isascii() or "=?" in raw or any(ch in raw for ch in ":\\;"):
        return None
    if raw.count('"') % 2:
        return None
    found: list[str] = []
    for item in _split_list(raw) if raw.strip() else ():
        address = _simple_address(item.strip())
        if address is None:
            return None
        found.append(address)
    return found


def _split_list(raw: str) -> list[str]:
    """Splits at commas outside quoted display names (the quotes are balanced)."""
    items: list[str] = []
    current: list[str] = []
    for index, piece in enumerate(raw.split('"')):
        if index % 2:  # inside quotes
            current.append(f'"{piece}"')
            continue
        first, *rest = piece.split(",")
        current.append(first)
        for part in rest:
            items.append("".join(current))
            current = [part]
    items.append("".join(current))
    return items


def _simple_address(item: str) -> str | None:
    if match := _PLAIN_ADDRESS.match(item):
        display = " ".join((match.group(1) or "").split())
    elif match := _QUOTED_ADDRESS.match(item):
        display = match.group(1)
        if not _SPECIALS.isdisjoint(display):
            return f'"{display}" <{match.group(2)}>'
    elif match := _COMMENTED_ADDRESS.match(item):
        return match.group(1)
    else:
        return None
    return f"{display} <{match.group(2)}>" if display else match.group(2)


def _decode_8bit(value: str, hint: str | None) -> str:
    """Raw 8-bit header bytes: UTF-8 (RFC 6532) if they fit, else the body's charset or a guess."""
    data = value.encode("utf-8", "surrogateescape")
    # No charset guessing here: a guesser is slow and unreliable on a few dozen bytes.
    return (
        decode_strict(data, "utf-8")
        or decode_strict(data, hint)
        or data.decode("cp1252", "replace")
    )


def _clean(value: str) -> str:
    value = strip_invisible(_CONTROL.sub(" ", value.replace("\t", " "))).strip()
    return value[:MAX_HEADER_CHARS]
