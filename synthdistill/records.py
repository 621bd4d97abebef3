"""The records that flow through the stages: Prompt → TeacherRequest → Completion → HarvestRecord.

One record type (`HarvestRecord`) flows from the harvester through the filters into
the dataset builders; every stage adds to it, none replaces it. Every backend's
answers become records in one place, `HarvestRecord.from_completion`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_serializer

from synthdistill.ledger_codec import rows_of
from synthdistill.thinking import locate_spans


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every content hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(value: Any, length: int = 16) -> str:
    """Short sha256 hex digest of a value's canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:length]


class FunctionCall(BaseModel):
    """The function a tool call names, and its arguments exactly as the teacher wrote them (a JSON string)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: str


class ToolCall(BaseModel):
    """One call of an assistant's `tool_calls` (OpenAI's shape)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    """One turn. Assistant turns may carry `tool_calls` (content then may be ""); `tool` turns answer a call."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @model_serializer(mode="wrap")
    def _without_unset_tool_fields(self, handler) -> dict[str, Any]:
        # a plain turn dumps as {role, content}, as before: prompt ids and request keys stay valid
        dumped = handler(self)
        for key in ("tool_calls", "tool_call_id", "name"):
            if dumped.get(key) is None:
                dumped.pop(key, None)
        return dumped


class AnswerFormat(BaseModel):
    """What a pack asks of the answer's form: tools it may call, and a structured `response_format`.

    Part of the request key only when set, so the keys of earlier ledgers stay valid.
    """

    model_config = ConfigDict(extra="forbid")

    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    def key_fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON Schema a `json_schema` response format names; {} for `json_object` (any JSON object)."""
        fmt = self.response_format or {}
        if fmt.get("type") == "json_schema":
            return dict((fmt.get("json_schema") or {}).get("schema") or {})
        return {"type": "object"} if fmt.get("type") == "json_object" else None


# The limits of each sampling key, stated once: `Sampling`, the harvest defaults of distill.yaml
# (config.HarvestConfig) and a pack's overrides (packs.format.PackSampling) all use them.
Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
MaxTokens = Annotated[int, Field(ge=1)]
TopLogprobs = Annotated[int, Field(ge=0, le=100)]


class ReasoningKnobs(BaseModel):
    """How much a thinking teacher may think (`harvest.reasoning`); each API style takes its own form."""

    model_config = ConfigDict(extra="forbid")

    effort: Literal["none", "minimal", "low", "medium", "high"] | None = Field(
        None, description="Reasoning effort (OpenAI-style `reasoning_effort`)"
    )
    budget_tokens: int | None = Field(
        None, ge=0, description="Most tokens the trace may take (vLLM `thinking_token_budget`, llama.cpp's budget)"
    )


class Sampling(BaseModel):
    """Sampling parameters sent to the teacher (harvest defaults, overridden per pack)."""

    model_config = ConfigDict(extra="forbid")

    temperature: Temperature = 0.7
    top_p: TopP = 1.0
    max_tokens: MaxTokens = 512
    top_logprobs: TopLogprobs = 20
    seed: int | None = 0
    # thinking knobs: part of the request key only when set, so keys of earlier ledgers stay valid
    reasoning: ReasoningKnobs | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    def key_fields(self) -> dict[str, Any]:
        """What the request key hashes: every field, the thinking knobs only when set."""
        dumped = self.model_dump()
        for optional in ("reasoning", "chat_template_kwargs"):
            if dumped[optional] is None:
                del dumped[optional]
        return dumped


DEFAULT_SAMPLING = Sampling()


class Prompt(BaseModel):
    """One rendered prompt of a pack."""

    prompt_id: str
    pack: str
    pack_version: str
    messages: list[Message]
    variables: dict[str, Any] = Field(default_factory=dict)
    sampling_overrides: dict[str, Any] = Field(default_factory=dict)
    answer_format: AnswerFormat | None = None  # the pack's tools / tool_choice / response_format
    source: str = ""  # "rows.jsonl:12", where the prompt came from, for error messages and audit


def prompt_id_for(pack: str, messages: list[Message], answer_format: AnswerFormat | None = None) -> str:
    """A prompt's id: a hash of its pack name and rendered messages (design §5), and its answer format when set."""
    value: dict[str, Any] = {"pack": pack, "messages": [m.model_dump() for m in messages]}
    if answer_format is not None and answer_format.key_fields():
        value["answer_format"] = answer_format.key_fields()
    return content_hash(value)


