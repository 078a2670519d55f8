"""Provider failures end in the right status after exactly the right number of calls."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tests.integration.seed import RecordingEnqueuer, runtime_for
from tests.support.byok import add_message, add_setting, add_user, behaving
from tests.support.model_server import FakeModelServer, Reply, api_error
from tests.support.triage_responder import triage_answer
from triage.adapters.db.tables import Message, ProviderSetting, TriageResult, UsageEntry
from triage.domain import statuses
from triage.pipeline.model_calls import StageOutcome
from triage.pipeline.triage import triage_message
from triage.runtime import Runtime

KEY = "sk-primary-5e0c"
FALLBACK_KEY = "sk-fallback-a1f9"


def triage(rt: Runtime, message_id: int, attempt: int = 1) -> StageOutcome:
    return triage_message(
        message_id=message_id,
        attempt=attempt,
        db=rt.db,
        model=rt.model,
        secrets=rt.secrets,
        enqueue=RecordingEnqueuer(),
        settings=rt.settings,
    )


def run_until_done(rt: Runtime, message_id: int, limit: int = 50) -> list[StageOutcome]:
    """Run the stage as the queue would: again, with the next attempt, while it asks to."""
    outcomes = [triage(rt, message_id)]
    while outcomes[-1].retry_after is not None and len(outcomes) < limit:
        outcomes.append(triage(rt, message_id, attempt=len(outcomes) + 1))
    return outcomes


def message_row(engine: Engine, message_id: int) -> Message:
    with Session(engine, expire_on_commit=False) as session:
        return session.get_one(Message, message_id)


@pytest.fixture
def fallback_server() -> FakeModelServer:
    with FakeModelServer() as server:
        server.responder = behaving()
        yield server


def test_a_429_storm_waits_retry_after_each_time_then_fails_after_the_bound(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg, model_max_rate_limit_waits=5)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    message_id = add_message(rt, account_id, uid=1)
    model_server.responder = lambda _r: api_error(429, "slow down", retry_after=7)

    outcomes = run_until_done(rt, message_id)

    assert [o.status for o in outcomes] == [statuses.QUEUED] * 4 + [statuses.FAILED]
    assert all(7 <= (o.retry_after or 0) <= 7 + 1 + 0.7 for o in outcomes[:-1])
    assert len(model_server.chat_requests) == 5
    assert "429" in (message_row(pg_engine, message_id).error or "")


def test_5xx_retries_with_growing_jittered_backoff_then_fails(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg, model_max_attempts=4, model_backoff_seconds=2)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    message_id = add_message(rt, account_id, uid=1)
    model_server.responder = lambda _r: api_error(500, "internal error")

    outcomes = run_until_done(rt, message_id)

    assert [o.status for o in outcomes] == [statuses.QUEUED] * 3 + [statuses.FAILED]
    for attempt, outcome in enumerate(outcomes[:-1], start=1):
        ceiling = 2 * 2 ** (attempt - 1)
        assert ceiling / 2 <= (outcome.retry_after or 0) <= ceiling
    assert len(model_server.chat_requests) == 4
    message = message_row(pg_engine, message_id)
    assert message.status == statuses.FAILED and "500" in (message.error or "")


def test_a_hanging_provider_times_out_and_counts_as_a_5xx(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg, model_timeout_seconds=1, model_max_attempts=2)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    message_id = add_message(rt, account_id, uid=1)
    model_server.responder = lambda _r: Reply(hang=True)

    outcomes = run_until_done(rt, message_id)

    assert [o.status for o in outcomes] == [statuses.QUEUED, statuses.FAILED]
    assert len(model_server.chat_requests) == 2
    assert "timeout" in (message_row(pg_engine, message_id).error or "")


def test_garbage_is_reasked_once_then_the_fallback_answers(
    pg_engine: Engine,
    migrated_pg: str,
    model_server: FakeModelServer,
    fallback_server: FakeModelServer,
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    add_setting(
        rt,
        user_id,
        provider="mistral",
        base_url=fallback_server.base_url,
        api_key=FALLBACK_KEY,
        model="backup-model",
        position=1,
    )
    message_id = add_message(rt, account_id, uid=1)
    model_server.responder = lambda _r: Reply(content="<html>definitely not json</html>")

    assert triage(rt, message_id).status == statuses.TRIAGED

    _, reask = model_server.chat_requests
    assert "not valid" in reask.messages[-1]["content"]
    (answered,) = fallback_server.chat_requests
    assert answered.header("Authorization") == f"Bearer {FALLBACK_KEY}"
    with Session(pg_engine) as session:
        result = session.scalars(select(TriageResult)).one()
        assert (result.provider, result.model, result.model_calls) == ("mistral", "backup-model", 1)
        ledger = sorted((e.provider, e.outcome) for e in session.scalars(select(UsageEntry)))
        assert ledger == [("mistral", "ok"), ("openai", "InvalidModelOutput")]


def test_garbage_without_a_fallback_fails_after_two_calls(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    message_id = add_message(rt, account_id, uid=1)
    model_server.script(Reply(content=""), Reply(content='{"category": "fyi"'))

    assert triage(rt, message_id).status == statuses.FAILED
    assert len(model_server.chat_requests) == 2
    error = message_row(pg_engine, message_id).error or ""
    assert "invalid answer after a re-ask" in error


def test_a_refusal_goes_to_the_fallback_which_is_recorded_as_the_answerer(
    pg_engine: Engine,
    migrated_pg: str,
    model_server: FakeModelServer,
    fallback_server: FakeModelServer,
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    add_setting(
        rt,
        user_id,
        provider="deepseek",
        base_url=fallback_server.base_url,
        api_key=FALLBACK_KEY,
        model="deepseek-chat",
        position=1,
    )
    message_id = add_message(rt, account_id, uid=1)
    model_server.responder = lambda _r: Reply(refusal="I can't help with images of people.")

    assert triage(rt, message_id).status == statuses.TRIAGED

    assert len(model_server.chat_requests) == 1  # a refusal is not re-asked, nor stepped down
    (answered,) = fallback_server.chat_requests
    assert answered.json["response_format"] == {"type": "json_object"}  # the fallback's shape
    with Session(pg_engine) as session:
        result = session.scalars(select(TriageResult)).one()
        assert (result.provider, result.model) == ("deepseek", "deepseek-chat")


def test_a_refusal_without_a_fallback_fails_and_never_borrows_another_users_setting(
    pg_engine: Engine,
    migrated_pg: str,
    model_server: FakeModelServer,
    fallback_server: FakeModelServer,
) -> None:
    rt = runtime_for(migrated_pg)
    alice, alice_account = add_user(rt, "alice@example.test")
    bob, _ = add_user(rt, "bob@example.test")
    add_setting(rt, alice, provider="openai", base_url=model_server.base_url, api_key=KEY)
    add_setting(rt, bob, provider="openai", base_url=model_server.base_url, api_key="sk-bob-0000")
    add_setting(
        rt,
        bob,
        provider="openai",
        base_url=fallback_server.base_url,
        api_key=FALLBACK_KEY,
        position=1,
    )
    message_id = add_message(rt, alice_account, uid=1)
    model_server.responder = lambda _r: Reply(refusal="No.")

    assert triage(rt, message_id).status == statuses.FAILED
    assert len(model_server.chat_requests) == 1
    assert fallback_server.chat_requests == []
    assert "refused" in (message_row(pg_engine, message_id).error or "")


def test_a_rejected_key_disables_the_primary_and_the_fallback_carries_on(
    pg_engine: Engine,
    migrated_pg: str,
    model_server: FakeModelServer,
    fallback_server: FakeModelServer,
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    primary = add_setting(
        rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY
    )
    add_setting(
        rt,
        user_id,
        provider="openai",
        base_url=fallback_server.base_url,
        api_key=FALLBACK_KEY,
        position=1,
    )
    first, second = (add_message(rt, account_id, uid=uid) for uid in (1, 2))
    model_server.responder = lambda _r: api_error(401, "Incorrect API key provided")

    assert triage(rt, first).status == statuses.TRIAGED
    assert triage(rt, second).status == statuses.TRIAGED

    assert len(model_server.chat_requests) == 1, "a rejected key is never tried again"
    assert len(fallback_server.chat_requests) == 2
    with Session(pg_engine) as session:
        setting = session.get_one(ProviderSetting, primary)
        assert setting.valid is False and "401" in (setting.invalid_reason or "")


def test_a_rejected_key_without_a_fallback_fails_after_one_call(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    message_id = add_message(rt, account_id, uid=1)
    model_server.responder = lambda _r: api_error(403, f"Key {KEY} is not allowed here")

    outcomes = run_until_done(rt, message_id)

    assert [o.status for o in outcomes] == [statuses.FAILED]
    assert len(model_server.chat_requests) == 1
    error = message_row(pg_engine, message_id).error or ""
    assert "key rejected" in error and KEY not in error and KEY[-4:] in error


def test_5xx_moves_to_the_fallback_on_the_last_attempt(
    pg_engine: Engine,
    migrated_pg: str,
    model_server: FakeModelServer,
    fallback_server: FakeModelServer,
) -> None:
    rt = runtime_for(migrated_pg, model_max_attempts=3, model_backoff_seconds=0.1)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    add_setting(
        rt,
        user_id,
        provider="openai",
        base_url=fallback_server.base_url,
        api_key=FALLBACK_KEY,
        position=1,
    )
    message_id = add_message(rt, account_id, uid=1)
    model_server.responder = lambda _r: api_error(503, "overloaded")

    outcomes = run_until_done(rt, message_id)

    assert [o.status for o in outcomes] == [statuses.QUEUED, statuses.QUEUED, statuses.TRIAGED]
    assert len(model_server.chat_requests) == 3
    assert len(fallback_server.chat_requests) == 1


def test_a_refused_request_shape_the_ladder_cannot_fix_goes_to_the_fallback(
    pg_engine: Engine,
    migrated_pg: str,
    model_server: FakeModelServer,
    fallback_server: FakeModelServer,
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    add_setting(
        rt,
        user_id,
        provider="openai",
        base_url=fallback_server.base_url,
        api_key=FALLBACK_KEY,
        position=1,
    )
    message_id = add_message(rt, account_id, uid=1)
    model_server.responder = lambda _r: api_error(400, "This model's maximum context length")

    assert triage(rt, message_id).status == statuses.TRIAGED
    assert (len(model_server.chat_requests), len(fallback_server.chat_requests)) == (1, 1)


def test_draft_uses_its_own_model_and_classification_another(
    pg_engine: Engine,
    migrated_pg: str,
    model_server: FakeModelServer,
    fallback_server: FakeModelServer,
) -> None:
    from triage.pipeline.draft import draft_message

    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY)
    add_setting(
        rt,
        user_id,
        provider="openai",
        base_url=fallback_server.base_url,
        api_key=FALLBACK_KEY,
        model="writer",
        task="draft",
    )
    message_id = add_message(rt, account_id, uid=1, body="Can you send the report?")
    model_server.responder = lambda _r: Reply(content=json.dumps(triage_answer("Report?")))
    enqueue = RecordingEnqueuer()

    outcome = triage_message(
        message_id=message_id,
        db=rt.db,
        model=rt.model,
        secrets=rt.secrets,
        enqueue=enqueue,
        settings=rt.settings,
    )
    assert outcome.status == statuses.TRIAGED and enqueue.drafted == [message_id]
    drafted = draft_message(
        message_id=message_id, db=rt.db, model=rt.model, secrets=rt.secrets, settings=rt.settings
    )

    assert drafted.status == statuses.DRAFTED
    assert len(model_server.chat_requests) == 1  # classification only
    (draft_request,) = fallback_server.chat_requests
    assert draft_request.json["model"] == "writer"
    assert draft_request.json["response_format"]["json_schema"]["name"] == "draft"
