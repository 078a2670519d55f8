"""Hostile mail HTML made inert: an allow-list sanitizer (nh3), no remote resources at all.

The result is served on its own route, in a sandboxed frame (no scripts, opaque origin), with
a Content-Security-Policy that allows only inline styles and data: images, so even something
the sanitizer missed could neither run nor fetch anything.
"""

from __future__ import annotations

import re

import nh3

BODY_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'; sandbox"
)

_TAGS = (nh3.ALLOWED_TAGS - {"area", "map", "img"}) | {"img", "font", "center", "tfoot"}
_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "title", "dir", "lang", "align"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "font": {"color", "size", "face"},
    "td": {"colspan", "rowspan", "valign", "width", "bgcolor"},
    "th": {"colspan", "rowspan", "valign", "width", "bgcolor"},
    "table": {"width", "border", "cellpadding", "cellspacing", "bgcolor"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type"},
}
# Layout and text styling only: nothing that can name a URL (background, list-style-image).
_STYLE_PROPERTIES = {
    *("color", "background-color", "font", "font-family", "font-size", "font-style"),
    *("font-weight", "line-height", "letter-spacing", "text-align", "text-decoration"),
    *("text-transform", "text-indent", "vertical-align", "white-space", "word-break"),
    *("margin", "margin-top", "margin-right", "margin-bottom", "margin-left"),
    *("padding", "padding-top", "padding-right", "padding-bottom", "padding-left"),
    *("border", "border-top", "border-right", "border-bottom", "border-left"),
    *("border-color", "border-style", "border-width", "border-collapse", "border-spacing"),
    *("width", "max-width", "min-width", "height", "display"),
}
_LINK_SCHEMES = ("http:", "https:", "mailto:")
_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]+$", re.I)
_DROPPED = {"script", "style", "title", "template", "noscript", "textarea", "select", "object"}


def _filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href":
        return value if value.strip().lower().startswith(_LINK_SCHEMES) else None
    if tag == "img" and attribute == "src":
        # Remote images are trackers as often as not: only images inside the mail survive.
        return value if _DATA_IMAGE.match(value.strip()) else None
    return value


def sanitize(html: str) -> str:
    """The mail's HTML with every script, handler, form, remote URL and meta refresh removed."""
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags=_DROPPED,
        attributes=_ATTRIBUTES,
        attribute_filter=_filter,
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
        url_schemes={"http", "https", "mailto", "data"},
        filter_style_properties=_STYLE_PROPERTIES,
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )


def framed_document(html: str) -> str:
    """A whole document for the frame: the sanitized body and a readable default style."""
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        "<style>body{font:14px/1.45 system-ui,sans-serif;margin:12px;color:#111;"
        "overflow-wrap:anywhere}img{max-width:100%;height:auto}</style></head><body>"
        + sanitize(html)
        + "</body></html>"
    )
