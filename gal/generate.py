"""The query phase: batched, seeded generation (Eq. 4).

Each sample has its own seed, derived from (run seed, round, anchor, j), and its initial noise is drawn
from that seed alone on the CPU: the images do not depend on the batch size, the device order or on
which samples a resumed run still has to make.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from typing import Iterator, Sequence

import torch
from PIL import Image

from gal.family import family_of


def sample_seed(run_seed: int, *key: int | str) -> int:
    """A 63-bit seed for one sample, e.g. sample_seed(seed, round, anchor_index, j)."""
    text = "/".join(str(part) for part in (run_seed, *key))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def auto_batch_size(device: torch.device, resolution: int) -> int:
    """How many images one pipeline call makes: about half the free GPU memory at ~0.6 GB per
    512 px image with classifier-free guidance; a fixed 16 on the CPU."""
    if device.type != "cuda":
        return 16
    free, _ = torch.cuda.mem_get_info(device)
    per_image = 0.6e9 * (resolution / 512) ** 2
    return max(1, min(64, int(0.5 * free / per_image)))


def generate(pipe, prompts: Sequence[str], seeds: Sequence[int], *, steps: int, guidance: float,
             resolution: int, batch_size: int, autocast_dtype: torch.dtype | None = None,
             negative: Sequence[str] | None = None) -> Iterator[tuple[int, list[Image.Image]]]:
    """Yield (start, images) per batch of `prompts`, each image made from its own seed (and, with `negative`, guided
    away from its own negative prompt instead of the empty one: the families with classifier-free guidance)."""
    family = family_of(pipe)
    denoiser = getattr(pipe, family.denoiser)
    autocast = torch.autocast(denoiser.device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    for start in range(0, len(prompts), batch_size):
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds[start:start + batch_size]]
        # The pipeline draws one tensor for the whole batch; per-sample noise keeps images batch-invariant.
        latents = family.initial_noise(pipe, generators, resolution).to(denoiser.device, denoiser.dtype)
        kwargs = {**family.guidance_kwargs(guidance, len(generators)), **family.pipeline_kwargs(pipe)}
        if negative is not None:
            kwargs["negative_prompt"] = list(negative[start:start + batch_size])
        with torch.no_grad(), autocast:
            images = pipe(prompt=list(prompts[start:start + batch_size]), latents=latents, generator=generators,
                          num_inference_steps=steps, height=resolution, width=resolution, output_type="pil",
                          **kwargs).images
        yield start, images
