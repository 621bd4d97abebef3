"""What on-policy scoring takes and gives: a student's sample in, the teacher's per-token logprobs out.

`SampleToScore` is one answer the student sampled; `ScoredSample` is the teacher's reading of it:
its tokens covering exactly the sample's text (spelled as harvest records spell them, so
`alignment.align_answer` maps them onto the student's tokens), each token's logprob and its
top-k alternatives. Scores are kept in a ledger keyed by `score_key`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from synthdistill.records import Message, TokenLogprobs, Usage, content_hash

ScoringStyle = Literal["vllm-prompt-logprobs", "completions-echo", "in-process"]


class SampleToScore(BaseModel):
    """One answer the student sampled, to be scored by the teacher."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str  # the student checkpoint that produced the sample ("round-0003", a weights digest)
    prompt_id: str
    sample_index: int
    messages: list[Message]  # the prompt conversation, without the answer
    text: str  # the student's sampled answer (decoded text)
    ended: bool = False  # the student stopped on its own: the teacher's end-of-turn token is scored too (last)

    @property
    def score_key(self) -> str:
        """Content hash of (checkpoint, prompt_id, sample_index, text) (and `ended` when set)."""
        value = {
            "checkpoint": self.checkpoint,
            "prompt_id": self.prompt_id,
            "sample_index": self.sample_index,
            "text": self.text,
        }
        if self.ended:
            value["ended"] = True
        return content_hash(value, length=32)

    def conversation(self) -> list[Message]:
        """The prompt followed by the sample as the assistant's turn (what the teacher reads)."""
        return [*self.messages, Message(role="assistant", content=self.text)]


class ScoredSample(BaseModel):
    """The teacher's per-token reading of one sample (stored once in the scores ledger)."""

    score_key: str
    checkpoint: str
    prompt_id: str
    sample_index: int
    text: str
    # the teacher's tokens spelling exactly `text` (plus its end-of-turn token last when the sample `ended`)
    logprobs: TokenLogprobs
    model_answered: str
    endpoint: str | None  # host:port that scored it; None in-process
    prompt_tokens_scored: int  # tokens the teacher read (the prompt's included): what scoring is billed by
    attempts: int
    style: str = "in-process"
    ended: bool = False
    usage: Usage = Field(default_factory=Usage)  # as the server counted it (harvest progress reads it)
    latency_ms: float = 0.0
    scored_at: str = ""


class ScoringProbe(BaseModel):
    """What one probe request found out about the teacher's scoring (before the first round)."""

    style: ScoringStyle
    top_k: int  # alternatives the server returned per position (≥ the requested scoring_top_k)
    requested_top_k: int
    endpoint: str | None
    model_answered: str
    tokens: int  # teacher tokens covering the probe's answer
    token_ids: bool  # whether the server returns token ids


class ScoringSummary(BaseModel):
    """One call of `score`: counts, tokens and cost, the gate's decision."""

    samples: int
    already_scored: int
    scored: int
    failed: int
    requests_sent: int
    prompt_tokens_scored: int
    cost_usd: float | None
    budget_usd: float | None
    stopped: str | None  # "budget" when the budget stopped scoring before every sample was sent
    not_sent: int
    seconds: float
    errors_by_kind: dict[str, int]
    style: str | None
    endpoint: str | None
    policy_id: str | None
    decision: str
    ledger: str


@dataclass
class ScoreRequest:
    """One sample to score, as the retry policy hands it to a scorer (`request_key` is the score key)."""

    request_key: str
    sample: SampleToScore
    top_k: int


@dataclass
class ScoreAnswer:
    """A scorer's answer to one request."""

    logprobs: TokenLogprobs
    model: str
    usage: Usage
    endpoint: str | None
