"""Seeded console data: an admin and two users, each with mail, results, drafts and settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from triage.adapters.db.session import transaction
from triage.adapters.db.tables import (
    ActionItem,
    Attachment,
    Draft,
    MailAccount,
    Message,
    ProviderSetting,
    TriageResult,
    User,
)
from triage.adapters.passwords import hash_password
from triage.runtime import Runtime

PASSWORDS = {
    "admin@example.test": "admin-pass-1",
    "alice@example.test": "alice-pass-1",
    "bob@example.test": "bob-pass-1",
}
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f80f0000010100005018d84d0000000049454e44ae426082"
)


@dataclass
class Person:
    id: int
    email: str
    account_id: int = 0
    setting_id: int = 0
    second_setting_id: int = 0
    message_ids: list[int] = field(default_factory=list)
    result_ids: list[int] = field(default_factory=list)
    item_ids: list[int] = field(default_factory=list)
    failed_id: int = 0
    image_id: int = 0

    @property
    def password(self) -> str:
        return PASSWORDS[self.email]


@dataclass
class World:
    admin: Person
    alice: Person
    bob: Person


def seed_world(rt: Runtime, *, base_url: str = "http://127.0.0.1:9/v1") -> World:
    """Alice and Bob own two triaged messages each (one doubtful), a draft, items, a failure."""
    with transaction(rt.db) as session:
        people = {}
        for email in PASSWORDS:
            user = User(
                email=email,
                password_hash=hash_password(PASSWORDS[email]),
                is_admin=email.startswith("admin"),
            )
            session.add(user)
            session.flush()
            people[email] = Person(id=user.id, email=email)
    world = World(*people.values())
    for person in (world.alice, world.bob):
        _seed_person(rt, person, base_url=base_url)
    return world


def _seed_person(rt: Runtime, person: Person, *, base_url: str) -> None:
    name = person.email.split("@")[0]
    with transaction(rt.db) as session:
        account = MailAccount(
            user_id=person.id,
            host="imap.example.test",
            port=993,
            security="ssl",
            username=name,
            folders=["INBOX"],
            status="ok",
        )
        session.add(account)
        session.flush()
        person.account_id = account.id
        for position, model in enumerate(("fake-model", "fake-model-b")):
            setting = ProviderSetting(
                user_id=person.id,
                task="classify",
                position=position,
                provider="openai",
                base_url=base_url,
                model=model,
                capabilities={"structured": "json_schema"},
            )
            session.add(setting)
            session.flush()
            key = f"sk-{name}-{model}-secret-9876"
            setting.api_key_enc = rt.secrets.encrypt(key, owner=f"provider_settings:{setting.id}")
            setting.key_last4 = key[-4:]
            if position == 0:
                person.setting_id = setting.id
            else:
                person.second_setting_id = setting.id
        for uid, (subject, category, confidence) in enumerate(
            [(f"{name} invoice", "receipt", 0.95), (f"{name} meeting?", "fyi", 0.35)], start=1
        ):
            message = _message(account.id, uid, subject)
            session.add(message)
            session.flush()
            result = TriageResult(
                message_id=message.id,
                prompt_version="triage-test",
                category=category,
                priority="normal",
                confidence=confidence,
                summary=f"about {subject}",
                needs_reply=True,
                provider="openai",
                model="fake-model",
                input_tokens=100,
                output_tokens=20,
                latency_ms=300 + uid,
            )
            session.add(result)
            session.flush()
            item = ActionItem(
                result_id=result.id,
                message_id=message.id,
                text=f"reply to {subject}",
                owner="me",
                due_date=date(2030, 1, 2),
                quote=subject,
            )
            session.add(item)
            session.add(
                Draft(
                    message_id=message.id,
                    body=f"Thanks for {subject}.",
                    provider="openai",
                    model="fake-model",
                    prompt_version="draft-test",
                )
            )
            session.flush()
            person.message_ids.append(message.id)
            person.result_ids.append(result.id)
            person.item_ids.append(item.id)
        image = Attachment(
            message_id=person.message_ids[0],
            filename="scan.png",
            declared_type="image/png",
            sniffed_type="image/png",
            size=len(TINY_PNG),
            sha256="0" * 64,
            for_model=True,
            normalized=TINY_PNG,
            normalized_type="image/png",
            width=1,
            height=1,
        )
        session.add(image)
        failed = _message(account.id, 3, f"{name} broken")
        failed.status, failed.error = "failed", "the model answered garbage twice"
        session.add(failed)
        session.flush()
        person.image_id, person.failed_id = image.id, failed.id
        person.message_ids.append(failed.id)


def _message(account_id: int, uid: int, subject: str) -> Message:
    return Message(
        account_id=account_id,
        folder="INBOX",
        uidvalidity=1,
        uid=uid,
        subject=subject,
        from_addr="Sender <sender@example.test>",
        to_addrs=["owner@example.test"],
        text_body=f"Body of {subject}.",
        html_body=f"<p>Body of <b>{subject}</b>.</p>",
        sent_at=datetime(2026, 1, 10, tzinfo=UTC) + timedelta(hours=uid),
        status="triaged",
        raw=b"Subject: x\r\n\r\nbody",
    )
