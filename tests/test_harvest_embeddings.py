"""harvest.embeddings: one vector per answer through a real loopback POST /v1/embeddings, inside the harvest."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time

import pyarrow.parquet as pq
import yaml

from synthdistill import build, harvest
from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.filter_stage import read_kept
from synthdistill.harvest_embeddings import embedding_spec
from tests.embedding_fixtures import add_embeddings, answer_vector
from tests.harvest_fixtures import FAKE_POLICY, ledger_of, question, write_project
from tests.openai_server import FakeOpenAIServer, answer_text, embedding_vector
from tests.training_fixtures import write_kept_project


def _vectors(ledger) -> dict[str, tuple[str, list[float]]]:
    """request_key → (model, vector) of every stored embedding, read straight from SQLite."""
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT request_key, model, dims, dtype, vector FROM embeddings").fetchall()
    assert all(dtype == "float32" and len(blob) == 4 * dims for _, _, dims, dtype, blob in rows)
    return {key: (model, list(struct.unpack(f"<{dims}f", blob))) for key, model, dims, _, blob in rows}


def _answers(ledger) -> dict[str, str]:
    """request_key → the answer's text."""
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT request_key, record FROM requests WHERE status = 'done'").fetchall()
    return {key: json.loads(record)["text"] for key, record in rows}


def _embedding_count(ledger) -> int:
    if not ledger.exists():
        return 0
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def test_each_answer_gets_its_vector_in_batches_and_a_rerun_asks_nothing(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 10, harvest={"embeddings": {"batch_size": 4}})
        first = harvest.run(load_config(config))
        stats = server.stats()
        again = harvest.run(load_config(config))
        capsys.readouterr()
        assert main(["harvest", "-c", str(config)]) == 0
        assert (
            "  embeddings (fake-model, 8 dims): 0 stored, 10 already, 0 failed (0 requests)" in capsys.readouterr().out
        )
        assert server.stats()["embedding_requests"] == stats["embedding_requests"] == 3  # 4 + 4 + 2 answers
        assert server.stats()["requests"] == stats["requests"] == 10

    e = first.embeddings
    assert (e.answers, e.embedded, e.already_done, e.failed, e.requests_sent) == (10, 10, 0, 0, 3)
    assert e.model == "fake-model" and e.dimensions == 8 and e.input == "answer" and e.cost_usd == 0.0
    assert e.tokens == sum(len(answer_text(question(i)).split()) for i in range(10))  # the server's usage
    a = again.embeddings
    assert (a.embedded, a.already_done, a.requests_sent, a.dimensions) == (0, 10, 0, 8)
    ledger = ledger_of(tmp_path)
    vectors, answers = _vectors(ledger), _answers(ledger)
    assert set(vectors) == set(answers)
    for key, text in answers.items():  # the very vector the server made of that answer, kept as float32 bytes
        assert vectors[key] == ("fake-model", embedding_vector(text, 8))
    assert set(stats["embedded"]) == set(answers.values()) and set(stats["embedded"].values()) == {1}


def test_prompt_and_answer_input_and_dimensions_are_sent_and_change_the_spec(tmp_path):
    settings = {"input": "prompt+answer", "dimensions": 5, "batch_size": 16}
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 3, harvest={"embeddings": settings})
        summary = harvest.run(load_config(config))
        embedded = server.stats()["embedded"]
    assert summary.embeddings.dimensions == 5 and summary.embeddings.requests_sent == 1
    assert sorted(embedded) == sorted(f"{question(i)}\n\n{answer_text(question(i))}" for i in range(3))
    spec = embedding_spec(load_config(config))
    assert spec != embedding_spec(load_config(write_project(tmp_path / "b", "http://127.0.0.1:9/v1", 1)))
    assert all(len(vector) == 5 for _, vector in _vectors(ledger_of(tmp_path)).values())


def test_429_and_503_are_retried_with_the_same_retry_policy(tmp_path):
    faults = {"fail_first_n_per_prompt": 2, "fail_kinds": ["429", "503"], "retry_after": 0.0}
    with FakeOpenAIServer(**faults) as server:
        config = write_project(tmp_path, server.base_url, 6, harvest={"embeddings": {"batch_size": 2}})
        summary = harvest.run(load_config(config))
        stats = server.stats()
    e = summary.embeddings
    assert (e.embedded, e.failed, e.requests_sent) == (6, 0, 9)  # 3 batches, each tried 3 times
    assert e.errors_by_kind == {"429": 3, "503": 3}
    assert stats["embedding_requests"] == 9 and set(stats["embedded"].values()) == {1}
    assert len(_vectors(ledger_of(tmp_path))) == 6


