"""Provider presets: base URL, default capabilities and extra request data, as one table."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

StructuredMode = Literal["json_schema", "json_object", "tool", "prompt"]

# The ladder, strictest first; a capability error steps one rung down.
LADDER: tuple[StructuredMode, ...] = get_args(StructuredMode)

# OpenRouter ranks apps by these headers; they name the software, never the user.
APP_HEADERS = {
    "HTTP-Referer": "https://github.com/mail-triage/mail-triage",
    "X-Title": "mail-triage",
}


@dataclass(frozen=True)
class Capabilities:
    """How to ask one (provider, model) for structured output, and whether it takes images.

    Stored as JSON on each provider setting (the probe and the ladder refine it), so request
    code reads these fields instead of branching on provider names.
    """

    structured: StructuredMode = "json_object"
    strict: bool = True  # json_schema rung: send "strict": true
    tool_choice: bool = True  # tool rung: force the call with tool_choice
    images: bool = False
    max_image_bytes: int | None = None  # base64 image bytes one request may carry

    def to_json(self) -> dict[str, Any]:
        return {
            "structured": self.structured,
            "strict": self.strict,
            "tool_choice": self.tool_choice,
            "images": self.images,
            "max_image_bytes": self.max_image_bytes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, *, default: Capabilities) -> Capabilities:
        """Stored values over the preset's defaults; unknown or malformed keys are ignored."""
        data = data or {}
        structured = data.get("structured", default.structured)
        if structured not in LADDER:
            structured = default.structured
        limit = data.get("max_image_bytes", default.max_image_bytes)
        return cls(
            structured=structured,
            strict=bool(data.get("strict", default.strict)),
            tool_choice=bool(data.get("tool_choice", default.tool_choice)),
            images=bool(data.get("images", default.images)),
            max_image_bytes=limit if isinstance(limit, int) and limit > 0 else None,
        )

    def with_changes(self, **changes: Any) -> Capabilities:
        return replace(self, **changes)


@dataclass(frozen=True)
class Preset:
    """One provider: where it lives and what its documentation says it can do."""

    name: str
    base_url: str
    capabilities: Capabilities
    price_provider: str | None = None  # genai-prices provider id; None: self-hosted, free
    extra_body: dict[str, Any] = field(default_factory=dict)
    extra_headers: dict[str, str] = field(default_factory=dict)
    needs_key: bool = True
    note: str = ""


def _caps(structured: StructuredMode, **rest: Any) -> Capabilities:
    return Capabilities(structured=structured, **rest)


MIB = 1024 * 1024

# From the providers' documentation (see the README's provider table); the probe corrects
# per model what a provider's default here gets wrong.
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "openai",
            "https://api.openai.com/v1",
            _caps("json_schema", images=True),
            "openai",
        ),
        Preset(
            "deepseek",
            "https://api.deepseek.com",
            _caps("json_object", images=False),
            "deepseek",
            note="JSON mode only (the prompt says json); text models reject image parts",
        ),
        Preset(
            "anthropic",
            "https://api.anthropic.com/v1/",
            _caps("tool", images=True),
            "anthropic",
            note="response_format is ignored: a forced tool call carries the answer",
        ),
        Preset(
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/openai/",
            _caps("json_schema", images=True),
            "google",
            note="the trailing slash of the base URL matters",
        ),
        Preset(
            "mistral",
            "https://api.mistral.ai/v1",
            _caps("json_schema", images=False),
            "mistral",
            note="images on vision models only (the probe finds out)",
        ),
        Preset(
            "xai",
            "https://api.x.ai/v1",
            _caps("json_schema", images=True, max_image_bytes=10 * MIB),
            "x-ai",
        ),
        Preset(
            "groq",
            "https://api.groq.com/openai/v1",
            _caps("json_schema", strict=False, images=False, max_image_bytes=3 * MIB),
            "groq",
            note="strict schemas only on some models; images on vision models, 4 MB a request",
        ),
        Preset(
            "openrouter",
            "https://openrouter.ai/api/v1",
            _caps("json_schema", images=False),
            "openrouter",
            extra_body={"provider": {"require_parameters": True}},
            extra_headers=APP_HEADERS,
            note="routes only to upstreams that honour every parameter sent",
        ),
        Preset(
            "ollama",
            "http://localhost:11434/v1/",
            _caps("json_schema", tool_choice=False, images=False),
            needs_key=False,
            note="no tool_choice; images (base64) on multimodal models",
        ),
        Preset(
            "vllm",
            "http://localhost:8000/v1",
            _caps("json_schema", images=False),
            needs_key=False,
            note="guided decoding; images on multimodal models",
        ),
        Preset(
            "llamacpp",
            "http://localhost:8080/v1",
            _caps("json_schema", images=False),
            needs_key=False,
            note="images when the server runs with --mmproj",
        ),
        Preset(
            "custom",
            "",
            _caps("json_object", images=False),
            note="any OpenAI-compatible --base-url; run `triage providers test` to learn more",
        ),
    )
}


def preset_for(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ValueError(f"unknown provider {name!r}; known: {known}") from None


def preset_or_custom(name: str) -> Preset:
    """The named preset; a setting saved under a name no longer known behaves as `custom`."""
    return PRESETS.get(name, PRESETS["custom"])


def default_capabilities(name: str) -> dict[str, Any]:
    return preset_for(name).capabilities.to_json()


def capabilities_of(provider: str, stored: dict[str, Any] | None) -> Capabilities:
    """What a setting's requests are shaped by: what was stored, else the preset's defaults."""
    return Capabilities.from_json(stored, default=preset_or_custom(provider).capabilities)
