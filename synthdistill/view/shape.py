"""Shape what collect.py read into what the page shows: pure functions, no I/O.

Records become compact rows for the page's script: per answer token its text, the teacher's
probability of it (the sampled token), the entropy of the teacher's top-k distribution (the
mass outside the top-k counted as one bucket, so a lower bound) and the top alternatives.
"""

from __future__ import annotations

import json
import math
from typing import Any

from synthdistill.filters import reason_category

ALTERNATIVES = 5  # top-k alternatives kept per token for the hover
DIGITS = 3


def _p(logprob: float | None) -> float | None:
    return None if logprob is None else round(math.exp(logprob), DIGITS)


def _entropy(probs: list[float]) -> float:
    tail = 1.0 - sum(probs)
    total = -sum(p * math.log(p) for p in probs if p > 0)
    return round(total - (tail * math.log(tail) if tail > 1e-12 else 0.0), DIGITS)


def token_entropy(top_logprobs: list[float]) -> float:
    """Entropy (nats) of a top-k distribution with the mass outside it as one bucket."""
    return _entropy([math.exp(lp) for lp in top_logprobs])


def token_rows(record: dict[str, Any], alternatives: int = ALTERNATIVES) -> list[list[Any]] | None:
    """[token, p, entropy, [[alternative, p], …]] per answer token; None without logprobs."""
    tokens, logprobs = record.get("tokens"), record.get("token_logprobs")
    if not tokens or logprobs is None:
        return None
    top_tokens = record.get("top_tokens") or [[] for _ in tokens]
    top_logprobs = record.get("top_logprobs") or [[] for _ in tokens]
    rows = []
    for token, logprob, alts, alt_logprobs in zip(tokens, logprobs, top_tokens, top_logprobs, strict=False):
        probs = [math.exp(lp) for lp in alt_logprobs]
        best = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)[:alternatives]
        rows.append([token, _p(logprob), _entropy(probs), [[alts[j], round(probs[j], DIGITS)] for j in best]])
    return rows


def record_item(entry: dict[str, Any]) -> dict[str, Any]:
    """One record as the page's script reads it."""
    record = entry["record"] or {}
    tokens = token_rows(record)
    reason = entry.get("reason")
    confidences = [row[1] for row in tokens or [] if row[1] is not None]
    text = record.get("text") or ""
    return {
        "id": record.get("request_key"),
        "prompt_id": record.get("prompt_id"),
        "pack": record.get("pack"),
        "status": entry["status"],
        "reason": f"{entry['filter']}: {reason_category(reason)}" if reason else None,
        "detail": reason,
        "messages": record.get("messages") or [],
        "text": text,
        "reasoning": record.get("reasoning"),  # a thinking teacher's trace (its tokens lead `tokens`)
        "length": len(tokens) if tokens is not None else len(text.split()),
        "length_unit": "tokens" if tokens is not None else "words",
        "finish": record.get("finish_reason"),
        "model": record.get("model_answered"),
        "confidence": round(sum(confidences) / len(confidences), DIGITS) if confidences else None,
        "tokens": tokens,
    }


def compact_json(value: Any) -> str:
    """JSON for a `<script type="application/json">` block: compact, `<` escaped so no tag can close it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def records_within(items: list[dict[str, Any]], budget_bytes: int) -> list[str]:
    """The items' JSON (`compact_json`), in order, while it fits the byte budget (at least one)."""
    kept, used = [], 0
    for item in items:
        text = compact_json(item)
        size = len(text.encode("utf-8")) + 1
        if kept and used + size > budget_bytes:
            break
        kept.append(text)
        used += size
    return kept


def sample_note(populations: dict[str, int], shown: dict[str, int]) -> str:
    """What the records browser holds, said plainly: all of them, or a seeded random sample of how many."""
    total, held = sum(populations.values()), sum(shown.values())
    if not total:
        return "No records yet: run `synthdistill harvest`."
    parts = ", ".join(f"{shown.get(s, 0):,} of {n:,} {s}" for s, n in populations.items())
    if held == total:
        return f"All {total:,} records ({parts}), 25 to a page."
    return (
        f"A seeded random sample of {held:,} of {total:,} records ({parts}), 25 to a page; "
        "the histograms and filters cover the sample."
    )


