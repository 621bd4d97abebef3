"""`select`: rejection sampling, per prompt, among the answers the filters before it kept.

    - select: {best_of: shortest-correct}   # the correct answer with the fewest tokens (trace + answer)
    - select: {best_of: first-correct}      # the correct answer with the lowest sample index
    - select: {best_of: all-correct}        # every correct answer

With `harvest.samples_per_prompt: N` this is the R1 / s1 recipe in one line. "Correct" is the
verdict of the prompt's pack verifier (`load_verifiers` fills them in, as for `verify`); a pack
without a verifier counts every answer as correct. Put `select` after the other filters:
it picks among what they kept.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr

from synthdistill.filters.length import part_tokens
from synthdistill.packs.verifiers import parse_verify_spec, verify_answer
from synthdistill.records import HarvestRecord


class SelectParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    best_of: Literal["shortest-correct", "first-correct", "all-correct"] = Field(
        "shortest-correct",
        validation_alias=AliasChoices("best_of", "best-of"),
        description="Which of a prompt's correct answers to keep",
    )

    _verifiers: dict[str, Any] | None = PrivateAttr(None)

    def with_verifiers(self, verifiers: dict[str, Any]) -> SelectParams:
        copy = self.model_copy()
        copy._verifiers = {pack: None if spec is None else parse_verify_spec(spec) for pack, spec in verifiers.items()}
        return copy


def load_select_verifiers(params: SelectParams, context) -> SelectParams:
    return params.with_verifiers({pack.name: pack.verify for pack in context.packs})


def _incorrect(record: HarvestRecord, verifiers: dict[str, Any]) -> str | None:
    spec = verifiers.get(record.pack)
    if spec is None:
        return None
    passed, reason = verify_answer(spec, record.variables, record.verifiable_text)
    return None if passed else f"select: incorrect ({reason})"


def _size(record: HarvestRecord) -> tuple[int, int, int]:
    """Tokens of trace and answer, then characters (ties), then the sample index."""
    chars = len(record.text) + len(record.reasoning or "")
    return sum(part_tokens(record)), chars, record.sample_index


def select(records: list[HarvestRecord], params: SelectParams) -> list[str | None]:
    """'select: incorrect (…)' for answers the verifier rejects; 'select: not shortest' / 'not first' for the rest."""
    verdicts: list[str | None] = [_incorrect(r, params._verifiers or {}) for r in records]
    if params.best_of == "all-correct":
        return verdicts
    by_prompt: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        if verdicts[i] is None:
            by_prompt.setdefault(record.prompt_id, []).append(i)
    for indexes in by_prompt.values():
        if params.best_of == "shortest-correct":
            best = min(indexes, key=lambda i: _size(records[i]))
            why = "select: not shortest"
        else:
            best = min(indexes, key=lambda i: records[i].sample_index)
            why = "select: not first"
        for i in indexes:
            verdicts[i] = None if i == best else why
    return verdicts
