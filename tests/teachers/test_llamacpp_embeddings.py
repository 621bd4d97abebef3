"""harvest.embeddings against a real llama-cpp-python server started with `--embedding true`.

llama-cpp-python's server cannot pool a decoder model's states: it answers /v1/embeddings with one
vector per token. The harvest must say so, once per batch and without retrying, and keep the answers.
(llama.cpp's own llama-server pools with `--embeddings --pooling mean`.)
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (pip install 'llama-cpp-python[server]'; .ci/run does)"
)

from synthdistill import harvest
from synthdistill.config import load_config
from tests.harvest_fixtures import ledger_of, write_project
from tests.openai_server import FakeOpenAIServer
from tests.teachers.test_llamacpp_server import MODEL, _free_port, _gguf, _wait_ready


@pytest.fixture(scope="module")
def llamacpp_embedding_url(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("llamacpp-embed") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf()), "--model_alias", MODEL]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--n_threads", "2"]
    command += ["--embedding", "true"]
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(process, base_url, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_server_that_does_not_pool_is_refused_per_batch_with_how_to_fix_it(tmp_path, llamacpp_embedding_url):
    embeddings = {"model": MODEL, "base_url": llamacpp_embedding_url, "batch_size": 1}
    with FakeOpenAIServer() as teacher:
        config = write_project(tmp_path, teacher.base_url, 2, harvest={"embeddings": embeddings})
        summary = harvest.run(load_config(config))

    e = summary.embeddings
    assert summary.answered == 2  # the answers are kept
    assert (e.embedded, e.failed, e.requests_sent, e.errors_by_kind) == (0, 2, 2, {"rejected": 2})  # no retries
    with sqlite3.connect(ledger_of(tmp_path)) as db:
        errors = [row[0] for row in db.execute("SELECT error FROM embedding_failures")]
    assert len(errors) == 2
    assert all("one vector per token, not one per input: the server does not pool" in error for error in errors)
    assert all("--pooling mean" in error for error in errors)
