"""What the console changes: reviews, drafts, action items, retries, re-runs and settings."""


class ActionError(Exception):
    """A request the console refuses, with a message the user can act on (answered with 400)."""


class NotVisible(Exception):
    """The thing does not exist or belongs to someone else; both are answered with 404."""
