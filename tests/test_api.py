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


def test_validation_is_pure_and_the_machine_is_passed_in():
    from gal.resolve import Machine, settle

    cfg = gal.Config(references="refs", subject="a <sks> cat")
    on_a_gpu = settle(cfg, Machine(cpu_only=False, miniature=True)).config
    on_a_laptop = settle(cfg, Machine(cpu_only=True, miniature=True)).config
    assert on_a_gpu.base == "CompVis/stable-diffusion-v1-4" and on_a_laptop.base == "miniature"
    assert on_a_laptop.lr == 10 * on_a_gpu.lr  # the miniature model's LoRA rate
    assert settle(gal.Config(references="refs", subject="a <sks> cat", base="b", scorer="s")).config.base == "b"
    assert cfg.base is None  # the input is not changed


def test_progress_bars_write_lines_to_a_file(tmp_path):
    from gal.progress import progress

    with open(tmp_path / "log", "w") as f:
        bar = progress(range(1000), desc="fine-tune", file=f)
        for i in bar:
            bar.set_postfix(loss=f"{i:.4f}")
    text = (tmp_path / "log").read_text()
    assert "\r" not in text and text.count("\n") <= 3 and "1000/1000" in text and "loss=999" in text