class TeacherRequest(BaseModel):
    """What the harvester asks a teacher for: one sample of one prompt."""

    request_key: str
    messages: list[Message]
    sampling: Sampling
    sample_index: int = 0
    answer_format: AnswerFormat | None = None


def request_key_for(
    model: str,
    messages: list[Message],
    sampling: Sampling,
    sample_index: int,
    answer_format: AnswerFormat | None = None,
) -> str:
    """Hash of teacher model, messages, sampling params and sample index (design §7), and answer format when set."""
    value: dict[str, Any] = {
        "model": model,
        "messages": [m.model_dump() for m in messages],
        "sampling": sampling.key_fields(),
        "sample_index": sample_index,
    }
    if answer_format is not None and answer_format.key_fields():
        value["answer_format"] = answer_format.key_fields()
    return content_hash(value, length=32)


class TokenLogprobs(BaseModel):
    """Per-token logprobs of an answer; `top_*[t]` are the top-k alternatives at position t."""

    tokens: list[str]
    token_ids: list[int] | None = None
    token_logprobs: list[float]
    top_tokens: list[list[str]]
    top_ids: list[list[int]] | None = None
    top_logprobs: list[list[float]]


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Completion(BaseModel):
    """A teacher's answer to one TeacherRequest, as every backend returns it.

    `text` is the answer alone; a thinking teacher's trace is in `reasoning` (synthdistill/thinking.py),
    while `logprobs` cover every generated token, the trace's included.
    """

    text: str
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None  # a tool-calling answer's calls (its `text` may be "")
    finish_reason: str | None
    model: str  # the model name the teacher answered with
    system_fingerprint: str | None = None
    usage: Usage = Field(default_factory=Usage)
    logprobs: TokenLogprobs | None = None


