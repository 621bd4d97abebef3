"""Read one pack folder: its pack.yaml, referenced files and rows, rendered into prompts one at a time.

`read_pack_info` stops before the rows (what provenance, cards and verifiers need);
`iter_prompts` streams the prompts, holding none; `build_pack` collects them with every
row problem (what `load_pack` and `packs validate` report).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from jinja2 import Template, TemplateSyntaxError
from pydantic import ValidationError

from synthdistill.digests import file_sha256
from synthdistill.errors import PackError
from synthdistill.input_limits import MAX_VARIABLE_COMBINATIONS, forbidden_character, max_row_bytes
from synthdistill.packs.format import (
    AnswerVerify,
    JsonSchemaFormat,
    JsonSchemaVerify,
    PackSpec,
    RegexVerify,
    ToolSpec,
    check_json_schema,
    check_tool_choice,
    describe_spec_error,
)
from synthdistill.packs.rows import combination_count, combinations, prompt_for, template_environment
from synthdistill.records import AnswerFormat, Prompt
from synthdistill.yaml_source import YamlDocument, iter_jsonl, load_yaml

PACK_FILE = "pack.yaml"
TEXT_SUFFIXES = {".yaml", ".yml", ".json", ".jsonl", ".md", ".txt", ".jinja", ".j2"}


@dataclass
class PackInfo:
    """What a pack says of itself without its rows: metadata (`spec`), resolved verifier, answer format, files."""

    spec: PackSpec
    path: Path
    verify: AnswerVerify | JsonSchemaVerify | RegexVerify | None
    extra_files: list[Path] = field(default_factory=list)  # referenced files outside the folder
    answer_format: AnswerFormat | None = None  # tools / tool_choice / response_format, files read

    name = property(lambda self: self.spec.name)
    version = property(lambda self: self.spec.version)
    licence = property(lambda self: self.spec.licence)
    source = property(lambda self: self.spec.source)
    description = property(lambda self: self.spec.description)
    tags = property(lambda self: list(self.spec.tags))

    def files(self) -> list[Path]:
        """Every file of the pack: the folder's files (no hidden ones) and referenced files."""
        inside = [
            p
            for p in self.path.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(self.path).parts)
        ]
        return sorted(set(inside) | set(self.extra_files))

    def file_hashes(self) -> dict[str, str]:
        """sha256 of each file, keyed by its path relative to the pack folder."""
        return {Path(os.path.relpath(p, self.path)).as_posix(): file_sha256(p) for p in self.files()}

    def content_sha256(self) -> str:
        """One sha256 over the pack's files and their names (for the audit)."""
        lines = "".join(f"{name}\0{digest}\n" for name, digest in sorted(self.file_hashes().items()))
        return hashlib.sha256(lines.encode("utf-8")).hexdigest()


@dataclass
class Pack(PackInfo):
    """A loaded pack: its `PackInfo` and every rendered prompt."""

    prompts: list[Prompt] = field(default_factory=list)


def read_pack_info(path: Path) -> PackInfo:
    """A pack's metadata, verifier, answer format and files, with no row read (PackError when they are broken)."""
    return _open_pack(Path(path))[0]


def iter_prompts(path: Path, max_prompt_chars: int | None = None) -> Iterator[Prompt]:
    """A pack's prompts, rendered one at a time and held by no one (PackError at the first problem).

    Unlike `load_pack`, prompts repeating an earlier one are not detected (that needs every id):
    what streams through these is a pack `load_pack` already accepted for the harvest.
    """
    info, template, doc, rows_file = _open_pack(Path(path))
    for item in _rendered(info, template, doc, rows_file, max_prompt_chars=max_prompt_chars, unique=False):
        if isinstance(item, PackError):
            raise item
        yield item


def _open_pack(path: Path) -> tuple[PackInfo, Template | None, YamlDocument, Path | None]:
    """The pack's info, its compiled template, its YAML and its rows file; nothing of the rows read yet."""
    if not (path / PACK_FILE).is_file():
        raise PackError(f"no {PACK_FILE} here; is this a pack folder?", file=path)
    doc = _load_pack_yaml(path / PACK_FILE)
    spec = _validate_spec(doc)
    template = _compile_template(spec, doc)
    verify, extra_files = _resolve_verify(spec, path, doc)
    answer_format = _resolve_answer_format(spec, path, doc, extra_files)
    rows_file = path / spec.rows if spec.rows is not None else None
    _check_text_files(path, skip=rows_file)  # the rows file is decoded line by line as it is read
    if rows_file is not None:
        if not rows_file.is_file():
            raise PackError(
                f"rows file '{spec.rows}' not found (looked in {path})", file=doc.path, line=doc.line_of(("rows",))
            )
        if path.resolve() not in rows_file.resolve().parents:
            extra_files.append(rows_file)
    info = PackInfo(spec=spec, path=path, verify=verify, extra_files=extra_files, answer_format=answer_format)
    return info, template, doc, rows_file


