"""IDLE latency: from APPEND to the stored row, with `triage listen` watching the folder.

Run as `.venv/bin/python -m bench.idle [--messages 50]`. It starts the real `triage listen`
(Postgres, a Redis broker of its own) for one account, then APPENDs messages one at a time
from another IMAP connection; for each it polls the database until the row is there and
records the time from just before the APPEND to the row being visible. The first messages
only warm the listener up (connection, IDLE started) and are not counted.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.corpus import corpus_messages, with_message_id
from bench.harness import REPO, Bench, bench_services

FOLDER = "INBOX"
WARM_UP = 3
ROW_TIMEOUT = 60.0
POLL_SECONDS = 0.002
GOAL_P95 = 1.0


@contextmanager
def listener(bench: Bench, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`triage listen` as a subprocess; TERM on the way out (KILL if it will not stop)."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "listen"],
            env=bench.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Probe:
    """APPENDs from its own connection and watches the database for the stored row."""

    bench: Bench
    db: psycopg.Connection[tuple[object, ...]]
    process: subprocess.Popen[bytes]
    log: Path

    def time_one(self, raw: bytes, message_id: str) -> float:
        """Seconds from just before the APPEND until the row with this Message-ID is visible."""
        bench = self.bench
        start = time.perf_counter()
        bench.dovecot.append(bench.user, bench.password, FOLDER, with_message_id(raw, message_id))
        deadline = start + ROW_TIMEOUT
        query = "SELECT 1 FROM messages WHERE message_id_header = %s"
        while self.db.execute(query, (message_id,)).fetchone() is None:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"triage listen exited {code}\n{_tail(self.log)}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no row {message_id} after {ROW_TIMEOUT}s\n{_tail(self.log)}")
            time.sleep(POLL_SECONDS)
        return time.perf_counter() - start


def measure(count: int) -> list[float]:
    messages = corpus_messages()
    latencies: list[float] = []
    with bench_services() as bench:
        bench.add_account(FOLDER)
        database_url = bench.env["TRIAGE_DATABASE_URL"].replace("+psycopg", "")
        log = bench.workdir / "listen.log"
        with listener(bench, log) as process, psycopg.connect(database_url, autocommit=True) as db:
            probe = Probe(bench, db, process, log)
            for index in range(WARM_UP + count):
                seconds = probe.time_one(messages[index % len(messages)], f"<idle-{index}@bench>")
                if index >= WARM_UP:
                    latencies.append(seconds)
                    print(f"message {index - WARM_UP + 1}: {seconds * 1000:.0f} ms", flush=True)
    return latencies


def report(latencies: list[float], load: tuple[float, float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return "\n".join(
        [
            f"IDLE latency, APPEND -> stored row, {len(ordered)} messages one at a time; "
            f"load average before/after: {load[0]:.2f} / {load[1]:.2f}",
            f"p50 {statistics.median(ordered) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
            f"max {ordered[-1] * 1000:.0f} ms (goal p95 < {GOAL_P95 * 1000:.0f} ms: "
            f"{'met' if p95 < GOAL_P95 else 'NOT met'})",
        ]
    )


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no listener output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--messages", type=int, default=50, help="messages to time")
    args = parser.parse_args()
    before = os.getloadavg()[0]
    latencies = measure(max(1, args.messages))
    print()
    print(report(latencies, (before, os.getloadavg()[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
