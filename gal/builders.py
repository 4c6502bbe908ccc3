"""Models with random weights in the real on-disk layouts: the one place that writes an architecture.

- `write_clip_tokenizer(dir, words)` a CLIP byte-level BPE tokenizer: every character is a token, `words`
  become whole tokens (learned merges), so any text and any placeholder such as `<sks>` tokenizes;
- `build_pipeline(dir, arch)` a diffusers `StableDiffusionPipeline` folder, `build_clip(dir, arch)` a
  transformers `CLIPModel` folder (tokenizer and image processor included), for an architecture of `ARCHS`:
  `tiny` (tests: its images are noise), `sd15` / `sd15-small` (SD 1.5 and CLIP ViT-B/32,
  full size or at toy widths with the same block structure, for speed benchmarks: speed depends on the
  architecture, not on the weights); `build_pipeline(dir, "tiny-sdxl")` a tiny `StableDiffusionXLPipeline`
  (two text encoders), `tiny-flux` / `tiny-flux-schnell` a tiny `FluxPipeline` in FLUX.1-dev's layout (guidance
  embedding) or schnell's (none), `tiny-sd3` a tiny `StableDiffusion3Pipeline`, `tiny-flux2-klein`, `tiny-z-image`,
  `tiny-qwen-image` and `tiny-chroma` the 2026 bases (their Qwen and T5 tokenizers built locally; `full=` gives the
  released architectures for GPU benchmarks and parameter counts); `build_miniature(dir, dir)` both of the miniature
  world's architecture;
- `write_references(dir)` simple pictures standing in for a user's photos.

Everything is then loaded through the same `from_pretrained` path a user's checkpoint takes. Tests and benchmarks
use this module; nothing that `gal run` or any other command runs imports it.

    python -m gal.builders OUT_DIR [ARCH]   # ARCH: tiny (default), sd15, sd15-small, tiny-sdxl, tiny-flux,
                                            # tiny-flux-schnell, tiny-sd3, tiny-flux2-klein, tiny-z-image,
                                            # tiny-qwen-image, tiny-chroma; writes OUT_DIR/pipeline, OUT_DIR/clip
                                            # and OUT_DIR/references
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from gal.miniature.layout import (  # noqa: F401  (the layouts' helpers, named here for tests and benchmarks)
    _bytes_to_unicode,
    clip_processor,
    learn_merges,
    save_quietly,
    sd_pipeline,
    text_config,
    write_clip_tokenizer,
)

ARCHS = ("tiny", "sd15", "sd15-small")
PIPELINE_ARCHS = ARCHS + ("tiny-sdxl", "tiny-flux", "tiny-flux-schnell", "tiny-sd3", "tiny-flux2-klein", "tiny-z-image",
                          "tiny-qwen-image", "tiny-chroma")


# ---- the architectures ----------------------------------------------------------------------------

def sd15_configs(small: bool = False) -> dict:
    """The SD 1.5 component configs, written out (no download). `small` keeps the block structure
    (4 levels, 2 layers per block, the same block types) at toy widths, for a CPU dry run."""
    if not small:
        unet = dict(sample_size=64, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
                    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
        vae = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=512, norm_num_groups=32)
        text = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    projection_dim=768)
    else:
        unet = dict(sample_size=8, layers_per_block=2, block_out_channels=(32, 64, 64, 64), cross_attention_dim=32,
                    attention_head_dim=8, norm_num_groups=32)
        vae = dict(block_out_channels=(32, 32, 32, 32), layers_per_block=2, sample_size=64, norm_num_groups=32)
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=32)
    unet.update(in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                act_fn="silu", center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
                downsample_padding=1, mid_block_scale_factor=1, norm_eps=1e-5)
    vae.update(in_channels=3, out_channels=3, latent_channels=4, act_fn="silu",
               down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    text.update(vocab_size=49408, hidden_act="quick_gelu")  # SD's embedding table, whatever the tokenizer
    scheduler = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                     skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return {"unet": unet, "vae": vae, "text_encoder": text, "scheduler": scheduler}


def clip_b32_config(small: bool = False) -> dict:
    """openai/clip-vit-base-patch32's architecture (vision ViT-B/32 at 224 px, 512-wide text tower,
    projection 512); `small` keeps the 224 px / 32 px patches at toy widths."""
    if small:
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
        proj = 32
    else:
        text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        proj = 512
    text.update(vocab_size=49408, hidden_act="quick_gelu")
    vision.update(image_size=224, patch_size=32, hidden_act="quick_gelu")
    return {"text_config": text, "vision_config": vision, "projection_dim": proj}


TINY_TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)


def build_pipeline(folder: str | Path, arch: str = "tiny", seed: int = 0) -> Path:
    """A `StableDiffusionPipeline` folder of `arch` with random weights (fp32 safetensors)."""
    from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tokenizer = write_clip_tokenizer(folder / "_tokenizer")
    torch.manual_seed(seed)
    if arch == "tiny":
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_config(tokenizer, **TINY_TEXT)))
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1, norm_num_groups=8, sample_size=32)
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            norm_num_groups=8, cross_attention_dim=32, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
        scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                  set_alpha_to_one=False, steps_offset=1)
    elif arch in ("sd15", "sd15-small"):
        cfg = sd15_configs(small=arch == "sd15-small")
        # random init is much faster on a GPU; the weights go back to the CPU to be saved
        with torch.device("cuda" if torch.cuda.is_available() and arch == "sd15" else "cpu"):
            unet = UNet2DConditionModel(**cfg["unet"]).cpu()
            vae = AutoencoderKL(**cfg["vae"]).cpu()
            text_encoder = CLIPTextModel(CLIPTextConfig(**(text_config(tokenizer) | cfg["text_encoder"]))).cpu()
        scheduler = PNDMScheduler(**cfg["scheduler"])
    elif arch in NEW_LAYOUTS:
        save_quietly(NEW_LAYOUTS[arch](folder), folder)
        for scratch in folder.glob("_*"):
            shutil.rmtree(scratch, ignore_errors=True)
        return folder
    elif arch in ("tiny-sdxl", "tiny-flux", "tiny-flux-schnell", "tiny-sd3"):
        if arch == "tiny-sdxl":
            save_quietly(sdxl_pipeline(tokenizer), folder)
        elif arch == "tiny-sd3":
            _save_sd3(folder, tokenizer)
        else:
            _save_flux(folder, tokenizer, dev=arch == "tiny-flux")
        shutil.rmtree(folder / "_tokenizer", ignore_errors=True)
        return folder
    else:
        raise ValueError(f"build_pipeline: unknown architecture {arch!r}; expected one of {', '.join(PIPELINE_ARCHS)}")
    save_pipeline(folder, vae, text_encoder, tokenizer, unet, scheduler)
    shutil.rmtree(folder / "_tokenizer", ignore_errors=True)
    return folder


def sdxl_pipeline(tokenizer, full: bool = False):
    """A `StableDiffusionXLPipeline` with random weights: two CLIP text encoders (the second with its projection,
    whose pooled output and the six time ids make the UNet's added conditioning), tiny as diffusers' own SDXL
    tests build it, or (`full`) SDXL 1.0's architecture (UNet 2.6B, CLIP-L and OpenCLIP bigG) for GPU benchmarks."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if full:
        text = text_config(tokenizer, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                           num_attention_heads=12, hidden_act="quick_gelu")
        text_2 = text_config(tokenizer, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                             num_attention_heads=20, projection_dim=1280, hidden_act="gelu")
        unet = UNet2DConditionModel(
            sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            transformer_layers_per_block=(1, 2, 10), projection_class_embeddings_input_dim=2816,
            cross_attention_dim=2048)
        vae = AutoencoderKL(**{**sd15_configs()["vae"], "sample_size": 1024}, scaling_factor=0.13025, force_upcast=True)
    else:
        text = text_2 = text_config(tokenizer, **TINY_TEXT, projection_dim=32)
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            norm_num_groups=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=2 * TINY_TEXT["hidden_size"])
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1, norm_num_groups=8, sample_size=32, scaling_factor=0.13025, force_upcast=True)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**text)), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text_2)), tokenizer_2=tokenizer, unet=unet,
        scheduler=scheduler)


