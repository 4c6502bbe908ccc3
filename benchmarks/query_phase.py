"""Query-phase speed: the project's query phase against the loop a user writes with plain diffusers.

Both sides make the same images (anchors x m per round, for `--rounds` rounds) with the same model,
sampler (DPMSolverMultistepScheduler), steps, guidance and resolution, and score each image against its
anchor text and the non-SoI texts with the same CLIP model:

- project: what gal.loop._query does. The pipeline and the scorer are loaded once (gal.models.load_pipeline
  and gal.score.ClipScorer, as gal.components.Components) and kept across rounds; images are made in batches across
  anchors and samples (gal.generate.generate, per-sample seeds); CLIP scores each batch at once and encodes
  each distinct text once.
- plain: the authors' style of loop. Every round the pipeline is rebuilt from disk
  (StableDiffusionPipeline.from_pretrained); one image per pipe(...) call; one CLIPModel forward (with a
  fresh CLIPProcessor call) per image and per text: its anchor text and each non-SoI text.

Each side runs in its own process, so each peak memory is its own. Not timed on either side: loading the
CLIP model (once per process), writing images to disk, the ledger. The project's one-time pipeline load is
reported apart (`load_s`): in a run it is shared with fine-tuning. `--lora` attaches the round's LoRA adapter,
as in a real run (project: gal.personalize.Personalizer's unfused adapter; plain: pipe.load_lora_weights
every round).

    python benchmarks/query_phase.py                       # bundled miniature model, or a tiny one built here
    python benchmarks/query_phase.py --anchors 6 --m 4 --json
    python benchmarks/query_phase.py --base DIR --scorer DIR --device cuda --steps 25 --flops
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
            "non_soi_texts": len(NON_SOI), "lora": bool(a.lora), "device": str(device),
            "torch_threads": torch.get_num_threads()}


# ---- the project's query phase --------------------------------------------------------------------

def project_side(a) -> dict:
    from accelerate import Accelerator

    from gal.generate import auto_batch_size, generate, sample_seed
    from gal.models import load_pipeline, native_resolution, use_query_sampler
    from gal.personalize import Personalizer
    from gal.score import ClipScorer

    device = harness.pick_device(a.device)
    precision = harness.MIXED_PRECISION[a.dtype]
    start = time.perf_counter()
    # as gal.components.Components
    acc = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
    frozen_dtype = harness.TORCH_DTYPES[a.dtype]
    autocast_dtype = frozen_dtype if precision != "no" else None
    scorer = ClipScorer(a.scorer, device=acc.device)
    pipe = load_pipeline(a.base, frozen_dtype, frozen_dtype)
    resolution = a.resolution or native_resolution(pipe)
    pipe.to(acc.device)
    if a.lora:
        Personalizer(pipe, acc, method="lora", lr=1e-4, rank=4, resolution=resolution)
    use_query_sampler(pipe)
    batch = auto_batch_size(acc.device, resolution) if a.batch_size == "auto" else int(a.batch_size)
    harness.sync(device)
    load_s = time.perf_counter() - start

    pool = anchors(a.anchors)
    if a.warmup == "on":  # one short batch: kernels chosen, caches allocated (no text of the run is cached here)
        for _, images in generate(pipe, [pool[0].prompt] * min(batch, 4), list(range(min(batch, 4))), steps=2,
                                  guidance=GUIDANCE, resolution=resolution, batch_size=batch,
                                  autocast_dtype=autocast_dtype):
            scorer.image_features(images)
    scores = []
    with harness.Timer(device) as timer:
        for r in range(1, a.rounds + 1):  # _query: every anchor x j, batched across anchors
            todo = [(anchor, j) for anchor in pool for j in range(a.m)]
            seeds = [sample_seed(a.seed, r, anchor.idx, j) for anchor, j in todo]
            for start_i, images in generate(pipe, [anchor.prompt for anchor, _ in todo], seeds, steps=a.steps,
                                            guidance=GUIDANCE, resolution=resolution, batch_size=batch,
                                            autocast_dtype=autocast_dtype):
                mine = range(start_i, start_i + len(images))
                features = scorer.image_features(images)
                s_a, s_n = scorer.oracle(features, [todo[i][0].text for i in mine], NON_SOI)
                scores += list(zip(s_a.tolist(), s_n.tolist()))
    n = len(scores)
    out = {"seconds": timer.seconds, "images": n, "images_per_s": n / timer.seconds, "load_s": load_s,
           "batch_size": batch, "resolution": resolution, **harness.peak_memory(device)}
    if a.flops:
        out["flops"] = _flops(a, pipe, batch, min(batch, a.anchors * a.m), resolution, autocast_dtype,
                              n / timer.seconds, device)
    return out


def _flops(a, pipe, batch: int, used: int, resolution: int, autocast_dtype, images_per_s: float, device) -> dict:
    """UNet FLOPs per image (one forward at the batch used, doubled for classifier-free guidance, times
    steps) and the TFLOP/s this reaches: over the query phase's whole wall time, and for the UNet alone."""
    unet_batch = 2 * used if GUIDANCE > 1 else used
    latent = resolution // pipe.vae_scale_factor
    seq = pipe.tokenizer.model_max_length
    per_forward = harness.unet_forward_flops(pipe.unet, unet_batch, latent, seq)
    per_image = per_forward / used * a.steps
    seconds = harness.time_unet_forward(pipe.unet, unet_batch, latent, seq, autocast_dtype,
                                       iters=5 if device.type == "cuda" else 2, warmup=2 if device.type == "cuda" else 1)
    achieved = per_image * images_per_s / 1e12
    unet_only = per_forward / seconds / 1e12
    label, peak = harness.bf16_peak(harness.device_name(device)) if device.type == "cuda" else (None, None)
    out = {"unet_batch": unet_batch, "unet_tflop_per_forward": per_forward / 1e12,
           "unet_tflop_per_image": per_image / 1e12, "achieved_tflops": achieved,
           "unet_forward_s": seconds, "unet_only_tflops": unet_only, "peak_label": label, "peak_tflops": peak}
    if peak:
        out.update(achieved_fraction=achieved / peak, unet_only_fraction=unet_only / peak)
    return out


