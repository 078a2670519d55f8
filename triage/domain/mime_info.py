"""What one MIME part's own headers say (type, charset, filename, disposition), read safely."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

from triage.domain.html_text import strip_invisible

# Part headers are parsed from a cut copy so a giant parameter list stays cheap.
_RAW_CAP = 8000
_MAX_FILENAME = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SIMPLE_PARAM = re.compile(r';\s*([\w.-]+)\s*=\s*(?:"([^"\\]*)"|([^\s;"]+))')
_SIMPLE_HEADER = re.compile(
    r'^\s*([^\s;"]+)\s*((?:;\s*[\w.-]+\s*=\s*(?:"[^"\\]*"|[^\s;"]+)\s*)*);?\s*$'
)
_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


@dataclass(frozen=True)
class PartInfo:
    """The parsed Content-Type, -Disposition and -ID of one part."""

    content_type: str
    charset: str | None = None
    disposition: str | None = None
    filename: str | None = None
    content_id: str | None = None
    smime_type: str | None = None

    @property
    def maintype(self) -> str:
        return self.content_type.partition("/")[0]

    @property
    def is_attachment(self) -> bool:
        """Marked as an attachment, or named without being marked inline."""
        if self.disposition == "attachment":
            return True
        return self.filename is not None and self.disposition != "inline"


def read_part_info(part: Message, defects: list[str]) -> PartInfo:
    ctype, ct_params = _mime_header(part, "content-type", defects)
    disposition, cd_params = _mime_header(part, "content-disposition", defects)
    if ctype is None or not _TYPE.match(ctype):
        # Absent: the default for the context (message/rfc822 in a digest); garbage: text.
        ctype = (
            part.get_default_type() if raw_header(part, "content-type") is None else "text/plain"
        )
    return PartInfo(
        content_type=ctype,
        charset=ct_params.get("charset"),
        disposition=disposition,
        filename=clean_filename(cd_params.get("filename") or ct_params.get("name")),
        content_id=_content_id(raw_header(part, "content-id")),
        smime_type=(ct_params.get("smime-type") or "").lower() or None,
    )


def raw_header(part: Message, name: str) -> str | None:
    """The first raw value of a header, without going through the (slow) policy parser."""
    for key, value in part.raw_items():
        if key.lower() == name:
            return value if isinstance(value, str) else None
    return None


def light_content_type(part: Message) -> str:
    """The content type from the raw header alone; good enough to choose among alternatives."""
    raw = raw_header(part, "content-type")
    if raw is None:
        return part.get_default_type()
    value = raw.partition(";")[0].strip().lower()
    return value if _TYPE.match(value) else "text/plain"


def payload_bytes(part: Message) -> bytes:
    """The decoded payload; the undecoded bytes when the transfer encoding is broken."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None  # the stdlib decoders (uu, base64 oddities) can raise on garbage
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def count_parts(part: Message) -> int:
    """How many parts a subtree holds, counted without recursion (for the "ignored" defect)."""
    stack, count = [part], 0
    while stack:
        current = stack.pop()
        count += 1
        payload = current.get_payload()
        if isinstance(payload, list):
            stack.extend(p for p in payload if isinstance(p, Message))
    return count


def clean_filename(name: object) -> str | None:
    """A display-safe base name: encoded words decoded, paths, controls and bidi tricks gone."""
    if not isinstance(name, str):
        return None
    if "=?" in name:
        name = _decode_words(name)
    name = _CONTROL.sub("", strip_invisible(name)).replace("\\", "/").rsplit("/", 1)[-1]
    return name.strip()[:_MAX_FILENAME] or None


def _decode_words(name: str) -> str:
    try:
        return str(make_header(decode_header(name)))
    except Exception:
        return name  # keep the undecoded text; a strange name is better than none


def _mime_header(part: Message, name: str, defects: list[str]) -> tuple[str | None, dict[str, str]]:
    """A Content-Type/-Disposition as (lower-cased value, parameters); (None, {}) if absent."""
    raw = raw_header(part, name)
    if raw is None:
        return None, {}
    raw = raw[:_RAW_CAP]
    simple = _simple_mime_header(raw)
    if simple is not None:
        return simple
    try:
        header: Any = policy.default.header_fetch_parse(name, raw)
        value = getattr(header, "content_type", None) or getattr(header, "content_disposition", "")
        params = {str(k).lower(): str(v) for k, v in header.params.items()}
    except Exception:
        defects.append(f"header {name} unparseable")
        return None, {}
    return (value.lower() if isinstance(value, str) else None), params


def _simple_mime_header(raw: str) -> tuple[str, dict[str, str]] | None:
    """Plain ASCII values without encoded words, RFC 2231 or comments, read with a regex;
    the policy parser gives the same answer for these at many times the cost."""
    if not raw.isascii() or "=?" in raw or "(" in raw or "\\" in raw:
        return None
    match = _SIMPLE_HEADER.match(raw)
    if match is None:
        return None
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _SIMPLE_PARAM.finditer(match.group(2))
    }
    return match.group(1).lower(), params


def _content_id(raw: str | None) -> str | None:
    if not raw:
        return None
    value = _CONTROL.sub("", "".join(raw.split())).strip("<>")
    return value[:250] or None
