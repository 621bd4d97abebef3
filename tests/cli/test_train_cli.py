"""`synthdistill train` from the command line: obligations of the teacher's terms are enforced first."""

from __future__ import annotations

import json

import yaml

from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.policy import gate


def _llama_project(tmp_path, student_name: str):
    pack = tmp_path / "prompts" / "demo"
    pack.mkdir(parents=True)
    (pack / "pack.yaml").write_text(
        "name: demo\nversion: 1.0.0\nlicence: CC0-1.0\ntemplate: '{{ q }}'\nrows: rows.jsonl\n"
    )
    (pack / "rows.jsonl").write_text('{"q": "Hello?"}\n')
    config = {
        "name": "llama-run",
        "teacher": {
            "backend": "openai",
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "base_url": "http://127.0.0.1:9/v1",
        },
        "use": {"commercial": True, "distribute_student": True},
        "harvest": {"packs": ["prompts/demo"]},
        "student": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "name": student_name},
    }
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    # what `harvest` records after the gate allowed the teacher
    (loaded.run_dir / "harvest").mkdir(parents=True)
    (loaded.run_dir / "harvest" / "decision.json").write_text(gate(loaded).model_dump_json(indent=2))
    return path


def test_train_refuses_a_student_name_without_the_llama_prefix(tmp_path, capsys):
    path = _llama_project(tmp_path, "tiny-helper")

    rc = main(["train", "-c", str(path)])

    err = capsys.readouterr().err
    assert rc == 3
    assert "student name 'tiny-helper' must begin with 'Llama': policy 'llama-3.1' obliges it" in err
    assert "Rename the student (student.name in distill.yaml)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "outputs" / "llama-run" / "student").exists()


def test_a_llama_prefixed_student_passes_the_check_and_reaches_training(tmp_path, capsys):
    path = _llama_project(tmp_path, "Llama-tiny-helper")
    rc = main(["train", "-c", str(path)])
    err = capsys.readouterr().err
    assert rc == 1  # past the obligation check: stops only because nothing was built yet
    assert "the KD dataset needs logprobs" in err and "run `synthdistill build`" in err
    decision = json.loads((tmp_path / "outputs" / "llama-run" / "harvest" / "decision.json").read_text())
    assert decision["policy_id"] == "llama-3.1"
    assert decision["outcome"] == "allow-with-obligations"
    assert {o["id"] for o in decision["obligations"]} >= {"name-prefix", "attribution", "licence-copy"}


def test_only_train_runs_under_a_distributed_launch(tmp_path, capsys, monkeypatch):
    """torchrun starts every process with the same command: a second harvester would double every request."""
    path = _llama_project(tmp_path, "Llama-helper")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")

    rc = main(["harvest", "-c", str(path)])

    assert rc == 2
    err = capsys.readouterr().err
    assert "`synthdistill harvest` runs in one process; only `train` runs under torchrun/accelerate launch" in err
    assert not (tmp_path / "outputs" / "llama-run" / "harvest" / "ledger.sqlite").exists()
