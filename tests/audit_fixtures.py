"""A real run folder for the audit tests: harvest against the fake OpenAI server, filter, SFT build.

The project (in tmp_path) has its own pack and its own policy (`policies/fake.yaml`),
so the run's terms are known exactly. Of the six prompts, the first request gets a 500
(no retries: it is recorded as failed), two are cut off at max_tokens (the `finished`
filter drops them) and three become SFT rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.openai_server import FakeOpenAIServer

TEACHER = "fake-teacher-7b"
ANSWERED_AS = "fake-teacher-7b-2026-01"
QUESTIONS = [
    "Name a colour.",  # the first request: fails with a 500
    "What is two plus two?",
    "Say hello.",
    "Why is the sky blue on a clear summer day near noon?",  # cut off at max_tokens
    "Define entropy.",
    "Explain in detail how a refrigerator moves heat from inside to outside.",  # cut off
]
KEPT = 3
POLICY = """\
id: fake-teacher
title: Fake Teacher Model Licence 1.0
kind: weights-licence
applies_to: {models: ["fake-teacher-*"], hosts: []}
document: {url: "https://example.org/fake-teacher/LICENSE", version: "2026-01-15", retrieved: "2026-11-22", sha256: null}
licence: {spdx: "LicenseRef-fake-teacher-1.0", name: "Fake Teacher Licence 1.0"}
outputs_for_training: allowed
clause: "§2.1: Outputs may be used to train other models if they credit the Fake Teacher."
obligations:
  - {id: attribution, text: 'Display "Built with Fake Teacher" in the student documentation'}
  - {id: name-prefix, text: 'Distributed student names must begin with "Fake"', check: {name_prefix: "Fake"}, when: distributing}
requires_attestation: false
notes: "A test policy."
"""
PACK = """\
name: audit-demo
version: 1.2.0
description: Short questions for the audit tests.
licence: CC-BY-4.0
source: "written for the synthdistill tests"
template: "{{ question }}"
rows: rows.jsonl
sampling: {max_tokens: 9}
"""


@dataclass
class AuditRun:
    project: Path
    config_path: Path
    run_dir: Path
    config: object


def write_project(root: Path, base_url: str, *, api_key_env: str | None = None, name: str = "audit-run") -> Path:
    """distill.yaml, prompts/audit-demo/ and policies/fake.yaml under `root`; returns the config path."""
    pack = root / "prompts" / "audit-demo"
    pack.mkdir(parents=True)
    (pack / "pack.yaml").write_text(PACK)
    (pack / "rows.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    (root / "policies").mkdir()
    (root / "policies" / "fake.yaml").write_text(POLICY)
    key_line = f"  api_key_env: {api_key_env}\n" if api_key_env else ""
    config = root / "distill.yaml"
    config.write_text(
        f"name: {name}\n"
        "teacher:\n"
        "  backend: openai\n"
        f"  model: {TEACHER}\n"
        f"  base_url: {base_url}\n"
        f"{key_line}"
        "  max_concurrency: 1\n"
        "  max_retries: 0\n"
        "  timeout_s: 10\n"
        "use: {commercial: true, distribute_student: true, competes_with_teacher_provider: false}\n"
        "harvest:\n"
        "  packs: [prompts/audit-demo]\n"
        "  top_logprobs: 3\n"
        "filters: [finished, {dedup: {exact: true}}]\n"
        "datasets: {eval_fraction: 0.34, seed: 0}\n"
    )
    return config


def make_run(root: Path, *, api_key: str | None = None, stages=("harvest", "filter", "build")) -> AuditRun:
    """Run the real stages against a fresh fake server; with `api_key`, the server requires it."""
    from synthdistill import build, filter_stage, harvest
    from synthdistill.config import load_config

    env = "AUDIT_TEST_API_KEY" if api_key else None
    with FakeOpenAIServer(schedule=["500"], model=ANSWERED_AS, require_key=api_key) as server:
        config_path = write_project(root, server.base_url, api_key_env=env)
        config = load_config(config_path)
        if "harvest" in stages:
            summary = harvest.run(config)
            assert (summary.answered, summary.failed) == (len(QUESTIONS) - 1, 1)
    if "filter" in stages:
        filter_stage.run(config)
    if "build" in stages:
        build.run(config)
    return AuditRun(root, config_path, config.run_dir, config)
