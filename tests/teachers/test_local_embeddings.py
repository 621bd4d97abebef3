"""The in-process teacher embeds its own answers: its last hidden state mean-pooled over the answer."""

from __future__ import annotations

import sqlite3
import struct

import pytest
import torch
import yaml

from synthdistill import harvest
from synthdistill.chat_tokens import prompt_token_ids
from synthdistill.config import load_config
from tests.harvest_fixtures import ledger_of, write_project

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _in_process_project(tmp_path, embeddings: dict):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1", 3, harvest={"max_tokens": 6, "embeddings": embeddings})
    data = yaml.safe_load(path.read_text())
    data["teacher"] = {"backend": "transformers", "model": MODEL, "batch_size": 3}
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@pytest.mark.parametrize("how", ["answer", "prompt+answer"])
def test_the_in_process_teacher_embeds_each_answer_as_its_pooled_last_hidden_state(tmp_path, smollm2_dir, how):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = _in_process_project(tmp_path, {"input": how})
    summary = harvest.run(config).embeddings
    assert (summary.embedded, summary.requests_sent, summary.cost_usd, summary.dimensions) == (3, 1, 0.0, 576)

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    with sqlite3.connect(ledger_of(tmp_path)) as db:
        key, record, blob = db.execute(
            "SELECT r.request_key, r.record, e.vector FROM requests r JOIN embeddings e USING (request_key) LIMIT 1"
        ).fetchone()
    from synthdistill.records import HarvestRecord

    record = HarvestRecord.model_validate_json(record)
    prompt = prompt_token_ids(tokenizer, [m.model_dump() for m in record.messages])
    answer = tokenizer(record.text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hidden = model.model(input_ids=torch.tensor([prompt + answer])).last_hidden_state[0]
    expected = hidden[(0 if how == "prompt+answer" else len(prompt)) :].mean(0)
    stored = torch.tensor(struct.unpack("<576f", blob))
    assert torch.allclose(stored, expected, atol=1e-4)
