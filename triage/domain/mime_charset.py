"""Decodes MIME bytes to text whatever charset is declared, and says what had to be guessed."""

from __future__ import annotations

import codecs
from functools import lru_cache

from charset_normalizer import from_bytes

# Labels mail clients write that Python spells differently, and charsets that senders
# mislabel with a narrower sibling (the WHATWG encoding standard maps them the same way).
_ALIASES = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso_8859-1": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "big5": "cp950",
    "chinesebig5": "cp950",
    "x-x-big5": "cp950",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
}
# Codecs that are not character sets at all; a hostile label must not reach them.
_NOT_CHARSETS = frozenset(
    {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "mbcs"}
)
# charset-normalizer's cost grows with input; this much is plenty to decide a charset.
_GUESS_BYTES = 16 * 1024
# A declared charset that fails on a few stray bytes is still a better bet than a guess:
# guessers mistake short Russian or Chinese text for some other legacy codepage.
_MAX_BAD_RATIO = 0.02


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """The text, and a defect string when the declared charset was missing, unknown or wrong."""
    label = _clean_label(charset)
    candidates = _candidates(label)
    for codec in candidates:
        try:
            return data.decode(codec), None
        except UnicodeDecodeError:
            continue
    if label is None:
        return _fallback(data, "no charset and not utf-8")
    if not candidates:
        return _fallback(data, f"unknown charset {label}")
    problem = f"charset {label} does not fit the bytes"
    for codec in [*candidates, "utf-8"]:
        text = data.decode(codec, errors="replace")
        if text.count("\ufffd") <= _MAX_BAD_RATIO * len(text):
            return text, f"{problem}, decoded as {codec} with some bytes replaced"
    return _fallback(data, problem)


def decode_strict(data: bytes, charset: str | None) -> str | None:
    """The text if the bytes are valid in the charset (or its usual superset), else None."""
    for codec in _candidates(_clean_label(charset)) if charset else ():
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return None


def _clean_label(charset: str | None) -> str | None:
    if not charset:
        return None
    label = charset.strip().strip("\"'").strip().lower()
    return label[:40] or None


def _candidates(label: str | None) -> list[str]:
    if label is None:
        return ["ascii", "utf-8"]
    found = [c for c in (_codec(_ALIASES.get(label, label)), _codec(label)) if c]
    if found and found[0] == "ascii":
        found.append("utf-8")  # 8-bit text labelled us-ascii is nearly always utf-8
    return list(dict.fromkeys(found))


@lru_cache(maxsize=256)
def _codec(label: str) -> str | None:
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError):
        return None
    try:
        b"a".decode(name)  # raises LookupError for bytes-to-bytes codecs such as base64
    except LookupError:
        return None
    except UnicodeDecodeError:
        pass  # a real text codec that just dislikes this byte (utf-16, utf-32)
    return None if name in _NOT_CHARSETS else name


def _fallback(data: bytes, problem: str) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), f"{problem}, decoded as utf-8"
    except UnicodeDecodeError:
        pass
    guess = from_bytes(data[:_GUESS_BYTES]).best()
    codec = _codec(guess.encoding) if guess is not None else None
    if codec:
        text = data.decode(codec, errors="replace")
        return text, f"{problem}, decoded as {codec} via charset-normalizer"
    return data.decode("cp1252", errors="replace"), f"{problem}, decoded as cp1252 with errors"
