"""The package's import graph: no circles, and the fast commands load no heavy library."""

from __future__ import annotations

from tests.import_graph import HEAVY, cycles, heavy_libraries, read_modules


def test_no_import_circles_even_counting_imports_inside_functions():
    assert cycles(read_modules()) == []


def test_an_import_inside_a_function_only_defers_a_heavy_library():
    """Anything else is imported at the top, where a reader sees what a module depends on."""
    modules = read_modules()
    unjustified = [
        f"{module.path.name}:{line} imports {target}"
        for module in modules.values()
        for line, target in module.deferred
        if not heavy_libraries(target, modules)
    ]
    assert unjustified == []


def test_the_fast_paths_load_no_heavy_library():
    """`--help`, `packs`, `policy` and `audit` (the CLI and the audit package) import none of HEAVY at load time."""
    modules = read_modules()
    for name in ("synthdistill.cli", "synthdistill.audit", "synthdistill.policy", "synthdistill.packs"):
        assert heavy_libraries(name, modules) == set(), name


def test_the_graph_reader_sees_a_circle_and_a_heavy_import(tmp_path):
    package = tmp_path / "synthdistill"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from synthdistill import b\nimport torch\n")
    (package / "b.py").write_text("def f():\n    from synthdistill.a import x\n")
    modules = read_modules(package)
    assert cycles(modules) == [["synthdistill.a", "synthdistill.b"]]
    assert heavy_libraries("synthdistill.b", modules) == set()
    assert heavy_libraries("synthdistill.a", modules) == {"torch"} and "torch" in HEAVY


def test_a_lazy_export_is_neither_a_deferred_import_nor_a_circle(tmp_path):
    package = tmp_path / "synthdistill"
    package.mkdir()
    (package / "__init__.py").write_text("def __getattr__(name):\n    from synthdistill import a\n")
    (package / "a.py").write_text("import synthdistill\n")
    modules = read_modules(package)
    assert modules["synthdistill"].deferred == [] and modules["synthdistill"].lazy_exports == [(2, "synthdistill.a")]
    assert cycles(modules) == []  # the package has loaded before its __getattr__ runs
