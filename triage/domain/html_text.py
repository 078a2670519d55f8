"""HTML to the plain text a person would see: nothing fetched or run, hidden content dropped."""

from __future__ import annotations

import re
import threading
from typing import Any, NamedTuple

from lxml import etree

from triage.domain.html_style import (
    NO_STYLE,
    TRANSPARENT,
    Color,
    parse_color,
    parse_style,
    same_color,
)


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Elements whose content is never shown as text (or is active content we must not surface).
# <embed> is absent on purpose: it is void, yet libxml2 nests the following text inside it.
_DROP = _names(
    "script style head title template noscript iframe frame frameset object applet "
    "svg canvas audio video math meta link base select option datalist"
)
# Blocks that stand apart with a blank line, and blocks that only start a new line.
_PARAGRAPH = _names("p h1 h2 h3 h4 h5 h6 ul ol dl table blockquote pre hr figure")
_LINE = _names(
    "div li dt dd tr caption section article header footer nav aside main address figcaption "
    "form fieldset legend center details summary body html thead tbody tfoot"
)
_LINK_SCHEMES = ("http://", "https://", "mailto:")
# libxml2 already stops nesting at 256 levels; this keeps our recursion bounded regardless.
_MAX_DEPTH = 300

_SPACES = re.compile(r"[ \t\n\r\f\v]+")
_EDGE_SPACES = re.compile(r" *\n *")
_RUN_SPACES = re.compile(r" {2,}")
_BLANK_LINES = re.compile(r"\n{3,}")
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
    "\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)

# lxml parser objects must not be shared between threads; each worker thread gets its own.
_local = threading.local()


class _Ctx(NamedTuple):
    """Inherited rendering state: colours and font size decide whether text is visible."""

    color: Color | None
    background: Color | None
    pre: bool
    tiny_font: bool = False


def strip_invisible(text: str) -> str:
    """Removes zero-width, bidi-control, tag and soft-hyphen characters used to hide text."""
    if text.isascii():
        return text
    return _INVISIBLE.sub("", text)


def html_to_text(html: str) -> str:
    """Renders HTML as readable plain text; never fetches, never executes, drops hidden text."""
    root = _parse(html)
    if root is None:
        return ""
    out: list[str] = []
    _render(root, _Ctx(None, None, pre=False), out, 0)
    return _finish("".join(out))


def _parser() -> Any:
    parser = getattr(_local, "parser", None)
    if parser is None:
        # no_network: never load a DTD or anything else; comments and PIs are dropped at parse.
        parser = etree.HTMLParser(
            encoding="utf-8",
            remove_comments=True,
            remove_pis=True,
            no_network=True,
            recover=True,
        )
        _local.parser = parser
    return parser


def _parse(html: str) -> Any:
    data = html.replace("\x00", "").encode("utf-8", "replace")
    if not data.strip():
        return None
    try:
        return etree.fromstring(data, _parser())
    except (etree.LxmlError, ValueError):
        return None


def _render(el: Any, ctx: _Ctx, out: list[str], depth: int) -> None:
    tag = el.tag
    if not isinstance(tag, str) or tag in _DROP or depth > _MAX_DEPTH:
        return
    inner = _element_ctx(el, tag, ctx)
    if inner is None:
        return
    if tag == "br":
        out.append("\n")
        return
    if tag == "img":
        _render_img(el, out)
        return
    breaks = 2 if tag in _PARAGRAPH else 1 if tag in _LINE else 0
    if breaks:
        _line_break(out, breaks)
        if tag == "li":
            out.append("- ")
    start = len(out)
    if el.text:
        _emit(el.text, inner, out)
    for child in el:
        _render(child, inner, out, depth + 1)
        if child.tail:
            _emit(child.tail, inner, out)
    if tag == "a":
        _link_suffix(el, out, start)
    elif tag in ("td", "th"):
        out.append(" ")
    if breaks:
        _line_break(out, breaks)


def _line_break(out: list[str], wanted: int) -> None:
    """Ends the current line so that `wanted` newlines separate it from what follows."""
    have = 0
    for frag in reversed(out):
        body = frag.rstrip(" ")
        if not body:
            continue  # whitespace between tags says nothing about lines
        have += len(body) - len(body.rstrip("\n"))
        if body.strip("\n") or have >= wanted:
            break
    else:
        return  # nothing written yet: no leading blank lines
    if have < wanted:
        out.append("\n" * (wanted - have))


def _element_ctx(el: Any, tag: str, ctx: _Ctx) -> _Ctx | None:
    """The context for el's content, or None when el and everything in it is hidden."""
    attrib = el.attrib
    if not attrib:
        return ctx._replace(pre=True) if tag == "pre" else ctx
    if "hidden" in attrib or attrib.get("aria-hidden", "").strip().lower() == "true":
        return None
    style = attrib.get("style")
    info = parse_style(style) if style else NO_STYLE
    if info.hidden:
        return None
    color = info.color or _attr_color(attrib, "color") or ctx.color
    background = info.background or _attr_color(attrib, "bgcolor") or ctx.background
    tiny = ctx.tiny_font if info.tiny_font is None else info.tiny_font
    return _Ctx(color, background, ctx.pre or tag == "pre", tiny)


def _attr_color(attrib: Any, name: str) -> Color | None:
    value = attrib.get(name)
    return parse_color(value) if value else None


def _emit(text: str, ctx: _Ctx, out: list[str]) -> None:
    color = ctx.color
    if ctx.tiny_font:
        return
    if color is not None and (
        color == TRANSPARENT or (ctx.background is not None and same_color(color, ctx.background))
    ):
        return
    out.append(text if ctx.pre else _SPACES.sub(" ", text))


def _render_img(el: Any, out: list[str]) -> None:
    # A 0x0 or 1x1 image is a tracking pixel or spacer; its alt text is not content.
    if el.get("width", "").strip() in ("0", "1") or el.get("height", "").strip() in ("0", "1"):
        return
    alt = _SPACES.sub(" ", el.get("alt", "")).strip()
    if alt:
        out.append(f"[image: {alt}]")


def _link_suffix(el: Any, out: list[str], start: int) -> None:
    href = _SPACES.sub("", el.get("href", ""))
    if not href.lower().startswith(_LINK_SCHEMES):
        return  # javascript:, data:, cid:, relative links: nothing useful or safe to show
    text = _SPACES.sub(" ", "".join(out[start:])).strip()
    if text and _comparable(text) != _comparable(href):
        out.append(f" ({href})")


def _comparable(url: str) -> str:
    url = url.lower()
    for prefix in (*_LINK_SCHEMES, "www."):
        url = url.removeprefix(prefix)
    return url.split("?", 1)[0] if url.count("@") == 1 else url.rstrip("/")


def _finish(text: str) -> str:
    text = strip_invisible(text.replace("\xa0", " ").replace("\r", ""))
    text = _RUN_SPACES.sub(" ", text)
    text = _EDGE_SPACES.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()
