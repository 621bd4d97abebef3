"""report.md, the self-contained report.html (rendered in headless Chromium) and the CycloneDX 1.6 ML-BOM."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from synthdistill import audit
from tests.audit_fixtures import ANSWERED_AS, TEACHER, make_run


@pytest.fixture()
def audit_dir(tmp_path) -> Path:
    run = make_run(tmp_path)
    audit.run(run.run_dir, run.config)
    return run.run_dir / "audit"


def test_report_md_names_teacher_terms_decision_and_obligations(audit_dir):
    text = (audit_dir / "report.md").read_text()
    for expected in [
        "# Audit of run `audit-run`",
        f"| **Teacher** | {TEACHER} |",
        "| **Terms** | Fake Teacher Model Licence 1.0 (LicenseRef-fake-teacher-1.0) |",
        "| **Decision** | allow-with-obligations |",
        f"| **Answered as** | {ANSWERED_AS} |",
        "| **Deciding clause** | §2.1: Outputs may be used to train other models if they credit the Fake Teacher. |",
        "| **Document** | [https://example.org/fake-teacher/LICENSE](https://example.org/fake-teacher/LICENSE) |",
        "| **Attestation** | none given |",
        '| attribution | Display "Built with Fake Teacher" in the student documentation | fake-teacher | no (you must do it) |',
        '| name-prefix | Distributed student names must begin with "Fake" | fake-teacher | yes: the student\'s name must begin with "Fake" |',
        "| prompt pack: audit-demo 1.2.0 | CC-BY-4.0 | 1.2.0 | written for the synthdistill tests | input |",
        "| sft | commercial | required | no |",
        "| answered | 5 | 1 | teacher error 500: 1 |",
        "| filter: finished | 3 | 2 | truncated: 2 |",
        "| SFT dataset rows | 3 | 0 |  |",
        "## Artifacts (10 files)",
    ]:
        assert expected in text, expected


def test_report_html_is_self_contained_with_an_svg_funnel_and_the_licence_table(audit_dir):
    html = (audit_dir / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    # No external assets: no linked stylesheets, scripts, images, fonts or imports.
    assert not re.search(r"<link\b|\bsrc\s*=|@import|url\(", html)
    assert '<svg class="funnel"' in html and html.count("<rect ") == 5
    assert "<th>component</th><th>licence / terms</th>" in html
    assert f"teacher outputs: {TEACHER}" in html and "prompt pack: audit-demo 1.2.0" in html
    assert '<a href="https://example.org/fake-teacher/LICENSE" rel="noreferrer">' in html


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_html_loads_in_headless_chromium_without_errors(audit_dir, tmp_path):
    result = subprocess.run(
        [
            "chromium",
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--dump-dom",
            (audit_dir / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert 'data-report-ready="yes"' in dom  # the inline script ran and found the teacher and the funnel
    assert f"<td>{TEACHER}</td>" in dom and "Fake Teacher Model Licence 1.0" in dom
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no script errors, no console messages


def _cyclonedx_validator():
    """A jsonschema validator for the official CycloneDX 1.6 schema, as shipped by cyclonedx-python-lib."""
    import importlib.util

    from jsonschema import Draft7Validator
    from referencing import Registry, Resource

    spec = importlib.util.find_spec("cyclonedx")
    assert spec is not None, "cyclonedx-python-lib (dev extra) ships the CycloneDX schemas; pip install it"
    folder = Path(spec.origin).parent / "schema" / "_res"
    schema = json.loads((folder / "bom-1.6.SNAPSHOT.schema.json").read_text())
    registry = Registry()
    for name, refs in {
        "spdx.SNAPSHOT.schema.json": ["spdx.SNAPSHOT.schema.json", "spdx.schema.json"],
        "jsf-0.82.SNAPSHOT.schema.json": ["jsf-0.82.SNAPSHOT.schema.json", "jsf-0.82.schema.json"],
    }.items():
        resource = Resource.from_contents(json.loads((folder / name).read_text()))
        for ref in refs:  # the bom schema refers to them by file name, relative to its $id
            registry = registry.with_resource(f"http://cyclonedx.org/schema/{ref}", resource)
    return Draft7Validator(schema, registry=registry)


def test_bom_validates_against_the_cyclonedx_1_6_schema(audit_dir):
    bom = json.loads((audit_dir / "bom.cdx.json").read_text())
    validator = _cyclonedx_validator()
    errors = sorted(validator.iter_errors(bom), key=lambda e: list(e.path))
    assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    teacher = by_ref["teacher"]
    assert (teacher["type"], teacher["name"]) == ("machine-learning-model", TEACHER)
    assert teacher["licenses"] == [{"expression": "LicenseRef-fake-teacher-1.0"}]
    props = {p["name"]: p["value"] for p in teacher["properties"]}
    assert props["synthdistill:policy:decision"] == "allow-with-obligations"
    assert props["synthdistill:obligation:name-prefix"] == 'Distributed student names must begin with "Fake"'
    sft = by_ref["dataset:sft"]
    assert sft["type"] == "data" and sft["licenses"] == [{"expression": "CC-BY-4.0"}]
    assert sorted(f["name"] for f in sft["components"]) == [
        "datasets/sft/README.md",
        "datasets/sft/data/train-00000-of-00001.parquet",
        "datasets/sft/data/validation-00000-of-00001.parquet",
        "datasets/sft/provenance.json",
    ]
    assert {"ref": "dataset:sft", "dependsOn": ["teacher", "pack:audit-demo"]} in bom["dependencies"]


def test_a_broken_bom_fails_the_schema(audit_dir):
    bom = json.loads((audit_dir / "bom.cdx.json").read_text())
    bom["components"][0]["type"] = "large-language-thing"
    assert list(_cyclonedx_validator().iter_errors(bom))


def test_bom_of_a_trained_student_validates(audit_dir):
    run_dir = audit_dir.parent
    student = run_dir / "student"
    student.mkdir()
    (student / "README.md").write_text(
        "---\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\nlicense: apache-2.0\n---\n# tiny-student\n"
    )
    (student / "model.safetensors").write_bytes(b"weights")
    train = {"method": "sft", "steps": 4, "examples": 2, "train_loss_first": 2.5, "train_loss_last": 1.5}
    (student / "train.json").write_text(json.dumps(train))
    (run_dir / "eval.json").write_text(
        json.dumps(
            {"method": "sft", "examples": 1, "untrained": {"nll_per_token": 2.0}, "trained": {"nll_per_token": 1.0}}
        )
    )
    audit.run(run_dir)
    bom = json.loads((audit_dir / "bom.cdx.json").read_text())
    assert list(_cyclonedx_validator().iter_errors(bom)) == []
    student_component = next(c for c in bom["components"] if c["bom-ref"] == "student")
    assert student_component["modelCard"]["modelParameters"]["datasets"] == [{"ref": "dataset:sft"}]
    assert student_component["pedigree"]["ancestors"][0]["name"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert student_component["name"] == "tiny-student"
    report = (audit_dir / "report.md").read_text()
    assert "| trained | 1.0 |" in report
    assert "| **Training** | sft, 4 steps on 2 rows, loss 2.5 → 1.5 |" in report
    assert "must begin with \"Fake\"; student 'tiny-student' BREAKS it |" in report
