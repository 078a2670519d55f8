"""Throughput of the pipeline: queued messages through real workers to a model with fixed latency.

Run: `.venv/bin/python -m bench.pipeline [--pool threads] [--concurrency 32] [--processes 2]
[--latency 0.3] [--messages 2000]`. It starts its own Postgres (initdb in a temp dir) and Redis,
stores N messages with status `queued` (parse excluded; one model call each, no draft) and 2 x C
warm-up ones, runs the FakeModelServer in a process of its own answering after the latency,
starts `triage worker` processes as docker-compose.yml does (JSON logs at INFO included), sends
every ID and waits for the last stored result. It prints messages/s beside the bound C/L, and
the CPU seconds per message of the workers, the model server, Postgres and Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from celery import Celery
from sqlalchemy import func, select

from tests.integration.seed import seed_user
from tests.support.fault_run import (
    WORKER_FLAGS,
    enqueue_triage,
    runtime_with_key,
    seed_queued,
    slow_responder,
)
from tests.support.model_server import FakeModelServer
from tests.support.private_services import PrivatePostgres, PrivateRedis
from triage.adapters.db.migrate import upgrade
from triage.adapters.db.tables import Message, TriageResult
from triage.adapters.secrets import generate_key
from triage.domain import statuses
from triage.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]
API_KEY = "sk-bench-0000"
STALL_SECONDS = 30.0
WORKER_LOG = Path(os.environ.get("BENCH_WORKER_LOG", "/tmp/bench-worker.log"))


@dataclass
class Run:
    pool: str
    concurrency: int
    latency: float
    messages: int
    seconds: float
    cpu: dict[str, float]
    model_calls: int


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A plain SIGTERM would skip the clean-up of the private Postgres, Redis and worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if args.serve_model is not None:
        return _serve_model(args.serve_model)
    run = bench(
        pool=args.pool,
        concurrency=args.concurrency,
        processes=args.processes,
        latency=args.latency,
        messages=args.messages,
        fsync=args.fsync,
    )
    _report(run)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.pipeline", description=__doc__)
    parser.add_argument("--pool", default="threads", help="threads | prefork | gevent | eventlet")
    parser.add_argument("--concurrency", type=int, default=32, help="C: concurrent model calls")
    parser.add_argument("--processes", type=int, default=2, help="worker processes sharing C")
    parser.add_argument("--latency", type=float, default=0.3, help="L: model latency, seconds")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--fsync", action="store_true", help="Postgres with fsync on")
    parser.add_argument("--serve-model", type=float, metavar="LATENCY", help=argparse.SUPPRESS)
    return parser


def bench(
    *, pool: str, concurrency: int, processes: int, latency: float, messages: int, fsync: bool
) -> Run:
    with (
        PrivatePostgres(fsync=fsync) as pg,
        PrivateRedis() as broker,
        _model_process(latency) as (model_url, model_pid),
    ):
        upgrade(pg.url())
        env = _env(pg.url(), broker.url())
        rt = runtime_with_key(pg.url(), env["TRIAGE_SECRET_KEYS"])
        warmup = 2 * concurrency  # every thread or child has connected and compiled once
        _user, account_id, _setting = seed_user(rt, base_url=model_url, api_key=API_KEY)
        ids = seed_queued(rt, account_id, warmup + messages)
        with _workers(env, pool, concurrency, processes) as worker_pids:
            enqueue_triage(broker.url(), ids[:warmup])
            _wait_for_results(rt, warmup, timeout=120.0)
            procs = {
                "worker": worker_pids,
                "model server": [model_pid],
                "postgres": [pg.postmaster_pid()],
                "redis": [broker.pid or 0],
            }
            before = {name: _trees_cpu(pids) for name, pids in procs.items()}
            started = time.monotonic()
            enqueue_triage(broker.url(), ids[warmup:])
            _wait_for_results(rt, warmup + messages, timeout=max(120.0, messages * latency))
            seconds = time.monotonic() - started
            cpu = {name: _cpu_delta(before[name], _trees_cpu(pids)) for name, pids in procs.items()}
        calls = _check(rt, ids)
        rt.engine.dispose()
    label = pool if processes == 1 else f"{processes}x{pool}"
    return Run(label, concurrency, latency, messages, seconds, cpu, calls - warmup)


def _env(database_url: str, broker_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(
        TRIAGE_DATABASE_URL=database_url,
        TRIAGE_BROKER_URL=broker_url,
        TRIAGE_SECRET_KEYS=generate_key(),
        TRIAGE_SWEEP_INTERVAL_SECONDS="3600",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def _model_process(latency: float) -> Iterator[tuple[str, int]]:
    """The fake provider in its own process, so its CPU is not counted as ours."""
    command = [sys.executable, "-m", "bench.pipeline", "--serve-model", str(latency)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError("the model server did not start")
        yield base_url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def _serve_model(latency: float) -> int:
    with FakeModelServer() as server:
        server.responder = slow_responder(latency)
        print(server.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
    return 0


@contextmanager
def _workers(
    env: dict[str, str], pool: str, concurrency: int, processes: int
) -> Iterator[list[int]]:
    """`processes` worker processes sharing the C concurrent calls between them."""
    per_process = max(1, concurrency // processes)
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(processes):
            command = [
                *_worker_command(pool),
                "-Q",
                "triage,draft",
                "--pool",
                pool,
                "--concurrency",
                str(per_process),
                *WORKER_FLAGS,
                "--hostname",
                f"bench{index}@%h",
            ]
            with WORKER_LOG.with_suffix(f".{index}.log").open("wb") as log:
                started.append(subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=log))
        for process in started:
            _wait_ready(env["TRIAGE_BROKER_URL"], process, processes)
        print(f"worker pids {[p.pid for p in started]}", file=sys.stderr, flush=True)
        yield [process.pid for process in started]
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _worker_command(pool: str) -> list[str]:
    if pool in ("gevent", "eventlet"):
        # Celery's own entry point monkey-patches before anything is imported; ours cannot.
        return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker"]
    return [sys.executable, "-m", "triage.cli", "worker"]


def _wait_ready(broker_url: str, process: subprocess.Popen[bytes], expected: int) -> None:
    app = Celery(broker=broker_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode}")
        if len(app.control.ping(timeout=0.5)) >= expected:
            return
    raise RuntimeError("the worker did not answer a ping within 60 s")


def _wait_for_results(rt: Runtime, count: int, *, timeout: float) -> None:
    """Poll until `count` results are stored; give up early when nothing moves for 30 s."""
    deadline = time.monotonic() + timeout
    last, moved = -1, time.monotonic()
    while True:
        with rt.db() as session:
            done = session.scalar(select(func.count()).select_from(TriageResult)) or 0
        if done >= count:
            return
        if done != last:
            last, moved = done, time.monotonic()
        if time.monotonic() > min(deadline, moved + STALL_SECONDS):
            raise RuntimeError(f"only {done} of {count} results; see the worker log {WORKER_LOG}")
        time.sleep(0.05)


def _check(rt: Runtime, ids: list[int]) -> int:
    """Every message triaged once; returns the model calls recorded in results."""
    with rt.db() as session:
        finished = session.scalar(
            select(func.count()).where(Message.id.in_(ids), Message.status == statuses.TRIAGED)
        )
        calls = session.scalar(select(func.sum(TriageResult.model_calls))) or 0
    if finished != len(ids):
        raise RuntimeError(f"{finished} of {len(ids)} messages triaged")
    return int(calls)


def _trees_cpu(pids: list[int]) -> dict[int, float]:
    seen: dict[int, float] = {}
    for pid in pids:
        seen.update(_tree_cpu(pid))
    return seen


def _tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and each of its descendants, by PID."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    seen: dict[int, float] = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        seen[proc.pid] = times.user + times.system
    return seen


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _report(run: Run) -> None:
    rate = run.messages / run.seconds
    bound = run.concurrency / run.latency
    print(f"pool={run.pool} C={run.concurrency} L={run.latency:g}s messages={run.messages}")
    print(
        f"  {rate:.1f} messages/s in {run.seconds:.1f} s; bound C/L = {bound:.1f}/s; "
        f"ratio {rate / bound:.2f}; model calls {run.model_calls}"
    )
    for name, cpu in run.cpu.items():
        print(f"  cpu {name:>12}: {cpu:6.1f} s total, {1000 * cpu / run.messages:6.2f} ms/message")
    summary = {
        "pool": run.pool,
        "C": run.concurrency,
        "L": run.latency,
        "rate": round(rate, 1),
        "bound": round(bound, 1),
        "ratio": round(rate / bound, 3),
        "cpu_ms_per_message": {k: round(1000 * v / run.messages, 2) for k, v in run.cpu.items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    raise SystemExit(main())
