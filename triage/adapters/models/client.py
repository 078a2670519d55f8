"""One client for every OpenAI-compatible provider: shapes the request, maps errors, validates."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import openai
from pydantic import ValidationError

from triage.adapters.models.presets import LADDER, StructuredMode, preset_for
from triage.adapters.models.shaping import build_request, extract_payload
from triage.pipeline.ports import (
    AnswerT,
    InvalidModelOutput,
    ModelReply,
    ProviderAuthError,
    ProviderConfig,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    Usage,
)

DEFAULT_RETRY_AFTER = 30.0
_CAPABILITY_HINTS = ("response_format", "json_schema", "json_object", "tool", "function")
_IMAGE_HINTS = ("image", "vision", "multimodal")


class OpenAICompatibleClient:
    """Implements the pipeline's ModelPort with the `openai` SDK, one HTTP pool per key."""

    def __init__(self, *, timeout: float) -> None:
        self._timeout = timeout
        self._clients: dict[tuple[str, str], openai.OpenAI] = {}
        self._lock = threading.Lock()

    def ask(
        self,
        config: ProviderConfig,
        *,
        messages: list[dict[str, Any]],
        answer_type: type[AnswerT],
        schema_name: str,
        json_schema: dict[str, Any],
        check: Callable[[AnswerT], None] | None = None,
    ) -> ModelReply[AnswerT]:
        """Ask, validate, re-ask once with the validation error; raise on anything else."""
        capabilities = dict(config.capabilities) or _preset_capabilities(config.provider)
        usage = Usage()
        conversation = list(messages)
        for attempt in (1, 2):
            try:
                raw, used, capabilities = self._call_stepping_down(
                    config, conversation, schema_name, json_schema, capabilities
                )
            except UnusableContent as exc:
                usage, raw, problem = usage + exc.usage, "", exc.reason
            else:
                usage = usage + used
                answer, problem = _validate(raw, answer_type, check)
                if answer is not None:
                    return ModelReply(answer=answer, usage=usage, capabilities=capabilities)
            if attempt == 2:
                raise InvalidModelOutput(f"invalid answer after a re-ask: {problem}", usage=usage)
            conversation += _reask(raw, problem)
        raise AssertionError("unreachable")

    def _call_stepping_down(
        self,
        config: ProviderConfig,
        messages: list[dict[str, Any]],
        schema_name: str,
        json_schema: dict[str, Any],
        capabilities: dict[str, Any],
    ) -> tuple[str, Usage, dict[str, Any]]:
        """One answer; a capability error steps down the ladder (or drops images) and retries."""
        while True:
            mode: StructuredMode = capabilities.get("structured", "json_object")
            try:
                raw, usage = self._call(config, messages, schema_name, json_schema, capabilities)
                return raw, usage, capabilities
            except ProviderRejected as exc:
                stepped = _step_down(capabilities, exc.reason, mode)
                if stepped is None:
                    raise
                capabilities = stepped

    def _call(
        self,
        config: ProviderConfig,
        messages: list[dict[str, Any]],
        schema_name: str,
        json_schema: dict[str, Any],
        capabilities: dict[str, Any],
    ) -> tuple[str, Usage]:
        request = build_request(
            model=config.model,
            messages=messages,
            schema_name=schema_name,
            json_schema=json_schema,
            capabilities=capabilities,
            extra_body=preset_for_or_custom(config.provider),
        )
        started = time.monotonic()
        try:
            completion = self._client(config).chat.completions.create(**request)
        except openai.APIStatusError as exc:
            raise _map_status_error(exc) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise ProviderUnavailable(f"{type(exc).__name__}: provider unreachable") from None
        latency = int((time.monotonic() - started) * 1000)
        usage = _usage_of(completion, latency)
        try:
            return extract_payload(completion), usage
        except ProviderRejected as exc:
            raise ProviderRejected(exc.reason, usage=usage) from None
        except ValueError as exc:
            # Blank or truncated content: the caller re-asks with the reason.
            raise UnusableContent(str(exc), usage=usage) from None

    def _client(self, config: ProviderConfig) -> openai.OpenAI:
        key = (config.base_url, config.api_key)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = openai.OpenAI(
                    base_url=config.base_url,
                    api_key=config.api_key or "no-key",
                    max_retries=0,  # retries go through the queue, not hidden in the SDK
                    timeout=openai.Timeout(self._timeout, connect=min(10.0, self._timeout)),
                )
                self._clients[key] = client
            return client


def preset_for_or_custom(provider: str) -> dict[str, Any]:
    try:
        return dict(preset_for(provider).extra_body)
    except ValueError:
        return {}


def _preset_capabilities(provider: str) -> dict[str, Any]:
    try:
        preset = preset_for(provider)
    except ValueError:
        return {"structured": "json_object", "images": False}
    return {"structured": preset.structured, "images": preset.images}


def _step_down(
    capabilities: dict[str, Any], reason: str, mode: StructuredMode
) -> dict[str, Any] | None:
    lowered = reason.lower()
    if capabilities.get("images") and any(hint in lowered for hint in _IMAGE_HINTS):
        return {**capabilities, "images": False}
    if any(hint in lowered for hint in _CAPABILITY_HINTS) and mode != LADDER[-1]:
        return {**capabilities, "structured": LADDER[LADDER.index(mode) + 1]}
    return None


def _map_status_error(exc: openai.APIStatusError) -> Exception:
    status = exc.status_code
    message = _error_message(exc)
    if status in (401, 403):
        return ProviderAuthError(f"the provider refused the key ({status}): {message}")
    if status == 429:
        return ProviderRateLimited(
            f"rate limited (429): {message}", retry_after=_retry_after(exc.response)
        )
    if status >= 500 or status in (408, 409):
        return ProviderUnavailable(f"provider error {status}: {message}")
    return ProviderRejected(f"request refused ({status}): {message}")


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(exc.message)[:300]


def _retry_after(response: Any) -> float:
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        if "retry-after" in headers:
            return max(0.0, float(headers["retry-after"]))
    except ValueError:
        pass
    return DEFAULT_RETRY_AFTER


def _usage_of(completion: Any, latency_ms: int) -> Usage:
    usage = getattr(completion, "usage", None)
    return Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        calls=1,
        latency_ms=latency_ms,
    )


class UnusableContent(ProviderError):
    """The call succeeded but carried no usable answer (blank, truncated)."""


def _validate(
    raw: str, answer_type: type[AnswerT], check: Callable[[AnswerT], None] | None
) -> tuple[AnswerT | None, str]:
    try:
        answer = answer_type.model_validate_json(raw)
        if check is not None:
            check(answer)
    except (ValidationError, ValueError) as exc:
        return None, _describe(exc)
    return answer, ""


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'answer'}: {error['msg']}"
            for error in exc.errors()[:8]
        ]
        return "; ".join(problems)
    return str(exc)[:500]


def _reask(raw: str, problem: str) -> list[dict[str, Any]]:
    return [
        {"role": "assistant", "content": raw[:4000]},
        {
            "role": "user",
            "content": f"That answer was not valid: {problem}. "
            "Reply again with only the corrected JSON object.",
        },
    ]
