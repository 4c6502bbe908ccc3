"""The Python API under every command: `gal.Config`, `gal.run`, `gal.evaluate`, `gal.open_run`."""

import ast
import subprocess
import sys
from pathlib import Path

import gal

PACKAGE = Path(gal.__file__).parent


def test_no_module_below_the_command_line_imports_it():
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) and node.module else []
            assert not any(n == "gal.cli" or n.startswith("gal.cli.") for n in names), f"{path} imports gal.cli"


def test_importing_gal_loads_no_model_stack():
    code = "import gal, sys; print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert {"Config", "run", "evaluate", "open_run"} <= set(gal.__all__)
