"""Debian's Chromium driven by Playwright (no browser download), watching every request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Dialog, Page, Request, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Watched:
    """What a page did: every request it made and every dialog it tried to open."""

    page: Page
    origin: str
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        """Requests to anything but the console itself (data: URLs never leave the machine)."""
        return [
            url
            for url in self.requests
            if not url.startswith("data:") and _origin(url) != self.origin
        ]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def watched_page(browser: Browser, origin: str) -> Iterator[Watched]:
    context = browser.new_context(base_url=origin)
    page = context.new_page()
    watched = Watched(page=page, origin=origin)

    def on_request(request: Request) -> None:
        watched.requests.append(request.url)

    def on_dialog(dialog: Dialog) -> None:
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    context.on("request", on_request)
    page.on("dialog", on_dialog)
    try:
        yield watched
    finally:
        context.close()
