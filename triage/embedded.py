"""The embedded default: the same stages run on a local thread pool instead of Celery workers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from triage.adapters.imap import ImapMailbox, Timeouts
from triage.pipeline.draft import draft_message
from triage.pipeline.model_calls import StageOutcome
from triage.pipeline.rerun import rerun_triage
from triage.pipeline.triage import triage_message
from triage.pipeline.write_back import write_back_message
from triage.runtime import Runtime

log = logging.getLogger(__name__)


class LocalEnqueuer:
    """Implements the Enqueuer port in-process; retries wait on timers, not in a worker."""

    def __init__(self, runtime: Runtime, *, workers: int) -> None:
        self._runtime = runtime
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="triage")
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)

    def triage(self, message_id: int) -> None:
        self._submit(self._run_triage, message_id, 1)

    def triage_many(self, message_ids: Sequence[int]) -> None:
        for message_id in message_ids:
            self.triage(message_id)

    def draft(self, message_id: int) -> None:
        self._submit(self._run_draft, message_id, 1)

    def write_back(self, message_id: int) -> None:
        self._submit(self._run_write_back, message_id, 1)

    def rerun(self, request_id: int) -> None:
        self._submit(self._run_rerun, request_id, 1)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted stage, retries included, has finished."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def shutdown(self) -> None:
        with self._lock:
            for timer in self._timers:
                timer.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run_triage(self, message_id: int, attempt: int) -> StageOutcome:
        rt = self._runtime
        return triage_message(
            message_id=message_id,
            attempt=attempt,
            db=rt.db,
            model=rt.model,
            secrets=rt.secrets,
            enqueue=self,
            settings=rt.settings,
        )

    def _run_draft(self, message_id: int, attempt: int) -> StageOutcome:
        rt = self._runtime
        return draft_message(
            message_id=message_id,
            attempt=attempt,
            db=rt.db,
            model=rt.model,
            secrets=rt.secrets,
            settings=rt.settings,
            enqueue=self,
        )

    def _run_rerun(self, request_id: int, attempt: int) -> StageOutcome:
        rt = self._runtime
        return rerun_triage(
            request_id=request_id,
            attempt=attempt,
            db=rt.db,
            model=rt.model,
            secrets=rt.secrets,
            settings=rt.settings,
        )

    def _run_write_back(self, message_id: int, attempt: int) -> StageOutcome:
        rt = self._runtime
        timeouts = Timeouts(
            connect=rt.settings.imap_connect_timeout, read=rt.settings.imap_read_timeout
        )
        return write_back_message(
            message_id=message_id,
            attempt=attempt,
            db=rt.db,
            secrets=rt.secrets,
            open_mailbox=lambda login: ImapMailbox(
                login, timeouts=timeouts, ca_file=rt.settings.imap_ca_file
            ),
        )

    def _submit(
        self, stage: Callable[[int, int], StageOutcome], message_id: int, attempt: int
    ) -> None:
        with self._lock:
            self._pending += 1
        self._pool.submit(self._run, stage, message_id, attempt)

    def _run(
        self, stage: Callable[[int, int], StageOutcome], message_id: int, attempt: int
    ) -> None:
        try:
            outcome = stage(message_id, attempt)
            if outcome.retry_after is not None:
                following = attempt + 1 if outcome.counts_as_attempt else attempt
                self._later(outcome.retry_after, stage, message_id, following)
        except Exception:
            log.exception("stage %s failed on message %s", stage.__name__, message_id)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _later(
        self, delay: float, stage: Callable[[int, int], StageOutcome], message_id: int, attempt: int
    ) -> None:
        with self._lock:
            self._pending += 1

        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
                self._pending -= 1
            self._submit(stage, message_id, attempt)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()
