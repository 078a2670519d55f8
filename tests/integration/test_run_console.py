"""`triage run`, the embedded default, serves the admin console beside the pipeline, and stops.

A real `triage run` process on SQLite with no broker, as on a laptop: the console answers on
TRIAGE_WEB_HOST:TRIAGE_WEB_PORT, the first admin signs in, and SIGINT or SIGTERM end it all.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import ImapUser
from tests.e2e.console import free_port, sign_in
from tests.integration.conftest import Cli, base_env
from tests.integration.ingest_support import Process, seed_account, start_triage
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.integration
ADMIN = "admin@example.test"


def embedded_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = base_env(tmp_path)  # no database URL, broker or key: the embedded default
    env.update(
        TRIAGE_WEB_HOST="127.0.0.1",
        TRIAGE_WEB_PORT=str(port),
        TRIAGE_SYNC_INTERVAL_SECONDS="3600",
        TRIAGE_LOG_FORMAT="text",
        ADMIN_PASSWORD="a long console password",
    )
    return env


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for_console(process: Process, url: str, timeout: float = 60) -> None:
    """Until GET /healthz is 200; fails at once if the process exits first."""
    deadline = time.monotonic() + timeout
    while not answers(url + "/healthz"):
        if process.process.poll() is not None:
            raise AssertionError(f"triage run exited {process.process.returncode}\n{process.log()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no console at {url} within {timeout}s\n{process.log()[-3000:]}")
        time.sleep(0.1)


def stop(process: Process, signum: signal.Signals, timeout: float = 20) -> int:
    """Send the signal, then the exit code; fails if the process outlives the deadline."""
    process.process.send_signal(signum)
    try:
        return process.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.process.kill()
        raise AssertionError(
            f"still running {timeout}s after {signum.name}\n{process.log()}"
        ) from None


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_triage_run_serves_the_console_and_stops_on_a_signal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    port = free_port()
    env = embedded_env(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    process = start_triage(env, tmp_path / "run.log", "run")
    try:
        wait_for_console(process, url)
        assert f"console on {url}/" in process.log()

        health = httpx.get(url + "/healthz", timeout=10)
        assert health.status_code == 200 and health.json() == {"ok": True}
        page = httpx.get(url + "/signin", timeout=10)
        assert page.status_code == 200, page.text
        assert 'name="csrf_token"' in page.text and 'name="password"' in page.text

        # The README's first step, from another terminal while `triage run` goes on.
        Cli(env)("users", "add", ADMIN, "--admin", "--password-env", "ADMIN_PASSWORD")
        with httpx.Client(base_url=url, follow_redirects=False, timeout=10) as client:
            sign_in(client, ADMIN, env["ADMIN_PASSWORD"])
            assert client.get("/api/me").json()["email"] == ADMIN
            assert client.get("/review").status_code == 200
    finally:
        code = stop(process, signum)
    assert code == 0, process.log()
    assert f"{signum.name} received" in process.log()
    assert refused(port), "the console still listens after the process ended"


def test_triage_run_with_its_port_taken_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = Cli(embedded_env(tmp_path, port))("run", check=False, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"the console cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--no-web" in result.stderr
    assert "Traceback" not in result.stderr


def test_triage_run_no_web_runs_the_pipeline_without_the_console(
    dovecot: Dovecot, imap_user: ImapUser, tmp_path: Path
) -> None:
    port = free_port()
    env = embedded_env(tmp_path, port)
    seed_account(env, imap_user)
    process = start_triage(env, tmp_path / "run.log", "run", "--no-web")
    try:
        process.wait_for_log("up to date, listening", timeout=60)
        assert refused(port)
        assert "console on" not in process.log()
    finally:
        code = stop(process, signal.SIGTERM)
    assert code == 0, process.log()
