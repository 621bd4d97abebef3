"""On-policy scoring: the teacher reads the student's sampled answers and returns its per-token logprobs.

    probe_scoring(config)                 one request: can the teacher score given text? (exit 2 if not)
    score_samples(config, samples)        the teacher's ScoredSample of each SampleToScore, in order

Scoring is a harvest (scoring/run.py): the gate, concurrency, rate limits, retries, budget and
failover of the harvester, and a ledger (`RunLayout.scores`) that never scores a sample twice.
"""

from synthdistill.records import Message, TokenLogprobs
from synthdistill.scoring.probe import probe_scoring, probe_scoring_async
from synthdistill.scoring.records import SampleToScore, ScoredSample, ScoringProbe, ScoringSummary
from synthdistill.scoring.run import (
    ScoringIncomplete,
    ScoringResult,
    check_scorable,
    score_async,
    score_samples,
    score_samples_async,
)

__all__ = [
    "Message",
    "SampleToScore",
    "ScoredSample",
    "ScoringIncomplete",
    "ScoringProbe",
    "ScoringResult",
    "ScoringSummary",
    "TokenLogprobs",
    "check_scorable",
    "probe_scoring",
    "probe_scoring_async",
    "score_async",
    "score_samples",
    "score_samples_async",
]
