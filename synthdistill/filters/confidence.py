"""`confidence`: drop answers the teacher itself was unsure of (low token logprobs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from synthdistill.records import HarvestRecord


class ConfidenceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_mean_logprob: float | None = Field(
        -2.5, le=0.0, description="Drop below this mean logprob of the sampled tokens"
    )
    min_token_logprob: float | None = Field(None, le=0.0, description="Drop when any sampled token is below this")
    without_logprobs: Literal["keep", "drop"] = Field("keep", description="Answers harvested without logprobs")


def confidence(records: list[HarvestRecord], params: ConfidenceParams) -> list[str | None]:
    """'low-confidence: …' by mean/min sampled-token logprob; 'no-logprobs' when asked to drop those."""
    verdicts: list[str | None] = []
    for record in records:
        logprobs = record.token_logprobs
        if not logprobs:
            verdicts.append("no-logprobs" if params.without_logprobs == "drop" else None)
            continue
        mean = sum(logprobs) / len(logprobs)
        lowest = min(logprobs)
        if params.min_mean_logprob is not None and mean < params.min_mean_logprob:
            verdicts.append(f"low-confidence: mean logprob {mean:.3f} < {params.min_mean_logprob}")
        elif params.min_token_logprob is not None and lowest < params.min_token_logprob:
            verdicts.append(f"low-confidence: token logprob {lowest:.3f} < {params.min_token_logprob}")
        else:
            verdicts.append(None)
    return verdicts
