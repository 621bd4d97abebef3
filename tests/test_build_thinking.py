"""A thinking teacher end to end on the loopback server: harvest → filter → build, traces kept per prompt."""

from __future__ import annotations

import json

import pytest
import yaml

from synthdistill.cli import main
from tests.filtered_fixtures import kept_records
from tests.harvest_fixtures import ledger_of, ledger_rows, question, write_project
from tests.openai_server import FakeOpenAIServer, answer_text, trace_text

N = 6


def _project(tmp_path, server, student_dir=None, datasets=None, **harvest):
    path = write_project(tmp_path, server.base_url, N, teacher={"api_style": "vllm"}, harvest=harvest)
    config = yaml.safe_load(path.read_text())
    config["filters"] = ["finished"]
    if student_dir is not None:
        config["student"] = {"model": str(student_dir), "max_length": 256}
    if datasets is not None:
        config["datasets"] = datasets
    path.write_text(yaml.safe_dump(config))
    return path


def _records(project):
    return [json.loads(r[2]) for r in ledger_rows(ledger_of(project)) if r[1] == "done"]


@pytest.mark.parametrize(
    "shape, endpoint",
    [("reasoning", "chat"), ("reasoning_content", "chat"), ("inline", "chat"), ("inline", "completions")],
)
def test_every_record_keeps_its_own_trace_and_its_token_spans(tmp_path, shape, endpoint):
    with FakeOpenAIServer(dialect="openai", thinking=shape) as server:
        path = _project(tmp_path, server, max_tokens=200)
        config = yaml.safe_load(path.read_text())
        config["teacher"]["endpoint"] = endpoint
        path.write_text(yaml.safe_dump(config))
        assert main(["harvest", "-c", str(path)]) == 0
    records = _records(tmp_path)
    assert len(records) == N
    for record in records:
        prompt = record["messages"][-1]["content"]
        assert record["reasoning"] == trace_text(prompt) and record["text"] == answer_text(prompt)
        r0, r1 = record["reasoning_span"]
        a0, a1 = record["answer_span"]
        assert "".join(record["tokens"][r0:r1]).strip() == trace_text(prompt)
        assert "".join(record["tokens"][a0:a1]).strip() == answer_text(prompt)
        assert record["span_note"] is None and r1 < a0


def test_truncated_mid_thought_is_stored_once_and_dropped_by_finished(tmp_path):
    with FakeOpenAIServer(dialect="openai", thinking="reasoning") as server:
        path = _project(tmp_path, server, max_tokens=4)
        assert main(["harvest", "-c", str(path)]) == 0
        assert server.stats()["requests"] == N  # not one retry
    records = _records(tmp_path)
    assert {(r["text"], r["finish_reason"]) for r in records} == {("", "length")}
    assert all(r["reasoning"].startswith("Thinking about:") for r in records)
    assert main(["filter", "-c", str(path)]) == 0
    assert kept_records(tmp_path / "outputs" / "run") == []


def test_knobs_reach_the_vllm_body_and_an_openai_style_warns_once(tmp_path, capsys):
    with FakeOpenAIServer(dialect="vllm", thinking="reasoning") as server:
        path = _project(tmp_path, server, reasoning={"effort": "low", "budget_tokens": 64})
        config = yaml.safe_load(path.read_text())
        config["teacher"]["chat_template_kwargs"] = {"enable_thinking": True}
        path.write_text(yaml.safe_dump(config))
        assert main(["harvest", "-c", str(path)]) == 0
        body = server.stats()["last_request"]["body"]
        assert body["chat_template_kwargs"] == {"enable_thinking": True}
        assert (body["reasoning_effort"], body["thinking_token_budget"]) == ("low", 64)
        keys = {r["request_key"] for r in _records(tmp_path)}

        config["teacher"]["api_style"] = "openai"
        config["teacher"]["chat_template_kwargs"] = {"enable_thinking": False}  # a changed knob asks again
        path.write_text(yaml.safe_dump(config))
        capsys.readouterr()
        assert main(["--json", "harvest", "-c", str(path)]) == 0
        summary = json.loads(capsys.readouterr().out)
        body = server.stats()["last_request"]["body"]
    assert summary["answered"] == N and not keys & {r["request_key"] for r in _records(tmp_path)[N:]}
    assert body["reasoning_effort"] == "low" and "chat_template_kwargs" not in body
    assert summary["warnings"] == [
        "harvest.reasoning.budget_tokens ignored: the openai API style has no such setting",
        "teacher.chat_template_kwargs ignored: the openai API style has no such setting",
    ]


