"""The messages list and the review queue: every filter, walked page by page through keysets."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2 as httpx
import pytest

from tests.e2e.console import (
    ConsoleServer,
    console_env,
    empty_database,
    running_console,
    runtime_of,
    sign_in,
)
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import MailAccount, Message, Review, TriageResult, User
from triage.adapters.passwords import hash_password
from triage.runtime import Runtime

pytestmark = pytest.mark.integration
PAGE = 7
CATEGORIES = ("fyi", "receipt", "newsletter", "suspicious")
MODELS = ("fake-model", "other-model")
STATUSES = ("triaged", "drafted", "failed")


@dataclass(frozen=True)
class Row:
    id: int
    user: str
    account: int
    status: str
    subject: str
    sender: str
    sent: datetime
    category: str | None  # of the newest result
    confidence: float | None
    model: str | None
    result_id: int | None
    injection: bool
    reviewed: bool


@pytest.fixture(scope="module")
def env(
    migrated_pg: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    empty_database(migrated_pg)
    env = console_env(migrated_pg, redis_url, tmp_path_factory.mktemp("console"))
    env["TRIAGE_WEB_PAGE_SIZE"] = str(PAGE)
    return env


@pytest.fixture(scope="module")
def rows(env: dict[str, str]) -> list[Row]:
    return seed_many(runtime_of(env))


@pytest.fixture(scope="module")
def server(
    env: dict[str, str], rows: list[Row], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleServer]:
    with running_console(env, tmp_path_factory.mktemp("log") / "web.log") as running:
        yield running


def seed_many(rt: Runtime, count: int = 90) -> list[Row]:
    """Mail for two users over three accounts; some with two results (a re-run), some none."""
    pick = random.Random(7)
    found: list[Row] = []
    with transaction(rt.db) as session:
        accounts: list[tuple[int, str]] = []
        for email in ("dana@example.test", "erin@example.test"):
            user = User(
                email=email,
                password_hash=hash_password("pw-" + email),
                is_admin=email.startswith("dana"),
            )
            session.add(user)
            session.flush()
            for n in range(2 if email.startswith("dana") else 1):
                account = MailAccount(
                    user_id=user.id,
                    host="h",
                    port=1,
                    security="plain",
                    username=f"{email}-{n}",
                    folders=["INBOX"],
                )
                session.add(account)
                session.flush()
                accounts.append((account.id, email))
        for uid in range(1, count + 1):
            account_id, email = pick.choice(accounts)
            sent = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=pick.randrange(60))
            subject = pick.choice(
                ["Invoice 100%", "Lunch?", "Weekly digest", "Reset your password"]
            )
            sender = pick.choice(["ann@shop.test", "bob_b@news.test", "carl@work.test"])
            message = Message(
                account_id=account_id,
                folder="INBOX",
                uidvalidity=1,
                uid=uid,
                subject=f"{subject} #{uid}",
                from_addr=sender,
                sent_at=sent,
                status=pick.choice(STATUSES),
                text_body="x",
            )
            session.add(message)
            session.flush()
            newest: TriageResult | None = None
            for version in range(pick.choice([0, 1, 1, 1, 2])):
                newest = TriageResult(
                    message_id=message.id,
                    prompt_version=f"v{version}",
                    category=pick.choice(CATEGORIES),
                    priority="normal",
                    confidence=round(pick.random(), 3),
                    summary="s",
                    needs_reply=False,
                    injection_suspected=pick.random() < 0.1,
                    provider="openai",
                    model=pick.choice(MODELS),
                )
                session.add(newest)
                session.flush()
            reviewed = newest is not None and pick.random() < 0.2
            if newest is not None and reviewed:
                session.add(
                    Review(
                        result_id=newest.id,
                        reviewer_id=1,
                        from_category=newest.category,
                        to_category=newest.category,
                    )
                )
            found.append(
                Row(
                    id=message.id,
                    user=email,
                    account=account_id,
                    status=message.status,
                    subject=message.subject,
                    sender=sender,
                    sent=sent,
                    category=newest.category if newest else None,
                    confidence=newest.confidence if newest else None,
                    model=newest.model if newest else None,
                    result_id=newest.id if newest else None,
                    injection=bool(newest and newest.injection_suspected),
                    reviewed=reviewed,
                )
            )
    return found


def walk(client: httpx.Client, params: dict[str, Any]) -> list[int]:
    ids: list[int] = []
    cursor: int | None = None
    for _ in range(100):
        response = client.get(
            "/api/messages", params={**params, "before": cursor} if cursor else params
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["rows"]) <= PAGE
        ids += [row["id"] for row in body["rows"]]
        cursor = body["next_before"]
        if cursor is None:
            return ids
    raise AssertionError("the pages never ended")


def test_every_filter_returns_exactly_the_matching_messages_newest_first(
    server: ConsoleServer, rows: list[Row]
) -> None:
    dana_accounts = sorted({r.account for r in rows if r.user == "dana@example.test"})
    cases: list[tuple[dict[str, Any], Any]] = [
        ({}, lambda r: True),
        ({"user": 2}, lambda r: r.user == "erin@example.test"),
        ({"account": dana_accounts[1]}, lambda r: r.account == dana_accounts[1]),
        ({"category": "receipt"}, lambda r: r.category == "receipt"),
        ({"status": "failed"}, lambda r: r.status == "failed"),
        (
            {"min_confidence": 0.25, "max_confidence": 0.6},
            lambda r: r.confidence is not None and 0.25 <= r.confidence <= 0.6,
        ),
        ({"model": "other-model"}, lambda r: r.model == "other-model"),
        (
            {"date_from": "2026-01-10", "date_to": "2026-01-20"},
            lambda r: (
                datetime(2026, 1, 10, tzinfo=UTC) <= r.sent < datetime(2026, 1, 21, tzinfo=UTC)
            ),
        ),
        ({"q": "100%"}, lambda r: "100%" in r.subject),
        ({"q": "B_B"}, lambda r: "bob_b" in r.sender),
        (
            {"q": "lunch", "category": "fyi", "status": "triaged"},
            lambda r: "Lunch" in r.subject and r.category == "fyi" and r.status == "triaged",
        ),
    ]
    with server.client() as client:
        sign_in(client, "dana@example.test", "pw-dana@example.test")
        for params, wanted in cases:
            expected = sorted((r.id for r in rows if wanted(r)), reverse=True)
            assert walk(client, params) == expected, params


def test_a_user_lists_only_their_own_mail_whatever_the_filters(
    server: ConsoleServer, rows: list[Row]
) -> None:
    with server.client() as client:
        sign_in(client, "erin@example.test", "pw-erin@example.test")
        mine = sorted((r.id for r in rows if r.user == "erin@example.test"), reverse=True)
        assert walk(client, {}) == mine
        assert walk(client, {"user": 1}) == mine
        dana_account = next(r.account for r in rows if r.user == "dana@example.test")
        assert walk(client, {"account": dana_account}) == []


def test_the_queue_walks_doubtful_results_first_then_the_rest_each_once(
    server: ConsoleServer, rows: list[Row]
) -> None:
    threshold = 0.7
    open_rows = [r for r in rows if r.result_id is not None and not r.reviewed]
    doubtful = sorted(
        (
            r
            for r in open_rows
            if (r.confidence or 0) < threshold or r.injection or r.category == "suspicious"
        ),
        key=lambda r: (r.confidence, r.result_id),
    )
    rest = sorted((r for r in open_rows if r not in doubtful), key=lambda r: -(r.result_id or 0))
    seen: list[int] = []
    with server.client() as client:
        sign_in(client, "dana@example.test", "pw-dana@example.test")
        params: dict[str, Any] = {}
        for _ in range(100):
            body = client.get("/api/review-queue", params=params).json()
            assert len(body["rows"]) <= PAGE
            seen += [row["result_id"] for row in body["rows"]]
            if body["next"] is None:
                break
            params = {k: v for k, v in body["next"].items() if v is not None}
    assert seen == [r.result_id for r in doubtful + rest]
