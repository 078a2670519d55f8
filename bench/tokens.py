"""Tokens and cost over the shared corpus: calls per message, our prompt overhead, image tokens,
and the price of 1,000 messages at gpt-4o-mini and deepseek-chat. Run: python -m bench.tokens
"""

from __future__ import annotations

import io
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from PIL import Image

from bench.tokens_pipeline import PipelineRun, run_pipeline
from triage.adapters.models.presets import Capabilities, StructuredMode, preset_for
from triage.adapters.models.prices import call_cost
from triage.adapters.models.shaping import build_request
from triage.config import Settings
from triage.domain.email import ParsedEmail, parse_email
from triage.domain.images import ImageCandidate, estimate_image_tokens, select_images
from triage.domain.prompts import (
    EarlierMessage,
    PromptEmail,
    PromptImage,
    draft_messages,
    new_boundary,
    triage_messages,
)
from triage.domain.schemas import DEFAULT_CATEGORIES, TriageAnswer, strict_json_schema
from triage.domain.screening import action_for, screen

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
OVERHEAD_GOAL = 600
LOW_DETAIL_IMAGE = 85  # what an image at detail=low costs on OpenAI tile models
# Real answers are longer than the scripted responder's; priced with these (stated) sizes.
CLASSIFY_OUTPUT = 120
DRAFT_OUTPUT = 200
PROVIDERS: dict[StructuredMode, str] = {"json_schema": "openai", "json_object": "deepseek"}
MODES: dict[StructuredMode, str] = {
    "json_schema": "gpt-4o-mini (strict schema, images)",
    "json_object": "deepseek-chat",
}


@dataclass
class Figures:
    messages: int = 0
    screened: dict[str, int] = field(default_factory=dict)
    overhead: dict[StructuredMode, list[int]] = field(
        default_factory=lambda: {m: [] for m in MODES}
    )
    prompt: dict[StructuredMode, list[int]] = field(default_factory=lambda: {m: [] for m in MODES})
    draft_prompt: list[int] = field(default_factory=list)
    images_original: list[int] = field(default_factory=list)
    images_high: list[int] = field(default_factory=list)
    images_low: list[int] = field(default_factory=list)


