"""harvest.embeddings against a real llama-cpp-python server started with `--embedding true`.

llama-cpp-python's server cannot pool a decoder model's states: it answers /v1/embeddings with one
vector per token. The harvest must say so, once per batch and without retrying, and keep the answers.
(llama.cpp's own llama-server pools with `--embeddings --pooling mean`.)
"""

from __future__ import annotations

import sqlite3

import pytest

pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (pip install 'llama-cpp-python[server]'; .ci/run does)"
)

from synthdistill import harvest
from synthdistill.config import load_config
from tests.harvest_fixtures import ledger_of, write_project
from tests.llamacpp_server import MODEL, llamacpp_server
from tests.openai_server import FakeOpenAIServer


@pytest.fixture(scope="module")
def llamacpp_embedding_url(tmp_path_factory):
    log = tmp_path_factory.mktemp("llamacpp-embed") / "server.log"
    with llamacpp_server(log, "--embedding", "true", n_ctx=512) as base_url:
        yield base_url


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
