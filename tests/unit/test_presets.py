"""The preset table says what the providers' documentation says, and capabilities parse safely."""

from __future__ import annotations

import time

import pytest

from triage.adapters.models.presets import (
    LADDER,
    PRESETS,
    Capabilities,
    capabilities_of,
    preset_for,
)
from triage.adapters.models.probe import describe, shapes_from
from triage.adapters.rate_limit import LocalRateLimiter, bucket_name

SELF_HOSTED = {"ollama", "vllm", "llamacpp"}


def test_hosted_presets_use_https_and_need_a_key_self_hosted_need_neither() -> None:
    for name, preset in PRESETS.items():
        if name == "custom":
            assert preset.base_url == "" and preset.needs_key
        elif name in SELF_HOSTED:
            assert preset.base_url.startswith("http://localhost:") and not preset.needs_key
            assert preset.price_provider is None  # nothing billed
        else:
            assert preset.base_url.startswith("https://") and preset.needs_key


def test_the_documented_quirks_are_in_the_data() -> None:
    assert PRESETS["gemini"].base_url.endswith("/openai/")  # the trailing slash matters
    assert PRESETS["anthropic"].capabilities.structured == "tool"  # response_format ignored
    deepseek = PRESETS["deepseek"].capabilities
    assert (deepseek.structured, deepseek.images) == ("json_object", False)
    assert PRESETS["groq"].capabilities.strict is False  # strict only on some models
    assert PRESETS["ollama"].capabilities.tool_choice is False
    assert PRESETS["openrouter"].extra_body == {"provider": {"require_parameters": True}}
    assert PRESETS["xai"].capabilities.max_image_bytes == 10 * 1024 * 1024
    assert {n for n, p in PRESETS.items() if p.extra_body or p.extra_headers} == {"openrouter"}


def test_unknown_provider_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: anthropic, custom, deepseek"):
        preset_for("acme")


def test_stored_capabilities_over_preset_defaults_and_garbage_ignored() -> None:
    assert capabilities_of("deepseek", None) == PRESETS["deepseek"].capabilities
    stored = capabilities_of("openai", {"structured": "tool", "images": False})
    assert (stored.structured, stored.images, stored.strict) == ("tool", False, True)
    broken = capabilities_of("openai", {"structured": "xml", "max_image_bytes": -5})
    assert broken.structured == "json_schema" and broken.max_image_bytes is None
    # A provider name no longer in the table behaves as custom.
    assert capabilities_of("gone", {}) == PRESETS["custom"].capabilities
    caps = Capabilities("json_object", strict=False, tool_choice=False, images=True)
    assert Capabilities.from_json(caps.to_json(), default=Capabilities()) == caps


def test_the_probe_tries_every_shape_from_the_preset_down() -> None:
    openai = [describe(s) for s in shapes_from(PRESETS["openai"].capabilities)]
    assert openai == [
        "json_schema strict",
        "json_schema",
        "json_object",
        "tool (forced)",
        "tool",
        "prompt",
    ]
    deepseek = [describe(s) for s in shapes_from(PRESETS["deepseek"].capabilities)]
    assert deepseek == ["json_object", "tool (forced)", "tool", "prompt"]
    ollama = [describe(s) for s in shapes_from(PRESETS["ollama"].capabilities)]
    assert "tool (forced)" not in ollama and ollama[0] == "json_schema strict"
    assert all(not s.images for s in shapes_from(PRESETS["openai"].capabilities))
    assert LADDER == ("json_schema", "json_object", "tool", "prompt")


def test_local_pacing_spaces_calls_per_bucket() -> None:
    limiter = LocalRateLimiter()
    assert limiter.acquire("a", per_minute=600) == 0
    wait = limiter.acquire("a", per_minute=600)
    assert 0 < wait <= 0.1
    assert limiter.acquire("b", per_minute=600) == 0  # another key, another bucket
    time.sleep(wait)
    assert limiter.acquire("a", per_minute=600) == 0


def test_bucket_names_hide_the_key() -> None:
    name = bucket_name(base_url="https://api.openai.com/v1", api_key="sk-secret-1234")
    assert "sk-secret" not in name and name.startswith("triage:rate:")
    assert name == bucket_name(base_url="https://api.openai.com/v1", api_key="sk-secret-1234")
    assert name != bucket_name(base_url="https://api.openai.com/v1", api_key="sk-other-1234")
