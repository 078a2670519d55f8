"""Shape a chat-completions request by stored capabilities, and pull the JSON out of the answer."""

from __future__ import annotations

import json
from typing import Any

from triage.pipeline.ports import ProviderRejected


def build_request(
    *,
    model: str,
    messages: list[dict[str, Any]],
    schema_name: str,
    json_schema: dict[str, Any],
    capabilities: dict[str, Any],
    extra_body: dict[str, Any],
) -> dict[str, Any]:
    """Keyword arguments for `chat.completions.create` on the rung the capabilities name."""
    mode = capabilities.get("structured", "json_object")
    if not capabilities.get("images", False):
        messages = [_without_images(message) for message in messages]
    request: dict[str, Any] = {"model": model, "messages": messages}
    if mode == "json_schema":
        request["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": json_schema, "strict": True},
        }
    elif mode == "json_object":
        request["messages"] = _with_schema_hint(messages, json_schema)
        request["response_format"] = {"type": "json_object"}
    elif mode == "tool":
        request["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": schema_name,
                    "description": "Record the answer.",
                    "parameters": json_schema,
                },
            }
        ]
        request["tool_choice"] = {"type": "function", "function": {"name": schema_name}}
    else:
        request["messages"] = _with_schema_hint(messages, json_schema)
    if extra_body:
        request["extra_body"] = extra_body
    return request


def extract_payload(completion: Any) -> str:
    """The answer's JSON text; ValueError when blank or cut off, ProviderRejected on refusal."""
    if not completion.choices:
        raise ValueError("the answer had no choices")
    choice = completion.choices[0]
    message = choice.message
    refusal = getattr(message, "refusal", None)
    if refusal or choice.finish_reason == "content_filter":
        raise ProviderRejected(f"the model refused: {refusal or 'content filter'}"[:300])
    if choice.finish_reason == "length":
        raise ValueError("the answer was cut off at the length limit; answer more briefly")
    if message.tool_calls:
        return str(message.tool_calls[0].function.arguments or "")
    content = _strip_fences(message.content or "")
    if not content:
        raise ValueError("the answer was blank")
    return content


def _strip_fences(content: str) -> str:
    text = content.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text.strip()


def _without_images(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if not isinstance(content, list):
        return message
    texts = [part["text"] for part in content if part.get("type") == "text"]
    return {**message, "content": "\n\n".join(texts)}


def _with_schema_hint(
    messages: list[dict[str, Any]], json_schema: dict[str, Any]
) -> list[dict[str, Any]]:
    # json_object mode needs the word "json" and the shape spelled out in the prompt.
    hint = "\nReturn a json object matching this JSON schema:\n" + json.dumps(
        json_schema, separators=(",", ":")
    )
    first, *rest = messages
    if first.get("role") != "system":
        return [{"role": "system", "content": hint.strip()}, *messages]
    return [{**first, "content": f"{first['content']}{hint}"}, *rest]
