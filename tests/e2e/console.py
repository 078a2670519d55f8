"""The console as the tests meet it: a real `triage web` process, seeded rows, signed-in clients.

HTTP goes through httpx2, the client the openai SDK brings (so no extra dependency).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx

from tests.integration.conftest import REPO
from triage.config import Settings
from triage.runtime import Runtime, build_runtime

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ConsoleServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)


@contextmanager
def running_console(env: dict[str, str], log_path: Path) -> Iterator[ConsoleServer]:
    """`triage web` on a free loopback port, up when /signin answers, stopped afterwards."""
    port = free_port()
    handle = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "triage.cli", "web", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    server = ConsoleServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        handle.close()


def _wait_until_up(server: ConsoleServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"triage web exited {server.process.returncode}\n{server.log()}")
        try:
            if httpx.get(server.url + "/signin", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"triage web did not answer within {timeout}s\n{server.log()}")


def sign_in(client: httpx.Client, email: str, password: str) -> str:
    """Sign in through the form, as a browser would; returns the session's CSRF token."""
    form = client.get("/signin")
    token = CSRF.search(form.text)
    assert token, form.text
    response = client.post(
        "/signin", data={"email": email, "password": password, "csrf_token": token.group(1)}
    )
    assert response.status_code == 303, response.text
    me = client.get("/api/me")
    assert me.status_code == 200, me.text
    return str(me.json()["csrf_token"])


def console_env(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    """The service mode's environment for a console under test (Postgres, Redis, a key)."""
    from tests.integration.conftest import base_env
    from triage.adapters.secrets import generate_key

    env = base_env(data_dir)
    env.update(
        TRIAGE_DATABASE_URL=database_url,
        TRIAGE_BROKER_URL=redis_url,
        TRIAGE_SECRET_KEYS=generate_key(),
        TRIAGE_SWEEP_INTERVAL_SECONDS="3600",
        TRIAGE_MODEL_TIMEOUT_SECONDS="20",
    )
    return env


def empty_database(database_url: str) -> None:
    """Every table emptied, as the pg_engine fixture does, for module-scoped console data."""
    from sqlalchemy import text

    from triage.adapters.db.session import make_engine
    from triage.adapters.db.tables import Base

    engine = make_engine(database_url)
    names = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


def runtime_of(env: dict[str, str]) -> Runtime:
    """The same database and keys as the console process, for seeding and checking rows."""
    return build_runtime(
        Settings(database_url=env["TRIAGE_DATABASE_URL"], secret_keys=env["TRIAGE_SECRET_KEYS"])
    )
