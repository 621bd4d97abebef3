"""`synthdistill view`: the page of a real run folder, its sample of records, and the shaping functions."""

from __future__ import annotations

import json
import math
import re

import pytest

from synthdistill import view
from synthdistill.audit import verify_audit
from synthdistill.cli import main
from synthdistill.view import shape
from synthdistill.view.charts import line_chart
from synthdistill.view.collect import sample_indices, split_quota
from tests.audit_fixtures import ANSWERED_AS, QUESTIONS, make_run, write_project
from tests.filtered_fixtures import kept_records
from tests.openai_server import FakeOpenAIServer, token_logprob
from tests.view.view_fixtures import make_view_run, page_records


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_view_run(tmp_path_factory.mktemp("view"))


@pytest.fixture(scope="module")
def html(run) -> str:
    return view.run(run.run_dir).read_text()


def test_the_page_is_one_self_contained_file(run, html):
    assert (run.run_dir / "view.html").read_text() == html
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"<link\b|\bsrc\s*=|@import|url\(|https?://(?!example\.org|www\.w3\.org/2000/svg)", html)
    for anchor in ("funnel", "records", "datasets", "training", "evaluation", "terms"):
        assert f'<section id="{anchor}">' in html


def test_funnel_counts_prompts_requests_answered_kept_and_drops_per_pack(html):
    steps = re.findall(r'<span class="count">([^<]*)</span><span class="label">([^<]*)</span>', html)
    assert steps == [("6", "prompts"), ("6", "requests"), ("5", "answered"), ("3", "kept")]
    assert '<tr><td>finished:truncated</td><td class="num">2</td></tr>' in html
    pack_row = re.search(r'<table class="packs">.*?<tbody>\s*(<tr>.*?</tr>)', html, re.S).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", pack_row)
    # pack, prompts, requests, answered, failed, kept, dropped, drops by reason
    assert cells == ["audit-demo", "6", "6", "5", "1", "3", "2", "finished: truncated 2"]
    assert '<svg class="funnel"' in html  # the audit's funnel chart, reused


def test_records_carry_each_token_with_the_teachers_probability_and_alternatives(run, html):
    records = page_records(html)
    assert sorted((r["status"], r["reason"]) for r in records) == [
        ("dropped", "finished: truncated"),
        ("dropped", "finished: truncated"),
        ("kept", None),
        ("kept", None),
        ("kept", None),
    ]
    kept = kept_records(run.config.run_dir)
    by_id = {r["id"]: r for r in records}
    for record in kept:
        item = by_id[record["request_key"]]
        assert [t[0] for t in item["tokens"]] == record["tokens"] and "".join(record["tokens"]) == item["text"]
        assert item["length"] == len(record["tokens"]) and item["length_unit"] == "tokens"
        for position, (token, p, entropy, alternatives) in enumerate(item["tokens"]):
            assert p == round(math.exp(token_logprob(position)), 3)
            # the fake teacher's top-3: the sampled token, then alt1 and alt2, each one nat lower
            assert [a[0] for a in alternatives] == [token, "alt1", "alt2"]
            assert alternatives[1][1] == round(math.exp(token_logprob(position) - 1), 3)
            assert entropy == shape.token_entropy(record["top_logprobs"][position])
    assert "A seeded random sample" not in html and "All 5 records (3 of 3 kept, 2 of 2 dropped)" in html


