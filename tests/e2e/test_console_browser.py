"""The console in a real headless Chromium: a reviewer's round trip, and hostile mail kept inert."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from tests.e2e.browser import Watched, chromium, watched_page
from tests.e2e.console import ConsoleServer, running_console, runtime_of
from tests.e2e.world import World, seed_world
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import Draft, Message, Review
from triage.runtime import Runtime

pytestmark = pytest.mark.integration


@pytest.fixture
def rt(service_env: dict[str, str]) -> Runtime:
    return runtime_of(service_env)


@pytest.fixture
def world(rt: Runtime) -> World:
    return seed_world(rt)


@pytest.fixture
def console(service_env: dict[str, str], world: World, tmp_path: Path) -> Iterator[ConsoleServer]:
    with running_console(service_env, tmp_path / "web.log") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


def sign_in(w: Watched, email: str, password: str) -> None:
    w.page.goto("/review")
    expect(w.page).to_have_url(f"{w.origin}/signin?next=%2Freview")
    w.page.fill("#email", email)
    w.page.fill("#password", password)
    w.page.click("#signin")
    expect(w.page).to_have_url(f"{w.origin}/review")


def test_review_correct_approve_a_draft_see_stats_and_sign_out(
    console: ConsoleServer, world: World, rt: Runtime, browser: Browser
) -> None:
    admin, alice = world.admin, world.alice
    doubtful = alice.result_ids[1]
    with watched_page(browser, console.url) as w:
        page = w.page
        sign_in(w, admin.email, admin.password)
        page.goto("/stats")
        row = page.locator('#quality tr[data-model="openai/fake-model"]')
        expect(row.locator(".reviewed")).to_have_text("0")
        expect(row.locator(".agreement")).to_have_text("—")

        page.goto("/review")
        card = page.locator(f"#result-{doubtful}")
        expect(card.locator(".category")).to_have_text("fyi")
        card.locator("select[name=to_category]").select_option("meeting")
        card.locator("input[name=note]").fill("it is an invitation")
        card.locator("button.correct").click()
        expect(page).to_have_url(f"{console.url}/review")
        expect(page.locator(f"#result-{doubtful}")).to_have_count(0)

        page.goto(f"/messages/{alice.message_ids[1]}")
        expect(page.locator("#current-category")).to_have_text("meeting")
        page.fill("#draft-body", "Happy to meet on Tuesday.")
        page.click("#draft-approve")
        expect(page.locator("#draft-status")).to_have_text("approved")
        expect(page.locator("#draft-body")).to_have_value("Happy to meet on Tuesday.")

        page.goto("/stats")
        expect(row.locator(".reviewed")).to_have_text("1")
        expect(row.locator(".agreement")).to_have_text("0% (0/1)")
        expect(page.locator("#confusion td.off")).to_have_text("1")

        page.click("#signout")
        expect(page).to_have_url(f"{console.url}/signin")
        page.goto("/review")
        expect(page).to_have_url(f"{console.url}/signin?next=%2Freview")
        assert w.dialogs == [] and w.foreign_requests() == []
    with rt.db() as session:
        review = session.scalars(select(Review)).one()
        draft = session.scalars(select(Draft).where(Draft.message_id == alice.message_ids[1])).one()
    assert (review.result_id, review.reviewer_id, review.from_category, review.to_category) == (
        doubtful,
        admin.id,
        "fyi",
        "meeting",
    )
    assert review.note == "it is an invitation"
    assert (draft.status, draft.edited_body, draft.body) == (
        "approved",
        "Happy to meet on Tuesday.",
        "Thanks for alice meeting?.",
    )


class Canary(ThreadingHTTPServer):
    """A loopback server the hostile mail points at: any hit means something leaked."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canary.hits.append(self.path)
                self.send_response(200)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def canary() -> Iterator[Canary]:
    server = Canary()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def hostile_html(canary: str) -> str:
    return f"""<html><head>
<meta http-equiv="refresh" content="0;url={canary}/refresh">
<base href="{canary}/base/">
<link rel="stylesheet" href="{canary}/style.css">
<style>body {{ background: url({canary}/style-bg.png); }} @import url({canary}/import.css);</style>
<script>alert("script"); fetch("{canary}/fetch"); parent.document.title = "pwned";</script>
<script src="{canary}/remote.js"></script>
</head><body onload="alert('onload')">
<h1 id="greeting">Dear customer</h1>
<img src="{canary}/pixel.gif" width="1" height="1">
<img src="http://tracker.invalid/open.gif?u=1">
<img src="x" onerror="alert('onerror')">
<div style="background-image:url({canary}/div-bg.png)">styled</div>
<a id="js" href="javascript:alert('link')">verify your account</a>
<a id="web" href="{canary}/click">unsubscribe</a>
<form action="{canary}/form" method="post">
<input name="password"><button id="go">Log in</button></form>
<iframe src="{canary}/frame"></iframe>
<svg onload="alert('svg')"><image href="{canary}/svg.png"/></svg>
<video poster="{canary}/poster.jpg"></video>
<object data="{canary}/object.swf"></object>
</body></html>"""


def test_hostile_html_mail_renders_inert(
    console: ConsoleServer, world: World, rt: Runtime, browser: Browser, canary: Canary
) -> None:
    alice = world.alice
    message_id = alice.message_ids[0]
    with transaction(rt.db) as session:
        session.get_one(Message, message_id).html_body = hostile_html(canary.url)
    with watched_page(browser, console.url) as w:
        sign_in(w, alice.email, alice.password)
        w.page.goto(f"/messages/{message_id}")
        frame_element = w.page.locator("iframe.html")
        expect(frame_element).to_have_attribute("sandbox", "")
        frame = w.page.frame_locator("iframe.html")
        expect(frame.locator("#greeting")).to_have_count(0)  # ids are not on the allow-list
        expect(frame.locator("h1")).to_have_text("Dear customer")
        frame.locator("text=verify your account").click()
        frame.locator("text=unsubscribe").click()
        w.page.wait_for_load_state("networkidle")
        body = w.page.frames[1].content()
        title = w.page.title()
    assert w.dialogs == []
    assert canary.hits == []
    assert w.foreign_requests() == []
    assert title != "pwned"
    for needle in ("<script", "onerror", "onload", "javascript:", "tracker.invalid", "<form"):
        assert needle not in body
    # The plain web link stays readable, but clicking it opened nothing (no popups allowed).
    assert body.count(canary.url) == 1 and f'href="{canary.url}/click"' in body
