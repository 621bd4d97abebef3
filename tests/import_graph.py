"""The package's import graph, read from its source with `ast` (nothing is imported).

Run it to print the graph: `python -m tests.import_graph [-v]` (module sizes, edges, cycles).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "synthdistill"

# Libraries that cost ~100 ms or more to import (measured with `python -X importtime`), or
# pull torch: a command that does not need them must not load them. An import inside a
# function is there to keep one of these off a path that does not need it, and for no
# other reason.
HEAVY = frozenset(
    {
        "accelerate",
        "datasets",
        "datasketch",
        "httpx",
        "huggingface_hub",
        "jsonschema",
        "llama_cpp",
        "matplotlib",
        "numpy",
        "openai",
        "peft",
        "pyarrow",
        "safetensors",
        "scipy",
        "tokenizers",
        "torch",
        "transformers",
        "trl",
    }
)


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    imports: set[str] = field(default_factory=set)  # synthdistill modules imported when this one is
    libraries: set[str] = field(default_factory=set)  # top-level names of other libraries, likewise
    deferred: list[tuple[int, str]] = field(default_factory=list)  # (line, target) of imports inside functions
    # (line, target) of imports in a package's module-level `__getattr__` (PEP 562): a lazy export such as
    # `synthdistill.Project`, which keeps `import synthdistill.<module>` from loading the whole package
    lazy_exports: list[tuple[int, str]] = field(default_factory=list)


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, names: set[str]) -> list[str]:
    """The modules an import statement loads (`from pkg import mod` loads pkg.mod when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    targets = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in names]
    return targets if len(targets) == len(node.names) else [*targets, source]


def _type_checking_only(tree: ast.Module) -> set[int]:
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return hidden


def read_modules(package: Path = PACKAGE) -> dict[str, Module]:
    """Every module of the package with what it imports at load time and inside functions."""
    paths = sorted(package.rglob("*.py"))
    names = {module_name(path, package) for path in paths}
    modules: dict[str, Module] = {}
    for path in paths:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        name = module_name(path, package)
        module = Module(name, path, len(source.splitlines()))
        in_functions = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for inner in ast.walk(node)
        }
        hidden = _type_checking_only(tree)
        lazy = {
            id(inner)
            for node in tree.body
            if path.name == "__init__.py" and isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in hidden:
                continue
            for target in _targets(node, name, path.name == "__init__.py", names):
                internal = target == "synthdistill" or target.startswith("synthdistill.")
                if id(node) in lazy:
                    module.lazy_exports.append((node.lineno, target))
                elif id(node) in in_functions:
                    module.deferred.append((node.lineno, target))
                elif internal and target != name:
                    module.imports.add(target)
                elif not internal and getattr(node, "level", 0) == 0:
                    module.libraries.add(target.split(".")[0])
        modules[name] = module
    return modules


def loaded_with(name: str, modules: dict[str, Module]) -> set[str]:
    """Every synthdistill module that importing `name` loads (its packages' `__init__` included)."""
    seen: set[str] = set()
    stack = [name]
    while stack:
        current = stack.pop()
        parts = current.split(".")
        for package in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            if package in modules and package not in seen:
                seen.add(package)
                stack.extend(modules[package].imports)
    return seen


def heavy_libraries(name: str, modules: dict[str, Module]) -> set[str]:
    """The HEAVY libraries that importing `name` loads."""
    if name not in modules:
        return {name.split(".")[0]} & HEAVY
    return {lib for loaded in loaded_with(name, modules) for lib in modules[loaded].libraries} & HEAVY


def cycles(modules: dict[str, Module], with_deferred: bool = True) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), counting deferred imports too.

    A lazy export is left out: it runs only after its package has finished loading, so it can never
    meet a half-initialised module (which is what makes a circle a problem).
    """
    graph = {
        name: set(module.imports) | ({t for _, t in module.deferred if t in modules} if with_deferred else set())
        for name, module in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node] - {node}:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for name in graph:
        if name not in index:
            visit(name)
    return found


def main(argv: list[str]) -> None:
    modules = read_modules()
    sizes = {name: module.lines for name, module in modules.items()}
    largest = max(sizes, key=sizes.get)
    print(f"modules: {len(modules)}  lines: {sum(sizes.values())}  largest: {largest} ({sizes[largest]})")
    print(f"import edges at load time: {sum(len(m.imports) for m in modules.values())}")
    deferred = [(m.name, t) for m in modules.values() for _, t in m.deferred]
    print(
        f"imports inside functions: {len(deferred)} ({sum(t.startswith('synthdistill') for _, t in deferred)} of synthdistill modules)"
    )
    print(f"import cycles (deferred imports counted): {len(cycles(modules))}")
    for group in cycles(modules):
        print("   ", " <-> ".join(group))
    if "-v" in argv:
        for name in sorted(modules):
            targets = ", ".join(sorted(t.removeprefix("synthdistill.") for t in modules[name].imports))
            print(f"{sizes[name]:5d} {name.removeprefix('synthdistill.') or 'synthdistill'}: {targets}")


if __name__ == "__main__":
    main(sys.argv[1:])
