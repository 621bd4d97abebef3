"""The whole filter stage from distill.yaml: every filter in order, plug-ins, config errors, funnel, CLI."""

from __future__ import annotations

import json

import pytest

from synthdistill import filter_stage
from synthdistill.cli import main
from synthdistill.config import FilterSpec, load_config
from synthdistill.errors import ConfigError
from synthdistill.filter_stage import read_kept, read_report
from synthdistill.filters import run_filters
from synthdistill.filters.funnel import funnel_lines
from synthdistill.policy import gate, write_decision
from synthdistill.store import HarvestStore
from tests.filtered_fixtures import dropped_rows
from tests.filters.test_verify_and_decontaminate import HELD_OUT, answer, write_pack
from tests.records_fixtures import make_record

CONFIG = """\
name: demo
teacher:
  backend: transformers
  model: HuggingFaceTB/SmolLM2-135M-Instruct
harvest:
  packs: [prompts/math]
"""

ALL_FILTERS = """\
filters:
  - finished
  - refusal
  - length: {min_chars: 1, max_tokens: 4096}
  - repetition: {max_repeated_ngram_fraction: 0.3}
  - dedup: {exact: true, near_threshold: 0.9}
  - confidence: {min_mean_logprob: -2.5}
  - verify
  - decontaminate: {against: [evals/heldout.jsonl], ngram: 13}
  - pii: {action: redact}
"""


def good(question: str, result: int, text: str | None = None, logprob: float = -0.2):
    text = text or f"Working it out step by step gives the result. Answer: {result}"
    record = answer("math", question, text, {"question": question, "answer": result})
    n = 5
    return record.model_copy(
        update={
            "tokens": ["t"] * n,
            "token_logprobs": [logprob] * n,
            "top_tokens": [["t"]] * n,
            "top_logprobs": [[logprob]] * n,
        }
    )


def project(tmp_path, filters: str = ALL_FILTERS):
    rows = [{"question": r.messages[0].content, "answer": r.variables["answer"]} for _, r in RECORDS]
    write_pack(tmp_path, "math", 'verify: {kind: answer, field: answer, pattern: "Answer:\\\\s*(-?[\\\\d.,]+)"}', rows)
    (tmp_path / "evals").mkdir(exist_ok=True)
    (tmp_path / "evals" / "heldout.jsonl").write_text(json.dumps({"question": HELD_OUT}) + "\n")
    path = tmp_path / "distill.yaml"
    path.write_text(CONFIG + filters)
    return load_config(path)


def harvest(config, records) -> None:
    ledger = config.layout.ledger
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with HarvestStore(ledger) as store:
        for record in records:
            store.put_done(record)
    write_decision(config.layout, gate(config))  # as the harvest records it


RECORDS = [
    ("kept", good("1+1?", 2)),
    ("finished", good("2+2?", 4).model_copy(update={"finish_reason": "length"})),
    ("refusal", good("3+3?", 6, "I'm sorry, but I can't help with that.")),
    ("length", good("4+4?", 8, " ")),  # whitespace only: finished drops it as empty first
    ("repetition", good("5+5?", 10, "Answer: 10. " * 12)),
    ("dedup", good("6+6?", 2, "Working it out step by step gives the result. Answer: 2")),
    ("confidence", good("7+7?", 14, logprob=-3.0)),
    ("verify", good("8+8?", 16, "Working it out step by step I get. Answer: 61")),
    ("decontaminate", good(HELD_OUT, 72, "She sold 72 clips in all. Answer: 72")),
    ("pii-redacted", good("9+9?", 18, "Mail me at ann@corp.io with questions. Answer: 18")),
]


