"""The codebase's shape as JSON: modules, cli.py's lines, import arrows, the most-imported modules, long functions.

An import arrow is one module importing another of charrnn's, counted once per pair, imports inside functions
included ("module_level" counts only the imports at a module's top). Issue 26 set the targets these measure.

    python scripts/shape.py
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "charrnn"
LONGEST_FUNCTION = 50


def imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """The charrnn modules a piece of code imports."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "charrnn":
            names |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("charrnn."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("charrnn.")}
    return names


def shape() -> dict:
    trees = {path.stem: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.glob("*.py"))}
    modules = set(trees)
    arrows = {name: imported(tree, modules) - {name} for name, tree in trees.items()}
    top = {
        name: set().union(
            *(imported(node, modules) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom))
        )
        - {name}
        for name, tree in trees.items()
    }
    imported_by = {name: sum(name in targets for targets in arrows.values()) for name in modules}
    long_functions = sorted(
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1}"
        for name, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION
    )
    return {
        "modules": len(modules),
        "cli_lines": len((PACKAGE / "cli.py").read_text(encoding="utf-8").splitlines()),
        "import_arrows": sum(map(len, arrows.values())),
        "import_arrows_module_level": sum(map(len, top.values())),
        "imported_by_more_than_10": {name: n for name, n in sorted(imported_by.items(), key=lambda x: -x[1]) if n > 10},
        f"functions_over_{LONGEST_FUNCTION}_lines": long_functions,
    }


if __name__ == "__main__":
    print(json.dumps(shape(), indent=1))
