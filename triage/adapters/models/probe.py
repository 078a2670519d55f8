"""The probe: which rung of the ladder a (provider, model) answers on, and whether it sees images.

Published capability tables are often wrong, so a tiny JSON call is made per request shape,
strictest first, until an answer validates; then one call with a small generated image whose
colour the model must name. What it finds is what later requests are shaped by.
"""

from __future__ import annotations

import base64
import io
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from triage.adapters.models.client import OpenAICompatibleClient, UnusableContent
from triage.adapters.models.errors import ProviderNotFound, ProviderUnreachable
from triage.adapters.models.presets import LADDER, Capabilities, preset_or_custom
from triage.pipeline.ports import (
    ProviderAuthError,
    ProviderConfig,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    Usage,
)

# Solid fills a model that sees the image cannot get wrong; one in four is a guess's chance.
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (235, 205, 30),
}
# Why the probe stopped early, by the error that stopped it (most specific first).
_STOPS: tuple[tuple[type[ProviderError], str], ...] = (
    (ProviderAuthError, "key_rejected"),
    (ProviderUnreachable, "unreachable"),
    (ProviderNotFound, "model_not_found"),
    (ProviderRateLimited, "rate_limited"),
    (ProviderUnavailable, "provider_error"),
)


_AnswerT = TypeVar("_AnswerT", bound=BaseModel)


class _SumAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sum: int


class _ColourAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    color: Literal["red", "green", "blue", "yellow"]


_SUM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"sum": {"type": "integer"}},
    "required": ["sum"],
    "additionalProperties": False,
}
_COLOUR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"color": {"type": "string", "enum": sorted(COLOURS)}},
    "required": ["color"],
    "additionalProperties": False,
}


@dataclass
class ProbeReport:
    """What a probe found; `status` is `ok` when the setting can be used as it is."""

    status: str = "ok"
    detail: str = ""
    capabilities: dict[str, Any] | None = None  # None: the probe did not get that far
    shapes: list[dict[str, str]] = field(default_factory=list)  # each request shape tried
    images: str = "not tried"
    usage: Usage = field(default_factory=Usage)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def reached(self) -> bool:
        """True when the provider gave a definite answer (not down, not busy)."""
        return self.status in ("ok", "key_rejected", "model_not_found", "no_structured_output")

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "detail": self.detail,
            "capabilities": self.capabilities,
            "shapes": self.shapes,
            "images": self.images,
            "calls": self.usage.calls,
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "latency_ms": self.usage.latency_ms,
            "at": self.at,
        }


class ModelProber:
    """Runs the probe calls through the same client (and error mapping) as real requests."""

    def __init__(self, client: OpenAICompatibleClient) -> None:
        self._client = client

    def probe(self, config: ProviderConfig) -> ProbeReport:
        report = ProbeReport()
        start = preset_or_custom(config.provider).capabilities
        found = self._structured(config, start, report)
        if found is None:
            if report.status == "ok":
                report.status = "no_structured_output"
                report.detail = "no request shape gave a valid JSON answer"
            return report
        images = self._images(config, found, report)
        report.capabilities = found.with_changes(images=images).to_json()
        return report

    def _structured(
        self, config: ProviderConfig, start: Capabilities, report: ProbeReport
    ) -> Capabilities | None:
        """The first shape, strictest first, whose answer validates; None when none does."""
        for shape in shapes_from(start):
            a, b = random.randint(10, 49), random.randint(10, 49)
            messages = [
                {"role": "system", "content": "You answer in JSON only."},
                {"role": "user", "content": f"What is {a} + {b}? Answer as a json object: sum."},
            ]
            raw, problem = self._call(config, report, messages, "probe_sum", _SUM_SCHEMA, shape)
            answer, invalid = _parse(_SumAnswer, raw)
            if answer is None:
                result = problem or f"invalid: {invalid}"
                report.shapes.append({"shape": describe(shape), "result": result})
                if report.status != "ok":  # a stop: nothing more to learn from it now
                    return None
                continue
            note = "ok" if answer.sum == a + b else f"ok (but said {a}+{b}={answer.sum})"
            report.shapes.append({"shape": describe(shape), "result": note})
            return shape
        return None

    def _images(self, config: ProviderConfig, found: Capabilities, report: ProbeReport) -> bool:
        """True when the model named the colour of a generated image."""
        colour = random.choice(sorted(COLOURS))
        content = [
            {"type": "text", "text": "Which colour fills this image? Answer as json: color."},
            {"type": "image_url", "image_url": {"url": _png_data_url(colour), "detail": "low"}},
        ]
        shape = found.with_changes(images=True, max_image_bytes=None)
        raw, problem = self._call(
            config,
            report,
            [{"role": "user", "content": content}],
            "probe_color",
            _COLOUR_SCHEMA,
            shape,
        )
        if report.status != "ok":  # down or busy mid-probe: keep what the preset says
            report.status, report.detail = "ok", ""
            report.images = f"not determined ({problem})"
            return found.images
        answer, invalid = _parse(_ColourAnswer, raw)
        if answer is None:
            report.images = f"no: {problem or 'invalid answer: ' + invalid}"
            return False
        if answer.color != colour:
            report.images = f"no: called a {colour} image {answer.color}"
            return False
        report.images = "yes"
        return True

    def _call(
        self,
        config: ProviderConfig,
        report: ProbeReport,
        messages: list[dict[str, Any]],
        name: str,
        schema: dict[str, Any],
        shape: Capabilities,
    ) -> tuple[str | None, str]:
        """(raw answer, "") or (None, why not); an error that ends the probe sets its status."""
        try:
            raw, usage = self._client.send(
                config, messages=messages, schema_name=name, json_schema=schema, capabilities=shape
            )
        except ProviderError as exc:
            report.usage = report.usage + exc.usage
            stop = next((status for kind, status in _STOPS if isinstance(exc, kind)), None)
            if stop is not None:
                report.status, report.detail = stop, exc.reason
                return None, f"{stop}: {exc.reason}"
            kind = "unusable" if isinstance(exc, UnusableContent) else "rejected"
            return None, f"{kind}: {exc.reason}"
        report.usage = report.usage + usage
        return raw, ""


def shapes_from(start: Capabilities) -> list[Capabilities]:
    """Every request shape from the preset's best documented rung down to a plain prompt."""
    shapes: list[Capabilities] = []
    text_only = start.with_changes(images=False)
    for rung in LADDER[LADDER.index(start.structured) :]:
        if rung == "json_schema":
            stricts = [True, False] if start.strict else [False]
            shapes += [text_only.with_changes(structured=rung, strict=s) for s in stricts]
        elif rung == "tool":
            forced = [True, False] if start.tool_choice else [False]
            shapes += [text_only.with_changes(structured=rung, tool_choice=f) for f in forced]
        else:
            shapes.append(text_only.with_changes(structured=rung))
    return shapes


def describe(shape: Capabilities) -> str:
    """A short name of a request shape, for reports."""
    if shape.structured == "json_schema":
        return "json_schema strict" if shape.strict else "json_schema"
    if shape.structured == "tool":
        return "tool (forced)" if shape.tool_choice else "tool"
    return shape.structured


def _parse(model: type[_AnswerT], raw: str | None) -> tuple[_AnswerT | None, str]:
    if raw is None:
        return None, ""
    try:
        return model.model_validate_json(raw), ""
    except ValidationError as exc:
        first = exc.errors()[0]
        return None, f"{'.'.join(str(p) for p in first['loc']) or 'answer'}: {first['msg']}"


def _png_data_url(colour: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (128, 128), COLOURS[colour]).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
