"""Load and validate packs: find a pack by reference, read its YAML and rows, render every prompt."""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass, field
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
from synthdistill.shipped import shipped_dir
from synthdistill.yaml_source import YamlDocument, iter_jsonl, load_yaml

PACK_FILE = "pack.yaml"
TEXT_SUFFIXES = {".yaml", ".yml", ".json", ".jsonl", ".md", ".txt", ".jinja", ".j2"}
MAX_REPORTED = 50  # row problems kept per pack; the rest are counted
# (resolved folder, limit, max_prompt_chars) → the pack and the sha256 of its files when it was read
_LOADED: dict[tuple[Path, int | None, int | None], tuple[Pack, dict[str, str]]] = {}


@dataclass
class Pack:
    """A loaded pack: its metadata (`spec`), rendered `prompts` and resolved verifier."""

    spec: PackSpec
    path: Path
    prompts: list[Prompt]
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
class ValidationReport:
    """What `packs validate` found in one pack folder."""

    path: Path
    name: str | None = None
    version: str | None = None
    prompts: int = 0
    errors: list[PackError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    more_errors: int = 0  # problems beyond the MAX_REPORTED kept

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.name,
            "version": self.version,
            "ok": self.ok,
            "prompts": self.prompts,
            "errors": [str(e) for e in self.errors],
            "more_errors": self.more_errors,
            "warnings": self.warnings,
        }


