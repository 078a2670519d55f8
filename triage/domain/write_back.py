"""Which write-backs an account allows: keywords, moves, drafts. All off by default."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

KEYWORD_PREFIX = "$Triage/"
DEFAULT_DRAFTS_FOLDER = "Drafts"
_NOT_IN_ATOM = re.compile(r"[^A-Za-z0-9_.+-]+")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MAX_FOLDER = 255


class WriteBackSettings(BaseModel):
    """MailAccount.write_back as stored: an empty dict means everything is off."""

    model_config = ConfigDict(extra="ignore")

    keywords: bool = False
    moves: dict[str, str] = Field(default_factory=dict)  # category -> folder
    append_drafts: bool = False

    @field_validator("moves")
    @classmethod
    def _checked_moves(cls, moves: dict[str, str]) -> dict[str, str]:
        return {check_category(name): check_folder(folder) for name, folder in moves.items()}

    @property
    def tags_or_moves(self) -> bool:
        """True when a triaged message has something to write back (drafts aside)."""
        return self.keywords or bool(self.moves)


def keyword_for(category: str) -> str:
    """`$Triage/<category>` as an IMAP atom: anything outside a safe set becomes `-`."""
    cleaned = _NOT_IN_ATOM.sub("-", category.strip()).strip("-") or "unknown"
    return KEYWORD_PREFIX + cleaned[:64]


def check_category(name: str) -> str:
    cleaned = name.strip().lower()
    if not _CATEGORY.match(cleaned):
        raise ValueError(f"not a category name: {name!r} (letters, digits, _ and -)")
    return cleaned


def check_folder(name: str) -> str:
    """A folder name the IMAP library can quote: no control characters, not empty, not huge."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > _MAX_FOLDER or any(ord(ch) < 32 for ch in cleaned):
        raise ValueError(f"not a usable folder name: {name!r}")
    return cleaned


def parse_move(text: str) -> tuple[str, str]:
    """`CATEGORY=FOLDER` from the command line."""
    category, sep, folder = text.partition("=")
    if not sep:
        raise ValueError(f"--move wants CATEGORY=FOLDER, got {text!r}")
    return check_category(category), check_folder(folder)
