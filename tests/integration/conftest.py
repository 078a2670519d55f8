"""Fixtures that need the application: a migrated database, the CLI, a real Celery worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.conftest import REDIS_CLAIM_KEY, ImapUser
from tests.support.byok import add_user_to
from tests.support.model_server import FakeModelServer
from triage.adapters.db.migrate import upgrade
from triage.adapters.db.session import (
    SessionFactory,
    make_engine,
    make_session_factory,
)
from triage.adapters.db.tables import Base
from triage.adapters.secrets import generate_key

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus"
TEST_API_KEY = "sk-test-e2e-4b1d"


@pytest.fixture(scope="session")
def migrated_pg(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


@pytest.fixture
def pg_engine(migrated_pg: str) -> Iterator[Engine]:
    """The session's Postgres database, emptied before each test."""
    engine = make_engine(migrated_pg)
    names = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    yield engine
    engine.dispose()


@pytest.fixture(params=["postgres", "sqlite"])
def account_db(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[SessionFactory, int]]:
    """A database with one account, on each backend the service runs on."""
    if request.param == "postgres":
        engine: Engine = request.getfixturevalue("pg_engine")
    else:
        url = f"sqlite:///{tmp_path / 'service.sqlite3'}"
        upgrade(url)
        engine = make_engine(url)
    db = make_session_factory(engine)
    _user_id, account_id = add_user_to(db, "owner@example.test")
    yield db, account_id
    engine.dispose()


@dataclass
class Cli:
    """Runs the real `triage` command in a subprocess with a given environment."""

    env: dict[str, str]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "triage.cli", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            command = " ".join(args)
            raise AssertionError(
                f"triage {command} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env["TRIAGE_DATA_DIR"] = str(tmp_path / "data")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def service_env(
    tmp_path: Path, pg_engine: Engine, migrated_pg: str, redis_url: str
) -> dict[str, str]:
    """The environment of the service mode: Postgres, Redis broker, a secret key."""
    import redis

    client = redis.Redis.from_url(redis_url)
    stale = [key for key in client.scan_iter() if key != REDIS_CLAIM_KEY.encode()]
    if stale:
        client.delete(*stale)  # empty the queues, keep this session's claim on the database
    client.close()
    env = base_env(tmp_path)
    env.update(
        TRIAGE_DATABASE_URL=migrated_pg,
        TRIAGE_BROKER_URL=redis_url,
        TRIAGE_SECRET_KEYS=generate_key(),
        TRIAGE_SWEEP_INTERVAL_SECONDS="3600",
        TRIAGE_MODEL_TIMEOUT_SECONDS="20",
    )
    return env


@pytest.fixture
def cli(service_env: dict[str, str]) -> Cli:
    return Cli(service_env)


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited {self.process.returncode}\n{self.log()[-3000:]}"
                )
            time.sleep(0.1)
        raise AssertionError(f"worker never logged {needle!r}\n{self.log()[-3000:]}")


def start_worker(env: dict[str, str], log_path: Path, *extra: str) -> Worker:
    handle = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "triage.cli",
            "worker",
            "-Q",
            "triage,draft,sync",
            "--concurrency",
            "4",
            "--pool",
            "threads",
            *extra,
        ],
        env=env,
        cwd=REPO,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    worker = Worker(process, log_path)
    worker.wait_for_log("ready.")
    return worker


def stop_worker(worker: Worker) -> None:
    if worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.process.kill()


@pytest.fixture
def worker(service_env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    """A real `triage worker` process on the test broker."""
    running = start_worker(service_env, tmp_path / "worker.log")
    yield running
    stop_worker(running)


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def configure_user(cli: Cli, imap: ImapUser, model: FakeModelServer, env: dict[str, str]) -> None:
    """A user with one plain-IMAP account and the fake provider (OpenAI-shaped) as their model."""
    env["E2E_IMAP_PASSWORD"] = imap.password
    env["E2E_API_KEY"] = TEST_API_KEY
    cli("users", "add", "owner@example.test", "--admin")
    cli(
        "accounts",
        "add",
        "--user",
        "owner@example.test",
        "--host",
        imap.host,
        "--port",
        str(imap.port),
        "--plain",
        "--username",
        imap.username,
        "--password-env",
        "E2E_IMAP_PASSWORD",
    )
    cli(
        "providers",
        "set",
        "--user",
        "owner@example.test",
        "--provider",
        "openai",
        "--base-url",
        model.base_url,
        "--model",
        "fake-model",
        "--api-key-env",
        "E2E_API_KEY",
        "--no-probe",  # the probe has tests of its own; flows here count every model call
    )


def session_factory(url: str) -> Callable[[], object]:
    return make_session_factory(make_engine(url))
