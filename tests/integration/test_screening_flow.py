"""Screening in the real triage stage: skipped mail costs no call, bulk mail takes the cheap one."""

from __future__ import annotations

from sqlalchemy import Engine, select

from tests.integration.conftest import CORPUS, Cli
from tests.integration.seed import RecordingEnqueuer, runtime_for, seed_user
from tests.integration.stored_mail import mail, status_of, store_raw, triage
from tests.support.model_server import FakeModelServer
from tests.support.triage_responder import triage_and_draft
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import Message, ProviderSetting, TriageResult, User
from triage.domain import statuses
from triage.runtime import Runtime


def add_cheap_setting(rt: Runtime, user_id: int, base_url: str, api_key: str) -> None:
    with transaction(rt.db) as session:
        setting = ProviderSetting(
            user_id=user_id,
            task="cheap",
            position=0,
            provider="openai",
            base_url=base_url,
            model="cheap-model",
            capabilities={"structured": "json_schema", "images": False},
        )
        session.add(setting)
        session.flush()
        setting.api_key_enc = rt.secrets.encrypt(api_key, owner=f"provider_settings:{setting.id}")


def test_screening_decides_before_the_model(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    model_server.responder = triage_and_draft
    rt = runtime_for(migrated_pg)
    user_id, account_id, _ = seed_user(rt, base_url=model_server.base_url, api_key="k")
    add_cheap_setting(rt, user_id, model_server.base_url, "k")
    bounce = store_raw(rt, account_id, 1, (CORPUS / "flanker-mailbox-full.eml").read_bytes())
    away = store_raw(
        rt, account_id, 2, mail("I am away until Monday.", subject="Automatic reply: Budget")
    )
    newsletter = store_raw(
        rt, account_id, 3, (CORPUS / "spamassassin-easy-ham-1-00062.eml").read_bytes()
    )
    person = store_raw(rt, account_id, 4, mail("Can we meet on Friday?"))

    outcomes = {i: triage(rt, i, RecordingEnqueuer()).status for i in (bounce, away, newsletter)}
    outcomes[person] = triage(rt, person, RecordingEnqueuer()).status

    assert outcomes[bounce] == outcomes[away] == statuses.SKIPPED
    assert outcomes[newsletter] == outcomes[person] == statuses.TRIAGED
    _, reason = status_of(rt, bounce)
    assert reason and reason.startswith("screened as bounce") and "not called" in reason
    requests = model_server.chat_requests
    assert [r.json["model"] for r in requests] == ["cheap-model", "fake-model"]
    with rt.db() as session:
        rules = {m.id: m.screening_rule for m in session.scalars(select(Message))}
        results = {r.message_id: r for r in session.scalars(select(TriageResult))}
    assert rules == {bounce: "bounce", away: "auto_reply", newsletter: "bulk", person: None}
    assert results.keys() == {newsletter, person}
    assert results[newsletter].screening_rule == "bulk"
    assert results[newsletter].model == "cheap-model"
    assert results[person].screening_rule is None


def test_the_policy_command_changes_what_screening_does(
    cli: Cli, migrated_pg: str, model_server: FakeModelServer
) -> None:
    model_server.responder = triage_and_draft
    cli("users", "add", "owner@example.test")
    shown = cli(
        "users", "screening", "owner@example.test", "--rule", "bounce", "--action", "model"
    ).stdout
    assert "bounce: model" in shown and "auto_reply: skip (default)" in shown
    bad = cli("users", "screening", "owner@example.test", "--rule", "bulk", check=False)
    assert bad.returncode == 2 and "together" in bad.stderr
    wrong = cli(
        "users", "screening", "owner@example.test", "--rule", "spam", "--action", "skip",
        check=False,
    )  # fmt: skip
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr

    rt = runtime_for(migrated_pg)
    user_id, account_id, _ = seed_user(rt, base_url=model_server.base_url, api_key="k")
    with transaction(rt.db) as session:
        owner = session.scalars(select(User).where(User.email == "owner@example.test")).one()
        session.get_one(User, user_id).screening = dict(owner.screening)
    bounce = store_raw(rt, account_id, 1, (CORPUS / "cpython-msg_05.eml").read_bytes())
    assert triage(rt, bounce, RecordingEnqueuer()).status == statuses.TRIAGED
    assert len(model_server.chat_requests) == 1
    with rt.db() as session:
        result = session.scalars(select(TriageResult)).one()
    assert result.screening_rule == "bounce"  # recorded even when the model was asked