def build_pack(
    path: Path, limit: int | None = None, max_prompt_chars: int | None = None
) -> tuple[Pack, list[PackError], list[str]]:
    """Load a pack; fatal problems raise, row problems are returned with the warnings.

    Rows are read, and `variables:` combinations made, one at a time: with `limit` nothing
    past the limit-th prompt is read or rendered.
    """
    info, template, doc, rows_file = _open_pack(path)
    problems: list[PackError] = []
    prompts: list[Prompt] = []
    for item in _rendered(info, template, doc, rows_file, limit, max_prompt_chars):
        (problems if isinstance(item, PackError) else prompts).append(item)
    pack = Pack(**{f.name: getattr(info, f.name) for f in fields(PackInfo)}, prompts=prompts)
    return pack, _merge_repeats(problems), _warnings(info.spec, path)


def _rendered(
    info: PackInfo,
    template: Template | None,
    doc: YamlDocument,
    rows_file: Path | None,
    limit: int | None = None,
    max_prompt_chars: int | None = None,
    unique: bool = True,
) -> Iterator[Prompt | PackError]:
    """Each row's prompt, or the problem that row has; `unique`: a prompt repeating an earlier one is a problem."""
    spec, answer_format = info.spec, info.answer_format
    if rows_file is not None:
        rows = iter_jsonl(rows_file, error=PackError, max_line_bytes=max_row_bytes(max_prompt_chars))
        items = ((rows_file, line, f"{spec.rows}:{line}", row) for line, row in rows)
    else:
        line = doc.line_of(("variables",))
        count = combination_count(spec.variables)
        if count > MAX_VARIABLE_COMBINATIONS:
            raise PackError(
                f"`variables:` would make {count} prompts, over the maximum of {MAX_VARIABLE_COMBINATIONS}; "
                "use fewer values, or list the rows you want in a rows file",
                file=doc.path,
                line=line,
            )
        items = (
            (doc.path, line, f"{PACK_FILE}:variables[{i}]", row) for i, row in enumerate(combinations(spec.variables))
        )
    any_rows = False
    made = 0
    seen: dict[str, str] = {}
    for file, line, source, row in items:
        any_rows = True
        if limit is not None and made >= limit:
            break
        where = line if spec.rows is not None else doc.line_of(("template",))
        if (problem := forbidden_character(row, "row" if spec.rows is not None else "variables")) is not None:
            yield PackError(f"{problem}; remove it (prompts may not hold NUL or lone surrogates)", file=file, line=line)
            continue
        try:
            prompt = prompt_for(spec, template, row, source, answer_format)
        except PackError as exc:
            yield PackError(exc.message, file=file, line=where)
            if spec.variables is not None:
                break  # every combination fails the same way
            continue
        text = [m.content for m in prompt.messages]
        if (problem := forbidden_character(text, "prompt")) is not None:  # from the template or system prompt
            yield PackError(f"the rendered {problem}; remove it", file=file, line=where)
            continue
        size = sum(len(t) for t in text)
        if max_prompt_chars is not None and size > max_prompt_chars:
            yield PackError(
                f"prompt is {size} characters, over harvest.max_prompt_chars ({max_prompt_chars}); "
                "shorten it or raise the limit",
                file=file,
                line=line,
            )
            continue
        if unique:
            if prompt.prompt_id in seen:
                yield PackError(
                    f"same prompt as {seen[prompt.prompt_id]} (prompt_id {prompt.prompt_id}); remove one of them",
                    file=file,
                    line=line,
                )
                continue
            seen[prompt.prompt_id] = source
        made += 1
        yield prompt
    if rows_file is not None and not any_rows:
        raise PackError("rows file has no rows", file=rows_file)


def _merge_repeats(problems: list[PackError]) -> list[PackError]:
    """One error per distinct message: a template that fails every row is one problem, not thousands."""
    lines: dict[tuple[str | None, str], list[int | None]] = {}
    for problem in problems:
        lines.setdefault((problem.file, problem.message), []).append(problem.line)
    merged = []
    for (file, message), found in lines.items():
        others = [str(n) for n in found[1:] if n is not None]
        if others:
            shown = ", ".join(others[:10]) + (", …" if len(others) > 10 else "")
            message += f" (also line{'s' if len(others) > 1 else ''} {shown})"
        merged.append(PackError(message, file=file, line=found[0]))
    return merged


def _load_pack_yaml(path: Path) -> YamlDocument:
    try:
        return load_yaml(path, error=PackError)
    except PackError as exc:
        # An unquoted `template: {{ x }}` is a YAML flow mapping, which YAML explains badly.
        if "unhashable key" in exc.message:
            raise PackError(
                exc.message + "; quote a value that starts with '{', e.g. template: \"{{ question }}\"",
                file=exc.file,
                line=exc.line,
            ) from None
        raise


