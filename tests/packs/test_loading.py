"""Prompt packs: loading, rendering, stable ids, every validation error with file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from synthdistill import packs
from synthdistill.errors import PackError
from synthdistill.packs import format as pack_format
from synthdistill.records import Message, prompt_id_for
from tests.packs_fixtures import PACK_YAML, ROWS_JSONL, write_pack, write_raw_pack, write_rows


def raises_pack_error(folder: Path) -> PackError:
    with pytest.raises(PackError) as info:
        packs.load_pack(folder)
    return info.value


# --- loading and rendering ---------------------------------------------------------------


def test_rows_pack_renders_one_prompt_per_row(tmp_path):
    folder = write_pack(tmp_path, sampling={"temperature": 0.2, "max_tokens": 64})
    pack = packs.load_pack(folder)
    assert (pack.name, pack.version, pack.licence) == ("demo", "1.0.0", "CC0-1.0")
    assert len(pack.prompts) == 2
    first = pack.prompts[0]
    assert [m.model_dump() for m in first.messages] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2 + 3?"},
    ]
    assert first.variables == {"question": "What is 2 + 3?", "answer": 5}
    assert (first.pack, first.pack_version, first.source) == ("demo", "1.0.0", "rows.jsonl:1")
    assert first.sampling_overrides == {"temperature": 0.2, "max_tokens": 64}
    assert first.prompt_id == prompt_id_for("demo", first.messages)
    assert pack.prompts[1].source == "rows.jsonl:2"


def test_blank_lines_are_skipped_and_sources_keep_file_lines(tmp_path):
    folder = write_raw_pack(tmp_path, PACK_YAML, '{"question": "a?"}\n\n{"question": "b?"}\n')
    assert [p.source for p in packs.load_pack(folder).prompts] == ["rows.jsonl:1", "rows.jsonl:3"]


def test_variables_make_the_cartesian_product(tmp_path):
    text = PACK_YAML.replace('"{{ question }}"', '"Explain {{ topic }} to {{ audience }}."').replace(
        "rows: rows.jsonl\n", "variables:\n  topic: [tides, rust, DNA]\n  audience: [a child, an expert]\n"
    )
    pack = packs.load_pack(write_raw_pack(tmp_path, text))
    texts = [p.messages[-1].content for p in pack.prompts]
    assert len(texts) == 6
    assert texts[:2] == ["Explain tides to a child.", "Explain tides to an expert."]
    assert texts[-1] == "Explain DNA to an expert."
    assert pack.prompts[3].variables == {"topic": "rust", "audience": "an expert"}
    assert pack.prompts[3].source == "pack.yaml:variables[3]"


def test_multi_turn_rows_keep_their_conversation(tmp_path):
    conversation = [
        {"role": "user", "content": "Pick a number."},
        {"role": "assistant", "content": "Seven."},
        {"role": "user", "content": "Double it."},
    ]
    folder = write_pack(tmp_path, rows=[{"messages": conversation, "topic": "numbers"}, {"question": "Hi?"}])
    pack = packs.load_pack(folder)
    messages = [m.model_dump() for m in pack.prompts[0].messages]
    assert messages == [{"role": "system", "content": "Answer briefly."}, *conversation]
    assert pack.prompts[0].variables == {"topic": "numbers"}
    assert pack.prompts[1].messages[-1].content == "Hi?"


@pytest.mark.parametrize(
    "conversation, message",
    [
        ([{"role": "assistant", "content": "Hi"}], "messages[0] is 'assistant' where 'user' belongs"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "must end with a user turn"),
        ([{"role": "user", "content": "   "}], "messages[0] has empty content"),
        ([{"role": "robot", "content": "x"}], "messages[0].role"),
        ([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "keep one of them"),
        ([], "non-empty list"),
    ],
)
def test_bad_conversations_name_the_row_line(tmp_path, conversation, message):
    folder = write_pack(tmp_path, rows=[{"question": "fine"}, {"messages": conversation}])
    error = raises_pack_error(folder)
    assert error.file == str(folder / "rows.jsonl") and error.line == 2
    assert message in error.message


def test_template_is_sandboxed(tmp_path):
    folder = write_pack(tmp_path, template="{{ question.__class__.__mro__[1].__subclasses__() }}")
    error = raises_pack_error(folder)
    assert error.line == 1 and "template cannot render this row" in error.message


def test_template_block_scalar_with_optional_variable(tmp_path):
    template = "{{ question }}\n{% if hint is defined %}\nHint: {{ hint }}\n{% endif %}\n"
    folder = write_pack(tmp_path, template=template, rows=[{"question": "Q1"}, {"question": "Q2", "hint": "H"}])
    assert [p.messages[-1].content for p in packs.load_pack(folder).prompts] == ["Q1", "Q2\nHint: H"]


# --- stable ids --------------------------------------------------------------------------


def test_editing_one_row_changes_only_that_prompt_id(tmp_path):
    rows = [{"question": f"What is {i} + {i}?"} for i in range(50)]
    folder = write_pack(tmp_path, rows=rows)
    before = [p.prompt_id for p in packs.load_pack(folder).prompts]
    rows[17] = {"question": "What is 17 + 18?"}
    write_rows(folder / "rows.jsonl", rows)
    after = [p.prompt_id for p in packs.load_pack(folder).prompts]
    assert len(set(before)) == 50
    assert [i for i in range(50) if before[i] != after[i]] == [17]


def test_prompt_id_ignores_version_and_row_order_but_not_pack_name(tmp_path):
    base = {p.messages[-1].content: p.prompt_id for p in packs.load_pack(write_pack(tmp_path / "a")).prompts}
    bumped = write_pack(tmp_path / "b", version="2.0.0", rows=[{"question": "What is 7 * 6?", "answer": 42}])
    assert packs.load_pack(bumped).prompts[0].prompt_id == base["What is 7 * 6?"]
    renamed = write_pack(tmp_path / "c", name="other")
    assert packs.load_pack(renamed).prompts[0].prompt_id != base["What is 2 + 3?"]


def test_changing_the_system_prompt_changes_every_id(tmp_path):
    a = packs.load_pack(write_pack(tmp_path / "a")).prompts
    b = packs.load_pack(write_pack(tmp_path / "b", system="Be terse.")).prompts
    assert not {p.prompt_id for p in a} & {p.prompt_id for p in b}


def test_content_sha256_follows_the_files(tmp_path):
    folder = write_pack(tmp_path)
    first = packs.load_pack(folder).content_sha256()
    assert packs.load_pack(folder).content_sha256() == first
    assert set(packs.load_pack(folder).file_hashes()) == {"pack.yaml", "rows.jsonl"}
    write_rows(folder / "rows.jsonl", [{"question": "changed", "answer": 1}])
    assert packs.load_pack(folder).content_sha256() != first


def test_a_pack_is_rendered_once_until_one_of_its_files_changes(tmp_path):
    folder = write_pack(tmp_path)
    first = packs.load_pack(folder)
    assert packs.load_pack(folder) is first
    assert packs.load_pack(folder, limit=1) is not first  # another limit is another reading
    rows = (folder / "rows.jsonl").read_text()
    (folder / "rows.jsonl").write_text(rows.replace("What is 2 + 3?", "What is 2 + 4?"))  # same size, same second
    again = packs.load_pack(folder)
    assert again is not first
    assert [p.messages[-1].content for p in again.prompts][0] == "What is 2 + 4?"


def test_one_process_renders_each_pack_once_across_the_stages(tmp_path, monkeypatch):
    """harvest, filter (current prompts and the verify filter), build's cards and the audit share one rendering."""
    from synthdistill import audit
    from synthdistill.packs import reading
    from tests.audit_fixtures import make_run

    renders: list[Path] = []
    real_rendered = reading._rendered

    def counting(info, *args, **kwargs):  # counts each pass over a pack's rows, then renders as usual
        renders.append(Path(info.path))
        return real_rendered(info, *args, **kwargs)

    monkeypatch.setattr(reading, "_rendered", counting)
    run = make_run(tmp_path)
    audit.run(run.run_dir, run.config)
    assert [path.name for path in renders] == ["audit-demo"]


