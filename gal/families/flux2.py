"""FLUX.2: klein (4B, 9B; distilled or base) and dev, as diffusers' `train_dreambooth_lora_flux2_klein.py` and
`train_dreambooth_lora_flux2.py` train them.

- Prompts: the text encoder's hidden states at three layers, stacked along the channels (klein: Qwen3 with its chat
  template, thinking off; dev: Mistral 3 with its system message). gal encodes at the pipeline's default layers (klein
  9, 18, 27) so that its images are the plain pipeline's; the klein script's own default is 10, 20, 30.
- Latents: the VAE's latents patchified 2x2 into channels, then normalized by the VAE's batch-norm statistics (no
  scaling or shift factor); the transformer sees them packed into a sequence with 4-axis (t, h, w, l) position ids.
- Training: uniform timesteps (the scripts' weighting "none"), the target noise - x0, the transformer called at
  t / 1000; dev embeds the guidance scale (the script's 3.5), klein has no guidance embedding.
- LoRA: the scripts' default, attention of both streams' projections and the single blocks' fused qkv-mlp and output
  projections.
"""

from __future__ import annotations

import torch

from gal.families.flux import FlowMatching


class Flux2Klein(FlowMatching):
    name = "flux2-klein"
    label = "FLUX.2 klein (4B, 9B)"
    pipeline = "Flux2KleinPipeline"
    composites = False  # diffusers 0.42: its img2img twin takes reference images, not a strength to start from
    text_encoders = ("text_encoder",)
    lora_targets = r".*(attn\.(to_k|to_q|to_v|to_out\.0|to_qkv_mlp_proj)|single_transformer_blocks\.\d+\.attn\.to_out)$"
    text_layers = (9, 18, 27)  # the pipeline's text_encoder_out_layers
    bounded_by_tokenizer = True
    train_guidance = None  # no guidance embedding
    steps, guidance = 50, 4.0  # the base (undistilled) models: the pipeline's defaults

    def sampling_defaults(self, name_or_path):
        """The distilled klein 4B and 9B (their model_index.json says `is_distilled`) sample in 4 steps without
        guidance (their model cards); the base models at the pipeline's 50 steps and guidance 4."""
        from diffusers import DiffusionPipeline

        distilled = DiffusionPipeline.load_config(name_or_path).get("is_distilled")
        return (4, 1.0) if distilled else (self.steps, self.guidance)

    def resolution_multiple(self, pipe):
        return pipe.vae_scale_factor * 2

    def initial_noise(self, pipe, generators, resolution):
        """The pipeline's `latents`: patchified, unpacked (C x 4, h / 2, w / 2)."""
        side = resolution // (pipe.vae_scale_factor * 2)
        shape = (pipe.transformer.config.in_channels, side, side)
        return torch.stack([torch.randn(shape, generator=g) for g in generators])

    def to_latents(self, sample, vae):
        x = self.pipeline_class()._patchify_latents(sample)
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(x.device, x.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(x.device, x.dtype)
        return (x - mean) / std

    def condition(self, pipe, prompts, sizes, crops, resolution, device):
        embeds, text_ids = pipe.encode_prompt(prompt=list(prompts), device=device,
                                              max_sequence_length=self.text_tokens(pipe),
                                              text_encoder_out_layers=self.text_layers)
        return {"encoder_hidden_states": embeds, "txt_ids": text_ids}

    def predict(self, pipe, denoiser, schedule, noisy, t, cond):
        b, c, h, w = noisy.shape
        cls, device = self.pipeline_class(), noisy.device
        guidance = None if self.train_guidance is None else torch.full((b,), self.train_guidance, device=device)
        pred = denoiser(hidden_states=cls._pack_latents(noisy), timestep=schedule.timesteps[t.cpu()].to(device) / 1000,
                        guidance=guidance, encoder_hidden_states=cond["encoder_hidden_states"], txt_ids=cond["txt_ids"],
                        img_ids=cls._prepare_latent_ids(noisy).to(device), return_dict=False)[0]
        return pred[:, :h * w].permute(0, 2, 1).reshape(b, c, h, w)  # the packing undone (a regular grid of ids)


class Flux2Dev(Flux2Klein):
    """FLUX.2 dev (32B): Mistral Small 3.1 as its text encoder, layers 10, 20 and 30, and a guidance embedding. Its
    tokenizer is a `PixtralProcessor`, which transformers loads only with torchvision installed."""
    name = "flux2-dev"
    label = "FLUX.2 dev"
    pipeline = "Flux2Pipeline"
    text_layers = (10, 20, 30)
    train_guidance = 3.5  # the script's --guidance_scale
    requires = ("torchvision", "FLUX.2 dev's tokenizer is a PixtralProcessor, which transformers loads only with "
                "torchvision; expected `pip install torchvision` (the build that matches your torch)")

    def sampling_defaults(self, name_or_path):
        return self.steps, self.guidance  # the pipeline's: 50 steps, guidance 4 (embedded)
