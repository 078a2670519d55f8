"""A real loopback HTTP server speaking OpenAI chat completions, scripted per test."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

# Longer than any client timeout a test sets; stop() still wakes a hanging reply at once.
HANG_SECONDS = 600.0
CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
MODELS_PATHS = frozenset({"/v1/models", "/models"})
# (type, code) as OpenAI sends them for the statuses clients treat specially.
_ERROR_KINDS = {
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any  # the parsed body; None when the body is empty or not JSON

    def header(self, name: str) -> str | None:
        """Return a header value, matching the name case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of a chat-completions request (empty otherwise)."""
        if isinstance(self.json, dict) and isinstance(self.json.get("messages"), list):
            return list(self.json["messages"])
        return []


@dataclass
class Reply:
    """What the fake provider answers to one chat-completions request."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    status: int = 200
    error: dict[str, Any] | None = None  # the whole body: {"error": {"message", "type", "code"}}
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    usage: tuple[int, int] | None = None  # (prompt_tokens, completion_tokens); None: estimated
    finish_reason: str | None = None  # None: "tool_calls" when there are tool calls, else "stop"
    refusal: str | None = None
    hang: bool = False  # never answer; trips client timeouts, ends when the server stops


Responder = Callable[[RecordedRequest], Reply]


def tool_call(
    name: str, arguments: dict[str, Any] | str, call_id: str = "call_1"
) -> dict[str, Any]:
    """Build one OpenAI-format tool call for `Reply.tool_calls`."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def api_error(
    status: int, message: str, *, code: str | None = None, retry_after: float | None = None
) -> Reply:
    """Build an error reply with an OpenAI-shaped body (and Retry-After when given)."""
    body = _error_body(status, message, code)
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    return Reply(status=status, error=body, headers=headers)


def default_responder(request: RecordedRequest) -> Reply:
    """Answer "ok" to everything; tests replace it or script replies."""
    return Reply(content="ok")


class FakeModelServer:
    """An OpenAI-compatible provider on 127.0.0.1 with a free port, in a daemon thread."""

    def __init__(self, *, api_key: str | None = None, models: Sequence[str] = ("fake-model",)):
        self.responder: Responder = default_responder
        self.api_key = api_key  # when set, any other bearer token gets a 401
        self.models = list(models)
        self.errors: list[BaseException] = []  # exceptions raised by the responder
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeModelServer:
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-model-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed and hanging replies
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeModelServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path in CHAT_PATHS]

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next chat requests, before falling back to `responder`."""
        with self._lock:
            self._queue.extend(replies)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Wait until at least `count` requests arrived (for work done by other processes)."""
        deadline = time.monotonic() + timeout
        while len(seen := self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} requests, got {len(seen)}")
            time.sleep(0.02)
        return seen

    def handle(self, handler: _Handler) -> None:
        """Serve one request (called from the server's handler threads)."""
        request = _read_request(handler)
        with self._lock:
            self._requests.append(request)
        if request.path not in CHAT_PATHS | MODELS_PATHS:
            _send_json(handler, 404, _error_body(404, f"no route for {request.path}"))
        elif self.api_key is not None and request.header("authorization") != (
            f"Bearer {self.api_key}"
        ):
            _send_json(handler, 401, _error_body(401, "Incorrect API key provided"))
        elif request.path in MODELS_PATHS:
            _send_json(handler, 200, self._models_body())
        else:
            self._answer_chat(handler, request)

    def _answer_chat(self, handler: _Handler, request: RecordedRequest) -> None:
        body = request.json
        if request.method != "POST" or not isinstance(body, dict):
            _send_json(handler, 400, _error_body(400, "expected a POST with a JSON object"))
            return
        if body.get("stream"):
            _send_json(handler, 400, _error_body(400, "FakeModelServer does not stream"))
            return
        reply = self._next_reply(request)
        if reply.hang or reply.delay > 0:
            woken = self._stopping.wait(HANG_SECONDS if reply.hang else reply.delay)
            if reply.hang or woken:
                handler.close_connection = True  # leave without answering
                return
        if reply.status != 200:
            error = reply.error or _error_body(reply.status, "scripted error")
            _send_json(handler, reply.status, error, reply.headers)
            return
        _send_json(handler, 200, self._completion(body, reply), reply.headers)

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        try:
            return self.responder(request)
        except Exception as exc:
            # Surface the test's own bug as a 500 the client sees, and keep it for the test.
            self.errors.append(exc)
            return api_error(500, f"responder raised {exc!r}")

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        prompt, completion = reply.usage or _estimate_usage(body, reply)
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        message = {
            "role": "assistant",
            "content": reply.content,
            "tool_calls": reply.tool_calls or None,
            "refusal": reply.refusal,
        }
        return {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or self.models[0]),
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    def _models_body(self) -> dict[str, Any]:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return {"object": "list", "data": data}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a pooled keep-alive connection must not make stop() wait
    request_queue_size = 64  # many concurrent workers may connect at once

    def __init__(self, fake: FakeModelServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real providers (and the SDK's pool) use
    timeout = 30  # an idle pooled connection must not pin a thread forever
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.fake.handle(self)

    def do_POST(self) -> None:
        self.server.fake.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are recorded; access logs would only clutter test output


def _read_request(handler: _Handler) -> RecordedRequest:
    length = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(length) if length else b""
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return RecordedRequest(
        method=handler.command,
        path=urlsplit(handler.path).path,
        headers=dict(handler.headers.items()),
        body=raw,
        json=parsed,
    )


def _send_json(
    handler: _Handler, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(payload).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True  # the client gave up first (its timeout)


def _error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    error_type, default_code = _ERROR_KINDS.get(status, (default_type, None))
    error = {"message": message, "type": error_type, "param": None, "code": code or default_code}
    return {"error": error}


def _estimate_usage(body: dict[str, Any], reply: Reply) -> tuple[int, int]:
    # About four characters per token, like the usual rule of thumb; never zero.
    prompt_chars = len(json.dumps(body.get("messages", [])))
    completion_chars = len(reply.content or "") + len(json.dumps(reply.tool_calls or []))
    return max(1, prompt_chars // 4), max(1, completion_chars // 4)
