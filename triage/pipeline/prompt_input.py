"""What of a stored message goes into a prompt: its text, headers and normalized images."""

from __future__ import annotations

from triage.adapters.db.tables import Message
from triage.domain.prompts import PromptEmail, PromptImage


def prompt_email(message: Message, *, max_images: int) -> PromptEmail:
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
    )
