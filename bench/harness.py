"""Private services for one benchmark run: Dovecot, Postgres and Redis databases, the CLI."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

from tests.conftest import REDIS_CLAIM_KEY, REDIS_CLAIM_SECONDS, REDIS_FIRST_TEST_DB
from tests.support import services
from tests.support.dovecot import Dovecot
from triage.adapters.db.migrate import upgrade
from triage.adapters.secrets import generate_key

REPO = Path(__file__).resolve().parents[1]
APPEND_BATCH = 200


@dataclass
class Bench:
    """One run's services; `env` is what the `triage` command needs to use them."""

    dovecot: Dovecot
    user: str
    password: str = field(repr=False)
    env: dict[str, str] = field(repr=False)
    workdir: Path

    def cli(self, *args: str) -> str:
        """Run `triage ARGS...` and return what it printed; fail loudly on a non-zero exit."""
        result = subprocess.run(
            [sys.executable, "-m", "triage.cli", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"triage {' '.join(args)} exited {result.returncode}\n{result.stderr}"
            )
        return result.stdout

    def add_account(self, folder: str = "INBOX") -> int:
        """A mail account of the bench user (created on first use) watching one folder."""
        if "owner@bench.test" not in self.env.get("BENCH_USERS", ""):
            self.cli("users", "add", "owner@bench.test")
            self.env["BENCH_USERS"] = "owner@bench.test"
        out = self.cli(
            *("accounts", "add", "--user", "owner@bench.test", "--host", self.dovecot.host),
            *("--port", str(self.dovecot.port), "--plain", "--username", self.user),
            *("--password-env", "BENCH_IMAP_PASSWORD", "--folder", folder),
        )
        match = re.match(r"account (\d+)", out)
        if match is None:
            raise RuntimeError(f"unexpected output of `triage accounts add`: {out!r}")
        return int(match.group(1))

    def append(self, folder: str, messages: Sequence[bytes]) -> None:
        """APPEND messages in order over one connection (MULTIAPPEND, a batch at a time)."""
        with self.dovecot.client(self.user, self.password, timeout=120) as imap:
            if folder != "INBOX" and not imap.folder_exists(folder):
                imap.create_folder(folder)
            for start in range(0, len(messages), APPEND_BATCH):
                imap.multiappend(folder, list(messages[start : start + APPEND_BATCH]))


@dataclass(frozen=True)
class ProcessRun:
    """How one subprocess went: wall and CPU time, peak memory, and what it printed."""

    seconds: float
    # user + system of the process and the children it waited for (its reader processes), not
    # Dovecot's or Postgres'
    cpu_seconds: float
    # The process and its children together, sampled every 20 ms. (wait4's ru_maxrss is no
    # use here: a forked child starts with its parent's high-water mark, the bench's own.)
    tree_rss_mb: float
    returncode: int
    output: str


def run_measured(command: Sequence[str], *, env: dict[str, str], cwd: Path = REPO) -> ProcessRun:
    """Run a command to completion, sampling its process tree's memory meanwhile."""
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        process = subprocess.Popen(
            list(command), env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT
        )
        tree_peak = _sample_tree_rss(process.pid)
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    return ProcessRun(seconds, cpu, tree_peak / (1024 * 1024), process.returncode, text)


def _sample_tree_rss(pid: int) -> int:
    """The highest sum of RSS over the process and its descendants until it exits (a zombie
    waiting for wait4 counts as exited)."""
    root = psutil.Process(pid)
    peak = 0
    while True:
        try:
            if root.status() == psutil.STATUS_ZOMBIE:
                return peak
            total = root.memory_info().rss
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        except psutil.Error:
            return peak
        peak = max(peak, total)
        time.sleep(0.02)


def run_sync(bench: Bench, account_id: int, *, tree: Path = REPO) -> ProcessRun:
    """The real `triage sync --once` for one account, as a subprocess (run from `tree`)."""
    command = [sys.executable, "-m", "triage.cli", "sync", "--once", "--account", str(account_id)]
    run = run_measured(command, env=bench.env, cwd=tree)
    if run.returncode != 0:
        raise RuntimeError(f"triage sync exited {run.returncode}\n{run.output[-3000:]}")
    return run


@contextmanager
def bench_services() -> Iterator[Bench]:
    """Dovecot on a free port with one user, a migrated Postgres database and a Redis
    database of their own, all removed afterwards."""
    services.check_postgres()
    services.check_redis()
    database = f"triage_bench_{secrets.token_hex(4)}"
    services.create_database(database)
    url = services.sqlalchemy_url(database)
    try:
        upgrade(url)
        with _redis_db() as redis_url, Dovecot() as dovecot, _workdir() as workdir:
            user, password = "bench", secrets.token_urlsafe(12)
            dovecot.add_user(user, password)
            env = _cli_env(url, redis_url, workdir)
            env["BENCH_IMAP_PASSWORD"] = password
            yield Bench(dovecot, user, password, env, workdir)
    finally:
        services.drop_database(database)


def _cli_env(database_url: str, broker_url: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(
        TRIAGE_DATABASE_URL=database_url,
        TRIAGE_BROKER_URL=broker_url,
        TRIAGE_SECRET_KEYS=generate_key(),
        TRIAGE_DATA_DIR=str(workdir / "data"),
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as tmp:
        yield Path(tmp)


@contextmanager
def _redis_db() -> Iterator[str]:
    """A Redis database claimed the way test sessions claim theirs, so neither disturbs the
    other; the triage tasks a sync enqueues simply sit there until it is flushed."""
    token = secrets.token_hex(8)
    for db in range(REDIS_FIRST_TEST_DB, 16):
        client = redis.Redis.from_url(services.redis_url(db))
        if client.set(REDIS_CLAIM_KEY, token, nx=True, ex=REDIS_CLAIM_SECONDS):
            try:
                client.flushdb()
                client.set(REDIS_CLAIM_KEY, token, ex=REDIS_CLAIM_SECONDS)
                yield services.redis_url(db)
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    raise RuntimeError("every Redis database 1-15 is claimed by a test session or benchmark")
