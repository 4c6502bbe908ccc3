"""Why do three perfect added images not help a style while eighteen do? (issue 22, item 4)

For the bench's style runs, the judge reads every round-2 test image of the perfect-image diagnostics (and round 1,
DreamBooth 1x) and counts two kinds of copied content, on the prompts that ask for something else:

- *reference content*: the image shows the reference's own shape or colour (a red circle for mosaic);
- *added content*: it shows a shape or colour of one of the images added after round 1 that the prompt did not ask
  for (the anchors' shapes and colours, drawn in the style).

With one reference and three added images, the added images are 3/4 of the training set at weight 1: if the model
learns the style token as "these four pictures", the test images repeat the added images' content instead of the
prompt's. Eighteen added images vary the content enough that only the style is common to all.

    python benchmarks/added_content.py --bench /work/bench --json docs/measurements/added-content-2026-12-01.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

ROWS = {"round-1": 1, "perfect3-off": 2, "perfect3-separate": 2, "perfect18-separate": 2}


def test_images(run: Path, round_: int) -> list[Path]:
    """The round's images of the bench's evaluation (test prompts, scale 1)."""
    folders = [f for f in sorted((run / "eval").glob("n*-test-*")) if "scale" not in f.name] or [run / "eval"]
    return sorted(next((f / f"round-{round_}" for f in folders if (f / f"round-{round_}").is_dir()), run / "none").glob("p*-j*.png"))


def added_scenes(run: Path, subject) -> list:
    """What the anchors of the images added after round 1 asked for."""
    from gal.ledger import Ledger
    from gal.miniature import judge as judges

    ledger = Ledger(run, read_only=True)
    try:
        anchors = {a.idx: a for a in ledger.anchors()}
        return [judges.expected_scene(anchors[t.anchor_idx].template, subject) for t in ledger.added(1)]
    finally:
        ledger.close()


def measure(run: Path, round_: int, subject_name: str, judge, added: list) -> dict | None:
    """Of the test images that show another shape (colour) than the prompt asks for: the share showing the
    reference's, and the share showing one of `added`'s, each against the share a wrong value drawn at random would
    have (the other values alike)."""
    from PIL import Image

    from gal.miniature import judge as judges
    from gal.miniature import world

    subject = world.SUBJECTS[subject_name]
    files = test_images(run, round_)
    if not files:
        return None
    templates = world.STYLE_TEST_PROMPTS if subject.kind == "style" else world.OBJECT_TEST_PROMPTS
    seen = judge.predict(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))
    out = {"images": len(files), "added": len(added)}
    for key, values in (("shape", world.SHAPES), ("color", list(world.COLORS))):
        wanted = [getattr(judges.expected_scene(templates[int(f.name[1:4])], subject), key) for f in files]
        wrong = [(getattr(s, key), w) for s, w in zip(seen, wanted) if w is not None and getattr(s, key) != w]
        pool = {getattr(a, key) for a in added} - {None}
        ref = getattr(subject.reference, key)
        out[f"wrong_{key}"] = len(wrong) / len(files)
        out[f"reference_{key}"] = float(np.mean([g == ref for g, w in wrong])) if wrong else 0.0
        out[f"reference_{key}_chance"] = float(np.mean([ref != w for _, w in wrong]) / (len(values) - 1)) if wrong else 0.0
        out[f"added_{key}"] = float(np.mean([g in pool for g, w in wrong])) if wrong else 0.0
        out[f"added_{key}_chance"] = float(np.mean([len(pool - {w}) / (len(values) - 1) for _, w in wrong])) if wrong else 0.0
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--subjects", nargs="+", default=["mosaic", "neon"])
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    from gal.locations import WEIGHTS
    from gal.miniature import judge as judges
    from gal.miniature import world
    from gal.miniature.results import interval

    judge = judges.Judge(WEIGHTS / "judge")
    results = []
    for subject in a.subjects:
        for seed_dir in sorted((a.bench / subject).glob("seed*")):
            if not (seed_dir / "perfect3-off").is_dir():
                continue
            three = added_scenes(seed_dir / "perfect3-off", world.SUBJECTS[subject])  # round 1's control: the same three
            for row, round_ in ROWS.items():
                if (seed_dir / row).is_dir():
                    added = three if row == "round-1" else added_scenes(seed_dir / row, world.SUBJECTS[subject])
                    m = measure(seed_dir / row, round_, subject, judge, added)
                    if m:
                        results.append({"subject": subject, "seed": int(seed_dir.name[4:]), "row": row, **m})
    for row in ROWS:
        found = [r for r in results if r["row"] == row]
        if not found:
            continue
        cells = []
        for key in ("wrong_shape", "reference_shape", "added_shape", "wrong_color", "reference_color", "added_color"):
            values = [r[key] for r in found if key in r]
            if values:
                v = interval(values)
                chance = [r[key + "_chance"] for r in found if key + "_chance" in r]
                cells.append(f"{key} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" + (f" (at random {np.mean(chance):.2f})" if chance else ""))
        print(f"{row} ({len(found)} runs): " + "; ".join(cells))
    if a.json:
        a.json.write_text(json.dumps({"results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
