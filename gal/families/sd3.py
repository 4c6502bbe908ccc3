"""Stable Diffusion 3 and 3.5."""

from __future__ import annotations

import torch

from gal.families.flux import FlowMatching


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
