"""Secrets at rest: `triage keys rotate` moves every one to the new key; copies do not decrypt."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tests.integration.conftest import Cli
from tests.integration.seed import RecordingEnqueuer
from tests.support.byok import add_message, add_setting, add_user, behaving
from tests.support.model_server import FakeModelServer
from triage.adapters.db.tables import MailAccount, Message, ProviderSetting
from triage.adapters.secrets import SecretBox, SecretDecryptError, generate_key
from triage.config import Settings
from triage.domain import statuses
from triage.pipeline.triage import triage_message
from triage.runtime import build_runtime

API_KEY = "sk-rotate-me-90ab"
IMAP_PASSWORD = "imap-pw-rotate-77"
REFRESH_TOKEN = "1//refresh-token-rotate"
CLIENT_SECRET = "client-secret-rotate"


def seed_secrets(cli: Cli, engine: Engine, base_url: str, old_key: str) -> None:
    """A provider key and an IMAP password through the CLI, OAuth secrets as stored by it."""
    cli.env.update(TRIAGE_SECRET_KEYS=old_key, K=API_KEY, P=IMAP_PASSWORD)
    cli("users", "add", "owner@example.test")
    cli(
        "accounts", "add", "--user", "owner@example.test", "--host", "127.0.0.1", "--port", "1",
        "--plain", "--username", "owner", "--password-env", "P",
    )  # fmt: skip
    cli(
        "providers", "set", "--user", "owner@example.test", "--provider", "openai",
        "--base-url", base_url, "--model", "fake-model", "--api-key-env", "K", "--no-probe",
    )  # fmt: skip
    old = SecretBox([old_key])
    with Session(engine) as session, session.begin():
        account = session.scalars(select(MailAccount)).one()
        account.oauth_refresh_token_enc = old.encrypt(
            REFRESH_TOKEN, owner=f"mail_accounts:{account.id}:refresh"
        )
        account.oauth = {
            "client_id": "id",
            "client_secret_enc": old.encrypt(
                CLIENT_SECRET, owner=f"mail_accounts:{account.id}:client"
            ),
        }


def stored(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        account = session.scalars(select(MailAccount)).one()
        setting = session.scalars(select(ProviderSetting)).one()
        return {
            "api_key": setting.api_key_enc or "",
            "password": account.password_enc or "",
            "refresh": account.oauth_refresh_token_enc or "",
            "client": account.oauth["client_secret_enc"],
            "account": str(account.id),
            "setting": str(setting.id),
        }


def test_rotate_re_encrypts_every_secret_under_the_first_key(
    cli: Cli, pg_engine: Engine, model_server: FakeModelServer
) -> None:
    old_key, new_key = generate_key(), generate_key()
    seed_secrets(cli, pg_engine, model_server.base_url, old_key)
    before = stored(pg_engine)

    cli.env["TRIAGE_SECRET_KEYS"] = f"{new_key},{old_key}"
    result = cli("keys", "rotate")

    assert "provider_settings.api_key_enc 1" in result.stdout
    assert "mail_accounts.password_enc 1" in result.stdout
    assert "mail_accounts.oauth_refresh_token_enc 1" in result.stdout
    assert "mail_accounts.oauth.client_secret_enc 1" in result.stdout
    assert "(total 4)" in result.stdout
    after = stored(pg_engine)
    account, setting = after["account"], after["setting"]
    new_only, old_only = SecretBox([new_key]), SecretBox([old_key])
    expected = {
        "api_key": (API_KEY, f"provider_settings:{setting}"),
        "password": (IMAP_PASSWORD, f"mail_accounts:{account}"),
        "refresh": (REFRESH_TOKEN, f"mail_accounts:{account}:refresh"),
        "client": (CLIENT_SECRET, f"mail_accounts:{account}:client"),
    }
    for name, (plain, owner) in expected.items():
        assert after[name] != before[name]
        assert new_only.decrypt(after[name], owner=owner) == plain  # still bound to its row
        try:
            old_only.decrypt(after[name], owner=owner)
        except SecretDecryptError:
            pass
        else:
            raise AssertionError(f"{name} still decrypts with the old key")

    # The old key can now go: the provider key still reaches the provider.
    cli.env["TRIAGE_SECRET_KEYS"] = new_key
    model_server.responder = behaving()
    cli("providers", "test", "--user", "owner@example.test")
    assert {r.header("Authorization") for r in model_server.chat_requests} == {f"Bearer {API_KEY}"}
    output = result.stdout + result.stderr
    assert all(secret not in output for secret in (API_KEY, IMAP_PASSWORD, REFRESH_TOKEN))


def test_rotate_changes_nothing_when_a_value_decrypts_with_no_key(
    cli: Cli, pg_engine: Engine, model_server: FakeModelServer
) -> None:
    old_key, new_key, lost_key = generate_key(), generate_key(), generate_key()
    seed_secrets(cli, pg_engine, model_server.base_url, old_key)
    with Session(pg_engine) as session, session.begin():
        setting = session.scalars(select(ProviderSetting)).one()
        setting.api_key_enc = SecretBox([lost_key]).encrypt(
            API_KEY, owner=f"provider_settings:{setting.id}"
        )
    before = stored(pg_engine)

    cli.env["TRIAGE_SECRET_KEYS"] = f"{new_key},{old_key}"
    result = cli("keys", "rotate", check=False)

    assert result.returncode == 2
    assert f"provider_settings.api_key_enc of row {before['setting']}" in result.stderr
    assert "nothing was changed" in result.stderr and "Traceback" not in result.stderr
    assert stored(pg_engine) == before


def test_a_key_copied_to_another_users_row_is_never_used(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = build_runtime(Settings(database_url=migrated_pg, secret_keys=generate_key()))
    alice, _ = add_user(rt, "alice@example.test")
    mallory, mallory_account = add_user(rt, "mallory@example.test")
    alices = add_setting(
        rt, alice, provider="openai", base_url=model_server.base_url, api_key=API_KEY
    )
    mallorys = add_setting(
        rt, mallory, provider="openai", base_url=model_server.base_url, api_key="sk-mallory-1111"
    )
    with Session(pg_engine) as session, session.begin():
        copied = session.get_one(ProviderSetting, alices).api_key_enc
        session.get_one(ProviderSetting, mallorys).api_key_enc = copied
    message_id = add_message(rt, mallory_account, uid=1)
    model_server.responder = behaving()

    outcome = triage_message(
        message_id=message_id,
        db=rt.db,
        model=rt.model,
        secrets=rt.secrets,
        enqueue=RecordingEnqueuer(),
        settings=rt.settings,
    )

    assert outcome.status == statuses.FAILED
    assert model_server.chat_requests == []  # neither Alice's key nor an empty one went out
    with Session(pg_engine) as session:
        assert "no valid model" in (session.get_one(Message, message_id).error or "")
