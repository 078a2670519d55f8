"""What of a stored message goes into a prompt: its text, headers, images and thread context."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from triage.adapters.db.tables import Message
from triage.domain.prompts import PromptEmail, PromptImage
from triage.pipeline.thread_context import earlier_in_thread

# Below this the guess is a coin toss; the prompt then says "the language of the email".
MIN_LANGUAGE_CONFIDENCE = 0.5
MIN_LANGUAGE_CHARS = 20
LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "fi": "Finnish", "fr": "French", "he": "Hebrew",
    "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "ko": "Korean", "nb": "Norwegian", "nl": "Dutch", "no": "Norwegian", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sv": "Swedish",
    "th": "Thai", "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip
_LANGUAGE_LOCK = threading.Lock()


def prompt_email(
    message: Message, *, max_images: int, session: Session | None = None
) -> PromptEmail:
    """The prompt's view of a message; with a session, earlier thread messages come along."""
    images = tuple(
        PromptImage(media_type=part.normalized_type or "image/jpeg", data=part.normalized)
        for part in message.attachments
        if part.for_model and part.normalized
    )[:max_images]
    names = tuple(part.filename for part in message.attachments if part.filename)
    return PromptEmail(
        subject=message.subject,
        from_addr=message.from_addr,
        to_addrs=tuple(message.to_addrs or ()),
        date=message.sent_at,
        text=message.text_body,
        attachment_names=names[:20],
        images=images,
        earlier=earlier_in_thread(session, message) if session is not None else (),
    )


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def reply_language(text: str) -> str | None:
    """The language a reply should be written in (the email's own), or None when unsure."""
    sample = " ".join(text.split())[:2000]
    if len(sample) < MIN_LANGUAGE_CHARS:
        return None
    with _LANGUAGE_LOCK:  # the identifier keeps scratch arrays; one thread at a time
        code, confidence = _identifier().classify(sample)
    if confidence < MIN_LANGUAGE_CONFIDENCE:
        return None
    return LANGUAGE_NAMES.get(str(code))
