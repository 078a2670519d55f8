"""The `triage` command: set-up, syncing, workers, export. Secrets come only from named env vars."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from pydantic import ValidationError

from triage.adapters.oauth_presets import PROVIDERS as OAUTH_PROVIDERS
from triage.commands import arguments
from triage.commands.arguments import handler
from triage.config import get_settings
from triage.logging_setup import configure_logging

if TYPE_CHECKING:
    from triage.runtime import Runtime

# Command modules are imported only when their command runs (see triage.commands.arguments):
# together they pull in Celery, the openai SDK, FastAPI, Pillow, imapclient and more.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="action", required=True
    )
    db.add_parser("upgrade", help="apply migrations").set_defaults(handler=_db_upgrade)

    _users(commands)
    _accounts(commands)
    arguments.providers(commands)

    sync = commands.add_parser("sync", help="fetch new mail and queue it for triage")
    sync.add_argument("--account", type=int)
    sync.add_argument("--once", action="store_true", help="one pass, then exit")
    sync.add_argument(
        "--max", type=_positive, help="at most N new messages per folder this pass (oldest first)"
    )
    sync.add_argument(
        "--since",
        type=_since_date,
        metavar="YYYY-MM-DD",
        help="a folder's first sync skips mail that arrived before this date",
    )
    sync.set_defaults(handler=handler("triage.commands.running:sync"))

    listen = commands.add_parser("listen", help="IDLE on every watched folder, store mail at once")
    listen.add_argument("--account", type=int, help="only this account")
    listen.set_defaults(handler=handler("triage.commands.running:listen"))

    commands.add_parser("worker", help="a Celery worker (extra options go to Celery)")

    run = commands.add_parser("run", help="everything in one process (embedded default)")
    run.add_argument("--once", action="store_true", help="one sync pass, finish the work, exit")
    run.add_argument("--no-web", action="store_true", help="do not serve the admin console")
    run.set_defaults(handler=handler("triage.commands.running:run"))

    export = commands.add_parser("export", help="messages with their results")
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    export.add_argument(
        "--reviewed", action="store_true", help="reviewed results as a labelled set instead"
    )
    export.set_defaults(handler=handler("triage.commands.web:export"))

    web = commands.add_parser("web", help="the admin console (and its JSON API)")
    web.add_argument("--host", help="default: TRIAGE_WEB_HOST")
    web.add_argument("--port", type=int, help="default: TRIAGE_WEB_PORT")
    web.set_defaults(handler=handler("triage.commands.web:web"))

    arguments.estimate(commands)

    sweep = commands.add_parser("sweep", help="re-enqueue messages stuck unfinished (one pass)")
    sweep.add_argument(
        "--stuck-after", type=int, metavar="SECONDS", help="default: TRIAGE_STUCK_AFTER_SECONDS"
    )
    sweep.set_defaults(handler=handler("triage.commands.running:sweep"))

    retry = commands.add_parser("retry", help="send messages back to the queue")
    retry.add_argument("--status", default="failed")
    retry.set_defaults(handler=handler("triage.commands.running:retry"))

    keys = commands.add_parser("keys", help="secret keys").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser("generate", help="print a new Fernet key").set_defaults(plain=_keys_generate)
    keys.add_parser(
        "rotate", help="re-encrypt every stored secret under the first key"
    ).set_defaults(handler=handler("triage.commands.keys:keys_rotate"))
    return parser


def _users(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = commands.add_parser("users", help="users and their settings").add_subparsers(
        dest="action", required=True
    )
    add = actions.add_parser("add", help="add a user")
    add.add_argument("email")
    add.add_argument("--admin", action="store_true")
    add.add_argument("--password-env", metavar="VAR", help="env var holding the password")
    add.set_defaults(handler=handler("triage.commands.setup:users_add"))
    arguments.user_settings(actions)


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
    add.set_defaults(security="ssl", handler=handler("triage.commands.setup:accounts_add"))
    add.add_argument("--username", required=True)
    add.add_argument("--password-env", metavar="VAR", help="env var holding the IMAP password")
    add.add_argument("--folder", action="append", help="folder to watch (repeatable)")
    _oauth_options(add)
    _account_changes(accounts)


def _oauth_options(add: argparse.ArgumentParser) -> None:
    oauth = add.add_argument_group("OAuth2 (XOAUTH2, e.g. Gmail and Microsoft 365)")
    oauth.add_argument("--oauth2", action="store_true", help="log in with XOAUTH2, no password")
    oauth.add_argument("--oauth-provider", choices=OAUTH_PROVIDERS)
    oauth.add_argument("--token-url", help="token endpoint (required for custom)")
    oauth.add_argument("--client-id")
    oauth.add_argument("--client-secret-env", metavar="VAR", help="env var with the secret")
    oauth.add_argument("--refresh-token-env", metavar="VAR", help="env var with the token")
    oauth.add_argument("--scope", action="append", help="override the preset's scopes")


def _account_changes(accounts: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reauth = accounts.add_parser("reauth", help="store a new OAuth2 refresh token")
    reauth.add_argument("--account", type=int, required=True)
    reauth.add_argument("--refresh-token-env", metavar="VAR", required=True)
    reauth.add_argument("--client-secret-env", metavar="VAR")
    reauth.set_defaults(handler=handler("triage.commands.accounts:accounts_reauth"))

    back = accounts.add_parser("write-back", help="keywords, moves, drafts in the mailbox")
    back.add_argument("--account", type=int, required=True)
    back.add_argument("--keywords", choices=["on", "off"], help="set $Triage/<category>")
    back.add_argument("--move", action="append", metavar="CATEGORY=FOLDER")
    back.add_argument("--clear-moves", action="store_true", help="move nothing any more")
    back.add_argument("--drafts-folder", metavar="NAME", help="APPEND drafts here (turns it on)")
    back.add_argument("--append-drafts", choices=["on", "off"])
    back.set_defaults(handler=handler("triage.commands.accounts:accounts_write_back"))


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return int(text)


def _since_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2024-01-31, got {text!r}") from None


def _db_upgrade(rt: Runtime, _args: argparse.Namespace) -> str:
    from triage.adapters.db.migrate import upgrade

    upgrade(rt.settings.resolved_database_url())
    return "database is up to date"


def _keys_generate(_args: argparse.Namespace) -> str:
    from triage.adapters.secrets import generate_key

    return generate_key()


def _worker(celery_args: list[str]) -> int:
    from triage.adapters.secrets import SecretKeyError
    from triage.commands import running
    from triage.runtime import build_runtime

    try:
        build_runtime(get_settings())  # fail now, clearly, rather than in the first task
    except SecretKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return running.worker(argparse.Namespace(), celery_args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"error: a TRIAGE_ setting is invalid:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    if argv[:1] == ["worker"]:
        return _worker(argv[1:])
    args = build_parser().parse_args(argv)
    if hasattr(args, "plain"):
        print(args.plain(args))
        return 0
    from triage.adapters.secrets import SecretKeyError
    from triage.commands.setup import CommandError
    from triage.runtime import build_runtime

    try:
        runtime = build_runtime(get_settings())
        outcome = args.handler(runtime, args)
    except (CommandError, SecretKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(outcome, str):
        print(outcome)
        return 0
    return int(outcome or 0)


if __name__ == "__main__":
    raise SystemExit(main())
