"""Token prices, cost accounting and the `harvest.budget_usd` guard.

Prices are USD per million tokens, looked up by teacher model id (fnmatch globs,
case-insensitive): first in the project's `pricing.yaml` beside distill.yaml, then in
the small shipped table below. A teacher served from this machine (127.0.0.1,
localhost, ::1) with no price entry costs nothing. Users extend or override the table
with a project file:

    # pricing.yaml
    models:
      - {model: "my-org/*", input_per_million: 0.20, output_per_million: 0.60}

The budget never lets the ledger's answers cost more than `budget_usd` in all (the
answers of earlier runs count; `--fresh` starts from zero): before a request is sent
its worst case (an upper bound of its prompt tokens and all of `max_tokens`) is
reserved; when that no longer fits, no further request is sent and the run stops
cleanly. The reservation is settled with the usage the server reports.
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from synthdistill.errors import ConfigError
from synthdistill.records import Message
from synthdistill.yaml_source import load_yaml, validate_document

PRICING_FILE = "pricing.yaml"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# Chat templates add a few tokens per message around the content (role markers, separators).
TEMPLATE_TOKENS_PER_MESSAGE = 8


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="Glob on the teacher model id (case-insensitive)")
    input_per_million: float = Field(ge=0, description="USD per million prompt tokens")
    output_per_million: float = Field(ge=0, description="USD per million answer tokens")
    batch_discount: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Fraction taken off both prices by the provider's Batch API (OpenAI: 0.5); null = none known",
    )

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_million + tokens_out * self.output_per_million) / 1e6

    def batched(self) -> Price | None:
        """The price through the Batch API (`teacher.backend: openai-batch`); None when no discount is known."""
        if self.batch_discount is None:
            return None
        keep = 1.0 - self.batch_discount
        return Price(
            model=self.model,
            input_per_million=self.input_per_million * keep,
            output_per_million=self.output_per_million * keep,
            batch_discount=self.batch_discount,
        )


class PriceTable(BaseModel):
    """The contents of a pricing.yaml."""

    model_config = ConfigDict(extra="forbid")

    models: list[Price] = Field(default_factory=list)


# List prices of a few API models (USD / 1M tokens) as published by their providers in 2025,
# and OpenAI's Batch API discount (half price); prices change: override them in the project's pricing.yaml.
SHIPPED = PriceTable(
    models=[
        Price(model="gpt-4o-mini*", input_per_million=0.15, output_per_million=0.60, batch_discount=0.5),
        Price(model="gpt-4o*", input_per_million=2.50, output_per_million=10.00, batch_discount=0.5),
        Price(model="gpt-4.1-nano*", input_per_million=0.10, output_per_million=0.40, batch_discount=0.5),
        Price(model="gpt-4.1-mini*", input_per_million=0.40, output_per_million=1.60, batch_discount=0.5),
        Price(model="gpt-4.1*", input_per_million=2.00, output_per_million=8.00, batch_discount=0.5),
    ]
)
# Where a price came from (`PriceQuote.source`); a self-hosted teacher's $0 is labelled as such, never as a price.
FROM_PROJECT, FROM_SHIPPED, SELF_HOSTED, UNKNOWN = "pricing.yaml", "built-in table", "self-hosted", "unknown"


def load_price_table(project_dir: Path) -> PriceTable:
    """The project's pricing.yaml (errors name file and line), or an empty table when there is none."""
    path = Path(project_dir) / PRICING_FILE
    if not path.is_file():
        return PriceTable()
    return validate_document(load_yaml(path, ConfigError), PriceTable, ConfigError)


def _matches(pattern: str, model: str) -> bool:
    return fnmatch.fnmatchcase(model.lower(), pattern.lower())


def _host(base_url: str) -> str:
    import httpx

    return httpx.URL(base_url).host or ""


class PriceQuote(NamedTuple):
    """A teacher's price per token (None: unknown) and where it came from (FROM_PROJECT … UNKNOWN)."""

    price: Price | None
    source: str