def resolve_pack_path(reference: str, project_dir: Path | None) -> Path:
    """A pack folder: `reference` as a folder (relative to project_dir), else a shipped pack name.

    `prompts/<name>` also finds the shipped pack `<name>` when the project has no such folder.
    """
    candidate = Path(reference).expanduser()
    if not candidate.is_absolute() and project_dir is not None:
        candidate = Path(project_dir) / candidate
    if candidate.name == PACK_FILE and candidate.is_file():
        candidate = candidate.parent
    if candidate.is_dir():
        if not (candidate / PACK_FILE).is_file():
            raise PackError(f"no {PACK_FILE} in this folder; create one with `synthdistill packs new`", file=candidate)
        return candidate
    shipped = shipped_dir("prompts")
    for name in (reference, Path(reference).name if Path(reference).parent == Path("prompts") else None):
        if name and (shipped / name / PACK_FILE).is_file():
            return shipped / name
    names = shipped_pack_names()
    close = difflib.get_close_matches(Path(reference).name, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise PackError(
        f"pack '{reference}' not found: no such folder and no shipped pack of that name; {hint}"
        f"shipped packs: {', '.join(names) or 'none'}",
        file=candidate,
    )


def shipped_pack_names() -> list[str]:
    """Names of the folders under the shipped prompts/ that hold a pack.yaml."""
    root = shipped_dir("prompts")
    return sorted(p.parent.name for p in root.glob(f"*/{PACK_FILE}")) if root.is_dir() else []


def load_pack(path: Path, *, limit: int | None = None, max_prompt_chars: int | None = None) -> Pack:
    """Load and render a pack; raise PackError at the first problem (all are in validate_pack).

    `limit` stops reading rows (or expanding `variables:`) once that many prompts are
    made; `max_prompt_chars` refuses a longer prompt (the harvest passes its setting).
    A pack is rendered once per process: a second call with the same arguments returns
    the same `Pack` while the sha256 of every file it read is unchanged (treat it as read-only).
    """
    key = (Path(path).resolve(), limit, max_prompt_chars)
    cached = _LOADED.get(key)
    if cached is not None and cached[0].file_hashes() == cached[1]:
        return cached[0]
    pack, problems, _ = _build(Path(path), limit=limit, max_prompt_chars=max_prompt_chars)
    if problems:
        first = problems[0]
        if len(problems) > 1:
            more = f" (and {len(problems) - 1} more problems; run `synthdistill packs validate {path}`)"
            raise PackError(first.message + more, file=first.file, line=first.line)
        raise first
    _LOADED[key] = (pack, pack.file_hashes())
    return pack


def validate_pack(path: Path) -> ValidationReport:
    """Every check of `packs validate`, with no request sent; problems are collected, not raised."""
    report = ValidationReport(path=Path(path))
    try:
        pack, problems, warnings = _build(Path(path))
    except PackError as exc:
        report.errors.append(exc)
        return report
    report.name, report.version, report.prompts = pack.name, pack.version, len(pack.prompts)
    report.errors = problems[:MAX_REPORTED]
    report.more_errors = max(0, len(problems) - MAX_REPORTED)
    report.warnings = warnings
    return report


# --- building a pack -------------------------------------------------------------------


def _build(
    path: Path, limit: int | None = None, max_prompt_chars: int | None = None
) -> tuple[Pack, list[PackError], list[str]]:
    """Load a pack; fatal problems raise, row problems are returned with the warnings.

    Rows are read, and `variables:` combinations made, one at a time: with `limit` nothing
    past the limit-th prompt is read or rendered.
    """
    if not (path / PACK_FILE).is_file():
        raise PackError(f"no {PACK_FILE} here; is this a pack folder?", file=path)
    doc = _load_pack_yaml(path / PACK_FILE)
    spec = _validate_spec(doc)
    template = _compile_template(spec, doc)
    verify, extra_files = _resolve_verify(spec, path, doc)
    answer_format = _resolve_answer_format(spec, path, doc, extra_files)
    rows_file = path / spec.rows if spec.rows is not None else None
    _check_text_files(path, skip=rows_file)  # the rows file is decoded line by line as it is read
    problems: list[PackError] = []
    prompts: list[Prompt] = []
    if rows_file is not None:
        if not rows_file.is_file():
            raise PackError(
                f"rows file '{spec.rows}' not found (looked in {path})", file=doc.path, line=doc.line_of(("rows",))
            )
        if path.resolve() not in rows_file.resolve().parents:
            extra_files.append(rows_file)
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
    seen: dict[str, str] = {}
    for file, line, source, row in items:
        any_rows = True
        if limit is not None and len(prompts) >= limit:
            break
        where = line if spec.rows is not None else doc.line_of(("template",))
        if (problem := forbidden_character(row, "row" if spec.rows is not None else "variables")) is not None:
            problems.append(
                PackError(f"{problem}; remove it (prompts may not hold NUL or lone surrogates)", file=file, line=line)
            )
            continue
        try:
            prompt = prompt_for(spec, template, row, source, answer_format)
        except PackError as exc:
            problems.append(PackError(exc.message, file=file, line=where))
            if spec.variables is not None:
                break  # every combination fails the same way
            continue
        text = [m.content for m in prompt.messages]
        if (problem := forbidden_character(text, "prompt")) is not None:  # from the template or system prompt
            problems.append(PackError(f"the rendered {problem}; remove it", file=file, line=where))
            continue
        size = sum(len(t) for t in text)
        if max_prompt_chars is not None and size > max_prompt_chars:
            problems.append(
                PackError(
                    f"prompt is {size} characters, over harvest.max_prompt_chars ({max_prompt_chars}); "
                    "shorten it or raise the limit",
                    file=file,
                    line=line,
                )
            )
            continue
        if prompt.prompt_id in seen:
            problems.append(
                PackError(
                    f"same prompt as {seen[prompt.prompt_id]} (prompt_id {prompt.prompt_id}); remove one of them",
                    file=file,
                    line=line,
                )
            )
            continue
        seen[prompt.prompt_id] = source
        prompts.append(prompt)
    if rows_file is not None and not any_rows:
        raise PackError("rows file has no rows", file=rows_file)
    pack = Pack(
        spec=spec, path=path, prompts=prompts, verify=verify, extra_files=extra_files, answer_format=answer_format
    )
    return pack, _merge_repeats(problems), _warnings(spec, path)


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


# --- helpers of the `packs` commands -------------------------------------------------


def discover_packs(project_dir: Path) -> list[tuple[str, Path]]:
    """(origin, folder) of the shipped packs and of the packs under `project_dir/prompts`."""
    found: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for origin, root in (("shipped", shipped_dir("prompts")), ("project", Path(project_dir) / "prompts")):
        for pack_file in sorted(root.glob(f"*/{PACK_FILE}")) if root.is_dir() else []:
            if pack_file.parent.resolve() not in seen:
                seen.add(pack_file.parent.resolve())
                found.append((origin, pack_file.parent))
    return found


def expand_references(references: list[str], project_dir: Path) -> tuple[list[str], list[str]]:
    """(pack references, skipped files) as `packs validate` takes them.

    A folder without pack.yaml that holds packs stands for each of them (`packs validate
    prompts`); a plain file other than pack.yaml is skipped, so that `prompts/*` works
    beside a README.
    """
    packs: list[str] = []
    skipped: list[str] = []
    for reference in references:
        candidate = Path(reference) if Path(reference).is_absolute() else Path(project_dir) / reference
        if candidate.is_file() and candidate.name != PACK_FILE:
            skipped.append(reference)
        elif candidate.is_dir() and not (candidate / PACK_FILE).exists() and any(candidate.glob(f"*/{PACK_FILE}")):
            packs.extend(str(Path(reference) / p.parent.name) for p in sorted(candidate.glob(f"*/{PACK_FILE}")))
        else:
            packs.append(reference)
    return packs, skipped
