"""Quality measurements of the miniature world's models.

Both measurements ask the same question of an image: does the scorer give its true caption a
higher similarity than every caption that changes exactly one attribute? (top-1 among the true
caption and its ~24 near misses.) `pairwise` is the softer version: the fraction of (image, near
miss) pairs where the true caption wins; `per_attribute` says which attribute fails.

- scorer accuracy: on freshly rendered held-in scenes (target >= 0.90 top-1);
- generator accuracy: on images the pipeline generates for held-in captions (target >= 0.70 top-1).

    >>> check("out/model", "out/scorer", n=100)
    {'scorer': {'top1': 0.95, ...}, 'generator': {'top1': 0.78, ...}}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gal.miniature.world import ATTRIBUTES, Scene, caption, one_off_captions, render, sample_scenes

SCORER_SEED = 1_000_003  # a scene stream disjoint from the training data's seed stream
GENERATOR_SEED = 2_000_003


def _pooled(output) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected feature.
    return output if torch.is_tensor(output) else output.pooler_output


@torch.no_grad()
def image_features(model, processor, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """Unit-norm CLIP image features of uint8 (n, H, W, 3) images, through the saved processor."""
    feats = []
    for i in range(0, len(images), batch_size):
        pixels = processor(images=list(images[i : i + batch_size]), return_tensors="pt")["pixel_values"]
        feats.append(_pooled(model.get_image_features(pixel_values=pixels)))
    feats = torch.cat(feats)
    return feats / feats.norm(dim=-1, keepdim=True)


@torch.no_grad()
def text_features(model, processor, texts: list[str], batch_size: int = 512) -> torch.Tensor:
    feats = []
    for i in range(0, len(texts), batch_size):
        tokens = processor.tokenizer(texts[i : i + batch_size], padding=True, truncation=True, return_tensors="pt")
        feats.append(_pooled(model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])))
    feats = torch.cat(feats)
    return feats / feats.norm(dim=-1, keepdim=True)


def near_miss_accuracy(model, processor, images: np.ndarray, scenes: list[Scene]) -> dict:
    """How often each image's true caption beats its one-attribute-off captions (see module doc)."""
    offs = [one_off_captions(s) for s in scenes]
    texts = sorted({caption(s) for s in scenes} | {c for off in offs for _, c in off})
    index = {t: i for i, t in enumerate(texts)}
    sims = image_features(model, processor, images) @ text_features(model, processor, texts).T
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


def scorer_accuracy(model, processor, n: int = 200, seed: int = SCORER_SEED) -> dict:
    """Near-miss accuracy of the scorer on n fresh held-in renders."""
    pairs = sample_scenes(n, seed)
    images = np.stack([render(scene, s) for scene, s in pairs])
    return near_miss_accuracy(model, processor, images, [scene for scene, _ in pairs])


@torch.no_grad()
def generate(pipe, prompts: list[str], seed: int = 0, steps: int = 20, guidance_scale: float = 4.0,
             batch_size: int = 32) -> np.ndarray:
    """Seeded, batched generation; uint8 (n, H, W, 3)."""
    out = []
    for i in range(0, len(prompts), batch_size):
        generator = torch.Generator().manual_seed(seed + i)
        images = pipe(prompts[i : i + batch_size], num_inference_steps=steps, guidance_scale=guidance_scale,
                      generator=generator, output_type="np").images
        out.append(np.clip(np.round(images * 255), 0, 255).astype(np.uint8))
    return np.concatenate(out)


def generator_accuracy(pipe, model, processor, n: int = 64, seed: int = GENERATOR_SEED, steps: int = 20,
                       guidance_scale: float = 4.0) -> dict:
    """Near-miss accuracy, as judged by the scorer, of images generated for n held-in captions."""
    scenes = [scene for scene, _ in sample_scenes(n, seed)]
    images = generate(pipe, [caption(s) for s in scenes], seed=seed, steps=steps, guidance_scale=guidance_scale)
    return near_miss_accuracy(model, processor, images, scenes)


def load_scorer(scorer_dir: str | Path):
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(scorer_dir, use_safetensors=True).eval()
    return model, CLIPProcessor.from_pretrained(scorer_dir)


def load_pipeline(model_dir: str | Path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model_dir, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def check(model_dir: str | Path, scorer_dir: str | Path, n: int = 100, seed: int = 0, steps: int = 20,
          guidance_scale: float = 4.0) -> dict:
    """Both measurements on saved folders: {'scorer': {...}, 'generator': {...}}."""
    model, processor = load_scorer(scorer_dir)
    pipe = load_pipeline(model_dir)
    return {
        "scorer": scorer_accuracy(model, processor, n=2 * n, seed=SCORER_SEED + seed),
        "generator": generator_accuracy(pipe, model, processor, n=n, seed=GENERATOR_SEED + seed, steps=steps,
                                        guidance_scale=guidance_scale),
    }


def phenomenon(model_dir: str | Path, scorer_dir: str | Path, subject: str = "mosaic", work: Path | None = None) -> dict:
    """The third gate: after round 1 of `gal run` (DreamBooth on one reference, the defaults of
    `--base miniature`, which a folder path does not get by itself), the share
    of overfitted samples on the anchor prompts (target between 0.2 and 0.8). Runs round 1 with
    --strategy human, which stops after the round's query, so nothing more is trained."""
    import tempfile

    import gal
    from gal.config import default_lr
    from gal.demo import inputs

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
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--subject", default="mosaic", help="held-out subject for the overfitting gate")
    parser.add_argument("--no-phenomenon", action="store_true", help="skip the overfitting gate (a gal run round)")
    args = parser.parse_args(argv)
    if args.model_dir is None or args.scorer_dir is None:
        from gal.errors import GalError
        from gal.miniature import bundled

        if bundled() is None:
            raise GalError("gal miniature check: no MODEL SCORER given and the bundled miniature weights are not in "
                           "this installation; expected two folders (gal miniature train OUT makes them)")
        args.model_dir, args.scorer_dir = args.model_dir or str(bundled()[0]), args.scorer_dir or str(bundled()[1])
    result = check(args.model_dir, args.scorer_dir, n=args.n, guidance_scale=args.guidance_scale)
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
