"""Read hand-edited YAML/JSONL files so that every error can name its file and line."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from synthdistill.errors import InputError
from synthdistill.input_limits import MAX_YAML_BYTES, MAX_YAML_NODES

ModelT = TypeVar("ModelT", bound=BaseModel)


def _read_text(path: Path, error: type[InputError]) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error("file not found", file=path) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", file=path) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(f"not valid UTF-8 (byte {exc.start}); save the file as UTF-8", file=path, line=line) from None


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _walk(value_node, path + (key,), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, path + (i,), lines) for i, item in enumerate(node.value)]
    return None


class YamlDocument:
    """A parsed YAML file plus the line of every key path, for error messages."""

    def __init__(self, path: Path, data: Any, lines: dict[tuple, int]):
        self.path = path
        self.data = data
        self.lines = lines

    def line_of(self, loc: tuple) -> int | None:
        """Line of the deepest known prefix of `loc` (pydantic error locations)."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get(())


# libyaml's parser where PyYAML was built with it: 5-10x faster than the pure-Python one (47 policy files
# load in a fraction of the time), with the same errors and marks.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _first_alias_line(text: str) -> int | None:
    """Line of the first alias in a YAML text (read again only when its aliases must be reported)."""
    for event in yaml.parse(text, Loader=_FAST_LOADER):
        if isinstance(event, yaml.AliasEvent):
            return event.start_mark.line + 1
    return None


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Nodes in the document once every alias is expanded, computed without expanding any.

    Shared nodes are counted once per use but measured once (memoised by identity), so
    nine nested aliases of nine cost 81 steps here, not 9**9.
    """
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise RecursionError("an alias refers to a node that contains it")
    open_nodes.add(key)
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            children += [key_node, value_node]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_nodes)
        if total > MAX_YAML_NODES:
            break  # already over: stop counting
    open_nodes.discard(key)
    sizes[key] = total
    return total


def _compose_bounded(text: str, path: Path, error: type[InputError]) -> tuple[Any, yaml.Node | None]:
    """(data, node) of a YAML text whose alias expansion stays under MAX_YAML_NODES."""
    try:
        return _compose_with(_FAST_LOADER, text, path, error)
    except yaml.YAMLError:
        if _FAST_LOADER is yaml.SafeLoader:
            raise
        # A broken file is read again by the pure-Python parser, whose messages users and tests know.
        return _compose_with(yaml.SafeLoader, text, path, error)


def _compose_with(loader_class: type, text: str, path: Path, error: type[InputError]) -> tuple[Any, yaml.Node | None]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        # Composing shares an aliased node instead of copying it, so measuring is cheap; only the
        # expansion (construction, validation, the line map) would be costly.
        try:
            size = _expanded_size(node, {}, set())
        except RecursionError:
            raise error(
                "a YAML alias refers to the node that contains it (a cycle); write the values out",
                file=path,
                line=_first_alias_line(text),
            ) from None
        first_alias = _first_alias_line(text) if size > MAX_YAML_NODES else None
        if first_alias is not None:  # a large file without aliases is bounded by MAX_YAML_BYTES instead
            raise error(
                f"YAML aliases expand this file past {MAX_YAML_NODES} nodes (an alias bomb?); "
                "write the values out instead of nesting aliases",
                file=path,
                line=first_alias,
            )
        return loader.construct_document(node), node
    finally:
        loader.dispose()


def load_yaml(path: str | Path, error: type[InputError] = InputError) -> YamlDocument:
    """Parse a YAML file; syntax errors, oversized files and alias bombs become `error` with file and line."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # _read_text reports a missing or unreadable file
    if size > MAX_YAML_BYTES:
        raise error(
            f"file is {size} bytes, over the {MAX_YAML_BYTES}-byte limit for YAML files; "
            "put long lists of rows in a JSONL rows file",
            file=path,
        )
    text = _read_text(path, error)
    try:
        data, node = _compose_bounded(text, path, error)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise error(f"invalid YAML: {problem}", file=path, line=line) from None
    except yaml.reader.ReaderError as exc:  # a control character YAML does not allow (NUL, …)
        line = text[: exc.position].count("\n") + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise error(
            f"invalid YAML: the character U+{ord(char):04X} is not allowed in YAML; remove it", file=path, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise error(f"invalid YAML: {str(exc).splitlines()[0]}", file=path) from None
    except RecursionError:
        raise error("YAML nested too deeply to read", file=path) from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _refuse_surrogates(node, path, error)
        _refuse_duplicate_keys(node, path, error)
        _walk(node, (), lines)
    return YamlDocument(path, data, lines)


def _refuse_surrogates(root: yaml.Node, path: Path, error: type[InputError]) -> None:
    """A "\\ud800" escape makes a lone surrogate, which no UTF-8 file, hash or request can carry."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if isinstance(node.value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in node.value):
                raise error(
                    "a lone surrogate (a \\uD800-\\uDFFF escape without its pair) is not text; remove it",
                    file=path,
                    line=node.start_mark.line + 1,
                )
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        else:
            stack.extend(node.value)


def _refuse_duplicate_keys(root: yaml.Node, path: Path, error: type[InputError]) -> None:
    """A key written twice in one mapping: YAML keeps the last silently, which hides a mistake."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen or isinstance(node, yaml.ScalarNode):
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                stack.append(value_node)
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key_node.start_mark.line + 1
                if key_node.value in first_line:
                    raise error(
                        f"duplicate key '{key_node.value}' on lines {first_line[key_node.value]} and {line}; "
                        "YAML would keep only the last: remove one",
                        file=path,
                        line=line,
                    )
                first_line[key_node.value] = line
        else:
            stack.extend(node.value)


def read_jsonl(path: str | Path, error: type[InputError] = InputError) -> list[tuple[int, Any]]:
    """Rows of a JSONL file as (line number, object); blank lines are skipped."""
    path = Path(path)
    text = _read_text(path, error)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise error(f"invalid JSON: {exc.msg} (column {exc.colno})", file=path, line=number) from None
    return rows


def iter_jsonl(
    path: str | Path, error: type[InputError] = InputError, max_line_bytes: int | None = None
) -> Iterator[tuple[int, Any]]:
    """Rows of a JSONL file as (line number, object), read one line at a time.

    Nothing past the row the caller stops at is read, and a line longer than
    `max_line_bytes` is refused before it is held in memory whole.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise error("file not found", file=path) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", file=path) from None
    with handle:
        number = 0
        while True:
            raw = handle.readline(max_line_bytes + 1) if max_line_bytes else handle.readline()
            if not raw:
                return
            number += 1
            if max_line_bytes and len(raw) > max_line_bytes:
                raise error(
                    f"line is longer than {max_line_bytes} bytes; shorten the row (or raise harvest.max_prompt_chars)",
                    file=path,
                    line=number,
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise error(
                    f"not valid UTF-8 (byte {exc.start} of the line); save the file as UTF-8", file=path, line=number
                ) from None
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"invalid JSON: {exc.msg} (column {exc.colno})", file=path, line=number) from None
            except RecursionError:
                raise error("JSON nested too deeply", file=path, line=number) from None


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at `loc` (the parent of an unknown key), walking nested models."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _nested_model(fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", {})
    return [f.alias or name for name, f in fields.items()]


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def unknown_key_message(dotted: str, key: str, options: list[str]) -> str:
    """ "unknown key 'a.b'" with the closest valid key (or the list of valid keys)."""
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else (f"; valid keys: {', '.join(options)}" if options else "")
    return f"unknown key '{dotted}'{hint}"


def primary_error(exc: ValidationError) -> dict[str, Any]:
    """The pydantic error to report: an unknown key first (a misspelt required key also reports
    the real key as missing, and "did you mean" is the message that helps)."""
    return sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]


def describe_validation_error(
    exc: ValidationError, model: type[BaseModel], doc: YamlDocument
) -> tuple[str, int | None]:
    """Turn the first pydantic error into (message, line), suggesting the closest valid key."""
    err = primary_error(exc)
    loc = tuple(err["loc"])
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        message = unknown_key_message(dotted, str(loc[-1]), _allowed_keys(model, loc[:-1]))
    elif err["type"] == "missing":
        message = f"missing required key '{dotted}'"
    else:
        given = err.get("input")
        shown = json.dumps(given, default=str)[:60] if not isinstance(given, dict) else "a mapping"
        text = err["msg"].removeprefix("Value error, ")
        message = f"'{dotted}': {text}" if err["type"] == "value_error" else f"'{dotted}': {text} (got {shown})"
    extra = len(exc.errors()) - 1
    if extra:
        message += f" (and {extra} more error{'s' if extra > 1 else ''})"
    return message, doc.line_of(loc)


def validate_document(
    doc: YamlDocument, model: type[ModelT], error: type[InputError], context: dict | None = None
) -> ModelT:
    """Validate a parsed document into `model`, raising `error` with file, line and key path."""
    if not isinstance(doc.data, dict):
        raise error("expected a mapping of keys at the top level", file=doc.path, line=1)
    try:
        return model.model_validate(doc.data, context=context)
    except ValidationError as exc:
        message, line = describe_validation_error(exc, model, doc)
        raise error(message, file=doc.path, line=line) from None
