"""Cost of a call: the maintained `genai-prices` table, with per-model overrides."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price
from genai_prices.data_snapshot import get_snapshot

from triage.adapters.models.presets import PRESETS

PER_MILLION = Decimal(1_000_000)


def call_cost(
    *,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    override: tuple[Decimal, Decimal] | None = None,
) -> Decimal | None:
    """USD for one call; None when no price is known (self-hosted models cost nothing billed)."""
    if override is not None:
        input_price, output_price = override
        return (input_price * input_tokens + output_price * output_tokens) / PER_MILLION
    preset = PRESETS.get(provider)
    if preset is not None and preset.price_provider is None:
        return Decimal(0)
    price_provider = preset.price_provider if preset else None
    if not _listed(model, price_provider):
        return None
    try:
        price = calc_price(
            PriceUsage(input_tokens=input_tokens, output_tokens=output_tokens),
            model_ref=model,
            provider_id=price_provider,
        )
    except LookupError:
        return None
    return Decimal(price.total_price)


@lru_cache(maxsize=1024)
def _listed(model: str, provider_id: str | None) -> bool:
    """Whether the price table knows the model; its own cache keeps hits only, so a model it
    lacks (self-hosted, renamed) was searched for across every entry on every call."""
    try:
        get_snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        return False
    return True


def parse_override(value: str | None) -> tuple[Decimal, Decimal] | None:
    """'0.15/0.60' (USD per million input/output tokens) to a pair."""
    if not value:
        return None
    input_price, _, output_price = value.partition("/")
    return Decimal(input_price.strip()), Decimal(output_price.strip() or "0")
