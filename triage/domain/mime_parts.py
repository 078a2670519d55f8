"""Walks a parsed MIME tree into body text, the main HTML and attachments, within hard limits."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from email.message import Message
from urllib.parse import unquote

from triage.domain.email_headers import HeaderReader
from triage.domain.html_text import html_to_text
from triage.domain.mime_charset import decode_bytes
from triage.domain.mime_info import (
    PartInfo,
    count_parts,
    light_content_type,
    payload_bytes,
    read_part_info,
)
from triage.domain.mime_sniff import sniff_type
from triage.domain.mime_tnef import TnefContent, is_tnef, unwrap_tnef

# Hostile mail can carry tens of thousands of parts or nest forwards without end; past
# these limits the rest is counted, reported as a defect, and not looked at.
MAX_PARTS = 1000
MAX_MESSAGE_DEPTH = 5
MAX_NESTING = 40
_PKCS7 = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_ENCRYPTED_SMIME = frozenset({"enveloped-data", "authenveloped-data"})
_CID_REF = re.compile(r"cid:([^\"'\s>)]+)", re.IGNORECASE)
FORWARD_BANNER = "---- Forwarded message ----"


@dataclass(frozen=True)
class ParsedAttachment:
    """One leaf part that is not the message's body text."""

    filename: str | None
    declared_type: str
    sniffed_type: str | None
    size: int
    sha256: str
    content_id: str | None
    inline: bool
    data: bytes = field(repr=False)


def make_attachment(
    data: bytes, *, declared_type: str, filename: str | None, content_id: str | None, inline: bool
) -> ParsedAttachment:
    return ParsedAttachment(
        filename=filename,
        declared_type=declared_type,
        sniffed_type=sniff_type(data),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_id=content_id,
        inline=inline,
        data=data,
    )


