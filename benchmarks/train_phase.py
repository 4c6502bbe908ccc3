"""Fine-tuning speed: gal.personalize.Personalizer.train against a DreamBooth-script style loop.

Both sides train the same UNet (LoRA rank 4 on the attention projections, or `--method full`) with the
same optimizer (AdamW), batch size, resolution, number of steps, gradient clipping and mixed precision:

- project: Personalizer.train, timed whole. It encodes each image through the VAE (latent mean and std)
  and each prompt through the text encoder once per call, then draws latents from the cached moments.
- plain: the loop of diffusers' train_dreambooth(_lora).py: every step the batch's images go through the
  dataset transform (resize, center crop, [-1, 1]), the VAE encoder (`latent_dist.sample()`) and the
  prompts through the tokenizer and text encoder; VAE and text encoder in the mixed-precision dtype as the
  script casts them. The images are kept in memory (the script reopens the files every step: not counted).

Each side runs in its own process (separate peak memory). Loading the models is not timed.

    python benchmarks/train_phase.py                       # LoRA, bundled miniature model or a tiny one
    python benchmarks/train_phase.py --method full --steps 20 --json
    python benchmarks/train_phase.py --base DIR --device cuda --resolution 512 --batch-size 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import torch  # noqa: E402

PROMPTS = ["a <sks> dog", "a <sks> dog in a museum", "a <sks> dog on a boat", "a <sks> dog in the snow"]
LR = {"lora": 1e-4, "full": 5e-6}  # the project's defaults


def examples(n: int, size: int):
    """`n` pictures (a disc on a two-tone background, as fixtures.models.write_references) at `size` px, with prompts."""
    from PIL import Image, ImageDraw

    from gal.personalize import Example

    out = []
    for i in range(n):
        image = Image.new("RGB", (size, size), (40 + 37 * i % 200, 160, 90))
        draw = ImageDraw.Draw(image)
        draw.rectangle([0, size // 2, size, size], fill=(200, 180, 60))
        draw.ellipse([size // 4 + i, size // 4, 3 * size // 4, 3 * size // 4], fill=(200, 30, 30))
        out.append(Example(image, PROMPTS[i % len(PROMPTS)], 1.0 if i < 3 else 0.8))
    return out


def project_side(a) -> dict:
    from accelerate import Accelerator

    from gal.models import load_pipeline, native_resolution
    from gal.personalize import Personalizer, Term

    device = harness.pick_device(a.device)
    precision = harness.MIXED_PRECISION[a.dtype]
    frozen = harness.TORCH_DTYPES[a.dtype]
    acc = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")  # as gal.components.Components
    pipe = load_pipeline(a.base, frozen, frozen if a.method == "lora" else torch.float32)
    resolution = a.resolution or native_resolution(pipe)
    pipe.to(acc.device)
    trainer = Personalizer(pipe, acc, method=a.method, lr=LR[a.method], rank=4, resolution=resolution)
    data = examples(a.examples, resolution)
    if a.warmup == "on":
        trainer.train([Term(data)], steps=3, batch_size=a.batch_size, seed=1, desc="warm-up")
        trainer.reset(seed=0)
    with harness.Timer(device) as timer:
        loss = trainer.train([Term(data)], steps=a.steps, batch_size=a.batch_size, seed=0, desc="project")
    return {"seconds": timer.seconds, "steps_per_s": a.steps / timer.seconds, "loss": loss, "resolution": resolution,
            "trainable_params": sum(p.numel() for p in trainer.params), **harness.peak_memory(device)}


def plain_side(a) -> dict:
    import torch.nn.functional as F
    from accelerate import Accelerator
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from gal.family import SD
    from gal.personalize import to_pixels

    device = harness.pick_device(a.device)
    acc = Accelerator(mixed_precision=harness.MIXED_PRECISION[a.dtype], cpu=device.type == "cpu")
    weight_dtype = harness.TORCH_DTYPES[a.dtype]
    tokenizer = CLIPTokenizer.from_pretrained(a.base, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(a.base, subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(a.base, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(a.base, subfolder="unet")
    noise_scheduler = DDPMScheduler.from_pretrained(a.base, subfolder="scheduler")
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    vae.to(acc.device, dtype=weight_dtype)
    text_encoder.to(acc.device, dtype=weight_dtype)
    if a.method == "lora":  # train_dreambooth_lora.py: frozen UNet in weight_dtype, LoRA weights in fp32
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.to(acc.device, dtype=weight_dtype)
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=list(SD.lora_targets)))
        for p in unet.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    else:  # train_dreambooth.py: the trained UNet stays fp32
        unet.to(acc.device)
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR[a.method])
    unet, optimizer = acc.prepare(unet, optimizer)
    resolution = a.resolution or unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    data = examples(a.examples, resolution)
    scale = vae.config.scaling_factor
    T = noise_scheduler.config.num_train_timesteps
    g = torch.Generator().manual_seed(0)
    order: list[int] = []

    def step() -> float:
        nonlocal order
        while len(order) < a.batch_size:
            order += torch.randperm(len(data), generator=g).tolist()
        idx, order = order[:a.batch_size], order[a.batch_size:]
        batch = [data[i] for i in idx]
        with acc.accumulate(unet):
            pixel_values = torch.stack([to_pixels(e.image, resolution) for e in batch])  # the dataset transform
            input_ids = tokenizer([e.prompt for e in batch], truncation=True, padding="max_length",
                                  max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
            latents = vae.encode(pixel_values.to(acc.device, dtype=weight_dtype)).latent_dist.sample() * scale
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, T, (latents.shape[0],), device=latents.device).long()
            noisy = noise_scheduler.add_noise(latents, noise, timesteps)
            encoder_hidden_states = text_encoder(input_ids.to(acc.device), return_dict=False)[0]
            pred = unet(noisy, timesteps, encoder_hidden_states, return_dict=False)[0]
            target = noise if noise_scheduler.config.prediction_type == "epsilon" else \
                noise_scheduler.get_velocity(latents, noise, timesteps)
            loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
            acc.backward(loss)
            if acc.sync_gradients:
                acc.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss.detach().item()  # the script logs the loss every step

    unet.train()
    if a.warmup == "on":
        for _ in range(3):
            step()
    with harness.Timer(device) as timer:
        losses = [step() for _ in range(a.steps)]
    return {"seconds": timer.seconds, "steps_per_s": a.steps / timer.seconds, "loss": sum(losses) / len(losses),
            "resolution": resolution, "trainable_params": sum(p.numel() for p in params), **harness.peak_memory(device)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", help="diffusers pipeline folder (default: the bundled miniature model, else a tiny one)")
    p.add_argument("--arch", default="auto", choices=harness.ARCHS,
                   help="random-weight model to build when --base is not given (default auto)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--method", default="lora", choices=["lora", "full"])
    p.add_argument("--steps", type=int, help="optimizer steps timed (default 100 on a GPU, 30 on the CPU)")
    p.add_argument("--batch-size", type=int, default=2, help="default 2 (the authors' style setting)")
    p.add_argument("--examples", type=int, default=6, help="training images (default 6: 3 references + 3 added)")
    p.add_argument("--resolution", type=int, help="default: the model's native size")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="mixed precision; auto: fp32 on the CPU, bf16 (fp16 without bf16) on a GPU")
    harness.add_shared_flags(p, "3 untimed steps per side first (auto: on a GPU only)")
    return p


def main(argv: list[str] | None = None) -> dict:
    a = parser().parse_args(argv)
    device = harness.resolve_args(a, steps_gpu=100, steps_cpu=30)
    if a.side:
        out = project_side(a) if a.side == "project" else plain_side(a)
        Path(a.result).write_text(json.dumps(out))
        return out
    with tempfile.TemporaryDirectory(prefix="gal-bench-") as tmp:
        models = harness.resolve_models(a.base, "unused" if a.base else None, a.arch, Path(a.workdir or tmp) / "models")
        a.base = models["base"]
        argv_child = harness.child_argv(a, skip=("json", "side", "result", "arch", "workdir", "only", "repeat", "label"))
        sides = [s for s in ("project", "plain") if a.only in (None, s)]
        results = harness.run_sides(__file__, argv_child, sides, a.repeat, "steps_per_s")
    resolution = next(iter(results.values()))["resolution"]
    label = a.label or (models["label"] if not models["label"].startswith("given") else f"given folder ({a.base})")
    report = {"benchmark": "train_phase", "date": time.strftime("%Y-%m-%d"), "device": harness.device_name(device),
              "model": label, "base": a.base,
              "settings": {"method": a.method, "steps": a.steps, "batch_size": a.batch_size, "examples": a.examples,
                           "resolution": resolution, "dtype": a.dtype, "warmup": a.warmup, "repeat": a.repeat,
                           "torch_threads": torch.get_num_threads()}, **results}
    if len(results) == 2:
        report["ratio"] = results["project"]["steps_per_s"] / results["plain"]["steps_per_s"]
    print(json.dumps(report, indent=1) if a.json else render(report))
    return report


def render(r: dict) -> str:
    s = r["settings"]
    lines = [f"fine-tuning on {r['device']}", f"model: {r['model']}",
             f"{s['method']}, batch {s['batch_size']}, {s['examples']} images, {s['resolution']} px, {s['steps']} steps, "
             f"{s['dtype']}"]
    for side in ("project", "plain"):
        if side in r:
            x = r[side]
            mem = f"peak RSS {x['peak_rss_mb']:.0f} MB" + (f", peak GPU {x['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in x else "")
            runs = x.get("all_steps_per_s", [])
            best = f"best of {len(runs)}: " + ", ".join(f"{v:.3f}" for v in runs) + "; " if len(runs) > 1 else ""
            lines.append(f"  {side:<8} {x['steps_per_s']:8.3f} steps/s  ({s['steps']} steps in {x['seconds']:.1f} s; "
                         f"{best}{x['trainable_params']:,} trainable; {mem})")
    if "ratio" in r:
        lines.append(f"  ratio    {r['ratio']:8.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
