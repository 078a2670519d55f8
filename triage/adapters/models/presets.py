"""Provider presets: base URL and default capabilities, as data (probes may refine them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

StructuredMode = Literal["json_schema", "json_object", "tool", "prompt"]

# The ladder, strictest first; a capability error steps one rung down.
LADDER: tuple[StructuredMode, ...] = ("json_schema", "json_object", "tool", "prompt")


@dataclass(frozen=True)
class Preset:
    name: str
    base_url: str
    structured: StructuredMode
    images: bool
    price_provider: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    needs_key: bool = True


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("openai", "https://api.openai.com/v1", "json_schema", True, "openai"),
        Preset("deepseek", "https://api.deepseek.com", "json_object", False, "deepseek"),
        Preset("anthropic", "https://api.anthropic.com/v1/", "tool", True, "anthropic"),
        Preset(
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/openai/",
            "json_object",
            True,
            "google",
        ),
        Preset("mistral", "https://api.mistral.ai/v1", "json_schema", False, "mistral"),
        Preset("xai", "https://api.x.ai/v1", "json_schema", True, "x-ai"),
        Preset("groq", "https://api.groq.com/openai/v1", "json_object", False, "groq"),
        Preset(
            "openrouter",
            "https://openrouter.ai/api/v1",
            "json_schema",
            False,
            "openrouter",
            extra_body={"provider": {"require_parameters": True}},
        ),
        Preset("ollama", "http://localhost:11434/v1/", "json_schema", False, None, needs_key=False),
        Preset("vllm", "http://localhost:8000/v1", "json_schema", False, None, needs_key=False),
        Preset("llamacpp", "http://localhost:8080/v1", "json_schema", False, None, needs_key=False),
        Preset("custom", "", "json_object", False, None),
    )
}


def preset_for(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ValueError(f"unknown provider {name!r}; known: {known}") from None


def default_capabilities(name: str) -> dict[str, Any]:
    preset = preset_for(name)
    return {"structured": preset.structured, "images": preset.images}
