"""Build real HarvestRecords for tests of the stages that consume them."""

from __future__ import annotations

from synthdistill.records import HarvestRecord, Message, Sampling, Usage, prompt_id_for, request_key_for


def make_record(
    question: str = "What is 2+2?",
    text: str = "4",
    *,
    pack: str = "demo",
    sample_index: int = 0,
    finish_reason: str = "stop",
    model: str = "teacher-model",
    logprobs: dict | None = None,
) -> HarvestRecord:
    messages = [Message(role="user", content=question)]
    sampling = Sampling()
    return HarvestRecord(
        request_key=request_key_for(model, messages, sampling, sample_index),
        prompt_id=prompt_id_for(pack, messages),
        pack=pack,
        pack_version="1.0.0",
        sample_index=sample_index,
        messages=messages,
        text=text,
        finish_reason=finish_reason,
        model_requested=model,
        model_answered=model,
        backend="openai",
        endpoint="127.0.0.1:8000",
        sampling=sampling,
        usage=Usage(prompt_tokens=5, completion_tokens=3),
        latency_ms=12.5,
        attempts=1,
        harvested_at="2026-11-23T00:00:00+00:00",
        policy_id="smollm2",
        decision="allow-with-obligations",
        **(logprobs or {}),
    )
