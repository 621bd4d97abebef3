"""Eval with a thinking teacher's traces: pass rate with thinking on and off, on a real tiny model."""

from __future__ import annotations

import json

import yaml

from synthdistill.eval_thinking import EMPTY_THOUGHT, _prompt, has_traces, pass_rates_by_mode
from synthdistill.packs import load_pack
from tests.filtered_fixtures import kept_records, write_kept


def test_has_traces_sees_a_key_or_an_inline_block():
    plain = {"messages": [{"role": "assistant", "content": "4", "reasoning_content": None}]}
    key = {"messages": [{"role": "assistant", "content": "4", "reasoning_content": "hmm"}]}
    inline = {"messages": [{"role": "assistant", "content": "<think>\nhmm\n</think>\n\n4"}]}
    assert not has_traces([plain]) and has_traces([plain, key]) and has_traces([inline])


def test_thinking_off_without_a_template_switch_prefills_an_empty_thought(tokenizer):
    messages = [{"role": "user", "content": "2+2?"}]
    on, off = _prompt(tokenizer, messages, True), _prompt(tokenizer, messages, False)
    assert tokenizer.decode(off[len(on) :]) == EMPTY_THOUGHT and off[: len(on)] == on


def test_pass_rates_for_both_modes(tmp_path, tiny_student, tokenizer):
    from transformers import AutoModelForCausalLM

    pack_dir = tmp_path / "math"
    pack_dir.mkdir()
    spec = {
        "name": "math",
        "version": "1.0.0",
        "licence": "CC0-1.0",
        "template": "{{ q }}",
        "rows": "rows.jsonl",
        "sampling": {"max_tokens": 4},
        "verify": {"kind": "answer", "field": "a", "pattern": "(\\d+)"},
    }
    (pack_dir / "pack.yaml").write_text(yaml.safe_dump(spec))
    (pack_dir / "rows.jsonl").write_text("".join(json.dumps({"q": f"{i}+{i}?", "a": 2 * i}) + "\n" for i in range(3)))
    pack = load_pack(pack_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_student)
    rates = pass_rates_by_mode([pack], model, tokenizer, {p.prompt_id for p in pack.prompts[:2]}, 4)
    assert set(rates) == {"thinking", "non_thinking"}
    assert all(set(by_pack) == {"math"} and 0.0 <= by_pack["math"] <= 1.0 for by_pack in rates.values())


def test_eval_reports_the_pass_rate_by_mode_after_traces_were_kept(tmp_path, tiny_student, tokenizer):
    from synthdistill import build, evaluate, train
    from synthdistill.config import load_config
    from synthdistill.records import HarvestRecord
    from tests.training_fixtures import write_kept_project

    path = write_kept_project(tmp_path, tiny_student, tokenizer, method="sft", max_steps=2)
    run_dir = tmp_path / "outputs" / "tiny"
    records = [HarvestRecord.model_validate(r) for r in kept_records(run_dir)]
    write_kept(run_dir, [r.model_copy(update={"reasoning": "Let me see."}) for r in records])
    pack_yaml = tmp_path / "prompts" / "demo" / "pack.yaml"
    pack_yaml.write_text(pack_yaml.read_text() + "sampling: {max_tokens: 4}\nverify: {kind: regex, pattern: '^'}\n")
    config = load_config(path)
    build.run(config)
    train.run(config)

    result = evaluate.run(config)

    for label in ("untrained", "trained"):
        assert result[label]["verifier_pass_rate_by_mode"] == {"thinking": {"demo": 1.0}, "non_thinking": {"demo": 1.0}}