def tokenizer() -> tuple[Callable[[str], int], str]:
    """o200k_base (GPT-4o's) from a package that ships its data; chars/4 if it is missing."""
    try:
        import bpe_openai  # type: ignore[import-untyped]

        encoding = bpe_openai.get_encoding("o200k_base")
        return (lambda text: len(encoding.encode(text))), "o200k_base (bpe-openai)"
    except ImportError:
        return (lambda text: (len(text) + 3) // 4), "ESTIMATE: characters / 4"


def corpus() -> list[tuple[str, bytes, ParsedEmail]]:
    files = sorted(CORPUS.glob("*.eml"))
    if not files:
        sys.exit(f"no corpus at {CORPUS}")
    return [(path.name, raw := path.read_bytes(), parse_email(raw)) for path in files]


def _images(parsed: ParsedEmail, settings: Settings) -> tuple[list[int], list[PromptImage]]:
    """High-detail tokens of every original image, and the normalized images we would send."""
    originals, candidates = [], []
    for part in parsed.attachments:
        if not (part.sniffed_type or "").startswith("image/"):
            continue
        try:
            with Image.open(io.BytesIO(part.data)) as image:
                originals.append(estimate_image_tokens(*image.size))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        candidates.append(
            ImageCandidate(part.data, part.sha256, part.declared_type, part.content_id,
                           part.inline, part.filename)
        )  # fmt: skip
    kept, _ = select_images(
        candidates,
        max_side=settings.image_max_side,
        min_side=settings.image_min_side,
        cap=settings.images_per_message,
    )
    sent = [PromptImage(media_type=i.media_type, data=i.data) for i in kept]
    high = [estimate_image_tokens(i.width, i.height) for i in kept]
    return [sum(originals), sum(high)], sent


def _texts(request: dict[str, Any]) -> str:
    parts = []
    for message in request["messages"]:
        content = message["content"]
        if isinstance(content, str):
            parts.append(content)
        else:
            parts += [p["text"] for p in content if p.get("type") == "text"]
    return "\n".join(parts)


def _data(text: str, boundary: str) -> str:
    """The mail's own text: every line between a pair of boundary lines."""
    inside, keep = [], False
    for line in text.split("\n"):
        if line == boundary:
            keep = not keep
        elif keep:
            inside.append(line)
    return "\n".join(inside)


def _prompt_tokens(
    request: dict[str, Any], count: Callable[[str], int], mode: StructuredMode
) -> int:
    text = _texts(request)
    if mode == "json_schema":  # sent as response_format; the provider counts it as input
        text += json.dumps(
            request["response_format"]["json_schema"]["schema"], separators=(",", ":")
        )
    return count(text) + 3 * len(request["messages"]) + 3  # per-message chat framing


def measure(count: Callable[[str], int], settings: Settings, run: PipelineRun) -> Figures:
    figures = Figures()
    threads: dict[str, list[EarlierMessage]] = {}
    schema = strict_json_schema(TriageAnswer, DEFAULT_CATEGORIES)
    for name, _raw, parsed in corpus():
        figures.messages += 1
        earlier = tuple(reversed(threads.setdefault(parsed.thread_key, [])))[:5]
        threads[parsed.thread_key].append(
            EarlierMessage(parsed.from_addr, parsed.date, parsed.text)
        )
        found = screen(parsed)
        if found and action_for(found.rule, None) == "skip":
            figures.screened[found.rule] = figures.screened.get(found.rule, 0) + 1
            continue
        (original, high), sent = _images(parsed, settings)
        figures.images_original.append(original)
        figures.images_high.append(high)
        figures.images_low.append(LOW_DETAIL_IMAGE * len(sent))
        email = PromptEmail(
            parsed.subject, parsed.from_addr, parsed.to_addrs, parsed.date, parsed.text,
            tuple(a.filename for a in parsed.attachments if a.filename)[:20], tuple(sent), earlier,
        )  # fmt: skip
        boundary = new_boundary()
        messages = triage_messages(
            email, categories=DEFAULT_CATEGORIES, max_chars=settings.prompt_max_chars,
            boundary=boundary,
        )  # fmt: skip
        for mode in MODES:
            request = build_request(
                model="m", messages=messages, schema_name="triage", json_schema=schema,
                capabilities=Capabilities(structured=mode), preset=preset_for(PROVIDERS[mode]),
            )  # fmt: skip
            total = _prompt_tokens(request, count, mode)
            figures.prompt[mode].append(total)
            figures.overhead[mode].append(total - count(_data(_texts(request), boundary)))
        if name in run.needs_reply:
            drafted = draft_messages(
                email, style_note=None, style_profile="Short, friendly; signs 'Cheers, Bob'.",
                language="English", max_chars=settings.prompt_max_chars, boundary=new_boundary(),
            )  # fmt: skip
            figures.draft_prompt.append(count(_texts({"messages": drafted})) + 9)
    return figures


def _cost(provider: str, model: str, tokens_in: int, tokens_out: int) -> Decimal:
    price = call_cost(
        provider=provider, model=model, input_tokens=tokens_in, output_tokens=tokens_out
    )
    return price if price is not None else Decimal("NaN")


def per_thousand(figures: Figures, run: PipelineRun) -> dict[str, Decimal]:
    """USD per 1,000 corpus messages: classification for all but skipped mail, drafts if needed."""
    scale = Decimal(1000) / figures.messages
    drafts_in, drafts = sum(figures.draft_prompt), len(figures.draft_prompt)
    mini_in = sum(figures.prompt["json_schema"]) + sum(figures.images_low) + drafts_in
    deep_in = sum(figures.prompt["json_object"]) + drafts_in
    out = CLASSIFY_OUTPUT * len(figures.prompt["json_schema"]) + DRAFT_OUTPUT * drafts
    return {
        "gpt-4o-mini": _cost("openai", "gpt-4o-mini", mini_in, out) * scale,
        "deepseek-chat": _cost("deepseek", "deepseek-chat", deep_in, out) * scale,
    }


def _stats(values: list[int]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"mean {statistics.fmean(values):7.1f}  median {statistics.median(values):6.0f}  "
        f"p95 {p95:6d}  max {max(values):6d}"
    )


def report(figures: Figures, run: PipelineRun, counted_with: str) -> str:
    n, classified = figures.messages, len(figures.prompt["json_schema"])
    with_images = [i for i, low in enumerate(figures.images_low) if low]
    rows = [
        f"bench/tokens over {n} corpus messages; tokens counted with {counted_with}",
        "",
        "model calls (the real pipeline in-process, loopback model server, scripted answers)",
        f"  per message, all calls        {run.calls / n:.3f}   ({run.calls} calls)",
        f"  classification per triaged    {run.classify_calls / max(1, run.triaged):.3f}"
        f"   ({run.triaged} triaged, {run.skipped} screened out with no call)",
        f"  drafts                        {run.draft_calls}   (= messages needing a reply:"
        f" {len(run.needs_reply)})",
        "",
        f"prompt tokens we add beyond the message's own text (goal < {OVERHEAD_GOAL})",
    ]
    for mode, label in MODES.items():
        worst = max(figures.overhead[mode])
        verdict = "meets the goal" if worst < OVERHEAD_GOAL else "OVER the goal"
        rows.append(f"  {label:38} {_stats(figures.overhead[mode])}  {verdict}")
    rows += [
        "",
        f"image tokens per message with images ({len(with_images)} of {classified})",
        "  originals as sent, detail=high   "
        + _stats([figures.images_original[i] for i in with_images]),
        "  normalized, detail=high          "
        + _stats([figures.images_high[i] for i in with_images]),
        "  normalized, detail=low (sent)    "
        + _stats([figures.images_low[i] for i in with_images]),
        "",
        f"cost per 1,000 messages (genai-prices; outputs priced at {CLASSIFY_OUTPUT} tokens per"
        f" classification, {DRAFT_OUTPUT} per draft)",
    ]
    for model, usd in per_thousand(figures, run).items():
        rows.append(f"  {model:16} ${usd:.4f}")
    rows.append(f"screened out before the model: {dict(sorted(figures.screened.items()))}")
    return "\n".join(rows)


def main() -> int:
    count, counted_with = tokenizer()
    settings = Settings()
    run = run_pipeline(corpus())
    print(report(measure(count, settings, run), run, counted_with))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
