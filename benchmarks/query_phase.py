"""Query-phase speed: `gal run`'s query phase against the loops a reviewer would write instead.

All sides make the same images (anchors x m per round, for `--rounds` rounds) with the same model, sampler
(DPMSolverMultistepScheduler), steps, guidance, resolution and LoRA adapter, and score each image against
its anchor text and the non-SoI texts with the same CLIP model (Eq. 8):

- project: `gal.query.Query.scored`, the very method `gal run`'s query calls, on `gal.components.Components`
  built from a `gal.Config` as a run builds them (so the round's LoRA adapter is attached, unfused, as in a
  run). Images in batches across anchors and samples, per-sample seeds, CLIP per batch, texts cached.
- authors: the authors' loop as they wrote it. Every round the pipeline is rebuilt around the modules
  already in memory (StableDiffusionPipeline(vae=..., unet=...)); one image per pipe(...) call; CLIP
  encodes each image alone; text features are cached per prompt.
- competent: what a user who writes diffusers well would do: the pipeline is kept, one call per anchor with
  num_images_per_prompt=m (one generator per image), CLIP batched per anchor, text features cached.

Each side runs in its own process, so each peak memory is its own. Not timed on any side: loading the models
(once per process; the project's load is reported apart as `load_s`: in a run it is shared with fine-tuning)
and writing images (`gal run` writes PNGs in a writer thread beside the next batch; no side writes here).
The UNet share: the project phase's images/s against what the UNet alone gives at the same batch (the share
of the phase's time that is UNet work; the rest is VAE decodes, CLIP, the scheduler and Python).

    python benchmarks/query_phase.py                       # bundled miniature model, or a tiny one built here
    python benchmarks/query_phase.py --anchors 6 --m 4 --json
    python benchmarks/query_phase.py --base DIR --scorer DIR --device cuda --steps 25
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (sets HF_HUB_OFFLINE before torch and the model libraries load)
import torch  # noqa: E402

SUBJECT, SUBJECT_PLAIN = "a <sks> dog", "a dog"
NON_SOI = ["a dog on the stairs", "a dog on a sofa"]  # the references' non-SoI content (Eq. 8)
GUIDANCE = 7.5
SIDES = ("project", "authors", "competent")


def anchors(n: int):
    """The paper's object anchors (gal/data/anchors/object.txt), cycled when more are asked for."""
    from gal.anchors import make_anchors, read_templates
    from gal.ledger import Anchor

    base = make_anchors(read_templates(None, "object"), SUBJECT, SUBJECT_PLAIN)
    out = []
    for i in range(n):
        a = base[i % len(base)]
        suffix = "" if i < len(base) else f", view {i // len(base)}"
        out.append(Anchor(i, a.template + suffix, a.prompt + suffix, a.text + suffix))
    return out


def settings(a, device: torch.device, resolution: int) -> dict:
    return {"anchors": a.anchors, "m": a.m, "rounds": a.rounds, "images": a.anchors * a.m * a.rounds,
            "steps": a.steps, "guidance": GUIDANCE, "resolution": resolution, "dtype": a.dtype,
            "non_soi_texts": len(NON_SOI), "device": str(device),
            "torch_threads": torch.get_num_threads()}


# ---- the project's query phase --------------------------------------------------------------------

