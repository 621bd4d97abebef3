"""The student's model card (huggingface_hub's ModelCard reads it) and the ML-BOM, from train through eval and audit."""

from __future__ import annotations

import json

from synthdistill import audit, build, evaluate, train
from synthdistill.config import load_config
from tests.test_audit_report import _cyclonedx_validator
from tests.training_fixtures import write_kept_project

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_cards_and_bom_name_models_by_hub_id_and_carry_the_eval_results(tmp_path, smollm2_dir, tokenizer):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    # the embedded SmolLM2, by its Hub id, depth-pruned to 2 layers: a real base model that trains in seconds
    path = write_kept_project(
        tmp_path, SMOLLM2, tokenizer, method="kd", max_steps=3, init={"prune_layers_to": 2}, name="tiny-student"
    )
    config = load_config(path)
    build.run(config)
    train.run(config)
    card_path = config.layout.student_card

    card = ModelCard.load(card_path)  # a local file: nothing is fetched
    assert card.data.base_model == SMOLLM2 and card.data.base_model_relation == "finetune"
    assert card.data.datasets == ["tiny-kd"]  # the KD dataset's name in its own card and in the BOM
    assert card.data.license == "apache-2.0" and card.data.eval_results is None
    link = f"[`{SMOLLM2}`](https://huggingface.co/{SMOLLM2})"
    assert f"- Starting weights: {link}, depth-pruned to 2 evenly spaced layers before training" in card.text
    assert f"- Teacher: {link} (transformers backend); what it charged for the training answers: " in card.text
    assert "Not evaluated yet" in card.text

    result = evaluate.run(config)

    card = ModelCard.load(card_path)
    assert card.data.model_name == "tiny-student"
    by_metric = {r.metric_type: r for r in card.data.eval_results}
    assert {kind: r.metric_value for kind, r in by_metric.items()} == {
        "nll_per_token": result["trained"]["nll_per_token"],
        "top1_agreement": result["trained"]["top1_agreement"],
        "kl_divergence": result["trained"]["kd_kl"],
        "nll_gap_closed": result["nll_gap_closed"],  # the in-process teacher was scored too
        # the in-process teacher can score: its NLL of the student's own samples is reported too
        "teacher_nll_on_student_samples": result["trained"]["teacher_nll_on_student_samples"],
    }
    for r in card.data.eval_results:
        assert (r.task_type, r.dataset_type, r.dataset_split) == ("text-generation", "tiny-kd", "validation")
    name, parsed = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert name == "tiny-student" and parsed == card.data.eval_results
    trained_nll = result["trained"]["nll_per_token"]
    assert "| NLL per token of the teacher's held-out answers (nats; lower is better) | " in card.text
    teacher_nll = result["teacher"]["nll_per_token"]
    assert f"| {result['untrained']['nll_per_token']} | {trained_nll} | {teacher_nll} |" in card.text
    assert f"Share of the teacher's NLL gap closed: {result['nll_gap_closed']}." in card.text

    audit.run(config.run_dir, config)

    bom = json.loads(config.layout.bom.read_text())
    errors = list(_cyclonedx_validator().iter_errors(bom))
    assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    student, teacher = by_ref["student"], by_ref["teacher"]
    assert student["licenses"] == [{"expression": "Apache-2.0"}]  # SPDX, as the teacher's
    assert teacher["licenses"] == [{"expression": "Apache-2.0"}]
    assert student["pedigree"] == {"ancestors": [{"type": "machine-learning-model", "name": SMOLLM2}]}
    assert student["modelCard"]["modelParameters"]["datasets"] == [{"ref": "dataset:kd"}]
    metrics = student["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    held_out = "held-out split (2 teacher answers)"
    assert {"type": "nll_per_token", "value": str(trained_nll), "slice": f"trained student, {held_out}"} in metrics
    assert {
        "type": "kd_kl",
        "value": str(result["untrained"]["kd_kl"]),
        "slice": f"untrained student, {held_out}",
    } in metrics
    assert {"type": "nll_per_token", "value": str(teacher_nll), "slice": f"teacher, {held_out}"} in metrics
    assert {"type": "nll_gap_closed", "value": str(result["nll_gap_closed"]), "slice": held_out} in metrics
    assert len(metrics) == 10  # three metrics for each student and the teacher, and the gap closed
