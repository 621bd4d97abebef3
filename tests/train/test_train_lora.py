"""LoRA training on a tiny student: only the adapter learns; merged and unmerged saves both evaluate."""

from __future__ import annotations

import json

from synthdistill import build, evaluate, train
from synthdistill.config import load_config
from tests.training_fixtures import load_weights as _weights
from tests.training_fixtures import write_kept_project


def _lora_project(tmp_path, tiny_student, tokenizer, merge: bool):
    lora = {"r": 4, "alpha": 8, "merge_on_save": merge}
    config = load_config(write_kept_project(tmp_path, tiny_student, tokenizer, method="kd", lora=lora))
    build.run(config)
    return config


def test_unmerged_lora_trains_only_the_adapter_and_still_evaluates(tmp_path, tiny_student, tokenizer):
    config = _lora_project(tmp_path, tiny_student, tokenizer, merge=False)

    summary = train.run(config)

    assert summary.lora is True
    assert summary.steps == 12
    # the frozen random head and embeddings bound what a rank-4 adapter can do: ~10.4 -> ~10.0 in 12 steps
    assert summary.train_loss_last < summary.train_loss_first - 0.25
    out = config.run_dir / "student"
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    assert not (out / "model.safetensors").exists()  # the base weights are not copied
    saved = _weights(out / "adapter_model.safetensors")
    assert saved and all("lora_A" in name or "lora_B" in name for name in saved)
    # LoRA B starts at zero: a trained adapter has non-zero B matrices
    assert all(tensor.abs().sum() > 0 for name, tensor in saved.items() if "lora_B" in name)

    result = evaluate.run(config)

    assert result["examples"] == 2
    assert result["trained"]["nll_per_token"] < result["untrained"]["nll_per_token"]


def test_merged_lora_saves_a_plain_model_with_changed_weights(tmp_path, tiny_student, tokenizer):
    config = _lora_project(tmp_path, tiny_student, tokenizer, merge=True)

    summary = train.run(config)

    # the frozen random head and embeddings bound what a rank-4 adapter can do: ~10.4 -> ~10.0 in 12 steps
    assert summary.train_loss_last < summary.train_loss_first - 0.25
    out = config.run_dir / "student"
    assert not (out / "adapter_config.json").exists()
    before, after = _weights(tiny_student / "model.safetensors"), _weights(out / "model.safetensors")
    assert set(before) == set(after)  # no lora_A/lora_B names left: a plain model
    changed = {name for name in before if not (before[name] == after[name]).all()}
    # all-linear targets every projection in the decoder layers; embeddings and norms stay frozen
    assert changed and all(".layers." in name and name.endswith("proj.weight") for name in changed)
    assert not any("norm" in name or "embed" in name for name in changed)
    result = evaluate.run(config)
    assert result["trained"]["nll_per_token"] < result["untrained"]["nll_per_token"]


def test_lora_freezes_the_base_weights_during_training(tmp_path, tiny_student, tokenizer, monkeypatch):
    """Inside the trainer: only lora_ parameters require grad, and the base weights do not move."""
    import torch
    from transformers import AutoModelForCausalLM

    from synthdistill.train import stage as train_module

    config = _lora_project(tmp_path, tiny_student, tokenizer, merge=False)
    seen = {}
    original = train_module._save_student

    def spy(trainer, tok, out, merge):
        model = trainer.model
        seen["trainable"] = sorted(n for n, p in model.named_parameters() if p.requires_grad)
        seen["base"] = {
            n.replace("base_model.model.", "").replace(".base_layer", ""): p.detach().clone()
            for n, p in model.named_parameters()
            if "lora_" not in n
        }
        original(trainer, tok, out, merge)

    # a wrapper that records the trained model and then saves it as usual (no behaviour replaced)
    monkeypatch.setattr(train_module, "_save_student", spy)
    train.run(config)

    assert seen["trainable"] and all("lora_A" in n or "lora_B" in n for n in seen["trainable"])
    start = AutoModelForCausalLM.from_pretrained(tiny_student, dtype=torch.float32).state_dict()
    assert set(seen["base"]) <= set(start)
    moved = [n for n, t in seen["base"].items() if not torch.equal(t, start[n])]
    assert moved == []
