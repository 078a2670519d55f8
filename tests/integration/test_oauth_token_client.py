"""The refresh-token grant against a real loopback token endpoint: answers and failures mapped."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx2
import pytest

from tests.support.oauth import TokenServer
from triage.adapters.oauth import (
    OAuthClient,
    OAuthReauthNeeded,
    OAuthUnavailable,
    preset,
    refresh_access_token,
)


@pytest.fixture
def tokens() -> Iterator[TokenServer]:
    with TokenServer() as server:
        yield server


def client_for(server: TokenServer, **changes: str) -> OAuthClient:
    fields = {"client_secret": server.client_secret, **changes}
    return OAuthClient(
        token_url=server.token_url,
        client_id=server.client_id,
        client_secret=fields["client_secret"],
        scopes=("https://mail.google.com/",),
    )


def test_a_grant_returns_a_live_access_token_and_sends_the_scopes(tokens: TokenServer) -> None:
    refresh = tokens.new_refresh_token("alice")
    grant = refresh_access_token(client_for(tokens), refresh)
    assert tokens.access_token_is_live(grant.access_token)
    assert grant.expires_in == tokens.lifetime and grant.refresh_token is None
    form = tokens.grants[-1].form
    assert form["grant_type"] == "refresh_token" and form["scope"] == "https://mail.google.com/"
    assert grant.access_token not in repr(grant)


def test_a_rotating_endpoint_hands_back_the_new_refresh_token(tokens: TokenServer) -> None:
    tokens.rotate = True
    first = tokens.new_refresh_token("alice")
    grant = refresh_access_token(client_for(tokens), first)
    assert grant.refresh_token is not None and grant.refresh_token != first
    assert tokens.live_refresh_tokens() == {grant.refresh_token}


def test_invalid_grant_and_invalid_client_need_the_user(tokens: TokenServer) -> None:
    refresh = tokens.new_refresh_token("alice")
    tokens.revoke(refresh)
    with pytest.raises(OAuthReauthNeeded, match="invalid_grant") as revoked:
        refresh_access_token(client_for(tokens), refresh)
    assert refresh not in str(revoked.value)

    live = tokens.new_refresh_token("alice")
    with pytest.raises(OAuthReauthNeeded, match="invalid_client") as wrong:
        refresh_access_token(client_for(tokens, client_secret="wrong"), live)
    assert "wrong" not in str(wrong.value) and live not in str(wrong.value)


def test_5xx_refused_connections_and_timeouts_are_transient(tokens: TokenServer) -> None:
    refresh = tokens.new_refresh_token("alice")
    tokens.fail_with = 503
    with pytest.raises(OAuthUnavailable, match="HTTP 503"):
        refresh_access_token(client_for(tokens), refresh)

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    nowhere = OAuthClient(token_url=f"http://127.0.0.1:{port}/token", client_id="c")
    with pytest.raises(OAuthUnavailable, match="unreachable"):
        refresh_access_token(nowhere, refresh)

    with socket.socket() as silent:  # accepts the connection (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/token"
        with pytest.raises(OAuthUnavailable, match="Timeout"):
            refresh_access_token(
                OAuthClient(token_url=url, client_id="c"), refresh, timeout=httpx2.Timeout(0.5)
            )


def test_presets_carry_the_imap_scopes() -> None:
    google = preset("google", None)
    assert google.token_url == "https://oauth2.googleapis.com/token"
    assert google.scopes == ("https://mail.google.com/",)
    microsoft = preset("microsoft", None)
    assert microsoft.token_url.startswith("https://login.microsoftonline.com/")
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in microsoft.scopes
    assert "offline_access" in microsoft.scopes
    assert preset("custom", "http://127.0.0.1:1/t").token_url == "http://127.0.0.1:1/t"
    with pytest.raises(ValueError, match="--token-url"):
        preset("custom", None)
    with pytest.raises(ValueError, match="unknown OAuth provider"):
        preset("yahoo", None)
