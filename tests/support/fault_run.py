"""Shared by the fault tests and the bench: a run of many queued messages, and its audit."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from celery import Celery
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from tests.support.model_server import RecordedRequest, Reply
from tests.support.triage_responder import subject_of, triage_and_draft
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import Draft, Message, TriageResult
from triage.config import Settings
from triage.domain import statuses
from triage.runtime import Runtime, build_runtime

REPO = Path(__file__).resolve().parents[2]
# As docker-compose.yml starts workers. With gossip, mingle and heartbeats, a Celery worker on
# Redis now and then reconnects after a broker restart and never consumes again (celery/celery
# #8030, #8091); test_faults_redis_restart saw it once under load. Without them it comes back.
WORKER_FLAGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")
PLAIN = ("Quarterly numbers are attached for your records. " * 30).strip()
QUESTION = "Could you confirm the numbers by Friday?"


def runtime_with_key(database_url: str, secret_keys: str) -> Runtime:
    """A runtime that encrypts with the same key as the worker under test."""
    return build_runtime(Settings(database_url=database_url, secret_keys=secret_keys))


def seed_queued(
    rt: Runtime, account_id: int, count: int, *, question_every: int = 0, folder: str = "INBOX"
) -> list[int]:
    """Store `count` messages with status `queued` in one statement (parse excluded).

    Every `question_every`-th body asks a question, so the responder says it needs a reply
    and the message goes on to the draft stage.
    """
    rows = []
    for uid in range(1, count + 1):
        asks = question_every > 0 and uid % question_every == 0
        body = f"{PLAIN}\n{QUESTION}" if asks else PLAIN
        raw = f"Subject: Run {uid}\r\n\r\n{body}\r\n".encode()
        rows.append(
            {
                "account_id": account_id,
                "folder": folder,
                "uidvalidity": 1,
                "uid": uid,
                "subject": f"Run {uid}",
                "from_addr": "Alice <alice@example.test>",
                "to_addrs": ["owner@example.test"],
                "text_body": body,
                "raw": raw,
                "raw_sha256": hashlib.sha256(raw).hexdigest(),
                "size": len(raw),
                "status": statuses.QUEUED,
            }
        )
    with transaction(rt.db) as session:
        return list(session.scalars(insert(Message).returning(Message.id), rows))


def enqueue_triage(broker_url: str, ids: list[int]) -> None:
    """What ingest does after storing: one `triage(message_id)` task per message."""
    app = Celery(broker=broker_url)
    with app.producer_or_acquire() as producer:
        for message_id in ids:
            app.send_task("triage.triage", args=[message_id], queue="triage", producer=producer)
    app.close()


def slow_responder(latency: float) -> Callable[[RecordedRequest], Reply]:
    """The scripted triage/draft model, answering after a fixed latency."""

    def answer(request: RecordedRequest) -> Reply:
        reply = triage_and_draft(request)
        reply.delay = latency
        return reply

    return answer


def run_number(request: RecordedRequest) -> int | None:
    """Which seeded message a model request is about (from its `Run N` subject)."""
    subject = subject_of(request) or ""
    return int(subject.split()[-1]) if subject.startswith("Run ") else None


@dataclass(frozen=True)
class Audit:
    statuses: dict[str, int]
    unfinished: int
    results: int
    drafts: int
    wanted_drafts: int


def audit(engine: Engine, ids: list[int]) -> Audit:
    with Session(engine) as session:
        rows = session.execute(
            select(Message.status, func.count()).where(Message.id.in_(ids)).group_by(Message.status)
        ).all()
        results = session.scalar(
            select(func.count()).select_from(TriageResult).where(TriageResult.message_id.in_(ids))
        )
        drafts = session.scalar(
            select(func.count()).select_from(Draft).where(Draft.message_id.in_(ids))
        )
        wanted = session.scalar(
            select(func.count())
            .select_from(TriageResult)
            .where(TriageResult.message_id.in_(ids), TriageResult.needs_reply.is_(True))
        )
    counts = {status: int(n) for status, n in rows}
    unfinished = sum(n for status, n in counts.items() if status in statuses.UNFINISHED)
    return Audit(counts, unfinished, results or 0, drafts or 0, wanted or 0)


def finished(engine: Engine, ids: list[int]) -> bool:
    """Every message terminal, and every draft the model asked for written."""
    seen = audit(engine, ids)
    return (
        sum(seen.statuses.values()) == len(ids)
        and seen.unfinished == 0
        and (seen.drafts == seen.wanted_drafts)
    )


def assert_exactly_once(engine: Engine, ids: list[int], *, allowed: frozenset[str]) -> Audit:
    """None lost, every one terminal, none with two results or two drafts."""
    seen = audit(engine, ids)
    assert sum(seen.statuses.values()) == len(ids), f"messages lost: {seen}"
    assert seen.unfinished == 0, f"messages left unfinished: {seen}"
    assert set(seen.statuses) <= allowed, f"unexpected statuses: {seen.statuses}"
    with Session(engine) as session:
        doubled = session.execute(
            select(TriageResult.message_id, func.count())
            .where(TriageResult.message_id.in_(ids))
            .group_by(TriageResult.message_id)
            .having(func.count() > 1)
        ).all()
        triaged = session.scalar(
            select(func.count()).where(
                Message.id.in_(ids), Message.status.in_([statuses.TRIAGED, statuses.DRAFTED])
            )
        )
        without_result = session.scalar(
            select(func.count()).where(
                Message.id.in_(ids),
                Message.status.in_([statuses.TRIAGED, statuses.DRAFTED]),
                ~select(TriageResult.id).where(TriageResult.message_id == Message.id).exists(),
            )
        )
    assert not doubled, f"messages with two results: {doubled[:10]}"
    assert without_result == 0, f"{without_result} triaged messages have no result"
    assert seen.results == triaged, f"{seen.results} results for {triaged} triaged messages"
    # Draft.message_id is unique, so two drafts cannot exist; a missing one can.
    assert seen.drafts == seen.wanted_drafts, f"drafts {seen.drafts} != wanted {seen.wanted_drafts}"
    return seen


def wait_for(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    every: Callable[[], object] | None = None,
    every_seconds: float = 3.0,
    explain: Callable[[], object] | None = None,
) -> None:
    """Poll `condition` until it holds; run `every` (e.g. a sweeper pass) now and then."""
    deadline = time.monotonic() + timeout
    next_tick = time.monotonic() + every_seconds
    while not condition():
        now = time.monotonic()
        if now > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        if every is not None and now >= next_tick:
            every()
            next_tick = now + every_seconds
        time.sleep(0.2)


def start_beat(env: dict[str, str], tmp: Path) -> subprocess.Popen[bytes]:
    """Celery beat as compose runs it: the periodic sweep (and sync) on the broker."""
    log = (tmp / "beat.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "beat",
        "--loglevel=INFO",
        "--schedule",
        str(tmp / "beat-schedule"),
    ]
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
