"""The shape the Python package keeps as it grows (docs/architecture.md): no module over 600
lines, and no function over 60 lines of code (its docstring aside) with branches in it."""

from __future__ import annotations

import ast
import pathlib

import adamkern

PACKAGE = pathlib.Path(adamkern.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_there():
    assert len(MODULES) > 40


def test_no_module_over_600_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in MODULES
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines (split them along their seams): {long}"


def _code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = function.end_lineno - function.lineno + 1
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
            first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def test_no_long_function_with_branches():
    branches = (ast.If, ast.For, ast.While, ast.Try, ast.With, ast.IfExp)
    long = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and _code_lines(node) > 60
                    and any(isinstance(n, branches) for n in ast.walk(node))):
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not long, f"functions over 60 lines with branches (split into named steps): {long}"
