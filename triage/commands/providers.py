"""`triage providers set|test|list|remove`: a user's own model settings, probed when saved."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.session import transaction
from triage.adapters.db.tables import ProviderSetting
from triage.adapters.models.presets import Preset, default_capabilities, preset_for
from triage.adapters.models.probe import ModelProber, ProbeReport
from triage.adapters.secrets import last4
from triage.commands.setup import CommandError, find_user, price_override, secret_from_env
from triage.pipeline.probe import probe_setting
from triage.runtime import Runtime

# Probe findings that mean the saved setting cannot work as typed.
WRONG_AS_TYPED = frozenset({"key_rejected", "model_not_found", "key_unreadable"})


def providers_set(rt: Runtime, args: argparse.Namespace) -> int:
    preset = _preset(args.provider)
    base_url = args.base_url or preset.base_url
    if not base_url:
        raise CommandError(f"provider {args.provider} needs --base-url")
    api_key = secret_from_env(args.api_key_env) if args.api_key_env else ""
    if preset.needs_key and not api_key:
        raise CommandError(f"provider {args.provider} needs --api-key-env")
    price = price_override(args.price)
    with transaction(rt.db) as session:
        user = find_user(session, args.user)
        position = _position(session, user.id, args, preset)
        setting = _replace_setting(session, user.id, args.task, position)
        setting.provider, setting.base_url, setting.model = preset.name, base_url, args.model
        setting.capabilities = default_capabilities(preset.name)
        setting.probe_report, setting.probed_at = {}, None
        setting.valid, setting.invalid_reason = True, None
        setting.requests_per_minute, setting.price_override = args.rpm, price
        session.flush()  # the ID is part of what the key is bound to
        setting.api_key_enc = rt.secrets.encrypt(api_key, owner=f"provider_settings:{setting.id}")
        setting.key_last4 = last4(api_key)
        setting_id, role = setting.id, _role(position)
    print(f"saved: {args.task} ({role}) {preset.name} {args.model}, key {_masked(last4(api_key))}")
    if args.no_probe:
        print("not probed (--no-probe): requests use the preset's defaults")
        return 0
    report = probe_setting(
        setting_id=setting_id, db=rt.db, secrets=rt.secrets, prober=ModelProber(rt.model)
    )
    print(_summary(report, args.user))
    return 1 if report.status in WRONG_AS_TYPED else 0


def providers_test(rt: Runtime, args: argparse.Namespace) -> int:
    """Probe every setting of the user; non-zero exit when any of them is unusable."""
    rows = _settings(rt, args.user, args.task)
    prober = ModelProber(rt.model)
    for row in rows:
        probe_setting(setting_id=row.id, db=rt.db, secrets=rt.secrets, prober=prober)
    rows = _settings(rt, args.user, args.task)
    _print_table(rows, details=True)
    unusable = [row for row in rows if not row.valid or _status(row) != "ok"]
    if unusable:
        print(f"{len(unusable)} of {len(rows)} settings unusable")
    return 1 if unusable else 0


def providers_list(rt: Runtime, args: argparse.Namespace) -> int:
    _print_table(_settings(rt, args.user, None), details=False)
    return 0


def providers_remove(rt: Runtime, args: argparse.Namespace) -> str:
    with transaction(rt.db) as session:
        user = find_user(session, args.user)
        setting = _at(session, user.id, args.task, args.position)
        if setting is None:
            raise CommandError(f"{args.user} has no {args.task} setting at {args.position}")
        session.delete(setting)
    return f"removed {args.task} ({_role(args.position)}) {setting.provider} {setting.model}"


def _preset(name: str) -> Preset:
    try:
        return preset_for(name)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _position(session: Session, user_id: int, args: argparse.Namespace, preset: Preset) -> int:
    """0 for the primary; a fallback replaces one of the same provider and model, else goes last."""
    if not args.fallback_of:
        return 0
    rows = session.scalars(
        select(ProviderSetting).where(
            ProviderSetting.user_id == user_id, ProviderSetting.task == args.task
        )
    ).all()
    if not any(row.provider == args.fallback_of for row in rows):
        raise CommandError(f"no {args.task} provider {args.fallback_of} to fall back from")
    for row in rows:
        if row.position > 0 and (row.provider, row.model) == (preset.name, args.model):
            return row.position
    return max(row.position for row in rows) + 1


def _at(session: Session, user_id: int, task: str, position: int) -> ProviderSetting | None:
    return session.scalars(
        select(ProviderSetting).where(
            ProviderSetting.user_id == user_id,
            ProviderSetting.task == task,
            ProviderSetting.position == position,
        )
    ).first()


def _replace_setting(session: Session, user_id: int, task: str, position: int) -> ProviderSetting:
    setting = _at(session, user_id, task, position)
    if setting is None:
        setting = ProviderSetting(user_id=user_id, task=task, position=position)
        session.add(setting)
    return setting


def _settings(rt: Runtime, email: str, task: str | None) -> list[ProviderSetting]:
    with rt.db() as session:
        user = find_user(session, email)
        query = select(ProviderSetting).where(ProviderSetting.user_id == user.id)
        if task:
            query = query.where(ProviderSetting.task == task)
        rows = session.scalars(query.order_by(ProviderSetting.task, ProviderSetting.position))
        found = list(rows)
        session.expunge_all()
    if not found:
        raise CommandError(f"{email} has no model settings; add one with `triage providers set`")
    return found


def _role(position: int) -> str:
    return "primary" if position == 0 else f"fallback {position}"


def _masked(tail: str | None) -> str:
    return f"...{tail}" if tail else "(none)"


def _status(row: ProviderSetting) -> str:
    return str((row.probe_report or {}).get("status") or "not probed")


def _summary(report: ProbeReport, email: str) -> str:
    if report.status == "ok" and report.capabilities:
        caps = report.capabilities
        shape = next(s["shape"] for s in report.shapes if s["result"].startswith("ok"))
        return f"probe: ok; structured output: {shape}; images: {report.images}" + (
            "" if caps.get("images") else " (images are left out of requests)"
        )
    if not report.reached:
        return (
            f"probe: not probed ({report.status}: {report.detail}); saved anyway, run "
            f"`triage providers test --user {email}` when it is reachable"
        )
    verdict = "setting disabled" if report.status == "key_rejected" else "setting unusable"
    return f"probe: {report.status}: {report.detail} ({verdict})"


@dataclass(frozen=True)
class _Row:
    task: str
    role: str
    provider: str
    model: str
    key: str
    state: str
    structured: str
    images: str
    probed: str

    @classmethod
    def of(cls, row: ProviderSetting) -> _Row:
        caps = row.capabilities or {}
        structured = str(caps.get("structured", "?"))
        if structured == "json_schema" and caps.get("strict", True):
            structured += " strict"
        return cls(
            task=row.task,
            role=_role(row.position),
            provider=row.provider,
            model=row.model,
            key=_masked(row.key_last4),
            state=_status(row) if row.valid else "disabled",
            structured=structured,
            images="yes" if caps.get("images") else "no",
            probed=row.probed_at.strftime("%Y-%m-%d %H:%M") if row.probed_at else "never",
        )


def _print_table(rows: list[ProviderSetting], *, details: bool) -> None:
    names = ("TASK", "ROLE", "PROVIDER", "MODEL", "KEY", "STATUS", "OUTPUT", "IMAGES", "PROBED")
    header = _Row(*names)
    table = [header, *(_Row.of(row) for row in rows)]
    widths = [max(len(getattr(r, name)) for r in table) for name in _Row.__dataclass_fields__]
    for entry in table:
        cells = [getattr(entry, name) for name in _Row.__dataclass_fields__]
        print("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)))
    if not details:
        return
    for row in rows:
        report = row.probe_report or {}
        if not row.valid and row.invalid_reason:
            print(f"{row.task} {_role(row.position)}: disabled: {row.invalid_reason}")
        if report.get("status") not in (None, "ok"):
            print(f"{row.task} {_role(row.position)}: {report['status']}: {report.get('detail')}")
        for tried in report.get("shapes", []):
            print(f"  {row.task} {_role(row.position)} tried {tried['shape']}: {tried['result']}")
        if report.get("images") and report.get("images") != "not tried":
            print(f"  {row.task} {_role(row.position)} image: {report['images']}")