def quote(model: str, base_urls: list[str], project: PriceTable | None = None) -> PriceQuote:
    """The price of `model` (project table first, then shipped); zero for a local server; None when unknown."""
    for table, source in ((project or PriceTable(), FROM_PROJECT), (SHIPPED, FROM_SHIPPED)):
        for price in table.models:
            if _matches(price.model, model):
                return PriceQuote(price, source)
    if base_urls and all(_host(url) in LOCAL_HOSTS for url in base_urls):
        return PriceQuote(Price(model=model, input_per_million=0.0, output_per_million=0.0), SELF_HOSTED)
    return PriceQuote(None, UNKNOWN)


def price_for(model: str, base_urls: list[str], project: PriceTable | None = None) -> Price | None:
    """The price of `model` (see `quote`); None when unknown."""
    return quote(model, base_urls, project).price


def teacher_quote(backend: str, model: str, base_urls: list[str], project_dir: Path) -> PriceQuote:
    """What the configured teacher costs per token: in-process teachers nothing (self-hosted); the Batch API
    backend its discounted price where the table knows the discount."""
    if backend == "transformers":
        return PriceQuote(Price(model=model, input_per_million=0.0, output_per_million=0.0), SELF_HOSTED)
    found = quote(model, base_urls, load_price_table(project_dir))
    if backend == "openai-batch" and found.price is not None and found.price.batched() is not None:
        return PriceQuote(found.price.batched(), found.source)
    return found


def usd(value: float) -> str:
    """Dollars for people: cents from $1 up, three significant digits below ($0.000258), never 6e-05."""
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value:,.2f}"
    decimals = 2 - math.floor(math.log10(value))
    return f"${value:.{decimals}f}"


def describe_cost(cost_usd: float | None, source: str) -> str:
    """A cost for people: "unknown" when no price is known (never $0), "$0 (self-hosted)" for a teacher here."""
    if cost_usd is None:
        return "unknown (no price known for the teacher; add it to pricing.yaml)"
    if source == SELF_HOSTED:
        return "$0 (self-hosted)"
    return f"{usd(cost_usd)} ({source})"


def prompt_tokens_upper_bound(messages: list[Message]) -> int:
    """More tokens than any tokenizer makes of these messages: a byte-level BPE token covers ≥ 1 byte."""
    return sum(len(m.content.encode("utf-8")) + TEMPLATE_TOKENS_PER_MESSAGE for m in messages)


class Budget:
    """Spent and reserved dollars against a limit (None: unlimited, cost still counted when a price is known)."""

    def __init__(self, price: Price | None, limit_usd: float | None, spent_before_usd: float = 0.0):
        self.price = price
        self.limit_usd = limit_usd
        self.spent_before_usd = spent_before_usd  # answers already in the ledger count against the limit
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self.exhausted = False

    def reserve(self, tokens_in_bound: int, max_tokens: int) -> float | None:
        """Reserve a request's worst case; the amount, or None when it would break the limit (no more requests)."""
        if self.price is None:
            return 0.0
        worst = self.price.cost(tokens_in_bound, max_tokens)
        committed = self.spent_before_usd + self.spent_usd + self.reserved_usd
        if self.limit_usd is not None and committed + worst > self.limit_usd:
            self.exhausted = True
            return None
        self.reserved_usd += worst
        return worst

    def release(self, reserved: float) -> None:
        """Give back a reservation whose request was not answered."""
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)

    def settle(self, reserved: float, tokens_in: int, tokens_out: int) -> float:
        """Replace a reservation by the real cost of the answer; returns that cost."""
        self.release(reserved)
        cost = self.price.cost(tokens_in, tokens_out) if self.price is not None else 0.0
        self.spent_usd += cost
        return cost

    @property
    def cost_usd(self) -> float | None:
        """Spent by this run (None when the price is unknown)."""
        return round(self.spent_usd, 6) if self.price is not None else None

    @property
    def total_usd(self) -> float | None:
        """Spent on every answer in the ledger, this run's included."""
        return round(self.spent_before_usd + self.spent_usd, 6) if self.price is not None else None


def check_budget_priced(price: Price | None, limit_usd: float | None, model: str, config_path: Path) -> None:
    """A budget needs a price: refuse to start rather than spend blind."""
    if limit_usd is not None and price is None:
        raise ConfigError(
            f"harvest.budget_usd is set but no price is known for teacher model '{model}'; add it to "
            f"{Path(config_path).parent / PRICING_FILE} as models: [{{model: '{model}', input_per_million: …, "
            f"output_per_million: …}}]",
            file=config_path,
        )
