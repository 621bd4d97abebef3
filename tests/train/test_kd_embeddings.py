"""Relation KD from an API teacher's harvested embeddings (`student.kd.relations.source: embeddings`).

The teacher side of the relations is each example's `teacher_embedding`; no local teacher is loaded.
"""

from __future__ import annotations

import json

import pytest
import torch

from synthdistill import build, train
from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.student_config import KDConfig
from synthdistill.train.data import PaddingCollator
from synthdistill.train.kd_head import add_kd_head
from synthdistill.train.loss_parts import relation_loss
from tests.embedding_fixtures import add_embeddings
from tests.train.test_kd_head import _targets
from tests.training_fixtures import load_weights, write_kept_project

ONLY_RELATIONS = {"weights": {"ce": 0.0, "kl": 0.0}, "relations": {"source": "embeddings", "loss": "distance+angle"}}


def test_the_relation_from_embeddings_moves_the_backbone_not_the_head_and_skips_rows_without_one(tiny_student):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_student, dtype=torch.float32)
    add_kd_head(model, KDConfig(**ONLY_RELATIONS))
    (ids_a, mask_a, t_a), (ids_b, mask_b, t_b) = (_targets(model.config.vocab_size, s) for s in (0, 1))
    ids, mask = torch.cat([ids_a, ids_b]), torch.cat([mask_a, mask_b])
    targets = {key: torch.cat([t_a[key], t_b[key]]) for key in t_a}
    vectors = torch.randn(4, 12, generator=torch.Generator().manual_seed(3))
    present = torch.tensor([True, True, False, True])  # the third example has no stored embedding
    taught = {"embeddings": vectors, "embedding_mask": present}

    out = model(input_ids=ids, attention_mask=mask, kd_targets=targets, kd_teacher=taught)
    out.loss.backward()

    moved = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert "model.layers.0.self_attn.q_proj.weight" in moved and "model.norm.weight" in moved
    assert out.loss.item() == pytest.approx(out.relation.item()) and out.relation.item() > 0
    with torch.no_grad():  # the examples with a vector, and only they, form the relations
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        answer = (targets["labels"] != -100).float()[..., None]
        pooled = (hidden * answer).sum(1) / answer.sum(1)
    expected = relation_loss(pooled[present], vectors[present], "distance+angle")
    assert out.relation.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_collator_pads_missing_embeddings_and_masks_them():
    row = {
        "input_ids": [1, 2],
        "labels": [-100, 2],
        "kd_ids": [[], [2]],
        "kd_logprobs": [[], [-0.1]],
        "kd_mask": [0, 1],
    }
    batch = PaddingCollator(0)([{**row, "teacher_embedding": [0.5, -1.0]}, {**row, "teacher_embedding": None}])
    assert batch["teacher_embedding"].tolist() == [[0.5, -1.0], [0.0, 0.0]]
    assert batch["teacher_embedding_mask"].tolist() == [True, False]


def test_training_on_relations_from_embeddings_moves_the_student_and_the_loss_falls(tmp_path, tiny_student, tokenizer):
    path = write_kept_project(tmp_path, tiny_student, tokenizer, kd=ONLY_RELATIONS, max_steps=12, epochs=6)
    config = add_embeddings(path)
    build.run(config)

    summary = train.run(config)

    saved = json.loads(config.layout.train_summary.read_text())
    assert set(saved["loss_parts"]) == {"ce", "kl", "relation"}
    assert saved["loss_weights"] == {"ce": 0.0, "kl": 0.0, "relation": 1.0}
    relation = [entry["parts"]["relation"] for entry in saved["loss_history"]]
    assert relation[-1] < relation[0] and summary.train_loss_last < summary.train_loss_first
    assert saved["local_teacher"] is None  # no local teacher was loaded
    before = load_weights(tiny_student / "model.safetensors")
    after = load_weights(config.layout.student_dir / "model.safetensors")
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert "model.layers.3.mlp.down_proj.weight" in changed and "model.norm.weight" in changed
    card = (config.layout.student_dir / "README.md").read_text()
    assert "relation = RKD distance+angle (Huber) between the student's last hidden states mean-pooled" in card
    assert "the teacher's harvested embeddings of the answers (teacher_embedding)" in card


@pytest.mark.parametrize("embeddings", ["off", "none-stored"])
def test_relations_from_embeddings_without_any_in_the_kd_dataset_is_exit_2(
    tmp_path, tiny_student, tokenizer, capsys, embeddings
):
    path = write_kept_project(tmp_path, tiny_student, tokenizer, kd=ONLY_RELATIONS)
    # off: no teacher_embedding column at all; none-stored: the column, every row null
    build.run(load_config(path) if embeddings == "off" else add_embeddings(path, every=None))
    assert main(["train", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{path}:" in err
    assert "student.kd.relations.source is embeddings, but the KD dataset" in err
    assert "set harvest.embeddings, then run `synthdistill harvest`" in err
