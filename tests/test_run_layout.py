"""RunLayout names every path of a run folder; no other module of the package spells one."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from synthdistill.config import DistillConfig
from synthdistill.run_layout import RunLayout

PACKAGE = Path(__file__).resolve().parents[1] / "synthdistill"

# Names of files and folders in a run folder: only run_layout.py may spell them as paths.
RUN_FILES = (
    "ledger.sqlite",
    "decision.json",
    "kept.jsonl",
    "dropped.jsonl",
    "modified.jsonl",
    "report.json",
    "build.json",
    "provenance.json",
    "train.json",
    "init.json",
    "student-init",
    "eval.json",
    "eval.png",
    "manifest.json",
    "manifest.sha256",
    "manifest.hmac",
    "report.md",
    "report.html",
    "bom.cdx.json",
    "view.html",
    ".synthdistill.lock",
    "-00000-of-00001.parquet",
    "README.md",
)
# Folder names too common to forbid in text: forbidden where they are joined into a path.
RUN_FOLDERS = ("harvest", "filtered", "datasets", "student", "audit", "sft", "kd", "checkpoints", "tokenizer")


def test_the_layout_names_every_path_of_a_run_folder(tmp_path):
    layout = RunLayout(tmp_path)
    paths = {
        "ledger": layout.ledger,
        "decision": layout.decision,
        "kept": layout.kept,
        "dropped": layout.dropped,
        "modified": layout.modified,
        "report": layout.filter_report,
        "sft": layout.dataset_dir("sft"),
        "kd train": layout.split_file("kd", "train"),
        "kd card": layout.dataset_card("kd"),
        "kd provenance": layout.dataset_provenance("kd"),
        "kd build": layout.dataset_build("kd"),
        "kd tokenizer": layout.dataset_tokenizer("kd"),
        "student": layout.student_dir,
        "train": layout.train_summary,
        "card": layout.student_card,
        "checkpoints": layout.checkpoints_dir,
        "scores": layout.scores,
        "init": layout.student_init_dir,
        "recipe": layout.student_init_recipe,
        "eval": layout.eval_result,
        "plot": layout.eval_plot,
        "manifest": layout.manifest,
        "sha": layout.manifest_sha256,
        "seal": layout.manifest_seal,
        "md": layout.report_md,
        "html": layout.report_html,
        "bom": layout.bom,
        "view": layout.view_page,
        "lock": layout.lock,
    }
    assert {name: layout.relative(path) for name, path in paths.items()} == {
        "ledger": "harvest/ledger.sqlite",
        "decision": "harvest/decision.json",
        "kept": "filtered/kept.jsonl",
        "dropped": "filtered/dropped.jsonl",
        "modified": "filtered/modified.jsonl",
        "report": "filtered/report.json",
        "sft": "datasets/sft",
        "kd train": "datasets/kd/data/train-00000-of-00001.parquet",
        "kd card": "datasets/kd/README.md",
        "kd provenance": "datasets/kd/provenance.json",
        "kd build": "datasets/kd/build.json",
        "kd tokenizer": "datasets/kd/tokenizer",
        "student": "student",
        "train": "student/train.json",
        "card": "student/README.md",
        "checkpoints": "student/checkpoints",
        "scores": "train/scores.sqlite",
        "init": "student-init",
        "recipe": "student-init/init.json",
        "eval": "eval.json",
        "plot": "eval.png",
        "manifest": "audit/manifest.json",
        "sha": "audit/manifest.sha256",
        "seal": "audit/manifest.hmac",
        "md": "audit/report.md",
        "html": "audit/report.html",
        "bom": "audit/bom.cdx.json",
        "view": "view.html",
        "lock": ".synthdistill.lock",
    }
    assert layout.audit_reports == (layout.report_md, layout.report_html, layout.bom)
    assert all(path.is_relative_to(tmp_path) for path in paths.values())


def test_splits_are_found_and_named_as_the_card_says(tmp_path):
    layout = RunLayout(tmp_path)
    for kind, split in (("sft", "train"), ("sft", "validation"), ("kd", "validation")):
        layout.split_file(kind, split).parent.mkdir(parents=True, exist_ok=True)
        layout.split_file(kind, split).write_bytes(b"")
    assert [layout.split_of(p) for p in layout.split_files("sft")] == ["train", "validation"]
    assert [layout.relative(p) for p in layout.every_split_file()] == [
        "datasets/kd/data/validation-00000-of-00001.parquet",
        "datasets/sft/data/train-00000-of-00001.parquet",
        "datasets/sft/data/validation-00000-of-00001.parquet",
    ]
    assert layout.dataset_dir("sft").joinpath(layout.split_pattern("train")).match("*/data/train-*.parquet")


def test_a_config_gives_the_layout_of_its_run_folder(tmp_path):
    config = DistillConfig.model_validate(
        {
            "name": "run",
            "output_dir": "out",
            "teacher": {"backend": "transformers", "model": "tiny"},
            "harvest": {"packs": ["p"]},
        }
    )
    assert config.layout == RunLayout.of(config) == RunLayout(config.run_dir)
    assert config.layout.run_dir == config.run_dir


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _spells_a_run_path(text: str) -> str | None:
    for name in RUN_FILES:
        if text.strip() == name or f"/{name}" in text or f"{name}/" in text:
            return name
    return next((folder for folder in RUN_FOLDERS if f"/{folder}/" in text), None)


def _run_path_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if name := _spells_a_run_path(node.value):
                found.append(f"{path.name}:{node.lineno}: {name!r}")
        joined = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            joined = [node.left, node.right]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
            "Path",
            "joinpath",
            "with_name",
        ):
            joined = node.args
        for part in joined:
            if isinstance(part, ast.Constant) and part.value in RUN_FOLDERS:
                found.append(f"{path.name}:{part.lineno}: {part.value!r} joined into a path")
    return found


def test_no_module_but_run_layout_spells_a_run_path():
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "run_layout.py"
        for hit in _run_path_literals(path)
    ]
    assert found == []


def test_the_checker_sees_a_run_path(tmp_path):
    module = tmp_path / "stage.py"
    module.write_text(
        '"""Writes harvest/ledger.sqlite."""\n'
        "def f(run_dir, sha):\n"
        '    return run_dir / "harvest" / "ledger.sqlite", f"{sha}  manifest.json", "recorded in decision.json"\n'
    )
    assert sorted(_run_path_literals(module)) == [
        "stage.py:3: 'harvest' joined into a path",
        "stage.py:3: 'ledger.sqlite'",
        "stage.py:3: 'manifest.json'",
    ]


def test_run_layout_imports_nothing_heavy():
    code = "import sys, synthdistill.run_layout; print(sorted(m for m in sys.modules if m.startswith('synthdistill')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['synthdistill', 'synthdistill.run_layout']"
