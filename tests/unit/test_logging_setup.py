"""JSON log lines carry message and account IDs, and never a key, token or password."""

from __future__ import annotations

import io
import json
import logging

import pytest

from triage.adapters.metrics import failure_reason
from triage.logging_setup import configure_logging, log_context, redact


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("calling with sk-proj-Abcdefgh12345678", "sk-proj-Abcdefgh12345678"),
        ("Authorization: Bearer eyJhbGciOi.abc.def", "eyJhbGciOi.abc.def"),
        ('{"password": "hunter2-long"}', "hunter2-long"),
        ("imap login password=Tr0ub4dor&3 failed", "Tr0ub4dor"),
        ("postgresql+psycopg://triage:s3cret@db:5432/triage", "s3cret"),
        ("TRIAGE_SECRET_KEYS=" + "A" * 43 + "=", "A" * 43),
        ("stored gAAAAABlZ" + "x" * 60 + "==", "x" * 60),
        ("gemini key AIzaSyA1234567890abcdefghijklmnop", "AIzaSyA1234567890abcdefghijklmnop"),
    ],
)
def test_redact_masks_what_looks_like_a_secret(line: str, secret: str) -> None:
    assert secret not in redact(line)
    assert "[redacted]" in redact(line)


def test_redact_leaves_ordinary_lines_alone() -> None:
    line = "message 42 of account 7 triaged as needs_reply in 812 ms (sha256 " + "ab" * 32 + ")"
    assert redact(line) == line


def test_json_lines_carry_ids_and_mask_tracebacks() -> None:
    configure_logging(fmt="json", level="INFO")
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    log = logging.getLogger("triage.test")
    with log_context(message_id=42, account_id=7):
        log.info("stored %s", "a result")
        try:
            raise RuntimeError("provider said: invalid api_key=sk-live-1234567890abcdef")
        except RuntimeError:
            log.exception("call failed")
    log.info("outside")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "stored a result"
    assert (first["message_id"], first["account_id"], first["level"]) == (42, 7, "INFO")
    assert "sk-live" not in json.dumps(second) and "[redacted]" in second["exc_info"]
    assert "message_id" not in third
    configure_logging(fmt="text", level="INFO")


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        ("classify: model key rejected, setting disabled until it is fixed: 401", "auth"),
        ("classify: provider error 503: overloaded", "unavailable"),
        ("classify: APITimeoutError: provider unreachable", "unavailable"),
        ("classify: invalid answer after a re-ask: category", "invalid_output"),
        ("no valid model is configured for this user (triage providers set)", "no_model"),
        (None, "other"),
    ],
)
def test_failure_reasons_are_a_small_fixed_set(detail: str | None, reason: str) -> None:
    assert failure_reason(detail) == reason