# ---- the plain diffusers loop ---------------------------------------------------------------------

def plain_side(a) -> dict:
    import torch.nn.functional as F
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
    from diffusers.utils import logging as dlog
    from transformers import CLIPModel, CLIPProcessor

    dlog.disable_progress_bar()
    device = harness.pick_device(a.device)
    dtype = harness.TORCH_DTYPES[a.dtype]
    clip = CLIPModel.from_pretrained(a.scorer).to(device).eval()  # loaded once: not timed
    processor = CLIPProcessor.from_pretrained(a.scorer)
    pool = anchors(a.anchors)

    def load():
        pipe = StableDiffusionPipeline.from_pretrained(a.base, torch_dtype=dtype, safety_checker=None,
                                                       requires_safety_checker=False).to(device)
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        if a.lora:
            pipe.load_lora_weights(a.lora)
        return pipe

    resolution = a.resolution
    if a.warmup == "on":
        pipe = load()
        resolution = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
        image = pipe(pool[0].prompt, num_inference_steps=2, guidance_scale=GUIDANCE, height=resolution,
                     width=resolution).images[0]
        with torch.no_grad():
            clip(**processor(text=["warm-up"], images=image, return_tensors="pt", padding=True).to(device))
        del pipe
    scores = []
    with harness.Timer(device) as timer:
        for r in range(1, a.rounds + 1):
            pipe = load()  # the fine-tuned model of the round, rebuilt from disk
            resolution = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
            for anchor in pool:
                for j in range(a.m):
                    g = torch.Generator(device).manual_seed(a.seed * 1_000_003 + r * 10_007 + anchor.idx * 101 + j)
                    image = pipe(anchor.prompt, num_inference_steps=a.steps, guidance_scale=GUIDANCE,
                                 height=resolution, width=resolution, generator=g).images[0]
                    sims = []
                    for text in [anchor.text, *NON_SOI]:
                        inputs = processor(text=[text], images=image, return_tensors="pt", padding=True).to(device)
                        with torch.no_grad():
                            out = clip(**inputs)
                        sims.append(F.cosine_similarity(out.image_embeds, out.text_embeds).item())
                    scores.append((sims[0], max(sims[1:])))
            del pipe
    n = len(scores)
    return {"seconds": timer.seconds, "images": n, "images_per_s": n / timer.seconds, "batch_size": 1,
            "resolution": resolution, **harness.peak_memory(device)}


