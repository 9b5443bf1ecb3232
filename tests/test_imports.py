"""Dependencies point one way: the engine never imports the dashboard stack or the widgets.

The one exception is the notebook adapter (STYLE.md: "outside its notebook adapter"): it may
import papermill and plotly lazily, inside the functions that execute and render notebooks, so
that importing any engine module still loads none of them.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "allegro_ops"
FORBIDDEN = {"ipywidgets", "voila", "plotly", "papermill", "widgets"}
NOTEBOOK_ADAPTER = {"notebook_runs.py": {"papermill", "plotly"}}  # lazily, inside functions only
SOURCES = sorted(PACKAGE.rglob("*.py"))
MODULES = sorted(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
                 for p in SOURCES)


def imported_roots(path: Path) -> tuple[set[str], set[str]]:
    """(top-level packages imported at module level, those imported inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    module_level, lazy = set(), set()

    def visit(node: ast.AST, in_function: bool) -> None:
        roots: set[str] = set()
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots = {node.module.split(".")[0]}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            roots = {str(node.args[0].value).split(".")[0]}
        (lazy if in_function else module_level).update(roots)
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return module_level, lazy


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_engine_source_imports_nothing_of_the_dashboard_stack(path):
    module_level, lazy = imported_roots(path)
    assert module_level & FORBIDDEN == set()
    allowed_lazily = NOTEBOOK_ADAPTER.get(str(path.relative_to(PACKAGE)), set())
    assert lazy & FORBIDDEN <= allowed_lazily


def test_importing_every_engine_module_loads_nothing_of_the_dashboard_stack():
    code = (f"import importlib, json, sys\nfor m in {MODULES!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert {"allegro_ops", "duckdb", "click"} <= loaded
    assert loaded & FORBIDDEN == set()


def test_the_scan_tells_module_level_from_lazy_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom plotly import graph_objects\nimport widgets.view_state\n"
                      "from . import sibling\n\n\ndef run():\n    import papermill\n"
                      "    importlib.import_module('voila.app')\n")
    module_level, lazy = imported_roots(sample)
    assert module_level & FORBIDDEN == {"plotly", "widgets"}
    assert lazy == {"papermill", "voila"}
