"""The shipped thinking-teacher example and its pack: valid without a server (the example is not run in CI)."""

from __future__ import annotations

from pathlib import Path

from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.packs import load_pack, resolve_pack_path
from synthdistill.packs.verifiers import verify_answer

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "reasoning" / "distill.yaml"


def test_the_example_loads_with_the_thinking_settings():
    config = load_config(EXAMPLE)
    assert config.teacher.api_style == "vllm" and config.teacher.chat_template_kwargs == {"enable_thinking": True}
    assert config.harvest.reasoning.budget_tokens == 3072 and config.harvest.samples_per_prompt == 4
    assert [f.name for f in config.filters] == ["finished", "length", "dedup", "select"]
    assert config.filters[-1].params == {"best_of": "shortest-correct"}
    assert config.datasets.reasoning == "keep"
    sampling = config.harvest.sampling({}, config.teacher.chat_template_kwargs)
    assert sampling.chat_template_kwargs == {"enable_thinking": True} and sampling.reasoning.budget_tokens == 3072


def test_the_reasoning_pack_validates_and_its_verifier_checks_answers(capsys):
    folder = resolve_pack_path("prompts/reasoning-math", EXAMPLE.parent)
    assert main(["packs", "validate", str(folder)]) == 0
    assert "reasoning-math 1.0.0: 30 prompts" in capsys.readouterr().out
    pack = load_pack(folder)
    first = pack.prompts[0]
    assert verify_answer(pack.verify, first.variables, "Adding them up...\n\nAnswer: 2318")[0]
    assert not verify_answer(pack.verify, first.variables, "Answer: 2317")[0]
