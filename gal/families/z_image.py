"""Z-Image (Turbo and Base), as diffusers' `train_dreambooth_lora_z_image.py` trains it.

- Prompts: Qwen3 on its chat template (thinking on, as the pipeline), the second-to-last hidden states, padding
  dropped: one (length, width) tensor per prompt. gal caches them padded to 512 tokens with their lengths.
- Latents: FLUX.1's 16-channel VAE, shifted and scaled; the transformer patchifies them itself (2x2) and takes
  lists of (C, 1, h, w) latents and of caption features.
- Training: uniform timesteps, the transformer called at (1000 - t) / 1000 (1 - sigma: 1 is clean), its output
  negated (as the pipeline and the script), the target noise - x0.
- LoRA: the script's default, every attention's q, k, v and output projections (refiners and main layers).
"""

from __future__ import annotations

import torch

from gal.families.flux import FlowMatching


class ZImage(FlowMatching):
    name = "z-image"
    label = "Z-Image (Turbo, Base)"
    pipeline = "ZImagePipeline"
    composites = False  # diffusers 0.42: its img2img twin fails at a low strength (an index error, tiny family)
    text_encoders = ("text_encoder",)
    lora_targets = ("to_k", "to_q", "to_v", "to_out.0")
    bounded_by_tokenizer = True
    steps, guidance = 50, 5.0  # Z-Image (Base): the pipeline's and the script's README

    def sampling_defaults(self, name_or_path):
        """Turbo (a folder or hub id whose name says so) samples in 9 steps without guidance, as its model card;
        a Turbo folder named otherwise needs --steps 9 --guidance 0."""
        return (9, 0.0) if "turbo" in str(name_or_path).lower() else (self.steps, self.guidance)

    def native_resolution(self, pipe):
        return 1024  # the pipeline's default height and width

    def resolution_multiple(self, pipe):
        return pipe.vae_scale_factor * 2

    def initial_noise(self, pipe, generators, resolution):
        side = 2 * (resolution // (pipe.vae_scale_factor * 2))
        shape = (pipe.transformer.config.in_channels, side, side)
        return torch.stack([torch.randn(shape, generator=g) for g in generators])

    def condition(self, pipe, prompts, sizes, crops, resolution, device):
        embeds, _ = pipe.encode_prompt(list(prompts), device=device, do_classifier_free_guidance=False,
                                       max_sequence_length=self.text_tokens(pipe))
        padded = embeds[0].new_zeros(len(embeds), self.text_tokens(pipe), embeds[0].shape[-1])
        for row, e in zip(padded, embeds):
            row[:len(e)] = e
        return {"cap_feats": padded, "cap_lengths": torch.tensor([len(e) for e in embeds], device=device)}

    def predict(self, pipe, denoiser, schedule, noisy, t, cond):
        t_model = (1000 - schedule.timesteps[t.cpu()].to(noisy.device)) / 1000
        captions = [f[:n] for f, n in zip(cond["cap_feats"], cond["cap_lengths"].tolist())]
        out = denoiser(list(noisy.unsqueeze(2).unbind(0)), t_model, captions, return_dict=False)[0]
        return -torch.stack(out).squeeze(2)