def test_a_new_process_streams_prompt_ids_and_holds_no_prompt(tmp_path):
    """The filter in its own process: ids from one streamed pass, 8 bytes each; nothing cached."""
    from synthdistill.config import load_config
    from synthdistill.packs import configured_prompt_ids, configured_prompts, loading

    folder = write_pack(tmp_path / "prompts")
    (tmp_path / "distill.yaml").write_text(
        "name: t\nteacher: {backend: openai, model: m, base_url: 'http://127.0.0.1:1/v1'}\n"
        "harvest: {packs: [prompts/demo]}\n"
    )
    config = load_config(tmp_path / "distill.yaml")
    loading._LOADED.clear()
    ids = configured_prompt_ids(config)
    assert not loading._LOADED  # streamed: no pack kept
    expected = [p.prompt_id for p in configured_prompts(config)]
    assert len(ids) == len(set(expected)) == len(expected) >= 2 and ids.sorted.nbytes == 8 * len(expected)
    others = ["0" * 16, "not-an-id", expected[0].upper(), "-" + "0" * 14 + "1", "0x" + expected[0][2:], "1" + "0" * 16]
    # ids are 16 lower-case hex digits: another spelling of a number is another id, never an error
    assert ids.contains([*expected, *others]) == [True] * len(expected) + [False] * len(others)
    assert folder.is_dir()


