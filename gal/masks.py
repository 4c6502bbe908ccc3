"""The subject's region of an image, so that IMG-ALN can be read on the subject alone (`gal eval --masked`): a
copied background is fidelity to whole-image CLIP similarity, not to the subject.

The masks come from a text-prompted segmenter that transformers ships (CLIPSeg, prompted with the subject's class
word), or, for the references, from the user: an alpha channel, or `NAME.mask.png` beside `NAME.png` (as kohya's
sd-scripts and OneTrainer take them; white = subject)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gal.errors import GalError
from gal.locations import check_model_folder
from gal.models import quiet_transformers

DEFAULT_SEGMENTER = "CIDAS/clipseg-rd64-refined"  # CLIPSeg, the segmenter diffusers' own docs prompt with text
GREY = (128, 128, 128)  # what the region outside the subject becomes


class Segmenter:
    def __init__(self, name_or_path: str, device: torch.device | str = "cpu"):
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        check_model_folder(name_or_path, "--segmenter")
        with quiet_transformers():
            try:
                self.model = CLIPSegForImageSegmentation.from_pretrained(name_or_path, use_safetensors=True).to(device).eval()
                self.processor = CLIPSegProcessor.from_pretrained(name_or_path)
            except (OSError, ValueError) as e:
                raise GalError(f"--segmenter {name_or_path}: cannot load it ({str(e).splitlines()[0][:160]}); expected "
                               "a transformers CLIPSeg folder (CLIPSegForImageSegmentation and its processor)") from None
        self.device = torch.device(device)

    @torch.no_grad()
    def masks(self, images: list[Image.Image], prompt: str) -> list[np.ndarray]:
        """Per image, the subject's probability per pixel at the image's size, (H, W) in [0, 1]."""
        inputs = self.processor(text=[prompt] * len(images), images=images, padding=True, return_tensors="pt")
        logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits
        logits = logits.reshape(len(images), *logits.shape[-2:]).float().sigmoid().cpu()
        return [np.asarray(Image.fromarray((p.numpy() * 255).astype(np.uint8)).resize(im.size, Image.BILINEAR),
                           dtype=np.float32) / 255 for p, im in zip(logits, images)]


def given_mask(source: Path) -> np.ndarray | None:
    """A user's mask for a reference: `NAME.mask.png` beside it, else its alpha channel; None without one."""
    beside = source.with_name(source.stem + ".mask.png")
    try:
        if beside.exists():
            return np.asarray(Image.open(beside).convert("L"), dtype=np.float32) / 255
        with Image.open(source) as im:
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                return np.asarray(im.convert("RGBA").getchannel("A"), dtype=np.float32) / 255
    except OSError as e:
        raise GalError(f"--references {beside}: cannot read the mask ({e.__class__.__name__}); expected a greyscale "
                       "PNG of the image's size, white where the subject is") from None
    return None


def on_grey(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The subject on a plain grey ground: what the scorer then sees of it."""
    if mask.shape != (image.height, image.width):
        mask = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR),
                          dtype=np.float32) / 255
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    out = pixels * mask[..., None] + np.array(GREY, dtype=np.float32) * (1 - mask[..., None])
    return Image.fromarray(out.round().astype(np.uint8))
