"""Draft clean-up: no chat preambles or meta lines, only links the thread already has."""

from __future__ import annotations

import pytest

from triage.domain.drafts import LINK_REMOVED, clean_draft, keep_known_links, own_words, strip_meta


@pytest.mark.parametrize(
    "opener",
    [
        "Here is a draft:",
        "Here's a reply you could send:",
        "Sure! Here's a reply:",
        "Certainly! Here is the draft response:",
        "Draft reply:",
        "Subject: Re: Meeting",
        "```",
        "Hier ist ein Entwurf für die Antwort:",
    ],
)
def test_preambles_are_stripped(opener: str) -> None:
    body = f"{opener}\n\nHi Anna,\n\nThursday works for me.\n\nBest,\nBob"
    assert strip_meta(body) == "Hi Anna,\n\nThursday works for me.\n\nBest,\nBob"


@pytest.mark.parametrize(
    "tail",
    [
        "Let me know if you'd like any changes!",
        "Feel free to adjust the tone.",
        "I hope this helps.",
        "```",
    ],
)
def test_meta_tails_are_stripped(tail: str) -> None:
    body = f"Hi Anna,\n\nThursday works.\n\nBest,\nBob\n\n{tail}"
    assert strip_meta(body) == "Hi Anna,\n\nThursday works.\n\nBest,\nBob"


def test_the_reply_itself_is_untouched_whatever_its_length() -> None:
    long = "\n\n".join(f"Paragraph {i}: here is what I think about point {i}." for i in range(200))
    body = f"Hi,\n\n{long}\n\nLet me know if that works for you.\nBob"
    # "Let me know if that works" is the owner's own line, not a note to the owner.
    assert strip_meta(body) == body


def test_links_not_in_the_thread_are_removed() -> None:
    thread = "Agenda at https://intranet.example/agenda. Call me."
    body, removed = keep_known_links(
        "See https://intranet.example/agenda and https://evil.example/login.", thread
    )
    assert body == f"See https://intranet.example/agenda and {LINK_REMOVED}."
    assert removed


def test_known_links_keep_their_punctuation() -> None:
    body, removed = keep_known_links("(www.example.org/a)", "visit www.example.org/a/")
    assert (body, removed) == ("(www.example.org/a)", False)


def test_clean_draft_flags_removed_links() -> None:
    draft = clean_draft("Here is a draft:\nClick https://x.example now", thread_text="hello")
    assert draft.body == f"Click {LINK_REMOVED} now"
    assert draft.flags == ("link_removed",)


def test_own_words_drop_quotes_signatures_and_forwards() -> None:
    sent = "Thanks Anna, Thursday works.\n> When can we meet?\nCheers, Bob\n-- \nBob Smith\nACME\n"
    assert own_words(sent) == "Thanks Anna, Thursday works.\nCheers, Bob"
    reply = "Sounds good.\n\nOn Mon, 3 Jun 2024 at 10:00, Anna <a@x> wrote:\nold text"
    assert own_words(reply) == "Sounds good."
    german = "Passt.\nAm 03.06.2024 um 10:00 schrieb Anna <a@x>:\nalt"
    assert own_words(german) == "Passt."