def write_t5_tokenizer(folder: str | Path, max_length: int = 512):
    """A `T5TokenizerFast` (a sentencepiece Unigram model, built with `tokenizers`): every character is a piece,
    "</s>" ends each text, "<pad>" is id 0 as in T5. Returns it loaded; `folder` holds its tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -5.0) for c in dict.fromkeys(_bytes_to_unicode()) if c != "\u2581"]
    model = Tokenizer(models.Unigram(pieces, unk_id=2))
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    model.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    model.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                         special_tokens=[("</s>", 1)])
    tokenizer = T5TokenizerFast(tokenizer_object=model, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                extra_ids=0, model_max_length=max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _save_flux(folder: Path, tokenizer, dev: bool) -> None:
    save_quietly(flux_pipeline(tokenizer, write_t5_tokenizer(folder / "_t5"), dev), folder)
    shutil.rmtree(folder / "_t5", ignore_errors=True)


def flux_pipeline(tokenizer, t5_tokenizer, dev: bool = True, full: bool = False):
    """A `FluxPipeline` with random weights: a CLIP text encoder (its pooled output) and a T5 encoder (its
    sequence), a 16-channel VAE with a shift factor, and the MMDiT transformer, tiny as diffusers' own Flux
    tests build it or (`full`) FLUX.1's architecture (transformer 11.9B, T5-XXL) for GPU benchmarks. FLUX.1-dev's
    layout embeds the guidance scale and shifts its sampler's schedule with the image size; schnell's does neither."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    if full:
        t5 = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, relative_attention_num_buckets=32)
        text = text_config(tokenizer, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                           num_attention_heads=12, hidden_act="quick_gelu")
        transformer = dict(in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                           num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                           axes_dims_rope=(16, 56, 56))
        vae = dict(latent_channels=16, block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
                   sample_size=1024)
    else:
        t5 = dict(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8)
        text = text_config(tokenizer, **TINY_TEXT)
        transformer = dict(in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                           num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=TINY_TEXT["hidden_size"],
                           axes_dims_rope=(4, 4, 8))
        vae = dict(latent_channels=4, block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8,
                   sample_size=32)  # 8x down, as FLUX.1: sides are multiples of 16
    levels = len(vae["block_out_channels"])
    scheduler = (FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                 base_image_seq_len=256, max_image_seq_len=4096) if dev else
                 FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False))
    return FluxPipeline(
        scheduler=scheduler, tokenizer=tokenizer, text_encoder=CLIPTextModel(CLIPTextConfig(**text)),
        tokenizer_2=t5_tokenizer, text_encoder_2=T5EncoderModel(T5Config(
            vocab_size=len(t5_tokenizer), feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
            decoder_start_token_id=0, **t5)),
        transformer=FluxTransformer2DModel(patch_size=1, guidance_embeds=dev, **transformer),
        vae=AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                          up_block_types=("UpDecoderBlock2D",) * levels, scaling_factor=0.3611, shift_factor=0.1159,
                          use_quant_conv=False, use_post_quant_conv=False, **vae))


