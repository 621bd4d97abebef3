"""The student's starting weights: a local folder, an embedded model, or a depth-pruned copy.

Depth pruning keeps evenly spaced decoder layers (first and last included), the way
DistilBERT and Minitron initialise students: the copy keeps the teacher family's
embeddings and tokenizer, so it starts far closer to the teacher than random weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from synthdistill.config import DistillConfig
from synthdistill.errors import ConfigError
from synthdistill.model_store import resolve_model
from synthdistill.run_layout import RunLayout


def evenly_spaced_layers(total: int, keep: int) -> list[int]:
    """Indices of `keep` layers spread evenly over `total`, always including the first and the last."""
    if keep >= total:
        return list(range(total))
    if keep == 1:
        return [0]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def decoder_layers(model):
    """The model's list of decoder layers (Llama-style `model.model.layers`)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ConfigError(
            f"cannot prune {type(model).__name__}: it has no `model.layers` list of decoder layers; "
            "use a Llama-style model or drop student.init.prune_layers_to"
        )
    return inner, layers


def prune_layers(model, keep: int) -> list[int]:
    """Keep `keep` evenly spaced decoder layers of `model` in place; returns the kept indices."""
    import torch

    inner, layers = decoder_layers(model)
    kept = evenly_spaced_layers(len(layers), keep)
    inner.layers = torch.nn.ModuleList([layers[i] for i in kept])
    for new_index, layer in enumerate(inner.layers):
        attention = getattr(layer, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = new_index  # the KV cache is indexed by position in the list
    model.config.num_hidden_layers = len(kept)
    layer_types = getattr(model.config, "layer_types", None)
    if layer_types:
        model.config.layer_types = [layer_types[i] for i in kept]
    return kept


def prepare_student(config: DistillConfig) -> Path:
    """Folder with the student's starting weights; builds (once) the pruned copy when `init` asks for it."""
    student = config.require_student("train")
    source = resolve_model(student.model, config.project_dir)
    if student.init is None or student.init.prune_layers_to is None:
        return source
    keep = student.init.prune_layers_to
    layout = config.layout
    marker = layout.student_init_recipe
    recipe = {"source": str(source), "prune_layers_to": keep}
    if marker.exists() and json.loads(marker.read_text()).get("recipe") == recipe:
        return layout.student_init_dir
    _write_pruned_copy(source, layout, keep, recipe)
    return layout.student_init_dir


def _write_pruned_copy(source: Path, layout: RunLayout, keep: int, recipe: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    total = len(decoder_layers(model)[1])
    if keep > total:
        raise ConfigError(f"student.init.prune_layers_to is {keep} but {source.name} has only {total} layers")
    kept = prune_layers(model, keep)
    target = layout.student_init_dir
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    AutoTokenizer.from_pretrained(source).save_pretrained(partial)
    info = {"recipe": recipe, "kept_layers": kept, "of_layers": total}
    (partial / layout.student_init_recipe.name).write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # a crash mid-write never leaves a half copy under the real name
