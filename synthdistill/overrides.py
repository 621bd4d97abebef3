"""Per-run overrides of distill.yaml: `--set student.kd.alpha=0.3` on the command line,
`Project(..., overrides={"student.kd.alpha": 0.3})` in Python.

An override names a key path of the config models and a value. Command-line values are
read as YAML (a scalar or a flow collection: `0.3`, `false`, `[prompts/a, prompts/b]`,
`{min_chars: 20}`), then the whole config is validated by the same pydantic models as the
file, so a value is typed by the schema. An unknown path is refused with the nearest key;
a value of the wrong type is refused naming the `--set` argument. Nothing here reads files.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel

from synthdistill.errors import ConfigError

# YAML 1.2 floats that PyYAML (YAML 1.1) reads as text: `1e-4`, `5E3` (no dot)
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass(frozen=True)
class Override:
    """One override: a dotted key path and its value, and how the user wrote it."""

    key: str
    value: Any
    text: str  # `key=value` as given (the CLI argument), or as a Python override is shown
    origin: str = "--set"  # how errors name it: `--set` (command line) or `override` (Python API)

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": _jsonable(self.value), "given_as": f"{self.origin} {self.text}"}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def parse_set_argument(text: str) -> tuple[str, Any, str]:
    """(key, parsed value, raw value) of one `--set key.path=value`; ConfigError when malformed."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text}: expected key.path=value (e.g. --set student.kd.alpha=0.3)")
    if any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text}: '{key}' is not a key path (keys joined by dots, e.g. student.kd.alpha)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"--set {text}: the value is not valid YAML ({problem})") from None
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)
    return key, value, raw


def _field_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _field_model(arg)
        if found is not None:
            return found
    return None


def _wants_text(annotation: Any) -> bool:
    """A field typed as text only (str, str | None, a Literal of strings): `--set name=1.0` keeps '1.0'."""
    if annotation is str:
        return True
    if get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in get_args(annotation))
    args = [a for a in get_args(annotation) if a is not type(None)]
    return bool(args) and get_origin(annotation) is not list and all(_wants_text(a) for a in args)


def _check_path(model: type[BaseModel], key: str, text: str, origin: str = "--set") -> Any:
    """The annotation of the field a key path names; ConfigError naming the nearest key when unknown."""
    current: type[BaseModel] | None = model
    annotation: Any = None
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if current is None:
            if _is_mapping(annotation):
                return Any  # a free mapping (e.g. {name: value} settings): any key below it
            parent = ".".join(parts[:depth])
            raise ConfigError(f"{origin} {text}: '{parent}' takes a value, not keys below it (set '{parent}' itself)")
        fields = current.model_fields
        if part not in fields:
            where = ".".join(parts[:depth])
            options = [f"{where}.{name}" if where else name for name in fields]
            close = [options[list(fields).index(c)] for c in difflib.get_close_matches(part, list(fields), n=1)]
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(options)}"
            raise ConfigError(f"{origin} {text}: unknown key '{key}'{hint}")
        annotation = fields[part].annotation
        current = _field_model(annotation)
    return annotation


def _is_mapping(annotation: Any) -> bool:
    """dict[...] or dict[...] | None."""
    return get_origin(annotation) is dict or any(get_origin(a) is dict for a in get_args(annotation))


def parse_overrides(model: type[BaseModel], given: Mapping[str, Any] | Iterable[str] | None) -> list[Override]:
    """Overrides from `--set` strings or a {key.path: value} mapping, each path checked against `model`."""
    if not given:
        return []
    out: list[Override] = []
    if isinstance(given, Mapping):
        for key, value in given.items():
            key = str(key)
            text = f"{key}={json.dumps(_jsonable(value))}"
            if "=" in key or not key or any(not part for part in key.split(".")):
                raise ConfigError(f"override {text}: '{key}' is not a key path (keys joined by dots)")
            _check_path(model, key, text, origin="override")
            out.append(Override(key, value, text, origin="override"))
        return out
    if isinstance(given, str):
        given = [given]
    for text in given:
        key, value, raw = parse_set_argument(str(text))
        annotation = _check_path(model, key, text)
        if _wants_text(annotation) and value is not None and not isinstance(value, str):
            value = raw.strip()  # `--set teacher.model=1.5` means the text '1.5'
        out.append(Override(key, value, str(text)))
    return out


def apply_overrides(data: dict[str, Any], overrides: list[Override]) -> dict[str, Any]:
    """A copy of the parsed YAML document with each override set (missing sections are made)."""
    result = copy.deepcopy(data) if isinstance(data, dict) else {}
    for override in overrides:
        node = result
        for part in override.path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[override.path[-1]] = override.value
    return result


def override_for(loc: tuple, overrides: list[Override], data: Any = None) -> Override | None:
    """The override a validation error at `loc` comes from: the last one whose path is a prefix of (or lies
    under) it, else one that made the section the error is in (absent from the file's `data`)."""
    names = tuple(str(p) for p in loc)
    for override in reversed(overrides):
        n = min(len(names), len(override.path))
        if names[:n] == override.path[:n]:
            return override
    for override in reversed(overrides):
        shared = 0
        while shared < min(len(names), len(override.path)) - 1 and names[shared] == override.path[shared]:
            shared += 1
        if shared and not _has_path(data, names[:shared]):
            return override
    return None


def _has_path(data: Any, path: tuple[str, ...]) -> bool:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True