@dataclass
class MimeWalk:
    """Everything gathered from the tree; `texts` are body chunks in reading order."""

    texts: list[str] = field(default_factory=list)
    html: str | None = None
    html_sources: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    encrypted: bool = False
    seen: int = 0
    ignored: int = 0

    def walk(self, part: Message, *, emit: bool = True, depth: int = 0, nest: int = 0) -> None:
        """Visits one part; `emit` says whether its text belongs in the body."""
        if self.seen >= MAX_PARTS:
            self.ignored += count_parts(part)
            return
        self.seen += 1
        self.defects.extend(type(d).__name__ for d in getattr(part, "defects", ()))
        info = read_part_info(part, self.defects)
        payload = part.get_payload()
        if isinstance(payload, list):
            children = [c for c in payload if isinstance(c, Message)]
            self._container(info, children, emit=emit, depth=depth, nest=nest)
            return
        try:
            self._leaf(part, info, emit=emit)
        except Exception as exc:
            # One undecodable part must not cost the rest of the message.
            self.defects.append(f"part {info.content_type} skipped ({type(exc).__name__})")

    def finish(self) -> None:
        """Marks attachments whose Content-ID the HTML references as inline."""
        if self.ignored:
            self.defects.append(f"too many parts, {self.ignored} ignored")
        if not any(a.content_id for a in self.attachments):
            return
        refs = {unquote(m).lower() for h in self.html_sources for m in _CID_REF.findall(h)}
        self.attachments = [
            replace(a, inline=True) if (a.content_id or "").lower() in refs else a
            for a in self.attachments
        ]

    def _container(
        self, info: PartInfo, children: list[Message], *, emit: bool, depth: int, nest: int
    ) -> None:
        if nest >= MAX_NESTING:
            skipped = sum(count_parts(c) for c in children)
            self.defects.append(f"MIME nesting deeper than {MAX_NESTING}, {skipped} parts ignored")
        elif info.maintype == "message":
            self._message(info, children, emit=emit, depth=depth, nest=nest)
        elif info.content_type == "multipart/alternative":
            self._alternative(children, emit=emit, depth=depth, nest=nest)
        else:
            if info.content_type == "multipart/encrypted":
                self.encrypted = True
            # In multipart/related only the root part is body; the rest are its resources.
            related = info.content_type == "multipart/related"
            for i, child in enumerate(children):
                self.walk(child, emit=emit and not (related and i), depth=depth, nest=nest + 1)

    def _alternative(self, children: list[Message], *, emit: bool, depth: int, nest: int) -> None:
        kinds = [light_content_type(c) for c in children]
        plain = kinds.index("text/plain") if "text/plain" in kinds else None
        # RFC 2046: the last alternative is the richest; used when no plain text is usable.
        richest = max((i for i, k in enumerate(kinds) if k != "text/plain"), default=None)
        chosen = plain
        if plain is not None:
            before = len(self.texts)
            self.walk(children[plain], emit=emit, depth=depth, nest=nest + 1)
            if not any(t.strip() for t in self.texts[before:]):
                chosen = richest
        else:
            chosen = richest
        for i, child in enumerate(children):
            if i != plain:
                self.walk(child, emit=emit and i == chosen, depth=depth, nest=nest + 1)

    def _message(
        self, info: PartInfo, children: list[Message], *, emit: bool, depth: int, nest: int
    ) -> None:
        if info.content_type not in ("message/rfc822", "message/global") or not children:
            self._report_block(info, children)
        elif depth >= MAX_MESSAGE_DEPTH:
            skipped = count_parts(children[0])
            self.defects.append(
                f"message/rfc822 nested deeper than {MAX_MESSAGE_DEPTH}, {skipped} parts ignored"
            )
        else:
            if emit:
                self.texts.append(forward_banner(children[0], self.defects))
            self.walk(children[0], emit=emit, depth=depth + 1, nest=nest + 1)

    def _report_block(self, info: PartInfo, blocks: list[Message]) -> None:
        """message/delivery-status and kin: header blocks, kept as one text attachment."""
        text = "\n\n".join("\n".join(f"{k}: {v}" for k, v in block.raw_items()) for block in blocks)
        data = text.encode("utf-8", "surrogateescape")
        self._attach(info, data)

    def _leaf(self, part: Message, info: PartInfo, *, emit: bool) -> None:
        data = payload_bytes(part)
        ctype = info.content_type
        # A multipart or message whose boundary was lost arrives as one text blob.
        textual = ctype in ("text/plain", "text/html") or info.maintype in ("multipart", "message")
        if textual and not info.is_attachment:
            self._body(info, data, emit=emit)
            return
        if is_tnef(ctype, info.filename):
            self._tnef(info, data, emit=emit)
            return
        if ctype in _PKCS7:
            self._smime(info)
        elif ctype == "application/pgp-encrypted":
            self.encrypted = True
        self._attach(info, data)

    def _body(self, info: PartInfo, data: bytes, *, emit: bool) -> None:
        text, defect = decode_bytes(data, info.charset)
        if defect:
            self.defects.append(defect)
        if "\x00" in text:
            # No reader ever sees a NUL, and Postgres text columns refuse to store one.
            text = text.replace("\x00", "")
            self.defects.append("NUL characters removed from the text")
        if info.content_type == "text/html":
            self.html_sources.append(text)
            if self.html is None:
                self.html = text
            if emit:
                self.texts.append(html_to_text(text))
        elif emit:
            self.texts.append(text)

    def _smime(self, info: PartInfo) -> None:
        smime = info.smime_type
        # Old clients omit smime-type; an unlabelled p7m is unreadable to us either way.
        if smime in _ENCRYPTED_SMIME or smime is None:
            self.encrypted = True
        elif smime == "signed-data":
            self.defects.append("opaque S/MIME signed-data not unwrapped")

    def _tnef(self, info: PartInfo, data: bytes, *, emit: bool) -> None:
        content = unwrap_tnef(data)
        if not isinstance(content, TnefContent):
            self.defects.append(content)
            self._attach(info, data)
            return
        for name, blob in content.files:
            self.attachments.append(
                make_attachment(
                    blob,
                    declared_type="application/octet-stream",
                    filename=name,
                    content_id=None,
                    inline=False,
                )
            )
        if content.html is not None:
            self.html_sources.append(content.html)
        if emit and (content.text or content.html):
            self.texts.append(content.text or html_to_text(content.html or ""))

    def _attach(self, info: PartInfo, data: bytes) -> None:
        self.attachments.append(
            make_attachment(
                data,
                declared_type=info.content_type,
                filename=info.filename,
                content_id=info.content_id,
                inline=info.disposition == "inline",
            )
        )


def forward_banner(inner: Message, defects: list[str]) -> str:
    """The short header block that introduces a forwarded message's text."""
    headers = HeaderReader(inner, defects)
    lines = [FORWARD_BANNER]
    for label, name in (("From", "from"), ("Subject", "subject"), ("Date", "date")):
        value = headers.text(name)
        if value:
            lines.append(f"{label}: {value}")
    return "\n".join(lines)
