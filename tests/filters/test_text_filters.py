"""`refusal`, `length`, `repetition`, `confidence`: records each must keep and must drop (with the reason)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from synthdistill.filters.confidence import ConfidenceParams, confidence
from synthdistill.filters.length import LengthParams, length
from synthdistill.filters.refusal import RefusalParams, refusal
from synthdistill.filters.repetition import RepetitionParams, repeated_ngram_fraction, repetition
from tests.records_fixtures import make_record


def texts(*answers: str):
    return [make_record(f"q{i}", answer) for i, answer in enumerate(answers)]


# --- refusal ---------------------------------------------------------------------------


def test_refusal_drops_answers_that_open_with_a_refusal():
    records = texts(
        "I'm sorry, but I can't help with that request.",
        "I cannot assist with that.",
        "As an AI language model, I cannot browse the internet.",
        "I must respectfully decline to write that.",
        "That would go against my guidelines.",
        "I\u2019m sorry, but I can\u2019t do that.",  # curly apostrophes
    )
    assert refusal(records, RefusalParams()) == [
        "refusal: sorry-cannot",
        "refusal: cannot-help",
        "refusal: as-an-ai",
        "refusal: unable-to-comply",
        "refusal: against-guidelines",
        "refusal: sorry-cannot",
    ]


def test_refusal_keeps_real_answers_and_late_mentions():
    late = "Paris is the capital of France. " * 12 + "I cannot help with that, said the clerk."
    records = texts(
        "The capital of France is Paris.",
        "I can't stress enough how important sleep is: adults need 7-9 hours.",
        "Sorry for the confusion earlier; the answer is 42.",
        late,
    )
    assert refusal(records, RefusalParams()) == [None, None, None, None]
    # The late mention is found once the window covers it.
    assert refusal(records[3:], RefusalParams(within_chars=len(late))) == ["refusal: cannot-help"]


def test_refusal_custom_phrases_with_or_without_the_defaults():
    records = texts("Je ne peux pas vous aider.", "I cannot help with that.")
    params = RefusalParams(phrases=[r"je ne peux pas"], defaults=False)
    assert refusal(records, params) == ["refusal: je ne peux pas", None]
    with pytest.raises(ValidationError, match="not a valid regex"):
        RefusalParams(phrases=["(unclosed"])


# --- length ----------------------------------------------------------------------------


def test_length_drops_outside_char_bounds_and_keeps_inside():
    records = texts("", "ok", "x" * 50, "y" * 51)
    assert length(records, LengthParams(min_chars=1, max_chars=50)) == [
        "too-short: 0 chars < min_chars 1",
        None,
        None,
        "too-long: 51 chars > max_chars 50",
    ]


def test_length_counts_tokens_from_logprobs_then_usage_then_estimate():
    with_logprobs = make_record(
        "a",
        "abc",
        logprobs={
            "tokens": ["a", "b", "c"],
            "token_logprobs": [-0.1] * 3,
            "top_tokens": [[]] * 3,
            "top_logprobs": [[]] * 3,
        },
    )
    from_usage = make_record("b", "two words")  # usage.completion_tokens = 3 in the fixture
    estimated = make_record("c", "x" * 40).model_copy(
        update={"usage": from_usage.usage.model_copy(update={"completion_tokens": 0})}
    )
    params = LengthParams(min_tokens=3, max_tokens=9)
    assert length([with_logprobs, from_usage, estimated], params) == [None, None, "too-long: 10 tokens > max_tokens 9"]
    assert length([from_usage], LengthParams(min_tokens=4)) == ["too-short: 3 tokens < min_tokens 4"]


def test_length_bounds_must_be_ordered():
    with pytest.raises(ValidationError, match=r"min_chars \(10\) is greater than max_chars \(5\)"):
        LengthParams(min_chars=10, max_chars=5)


# --- repetition ------------------------------------------------------------------------


def test_repetition_drops_looping_answers():
    looping = "The answer is yes. " * 10
    records = texts(looping, "I think I think I think I think I think I think I think I think I think so")
    assert repetition(records, RepetitionParams()) == [
        "repetitive: 90% of 3-grams repeat (max 30%)",
        "repetitive: 82% of 3-grams repeat (max 30%)",
    ]


def test_repetition_keeps_varied_and_too_short_answers():
    varied = (
        "Photosynthesis turns light into chemical energy. Plants take in carbon dioxide and water, "
        "and release oxygen while building glucose in their chloroplasts."
    )
    records = texts(varied, "no no no no")  # 4 trigrams: too few to judge
    assert repetition(records, RepetitionParams()) == [None, None]
    assert repeated_ngram_fraction("a b c a b c", 3) == (0.25, 4)
    assert repeated_ngram_fraction("a b", 3) == (0.0, 0)


# --- confidence ------------------------------------------------------------------------


def logprob_record(question: str, logprobs: list[float]):
    n = len(logprobs)
    return make_record(
        question,
        "answer",
        logprobs={
            "tokens": ["t"] * n,
            "token_logprobs": logprobs,
            "top_tokens": [["t"]] * n,
            "top_logprobs": [[lp] for lp in logprobs],
        },
    )


def test_confidence_drops_low_mean_and_low_minimum():
    records = [
        logprob_record("sure", [-0.1, -0.2, -0.3]),
        logprob_record("unsure", [-3.0, -2.9, -2.8]),
        logprob_record("one bad token", [-0.1] * 9 + [-9.0]),
    ]
    assert confidence(records, ConfidenceParams(min_mean_logprob=-2.5, min_token_logprob=-8.0)) == [
        None,
        "low-confidence: mean logprob -2.900 < -2.5",
        "low-confidence: token logprob -9.000 < -8.0",
    ]
    # Judged by the mean alone (the default), one bad token among good ones is tolerated.
    assert confidence(records[2:], ConfidenceParams()) == [None]


def test_confidence_on_answers_without_logprobs_keeps_or_drops_as_asked():
    records = texts("harvested with top_logprobs: 0")
    assert confidence(records, ConfidenceParams()) == [None]
    assert confidence(records, ConfidenceParams(without_logprobs="drop")) == ["no-logprobs"]
