"""Unwraps Outlook's TNEF container (winmail.dat) into the files and body text it carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tnefparse import TNEF  # type: ignore[import-untyped]

from triage.domain.mime_charset import decode_bytes

TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})


@dataclass(frozen=True)
class TnefContent:
    """What a winmail.dat held: (filename, bytes) pairs and any plain or HTML body."""

    files: tuple[tuple[str | None, bytes], ...]
    text: str | None
    html: str | None


def is_tnef(content_type: str, filename: str | None) -> bool:
    return content_type in TNEF_TYPES or (filename or "").lower() == "winmail.dat"


def unwrap_tnef(data: bytes) -> TnefContent | str:
    """The container's content, or a defect string saying why it stays a plain attachment."""
    try:
        tnef = TNEF(data, do_checksum=False)
        files = tuple(
            (_filename(att), att.data)
            for att in tnef.attachments
            if isinstance(att.data, bytes) and att.data
        )
        text, html = _as_text(tnef.body), _as_text(tnef.htmlbody)
    except Exception as exc:
        # A third-party decoder fed hostile bytes can fail in any way (struct, index,
        # codec, recursion errors); every failure means the same thing: keep it whole.
        return f"TNEF winmail.dat undecodable ({type(exc).__name__}), kept as attachment"
    if not files and not text and not html:
        return "TNEF winmail.dat has no files and no plain or HTML body, kept as attachment"
    return TnefContent(files, text, html)


def _filename(att: Any) -> str | None:
    try:
        name = att.long_filename()
    except Exception:
        name = None  # the library decodes names as UTF-8 and fails on legacy codepages
    if isinstance(name, bytes):
        name = decode_bytes(name, None)[0]
    return name.strip("\x00").strip() or None if isinstance(name, str) else None


def _as_text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = decode_bytes(value, None)[0]
    if isinstance(value, str) and value.strip("\x00").strip():
        return value.replace("\x00", "")  # padding, and nothing a database text column takes
    return None
