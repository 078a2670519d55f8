"""The interfaces stages depend on, and the failures a model provider can report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

AnswerT = TypeVar("AnswerT", bound=BaseModel)


@dataclass(frozen=True)
class ProviderConfig:
    """One provider setting with its key decrypted, alive only inside a worker's call."""

    setting_id: int
    provider: str
    base_url: str
    model: str
    api_key: str = field(repr=False)
    capabilities: dict[str, Any] = field(default_factory=dict)
    requests_per_minute: int | None = None  # the user's own limit for this key; None: no limit
    price_override: str | None = None  # "in/out" USD per 1M tokens; None: the public table


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    latency_ms: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.calls + other.calls,
            self.latency_ms + other.latency_ms,
        )


@dataclass(frozen=True)
class ModelReply(Generic[AnswerT]):
    answer: AnswerT
    usage: Usage
    capabilities: dict[str, Any] = field(default_factory=dict)  # as learned during the call


class ProviderError(Exception):
    """Base of the failures a provider call can end in; `usage` is what was billed anyway."""

    def __init__(self, reason: str, *, usage: Usage | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.usage = usage or Usage()


class ProviderAuthError(ProviderError):
    """401/403: the user's key is wrong. Never retried."""


class ProviderRateLimited(ProviderError):
    """429: try again after `retry_after` seconds, through the queue."""

    def __init__(self, reason: str, *, retry_after: float, usage: Usage | None = None) -> None:
        super().__init__(reason, usage=usage)
        self.retry_after = retry_after


class ProviderThrottled(ProviderRateLimited):
    """Our own per-key bucket is empty: wait `retry_after`; the provider was not called."""


class ProviderUnavailable(ProviderError):
    """5xx, timeout or connection error: retried with backoff, a bounded number of times."""


class ProviderRejected(ProviderError):
    """A 4xx other than auth and rate limits: the request itself is refused (capability, policy)."""


class ProviderRefused(ProviderRejected):
    """The model answered with a refusal, or a content filter blocked the answer."""


class InvalidModelOutput(ProviderError):
    """The answer did not validate, even after one re-ask."""


Validator = Callable[[AnswerT], None]


class ModelPort(Protocol):
    def ask(
        self,
        config: ProviderConfig,
        *,
        messages: list[dict[str, Any]],
        answer_type: type[AnswerT],
        schema_name: str,
        json_schema: dict[str, Any],
        check: Callable[[AnswerT], None] | None = None,
    ) -> ModelReply[AnswerT]: ...


class Enqueuer(Protocol):
    """Hands message IDs to whatever runs the next stage (Celery, or a local thread pool)."""

    def triage(self, message_id: int) -> None: ...

    def triage_many(self, message_ids: Sequence[int]) -> None:
        """The same for a batch (one broker round trip where the broker allows)."""
        ...

    def draft(self, message_id: int) -> None: ...

    def write_back(self, message_id: int) -> None:
        """Tag/move the message and APPEND its draft in the user's mailbox (IMAP work)."""
        ...

    def rerun(self, request_id: int) -> None:
        """Triage a message again as a console re-run request says (rerun_requests row)."""
        ...
