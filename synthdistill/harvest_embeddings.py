"""The embedding part of the harvest: one vector per answer through `POST /embeddings` (`harvest.embeddings`).

    prepare (before any request): the gate decides on the embedding model where it is not the
        teacher at its hosts (refused: exit 3, nothing sent); a budget needs its price; the key
    after the answers: every answer in the ledger without a vector for this spec → batches of
        `batch_size` → `teacher.max_concurrency` workers, each: reserve budget → rate limiter →
        ask with retries (retrying.py, the run's limiter and brake) → commit the batch's vectors

An embedding is a teacher output: it shares the harvest's scheduler, ledger, budget and gate.
Vectors are committed to the ledger (store.py, m007) batch by batch in one transaction, keyed by
(request key, spec), where the spec is a digest of the model, dimensions and input: `kill -9` loses
at most the batches in flight, a re-run asks only for the answers without one, and a changed spec
embeds again without overwriting. With the in-process transformers teacher (no base_url), the
teacher itself embeds: its last hidden state mean-pooled over the answer (teachers/openai_embeddings.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
from collections import deque
from dataclasses import dataclass, field

from pydantic import BaseModel

from synthdistill.api_keys import embeddings_api_key
from synthdistill.config import DistillConfig, EmbeddingsConfig
from synthdistill.errors import AnsweringModelRefused
from synthdistill.policy import gate_embeddings, refusal_message, same_model
from synthdistill.policy.gate import decide_for
from synthdistill.pricing import Budget, Price, check_budget_priced, load_price_table, quote
from synthdistill.records import HarvestRecord
from synthdistill.retrying import RequestFailed, RetryPolicy, until_first_failure
from synthdistill.store import HarvestStore, LedgerReader, StoredEmbedding
from synthdistill.teachers.embedding_batch import EmbeddingBatch, EmbeddingItem
from synthdistill.teachers.transformers_local import TransformersTeacher

DTYPE = "float32"


class EmbeddingSummary(BaseModel):
    """What the embedding part of a harvest did (HarvestSummary.embeddings)."""

    model: str
    spec: str
    input: str
    dimensions: int | None  # the vectors' length (the asked one, else the first stored)
    answers: int  # answers in the ledger that can be embedded
    already_done: int
    embedded: int
    failed: int
    skipped_empty: int  # answers with no text to embed
    requests_sent: int
    tokens: int
    cost_usd: float | None
    stopped: str | None
    not_sent: int
    errors_by_kind: dict[str, int]


@dataclass
class EmbeddingSetup:
    """The embedding endpoint as the harvest uses it, settled before the first request."""

    settings: EmbeddingsConfig
    model: str
    base_urls: list[str]  # empty: the in-process teacher embeds
    spec: str
    price: Price | None
    api_key: str | None = None
    answered_as: dict[str, bool] = field(default_factory=dict)  # models the endpoint answered as → allowed


def embedding_model(config: DistillConfig) -> str:
    return config.harvest.embeddings.model or config.teacher.model


def embedding_spec(config: DistillConfig) -> str | None:
    """The digest that keys the vectors of the configured embeddings (model, dimensions, input); None when off."""
    settings = config.harvest.embeddings
    if settings is None:
        return None
    spec = {"model": embedding_model(config), "dimensions": settings.dimensions, "input": settings.input}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return f"sha256:{digest[:16]}"


def embedding_input(record: HarvestRecord, how: str) -> str:
    """The text embedded for an answer: its text (a tool call's calls where it has none), after the prompt with
    `prompt+answer`."""
    answer = record.text if record.text.strip() or not record.tool_calls else record.calls_text
    if how == "answer" or not answer.strip():
        return answer
    return "\n\n".join([*(m.content for m in record.messages if m.content), answer])


def prepare(config: DistillConfig, decision):
    """(setup or None, the run's decision with the embedding model decided); raises PolicyDenied (exit 3),
    ConfigError (a budget without a price), MissingSecretError, all before any request."""
    settings = config.harvest.embeddings
    if settings is None:
        return None, decision
    in_process = config.teacher.backend == "transformers" and settings.base_url is None
    model = embedding_model(config)
    urls = [] if in_process else settings.urls(config.teacher)
    decision = gate_embeddings(config, decision, model, urls, settings.policy)
    if in_process:
        price = Price(model=model, input_per_million=0.0, output_per_million=0.0)
    else:
        price = quote(model, urls, load_price_table(config.project_dir)).price
    check_budget_priced(price, config.harvest.budget_usd, model, config.path)
    setup = EmbeddingSetup(settings, model, urls, embedding_spec(config), price, embeddings_api_key(config, settings))
    return setup, decision


def spent_usd(setup: EmbeddingSetup | None, store: HarvestStore) -> float:
    """What the ledger's embeddings have cost (they count against harvest.budget_usd with the answers)."""
    if setup is None or setup.price is None:
        return 0.0
    return setup.price.cost(store.embedding_tokens(), 0)


def pack_vector(vector: list[float]) -> bytes:
    """A vector as the ledger stores it: little-endian float32."""
    return struct.pack(f"<{len(vector)}f", *vector)


def unpack_vector(stored: StoredEmbedding) -> list[float]:
    return list(struct.unpack(f"<{stored.dims}f", stored.vector))


def make_embedder(config: DistillConfig, setup: EmbeddingSetup):
    """The HTTP embedder (the teacher's timeout, concurrency and dialect-free client), or the in-process one."""
    if not setup.base_urls:
        from synthdistill.teachers.openai_embeddings import LocalEmbedder

        teacher = TransformersTeacher(config.teacher, project_dir=config.project_dir)
        return LocalEmbedder(teacher, pool_prompt=setup.settings.input == "prompt+answer")
    from synthdistill.teachers.openai_embeddings import OpenAIEmbedder

    endpoint = config.teacher.model_copy(
        update={
            "model": setup.model,
            "base_url": setup.base_urls,
            "api_key_env": setup.settings.api_key_env or config.teacher.api_key_env,
            "backend": "openai",
            "endpoint": "chat",
            "api_style": "openai",
        }
    )
    return OpenAIEmbedder(endpoint, setup.settings.dimensions, setup.api_key)


class EmbeddingRun:
    """One pass over the answers without a vector: the queue of batches, the budget and the tallies."""

    def __init__(self, run, setup: EmbeddingSetup, budget: Budget):
        self.run, self.setup, self.budget = run, setup, budget
        self.config, self.store = run.config, run.store
        self.embedded = self.failed = self.requests_sent = self.tokens = 0
        self.dims: int | None = None
        self.errors_by_kind: dict[str, int] = {}
        self.embedder = None
        self.policy = RetryPolicy(
            run.limiter,
            run.brake,
            run.config.teacher.max_retries,
            on_send=self._sent,
            on_retry=self._retrying,
            on_pause=run._paused,
        )

    def _sent(self) -> None:
        self.requests_sent += 1

    def _retrying(self, exc) -> None:
        self.errors_by_kind[exc.kind] = self.errors_by_kind.get(exc.kind, 0) + 1

    async def send(self, batches: list[EmbeddingBatch]) -> int:
        """Embed every batch (returns early on a budget stop); how many answers were left unsent."""
        queue = deque(batches)
        self.embedder = make_embedder(self.config, self.setup)
        workers = [
            asyncio.create_task(self._worker(queue))
            for _ in range(min(self.config.teacher.max_concurrency, len(batches)))
        ]
        try:
            await until_first_failure(workers)
        finally:
            await self.embedder.aclose()
        return sum(len(batch.items) for batch in queue)

    async def _worker(self, queue: deque[EmbeddingBatch]) -> None:
        while queue and not self.budget.exhausted:
            batch = queue.popleft()
            reserved = self.budget.reserve(batch.tokens_bound, 0)
            if reserved is None:
                queue.appendleft(batch)
                return
            try:
                answer, attempts, _ = await self.policy.ask(self.embedder, batch, batch.tokens_bound)
                self._admit(answer.model)
            except RequestFailed as exc:
                self.budget.release(reserved)
                keys = [item.record.request_key for item in batch.items]
                self.store.put_embedding_failures(self.setup.spec, keys, exc.kind, exc.message, exc.attempts)
                self.errors_by_kind[exc.kind] = self.errors_by_kind.get(exc.kind, 0) + 1
                self.failed += len(keys)
                continue
            except BaseException:
                self.budget.release(reserved)
                raise
            tokens = answer.tokens if answer.tokens >= 0 else batch.tokens_bound
            self.budget.settle(reserved, tokens, 0)
            self._store(batch, answer, attempts, tokens)

    def _store(self, batch: EmbeddingBatch, answer, attempts: int, tokens: int) -> None:
        endpoint = self.embedder.endpoint_for(batch)
        shares = _shares(tokens, [len(text) for text in batch.texts])
        rows = [
            StoredEmbedding(
                request_key=item.record.request_key,
                model=answer.model,
                dims=len(vector),
                dtype=DTYPE,
                vector=pack_vector(vector),
                tokens=share,
                attempts=attempts,
                endpoint=endpoint,
            )
            for item, vector, share in zip(batch.items, answer.vectors, shares)
        ]
        self.embedded += self.store.put_embeddings(self.setup.spec, rows)
        self.dims = rows[0].dims
        self.tokens += tokens

    def _admit(self, answered: str) -> None:
        """An endpoint that answers as another model has the gate decide on that model (once); refused: stop."""
        if same_model(answered, self.setup.model):
            return
        if answered not in self.setup.answered_as:
            run = self.run
            use, urls = run.decision.gated_use, self.setup.base_urls
            found = decide_for(self.config, use=use, model=answered, policy_choice="auto", base_urls=urls)
            self.setup.answered_as[answered] = found.allowed
            if not found.allowed:
                lead = f"the embedding endpoint answered as '{answered}', not '{self.setup.model}', and the gate refused it"
                message = refusal_message(found, lead, "Its vectors were not stored; the harvest stopped.")
                raise AnsweringModelRefused(message, model=answered)
        if not self.setup.answered_as[answered]:
            raise AnsweringModelRefused(f"the gate refused the embedding model '{answered}'", model=answered)


def _shares(total: int, weights: list[int]) -> list[int]:
    """`total` split over the inputs in proportion to `weights` (the usage of a request is per request)."""
    whole = sum(weights) or 1
    shares = [total * w // whole for w in weights]
    shares[0] += total - sum(shares)
    return shares


def plan_batches(run, setup: EmbeddingSetup) -> tuple[list[EmbeddingBatch], int, int, int]:
    """(batches to send, answers that can be embedded, already embedded, answers with no text)."""
    store: HarvestStore = run.store
    refused = set(store.refused_models())
    done = store.embedded_keys(setup.spec)
    items, answers, empty = [], 0, 0
    for record in store.records():
        if record.model_answered in refused:
            continue
        text = embedding_input(record, setup.settings.input)
        if not text.strip():
            empty += 1
            continue
        answers += 1
        if record.request_key not in done:
            items.append(EmbeddingItem(record, text))
    size = setup.settings.batch_size
    batches = [EmbeddingBatch(items[i : i + size]) for i in range(0, len(items), size)]
    return batches, answers, answers - len(items), empty


async def harvest_embeddings(run, setup: EmbeddingSetup) -> EmbeddingSummary:
    """Embed every answer in the ledger that has no vector for the spec (after the answers were harvested)."""
    chat = run.budget
    budget = Budget(setup.price, chat.limit_usd, chat.spent_before_usd + chat.spent_usd)
    batches, answers, already, empty = plan_batches(run, setup)
    embedding = EmbeddingRun(run, setup, budget)
    not_sent = await embedding.send(batches) if batches else 0
    return EmbeddingSummary(
        model=setup.model,
        spec=setup.spec,
        input=setup.settings.input,
        dimensions=embedding.dims or run.store.embedding_dims(setup.spec),
        answers=answers,
        already_done=already,
        embedded=embedding.embedded,
        failed=embedding.failed,
        skipped_empty=empty,
        requests_sent=embedding.requests_sent,
        tokens=embedding.tokens,
        cost_usd=budget.cost_usd,
        stopped="budget" if budget.exhausted else None,
        not_sent=not_sent,
        errors_by_kind=embedding.errors_by_kind,
    )


def stored_vectors(config: DistillConfig) -> dict[str, list[float]] | None:
    """The ledger's vectors for the configured embeddings, by request key; None when harvest.embeddings is off."""
    spec = embedding_spec(config)
    if spec is None:
        return None
    ledger = config.layout.ledger
    if not ledger.exists():
        return {}
    with LedgerReader(ledger) as reader:
        return {key: unpack_vector(stored) for key, stored in reader.embeddings(spec).items()}


def embeddings_note(config: DistillConfig, embedded: list[int], sizes: set[int]) -> dict:
    """What the KD dataset's `teacher_embedding` column holds, for build.json and the dataset card.

    `embedded`: KD rows without and with a vector; `sizes`: the vectors' lengths.
    """
    settings = config.harvest.embeddings
    lengths = sorted(sizes)
    return {
        "column": "teacher_embedding",
        "model": embedding_model(config),
        "input": settings.input,
        "dimensions": lengths[0] if len(lengths) == 1 else lengths,
        "spec": embedding_spec(config),
        "rows_with": embedded[1],
        "rows_without": embedded[0],
    }
