"""Probe a saved provider setting and keep what the probe found: capabilities, report, time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Protocol

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import ProviderSetting
from triage.adapters.models.probe import ProbeReport
from triage.adapters.secrets import SecretBox
from triage.pipeline.model_calls import usable_config
from triage.pipeline.ports import ProviderConfig

log = logging.getLogger(__name__)


class Prober(Protocol):
    def probe(self, config: ProviderConfig) -> ProbeReport: ...


def probe_setting(
    *, setting_id: int, db: SessionFactory, secrets: SecretBox, prober: Prober
) -> ProbeReport:
    """Probe one setting (valid or not) and store the outcome on it.

    A rejected key disables the setting, a passing probe enables it again; a provider that is
    down or busy changes nothing but the report, so the setting stays "not probed".
    """
    with db() as session:
        config = usable_config(session.get_one(ProviderSetting, setting_id), secrets)
    if config is None:
        report = ProbeReport(
            status="key_unreadable",
            detail="the stored key does not decrypt with TRIAGE_SECRET_KEYS; set it again",
        )
    else:
        report = prober.probe(config)
    with transaction(db) as session:
        row = session.get_one(ProviderSetting, setting_id)
        row.probe_report = report.to_json()
        if report.reached:
            row.probed_at = datetime.now(UTC)
        if report.capabilities is not None:
            row.capabilities = dict(report.capabilities)
        if report.status == "key_rejected":
            row.valid, row.invalid_reason = False, report.detail
        elif report.status == "ok":
            row.valid, row.invalid_reason = True, None
    log.info("provider setting %s probed: %s %s", setting_id, report.status, report.detail)
    return report
