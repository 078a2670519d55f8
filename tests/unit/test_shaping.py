"""Request shaping by capabilities, answer extraction, error mapping and the ladder's steps."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx2 as httpx
import openai
import pytest

from triage.adapters.models.client import step_down
from triage.adapters.models.errors import (
    CapabilityRejected,
    ProviderNotFound,
    ProviderUnreachable,
    map_status_error,
    scrub,
)
from triage.adapters.models.presets import PRESETS, Capabilities
from triage.adapters.models.shaping import build_request, extract_payload
from triage.pipeline.ports import (
    ProviderAuthError,
    ProviderRateLimited,
    ProviderRefused,
    ProviderRejected,
    ProviderUnavailable,
)

SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 1000}}
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Classify."},
    {"role": "user", "content": [{"type": "text", "text": "Hello"}, IMAGE, IMAGE]},
]


def shaped(caps: Capabilities, preset: str = "openai") -> dict[str, Any]:
    return build_request(
        model="m",
        messages=MESSAGES,
        schema_name="triage",
        json_schema=SCHEMA,
        capabilities=caps,
        preset=PRESETS[preset],
    )


def test_json_schema_strict_and_not() -> None:
    strict = shaped(Capabilities("json_schema", images=True))["response_format"]
    assert strict == {
        "type": "json_schema",
        "json_schema": {"name": "triage", "schema": SCHEMA, "strict": True},
    }
    loose = shaped(Capabilities("json_schema", strict=False))["response_format"]
    assert "strict" not in loose["json_schema"]


def test_json_object_says_json_and_spells_out_the_schema() -> None:
    request = shaped(Capabilities("json_object"))
    assert request["response_format"] == {"type": "json_object"}
    system = request["messages"][0]["content"]
    assert system.startswith("Classify.") and "json" in system
    assert json.loads(system.split("\n")[-1]) == SCHEMA


def test_tool_rung_forces_the_call_unless_the_provider_takes_no_tool_choice() -> None:
    forced = shaped(Capabilities("tool"))
    assert forced["tools"][0]["function"] == {
        "name": "triage",
        "description": "Record the answer.",
        "parameters": SCHEMA,
    }
    assert forced["tool_choice"] == {"type": "function", "function": {"name": "triage"}}
    assert "response_format" not in forced
    free = shaped(Capabilities("tool", tool_choice=False))
    assert "tool_choice" not in free and "json" in free["messages"][0]["content"]


def test_prompt_rung_has_only_the_hint() -> None:
    request = shaped(Capabilities("prompt"))
    assert "response_format" not in request and "tools" not in request
    assert "json" in request["messages"][0]["content"]


def test_images_are_stripped_to_plain_text_when_not_taken() -> None:
    user = shaped(Capabilities("json_schema", images=False))["messages"][1]
    assert user["content"] == "Hello"


def test_images_past_the_byte_budget_are_dropped() -> None:
    size = len(IMAGE["image_url"]["url"])
    budget = shaped(Capabilities("json_schema", images=True, max_image_bytes=size + 10))
    parts = budget["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"]
    unlimited = shaped(Capabilities("json_schema", images=True))["messages"][1]["content"]
    assert [p["type"] for p in unlimited] == ["text", "image_url", "image_url"]


def test_preset_extras_are_data_not_branches() -> None:
    routed = shaped(Capabilities("json_schema"), preset="openrouter")
    assert routed["extra_body"] == {"provider": {"require_parameters": True}}
    assert set(routed["extra_headers"]) == {"HTTP-Referer", "X-Title"}
    plain = shaped(Capabilities("json_schema"), preset="openai")
    assert "extra_body" not in plain and "extra_headers" not in plain


def completion(
    content: str | None = None,
    *,
    finish: str = "stop",
    refusal: str | None = None,
    tool_args: str | None = None,
) -> Any:
    calls = None
    if tool_args is not None:
        calls = [SimpleNamespace(function=SimpleNamespace(arguments=tool_args))]
    message = SimpleNamespace(content=content, refusal=refusal, tool_calls=calls)
    return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason=finish)])


def test_extract_payload_handles_fences_tools_blank_truncation_and_refusals() -> None:
    assert extract_payload(completion('```json\n{"a": "b"}\n```')) == '{"a": "b"}'
    assert extract_payload(completion(None, tool_args='{"a": "c"}')) == '{"a": "c"}'
    with pytest.raises(ValueError, match="blank"):
        extract_payload(completion("   "))
    with pytest.raises(ValueError, match="cut off"):
        extract_payload(completion('{"a": ', finish="length"))
    with pytest.raises(ProviderRefused, match="refused"):
        extract_payload(completion(None, refusal="I can't"))
    with pytest.raises(ProviderRefused, match="content filter"):
        extract_payload(completion("", finish="content_filter"))


def status_error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request)
    body = {"error": {"message": message}}
    return openai.APIStatusError(message, response=response, body=body)


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (401, "bad key", ProviderAuthError),
        (403, "forbidden", ProviderAuthError),
        (429, "slow", ProviderRateLimited),
        (500, "oops", ProviderUnavailable),
        (503, "busy", ProviderUnavailable),
        (404, "no such route", ProviderNotFound),
        (400, "Model Not Exist", ProviderNotFound),
        (400, "response_format json_schema is not supported", CapabilityRejected),
        (400, "Image input is not supported", CapabilityRejected),
        (400, "maximum context length exceeded", ProviderRejected),
    ],
)
def test_status_errors_map_to_what_the_stage_acts_on(
    status: int, message: str, kind: type[Exception]
) -> None:
    mapped = map_status_error(status_error(status, message), secret="sk-xyz-12345678")
    assert type(mapped) is kind


def test_retry_after_seconds_ms_and_default() -> None:
    def wait(headers: dict[str, str]) -> float:
        mapped = map_status_error(status_error(429, "slow", headers), secret="")
        assert isinstance(mapped, ProviderRateLimited)
        return mapped.retry_after

    assert wait({"Retry-After": "12"}) == 12
    assert wait({"retry-after-ms": "1500"}) == 1.5
    assert wait({"Retry-After": "soon"}) == 30
    assert wait({"Retry-After": "999999"}) == 3600


def test_connection_errors_are_unreachable_and_keys_are_scrubbed() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    assert isinstance(
        map_status_error(openai.APIConnectionError(request=request), secret=""),
        ProviderUnreachable,
    )
    key = "sk-live-abcdefgh1234"
    mapped = map_status_error(status_error(401, f"Incorrect API key: {key}"), secret=key)
    assert key not in mapped.reason and "...1234" in mapped.reason
    assert scrub("short", "abc") == "short"


def test_step_down_drops_images_then_strictness_then_rungs() -> None:
    caps = Capabilities("json_schema", images=True)
    no_images = step_down(caps, "image input not supported", had_images=True)
    assert no_images == caps.with_changes(images=False)
    # Without images in the request, an image complaint is not about images.
    assert step_down(caps, "image input not supported", had_images=False) is None
    loose = step_down(caps, "strict mode unsupported", had_images=False)
    assert loose == caps.with_changes(strict=False)
    lower = step_down(loose or caps, "response_format unsupported", had_images=False)
    assert lower is not None and lower.structured == "json_object"
    tool = Capabilities("tool")
    assert step_down(tool, "tool_choice unsupported", had_images=False) == tool.with_changes(
        tool_choice=False
    )
    assert step_down(Capabilities("prompt"), "response_format", had_images=False) is None
