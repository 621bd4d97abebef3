"""Capabilities are probed, not assumed: one scoring request on a fixed short text before the first round.

The probe checks that the teacher returns a logprob for every token of the text, that those
tokens spell the text, and that each position carries the requested top-k; a server that
cannot is a `ConfigError` (exit 2) naming what it lacks.
"""

from __future__ import annotations

import asyncio

from synthdistill.api_keys import read_api_key
from synthdistill.async_bridge import outside_running_loop as _outside_running_loop
from synthdistill.config import DistillConfig
from synthdistill.errors import ConfigError, RetryableTeacherError, TeacherAuthError, TeacherError
from synthdistill.policy import gate
from synthdistill.rate_limit import RateLimiter
from synthdistill.records import Message
from synthdistill.retrying import FailureBrake, RequestFailed, RetryPolicy
from synthdistill.scoring.records import SampleToScore, ScoreRequest, ScoringProbe
from synthdistill.scoring.run import check_scorable, make_scorer, requested_top_k

PROBE_SAMPLE = SampleToScore(
    checkpoint="probe",
    prompt_id="probe",
    sample_index=0,
    messages=[Message(role="user", content="Name a colour of the sky.")],
    text="The sky is blue on a clear day.",
)


def probe_scoring(config: DistillConfig, api_key: str | None = None) -> ScoringProbe:
    """Send one scoring request and check what came back (ConfigError naming what the teacher lacks)."""
    return _outside_running_loop(lambda: asyncio.run(probe_scoring_async(config, api_key)))


async def probe_scoring_async(config: DistillConfig, api_key: str | None = None) -> ScoringProbe:
    check_scorable(config)
    gate(config)  # the probe is a teacher request too: nothing is sent for a refused use
    k = requested_top_k(config)
    api_key = api_key if api_key is not None else read_api_key(config)
    scorer = make_scorer(config, api_key)
    where = f"the teacher '{config.teacher.model}'" + (
        f" at {', '.join(config.teacher.base_urls)}" if config.teacher.base_urls else ""
    )
    policy = RetryPolicy(RateLimiter(None, None), FailureBrake(), config.teacher.max_retries)
    request = ScoreRequest(PROBE_SAMPLE.score_key, PROBE_SAMPLE, k)
    try:
        answer, _, _ = await policy.ask(scorer, request, 16)
    except RequestFailed as exc:
        raise ConfigError(_lacks(where, exc.kind, exc.message), file=config.path) from None
    except TeacherAuthError:
        raise
    except (TeacherError, RetryableTeacherError) as exc:
        raise ConfigError(f"{where} cannot score given text: {exc}", file=config.path) from None
    finally:
        await scorer.aclose()
    logprobs = answer.logprobs
    style = scorer.style
    if not logprobs.tokens:
        raise ConfigError(f"{where} returned no logprobs for the probe's text ({style})", file=config.path)
    if "".join(logprobs.tokens) != PROBE_SAMPLE.text:
        raise ConfigError(
            f"{where} returned prompt tokens that do not spell the probe's text "
            f"({''.join(logprobs.tokens)!r} for {PROBE_SAMPLE.text!r})",
            file=config.path,
        )
    widths = [len(row) for row in logprobs.top_logprobs]
    if min(widths) < k:
        raise ConfigError(
            f"{where} returned top-k {min(widths)} < requested {k} (student.on_policy.scoring_top_k); "
            "ask for fewer, or raise the server's limit (vLLM: --max-logprobs)",
            file=config.path,
        )
    return ScoringProbe(
        style=style,
        top_k=min(widths),
        requested_top_k=k,
        endpoint=answer.endpoint,
        model_answered=answer.model,
        tokens=len(logprobs.tokens),
        token_ids=logprobs.token_ids is not None,
    )


def _lacks(where: str, kind: str, message: str) -> str:
    if kind == "missing-logprobs":
        lacking = message.split(": ", 2)[-1]
        return f"{where} cannot score given text: {lacking}"
    if kind == "rejected":
        return f"{where} refused a scoring request: {message}"
    return f"{where} did not answer the scoring probe ({kind}): {message}"
