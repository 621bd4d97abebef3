"""The plan's disk and time estimates, and what the ledger already says about a pack (plan.py uses them).

Disk, from bytes per answer token (the constants measured on real ledgers and datasets, see below);
where the ledger holds answers of a pack, its own bytes per answer token replace the constants.
Time, from the rate limits (the limiter's own rule: a one-second burst, then the rate) and Little's law: with `max_concurrency` requests in flight and a mean
latency L measured in the ledger, requests finish at max_concurrency / L per second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from synthdistill.config import DistillConfig
from synthdistill.rate_limit import least_seconds

PackPlan = Any  # plan.PackPlan (plan.py imports this module)

# Measured 2026-12-01 on a real ledger and its datasets: the quickstart's teacher (SmolLM2-135M-Instruct
# in-process, token ids stored), top_logprobs 20, 26 answers of 1,498 tokens, then filter and build
# (18 kept rows): record JSON = 788 B + 2.09 B per prompt byte + 36.3 B per answer token + 32.4 B per
# top-k entry, and the SQLite file is 1.071 times its records. A server that sends no token ids
# (most APIs) stores less. The datasets' Parquet column data: SFT 1.35 B per byte of prompt and
# answer text (short rows, where prompt_id, pack and teacher columns weigh), KD 109 B per answer token
# at k = 20, i.e. 5.2 B per top-k entry (prompt positions included; benchmarks/results/kd_storage-*
# has 84 B at answer positions alone). Answers: 4.2 UTF-8 bytes per token.
LEDGER_BYTES_PER_ANSWER = 850  # a record's fixed fields and its row
LEDGER_BYTES_PER_PROMPT_BYTE = 2.2  # the prompt is stored twice (messages and variables), JSON-escaped
# Since m005 the ids and logprobs are typed binary (ledger_codec.py; benchmarks/results/ledger_size-*:
# 128-token answers at top-20): per answer token its text, a uint16 id and a float32 logprob; per top-k
# entry a uint16 id, a float16 logprob and its share of the record's string table (one per distinct id).
LEDGER_BYTES_PER_TOKEN = 11  # the answer's text, id and logprob
LEDGER_BYTES_PER_TOP_ENTRY = 5.5  # each of top_logprobs alternatives: id, logprob, string-table share
SFT_BYTES_PER_TEXT_BYTE = 1.35
ANSWER_BYTES_PER_TOKEN = 4.2
KD_BYTES_PER_TOP_ENTRY = 5.2  # per answer token and each of top_logprobs + 1 entries
BATCH_WINDOW_S = 24 * 3600  # the Batch API's completion window (openai_batch.py asks for 24h)


@dataclass
class LedgerUse:
    """What the ledger holds: per pack, sums of its answers (store.pack_usage)."""

    packs: dict[str, dict]

    def tokens(self) -> tuple[int, int]:
        """(prompt tokens, answer tokens) of every stored answer."""
        return (
            sum(p["tokens_in"] for p in self.packs.values()),
            sum(p["tokens_out"] for p in self.packs.values()),
        )

    def mean(self, pack: str, key: str) -> float | None:
        """The mean of `key` over a pack's stored answers; None without any."""
        used = self.packs.get(pack)
        return used[key] / used["answers"] if used and used["answers"] else None


class DiskPlan(BaseModel):
    ledger_bytes: int = Field(description="What the requests to send add to the ledger")
    sft_bytes: int = Field(description="SFT dataset (Parquet) of every planned answer, all kept")
    kd_bytes: int | None = Field(description="KD dataset (Parquet); None when none will be built")
    rule: str


class TimePlan(BaseModel):
    seconds: float | None = Field(description="None = unknown")
    bound: Literal["about", "at least", "at most", "unknown"]
    because: list[str] = Field(default_factory=list)


def _answer_tokens(pack: PackPlan) -> int:
    return pack.output_tokens_expected if pack.output_tokens_expected is not None else pack.output_tokens_max


