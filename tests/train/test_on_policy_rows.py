"""Scored student samples → training rows on the student's tokens: exact ids, or byte-offset alignment."""

from __future__ import annotations

from synthdistill.records import TokenLogprobs
from synthdistill.scoring import ScoredSample
from synthdistill.student_samples import StudentSample
from synthdistill.train.on_policy_rows import TargetCounts, scored_rows

MESSAGES = [{"role": "user", "content": "Say hello.", "tool_calls": None}]


def _scored(tokens, logprobs, tops, ids=None, top_ids=None, ended=False) -> ScoredSample:
    return ScoredSample(
        score_key="k",
        checkpoint="c",
        prompt_id="p",
        sample_index=0,
        text="".join(tokens[: len(tokens) - ended]),
        logprobs=TokenLogprobs(
            tokens=tokens,
            token_ids=ids,
            token_logprobs=logprobs,
            top_tokens=[[c for c, _ in row] for row in tops],
            top_ids=top_ids,
            top_logprobs=[[lp for _, lp in row] for row in tops],
        ),
        model_answered="teacher",
        endpoint="127.0.0.1:8000",
        prompt_tokens_scored=20,
        attempts=1,
        ended=ended,
    )


def test_same_tokenizer_copies_the_teachers_ids_and_targets_the_end_of_turn_token(tokenizer):
    text = "Hello world."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    tops = [[(tokenizer.decode([t]), -0.1), ("x", -3.0)] for t in ids]
    top_ids = [[t, 87] for t in ids]
    score = _scored([tokenizer.decode([t]) for t in ids], [-0.1] * len(ids), tops, ids, top_ids, ended=True)
    sample = StudentSample("c", "p", 0, MESSAGES, text, finished=True)
    counts = TargetCounts()

    rows, records = scored_rows([sample], [score], tokenizer, 128, counts)

    row = rows[0]
    answer = row["input_ids"][-len(ids) :]
    assert answer == ids  # the student's tokens of its text, then its end-of-turn token
    assert row["kd_ids"][-len(ids) :] == top_ids and row["kd_mask"][-len(ids) :] == [1] * len(ids)
    assert set(row["labels"]) == {-100}  # no cross-entropy on the student's own sample
    assert counts.as_dict() == {"tokens": len(ids), "with_targets": len(ids), "exact": 1, "aligned": 0, "share": 1.0}
    assert records[0]["mapping"] == "exact-ids" and records[0]["teacher_tokens"] == len(ids)


def test_another_tokenizer_is_aligned_by_bytes_and_the_share_counts_what_got_targets(tokenizer):
    # an API teacher: text pieces, no ids, its own end-of-turn token last
    pieces = ["Hello", " world", ",", " café", "!", "<end_of_turn>"]
    tops = [
        [("Hello", -0.1), ("Hi", -2.5)],
        [(" world", -0.2), (" worlds", -2.0)],
        [(",", -0.05)],
        [(" café", -0.3)],
        [("!", -0.2), (".", -1.9)],
        [("<end_of_turn>", -0.01)],
    ]
    score = _scored(pieces, [-0.1, -0.2, -0.05, -0.3, -0.2, -0.01], tops, ended=True)
    sample = StudentSample("c", "p", 0, MESSAGES, "Hello world, café!", finished=True)
    counts = TargetCounts()

    rows, records = scored_rows([sample], [score], tokenizer, 128, counts)

    student = tokenizer(sample.text, add_special_tokens=False)["input_ids"]
    spans = [tokenizer.decode([t]) for t in student]
    with_targets = sum(1 for piece in spans if piece in ("Hello", " world", ",", "!", " café"))
    assert counts.tokens == len(student) + 1  # the end-of-turn token counts, without a target
    assert counts.with_targets == with_targets and counts.aligned == 1 and counts.exact == 0
    assert counts.share == round(with_targets / (len(student) + 1), 6) and 0 < counts.share < 1
    row = rows[0]
    assert row["input_ids"][-1] == tokenizer.eos_token_id and row["kd_mask"][-1] == 0
    hello = row["input_ids"].index(tokenizer("Hello", add_special_tokens=False)["input_ids"][0])
    assert row["kd_ids"][hello][0] == student[0]
    assert records[0]["mapping"].startswith("aligned") and records[0]["student_tokens_with_targets"] == with_targets
