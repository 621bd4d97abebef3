"""The README's "Python API" snippet and its "Overrides" commands, run on a small project."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from synthdistill.cli import main
from synthdistill.run_layout import RunLayout
from tests.audit_fixtures import ANSWERED_AS, QUESTIONS, write_project
from tests.openai_server import FakeOpenAIServer

README = Path(__file__).resolve().parent.parent / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_the_python_api_snippet_runs_on_a_small_project(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", _section("Python API"), re.S).group(1)
    with FakeOpenAIServer(model=ANSWERED_AS) as server:
        write_project(tmp_path, server.base_url)
        monkeypatch.chdir(tmp_path)  # the snippet names "distill.yaml" in the working folder
        exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0] == "4"  # harvest.limit: 4 from the overrides
    assert printed[-1] == "allow-with-obligations"
    layout = RunLayout(tmp_path / "outputs" / "audit-run")
    assert layout.manifest.exists() and layout.config_snapshot("harvest").exists()
    assert len(QUESTIONS) > 4


def test_the_override_examples_parse_against_the_schema(tmp_path, capsys):
    """Each `synthdistill … --set …` line of the section is valid (run as `policy check`, which changes nothing)."""
    lines = [line.strip() for line in _section("Overrides").splitlines() if line.strip().startswith("synthdistill ")]
    assert len(lines) == 3
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")
    for line in lines:
        sets = [arg for arg in shlex.split(line) if arg != "--set"][2:]
        args = [part for value in sets for part in ("--set", value)]
        args = [a.replace("[prompts/math]", "[prompts/audit-demo]") for a in args]
        assert main(["policy", "check", "-c", str(path), "--set", "student.model=tiny", *args]) == 0, line
        capsys.readouterr()
