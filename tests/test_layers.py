"""The import rule of docs/architecture.md: app -> backend -> models/db; models never imports db,
backend or app; db imports only SQLAlchemy/Alembic; app uses no SQL and no torch directly."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "app": {"db", "models", "sqlalchemy", "torch", "transformers"},
    "backend": {"app"},
    "models": {"db", "backend", "app", "sqlalchemy"},
    "db": {"backend", "models", "app", "torch", "transformers", "gradio"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_follow_the_rule(layer):
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"no python files in {layer}/"
    offenders = {
        str(f.relative_to(ROOT)): sorted(_imports(f) & FORBIDDEN[layer]) for f in files
    }
    assert {f: bad for f, bad in offenders.items() if bad} == {}


# --- no import cycles -------------------------------------------------------------------------
PACKAGES = ("app", "backend", "models", "db")
COMPOSITION_ROOTS = {("backend.jobs", "load_handlers")}
"""Functions allowed to import modules that import them back: `jobs.load_handlers` imports
every module that defines a job kind (they register with `backend.jobs`), so a worker knows
them all. Nothing else may close a cycle, at module level or inside a function."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if "migrations" not in p.parts}


def _import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports anywhere (functions included), except under
    `if TYPE_CHECKING:` and inside the composition roots."""
    mods = _project_modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        out: set[str] = set()

        def visit(node, mod=mod, out=out):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                if isinstance(child, ast.FunctionDef) and (mod, child.name) in COMPOSITION_ROOTS:
                    continue
                if isinstance(child, ast.Import):
                    out.update(filter(None, (resolve(a.name) for a in child.names)))
                elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                    out.update(filter(None, (resolve(f"{child.module}.{a.name}")
                                             or resolve(child.module) for a in child.names)))
                visit(child)

        visit(ast.parse(path.read_text(), filename=str(path)))
        out.discard(mod)
        graph[mod] = out
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycles():
    assert _cycles(_import_graph()) == []


def test_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
