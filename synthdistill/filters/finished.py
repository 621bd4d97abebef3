"""`finished`: drop answers the teacher did not finish (cut off at max_tokens)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from synthdistill.records import HarvestRecord


class FinishedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def finished(records: list[HarvestRecord], params: FinishedParams) -> list[str | None]:
    """Drop records whose finish_reason says the answer was truncated or empty."""
    verdicts: list[str | None] = []
    for record in records:
        if record.finish_reason == "length":
            verdicts.append("truncated")
        elif not record.text.strip() and not record.tool_calls:  # a tool call alone is an answer
            verdicts.append("empty")
        else:
            verdicts.append(None)
    return verdicts
