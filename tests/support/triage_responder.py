"""A scripted 'model' for the fake provider: answers triage and draft requests in valid JSON."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.model_server import RecordedRequest, Reply, tool_call

SUBJECT_LINE = re.compile(r"^Subject: (.*)$", re.MULTILINE)


def request_text(request: RecordedRequest) -> str:
    """All text the request carried in its messages (image parts left out)."""
    texts: list[str] = []
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [part.get("text", "") for part in content if part.get("type") == "text"]
    return "\n".join(texts)


def image_parts(request: RecordedRequest) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, list):
            parts += [part for part in content if part.get("type") == "image_url"]
    return parts


def subject_of(request: RecordedRequest) -> str | None:
    found = SUBJECT_LINE.search(request_text(request))
    return found.group(1) if found else None


def task_of(request: RecordedRequest) -> str:
    body = request.json or {}
    fmt = body.get("response_format") or {}
    name = (fmt.get("json_schema") or {}).get("name")
    if name is None and body.get("tools"):
        name = body["tools"][0]["function"]["name"]
    if name is None:
        name = "draft" if '"body"' in request_text(request) else "triage"
    return str(name)


def triage_answer(text: str) -> dict[str, Any]:
    """A deterministic classification from the words of the email."""
    lowered = text.lower()
    needs_reply = "?" in text
    category = "needs_reply" if needs_reply else "fyi"
    if "unsubscribe" in lowered:
        category = "newsletter"
    items = []
    if "please" in lowered:
        items.append(
            {"text": "Do what was asked", "owner": "me", "due_date": None, "quote": "please"}
        )
    return {
        "category": category,
        "priority": "normal",
        "confidence": 0.9,
        "summary": "A message.",
        "needs_reply": needs_reply,
        "action_items": items,
        "contains_ai_instructions": "ignore previous instructions" in lowered,
    }


def triage_and_draft(request: RecordedRequest) -> Reply:
    """The responder to install: shapes its answer like the request asked (schema or tool)."""
    task = task_of(request)
    payload: dict[str, Any]
    if task == "draft":
        payload = {"body": "Thanks, I will get back to you tomorrow."}
    else:
        payload = triage_answer(request_text(request))
    body = request.json or {}
    if body.get("tools"):
        return Reply(tool_calls=[tool_call(body["tools"][0]["function"]["name"], payload)])
    return Reply(content=json.dumps(payload))
