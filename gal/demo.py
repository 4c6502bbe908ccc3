"""`gal demo` (what `make demo` runs): GAL on the bundled miniature world, for a held-out style.

It writes the subject's reference image (with its caption), the world's 18 style anchors and its test
prompts into the run's parent folder (`gal.miniature.inputs`), runs uncertainty + balance with the paper's m, k
and λ for up to 4 rounds (`gal.Config`'s defaults), evaluates every round on the test prompts and writes the
report.
"""

from __future__ import annotations

from pathlib import Path

from gal.config import Config
from gal.errors import GalError


def main(out: Path, subject: str = "mosaic", log=print) -> int:
    import gal
    from gal.locations import bundled

    cfg, test_prompts = demo_config(out, subject)
    if bundled() is None:
        raise GalError("gal demo: the bundled miniature model is not in this installation; train it with "
                       "`gal miniature train OUT` (docs/miniature.md)")
    gal.run(cfg, log=log)
    evaluate_and_report(out, test_prompts, log)
    return 0


def demo_config(out: Path, subject: str) -> tuple[Config, Path]:
    """The demo's run on the bundled models (its inputs written beside `out`), and its test prompts."""
    from gal.miniature import SETTINGS
    from gal.miniature.inputs import inputs

    if not str(out).strip() or not out.name:
        raise GalError(f"--out {str(out)!r}: expected a folder for the demo's run, e.g. --out gal-demo")
    fields, test_prompts = inputs(out.parent / f"{out.name}-inputs", subject)
    # the paper's m, k, λ and round budget; the balance scheme is gal's default
    return Config(**fields, **SETTINGS, strategy="uncertainty", out=str(out)), test_prompts


def evaluate_and_report(out: Path, test_prompts: Path, log=print) -> None:
    """Every round of the run in `out` on the test prompts, the rounds' table, the round to keep and the report."""
    import gal
    from gal.metrics import rows_text
    from gal.report import write_report
    from gal.view import run_summary, run_text

    rows = gal.evaluate(out, prompts_file=str(test_prompts))
    log(run_text(out, run_summary(out)))
    log(rows_text(rows))
    log(f"wrote {write_report(out)}")
