"""Model families: what differs between the bases gal personalizes, and nothing else.

A family names its diffusers pipeline class (which also saves and reads its LoRA files), its denoiser (the
module fine-tuned), the text encoders to freeze, its sampler and defaults, whether training recomputes
activations (gradient checkpointing), and its training step's parts: how prompts condition the denoiser, the
timesteps, the noised input and the target (the query and the evaluation call the pipeline itself). The loop,
the strategies, the ledger, the report and the review do not know which family they run. The family is read
from the base's `model_index.json` (a folder or a hub id).

- `sd`: Stable Diffusion 1.x and 2.x (`StableDiffusionPipeline`; 2.x's v-prediction is read from the scheduler
  config by the trainer): the text encoder's last hidden states.
- `sdxl`: Stable Diffusion XL (`StableDiffusionXLPipeline`): both text encoders' penultimate hidden states,
  the second's pooled projection, and the micro-conditioning time ids (original size, crop corner, target
  size), as diffusers' `train_dreambooth_lora_sdxl.py` computes them; its VAE stays fp32 (fp16 NaNs).
- `flux`: FLUX.1 dev and schnell (`FluxPipeline`): T5's sequence, CLIP's pooled output, packed latents and
  their position ids, the guidance embedding, flow matching (as `train_dreambooth_lora_flux.py`); LoRA only.
- `sd3`: Stable Diffusion 3 and 3.5 (`StableDiffusion3Pipeline`): two CLIPs and T5, flow matching with
  logit-normal timesteps and x0-preconditioned outputs (as `train_dreambooth_lora_sd3.py`); LoRA only.
- `flux2-klein`: FLUX.2 klein 4B and 9B (`Flux2KleinPipeline`): Qwen3's stacked hidden layers, patchified and
  batch-normalized latents with 4-axis position ids (as `train_dreambooth_lora_flux2_klein.py`); LoRA only.
  `flux2-dev` (`Flux2Pipeline`): the same with Mistral's layers and a guidance embedding; needs torchvision.
- `z-image`: Z-Image Turbo and Base (`ZImagePipeline`): Qwen3's second-to-last states without padding, a
  single-stream DiT fed lists of latents, timesteps as 1 - sigma and a negated output (as
  `train_dreambooth_lora_z_image.py`); LoRA only.
- `qwen-image`: Qwen-Image (`QwenImagePipeline`): Qwen2.5-VL's states after its system prompt, a one-frame video VAE
  normalized per channel, true classifier-free guidance (as `train_dreambooth_lora_qwen_image.py`); LoRA only.
- `chroma`: Chroma (`ChromaPipeline`): FLUX.1's architecture on T5 alone, its attention mask kept; LoRA only.

Each family is one module of `gal.families`; this module only names them and tells which one a base is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gal.errors import GalError
from gal.families.chroma import Chroma
from gal.families.flux import Flux
from gal.families.flux2 import Flux2Dev, Flux2Klein
from gal.families.qwen_image import QwenImage
from gal.families.sd import SD, SDXL
from gal.families.sd3 import SD3
from gal.families.z_image import ZImage

FAMILIES = {f.pipeline: f for f in (SD(), SDXL(), Flux(), SD3(), Flux2Klein(), Flux2Dev(), ZImage(), QwenImage(), Chroma())}


def family_of(base, flag: str = "--base") -> SD:
    """The family of a loaded pipeline, or of a pipeline folder or hub id (or `miniature`) from its
    `model_index.json`, without loading its weights."""
    if not isinstance(base, (str, Path)):
        return FAMILIES[type(base).__name__]
    from diffusers import DiffusionPipeline

    from gal.locations import check_model_folder, locate

    name_or_path = locate(str(base), flag)
    check_model_folder(name_or_path, flag, allow_pickle=True)  # its weights are checked when they load
    try:
        config = DiffusionPipeline.load_config(name_or_path)
    except (OSError, ValueError, TypeError, AttributeError) as e:  # a model_index.json that is not a JSON mapping too
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise GalError(f"{flag} {name_or_path}: no diffusers pipeline here ({first[:160]}); expected a folder or hub id "
                       "with a model_index.json") from None
    if not isinstance(config, dict):
        raise GalError(f"{flag} {name_or_path}: its model_index.json holds a {type(config).__name__}; expected a JSON "
                       "mapping with a _class_name (a diffusers pipeline folder)")
    name = config.get("_class_name", "?")
    name = name if isinstance(name, str) else repr(name)
    if name not in FAMILIES:
        supported = ", ".join(f"{f.pipeline} ({f.label})" for f in FAMILIES.values())
        raise GalError(f"{flag} {name_or_path}: a {name}, which gal does not personalize yet; expected one of: {supported}")
    family = FAMILIES[name]
    if family.requires and importlib.util.find_spec(family.requires[0]) is None:
        raise GalError(f"{flag} {name_or_path}: {family.requires[1]}")
    return family
