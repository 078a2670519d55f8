"""The `triage` command: set-up, syncing, workers, export. Secrets come only from named env vars."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from triage.adapters.secrets import SecretKeyError
from triage.commands import running, setup
from triage.config import get_settings
from triage.runtime import Runtime, build_runtime

Handler = Callable[[Runtime, argparse.Namespace], object]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="action", required=True
    )
    db.add_parser("upgrade", help="apply migrations").set_defaults(handler=_db_upgrade)

    _users(commands)
    _accounts(commands)
    _providers(commands)

    sync = commands.add_parser("sync", help="fetch new mail and queue it for triage")
    sync.add_argument("--account", type=int)
    sync.add_argument("--once", action="store_true", help="one pass, then exit")
    sync.add_argument("--max", type=int, help="at most N new messages per folder this pass")
    sync.set_defaults(handler=running.sync)

    commands.add_parser("worker", help="a Celery worker (extra options go to Celery)")

    run = commands.add_parser("run", help="everything in one process (embedded default)")
    run.add_argument("--once", action="store_true", help="one sync pass, finish the work, exit")
    run.set_defaults(handler=running.run)

    export = commands.add_parser("export", help="messages with their results")
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    export.set_defaults(handler=running.export)

    retry = commands.add_parser("retry", help="send messages back to the queue")
    retry.add_argument("--status", default="failed")
    retry.set_defaults(handler=running.retry)

    keys = commands.add_parser("keys", help="secret keys").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser("generate", help="print a new Fernet key").set_defaults(
        plain=setup.keys_generate
    )
    return parser


def _users(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = commands.add_parser("users", help="console users").add_subparsers(
        dest="action", required=True
    )
    add = users.add_parser("add", help="add a user")
    add.add_argument("email")
    add.add_argument("--admin", action="store_true")
    add.add_argument("--password-env", metavar="VAR", help="env var holding the password")
    add.set_defaults(handler=setup.users_add)


def _accounts(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    accounts = commands.add_parser("accounts", help="IMAP accounts").add_subparsers(
        dest="action", required=True
    )
    add = accounts.add_parser("add", help="connect an IMAP mailbox")
    add.add_argument("--user", required=True)
    add.add_argument("--host", required=True)
    add.add_argument("--port", type=int)
    security = add.add_mutually_exclusive_group()
    security.add_argument("--ssl", dest="security", action="store_const", const="ssl")
    security.add_argument("--starttls", dest="security", action="store_const", const="starttls")
    security.add_argument("--plain", dest="security", action="store_const", const="plain")
    add.set_defaults(security="ssl", handler=setup.accounts_add)
    add.add_argument("--username", required=True)
    add.add_argument("--password-env", required=True, metavar="VAR")
    add.add_argument("--folder", action="append", help="folder to watch (repeatable)")


def _providers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    providers = commands.add_parser("providers", help="model settings").add_subparsers(
        dest="action", required=True
    )
    put = providers.add_parser("set", help="set a user's model for a task")
    put.add_argument("--user", required=True)
    put.add_argument("--provider", required=True)
    put.add_argument("--base-url")
    put.add_argument("--model", required=True)
    put.add_argument("--api-key-env", metavar="VAR")
    put.add_argument("--task", choices=["classify", "draft"], default="classify")
    put.add_argument("--fallback-of", metavar="NAME")
    put.set_defaults(handler=setup.providers_set)


def _db_upgrade(rt: Runtime, _args: argparse.Namespace) -> str:
    from triage.adapters.db.migrate import upgrade

    upgrade(rt.settings.resolved_database_url())
    return "database is up to date"


def _worker(celery_args: list[str]) -> int:
    try:
        build_runtime(get_settings())  # fail now, clearly, rather than in the first task
    except SecretKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return running.worker(argparse.Namespace(), celery_args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if argv[:1] == ["worker"]:
        return _worker(argv[1:])
    args = build_parser().parse_args(argv)
    if hasattr(args, "plain"):
        print(args.plain(args))
        return 0
    try:
        runtime = build_runtime(get_settings())
        outcome = args.handler(runtime, args)
    except (setup.CommandError, SecretKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(outcome, str):
        print(outcome)
        return 0
    return int(outcome or 0)


if __name__ == "__main__":
    raise SystemExit(main())
