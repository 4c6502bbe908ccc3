"""Model families: what differs between the bases gal personalizes, and nothing else.

A family names its diffusers pipeline class (which also saves and reads its LoRA files), the text encoders to
freeze, whether training recomputes activations (gradient checkpointing), and how a batch of prompts conditions
its denoiser in training (the query and the evaluation call the
pipeline itself). The loop, the strategies, the ledger, the report and the review do not know which family
they run. The family is read from the base's `model_index.json` (a folder or a hub id).

- `sd`: Stable Diffusion 1.x and 2.x (`StableDiffusionPipeline`; 2.x's v-prediction is read from the scheduler
  config by the trainer): the text encoder's last hidden states.
- `sdxl`: Stable Diffusion XL (`StableDiffusionXLPipeline`): both text encoders' penultimate hidden states,
  the second's pooled projection, and the micro-conditioning time ids (original size, crop corner, target
  size), as diffusers' `train_dreambooth_lora_sdxl.py` computes them; its VAE stays fp32 (fp16 NaNs).
"""

from __future__ import annotations

from typing import Sequence

import torch

from gal.errors import GalError


class SD:
    name = "sd"
    label = "Stable Diffusion 1.x / 2.x"
    pipeline = "StableDiffusionPipeline"
    text_encoders = ("text_encoder",)
    load_kwargs = {"safety_checker": None, "requires_safety_checker": False}  # SD 1.x folders name a safety checker
    vae_fp32 = False
    gradient_checkpointing = False  # SD 1.x trains in a few GB without it

    def pipeline_class(self):
        import diffusers

        return getattr(diffusers, self.pipeline)

    def condition(self, pipe, prompts: Sequence[str], sizes: Sequence[tuple[int, int]],
                  crops: Sequence[tuple[int, int]], resolution: int, device) -> dict[str, torch.Tensor]:
        """Each prompt's conditioning, one row per prompt (`sizes`: each image's (height, width) before resizing,
        `crops`: the (top, left) corner of its center crop after resizing)."""
        embeds, _ = pipe.encode_prompt(list(prompts), device, 1, False)
        return {"encoder_hidden_states": embeds}

    def denoiser_inputs(self, cond: dict[str, torch.Tensor]) -> dict:
        return cond


class SDXL(SD):
    name = "sdxl"
    label = "Stable Diffusion XL"
    pipeline = "StableDiffusionXLPipeline"
    text_encoders = ("text_encoder", "text_encoder_2")
    load_kwargs: dict = {}
    vae_fp32 = True  # diffusers' SDXL VAE config asks for it (force_upcast): it overflows in fp16
    gradient_checkpointing = True  # a 1024 px LoRA step then fits a 24 GB GPU

    def condition(self, pipe, prompts, sizes, crops, resolution, device):
        embeds, _, pooled, _ = pipe.encode_prompt(list(prompts), device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        time_ids = torch.tensor([[*size, *crop, resolution, resolution] for size, crop in zip(sizes, crops)],
                                dtype=embeds.dtype, device=device)
        return {"encoder_hidden_states": embeds, "text_embeds": pooled, "time_ids": time_ids}

    def denoiser_inputs(self, cond):
        return {"encoder_hidden_states": cond["encoder_hidden_states"],
                "added_cond_kwargs": {"text_embeds": cond["text_embeds"], "time_ids": cond["time_ids"]}}


FAMILIES = {f.pipeline: f for f in (SD(), SDXL())}


def family_of(name_or_path: str, flag: str = "--base") -> SD:
    """The family of a pipeline folder or hub id, from its `model_index.json`."""
    from diffusers import DiffusionPipeline

    try:
        config = DiffusionPipeline.load_config(name_or_path)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise GalError(f"{flag} {name_or_path}: no diffusers pipeline here ({first[:160]}); expected a folder or hub id "
                       "with a model_index.json") from None
    name = config.get("_class_name", "?")
    if name not in FAMILIES:
        supported = ", ".join(f"{f.pipeline} ({f.label})" for f in FAMILIES.values())
        raise GalError(f"{flag} {name_or_path}: a {name}, which gal does not personalize yet; expected one of: {supported}")
    return FAMILIES[name]


def family_for(pipe) -> SD:
    """The family of a loaded pipeline."""
    return FAMILIES[type(pipe).__name__]
