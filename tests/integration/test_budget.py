"""Budgets on real Postgres and the loopback model server: the cap stops calls, ledger adds up."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from sqlalchemy import Engine, func, select

from tests.conftest import ImapUser
from tests.integration.conftest import CORPUS, Cli, configure_user
from tests.integration.seed import RecordingEnqueuer, runtime_for, seed_user
from tests.integration.stored_mail import (
    draft,
    ledger_total,
    mail,
    set_price,
    set_user,
    status_of,
    store_raw,
    triage,
)
from tests.support.dovecot import Dovecot
from tests.support.model_server import FakeModelServer, RecordedRequest, Reply
from tests.support.triage_responder import request_text, task_of, triage_answer
from triage.adapters.db.tables import Draft, Message, TriageResult, UsageEntry
from triage.domain import statuses
from triage.pipeline.sweep import retry_messages

# 1000 prompt and 100 completion tokens at $1,000 / $1,000 per million: $1.10 a call.
USAGE = (1000, 100)
PRICE = "1000/1000"
PER_CALL = Decimal("1.1")


def fixed_usage(request: RecordedRequest) -> Reply:
    payload = (
        {"body": "Thanks, Friday works."}
        if task_of(request) == "draft"
        else triage_answer(request_text(request))
    )
    return Reply(content=json.dumps(payload), usage=USAGE)


def test_the_cap_stops_calls_and_the_ledger_matches_the_calls(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    model_server.responder = fixed_usage
    rt = runtime_for(migrated_pg)
    user_id, account_id, setting_id = seed_user(rt, base_url=model_server.base_url, api_key="k")
    set_price(rt, setting_id, PRICE)
    set_user(rt, user_id, monthly_budget_usd=Decimal("3.00"))
    ids = [store_raw(rt, account_id, uid, mail(f"Report number {uid}.")) for uid in range(1, 6)]

    outcomes = [triage(rt, message_id, RecordingEnqueuer()).status for message_id in ids]

    # $0, $1.10, $2.20 are under the cap; at $3.30 the next call never leaves.
    assert outcomes == [statuses.TRIAGED] * 3 + [statuses.OVER_BUDGET] * 2
    assert len(model_server.chat_requests) == 3
    status, error = status_of(rt, ids[-1])
    assert status == statuses.OVER_BUDGET and error and "monthly budget reached" in error
    assert ledger_total(rt, user_id) == 3 * PER_CALL
    with rt.db() as session:
        results = session.scalars(select(TriageResult.cost_usd)).all()
    assert sum(results, Decimal(0)) == ledger_total(rt, user_id)

    # Raised cap, then `retry --status over_budget`: the waiting mail is triaged.
    set_user(rt, user_id, monthly_budget_usd=Decimal("100"))
    enqueue = RecordingEnqueuer()
    assert retry_messages(db=rt.db, enqueue=enqueue, status=statuses.OVER_BUDGET) == 2
    assert [triage(rt, i, enqueue).status for i in enqueue.triaged] == [statuses.TRIAGED] * 2
    assert ledger_total(rt, user_id) == 5 * PER_CALL


def test_ledger_is_the_sum_of_every_call_including_reasks_and_drafts(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, account_id, setting_id = seed_user(rt, base_url=model_server.base_url, api_key="k")
    set_price(rt, setting_id, PRICE)
    message_id = store_raw(rt, account_id, 1, mail("Can we meet on Friday?"))
    valid = triage_answer("Can we meet on Friday?")
    model_server.script(
        Reply(content='{"category": "nonsense"}', usage=(900, 10)),  # invalid: re-asked
        Reply(content=json.dumps(valid), usage=(1200, 80)),
        Reply(content='{"body": "Friday works."}', usage=(700, 30)),
    )
    enqueue = RecordingEnqueuer()
    assert triage(rt, message_id, enqueue).status == statuses.TRIAGED
    assert enqueue.drafted == [message_id]
    assert draft(rt, message_id).status == statuses.DRAFTED

    expected = Decimal(1000) * (900 + 10 + 1200 + 80 + 700 + 30) / Decimal(1_000_000)
    assert ledger_total(rt, user_id) == expected
    with rt.db() as session:
        result = session.scalars(select(TriageResult)).one()
        stored_draft = session.scalars(select(Draft)).one()
        rows = session.scalar(select(func.count()).select_from(UsageEntry))
    assert result.model_calls == 2 and result.input_tokens == 2100
    assert result.cost_usd is not None and stored_draft.cost_usd is not None
    assert result.cost_usd + stored_draft.cost_usd == expected
    assert rows == 2  # one ledger row per stage run, each the sum of its calls


def test_a_draft_waits_over_budget_and_is_written_after_a_retry(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    model_server.responder = fixed_usage
    rt = runtime_for(migrated_pg)
    user_id, account_id, setting_id = seed_user(rt, base_url=model_server.base_url, api_key="k")
    set_price(rt, setting_id, PRICE)
    set_user(rt, user_id, monthly_budget_usd=Decimal("1.00"))
    message_id = store_raw(rt, account_id, 1, mail("Can you call me?"))
    assert triage(rt, message_id, RecordingEnqueuer()).status == statuses.TRIAGED

    assert draft(rt, message_id).status == statuses.OVER_BUDGET
    assert len(model_server.chat_requests) == 1
    assert status_of(rt, message_id)[0] == statuses.OVER_BUDGET

    set_user(rt, user_id, monthly_budget_usd=None)
    enqueue = RecordingEnqueuer()
    retry_messages(db=rt.db, enqueue=enqueue, status=statuses.OVER_BUDGET)
    triage(rt, message_id, enqueue)  # already triaged: no call, the draft is queued again
    assert enqueue.drafted == [message_id]
    assert len(model_server.chat_requests) == 1
    assert draft(rt, message_id).status == statuses.DRAFTED
    assert status_of(rt, message_id) == (statuses.DRAFTED, None)


def test_budget_and_price_commands(cli: Cli) -> None:
    cli.env["BUDGET_KEY"] = "sk-budget-5678"
    cli("users", "add", "owner@example.test")
    shown = cli("users", "budget", "owner@example.test", "--monthly-usd", "12.5").stdout
    assert "monthly cap $12.50" in shown and "spent $0.0000" in shown
    bad = cli("users", "budget", "owner@example.test", "--monthly-usd", "lots", check=False)
    assert bad.returncode == 2 and "not a number" in bad.stderr and "Traceback" not in bad.stderr
    assert "no monthly cap" in cli("users", "budget", "owner@example.test", "--clear").stdout

    args = ["providers", "set", "--user", "owner@example.test", "--provider", "vllm"]
    args += ["--model", "local", "--price", "0.2/0.8"]
    cli(*args)
    wrong = cli(*args[:-1], "cheap", check=False)
    assert wrong.returncode == 2 and "IN/OUT" in wrong.stderr


def test_estimate_prices_a_backfill_without_triaging_anything(
    dovecot: Dovecot,
    imap_user: ImapUser,
    model_server: FakeModelServer,
    cli: Cli,
    pg_engine: Engine,
) -> None:
    for name in ("cpython-msg_01.eml", "flanker-mailbox-full.eml", "flanker-mailgun-pic.eml"):
        dovecot.append(
            imap_user.username, imap_user.password, "INBOX", (CORPUS / name).read_bytes()
        )
    configure_user(cli, imap_user, model_server, cli.env)
    out = cli("estimate", "--account", "1", "--since", "2000-01-01").stdout

    assert "since 2000-01-01: 3 messages" in out
    assert "sampled 3" in out and "skip 1" in out and "'bounce': 1" in out
    assert re.search(r"at gpt-4o-mini prices: \$\d+\.\d{4}", out), out
    assert re.search(r"at deepseek-chat prices: \$\d+\.\d{4}", out), out
    tokens = re.search(r"input ([\d,]+) \(images ([\d,]+)\)", out)
    assert tokens and int(tokens.group(2).replace(",", "")) > 0  # the picture is counted
    assert model_server.chat_requests == []
    with pg_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Message)) == 0

    future = cli("estimate", "--account", "1", "--since", "2999-01-01").stdout
    assert ": 0 messages" in future
    bad = cli("estimate", "--account", "1", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "is not a date" in bad.stderr
