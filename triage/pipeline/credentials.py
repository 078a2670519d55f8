"""The IMAP login of an account, with its secret decrypted just before use."""

from __future__ import annotations

from triage.adapters.db.tables import MailAccount
from triage.adapters.imap import ImapLogin
from triage.adapters.secrets import SecretBox


def imap_login(account: MailAccount, secrets: SecretBox) -> ImapLogin:
    password = ""
    if account.password_enc:
        password = secrets.decrypt(account.password_enc, owner=f"mail_accounts:{account.id}")
    return ImapLogin(
        host=account.host,
        port=account.port,
        security=account.security,
        username=account.username,
        password=password,
    )
