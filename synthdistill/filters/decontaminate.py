"""`decontaminate`: drop records that share a long word n-gram with held-out eval files.

The eval files (JSONL rows or plain text) are read by `load_references` at the stage
edge; the filter compares hashed word n-grams of each record's prompt and answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from synthdistill.errors import ConfigError, InputError
from synthdistill.records import HarvestRecord
from synthdistill.yaml_source import _read_text, read_jsonl

_WORD = re.compile(r"\w+")


def words_of(text: str) -> list[str]:
    """Case-folded words without punctuation: what n-gram overlap compares."""
    return _WORD.findall(text.casefold())


@dataclass
class ReferenceNgrams:
    """Hashed n-grams of the reference texts, each mapped to where it came from ('file:line')."""

    ngram: int
    long: dict[int, str] = field(default_factory=dict)
    short: dict[int, dict[int, str]] = field(default_factory=dict)  # texts under `ngram` words, by length
    texts: int = 0

    def add(self, source: str, text: str, min_words: int) -> None:
        words = words_of(text)
        self.texts += 1
        if len(words) >= self.ngram:
            for i in range(len(words) - self.ngram + 1):
                self.long.setdefault(hash(tuple(words[i : i + self.ngram])), source)
        elif len(words) >= min_words:
            # A short eval item (a one-line question) counts as contaminated only when it appears whole.
            self.short.setdefault(len(words), {}).setdefault(hash(tuple(words)), source)

    def find(self, words: list[str]) -> tuple[str, int] | None:
        """(source, span length in words) of the first reference n-gram found in `words`, or None."""
        for size, table in [(self.ngram, self.long), *self.short.items()]:
            if not table:
                continue
            for i in range(len(words) - size + 1):
                source = table.get(hash(tuple(words[i : i + size])))
                if source is not None:
                    return source, size
        return None


class DecontaminateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    against: list[str] = Field(min_length=1, description="Held-out files (JSONL or text), relative to distill.yaml")
    ngram: int = Field(13, ge=1, description="Words per n-gram")
    min_words: int = Field(
        8, ge=1, description="Reference texts shorter than `ngram` words count whole from this length"
    )
    fields: list[str] | None = Field(None, description="JSONL keys to read; default every string value")
    check: list[Literal["prompt", "answer"]] = Field(
        ["prompt", "answer"], min_length=1, description="Which side of a record is compared with the held-out sets"
    )

    _reference: ReferenceNgrams | None = PrivateAttr(None)

    def with_references(self, items: list[tuple[str, str]]) -> DecontaminateParams:
        """A copy that compares against `items`, each (source label, text)."""
        reference = ReferenceNgrams(self.ngram)
        for source, text in items:
            reference.add(source, text, self.min_words)
        copy = self.model_copy()
        copy._reference = reference
        return copy


def load_references(params: DecontaminateParams, context) -> DecontaminateParams:
    """Read the `against` files (relative to the config) into the params."""
    items: list[tuple[str, str]] = []
    for name in params.against:
        path = Path(name).expanduser()
        path = path if path.is_absolute() else context.project_dir / path
        if not path.is_file():
            raise ConfigError(
                f"filter 'decontaminate': against file '{name}' not found (looked for {path})", file=context.config_path
            )
        items.extend(reference_texts(path, name, params.fields))
    return params.with_references(items)


def reference_texts(path: Path, label: str, fields: list[str] | None) -> Iterator[tuple[str, str]]:
    """(source, text) of a held-out file: each string of each JSONL row, or the whole text file."""
    if path.suffix.lower() != ".jsonl":
        yield label, _read_text(path, InputError)
        return
    for line, row in read_jsonl(path, InputError):
        values = [row.get(key) for key in fields] if fields is not None and isinstance(row, dict) else [row]
        for text in _strings(values):
            yield f"{label}:{line}", text


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def decontaminate(records: list[HarvestRecord], params: DecontaminateParams) -> list[str | None]:
    """'contaminated: …' for records whose prompt or answer contains a reference n-gram."""
    reference = params._reference
    if reference is None:
        raise RuntimeError(
            "the decontaminate filter has no reference texts: prepare it with load_references or with_references"
        )
    verdicts: list[str | None] = []
    for record in records:
        verdict = None
        for part in params.check:
            text = (
                record.text if part == "answer" else "\n".join(m.content for m in record.messages if m.role == "user")
            )
            found = reference.find(words_of(text))
            if found is not None:
                verdict = f"contaminated: {part} shares a {found[1]}-word span with {found[0]}"
                break
        verdicts.append(verdict)
    return verdicts
