"""The datasets' Arrow schemas: the SFT conversations and the KD dataset's token columns (design §8)."""

from __future__ import annotations

from typing import Any

from synthdistill.chat_tokens import REASONING_KEY


def sft_schema(json_type=None):
    """SFT columns; with `json_type` (a build with tools) the tool keys too, JSON values of that type."""
    import pyarrow as pa

    fields = [("role", pa.string()), ("content", pa.string()), (REASONING_KEY, pa.string())]
    if json_type is not None:
        function = pa.struct([("name", pa.string()), ("arguments", json_type)])
        call = pa.struct([("id", pa.string()), ("type", pa.string()), ("function", function)])
        fields += [("tool_calls", pa.list_(call)), ("tool_call_id", pa.string()), ("name", pa.string())]
    columns = [
        ("row_id", pa.string()),
        ("prompt_id", pa.string()),
        ("request_key", pa.string()),
        ("pack", pa.string()),
        ("teacher", pa.string()),
        ("messages", pa.list_(pa.struct(fields))),
    ]
    if json_type is not None:
        columns.append(("tools", pa.list_(json_type)))
    return pa.schema(columns)


def sft_schemas(tools: bool) -> tuple[Any, Any]:
    """(schema rows are built with, schema stored) of the SFT dataset: tool arguments and tools are Arrow JSON,
    which `datasets.load_dataset` decodes into objects (the shape chat templates and TRL take)."""
    import pyarrow as pa

    if not tools:
        return sft_schema(), None
    return sft_schema(pa.string()), sft_schema(pa.json_())


def kd_schema(id_type: str = "int32", embeddings: bool = False):
    """KD columns; `id_type` is uint16 for vocabularies that fit (storage: benchmarks/kd_storage.py); with
    `embeddings`, `teacher_embedding` (float32, null where the answer has no stored vector)."""
    import pyarrow as pa

    extra = [("teacher_embedding", pa.list_(pa.float32()))] if embeddings else []
    return pa.schema(
        [
            ("row_id", pa.string()),
            ("prompt_id", pa.string()),
            ("request_key", pa.string()),
            ("pack", pa.string()),
            ("input_ids", pa.list_(pa.int32())),
            ("labels", pa.list_(pa.int32())),
            ("kd_ids", pa.list_(pa.list_(getattr(pa, id_type)()))),
            ("kd_logprobs", pa.list_(pa.list_(pa.float16()))),
            ("kd_mask", pa.list_(pa.int8())),
            *extra,
        ]
    )
