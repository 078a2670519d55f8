"""Shape a chat-completions request by stored capabilities, and pull the JSON out of the answer."""

from __future__ import annotations

import json
from typing import Any

from triage.adapters.models.presets import Capabilities, Preset
from triage.pipeline.ports import ProviderRefused


def build_request(
    *,
    model: str,
    messages: list[dict[str, Any]],
    schema_name: str,
    json_schema: dict[str, Any],
    capabilities: Capabilities,
    preset: Preset,
) -> dict[str, Any]:
    """Keyword arguments for `chat.completions.create` on the rung the capabilities name."""
    messages = _fit_images(messages, capabilities)
    request: dict[str, Any] = {"model": model, "messages": messages}
    mode = capabilities.structured
    if mode == "json_schema":
        schema: dict[str, Any] = {"name": schema_name, "schema": json_schema}
        if capabilities.strict:
            schema["strict"] = True
        request["response_format"] = {"type": "json_schema", "json_schema": schema}
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
        if capabilities.tool_choice:
            request["tool_choice"] = {"type": "function", "function": {"name": schema_name}}
        else:  # without a forced call the model may answer in text: ask for the JSON there too
            request["messages"] = _with_schema_hint(messages, json_schema)
    else:
        request["messages"] = _with_schema_hint(messages, json_schema)
    if preset.extra_body:
        request["extra_body"] = dict(preset.extra_body)
    if preset.extra_headers:
        request["extra_headers"] = dict(preset.extra_headers)
    return request


def extract_payload(completion: Any) -> str:
    """The answer's JSON text; ValueError when blank or cut off, ProviderRefused on refusal."""
    if not completion.choices:
        raise ValueError("the answer had no choices")
    choice = completion.choices[0]
    message = choice.message
    refusal = getattr(message, "refusal", None)
    if refusal or choice.finish_reason == "content_filter":
        raise ProviderRefused(f"the model refused: {refusal or 'content filter'}"[:300])
    if choice.finish_reason == "length":
        raise ValueError("the answer was cut off at the length limit; answer more briefly")
    if message.tool_calls:
        return str(message.tool_calls[0].function.arguments or "")
    content = _strip_fences(message.content or "")
    if not content:
        raise ValueError("the answer was blank")
    return content


def image_count(messages: list[dict[str, Any]]) -> int:
    return sum(1 for message in messages for _ in _image_parts(message))


def _strip_fences(content: str) -> str:
    text = content.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text.strip()


def _image_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [part for part in content if part.get("type") == "image_url"]


def _fit_images(messages: list[dict[str, Any]], capabilities: Capabilities) -> list[dict[str, Any]]:
    """Drop every image part when the model takes none, else those past the byte budget."""
    budget = capabilities.max_image_bytes if capabilities.images else 0
    fitted = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            fitted.append(message)
            continue
        kept = []
        for part in content:
            if part.get("type") == "image_url":
                size = len(str(part.get("image_url", {}).get("url", "")))
                if budget is not None and size > budget:
                    continue
                budget = None if budget is None else budget - size
            kept.append(part)
        fitted.append(_collapse(message, kept))
    return fitted


def _collapse(message: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    # Text-only content goes as a plain string: some servers reject a list without images.
    if any(part.get("type") != "text" for part in parts):
        return {**message, "content": parts}
    return {**message, "content": "\n\n".join(str(part.get("text", "")) for part in parts)}


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