def test_a_batch_whose_retries_run_out_is_recorded_and_asked_again_by_the_next_run(tmp_path):
    with FakeOpenAIServer() as server:
        settings = {"embeddings": {"batch_size": 2}}
        config = write_project(tmp_path, server.base_url, 4, teacher={"max_retries": 0}, harvest=settings)
        harvest.run(load_config(config))  # the answers, and their vectors
        with sqlite3.connect(ledger_of(tmp_path)) as db:
            db.execute("DELETE FROM embeddings")
        server.configure(fail_first_n_per_prompt=1, fail_kinds=["500"])
        server.reset()
        failed = harvest.run(load_config(config)).embeddings
        retried = harvest.run(load_config(config)).embeddings
    assert (failed.embedded, failed.failed, failed.errors_by_kind) == (0, 4, {"500": 2})
    assert (retried.embedded, retried.failed, retried.already_done) == (4, 0, 0)
    assert len(_vectors(ledger_of(tmp_path))) == 4


def test_sigkill_mid_embeddings_then_resume_never_asks_twice(tmp_path):
    n = 24
    with FakeOpenAIServer(latency_s=0.1) as server:
        settings = {"embeddings": {"batch_size": 1}}
        config = write_project(tmp_path, server.base_url, n, teacher={"max_concurrency": 2}, harvest=settings)
        ledger = ledger_of(tmp_path)
        command = [sys.executable, "-m", "synthdistill", "harvest", "-c", str(config)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
        started = time.monotonic()
        while _embedding_count(ledger) < 3:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() - started < 60
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        time.sleep(0.3)
        stored = _embedding_count(ledger)
        asked_before = server.stats()["embedding_requests"]
        assert 3 <= stored < n and asked_before - stored <= 2  # at most the requests in flight were lost

        second = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        e = json.loads(second.stdout)["embeddings"]
        stats = server.stats()
    assert (e["already_done"], e["embedded"], e["failed"]) == (stored, n - stored, 0)
    assert e["requests_sent"] == stats["embedding_requests"] - asked_before == n - stored
    answers = _answers(ledger)
    assert set(_vectors(ledger)) == set(answers) and len(answers) == n
    # an answer whose vector was stored before the kill was never asked for again
    assert sum(stats["embedded"].values()) <= n + (asked_before - stored)
    with sqlite3.connect(ledger) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


DENIED_EMBEDDER = {
    **FAKE_POLICY,
    "id": "forbidden-embedder",
    "title": "Terms of an embedder whose outputs may not train models",
    "applies_to": {"models": ["forbidden-embedder"], "hosts": []},
    "outputs_for_training": "forbidden",
    "clause": "§2: embeddings may not be used to train models",
}


def test_a_forbidden_embedding_model_is_refused_before_any_request(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 3, harvest={"embeddings": {"model": "forbidden-embedder"}})
        (tmp_path / "policies" / "embedder.yaml").write_text(yaml.safe_dump(DENIED_EMBEDDER, sort_keys=False))
        assert main(["harvest", "-c", str(config)]) == 3
        err = capsys.readouterr().err
        unknown = write_project(tmp_path / "u", server.base_url, 3, harvest={"embeddings": {"model": "other-embedder"}})
        assert main(["harvest", "-c", str(unknown)]) == 3
        err_unknown = capsys.readouterr().err
        stats = server.stats()
    assert stats["requests"] == 0 and stats["embedding_requests"] == 0  # not one answer, not one embedding
    assert "the embedding model 'forbidden-embedder' is decided on its own, and the gate refused it" in err
    assert "§2: embeddings may not be used to train models" in err and "Traceback" not in err
    assert "the embedding model 'other-embedder' is decided on its own" in err_unknown
    assert not ledger_of(tmp_path).exists()


def test_an_allowed_embedding_model_is_recorded_in_the_decision_and_its_answers_as_another_model_refused(tmp_path):
    allowed = {**FAKE_POLICY, "id": "embedder", "applies_to": {"models": ["fake-embedder"], "hosts": []}}
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 2, harvest={"embeddings": {"model": "fake-embedder"}})
        (tmp_path / "policies" / "embedder.yaml").write_text(yaml.safe_dump(allowed, sort_keys=False))
        summary = harvest.run(load_config(config))
        decision = json.loads((tmp_path / "outputs" / "run" / "harvest" / "decision.json").read_text())
        assert summary.embeddings.embedded == 2
        assert decision["embedding_model"] == {
            "model": "fake-embedder",
            "hosts": ["127.0.0.1"],
            "outcome": "allow",
            "policy_ids": ["embedder"],
            "reason": decision["embedding_model"]["reason"],
        }
        # the endpoint answers as a model no policy allows: nothing of it is stored, exit 3
        with sqlite3.connect(ledger_of(tmp_path)) as db:
            db.execute("DELETE FROM embeddings")
        server.configure(embedding_model="someone-else")
        assert main(["harvest", "-c", str(config)]) == 3
    assert _vectors(ledger_of(tmp_path)) == {}