def test_every_filter_from_distill_yaml_runs_in_order_and_writes_its_reasons(tmp_path):
    config = project(tmp_path)
    assert [f.name for f in config.filters] == [
        "finished",
        "refusal",
        "length",
        "repetition",
        "dedup",
        "confidence",
        "verify",
        "decontaminate",
        "pii",
    ]
    stale = good("An edited row's old question?", 1)
    harvest(config, [record for _, record in RECORDS] + [stale])
    report = filter_stage.run(config)
    assert report["stale"] == 1  # answers a prompt no longer in the pack: left in the ledger, never filtered

    assert (report["input"], report["kept"], report["dropped"], report["modified"]) == (10, 2, 8, 1)
    assert [(s["name"], s["input"], s["kept"], s["dropped"]) for s in report["steps"]] == [
        ("finished", 10, 8, 2),
        ("refusal", 8, 7, 1),
        ("length", 7, 7, 0),
        ("repetition", 7, 6, 1),
        ("dedup", 6, 5, 1),
        ("confidence", 5, 4, 1),
        ("verify", 4, 3, 1),
        ("decontaminate", 3, 2, 1),
        ("pii", 2, 2, 0),
    ]
    assert report["drop_reasons"] == {
        "finished:truncated": 1,
        "finished:empty": 1,
        "refusal:refusal": 1,
        "repetition:repetitive": 1,
        "dedup:exact-duplicate": 1,
        "confidence:low-confidence": 1,
        "verify:verifier-failed": 1,
        "decontaminate:contaminated": 1,
    }
    assert report["steps"][-1]["modified_reasons"] == {"redacted": 1}
    assert read_report(config) == report

    kept = read_kept(config)
    assert [r.text for r in kept] == [RECORDS[0][1].text, "Mail me at [EMAIL] with questions. Answer: 18"]
    dropped = dropped_rows(config.run_dir)
    assert [(d["filter"], d["reason"]) for d in dropped] == [
        ("finished", "truncated"),
        ("finished", "empty"),
        ("refusal", "refusal: sorry-cannot"),
        ("repetition", "repetitive: 91% of 3-grams repeat (max 30%)"),
        ("dedup", f"exact-duplicate: of {RECORDS[0][1].request_key}"),
        ("confidence", "low-confidence: mean logprob -3.000 < -2.5"),
        ("verify", "verifier-failed: answer 61 != expected 16 (off by 45, tolerance 1e-06)"),
        ("decontaminate", "contaminated: prompt shares a 13-word span with evals/heldout.jsonl:1"),
    ]
    assert dropped[0]["record"]["request_key"] == RECORDS[1][1].request_key  # the whole record is kept
    modified = [json.loads(line) for line in config.layout.modified.read_text().splitlines()]
    assert modified == [{"filter": "pii", "note": "redacted: email", "request_key": RECORDS[9][1].request_key}]


def test_funnel_lines_are_a_readable_table():
    report = {
        "input": 10,
        "kept": 7,
        "dropped": 3,
        "steps": [
            {"name": "finished", "input": 10, "kept": 9, "dropped": 1, "reasons": {"truncated": 1}},
            {"name": "refusal", "input": 9, "kept": 9, "dropped": 0, "reasons": {}},
            {
                "name": "dedup",
                "input": 9,
                "kept": 7,
                "dropped": 2,
                "reasons": {"near-duplicate": 1, "exact-duplicate": 1},
            },
            {
                "name": "pii",
                "input": 7,
                "kept": 7,
                "dropped": 0,
                "reasons": {},
                "modified": 2,
                "modified_reasons": {"redacted": 2},
            },
        ],
    }
    assert funnel_lines(report) == [
        "filter: 10 records → 7 kept (70.0%), 3 dropped",
        "  step            in      kept   dropped  reasons",
        "  finished        10         9         1  truncated 1",
        "  refusal          9         9         0  -",
        "  dedup            9         7         2  exact-duplicate 1, near-duplicate 1",
        "  pii              7         7         0  redacted 2",
    ]
    assert funnel_lines({"input": 0, "kept": 0, "dropped": 0, "steps": []}) == [
        "filter: 0 records → 0 kept, 0 dropped",
        "  no filters configured",
    ]


def test_cli_filter_prints_the_funnel_and_json(tmp_path, capsys):
    config = project(tmp_path, "filters: [finished, {pii: {action: redact}}]\n")
    harvest(config, [RECORDS[0][1], RECORDS[1][1], RECORDS[9][1]])
    assert main(["filter", "-c", str(config.path)]) == 0
    out = capsys.readouterr().out
    assert "filter: 3 records → 2 kept (66.7%), 1 dropped" in out
    assert "finished         3         2         1  truncated 1" in out
    assert "pii              2         2         0  redacted 1" in out
    assert main(["filter", "-c", str(config.path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["input"], summary["kept"], summary["modified"]) == (3, 2, 1)


# --- config errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ("  - refusl\n", "unknown filter 'refusl'; did you mean 'refusal'?"),
        ("  - length: {max_token: 10}\n", "filter 'length': unknown param 'max_token'; did you mean 'max_tokens'?"),
        ("  - pii: {action: scrub}\n", "filter 'pii': action: Input should be 'drop' or 'redact'"),
        (
            "  - repetition: {max_repeated_ngram_fraction: 2}\n",
            "filter 'repetition': max_repeated_ngram_fraction: Input should be less than or equal to 1",
        ),
        ("  - decontaminate\n", "filter 'decontaminate': against: Field required"),
        ("  - nosuchpkg.mod:fn\n", "filter 'nosuchpkg.mod:fn': cannot import 'nosuchpkg.mod': ModuleNotFoundError"),
    ],
)
def test_bad_filters_are_config_errors_naming_the_line(tmp_path, filters, message):
    path = tmp_path / "distill.yaml"
    path.write_text(CONFIG + "filters:\n  - finished\n" + filters)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"distill.yaml:9: 'filters.1': {message}" in str(info.value)