class HarvestRecord(BaseModel):
    """One (prompt, sample) answered by the teacher, with its full provenance (design §7)."""

    request_key: str
    prompt_id: str
    pack: str
    pack_version: str
    sample_index: int
    messages: list[Message]
    variables: dict[str, Any] = Field(default_factory=dict)
    text: str
    reasoning: str | None = None  # a thinking teacher's trace (the answer is `text`)
    finish_reason: str | None
    model_requested: str
    model_answered: str
    backend: str
    endpoint: str | None  # host of the teacher's endpoint, never a key; None in-process
    system_fingerprint: str | None = None
    sampling: Sampling
    usage: Usage
    latency_ms: float
    attempts: int
    harvested_at: str  # ISO 8601, UTC
    policy_id: str
    decision: str
    # logprobs, when asked (top_logprobs > 0)
    tokens: list[str] | None = None
    token_ids: list[int] | None = None
    token_logprobs: list[float] | None = None
    top_tokens: list[list[str]] | None = None
    top_ids: list[list[int]] | None = None
    top_logprobs: list[list[float]] | None = None
    # The six fields above as flat numpy arrays (ledger_codec.decode_flat), while they are None: the
    # filter stage carries answers this way when no step reads the arrays, and writes them to
    # Parquet from it, never as Python lists. A step that replaces a record drops it (filters.apply_step).
    _flat_arrays: dict[str, Any] | None = PrivateAttr(None)
    # token spans [start, end) of trace and answer inside the logprobs (which cover both); with a
    # trace and logprobs but no spans, `span_note` says why (KD leaves such a record out)
    reasoning_span: list[int] | None = None
    answer_span: list[int] | None = None
    span_note: str | None = None
    # tools and structured answers: the pack's answer format, the calls the teacher made (their
    # token span [start, end) in the logprobs: the tokens after the text's), and for a structured
    # answer the re-asks it took and, when it never became valid, why (the `schema` filter drops it)
    answer_format: AnswerFormat | None = None
    tool_calls: list[ToolCall] | None = None
    tool_calls_span: list[int] | None = None
    schema_retries: int = 0
    schema_error: str | None = None

    @classmethod
    def from_completion(
        cls,
        prompt: Prompt,
        request: TeacherRequest,
        completion: Completion,
        *,
        model_requested: str,
        backend: str,
        endpoint: str | None,
        attempts: int,
        latency_ms: float,
        policy_id: str,
        decision: str,
        harvested_at: str,
        schema_retries: int = 0,
        schema_error: str | None = None,
    ) -> HarvestRecord:
        """The ledger record of one answer (every backend's answers are built here)."""
        logprobs = completion.logprobs.model_dump() if completion.logprobs is not None else {}
        spans = locate_spans(logprobs.get("tokens"), completion.reasoning, completion.text)
        extra: dict[str, Any] = {}
        if request.answer_format is not None:
            extra.update(answer_format=request.answer_format, schema_retries=schema_retries, schema_error=schema_error)
        if completion.tool_calls:
            extra.update(
                tool_calls=completion.tool_calls,
                tool_calls_span=tool_calls_span(logprobs.get("tokens"), spans, completion.text),
            )
        return cls(
            request_key=request.request_key,
            prompt_id=prompt.prompt_id,
            pack=prompt.pack,
            pack_version=prompt.pack_version,
            sample_index=request.sample_index,
            messages=prompt.messages,
            variables=prompt.variables,
            text=completion.text,
            reasoning=completion.reasoning,
            finish_reason=completion.finish_reason,
            model_requested=model_requested,
            model_answered=completion.model,
            backend=backend,
            endpoint=endpoint,
            system_fingerprint=completion.system_fingerprint,
            sampling=request.sampling,
            usage=completion.usage,
            latency_ms=round(latency_ms, 2),
            attempts=attempts,
            harvested_at=harvested_at,
            policy_id=policy_id,
            decision=decision,
            **logprobs,
            **(
                {"reasoning_span": spans.reasoning, "answer_span": spans.answer, "span_note": spans.note}
                if spans is not None and completion.reasoning is not None
                else {}
            ),
            **extra,
        )

    @property
    def calls_text(self) -> str:
        """The tool calls as text, one `{"name": …, "arguments": …}` a line ("" without calls): what filters read."""
        return "\n".join(
            f'{{"name": {json.dumps(c.function.name)}, "arguments": {c.function.arguments or "{}"}}}'
            for c in self.tool_calls or []
        )

    @property
    def verifiable_text(self) -> str:
        """What a verifier reads: the answer, then its tool calls (if any)."""
        return f"{self.text}\n{self.calls_text}" if self.tool_calls else self.text

    @property
    def has_logprobs(self) -> bool:
        if self._flat_arrays is not None:
            return self._flat_arrays["token_logprobs"] is not None and self._flat_arrays["top_logprobs"] is not None
        return self.token_logprobs is not None and self.top_logprobs is not None

    @property
    def flat_arrays(self) -> dict[str, Any] | None:
        """The token arrays as flat numpy arrays (they are then None as fields), else None."""
        return self._flat_arrays

    def with_flat_arrays(self, flat: dict[str, Any] | None) -> HarvestRecord:
        """This record (its six array fields None) carrying them flat; `None` drops what it carried."""
        self._flat_arrays = flat
        return self


def with_array_lists(record: HarvestRecord) -> HarvestRecord:
    """The record with its token arrays as the Python lists the fields hold (a copy when it carried them flat)."""
    flat = record.flat_arrays
    if flat is None:
        return record
    lists = {name: None if value is None else rows_of(*value) for name, value in flat.items()}
    return record.model_copy(update=lists).with_flat_arrays(None)


def tool_calls_span(tokens: list[str] | None, spans, text: str) -> list[int] | None:
    """The token span of a tool-calling answer's calls: every token after the text (and trace) to the end.

    Servers render the calls as generated text (Hermes `<tool_call>…</tool_call>`, Llama's JSON) and
    parse it out of `content`, so the calls' tokens are the ones the text does not cover. None without
    logprobs or when the text's span is unknown.
    """
    if tokens is None or spans is None:
        return None
    if text:
        if spans.answer is None:
            return None
        start = spans.answer[1]
    else:
        start = spans.reasoning[1] if spans.reasoning is not None else 0
    return [start, len(tokens)]


class DroppedRecord(BaseModel):
    """A record a filter dropped, with the filter's name and its reason."""

    filter: str
    reason: str
    record: HarvestRecord


class BatchFailure(NamedTuple):
    """A request a batch answered with an error: its kind (tallied) and message (kept in the ledger)."""

    kind: str
    message: str


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the millisecond: every timestamp the ledger, records and audit write."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
