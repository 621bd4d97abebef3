"""A tool-calling teacher end to end on the loopback server: harvest → filter → build, and what training learns.

The student is SmolLM2's tokenizer with a Hermes-style template that renders tools (as Qwen's
does); SmolLM2's own template renders none, and `build` refuses it.
"""

from __future__ import annotations

import copy
import json

import yaml

from synthdistill.cli import main
from synthdistill.tool_turns import renders_tools, tool_turn_text
from tests.filtered_fixtures import kept_records, write_kept
from tests.harvest_fixtures import question, write_project
from tests.openai_server import FakeOpenAIServer, tool_call_text

N = 6
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic question",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
        },
    }
]
# Hermes / Qwen2.5 style: tools in a system turn, calls as <tool_call>{json}</tool_call>, results as user turns
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}"
    "<|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant\n"
    "{% if message.content %}{{ message.content }}\n{% endif %}"
    "{% for call in message.tool_calls %}<tool_call>\n"
    '{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}\n</tool_call>'
    "{% endfor %}<|im_end|>\n"
    "{% elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n"
    "</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tool_student(tokenizer, folder):
    student = copy.deepcopy(tokenizer)
    student.chat_template = TOOL_TEMPLATE
    student.save_pretrained(folder)
    return student


def _project(tmp_path, server, student_dir):
    path = write_project(tmp_path, server.base_url, N, harvest={"max_tokens": 200, "top_logprobs": 2})
    pack_file = tmp_path / "prompts" / "tiny" / "pack.yaml"
    pack_file.write_text(yaml.safe_dump({**yaml.safe_load(pack_file.read_text()), "tools": TOOLS}))
    config = yaml.safe_load(path.read_text())
    config["student"] = {"model": str(student_dir), "max_length": 256}
    config["datasets"] = {"eval_fraction": 0.34, "seed": 0}
    path.write_text(yaml.safe_dump(config))
    return path


def test_tool_rows_load_in_the_shape_trl_and_chat_templates_take(tmp_path, tokenizer, capsys):
    from datasets import load_dataset

    student = _tool_student(tokenizer, tmp_path / "student")
    assert renders_tools(student) and not renders_tools(tokenizer)
    with FakeOpenAIServer() as server:
        path = _project(tmp_path, server, tmp_path / "student")
        assert main(["harvest", "-c", str(path)]) == 0
    capsys.readouterr()
    assert main(["filter", "-c", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kept"] == N  # a tool call alone is neither empty nor a duplicate
    assert main(["build", "-c", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sum(summary["sft_rows"].values()) == N

    datasets = tmp_path / "outputs" / "run" / "datasets"
    files = {p.stem.split("-")[0]: str(p) for p in (datasets / "sft" / "data").glob("*.parquet")}
    loaded = load_dataset("parquet", data_files=files)
    rows = [row for split in loaded.values() for row in split]
    assert len(rows) == N
    for row in rows:
        prompt = row["messages"][0]["content"]
        assert row["tools"] == TOOLS
        final = row["messages"][-1]
        assert final["role"] == "assistant" and final["content"] == ""
        assert [(c["function"]["name"], c["function"]["arguments"]) for c in final["tool_calls"]] == [
            ("calculator", {"expression": prompt})
        ]
        # transformers renders the row as it is: the call in the student's template
        rendered = student.apply_chat_template(row["messages"], tools=row["tools"], tokenize=False)
        assert tool_call_text("calculator", json.dumps({"expression": prompt})) in rendered


def test_training_learns_the_call_turn_only_never_tool_results_or_user_turns(tokenizer, tmp_path):
    from synthdistill.train.data import sft_token_rows

    student = _tool_student(tokenizer, tmp_path / "student")
    arguments = json.dumps({"expression": "2+2"})
    call = {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": arguments}}
    row = {
        "tools": [json.dumps(t) for t in TOOLS],
        "messages": [
            {"role": "user", "content": "What is 2+2? USER-TURN", "tool_calls": None, "tool_call_id": None},
            {"role": "assistant", "content": "", "tool_calls": [call], "tool_call_id": None},
            {"role": "tool", "content": "TOOL-RESULT 4", "tool_calls": None, "tool_call_id": "c1"},
            {"role": "user", "content": "And 3+3? SECOND-USER-TURN", "tool_calls": None, "tool_call_id": None},
            {"role": "assistant", "content": "", "tool_calls": [{**call, "id": "c2"}], "tool_call_id": None},
        ],
    }
    (example,) = sft_token_rows([row], student, max_length=512)
    learned = [t for t, label in zip(example["input_ids"], example["labels"]) if label != -100]
    prompt = student.decode(example["input_ids"][: len(example["input_ids"]) - len(learned)])
    assert student.decode(learned) == tool_call_text("calculator", arguments) + student.eos_token
    assert "TOOL-RESULT 4" in prompt and "SECOND-USER-TURN" in prompt and '"name": "calculator"' in prompt
    text = tool_turn_text(student, row["messages"][:-1], row["messages"][-1], TOOLS)
    assert text == tool_call_text("calculator", arguments)


def test_a_student_whose_template_cannot_render_tools_is_refused_at_build(tmp_path, smollm2_dir, capsys):
    with FakeOpenAIServer() as server:
        path = _project(tmp_path, server, smollm2_dir)
        assert main(["harvest", "-c", str(path)]) == 0
    assert main(["filter", "-c", str(path)]) == 0
    capsys.readouterr()
    assert main(["build", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"the student '{smollm2_dir}' has its chat_template, which does not render tools" in " ".join(err.split())
    assert "chat_template.jinja" in err
    assert question(0)  # the harvest itself was fine


def test_kd_targets_cover_the_call_tokens_where_the_teacher_gave_logprobs(tmp_path, tokenizer, capsys):
    from synthdistill.records import AnswerFormat, FunctionCall, HarvestRecord, ToolCall
    from tests.training_fixtures import ANSWERS, teacher_logprobs, write_kept_project

    student = _tool_student(tokenizer, tmp_path / "student")
    path = write_kept_project(tmp_path, tmp_path / "student", tokenizer, max_length=512)
    run_dir = tmp_path / "outputs" / "tiny"
    records = []
    for stored in kept_records(run_dir):
        record = HarvestRecord.model_validate(stored)
        arguments = json.dumps({"expression": record.messages[-1].content})
        calls = [ToolCall(id="c", function=FunctionCall(name="calculator", arguments=arguments))]
        # a teacher of the student's family: its call text is the student's, token for token
        logprobs = teacher_logprobs(student, tool_call_text("calculator", arguments))
        records.append(
            record.model_copy(
                update={
                    "text": "",
                    "tool_calls": calls,
                    "finish_reason": "tool_calls",
                    "answer_format": AnswerFormat(tools=TOOLS),
                    **logprobs,
                }
            )
        )
    write_kept(run_dir, records)
    assert main(["build", "-c", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kd_rows"] is not None, summary
    assert sum(summary["kd_rows"].values()) == len(ANSWERS)
    assert summary["kd_coverage"] >= 0.95  # every call token but the stop token has targets
    import pyarrow.parquet as pq

    row = pq.read_table(tmp_path / "outputs/tiny/datasets/kd/data/train-00000-of-00001.parquet").to_pylist()[0]
    learned = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert student.decode(learned).startswith('<tool_call>\n{"name": "calculator"')
    assert sum(row["kd_mask"]) == len(learned) - 1
