"""Console actions that run pipeline work: retry and re-run go through Celery to a real worker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.e2e.console import ConsoleServer, running_console, runtime_of, sign_in
from tests.e2e.world import World, seed_world
from tests.integration.conftest import Worker, wait_until
from tests.support.model_server import FakeModelServer, RecordedRequest, Reply
from tests.support.triage_responder import request_text, triage_and_draft, triage_answer
from triage.adapters.db.tables import Message, ProviderSetting, RerunRequest, TriageResult
from triage.runtime import Runtime

pytestmark = pytest.mark.integration


def by_model(request: RecordedRequest) -> Reply:
    """fake-model-b has another opinion: everything is personal."""
    body = request.json or {}
    if body.get("model") != "fake-model-b":
        return triage_and_draft(request)
    answer = {**triage_answer(request_text(request)), "category": "personal", "confidence": 0.8}
    return Reply(content=json.dumps(answer))


@pytest.fixture
def rt(service_env: dict[str, str]) -> Runtime:
    return runtime_of(service_env)


@pytest.fixture
def world(rt: Runtime, model_server: FakeModelServer) -> World:
    model_server.responder = by_model
    return seed_world(rt, base_url=model_server.base_url)


@pytest.fixture
def console(
    service_env: dict[str, str], world: World, worker: Worker, tmp_path: Path
) -> Iterator[ConsoleServer]:
    with running_console(service_env, tmp_path / "web.log") as server:
        yield server


def test_rerun_with_another_model_adds_a_result_and_keeps_the_first(
    console: ConsoleServer, world: World, rt: Runtime, model_server: FakeModelServer
) -> None:
    alice = world.alice
    message_id = alice.message_ids[0]
    with console.client() as client:
        csrf = sign_in(client, alice.email, alice.password)
        posted = client.post(
            f"/messages/{message_id}/rerun",
            data={"setting_id": str(alice.second_setting_id), "csrf_token": csrf},
        )
        assert posted.status_code == 303
        wait_until(lambda: _rerun_status(rt) == "done", timeout=60, what="the re-run to finish")
        page = client.get(f"/messages/{message_id}").text
    with rt.db() as session:
        results = session.scalars(
            select(TriageResult)
            .where(TriageResult.message_id == message_id)
            .order_by(TriageResult.id)
        ).all()
        status = session.scalar(select(Message.status).where(Message.id == message_id))
    first, second = results
    assert (first.category, first.model, first.prompt_version) == (
        "receipt",
        "fake-model",
        "triage-test",
    )
    assert (second.category, second.model) == ("personal", "fake-model-b")
    assert second.prompt_version.endswith("+rerun1")
    assert status == "triaged"  # a re-run compares; it does not move the message
    calls = model_server.chat_requests
    assert [c.json["model"] for c in calls] == ["fake-model-b"]
    assert calls[0].header("authorization") == "Bearer sk-alice-fake-model-b-secret-9876"
    assert 'id="current-category">personal<' in page
    assert "fake-model-b" in page and "receipt" in page  # the earlier answer is in the history


def test_retry_from_the_failures_page_triages_the_message(
    console: ConsoleServer, world: World, rt: Runtime, model_server: FakeModelServer
) -> None:
    bob = world.bob
    with console.client() as client:
        csrf = sign_in(client, bob.email, bob.password)
        listed = client.get("/failures").text
        assert f'id="failed-{bob.failed_id}"' in listed
        assert "the model answered garbage twice" in listed
        posted = client.post(
            f"/messages/{bob.failed_id}/retry", data={"csrf_token": csrf, "next": "/failures"}
        )
        assert posted.status_code == 303 and posted.headers["location"] == "/failures"
        wait_until(lambda: _status(rt, bob.failed_id) == "triaged", timeout=60, what="triage")
        assert f'id="failed-{bob.failed_id}"' not in client.get("/failures").text
    assert len(model_server.chat_requests) == 1


def test_retry_of_a_message_that_is_not_failed_is_refused_clearly(
    console: ConsoleServer, world: World, rt: Runtime
) -> None:
    alice = world.alice
    with console.client() as client:
        csrf = sign_in(client, alice.email, alice.password)
        refused = client.post(
            f"/api/messages/{alice.message_ids[0]}/retry", headers={"X-CSRF-Token": csrf}
        )
    assert refused.status_code == 400
    assert "triaged message cannot be retried" in refused.json()["detail"]
    assert _status(rt, alice.message_ids[0]) == "triaged"


def _rerun_status(rt: Runtime) -> str | None:
    with rt.db() as session:
        return session.scalar(select(RerunRequest.status).order_by(RerunRequest.id.desc()))


def _status(rt: Runtime, message_id: int) -> str | None:
    with rt.db() as session:
        return session.scalar(select(Message.status).where(Message.id == message_id))


def sums(request: RecordedRequest) -> Reply:
    """A provider that can add: enough for the probe's structured-output check to pass."""
    found = re.search(r"What is (\d+) \+ (\d+)\?", request_text(request))
    if found:
        return Reply(content=json.dumps({"sum": int(found[1]) + int(found[2])}))
    return Reply(content=json.dumps({"color": "red"}))


def test_probe_again_calls_the_provider_and_stores_the_report(
    console: ConsoleServer, world: World, rt: Runtime, model_server: FakeModelServer
) -> None:
    alice = world.alice
    model_server.responder = sums
    with console.client() as client:
        csrf = sign_in(client, alice.email, alice.password)
        posted = client.post(
            f"/settings/models/{alice.setting_id}/probe", data={"csrf_token": csrf}
        )
        assert posted.status_code == 303
        page = client.get("/accounts").text
    with rt.db() as session:
        setting = session.get_one(ProviderSetting, alice.setting_id)
    assert setting.probed_at is not None and setting.valid
    assert setting.probe_report["status"] == "ok"
    assert model_server.chat_requests
    assert {c.header("authorization") for c in model_server.chat_requests} == {
        "Bearer sk-alice-fake-model-secret-9876"
    }
    assert "sk-alice" not in page and "…9876" in page
