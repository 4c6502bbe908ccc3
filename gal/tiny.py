"""Tiny randomly initialised models in the real on-disk layouts, for tests and the CPU demo.

`build_tiny_pipeline(dir)` writes a diffusers `StableDiffusionPipeline` folder and
`build_tiny_clip(dir)` a transformers `CLIPModel` folder (tokenizer and image processor included).
Both are then loaded through the same `from_pretrained` path a user's checkpoint takes.
Their images are noise: use them to exercise the machinery, not to judge results.

    python -m gal.tiny OUT_DIR      # writes OUT_DIR/pipeline, OUT_DIR/clip and OUT_DIR/references
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def _bytes_to_unicode() -> list[str]:
    # The byte-to-character table of GPT-2/CLIP byte-level BPE.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_char_tokenizer(folder: Path) -> int:
    """A CLIP BPE tokenizer with no merges: every character is a token, so any text (and any
    placeholder such as `<sks>`) tokenizes. Returns the vocabulary size."""
    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(folder)
    return len(vocab)


def build_tiny_pipeline(folder: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    vocab_size = write_char_tokenizer(folder / "_tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "_tokenizer")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
        )
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=8, sample_size=image_size,
    )
    unet = UNet2DConditionModel(
        sample_size=image_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8, cross_attention_dim=32, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    _remove_tree(folder / "_tokenizer")
    return folder


def build_tiny_clip(folder: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    vocab_size = write_char_tokenizer(folder)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
        ),
        vision_config=dict(
            image_size=image_size, patch_size=8, hidden_size=32, intermediate_size=37,
            num_hidden_layers=2, num_attention_heads=4,
        ),
        projection_dim=32,
    )
    CLIPModel(config).save_pretrained(folder, safe_serialization=True)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}),
        tokenizer=CLIPTokenizer.from_pretrained(folder),
    )
    processor.save_pretrained(folder)
    return folder


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


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-models")
    build_tiny_pipeline(out / "pipeline")
    build_tiny_clip(out / "clip")
    write_references(out / "references")
    print(f"wrote {out / 'pipeline'}, {out / 'clip'} and {out / 'references'}")
