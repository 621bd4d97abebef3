"""A real run folder for the view tests: the audit fixture's run (harvest, filter, build, audit) plus the
train.json and eval.json that train and eval write, made with their own models."""

from __future__ import annotations

import json
import re
from pathlib import Path

from synthdistill import audit
from synthdistill.train.stage import TrainSummary, first_and_last_parts
from tests.audit_fixtures import make_run

HISTORY = [
    {"step": float(s), "epoch": s / 4, "loss": 2.0 / s, "learning_rate": 1e-3 * (5 - s) / 4, "grad_norm": 1.0}
    | {"parts": {"ce": 3.0 / s, "kl": 1.0 / s}}
    for s in range(1, 5)
]
SAMPLE = {
    "prompt_id": "p1",
    "pack": "audit-demo",
    "messages": [{"role": "user", "content": "Say <b>hello</b>."}],
    "teacher": "Hello there.",
    "untrained": "hello hello hello",
    "trained": "Hello!",
}


def write_student_files(run_dir: Path) -> None:
    """student/train.json and eval.json in the shapes train and eval write them."""
    summary = TrainSummary(
        method="kd",
        steps=4,
        epochs=1.0,
        examples=2,
        train_loss_first=2.0,
        train_loss_last=0.5,
        seconds=1.5,
        start_model="tiny",
        output_dir=str(run_dir / "student"),
        device="cpu",
        kd_loss_path="hidden",
        loss_parts=first_and_last_parts(HISTORY),
        loss_history=HISTORY,
    )
    (run_dir / "student").mkdir(exist_ok=True)
    (run_dir / "student" / "train.json").write_text(summary.model_dump_json(indent=2))
    metrics = {"nll_per_token": 2.5, "top1_agreement": 0.25, "kd_kl": 0.8, "verifier_pass_rate": {"audit-demo": 0.5}}
    trained = {"nll_per_token": 1.25, "top1_agreement": 0.5, "kd_kl": 0.4, "verifier_pass_rate": {"audit-demo": 1.0}}
    result = {"method": "kd", "examples": 1, "untrained": metrics, "trained": trained, "samples": [SAMPLE]}
    (run_dir / "eval.json").write_text(json.dumps(result))


def make_view_run(root: Path):
    """The audit fixture's run with a training summary, an evaluation and an audit."""
    run = make_run(root)
    write_student_files(run.run_dir)
    audit.run(run.run_dir, run.config)
    return run


def page_records(html: str) -> list[dict]:
    """The records the page holds (its JSON block)."""
    found = re.search(r'<script type="application/json" id="records-data">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))
