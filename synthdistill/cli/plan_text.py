"""`synthdistill plan` as text: the table per pack, the notes under it, and the one line `harvest` prints.

An unknown price is written "unknown" and a self-hosted teacher's $0 says so: a cost is never shown
as $0 where it is not known to be nothing.
"""

from __future__ import annotations

from synthdistill.plan import CostRange, Counts, PlanSummary, TokenRange
from synthdistill.pricing import SELF_HOSTED, UNKNOWN, usd

HEADERS = ("pack", "prompts", "requests", "held", "to send", "prompt tokens", "answer tokens", "cost")


def tokens(count: TokenRange) -> str:
    if count.low == count.high:
        return f"{count.value:,}"
    return f"~{count.value:,} ({count.low:,}–{count.high:,})"


def answers(counts: Counts) -> str:
    expected = f"~{counts.output_tokens_expected:,}" if counts.output_tokens_expected is not None else "?"
    return f"{expected} / ≤{counts.output_tokens_max:,}"


def cost(summary: PlanSummary, range_: CostRange | None) -> str:
    if range_ is None:
        return "unknown"
    if summary.price_source == SELF_HOSTED:
        return "$0 (self-hosted)"
    return f"{usd(range_.low)}–{usd(range_.high)}"


def paid(summary: PlanSummary, counts: Counts) -> CostRange | None:
    return counts.cost_usd_batch if summary.cost_applies == "batch" else counts.cost_usd


def size(n: int | None) -> str:
    if n is None:
        return "none"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def duration(summary: PlanSummary) -> str:
    time = summary.time
    if time.seconds is None:
        return "unknown"
    s = time.seconds
    text = (
        "under 1 s" if s < 1 else f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"
    )
    return text if time.bound == "about" else f"{time.bound} {text}"


def gate_text(summary: PlanSummary) -> str:
    gate = summary.gate
    verdict = f"{gate.outcome} (policy {gate.policy_id})" if gate.policy_id else gate.outcome
    return verdict if gate.allowed else f"{verdict}: harvest would refuse"


def one_line(summary: PlanSummary) -> str:
    """The plan in a line: what `harvest` prints before its first request."""
    total = summary.total
    return (
        f"plan{f' (shard {summary.shard})' if summary.shard else ''}: {total.to_send} requests to send ({total.held} held), prompt tokens {tokens(total.prompt_tokens)}, "
        f"answer tokens {answers(total)}, cost {cost(summary, paid(summary, total))}"
        f"{'' if summary.price_source == UNKNOWN else f' ({summary.price_source})'}, "
        f"time {duration(summary)}; gate {gate_text(summary)}"
    )


def _row(summary: PlanSummary, name: str, counts: Counts) -> list[str]:
    return [
        name,
        str(counts.prompts),
        str(counts.requests),
        str(counts.held),
        str(counts.to_send),
        tokens(counts.prompt_tokens),
        answers(counts),
        cost(summary, paid(summary, counts)),
    ]


def table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]


def _price(summary: PlanSummary) -> str:
    price = summary.price
    if price is None:
        return "unknown (add the model to pricing.yaml beside distill.yaml)"
    if summary.price_source == SELF_HOSTED:
        return "$0, self-hosted (a server on this machine, or in-process)"
    text = f"${price['input_per_million']:g} in / ${price['output_per_million']:g} out per million tokens "
    text += f"({summary.price_source})"
    discount = price.get("batch_discount")
    text += f"; Batch API {discount:.0%} off" if discount else "; no Batch API discount known"
    return text


def lines(summary: PlanSummary) -> list[str]:
    """The whole plan as text lines."""
    shard = f", shard {summary.shard} of the requests" if summary.shard else ""
    out = [f"plan for teacher {summary.teacher} ({summary.backend}{shard}); nothing was sent"]
    out.append(f"gate: {gate_text(summary)}: {summary.gate.reason}")
    out += [f"  obligation {o}" for o in summary.gate.obligations]
    rows = [list(HEADERS), *(_row(summary, p.pack, p) for p in summary.packs)]
    if len(summary.packs) > 1:
        rows.append(_row(summary, "total", summary.total))
    out += table(rows)
    out.append(f"prompt tokens: {summary.prompt_tokens_rule}")
    expected = [f"{p.pack} from {p.expected_from} earlier answers" for p in summary.packs if p.expected_from]
    out.append(
        "answer tokens: expected / at most (max_tokens)"
        + (f"; expected: {', '.join(expected)}" if expected else "; no earlier answers to expect from")
    )
    out.append(f"price: {_price(summary)}")
    total = summary.total
    if total.cost_usd is not None and summary.price_source != SELF_HOSTED:
        line = f"cost: {cost(summary, total.cost_usd)}"
        if total.cost_usd.expected is not None:
            line += f", expected {usd(total.cost_usd.expected)}"
        if total.cost_usd_batch is not None:
            line += f"; with the Batch API {cost(summary, total.cost_usd_batch)}"
        out.append(line + f" (the {summary.cost_applies} price applies to teacher.backend {summary.backend})")
    spent = "unknown" if summary.spent_usd is None else usd(summary.spent_usd)
    spent += " (self-hosted)" if summary.price_source == SELF_HOSTED else ""
    budget = "none" if summary.budget_usd is None else usd(summary.budget_usd)
    out.append(f"spent so far (the ledger's answers): {spent}; harvest.budget_usd: {budget}")
    disk = summary.disk
    out.append(
        f"disk: ledger +{size(disk.ledger_bytes)}, SFT dataset {size(disk.sft_bytes)}, KD dataset {size(disk.kd_bytes)}"
    )
    why = "; ".join(summary.time.because)
    out.append(f"time: {duration(summary)}" + (f" ({why})" if why else ""))
    out += [f"warning: {w}" for w in summary.warnings]
    return out
