"""Issue 14, point 7: a fuzz pass over the config and pack loaders (hypothesis).

Whatever the bytes of distill.yaml, pack.yaml or rows.jsonl, loading them either works
or raises the loader's InputError: one line, naming the file. Any other exception (a
traceback at the CLI) fails the test. The CLI edge is fuzzed too: `packs validate` on a
fuzzed pack exits 0 or 2 and prints no traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthdistill.errors import ConfigError, InputError, PackError

FUZZ = settings(
    max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

BASE_CONFIG = {
    "name": "run",
    "teacher": {"backend": "openai", "model": "fake-model", "base_url": "http://127.0.0.1:9/v1", "policy": "fake"},
    "harvest": {"packs": ["prompts/tiny"], "max_tokens": 64, "limit": 3},
    "filters": ["finished", {"length": {"min_chars": 1}}],
}
BASE_PACK = {"name": "tiny", "version": "1.0.0", "licence": "CC0-1.0", "template": "{{ q }}", "rows": "rows.jsonl"}

# Strings that have broken loaders: NULs, lone surrogates, YAML/Jinja syntax, huge and odd numbers.
nasty_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "\x00",
            "\ud800",
            "{{ q }",
            "{% for %}",
            "*alias",
            "&anchor",
            "!!python/object:os.system",
            "../../etc",
            "~",
            "1e400",
            "-0",
            "NaN",
            "null",
            "\u2028",
            "\ufeff",
            "'",
            '"',
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)),
    max_leaves=12,
)


def _paths(data, prefix=()):
    """Every key path of a nested dict/list."""
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, prefix + (index,))


def _mutate(base: dict, path: tuple, value) -> dict:
    data = json.loads(json.dumps(base))
    if not path:
        return value
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return data


@st.composite
def mutated(draw, base: dict):
    data = base
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = list(_paths(data)) if isinstance(data, (dict, list)) else [()]
        path = draw(st.sampled_from(paths))
        data = _mutate(data, path, draw(values)) if draw(st.booleans()) else data
        if isinstance(data, dict) and draw(st.booleans()):
            data = {**data, draw(nasty_text): draw(values)}
    return data


def _dump(data) -> bytes:
    try:
        return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")
    except yaml.YAMLError:
        return repr(data).encode("utf-8", "surrogatepass")


file_bytes = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


def _assert_one_line_naming(exc: InputError, path: Path) -> None:
    assert exc.file is not None and Path(exc.file).name == path.name or str(path.parent) in str(exc), str(exc)
    assert exc.message and "\n" not in str(exc), repr(str(exc))


def _project(root: Path, config: bytes, pack_yaml: bytes, rows: bytes) -> Path:
    pack = root / "prompts" / "tiny"
    pack.mkdir(parents=True)
    (pack / "pack.yaml").write_bytes(pack_yaml)
    (pack / "rows.jsonl").write_bytes(rows)
    (root / "distill.yaml").write_bytes(config)
    return root / "distill.yaml"


GOOD_PACK = yaml.safe_dump(BASE_PACK).encode()
GOOD_ROWS = b'{"q": "hello"}\n{"q": "world"}\n'


@FUZZ
@given(st.one_of(mutated(BASE_CONFIG).map(_dump), file_bytes))
def test_fuzzed_distill_yaml_loads_or_is_a_config_error(config_bytes):
    from synthdistill.config import load_config
    from synthdistill.packs import configured_prompts

    with tempfile.TemporaryDirectory() as folder:
        path = _project(Path(folder), config_bytes, GOOD_PACK, GOOD_ROWS)
        try:
            config = load_config(path)
        except ConfigError as exc:
            _assert_one_line_naming(exc, path)
            return
        except InputError as exc:  # e.g. an output_dir outside the project
            _assert_one_line_naming(exc, path)
            return
        try:
            configured_prompts(config)
        except InputError as exc:
            assert exc.message and "\n" not in str(exc)


@FUZZ
@given(
    st.one_of(mutated(BASE_PACK).map(_dump), file_bytes),
    st.one_of(
        st.just(GOOD_ROWS),
        file_bytes,
        st.lists(values, max_size=4).map(
            lambda rows: "\n".join(json.dumps(r) for r in rows).encode("utf-8", "surrogatepass")
        ),
    ),
)
def test_fuzzed_pack_loads_or_is_a_pack_error(pack_bytes, rows_bytes):
    from synthdistill.packs import load_pack, validate_pack

    with tempfile.TemporaryDirectory() as folder:
        config = _project(Path(folder), yaml.safe_dump(BASE_CONFIG).encode(), pack_bytes, rows_bytes)
        pack_dir = config.parent / "prompts" / "tiny"
        try:
            pack = load_pack(pack_dir, limit=2, max_prompt_chars=1000)
            assert len(pack.prompts) <= 2
        except PackError as exc:
            assert exc.file is not None and str(pack_dir) in exc.file, str(exc)
            assert exc.message and "\n" not in str(exc), repr(str(exc))
        report = validate_pack(pack_dir)  # collects problems, never raises
        for error in report.errors:
            assert "\n" not in str(error)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(BASE_PACK).map(_dump), file_bytes), file_bytes)
def test_fuzzed_pack_through_the_cli_exits_0_or_2_without_a_traceback(pack_bytes, rows_bytes):
    from synthdistill.cli import main

    with tempfile.TemporaryDirectory() as folder:
        config = _project(Path(folder), yaml.safe_dump(BASE_CONFIG).encode(), pack_bytes, rows_bytes)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["packs", "validate", str(config.parent / "prompts" / "tiny")])
        assert code in (0, 2), (code, out.getvalue(), err.getvalue())
        assert "Traceback" not in err.getvalue() + out.getvalue()