def test_bad_filter_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "distill.yaml"
    path.write_text(CONFIG + "filters: [finishd]\n")
    assert main(["filter", "-c", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown filter 'finishd'; did you mean 'finished'?" in err
    assert "Traceback" not in err


def test_missing_decontamination_file_exits_2(tmp_path, capsys):
    config = project(tmp_path, "filters:\n  - decontaminate: {against: [evals/missing.jsonl]}\n")
    harvest(config, [RECORDS[0][1]])
    assert main(["filter", "-c", str(config.path)]) == 2
    assert "filter 'decontaminate': against file 'evals/missing.jsonl' not found" in " ".join(
        capsys.readouterr().err.split()
    )


# --- plug-ins --------------------------------------------------------------------------

PLUGIN = """
from pydantic import BaseModel, ConfigDict

from synthdistill.filters import FilterOutcome


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    words: int = 3


def min_words(records, params):
    return [None if len(r.text.split()) >= params.words else f"few-words: under {params.words}" for r in records]


min_words.Params = Params


def shout(records, params):
    upper = [r.model_copy(update={"text": r.text.upper()}) for r in records]
    return FilterOutcome([None] * len(records), upper, [f"shouted: {params.get('why', 'no reason')}"] * len(records))
"""


def test_plugin_filter_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "sd_test_plugin_a.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "distill.yaml"
    path.write_text(
        CONFIG + "filters:\n  - sd_test_plugin_a:min_words: {words: 2}\n  - sd_test_plugin_a:shout: {why: test}\n"
    )
    config = load_config(path)
    assert [(f.name, f.params) for f in config.filters] == [
        ("sd_test_plugin_a:min_words", {"words": 2}),
        ("sd_test_plugin_a:shout", {"why": "test"}),
    ]
    records = [make_record("a", "one"), make_record("b", "two words")]
    result = run_filters(records, config.filters)
    assert [r.text for r in result.kept] == ["TWO WORDS"]
    assert [(d.filter, d.reason) for d in result.dropped] == [("sd_test_plugin_a:min_words", "few-words: under 2")]
    assert [(s.name, s.reasons, s.modified_reasons) for s in result.steps] == [
        ("sd_test_plugin_a:min_words", {"few-words": 1}, {}),
        ("sd_test_plugin_a:shout", {}, {"shouted": 1}),
    ]


def test_plugin_params_are_validated_by_its_model(tmp_path, monkeypatch):
    (tmp_path / "sd_test_plugin_b.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "distill.yaml"
    path.write_text(CONFIG + "filters:\n  - sd_test_plugin_b:min_words: {word: 2}\n  - sd_test_plugin_b:nothing\n")
    with pytest.raises(
        ConfigError, match=r"filter 'sd_test_plugin_b:min_words': unknown param 'word'; did you mean 'words'\?"
    ):
        load_config(path)
    path.write_text(CONFIG + "filters:\n  - sd_test_plugin_b:nothing\n")
    with pytest.raises(ConfigError, match=r"'sd_test_plugin_b' has no function 'nothing'"):
        load_config(path)


def test_a_filter_returning_the_wrong_number_of_verdicts_is_a_bug_not_a_silent_keep(tmp_path, monkeypatch):
    (tmp_path / "sd_test_plugin_c.py").write_text("def broken(records, params):\n    return [None]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeError, match="filter sd_test_plugin_c:broken returned 1 verdicts for 2 records"):
        run_filters([make_record("a"), make_record("b")], [FilterSpec(name="sd_test_plugin_c:broken")])
