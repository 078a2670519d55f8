"""Per-user settings from the console: a model key (write-only), the budget, a fresh probe."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from sqlalchemy.orm import Session

from triage.adapters.db.tables import ProviderSetting, User
from triage.adapters.models.probe import ModelProber, ProbeReport
from triage.adapters.secrets import last4
from triage.pipeline.probe import probe_setting
from triage.runtime import Runtime
from triage.web.actions import ActionError, NotVisible
from triage.web.sessions import Viewer

MAX_KEY = 4096


def visible_setting(session: Session, viewer: Viewer, setting_id: int) -> ProviderSetting:
    setting = session.get(ProviderSetting, setting_id)
    if setting is None or not (viewer.is_admin or setting.user_id == viewer.id):
        raise NotVisible(f"provider setting {setting_id}")
    return setting


def replace_key(
    session: Session, rt: Runtime, viewer: Viewer, *, setting_id: int, api_key: str
) -> ProviderSetting:
    """Store a new key encrypted; the console never reads a key back, it only shows …last4."""
    setting = visible_setting(session, viewer, setting_id)
    api_key = api_key.strip()
    if not api_key:
        raise ActionError("the key is empty")
    if len(api_key) > MAX_KEY or any(ch.isspace() for ch in api_key):
        raise ActionError("that does not look like an API key (too long, or has spaces)")
    setting.api_key_enc = rt.secrets.encrypt(api_key, owner=f"provider_settings:{setting.id}")
    setting.key_last4 = last4(api_key) or None
    # A new key deserves a new chance; the next probe or call will tell whether it works.
    setting.valid, setting.invalid_reason = True, None
    return setting


def set_budget(session: Session, viewer: Viewer, *, user_id: int, amount: str) -> User:
    """Admins set a user's monthly cap in USD; blank clears it."""
    if not viewer.is_admin:
        raise NotVisible(f"user {user_id}")
    user = session.get(User, user_id)
    if user is None:
        raise NotVisible(f"user {user_id}")
    text = amount.strip()
    if not text:
        user.monthly_budget_usd = None
        return user
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ActionError(f"budget {text!r} is not a number of dollars") from None
    if not value.is_finite() or value < 0 or value > Decimal("1000000"):
        raise ActionError("the budget must be between 0 and 1,000,000 USD")
    user.monthly_budget_usd = value.quantize(Decimal("0.01"))
    return user


def run_probe(rt: Runtime, viewer: Viewer, *, setting_id: int) -> ProbeReport:
    """Probe a model setting again, now; the probe stores what it found on the setting.

    The only place the console lets a key be decrypted: the probe must call the provider.
    """
    with rt.db() as session:
        visible_setting(session, viewer, setting_id)
    return probe_setting(
        setting_id=setting_id, db=rt.db, secrets=rt.secrets, prober=ModelProber(rt.model)
    )
