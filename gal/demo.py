"""`gal demo` (what `make demo` runs): GAL on the bundled miniature world, for a held-out style.

It writes the subject's reference image (with its caption), the world's 18 style anchors and its test
prompts into the run's parent folder, runs uncertainty + balance with the paper's m, k and λ for up to 4
rounds, evaluates every round on the test prompts and writes the report. Without the bundled weights
it falls back to tiny random models built on the spot: the machinery runs, the pictures are noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gal.errors import GalError


def inputs(work: Path, subject: str) -> tuple[dict, Path]:
    """Reference, anchors and test prompts of a held-out miniature subject, written into `work`; returns
    the `gal.Config` fields for it and the test prompt file."""
    from PIL import Image

    from gal.miniature import world

    if subject not in world.SUBJECTS:
        raise GalError(f"--subject {subject}: not a held-out subject of the miniature world; "
                       f"expected one of {', '.join(world.SUBJECTS)}")
    s = world.SUBJECTS[subject]
    refs = work / "references"
    refs.mkdir(parents=True, exist_ok=True)
    images, _, captions = world.reference_images(subject)
    for i, (image, caption) in enumerate(zip(images, captions)):
        Image.fromarray(image).save(refs / f"{subject}-{i}.png")
        (refs / f"{subject}-{i}.txt").write_text(caption + "\n")
    anchors = world.STYLE_ANCHORS if s.kind == "style" else world.OBJECT_ANCHORS
    (work / "anchors.txt").write_text("".join(t + "\n" for t in anchors))
    tests = world.STYLE_TEST_PROMPTS if s.kind == "style" else world.OBJECT_TEST_PROMPTS
    (work / "test_prompts.txt").write_text("".join(t + "\n" for t in tests))
    fields = {"references": str(refs), "kind": s.kind, "subject": s.phrase, "subject_plain": s.plain,
              "anchors": str(work / "anchors.txt")}
    return fields, work / "test_prompts.txt"


def prepare(work: Path, subject: str) -> tuple[list[str], Path]:
    """`inputs` as `gal run` flags."""
    fields, prompts = inputs(work, subject)
    return [x for key, value in fields.items() for x in (f"--{key.replace('_', '-')}", value)], prompts


def main(out: Path, subject: str = "mosaic", log=print) -> int:
    import gal
    from gal.metrics import rows_text
    from gal.miniature import SETTINGS, bundled
    from gal.report import write_report
    from gal.view import run_summary, run_text

    if not str(out).strip() or not out.name:
        raise GalError(f"--out {str(out)!r}: expected a folder for the demo's run, e.g. --out gal-demo")
    work = out.parent / f"{out.name}-inputs"
    fields, test_prompts = inputs(work, subject)
    if bundled() is not None:
        models = SETTINGS
    else:
        from gal.builders import build_clip, build_pipeline

        print("gal demo: the bundled miniature model is not in this installation; using tiny random models "
              "(the run shows the machinery, its pictures are noise)", file=sys.stderr)
        if not (work / "tiny" / "pipeline").exists():
            build_pipeline(work / "tiny" / "pipeline")
            build_clip(work / "tiny" / "clip")
        models = {"base": str(work / "tiny" / "pipeline"), "scorer": str(work / "tiny" / "clip"), "steps": 10,
                  "train_steps": 100}
    # the paper's m, k, λ and round budget; the balance scheme is gal's default
    gal.run(gal.Config(**fields, **models, strategy="uncertainty", rounds=4, m=10, k=3, lambda_=0.005, out=str(out)),
            log=log)
    rows = gal.evaluate(out, prompts_file=str(test_prompts), n=4)
    log(run_text(out, run_summary(out)))
    log(rows_text(rows))
    log(f"wrote {write_report(out)}")
    return 0
