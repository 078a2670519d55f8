"""Settings of the admin console, read from the environment with the ``TRIAGE_`` prefix."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from triage.config import Settings


class WebSettings(BaseSettings):
    """Console tunables; where it listens is TRIAGE_WEB_HOST / TRIAGE_WEB_PORT in Settings."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")

    review_confidence_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    web_session_hours: float = Field(default=12.0, gt=0)
    web_secure_cookies: bool = False  # set behind HTTPS so the cookie never travels in clear
    signin_max_failures: int = Field(default=5, ge=1)  # per email address, within the window
    signin_max_failures_per_ip: int = Field(default=20, ge=1)
    signin_window_seconds: int = Field(default=900, ge=1)
    web_page_size: int = Field(default=50, ge=1, le=500)
    account_silence_factor: float = Field(default=3.0, gt=1.0)  # x expected interval = warning


def cookie_signing_key(settings: Settings) -> str:
    """A key for signing session cookies, derived from the first secret key.

    Deriving it (rather than asking for one more secret) keeps the configuration to one key;
    the label keeps it distinct from the key that encrypts secrets at rest.
    """
    if settings.secret_keys:
        first = settings.secret_keys.split(",")[0].strip()
    else:
        first = (settings.data_dir / "secret.key").read_text().strip()
    return hmac.new(first.encode(), b"triage console session cookie", hashlib.sha256).hexdigest()
