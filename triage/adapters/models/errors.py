"""Turn the SDK's HTTP and connection errors into the pipeline's provider errors, key scrubbed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import openai

from triage.pipeline.ports import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)

DEFAULT_RETRY_AFTER = 30.0
MAX_RETRY_AFTER = 3600.0  # a silly Retry-After must not park a message for days
_CAPABILITY_STATUSES = frozenset({400, 415, 422})
CAPABILITY_HINTS = ("response_format", "json_schema", "json_object", "strict", "tool", "function")
IMAGE_HINTS = ("image", "vision", "multimodal")
_MODEL_MISSING = re.compile(
    r"model\b.{0,80}\b(not found|not exist|does not exist|unknown|not available|no such)"
    r"|(unknown|invalid|unsupported) model|model_not_found",
    re.IGNORECASE | re.DOTALL,
)


class CapabilityRejected(ProviderRejected):
    """A 400-like refusal of the request's shape (response_format, tools, images)."""


class ProviderNotFound(ProviderRejected):
    """404, or a 400 that names the model as unknown: wrong model name or base URL."""


class ProviderUnreachable(ProviderUnavailable):
    """No connection at all: wrong host or port, DNS, TLS, or the server is down."""


def map_status_error(exc: openai.APIError, *, secret: str) -> ProviderError:
    """The pipeline's error for an SDK error; nothing of the key survives in the reason."""
    if isinstance(exc, openai.APIConnectionError):
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
        return ProviderUnreachable(f"cannot connect to the provider ({cause})")
    if not isinstance(exc, openai.APIStatusError):
        return ProviderUnavailable(scrub(f"provider error: {exc.message}", secret)[:300])
    status = exc.status_code
    message = scrub(_error_message(exc), secret)
    if status in (401, 403):
        return ProviderAuthError(f"the provider refused the key ({status}): {message}")
    if status == 429:
        return ProviderRateLimited(
            f"rate limited (429): {message}", retry_after=_retry_after(exc.response)
        )
    if status >= 500 or status in (408, 409):
        return ProviderUnavailable(f"provider error {status}: {message}")
    if status == 404:
        return ProviderNotFound(f"model or endpoint not found ({status}): {message}")
    lowered = message.lower()
    if status in _CAPABILITY_STATUSES and any(
        hint in lowered for hint in CAPABILITY_HINTS + IMAGE_HINTS
    ):
        return CapabilityRejected(f"request shape refused ({status}): {message}")
    if _MODEL_MISSING.search(message):  # several providers answer 400 for an unknown model
        return ProviderNotFound(f"model not found ({status}): {message}")
    return ProviderRejected(f"request refused ({status}): {message}")


def scrub(text: str, secret: str) -> str:
    """Replace the key (should a provider echo it) by its last four characters."""
    if len(secret) >= 8 and secret in text:
        text = text.replace(secret, f"...{secret[-4:]}")
    return text


def _error_message(exc: openai.APIStatusError) -> str:
    body: Any = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        if isinstance(inner, str):
            return inner[:300]
    return str(exc.message)[:300]


def _retry_after(response: Any) -> float:
    """Seconds from Retry-After-Ms, or Retry-After in seconds or as an HTTP date."""
    headers = response.headers
    seconds: float | None = None
    if "retry-after-ms" in headers:
        seconds = _number(headers["retry-after-ms"])
        seconds = None if seconds is None else seconds / 1000
    if seconds is None and "retry-after" in headers:
        value = headers["retry-after"]
        seconds = _number(value)
        if seconds is None:
            try:
                seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
            except (TypeError, ValueError):
                seconds = None
    if seconds is None:
        return DEFAULT_RETRY_AFTER
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