def _save_sd3(folder: Path, tokenizer) -> None:
    """A tiny `StableDiffusion3Pipeline`, as diffusers' own SD3 tests build it: two CLIP text encoders with
    projections (their pooled projections concatenated), a T5 encoder as wide as both CLIPs' states side by side,
    and the MMDiT transformer on unpacked latents."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel


    t5_tokenizer = write_t5_tokenizer(folder / "_t5", max_length=256)
    width = 2 * TINY_TEXT["hidden_size"]  # T5's width: the CLIP states (concatenated) are padded to it
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tokenizer), d_model=width, d_kv=8, d_ff=37, num_layers=2,
                                 num_heads=4, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                                 pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    text = text_config(tokenizer, **TINY_TEXT, projection_dim=TINY_TEXT["hidden_size"])
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=1, in_channels=4, out_channels=4, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=width, pooled_projection_dim=width)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=8, sample_size=32, scaling_factor=1.5305, shift_factor=0.0609,
        use_quant_conv=False, use_post_quant_conv=False)
    save_quietly(StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae, transformer=transformer,
        text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**text)), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text)), tokenizer_2=tokenizer,
        text_encoder_3=t5, tokenizer_3=t5_tokenizer), folder)
    shutil.rmtree(folder / "_t5", ignore_errors=True)


# ---- the 2026 bases: FLUX.2 klein, Z-Image, Qwen-Image, Chroma ------------------------------------------------

QWEN_CHAT_TEMPLATE = (  # Qwen3's template, as far as the pipelines use it (one user message, thinking on or off)
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}")
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|vision_start|>",
                "<|vision_end|>", "<|image_pad|>")


def write_qwen_tokenizer(folder: str | Path, max_length: int = 512):
    """A `Qwen2TokenizerFast` (byte-level BPE, as Qwen2.5 and Qwen3 tokenize), its special tokens and Qwen3's chat
    template. Its merges are learned from the pipelines' own templates, so that Qwen-Image's system prompt is the 34
    tokens its pipeline drops (`prompt_template_encode_start_idx`), as with the released tokenizer; any other text
    tokenizes byte by byte. Returns it loaded; `folder` holds its files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=5000, min_frequency=1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=list(QWEN_SPECIAL), show_progress=False)
    model.train_from_iterator([QWEN_IMAGE_TEMPLATE + "<|im_end|>\n<|im_start|>assistant\n"], trainer=trainer)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=model, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, bos_token=None, model_max_length=max_length,
                                   chat_template=QWEN_CHAT_TEMPLATE)
    tokenizer.save_pretrained(folder)
    return tokenizer