# --- validation: every problem with file and line ------------------------------------------


def test_broken_yaml_names_the_line(tmp_path):
    # An unclosed flow sequence on line 5: the parser notices at the next key, line 6.
    folder = write_raw_pack(tmp_path, PACK_YAML.replace("source: written", "source: [written"), ROWS_JSONL)
    error = raises_pack_error(folder)
    assert (error.file, error.line) == (str(folder / "pack.yaml"), 6)
    assert error.message == "invalid YAML: expected ',' or ']', but got ':'"
    folder = write_raw_pack(
        tmp_path / "tab", PACK_YAML.replace("system: Answer", "system:\tAnswer\n\tx: y"), ROWS_JSONL
    )
    error = raises_pack_error(folder)
    assert error.line == 6 and error.message == "invalid YAML: found character '\\t' that cannot start any token"


def test_unknown_key_suggests_the_valid_one(tmp_path):
    folder = write_raw_pack(tmp_path, PACK_YAML.replace("template:", "tempalte:"), ROWS_JSONL)
    error = raises_pack_error(folder)
    assert (error.file, error.line) == (str(folder / "pack.yaml"), 7)
    assert "unknown key 'tempalte'; did you mean 'template'?" in error.message


@pytest.mark.parametrize(
    "extra, message, line",
    [
        ("sampling:\n  temprature: 0.2\n", "unknown key 'sampling.temprature'; did you mean 'temperature'?", 10),
        ("verify: {kind: regex, patern: x}\n", "unknown key 'verify.patern'; did you mean 'pattern'?", 9),
        ("verify: {kind: answer, field: answer, tolerence: 1}\n", "did you mean 'tolerance'?", 9),
        ("sampling: {temperature: 5}\n", "'sampling.temperature'", 9),
        ("verify: {kind: wrong}\n", "'verify'", 9),
    ],
)
def test_nested_key_errors(tmp_path, extra, message, line):
    folder = write_raw_pack(tmp_path, PACK_YAML + extra, ROWS_JSONL)
    error = raises_pack_error(folder)
    assert message in error.message
    assert error.line == line


def test_undefined_variable_names_row_and_suggests(tmp_path):
    folder = write_raw_pack(tmp_path, PACK_YAML, '{"question": "ok"}\n{"qestion": "typo"}\n')
    error = raises_pack_error(folder)
    assert (error.file, error.line) == (str(folder / "rows.jsonl"), 2)
    assert (
        "template uses 'question', which this row does not have (row keys: qestion); did you mean 'qestion'?"
        in error.message
    )


