"""Logging for every process: JSON lines (or text) carrying message and account IDs, no secrets.

Stages log IDs, never content. `log_context(message_id=..., account_id=...)` puts the IDs on
every record logged inside it (task wrappers and sync passes use it), so a line from the
HTTP client or the database driver still says which message it was about. A filter masks
anything that looks like a key, token or password in the formatted line, as a second line of
defence.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_KEYS = ("message_id", "account_id", "task_id")
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_context", default={})  # noqa: B039 - never mutated

_SECRET_PATTERNS = (
    # Provider keys: sk-..., sk-ant-..., gsk_..., xai-..., AIza... (Gemini).
    re.compile(r"\b(?:sk|gsk|xai|pk|rk)[-_][A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]+=*"),
    # key=value pairs and URL credentials: password=..., "api_key": "...", user:pw@host
    re.compile(
        r"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|authorization)[\"']?\s*[=:]\s*[\"']?)"
        r"[^\s\"'\\,;&]+"
    ),
    re.compile(r"(?<=://)[^/\s:@\"'\\]+:[^/\s@\"'\\]+(?=@)"),
    # Fernet keys (TRIAGE_SECRET_KEYS) and Fernet tokens (secrets at rest).
    re.compile(r"\b[A-Za-z0-9_\-]{43}="),
    re.compile(r"\bgAAAAA[A-Za-z0-9_\-]{40,}=*"),
)
MASK = "[redacted]"


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pattern.sub(MASK, text)
    return text


class ContextFilter(logging.Filter):
    """Adds the IDs of the current `log_context` to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines; the message and any traceback are masked before they are serialized."""

    def format(self, record: logging.LogRecord) -> str:
        record.msg, record.args = redact(record.getMessage()), None
        return super().format(record)

    # python-json-logger widens these two to lists (its exc_info_as_array), with the same ignore.
    def formatException(self, ei: Any) -> str | list[str]:  # type: ignore[override]
        return _redact_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str | list[str]:  # type: ignore[override]
        return _redact_lines(super().formatStack(stack_info))


def _redact_lines(text: str | list[str]) -> str | list[str]:
    return redact(text) if isinstance(text, str) else [redact(line) for line in text]


class RedactingTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


@contextmanager
def log_context(**ids: int | str | None) -> Iterator[None]:
    """Every record logged inside carries these IDs (each thread has its own context)."""
    merged = {**_context.get(), **{k: v for k, v in ids.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def configure_logging(*, fmt: str = "json", level: str = "INFO") -> None:
    """Replace the root handlers: one stream handler on stderr, JSON lines or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            RedactingJsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(RedactingTextFormatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # One INFO line per HTTP request would name provider URLs at every call; failures still
    # surface as WARNING from the clients and as our own stage logs.
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
