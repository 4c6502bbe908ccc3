"""Model families: what differs between the bases gal personalizes, and nothing else.

A family names its diffusers pipeline class (which also saves and reads its LoRA files), its denoiser (the
module fine-tuned), the text encoders to freeze, its sampler and defaults, whether training recomputes
activations (gradient checkpointing), and its training step's parts: how prompts condition the denoiser, the
timesteps, the noised input and the target (the query and the evaluation call the pipeline itself). The loop,
the strategies, the ledger, the report and the review do not know which family they run. The family is read from the base's `model_index.json` (a folder or a hub id).

- `sd`: Stable Diffusion 1.x and 2.x (`StableDiffusionPipeline`; 2.x's v-prediction is read from the scheduler
  config by the trainer): the text encoder's last hidden states.
- `sdxl`: Stable Diffusion XL (`StableDiffusionXLPipeline`): both text encoders' penultimate hidden states,
  the second's pooled projection, and the micro-conditioning time ids (original size, crop corner, target
  size), as diffusers' `train_dreambooth_lora_sdxl.py` computes them; its VAE stays fp32 (fp16 NaNs).
- `flux`: FLUX.1 dev and schnell (`FluxPipeline`): T5's sequence, CLIP's pooled output, packed latents and
  their position ids, the guidance embedding, flow matching (as `train_dreambooth_lora_flux.py`); LoRA only.
- `sd3`: Stable Diffusion 3 and 3.5 (`StableDiffusion3Pipeline`): two CLIPs and T5, flow matching with
  logit-normal timesteps and x0-preconditioned outputs (as `train_dreambooth_lora_sd3.py`); LoRA only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from gal.errors import GalError


class SD:
    name = "sd"
    label = "Stable Diffusion 1.x / 2.x"
    pipeline = "StableDiffusionPipeline"
    denoiser = "unet"  # the pipeline's attribute that is fine-tuned
    text_encoders = ("text_encoder",)
    lora_targets = ("to_k", "to_q", "to_v", "to_out.0")  # attention projections, as diffusers' DreamBooth-LoRA scripts
    load_kwargs = {"safety_checker": None, "requires_safety_checker": False}  # SD 1.x folders name a safety checker
    vae_fp32 = False
    gradient_checkpointing = False  # SD 1.x trains in a few GB without it
    full_fine_tune = True
    kohya_copy = True  # also write the LoRA in kohya's layout (AUTOMATIC1111, ComfyUI, sd-scripts)
    call_kwargs: dict = {}  # the pipeline call's arguments beyond gal.generate's
    steps, guidance = 50, 7.5  # the sampler's usual setting (gal.config.resolved)

    def pipeline_class(self):
        import diffusers

        return getattr(diffusers, self.pipeline)

    def sampling_defaults(self, name_or_path: str) -> tuple[int, float]:
        return self.steps, self.guidance

    def native_resolution(self, pipe) -> int:
        return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)

    def resolution_multiple(self, pipe) -> int:
        """What an image side must be a multiple of: one latent pixel (Flux: a packed 2x2 patch; SD3: a patch)."""
        return pipe.vae_scale_factor

    def use_query_sampler(self, pipe) -> None:
        """The query and evaluation sampler: DPM-Solver multistep, as the authors' code (training keeps the base
        model's DDPM schedule, read from the config before this switch)."""
        from diffusers import DPMSolverMultistepScheduler

        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)

    def initial_noise(self, pipe, generators: Sequence[torch.Generator], resolution: int) -> torch.Tensor:
        """Each sample's initial latents, drawn from its own generator on the CPU (as the pipeline's `latents`)."""
        side = resolution // pipe.vae_scale_factor
        shape = (pipe.unet.config.in_channels, side, side)
        return torch.stack([torch.randn(shape, generator=g) for g in generators])

    # ---- training ----
    def training_schedule(self, pipe):
        """The base model's training noise schedule (read before the query sampler replaces the pipeline's)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(pipe.scheduler.config)

    def to_latents(self, sample: torch.Tensor, vae_config) -> torch.Tensor:
        return sample * vae_config.scaling_factor

    def condition(self, pipe, prompts: Sequence[str], sizes: Sequence[tuple[int, int]],
                  crops: Sequence[tuple[int, int]], resolution: int, device) -> dict[str, torch.Tensor]:
        """Each prompt's conditioning, one row per prompt (`sizes`: each image's (height, width) before resizing,
        `crops`: the (top, left) corner of its center crop after resizing)."""
        embeds, _ = pipe.encode_prompt(list(prompts), device, 1, False)
        return {"encoder_hidden_states": embeds}

    def timesteps(self, schedule, n: int, g: torch.Generator) -> torch.Tensor:
        """`n` training timesteps (their indices in `schedule`): uniform, as DreamBooth."""
        return torch.randint(0, schedule.config.num_train_timesteps, (n,), generator=g)

    def noised(self, schedule, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
        """The noisy latents at `t` and the denoiser's target: the noise, or the velocity for v-prediction (SD 2.x)."""
        noisy = schedule.add_noise(x0, noise, t)
        target = noise if schedule.config.prediction_type == "epsilon" else schedule.get_velocity(x0, noise, t)
        return noisy, target

    def predict(self, pipe, denoiser, schedule, noisy: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        return denoiser(noisy, t, encoder_hidden_states=cond["encoder_hidden_states"]).sample

    # ---- weights on disk ----
    def save_lora(self, folder, peft_state: dict) -> None:
        from diffusers.utils import convert_state_dict_to_diffusers

        self.pipeline_class().save_lora_weights(folder, unet_lora_layers=convert_state_dict_to_diffusers(peft_state),
                                                safe_serialization=True)

    def kohya_state(self, peft_state: dict) -> dict:
        """The same LoRA in kohya's layout (AUTOMATIC1111, ComfyUI, sd-scripts), by diffusers' conversion (the SDXL
        script's --output_kohya_format); None for a family with no such copy."""
        from diffusers.utils import convert_state_dict_to_kohya

        return convert_state_dict_to_kohya({f"unet.{k}": v for k, v in peft_state.items()}) if self.kohya_copy else None

    def load_denoiser(self, pipe, folder):
        """A full fine-tune's saved denoiser (a pipeline folder the family's pipeline class wrote)."""
        cls = type(getattr(pipe, self.denoiser))
        return cls.from_pretrained(folder, subfolder=self.denoiser, use_safetensors=True)


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

    def predict(self, pipe, denoiser, schedule, noisy, t, cond):
        return denoiser(noisy, t, encoder_hidden_states=cond["encoder_hidden_states"],
                        added_cond_kwargs={"text_embeds": cond["text_embeds"], "time_ids": cond["time_ids"]}).sample


class FlowMatching(SD):
    """What FLUX.1 and SD 3 share: a transformer denoiser trained by flow matching (timesteps drawn by diffusers'
    `compute_density_for_timestep_sampling`), the pipeline's own flow-matching Euler sampler, shifted latents,
    LoRA only, its files in diffusers' `transformer.*` layout (no kohya copy: ComfyUI and Forge read this layout as
    it is, their comfy/lora.py maps `transformer.*` keys)."""
    denoiser = "transformer"
    load_kwargs: dict = {}
    gradient_checkpointing = True
    full_fine_tune = False
    kohya_copy = False
    weighting = "none"  # the scripts' --weighting_scheme

    def native_resolution(self, pipe):
        return int(pipe.default_sample_size * pipe.vae_scale_factor)

    def use_query_sampler(self, pipe):
        """The pipeline's own flow-matching Euler sampler."""

    def training_schedule(self, pipe):
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)

    def to_latents(self, sample, vae_config):
        return (sample - (vae_config.shift_factor or 0.0)) * vae_config.scaling_factor

    def timesteps(self, schedule, n, g):
        from diffusers.training_utils import compute_density_for_timestep_sampling

        u = compute_density_for_timestep_sampling(self.weighting, n, logit_mean=0.0, logit_std=1.0, generator=g)
        return (u * schedule.config.num_train_timesteps).long()  # as the scripts index the schedule

    def save_lora(self, folder, peft_state):
        self.pipeline_class().save_lora_weights(folder, transformer_lora_layers=peft_state, safe_serialization=True)


