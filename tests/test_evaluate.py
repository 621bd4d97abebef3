"""eval on a really trained tiny student: the trained student fits the teacher's answers better."""

from __future__ import annotations

import json

import pytest

from synthdistill import build, evaluate, train
from synthdistill.config import load_config
from synthdistill.errors import StageError
from synthdistill.evaluate import batch_metrics, nll_gap_closed
from synthdistill.run_layout import HELD_OUT_SPLIT
from synthdistill.train.data import read_rows
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
    # the in-process teacher's weights are at hand: it is scored on its own held-out answers
    teacher, untrained, trained = (result[k]["nll_per_token"] for k in ("teacher", "untrained", "trained"))
    assert result["teacher_model"] == str(smollm2_dir)
    assert teacher < trained < untrained
    assert result["nll_gap_closed"] == pytest.approx((untrained - trained) / (untrained - teacher), abs=1e-5)
    assert 0 < result["nll_gap_closed"] < 1
    assert result["teacher"]["answer_tokens"] == result["untrained"]["answer_tokens"]  # the same tokens
    # the in-process teacher scores each student's own sampled answers to the held-out prompts
    judged = [result[m]["teacher_nll_on_student_samples"] for m in ("untrained", "trained")]
    assert all(isinstance(nll, float) and nll > 0 for nll in judged)
    assert "teacher_nll_on_student_samples_note" not in result
    assert len(result["samples"]) == 2 and all(s["trained"] is not None for s in result["samples"])
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

    # the held-out prompts with the teacher's answer beside each student's own greedy answer (max_tokens 6)
    held_out = read_rows(config.layout, "sft", HELD_OUT_SPLIT)
    assert [s["prompt_id"] for s in always["samples"]] == [row["prompt_id"] for row in held_out]
    for sample, row in zip(always["samples"], held_out, strict=True):
        assert sample["pack"] == "demo" and sample["messages"] == row["messages"][:-1]
        assert sample["teacher"] == row["messages"][-1]["content"]
        assert sample["untrained"] == _greedy(tiny_student, tokenizer, row["messages"][:-1], 6)
        assert sample["trained"] == _greedy(config.layout.student_dir, tokenizer, row["messages"][:-1], 6)

    pack_yaml.write_text(pack_yaml.read_text().replace("pattern: '^'", "pattern: '(?!)'"))  # matches nothing
    path.write_text(path.read_text().replace("student:\n", "student:\n  eval_samples: 1\n"))
    never = evaluate.run(load_config(path))

    assert never["untrained"]["verifier_pass_rate"] == {"demo": 0.0}
    assert never["trained"]["verifier_pass_rate"] == {"demo": 0.0}
    assert never["trained"]["nll_per_token"] == always["trained"]["nll_per_token"]
    assert never["samples"] == always["samples"][:1]


def test_nll_gap_closed_is_null_where_the_teacher_is_no_better_than_the_start():
    assert nll_gap_closed(10.0, 6.0, 2.0) == 0.5
    assert nll_gap_closed(10.0, 11.0, 2.0) == -0.125  # training made it worse: a negative share
    assert nll_gap_closed(10.0, 6.0, 10.0) is None
    assert nll_gap_closed(10.0, 6.0, 12.0) is None


def _teacher_folder_project(tmp_path, teacher_dir, student_dir, tokenizer):
    import yaml

    path = write_kept_project(tmp_path / "project", student_dir, tokenizer, method="kd", max_steps=3)
    data = yaml.safe_load(path.read_text())
    data["teacher"]["model"] = str(teacher_dir)
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_a_teacher_that_is_the_starting_weights_scores_like_the_untrained_student(tmp_path, tiny_student, tokenizer):
    config = _teacher_folder_project(tmp_path, tiny_student, tiny_student, tokenizer)
    build.run(config)
    train.run(config)

    result = evaluate.run(config)

    assert result["teacher_model"] == str(tiny_student)
    untrained = {k: v for k, v in result["untrained"].items() if k != "teacher_nll_on_student_samples"}
    assert result["teacher"] == untrained  # same weights, same rows: the same numbers
    assert result["nll_gap_closed"] is None  # no gap to close


def test_a_teacher_with_another_vocabulary_is_scored_on_its_own_tokens(tmp_path, tiny_student, tokenizer):
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(tiny_student)
    other.add_tokens(["<only-the-teacher-has-this>"])
    other.save_pretrained(tmp_path / "other-tokenizer")
    teacher_dir = write_tiny_llama(tmp_path / "teacher", tmp_path / "other-tokenizer", layers=2)
    config = _teacher_folder_project(tmp_path, teacher_dir, tiny_student, tokenizer)
    build.run(config)
    train.run(config)

    result = evaluate.run(config)

    assert result["teacher"]["kd_kl"] is None  # the KD rows hold the student's ids: not used for this teacher
    assert result["teacher"]["answer_tokens"] > 0
    assert result["nll_gap_closed"] is None
    assert "vocabulary differs" in result["nll_gap_closed_note"]


def _greedy(model_dir, tokenizer, messages, max_new_tokens: int) -> str:
    """A model's greedy answer, generated here with transformers alone."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)
    with torch.no_grad():
        output = model.generate(
            torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    return tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)


def test_a_teacher_that_cannot_score_leaves_the_student_sample_nll_null_and_says_why(tmp_path, tiny_student, tokenizer):
    import yaml

    from synthdistill.eval_student_samples import judge_for

    path = write_kept_project(tmp_path, tiny_student, tokenizer, method="sft")
    data = yaml.safe_load(path.read_text())
    data["teacher"] = {"backend": "openai", "model": "gpt-4o-mini", "base_url": "https://api.openai.com/v1"}
    path.write_text(yaml.safe_dump(data))

    judge, why = judge_for(load_config(path))

    assert judge is None
    assert why.startswith("the teacher cannot score text: ")
    assert "on-policy scoring needs a teacher that returns the logprobs of given text" in why
    assert "api.openai.com returns no prompt logprobs" in why
