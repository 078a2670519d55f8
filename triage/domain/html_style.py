"""Decides from inline CSS and presentational attributes whether HTML content is invisible."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

Color = tuple[int, int, int]
# Text painted in a fully transparent colour is invisible whatever the background.
TRANSPARENT: Color = (-1, -1, -1)

# Text this close to its background (per channel, 0-255) is unreadable to a person but
# not to a model: "near white on white" is the classic way to smuggle instructions in.
_SAME_COLOR_TOLERANCE = 24
# Below this rendered size (CSS px) text cannot be read; 1px fonts are a common trick.
_MIN_FONT_PX = 2.0
# Content pushed this far off-screen is never shown.
_OFFSCREEN_PX = -500.0

_NAMED: dict[str, Color] = {
    "white": (255, 255, 255),
    "snow": (255, 250, 250),
    "ivory": (255, 255, 240),
    "ghostwhite": (248, 248, 255),
    "whitesmoke": (245, 245, 245),
    "floralwhite": (255, 250, 240),
    "mintcream": (245, 255, 250),
    "azure": (240, 255, 255),
    "aliceblue": (240, 248, 255),
    "seashell": (255, 245, 238),
    "linen": (250, 240, 230),
    "black": (0, 0, 0),
    "silver": (192, 192, 192),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "lightgray": (211, 211, 211),
    "lightgrey": (211, 211, 211),
    "red": (255, 0, 0),
    "maroon": (128, 0, 0),
    "yellow": (255, 255, 0),
    "lime": (0, 255, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "navy": (0, 0, 128),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
}

_HEX = re.compile(r"#([0-9a-f]{3,8})\b")
_RGB = re.compile(r"rgba?\(\s*([^)]*)\)")
_WORD = re.compile(r"[a-z]+")
_LENGTH = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))\s*(px|pt|em|rem|%|ex|ch|vw|vh)?$")
_UNIT_PX = {"px": 1.0, "pt": 4 / 3, "em": 16.0, "rem": 16.0, "%": 0.16, "ex": 8.0, "ch": 8.0}


class StyleInfo(NamedTuple):
    """What one element's inline style says about visibility and colours."""

    hidden: bool = False
    color: Color | None = None
    background: Color | None = None
    # Font size is inherited and children may set it back (layouts put font-size:0 on a
    # cell to kill gaps between inline blocks), so it is passed down, not a hidden flag.
    tiny_font: bool | None = None


NO_STYLE = StyleInfo()


def same_color(fg: Color, bg: Color) -> bool:
    """True when text in colour fg cannot be told apart from background bg."""
    return all(abs(a - b) <= _SAME_COLOR_TOLERANCE for a, b in zip(fg, bg, strict=True))


def parse_color(value: str) -> Color | None:
    """A CSS or HTML colour value as RGB, TRANSPARENT, or None when not understood."""
    value = value.strip().lower()
    if value == "transparent":
        return TRANSPARENT
    if match := _HEX.search(value):
        return _hex_color(match.group(1))
    if match := _RGB.search(value):
        return _rgb_color(match.group(1))
    for word in _WORD.findall(value):
        if word in _NAMED:
            return _NAMED[word]
        if word == "transparent":
            return TRANSPARENT
    return None


def _hex_color(digits: str) -> Color | None:
    if len(digits) in (3, 4):
        digits = "".join(ch * 2 for ch in digits)
    if len(digits) not in (6, 8):
        return None
    if len(digits) == 8 and digits[6:] == "00":
        return TRANSPARENT
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def _rgb_color(args: str) -> Color | None:
    parts = [p for p in re.split(r"[\s,/]+", args) if p]
    if len(parts) < 3:
        return None
    try:
        channels = [_channel(p) for p in parts[:3]]
        if len(parts) > 3 and float(parts[3].rstrip("%")) == 0:
            return TRANSPARENT
    except ValueError:
        return None
    return (channels[0], channels[1], channels[2])


def _channel(text: str) -> int:
    if text.endswith("%"):
        return max(0, min(255, round(float(text[:-1]) * 2.55)))
    return max(0, min(255, round(float(text))))


def length_px(value: str) -> float | None:
    """A CSS length in px (em taken as 16px), or None when it is not a plain length."""
    match = _LENGTH.match(value.strip())
    if not match:
        return None
    number = float(match.group(1))
    unit = match.group(2)
    if unit is None or unit in ("vw", "vh"):
        # Only a bare 0 is meaningful without a unit; viewport units we cannot resolve.
        return number if number == 0 else None
    return number * _UNIT_PX[unit]


@lru_cache(maxsize=2048)
def parse_style(style: str) -> StyleInfo:
    """Reads one inline style attribute; cached because newsletters repeat the same styles."""
    decls: dict[str, str] = {}
    for item in style.split(";"):
        name, sep, value = item.partition(":")
        if sep:
            value = value.replace("!important", "").strip().lower()
            decls[name.strip().lower()] = value
    color = parse_color(decls["color"]) if "color" in decls else None
    bg_value = decls.get("background-color") or decls.get("background")
    background = parse_color(bg_value) if bg_value else None
    if background == TRANSPARENT:
        background = None  # a transparent background shows the ancestor's colour
    size = length_px(decls["font-size"]) if "font-size" in decls else None
    tiny = None if size is None else size < _MIN_FONT_PX
    return StyleInfo(_is_hidden(decls), color, background, tiny)


def _is_hidden(decls: dict[str, str]) -> bool:
    if decls.get("display") == "none" or decls.get("mso-hide") == "all":
        return True
    if decls.get("visibility") in ("hidden", "collapse"):
        return True
    if _tiny(decls.get("opacity"), 0.05, percent=True):
        return True
    if _collapsed_box(decls) or "scale(0" in decls.get("transform", ""):
        return True
    return _offscreen(decls)


def _tiny(value: str | None, limit: float, *, percent: bool) -> bool:
    if value is None:
        return False
    try:
        number = float(value[:-1]) / 100 if percent and value.endswith("%") else float(value)
    except ValueError:
        return False
    return number <= limit


def _collapsed_box(decls: dict[str, str]) -> bool:
    """A zero-sized box whose overflow is clipped shows nothing of its content."""
    if decls.get("overflow", decls.get("overflow-y", "")) not in ("hidden", "clip"):
        return False
    for prop in ("max-height", "height", "width", "max-width"):
        if prop in decls and length_px(decls[prop]) == 0:
            return True
    return False


def _offscreen(decls: dict[str, str]) -> bool:
    for prop in ("text-indent", "left", "top", "margin-left", "margin-top"):
        if prop in decls:
            px = length_px(decls[prop])
            if px is not None and px <= _OFFSCREEN_PX:
                return True
    return False