class Flux(FlowMatching):
    """FLUX.1 (dev and schnell): a flow-matching transformer on packed 2x2 latent patches, conditioned on T5's
    sequence and CLIP's pooled output, and (dev) on the guidance scale it was distilled from. Trained as
    diffusers' `train_dreambooth_lora_flux.py` trains it: uniform timesteps and unweighted loss (its default
    weighting scheme "none"), the target noise - x0, the guidance embedding at 3.5; LoRA only (12B parameters and
    their AdamW state do not fit an 80 GB GPU)."""
    name = "flux"
    label = "FLUX.1 (dev, schnell)"
    pipeline = "FluxPipeline"
    text_encoders = ("text_encoder", "text_encoder_2")
    # the script's default: attention of both streams and the double blocks' feed-forwards
    lora_targets = ("attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.add_q_proj",
                    "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
                    "ff_context.net.2")
    # (kohya's own Flux layout fuses q, k and v, and OneTrainer's does not load back into diffusers: its feed-forwards)
    max_sequence_length = 512  # T5's tokens, as the pipeline's and the script's default
    call_kwargs = {"max_sequence_length": max_sequence_length}
    train_guidance = 3.5  # the script's --guidance_scale, for the layouts that embed it (dev)
    steps, guidance = 28, 3.5  # dev: the pipeline's

    def sampling_defaults(self, name_or_path):
        """dev's; schnell (no guidance embedding) samples in its 4 steps without guidance."""
        from diffusers import FluxTransformer2DModel

        config = FluxTransformer2DModel.load_config(name_or_path, subfolder="transformer")
        return (self.steps, self.guidance) if config.get("guidance_embeds") else (4, 0.0)

    def resolution_multiple(self, pipe):
        return pipe.vae_scale_factor * 2

    def initial_noise(self, pipe, generators, resolution):
        """Each sample's latents drawn as the pipeline draws them for a list of generators, then packed."""
        channels = pipe.transformer.config.in_channels // 4
        side = 2 * (resolution // (pipe.vae_scale_factor * 2))
        latents = torch.stack([torch.randn((channels, side, side), generator=g) for g in generators])
        return pipe._pack_latents(latents, len(generators), channels, side, side)

    def condition(self, pipe, prompts, sizes, crops, resolution, device):
        embeds, pooled, _ = pipe.encode_prompt(list(prompts), device=device, num_images_per_prompt=1,
                                               max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled}

    def noised(self, schedule, x0, noise, t):
        sigma = schedule.sigmas[t.cpu()].to(x0.device, x0.dtype)[:, None, None, None]
        return (1.0 - sigma) * x0 + sigma * noise, noise - x0  # the flow-matching path and its velocity

    def predict(self, pipe, denoiser, schedule, noisy, t, cond):
        b, c, h, w = noisy.shape
        device, config = noisy.device, pipe.transformer.config
        guidance = torch.full((b,), self.train_guidance, device=device) if config.guidance_embeds else None
        pred = denoiser(
            hidden_states=pipe._pack_latents(noisy, b, c, h, w),
            timestep=schedule.timesteps[t.cpu()].to(device) / 1000, guidance=guidance,
            pooled_projections=cond["pooled_projections"], encoder_hidden_states=cond["encoder_hidden_states"],
            txt_ids=torch.zeros(cond["encoder_hidden_states"].shape[1], 3, device=device),
            img_ids=pipe._prepare_latent_image_ids(b, h // 2, w // 2, device, noisy.dtype), return_dict=False)[0]
        s = pipe.vae_scale_factor
        return pipe._unpack_latents(pred, h * s, w * s, s)


class SD3(FlowMatching):
    """Stable Diffusion 3 and 3.5: a flow-matching MMDiT on unpacked latents, conditioned on CLIP-L's and
    CLIP-G's penultimate states beside T5's and on their pooled projections, sampled with classifier-free
    guidance. Trained as diffusers' `train_dreambooth_lora_sd3.py` trains it: logit-normal timesteps, unweighted
    loss, outputs preconditioned to predict x0 (its defaults); T5 at the pipeline's 256 tokens in training as in
    the query (the script trains at 77)."""
    name = "sd3"
    label = "Stable Diffusion 3 / 3.5"
    pipeline = "StableDiffusion3Pipeline"
    text_encoders = ("text_encoder", "text_encoder_2", "text_encoder_3")
    lora_targets = ("attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out", "attn.to_k",
                    "attn.to_out.0", "attn.to_q", "attn.to_v")  # the script's default
    weighting = "logit_normal"  # the script's default
    max_sequence_length = 256
    call_kwargs = {"max_sequence_length": max_sequence_length}
    vae_fp32 = True  # as the script keeps it (its config asks for it: force_upcast)
    steps, guidance = 28, 7.0  # SD3 Medium's, the pipeline's defaults

    def sampling_defaults(self, name_or_path):
        """Each release's model card: SD 3.5 Large 28 steps at guidance 3.5, 3.5 Medium 40 at 4.5 (told apart by
        their transformer configs: 3.5 normalizes q and k, Medium adds self-attention to its first layers). Large
        Turbo has Large's architecture: it needs --steps 4 --guidance 0."""
        from diffusers import SD3Transformer2DModel

        config = SD3Transformer2DModel.load_config(name_or_path, subfolder="transformer")
        if not config.get("qk_norm"):
            return self.steps, self.guidance
        return (40, 4.5) if config.get("dual_attention_layers") else (28, 3.5)

    def resolution_multiple(self, pipe):
        return pipe.vae_scale_factor * pipe.transformer.config.patch_size

    def initial_noise(self, pipe, generators, resolution):
        side = resolution // pipe.vae_scale_factor
        shape = (pipe.transformer.config.in_channels, side, side)
        return torch.stack([torch.randn(shape, generator=g) for g in generators])

    def condition(self, pipe, prompts, sizes, crops, resolution, device):
        embeds, _, pooled, _ = pipe.encode_prompt(list(prompts), None, None, device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False,
                                                  max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled}

    def noised(self, schedule, x0, noise, t):
        sigma = schedule.sigmas[t.cpu()].to(x0.device, x0.dtype)[:, None, None, None]
        return (1.0 - sigma) * x0 + sigma * noise, x0  # preconditioned: the target is x0

    def predict(self, pipe, denoiser, schedule, noisy, t, cond):
        sigma = schedule.sigmas[t.cpu()].to(noisy.device, noisy.dtype)[:, None, None, None]
        velocity = denoiser(hidden_states=noisy, timestep=schedule.timesteps[t.cpu()].to(noisy.device),
                            encoder_hidden_states=cond["encoder_hidden_states"],
                            pooled_projections=cond["pooled_projections"], return_dict=False)[0]
        return noisy - sigma * velocity  # x0 = x_t - σ v


FAMILIES = {f.pipeline: f for f in (SD(), SDXL(), Flux(), SD3())}


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
    return FAMILIES[name]
