"""Chroma: FLUX.1's architecture without CLIP, its modulations from a small approximator network, T5 alone with
its attention mask kept (all padding masked but one token), classifier-free guidance without a guidance embedding.
diffusers ships no DreamBooth script for it; gal trains it as FLUX.1 (uniform timesteps, target noise - x0, packed
2x2 latents) with the mask the pipeline uses, as SimpleTuner and ai-toolkit do (SimpleTuner also remaps the sigmas;
gal does not)."""

from __future__ import annotations

import torch

from gal.families.flux import Flux


class Chroma(Flux):
    name = "chroma"
    label = "Chroma"
    pipeline = "ChromaPipeline"
    composites = False  # diffusers 0.42: no img2img twin AutoPipelineForImage2Image finds
    text_encoders = ("text_encoder",)
    # attention of both streams (FLUX.1's default without the feed-forwards, as SimpleTuner's Chroma default)
    lora_targets = ("attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.add_q_proj",
                    "attn.add_v_proj", "attn.to_add_out")
    steps, guidance = 35, 5.0  # the pipeline's defaults
    bounded_by_tokenizer = True

    def sampling_defaults(self, name_or_path):
        return self.steps, self.guidance

    def condition(self, pipe, prompts, sizes, crops, resolution, device):
        embeds, _, mask, *_ = pipe.encode_prompt(list(prompts), negative_prompt=None, device=device,
                                                 do_classifier_free_guidance=False,
                                                 max_sequence_length=self.text_tokens(pipe))
        return {"encoder_hidden_states": embeds, "text_mask": mask}

    def predict(self, pipe, denoiser, schedule, noisy, t, cond):
        b, c, h, w = noisy.shape
        device, embeds = noisy.device, cond["encoder_hidden_states"]
        mask = cond["text_mask"]
        mask = torch.cat([mask, torch.ones(b, (h // 2) * (w // 2), device=device, dtype=mask.dtype)], dim=1)
        pred = denoiser(
            hidden_states=pipe._pack_latents(noisy, b, c, h, w), timestep=schedule.timesteps[t.cpu()].to(device) / 1000,
            encoder_hidden_states=embeds, txt_ids=torch.zeros(embeds.shape[1], 3, device=device),
            img_ids=pipe._prepare_latent_image_ids(b, h // 2, w // 2, device, noisy.dtype), attention_mask=mask,
            return_dict=False)[0]
        s = pipe.vae_scale_factor
        return pipe._unpack_latents(pred, h * s, w * s, s)
