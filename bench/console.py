"""Console speed on 100,000 stored results: list and queue pages beside their bare SQL.

Run as `.venv/bin/python -m bench.console [--messages 100000] [--requests 60]`. It creates a
private Postgres database, migrates it, inserts the messages, results and reviews in batches
(SQLAlchemy Core executemany, so column defaults added later still apply), starts the real
`triage web` process, signs in, and times each case through HTTP on one keep-alive loopback
connection (the whole server path: session check, queries, rendering). In the same run it
times the page's main query alone, as SQL text run by psycopg: the "bare SQL" column.
"""

from __future__ import annotations

import argparse
import http.client
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from sqlalchemy import insert, text
from sqlalchemy.dialects import postgresql

from tests.e2e.console import console_env, running_console
from tests.support import services
from triage.adapters.db.migrate import upgrade
from triage.adapters.db.session import make_engine, make_session_factory, transaction
from triage.adapters.db.tables import MailAccount, Message, Review, TriageResult, User
from triage.adapters.passwords import hash_password
from triage.web.queries.listing import ListFilters, list_statement
from triage.web.queries.queue import QueueCursor, queue_statement
from triage.web.queries.scope import account_ids
from triage.web.sessions import Viewer

PAGE = 50
THRESHOLD = 0.7
BATCH = 5000
START = datetime(2025, 1, 1, tzinfo=UTC)
_CATEGORY_NAMES = "needs_reply action_required meeting fyi newsletter marketing receipt"
CATEGORIES = (*_CATEGORY_NAMES.split(), "notification", "personal", "suspicious")
_WORD_LIST = "invoice meeting lunch report offer password delivery weekly contract holiday"
WORDS = (*_WORD_LIST.split(), "order", "newsletter", "update", "question", "urgent")


@dataclass(frozen=True)
class Case:
    name: str
    path: str  # the page (HTML)
    api: str  # the same through the JSON API
    bare: Callable[[Any], str]  # SQL text of the page's main query, given a session


def seed(url: str, messages: int, users: int = 10) -> None:
    """`messages` messages over `users` users (two accounts each), one result each (5% two)."""
    pick = random.Random(42)
    engine = make_engine(url)
    _seed_people(engine, users)
    result_id = 0
    with engine.begin() as conn:
        for first in range(1, messages + 1, BATCH):
            rows, results, reviews = [], [], []
            for mid in range(first, min(first + BATCH, messages + 1)):
                rows.append(_message_row(pick, mid, accounts=2 * users))
                for _ in range(2 if pick.random() < 0.05 else 1):
                    result_id += 1
                    results.append(_result_row(pick, result_id, mid, rows[-1]["subject"]))
                    if pick.random() < 0.2:
                        reviews.append(
                            dict(
                                result_id=result_id,
                                reviewer_id=1,
                                from_category="fyi",
                                to_category="fyi",
                            )
                        )
            conn.execute(insert(Message), rows)
            conn.execute(insert(TriageResult), results)
            conn.execute(insert(Review), reviews)
        # The IDs were given explicitly; move the sequences past them.
        for table, last in (("messages", messages), ("triage_results", result_id)):
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :n)"), {"t": table, "n": last}
            )
        conn.execute(text("ANALYZE"))
    engine.dispose()


def _seed_people(engine: Any, users: int) -> None:
    with transaction(make_session_factory(engine)) as session:
        admin = User(email="admin@bench.test", password_hash=hash_password("bench-admin"))
        admin.is_admin = True
        session.add(admin)
        for n in range(users):
            user = User(email=f"user{n}@bench.test", password_hash=hash_password("bench-user"))
            session.add(user)
            session.flush()
            for k in range(2):
                session.add(
                    MailAccount(
                        user_id=user.id,
                        host="imap.bench.test",
                        port=993,
                        security="ssl",
                        username=f"u{n}-{k}",
                        folders=["INBOX"],
                    )
                )


def _message_row(pick: random.Random, mid: int, *, accounts: int) -> dict[str, Any]:
    return dict(
        id=mid,
        account_id=pick.randrange(1, accounts + 1),
        folder="INBOX",
        uidvalidity=1,
        uid=mid,
        subject=" ".join(pick.choices(WORDS, k=3)) + f" #{mid}",
        from_addr=f"{pick.choice(WORDS)}{pick.randrange(500)}@example.test",
        sent_at=START + timedelta(minutes=5 * mid),
        text_body="Hello. " * 20,
        status=pick.choice(("triaged", "drafted")),
        size=2000,
    )


def _result_row(pick: random.Random, rid: int, mid: int, subject: str) -> dict[str, Any]:
    # Most answers are confident; about one in eight falls under the threshold.
    return dict(
        id=rid,
        message_id=mid,
        prompt_version=f"triage-v1+{rid}",
        category=pick.choice(CATEGORIES),
        priority="normal",
        confidence=round(1 - pick.random() ** 4 * 0.8, 3),
        summary=subject,
        needs_reply=False,
        provider="openai",
        model=pick.choice(("gpt-4o-mini", "deepseek-chat")),
        injection_suspected=pick.random() < 0.01,
        fallback_disagreed=pick.random() < 0.01,
        input_tokens=800,
        output_tokens=90,
        latency_ms=900,
    )


