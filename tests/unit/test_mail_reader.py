"""Reading raw mail for storage: failures kept with a reason, the same reads in reader processes."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

from tests.unit.test_images import diagram, photo
from triage.pipeline.mail_reader import (
    POOL_MIN_BATCH,
    ImageLimits,
    ReadMail,
    read_mail,
    start_reading,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
LIMITS = ImageLimits(max_side=1024, min_side=100, cap=4)


def with_images(*images: bytes) -> bytes:
    message = EmailMessage()
    message["From"] = "Alice <alice@example.test>"
    message["Subject"] = "pictures"
    message.set_content("See attached.")
    for number, data in enumerate(images):
        message.add_attachment(data, maintype="image", subtype="png", filename=f"{number}.png")
    return message.as_bytes()


def test_mail_that_cannot_be_read_comes_back_with_the_reason() -> None:
    read = read_mail(b"   \r\n", LIMITS)
    assert read.parsed is None and read.failure == "unparseable: empty input"


def test_a_read_keeps_attachment_metadata_but_not_the_bodies() -> None:
    read = read_mail(with_images(diagram(), photo(800, 600, "PNG")), LIMITS)
    assert read.parsed is not None and read.failure is None
    assert [part.filename for part in read.parsed.attachments] == ["0.png", "1.png"]
    assert all(part.data == b"" and part.size > 0 for part in read.parsed.attachments)
    assert len(read.kept) == 2 and all(image.data for image in read.kept)
    assert read.image_hashes == tuple(part.sha256 for part in read.parsed.attachments)


def test_an_image_seen_recently_from_the_sender_is_not_kept() -> None:
    logo, chart = diagram(300, 120), photo(800, 600, "PNG")
    read = read_mail(with_images(logo, chart), LIMITS)
    again = read_mail(with_images(logo, chart), LIMITS, recent_hashes=frozenset({logo_hash(read)}))
    assert len(read.kept) == 2
    assert [image.sha256 for image in again.kept] == [read.kept[1].sha256]
    assert [skip.reason for skip in again.skipped] == ["seen recently from this sender (logo)"]


def logo_hash(read: ReadMail) -> str:
    return read.kept[0].sha256


def test_reader_processes_read_a_batch_exactly_as_the_syncing_process_does() -> None:
    raws = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))][: POOL_MIN_BATCH + 16]
    assert len(raws) > POOL_MIN_BATCH
    here = start_reading(raws, LIMITS, processes=0).result()
    there = start_reading(raws, LIMITS, processes=2).result()
    assert there == here
    assert sum(read.parsed is not None for read in there) == len(raws)
