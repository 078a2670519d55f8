"""The only code that talks to the outside world: IMAP, models, the database, secrets."""