def make_lora(a, folder: Path) -> str:
    """A LoRA checkpoint as a GAL round leaves it (Personalizer.save), for the plain side to load."""
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
                        "miniature model, else gal.builders' tiny)")
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
    p.add_argument("--lora", nargs="?", const="build", default=None,
                   help="attach a LoRA adapter on both sides, as in a real run (optional: a LoRA folder)")
    p.add_argument("--flops", action="store_true", help="count UNet FLOPs and report TFLOP/s (and %% of peak on GPUs)")
    harness.add_shared_flags(p, "one short untimed batch per side first (auto: on a GPU only)")
    return p


def main(argv: list[str] | None = None) -> dict:
    a = parser().parse_args(argv)
    device = harness.resolve_args(a, steps_gpu=25, steps_cpu=10)
    if a.side:  # a child process: measure one side and write its figures
        out = project_side(a) if a.side == "project" else plain_side(a)
        Path(a.result).write_text(json.dumps(out))
        return out

    with tempfile.TemporaryDirectory(prefix="gal-bench-") as tmp:
        models = harness.resolve_models(a.base, a.scorer, a.arch, Path(a.workdir or tmp) / "models")
        a.base, a.scorer = models["base"], models["scorer"]
        if a.lora == "build":
            a.lora = make_lora(a, Path(tmp) / "lora")
        argv_child = harness.child_argv(a, skip=("json", "side", "result", "arch", "workdir", "only", "repeat", "label"))
        sides = [s for s in ("project", "plain") if a.only in (None, s)]
        results = harness.run_sides(__file__, argv_child, sides, a.repeat, "images_per_s")
    resolution = next(iter(results.values()))["resolution"]
    report = {"benchmark": "query_phase", "date": time.strftime("%Y-%m-%d"), "device": harness.device_name(device),
              "model": a.label or models["label"], "base": a.base, "scorer": a.scorer,
              "settings": {**settings(a, device, resolution), "warmup": a.warmup, "repeat": a.repeat}, **results}
    if len(results) == 2:
        report["ratio"] = results["project"]["images_per_s"] / results["plain"]["images_per_s"]
    if "project" in results and "flops" in results["project"]:
        report["flops"] = results["project"].pop("flops")
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        print(render(report))
    return report


def render(r: dict) -> str:
    s = r["settings"]
    lines = [f"query phase on {r['device']}", f"model: {r['model']}",
             f"{s['anchors']} anchors x {s['m']} samples x {s['rounds']} rounds = {s['images']} images, "
             f"{s['steps']} DPM-Solver steps, guidance {s['guidance']}, {s['resolution']} px, {s['dtype']}"
             + (", LoRA adapter attached" if s["lora"] else "")]
    for side in ("project", "plain"):
        if side in r:
            x = r[side]
            mem = f"peak RSS {x['peak_rss_mb']:.0f} MB" + (f", peak GPU {x['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in x else "")
            extra = f", batch {x['batch_size']}, one-time load {x['load_s']:.1f} s" if side == "project" else ", batch 1"
            runs = x.get("all_images_per_s", [])
            extra += f"; best of {len(runs)}: " + ", ".join(f"{v:.3f}" for v in runs) if len(runs) > 1 else ""
            lines.append(f"  {side:<8} {x['images_per_s']:8.3f} images/s  ({x['images']} images in {x['seconds']:.1f} s"
                         f"{extra}; {mem})")
    if "ratio" in r:
        lines.append(f"  ratio    {r['ratio']:8.2f}x")
    f = r.get("flops")
    if f:
        lines.append(f"  UNet {f['unet_tflop_per_image'] * 1e3:.2f} GFLOP per image -> {f['achieved_tflops']:.4f} TFLOP/s "
                     f"over the whole phase; UNet alone at batch {f['unet_batch']}: {f['unet_only_tflops']:.4f} TFLOP/s")
        if f.get("peak_tflops"):
            lines.append(f"  {100 * f['achieved_fraction']:.1f}% (phase) / {100 * f['unet_only_fraction']:.1f}% (UNet alone) "
                         f"of the {f['peak_label']} bf16 dense peak ({f['peak_tflops']:.0f} TFLOP/s)")
        else:
            lines.append("  unknown peak: no utilisation figure for this device")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
