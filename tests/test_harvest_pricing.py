"""Prices, cost and the budget guard."""

from __future__ import annotations

import pytest

from synthdistill.errors import ConfigError
from synthdistill.pricing import Budget, Price, PriceTable, load_price_table, price_for, prompt_tokens_upper_bound
from synthdistill.records import Message

TABLE = PriceTable(
    models=[
        Price(model="my-org/*", input_per_million=2.0, output_per_million=6.0),
        Price(model="gpt-4o-mini", input_per_million=0.0, output_per_million=0.0),
    ]
)


def test_project_table_first_then_shipped_then_local_is_free_else_unknown():
    assert price_for("My-Org/Big-Model", ["https://api.example.com/v1"], TABLE).input_per_million == 2.0
    assert price_for("gpt-4o-mini", ["https://api.openai.com/v1"], TABLE).output_per_million == 0.0  # overridden
    assert price_for("gpt-4o-mini-2024-07-18", ["https://api.openai.com/v1"]).output_per_million == 0.60
    assert (
        price_for("Qwen/Qwen2.5-7B-Instruct", ["http://127.0.0.1:8000/v1", "http://localhost:8001/v1"]).cost(
            10**6, 10**6
        )
        == 0
    )
    assert price_for("Qwen/Qwen2.5-7B-Instruct", ["http://127.0.0.1:8000/v1", "https://gpu.example.com/v1"]) is None


def test_cost_is_per_million_tokens():
    assert Price(model="m", input_per_million=2.0, output_per_million=6.0).cost(500_000, 1_000) == pytest.approx(1.006)


def test_upper_bound_counts_utf8_bytes_plus_template_overhead():
    messages = [Message(role="system", content="é"), Message(role="user", content="abc")]
    assert prompt_tokens_upper_bound(messages) == (2 + 8) + (3 + 8)


def test_budget_reserves_worst_case_and_refuses_what_could_exceed():
    budget = Budget(
        Price(model="m", input_per_million=1e6, output_per_million=1e6), limit_usd=10.0, spent_before_usd=2.0
    )
    first = budget.reserve(2, 3)  # $5 worst case
    assert first == 5.0
    assert budget.reserve(1, 3) is None and budget.exhausted  # 2 + 5 + 4 > 10
    assert budget.settle(first, 1, 1) == 2.0
    assert (budget.cost_usd, budget.total_usd, budget.reserved_usd) == (2.0, 4.0, 0.0)


def test_unknown_price_counts_nothing_and_never_stops():
    budget = Budget(None, limit_usd=None)
    assert budget.reserve(10**9, 10**9) == 0.0 and budget.cost_usd is None


def test_pricing_file_errors_name_file_and_line(tmp_path):
    (tmp_path / "pricing.yaml").write_text(
        "models:\n  - model: a\n    input_per_million: -1\n    output_per_million: 2\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_price_table(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'pricing.yaml'}:3:")
    assert "input_per_million" in str(caught.value)
    assert load_price_table(tmp_path / "nowhere") == PriceTable()
