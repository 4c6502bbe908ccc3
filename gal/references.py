"""The user's reference images and their prompts: the initial training set T of Algorithm 1.

A reference may carry its own caption in a text file beside it (`cat1.jpg` + `cat1.txt`, the
kohya/sd-scripts convention): the caption is the photo's non-SoI content, e.g. `a cat on the stairs`.
Without one, the `--non-soi` texts stand for every reference.
"""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gal.errors import GalError

MAX_ASPECT = 8  # the long side at most 8 times the short one: a 1 x 60000 strip resized to 512 px is 30 Gpixel
MAX_CAPTION = 1000  # characters; the text encoders read 77 (CLIP) to 512 (T5) tokens of it anyway
MASK = ".mask"  # NAME.mask.EXT beside NAME.EXT: the mask of NAME's subject (kohya's and OneTrainer's convention)


def image_suffixes() -> set[str]:
    """The file suffixes of every format this Pillow can open (AVIF and HEIF where their plugins are installed)."""
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def mask_of(path: Path) -> str | None:
    """The name of the image whose mask `path` is (`NAME` for `NAME.mask.EXT`, any case, any image suffix); None for
    any other file."""
    stem = Path(path.stem)
    return stem.stem if path.suffix.lower() in image_suffixes() and stem.suffix.lower() == MASK else None


class ReferenceImage(NamedTuple):
    source: Path
    image: Image.Image  # RGB
    caption: str | None  # from a sidecar .txt
    alpha: np.ndarray | None = None  # its alpha channel, (H, W) in [0, 1]; None: its format has none


def load_rgb(path: Path) -> Image.Image:
    """Open any PIL-readable image as 8-bit RGB: CMYK, 16-bit, palette and alpha are converted
    (transparent pixels become white), EXIF rotation is applied."""
    return load_rgb_alpha(path)[0]


def load_rgb_alpha(path: Path) -> tuple[Image.Image, np.ndarray | None]:
    """`load_rgb`'s image, and its alpha channel in [0, 1] before it was made white (None: no alpha channel)."""
    alpha = None
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            im = im.point(lambda v: v / 256).convert("L")
        if im.mode == "F":  # a float image: 0..1 (scaled to 0..255), or already 0..255
            low, high = im.getextrema()
            im = im.point(lambda v: v * 255 if high <= 1.0 else v).convert("L")
        if im.mode == "P":
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "PA"):
            im = im.convert("RGBA")
            alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255
            im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
        return im.convert("RGB"), alpha


def read_references(folder: str | Path, flag: str = "--references") -> list[ReferenceImage]:
    """The images of a folder (and their captions), each as RGB; `flag` names the folder in errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GalError(f"{flag} {folder}: not a folder; expected a folder of images")
    refs, skipped, suffixes = [], [], image_suffixes()
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir() or mask_of(path) is not None:
            continue  # NAME.mask.EXT: the mask of NAME's subject (gal.masks), never a photo of it
        if path.suffix.lower() not in suffixes:
            if path.suffix.lower() != ".txt":
                skipped.append(path.name)
            continue
        try:
            image, alpha = load_rgb_alpha(path)
        except Image.DecompressionBombError as e:
            raise GalError(f"{flag} {path}: too many pixels ({_reason(e)}); expected a photo, e.g. resized "
                           "to 2048 px on its long side") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError) as e:
            raise GalError(f"{flag} {path}: not a readable image ({_reason(e)}); "
                           "expected PNG, JPEG, WebP, BMP, GIF, TIFF or another format Pillow reads") from None
        if max(image.size) > MAX_ASPECT * min(image.size):
            raise GalError(f"{flag} {path}: {image.size[0]}x{image.size[1]} pixels, the long side more than "
                           f"{MAX_ASPECT} times the short one; expected a photo (crop it)")
        if alpha is not None and alpha.max() < 0.5:
            raise GalError(f"{flag} {path}: transparent everywhere (no pixel of its alpha channel half opaque): it would "
                           "train as a blank square; expected the photo with its subject opaque")
        caption = read_caption(path.with_suffix(".txt"), flag)
        refs.append(ReferenceImage(path, image, caption or None, alpha))
    if skipped:
        print(f"gal: note: ignored {len(skipped)} file(s) that are not images Pillow reads in {folder}: "
              f"{', '.join(skipped[:5])}" + (" ..." if len(skipped) > 5 else ""), file=sys.stderr)
    if not refs:
        raise GalError(f"{flag} {folder}: no images found; expected at least one PNG/JPEG/WebP image")
    return refs


def read_caption(path: Path, flag: str = "--references") -> str | None:
    """A reference's sidecar caption as one line (line breaks and other white space become single spaces; a
    byte-order mark is dropped)."""
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise GalError(f"{flag} {path}: cannot read the caption as UTF-8 text ({e.__class__.__name__}); "
                       "expected one line of text, the image's non-subject content") from None
    if any(unicodedata.category(ch) == "Cc" and not ch.isspace() for ch in text):
        raise GalError(f"{flag} {path}: the caption holds control characters; expected one line of text")
    text = " ".join(text.replace("\ufeff", " ").split())
    if len(text) > MAX_CAPTION:
        raise GalError(f"{flag} {path}: a caption of {len(text)} characters; expected one line of at most "
                       f"{MAX_CAPTION}, the image's non-subject content")
    return text or None


def _reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else e.__class__.__name__
    return text[:120]


def reference_prompt(caption: str, subject: str, subject_plain: str, kind: str) -> str:
    """The reference prompt e* ⊕ ē* of Algorithm 1: the caption with the SoI phrase put in.
    object: `a cat on the stairs` -> `a <sks> cat on the stairs` (or just the subject phrase when the
    caption does not name it); style: `a cat` -> `a cat in <sks> style`."""
    if kind == "style":
        return f"{caption} {subject}"
    if subject_plain and subject_plain in caption:
        return caption.replace(subject_plain, subject, 1)
    return subject


def non_soi_texts(cfg, references) -> list[str]:
    """ē* of Eq. 8 for a run's `references` (its round-0 `Reference`s): the references' non-SoI captions and the
    --non-soi texts (or, as in the authors' style code, their whole reference prompts in plain words)."""
    if cfg.oracle == "reference-prompt":
        texts = [reference_prompt(r.caption, cfg.subject_plain, cfg.subject_plain, cfg.kind) for r in references]
    else:
        texts = list(cfg.non_soi) + [r.caption for r in references]
    return list(dict.fromkeys(t for t in texts if t))