def test_the_vectors_land_in_the_kd_dataset_and_its_card(tmp_path, tiny_student, tokenizer):
    config = add_embeddings(write_kept_project(tmp_path, tiny_student, tokenizer), every=3)  # 4 of 10 answers
    summary = build.run(config)

    assert summary.kd_rows == {"train": 8, "validation": 2}
    kept = {r.request_key: r.text for r in read_kept(config)}
    with_vector = set(list(kept)[::3])
    folder = config.layout.dataset_dir("kd")
    rows = []
    for split in ("train", "validation"):
        table = pq.read_table(config.layout.split_file("kd", split))
        assert str(table.schema.field("teacher_embedding").type) == "list<element: float>"
        rows += table.select(["request_key", "teacher_embedding"]).to_pylist()
    for row in rows:  # the stored float32 numbers exactly; null where the answer has none
        expected = answer_vector(kept[row["request_key"]]) if row["request_key"] in with_vector else None
        assert row["teacher_embedding"] == expected
    note = json.loads(config.layout.dataset_build("kd").read_text())["teacher_embeddings"]
    assert (note["model"], note["dimensions"], note["rows_with"], note["rows_without"]) == ("tiny-embedder", 6, 4, 6)
    card = (folder / "README.md").read_text()
    assert "`teacher_embedding`: the teacher's embedding of the answer from `tiny-embedder` (6 float32 numbers" in card
    assert "4 rows have one, 6 are null" in card


def test_runs_without_embeddings_have_no_column(tmp_path):
    from synthdistill.harvest_embeddings import stored_vectors

    with FakeOpenAIServer() as server:
        config = load_config(write_project(tmp_path, server.base_url, 2))
        harvest.run(config)
    assert stored_vectors(config) is None  # harvest.embeddings off: no column at all


def test_embeddings_spend_the_harvest_budget_and_stop_cleanly_before_passing_it(tmp_path):
    # $1 per embedding token: each single-answer request reserves its bound (~42 tokens), then costs ~9
    pricing = {"models": [{"model": "fake-embedder", "input_per_million": 1e6, "output_per_million": 0.0}]}
    allowed = {**FAKE_POLICY, "id": "embedder", "applies_to": {"models": ["fake-embedder"], "hosts": []}}
    settings = {"embeddings": {"model": "fake-embedder", "batch_size": 1}, "budget_usd": 100}
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 10, harvest=settings, pricing=pricing)
        (tmp_path / "policies" / "embedder.yaml").write_text(yaml.safe_dump(allowed, sort_keys=False))
        first = harvest.run(load_config(config)).embeddings
        second = harvest.run(load_config(config)).embeddings
        asked = server.stats()["embedding_requests"]
    tokens = len(answer_text(question(0)).split())
    assert (first.embedded, first.stopped, first.not_sent, first.cost_usd) == (2, "budget", 8, 2.0 * tokens)
    # the next run counts what the ledger's embeddings cost: $82 left, room for one more reservation
    assert (second.embedded, second.already_done, second.stopped, second.not_sent) == (1, 2, "budget", 7)
    assert asked == 3 and len(_vectors(ledger_of(tmp_path))) == 3
