"""A login refused for now (server busy, too many connections) is a transient error, not bad
credentials: the account is not marked as needing new ones and an OAuth2 token is kept.

Dovecot cannot be made to answer these, so a scripted server on the loopback interface speaks
just enough IMAP: the greeting, CAPABILITY, and the refusal under test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from triage.adapters.imap import ImapAuthError, ImapError, ImapLogin, ImapMailbox


@pytest.fixture
def refusing_server() -> Iterator[tuple[int, list[str]]]:
    """Answers every LOGIN with the refusal put in the list (one connection at a time)."""
    refusal: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            with conn, conn.makefile("rwb") as stream:
                stream.write(b"* OK scripted IMAP ready\r\n")
                stream.flush()
                for line in stream:
                    tag, _, rest = line.decode().partition(" ")
                    command = rest.split(" ", 1)[0].strip().upper()
                    if command == "CAPABILITY":
                        stream.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
                        stream.write(f"{tag} OK done\r\n".encode())
                    elif command == "LOGIN":
                        stream.write(f"{tag} NO {refusal[0]}\r\n".encode())
                    else:
                        stream.write(f"{tag} OK bye\r\n".encode())
                        stream.flush()
                        break
                    stream.flush()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], refusal
    stop.set()
    thread.join(timeout=5)
    listener.close()


def _login(port: int) -> None:
    login = ImapLogin(host="127.0.0.1", port=port, security="plain", username="ana", password="pw")
    with ImapMailbox(login):
        pass


@pytest.mark.parametrize(
    "refusal",
    [
        "[UNAVAILABLE] Temporary authentication failure",
        "[LIMIT] Too many connections from this user",
        "[INUSE] Mailbox is being moved",
        "[ALERT] Too many simultaneous connections. (Failure)",  # Gmail's words
    ],
)
def test_a_refusal_for_now_is_a_transient_error(
    refusing_server: tuple[int, list[str]], refusal: str
) -> None:
    port, script = refusing_server
    script.append(refusal)
    with pytest.raises(ImapError) as raised:
        _login(port)
    assert not isinstance(raised.value, ImapAuthError)
    assert "away for now" in str(raised.value) and refusal[:20] in str(raised.value)


@pytest.mark.parametrize(
    "refusal",
    ["[AUTHENTICATIONFAILED] Authentication failed.", "Invalid credentials", "[EXPIRED] Old"],
)
def test_a_refusal_of_the_credentials_is_an_auth_error(
    refusing_server: tuple[int, list[str]], refusal: str
) -> None:
    port, script = refusing_server
    script.append(refusal)
    with pytest.raises(ImapAuthError, match="refused the login of ana"):
        _login(port)
