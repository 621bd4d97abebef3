"""What a filter returns, and the spec of one pipeline step (the filters import this, not the package)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from synthdistill.records import HarvestRecord


class FilterOutcome(NamedTuple):
    """What a filter that rewrites records returns (a plain verdict list is enough otherwise)."""

    verdicts: list[str | None]
    records: list[HarvestRecord]  # the records as they go on (e.g. redacted); same length
    notes: list[str | None] | None = None  # why a kept record was changed, per record


FilterFunction = Callable[[list[HarvestRecord], Any], "list[str | None] | FilterOutcome"]


class FilterSpec(BaseModel):
    """One step of the filter pipeline: a registered name and its validated params."""

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
