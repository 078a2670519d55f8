"""Pure parts of ingestion: byte-bounded fetch chunks, reconnect backoff, IDLE response reading."""

from __future__ import annotations

import pytest

from triage.adapters.imap import ImapError, ImapLogin, ImapMailbox
from triage.config import Settings
from triage.pipeline.ingest_store import size_chunks
from workers.listener import backoff_delay


def test_chunks_keep_bodies_under_the_byte_budget() -> None:
    settings = Settings(fetch_batch_bytes=100, max_message_bytes=1000, secret_keys="x")
    uids = [1, 2, 3, 4, 5, 6]
    sizes = {1: 40, 2: 40, 3: 40, 4: 500, 5: 5000, 6: 10}  # 4 alone; 5 is never downloaded

    chunks = [list(chunk) for chunk in size_chunks(uids, sizes, settings)]

    assert chunks == [[1, 2], [3], [4], [5, 6]]
    assert [uid for chunk in chunks for uid in chunk] == uids


def test_backoff_grows_with_jitter_and_stops_at_the_cap() -> None:
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (20, 300)]:
        delays = [backoff_delay(failures, first=1, cap=300) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1, "no jitter: reconnecting clients would stampede"


def test_a_bye_in_idle_responses_is_a_dead_connection() -> None:
    mailbox = ImapMailbox(ImapLogin("h", 1, "plain", "u", "p"))

    assert mailbox._news_in([(b"OK", b"Still here")]) is False
    assert mailbox._news_in([(3, b"EXPUNGE"), (7, b"EXISTS")]) is True
    with pytest.raises(ImapError, match="closed the connection: Server shutting down"):
        mailbox._news_in([(b"BYE", b"Server", b"shutting", b"down.")])
