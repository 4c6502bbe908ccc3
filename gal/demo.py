"""`gal demo` (what `make demo` runs): GAL on the bundled miniature world, for a held-out style.

It writes the subject's reference image (with its caption), the world's 18 style anchors and its test
prompts into the run's parent folder (`gal.miniature.inputs`), runs uncertainty + balance with the paper's m, k
and λ for up to 4 rounds (`gal.Config`'s defaults), evaluates every round on the test prompts and writes the
report.
"""

from __future__ import annotations

from pathlib import Path

from gal.errors import GalError


def main(out: Path, subject: str = "mosaic", models: dict | None = None, log=print) -> int:
    """`models`: other models than the bundled ones (`gal demo --base DIR --scorer DIR`, hidden: tests)."""
    import gal
    from gal.locations import bundled
    from gal.metrics import rows_text
    from gal.miniature import SETTINGS
    from gal.miniature.inputs import inputs
    from gal.report import write_report
    from gal.view import run_summary, run_text

    if not str(out).strip() or not out.name:
        raise GalError(f"--out {str(out)!r}: expected a folder for the demo's run, e.g. --out gal-demo")
    work = out.parent / f"{out.name}-inputs"
    fields, test_prompts = inputs(work, subject)
    if models is None and bundled() is None:
        raise GalError("gal demo: the bundled miniature model is not in this installation; train it with "
                       "`gal miniature train OUT` (docs/miniature.md)")
    models = models or SETTINGS
    # the paper's m, k, λ and round budget; the balance scheme is gal's default
    gal.run(gal.Config(**fields, **models, strategy="uncertainty", out=str(out)), log=log)
    rows = gal.evaluate(out, prompts_file=str(test_prompts))
    log(run_text(out, run_summary(out)))
    log(rows_text(rows))
    log(f"wrote {write_report(out)}")
    return 0
