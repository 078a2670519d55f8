"""How `triage sync` shows progress: a bar with counts and rate on a TTY, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Never

from tqdm import tqdm

log = logging.getLogger("triage.sync")


class SyncProgress:
    """The Progress callback of one account's sync; call close() when the account is done."""

    def __init__(self, account_id: int, *, stream: IO[str] | None = None) -> None:
        self._account_id = account_id
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._bar: tqdm[Never] | None = None
        self._folder: str | None = None
        self._started = time.monotonic()

    def __call__(self, folder: str, done: int, total: int) -> None:
        if folder != self._folder or done == 0:
            self._start(folder, total)
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
        elif done:
            elapsed = max(time.monotonic() - self._started, 1e-6)
            log.info(
                "account %s %s: %s/%s messages (%.0f msg/s)",
                self._account_id,
                folder,
                done,
                total,
                done / elapsed,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _start(self, folder: str, total: int) -> None:
        self.close()
        self._folder, self._started = folder, time.monotonic()
        if self._tty:
            self._bar = tqdm(
                total=total,
                desc=f"account {self._account_id} {folder}",
                unit="msg",
                file=self._stream,
                dynamic_ncols=True,
            )
        else:
            log.info("account %s %s: %s new messages to fetch", self._account_id, folder, total)
