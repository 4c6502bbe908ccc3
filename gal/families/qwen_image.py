"""Qwen-Image, as diffusers' `train_dreambooth_lora_qwen_image.py` trains it.

- Prompts: Qwen2.5-VL's language model on its system prompt and chat template, the last hidden states without the
  template's first 34 tokens, with their mask. gal caches them padded to 512 tokens.
- Latents: a causal video VAE on one frame, normalized per channel by its `latents_mean` and `latents_std`; packed
  2x2 into a sequence, its shape given to the transformer as `img_shapes`.
- Training: uniform timesteps, the transformer called at t / 1000, the target noise - x0.
- Sampling: true classifier-free guidance (`true_cfg_scale`, gal's --guidance) against the negative prompt " ", as
  the model card; the transformer has no guidance embedding.
- LoRA: the script's default, the image stream's attention projections.
"""

from __future__ import annotations

import torch

from gal.families.flux import FlowMatching


class QwenImage(FlowMatching):
    name = "qwen-image"
    label = "Qwen-Image"
    pipeline = "QwenImagePipeline"
    text_encoders = ("text_encoder",)
    lora_targets = ("to_k", "to_q", "to_v", "to_out.0")
    bounded_by_tokenizer = True
    steps, guidance = 50, 4.0  # the model card's 50 steps at true_cfg_scale 4

    def guidance_kwargs(self, guidance, n):
        return {"true_cfg_scale": guidance, "negative_prompt": [" "] * n, "guidance_scale": None}

    def resolution_multiple(self, pipe):
        return pipe.vae_scale_factor * 2

    def initial_noise(self, pipe, generators, resolution):
        """The pipeline's `latents`, packed as its prepare_latents packs them (one frame)."""
        c, side = pipe.transformer.config.in_channels // 4, 2 * (resolution // (pipe.vae_scale_factor * 2))
        latents = torch.stack([torch.randn((1, c, side, side), generator=g) for g in generators])
        return self.pipeline_class()._pack_latents(latents, len(generators), c, side, side)

    def latent_moments(self, vae, pixels):
        dist = vae.encode(pixels.unsqueeze(2)).latent_dist  # one frame
        return dist.mean.squeeze(2), dist.std.squeeze(2)

    def to_latents(self, sample, vae):
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1).to(sample.device, sample.dtype)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1).to(sample.device, sample.dtype)
        return (sample - mean) / std

    def condition(self, pipe, prompts, sizes, crops, resolution, device):
        embeds, mask = pipe.encode_prompt(list(prompts), device=device, max_sequence_length=self.text_tokens(pipe))
        n, length, width = embeds.shape
        if mask is None:  # the pipeline drops an all-ones mask
            mask = torch.ones(n, length, dtype=torch.long, device=embeds.device)
        padded = embeds.new_zeros(n, self.text_tokens(pipe), width)
        padded[:, :length] = embeds
        full_mask = mask.new_zeros(n, self.text_tokens(pipe))
        full_mask[:, :length] = mask
        return {"encoder_hidden_states": padded, "encoder_hidden_states_mask": full_mask}

    def predict(self, pipe, denoiser, schedule, noisy, t, cond):
        b, c, h, w = noisy.shape
        cls, s = self.pipeline_class(), pipe.vae_scale_factor
        pred = denoiser(hidden_states=cls._pack_latents(noisy, b, c, h, w),
                        timestep=schedule.timesteps[t.cpu()].to(noisy.device) / 1000,
                        encoder_hidden_states=cond["encoder_hidden_states"],
                        encoder_hidden_states_mask=cond["encoder_hidden_states_mask"],
                        img_shapes=[[(1, h // 2, w // 2)]] * b, return_dict=False)[0]
        return cls._unpack_latents(pred, h * s, w * s, s).squeeze(2)
