"""No import circle inside python/fastpong: read from the source with ast, so an import inside a
function counts as much as one at the top of a module (it is a dependency all the same).

A module's edges are the fastpong modules it names: ``from . import x`` names ``fastpong.x`` when
that is a module and ``fastpong`` (its __init__) otherwise. Importing a submodule also runs its
parent packages' __init__; those implicit edges are left out, as every checker of cycles does.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "python" / "fastpong"


def _module_names(package_dir: Path) -> dict[str, Path]:
    names = {}
    # The compiled module (_core) has only its stub here: a module that imports nothing of ours.
    for path in [*package_dir.rglob("*.pyi"), *package_dir.rglob("*.py")]:
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # `import fastpong.a.b` names fastpong.a.b; keep the longest part that is a module here.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    modules = _module_names(package_dir)
    return {name: set() if path.suffix == ".pyi" else _imports(name, path, modules)
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports (its modules, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_checker_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_relative_and_lazy_imports():
    graph = import_graph()
    assert "fastpong.config" in graph["fastpong.cli"]  # from .config import ... at the top
    assert "fastpong.train" in graph["fastpong.cli"]  # from .train import ... inside a function
    assert "fastpong.agents.base" in graph["fastpong.agents.karpathy"]  # from .base import ...


def test_no_import_circle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)
