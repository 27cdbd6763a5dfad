"""The type stubs of the compiled module: shipped beside it, and naming exactly what it exports."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from fastpong import _core

STUB = Path(_core.__file__).with_name("_core.pyi")


def _stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text(encoding="utf-8"), filename=str(STUB))


def _is_public_member(name: str) -> bool:
    # Dunders (__init__, __len__, __repr__...) and pybind11's own hooks are not part of the API.
    return not name.startswith("__") and not name.startswith("_pybind11")


def _stub_definitions(body) -> dict[str, ast.AST]:
    return {node.name: node for node in body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_stub_ships_with_the_installed_module():
    # Installed from the wheel, the stub and the PEP 561 marker sit next to the extension.
    assert STUB.is_file(), f"no {STUB.name} next to {_core.__file__}"
    assert STUB.with_name("py.typed").is_file()


def test_stub_names_the_module_exports_both_ways():
    stubbed = set(_stub_definitions(_stub_tree().body))
    exported = {name for name in dir(_core) if not name.startswith("__")}
    assert stubbed - exported == set(), "stubbed but not in _core"
    assert exported - stubbed == set(), "in _core but missing from _core.pyi"


@pytest.mark.parametrize("class_name", sorted(
    name for name, value in vars(_core).items() if inspect.isclass(value)))
def test_stub_names_each_class_member_both_ways(class_name):
    node = _stub_definitions(_stub_tree().body)[class_name]
    assert isinstance(node, ast.ClassDef)
    stubbed = {name for name in _stub_definitions(node.body) if _is_public_member(name)}
    exported = {name for name in vars(getattr(_core, class_name)) if _is_public_member(name)}
    assert stubbed == exported, (
        f"{class_name}: stubbed only {sorted(stubbed - exported)}, "
        f"exported only {sorted(exported - stubbed)}")


def test_stub_functions_take_the_module_keyword_arguments():
    """Every stubbed module-level function accepts the keywords the binding declares."""
    for name, node in _stub_definitions(_stub_tree().body).items():
        if not isinstance(node, ast.FunctionDef):
            continue
        signature = getattr(_core, name).__doc__.splitlines()[0]
        declared = [a.arg for a in node.args.args]
        for argument in declared:
            assert f"{argument}:" in signature, f"{name}: stub argument {argument!r} not in {signature}"
