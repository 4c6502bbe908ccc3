"""The subject's region of an image, so that IMG-ALN can be read on the subject alone (`gal eval --masked`): a
copied background is fidelity to whole-image CLIP similarity, not to the subject.

The masks come from a text-prompted segmenter that transformers ships (CLIPSeg, prompted with the subject's class
word), or, for the references, from the user: `NAME.mask.EXT` beside `NAME.EXT` (as kohya's sd-scripts and OneTrainer
take them; white = subject), else an alpha channel. The user's are read by one contract, `given_masks` (a mask file:
`read_mask`), wherever gal reads them: a new run's references, a resumed run's copies (`run_folder.read_mask`),
`gal eval --masked`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from gal.errors import GalError, warn
from gal.references import ReferenceImage, mask_of

DEFAULT_SEGMENTER = "CIDAS/clipseg-rd64-refined"  # CLIPSeg, the segmenter diffusers' own docs prompt with text
GREY = (128, 128, 128)  # what the region outside the subject becomes
SUBJECT = 0.5  # a pixel at least half white is the subject's (as composites cut it: `composite.cutout`)


class Segmenter:
    def __init__(self, name_or_path: str, device="cpu"):
        import torch
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        from gal.locations import check_model_folder
        from gal.models import quiet_transformers

        check_model_folder(name_or_path, "--segmenter")
        with quiet_transformers():
            try:
                self.model = CLIPSegForImageSegmentation.from_pretrained(name_or_path, use_safetensors=True).to(device).eval()
                self.processor = CLIPSegProcessor.from_pretrained(name_or_path)
            except (OSError, ValueError) as e:
                raise GalError(f"--segmenter {name_or_path}: cannot load it ({str(e).splitlines()[0][:160]}); expected "
                               "a transformers CLIPSeg folder (CLIPSegForImageSegmentation and its processor)") from None
        self.device = torch.device(device)

    def masks(self, images: list[Image.Image], prompt: str) -> list[np.ndarray]:
        """Per image, the subject's probability per pixel at the image's size, (H, W) in [0, 1]."""
        import torch

        inputs = self.processor(text=[prompt] * len(images), images=images, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits
        logits = logits.reshape(len(images), *logits.shape[-2:]).float().sigmoid().cpu()
        return [np.asarray(Image.fromarray((p.numpy() * 255).astype(np.uint8)).resize(im.size, Image.BILINEAR),
                           dtype=np.float32) / 255 for p, im in zip(logits, images)]


def given_masks(refs: list[ReferenceImage], flag: str = "--references") -> list[np.ndarray | None]:
    """Per reference, the user's mask of its subject, (H, W) in [0, 1]: `NAME.mask.EXT` beside it (`read_mask`), else
    its alpha channel where some of it is transparent (an opaque one is no mask); None without one. Two masks for one
    image are refused; a mask with no image of its name is named in a warning."""
    files: dict[tuple[Path, str], list[Path]] = {}
    for folder in dict.fromkeys(ref.source.parent for ref in refs):
        for path in sorted(folder.iterdir()):
            if (name := mask_of(path)) is not None and not path.name.startswith(".") and path.is_file():
                files.setdefault((folder, name), []).append(path)
    masks = []
    for ref in refs:
        found = files.get((ref.source.parent, ref.source.stem), [])
        if len(found) > 1:
            raise GalError(f"{flag} {ref.source.parent}: {len(found)} masks of {ref.source.name} "
                           f"({', '.join(p.name for p in found)}); expected one")
        if found:
            masks.append(read_mask(found[0], ref.source.name, ref.image.size, f"{flag} "))
        else:
            masks.append(ref.alpha if ref.alpha is not None and ref.alpha.min() < SUBJECT else None)
    named = {(ref.source.parent, ref.source.stem) for ref in refs}
    orphans = [p for key, paths in files.items() if key not in named for p in paths]
    if orphans:
        warn(f"{flag} {orphans[0].parent}: {', '.join(p.name for p in orphans)}: a mask with no image of its name "
             "beside it; ignored (NAME.mask.png is the mask of NAME.png or NAME.jpg)")
    return masks


def warn_unmasked(refs: list[ReferenceImage], masks: list, instead: str, flag: str = "--references") -> None:
    """Masks for only some of the references: each reference without one named, with what is done `instead`."""
    unmasked = [ref.source.name for ref, mask in zip(refs, masks) if mask is None]
    if 0 < len(unmasked) < len(refs):
        warn(f"{flag}: {len(unmasked)} of the {len(refs)} references have no mask ({', '.join(unmasked)}); {instead}")


def read_mask(path: Path, image: str, size: tuple[int, int], flag: str = "") -> np.ndarray:
    """The mask file `path` of the image named `image`, (H, W) in [0, 1], white on the subject: any mode Pillow reads,
    by its own range (16-bit: 65535 is white; float: 0..1, else 0..255), transparency as background, EXIF rotation
    applied. Refused in one line: unreadable, another size than the image's (`size`), or a mask no one can mean (no
    subject in it, or nothing but subject)."""
    where = f"{flag}{path}"
    try:
        with Image.open(path) as im:
            im.load()
            values = _values(ImageOps.exif_transpose(im))
    except Exception as e:  # noqa: BLE001 - whatever Pillow raises for a damaged file, one line
        raise GalError(f"{where}: cannot read the mask ({e.__class__.__name__}: {str(e)[:100]}); expected a greyscale "
                       f"image of {image}'s size, white where the subject is") from None
    if values.shape != (size[1], size[0]):
        raise GalError(f"{where}: {values.shape[1]}x{values.shape[0]} pixels; expected the mask of {image} at its size, "
                       f"{size[0]}x{size[1]}")
    subject = values >= SUBJECT
    if not subject.any():
        raise GalError(f"{where}: no subject in it (no pixel half white or more); expected white on {image}'s subject "
                       "and black around it")
    if subject.all():
        raise GalError(f"{where}: all subject (every pixel half white or more), so it masks nothing; expected white on "
                       f"{image}'s subject and black around it, or no mask to train on the whole image")
    return values


def _values(im: Image.Image) -> np.ndarray:
    """An image's grey levels in [0, 1], by its mode's own range."""
    if im.mode.startswith("I"):  # 16-bit (and 32-bit integer) greyscale
        return np.clip(np.asarray(im, dtype=np.float32) / 65535, 0, 1)
    if im.mode == "F":
        values = np.asarray(im, dtype=np.float32)
        return np.clip(values if values.max() <= 1 else values / 255, 0, 1)
    if "A" in im.getbands() or "transparency" in im.info:  # transparent: background
        rgba = im.convert("RGBA")
        grey, alpha = (np.asarray(band, dtype=np.float32) / 255 for band in (rgba.convert("L"), rgba.getchannel("A")))
        return grey * alpha
    return np.asarray(im.convert("L"), dtype=np.float32) / 255


def on_grey(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The subject on a plain grey ground: what the scorer then sees of it (`mask` at the image's size)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    out = pixels * mask[..., None] + np.array(GREY, dtype=np.float32) * (1 - mask[..., None])
    return Image.fromarray(out.round().astype(np.uint8))
