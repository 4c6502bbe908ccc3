"""Quality measurements of the miniature world's models.

Both measurements ask the same question of an image: does the scorer give its true caption a
higher similarity than every caption that changes exactly one attribute? (top-1 among the true
caption and its ~24 near misses.) `pairwise` is the softer version: the fraction of (image, near
miss) pairs where the true caption wins; `per_attribute` says which attribute fails.

- scorer accuracy: on freshly rendered held-in scenes (target >= 0.90 top-1);
- generator accuracy: on images the pipeline generates for held-in captions (target >= 0.70 top-1).

    >>> check("out/model", "out/scorer", n=100)   # with gal's ClipScorer, pipeline loader and sampler
    {'scorer': {'top1': 0.95, ...}, 'generator': {'top1': 0.78, ...}}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gal.generate import generate, sample_seed
from gal.miniature.world import ATTRIBUTES, Scene, caption, one_off_captions, render, sample_scenes
from gal.models import load_pipeline, native_resolution
from gal.score import ClipScorer

SCORER_SEED = 1_000_003  # a scene stream disjoint from the training data's seed stream
GENERATOR_SEED = 2_000_003


def near_miss_accuracy(scorer: ClipScorer, images: list, scenes: list[Scene]) -> dict:
    """How often each image's true caption beats its one-attribute-off captions (see module doc)."""
    offs = [one_off_captions(s) for s in scenes]
    texts = sorted({caption(s) for s in scenes} | {c for off in offs for _, c in off})
    index = {t: i for i, t in enumerate(texts)}
    sims = scorer.similarity(scorer.image_features(images), texts)
    top1, pairs, won = 0, 0, 0
    attr_won = dict.fromkeys(ATTRIBUTES, 0)
    attr_seen = dict.fromkeys(ATTRIBUTES, 0)
    for row, scene, off in zip(sims, scenes, offs):
        true = row[index[caption(scene)]]
        beats = {a: [] for a in ATTRIBUTES}
        for attribute, text in off:
            beats[attribute].append(bool(true > row[index[text]]))
        flat = [b for bs in beats.values() for b in bs]
        top1 += all(flat)
        pairs += len(flat)
        won += sum(flat)
        for a, bs in beats.items():
            if bs:
                attr_seen[a] += 1
                attr_won[a] += all(bs)
    n = len(scenes)
    return {
        "top1": top1 / n,
        "pairwise": won / max(pairs, 1),
        "per_attribute": {a: attr_won[a] / attr_seen[a] for a in ATTRIBUTES if attr_seen[a]},
        "n": n,
    }


def scorer_accuracy(scorer: ClipScorer, n: int = 200, seed: int = SCORER_SEED) -> dict:
    """Near-miss accuracy of the scorer on n fresh held-in renders."""
    pairs = sample_scenes(n, seed)
    return near_miss_accuracy(scorer, [render(scene, s) for scene, s in pairs], [scene for scene, _ in pairs])


def generator_accuracy(pipe, scorer: ClipScorer, n: int = 64, seed: int = GENERATOR_SEED, steps: int = 20,
                       guidance: float = 4.0) -> dict:
    """Near-miss accuracy, as judged by the scorer, of images generated for n held-in captions (each image from its
    own seed, as `gal run` samples)."""
    scenes = [scene for scene, _ in sample_scenes(n, seed)]
    prompts = [caption(s) for s in scenes]
    seeds = [sample_seed(seed, i) for i in range(n)]
    images = [image for _, batch in generate(pipe, prompts, seeds, steps=steps, guidance=guidance,
                                             resolution=native_resolution(pipe), batch_size=32) for image in batch]
    return near_miss_accuracy(scorer, images, scenes)


def check(model_dir: str | Path, scorer_dir: str | Path, n: int = 100, seed: int = 0, steps: int = 20,
          guidance: float = 4.0) -> dict:
    """Both measurements on saved folders: {'scorer': {...}, 'generator': {...}}."""
    scorer = ClipScorer(str(scorer_dir))
    return {
        "scorer": scorer_accuracy(scorer, n=2 * n, seed=SCORER_SEED + seed),
        "generator": generator_accuracy(load_pipeline(str(model_dir)), scorer, n=n, seed=GENERATOR_SEED + seed,
                                        steps=steps, guidance=guidance),
    }


def phenomenon(model_dir: str | Path, scorer_dir: str | Path, subject: str = "mosaic", work: Path | None = None) -> dict:
    """The third gate: after round 1 of `gal run` (DreamBooth on one reference, the defaults of
    `--base miniature`, which a folder path does not get by itself), the share
    of overfitted samples on the anchor prompts (target between 0.2 and 0.8). Runs round 1 with
    --strategy human, which stops after the round's query, so nothing more is trained."""
    import tempfile

    import gal
    from gal.miniature.inputs import inputs
    from gal.resolve import default_lr

    work = Path(work or tempfile.mkdtemp(prefix="gal-phenomenon-"))
    fields, _ = inputs(work / "inputs", subject)
    out = work / "run"
    summary = gal.run(gal.Config(**fields, base=str(model_dir), scorer=str(scorer_dir), strategy="human", rounds=2,
                                 steps=20, guidance=4.0, lr=default_lr("lora", miniature=True), out=str(out)),
                      log=lambda line: None)
    anchors = summary["rounds"][0]["anchors"]
    return {"subject": subject, "ovf_on_anchors": float(np.mean([a["beta"] for a in anchors])),
            "uncertain_directions": sum(a["entropy"] > 0 for a in anchors), "run": str(out)}


GATES = {"scorer top-1": 0.90, "generator top-1": 0.70, "round-1 OVF on anchors": (0.2, 0.8)}


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="gal miniature check",
                                     description="Measure a miniature model and scorer: the three quality gates.")
    parser.add_argument("model_dir", nargs="?", help="miniature pipeline folder (default: the bundled one)")
    parser.add_argument("scorer_dir", nargs="?", help="miniature CLIP scorer folder (default: the bundled one)")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--subject", default="mosaic", help="held-out subject for the overfitting gate")
    parser.add_argument("--no-phenomenon", action="store_true", help="skip the overfitting gate (a gal run round)")
    args = parser.parse_args(argv)
    if args.model_dir is None or args.scorer_dir is None:
        from gal.errors import GalError
        from gal.locations import bundled

        if bundled() is None:
            raise GalError("gal miniature check: no MODEL SCORER given and the bundled miniature weights are not in "
                           "this installation; expected two folders (gal miniature train OUT makes them)")
        args.model_dir, args.scorer_dir = args.model_dir or str(bundled()[0]), args.scorer_dir or str(bundled()[1])
    result = check(args.model_dir, args.scorer_dir, n=args.n, guidance=args.guidance)
    if not args.no_phenomenon:
        result["phenomenon"] = phenomenon(args.model_dir, args.scorer_dir, args.subject)
    print(json.dumps(result, indent=1))
    low, high = GATES["round-1 OVF on anchors"]
    lines = [("scorer top-1", result["scorer"]["top1"], result["scorer"]["top1"] >= GATES["scorer top-1"]),
             ("generator top-1", result["generator"]["top1"], result["generator"]["top1"] >= GATES["generator top-1"])]
    if "phenomenon" in result:
        ovf = result["phenomenon"]["ovf_on_anchors"]
        lines.append(("round-1 OVF on anchors", ovf, low <= ovf <= high))
    for name, value, ok in lines:
        print(f"{name:>24}: {value:.3f}  {'meets' if ok else 'misses'} the gate {GATES[name]}")


if __name__ == "__main__":
    main()
