"""The real triage and draft stages over the corpus, in-process on SQLite, against the loopback
model server with the scripted responder: how many model calls each message really takes."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.seed import RecordingEnqueuer
from tests.support.model_server import FakeModelServer, RecordedRequest, Reply
from tests.support.triage_responder import task_of, triage_and_draft
from triage.adapters.db.migrate import upgrade
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import MailAccount, ProviderSetting, TriageResult, User
from triage.adapters.secrets import generate_key
from triage.config import Settings
from triage.domain import statuses
from triage.domain.email import ParsedEmail
from triage.pipeline.draft import draft_message
from triage.pipeline.message_store import NewMessage, store_message
from triage.pipeline.triage import triage_message
from triage.runtime import Runtime, build_runtime


@dataclass
class PipelineRun:
    calls: int = 0
    classify_calls: int = 0
    draft_calls: int = 0
    triaged: int = 0
    skipped: int = 0
    needs_reply: set[str] = field(default_factory=set)  # corpus file names


def _seed(rt: Runtime, base_url: str) -> int:
    with transaction(rt.db) as session:
        user = User(email="bench@example.test")
        session.add(user)
        session.flush()
        account = MailAccount(
            user_id=user.id, host="127.0.0.1", port=1, security="plain", username="bench"
        )
        setting = ProviderSetting(
            user_id=user.id,
            task="classify",
            provider="openai",
            base_url=base_url,
            model="gpt-4o-mini",
            capabilities={"structured": "json_schema", "images": True},
        )
        session.add_all([account, setting])
        session.flush()
        setting.api_key_enc = rt.secrets.encrypt(
            "sk-bench", owner=f"provider_settings:{setting.id}"
        )
        return account.id


def run_pipeline(corpus: list[tuple[str, bytes, ParsedEmail]]) -> PipelineRun:
    run = PipelineRun()
    with tempfile.TemporaryDirectory() as tmp, FakeModelServer() as server:
        tasks: list[str] = []

        def answer(request: RecordedRequest) -> Reply:
            tasks.append(task_of(request))
            return triage_and_draft(request)

        server.responder = answer
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        upgrade(url)
        rt = build_runtime(
            Settings(database_url=url, secret_keys=generate_key(), data_dir=Path(tmp))
        )
        account_id = _seed(rt, server.base_url)
        names = _store(rt, account_id, corpus)
        drafts = RecordingEnqueuer()  # drafts run below, after every triage
        for message_id in names:
            outcome = triage_message(
                message_id=message_id, db=rt.db, model=rt.model, secrets=rt.secrets,
                enqueue=drafts, settings=rt.settings,
            )  # fmt: skip
            run.triaged += outcome.status == statuses.TRIAGED
            run.skipped += outcome.status == statuses.SKIPPED
        for message_id in drafts.drafted:
            draft_message(
                message_id=message_id, db=rt.db, model=rt.model, secrets=rt.secrets,
                settings=rt.settings,
            )  # fmt: skip
        with rt.db() as session:
            wanted = session.query(TriageResult.message_id).filter(TriageResult.needs_reply)
            run.needs_reply = {names[row.message_id] for row in wanted}
        rt.engine.dispose()
    run.calls = len(tasks)
    run.classify_calls = tasks.count("triage")
    run.draft_calls = tasks.count("draft")
    return run


def _store(
    rt: Runtime, account_id: int, corpus: list[tuple[str, bytes, ParsedEmail]]
) -> dict[int, str]:
    names: dict[int, str] = {}
    with transaction(rt.db) as session:
        for uid, (name, raw, _parsed) in enumerate(corpus, start=1):
            stored = store_message(
                session,
                NewMessage(account_id, "INBOX", 1, uid, len(raw), raw),
                settings=rt.settings,
            )
            if stored.message_id is not None and stored.status == statuses.RECEIVED:
                names[stored.message_id] = name
    return names