def test_datasets_training_evaluation_and_terms(run, html):
    assert "<tr><td>sft</td><td>3</td><td>train 2, validation 1</td><td>–</td></tr>" in html
    assert '<tr><td>ce</td><td class="num">3.0000</td><td class="num">0.7500</td></tr>' in html
    assert '<tr><td>kl</td><td class="num">1.0000</td><td class="num">0.2500</td></tr>' in html
    for series in ("loss", "ce", "kl", "learning_rate"):
        assert f'data-series="{series}"' in html
    assert "<tr><td>NLL per token of the teacher&#39;s answers</td><td>2.5000</td><td>1.2500</td>" in html
    assert "<td>verifier pass rate: audit-demo</td><td>0.5000</td><td>1.0000</td>" in html
    # the sample's prompt is escaped; the three answers sit side by side
    assert "Say &lt;b&gt;hello&lt;/b&gt;." in html and "<b>hello</b>" not in html
    assert "<pre>Hello there.</pre>" in html and "<pre>hello hello hello</pre>" in html and "<pre>Hello!</pre>" in html
    assert "Decision: <b>allow-with-obligations</b>" in html
    assert "§2.1: Outputs may be used to train other models if they credit the Fake Teacher." in html
    assert "Distributed student names must begin with &quot;Fake&quot;" in html
    assert '<a id="audit-link" href="audit/report.html">' in html


def test_the_page_is_not_an_audited_artifact(run, html):
    assert verify_audit(run.run_dir) == []  # written after the audit, and again at will


def test_a_sample_when_records_exceed_the_cap_is_seeded_and_said(run, tmp_path):
    first = view.run(run.run_dir, output=tmp_path / "a.html", max_records=3).read_text()
    again = view.run(run.run_dir, output=tmp_path / "b.html", max_records=3).read_text()
    records = page_records(first)
    assert [r["id"] for r in records] == [r["id"] for r in page_records(again)]
    assert sorted(r["status"] for r in records) == ["dropped", "kept", "kept"]
    assert "A seeded random sample of 3 of 5 records (2 of 3 kept, 1 of 2 dropped)" in first
    # a page written elsewhere links the audit report relative to itself
    assert '<a id="audit-link" href="../' in first


def test_before_the_filter_the_page_shows_the_ledgers_answers(tmp_path):
    run = make_run(tmp_path, stages=("harvest",))
    html = view.run(run.run_dir).read_text()
    records = page_records(html)
    assert len(records) == len(QUESTIONS) - 1 and {r["status"] for r in records} == {"answered"}
    assert "No trained student yet" in html and "No evaluation yet" in html and "No audit yet" in html


