"""The trained student's model card (design §9): lineage, teacher, policy decision, obligations, eval results.

`train` writes it; `eval` writes it again with the held-out results as `model-index` (the Hub's
evaluation-results metadata, built with huggingface_hub's `ModelCardData` / `EvalResult`).
Models are named by their Hub id where there is one (an embedded model's id, or a reference
spelled `org/name`); a local folder keeps its path. `datasets:` lists the built dataset by its
name, `<run>-<kind>` (its card's name and the ML-BOM's): nothing is pushed to the Hub, so there
is no Hub id to give, and a path in the run folder would mean nothing off this machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from synthdistill.config import DistillConfig
from synthdistill.dataset_cards import HF_LICENCES, dataset_name
from synthdistill.model_store import embedded_model, hub_id
from synthdistill.policy import Decision, obligations_markdown, override_lines
from synthdistill.pricing import describe_cost
from synthdistill.run_layout import HELD_OUT_SPLIT
from synthdistill.safe_write import write_text
from synthdistill.student_config import KDConfig

# eval.json metric → (model-index metric type, a readable name)
METRICS = {
    "nll_per_token": ("nll_per_token", "NLL per token of the teacher's held-out answers (nats; lower is better)"),
    "top1_agreement": ("top1_agreement", "Top-1 agreement with the teacher"),
    "kd_kl": ("kl_divergence", "KL(teacher top-k + tail || student) on KD positions"),
    "teacher_nll_on_student_samples": (
        "teacher_nll_on_student_samples",
        "Teacher's NLL per token of the student's own sampled answers to held-out prompts (nats; lower is better)",
    ),
}


def _student_licence(reference: str) -> dict[str, str]:
    model = embedded_model(reference)
    if model is not None and model.licence in HF_LICENCES:
        return {"license": HF_LICENCES[model.licence]}
    if model is not None:
        return {"license": "other", "license_name": model.licence}
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
        cross = teacher.get("cross_tokenizer")
        where = (
            f"mean-pooled over the byte segments both tokenizers split alike ({cross['matched_share']:.0%} of the "
            "answer bytes)"
            if cross
            else "at the answer tokens"
        )
        parts.append(
            f"feature = {kd.features.loss} distance between the student's and the local teacher "
            f"`{teacher.get('model')}`'s hidden states {where}, layers (student→teacher) {layers}"
        )
    if kd.relations is not None and kd.relations.source == "embeddings":
        parts.append(
            f"relation = RKD {kd.relations.loss} (Huber) between the student's last hidden states mean-pooled over "
            "each answer and the teacher's harvested embeddings of the answers (teacher_embedding), within each batch"
        )
    elif kd.relations is not None:
        parts.append(
            f"relation = RKD {kd.relations.loss} (Huber) between the student's and the teacher "
            f"`{teacher.get('model')}`'s last hidden states mean-pooled over each answer, within each batch"
        )
    return f" (loss = {terms}; " + "; ".join(parts) + ")"


def on_policy_recipe(summary: dict[str, Any]) -> list[str]:
    """The card's account of an on-policy run: rounds, samples, teacher tokens scored, endpoint, decision."""
    info = summary.get("on_policy") or {}
    batches = info.get("batches", {})
    share = summary.get("teacher_target_share")
    return [
        f"- On-policy rounds: {info.get('rounds')} × {info.get('steps_per_round')} steps; each round the student "
        f"sampled {info.get('samples_per_prompt')} answer(s) to each of {info.get('prompts_per_round')} training "
        f"prompts (temperature {info.get('temperature')}, at most {info.get('max_new_tokens')} tokens) and the "
        f"teacher scored them (top-{info.get('scoring_top_k')})",
        f"- Samples scored: {info.get('samples_scored')} ({info.get('samples_trained')} with teacher targets); "
        f"teacher tokens scored: {info.get('teacher_tokens_scored')} (prompt tokens: {info.get('prompt_tokens_scored')}); "
        f"share of the student's tokens with teacher targets: {share}",
        f"- Loss: generalised JSD with beta {info.get('beta')} over the teacher's top-k + tail on "
        f"{batches.get('on-policy', 0)} on-policy batches; lambda {info.get('lambda')}: "
        f"{batches.get('offline', 0)} offline KD batches",
        f"- Scoring endpoint(s): {', '.join(info.get('scoring_endpoints') or []) or 'none'}; gate decision: "
        f"{info.get('decision')} (policy {info.get('policy_id')})",
    ]


def _named(reference: str, project_dir: Path) -> str:
    """A model as the card names it: its Hub id (linked) where there is one, else the reference."""
    found = hub_id(reference, project_dir)
    return f"[`{found}`](https://huggingface.co/{found})" if found else f"`{reference}`"


