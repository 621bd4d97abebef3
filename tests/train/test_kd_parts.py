"""The KD loss as named parts: ce, kl, feature (hidden states) and relation (RKD) with a local teacher.

Each part must move the parameters it reaches and no others, the teacher never gets a gradient,
every part is logged, and the saved student has no projection weights.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from synthdistill import build, train
from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.errors import ConfigError
from synthdistill.student_config import KDConfig
from synthdistill.train.kd_head import add_kd_head
from synthdistill.train.local_teacher import LocalTeacher, teacher_reference
from synthdistill.train.loss_parts import FeatureProjections, evenly_spaced_pairs, layer_pairs, relation_loss
from tests.train.test_kd_head import _targets
from tests.training_fixtures import load_weights, write_kept_project, write_tiny_llama

ONLY_REPRESENTATIONS = {"ce": 0.0, "kl": 0.0}


@pytest.fixture(scope="module")
def untied_student(smollm2_dir, tmp_path_factory):
    """4 layers, width 64, an LM head of its own (not tied to the embeddings)."""
    return write_tiny_llama(tmp_path_factory.mktemp("student"), smollm2_dir, layers=4, tie=False)


@pytest.fixture(scope="module")
def wide_teacher(smollm2_dir, tmp_path_factory):
    """6 layers, width 96: a projection is needed between the widths."""
    return write_tiny_llama(tmp_path_factory.mktemp("teacher"), smollm2_dir, layers=6, hidden=96, seed=1)


def _backward(student_dir, teacher_dir, settings: KDConfig, pairs=None):
    """One KD forward + backward; returns (output, names of the student's parameters with a non-zero gradient)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    teacher = LocalTeacher("teacher", teacher_dir, torch.device("cpu"), use_gpu=False)
    projections = FeatureProjections(pairs, 64, teacher.width) if pairs else None
    add_kd_head(model, settings, projections)
    (ids_a, mask_a, targets_a), (ids_b, mask_b, targets_b) = (_targets(model.config.vocab_size, s) for s in (0, 1))
    input_ids, attention_mask = torch.cat([ids_a, ids_b]), torch.cat([mask_a, mask_b])  # 4 examples: relations need 3
    targets = {key: torch.cat([targets_a[key], targets_b[key]]) for key in targets_a}
    online = settings.temperature if settings.online else None
    taught = teacher.run(input_ids, attention_mask, targets["labels"], online_temperature=online)
    out = model(input_ids=input_ids, attention_mask=attention_mask, kd_targets=targets, kd_teacher=taught)
    out.loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
    assert not teacher.model.training
    moved = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    return out, moved, [name for name, _ in model.named_parameters()]


def test_the_feature_part_alone_moves_the_paired_layers_and_the_projection_only(untied_student, wide_teacher):
    settings = KDConfig(weights=ONLY_REPRESENTATIONS, features={"layers": [[1, 3]], "weight": 2.0})
    out, moved, names = _backward(untied_student, wide_teacher, settings, pairs=[(1, 3)])

    reached = ("model.embed_tokens.", "model.layers.0.", "model.layers.1.", "kd_feature_projections.")
    assert moved == {name for name in names if name.startswith(reached)}
    assert "lm_head.weight" not in moved and not any(n.startswith(("model.layers.2.", "model.norm")) for n in moved)
    assert out.loss.item() == pytest.approx(2.0 * out.feature.item(), rel=1e-6)
    assert out.ce.item() > 0 and out.kl.item() > 0  # still reported, not trained on
    assert out.relation is None


def test_the_relation_part_alone_moves_the_backbone_but_not_the_lm_head(untied_student, wide_teacher):
    settings = KDConfig(weights=ONLY_REPRESENTATIONS, relations={"loss": "distance", "weight": 1.0})
    out, moved, names = _backward(untied_student, wide_teacher, settings)

    assert moved == {name for name in names if name != "lm_head.weight"}
    assert out.loss.item() == pytest.approx(out.relation.item(), rel=1e-6) and out.relation.item() > 0
    assert out.feature is None


def test_ce_and_kl_alone_are_the_logit_loss_with_those_weights(untied_student, wide_teacher):
    settings = KDConfig(weights={"ce": 0.25, "kl": 2.0})
    assert settings.loss_weights() == {"ce": 0.25, "kl": 2.0}
    assert KDConfig(alpha=0.2, temperature=2.0).loss_weights() == pytest.approx({"ce": 0.2, "kl": 3.2})
    out, moved, names = _backward(untied_student, wide_teacher, settings)
    assert out.loss.item() == pytest.approx(0.25 * out.ce.item() + 2.0 * out.kl.item(), rel=1e-6)
    assert "lm_head.weight" in moved and "model.norm.weight" in moved


@pytest.mark.parametrize("weights", [{"ce": 1.0, "kl": 0.0}, {"ce": 0.0, "kl": 1.0}], ids=["ce", "kl"])
def test_ce_alone_and_kl_alone_move_every_student_weight_and_not_the_projection(untied_student, wide_teacher, weights):
    settings = KDConfig(weights=weights)
    out, moved, names = _backward(untied_student, wide_teacher, settings, pairs=[(1, 3)])

    # the logits depend on every weight of the student; a projection outside the loss gets no gradient
    assert "kd_feature_projections.maps.0.weight" in names
    assert moved == {name for name in names if not name.startswith("kd_feature_projections.")}
    part = "ce" if weights["ce"] else "kl"
    assert out.loss.item() == pytest.approx(getattr(out, part).item(), rel=1e-6)
    assert out.feature is None and out.relation is None


def test_online_kl_is_the_dense_kl_to_the_teachers_full_distribution(untied_student, wide_teacher):
    from transformers import AutoModelForCausalLM

    settings = KDConfig(weights={"ce": 0.0, "kl": 1.0}, online=True, temperature=2.0)
    out, moved, names = _backward(untied_student, wide_teacher, settings)

    student = AutoModelForCausalLM.from_pretrained(untied_student, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(wide_teacher, dtype=torch.float32)
    (ids_a, mask_a, targets_a), (ids_b, mask_b, targets_b) = (_targets(student.config.vocab_size, s) for s in (0, 1))
    ids, mask = torch.cat([ids_a, ids_b]), torch.cat([mask_a, mask_b])
    rows = torch.cat([targets_a["labels"], targets_b["labels"]])[:, 1:] != -100
    with torch.no_grad():
        s = torch.log_softmax(student(input_ids=ids, attention_mask=mask).logits[:, :-1][rows] / 2.0, -1)
        t = torch.log_softmax(teacher(input_ids=ids, attention_mask=mask).logits[:, :-1][rows] / 2.0, -1)
    dense = (t.exp() * (t - s)).sum(-1).mean()
    assert out.kl.item() == pytest.approx(dense.item(), rel=1e-4)
    assert out.loss.item() == pytest.approx(out.kl.item(), rel=1e-6)  # ce has weight 0
    assert moved == set(names)  # the full-vocabulary KL reaches every parameter, the LM head included


def test_rkd_is_zero_for_scaled_copies_and_positive_otherwise():
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    for kind in ("distance", "angle", "distance+angle"):
        # distances are divided by their mean and angles ignore scale: a scaled copy has the same relations
        assert relation_loss(x, 3.0 * x, kind).item() == pytest.approx(0.0, abs=1e-6)
        assert relation_loss(x, torch.randn(5, 8), kind).item() > 0
    assert relation_loss(x[:2], torch.randn(2, 8), "distance").item() == 0.0  # an epoch's short last batch adds nothing


def test_layer_pairs_auto_uses_the_pruned_layers_else_evenly_spaced():
    assert layer_pairs("auto", 3, 6, [0, 2, 5]) == [(0, 0), (1, 2), (2, 5)]
    assert layer_pairs("auto", 4, 6, None) == evenly_spaced_pairs(4, 6) == [(0, 0), (1, 2), (2, 3), (3, 5)]
    with pytest.raises(ConfigError, match=r"pair \[4, 1\] is out of range: the student has 4 layers \(0..3\)"):
        layer_pairs([[4, 1]], 4, 6, None)


def _project(tmp_path, student_dir, tokenizer, **student):
    config = load_config(write_kept_project(tmp_path, student_dir, tokenizer, method="kd", **student))
    build.run(config)
    return config


def test_training_logs_every_part_measures_the_teacher_and_drops_the_projection(
    tmp_path, untied_student, wide_teacher, tokenizer
):
    kd = {
        "weights": {"ce": 0.5, "kl": 0.5},
        "teacher": str(wide_teacher),
        "features": {"layers": [[1, 3], [3, 5]], "loss": "cosine", "weight": 1.0},
        "relations": {"loss": "distance+angle", "weight": 0.5},
    }
    config = _project(tmp_path, untied_student, tokenizer, kd=kd, max_steps=4, checkpoint_every=2)

    summary = train.run(config)

    saved = json.loads((config.run_dir / "student" / "train.json").read_text())
    names = {"ce", "kl", "feature", "relation"}
    assert set(saved["loss_parts"]) == names
    assert all(set(entry["parts"]) == names for entry in saved["loss_history"])
    assert saved["loss_weights"] == {"ce": 0.5, "kl": 0.5, "feature": 1.0, "relation": 0.5}
    assert saved["loss_parts"]["feature"]["last"] < saved["loss_parts"]["feature"]["first"]
    teacher = saved["local_teacher"]
    teacher_params = sum(t.numel() for t in load_weights(wide_teacher / "model.safetensors").values())
    assert teacher["model"] == str(wide_teacher) and teacher["dtype"] == "float32" and teacher["device"] == "cpu"
    assert teacher["weights_bytes"] == 4 * teacher_params
    assert teacher["forwards"] == summary.steps == 4  # one teacher forward per batch
    assert teacher["forward_seconds_total"] > 0 and teacher["outputs_bytes_max"] > 0
    assert teacher["cuda_peak_extra_bytes_max"] is None  # measured on a GPU only
    assert teacher["feature_layers"] == [[1, 3], [3, 5]]
    # the projection trained (the checkpoints hold it) and is not part of the saved student
    checkpoints = config.run_dir / "student" / "checkpoints"
    early, late = (load_weights(checkpoints / f"checkpoint-{n}" / "model.safetensors") for n in (2, 4))
    key = "kd_feature_projections.maps.0.weight"
    assert early[key].shape == (96, 64) and not torch.equal(early[key], late[key])
    student = load_weights(config.run_dir / "student" / "model.safetensors")
    assert set(student) == set(load_weights(untied_student / "model.safetensors"))
    card = (config.run_dir / "student" / "README.md").read_text()
    assert "loss = 0.5·ce + 0.5·kl + 1·feature + 0.5·relation" in card
    assert "layers (student→teacher) 1→3, 3→5" in card and "relation = RKD distance+angle" in card


def test_a_lora_student_with_feature_and_relation_parts_saves_a_plain_model_without_projection(
    tmp_path, untied_student, wide_teacher, tokenizer
):
    kd = {"teacher": str(wide_teacher), "features": {"layers": [[3, 5]]}, "relations": {"loss": "distance"}}
    lora = {"r": 4, "alpha": 8, "merge_on_save": True}
    config = _project(tmp_path, untied_student, tokenizer, kd=kd, lora=lora, max_steps=3)

    summary = train.run(config)

    assert summary.lora and set(summary.loss_parts) == {"ce", "kl", "feature", "relation"}
    before = load_weights(untied_student / "model.safetensors")
    after = load_weights(config.run_dir / "student" / "model.safetensors")
    assert set(after) == set(before)  # merged: a plain model, without the projection
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(".layers." in name and name.endswith("proj.weight") for name in changed)


def test_online_kd_the_default_local_teacher_and_auto_layers_of_a_pruned_init(tmp_path, wide_teacher, tokenizer):
    kd = {"teacher": str(wide_teacher), "features": {"layers": "auto", "loss": "mse"}, "online": True}
    config = _project(tmp_path, wide_teacher, tokenizer, kd=kd, init={"prune_layers_to": 3}, max_steps=1)
    saved = train.run(config).model_dump()
    assert saved["local_teacher"]["feature_layers"] == [[0, 0], [1, 2], [2, 5]]  # where the pruned layers came from
    assert set(saved["loss_parts"]) == {"ce", "kl", "feature"}
    card = (config.run_dir / "student" / "README.md").read_text()
    assert f"`{wide_teacher}`'s full distribution over the vocabulary (online)" in card
    # without student.kd.teacher: the in-process harvest teacher; an API teacher has no hidden states to give
    default = load_config(write_kept_project(tmp_path / "d", wide_teacher, tokenizer, kd={"relations": {}}))
    assert teacher_reference(default) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    api = default.model_copy(update={"teacher": default.teacher.model_copy(update={"backend": "openai"})})
    with pytest.raises(ConfigError, match="set student.kd.teacher to a local folder or embedded model id"):
        teacher_reference(api)


def _train_cli(tmp_path, student_dir, tokenizer, capsys, **student) -> tuple[int, str]:
    path = write_kept_project(tmp_path, student_dir, tokenizer, method="kd", **student)
    build.run(load_config(path))
    rc = main(["train", "-c", str(path)])
    return rc, capsys.readouterr().err


def test_a_batch_too_small_for_angles_is_a_clear_config_error(tmp_path, untied_student, tokenizer, capsys):
    kd = {"relations": {"loss": "angle"}}
    rc, err = _train_cli(tmp_path, untied_student, tokenizer, capsys, kd=kd, batch_size=2)
    assert rc == 2 and "Traceback" not in err
    assert "student.kd.relations.loss angle compares examples within a batch and needs student.batch_size >= 3" in err


def test_alpha_and_weights_together_and_all_zero_weights_are_refused(tmp_path, untied_student, tokenizer, capsys):
    path = write_kept_project(tmp_path, untied_student, tokenizer)
    data = yaml.safe_load(path.read_text())
    for kd, message in [
        (
            {"alpha": 0.3, "weights": {"ce": 1, "kl": 0}},
            "'student.kd': set either alpha or weights: {ce, kl}, not both",
        ),
        ({"weights": {"ce": 0, "kl": 0}}, "'student.kd': every loss part has weight 0: nothing would be trained"),
    ]:
        data["student"]["kd"] = kd
        path.write_text(yaml.safe_dump(data))
        assert main(["train", "-c", str(path)]) == 2
        assert message in capsys.readouterr().err
