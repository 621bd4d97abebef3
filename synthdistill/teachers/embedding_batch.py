"""What one embedding request carries and what it returns (light: the harvest imports it at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

from synthdistill.records import HarvestRecord


@dataclass
class EmbeddingItem:
    """One answer to embed: its record and the text sent (`harvest.embeddings.input`)."""

    record: HarvestRecord
    text: str


@dataclass
class EmbeddingBatch:
    """The answers of one /embeddings request; `request_key` names the batch (its first answer's key)."""

    items: list[EmbeddingItem]

    @property
    def request_key(self) -> str:
        return self.items[0].record.request_key

    @property
    def texts(self) -> list[str]:
        return [item.text for item in self.items]

    @property
    def tokens_bound(self) -> int:
        """More tokens than any tokenizer makes of the inputs (a byte-level BPE token covers ≥ 1 byte)."""
        return sum(len(text.encode("utf-8")) + 2 for text in self.texts)


@dataclass
class EmbeddingAnswer:
    vectors: list[list[float]]
    model: str
    tokens: int  # input tokens the server counted (the bound when it sent no usage)