def project_side(a) -> dict:
    from gal.components import Components
    from gal.config import Config
    from gal.family import family_of
    from gal.generate import sample_seed
    from gal.resolve import settle

    device = harness.pick_device(a.device)
    start = time.perf_counter()
    cfg, family = settle(Config(references="-", subject=SUBJECT, base=a.base, scorer=a.scorer, device=str(device),
                                mixed_precision=harness.MIXED_PRECISION[a.dtype], resolution=a.resolution,
                                gen_batch_size=str(a.batch_size)), family_of=family_of)
    parts = Components(cfg, family)  # as gal run: pipeline, LoRA adapter, scorer, query sampler
    parts.personalizer.load(Path(a.lora))  # the round's LoRA weights
    harness.sync(device)
    load_s = time.perf_counter() - start

    pool = anchors(a.anchors)
    if a.warmup == "on":  # one short batch: kernels chosen, caches allocated (no text of the run is cached here)
        n = min(parts.gen_batch_size, 4)
        for _ in parts.query.scored([pool[0].prompt] * n, ["warm-up"] * n, NON_SOI, list(range(n)),
                                    steps=2, guidance=GUIDANCE, desc="warm-up"):
            pass
        parts.scorer._text_cache.clear()
    scores = []
    with harness.Timer(device) as timer:
        for r in range(1, a.rounds + 1):  # as gal.query.Query.round: every anchor x j, batched across anchors
            todo = [(anchor, j) for anchor in pool for j in range(a.m)]
            seeds = [sample_seed(a.seed, r, anchor.idx, j) for anchor, j in todo]
            with parts.personalizer.merged():
                for _, _, _, s_a, s_n in parts.query.scored([x.prompt for x, _ in todo], [x.text for x, _ in todo],
                                                            NON_SOI, seeds, steps=a.steps,
                                                            guidance=GUIDANCE, desc=f"round {r}: query"):
                    scores += list(zip(s_a, s_n))
    n = len(scores)
    out = {"seconds": timer.seconds, "images": n, "images_per_s": n / timer.seconds, "load_s": load_s,
           "batch_size": parts.gen_batch_size, "resolution": parts.resolution, **harness.peak_memory(device)}
    with parts.personalizer.merged():  # the UNet as the phase runs it
        out["unet"] = _unet_share(a, parts.pipe, min(parts.gen_batch_size, a.anchors * a.m), parts.resolution,
                                  parts.autocast_dtype, n / timer.seconds, device)
    return out


def _unet_share(a, pipe, used: int, resolution: int, autocast_dtype, images_per_s: float, device) -> dict:
    """The UNet alone at the phase's batch (one forward, doubled for classifier-free guidance, times steps):
    its images/s, the share of the phase's time that is UNet work, and its FLOPs and TFLOP/s (with the
    device's bf16 dense peak, where known)."""
    unet_batch = 2 * used if GUIDANCE > 1 else used
    latent = resolution // pipe.vae_scale_factor
    seq = pipe.tokenizer.model_max_length
    seconds = harness.time_unet_forward(pipe.unet, unet_batch, latent, seq, autocast_dtype,
                                        iters=5, warmup=2 if device.type == "cuda" else 1)
    unet_images_per_s = used / (seconds * a.steps)
    per_forward = harness.unet_forward_flops(pipe.unet, unet_batch, latent, seq)
    per_image = per_forward / used * a.steps
    out = {"unet_batch": unet_batch, "unet_forward_s": seconds, "unet_images_per_s": unet_images_per_s,
           "share": images_per_s / unet_images_per_s, "unet_tflop_per_image": per_image / 1e12,
           "achieved_tflops": per_image * images_per_s / 1e12, "unet_only_tflops": per_forward / seconds / 1e12}
    label, peak = harness.bf16_peak(harness.device_name(device)) if device.type == "cuda" else (None, None)
    out.update(peak_label=label, peak_tflops=peak)
    if peak:
        out.update(achieved_fraction=out["achieved_tflops"] / peak, unet_only_fraction=out["unet_only_tflops"] / peak)
    return out


# ---- the loops a reviewer would write instead -------------------------------------------------------

