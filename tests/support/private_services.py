"""Private Postgres and Redis instances that a fault test may stop, kill and restart at will."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg
import redis

from tests.support.services import ServiceUnavailable

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
DATABASE = "triage"
_PG_FIX = "apt-get install -y postgresql (initdb and pg_ctl under /usr/lib/postgresql/*/bin)"
_REDIS_FIX = "apt-get install -y redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise ServiceUnavailable("private Postgres", f"no {name} installed", _PG_FIX)
    return found[-1]  # the newest major version


class PrivatePostgres:
    """A throwaway cluster (initdb in a temp dir) on a free port, owned by this process.

    initdb refuses to run as root, so as root the cluster belongs to the `postgres` system
    user and every pg_ctl call goes through `runuser`.
    """

    def __init__(self, *, fsync: bool = False, max_connections: int = 200) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="triage-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._options = (
            f"-c listen_addresses={HOST} -p {self.port} -k {self.root} "
            f"-c max_connections={max_connections} -c fsync={'on' if fsync else 'off'} "
            "-c synchronous_commit=on -c full_page_writes=off"
        )
        self._owner = _cluster_owner()
        if self._owner is not None:
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
        self._run(
            str(_pg_bin("initdb")),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def start(self) -> PrivatePostgres:
        self._pg_ctl(
            "start",
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "-l",
            str(self.log_path),
            "-o",
            self._options,
        )
        with self._admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if exists.fetchone() is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")
        return self

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects clients and shuts down; `immediate` is a crash (recovery on start)."""
        self._pg_ctl("stop", "-w", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def close(self) -> None:
        if self.running:
            with contextlib.suppress(ServiceUnavailable):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no postgres log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        url = f"postgresql://postgres@{HOST}:{self.port}/postgres"
        return psycopg.connect(url, autocommit=True, connect_timeout=5)

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(_pg_bin("pg_ctl")), "-D", str(self.data), *args)

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self._owner.pw_name, "--"] if self._owner else []
        result = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            detail = f"`{' '.join(command[:2])}` failed: {result.stderr.strip() or result.stdout}"
            raise ServiceUnavailable("private Postgres", f"{detail}\n{self.log_tail()}", _PG_FIX)


def _cluster_owner() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServiceUnavailable("private Postgres", "no `postgres` system user", _PG_FIX) from exc


class PrivateRedis:
    """A redis-server on a free port with no persistence: a restart forgets every queue."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise ServiceUnavailable("private Redis", "redis-server is not installed", _REDIS_FIX)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="triage-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> PrivateRedis:
        command = [
            "redis-server",
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
        ]
        log = (self.root / "redis.log").open("ab")
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise ServiceUnavailable("private Redis", f"not ready on port {self.port}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill: with no persistence, every queue is gone."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)
            self._process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def _answers(self) -> bool:
        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()
