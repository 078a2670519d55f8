"""The life of a message as statuses: which are still moving and which have finished."""

from __future__ import annotations

RECEIVED = "received"
QUEUED = "queued"
PROCESSING = "processing"
TRIAGED = "triaged"
DRAFTED = "drafted"
SKIPPED = "skipped"
FAILED = "failed"
TOO_LARGE = "too_large"
OVER_BUDGET = "over_budget"
ENCRYPTED = "encrypted"

UNFINISHED = frozenset({RECEIVED, QUEUED, PROCESSING})
FINISHED = frozenset({TRIAGED, DRAFTED, SKIPPED, FAILED, TOO_LARGE, OVER_BUDGET, ENCRYPTED})
# What `triage retry` may send back to the queue.
RETRYABLE = frozenset({FAILED, OVER_BUDGET, SKIPPED, *UNFINISHED})