def pack_funnel(pack_counts: list[dict[str, Any]], tallies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pack: prompts, requests, answered, failed, kept, dropped and the drops by reason."""
    packs: dict[str, dict[str, Any]] = {}
    for row in pack_counts:
        packs[row["pack"]] = {**row, "kept": 0, "dropped": 0, "reasons": {}}
    for tally in tallies:
        name = tally.get("pack") or "?"
        if name not in packs:  # a pack the ledger does not know (no ledger at hand)
            packs[name] = {"pack": name, "prompts": None, "requests": None, "answered": None, "failed": None}
            packs[name].update(kept=0, dropped=0, reasons={})
        pack = packs[name]
        pack[tally["status"]] += 1
        if tally["status"] == "dropped":
            key = f"{tally.get('filter')}: {reason_category(tally.get('reason') or '')}"
            pack["reasons"][key] = pack["reasons"].get(key, 0) + 1
    return [packs[name] for name in sorted(packs)]


def headline_funnel(harvest: dict[str, Any] | None, filtered: dict[str, Any] | None) -> list[tuple[str, int | None]]:
    """prompts → requests → answered → kept."""
    harvest = harvest or {}
    return [
        ("prompts", harvest.get("prompts")),
        ("requests", harvest.get("requests")),
        ("answered", harvest.get("answered")),
        ("kept", (filtered or {}).get("kept")),
    ]


def training_series(train: dict[str, Any] | None) -> dict[str, list[tuple[float, float]]]:
    """{"loss": …, each part: …, "learning_rate": …} as (step, value) lists, from train.json's history."""
    series: dict[str, list[tuple[float, float]]] = {}
    for i, entry in enumerate((train or {}).get("loss_history") or []):
        step = float(entry.get("step", i + 1))
        parts = entry.get("parts")
        if parts is None:  # a train.json from before loss parts were grouped: ce and kl sat beside the loss
            parts = {name: entry[name] for name in ("ce", "kl") if name in entry}
        for name, value in {"loss": entry.get("loss"), **parts, "learning_rate": entry.get("learning_rate")}.items():
            if isinstance(value, int | float) and math.isfinite(value):
                series.setdefault(name, []).append((step, float(value)))
    return series


METRICS = (
    ("nll_per_token", "NLL per token of the teacher's answers", "lower is better"),
    ("top1_agreement", "top-1 agreement with the teacher", "higher is better"),
    ("kd_kl", "KL(teacher ‖ student) on KD positions", "lower is better"),
    ("teacher_nll_on_student_samples", "teacher's NLL of the student's own answers", "lower is better"),
)


def eval_table(evaluation: dict[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): each metric for the untrained and trained student (and the teacher when scored)."""
    if not evaluation:
        return [], []
    columns = [c for c in ("untrained", "trained", "teacher") if isinstance(evaluation.get(c), dict)]
    rows = []
    for key, label, better in METRICS:
        values = [evaluation[c].get(key) for c in columns]
        if any(v is not None for v in values):
            rows.append([label, *[_number(v) for v in values], better])
    for pack in sorted({p for c in columns for p in (evaluation[c].get("verifier_pass_rate") or {})}):
        values = [(evaluation[c].get("verifier_pass_rate") or {}).get(pack) for c in columns]
        rows.append([f"verifier pass rate: {pack}", *[_number(v) for v in values], "higher is better"])
    if evaluation.get("nll_gap_closed") is not None and "trained" in columns:
        cells = ["" if c != "trained" else _number(evaluation["nll_gap_closed"]) for c in columns]
        rows.append(["share of the NLL gap to the teacher closed", *cells, "higher is better"])
    return ["metric", *columns, ""], rows


def _number(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def dataset_rows(datasets: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Per dataset: kind, rows per split, KD coverage."""
    rows = []
    for kind, info in sorted(datasets.items()):
        splits = ", ".join(f"{split} {n:,}" for split, n in sorted(info.get("splits", {}).items()))
        coverage = (info.get("build") or {}).get("coverage")
        rows.append([kind, f"{info.get('rows', 0):,}", splits, "–" if coverage is None else f"{coverage:.1%}"])
    return rows


def alignment_rows(datasets: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The KD build's per-record alignment (exact/partial/none) when some records were aligned across tokenizers."""
    build = (datasets.get("kd") or {}).get("build") or {}
    matches = build.get("tokenizer_match") or {}
    if not any(name.startswith("aligned") for name in matches):
        return None
    return {
        "records": build.get("alignment") or {},
        "matches": matches,
        "masked": build.get("masked_positions") or {},
    }
