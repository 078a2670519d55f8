"""The mail HTML sanitizer: hostile markup comes out inert, ordinary formatting survives."""

from __future__ import annotations

import pytest

from triage.web.html_body import BODY_CSP, framed_document, sanitize

HOSTILE = [
    ("<script>alert(1)</script>x", "alert"),
    ('<img src="x" onerror="alert(1)">', "onerror"),
    ('<body onload="alert(1)">x</body>', "onload"),
    ('<a href="javascript:alert(1)">x</a>', "javascript:"),
    ('<a href="JaVaScRiPt&#58;alert(1)">x</a>', "alert"),
    ('<a href="data:text/html,<script>alert(1)</script>">x</a>', "data:text"),
    ('<div style="background-image:url(http://t.example/p.gif)">x</div>', "url("),
    ('<div style="background:url(http://t.example/p.gif)">x</div>', "t.example"),
    ("<style>body{background:url(http://t.example/x)}</style>x", "t.example"),
    ('<link rel="stylesheet" href="http://t.example/s.css">', "t.example"),
    ('<meta http-equiv="refresh" content="0;url=http://t.example/">', "refresh"),
    ('<form action="http://t.example/"><input name="pw"><button>Go</button></form>', "<form"),
    ('<img src="http://t.example/pixel.gif" width="1" height="1">', "t.example"),
    ('<img srcset="http://t.example/a.png 1x">', "t.example"),
    ('<iframe src="http://t.example/"></iframe>', "iframe"),
    ('<object data="http://t.example/x.swf"></object>', "t.example"),
    ('<svg onload="alert(1)"><use href="http://t.example/#x"/></svg>', "t.example"),
    ('<base href="http://t.example/">', "t.example"),
    ('<p onclick="alert(1)" onmouseover="alert(2)">p</p>', "alert"),
    ('<video poster="http://t.example/p.jpg"></video>', "t.example"),
    ('<table background="http://t.example/bg.gif"><tr><td>x</td></tr></table>', "t.example"),
    ("<!--[if gte mso 9]><img src=http://t.example/x><![endif]-->", "t.example"),
]


@pytest.mark.parametrize(("html", "must_not_contain"), HOSTILE)
def test_hostile_markup_is_removed(html: str, must_not_contain: str) -> None:
    cleaned = sanitize(html).lower()
    assert must_not_contain.lower() not in cleaned
    assert "<script" not in cleaned and " on" not in cleaned.replace("noopener", "")


def test_ordinary_formatting_and_safe_links_survive() -> None:
    cleaned = sanitize(
        '<p style="color:red;font-weight:bold">Hi <b>you</b></p>'
        '<a href="https://example.test/a?b=1">link</a>'
        '<table><tr><td colspan="2">c</td></tr></table>'
    )
    assert 'style="color:red;font-weight:bold"' in cleaned
    assert "<b>you</b>" in cleaned
    assert 'href="https://example.test/a?b=1"' in cleaned
    assert 'rel="noopener noreferrer nofollow"' in cleaned and 'target="_blank"' in cleaned
    assert '<td colspan="2">c</td>' in cleaned


def test_only_inline_data_images_keep_their_source() -> None:
    inline = "data:image/png;base64,iVBORw0KGgo="
    cleaned = sanitize(f'<img src="{inline}" alt="logo"><img src="cid:part1" alt="cid">')
    assert f'src="{inline}"' in cleaned
    assert "cid:" not in cleaned and 'alt="cid"' in cleaned
    assert "data:image/svg" not in sanitize('<img src="data:image/svg+xml;base64,PHN2Zz4=">')


def test_the_frame_document_and_its_policy_allow_nothing_remote() -> None:
    document = framed_document("<p>hello</p>")
    assert document.startswith("<!doctype html>") and "<p>hello</p>" in document
    assert "default-src 'none'" in BODY_CSP and "img-src data:" in BODY_CSP
    assert "sandbox" in BODY_CSP and "script-src" not in BODY_CSP
