"""`synthdistill plan`: the gate's verdict, the size, the cost and the time of a harvest, before a single request.

    gate (decided, not raised) → prompts × samples and their request keys, one at a time
    (harvest_plan.RequestPlan, as harvest plans) → what the ledger already holds (read-only, a chunk
    at a time) → prompt tokens → output tokens → cost → disk → time

Nothing is sent and nothing is written: no teacher is built (so no model listing is probed),
the ledger is opened read-only. `harvest` computes the same plan, prints its one line and keeps
it in the run folder (`RunLayout.plan`), where the audit sets it beside what was spent.

Where each number comes from (every estimate says so in the plan itself):

- Prompt tokens are counted with the teacher's tokenizer and chat template where one is at
  hand (`tokenize.py`); otherwise estimated as UTF-8 bytes / 4 + 8 per message, within
  ESTIMATE_MARGIN (measured, see tokenize.py).
- Output tokens: at most `max_tokens` per request (a pack's sampling override applies);
  expected: the mean of the pack's earlier answers in the ledger, where there are some.
- Cost: the price table (pricing.py). low = prompt tokens (low end) and no answer tokens;
  expected = prompt tokens and the expected answer tokens (where the ledger gives them);
  high = prompt tokens (high end) and every `max_tokens`. An unknown price
  stays None ("unknown"), never 0; a teacher on this machine is $0 with `price_source: self-hosted`.
- Disk and time: see `disk_plan` and `time_plan`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from synthdistill.config import DistillConfig
from synthdistill.errors import DamagedFileError
from synthdistill.harvest import estimated_tokens
from synthdistill.harvest_plan import PlannedRequest, RequestPlan
from synthdistill.plan_size import DiskPlan, LedgerUse, TimePlan, disk_plan, time_plan
from synthdistill.policy import refusal_message
from synthdistill.policy.gate import decide_for
from synthdistill.pricing import PriceQuote, check_budget_priced, load_price_table, quote, teacher_quote
from synthdistill.prompt_tokens import PromptCounter, prompt_counter
from synthdistill.shards import Shard
from synthdistill.store import RESTART_HINT, LedgerReader, LedgerReadError, check_ledger_file


class TokenRange(BaseModel):
    """A token count: `value` exact (low = value = high) or estimated within [low, high]."""

    low: int
    value: int
    high: int


class CostRange(BaseModel):
    """USD: low (prompt tokens' low end, no answer tokens), expected, high (prompt tokens' high end, every max_tokens)."""

    low: float
    expected: float | None = Field(description="Prompt tokens as counted and the expected output; None without one")
    high: float


class Counts(BaseModel):
    prompts: int
    requests: int = Field(description="prompts × samples_per_prompt")
    held: int = Field(description="Requests the ledger already holds an answer for (never sent again)")
    to_send: int
    prompt_tokens: TokenRange = Field(description="Of the requests to send")
    output_tokens_max: int = Field(description="Of the requests to send: every max_tokens")
    output_tokens_expected: int | None = Field(description="From earlier answers of the same packs; None without")
    cost_usd: CostRange | None = Field(description="At the standard (list) price; None = price unknown")
    cost_usd_batch: CostRange | None = Field(description="Through the Batch API, where a discount is known")


class PackPlan(Counts):
    pack: str
    max_tokens: int = Field(description="Per request, the pack's sampling override applied")
    expected_from: int = Field(0, description="Earlier answers of the pack in the ledger the expectation rests on")


class GatePlan(BaseModel):
    outcome: str
    allowed: bool
    policy_id: str | None
    reason: str
    obligations: list[str] = Field(default_factory=list)
    refusal: str | None = Field(None, description="What `harvest` would print when refusing (exit 3)")


class PlanSummary(BaseModel):
    """What a harvest of this config will be; `synthdistill plan --json` prints it."""

    teacher: str
    backend: str
    gate: GatePlan
    packs: list[PackPlan]
    total: Counts
    prompt_tokens_method: Literal["tokenizer", "estimate"]
    prompt_tokens_rule: str = Field(description="The tokenizer used, or the estimate rule and its margin")
    price_source: str = Field(description="pricing.yaml | built-in table | self-hosted | unknown")
    price: dict | None = Field(description="USD per million tokens (input, output, batch_discount); None = unknown")
    cost_applies: Literal["standard", "batch"] = Field(description="Which range the configured backend pays")
    spent_usd: float | None = Field(description="What the ledger's answers cost so far; None = price unknown")
    budget_usd: float | None
    disk: DiskPlan
    time: TimePlan
    warnings: list[str] = Field(default_factory=list)
    shard: str | None = Field(None, description="i/N: the share of the requests this machine harvests (--shard)")


def _gate(config: DistillConfig) -> GatePlan:
    decision = decide_for(config)
    return GatePlan(
        outcome=decision.outcome,
        allowed=decision.allowed,
        policy_id=decision.policy_id,
        reason=decision.reason,
        obligations=[f"{o.policy_id}/{o.id}: {o.text}" for o in decision.obligations],
        refusal=None if decision.allowed else refusal_message(decision),
    )


@contextmanager
def _ledger_use(config: DistillConfig, fresh: bool) -> Iterator[tuple[LedgerUse, Callable | None]]:
    """What the ledger holds and `done_among` to look keys up in it (neither with `fresh`, which deletes it).

    A damaged ledger is refused as harvest refuses it.
    """
    path = config.layout.ledger
    if fresh or not path.exists():
        yield LedgerUse(packs={}), None
        return
    check_ledger_file(path)
    try:
        with LedgerReader(path) as ledger:
            yield LedgerUse(packs=ledger.pack_usage()), ledger.done_among
    except LedgerReadError as exc:
        raise DamagedFileError(
            f"not a readable synthdistill harvest ledger ({exc}); {RESTART_HINT}", file=path
        ) from None


def _cost(quote_: PriceQuote | None, tokens: TokenRange, out_expected: int | None, out_max: int) -> CostRange | None:
    if quote_ is None or quote_.price is None:
        return None
    price = quote_.price
    return CostRange(
        low=round(price.cost(tokens.low, 0), 6),
        expected=round(price.cost(tokens.value, out_expected), 6) if out_expected is not None else None,
        high=round(price.cost(tokens.high, out_max), 6),
    )


@dataclass
class _PackSums:
    """A pack's planned requests, added up one at a time (`RequestPlan.make`'s visit)."""

    prompts: int = 0
    last_prompt: str | None = None
    requests: int = 0
    held: int = 0
    max_tokens: int = 0
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0])  # prompt tokens to send: low, value, high
    output_tokens_max: int = 0  # of the requests to send
    bytes_to_send: int = 0  # UTF-8 bytes of the prompts of the requests to send
    bytes_all: int = 0  # of every planned request
    charged: int = 0  # what the tokens-per-minute limiter charges the requests to send
    counted: tuple | None = None  # (prompt id, its token count): the last prompt counted

    def add(self, item: PlannedRequest, done: bool, counter: PromptCounter, tokens_per_minute: int | None) -> None:
        if item.prompt.prompt_id != self.last_prompt:  # a prompt's samples come one after another
            self.prompts, self.last_prompt = self.prompts + 1, item.prompt.prompt_id
        self.requests += 1
        self.max_tokens = max(self.max_tokens, item.request.sampling.max_tokens)
        size = _utf8_bytes(item)
        self.bytes_all += size
        if done:
            self.held += 1
            return
        if self.counted is None or self.counted[0] != item.prompt.prompt_id:  # a prompt's samples: counted once
            self.counted = (item.prompt.prompt_id, counter.count(item.prompt))
        self.tokens = [total + n for total, n in zip(self.tokens, self.counted[1])]
        self.output_tokens_max += item.request.sampling.max_tokens
        self.bytes_to_send += size
        if tokens_per_minute:
            self.charged += min(estimated_tokens(item), tokens_per_minute)


def _counts(sums: _PackSums, expected_per_request: float | None, quotes: tuple[PriceQuote, PriceQuote | None]) -> dict:
    to_send = sums.requests - sums.held
    low, value, high = sums.tokens
    tokens = TokenRange(low=low, value=value, high=high)
    out_max = sums.output_tokens_max
    out_expected = round(expected_per_request * to_send) if expected_per_request is not None else None
    standard, batch = quotes
    return {
        "prompts": sums.prompts,
        "requests": sums.requests,
        "held": sums.held,
        "to_send": to_send,
        "prompt_tokens": tokens,
        "output_tokens_max": out_max,
        "output_tokens_expected": out_expected,
        "cost_usd": _cost(standard, tokens, out_expected, out_max),
        "cost_usd_batch": _cost(batch, tokens, out_expected, out_max),
    }


def _quotes(config: DistillConfig) -> tuple[PriceQuote, PriceQuote | None, str]:
    """The standard quote, the Batch API quote (None without a known discount) and which the backend pays."""
    teacher = config.teacher
    listed = (
        teacher_quote(teacher.backend, teacher.model, teacher.base_urls, config.project_dir)
        if teacher.backend == "transformers"
        else quote(teacher.model, teacher.base_urls, load_price_table(config.project_dir))
    )
    batched = listed.price.batched() if listed.price is not None else None
    batch = PriceQuote(batched, listed.source) if batched is not None else None
    applies = "batch" if teacher.backend == "openai-batch" and batch is not None else "standard"
    return listed, batch, applies


def _sum_counts(packs: list[PackPlan]) -> Counts:
    def total(key: str):
        values = [getattr(p, key) for p in packs]
        return None if any(v is None for v in values) else sum(values)

    def cost(key: str) -> CostRange | None:
        ranges = [getattr(p, key) for p in packs]
        if not ranges or any(r is None for r in ranges):
            return None
        expected = [r.expected for r in ranges]
        return CostRange(
            low=round(sum(r.low for r in ranges), 6),
            expected=None if any(e is None for e in expected) else round(sum(expected), 6),
            high=round(sum(r.high for r in ranges), 6),
        )

    return Counts(
        prompts=sum(p.prompts for p in packs),
        requests=sum(p.requests for p in packs),
        held=sum(p.held for p in packs),
        to_send=sum(p.to_send for p in packs),
        prompt_tokens=TokenRange(
            low=sum(p.prompt_tokens.low for p in packs),
            value=sum(p.prompt_tokens.value for p in packs),
            high=sum(p.prompt_tokens.high for p in packs),
        ),
        output_tokens_max=sum(p.output_tokens_max for p in packs),
        output_tokens_expected=total("output_tokens_expected"),
        cost_usd=cost("cost_usd"),
        cost_usd_batch=cost("cost_usd_batch"),
    )


def _warnings(config: DistillConfig) -> list[str]:
    name = config.teacher.api_key_env
    if name and not os.environ.get(name):
        return [f"teacher.api_key_env names {name}, which is not set: `harvest` will refuse to start until it is"]
    return []


def _budget_warning(config: DistillConfig, total: Counts, applies: str, spent: float | None) -> list[str]:
    """When the high end does not fit what harvest.budget_usd leaves, the harvest may stop early: say so."""
    budget, cost = config.harvest.budget_usd, total.cost_usd_batch if applies == "batch" else total.cost_usd
    if budget is None or cost is None or spent is None or spent + cost.high <= budget:
        return []
    left = max(0.0, budget - spent)
    return [
        f"harvest.budget_usd={budget:g} leaves ${left:.6g} and the high end of the cost is ${cost.high:.6g}: "
        "the harvest may stop before every request is sent (it reserves each request's worst case)"
    ]


def _pack_plan(pack: str, sums: _PackSums, ledger: LedgerUse, quotes: tuple) -> PackPlan:
    mean_out = ledger.mean(pack, "tokens_out")
    expected = min(mean_out, sums.max_tokens) if mean_out is not None else None
    used = ledger.packs.get(pack)
    return PackPlan(
        pack=pack,
        max_tokens=sums.max_tokens,
        expected_from=used["answers"] if used else 0,
        **_counts(sums, expected, quotes),
    )


def _utf8_bytes(item: PlannedRequest) -> int:
    return sum(len(m.content.encode("utf-8")) for m in item.prompt.messages)


def run(
    config: DistillConfig, *, limit: int | None = None, fresh: bool = False, shard: Shard | None = None
) -> PlanSummary:
    """The plan of `harvest` for this config (with the same `limit`, `fresh` and `shard`); sends nothing, writes nothing.

    A gate refusal is part of the plan (`gate.allowed` False, `gate.refusal` the message);
    the CLI turns it into exit 3. A budget without a known price is refused (exit 2) as harvest refuses it.
    """
    return run_with_requests(config, limit=limit, fresh=fresh, shard=shard)[0]


def run_with_requests(
    config: DistillConfig, *, limit: int | None = None, fresh: bool = False, shard: Shard | None = None
) -> tuple[PlanSummary, RequestPlan]:
    """`run`, and the pass over the requests it made: a harvest that follows at once sends from it (project.py)."""
    gate = _gate(config)
    standard, batch, applies = _quotes(config)
    if gate.allowed:  # harvest's order: a refusal (exit 3) first, then a budget without a price (exit 2)
        check_budget_priced(standard.price, config.harvest.budget_usd, config.teacher.model, config.path)
    counter, warnings = prompt_counter(config)
    sums: dict[str, _PackSums] = {}
    tokens_per_minute = config.teacher.tokens_per_minute

    def visit(item: PlannedRequest, done: bool) -> None:
        sums.setdefault(item.prompt.pack, _PackSums()).add(item, done, counter, tokens_per_minute)

    with _ledger_use(config, fresh) as (ledger, done_among):  # one pass: 8 bytes kept per request to send
        requests = RequestPlan.make(config, limit=limit, shard=shard, done_among=done_among, visit=visit)
    packs = [_pack_plan(pack, pack_sums, ledger, (standard, batch)) for pack, pack_sums in sums.items()]
    prompt_bytes = {pack: pack_sums.bytes_to_send for pack, pack_sums in sums.items()}
    charged = sum(pack_sums.charged for pack_sums in sums.values())
    paid = batch if applies == "batch" else standard
    spent = round(paid.price.cost(*ledger.tokens()), 6) if paid.price is not None else None
    total = _sum_counts(packs)
    summary = PlanSummary(
        teacher=config.teacher.model,
        backend=config.teacher.backend,
        gate=gate,
        packs=packs,
        total=total,
        prompt_tokens_method=counter.method,
        prompt_tokens_rule=counter.rule,
        price_source=standard.source,
        price=standard.price.model_dump(exclude={"model"}) if standard.price is not None else None,
        cost_applies=applies,
        spent_usd=spent,
        budget_usd=config.harvest.budget_usd,
        disk=disk_plan(config, packs, ledger, prompt_bytes, sum(pack_sums.bytes_all for pack_sums in sums.values())),
        time=time_plan(config, packs, requests.to_send, charged, ledger),
        warnings=warnings + _warnings(config) + _budget_warning(config, total, applies, spent),
        shard=str(shard) if shard is not None else None,
    )
    return summary, requests
