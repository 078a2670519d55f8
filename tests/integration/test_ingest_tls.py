"""TLS with a private CA: verified by default, a CA file setting to trust it, never a downgrade."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.conftest import ImapUser
from tests.integration.conftest import Cli
from tests.integration.ingest_support import (
    account,
    mail,
    runtime_from,
    seed_account,
    subjects,
    sync_once,
)
from tests.support.dovecot import Dovecot, DovecotError
from tests.support.services import ServiceUnavailable

USER, PASSWORD = "tls-user", "tls-secret-pw"


@pytest.fixture(scope="module")
def tls_dovecot() -> Iterator[Dovecot]:
    """A Dovecot with ssl = yes: STARTTLS on `port`, implicit TLS on `tls_port`."""
    try:
        server = Dovecot(tls=True).start()
    except (ServiceUnavailable, DovecotError) as exc:
        pytest.fail(str(exc), pytrace=False)
    server.add_user(USER, PASSWORD)
    server.append(USER, PASSWORD, "INBOX", mail("over TLS"))
    yield server
    server.close()


def port_for(server: Dovecot, security: str) -> int:
    return server.tls_port if security == "ssl" else server.port


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_an_untrusted_certificate_is_a_clear_account_error_and_a_ca_file_fixes_it(
    tls_dovecot: Dovecot, service_env: dict[str, str], pg_engine: Engine, security: str
) -> None:
    imap = ImapUser(tls_dovecot.host, port_for(tls_dovecot, security), USER, PASSWORD)
    account_id = seed_account(service_env, imap, security=security)
    rt = runtime_from(service_env)

    refused = sync_once(rt, account_id)

    assert refused.error is not None and "is not trusted" in refused.error
    assert "TRIAGE_IMAP_CA_FILE" in refused.error
    state = account(pg_engine)
    assert state.status == "error" and "not trusted" in (state.last_error or "")
    assert subjects(pg_engine) == []
    rt.engine.dispose()

    service_env["TRIAGE_IMAP_CA_FILE"] = str(tls_dovecot.ca_path)
    trusting = runtime_from(service_env)
    accepted = sync_once(trusting, account_id)

    assert accepted.error is None and accepted.stored == 1
    assert subjects(pg_engine) == ["over TLS"]
    assert account(pg_engine).status == "ok"
    log = tls_dovecot.log_tail(200)
    assert f"Login: user=<{USER}>, method=PLAIN" in log and "TLS" in log
    trusting.engine.dispose()


def test_the_cli_says_what_is_wrong_with_the_certificate(
    tls_dovecot: Dovecot, cli: Cli, pg_engine: Engine
) -> None:
    imap = ImapUser(tls_dovecot.host, tls_dovecot.tls_port, USER, PASSWORD)
    seed_account(cli.env, imap, security="ssl")

    result = cli("sync", "--once", check=False)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"the TLS certificate of {imap.host}:{imap.port} is not trusted" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_tls_is_never_silently_dropped(
    dovecot: Dovecot, imap_user: ImapUser, service_env: dict[str, str], pg_engine: Engine
) -> None:
    # The session's Dovecot speaks plaintext only (ssl = no): no STARTTLS, no TLS handshake.
    rt = runtime_from(service_env)
    starttls = seed_account(service_env, imap_user, security="starttls")
    implicit = seed_account(service_env, imap_user, security="ssl")

    no_starttls = sync_once(rt, starttls)
    no_handshake = sync_once(rt, implicit)

    assert no_starttls.error and "STARTTLS" in no_starttls.error
    assert no_handshake.error and "TLS with" in no_handshake.error
    assert f"Login: user=<{imap_user.username}>" not in dovecot.log_tail(500), (
        "the password went over plaintext although TLS was asked for"
    )
    plain = seed_account(service_env, imap_user, security="plain")  # only when asked
    assert sync_once(rt, plain).error is None
    rt.engine.dispose()
