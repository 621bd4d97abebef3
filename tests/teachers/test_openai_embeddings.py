"""Reading an OpenAI embeddings answer: one finite vector per input, or a classified fault."""

from __future__ import annotations

import base64
import struct

import pytest

from synthdistill.errors import RetryableTeacherError, TeacherError
from synthdistill.teachers.openai_embeddings import parse_embeddings


def _answer(*vectors, usage=True) -> dict:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return {"data": data[::-1], "model": "m", **({"usage": {"prompt_tokens": 7}} if usage else {})}


def test_vectors_come_back_in_input_order_with_the_servers_usage():
    packed = base64.b64encode(struct.pack("<3f", 0.5, -1.0, 2.0)).decode()  # encoding_format: base64
    answer = parse_embeddings(_answer([1, 2, 3], packed), 2, "fallback", "src")
    assert answer.vectors == [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]] and answer.model == "m" and answer.tokens == 7
    assert parse_embeddings(_answer([1.0], usage=False), 1, "fallback", "src").tokens == -1  # no usage sent


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"data": []}, "src has no `data` list of 1 embeddings"),
        (_answer([1.0], [2.0]), "src has no `data` list of 1 embeddings"),
        (_answer([float("nan")]), "an embedding is not a non-empty list of finite numbers"),
        (_answer([]), "an embedding is not a non-empty list of finite numbers"),
        (_answer("not base64!"), "neither a list of numbers nor base64"),
    ],
)
def test_a_broken_answer_is_malformed_and_retried(payload, message):
    with pytest.raises(RetryableTeacherError, match="malformed") as caught:
        parse_embeddings(payload, 1, "m", "src")
    assert message in str(caught.value)


def test_vectors_of_different_lengths_are_malformed():
    with pytest.raises(RetryableTeacherError, match=r"different lengths \[1, 2\]"):
        parse_embeddings(_answer([1.0], [1.0, 2.0]), 2, "m", "src")


def test_one_vector_per_token_is_refused_for_good_with_the_fix():
    with pytest.raises(TeacherError, match="one vector per token, not one per input: the server does not pool"):
        parse_embeddings(_answer([[1.0, 2.0], [3.0, 4.0]]), 1, "m", "src")
