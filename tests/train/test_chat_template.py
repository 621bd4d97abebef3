"""Generation markers in the student's chat template, and plain TRL's assistant_only_loss on a synthdistill dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from synthdistill import build, train
from synthdistill.config import load_config
from synthdistill.train.chat_template import add_generation_markers, has_generation_markers, training_chat_template
from tests.conftest import REPO
from tests.training_fixtures import ANSWERS, write_kept_project
from tests.training_fixtures import load_weights as _weights

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue is a calm colour."},
    {"role": "user", "content": "And a fruit?"},
    {"role": "assistant", "content": "An apple."},
]


def _masked_runs(ids: list[int], mask: list[int]) -> list[list[int]]:
    """The runs of consecutive masked tokens."""
    runs, run = [], []
    for token, flag in zip(ids, mask, strict=True):
        if flag:
            run.append(token)
        elif run:
            runs.append(run)
            run = []
    return runs + ([run] if run else [])


def _answer_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def test_smollm2s_template_gets_markers_around_each_answer_and_its_end_token(tokenizer):
    assert not has_generation_markers(tokenizer.chat_template)

    template, note = training_chat_template(tokenizer)

    assert note == "generation markers added around each assistant answer and its end-of-turn token"
    assert template.count("{% generation %}") == 1 and has_generation_markers(template)
    for add_generation_prompt in (False, True):  # renders exactly as the base template
        assert tokenizer.apply_chat_template(
            CONVERSATION, tokenize=False, chat_template=template, add_generation_prompt=add_generation_prompt
        ) == tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=add_generation_prompt)
    encoded = tokenizer.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=template
    )
    assert _masked_runs(list(encoded["input_ids"]), list(encoded["assistant_masks"])) == [
        _answer_ids(tokenizer, "Blue is a calm colour."),
        _answer_ids(tokenizer, "An apple."),
    ]


def test_a_template_with_markers_or_a_shape_the_rewrite_does_not_know_is_kept(tokenizer):
    marked = "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}"
    # the end-of-turn token printed by a tag of its own: the rewrite leaves it alone
    separate = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] }}"
        "{{ '<|im_end|>\\n' }}{% endfor %}"
    )
    assert add_generation_markers(separate, "<|im_end|>") is None
    original = tokenizer.chat_template
    try:
        tokenizer.chat_template = marked
        assert training_chat_template(tokenizer) == (None, "the base chat template already has generation markers")
        tokenizer.chat_template = separate
        assert training_chat_template(tokenizer) == (
            None,
            "base template kept: no output of the message content this rewrite understands",
        )
    finally:
        tokenizer.chat_template = original


@pytest.fixture(scope="module")
def trained_sft(tmp_path_factory, tiny_student, tokenizer):
    """A tiny student trained by `synthdistill train` (sft) on the built SFT dataset."""
    root = tmp_path_factory.mktemp("trl-project")
    config = load_config(write_kept_project(root, tiny_student, tokenizer, method="sft", max_steps=2))
    build.run(config)
    summary = train.run(config)
    return config, summary


def test_the_saved_student_trains_with_plain_trl_and_assistant_only_loss(trained_sft, tmp_path, tokenizer):
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    config, summary = trained_sft
    student = config.layout.student_dir
    assert summary.chat_template == "generation markers added around each assistant answer and its end-of-turn token"
    saved = AutoTokenizer.from_pretrained(student)
    assert has_generation_markers(saved.chat_template)
    data = load_dataset(
        "parquet", data_dir=str(config.layout.dataset_data_dir("sft")), cache_dir=str(tmp_path / "cache")
    )
    assert {split: len(rows) for split, rows in data.items()} == {"train": 8, "validation": 2}
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = SFTConfig(
        output_dir=str(tmp_path / "out"),
        assistant_only_loss=True,
        max_steps=8,
        learning_rate=1e-2,
        per_device_train_batch_size=4,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        max_length=64,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=data["train"].select_columns(["messages"]), processing_class=saved
    )

    by_answer = {answer: question for question, answer in ANSWERS}
    for row, source in zip(trainer.train_dataset, data["train"], strict=True):
        answer = source["messages"][-1]["content"]
        assert by_answer[answer] == source["messages"][-2]["content"]
        # TRL turns the assistant mask into labels: the answer and its end-of-turn token, nothing of the
        # system or user turns
        learned = [label != -100 for label in row["labels"]]
        assert _masked_runs(row["input_ids"], learned) == [_answer_ids(tokenizer, answer)]
        assert [label for label in row["labels"] if label != -100] == _answer_ids(tokenizer, answer)
    trainer.train()

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 8 and losses[-1] < losses[0] * 0.8
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p.detach(), before[name])]
    assert unchanged == []


def test_the_trl_example_script_trains_on_a_synthdistill_dataset(trained_sft, tmp_path):
    config, _ = trained_sft
    out = tmp_path / "trl-student"
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home")}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "trl_sft.py"),
            "--dataset",
            str(config.layout.dataset_dir("sft")),
            "--model",
            str(config.layout.student_dir),
            "--output",
            str(out),
            "--max-steps",
            "4",
            "--learning-rate",
            "1e-2",
            "--batch-size",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["train_rows"] == 8 and result["validation_rows"] == 2 and result["steps"] == 4
    assert result["train_loss_last"] < result["train_loss_first"]
    assert result["eval_loss"] > 0
    assert (out / "model.safetensors").exists() and (out / "chat_template.jinja").exists()
    assert (
        _weights(out / "model.safetensors").keys() == _weights(config.layout.student_dir / "model.safetensors").keys()
    )