def test_variables_pack_with_undefined_variable_points_at_template(tmp_path):
    text = PACK_YAML.replace("rows: rows.jsonl\n", "variables:\n  topic: [a, b]\n")
    folder = write_raw_pack(tmp_path, text)
    error = raises_pack_error(folder)
    assert (error.file, error.line) == (str(folder / "pack.yaml"), 7)
    assert error.message.startswith("template uses 'question', which this row does not have (row keys: topic)")


def test_a_problem_of_every_row_is_reported_once(tmp_path):
    folder = write_raw_pack(tmp_path, PACK_YAML.replace("{{ question }}", "{{ level }}"), ROWS_JSONL)
    report = packs.validate_pack(folder)
    assert [(e.line, e.message) for e in report.errors] == [
        (
            1,
            "template uses 'level', which this row does not have (row keys: question); "
            "add it to the row or fix the template (also lines 2, 3)",
        )
    ]


def test_template_syntax_error(tmp_path):
    folder = write_raw_pack(tmp_path, PACK_YAML.replace('"{{ question }}"', '"{{ question "'), ROWS_JSONL)
    error = raises_pack_error(folder)
    assert error.line == 7 and "fix the Jinja2 syntax" in error.message


@pytest.mark.parametrize(
    "verify, message",
    [
        ('{kind: regex, pattern: "(unclosed"}', "invalid regular expression '(unclosed'"),
        ('{kind: answer, pattern: "Answer: \\\\d+"}', "needs a capture group"),
        ("{kind: json-schema, schema: {type: 12}}", "not a valid JSON Schema"),
    ],
)
def test_bad_verifier_patterns_and_schemas(tmp_path, verify, message):
    folder = write_raw_pack(tmp_path, PACK_YAML + f"verify: {verify}\n", ROWS_JSONL)
    error = raises_pack_error(folder)
    assert error.line == 9 and message in error.message


def test_json_schema_file_is_loaded_relative_to_the_pack(tmp_path):
    folder = write_raw_pack(
        tmp_path, PACK_YAML + "verify: {kind: json-schema, schema: answer.schema.json}\n", ROWS_JSONL
    )
    (folder / "answer.schema.json").write_text(json.dumps({"type": "object", "required": ["x"]}))
    pack = packs.load_pack(folder)
    assert pack.verify.schema_ == {"type": "object", "required": ["x"]}
    assert pack.spec.verify.schema_ == "answer.schema.json"
    (folder / "answer.schema.json").unlink()
    error = raises_pack_error(folder)
    assert error.line == 9 and "verify.schema file 'answer.schema.json' not found" in error.message


def test_answer_verifier_needs_the_field_in_every_row(tmp_path):
    folder = write_raw_pack(
        tmp_path, PACK_YAML + "verify: {kind: answer}\n", '{"question": "a", "answer": 1}\n{"question": "b"}\n'
    )
    error = raises_pack_error(folder)
    assert error.line == 2 and "row has no 'answer' value" in error.message


def test_missing_rows_file(tmp_path):
    folder = write_raw_pack(tmp_path, PACK_YAML)
    error = raises_pack_error(folder)
    assert (error.file, error.line) == (str(folder / "pack.yaml"), 8)
    assert "rows file 'rows.jsonl' not found" in error.message


def test_empty_rows_file_and_bad_json_line(tmp_path):
    assert "has no rows" in raises_pack_error(write_raw_pack(tmp_path / "a", PACK_YAML, "\n")).message
    error = raises_pack_error(write_raw_pack(tmp_path / "b", PACK_YAML, '{"question": "a"}\n{"question": \n'))
    assert error.line == 2 and error.message.startswith("invalid JSON")
    error = raises_pack_error(write_raw_pack(tmp_path / "c", PACK_YAML, '{"question": "a"}\n["a list"]\n'))
    assert error.line == 2 and "a row must be a JSON object" in error.message