def _modules(a, device):
    """The pipeline's modules and the CLIP model, loaded once (not timed), with the round's LoRA attached."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
    from diffusers.utils import logging as dlog
    from transformers import CLIPModel, CLIPProcessor

    dlog.disable_progress_bar()
    dtype = harness.TORCH_DTYPES[a.dtype]
    pipe = StableDiffusionPipeline.from_pretrained(a.base, torch_dtype=dtype, safety_checker=None,
                                                   requires_safety_checker=False).to(device)
    pipe.load_lora_weights(a.lora)  # onto the UNet in memory: a rebuilt pipeline keeps it
    modules = {k: getattr(pipe, k) for k in ("vae", "text_encoder", "tokenizer", "unet")}
    modules["scheduler"] = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    clip = CLIPModel.from_pretrained(a.scorer).to(device).eval()
    return modules, clip, CLIPProcessor.from_pretrained(a.scorer)


def _build(modules):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**modules, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class _TextCache:
    """CLIP text features, encoded once per prompt (as the authors' code and a competent user do)."""

    def __init__(self, clip, processor, device):
        self.clip, self.processor, self.device, self.cache = clip, processor, device, {}

    @torch.no_grad()
    def __call__(self, text: str) -> torch.Tensor:
        if text not in self.cache:
            tokens = self.processor.tokenizer([text], padding=True, return_tensors="pt").to(self.device)
            self.cache[text] = torch.nn.functional.normalize(_embeds(self.clip.get_text_features(**tokens)), dim=-1)[0]
        return self.cache[text]


@torch.no_grad()
def _image_features(clip, processor, images, device) -> torch.Tensor:
    pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
    return torch.nn.functional.normalize(_embeds(clip.get_image_features(pixel_values=pixels)), dim=-1)


def _embeds(out) -> torch.Tensor:
    return getattr(out, "pooler_output", out).float()  # transformers 5 returns a model output


def _scores(features, anchor, texts: _TextCache) -> list[tuple[float, float]]:
    s_a = features @ texts(anchor.text)
    s_n = torch.stack([features @ texts(t) for t in NON_SOI], dim=1).max(dim=1).values
    return list(zip(s_a.tolist(), s_n.tolist()))


def _seed(a, r: int, anchor, j: int) -> int:
    return a.seed * 1_000_003 + r * 10_007 + anchor.idx * 101 + j


def authors_side(a) -> dict:
    device = harness.pick_device(a.device)
    modules, clip, processor = _modules(a, device)
    texts, pool = _TextCache(clip, processor, device), anchors(a.anchors)
    resolution = a.resolution or modules["unet"].config.sample_size * _build(modules).vae_scale_factor
    if a.warmup == "on":
        _build(modules)(pool[0].prompt, num_inference_steps=2, guidance_scale=GUIDANCE, height=resolution, width=resolution)
    scores = []
    with harness.Timer(device) as timer:
        for r in range(1, a.rounds + 1):
            pipe = _build(modules)  # the round's model: a new pipeline around the modules in memory
            for anchor in pool:
                for j in range(a.m):
                    g = torch.Generator(device).manual_seed(_seed(a, r, anchor, j))
                    image = pipe(anchor.prompt, num_inference_steps=a.steps, guidance_scale=GUIDANCE,
                                 height=resolution, width=resolution, generator=g).images[0]
                    scores += _scores(_image_features(clip, processor, [image], device), anchor, texts)
    n = len(scores)
    return {"seconds": timer.seconds, "images": n, "images_per_s": n / timer.seconds, "batch_size": 1,
            "resolution": resolution, **harness.peak_memory(device)}


def competent_side(a) -> dict:
    device = harness.pick_device(a.device)
    modules, clip, processor = _modules(a, device)
    texts, pool, pipe = _TextCache(clip, processor, device), anchors(a.anchors), _build(modules)
    resolution = a.resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    if a.warmup == "on":
        pipe(pool[0].prompt, num_images_per_prompt=2, num_inference_steps=2, guidance_scale=GUIDANCE,
             height=resolution, width=resolution)
    scores = []
    with harness.Timer(device) as timer:
        for r in range(1, a.rounds + 1):
            for anchor in pool:
                gens = [torch.Generator(device).manual_seed(_seed(a, r, anchor, j)) for j in range(a.m)]
                images = pipe(anchor.prompt, num_images_per_prompt=a.m, num_inference_steps=a.steps,
                              guidance_scale=GUIDANCE, height=resolution, width=resolution, generator=gens).images
                scores += _scores(_image_features(clip, processor, images, device), anchor, texts)
    n = len(scores)
    return {"seconds": timer.seconds, "images": n, "images_per_s": n / timer.seconds, "batch_size": a.m,
            "resolution": resolution, **harness.peak_memory(device)}


def make_lora(a, folder: Path) -> str:
    """A LoRA checkpoint as a GAL round leaves it (Personalizer.save), for every side to load."""
    from accelerate import Accelerator

    from gal.models import load_pipeline, native_resolution
    from gal.personalize import Personalizer

    pipe = load_pipeline(a.base)
    acc = Accelerator(cpu=True)
    p = Personalizer(pipe, acc, method="lora", lr=1e-4, rank=4, resolution=native_resolution(pipe))
    p.reset(seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    p.save(folder)
    return str(folder)


# ---- main -----------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", help="diffusers pipeline folder (default: the bundled miniature model, else a tiny one)")
    p.add_argument("--scorer", help="transformers CLIP folder (default: as --base)")
    p.add_argument("--arch", default="auto", choices=harness.ARCHS,
                   help="random-weight model to build when --base/--scorer are not given (default auto: bundled "
                        "miniature model, else the fixtures' tiny)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--anchors", type=int, default=18, help="anchors per round (default 18, the paper's)")
    p.add_argument("--m", type=int, default=10, help="samples per anchor (default 10)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, help="sampler steps (default 25 on a GPU, 10 on the CPU)")
    p.add_argument("--resolution", type=int, help="default: the model's native size")
    p.add_argument("--batch-size", default="auto", help="project's images per pipeline call (default: "
                   "gal.generate.auto_batch_size)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: fp32 on the CPU, bf16 (fp16 without bf16) on a GPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lora", default="build", help="the round's LoRA folder, attached on every side as in a real run "
                   "(default: one built here, as a round leaves it)")
    harness.add_shared_flags(p, "one short untimed batch per side first (auto: on a GPU only)", SIDES)
    return p


def main(argv: list[str] | None = None) -> dict:
    a = parser().parse_args(argv)
    device = harness.resolve_args(a, steps_gpu=25, steps_cpu=10)
    if a.side:  # a child process: measure one side and write its figures
        out = {"project": project_side, "authors": authors_side, "competent": competent_side}[a.side](a)
        Path(a.result).write_text(json.dumps(out))
        return out

    with tempfile.TemporaryDirectory(prefix="gal-bench-") as tmp:
        models = harness.resolve_models(a.base, a.scorer, a.arch, Path(a.workdir or tmp) / "models")
        a.base, a.scorer = models["base"], models["scorer"]
        if a.lora == "build":
            a.lora = make_lora(a, Path(tmp) / "lora")
        argv_child = harness.child_argv(a, skip=("json", "side", "result", "arch", "workdir", "only", "repeat", "label"))
        sides = [s for s in SIDES if a.only in (None, s)]
        results = harness.run_sides(__file__, argv_child, sides, a.repeat, "images_per_s")
    resolution = next(iter(results.values()))["resolution"]
    report = {"benchmark": "query_phase", "date": time.strftime("%Y-%m-%d"), "device": harness.device_name(device),
              "model": a.label or models["label"], "base": a.base, "scorer": a.scorer,
              "settings": {**settings(a, device, resolution), "warmup": a.warmup, "repeat": a.repeat}, **results}
    if "project" in results:
        report["ratios"] = {side: results["project"]["images_per_s"] / results[side]["images_per_s"]
                            for side in SIDES[1:] if side in results}
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        print(harness.summary_of_query(report))
    return report


if __name__ == "__main__":
    main()