def eval_results(config: DistillConfig, evaluation: dict[str, Any], dataset: str) -> list:
    """The trained student's eval.json metrics as huggingface_hub EvalResults (the card's model-index)."""
    from huggingface_hub import EvalResult

    trained = evaluation.get("trained") or {}
    common = {
        "task_type": "text-generation",
        "task_name": "Distillation from the teacher",
    }
    held_out = {
        "dataset_type": dataset,
        "dataset_name": f"{dataset} ({HELD_OUT_SPLIT})",
        "dataset_split": HELD_OUT_SPLIT,
    }
    results = [
        EvalResult(**common, **held_out, metric_type=kind, metric_name=name, metric_value=trained[key])
        for key, (kind, name) in METRICS.items()
        if trained.get(key) is not None
    ]
    if evaluation.get("nll_gap_closed") is not None:
        results.append(
            EvalResult(
                **common,
                **held_out,
                metric_type="nll_gap_closed",
                metric_name="Share of the teacher's NLL gap closed",
                metric_value=evaluation["nll_gap_closed"],
            )
        )
    for pack, rate in sorted((trained.get("verifier_pass_rate") or {}).items()):
        results.append(
            EvalResult(
                **common,
                dataset_type=dataset,
                dataset_name=f"pack {pack}: held-out prompts, the student's greedy answers",
                dataset_split=HELD_OUT_SPLIT,
                metric_type="verifier_pass_rate",
                metric_name=f"Verifier pass rate ({pack})",
                metric_value=rate,
            )
        )
    return results


def card_metadata(config: DistillConfig, summary: dict[str, Any], evaluation: dict[str, Any] | None) -> dict:
    """The card's YAML metadata, via huggingface_hub's ModelCardData (so the Hub reads what we write)."""
    from huggingface_hub import ModelCardData

    student = config.require_student("train")
    kind = "kd" if summary["method"] == "kd" else "sft"
    dataset = dataset_name(config.name, kind)
    results = eval_results(config, evaluation, dataset) if evaluation else []
    data = ModelCardData(
        base_model=hub_id(student.model, config.project_dir) or student.model,
        base_model_relation="finetune",
        datasets=[dataset],
        **_student_licence(student.model),
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["synthdistill", "distillation", f"{summary['method']}-student"],
        model_name=student.name or config.name,
        eval_results=results or None,
    )
    return data.to_dict()


def _eval_lines(evaluation: dict[str, Any] | None) -> list[str]:
    if not evaluation:
        return ["Not evaluated yet: `synthdistill eval` adds the held-out results here and to `model-index`."]
    models = [m for m in ("untrained", "trained", "teacher") if isinstance(evaluation.get(m), dict)]
    rows = [
        f"| {name} | " + " | ".join(str(evaluation[m].get(key)) for m in models) + " |"
        for key, (_, name) in METRICS.items()
        if evaluation["trained"].get(key) is not None
    ]
    gap = evaluation.get("nll_gap_closed")
    return [
        f"On the `{HELD_OUT_SPLIT}` split ({evaluation.get('examples')} held-out teacher answers), "
        "the starting weights against the trained student"
        + (" and the teacher itself:" if "teacher" in models else ":"),
        "",
        "| metric | " + " | ".join(models) + " |",
        "|---" * (len(models) + 1) + "|",
        *rows,
        *(["", f"Share of the teacher's NLL gap closed: {gap}."] if gap is not None else []),
    ]


def _method_recipe(kd: KDConfig, summary: dict[str, Any]) -> str:
    if summary["method"] == "kd":
        return kd_recipe(kd, summary)
    if summary["method"] == "on-policy":
        return " (the teacher scored the student's own samples; see below)"
    return " (cross-entropy on the teacher's answers)"


def write_model_card(
    config: DistillConfig, summary: dict[str, Any], decision: Decision, evaluation: dict[str, Any] | None = None
) -> Path:
    """Write README.md with Hub metadata into the student folder (with eval.json's results once `eval` ran)."""
    student = config.require_student("train")
    layout = config.layout
    metadata = card_metadata(config, summary, evaluation)
    datasets = metadata["datasets"]
    init = student.init.prune_layers_to if student.init else None
    teacher = config.teacher
    kind = "kd" if summary["method"] == "kd" else "sft"
    lineage = [
        f"- Starting weights: {_named(student.model, config.project_dir)}"
        + (f", depth-pruned to {init} evenly spaced layers before training" if init else ""),
        f"- Teacher: {_named(teacher.model, config.project_dir)} ({teacher.backend} backend); what it charged "
        f"for the training answers: {_teacher_cost(layout.dataset_provenance(kind))}",
        f"- Training data: {', '.join(f'`{d}`' for d in datasets)} (`{layout.relative(layout.datasets_dir)}/`; "
        "prompt packs: " + ", ".join(f"`{p}`" for p in config.harvest.packs) + ")",
        f"- Method: {summary['method']}" + _method_recipe(student.kd, summary),
        f"- Steps: {summary['steps']} ({summary['examples']} training rows, {summary['epochs']:.2f} epochs), "
        f"loss {summary['train_loss_first']:.4f} → {summary['train_loss_last']:.4f}",
    ]
    if summary["method"] == "on-policy":
        lineage.extend(on_policy_recipe(summary))
    if student.lora:
        lineage.append(
            f"- LoRA r={student.lora.r}, alpha={student.lora.alpha}"
            + (" (merged into the weights)" if student.lora.merge_on_save else " (adapter only)")
        )
    if summary.get("chat_template"):
        lineage.append(f"- Chat template: {summary['chat_template']}")
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
        "## Evaluation",
        "",
        *_eval_lines(evaluation),
        "",
        obligations_markdown(decision),
    ]
    text = "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---\n\n" + "\n".join(body).rstrip() + "\n"
    path = layout.student_card
    write_text(path, text, inside=config.run_dir)
    return path
