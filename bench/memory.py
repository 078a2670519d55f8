"""Peak memory of `triage sync --once` on 5,000, 10,000 and 20,000-message mailboxes.

Run as `.venv/bin/python -m bench.memory [--sizes 5000,10000,20000]`. The biggest folder is
the SpamAssassin corpus APPENDed again and again, each copy with a new Message-ID so every
message is distinct; the smaller folders are IMAP COPYs of its first messages. Each folder
is synced by a fresh account in its own `triage sync --once` process. The peak is the highest
sum of RSS over that process and its reader processes (sampled every 20 ms), printed beside an
empty folder's, which is the start-up cost.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.corpus import distinct_messages
from bench.harness import REPO, Bench, ProcessRun, bench_services, run_sync

GOAL_MB = 300.0
# "Flat": the largest mailbox may cost at most this much more than the smallest.
FLAT_TOLERANCE = 1.10


def fill_folders(bench: Bench, sizes: list[int]) -> dict[int, str]:
    """A folder per size; the largest is APPENDed, the others are COPYs of its first UIDs."""
    largest = max(sizes)
    folders = {size: f"bench-{size}" for size in sizes}
    print(f"appending {largest:,} distinct messages", flush=True)
    bench.append(folders[largest], distinct_messages(largest))
    with bench.dovecot.client(bench.user, bench.password, timeout=300) as imap:
        imap.create_folder("bench-empty")
        imap.select_folder(folders[largest], readonly=True)
        uids = sorted(imap.search(["ALL"]))
        for size in sizes:
            if size != largest:
                imap.create_folder(folders[size])
                imap.copy(uids[:size], folders[size])
    return {0: "bench-empty", **folders}


def measure(sizes: list[int], tree: Path) -> dict[int, ProcessRun]:
    runs: dict[int, ProcessRun] = {}
    with bench_services() as bench:
        folders = fill_folders(bench, sizes)
        for size, folder in sorted(folders.items()):
            run = run_sync(bench, bench.add_account(folder), tree=tree)
            if f"stored {size} " not in run.output:
                raise RuntimeError(f"{folder}: expected {size} stored\n{run.output[-2000:]}")
            runs[size] = run
            print(f"{size:>6,} messages: peak RSS {run.tree_rss_mb:6.1f} MB", flush=True)
    return runs


def report(runs: dict[int, ProcessRun], load: tuple[float, float]) -> str:
    lines = [
        "Peak RSS of `triage sync --once` (Postgres, Redis broker), one process per mailbox; "
        f"load average before/after: {load[0]:.2f} / {load[1]:.2f}",
        "",
        "| messages | peak RSS, all processes (MB) | seconds | msg/s |",
        "|---------:|-----------------------------:|--------:|------:|",
    ]
    for size, run in sorted(runs.items()):
        rate = f"{size / run.seconds:,.0f}" if size else "-"
        cells = f"{run.tree_rss_mb:>28.1f} | {run.seconds:>7.1f}"
        lines.append(f"| {size:>8,} | {cells} | {rate:>5} |")
    sized = [runs[size] for size in sorted(runs) if size]
    peak = max(run.tree_rss_mb for run in sized)
    growth = sized[-1].tree_rss_mb / sized[0].tree_rss_mb
    lines += [
        "",
        f"highest peak: {peak:.1f} MB (goal < {GOAL_MB:.0f} MB): {_verdict(peak < GOAL_MB)}",
        f"largest / smallest mailbox: {growth:.2f}x (flat if <= {FLAT_TOLERANCE:.2f}x): "
        f"{_verdict(growth <= FLAT_TOLERANCE)}",
    ]
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--sizes", default="5000,10000,20000", help="comma-separated sizes")
    parser.add_argument("--tree", type=Path, default=REPO, help="run `triage` from this checkout")
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    before = os.getloadavg()[0]
    runs = measure(sizes, args.tree.resolve())
    print()
    print(report(runs, (before, os.getloadavg()[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
