"""A fake provider that behaves like a real model of given abilities, and rows to point it at.

`behaving(...)` answers triage, draft and probe requests the way a model with those abilities
would: it refuses request shapes it does not support with the 400s real providers send, reads
the numbers in a probe question, and names the colour of an image by looking at its pixels.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from PIL import Image

from tests.support.model_server import RecordedRequest, Reply, Responder, api_error, tool_call
from tests.support.triage_responder import image_parts, request_text, triage_answer
from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import Attachment, MailAccount, Message, ProviderSetting, User
from triage.domain import statuses
from triage.runtime import Runtime

SUM_QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")
# A vision model's idea of the basic colours, independent of the app's own palette.
NAMED_COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
}


@dataclass(frozen=True)
class Abilities:
    """What the simulated model accepts; each False is refused with a provider-style 400."""

    json_schema: bool = True
    strict: bool = True
    json_object: bool = True
    tools: bool = True
    tool_choice: bool = True
    image_parts: bool = True  # accepts image parts at all
    sees_images: bool = True  # and actually looks at them
    honours_response_format: bool = True  # False: answers in prose unless a tool is forced


def behaving(abilities: Abilities = Abilities()) -> Responder:
    def respond(request: RecordedRequest) -> Reply:
        refusal = _refusal(request.json or {}, request, abilities)
        if refusal is not None:
            return refusal
        return _answer(request, abilities)

    return respond


def _refusal(body: dict[str, Any], request: RecordedRequest, can: Abilities) -> Reply | None:
    fmt = body.get("response_format") or {}
    if image_parts(request) and not can.image_parts:
        return api_error(400, "Image input is not supported by this model")
    if fmt.get("type") == "json_schema":
        if not can.json_schema:
            return api_error(400, "This response_format type (json_schema) is unavailable now")
        if fmt["json_schema"].get("strict") and not can.strict:
            return api_error(400, "json_schema strict mode is not supported for this model")
    if fmt.get("type") == "json_object" and not can.json_object:
        return api_error(400, "response_format json_object is not supported")
    if body.get("tools") and not can.tools:
        return api_error(400, "This model does not support tools")
    if body.get("tool_choice") and not can.tool_choice:
        return api_error(400, "tool_choice is not supported")
    return None


def _answer(request: RecordedRequest, can: Abilities) -> Reply:
    body = request.json or {}
    payload = answer_for(request, sees_images=can.sees_images)
    if body.get("tools") and (body.get("tool_choice") or not can.honours_response_format):
        return Reply(tool_calls=[tool_call(body["tools"][0]["function"]["name"], payload)])
    if not can.honours_response_format:
        return Reply(content=f"Sure! Here is what I think: {payload}")
    return Reply(content=json.dumps(payload))


def answer_for(request: RecordedRequest, *, sees_images: bool = True) -> dict[str, Any]:
    """The JSON a competent model gives to a probe, triage or draft request."""
    text = request_text(request)
    asked = SUM_QUESTION.search(text)
    if asked:
        return {"sum": int(asked.group(1)) + int(asked.group(2))}
    if "Which colour fills this image" in text:
        seen = (
            colour_of(image_parts(request)[0]["image_url"]["url"]) if image_parts(request) else ""
        )
        if not sees_images:  # a blind model guesses, and here it always guesses wrong
            seen = next(name for name in NAMED_COLOURS if name != seen)
        return {"color": seen}
    body = request.json or {}
    fmt = body.get("response_format") or {}
    name = (fmt.get("json_schema") or {}).get("name") or (
        body["tools"][0]["function"]["name"] if body.get("tools") else ""
    )
    if name == "draft" or (not name and '"body"' in text):
        return {"body": "Thanks, I will get back to you tomorrow."}
    return triage_answer(text)


def colour_of(data_url: str) -> str:
    raw = base64.b64decode(data_url.split(",", 1)[1])
    pixel = Image.open(io.BytesIO(raw)).convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return min(
        NAMED_COLOURS,
        key=lambda name: sum((a - b) ** 2 for a, b in zip(pixel, NAMED_COLOURS[name], strict=True)),
    )


@dataclass
class Clock:
    """Wraps a responder and notes when each chat request arrived (monotonic seconds)."""

    inner: Responder
    arrivals: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.arrivals.append(time.monotonic())
        return self.inner(request)


def add_user(rt: Runtime, email: str) -> tuple[int, int]:
    """A user with one (never connected) mail account; returns (user_id, account_id)."""
    return add_user_to(rt.db, email)


def add_user_to(db: SessionFactory, email: str) -> tuple[int, int]:
    """`add_user` on a bare database (no runtime)."""
    with transaction(db) as session:
        user = User(email=email)
        session.add(user)
        session.flush()
        account = MailAccount(
            user_id=user.id, host="127.0.0.1", port=1, security="plain", username=email
        )
        session.add(account)
        session.flush()
        return user.id, account.id


def add_setting(
    rt: Runtime,
    user_id: int,
    *,
    provider: str,
    base_url: str,
    api_key: str,
    model: str = "fake-model",
    task: str = "classify",
    position: int = 0,
    capabilities: dict[str, Any] | None = None,
    rpm: int | None = None,
) -> int:
    """A provider setting as `providers set --no-probe` would save it (key encrypted)."""
    with transaction(rt.db) as session:
        setting = ProviderSetting(
            user_id=user_id,
            task=task,
            position=position,
            provider=provider,
            base_url=base_url,
            model=model,
            capabilities=capabilities or {},
            requests_per_minute=rpm,
        )
        session.add(setting)
        session.flush()
        setting.api_key_enc = rt.secrets.encrypt(api_key, owner=f"provider_settings:{setting.id}")
        setting.key_last4 = api_key[-4:] if len(api_key) >= 8 else None
        return setting.id


def add_message(
    rt: Runtime,
    account_id: int,
    *,
    uid: int,
    body: str = "Hello, can we meet on Friday?",
    image_colour: tuple[int, int, int] | None = None,
) -> int:
    """A queued message; with `image_colour`, one normalized 256-px image the model may see."""
    mail = EmailMessage()
    mail["From"] = "Alice <alice@example.test>"
    mail["To"] = "owner@example.test"
    mail["Subject"] = f"Message {uid}"
    mail.set_content(body)
    raw = mail.as_bytes()
    with transaction(rt.db) as session:
        message = Message(
            account_id=account_id,
            folder="INBOX",
            uidvalidity=1,
            uid=uid,
            subject=f"Message {uid}",
            from_addr="Alice <alice@example.test>",
            to_addrs=["owner@example.test"],
            text_body=body,
            raw=raw,
            raw_sha256=hashlib.sha256(raw).hexdigest(),
            size=len(raw),
            status=statuses.QUEUED,
        )
        if image_colour is not None:
            message.attachments = [_image_attachment(image_colour)]
        session.add(message)
        session.flush()
        return message.id


def _image_attachment(colour: tuple[int, int, int]) -> Attachment:
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(buffer, format="PNG")
    data = buffer.getvalue()
    return Attachment(
        filename="photo.png",
        declared_type="image/png",
        sniffed_type="image/png",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        inline=False,
        for_model=True,
        normalized=data,
        normalized_type="image/png",
        width=256,
        height=256,
    )
