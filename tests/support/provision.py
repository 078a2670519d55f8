"""Make sure Postgres, Redis and Dovecot are there before the tests run (start or install them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.dovecot import DOVECOT
from tests.support.services import (
    PG_HOST,
    PG_PORT,
    REDIS_HOST,
    REDIS_PORT,
    ServiceUnavailable,
    check_postgres,
    check_redis,
)

READY_TIMEOUT = 30.0
REDIS_COMMAND = [
    "redis-server",
    *("--daemonize", "yes", "--bind", REDIS_HOST, "--port", str(REDIS_PORT)),
    *("--save", "", "--appendonly", "no"),  # the tests want a broker that forgets
]
_NO_PG = "install postgresql (apt-get install -y postgresql) and allow trust auth on 127.0.0.1"
_NO_R = "apt-get install -y redis-server"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def main() -> int:
    problems = []
    for name, ensure in (("postgres", ensure_postgres), ("redis", ensure_redis)):
        try:
            print(f"provision: {name}: {ensure()}")
        except ServiceUnavailable as exc:
            problems.append(f"provision: {name}: FAILED: {exc}")
    try:
        print(f"provision: dovecot: {ensure_dovecot()}")
    except (ServiceUnavailable, subprocess.CalledProcessError) as exc:
        problems.append(f"provision: dovecot: FAILED: {exc}")
    try:
        print(f"provision: chromium: {ensure_chromium()}")
    except (ServiceUnavailable, subprocess.CalledProcessError) as exc:
        problems.append(f"provision: chromium: FAILED: {exc}")
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


def ensure_postgres() -> str:
    where = f"{PG_HOST}:{PG_PORT}"
    if _ready(check_postgres):
        return f"ok ({where})"
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        raise ServiceUnavailable("Postgres", f"nothing on {where} and no cluster installed", _NO_PG)
    for version in versions:
        # Another version's cluster may be the one that is down; "already running" is fine.
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], "already")
    _wait_for(check_postgres)
    return f"started ({where})"


def ensure_redis() -> str:
    where = f"{REDIS_HOST}:{REDIS_PORT}"
    if _ready(check_redis):
        return f"ok ({where})"
    if shutil.which("redis-server") is None:
        raise ServiceUnavailable("Redis", f"nothing on {where} and redis-server is missing", _NO_R)
    _run(REDIS_COMMAND)
    _wait_for(check_redis)
    return f"started ({where})"


def ensure_dovecot() -> str:
    if DOVECOT.exists():
        return f"ok ({DOVECOT})"
    if os.geteuid() != 0:
        fix = "sudo apt-get install -y dovecot-imapd"
        raise ServiceUnavailable("Dovecot", f"{DOVECOT} is missing and we are not root", fix)
    print("provision: dovecot: installing dovecot-imapd with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "dovecot-imapd"], check=True, env=env)
    if not DOVECOT.exists():
        raise ServiceUnavailable("Dovecot", f"installed dovecot-imapd but {DOVECOT} is missing")
    return "installed"


def ensure_chromium() -> str:
    """Debian's Chromium and its driver, for the console's browser tests (tests/e2e)."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return f"ok ({CHROMIUM})"
    if os.geteuid() != 0:
        fix = "sudo apt-get install -y chromium chromium-driver"
        raise ServiceUnavailable("Chromium", f"{CHROMIUM} is missing and we are not root", fix)
    print("provision: chromium: installing chromium chromium-driver with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"], check=True, env=env
    )
    if not CHROMIUM.exists():
        raise ServiceUnavailable("Chromium", f"installed chromium but {CHROMIUM} is missing")
    return "installed"


def _ready(check: Callable[[], None]) -> bool:
    try:
        check()
    except ServiceUnavailable:
        return False
    return True


def _wait_for(check: Callable[[], None]) -> None:
    # A freshly started server refuses connections for a moment; give it a bounded while.
    deadline = time.monotonic() + READY_TIMEOUT
    while not _ready(check):
        if time.monotonic() > deadline:
            try:
                check()
            except ServiceUnavailable as exc:
                waited = f"still down {READY_TIMEOUT:g}s after starting it: {exc.detail}"
                fix = f"check the {exc.service} logs"
                raise ServiceUnavailable(exc.service, waited, fix) from exc
        time.sleep(0.2)


def _run(command: list[str], harmless: str | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = (result.stderr or result.stdout).strip()
    if result.returncode != 0 and not (harmless and harmless in output):
        raise ServiceUnavailable(command[0], f"`{' '.join(command)}` failed: {output}")


if __name__ == "__main__":
    sys.exit(main())
