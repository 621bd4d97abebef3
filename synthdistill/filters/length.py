"""`length`: drop answers shorter or longer than the bounds, in characters or tokens.

`min_chars`/`max_chars` and `min_tokens`/`max_tokens` measure what the teacher wrote (for a
thinking teacher: tokens of trace and answer together, characters of the answer);
`max_reasoning_tokens` and `max_answer_tokens` bound the trace and the answer apart.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthdistill.records import HarvestRecord

CHARS_PER_TOKEN = 4  # estimate used only when the teacher reported no token count


class LengthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_chars: int = Field(1, ge=0, description="Drop answers shorter than this many characters")
    max_chars: int | None = Field(
        None, ge=1, description="Drop answers longer than this many characters; null = no bound"
    )
    min_tokens: int | None = Field(
        None, ge=0, description="Drop answers of fewer tokens (logprob positions, else the teacher's count)"
    )
    max_tokens: int | None = Field(None, ge=1, description="Drop answers of more tokens; null = no bound")
    max_reasoning_tokens: int | None = Field(None, ge=0, description="Most tokens of a thinking teacher's trace")
    max_answer_tokens: int | None = Field(None, ge=1, description="Most tokens of the answer, its trace not counted")

    @model_validator(mode="after")
    def _ordered(self) -> LengthParams:
        for low, high in (("min_chars", "max_chars"), ("min_tokens", "max_tokens")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{low} ({lo}) is greater than {high} ({hi})")
        return self


def answer_tokens(record: HarvestRecord) -> int:
    """Tokens of the answer: logprob positions, else the teacher's usage count, else an estimate."""
    if record.token_logprobs is not None:
        return len(record.token_logprobs)
    if record.usage.completion_tokens:
        return record.usage.completion_tokens
    return -(-len(record.text) // CHARS_PER_TOKEN)


def _span_tokens(span: list[int] | None, text: str | None) -> int:
    if span is not None:
        return span[1] - span[0]
    return -(-len(text or "") // CHARS_PER_TOKEN)


def part_tokens(record: HarvestRecord) -> tuple[int, int]:
    """(trace tokens, answer tokens): the logprob spans where known, else the answer's count / an estimate."""
    if record.reasoning is None:
        return 0, answer_tokens(record)
    return _span_tokens(record.reasoning_span, record.reasoning), _span_tokens(record.answer_span, record.text)


def length(records: list[HarvestRecord], params: LengthParams) -> list[str | None]:
    """'too-short: …' or 'too-long: …' for answers outside the bounds."""
    verdicts: list[str | None] = []
    need_tokens = params.min_tokens is not None or params.max_tokens is not None
    for record in records:
        chars = len(record.text.strip()) + len(record.calls_text)
        tokens = answer_tokens(record) if need_tokens else 0
        if chars < params.min_chars:
            verdicts.append(f"too-short: {chars} chars < min_chars {params.min_chars}")
        elif params.max_chars is not None and chars > params.max_chars:
            verdicts.append(f"too-long: {chars} chars > max_chars {params.max_chars}")
        elif params.min_tokens is not None and tokens < params.min_tokens:
            verdicts.append(f"too-short: {tokens} tokens < min_tokens {params.min_tokens}")
        elif params.max_tokens is not None and tokens > params.max_tokens:
            verdicts.append(f"too-long: {tokens} tokens > max_tokens {params.max_tokens}")
        else:
            verdicts.append(_parts_verdict(record, params))
    return verdicts


def _parts_verdict(record: HarvestRecord, params: LengthParams) -> str | None:
    if params.max_reasoning_tokens is None and params.max_answer_tokens is None:
        return None
    trace, answer = part_tokens(record)
    if params.max_reasoning_tokens is not None and trace > params.max_reasoning_tokens:
        return f"too-long: trace of {trace} tokens > max_reasoning_tokens {params.max_reasoning_tokens}"
    if params.max_answer_tokens is not None and answer > params.max_answer_tokens:
        return f"too-long: answer of {answer} tokens > max_answer_tokens {params.max_answer_tokens}"
    return None
