"""Proof that the test support services (fake provider, Dovecot, Postgres, Redis) really work."""

from __future__ import annotations

import secrets
import time
from email.message import EmailMessage
from email.policy import SMTP

import openai
import pytest
import redis
import sqlalchemy as sa

from tests.conftest import ImapUser
from tests.support import services
from tests.support.dovecot import Dovecot
from tests.support.model_server import FakeModelServer, Reply, api_error, tool_call

pytestmark = pytest.mark.integration

PUBLIC_TABLES = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
MESSAGES = [{"role": "user", "content": "Classify this mail."}]


def sdk(server: FakeModelServer, timeout: float = 10.0) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url, api_key="sk-test-123", max_retries=0, timeout=timeout
    )


def ask(client: openai.OpenAI) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="gpt-test", messages=MESSAGES)  # type: ignore[arg-type]


def raw_mail(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "sender@example.org"
    message["To"] = "user@example.org"
    message["Subject"] = subject
    message.set_content(f"Body of {subject}.")
    return message.as_bytes(policy=SMTP)  # CRLF, as IMAP servers store and return it


def test_sdk_gets_a_scripted_answer_and_the_request_is_recorded(
    model_server: FakeModelServer,
) -> None:
    model_server.script(Reply(content='{"category": "work"}', usage=(12, 5)))

    completion = ask(sdk(model_server))

    assert completion.choices[0].message.content == '{"category": "work"}'
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-test"
    assert completion.usage is not None and completion.usage.total_tokens == 17
    [request] = model_server.chat_requests
    assert request.header("authorization") == "Bearer sk-test-123"
    assert request.messages == MESSAGES


def test_responder_answers_after_the_script_runs_out(model_server: FakeModelServer) -> None:
    model_server.script(Reply(content="first"))
    model_server.responder = lambda request: Reply(content=f"echo {len(request.messages)}")
    client = sdk(model_server)

    assert [ask(client).choices[0].message.content for _ in range(2)] == ["first", "echo 1"]


def test_rate_limit_with_retry_after(model_server: FakeModelServer) -> None:
    model_server.script(api_error(429, "slow down", retry_after=7))

    with pytest.raises(openai.RateLimitError) as caught:
        ask(sdk(model_server))

    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"


def test_unauthorized_is_an_authentication_error(model_server: FakeModelServer) -> None:
    model_server.script(Reply(status=401))

    with pytest.raises(openai.AuthenticationError):
        ask(sdk(model_server))


def test_server_with_an_api_key_rejects_other_keys() -> None:
    with FakeModelServer(api_key="sk-right") as server:
        with pytest.raises(openai.AuthenticationError):
            sdk(server).models.list()
        good = openai.OpenAI(base_url=server.base_url, api_key="sk-right", max_retries=0)
        assert [m.id for m in good.models.list()] == ["fake-model"]


def test_tool_call_reply_parses(model_server: FakeModelServer) -> None:
    model_server.script(Reply(tool_calls=[tool_call("classify", {"category": "spam"})]))

    choice = ask(sdk(model_server)).choices[0]

    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == ("classify", '{"category": "spam"}')


def test_delayed_reply_takes_at_least_the_delay(model_server: FakeModelServer) -> None:
    model_server.script(Reply(content="late", delay=0.5))

    started = time.monotonic()
    ask(sdk(model_server))

    assert time.monotonic() - started >= 0.5


def test_hanging_reply_trips_the_client_timeout(model_server: FakeModelServer) -> None:
    model_server.script(Reply(hang=True))

    with pytest.raises(openai.APITimeoutError):
        ask(sdk(model_server, timeout=0.5))


def test_streaming_is_refused(model_server: FakeModelServer) -> None:
    with pytest.raises(openai.BadRequestError):
        sdk(model_server).chat.completions.create(
            model="gpt-test",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
        )


def test_append_and_fetch_by_uid_without_marking_read(
    dovecot: Dovecot, imap_user: ImapUser
) -> None:
    user, password = imap_user.username, imap_user.password
    uids = [dovecot.append(user, password, "INBOX", raw_mail(s)) for s in ("one", "two")]

    with dovecot.client(user, password) as imap:
        imap.select_folder("INBOX", readonly=True)
        fetched = imap.fetch(uids, ["BODY.PEEK[]", "FLAGS"])

    assert uids == [1, 2]
    assert [fetched[uid][b"BODY[]"] for uid in uids] == [raw_mail("one"), raw_mail("two")]
    assert all(b"\\Seen" not in fetched[uid][b"FLAGS"] for uid in uids)


def test_folders_can_be_created_and_deleted(dovecot: Dovecot, imap_user: ImapUser) -> None:
    user, password = imap_user.username, imap_user.password
    dovecot.create_folder(user, password, "Drafts")
    assert dovecot.append(user, password, "Drafts", raw_mail("draft"), flags=[r"\Draft"]) == 1

    dovecot.delete_folder(user, password, "Drafts")

    with dovecot.client(user, password) as imap:
        assert not imap.folder_exists("Drafts")


def test_kick_drops_the_connection(dovecot: Dovecot, imap_user: ImapUser) -> None:
    imap = dovecot.client(imap_user.username, imap_user.password)
    imap.select_folder("INBOX")

    dovecot.kick(imap_user.username)

    with pytest.raises((imap.AbortError, OSError)):
        imap.noop()
    imap.shutdown()


def test_restart_keeps_mail_and_users(dovecot: Dovecot, imap_user: ImapUser) -> None:
    user, password = imap_user.username, imap_user.password
    uid = dovecot.append(user, password, "INBOX", raw_mail("kept"))
    imap = dovecot.client(user, password)

    dovecot.stop()
    with pytest.raises((imap.AbortError, OSError)):
        imap.noop()
    dovecot.start()

    with dovecot.client(user, password) as again:
        again.select_folder("INBOX")
        assert again.search() == [uid]


def test_pg_url_points_at_a_test_database(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        name = conn.scalar(sa.text("SELECT current_database()"))
    engine.dispose()

    assert pg_url.endswith(f"/{name}") and str(name).startswith("triage_test_")


def test_created_database_is_empty_and_drop_removes_it() -> None:
    # pg_url itself is shared by the session (other fixtures migrate it), so check
    # freshness on a database of our own.
    name = f"triage_test_{secrets.token_hex(4)}"
    services.create_database(name)
    try:
        engine = sa.create_engine(services.sqlalchemy_url(name))
        with engine.connect() as conn:
            tables = conn.scalar(sa.text(PUBLIC_TABLES))
        engine.dispose()
    finally:
        services.drop_database(name)

    assert tables == 0
    with services.admin_connection() as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row is None


def test_redis_db_is_reachable(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("support-check", "1")

    assert client.get("support-check") == b"1"
    db = int(redis_url.rsplit("/", 1)[1])
    assert 1 <= db <= 15, "tests must never use the app's default database 0"
    assert client.get("triage-test:claimed-by"), "the session's claim on its database is gone"
    client.close()