@pytest.mark.parametrize("file", ["pack.yaml", "rows.jsonl"])
def test_non_utf8_file_names_its_line(tmp_path, file):
    pack_yaml = PACK_YAML.encode()
    rows = ROWS_JSONL.encode()
    if file == "pack.yaml":
        pack_yaml = pack_yaml.replace(b"Test prompts.", b"Caf\xe9 prompts.")
    else:
        rows = rows.replace(b"Name a prime.", b"Name a caf\xe9.")
    folder = write_raw_pack(tmp_path, pack_yaml, rows)
    error = raises_pack_error(folder)
    assert error.file == str(folder / file)
    assert error.line == (3 if file == "pack.yaml" else 2)
    assert "not valid UTF-8" in error.message and "save the file as UTF-8" in error.message


def test_duplicate_prompts_are_errors(tmp_path):
    folder = write_raw_pack(tmp_path, PACK_YAML, '{"question": "a"}\n{"question": "b"}\n{"question": "a"}\n')
    error = raises_pack_error(folder)
    assert error.line == 3 and "same prompt as rows.jsonl:1" in error.message


@pytest.mark.parametrize(
    "licence, ok",
    [("CC-BY-SA-4.0", True), ("ODC-By-1.0", True), ("LicenseRef-acme-internal", True), ("CC-BY-4", False)],
)
def test_licence_ids(tmp_path, licence, ok):
    folder = write_raw_pack(tmp_path, PACK_YAML.replace("CC0-1.0", licence), ROWS_JSONL)
    if ok:
        assert packs.load_pack(folder).licence == licence
    else:
        error = raises_pack_error(folder)
        assert error.line == 4 and "unknown licence 'CC-BY-4'; did you mean 'CC-BY-4.0'?" in error.message


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected a mapping of keys"),
        (PACK_YAML.replace("version: 1.0.0", "version: one"), "'version'"),
        (PACK_YAML.replace("name: demo\n", ""), "missing required key 'name'"),
        (PACK_YAML.replace("rows: rows.jsonl\n", ""), "a pack needs `rows:`"),
        (PACK_YAML + "variables: {a: [1]}\n", "not both"),
        (PACK_YAML.replace("rows: rows.jsonl\n", "variables: {a: []}\n"), "variable 'a' has no values"),
    ],
)
def test_spec_errors(tmp_path, text, message):
    error = raises_pack_error(write_raw_pack(tmp_path, text, ROWS_JSONL))
    assert message in error.message and error.file.endswith("pack.yaml") and error.line is not None


def test_validate_collects_every_row_problem(tmp_path):
    folder = write_raw_pack(tmp_path, PACK_YAML, '{"question": "a"}\n{"x": 1}\n{"question": "a"}\n{"question": ""}\n')
    report = packs.validate_pack(folder)
    assert not report.ok and report.prompts == 1
    assert [e.line for e in report.errors] == [2, 3, 4]
    assert "renders to an empty prompt" in report.errors[2].message
    with pytest.raises(PackError, match=r"\(and 2 more problems; run `synthdistill packs validate"):
        packs.load_pack(folder)


def test_validate_warns_about_a_mismatched_folder_name_and_empty_source(tmp_path):
    folder = write_raw_pack(
        tmp_path, PACK_YAML.replace("source: written for the tests\n", ""), ROWS_JSONL, name="other"
    )
    report = packs.validate_pack(folder)
    assert report.ok and report.prompts == 3
    assert report.warnings == [
        "pack name 'demo' differs from its folder name 'other'",
        "`source:` is empty; say where the prompts come from (the audit shows it)",
    ]


# --- finding packs -----------------------------------------------------------------------


def test_resolve_pack_path(tmp_path):
    folder = write_pack(tmp_path / "prompts")
    assert packs.resolve_pack_path("prompts/demo", tmp_path) == tmp_path / "prompts" / "demo"
    assert packs.resolve_pack_path(str(folder / "pack.yaml"), None) == folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackError, match="no pack.yaml in this folder"):
        packs.resolve_pack_path("empty", tmp_path)
    with pytest.raises(PackError, match="pack 'nope' not found"):
        packs.resolve_pack_path("nope", tmp_path)


