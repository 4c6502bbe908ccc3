"""Speed and memory of a model family (gal.family) on a GPU, on random weights in its real architecture built on
the device (fixtures.families; nothing is downloaded: speed depends on the architecture, not on the weights).

- query: gal's query generation (gal.generate.generate: per-sample seeds, the auto batch size, autocast as
  `gal run`) against the loop a user writes with plain diffusers: one pipeline call per anchor with
  `num_images_per_prompt=m`. Both make the same images' worth of work (anchors x m, the family's sampler and
  steps, its guidance); images/s each and their ratio, and the peak GPU memory of each.
- LoRA fine-tuning: gal.personalize.Personalizer.train (rank 4 on the family's targets, batch 1, gradient
  checkpointing and the text encoders moved to the CPU as in `gal run`): steps/s and peak GPU memory.

Not counted: building the weights, the warm-up call of each side. One process measures one family:

    python benchmarks/families.py --family sdxl                   # CUDA, 1024 px, bf16
    python benchmarks/families.py --family flux --resolution 512
    python benchmarks/families.py --family qwen-image --quantize int8 --resolution 512   # the 2026 bases, quantized
    python benchmarks/families.py --family flux --dry-run         # the tiny architecture on the CPU: code path only

`--quantize int8|fp8` quantizes the transformer and the text encoders in place with torchao's weight-only configs
(as `gal run --quantize` does when they load); NF4 needs bitsandbytes' loading path (`gal run --quantize nf4`), which
random weights built in memory do not take: it is not measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import torch  # noqa: E402

PROMPTS = ["a <sks> dog in a museum", "a <sks> dog on a boat", "a <sks> dog in the snow"]


NEW = {"flux2-klein-4b": lambda work, full: layouts().flux2_klein_pipeline(work, "4b" if full else None),
       "flux2-klein-9b": lambda work, full: layouts().flux2_klein_pipeline(work, "9b" if full else None),
       "z-image": lambda work, full: layouts().z_image_pipeline(work, full),
       "qwen-image": lambda work, full: layouts().qwen_image_pipeline(work, full),
       "chroma": lambda work, full: layouts().chroma_pipeline(work, full)}


def layouts():
    from fixtures import families

    return families


def build(family: str, full: bool, device: torch.device, dtype: torch.dtype, quantize: str = "none"):
    """The family's pipeline with random weights, initialised on `device` in `dtype` (an SDXL VAE stays fp32, as
    gal.models.load_pipeline keeps it), its transformer and text encoders quantized in place (`quantize`)."""
    from gal.family import family_of
    from gal.miniature.layout import write_clip_tokenizer

    work = Path(tempfile.mkdtemp(prefix="gal-bench-tokenizers-"))
    tokenizer = write_clip_tokenizer(work / "clip")
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # a 20B transformer is built in bf16, not in fp32 first
    try:
        with torch.device(device):
            if family == "sdxl":
                pipe = layouts().sdxl_pipeline(tokenizer, full=full)
            elif family == "flux":
                pipe = layouts().flux_pipeline(tokenizer, layouts().write_t5_tokenizer(work / "t5"), dev=True, full=full)
            else:
                pipe = NEW[family](work, full)
    finally:
        torch.set_default_dtype(default)
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)  # its tensors back on the CPU
    pipe.to(dtype)
    if quantize != "none":
        from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

        kind = family_of(pipe)
        for name in (kind.denoiser, *kind.text_encoders):
            quantize_(getattr(pipe, name), Int8WeightOnlyConfig() if quantize == "int8" else Float8WeightOnlyConfig())
    if family_of(pipe).vae_fp32:
        pipe.vae.to(torch.float32)
    pipe.vae.enable_slicing()
    pipe.set_progress_bar_config(disable=True)
    family_of(pipe).use_query_sampler(pipe)  # gal's sampler for the family, on both sides
    return pipe


def measure_query(pipe, a, device, dtype) -> dict:
    from gal.family import family_of
    from gal.generate import auto_batch_size, generate, sample_seed

    anchors = PROMPTS[:a.anchors]
    batch = a.batch_size or auto_batch_size(device, a.resolution)

    def ours(anchors, m):
        prompts = [p for p in anchors for _ in range(m)]
        seeds = [sample_seed(0, 1, i) for i in range(len(prompts))]
        for _ in generate(pipe, prompts, seeds, steps=a.steps, guidance=a.guidance, resolution=a.resolution,
                          batch_size=batch, autocast_dtype=dtype if dtype != torch.float32 else None):
            pass

    def plain(anchors, m):
        for i, prompt in enumerate(anchors):
            pipe(prompt=prompt, num_images_per_prompt=m, num_inference_steps=a.steps, height=a.resolution,
                 width=a.resolution, generator=torch.Generator(device).manual_seed(i),
                 **family_of(pipe).guidance_kwargs(a.guidance, 1), **family_of(pipe).pipeline_kwargs(pipe))

    out = {"images": len(anchors) * a.m, "batch_size": batch}
    for name, side in (("project", ours), ("plain", plain)):
        with torch.no_grad():
            side(anchors[:1], 1)  # warm-up: kernels, allocator
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with harness.Timer(device) as t:
                side(anchors, a.m)
        out[f"{name}_images_per_s"] = round(out["images"] / t.seconds, 4)
        if device.type == "cuda":
            out[f"{name}_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    out["ratio"] = round(out["project_images_per_s"] / out["plain_images_per_s"], 3)
    return out


def measure_lora(pipe, a, device, dtype) -> dict:
    from accelerate import Accelerator
    from train_phase import examples

    from gal.personalize import Personalizer, Term

    accelerator = Accelerator(mixed_precision=harness.MIXED_PRECISION[a.dtype], cpu=device.type == "cpu")
    trainer = Personalizer(pipe, accelerator, method="lora", lr=1e-4, rank=4, resolution=a.resolution)
    trainer.quantized = a.quantize != "none"  # quantized in place (not by from_pretrained): the LoRA stays unmerged
    term = [Term(examples(4, a.resolution))]
    trainer.train(term, steps=2, batch_size=1, seed=0, desc="warm-up")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with harness.Timer(device) as t:
        trainer.train(term, steps=a.train_steps, batch_size=1, seed=1, desc="LoRA")
    out = {"steps": a.train_steps, "steps_per_s": round(a.train_steps / t.seconds, 4)}
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", required=True, choices=["sdxl", "flux", *NEW])
    p.add_argument("--quantize", default="none", choices=["none", "int8", "fp8"],
                   help="the transformer and text encoders (torchao weight-only, in place)")
    p.add_argument("--dry-run", action="store_true", help="the tiny architecture on the CPU, toy sizes")
    p.add_argument("--resolution", type=int, help="default: 1024 (32 in a dry run)")
    p.add_argument("--steps", type=int, help="sampling steps (default: gal's for the family, SDXL 50, Flux dev 28; "
                   "2 in a dry run)")
    p.add_argument("--guidance", type=float, help="default: gal's for the family (SDXL 7.5, Flux dev 3.5)")
    p.add_argument("--anchors", type=int, default=3, help="anchors of the query (default 3)")
    p.add_argument("--m", type=int, default=4, help="samples per anchor (default 4)")
    p.add_argument("--batch-size", type=int, help="gal's images per pipeline call (default: gal's auto)")
    p.add_argument("--train-steps", type=int, help="timed LoRA steps (default 20; 3 in a dry run)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    a = p.parse_args(argv)
    device = torch.device("cpu" if a.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("families.py: no CUDA device (use --dry-run on a CPU)")
    a.dtype = harness.resolve_dtype(a.dtype, device)
    dtype = harness.TORCH_DTYPES[a.dtype]
    a.resolution = a.resolution or (32 if a.dry_run else 1024)
    a.train_steps = a.train_steps or (3 if a.dry_run else 20)
    started = time.perf_counter()
    pipe = build(a.family, full=not a.dry_run, device=device, dtype=dtype, quantize=a.quantize)
    built_s = time.perf_counter() - started
    from gal.family import family_of

    family = family_of(pipe)  # gal's sampler defaults for it (Flux: dev's, the layout built here)
    a.steps = a.steps or (2 if a.dry_run else family.steps)
    a.guidance = family.guidance if a.guidance is None else a.guidance
    result = {
        "family": a.family, "architecture": "tiny (dry run)" if a.dry_run else f"{a.family} full size, random weights",
        "quantize": a.quantize,
        "device": harness.device_name(device), "dtype": a.dtype, "resolution": a.resolution, "steps": a.steps,
        "guidance": a.guidance, "date": date.today().isoformat(),
        "command": "python benchmarks/families.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "build_s": round(built_s, 1), "query": measure_query(pipe, a, device, dtype),
        "lora": measure_lora(pipe, a, device, dtype),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
