"""A checked model answer as rows: the triage result and its action items, one row each."""

from __future__ import annotations

from decimal import Decimal

from triage.adapters.db.tables import ActionItem, TriageResult
from triage.domain.policy import Checked
from triage.domain.schemas import TriageAnswer
from triage.pipeline.ports import ModelReply, ProviderConfig


def triage_result(
    *,
    message_id: int,
    prompt_version: str,
    config: ProviderConfig,
    reply: ModelReply[TriageAnswer],
    checked: Checked,
    images_sent: int,
    cost_usd: Decimal | None,
    screening_rule: str | None = None,
) -> TriageResult:
    """Shared by the triage stage and console re-runs; the model's answer is stored as given,
    with what the checks after it found (flags, a suspected injection, cleaned action items)."""
    answer, usage = reply.answer, reply.usage
    result = TriageResult(
        message_id=message_id,
        prompt_version=prompt_version,
        category=answer.category,
        priority=answer.priority.value,
        confidence=answer.confidence,
        summary=answer.summary,
        needs_reply=answer.needs_reply,
        injection_suspected=checked.injection_suspected,
        flags=list(checked.flags),
        screening_rule=screening_rule,
        images_sent=images_sent,
        provider=config.provider,
        model=config.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=cost_usd,
        latency_ms=usage.latency_ms,
        model_calls=usage.calls,
    )
    result.action_items = [
        ActionItem(
            message_id=message_id,
            text=item.text,
            owner=item.owner,
            due_date=item.due_date,
            quote=item.quote,
        )
        for item in checked.items
    ]
    return result
