"""`synthdistill packs …` end to end through `main`, and stable prompt ids through a real harvest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from synthdistill.cli import main
from synthdistill.store import HarvestStore
from tests.conftest import REPO
from tests.openai_server import FakeOpenAIServer
from tests.packs_fixtures import PACK_YAML, ROWS_JSONL, write_pack, write_raw_pack, write_rows


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# --- bad input: exit 2, one message with file and line, no traceback -------------------------

BAD_INPUTS = {
    # name: (pack.yaml, rows.jsonl, file named, line named, words of the fix)
    "broken-yaml": (
        PACK_YAML.replace("licence: CC0-1.0", "licence: CC0-1.0: x"),
        ROWS_JSONL,
        "pack.yaml",
        4,
        "invalid YAML: mapping values are not allowed here",
    ),
    "unquoted-template": (
        PACK_YAML.replace('"{{ question }}"', "{{ question }}"),
        ROWS_JSONL,
        "pack.yaml",
        7,
        "found unhashable key; quote a value that starts with '{', e.g. template: \"{{ question }}\"",
    ),
    "row-does-not-render": (
        PACK_YAML,
        ROWS_JSONL.replace('"Spell cat."', '"Spell cat.", "x": 1}{'),
        "rows.jsonl",
        3,
        "invalid JSON",
    ),
    "unknown-variable": (
        PACK_YAML.replace("{{ question }}", "{{ question }} {{ level }}"),
        ROWS_JSONL,
        "rows.jsonl",
        1,
        "template uses 'level', which this row does not have",
    ),
    "bad-regex": (
        PACK_YAML + 'verify: {kind: regex, pattern: "[a-z"}\n',
        ROWS_JSONL,
        "pack.yaml",
        9,
        "invalid regular expression",
    ),
    "missing-rows-file": (
        PACK_YAML.replace("rows.jsonl", "rowz.jsonl"),
        ROWS_JSONL,
        "pack.yaml",
        8,
        "rows file 'rowz.jsonl' not found",
    ),
    "non-utf8": (PACK_YAML, ROWS_JSONL.encode().replace(b"prime", b"pr\xefme"), "rows.jsonl", 2, "not valid UTF-8"),
    "unknown-key": (PACK_YAML + "tagz: [x]\n", ROWS_JSONL, "pack.yaml", 9, "unknown key 'tagz'; did you mean 'tags'?"),
    "unknown-licence": (
        PACK_YAML.replace("CC0-1.0", "Apache2"),
        ROWS_JSONL,
        "pack.yaml",
        4,
        "did you mean 'Apache-2.0'?",
    ),
    "row-is-not-an-object": (PACK_YAML, ROWS_JSONL + "42\n", "rows.jsonl", 4, "a row must be a JSON object"),
    "duplicate-prompt": (
        PACK_YAML,
        ROWS_JSONL + '{"question": "Name a prime."}\n',
        "rows.jsonl",
        4,
        "same prompt as rows.jsonl:2",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize("command", ["validate", "render", "show"])
def test_bad_input_exits_2_with_file_and_line(tmp_path, capsys, case, command):
    pack_yaml, rows, file, line, fix = BAD_INPUTS[case]
    folder = write_raw_pack(tmp_path, pack_yaml, rows)
    rc, out, err = run(capsys, "packs", command, str(folder))
    assert rc == 2
    assert f"{folder / file}:{line}: " in err
    assert fix in err
    assert err.count("error:") == 1
    assert "Traceback" not in err + out


def test_debug_shows_the_traceback(tmp_path, capsys):
    folder = write_raw_pack(tmp_path, PACK_YAML + "tagz: [x]\n", ROWS_JSONL)
    with pytest.raises(Exception, match="unknown key 'tagz'"):
        main(["packs", "validate", str(folder), "--debug"])


def test_validate_reports_every_problem_once(tmp_path, capsys):
    good = write_pack(tmp_path, name="good")
    bad = write_raw_pack(tmp_path, PACK_YAML, '{"question": "a"}\n{"q": 1}\n{"question": "a"}\n', name="bad")
    rc, out, err = run(capsys, "packs", "validate", str(good), str(bad))
    assert rc == 2
    assert f"ok  {good}  good 1.0.0: 2 prompts" in out
    assert err.count("error:") == 2
    assert f"{bad / 'rows.jsonl'}:2: template uses 'question'" in err
    assert f"{bad / 'rows.jsonl'}:3: same prompt as rows.jsonl:1" in err


def test_validate_json_summary(tmp_path, capsys):
    folder = write_pack(tmp_path)
    rc, out, _ = run(capsys, "packs", "validate", str(folder), "--json")
    assert rc == 0
    summary = json.loads(out)
    assert summary["ok"] is True
    assert summary["packs"] == [
        {
            "path": str(folder),
            "name": "demo",
            "version": "1.0.0",
            "ok": True,
            "prompts": 2,
            "errors": [],
            "more_errors": 0,
            "warnings": [],
        }
    ]


def test_validate_a_glob_with_a_readme_and_a_folder_of_packs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_pack(tmp_path / "prompts", name="a")
    write_pack(tmp_path / "prompts", name="b")
    (tmp_path / "prompts" / "README.md").write_text("# our packs\n")
    rc, out, err = run(capsys, "packs", "validate", "prompts/README.md", "prompts/a", "prompts/b")
    assert rc == 0 and "skipped prompts/README.md: a file, not a pack folder" in err
    assert out.splitlines() == ["ok  prompts/a  a 1.0.0: 2 prompts", "ok  prompts/b  b 1.0.0: 2 prompts"]
    rc, out, _ = run(capsys, "packs", "validate", "prompts")
    assert rc == 0 and len(out.splitlines()) == 2


def test_validate_an_unknown_pack(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, "packs", "validate", "no-such-pack")
    assert rc == 2 and "pack 'no-such-pack' not found" in err and "Traceback" not in err


def shipped_pack_folders() -> list[Path]:
    shipped = REPO / "synthdistill" / "data"
    return sorted(p.parent for root in (shipped / "prompts", shipped / "examples") for p in root.rglob("pack.yaml"))


def test_every_shipped_pack_validates(capsys):
    folders = shipped_pack_folders()
    if not folders:
        pytest.skip("no shipped packs yet")
    rc, out, err = run(capsys, "packs", "validate", *map(str, folders))
    assert rc == 0, err
    assert out.count("ok  ") == len(folders)
    assert "warning" not in err


# --- list, show, render, new, stats -----------------------------------------------------------


def test_list_shows_project_packs_and_marks_broken_ones(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_pack(tmp_path / "prompts", name="mine", description="My own prompts.")
    write_raw_pack(tmp_path / "prompts", PACK_YAML + "tagz: []\n", ROWS_JSONL, name="broken")
    rc, out, _ = run(capsys, "packs", "list", "--json")
    assert rc == 0
    entries = {e["path"]: e for e in json.loads(out)["packs"] if e["origin"] == "project"}
    assert set(entries) == {str(tmp_path / "prompts" / "broken"), str(tmp_path / "prompts" / "mine")}
    mine = entries[str(tmp_path / "prompts" / "mine")]
    assert (mine["name"], mine["version"], mine["prompts"], mine["licence"], mine["origin"]) == (
        "mine",
        "1.0.0",
        2,
        "CC0-1.0",
        "project",
    )
    assert "unknown key 'tagz'" in entries[str(tmp_path / "prompts" / "broken")]["error"]
    rc, out, _ = run(capsys, "packs", "list")
    lines = [line for line in out.splitlines() if "project" in line]
    assert len(lines) == 2
    assert lines[1].split() == ["mine", "1.0.0", "2", "CC0-1.0", "project", "My", "own", "prompts."]
    assert "INVALID" in lines[0]


def test_show(tmp_path, capsys):
    folder = write_pack(
        tmp_path, verify={"kind": "answer", "field": "answer", "pattern": r"Answer:\s*(\d+)", "tolerance": 0}
    )
    rc, out, _ = run(capsys, "packs", "show", str(folder))
    assert rc == 0
    assert "licence:     CC0-1.0" in out
    assert r"verify:      answer: field 'answer', pattern /Answer:\s*(\d+)/, tolerance 0" in out
    assert "[user] What is 2 + 3?" in out
    rc, out, _ = run(capsys, "packs", "show", str(folder), "--json")
    summary = json.loads(out)
    assert summary["prompts"] == 2 and summary["verify"]["kind"] == "answer"
    assert set(summary["files"]) == {"pack.yaml", "rows.jsonl"} and len(summary["content_sha256"]) == 64


def test_render_shows_prompts_exactly(tmp_path, capsys):
    long_question = "Explain, step by step and with a worked example, " * 4 + "why [brackets] stay."
    rows = [{"question": long_question}] + [{"question": f"Q{i}?"} for i in range(6)]
    folder = write_pack(tmp_path, rows=rows)
    rc, out, err = run(capsys, "packs", "render", str(folder), "-n", "2")
    assert rc == 0
    assert f"[user] {long_question.strip()}\n" in out  # never wrapped, markup kept
    assert "[user] Q0?" in out and "Q1?" not in out
    assert "(2 of 7 prompts shown; -n 0 shows all)" in err
    rc, out, _ = run(capsys, "packs", "render", str(folder), "-n", "0", "--json")
    rendered = json.loads(out)
    assert rendered["total"] == 7 and len(rendered["prompts"]) == 7
    assert rendered["prompts"][1]["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Q0?"},
    ]


def test_new_writes_a_pack_that_validates(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run(capsys, "packs", "new", "my-prompts")
    assert rc == 0 and "wrote prompts/my-prompts/pack.yaml and prompts/my-prompts/rows.jsonl" in out
    first = (tmp_path / "prompts/my-prompts/pack.yaml").read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=") and first.endswith(
        "synthdistill/schemas/pack.schema.json"
    )
    rc, out, err = run(capsys, "packs", "validate", "prompts/my-prompts")
    assert rc == 0 and out.strip() == "ok  prompts/my-prompts  my-prompts 0.1.0: 3 prompts" and "warning" not in err
    rc, _, err = run(capsys, "packs", "new", "my-prompts")
    assert rc == 2 and "prompts/my-prompts: already exists" in err
    rc, out, _ = run(capsys, "packs", "new", "other", "--dir", "elsewhere", "--json")
    assert rc == 0 and json.loads(out) == {
        "name": "other",
        "path": "elsewhere/other",
        "files": ["pack.yaml", "rows.jsonl"],
    }


def test_stats_counts_tokens_and_near_duplicates(tmp_path, capsys, smollm2_dir):
    from transformers import AutoTokenizer

    rows = [
        {"question": "What is the capital of France?"},
        {"question": "what is the capital of france"},
        {"question": "Name three primes."},
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Tell me a joke."},
            ]
        },
    ]
    folder = write_pack(tmp_path, rows=rows)
    rc, out, _ = run(capsys, "packs", "stats", str(folder), "--tokenizer", str(smollm2_dir), "--json")
    assert rc == 0
    stats = json.loads(out)
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir))
    expected = sorted(
        len(
            tokenizer.apply_chat_template(
                [
                    {"role": "system", "content": "Answer briefly."},
                    *(row.get("messages") or [{"role": "user", "content": row["question"]}]),
                ],
                add_generation_prompt=True,
                tokenize=True,
            )["input_ids"]
        )
        for row in rows
    )
    assert stats["prompts"] == 4 and stats["turns"] == {"multi_turn": 1}
    assert stats["tokens"] == {
        "min": expected[0],
        "median": (expected[1] + expected[2]) / 2,
        "p90": expected[3],
        "max": expected[3],
        "total": sum(expected),
    }
    assert stats["duplicates"] == 1
    assert stats["duplicate_sources"] == [{"source": "rows.jsonl:2", "same_as": "rows.jsonl:1"}]
    rc, out, _ = run(capsys, "packs", "stats", str(folder), "--tokenizer", str(smollm2_dir))
    assert rc == 0 and "demo 1.0.0: 4 prompts (1 multi-turn)" in out
    assert "rows.jsonl:2 repeats rows.jsonl:1" in out


# --- stable prompt ids: editing one row of 50 sends exactly one request -------------------------

FAKE_POLICY = """\
id: fake
title: Terms of the fake test server
kind: api-terms
applies_to: {models: [fake-model], hosts: []}
document: {url: "http://127.0.0.1/terms", version: "2026-01-01", retrieved: "2026-01-01"}
licence: {spdx: LicenseRef-fake-terms, name: Fake terms}
outputs_for_training: allowed
clause: "§1: outputs may be used for any purpose"
"""


def test_editing_one_row_of_fifty_sends_exactly_one_request(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    rows = [{"question": f"What is {i} times 3?", "answer": 3 * i} for i in range(50)]
    write_pack(tmp_path / "prompts", name="fifty", rows=rows, sampling={"temperature": 0.2, "max_tokens": 16})
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "fake.yaml").write_text(FAKE_POLICY)
    with FakeOpenAIServer() as server:
        config = {
            "name": "stable-ids",
            "teacher": {
                "backend": "openai",
                "model": "fake-model",
                "base_url": server.base_url,
                "api_key_env": "FAKE_KEY",
                "policy": "fake",
                "max_retries": 0,
            },
            "harvest": {"packs": ["prompts/fifty"], "top_logprobs": 2, "max_tokens": 32},
        }
        config_file = tmp_path / "distill.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        rc, out, err = run(capsys, "harvest", "-c", str(config_file), "--json")
        assert rc == 0, err
        first = json.loads(out)
        assert (first["prompts"], first["answered"], first["requests_sent"]) == (50, 50, 50)
        assert server.stats()["requests"] == 50
        ledger = Path(first["ledger"])
        with HarvestStore(ledger) as store:
            before = {r.prompt_id: r for r in store.records()}

        rows[23] = {"question": "What is 23 times 4?", "answer": 92}
        write_rows(tmp_path / "prompts" / "fifty" / "rows.jsonl", rows)
        rc, out, err = run(capsys, "harvest", "-c", str(config_file), "--json")
        assert rc == 0, err
        second = json.loads(out)
        assert (second["prompts"], second["already_done"], second["answered"], second["requests_sent"]) == (
            50,
            49,
            1,
            1,
        )
        assert server.stats()["requests"] == 51
        assert server.stats()["answered"]["What is 23 times 4?"] == 1

    from synthdistill.config import load_config
    from synthdistill.packs import configured_prompts

    current = {p.prompt_id for p in configured_prompts(load_config(config_file))}
    with HarvestStore(ledger) as store:
        after = {r.prompt_id: r for r in store.records() if r.prompt_id in current}
    assert len(after) == 50
    unchanged = current & set(before)
    assert len(unchanged) == 49
    assert all(after[pid] == before[pid] for pid in unchanged)  # the very same stored answers
    (new_id,) = current - set(before)
    assert after[new_id].text == "Answer to: What is 23 times 4?"
    assert after[new_id].variables == {"question": "What is 23 times 4?", "answer": 92}
    # the pack's sampling overrides reached the teacher; the rest are the harvest settings
    sampling = after[new_id].sampling
    assert (sampling.temperature, sampling.max_tokens, sampling.top_logprobs) == (0.2, 16, 2)


def test_validate_without_paths_checks_every_listed_pack(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_pack(tmp_path / "prompts", name="mine")
    rc, out, err = run(capsys, "packs", "validate")
    assert rc == 0, err
    assert "ok  prompts/mine  mine 1.0.0: 2 prompts" in out.splitlines()
    write_raw_pack(tmp_path / "prompts", PACK_YAML + "tagz: []\n", ROWS_JSONL, name="broken")
    rc, _, err = run(capsys, "packs", "validate")
    assert rc == 2 and f"{tmp_path / 'prompts' / 'broken' / 'pack.yaml'}:9: unknown key 'tagz'" in err
