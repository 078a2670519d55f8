"""Each preset's request as the provider receives it; the ladder stepping down and remembering."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tests.integration.seed import RecordingEnqueuer, runtime_for
from tests.support.byok import Abilities, add_message, add_setting, add_user, behaving, colour_of
from tests.support.model_server import FakeModelServer, RecordedRequest, api_error
from tests.support.triage_responder import image_parts, request_text
from triage.adapters.db.tables import ProviderSetting, TriageResult
from triage.adapters.models.presets import PRESETS
from triage.domain import statuses
from triage.pipeline.model_calls import StageOutcome
from triage.pipeline.triage import triage_message
from triage.runtime import Runtime

KEY = "sk-shape-test-77d1"
RED = (220, 20, 20)

# From the providers' documentation (/work/shared/docs/models.md): how each is asked for JSON
# before any probe, and whether images are sent.
EXPECTED = {
    "openai": ("json_schema strict", True),
    "deepseek": ("json_object", False),
    "anthropic": ("tool (forced)", True),
    "gemini": ("json_schema strict", True),
    "mistral": ("json_schema strict", False),
    "xai": ("json_schema strict", True),
    "groq": ("json_schema", False),
    "openrouter": ("json_schema strict", False),
    "ollama": ("json_schema strict", False),
    "vllm": ("json_schema strict", False),
    "llamacpp": ("json_schema strict", False),
    "custom": ("json_object", False),
}


def shape_of(request: RecordedRequest) -> str:
    body = request.json
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return "json_schema strict" if fmt["json_schema"].get("strict") else "json_schema"
    if fmt.get("type") == "json_object":
        return "json_object"
    if body.get("tools"):
        return "tool (forced)" if body.get("tool_choice") else "tool"
    return "prompt"


def triage(rt: Runtime, message_id: int) -> StageOutcome:
    return triage_message(
        message_id=message_id,
        db=rt.db,
        model=rt.model,
        secrets=rt.secrets,
        enqueue=RecordingEnqueuer(),
        settings=rt.settings,
    )


def stored_capabilities(engine: Engine, setting_id: int) -> dict[str, Any]:
    with Session(engine) as session:
        return dict(session.get_one(ProviderSetting, setting_id).capabilities)


def test_every_preset_is_covered() -> None:
    assert EXPECTED.keys() == PRESETS.keys()


@pytest.mark.parametrize("provider", sorted(EXPECTED))
def test_the_request_has_the_preset_shape(
    provider: str, pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(rt, user_id, provider=provider, base_url=model_server.base_url, api_key=KEY)
    message_id = add_message(rt, account_id, uid=1, image_colour=RED)
    model_server.responder = behaving()

    assert triage(rt, message_id).status == statuses.TRIAGED

    (request,) = model_server.chat_requests
    shape, images = EXPECTED[provider]
    body = request.json
    assert shape_of(request) == shape
    assert request.header("Authorization") == f"Bearer {KEY}"
    if shape.startswith("json_schema"):
        sent = body["response_format"]["json_schema"]
        assert sent["name"] == "triage" and sent["schema"]["additionalProperties"] is False
    if shape == "json_object":
        assert "json" in request_text(request).lower()  # DeepSeek refuses JSON mode without it
        assert '"category"' in request_text(request)  # and the schema is spelled out
    if shape == "tool (forced)":
        assert body["tools"][0]["function"]["name"] == "triage"
        assert body["tool_choice"] == {"type": "function", "function": {"name": "triage"}}
    sent_images = image_parts(request)
    if images:
        assert len(sent_images) == 1
        assert sent_images[0]["image_url"]["url"].startswith("data:image/")
        assert colour_of(sent_images[0]["image_url"]["url"]) == "red"
    else:
        assert sent_images == []
        assert all(isinstance(m["content"], str) for m in request.messages)
    if provider == "openrouter":
        assert body["provider"] == {"require_parameters": True}
        assert request.header("X-Title") == "mail-triage"
        assert (request.header("HTTP-Referer") or "").startswith("https://")
    else:
        assert "provider" not in body and request.header("X-Title") is None
    with Session(pg_engine) as session:
        result = session.scalars(select(TriageResult)).one()
        assert (result.provider, result.images_sent) == (provider, 1)


def test_ollama_on_the_tool_rung_gets_tools_without_tool_choice(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    add_setting(
        rt,
        user_id,
        provider="ollama",
        base_url=model_server.base_url,
        api_key="",
        capabilities={"structured": "tool"},
    )
    message_id = add_message(rt, account_id, uid=1)
    model_server.responder = behaving(Abilities(tool_choice=False))

    assert triage(rt, message_id).status == statuses.TRIAGED

    (request,) = model_server.chat_requests
    assert shape_of(request) == "tool"
    assert "tool_choice" not in request.json
    assert "json" in request_text(request).lower()  # the model may answer in text: say how
    assert request.header("Authorization") == "Bearer no-key"  # never a key from elsewhere


@pytest.mark.parametrize(
    ("abilities", "shapes", "learned"),
    [
        (
            Abilities(json_schema=False),
            ["json_schema strict", "json_object"],
            {"structured": "json_object"},
        ),
        (
            Abilities(strict=False),
            ["json_schema strict", "json_schema"],
            {"structured": "json_schema", "strict": False},
        ),
        (
            Abilities(json_schema=False, json_object=False),
            ["json_schema strict", "json_object", "tool (forced)"],
            {"structured": "tool"},
        ),
        (
            Abilities(json_schema=False, json_object=False, tools=False),
            ["json_schema strict", "json_object", "tool (forced)", "prompt"],
            {"structured": "prompt"},
        ),
    ],
)
def test_a_capability_error_steps_down_the_ladder_and_is_remembered(
    abilities: Abilities,
    shapes: list[str],
    learned: dict[str, Any],
    pg_engine: Engine,
    migrated_pg: str,
    model_server: FakeModelServer,
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    setting_id = add_setting(
        rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY
    )
    first, second = (add_message(rt, account_id, uid=uid) for uid in (1, 2))
    model_server.responder = behaving(abilities)

    assert triage(rt, first).status == statuses.TRIAGED
    assert [shape_of(r) for r in model_server.chat_requests] == shapes
    assert stored_capabilities(pg_engine, setting_id).items() >= learned.items()

    assert triage(rt, second).status == statuses.TRIAGED
    # Remembered: the next message goes straight to the rung that worked, one call.
    assert [shape_of(r) for r in model_server.chat_requests[len(shapes) :]] == shapes[-1:]


def test_a_model_that_refuses_images_is_asked_again_without_them_and_remembered(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    setting_id = add_setting(
        rt, user_id, provider="openai", base_url=model_server.base_url, api_key=KEY
    )
    first, second = (add_message(rt, account_id, uid=uid, image_colour=RED) for uid in (1, 2))
    model_server.responder = behaving(Abilities(image_parts=False))

    assert triage(rt, first).status == statuses.TRIAGED
    with_image, without = model_server.chat_requests
    assert (len(image_parts(with_image)), len(image_parts(without))) == (1, 0)
    assert shape_of(without) == "json_schema strict"  # only the images went, not the rung
    assert stored_capabilities(pg_engine, setting_id)["images"] is False

    assert triage(rt, second).status == statuses.TRIAGED
    assert len(model_server.chat_requests) == 3
    assert image_parts(model_server.chat_requests[-1]) == []


# A provider's 400 for its preset's first shape, and the shape the ladder must send next.
REFUSED_SHAPE = {
    "json_schema strict": ("response_format json_schema is not supported", "json_object"),
    "json_schema": ("response_format json_schema is not supported", "json_object"),
    "json_object": ("response_format json_object is not supported", "tool (forced)"),
    "tool (forced)": ("tool_choice is not supported by this endpoint", "tool"),
}


@pytest.mark.parametrize("provider", sorted(EXPECTED))
def test_every_preset_steps_down_on_a_capability_error_and_remembers(
    provider: str, pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id = add_user(rt, "owner@example.test")
    setting_id = add_setting(
        rt, user_id, provider=provider, base_url=model_server.base_url, api_key=KEY
    )
    first, second = (add_message(rt, account_id, uid=uid) for uid in (1, 2))
    start = EXPECTED[provider][0]
    refusal, following = REFUSED_SHAPE[start]
    model_server.script(api_error(400, refusal))
    model_server.responder = behaving()

    assert triage(rt, first).status == statuses.TRIAGED
    assert triage(rt, second).status == statuses.TRIAGED

    assert [shape_of(r) for r in model_server.chat_requests] == [start, following, following]
    learned = stored_capabilities(pg_engine, setting_id)
    assert learned["structured"] == following.split()[0]
    if following == "tool":
        assert learned["tool_choice"] is False