# QwenImagePipeline.prompt_template_encode up to its prompt (diffusers 0.42)
QWEN_IMAGE_TEMPLATE = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, "
                       "text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n")


def qwen3_config(tokenizer, full: dict | None = None):
    """A `Qwen3Config`: tiny (28 layers at width 16, so that FLUX.2 klein's default layers 9, 18 and 27 exist), or
    `full`'s widths."""
    from transformers import Qwen3Config

    widths = full or dict(hidden_size=16, intermediate_size=16, num_hidden_layers=28, num_attention_heads=2,
                          num_key_value_heads=2, head_dim=8)
    return Qwen3Config(vocab_size=151936 if full else len(tokenizer), max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                       eos_token_id=tokenizer.eos_token_id, **widths)


def flux_vae(cls=None, **changes):
    """FLUX.1's 8x VAE layout at toy widths (sides are multiples of 16 once latents are packed 2x2)."""
    from diffusers import AutoencoderKL

    cls = cls or AutoencoderKL
    return cls(**{**dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(16, 32, 32, 32),
                         layers_per_block=1, norm_num_groups=8, sample_size=32, use_quant_conv=False,
                         use_post_quant_conv=False), **changes})


def flux2_klein_pipeline(folder: Path, full: str | None = None):
    """A `Flux2KleinPipeline`: Qwen3 (its layers 9, 18 and 27 stacked as the prompt's states), FLUX.2's VAE (latents
    patchified 2x2 and batch-normalized) and the FLUX.2 transformer without a guidance embedding, distilled (4 steps,
    no guidance) as the released klein 4B and 9B. Tiny, or (`full`: "4b", "9b") the released architectures."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3ForCausalLM

    tokenizer = write_qwen_tokenizer(folder / "_tokenizer", max_length=512 if full else 64)
    if full:
        text, transformer = KLEIN[full]
        vae = AutoencoderKLFlux2()
    else:
        text = None
        transformer = dict(in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                           joint_attention_dim=3 * 16, timestep_guidance_channels=32, axes_dims_rope=(4, 4, 4, 4))
        vae = flux_vae(AutoencoderKLFlux2, latent_channels=4)
    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        vae=vae, text_encoder=Qwen3ForCausalLM(qwen3_config(tokenizer, text)), tokenizer=tokenizer,
        transformer=Flux2Transformer2DModel(patch_size=1, guidance_embeds=False, **transformer), is_distilled=True)


# the released klein architectures (their Qwen3 text encoder, their transformer); see tests/test_families.py
KLEIN = {
    "4b": (dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
           dict(in_channels=128, num_layers=5, num_single_layers=20, attention_head_dim=128, num_attention_heads=24,
                joint_attention_dim=7680, axes_dims_rope=(32, 32, 32, 32))),
    "9b": (dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128),
           dict(in_channels=128, num_layers=8, num_single_layers=24, attention_head_dim=128, num_attention_heads=32,
                joint_attention_dim=12288, axes_dims_rope=(32, 32, 32, 32))),
}


def z_image_pipeline(folder: Path, full: bool = False):
    """A `ZImagePipeline`: Qwen3 (its second-to-last states, padding dropped), FLUX.1's VAE, and the single-stream
    S3-DiT on 2x2 patches. Tiny, or (`full`) Z-Image's released architecture (6B)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Model

    tokenizer = write_qwen_tokenizer(folder / "_tokenizer", max_length=512 if full else 64)
    if full:
        text = dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                    num_key_value_heads=8, head_dim=128)
        transformer = ZImageTransformer2DModel(axes_lens=[1536, 512, 512])  # Z-Image-Turbo's config
        from diffusers import AutoencoderKL

        vae = AutoencoderKL(latent_channels=16, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
    else:
        text = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=2, head_dim=8)
        torch.manual_seed(0)
        transformer = ZImageTransformer2DModel(in_channels=4, dim=32, n_layers=1, n_refiner_layers=1, n_heads=2,
                                               n_kv_heads=2, cap_feat_dim=16, axes_dims=[8, 4, 4], axes_lens=[512, 32, 32])
        with torch.no_grad():  # created with torch.empty: a tiny random model fixes them
            transformer.x_pad_token.normal_()
            transformer.cap_pad_token.normal_()
        vae = flux_vae(latent_channels=4, scaling_factor=0.3611, shift_factor=0.1159)
    return ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
                          text_encoder=Qwen3Model(qwen3_config(tokenizer, text)), tokenizer=tokenizer,
                          transformer=transformer)


