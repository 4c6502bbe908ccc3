"""Stable Diffusion 1.x, 2.x and XL: UNet denoisers trained on noise (or velocity) prediction, as diffusers' DreamBooth
scripts train them. `SD` also defines what every family says (`gal.family`)."""

from __future__ import annotations

from typing import Sequence

import torch


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
    requires: tuple[str, str] | None = None  # (a module it needs, the line that says so when it is missing)
    quantizable = False  # --quantize: a LoRA on a quantized denoiser and text encoders (the flow-matching transformers)
    steps, guidance = 50, 7.5  # the sampler's usual setting (gal.resolve.settle)
    composites = True  # --added composite: diffusers' img2img twin of its pipeline (SDEdit; gal/composite.py)

    def pipeline_class(self):
        import diffusers

        return getattr(diffusers, self.pipeline)

    def sampling_defaults(self, name_or_path: str) -> tuple[int, float]:
        return self.steps, self.guidance

    def pipeline_kwargs(self, pipe) -> dict:
        """The pipeline call's arguments beyond gal.generate's."""
        return {}

    def guidance_kwargs(self, guidance: float, n: int) -> dict:
        """The pipeline call's guidance arguments for `n` prompts at gal's --guidance."""
        return {"guidance_scale": guidance}

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

    def latent_moments(self, vae, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and std of the VAE's latent distribution of `pixels` (B, 3, H, W), each (B, C, h, w)."""
        dist = vae.encode(pixels).latent_dist
        return dist.mean, dist.std

    def to_latents(self, sample: torch.Tensor, vae) -> torch.Tensor:
        """A sample of the VAE's latents as the denoiser sees them (B, C, h, w)."""
        return sample * vae.config.scaling_factor

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
