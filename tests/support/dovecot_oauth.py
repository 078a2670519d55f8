"""A private Dovecot that also takes XOAUTH2 logins, checking each bearer token with a token server.

It is the tests' Dovecot (tests/support/dovecot.py) plus Dovecot's own oauth2 passdb: on every
XOAUTH2/OAUTHBEARER login, Dovecot POSTs the token to the endpoint's RFC 7662 introspection URL
and lets the user in only when the answer is `"active": true` for that username.
"""

from __future__ import annotations

from tests.support.dovecot import Dovecot, DovecotError

MECHANISMS = "auth_mechanisms = plain login"
# Dovecot 2.3's passdb oauth2 settings (doc/wiki/PasswordDatabase.oauth2.txt).
OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}
"""
OAUTH2_SETTINGS = """\
introspection_url = {introspection_url}
introspection_mode = post
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


class OAuthDovecot(Dovecot):
    """A Dovecot whose XOAUTH2 logins are validated against `introspection_url`."""

    def __init__(self, *, introspection_url: str, port: int | None = None) -> None:
        self.introspection_url = introspection_url
        super().__init__(port=port)

    def _write_files(self) -> None:
        super()._write_files()
        config = self.config_path.read_text()
        if MECHANISMS not in config or "passdb {" not in config:
            raise DovecotError("the base Dovecot configuration changed shape; update dovecot_oauth")
        config = config.replace(MECHANISMS, MECHANISMS + " xoauth2 oauthbearer", 1)
        # Password users keep their passwd-file; XOAUTH2 logins go to the oauth2 passdb.
        oauth_first = OAUTH2_PASSDB.format(root=self.root) + "passdb {\n  mechanisms = plain login"
        config = config.replace("passdb {", oauth_first, 1)
        self.config_path.write_text(config)
        (self.root / "dovecot-oauth2.conf.ext").write_text(
            OAUTH2_SETTINGS.format(introspection_url=self.introspection_url)
        )
