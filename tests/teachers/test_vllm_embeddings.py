"""harvest.embeddings against a real vLLM CPU server with a pooling runner (POST /v1/embeddings).

The answers come from the loopback test server; the embeddings from vLLM serving SmolLM2-135M-Instruct
with `--runner pooling --convert embed` and mean pooling, gated on their own by the shipped SmolLM2
policy. Skipped, with the reason, where vLLM cannot run (tests/vllm_server.py). The pooling server
is ready in about 2 minutes on 2 free cores (the whole module took 124 s); under a load of 20 it was
not ready in the fixture's 600 s.
"""

from __future__ import annotations

import math
import sqlite3
import struct

import pytest

from synthdistill import harvest
from synthdistill.config import load_config
from tests.harvest_fixtures import ledger_of, write_project
from tests.openai_server import FakeOpenAIServer
from tests.vllm_server import MODEL, VllmServer, skip_reason


@pytest.fixture(scope="module")
def vllm_embedder(smollm2_dir, tmp_path_factory):
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with VllmServer(tmp_path_factory.mktemp("vllm-embed") / "server.log", smollm2_dir, pooling=True) as server:
        yield server


def test_vllm_embeds_every_answer_and_a_rerun_asks_nothing(tmp_path, vllm_embedder):
    embeddings = {"model": MODEL, "base_url": vllm_embedder.base_url, "batch_size": 2}
    with FakeOpenAIServer() as teacher:
        config = write_project(tmp_path, teacher.base_url, 3, harvest={"embeddings": embeddings})
        first = harvest.run(load_config(config)).embeddings
        again = harvest.run(load_config(config)).embeddings

    assert (first.embedded, first.failed, first.requests_sent, first.dimensions) == (3, 0, 2, 576)
    assert first.tokens > 0  # vLLM's usage
    assert (again.embedded, again.already_done, again.requests_sent) == (0, 3, 0)
    with sqlite3.connect(ledger_of(tmp_path)) as db:
        rows = db.execute("SELECT model, dims, vector FROM embeddings").fetchall()
    assert len(rows) == 3 and {model for model, _, _ in rows} == {MODEL}
    vectors = [struct.unpack(f"<{dims}f", blob) for _, dims, blob in rows]
    assert all(math.isfinite(x) for v in vectors for x in v)
    assert len({v[:8] for v in vectors}) == 3  # three answers, three different vectors
