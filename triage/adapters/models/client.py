"""One client for every OpenAI-compatible provider: shapes the request, maps errors, validates."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import openai
from pydantic import ValidationError

from triage.adapters.models.errors import (
    CAPABILITY_HINTS,
    IMAGE_HINTS,
    CapabilityRejected,
    map_status_error,
)
from triage.adapters.models.presets import LADDER, Capabilities, capabilities_of, preset_or_custom
from triage.adapters.models.shaping import build_request, extract_payload, image_count
from triage.adapters.rate_limit import (
    RateLimiter,
    RateLimiterUnavailable,
    bucket_name,
    limiter_for,
)
from triage.config import Settings
from triage.pipeline.ports import (
    AnswerT,
    InvalidModelOutput,
    ModelReply,
    ProviderConfig,
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
    Usage,
)


class UnusableContent(ProviderError):
    """The call succeeded but carried no usable answer (blank, truncated)."""


class OpenAICompatibleClient:
    """Implements the pipeline's ModelPort with the `openai` SDK, one HTTP pool per key."""

    def __init__(self, *, timeout: float, limiter: RateLimiter | None = None) -> None:
        self._timeout = timeout
        self._limiter = limiter
        self._clients: dict[tuple[str, str], openai.OpenAI] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAICompatibleClient:
        return cls(timeout=settings.model_call_timeout, limiter=limiter_for(settings.broker_url))

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
        capabilities = capabilities_of(config.provider, config.capabilities)
        usage = Usage()
        conversation = list(messages)
        for attempt in (1, 2):
            try:
                raw, used, capabilities = self._call_stepping_down(
                    config, conversation, schema_name, json_schema, capabilities
                )
            except UnusableContent as exc:
                usage, raw, problem = usage + exc.usage, "", exc.reason
            except ProviderError as exc:
                exc.usage = usage + exc.usage  # the first call is billed even if the re-ask fails
                raise
            else:
                usage = usage + used
                answer, problem = _validate(raw, answer_type, check)
                if answer is not None:
                    return ModelReply(
                        answer=answer, usage=usage, capabilities=capabilities.to_json()
                    )
            if attempt == 2:
                raise InvalidModelOutput(f"invalid answer after a re-ask: {problem}", usage=usage)
            conversation += _reask(raw, problem)
        raise AssertionError("unreachable")

    def send(
        self,
        config: ProviderConfig,
        *,
        messages: list[dict[str, Any]],
        schema_name: str,
        json_schema: dict[str, Any],
        capabilities: Capabilities,
    ) -> tuple[str, Usage]:
        """Exactly one call shaped by `capabilities`: no ladder, no re-ask, no pacing."""
        request = build_request(
            model=config.model,
            messages=messages,
            schema_name=schema_name,
            json_schema=json_schema,
            capabilities=capabilities,
            preset=preset_or_custom(config.provider),
        )
        started = time.monotonic()
        try:
            completion = self._client(config).chat.completions.create(**request)
        except openai.APIStatusError as exc:
            raise map_status_error(exc, secret=config.api_key) from None
        except openai.APITimeoutError:
            raise ProviderUnavailable(f"no answer within {self._timeout:g}s (timeout)") from None
        except openai.APIConnectionError as exc:
            raise map_status_error(exc, secret=config.api_key) from None
        usage = _usage_of(completion, int((time.monotonic() - started) * 1000))
        try:
            return extract_payload(completion), usage
        except ProviderError as exc:
            exc.usage = usage
            raise
        except ValueError as exc:
            # Blank or truncated content: the caller re-asks with the reason.
            raise UnusableContent(str(exc), usage=usage) from None

    def _call_stepping_down(
        self,
        config: ProviderConfig,
        messages: list[dict[str, Any]],
        schema_name: str,
        json_schema: dict[str, Any],
        capabilities: Capabilities,
    ) -> tuple[str, Usage, Capabilities]:
        """One answer; a capability error steps down the ladder (or drops images) and retries."""
        while True:
            self._pace(config)
            try:
                raw, usage = self.send(
                    config,
                    messages=messages,
                    schema_name=schema_name,
                    json_schema=json_schema,
                    capabilities=capabilities,
                )
                return raw, usage, capabilities
            except CapabilityRejected as exc:
                stepped = step_down(capabilities, exc.reason, had_images=image_count(messages) > 0)
                if stepped is None:
                    raise
                capabilities = stepped

    def _pace(self, config: ProviderConfig) -> None:
        """Take a slot from the key's bucket, or ask the stage to come back later."""
        rpm = config.requests_per_minute
        if not rpm or self._limiter is None:
            return
        bucket = bucket_name(base_url=config.base_url, api_key=config.api_key)
        try:
            wait = self._limiter.acquire(bucket, per_minute=rpm)
        except RateLimiterUnavailable as exc:
            raise ProviderUnavailable(str(exc)) from None
        if wait > 0:
            # Spread the waiting stages over a few slots so they do not all return at once.
            spread = random.uniform(0, max(1.0, 120.0 / rpm))
            raise ProviderThrottled(
                f"held back by this key's own limit of {rpm} requests a minute",
                retry_after=wait + spread,
            )

    def _client(self, config: ProviderConfig) -> openai.OpenAI:
        key = (config.base_url, config.api_key)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = openai.OpenAI(
                    base_url=config.base_url,
                    # Always explicit: the SDK must never pick up a key from the environment.
                    api_key=config.api_key or "no-key",
                    max_retries=0,  # retries go through the queue, not hidden in the SDK
                    timeout=openai.Timeout(self._timeout, connect=min(10.0, self._timeout)),
                )
                self._clients[key] = client
            return client


def step_down(capabilities: Capabilities, reason: str, *, had_images: bool) -> Capabilities | None:
    """The next, less demanding request shape after a capability error; None at the bottom."""
    lowered = reason.lower()
    mode = capabilities.structured
    if had_images and capabilities.images and any(hint in lowered for hint in IMAGE_HINTS):
        return capabilities.with_changes(images=False)
    if mode == "json_schema" and capabilities.strict and "strict" in lowered:
        return capabilities.with_changes(strict=False)
    if mode == "tool" and capabilities.tool_choice and "tool_choice" in lowered:
        return capabilities.with_changes(tool_choice=False)
    if any(hint in lowered for hint in CAPABILITY_HINTS) and mode != LADDER[-1]:
        return capabilities.with_changes(structured=LADDER[LADDER.index(mode) + 1])
    return None


def _usage_of(completion: Any, latency_ms: int) -> Usage:
    usage = getattr(completion, "usage", None)
    return Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        calls=1,
        latency_ms=latency_ms,
    )


def _validate(
    raw: str, answer_type: type[AnswerT], check: Callable[[AnswerT], None] | None
) -> tuple[AnswerT | None, str]:
    try:
        answer = answer_type.model_validate_json(raw)
        if check is not None:
            check(answer)
    except (ValidationError, ValueError) as exc:
        return None, describe_invalid(exc)
    return answer, ""


def describe_invalid(exc: Exception) -> str:
    """A short account of why an answer did not validate, fit to send back to the model."""
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
