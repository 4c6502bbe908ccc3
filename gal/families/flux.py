"""What the flow-matching transformers share (`FlowMatching`), and FLUX.1."""

from __future__ import annotations

import torch

from gal.families.sd import SD


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
    max_sequence_length = 512  # the text encoder's tokens (T5's, Qwen's): the pipelines' and the scripts' default

    bounded_by_tokenizer = False  # the 2026 families: at most their tokenizer's model_max_length

    def text_tokens(self, pipe) -> int:
        """How many tokens of the prompt the text encoder sees, in training as in the pipeline call (the released
        Qwen and T5 tokenizers allow 512 or more; a small test model's tokenizer may allow fewer)."""
        if self.bounded_by_tokenizer:
            return min(self.max_sequence_length, pipe.tokenizer.model_max_length)
        return self.max_sequence_length

    def pipeline_kwargs(self, pipe):
        return {"max_sequence_length": self.text_tokens(pipe)}

    def native_resolution(self, pipe):
        return int(pipe.default_sample_size * pipe.vae_scale_factor)

    def use_query_sampler(self, pipe):
        """The pipeline's own flow-matching Euler sampler."""

    def training_schedule(self, pipe):
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)

    quantizable = True

    def to_latents(self, sample, vae):
        return (sample - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor

    def timesteps(self, schedule, n, g):
        from diffusers.training_utils import compute_density_for_timestep_sampling

        u = compute_density_for_timestep_sampling(self.weighting, n, logit_mean=0.0, logit_std=1.0, generator=g)
        return (u * schedule.config.num_train_timesteps).long()  # as the scripts index the schedule

    def noised(self, schedule, x0, noise, t):
        sigma = schedule.sigmas[t.cpu()].to(x0.device, x0.dtype)[:, None, None, None]
        return (1.0 - sigma) * x0 + sigma * noise, noise - x0  # the flow-matching path and its velocity

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
