"""Ingestion speed: `triage sync --once` into Postgres beside three references on the same folder.

Run as `.venv/bin/python -m bench.ingest [--rounds N] [--tree DIR ...]`. Every method reads
the same Dovecot folder holding the SpamAssassin corpus (6,046 messages) in the same run;
each round runs them one after another and the table shows the median round. `triage sync`
runs in service mode (Postgres, a Redis broker of its own) as a subprocess, start-up
included: it stores every message, then enqueues its triage, which sits in Redis because no
worker runs, so what is measured is ingestion alone. `--tree` adds `triage sync` from
another checkout (say, with a change to try) as one more method in the same run.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import statistics
from collections.abc import Callable
from email import policy
from pathlib import Path

from bench import mirrors
from bench.corpus import corpus_messages
from bench.harness import REPO, Bench, bench_services, run_sync
from bench.mirrors import Outcome

FOLDER = "INBOX"
OURS = "triage sync --once (Postgres)"
NEAR = "near-limit: imapclient + email (policy.default)"
OFFLINEIMAP = "offlineimap (Maildir)"
MBSYNC = "mbsync (Maildir)"
Method = Callable[[Bench, int], Outcome]


def ours(bench: Bench, _round: int, *, tree: Path = REPO) -> Outcome:
    """A fresh account on the same folder each round, so every message is stored again."""
    run = run_sync(bench, bench.add_account(FOLDER), tree=tree)
    match = re.search(r"stored (\d+)", run.output)
    return Outcome(run.seconds, int(match.group(1)) if match else 0, run.cpu_seconds)


def methods(trees: list[Path]) -> dict[str, Method]:
    found: dict[str, Method] = {
        OURS: ours,
        NEAR: lambda bench, _r: mirrors.plain_fetch_and_parse(bench, FOLDER, policy.default),
        OFFLINEIMAP: lambda bench, r: mirrors.offlineimap(
            bench, FOLDER, bench.workdir / f"offlineimap-{r}"
        ),
        MBSYNC: lambda bench, r: mirrors.mbsync(bench, FOLDER, bench.workdir / f"mbsync-{r}"),
        # Not a target, for context: the same with the stdlib's old, lenient policy.
        "imapclient + email (policy.compat32)": lambda bench, _r: mirrors.plain_fetch_and_parse(
            bench, FOLDER, policy.compat32
        ),
    }
    for tree in trees:
        found[f"triage sync --once from {tree}"] = functools.partial(ours, tree=tree)
    return found


def measure(rounds: int, trees: list[Path]) -> tuple[dict[str, list[Outcome]], int]:
    """Every method's outcome in every round, and the folder's size."""
    mirrors.ensure_installed()
    messages = corpus_messages()
    todo = methods(trees)
    outcomes: dict[str, list[Outcome]] = {name: [] for name in todo}
    with bench_services() as bench:
        bench.append(FOLDER, messages)
        mirrors.plain_fetch_and_parse(bench, FOLDER, policy.compat32)  # warm Dovecot's caches
        for number in range(rounds):
            for name, method in todo.items():
                outcome = method(bench, number)
                if outcome.count != len(messages):
                    raise RuntimeError(f"{name} handled {outcome.count} of {len(messages)}")
                outcomes[name].append(outcome)
                rate = outcome.count / outcome.seconds
                print(f"round {number + 1}: {name}: {rate:,.0f} msg/s", flush=True)
    return outcomes, len(messages)


def report(outcomes: dict[str, list[Outcome]], count: int, load: tuple[float, float]) -> str:
    rate = {
        name: statistics.median(o.count / o.seconds for o in runs)
        for name, runs in outcomes.items()
    }
    cpu_ms = {
        name: statistics.median(1000 * o.cpu_seconds / o.count for o in runs)
        for name, runs in outcomes.items()
    }
    width = max(len(name) for name in rate)
    lines = [
        f"Ingestion of {count:,} messages (SpamAssassin corpus) from Dovecot, median of "
        f"{len(outcomes[OURS])} round(s); load average before/after: {load[0]:.2f} / {load[1]:.2f}",
        "",
        f"| {'method':<{width}} |   msg/s | ours / this | client CPU ms/msg |",
        f"|{'-' * (width + 2)}|--------:|------------:|------------------:|",
    ]
    for name in rate:
        ratio = f"{rate[OURS] / rate[name]:.2f}x"
        cells = f"{rate[name]:>7,.0f} | {ratio:>11} | {cpu_ms[name]:>17.2f}"
        lines.append(f"| {name:<{width}} | {cells} |")
    lines += [
        "",
        f"ours / near-limit  = {rate[OURS] / rate[NEAR]:.2f}  (goal >= 0.5)",
        f"ours / offlineimap = {rate[OURS] / rate[OFFLINEIMAP]:.2f}  (goal >= 1.5)",
        f"ours / mbsync      = {rate[OURS] / rate[MBSYNC]:.2f}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every method")
    parser.add_argument(
        "--tree", type=Path, action="append", default=[], help="another checkout to time too"
    )
    args = parser.parse_args()
    before = os.getloadavg()[0]
    outcomes, count = measure(max(1, args.rounds), [tree.resolve() for tree in args.tree])
    print()
    print(report(outcomes, count, (before, os.getloadavg()[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
