"""`verify` (the packs' verifiers) and `decontaminate` (n-gram overlap with held-out files)."""

from __future__ import annotations

import json

import pytest

from synthdistill.errors import ConfigError
from synthdistill.filters import FilterContext
from synthdistill.filters.decontaminate import DecontaminateParams, decontaminate, load_references
from synthdistill.filters.verify import VerifyParams, load_verifiers, verify
from synthdistill.packs import load_pack
from tests.records_fixtures import make_record

PACK_YAML = """\
name: {name}
version: 1.0.0
licence: CC0-1.0
source: written for tests
template: "{{{{ question }}}}"
rows: rows.jsonl
{verify}
"""


def write_pack(root, name: str, verify_line: str, rows: list[dict]):
    folder = root / "prompts" / name
    folder.mkdir(parents=True)
    (folder / "pack.yaml").write_text(PACK_YAML.format(name=name, verify=verify_line))
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"prompts/{name}"


def answer(pack: str, question: str, text: str, variables: dict):
    return make_record(question, text, pack=pack).model_copy(update={"variables": variables})


# --- verify ----------------------------------------------------------------------------


def test_verify_with_the_packs_verifiers_given_by_prepare(tmp_path):
    math = write_pack(
        tmp_path,
        "math",
        'verify: {kind: answer, field: answer, pattern: "Answer:\\\\s*(-?[\\\\d.,]+)"}',
        [{"question": "2+2?", "answer": 4}],
    )
    chat = write_pack(tmp_path, "chat", "", [{"question": "Hi?"}])
    loaded = [load_pack(tmp_path / reference) for reference in (math, chat)]  # the stage loads the packs
    context = FilterContext(project_dir=tmp_path, config_path=tmp_path / "distill.yaml", packs=loaded)
    params = load_verifiers(VerifyParams(), context)
    records = [
        answer("math", "2+2?", "Two and two. Answer: 4", {"question": "2+2?", "answer": 4}),
        answer("math", "2+2?", "Answer: 5", {"question": "2+2?", "answer": 4}),
        answer("math", "2+2?", "It is four.", {"question": "2+2?", "answer": 4}),
        answer("chat", "Hi?", "Hello!", {"question": "Hi?"}),
        answer("gone", "Old?", "Old answer", {}),
    ]
    assert verify(records, params) == [
        None,
        "verifier-failed: answer 5 != expected 4 (off by 1, tolerance 1e-06)",
        "verifier-failed: no match for /Answer:\\s*(-?[\\d.,]+)/ in the answer",
        None,
        None,
    ]
    assert verify(records[3:], params.model_copy(update={"without_verifier": "drop"})) == [
        "no-verifier: pack 'chat' has no verify",
        "no-verifier: pack 'gone' is not in harvest.packs",
    ]


def test_verify_json_schema_and_regex_given_directly():
    params = VerifyParams().with_verifiers(
        {
            "json": {"kind": "json-schema", "schema": {"type": "object", "required": ["name"]}},
            "yesno": {"kind": "regex", "pattern": "^(yes|no)\\b"},
        }
    )
    records = [
        answer("json", "q1", '{"name": "Ada"}', {}),
        answer("json", "q2", '{"age": 3}', {}),
        answer("yesno", "q3", "yes, it is", {}),
        answer("yesno", "q4", "maybe", {}),
    ]
    assert verify(records, params) == [
        None,
        "verifier-failed: JSON does not match the schema at $: 'name' is a required property",
        None,
        "verifier-failed: answer does not match /^(yes|no)\\b/",
    ]


def test_verify_refuses_to_run_unprepared():
    with pytest.raises(RuntimeError, match="no verifiers"):
        verify([make_record()], VerifyParams())


# --- decontaminate ---------------------------------------------------------------------

HELD_OUT = "Natalia sold clips to 48 of her friends in April and then she sold half as many clips in May"


def test_decontaminate_drops_prompts_and_answers_that_share_a_long_span(tmp_path):
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "heldout.jsonl").write_text(
        json.dumps({"question": HELD_OUT, "answer": "72"})
        + "\n"
        + json.dumps({"question": "What is the boiling point of water at sea level in celsius?"})
        + "\n"
    )
    (tmp_path / "evals" / "notes.txt").write_text(
        "The mitochondria is the powerhouse of the cell and it makes most of the ATP.\n"
    )
    context = FilterContext(project_dir=tmp_path, config_path=tmp_path / "distill.yaml")
    params = load_references(DecontaminateParams(against=["evals/heldout.jsonl", "evals/notes.txt"], ngram=13), context)
    records = [
        make_record("Q: " + HELD_OUT.upper() + "?", "72"),  # case and punctuation do not hide it
        make_record(
            "Explain cells.",
            "Well, the mitochondria is the powerhouse of the cell and it makes most of the ATP, they say.",
        ),
        make_record("Quiz", "What is the boiling point of water at sea level in celsius? 100."),  # a short item, whole
        make_record("Natalia sold clips to 48 of her friends.", "She sold 48."),  # 8 words: under 13
        make_record("What is the boiling point of water?", "100 degrees Celsius at sea level."),
    ]
    assert decontaminate(records, params) == [
        "contaminated: prompt shares a 13-word span with evals/heldout.jsonl:1",
        "contaminated: answer shares a 13-word span with evals/notes.txt",
        "contaminated: answer shares a 12-word span with evals/heldout.jsonl:2",
        None,
        None,
    ]
    answers_only = params.model_copy(update={"check": ["answer"]})
    assert decontaminate(records[:1], answers_only) == [None]


def test_decontaminate_fields_pick_which_jsonl_keys_count():
    params = DecontaminateParams(against=["x"], ngram=3, min_words=3).with_references(
        [("x:1", "alpha beta gamma delta")]
    )
    assert decontaminate(
        [make_record("q", "say beta gamma delta now"), make_record("q", "gamma beta alpha")], params
    ) == [
        "contaminated: answer shares a 3-word span with x:1",
        None,
    ]


def test_decontaminate_missing_file_is_a_config_error(tmp_path):
    context = FilterContext(project_dir=tmp_path, config_path=tmp_path / "distill.yaml")
    with pytest.raises(
        ConfigError, match=r"distill.yaml: filter 'decontaminate': against file 'evals/none.jsonl' not found"
    ):
        load_references(DecontaminateParams(against=["evals/none.jsonl"]), context)
