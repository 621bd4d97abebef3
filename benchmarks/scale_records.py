"""Realistic synthetic harvest records for benchmarks/scale.py: the student's own tokenizer, top-k logprobs.

Answers are English-like word sequences tokenized with SmolLM2's tokenizer (the quickstart's
student), so `text` decodes from `token_ids` exactly and the build takes the exact-ids path
(no cross-tokenizer alignment). Each position's top-k starts with the sampled token; the
other candidates are drawn from the tokenizer's frequent ids, with descending logprobs.
About `near_share` of the answers repeat an earlier one with one word changed.
"""

from __future__ import annotations

import random

from synthdistill.records import HarvestRecord, Message, Sampling, Usage

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so what out up more some into them time only "
    "model answer data question because first people after other could two these may then any new also over "
    "number water between under never while system value small large example energy light result process change "
    "simple reason figure point order function method state level group problem answer explain consider"
).split()
QUESTIONS = ("Explain", "Describe", "Summarise", "Compare", "List", "Define")


class RecordMaker:
    """Makes record i of a benchmark run, deterministically (seeded by i)."""

    def __init__(self, tokenizer, tokens: int = 128, top_k: int = 20, near_share: float = 0.02):
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.top_k = top_k
        self.near_share = near_share
        self.eos = tokenizer.eos_token_id
        vocab = len(tokenizer)
        self.pieces = [tokenizer.decode([i]) for i in range(vocab)]
        # frequent ids: those of common words, with and without a leading space
        frequent = {t for w in WORDS for t in tokenizer.encode(" " + w) + tokenizer.encode(w)}
        self.frequent = sorted(frequent)

    def answer(self, rng: random.Random) -> list[int]:
        words = [rng.choice(WORDS) for _ in range(self.tokens)]
        ids = self.tokenizer.encode(" ".join(words).capitalize() + ".")
        return ids[: self.tokens - 1] + [self.eos]

    def make(self, i: int) -> HarvestRecord:
        rng = random.Random(i)
        if i > 100 and rng.random() < self.near_share:  # a near-duplicate of an earlier answer
            ids = self.answer(random.Random(rng.randrange(i)))
            ids[len(ids) // 2] = rng.choice(self.frequent)
        else:
            ids = self.answer(rng)
        logprobs = [-rng.expovariate(3.0) for _ in ids]
        top_ids, top_lps = [], []
        for sampled, lp in zip(ids, logprobs):
            others = rng.sample(self.frequent, self.top_k - 1)
            top_ids.append([sampled, *others])
            top_lps.append([lp, *sorted((lp - 0.5 - rng.expovariate(0.4) for _ in others), reverse=True)])
        text = self.tokenizer.decode([t for t in ids if t != self.eos])
        question = f"{rng.choice(QUESTIONS)} {rng.choice(WORDS)} and {rng.choice(WORDS)} (case {i})."
        return HarvestRecord(
            request_key=f"{i:032x}",
            prompt_id=f"p{i:015x}",
            pack="bench",
            pack_version="1.0.0",
            sample_index=0,
            messages=[Message(role="user", content=question)],
            text=text,
            finish_reason="stop",
            model_requested="HuggingFaceTB/SmolLM2-135M-Instruct",
            model_answered="HuggingFaceTB/SmolLM2-135M-Instruct",
            backend="openai",
            endpoint="127.0.0.1",
            sampling=Sampling(max_tokens=self.tokens + 16),
            usage=Usage(prompt_tokens=16, completion_tokens=len(ids)),
            latency_ms=1.0,
            attempts=1,
            harvested_at="2026-12-01T00:00:00.000+00:00",
            policy_id="bench",
            decision="allow",
            tokens=[self.pieces[t] for t in ids],
            token_ids=ids,
            token_logprobs=logprobs,
            top_tokens=[[self.pieces[t] for t in row] for row in top_ids],
            top_ids=top_ids,
            top_logprobs=top_lps,
        )
