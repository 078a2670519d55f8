"""Reviewing in the console: the queue's order, corrections as rows, drafts, items, keys, stats."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from tests.e2e.console import (
    ConsoleServer,
    console_env,
    empty_database,
    running_console,
    runtime_of,
    sign_in,
)
from tests.e2e.world import World, seed_world
from tests.integration.conftest import REPO
from triage.adapters.db.tables import ActionItem, Draft, ProviderSetting, Review, TriageResult
from triage.runtime import Runtime

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(
    migrated_pg: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    empty_database(migrated_pg)
    return console_env(migrated_pg, redis_url, tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="module")
def rt(env: dict[str, str]) -> Runtime:
    return runtime_of(env)


@pytest.fixture(scope="module")
def world(rt: Runtime) -> World:
    return seed_world(rt)


@pytest.fixture(scope="module")
def server(
    env: dict[str, str], world: World, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleServer]:
    with running_console(env, tmp_path_factory.mktemp("log") / "web.log") as running:
        yield running


def test_queue_puts_doubtful_results_first_and_a_review_takes_one_out(
    server: ConsoleServer, world: World, rt: Runtime
) -> None:
    admin = world.admin
    doubtful = {world.alice.result_ids[1], world.bob.result_ids[1]}  # confidence 0.35
    with server.client() as client:
        csrf = sign_in(client, admin.email, admin.password)
        rows = client.get("/api/review-queue").json()["rows"]
        assert [r["result_id"] for r in rows[:2]] == sorted(doubtful)
        assert all(r["doubtful"] for r in rows[:2]) and not any(r["doubtful"] for r in rows[2:])
        assert len(rows) == 4
        target = world.alice.result_ids[1]
        corrected = client.post(
            f"/results/{target}/review",
            data={
                "decision": "correct",
                "to_category": "meeting",
                "note": "an invite",
                "csrf_token": csrf,
                "next": "/review",
            },
        )
        assert corrected.status_code == 303 and corrected.headers["location"] == "/review"
        confirmed = client.post(
            f"/api/results/{world.bob.result_ids[0]}/reviews",
            json={},
            headers={"X-CSRF-Token": csrf},
        )
        assert confirmed.status_code == 201
        left = [r["result_id"] for r in client.get("/api/review-queue").json()["rows"]]
    assert target not in left and world.bob.result_ids[0] not in left and len(left) == 2
    with rt.db() as session:
        reviews = session.scalars(select(Review).order_by(Review.id)).all()
        model_answer = session.get_one(TriageResult, target)
    assert [
        (r.result_id, r.reviewer_id, r.from_category, r.to_category, r.note) for r in reviews
    ] == [
        (target, admin.id, "fyi", "meeting", "an invite"),
        (world.bob.result_ids[0], admin.id, "receipt", "receipt", None),
    ]
    assert all(r.created_at is not None for r in reviews)
    assert model_answer.category == "fyi"  # never overwritten


def test_a_correction_to_an_unknown_category_is_refused(
    server: ConsoleServer, world: World
) -> None:
    with server.client() as client:
        csrf = sign_in(client, world.alice.email, world.alice.password)
        refused = client.post(
            f"/api/results/{world.alice.result_ids[0]}/reviews",
            json={"to_category": "no_such_label"},
            headers={"X-CSRF-Token": csrf},
        )
    assert refused.status_code == 400
    assert "unknown category 'no_such_label'" in refused.json()["detail"]


def test_stats_show_agreement_and_the_confusion_of_corrections(
    server: ConsoleServer, world: World
) -> None:
    with server.client() as client:
        sign_in(client, world.admin.email, world.admin.password)
        stats = client.get("/api/stats").json()
        page = client.get("/stats").text
    (model,) = stats["models"]
    assert (model["provider"], model["model"]) == ("openai", "fake-model")
    assert (model["messages"], model["reviewed"], model["unchanged"]) == (4, 2, 1)
    assert model["agreement"] == pytest.approx(0.5)
    assert model["mean_latency_ms"] == pytest.approx(301.5)
    assert {
        (c["model_category"], c["reviewer_category"], c["count"]) for c in stats["confusion"]
    } == {
        ("fyi", "meeting", 1),
        ("receipt", "receipt", 1),
    }
    assert "50% (1/2)" in page


def test_export_reviewed_on_the_command_line_matches_the_download(
    server: ConsoleServer, world: World, env: dict[str, str]
) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "triage.cli", "export", "--reviewed"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in printed.stdout.splitlines()]
    with server.client() as client:
        sign_in(client, world.admin.email, world.admin.password)
        download = client.get("/stats/reviewed.jsonl")
    assert download.headers["content-disposition"].startswith("attachment")
    assert [json.loads(line) for line in download.text.splitlines()] == lines
    assert [(x["label"], x["model_category"], x["changed"]) for x in lines] == [
        ("meeting", "fyi", True),
        ("receipt", "receipt", False),
    ]
    assert lines[0]["text"] == "Body of alice meeting?." and lines[0]["note"] == "an invite"


def test_an_edited_draft_is_approved_beside_the_models_text(
    server: ConsoleServer, world: World, rt: Runtime
) -> None:
    alice = world.alice
    message_id = alice.message_ids[0]
    with server.client() as client:
        csrf = sign_in(client, alice.email, alice.password)
        approved = client.post(
            f"/messages/{message_id}/draft",
            data={"action": "approve", "body": "Thanks, paid today.", "csrf_token": csrf},
        )
        assert approved.status_code == 303
        done = client.post(
            f"/api/action-items/{alice.item_ids[0]}",
            json={"status": "done"},
            headers={"X-CSRF-Token": csrf},
        )
        assert done.status_code == 200 and done.json()["status"] == "done"
        detail = client.get(f"/api/messages/{message_id}").json()
    with rt.db() as session:
        draft = session.scalars(select(Draft).where(Draft.message_id == message_id)).one()
        item = session.get_one(ActionItem, alice.item_ids[0])
    assert (draft.status, draft.edited_body, draft.decided_by) == (
        "approved",
        "Thanks, paid today.",
        alice.id,
    )
    assert draft.body == "Thanks for alice invoice."
    assert item.status == "done"
    assert detail["draft"]["edited_body"] == "Thanks, paid today."
    assert detail["results"][0]["action_items"][0]["status"] == "done"


def test_a_model_key_is_write_only_and_shown_as_its_last_four(
    server: ConsoleServer, world: World, rt: Runtime
) -> None:
    alice = world.alice
    new_key = "sk-brand-new-key-for-alice-4321"
    with server.client() as client:
        csrf = sign_in(client, alice.email, alice.password)
        saved = client.post(
            f"/settings/models/{alice.setting_id}/key",
            data={"api_key": new_key, "csrf_token": csrf},
        )
        assert saved.status_code == 303
        pages = [client.get(path).text for path in ("/accounts", "/api/users", "/api/openapi.json")]
    assert all(new_key not in text and "sk-alice" not in text for text in pages)
    assert "…4321" in pages[0]
    with rt.db() as session:
        setting = session.get_one(ProviderSetting, alice.setting_id)
    assert (
        rt.secrets.decrypt(setting.api_key_enc or "", owner=f"provider_settings:{setting.id}")
        == new_key
    )
    assert setting.key_last4 == "4321"


def test_images_are_served_only_as_normalized_bytes(server: ConsoleServer, world: World) -> None:
    with server.client() as client:
        sign_in(client, world.alice.email, world.alice.password)
        image = client.get(f"/attachments/{world.alice.image_id}/image")
        page = client.get(f"/messages/{world.alice.message_ids[0]}").text
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    assert f'src="/attachments/{world.alice.image_id}/image"' in page
    assert '<iframe class="html" sandbox src=' in page
