"""Realistic synthetic harvest records for benchmarks/scale.py: the student's own tokenizer, top-k logprobs.

Answers are English-like word sequences in SmolLM2's tokens (the quickstart's student), spelled
by concatenating each word's token pieces, so `text` decodes from `token_ids` and the build takes
the exact-ids path (no cross-tokenizer alignment). Each position's top-k starts with the sampled
token; the other candidates are frequent ids, with descending logprobs. About `near_share` of the
answers repeat an earlier one with one word changed (near-duplicates for `dedup`).
"""

from __future__ import annotations

import numpy as np

from synthdistill.records import HarvestRecord, Prompt, Sampling, Usage

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so what out up more some into them time only "
    "model answer data question because first people after other could two these may then any new also over "
    "number water between under never while system value small large example energy light result process change "
    "simple reason figure point order function method state level group problem explain consider river mountain "
    "city country history science music language computer garden kitchen winter summer morning evening market"
).split()


class RecordMaker:
    """Makes record i of a benchmark run for prompt i, deterministically (seeded by i)."""

    def __init__(self, tokenizer, tokens: int = 128, top_k: int = 20, near_share: float = 0.02):
        self.tokens, self.top_k, self.near_share = tokens, top_k, near_share
        self.eos = tokenizer.eos_token_id
        self.words = [tokenizer.encode(" " + w) for w in WORDS]
        self.pieces = {}
        for ids in self.words:
            for t in ids:
                self.pieces[t] = tokenizer.decode([t])
        self.pieces[self.eos] = tokenizer.decode([self.eos])
        self.frequent = np.array(sorted(self.pieces), dtype=np.int64)

    def _answer(self, rng: np.random.Generator) -> list[int]:
        ids: list[int] = []
        while len(ids) < self.tokens - 1:
            ids += self.words[rng.integers(len(self.words))]
        return ids[: self.tokens - 1] + [self.eos]

    def make(self, i: int, prompt: Prompt) -> HarvestRecord:
        rng = np.random.default_rng(i)
        if i > 100 and rng.random() < self.near_share:  # a near-duplicate of an earlier answer
            ids = self._answer(np.random.default_rng(int(rng.integers(i))))
            ids[len(ids) // 2] = self.words[rng.integers(len(self.words))][0]
        else:
            ids = self._answer(rng)
        n = len(ids)
        sampled = -rng.exponential(1 / 3, n)
        others = self.frequent[rng.integers(len(self.frequent), size=(n, self.top_k - 1))]
        gaps = np.sort(sampled[:, None] - 0.5 - rng.exponential(2.5, (n, self.top_k - 1)), axis=1)[:, ::-1]
        top_ids = np.concatenate([np.array(ids)[:, None], others], axis=1).tolist()
        top_lps = np.concatenate([sampled[:, None], gaps], axis=1).tolist()
        tokens = [self.pieces[t] for t in ids]
        return HarvestRecord(
            request_key=f"{i:032x}",
            prompt_id=prompt.prompt_id,
            pack=prompt.pack,
            pack_version=prompt.pack_version,
            sample_index=0,
            messages=prompt.messages,
            text="".join(tokens[:-1]),
            finish_reason="stop",
            model_requested="HuggingFaceTB/SmolLM2-135M-Instruct",
            model_answered="HuggingFaceTB/SmolLM2-135M-Instruct",
            backend="openai",
            endpoint="127.0.0.1",
            sampling=Sampling(max_tokens=self.tokens + 16),
            usage=Usage(prompt_tokens=16, completion_tokens=n),
            latency_ms=1.0,
            attempts=1,
            harvested_at="2026-12-01T00:00:00.000+00:00",
            policy_id="smollm2",
            decision="allow",
            tokens=tokens,
            token_ids=ids,
            token_logprobs=sampled.tolist(),
            top_tokens=[[self.pieces[t] for t in row] for row in top_ids],
            top_ids=top_ids,
            top_logprobs=top_lps,
        )
