"""The JSON Schema of one `filters:` entry, typed by each built-in filter's Params model.

Validation stays with `parse_filter_spec` (its messages name the filter and the param);
this only tells editors what each step takes: `- length: {min_chars: int, max_tokens: int}`.
"""

from __future__ import annotations

from typing import Any

from pydantic import GetJsonSchemaHandler
from pydantic_core import CoreSchema

from synthdistill.filters import FILTERS

PLUGIN_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


def _summary(function: Any) -> str:
    doc = (getattr(function, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else "a filter step"


class FilterEntrySchema:
    """Annotated marker: the schema of a `filters:` item (a name, {name: params}, or a plug-in)."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        without_params = [
            name
            for name, registered in FILTERS.items()
            if registered.params is None or not any(f.is_required() for f in registered.params.model_fields.values())
        ]
        options: list[dict[str, Any]] = [
            {
                "type": "string",
                "enum": without_params,
                "description": "a built-in filter with its default params",
            },
            {
                "type": "string",
                "pattern": PLUGIN_PATTERN,
                "description": "a plug-in filter without params: module:function",
            },
        ]
        for name, registered in FILTERS.items():
            params = handler(registered.params.__pydantic_core_schema__) if registered.params else {"type": "object"}
            options.append(
                {
                    "type": "object",
                    "properties": {
                        name: {
                            "anyOf": [params, {"type": "null"}],
                            "description": f"{name}: {_summary(registered.function)}",
                        }
                    },
                    "required": [name],
                    "additionalProperties": False,
                }
            )
        options.append(
            {
                "type": "object",
                "patternProperties": {PLUGIN_PATTERN: {"type": ["object", "null"]}},
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
                "description": "a plug-in filter with params: {module:function: {params}}",
            }
        )
        return {
            "anyOf": options,
            "examples": [
                "finished",
                "refusal",
                {"dedup": {"exact": True, "near_threshold": 0.9}},
                {"pii": {"action": "redact"}},
            ],
        }
