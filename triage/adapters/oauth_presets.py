"""The mail providers' OAuth2 token endpoints and IMAP scopes: plain data, cheap to import."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderPreset:
    token_url: str
    scopes: tuple[str, ...]


# IMAP scopes: Gmail's full mail scope; Microsoft's IMAP scope plus offline_access, without
# which Entra ID issues no refresh token.
PRESETS: dict[str, ProviderPreset] = {
    "google": ProviderPreset("https://oauth2.googleapis.com/token", ("https://mail.google.com/",)),
    "microsoft": ProviderPreset(
        "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        ("https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"),
    ),
}
PROVIDERS = (*PRESETS, "custom")


def preset(provider: str, token_url: str | None) -> ProviderPreset:
    """The token URL and scopes of a provider; `custom` needs its own token URL."""
    if provider == "custom":
        if not token_url:
            raise ValueError("--oauth-provider custom needs --token-url")
        return ProviderPreset(token_url, ())
    if provider not in PRESETS:
        raise ValueError(f"unknown OAuth provider {provider!r}; one of {', '.join(PROVIDERS)}")
    found = PRESETS[provider]
    return ProviderPreset(token_url or found.token_url, found.scopes)
