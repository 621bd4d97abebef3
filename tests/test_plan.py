"""`plan.run`: requests, what the ledger holds, prompt tokens, cost, disk and time, before a single request."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from synthdistill import harvest, plan
from synthdistill.config import load_config
from synthdistill.errors import ConfigError
from synthdistill.pricing import Price, teacher_quote
from synthdistill.project import Project, Reporter
from synthdistill.prompt_tokens import ESTIMATE_MARGIN, estimate
from synthdistill.records import Message
from tests.harvest_fixtures import FAKE_POLICY, ledger_of, question, write_project
from tests.openai_server import FakeOpenAIServer

PRICED = {"models": [{"model": "fake-model", "input_per_million": 1.0, "output_per_million": 4.0}]}
SYSTEM = "You are terse. Answer in one sentence."


def write_system_pack(folder: Path, n: int, max_tokens: int) -> None:
    """A pack with a system prompt and a sampling override of max_tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": "sys",
        "version": "1.0.0",
        "licence": "CC0-1.0",
        "system": SYSTEM,
        "template": "{{ q }}",
        "rows": "rows.jsonl",
        "sampling": {"max_tokens": max_tokens},
    }
    (folder / "pack.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (folder / "rows.jsonl").write_text("".join(json.dumps({"q": f"Name {i} prime numbers."}) + "\n" for i in range(n)))


def test_plan_sends_nothing_and_counts_prompts_samples_and_max_tokens(tmp_path):
    with FakeOpenAIServer() as server:
        path = write_project(tmp_path, server.base_url, 10, pricing=PRICED, harvest={"samples_per_prompt": 3})
        summary = plan.run(load_config(path))
        stats = server.stats()
    assert (stats["requests"], stats["models_listed"]) == (0, 0)  # not even the /models probe of api_style auto
    assert not (tmp_path / "outputs").exists()  # nothing written either
    [pack] = summary.packs
    assert (pack.pack, pack.prompts, pack.requests, pack.held, pack.to_send) == ("tiny", 10, 30, 0, 30)
    assert (pack.max_tokens, pack.output_tokens_max, pack.output_tokens_expected) == (64, 30 * 64, None)
    assert summary.total.to_send == 30 and summary.gate.allowed and summary.gate.policy_id == "fake"
    assert summary.prompt_tokens_method == "estimate"
    # the stated rule, each prompt counted once per sample
    one = sum(estimate([Message(role="user", content=question(i))])[1] for i in range(10))
    assert pack.prompt_tokens.value == 3 * one
    assert pack.prompt_tokens.low < pack.prompt_tokens.value < pack.prompt_tokens.high
    assert (summary.price_source, summary.price["input_per_million"], summary.spent_usd) == ("pricing.yaml", 1.0, 0.0)
    assert summary.time.bound == "unknown" and summary.time.seconds is None


def test_estimate_rule_and_margin():
    messages = [Message(role="system", content="é" * 10), Message(role="user", content="abcd" * 10)]
    low, value, high = estimate(messages)
    assert value == round((20 + 40) / 4 + 2 * 8) == 31
    assert (low, high) == (int(31 * ESTIMATE_MARGIN[0]), 41)  # 21.7 → 21, 40.3 → 41


def test_token_counts_are_exact_with_the_teachers_tokenizer(tmp_path, smollm2_dir, tokenizer):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1", 1, teacher={"tokenizer": str(smollm2_dir)})
    config = yaml.safe_load(path.read_text())
    write_system_pack(tmp_path / "prompts" / "sys", 5, max_tokens=40)
    config["harvest"]["packs"] = ["prompts/tiny", "prompts/sys"]
    path.write_text(yaml.safe_dump(config))
    summary = plan.run(load_config(path))
    assert summary.prompt_tokens_method == "tokenizer"

    def rendered(messages: list[dict]) -> int:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    tiny, sys_pack = summary.packs
    expected_tiny = rendered([{"role": "user", "content": question(0)}])
    expected_sys = sum(
        rendered([{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Name {i} prime numbers."}])
        for i in range(5)
    )
    assert (tiny.prompt_tokens.low, tiny.prompt_tokens.value, tiny.prompt_tokens.high) == (expected_tiny,) * 3
    assert sys_pack.prompt_tokens.value == sys_pack.prompt_tokens.high == expected_sys
    assert (sys_pack.max_tokens, sys_pack.output_tokens_max) == (40, 200)  # the pack's override applies
    assert summary.total.prompt_tokens.value == expected_tiny + expected_sys


def test_in_process_teacher_counts_what_the_harvest_counts_and_is_self_hosted(tmp_path, tiny_student):
    shutil.copytree(tiny_student, tmp_path / "models" / "tiny-teacher")
    path = write_project(
        tmp_path, "http://unused", 3, teacher={"backend": "transformers", "model": "models/tiny-teacher"}
    )
    config = yaml.safe_load(path.read_text())
    config["teacher"].pop("base_url")
    config["teacher"]["policy"] = "tiny"
    config["harvest"].update(max_tokens=3, top_logprobs=2)
    path.write_text(yaml.safe_dump(config))
    policy = {**FAKE_POLICY, "id": "tiny", "applies_to": {"models": ["tiny-teacher"], "hosts": []}}
    (tmp_path / "policies" / "tiny.yaml").write_text(yaml.safe_dump(policy))
    cfg = load_config(path)
    planned = plan.run(cfg)
    assert planned.prompt_tokens_method == "tokenizer" and planned.price_source == "self-hosted"
    assert planned.total.cost_usd.high == 0.0
    done = harvest.run(cfg, plan=planned)
    assert done.tokens_in == planned.total.prompt_tokens.value  # exact: the teacher's own count
    assert done.tokens_out <= planned.total.output_tokens_max
    assert json.loads(cfg.layout.plan.read_text())["total"]["to_send"] == 3


def test_cost_range_brackets_the_spend_of_the_following_harvest(tmp_path):
    with FakeOpenAIServer() as server:
        path = write_project(tmp_path, server.base_url, 10, pricing=PRICED, harvest={"samples_per_prompt": 2})
        config = load_config(path)
        planned = plan.run(config)
        done = harvest.run(config, plan=planned)
    cost = planned.total.cost_usd
    assert done.requests_sent == planned.total.to_send == 20
    assert 0 < cost.low <= done.cost_usd <= cost.high  # (the fake server's tokens are words, no chat template)
    assert done.tokens_out <= planned.total.output_tokens_max
    assert json.loads(config.layout.plan.read_text()) == json.loads(planned.model_dump_json())


def test_a_partly_harvested_ledger_is_counted_and_expected_from(tmp_path):
    with FakeOpenAIServer() as server:
        path = write_project(tmp_path, server.base_url, 10, pricing=PRICED, teacher={"requests_per_minute": 120})
        config = load_config(path)
        first = harvest.run(config, limit=4)
        summary = plan.run(config)
        assert server.stats()["requests"] == 4
        rest = harvest.run(config)
    [pack] = summary.packs
    assert (pack.requests, pack.held, pack.to_send, pack.expected_from) == (10, 4, 6, 4)
    assert pack.output_tokens_expected == round(first.tokens_out / 4 * 6)
    assert summary.spent_usd == first.cost_usd
    assert pack.cost_usd.low <= rest.cost_usd <= pack.cost_usd.high
    assert pack.cost_usd.expected is not None
    # 6 requests at 120 per minute, the first 2 at once: at least 2 s; the ledger's latency makes it "about"
    assert summary.time.bound == "about" and summary.time.seconds >= 2.0
    assert plan.run(config, fresh=True).total.held == 0  # --fresh deletes the ledger: nothing held


def test_rate_limits_bound_the_time_without_latency(tmp_path):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1", 10, teacher={"requests_per_minute": 5})
    summary = plan.run(load_config(path))
    assert (summary.time.bound, summary.time.seconds) == ("at least", 108.0)  # the first at once, then one per 12 s
    assert summary.time.because == ["requests_per_minute=5"]


def test_unknown_price_stays_none_everywhere(tmp_path):
    path = write_project(tmp_path, "https://teacher.example.invalid/v1", 4)
    summary = plan.run(load_config(path))
    assert (summary.price_source, summary.price, summary.spent_usd) == ("unknown", None, None)
    assert summary.total.cost_usd is None and summary.packs[0].cost_usd is None
    assert summary.total.cost_usd_batch is None


def test_batch_discount_gives_the_batch_range_and_the_batch_backend_pays_it(tmp_path):
    pricing = {"models": [{**PRICED["models"][0], "batch_discount": 0.5}]}
    path = write_project(tmp_path, "https://api.example.invalid/v1", 4, pricing=pricing)
    summary = plan.run(load_config(path))
    assert summary.cost_applies == "standard"
    assert summary.total.cost_usd_batch.high == pytest.approx(summary.total.cost_usd.high / 2)
    config = yaml.safe_load(path.read_text())
    config["teacher"]["backend"] = "openai-batch"
    path.write_text(yaml.safe_dump(config))
    summary = plan.run(load_config(path))
    assert summary.cost_applies == "batch"
    assert (summary.time.bound, summary.time.seconds) == ("at most", 86400.0)
    batched = teacher_quote("openai-batch", "fake-model", ["https://api.example.invalid/v1"], tmp_path)
    assert batched.price == Price(model="fake-model", input_per_million=0.5, output_per_million=2.0, batch_discount=0.5)
    assert teacher_quote("openai", "gpt-4o-mini", ["https://api.openai.com/v1"], tmp_path).price.batch_discount == 0.5


def test_a_budget_needs_a_price_and_a_tight_one_is_warned_of(tmp_path):
    path = write_project(tmp_path, "https://teacher.example.invalid/v1", 4, harvest={"budget_usd": 1.0})
    with pytest.raises(ConfigError, match="harvest.budget_usd is set but no price is known"):
        plan.run(load_config(path))  # exit 2, as harvest refuses it
    path = write_project(
        tmp_path, "https://teacher.example.invalid/v1", 4, pricing=PRICED, harvest={"budget_usd": 1e-4}
    )
    summary = plan.run(load_config(path))
    assert summary.budget_usd == 1e-4 and summary.total.cost_usd.high > 1e-4
    assert summary.warnings == [
        f"harvest.budget_usd=0.0001 leaves $0.0001 and the high end of the cost is ${summary.total.cost_usd.high:.6g}: "
        "the harvest may stop before every request is sent (it reserves each request's worst case)"
    ]


def test_disk_from_the_measured_constants_then_from_the_ledgers_own_bytes(tmp_path):
    with FakeOpenAIServer() as server:
        path = write_project(tmp_path, server.base_url, 10, harvest={"top_logprobs": 20})
        config = load_config(path)
        fresh = plan.run(config)
        harvest.run(config, limit=4)
        later = plan.run(config)
    prompt_bytes = sum(len(question(i).encode()) for i in range(10))
    assert fresh.disk.ledger_bytes == round(10 * 850 + prompt_bytes * 2.2 + 640 * (11 + 20 * 5.5))
    assert fresh.disk.kd_bytes is None  # no student: no KD dataset
    db = sqlite3.connect(ledger_of(tmp_path))
    record_bytes, tokens_out = db.execute(
        "SELECT SUM(LENGTH(CAST(record AS BLOB)) + COALESCE(LENGTH(logprobs), 0)), "
        "SUM(json_extract(record, '$.usage.completion_tokens')) "
        "FROM requests WHERE status = 'done'"
    ).fetchone()
    db.close()
    [pack] = later.packs
    assert later.disk.ledger_bytes == round(record_bytes / tokens_out * pack.output_tokens_expected)
    assert "packs tiny: their own bytes per answer token in the ledger" in later.disk.rule


def test_the_model_store_gives_a_served_embedded_models_tokenizer_and_a_bad_tokenizer_is_exit_2(tmp_path, smollm2_dir):
    smol = "HuggingFaceTB/SmolLM2-135M-Instruct"
    path = write_project(tmp_path, "http://127.0.0.1:9/v1", 2, teacher={"model": smol, "policy": "auto"})
    summary = plan.run(load_config(path))  # e.g. a vLLM server serving SmolLM2 under its hub id
    assert summary.prompt_tokens_method == "tokenizer"
    assert summary.prompt_tokens_rule == f"counted with the tokenizer of {smol} (its chat template)"
    path = write_project(tmp_path, "http://127.0.0.1:9/v1", 2, teacher={"tokenizer": "no/such-folder"})
    with pytest.raises(ConfigError, match="teacher.tokenizer 'no/such-folder': ") as caught:
        plan.run(load_config(path))
    assert caught.value.exit_code == 2 and caught.value.file == str(path)


def test_project_plan_takes_overrides_and_the_harvest_tells_its_reporter(tmp_path):
    with FakeOpenAIServer() as server:
        path = write_project(tmp_path, server.base_url, 3, pricing=PRICED)
        data = Project(path, overrides={"harvest.samples_per_prompt": 2}).plan()
        assert (data["total"]["requests"], data["gate"]["allowed"]) == (6, True)

        class Heard(Reporter):
            def __init__(self):
                self.plans = []

            def planned(self, summary, config):
                self.plans.append(summary)

        reporter = Heard()
        done = Project(path, reporter=reporter).harvest()
        assert server.stats()["requests"] == done["requests_sent"] == 3
    [heard] = reporter.plans
    assert heard.total.to_send == 3 and heard.total.cost_usd.low <= done["cost_usd"] <= heard.total.cost_usd.high
