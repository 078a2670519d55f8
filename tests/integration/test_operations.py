"""Operations on real services: a worker's /metrics and JSON logs, the console's probes."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from tests.integration.conftest import REPO, start_worker, stop_worker
from tests.integration.seed import seed_user
from tests.support.fault_run import (
    enqueue_triage,
    finished,
    runtime_with_key,
    seed_queued,
    slow_responder,
    wait_for,
)
from tests.support.model_server import FakeModelServer
from tests.support.private_services import free_port
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import MailAccount

API_KEY = "sk-ops-test-9f8e7d6c5b4a"


def scrape(
    port: int, path: str = "/metrics"
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_worker_metrics_and_json_logs(
    service_env: dict[str, str], pg_engine: Engine, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.responder = slow_responder(0.01)
    port = free_port()
    env = dict(service_env, TRIAGE_METRICS_PORT=str(port), TRIAGE_LOG_FORMAT="json")
    rt = runtime_with_key(env["TRIAGE_DATABASE_URL"], env["TRIAGE_SECRET_KEYS"])
    _user, account_id, _setting = seed_user(rt, base_url=model_server.base_url, api_key=API_KEY)
    with transaction(rt.db) as session:  # an account that last synced two days ago: silent
        account = session.get_one(MailAccount, account_id)
        account.last_success_at = datetime.now(UTC) - timedelta(days=2)
        account.expected_interval_seconds = 3600
    ids = seed_queued(rt, account_id, 8, question_every=4)
    rt.engine.dispose()

    worker = start_worker(env, tmp_path / "worker.log")
    try:
        enqueue_triage(env["TRIAGE_BROKER_URL"], ids)
        wait_for(lambda: finished(pg_engine, ids), timeout=120, what="the run")
        metrics = scrape(port)
    finally:
        stop_worker(worker)

    model = (("model", "fake-model"), ("provider", "openai"))
    assert metrics[("triage_messages_triaged_total", ())] == 8
    assert metrics[("triage_messages_drafted_total", ())] == 2
    assert metrics[("triage_model_latency_seconds_count", model)] == 10
    assert metrics[("triage_model_tokens_total", (("kind", "input"), *model))] > 0
    assert metrics[("triage_queue_depth", (("queue", "triage"),))] == 0
    assert metrics[("triage_messages", (("status", "drafted"),))] == 2
    account = (("account", str(account_id)),)
    assert metrics[("triage_account_seconds_since_sync", account)] > 2 * 86400 - 60
    assert metrics[("triage_account_silent", account)] == 1

    lines = [line for line in worker.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) > 10 and len(records) >= len(lines) - 40  # Celery's banner is plain
    about = {record["message_id"] for record in records if "message_id" in record}
    assert about >= set(ids), "every task's log lines should say which message they were about"
    assert API_KEY not in worker.log() and API_KEY[-12:] not in worker.log()


def test_console_probes(service_env: dict[str, str], pg_engine: Engine, tmp_path: Path) -> None:
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    for broker, ready in ((service_env["TRIAGE_BROKER_URL"], True), (dead_broker, False)):
        port = free_port()
        env = dict(service_env, TRIAGE_BROKER_URL=broker)
        log = (tmp_path / f"web-{port}.log").open("wb")
        web = subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "web", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: _answers(port), timeout=60, what="the console to listen")  # noqa: B023
            assert get(port, "/healthz") == (200, {"ok": True})
            status, body = get(port, "/readyz")
            assert (status == 200) is ready, body
            assert body["database"] == {"ok": True, "detail": "ok", "ms": body["database"]["ms"]}  # type: ignore[index]
            assert body["broker"]["ok"] is ready  # type: ignore[index]
            assert (
                "triage_queue_depth"
                in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
                .read()
                .decode()
            )
        finally:
            web.terminate()
            web.wait(timeout=20)
            log.close()


def _answers(port: int) -> bool:
    try:
        get(port, "/healthz")
    except OSError:
        return False
    return True
