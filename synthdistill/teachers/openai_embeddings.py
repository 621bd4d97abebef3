"""Embedding vectors from an OpenAI-compatible `POST /embeddings` (vLLM with a pooling runner, llama.cpp's
server with --embeddings, OpenAI, …), and from the in-process teacher.

One call embeds one batch of answers (`EmbeddingBatch`) in one attempt, like `Teacher.complete`: the
harvester's retry policy (retrying.py) drives it and the faults are classified as the chat teacher's are
(429/5xx/timeouts retryable, 401/403 stop the run, other 4xx fail the batch; openai_http.py). An answer
that is not a list of one finite vector per input, all of one length, is `malformed` (retried).
"""

from __future__ import annotations

import base64
import math
import struct

from synthdistill.chat_tokens import prompt_token_ids
from synthdistill.errors import TeacherError
from synthdistill.teachers.embedding_batch import EmbeddingAnswer, EmbeddingBatch
from synthdistill.teachers.openai_dialects import malformed
from synthdistill.teachers.openai_http import OpenAIHTTPTeacher, endpoint_host

EMBEDDINGS_PATH = "/embeddings"


def parse_embeddings(payload: object, count: int, fallback_model: str, source: str) -> EmbeddingAnswer:
    """The vectors of an OpenAI embeddings answer (`data[i].embedding`: a list of numbers or base64 float32)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != count or not all(isinstance(d, dict) for d in data):
        raise malformed(f"{source} has no `data` list of {count} embeddings")
    ordered = sorted(data, key=lambda d: d.get("index", 0)) if all("index" in d for d in data) else data
    vectors = [_vector(d.get("embedding"), source) for d in ordered]
    if len({len(v) for v in vectors}) != 1:
        raise malformed(f"{source}: the embeddings have different lengths {sorted({len(v) for v in vectors})}")
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    tokens = usage.get("prompt_tokens", usage.get("total_tokens"))
    return EmbeddingAnswer(
        vectors=vectors,
        model=str(payload.get("model") or fallback_model),
        tokens=int(tokens) if isinstance(tokens, int) and tokens >= 0 else -1,
    )


def _vector(raw: object, source: str) -> list[float]:
    if isinstance(raw, str):  # encoding_format: base64 (little-endian float32)
        try:
            blob = base64.b64decode(raw, validate=True)
        except ValueError:
            raise malformed(f"{source}: an embedding is neither a list of numbers nor base64") from None
        raw = list(struct.unpack(f"<{len(blob) // 4}f", blob[: len(blob) // 4 * 4]))
    if isinstance(raw, list) and raw and all(isinstance(x, list) for x in raw):
        raise TeacherError(
            f"{source}: one vector per token, not one per input: the server does not pool (llama-cpp-python's "
            "server cannot; start llama.cpp's llama-server with --embeddings --pooling mean, vLLM with --runner "
            "pooling)"
        )
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in raw)
    ):
        raise malformed(f"{source}: an embedding is not a non-empty list of finite numbers (pooling per token?)")
    return [float(x) for x in raw]


class OpenAIEmbedder(OpenAIHTTPTeacher):
    """POST /embeddings at the endpoint's base URLs (round-robin and failover as the chat teacher's)."""

    def __init__(self, config, dimensions: int | None, api_key: str | None = None, *, transport=None):
        super().__init__(config, api_key, style="openai", transport=transport)
        self.dimensions = dimensions

    async def _attempt(self, base_url: str, batch: EmbeddingBatch) -> EmbeddingAnswer:  # type: ignore[override]
        body: dict = {"model": self.model, "input": batch.texts, "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        payload = await self._post(base_url, EMBEDDINGS_PATH, body)
        source = f"embeddings from {endpoint_host(base_url)}"
        answer = parse_embeddings(payload, len(batch.items), self.model, self._scrub(source))
        length = len(answer.vectors[0])
        if self.dimensions is not None and length != self.dimensions:
            raise TeacherError(
                f"{source} have {length} dimensions, not the {self.dimensions} asked "
                "(harvest.embeddings.dimensions): the model cannot shorten its vectors; drop dimensions"
            )
        return answer


class LocalEmbedder:
    """The in-process teacher's embedding of an answer: its last hidden state mean-pooled over the answer's
    tokens (input: answer) or over the prompt's and the answer's (input: prompt+answer), in context."""

    backend = "transformers"

    def __init__(self, teacher, pool_prompt: bool):
        self.teacher = teacher  # a TransformersTeacher (loads the model once)
        self.model = teacher.model
        self.pool_prompt = pool_prompt

    def endpoint_for(self, batch) -> None:
        return None

    async def complete(self, batch: EmbeddingBatch) -> EmbeddingAnswer:
        return await self.teacher.in_model_thread(self._embed, batch)

    def _embed(self, batch: EmbeddingBatch) -> EmbeddingAnswer:
        import torch

        model, tokenizer, device = self.teacher._load()
        kwargs = self.teacher.config.chat_template_kwargs or {}
        rows, spans = [], []
        for item in batch.items:
            prompt = prompt_token_ids(tokenizer, [m.model_dump() for m in item.record.messages], **kwargs)
            answer = tokenizer(item.record.text, add_special_tokens=False)["input_ids"]
            rows.append(prompt + answer)
            spans.append((0 if self.pool_prompt else len(prompt), len(prompt) + len(answer)))
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows], device=device)
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        pool = torch.zeros(ids.shape, dtype=torch.float32, device=device)
        for row, (start, end) in enumerate(spans):
            pool[row, start:end] = 1.0
        with torch.no_grad():
            hidden = model.base_model(input_ids=ids, attention_mask=attention).last_hidden_state.float()
        pooled = (hidden * pool[..., None]).sum(1) / pool.sum(1, keepdim=True).clamp(min=1.0)
        return EmbeddingAnswer(vectors=pooled.cpu().tolist(), model=self.model, tokens=0)

    async def aclose(self) -> None:
        await self.teacher.aclose()
