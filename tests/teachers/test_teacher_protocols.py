"""The two teacher protocols stay apart, and teachers stay below the harvester (no import reaches up)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

import synthdistill.teachers
from synthdistill.config import TeacherConfig
from synthdistill.teachers import BatchTeacher, Teacher, make_teacher

TEACHERS_DIR = Path(synthdistill.teachers.__file__).parent


def _made(backend: str):
    teacher = make_teacher(TeacherConfig(backend=backend, model="fake-model", base_url="http://127.0.0.1:9/v1"))
    asyncio.run(teacher.aclose())
    return teacher


def test_the_batch_client_is_a_batch_teacher_and_not_a_per_request_one():
    teacher = _made("openai-batch")
    assert type(teacher).__name__ == "OpenAIBatchClient"
    assert isinstance(teacher, BatchTeacher)
    assert not isinstance(teacher, Teacher) and not hasattr(teacher, "complete")


def test_the_http_teacher_is_a_per_request_teacher_and_not_a_batch_one():
    teacher = _made("openai")
    assert isinstance(teacher, Teacher)
    assert not isinstance(teacher, BatchTeacher)


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (inside functions too), relative imports resolved."""
    package = "synthdistill.teachers"
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            name = ".".join(part for part in (base, node.module) if part)
            modules.add(name)
            modules.update(f"{name}.{alias.name}" for alias in node.names)
    return modules


@pytest.mark.parametrize("path", sorted(TEACHERS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_teacher_module_imports_the_harvester(path):
    harvester = sorted(m for m in _imported_modules(path) if m.startswith("synthdistill.harvest"))
    assert harvester == [], f"{path.name} imports {harvester}"


def test_the_batch_client_knows_nothing_of_the_ledger_budget_or_retries():
    imported = _imported_modules(TEACHERS_DIR / "openai_batch.py")
    for module in ("synthdistill.store", "synthdistill.pricing", "synthdistill.retrying"):
        assert not any(m == module or m.startswith(module + ".") for m in imported), module