def disk_plan(
    config: DistillConfig, packs: list[PackPlan], ledger: LedgerUse, prompt_bytes: dict[str, int], all_prompt_bytes: int
) -> DiskPlan:
    """Bytes the harvest adds to the ledger, and the datasets `build` will write from every planned answer.

    `prompt_bytes`: per pack, the UTF-8 bytes of the prompts of its requests to send; `all_prompt_bytes`:
    of every planned request (held ones included).
    """
    k = config.harvest.top_logprobs
    ledger_bytes = 0
    measured = []
    for pack in packs:
        per_token = ledger.mean(pack.pack, "record_bytes")
        out_mean = ledger.mean(pack.pack, "tokens_out")
        if per_token is not None and out_mean:
            ledger_bytes += round(per_token / out_mean * _answer_tokens(pack))  # the pack's own bytes per token
            measured.append(pack.pack)
        else:
            ledger_bytes += round(
                pack.to_send * LEDGER_BYTES_PER_ANSWER
                + prompt_bytes.get(pack.pack, 0) * LEDGER_BYTES_PER_PROMPT_BYTE
                + _answer_tokens(pack) * (LEDGER_BYTES_PER_TOKEN + k * LEDGER_BYTES_PER_TOP_ENTRY)
            )
    held_tokens = sum(round(pack.held * (ledger.mean(pack.pack, "tokens_out") or 0)) for pack in packs)
    answer_tokens = held_tokens + sum(_answer_tokens(pack) for pack in packs)
    text_bytes = all_prompt_bytes + answer_tokens * ANSWER_BYTES_PER_TOKEN
    kd = config.student is not None and k > 0
    rule = (
        f"ledger: {LEDGER_BYTES_PER_ANSWER} B per answer + {LEDGER_BYTES_PER_PROMPT_BYTE} B per prompt byte + "
        f"({LEDGER_BYTES_PER_TOKEN} + {LEDGER_BYTES_PER_TOP_ENTRY} × top_logprobs) B per answer token"
    )
    if measured:
        rule += f" (packs {', '.join(measured)}: their own bytes per answer token in the ledger)"
    rule += f"; SFT: {SFT_BYTES_PER_TEXT_BYTE} B per byte of text; KD: {KD_BYTES_PER_TOP_ENTRY} B per top-k entry"
    rule += "; answer tokens: expected where the ledger has answers, else every max_tokens (an upper bound)"
    return DiskPlan(
        ledger_bytes=ledger_bytes,
        sft_bytes=round(text_bytes * SFT_BYTES_PER_TEXT_BYTE),
        kd_bytes=round(answer_tokens * (k + 1) * KD_BYTES_PER_TOP_ENTRY) if kd else None,
        rule=rule,
    )


def time_plan(config: DistillConfig, packs: list[PackPlan], to_send: int, charged: int, ledger: LedgerUse) -> TimePlan:
    """How long sending `to_send` requests takes: the slowest of the rate limits and the measured latency, or unknown.

    `charged`: what the tokens-per-minute limiter charges them (each `estimated_tokens`, at most the limit).
    """
    teacher = config.teacher
    if not to_send:
        return TimePlan(seconds=0.0, bound="about", because=["nothing to send"])
    if teacher.backend == "openai-batch":
        return TimePlan(
            seconds=float(BATCH_WINDOW_S), bound="at most", because=["the Batch API's 24 h completion window"]
        )
    floors: list[tuple[float, str]] = []  # the rate limiter's own rule: a burst, then per_minute / 60 a second
    if teacher.requests_per_minute:
        rpm = teacher.requests_per_minute
        floors.append((least_seconds(rpm, to_send), f"requests_per_minute={rpm:g}"))
    if teacher.tokens_per_minute:
        tpm = teacher.tokens_per_minute
        floors.append((least_seconds(tpm, charged), f"tokens_per_minute={tpm:g}"))
    latency = [(p.to_send, ledger.mean(p.pack, "latency_ms")) for p in packs if p.to_send]
    if all(mean is not None for _, mean in latency):
        in_flight = min(teacher.max_concurrency, to_send)
        busy_s = sum(n * mean / 1000 for n, mean in latency)
        floors.append((busy_s / in_flight, f"latency measured in the ledger, {in_flight} in flight"))
        bound = "about"
    else:
        bound = "at least"
    if not floors:
        return TimePlan(seconds=None, bound="unknown", because=["no rate limit set and no latency in the ledger"])
    seconds, why = max(floors)
    return TimePlan(seconds=round(seconds, 1), bound=bound, because=[why])
