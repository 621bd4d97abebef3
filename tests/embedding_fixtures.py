"""Teacher embeddings in a real ledger, as a harvest with `harvest.embeddings` stores them."""

from __future__ import annotations

import hashlib

import yaml

from synthdistill.config import load_config
from synthdistill.filter_stage import read_kept
from synthdistill.harvest_embeddings import DTYPE, embedding_spec, pack_vector
from synthdistill.store import HarvestStore, StoredEmbedding


def answer_vector(text: str, dims: int = 6) -> list[float]:
    """A text's stand-in embedding: numbers in [-1, 1) from its SHA-256 (exact in float32)."""
    return [(byte - 128) / 128 for byte in hashlib.sha256(text.encode()).digest()[:dims]]


def add_embeddings(config_path, every: int | None = 1, dims: int = 6):
    """Turn harvest.embeddings on in distill.yaml and store a vector for every `every`-th kept answer (None: none); the config."""
    data = yaml.safe_load(config_path.read_text())
    data["harvest"]["embeddings"] = {"model": "tiny-embedder", "base_url": "http://127.0.0.1:9/v1"}
    config_path.write_text(yaml.safe_dump(data))
    config = load_config(config_path)
    kept = [r.model_dump() for r in read_kept(config)]
    rows = [
        StoredEmbedding(
            r["request_key"],
            "tiny-embedder",
            dims,
            DTYPE,
            pack_vector(answer_vector(r["text"], dims)),
            1,
            1,
            "127.0.0.1:9",
        )
        for r in (kept[::every] if every else [])
    ]
    with HarvestStore(config.layout.ledger) as store:
        store.put_embeddings(embedding_spec(config), rows)
    return config
