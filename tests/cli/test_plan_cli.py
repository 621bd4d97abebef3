"""`synthdistill plan` at the CLI, the plan line `harvest` prints, and the plan beside the spend in the audit."""

from __future__ import annotations

import json

import yaml

from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.policy import read_decision
from synthdistill.pricing import usd
from synthdistill.train.model_card import write_model_card
from tests.conftest import REPO
from tests.harvest_fixtures import FAKE_POLICY, write_project
from tests.openai_server import FakeOpenAIServer

PRICED = {"models": [{"model": "fake-model", "input_per_million": 1.0, "output_per_million": 4.0}]}
# A loopback address the price table does not take for this machine: the price stays unknown.
UNPRICED_HOST = "[::ffff:127.0.0.1]"


def flat(text: str) -> str:
    return " ".join(text.split())


def test_plan_prints_the_table_and_sends_nothing(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        path = write_project(tmp_path, server.base_url, 10, pricing=PRICED, harvest={"samples_per_prompt": 2})
        assert main(["plan", "-c", str(path)]) == 0
        assert (server.stats()["requests"], server.stats()["models_listed"]) == (0, 0)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "plan for teacher fake-model (openai); nothing was sent"
    assert lines[1].startswith("gate: allow (policy fake): ")
    assert lines[2].split() == [
        "pack",
        "prompts",
        "requests",
        "held",
        "to",
        "send",
        "prompt",
        "tokens",
        "answer",
        "tokens",
        "cost",
    ]
    assert lines[3].split()[:5] == ["tiny", "10", "20", "0", "20"]
    assert "≤1,280" in lines[3]
    assert "price: $1 in / $4 out per million tokens (pricing.yaml); no Batch API discount known" in out
    assert "time: unknown (no rate limit set and no latency in the ledger)" in out
    assert not (tmp_path / "outputs").exists()


def test_plan_json_is_the_summary(tmp_path, capsys):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    assert main(["plan", "-c", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["to_send"] == 3 and data["gate"]["outcome"] == "allow"
    assert data["price_source"] == "self-hosted" and data["total"]["cost_usd"]["high"] == 0.0


def test_self_hosted_zero_is_labelled(tmp_path, capsys):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    assert main(["plan", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "$0 (self-hosted)" in out and "price: $0, self-hosted" in out


def test_an_unknown_price_is_never_shown_as_zero(tmp_path, capsys):
    path = write_project(tmp_path, "https://teacher.example.invalid/v1", 3)
    assert main(["plan", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "$0" not in out
    assert out.splitlines()[3].split()[-1] == "unknown"
    assert "price: unknown (add the model to pricing.yaml beside distill.yaml)" in out
    assert "spent so far (the ledger's answers): unknown" in out
    assert main(["plan", "-c", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["price"], data["spent_usd"], data["price_source"]) == (None, None, "unknown")
    assert data["total"]["cost_usd"] is None and data["packs"][0]["cost_usd"] is None


def test_a_refusal_exits_3_and_sends_nothing(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        path = write_project(tmp_path, server.base_url, 5)
        policy = {**FAKE_POLICY, "outputs_for_training": "forbidden"}
        (tmp_path / "policies" / "fake.yaml").write_text(yaml.safe_dump(policy))
        assert main(["plan", "-c", str(path)]) == 3
        captured = capsys.readouterr()
        assert "gate: deny (policy fake): harvest would refuse" in captured.out
        assert "the policy gate refused teacher 'fake-model'" in flat(captured.err)
        assert main(["plan", "-c", str(path), "--json"]) == 3
        data = json.loads(capsys.readouterr().out)
        assert data["gate"]["allowed"] is False and data["error"]["exit_code"] == 3
        assert data["total"]["to_send"] == 5
        assert main(["harvest", "-c", str(path)]) == 3  # harvest refuses alike
        assert server.stats()["requests"] == 0


def test_harvest_prints_the_plan_line_first_and_keeps_the_plan(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        path = write_project(tmp_path, server.base_url, 6, pricing=PRICED)
        assert main(["harvest", "-c", str(path), "--limit", "2"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith("plan: 2 requests to send (0 held), prompt tokens ~")
        assert "(pricing.yaml), time unknown; gate allow (policy fake)" in lines[0]
        assert main(["harvest", "-c", str(path), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)  # one JSON object: the plan line is not on stdout
    assert data["answered"] == 4
    plan = json.loads((tmp_path / "outputs" / "run" / "harvest" / "plan.json").read_text())
    assert (plan["total"]["held"], plan["total"]["to_send"]) == (2, 4)


def test_audit_sets_the_plan_beside_the_spend(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        path = write_project(tmp_path, server.base_url, 4, pricing=PRICED)
        assert main(["harvest", "-c", str(path), "--json"]) == 0
        spent = json.loads(capsys.readouterr().out)
    assert main(["audit", "-c", str(path), "--json"]) == 0
    capsys.readouterr()
    audit_dir = tmp_path / "outputs" / "run" / "audit"
    facts = json.loads((audit_dir / "manifest.json").read_text())["stages"]["harvest"]["plan"]
    assert facts["requests"] == {"planned": 4, "spent": 4}
    assert facts["cost_usd"]["spent"] == spent["cost_usd"]
    assert facts["cost_usd"]["planned"]["low"] <= spent["cost_usd"] <= facts["cost_usd"]["planned"]["high"]
    report = (audit_dir / "report.md").read_text()
    assert "Plan and spend" in report
    assert f"{usd(spent['cost_usd'])} (pricing.yaml)" in report


def test_audit_and_cards_say_unknown_for_an_unknown_price(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        url = f"http://{UNPRICED_HOST}:{server.port}/v1"
        path = write_project(tmp_path, url, 3)
        assert main(["harvest", "-c", str(path)]) == 0
        assert main(["filter", "-c", str(path)]) == 0
        assert main(["build", "-c", str(path)]) == 0
        assert main(["audit", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cost unknown, time unknown" in out.splitlines()[0]
    run = tmp_path / "outputs" / "run"
    report = (run / "audit" / "report.md").read_text()
    section = report.split("Plan and spend", 1)[1].split("\n## ", 1)[0]
    assert "unknown (no price known for the teacher; add it to pricing.yaml)" in section and "$0" not in section
    card = (run / "datasets" / "sft" / "README.md").read_text()
    assert "What the teacher charged for these answers: unknown (no price known" in card and "$0" not in card
    provenance = json.loads((run / "datasets" / "sft" / "provenance.json").read_text())
    assert (provenance["teacher"]["cost_usd"], provenance["teacher"]["price_source"]) == (None, "unknown")


def test_the_readme_plan_of_the_quickstart_is_what_plan_prints(tmp_path, capsys):
    readme = (REPO / "README.md").read_text()
    sample = readme.split("synthdistill plan -c examples/quickstart/distill.yaml\n```\n\n", 1)[1].split("\n\n", 1)[0]
    shown = [line.removeprefix("    ") for line in sample.splitlines() if line.strip() != "..."]
    assert main(["init", str(tmp_path)]) == 0  # a copy of the quickstart without the checkout's earlier runs
    assert f"next: synthdistill plan -c {tmp_path / 'distill.yaml'} (what it will cost" in capsys.readouterr().out
    assert main(["plan", "-c", str(tmp_path / "distill.yaml")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert shown[:6] == printed[:6] and shown[-2:] == printed[-2:]


def test_the_model_card_says_what_the_teacher_charged(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        path = write_project(tmp_path, f"http://{UNPRICED_HOST}:{server.port}/v1", 3)
        for stage in ("harvest", "filter", "build"):
            assert main([stage, "-c", str(path)]) == 0
    capsys.readouterr()
    config = yaml.safe_load(path.read_text())
    config["student"] = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "method": "sft"}
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(path)
    summary = {
        "method": "sft",
        "steps": 1,
        "examples": 2,
        "epochs": 1.0,
        "train_loss_first": 2.0,
        "train_loss_last": 1.0,
    }
    card = write_model_card(cfg, summary, read_decision(cfg.layout)).read_text()
    assert "what it charged for the training answers: unknown (no price known for the teacher" in card
    assert "$0" not in card


def test_plan_takes_set_overrides(tmp_path, capsys):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    assert main(["plan", "-c", str(path), "--set", "harvest.samples_per_prompt=4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["requests"] == 12


def test_a_missing_api_key_is_a_warning_not_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PLAN_TEST_KEY", raising=False)
    path = write_project(tmp_path, "https://teacher.example.invalid/v1", 2, teacher={"api_key_env": "PLAN_TEST_KEY"})
    assert main(["plan", "-c", str(path)]) == 0  # plan sends nothing, so it needs no key
    out = capsys.readouterr().out
    assert "warning: teacher.api_key_env names PLAN_TEST_KEY, which is not set: `harvest` will refuse" in flat(out)