def cases() -> list[Case]:
    """Each case: the page and the API with the same query, and the page's main SQL."""
    admin = Viewer(id=1, email="admin@bench.test", is_admin=True, csrf="")
    user = Viewer(id=2, email="user0@bench.test", is_admin=False, csrf="")
    found = []
    for name, viewer, query in (
        ("list, admin, no filter", admin, {}),
        ("list, admin, category", admin, {"category": "receipt"}),
        ("list, admin, text (common words)", admin, {"q": "contract holiday"}),
        ("list, admin, text (a word in no message)", admin, {"q": "zebra"}),
        (
            "list, admin, model + confidence",
            admin,
            {"model": "deepseek-chat", "max_confidence": 0.5},
        ),
        ("list, admin, deep page", admin, {"before": 20_000}),
        ("list, one user", user, {}),
    ):
        filters = ListFilters.model_validate(query)
        found.append(
            Case(
                name,
                "/messages?" + urlencode(query),
                "/api/messages?" + urlencode(query),
                _listing_sql(viewer, filters),
            )
        )
    for name, viewer, cursor in (
        ("queue, admin, first page", admin, QueueCursor()),
        ("queue, admin, deep page", admin, QueueCursor(part="rest", result_id=60_000)),
        ("queue, one user", user, QueueCursor()),
    ):
        query = {k: v for k, v in cursor.model_dump().items() if v is not None}
        found.append(
            Case(
                name,
                "/review?" + urlencode(query),
                "/api/review-queue?" + urlencode(query),
                _queue_sql(viewer, cursor),
            )
        )
    return found


def _listing_sql(viewer: Viewer, filters: ListFilters) -> Callable[[Any], str]:
    return lambda session: _sql(list_statement(session, viewer, filters, page_size=PAGE))


def _queue_sql(viewer: Viewer, cursor: QueueCursor) -> Callable[[Any], str]:
    return lambda session: _sql(
        queue_statement(
            account_ids(session, viewer, None), THRESHOLD, cursor.part, cursor, PAGE + 1
        )
    )


def _sql(stmt: Any) -> str:
    # Literal binds double every % for a driver's format paramstyle; run bare, they stay single.
    compiled = stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    return str(compiled).replace("%%", "%")


class Http:
    """One keep-alive connection with a session cookie, like a browser tab."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.cookie = ""

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, str]:
        headers = {"Cookie": self.cookie}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # The server closes idle keep-alive connections (uvicorn: after 5 s): reconnect.
            self.conn.close()
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        payload = response.read().decode()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie" and value.startswith("triage_"):
                self.cookie = "; ".join(filter(None, [self.cookie, value.split(";", 1)[0]]))
        return response.status, payload

    def sign_in(self, email: str, password: str) -> None:
        _, form = self.request("GET", "/signin")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token, form
        body = f"email={email}&password={password}&csrf_token={token.group(1)}"
        status, _ = self.request("POST", "/signin", body)
        assert status == 303, status


def timed(run: Callable[[], None], requests: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(requests):
        began = time.perf_counter()
        run()
        times.append((time.perf_counter() - began) * 1000)
    return times


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1]


def measure(base: str, url: str, requests: int) -> None:
    admin, user = Http(base), Http(base)
    admin.sign_in("admin%40bench.test", "bench-admin")
    user.sign_in("user0%40bench.test", "bench-user")
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    session = make_session_factory(make_engine(url))()
    print(
        f"{'case':40} {'page med/p95 ms':>16} {'api med/p95 ms':>16} {'bare SQL med/p95':>17}"
        f" {'page p95 / SQL p95':>19}"
    )
    with psycopg.connect(libpq) as conn:
        for case in cases():
            client = user if "one user" in case.name else admin
            sql = case.bare(session)

            def page(path: str = case.path, c: Http = client) -> None:
                status, _ = c.request("GET", path)
                assert status == 200, (path, status)

            def api(path: str = case.api, c: Http = client) -> None:
                page(path, c)

            def bare(query: str = sql) -> None:
                conn.execute(query).fetchall()

            t_page, t_api, t_bare = (timed(f, requests) for f in (page, api, bare))
            print(
                f"{case.name:40} {statistics.median(t_page):7.1f} /{p95(t_page):6.1f}"
                f" {statistics.median(t_api):7.1f} /{p95(t_api):6.1f}"
                f" {statistics.median(t_bare):8.1f} /{p95(t_bare):6.1f}"
                f" {p95(t_page) / p95(t_bare):14.1f}x"
            )
    session.close()


@contextmanager
def private_database() -> Iterator[str]:
    name = f"triage_bench_console_{secrets.token_hex(4)}"
    services.create_database(name)
    try:
        yield services.sqlalchemy_url(name)
    finally:
        services.drop_database(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    with private_database() as url, tempfile.TemporaryDirectory() as tmp:
        upgrade(url)
        began = time.perf_counter()
        seed(url, args.messages)
        print(
            f"seeded {args.messages} messages with results in {time.perf_counter() - began:.0f} s",
            file=sys.stderr,
        )
        env = console_env(url, "", Path(tmp))
        env.pop("TRIAGE_BROKER_URL")  # nothing is enqueued here; the console needs no broker
        with running_console(env, Path(tmp) / "web.log") as server:
            measure(server.url, url, args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
