"""The trained student's model card (design §9): lineage, teacher, policy decision, obligations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from synthdistill.config import DistillConfig, KDConfig
from synthdistill.dataset_cards import HF_LICENCES
from synthdistill.model_store import embedded_model
from synthdistill.policy import Decision, obligations_markdown, override_lines
from synthdistill.pricing import describe_cost
from synthdistill.safe_write import write_text


def _student_licence(reference: str) -> dict[str, str]:
    model = embedded_model(reference)
    if model is not None and model.licence in HF_LICENCES:
        return {"license": HF_LICENCES[model.licence]}
    # A local folder's licence is not ours to guess: the reviewer must fill it in.
    return {"license": "other", "license_name": "same as the starting weights (not recorded by synthdistill)"}


def _teacher_cost(provenance: Path) -> str:
    """What the teacher charged for a dataset's answers, as its provenance.json records it ("unknown", never $0)."""
    try:
        teacher = json.loads(provenance.read_text(encoding="utf-8"))["teacher"]
        return describe_cost(teacher["cost_usd"], teacher["price_source"])
    except (OSError, ValueError, KeyError, TypeError):
        return "not recorded"


def _weight(value: float) -> str:
    return f"{value:g}"


def kd_recipe(kd: KDConfig, summary: dict[str, Any]) -> str:
    """The KD loss exactly as trained: each part with its weight and what it compares."""
    weights = summary.get("loss_weights") or kd.loss_weights()
    terms = " + ".join(f"{_weight(w)}·{name}" for name, w in weights.items())
    teacher = summary.get("local_teacher") or {}
    kl = (
        f"the local teacher `{teacher.get('model')}`'s full distribution over the vocabulary (online)"
        if kd.online
        else f"the teacher's stored top-k + {kd.tail} tail"
    )
    parts = [
        "ce = cross-entropy on the teacher's answer tokens",
        f"kl = KL(teacher ‖ student) over {kl} at T = {_weight(kd.temperature)}",
    ]
    if kd.features is not None:
        layers = ", ".join(f"{s}→{t}" for s, t in teacher.get("feature_layers") or [])
        parts.append(
            f"feature = {kd.features.loss} distance between the student's and the local teacher "
            f"`{teacher.get('model')}`'s hidden states at the answer tokens, layers (student→teacher) {layers}"
        )
    if kd.relations is not None:
        parts.append(
            f"relation = RKD {kd.relations.loss} (Huber) between the student's and the teacher "
            f"`{teacher.get('model')}`'s last hidden states mean-pooled over each answer, within each batch"
        )
    return f" (loss = {terms}; " + "; ".join(parts) + ")"


def write_model_card(config: DistillConfig, summary: dict[str, Any], decision: Decision) -> Path:
    """Write README.md with Hub metadata into the student folder."""
    student = config.require_student("train")
    layout = config.layout
    kind = summary["method"] if summary["method"] == "kd" else "sft"
    trained_on = layout.dataset_dir(kind)
    datasets = [f"{config.name}/{layout.relative(trained_on)}"]
    metadata = {
        "base_model": student.model,
        "base_model_relation": "finetune",
        "datasets": datasets,
        **_student_licence(student.model),
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["synthdistill", "distillation", f"{summary['method']}-student"],
    }
    init = student.init.prune_layers_to if student.init else None
    lineage = [
        f"- Starting weights: `{student.model}`"
        + (f", depth-pruned to {init} evenly spaced layers before training" if init else ""),
        f"- Teacher: `{config.teacher.model}` ({config.teacher.backend} backend); what it charged for the "
        f"training answers: {_teacher_cost(layout.dataset_provenance(kind))}",
        f"- Training data: {', '.join(f'`{d}`' for d in datasets)} (prompt packs: "
        + ", ".join(f"`{p}`" for p in config.harvest.packs)
        + ")",
        f"- Method: {summary['method']}"
        + (
            kd_recipe(student.kd, summary) if summary["method"] == "kd" else " (cross-entropy on the teacher's answers)"
        ),
        f"- Steps: {summary['steps']} ({summary['examples']} training rows, {summary['epochs']:.2f} epochs), "
        f"loss {summary['train_loss_first']:.4f} → {summary['train_loss_last']:.4f}",
    ]
    if student.lora:
        lineage.append(
            f"- LoRA r={student.lora.r}, alpha={student.lora.alpha}"
            + (" (merged into the weights)" if student.lora.merge_on_save else " (adapter only)")
        )
    body = [
        f"# {student.name or config.name}",
        "",
        "A student model distilled with synthdistill.",
        "",
        *[line + "\n" for line in override_lines(decision)],
        "## Lineage",
        "",
        *lineage,
        "",
        obligations_markdown(decision),
    ]
    text = "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---\n\n" + "\n".join(body).rstrip() + "\n"
    path = layout.student_card
    write_text(path, text, inside=config.run_dir)
    return path
