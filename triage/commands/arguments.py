"""The arguments of the `providers`, `users` (settings) and `estimate` sub-commands.

They live apart from their commands so that building the parser (`triage --help`, and every
command before it runs) imports no command module: a handler is named here and imported only
when its command runs, so `triage users add` never loads the model SDK nor `triage sync` the
console. See `handler`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING

from triage.domain.screening import ACTIONS, RULE_NAMES

if TYPE_CHECKING:
    from triage.runtime import Runtime

Handler = Callable[["Runtime", argparse.Namespace], object]
TASKS = ("classify", "draft", "cheap")


def handler(target: str) -> Handler:
    """The command function `module:name`, imported on its first call."""
    module, _, name = target.partition(":")

    def run(rt: Runtime, args: argparse.Namespace) -> object:
        function: Handler = getattr(import_module(module), name)
        return function(rt, args)

    run.__qualname__ = run.__name__ = target
    return run


def providers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `providers` sub-commands."""
    actions = commands.add_parser("providers", help="model settings").add_subparsers(
        dest="action", required=True
    )
    put = actions.add_parser("set", help="set a user's model for a task, then probe it")
    put.add_argument("--user", required=True)
    put.add_argument("--provider", required=True, help="a preset name, or custom")
    put.add_argument("--base-url", help="the preset's URL unless given (required for custom)")
    put.add_argument("--model", required=True)
    put.add_argument("--api-key-env", metavar="VAR", help="env var holding the key")
    put.add_argument("--task", choices=TASKS, default="classify")
    put.add_argument("--fallback-of", metavar="NAME", help="add as a fallback after NAME")
    put.add_argument("--rpm", type=_positive, help="at most N requests a minute with this key")
    put.add_argument("--price", metavar="IN/OUT", help="USD per 1M tokens, beats the table")
    put.add_argument("--no-probe", action="store_true", help="save without calling the model")
    put.set_defaults(handler=handler("triage.commands.providers:providers_set"))

    test = actions.add_parser("test", help="probe: reachable? key valid? JSON? vision?")
    test.add_argument("--user", required=True)
    test.add_argument("--task", choices=TASKS)
    test.set_defaults(handler=handler("triage.commands.providers:providers_test"))

    show = actions.add_parser("list", help="a user's settings and their last probe")
    show.add_argument("--user", required=True)
    show.set_defaults(handler=handler("triage.commands.providers:providers_list"))

    remove = actions.add_parser("remove", help="delete one setting")
    remove.add_argument("--user", required=True)
    remove.add_argument("--task", choices=TASKS, default="classify")
    remove.add_argument("--position", type=int, required=True, help="0 = primary")
    remove.set_defaults(handler=handler("triage.commands.providers:providers_remove"))


def _positive(value: str) -> int:  # argparse names it: "invalid _positive value: 'x'"
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def user_settings(users: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The budget, screening, style and categories sub-commands of `triage users`."""
    cap = users.add_parser("budget", help="monthly spending cap (USD) for a user's model calls")
    cap.add_argument("email")
    cap.add_argument("--monthly-usd", metavar="AMOUNT")
    cap.add_argument("--clear", action="store_true", help="remove the cap")
    cap.set_defaults(handler=handler("triage.commands.users:budget"))

    screen = users.add_parser("screening", help="what happens to machine mail before the model")
    screen.add_argument("email")
    screen.add_argument("--rule", choices=RULE_NAMES)
    screen.add_argument("--action", choices=ACTIONS)
    screen.set_defaults(handler=handler("triage.commands.users:screening"))

    voice = users.add_parser("style", help="how drafts should sound")
    voice.add_argument("email")
    voice.add_argument("--note-env", metavar="VAR", help="env var holding a written style note")
    voice.add_argument("--from-sent", action="store_true", help="learn it from sent mail")
    voice.add_argument("--account", type=int, help="the account whose Sent folder to read")
    voice.add_argument("--folder", help="the Sent folder (default: the account's)")
    voice.add_argument("--count", type=int, default=20, help="how many sent messages to read")
    voice.add_argument("--clear", action="store_true", help="forget the note and the profile")
    voice.set_defaults(handler=handler("triage.commands.users:style"))

    labels = users.add_parser("categories", help="a user's own categories")
    labels.add_argument("email")
    labels.add_argument("--file", help='JSON: [{"name": "...", "description": "..."}, ...]')
    labels.add_argument("--defaults", action="store_true", help="back to the default set")
    labels.set_defaults(handler=handler("triage.commands.users:categories"))


def estimate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cost = commands.add_parser("estimate", help="cost of triaging old mail, before it runs")
    cost.add_argument("--account", type=int, required=True)
    cost.add_argument("--since", required=True, metavar="YYYY-MM-DD")
    cost.add_argument("--sample", type=int, default=50, help="bodies to read (default 50)")
    cost.set_defaults(handler=handler("triage.commands.estimate:estimate"))