def _validate_spec(doc: YamlDocument) -> PackSpec:
    if not isinstance(doc.data, dict):
        raise PackError("expected a mapping of keys (name, version, licence, template, rows, …)", file=doc.path, line=1)
    try:
        return PackSpec.model_validate(doc.data)
    except ValidationError as exc:
        message, line = describe_spec_error(exc, doc)
        raise PackError(message, file=doc.path, line=line) from None


def _compile_template(spec: PackSpec, doc: YamlDocument) -> Template | None:
    if spec.template is None:
        return None
    try:
        return template_environment().from_string(spec.template)
    except TemplateSyntaxError as exc:
        raise PackError(
            f"template line {exc.lineno}: {exc.message}; fix the Jinja2 syntax",
            file=doc.path,
            line=doc.line_of(("template",)),
        ) from None


def _resolve_verify(spec: PackSpec, path: Path, doc: YamlDocument):
    """The verifier with a file-referenced JSON schema loaded inline (so it needs no folder)."""
    verify, extra = spec.verify, []
    if isinstance(verify, JsonSchemaVerify) and isinstance(verify.schema_, str):
        schema = _schema_file(path, doc, verify.schema_, ("verify", "schema"), extra)
        verify = verify.model_copy(update={"schema_": schema})
    return verify, extra


def _read_referenced(path: Path, doc: YamlDocument, name: str, key: tuple, extra: list[Path]) -> tuple[Any, Path]:
    """The data of a file a pack key references (YAML or JSON), noted in `extra` when outside the pack."""
    referenced = path / name
    if not referenced.is_file():
        raise PackError(
            f"{'.'.join(key)} file '{name}' not found (looked in {path})", file=doc.path, line=doc.line_of(key)
        )
    data = load_yaml(referenced, error=PackError).data  # YAML is a superset of JSON
    if path.resolve() not in referenced.resolve().parents:
        extra.append(referenced)
    return data, referenced


def _schema_file(path: Path, doc: YamlDocument, name: str, key: tuple, extra: list[Path]) -> dict[str, Any]:
    schema, schema_file = _read_referenced(path, doc, name, key, extra)
    if not isinstance(schema, dict):
        raise PackError("a JSON Schema must be an object", file=schema_file, line=1)
    try:
        check_json_schema(schema)
    except ValueError as exc:
        raise PackError(str(exc), file=schema_file) from None
    return schema


def _resolve_answer_format(spec: PackSpec, path: Path, doc: YamlDocument, extra: list[Path]) -> AnswerFormat | None:
    """The pack's tools, tool_choice and response_format as sent, with referenced files read and checked."""
    if spec.tools is None and spec.response_format is None:
        return None
    tools = spec.tools
    if isinstance(tools, str):
        data, tools_file = _read_referenced(path, doc, tools, ("tools",), extra)
        try:
            tools = [ToolSpec.model_validate(t) for t in data] if isinstance(data, list) else None
            if tools is None:
                raise PackError("a tools file must hold a list of tool definitions", file=tools_file, line=1)
            check_tool_choice(tools, spec.tool_choice)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise PackError(f"tools[{where}]: {err['msg']}", file=tools_file) from None
        except ValueError as exc:
            raise PackError(str(exc), file=doc.path, line=doc.line_of(("tool_choice",))) from None
    response_format = spec.response_format
    if isinstance(response_format, JsonSchemaFormat) and isinstance(response_format.json_schema.schema_, str):
        key = ("response_format", "json_schema", "schema")
        schema = _schema_file(path, doc, response_format.json_schema.schema_, key, extra)
        inner = response_format.json_schema.model_copy(update={"schema_": schema})
        response_format = response_format.model_copy(update={"json_schema": inner})
    choice = spec.tool_choice
    return AnswerFormat(
        tools=[t.model_dump(exclude_none=True) for t in tools] if tools is not None else None,
        tool_choice=choice.model_dump() if hasattr(choice, "model_dump") else choice,
        response_format=response_format.model_dump(by_alias=True, exclude_none=True) if response_format else None,
    )


def _check_text_files(path: Path, skip: Path | None = None) -> None:
    """Every text file of the pack must be UTF-8; read line by line, so a big file costs no memory."""
    for file in sorted(path.rglob("*")):
        if file == skip or not file.is_file() or file.suffix.lower() not in TEXT_SUFFIXES or file.name.startswith("."):
            continue
        with file.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise PackError(
                        f"not valid UTF-8 (byte {exc.start} of the line); save the file as UTF-8",
                        file=file,
                        line=number,
                    ) from None


def _warnings(spec: PackSpec, path: Path) -> list[str]:
    warnings = []
    if spec.name != path.resolve().name:
        warnings.append(f"pack name '{spec.name}' differs from its folder name '{path.resolve().name}'")
    if not spec.source.strip():
        warnings.append("`source:` is empty; say where the prompts come from (the audit shows it)")
    if not spec.description.strip():
        warnings.append("`description:` is empty")
    return warnings
