"""eval on a really trained tiny student: the trained student fits the teacher's answers better."""

from __future__ import annotations

import json

import pytest

from synthdistill import build, evaluate, train
from synthdistill.config import load_config
from synthdistill.errors import StageError
from synthdistill.evaluate import batch_metrics
from tests.training_fixtures import write_kept_project, write_tiny_llama


def test_batch_metrics_on_hand_made_logits():
    import torch

    # vocab 3; positions: 0 = prompt, 1 and 2 = answer tokens 2 and 0
    logits = torch.log(torch.tensor([[[0.1, 0.1, 0.8], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]]))
    batch = {"labels": torch.tensor([[-100, 2, 0]])}
    sums = batch_metrics(logits, batch)
    assert sums["label_tokens"] == 2
    assert sums["nll"] == pytest.approx(-(torch.log(torch.tensor(0.8)) + torch.log(torch.tensor(0.5))).item(), abs=1e-5)
    assert sums["agree"] == 2  # argmax 2 at t=0 predicts token 2; argmax 0 at t=1 predicts token 0
    assert sums["kd_tokens"] == 0


def test_eval_reports_lower_nll_after_training(tmp_path, smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    student = write_tiny_llama(tmp_path / "tiny", smollm2_dir)
    config = load_config(write_kept_project(tmp_path / "project", student, tokenizer, method="kd", max_steps=20))
    with pytest.raises(StageError, match="run `synthdistill train` first"):
        evaluate.run(config)
    build.run(config)
    train.run(config)

    result = evaluate.run(config)

    assert result["method"] == "kd" and result["examples"] == 2
    assert result["trained"]["nll_per_token"] < result["untrained"]["nll_per_token"]
    assert result["trained"]["kd_kl"] < result["untrained"]["kd_kl"]
    assert result["untrained"]["verifier_pass_rate"] == {}  # the demo pack has no verifier
    assert json.loads((config.run_dir / "eval.json").read_text()) == result
    assert (config.run_dir / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verifier_pass_rate_of_the_students_own_answers(tmp_path, tiny_student, tokenizer):
    """A pack with a verifier: each held-out prompt is answered greedily by each student and checked."""
    path = write_kept_project(tmp_path, tiny_student, tokenizer, method="sft", max_steps=2)
    pack_yaml = tmp_path / "prompts" / "demo" / "pack.yaml"
    pack_yaml.write_text(pack_yaml.read_text() + "sampling: {max_tokens: 6}\nverify: {kind: regex, pattern: '^'}\n")
    config = load_config(path)
    build.run(config)
    train.run(config)

    always = evaluate.run(config)

    assert always["examples"] == 2
    assert always["untrained"]["verifier_pass_rate"] == {"demo": 1.0}
    assert always["trained"]["verifier_pass_rate"] == {"demo": 1.0}

    pack_yaml.write_text(pack_yaml.read_text().replace("pattern: '^'", "pattern: '(?!)'"))  # matches nothing
    never = evaluate.run(load_config(path))

    assert never["untrained"]["verifier_pass_rate"] == {"demo": 0.0}
    assert never["trained"]["verifier_pass_rate"] == {"demo": 0.0}
    assert never["trained"]["nll_per_token"] == always["trained"]["nll_per_token"]