@pytest.mark.parametrize("mode", ["keep", "inline", "drop"])
def test_sft_rows_keep_each_prompts_trace_and_kd_covers_trace_and_answer(tmp_path, smollm2_dir, capsys, mode):
    import pyarrow.parquet as pq

    with FakeOpenAIServer(dialect="openai", thinking="reasoning") as server:
        path = _project(tmp_path, server, smollm2_dir, datasets={"reasoning": mode}, max_tokens=200, top_logprobs=1)
        assert main(["harvest", "-c", str(path)]) == 0
    assert main(["filter", "-c", str(path)]) == 0
    capsys.readouterr()
    assert main(["--json", "build", "-c", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    datasets = tmp_path / "outputs" / "run" / "datasets"
    rows = []
    for split_file in sorted((datasets / "sft" / "data").glob("*.parquet")):
        rows += pq.read_table(split_file).to_pylist()
    assert len(rows) == N
    for row in rows:
        prompt = row["messages"][0]["content"]
        assistant = row["messages"][-1]
        expected = {  # SmolLM2's template does not render reasoning_content: keep falls back to inline
            "keep": f"<think>\n{trace_text(prompt)}\n</think>\n\n{answer_text(prompt)}",
            "inline": f"<think>\n{trace_text(prompt)}\n</think>\n\n{answer_text(prompt)}",
            "drop": answer_text(prompt),
        }[mode]
        assert assistant["content"] == expected and assistant["reasoning_content"] is None
    assert sorted(r["messages"][0]["content"] for r in rows) == sorted(question(i) for i in range(N))
    build = json.loads((datasets / "kd" / "build.json").read_text())
    assert summary["kd_rows"] is not None and summary["kd_coverage"] > 0
    parts = build["coverage_by_part"]
    assert set(parts) == ({"answer"} if mode == "drop" else {"trace", "answer"})
    assert all(0 < share <= 1 for share in parts.values())
    assert "coverage by part" in (datasets / "kd" / "README.md").read_text()
    card = (datasets / "sft" / "README.md").read_text()
    assert ("inline" if mode != "drop" else "dropped") in card.split("## Reasoning traces", 1)[1]


# a Qwen3-like template: renders an assistant message's reasoning_content before its content
TEMPLATE_WITH_TRACE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n"
    "{% if message.role == 'assistant' and message.reasoning_content is string %}"
    "<think>\n{{ message.reasoning_content }}\n</think>\n\n{% endif %}"
    "{{ message.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_keep_uses_reasoning_content_where_the_students_template_renders_it(tmp_path, tokenizer, capsys):
    import copy

    import pyarrow.parquet as pq

    from synthdistill.chat_tokens import renders_reasoning_content, turn_text

    student = copy.deepcopy(tokenizer)
    student.chat_template = TEMPLATE_WITH_TRACE
    assert renders_reasoning_content(student) and not renders_reasoning_content(tokenizer)
    message = {"role": "assistant", "content": "It is 4.", "reasoning_content": "hmm"}
    text, trace, answer = turn_text(student, [{"role": "user", "content": "2+2?"}], message)
    assert text == "<think>\nhmm\n</think>\n\nIt is 4." and text[slice(*trace)] == "hmm"
    assert text[slice(*answer)] == "It is 4."
    student.save_pretrained(tmp_path / "student")

    with FakeOpenAIServer(dialect="openai", thinking="reasoning_content") as server:
        path = _project(tmp_path, server, tmp_path / "student", max_tokens=200, top_logprobs=1)
        assert main(["harvest", "-c", str(path)]) == 0
    assert main(["filter", "-c", str(path)]) == 0
    assert main(["build", "-c", str(path)]) == 0
    datasets = tmp_path / "outputs" / "run" / "datasets"
    rows = []
    for split_file in sorted((datasets / "sft" / "data").glob("*.parquet")):
        rows += pq.read_table(split_file).to_pylist()
    for row in rows:
        prompt = row["messages"][0]["content"]
        assert row["messages"][-1]["content"] == answer_text(prompt)
        assert row["messages"][-1]["reasoning_content"] == trace_text(prompt)
    build = json.loads((datasets / "kd" / "build.json").read_text())
    assert build["reasoning"] == "key" and set(build["coverage_by_part"]) == {"trace", "answer"}
    assert "`reasoning_content` key" in (datasets / "sft" / "README.md").read_text()


def test_id_spelled_tokens_that_are_not_the_students_get_no_kd_targets_and_say_why(tmp_path, smollm2_dir, capsys):
    with FakeOpenAIServer(dialect="vllm", thinking="reasoning") as server:  # "token_id:N" tokens, foreign ids
        path = _project(tmp_path, server, smollm2_dir, max_tokens=200, top_logprobs=1)
        assert main(["harvest", "-c", str(path)]) == 0
    records = _records(tmp_path)
    assert all(r["reasoning"] and r["reasoning_span"] is None and "trace not found" in r["span_note"] for r in records)
    assert main(["filter", "-c", str(path)]) == 0
    capsys.readouterr()
    assert main(["--json", "build", "-c", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kd_rows"] is None and summary["kd_dropped"] == {"trace-not-found-in-logprobs": N}


def test_id_spelled_tokens_of_the_students_own_vocabulary_are_decoded_to_find_the_trace(tokenizer):
    from synthdistill.alignment import single_token_mapper
    from synthdistill.build_traces import turn_targets
    from synthdistill.chat_tokens import assistant_message
    from tests.records_fixtures import make_record

    generated = "<think>\nhmm, two and two\n</think>\n\nIt is 4."
    ids = tokenizer(generated, add_special_tokens=False)["input_ids"]
    logprobs = {
        "tokens": [f"token_id:{i}" for i in ids],
        "token_ids": ids,
        "token_logprobs": [-0.5] * len(ids),
        "top_tokens": [[f"token_id:{i}"] for i in ids],
        "top_ids": [[i] for i in ids],
        "top_logprobs": [[-0.5] for _ in ids],
    }
    record = make_record("2+2?", "It is 4.", logprobs=logprobs).model_copy(update={"reasoning": "hmm, two and two"})
    messages = [{"role": "user", "content": "2+2?"}, assistant_message(record.text, record.reasoning, "inline")]
    targets, parts = turn_targets(record, messages, tokenizer, single_token_mapper(tokenizer), 0.1)
    assert targets.student_ids == ids  # the student's rendering is the teacher's own text here
    assert parts == {"trace": (6, 6), "answer": (5, 5)}  # h|mm|,| two| and| two — It| is| |4|.
    assert targets.masked == {"outside-trace-and-answer": len(ids) - 11}  # <think> markers and newlines: CE only
