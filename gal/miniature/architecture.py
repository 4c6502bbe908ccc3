"""The miniature world's architectures, at the sizes of `Sizes`: a diffusers `AutoencoderKL` (32x32x3 -> 8x8x4), a
`UNet2DConditionModel` and its `CLIPTextModel`, a transformers `CLIPModel` scorer; the world's tokenizer (every word of
the world one token), the scorer's processor, and the noise schedules (SD's betas, v-prediction).

`gal.miniature.train` trains them; the repository's `fixtures` builds them with random weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gal.miniature.layout import clip_processor, sd_pipeline, text_config, write_clip_tokenizer
from gal.miniature.world import SIZE, world_words

MAX_LENGTH = 32  # tokens; the longest world prompt, placeholder included, is ~16
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIPImageProcessor defaults, used at training time too
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Sizes:
    """Widths and depths of the models (<= 40 MB of fp32 safetensors in all)."""

    vae_channels: tuple = (32, 64, 64)
    vae_groups: int = 16
    unet_channels: tuple = (64, 96, 128)
    unet_head_dim: int = 32
    unet_groups: int = 32
    text_width: int = 128
    text_layers: int = 2
    scorer_patch: int = 8  # 4x4 patches of 8x8 px: 3x faster than 4-px patches on CPU
    scorer_width: int = 128
    scorer_layers: int = 4

    @property
    def vae_factor(self) -> int:
        """Pixels per latent, along each side."""
        return 2 ** (len(self.vae_channels) - 1)


def build_vae(sizes: Sizes):
    from diffusers import AutoencoderKL

    n = len(sizes.vae_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=sizes.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        layers_per_block=1, norm_num_groups=sizes.vae_groups, sample_size=SIZE,
    )


def write_tokenizer(folder: str | Path, extra_words: tuple[str, ...] = ()):
    """The world's tokenizer: every word of the world is one token, anything else still tokenizes."""
    words = [w for w in world_words() + list(extra_words) if w.isalpha() and len(w) > 1]
    return write_clip_tokenizer(folder, words, max_length=MAX_LENGTH)


def _text_config(sizes: Sizes, tokenizer, width: int) -> dict:
    return text_config(tokenizer, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=sizes.text_layers,
                       num_attention_heads=4)


def build_text_encoder(sizes: Sizes, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**_text_config(sizes, tokenizer, sizes.text_width)))


def build_unet(sizes: Sizes):
    from diffusers import UNet2DConditionModel

    n = len(sizes.unet_channels)
    return UNet2DConditionModel(
        sample_size=SIZE // sizes.vae_factor, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=sizes.unet_channels, norm_num_groups=sizes.unet_groups,
        cross_attention_dim=sizes.text_width,
        attention_head_dim=tuple(max(1, c // sizes.unet_head_dim) for c in sizes.unet_channels),  # = number of heads
        down_block_types=("CrossAttnDownBlock2D",) * n, up_block_types=("CrossAttnUpBlock2D",) * n,
    )


def build_scorer(sizes: Sizes, tokenizer):
    from transformers import CLIPConfig, CLIPModel

    w = sizes.scorer_width
    return CLIPModel(CLIPConfig(
        text_config=_text_config(sizes, tokenizer, sizes.text_width),
        vision_config=dict(image_size=SIZE, patch_size=sizes.scorer_patch, hidden_size=w, intermediate_size=4 * w,
                           num_hidden_layers=sizes.scorer_layers, num_attention_heads=4),
        projection_dim=sizes.text_width,
    ))


def scorer_processor(tokenizer):
    return clip_processor(tokenizer, SIZE, image_mean=CLIP_MEAN, image_std=CLIP_STD)


def scorer_pixels(x: torch.Tensor) -> torch.Tensor:
    """What the saved processor (`scorer_processor`) makes of 32x32 images, on a [0, 1] batch (b, 3, H, W)."""
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


def noise_schedulers():
    """(training scheduler, sampling scheduler): SD's beta schedule, v-prediction."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    betas = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 prediction_type="v_prediction")
    return DDPMScheduler(**betas, clip_sample=False), DPMSolverMultistepScheduler(**betas)


def build_pipeline(vae, text_encoder, tokenizer, unet):
    """The modules as the `StableDiffusionPipeline` that `gal run` loads, with the sampling scheduler."""
    return sd_pipeline(vae, text_encoder, tokenizer, unet, noise_schedulers()[1])
