"""The layering of docs/architecture.md, checked on the source: every import of an avaffect module (at module
level or inside a function) goes to the same or a lower layer, there is no import cycle, and imports inside
functions are the documented exceptions only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "avaffect"

# lowest first; a module may import modules of its own layer or below (docs/architecture.md)
LAYERS: list[tuple[str, ...]] = [
    ("avaffect._version", "avaffect.errors", "avaffect.files", "avaffect.registry", "avaffect.statedict",
     "avaffect.logs", "avaffect.progress", "avaffect.threads", "avaffect.pools", "avaffect.shipped",
     "avaffect.onnxrt"),
    ("avaffect.media", "avaffect.livemedia"),
    ("avaffect.data",),
    ("avaffect.features",),
    ("avaffect.deploy",),
    ("avaffect.models",),
    ("avaffect.config",),
    ("avaffect.evaluation",),
    ("avaffect.training",),
    ("avaffect.workflows", "avaffect.metrics", "avaffect"),
    ("avaffect.cli",),
]
# where an import of an avaffect module may sit inside a function: the CLI (start-up time, see cli/main.py)
# and lines that say why with a "# lazy:" comment (a heavy optional dependency behind the import)
LAZY_OK_PACKAGES = ("avaffect.cli",)


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = i, prefix.count(".")
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return best


def imports(path: Path, this: str | None = None) -> list[tuple[str, int, bool]]:
    """``(imported avaffect module, line, inside a function)`` of one source file (module ``this``)."""
    tree = ast.parse(path.read_text(), str(path))
    this = this or module_name(path)
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_function) for a in child.names if a.name.startswith("avaffect"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative import
                    base = this.split(".") if is_pkg else this.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("avaffect"):
                    for a in child.names:  # `from pkg import submodule` imports the submodule
                        sub = f"{target}.{a.name}"
                        out.append((sub if sub in MODULES else target, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return out


EDGES = {m: imports(p) for m, p in MODULES.items()}


def test_the_layers_cover_every_module():
    for m in MODULES:
        layer_of(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module):
    here = layer_of(module)
    upward = [f"line {line}: {target} (layer {layer_of(target)})" for target, line, _ in EDGES[module]
              if target in MODULES and layer_of(target) > here]
    assert not upward, f"{module} (layer {here}) imports upward: {upward}"


def test_named_boundaries():
    """The acceptance list of the layering, spelled out."""
    def bad(src: str, dst: str) -> list[str]:
        return [f"{m} -> {t}" for m, edges in EDGES.items() if m.startswith(src)
                for t, _, _ in edges if t == dst or t.startswith(dst + ".")]

    assert not bad("avaffect.data", "avaffect.features")
    assert not bad("avaffect.evaluation", "avaffect.training")
    assert not [f"{m} -> {t}" for m, edges in EDGES.items() if not m.startswith("avaffect.cli")
                for t, _, _ in edges if t.startswith("avaffect.cli")]


def test_no_import_cycle():
    graph = {m: {t for t, _, _ in edges if t in MODULES and t != m} for m, edges in EDGES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)


def test_imports_inside_functions_are_the_documented_exceptions():
    offenders = []
    for module, edges in EDGES.items():
        if module.startswith(LAZY_OK_PACKAGES):
            continue
        lines = MODULES[module].read_text().splitlines()
        for target, line, inside in edges:
            if inside and "# lazy:" not in lines[line - 1]:
                offenders.append(f"{MODULES[module].relative_to(SRC)}:{line} imports {target}")
    assert not offenders, "imports inside functions without a '# lazy:' reason:\n" + "\n".join(offenders)


def test_the_checker_sees_a_planted_violation(tmp_path):
    """The checks above are not vacuous: an upward import inside a function, and a relative one, are seen."""
    planted = tmp_path / "planted.py"
    planted.write_text("import numpy\n\n\ndef f():\n    from avaffect.training.run import train\n"
                       "    from ..features import run_features\n    return train, run_features\n")
    edges = imports(planted, "avaffect.data.planted")
    assert ("avaffect.training.run", 5, True) in edges
    assert ("avaffect.features.run_features", 6, True) in edges
    assert all(layer_of(t) > layer_of("avaffect.data.planted") for t, _, _ in edges)