def test_expand_references(tmp_path):
    write_pack(tmp_path / "prompts", name="a")
    write_pack(tmp_path / "prompts", name="b")
    (tmp_path / "prompts" / "README.md").write_text("# packs\n")
    refs, skipped = packs.expand_references(["prompts"], tmp_path)
    assert refs == [os.path.join("prompts", "a"), os.path.join("prompts", "b")] and skipped == []
    refs, skipped = packs.expand_references(["prompts/README.md", "prompts/a", "prompts/a/pack.yaml"], tmp_path)
    assert refs == ["prompts/a", "prompts/a/pack.yaml"] and skipped == ["prompts/README.md"]


# --- the format's JSON Schema and the starter pack -----------------------------------------


def test_shipped_schema_is_generated_from_the_model():
    shipped = json.loads(pack_format.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert shipped == pack_format.pack_schema(), "run `python -m synthdistill.packs.format` to regenerate it"
    assert shipped["additionalProperties"] is False
    assert set(shipped["required"]) == {"name", "version", "licence"}


def test_schema_validates_packs_as_editors_would(tmp_path):
    schema = pack_format.pack_schema()
    validator = jsonschema.Draft202012Validator(schema)
    good = yaml.safe_load(
        PACK_YAML + "verify: {kind: answer, field: answer, pattern: 'A: (\\d+)'}\nsampling: {temperature: 0.2}\n"
    )
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors({**good, "tempalte": "x"}))
    assert list(validator.iter_errors({**good, "verify": {"kind": "regex"}}))
    assert list(validator.iter_errors({**good, "sampling": {"temperature": 9}}))


def test_create_pack_writes_a_valid_commented_starter(tmp_path):
    folder = pack_format.create_pack("my-pack", tmp_path / "prompts")
    text = (folder / "pack.yaml").read_text(encoding="utf-8")
    first_line = text.splitlines()[0]
    assert first_line.startswith("# yaml-language-server: $schema=")
    schema_ref = first_line.split("$schema=", 1)[1]
    assert (folder / schema_ref).resolve() == pack_format.SCHEMA_PATH.resolve()
    assert text.count("\n# ") > 10  # explained, key by key
    report = packs.validate_pack(folder)
    assert report.ok and report.warnings == [] and report.prompts == 3
    data = yaml.safe_load(text)
    assert list(jsonschema.Draft202012Validator(pack_format.pack_schema()).iter_errors(data)) == []
    pack = packs.load_pack(folder)
    assert (
        pack.prompts[1].messages[-1].content
        == "Give three tips for writing a clear email.\nHint: Think about the subject line."
    )
    with pytest.raises(PackError, match="already exists"):
        pack_format.create_pack("my-pack", tmp_path / "prompts")
    with pytest.raises(PackError, match="may hold only letters"):
        pack_format.create_pack("bad name!", tmp_path / "prompts")


def test_starter_pack_commented_options_are_valid_when_uncommented(tmp_path):
    folder = pack_format.create_pack("opts", tmp_path)
    text = (folder / "pack.yaml").read_text(encoding="utf-8")
    for option in ("# sampling: ", "# verify: {kind: regex"):
        line = next(line for line in text.splitlines() if line.startswith(option))
        (folder / "pack.yaml").write_text(text + line.removeprefix("# ") + "\n", encoding="utf-8")
        assert packs.validate_pack(folder).ok, line
    answer = next(line for line in text.splitlines() if line.startswith("# verify: {kind: answer"))
    spec = yaml.safe_load(answer.removeprefix("# "))["verify"]
    assert pack_format.AnswerVerify.model_validate(spec).pattern == "Answer:\\s*(-?[\\d.,]+)"


def test_message_model_is_the_record_message():
    # Rows carry records.Message turns; the pack format adds no second message type.
    assert packs.reading.Prompt.model_fields["messages"].annotation == list[Message]
