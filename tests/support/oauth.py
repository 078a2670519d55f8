"""A real loopback OAuth2 token endpoint: refresh-token grants, rotation, revocation, introspection.

The test scripts it; Dovecot's oauth2 passdb asks its `/introspect` whether an access token is
live, so an IMAP login with a stale or made-up token is refused by the real server.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

HOST = "127.0.0.1"


@dataclass
class _Grant:
    username: str
    client_id: str


@dataclass
class GrantRequest:
    """One request to /token as received (the test inspects what the client sent)."""

    form: dict[str, str]


@dataclass
class TokenServer:
    """Issues tokens for known refresh tokens; `rotate`, `fail_with` and `lifetime` script it."""

    client_id: str = "triage-test-client"
    client_secret: str = field(default_factory=lambda: "cs-" + secrets.token_urlsafe(16))
    lifetime: int = 3600  # seconds an access token lives
    rotate: bool = False  # answer each grant with a new refresh token and retire the old one
    fail_with: int | None = None  # answer /token with this status (e.g. 503) until cleared
    grants: list[GrantRequest] = field(default_factory=list)
    introspections: int = 0
    issued: list[str] = field(default_factory=list)  # every token handed out, for leak checks
    _refresh: dict[str, _Grant] = field(default_factory=dict)
    _access: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (user, expiry)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> TokenServer:
        server = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "token server not started"
        return int(self._server.server_address[1])

    @property
    def token_url(self) -> str:
        return f"http://{HOST}:{self.port}/token"

    @property
    def introspection_url(self) -> str:
        return f"http://{HOST}:{self.port}/introspect"

    # --- scripting -------------------------------------------------------------------------

    def new_refresh_token(self, username: str) -> str:
        """A refresh token the user 'consented' to; the test hands it to the CLI."""
        token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = _Grant(username, self.client_id)
            self.issued.append(token)
        return token

    def revoke(self, refresh_token: str) -> None:
        """The user withdrew consent (or the token aged out): its next grant is invalid_grant."""
        with self._lock:
            self._refresh.pop(refresh_token, None)

    def revoke_all(self) -> None:
        with self._lock:
            self._refresh.clear()

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops being accepted (as after its hour is up)."""
        with self._lock:
            self._access = {token: (user, 0.0) for token, (user, _) in self._access.items()}

    def live_refresh_tokens(self) -> set[str]:
        with self._lock:
            return set(self._refresh)

    def access_token_is_live(self, token: str) -> bool:
        with self._lock:
            entry = self._access.get(token)
        return entry is not None and entry[1] > time.time()

    # --- the endpoints -----------------------------------------------------------------------

    def grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.grants.append(GrantRequest(dict(form)))
            if self.fail_with is not None:
                return self.fail_with, {"error": "temporarily_unavailable"}
            if form.get("client_id") != self.client_id or (
                form.get("client_secret") != self.client_secret
            ):
                return 401, {"error": "invalid_client", "error_description": "unknown client"}
            if form.get("grant_type") != "refresh_token":
                return 400, {"error": "unsupported_grant_type"}
            grant = self._refresh.get(form.get("refresh_token", ""))
            if grant is None:
                revoked = "Token has been expired or revoked."
                return 400, {"error": "invalid_grant", "error_description": revoked}
            access = "at-" + secrets.token_urlsafe(24)
            self._access[access] = (grant.username, time.time() + self.lifetime)
            self.issued.append(access)
            body: dict[str, Any] = {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.lifetime,
                "scope": form.get("scope", ""),
            }
            if self.rotate:
                self._refresh.pop(form["refresh_token"])
                rotated = "rt-" + secrets.token_urlsafe(24)
                self._refresh[rotated] = grant
                self.issued.append(rotated)
                body["refresh_token"] = rotated
            return 200, body

    def introspect(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """RFC 7662 token introspection, as Dovecot's `introspection_mode = post` asks it."""
        with self._lock:
            self.introspections += 1
            entry = self._access.get(form.get("token", ""))
        if entry is None or entry[1] <= time.time():
            return 200, {"active": False}
        return 200, {"active": True, "username": entry[0]}


def _handler_for(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            form = {key: values[0] for key, values in parse_qs(raw).items()}
            if self.path == "/token":
                status, body = server.grant(form)
            elif self.path == "/introspect":
                status, body = server.introspect(form)
            else:
                status, body = 404, {"error": "not_found"}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tokens travel in bodies, but keep test output clean anyway

    return Handler
