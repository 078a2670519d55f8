"""Raw bytes to what the database keeps: the parsed message and its images, normalized.

Pure work, no database: a big batch (a first sync) is read in a pool of processes, so parsing
runs on every core while the syncing process stores the batch before. What comes back carries
no attachment bodies, only their metadata and the normalized images.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace

from triage.domain.email import EmailParseError, ParsedEmail, parse_email
from triage.domain.images import ImageCandidate, NormalizedImage, SkippedImage, select_images

# Below this many messages the round trip to other processes costs more than it saves (and a
# message pushed by IDLE is stored at once).
POOL_MIN_BATCH = 64


@dataclass(frozen=True)
class ImageLimits:
    max_side: int
    min_side: int
    cap: int


@dataclass(frozen=True)
class ReadMail:
    """One message as read: `parsed` is None when it could not be, and `failure` says why."""

    parsed: ParsedEmail | None  # its attachments without their bytes
    kept: tuple[NormalizedImage, ...] = ()
    skipped: tuple[SkippedImage, ...] = ()
    failure: str | None = None

    @property
    def image_hashes(self) -> tuple[str, ...]:
        """Every image part's hash, kept or not, in document order."""
        if self.parsed is None:
            return ()
        parts = self.parsed.attachments
        return tuple(part.sha256 for part in parts if _is_image(part.sniffed_type))


def read_mail(
    raw: bytes, limits: ImageLimits, recent_hashes: frozenset[str] = frozenset()
) -> ReadMail:
    """Parse and pick images; never raises, since a message that cannot be read is still kept."""
    try:
        parsed = parse_email(raw)
    except EmailParseError as exc:
        return ReadMail(parsed=None, failure=f"unparseable: {exc}")
    except Exception as exc:  # the parser must never lose a message, whatever it hits
        return ReadMail(parsed=None, failure=f"parser error: {type(exc).__name__}: {exc}"[:500])
    candidates = [
        ImageCandidate(
            data=part.data,
            sha256=part.sha256,
            declared_type=part.declared_type,
            content_id=part.content_id,
            inline=part.inline,
            filename=part.filename,
        )
        for part in parsed.attachments
        if _is_image(part.sniffed_type)
    ]
    kept, skipped = select_images(
        candidates,
        max_side=limits.max_side,
        min_side=limits.min_side,
        cap=limits.cap,
        recent_hashes=recent_hashes,
    )
    bodiless = tuple(replace(part, data=b"") for part in parsed.attachments)
    return ReadMail(replace(parsed, attachments=bodiless), tuple(kept), tuple(skipped))


class Reading:
    """A batch being read, in the reader processes or (small batches) read already."""

    def __init__(self, raws: Sequence[bytes], limits: ImageLimits, processes: int) -> None:
        self._raws, self._limits = raws, limits
        self._done: list[ReadMail] | None = None
        self._under_way: Iterator[ReadMail] | None = None
        if processes < 1 or len(raws) < POOL_MIN_BATCH:
            self._done = [read_mail(raw, limits) for raw in raws]
        else:
            chunk = max(1, len(raws) // (processes * 4))
            limits_each = [limits] * len(raws)
            self._under_way = _pool(processes).map(_read, raws, limits_each, chunksize=chunk)

    def result(self) -> list[ReadMail]:
        """Every message's read, in the order given."""
        if self._done is None:
            try:
                self._done = list(self._under_way or ())
            except BrokenProcessPool:  # a reader died (killed, out of memory): read here
                _discard_pool()
                self._done = [read_mail(raw, self._limits) for raw in self._raws]
        return self._done


def start_reading(raws: Sequence[bytes], limits: ImageLimits, *, processes: int) -> Reading:
    """Start reading a batch: in `processes` reader processes when it is big enough (0: here)."""
    return Reading(raws, limits, processes)


def parse_processes(setting: int | None) -> int:
    """Reader processes: the setting, or by default one per core but the syncing process's own
    (which stores one batch while the next is parsed); none on a single core."""
    return setting if setting is not None else max(0, (os.cpu_count() or 1) - 1)


def _read(raw: bytes, limits: ImageLimits) -> ReadMail:
    return read_mail(raw, limits)


def _is_image(sniffed_type: str | None) -> bool:
    return bool(sniffed_type and sniffed_type.startswith("image/"))


_lock = threading.Lock()
_readers: ProcessPoolExecutor | None = None


def _pool(processes: int) -> ProcessPoolExecutor:
    """One pool per process, made on first use. Spawned, not forked: safe beside the threads
    of the listener and the embedded runner, and the readers are our own children (their CPU
    time is counted with ours)."""
    global _readers
    with _lock:
        if _readers is None:
            context = multiprocessing.get_context("spawn")
            _readers = ProcessPoolExecutor(processes, mp_context=context)
        return _readers


def _discard_pool(*, wait: bool = False) -> None:
    global _readers
    with _lock:
        if _readers is not None:
            _readers.shutdown(wait=wait, cancel_futures=True)
        _readers = None


atexit.register(_discard_pool, wait=True)
