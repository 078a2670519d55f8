"""OAuth2 refresh-token grants against a mail provider's token endpoint (for IMAP XOAUTH2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx2

# The presets live apart so that the CLI can list them without importing httpx2.
from triage.adapters.oauth_presets import PRESETS, PROVIDERS, ProviderPreset, preset

__all__ = [
    "PRESETS",
    "PROVIDERS",
    "OAuthClient",
    "OAuthError",
    "OAuthReauthNeeded",
    "OAuthUnavailable",
    "ProviderPreset",
    "TokenGrant",
    "preset",
    "refresh_access_token",
]

# Token requests are small; a provider slower than this is treated as down for this poll.
TOKEN_TIMEOUT = httpx2.Timeout(20.0, connect=10.0)
# Errors after which the same request can never succeed: the user must authorize again.
_REAUTH_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
_MAX_DESCRIPTION = 200


class OAuthError(Exception):
    """Base of the token endpoint's failures; messages never carry a token."""


class OAuthReauthNeeded(OAuthError):
    """The refresh token or client was refused (invalid_grant ...): only the user can fix it."""


class OAuthUnavailable(OAuthError):
    """Network error, timeout, 429 or 5xx: try again on a later poll."""


@dataclass(frozen=True)
class OAuthClient:
    """Where and as whom to ask for tokens; the client secret is empty for public clients."""

    token_url: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenGrant:
    access_token: str = field(repr=False)
    expires_in: int
    refresh_token: str | None = field(default=None, repr=False)  # set when the provider rotated


def refresh_access_token(
    client: OAuthClient, refresh_token: str, *, timeout: httpx2.Timeout = TOKEN_TIMEOUT
) -> TokenGrant:
    """One refresh_token grant (RFC 6749 6); raises OAuthReauthNeeded or OAuthUnavailable."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    form["client_id"] = client.client_id
    if client.client_secret:
        form["client_secret"] = client.client_secret
    if client.scopes:
        form["scope"] = " ".join(client.scopes)
    where = urlsplit(client.token_url).netloc or client.token_url
    try:
        response = httpx2.post(
            client.token_url, data=form, timeout=timeout, headers={"Accept": "application/json"}
        )
    except httpx2.HTTPError as exc:
        reason = type(exc).__name__  # the exception text could quote the request
        raise OAuthUnavailable(f"token endpoint {where} unreachable: {reason}") from None
    return _grant_from(response, where)


def _grant_from(response: httpx2.Response, where: str) -> TokenGrant:
    body = _json_object(response)
    status = response.status_code
    if status == 200:
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise OAuthUnavailable(f"token endpoint {where} answered without an access_token")
        refresh = body.get("refresh_token")
        return TokenGrant(
            access_token=access,
            expires_in=_seconds(body.get("expires_in")),
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        )
    error = str(body.get("error") or f"HTTP {status}")
    detail = _description(body)
    text = f"token endpoint {where} refused the refresh token: {error}{detail}"
    if status == 429 or status >= 500:
        raise OAuthUnavailable(f"token endpoint {where} answered HTTP {status} ({error})")
    if error in _REAUTH_ERRORS or status in (400, 401, 403):
        raise OAuthReauthNeeded(text)
    raise OAuthUnavailable(f"token endpoint {where} answered HTTP {status} ({error})")


def _json_object(response: httpx2.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _seconds(value: object) -> int:
    """expires_in as an int; an absent or odd one counts as a short life (refresh soon)."""
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 300


def _description(body: dict[str, object]) -> str:
    text = body.get("error_description")
    if not isinstance(text, str) or not text.strip():
        return ""
    return f" ({' '.join(text.split())[:_MAX_DESCRIPTION]})"