def qwen_image_pipeline(folder: Path, full: bool = False):
    """A `QwenImagePipeline`: Qwen2.5-VL's language model (its last states after the system prompt), Qwen-Image's
    causal video VAE (one frame; latents normalized per channel) and the MMDiT on 2x2 patches, sampled with true
    classifier-free guidance. Tiny, or (`full`) the released architecture (20B)."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = write_qwen_tokenizer(folder / "_tokenizer", max_length=512 if full else 64)
    ids = {f"{name}_token_id": tokenizer.convert_tokens_to_ids(token) for name, token in
           (("vision_start", "<|vision_start|>"), ("vision_end", "<|vision_end|>"), ("image", "<|image_pad|>"))}
    if full:
        text = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                    num_key_value_heads=4)
        vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584)
        transformer, vae = QwenImageTransformer2DModel(), AutoencoderKLQwenImage()
    else:
        text = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=2)
        vision = dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16)
        transformer = QwenImageTransformer2DModel(in_channels=16, out_channels=4, num_layers=1, attention_head_dim=16,
                                                  num_attention_heads=2, joint_attention_dim=16, axes_dims_rope=(8, 4, 4))
        vae = AutoencoderKLQwenImage(base_dim=16, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                                     temperal_downsample=[False, True, True], latents_mean=[0.1, -0.2, 0.0, 0.3],
                                     latents_std=[1.5, 2.0, 1.0, 2.5])  # 8x, as the released one
    config = Qwen2_5_VLConfig(text_config={**text, "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default",
                                                                   "type": "default"}, "rope_theta": 1000000.0,
                                           "vocab_size": 152064 if full else len(tokenizer)},
                              vision_config=vision, vocab_size=152064 if full else len(tokenizer), **ids)
    return QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                                                  base_image_seq_len=256, max_image_seq_len=8192, time_shift_type="exponential"),
        vae=vae, text_encoder=Qwen2_5_VLForConditionalGeneration(config), tokenizer=tokenizer, transformer=transformer)


def chroma_pipeline(folder: Path, full: bool = False):
    """A `ChromaPipeline`: FLUX.1's architecture without CLIP, its modulation from a small approximator network, T5
    with its attention mask kept, sampled with classifier-free guidance. Tiny, or (`full`) Chroma1-HD's (8.9B)."""
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import T5Config, T5EncoderModel

    t5_tokenizer = write_t5_tokenizer(folder / "_t5", max_length=512 if full else 64)
    if full:
        t5 = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, relative_attention_num_buckets=32)
        transformer = ChromaTransformer2DModel()
        from diffusers import AutoencoderKL

        vae = AutoencoderKL(latent_channels=16, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
    else:
        t5 = dict(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8)
        transformer = ChromaTransformer2DModel(in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                               num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 4, 8),
                                               approximator_hidden_dim=32, approximator_layers=1,
                                               approximator_num_channels=16)
        vae = flux_vae(latent_channels=4, scaling_factor=0.3611, shift_factor=0.1159)
    return ChromaPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15),
        vae=vae, text_encoder=T5EncoderModel(T5Config(vocab_size=32128 if full else len(t5_tokenizer), feed_forward_proj="gated-gelu",
                                                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **t5)),
        tokenizer=t5_tokenizer, transformer=transformer, image_encoder=None, feature_extractor=None)


NEW_LAYOUTS = {"tiny-flux2-klein": flux2_klein_pipeline, "tiny-z-image": z_image_pipeline,
               "tiny-qwen-image": qwen_image_pipeline, "tiny-chroma": chroma_pipeline}


