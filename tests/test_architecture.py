"""The shape the Python package keeps as it grows (docs/architecture.md): no module over 600
lines, no function over 60 lines of code (its docstring aside) with branches in it, and an
optimizer written in the files of the recipe only."""

from __future__ import annotations

import ast
import os
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


ROOT = pathlib.Path(__file__).resolve().parent.parent
# What the recipe's check reads: the sources outside the tests and the documentation (and the
# build directories, the virtual environments and caches, which are not sources).
SOURCE_SUFFIXES = {".py", ".pyi", ".hpp", ".cpp", ".cu", ".cuh", ".h", ".txt", ".cmake",
                   ".toml"}
NOT_SOURCES = {"tests", "docs", "build", "__pycache__"}
# The files of the recipe (docs/architecture.md) for Yogi, an optimizer with nothing beyond
# its math: its header, its registry line, its op and its reference; one more at most (a
# comment that names it as an example).
RECIPE = {"cpp/include/adamkern/math/yogi.hpp", "cpp/include/adamkern/optimizers.hpp",
          "python/adamkern/ops.py", "python/adamkern/reference.py"}


def _sources():
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories
                             if d not in NOT_SOURCES and not d.startswith(".")]
        for name in files:
            path = pathlib.Path(directory, name)
            if path.suffix in SOURCE_SUFFIXES:
                yield path


def test_an_optimizer_is_written_in_its_recipe_files():
    naming = {str(p.relative_to(ROOT)) for p in _sources()
              if "yogi" in p.read_text(encoding="utf-8", errors="replace").lower()}
    assert RECIPE <= naming, f"the scan missed the recipe's files: {sorted(RECIPE - naming)}"
    assert len(naming) <= 5, f"Yogi is named outside its recipe's files: {sorted(naming - RECIPE)}"