def test_cli_view_writes_the_page_and_says_where(run, tmp_path, capsys):
    target = tmp_path / "page.html"
    assert main(["view", str(run.run_dir), "-o", str(target)]) == 0
    assert capsys.readouterr().out.replace("\n", "").startswith(f"view: {target} ")
    assert main(["--json", "view", "-c", str(run.config_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"page": str(run.run_dir / "view.html")}
    assert main(["view", str(tmp_path / "missing")]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_run_writes_the_page_last_and_prints_its_path(tmp_path, capsys):
    with FakeOpenAIServer(model=ANSWERED_AS) as server:
        config = write_project(tmp_path, server.base_url)
        assert main(["run", "-c", str(config), "--until", "filter"]) == 0
    out = capsys.readouterr().out
    page = tmp_path / "outputs" / "audit-run" / "view.html"
    assert out.rstrip().endswith(f"view      {page}")
    steps = re.findall(r'<span class="count">([^<]*)</span>', page.read_text())
    assert steps == ["6", "6", "6", "4"]  # two answers cut off at max_tokens, dropped by `finished`


def test_token_entropy_counts_the_mass_outside_the_top_k_as_one_bucket():
    assert shape.token_entropy([0.0]) == 0.0
    half = math.log(0.5)
    assert shape.token_entropy([half, half]) == round(math.log(2), 3)
    assert shape.token_entropy([half]) == round(math.log(2), 3)  # 0.5 in the top-k, 0.5 outside


def test_sample_quota_and_indices():
    assert split_quota({"kept": 90, "dropped": 10}, 40) == {"kept": 30, "dropped": 10}
    assert split_quota({"kept": 3, "dropped": 2}, 10) == {"kept": 3, "dropped": 2}
    assert split_quota({"kept": 0, "dropped": 7}, 4) == {"kept": 0, "dropped": 4}
    assert sample_indices(5, 10) == [0, 1, 2, 3, 4]
    chosen = sample_indices(1000, 10)
    assert chosen == sorted(chosen) and len(set(chosen)) == 10 and chosen == sample_indices(1000, 10)


def test_records_within_a_byte_budget_and_json_that_no_tag_closes():
    items = [{"text": "x" * 100, "n": i} for i in range(10)]
    assert len(shape.records_within(items, 360)) == 3  # 118 bytes each, with its newline
    assert len(shape.records_within(items, 10)) == 1  # at least one
    text = shape.compact_json({"text": "</script><script>alert(1)</script>"})
    assert "<" not in text and json.loads(text)["text"] == "</script><script>alert(1)</script>"


def test_training_series_reads_parts_and_older_flat_histories():
    assert shape.training_series({"loss_history": [{"step": 1.0, "loss": 2.0, "ce": 3.0, "kl": 1.0}]}) == {
        "loss": [(1.0, 2.0)],
        "ce": [(1.0, 3.0)],
        "kl": [(1.0, 1.0)],
    }
    history = [{"step": 2.0, "loss": 1.0, "learning_rate": 0.1, "parts": {"ce": 1.0, "feature": 0.5}}]
    assert shape.training_series({"loss_history": history}) == {
        "loss": [(2.0, 1.0)],
        "ce": [(2.0, 1.0)],
        "feature": [(2.0, 0.5)],
        "learning_rate": [(2.0, 0.1)],
    }


def test_alignment_counts_show_only_when_tokenizers_differ():
    same = {"kd": {"build": {"tokenizer_match": {"exact-ids": 4}, "alignment": {"exact": 4}}}}
    assert shape.alignment_rows(same) is None
    build = {
        "tokenizer_match": {"exact-ids": 1, "aligned-text": 3},
        "alignment": {"exact": 1, "partial": 2, "none": 1},
        "masked_positions": {"candidates-not-student-tokens": 5},
    }
    assert shape.alignment_rows({"kd": {"build": build}}) == {
        "records": {"exact": 1, "partial": 2, "none": 1},
        "matches": {"exact-ids": 1, "aligned-text": 3},
        "masked": {"candidates-not-student-tokens": 5},
    }


def test_the_page_counts_aligned_records_when_the_tokenizers_differ(tmp_path):
    run = make_run(tmp_path)
    build = {
        "tokenizer_match": {"aligned-text": 3},
        "alignment": {"exact": 1, "partial": 2, "none": 0},
        "masked_positions": {"no-teacher-token-with-same-boundaries": 4},
        "coverage": 0.8125,
    }
    kd = run.config.layout.dataset_build("kd")
    kd.parent.mkdir(parents=True)
    kd.write_text(json.dumps(build))
    html = view.run(run.run_dir).read_text()
    assert '<tr><td>every answer token (exact)</td><td class="num">1</td></tr>' in html
    assert '<tr><td>some answer tokens (partial)</td><td class="num">2</td></tr>' in html
    assert '<tr><td>no answer token (none)</td><td class="num">0</td></tr>' in html
    assert "Masked positions: no-teacher-token-with-same-boundaries 4." in html
    assert "<tr><td>kd</td><td>0</td><td></td><td>81.2%</td></tr>" in html


def test_line_chart_draws_each_series_on_round_steps():
    svg = line_chart({"loss": [(1.0, 2.0), (72.0, 0.5)], "ce": [(1.0, 3.0), (72.0, 1.0)]}, "loss and its parts")
    assert svg.startswith('<svg class="chart"') and svg.count("<path ") == 2
    steps = re.findall(r'text-anchor="middle">(\d+)</text>', svg)
    assert steps == ["20", "40", "60"]
    assert "<title>ce: 3 → 1</title>" in svg
    assert line_chart({}, "nothing") == ""