def save_pipeline(folder: Path, vae, text_encoder, tokenizer, unet, scheduler) -> None:
    save_quietly(sd_pipeline(vae, text_encoder, tokenizer, unet, scheduler), folder)


def build_clip(folder: str | Path, arch: str = "tiny", seed: int = 0) -> Path:
    """A `CLIPModel` folder of `arch` (tiny; sd15 / sd15-small: ViT-B/32's) with random weights, its tokenizer
    and image processor."""
    from transformers import CLIPConfig, CLIPModel

    folder = Path(folder)
    tokenizer = write_clip_tokenizer(folder)
    if arch == "tiny":
        image_size = 32
        config = dict(text_config=text_config(tokenizer, **TINY_TEXT), projection_dim=32,
                      vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
                                         num_hidden_layers=2, num_attention_heads=4))
    elif arch in ("sd15", "sd15-small"):
        image_size = 224
        config = clip_b32_config(small=arch == "sd15-small")
        config["text_config"] = text_config(tokenizer) | config["text_config"]
    else:
        raise ValueError(f"build_clip: unknown architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(**config)).save_pretrained(folder, safe_serialization=True)
    clip_processor(tokenizer, image_size).save_pretrained(folder)
    return folder


def build_clipseg(folder: str | Path, seed: int = 0) -> Path:
    """A tiny `CLIPSegForImageSegmentation` folder with random weights, its tokenizer and processor (`gal eval
    --masked`'s segmenter in tests)."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    folder = Path(folder)
    tokenizer = write_clip_tokenizer(folder)
    config = CLIPSegConfig(text_config=text_config(tokenizer, **TINY_TEXT), projection_dim=32, reduce_dim=16,
                           vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
                                              num_hidden_layers=3, num_attention_heads=4),
                           extract_layers=[0, 1], decoder_num_attention_heads=2, decoder_intermediate_size=32)
    torch.manual_seed(seed)
    CLIPSegForImageSegmentation(config).save_pretrained(folder, safe_serialization=True)
    images = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.485, 0.456, 0.406],
                               image_std=[0.229, 0.224, 0.225])
    CLIPSegProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def build_miniature(pipeline_folder: str | Path, clip_folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """The miniature world's architecture (its default TrainConfig) with random weights, saved as its trainer
    saves its final folders."""
    from gal.miniature import train

    pipeline_folder, clip_folder = Path(pipeline_folder), Path(clip_folder)
    torch.manual_seed(seed)
    cfg = train.TrainConfig()
    tokenizer = train.write_tokenizer(pipeline_folder.parent / "_tokenizer")
    vae = train.build_vae(cfg)
    unet = train.build_unet(cfg, 2 ** (len(cfg.vae_channels) - 1))
    save_pipeline(pipeline_folder, vae, train.build_text_encoder(cfg, tokenizer), tokenizer, unet,
                  train.noise_schedulers()[1])
    train.build_scorer(cfg, tokenizer).save_pretrained(clip_folder, safe_serialization=True)
    train.scorer_processor(tokenizer).save_pretrained(clip_folder)
    shutil.rmtree(pipeline_folder.parent / "_tokenizer", ignore_errors=True)
    return pipeline_folder, clip_folder


def write_references(folder: str | Path, n: int = 3, size: int = 48, caption: str | None = None) -> Path:
    """`n` simple pictures (a disc on a two-tone background) to stand in for a user's photos."""
    from PIL import Image, ImageDraw

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = Image.new("RGB", (size, size), (40 + 60 * i, 160, 90))
        draw = ImageDraw.Draw(image)
        draw.rectangle([0, size // 2, size, size], fill=(200, 180, 60))
        draw.ellipse([size // 4 + 2 * i, size // 4, 3 * size // 4, 3 * size // 4], fill=(200, 30, 30))
        image.save(folder / f"ref{i}.png")
        if caption:
            (folder / f"ref{i}.txt").write_text(caption)
    return folder


if __name__ == "__main__":
    out, arch = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-models"), sys.argv[2] if len(sys.argv) > 2 else "tiny"
    build_pipeline(out / "pipeline", arch)
    build_clip(out / "clip", "tiny" if arch.startswith("tiny") else arch)
    write_references(out / "references")
    print(f"wrote {out / 'pipeline'}, {out / 'clip'} and {out / 'references'}")
