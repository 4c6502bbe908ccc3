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

from PIL import Image, ImageOps, UnidentifiedImageError

from gal.errors import GalError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class ReferenceImage(NamedTuple):
    source: Path
    image: Image.Image  # RGB
    caption: str | None  # from a sidecar .txt


def load_rgb(path: Path) -> Image.Image:
    """Open any PIL-readable image as 8-bit RGB: CMYK, 16-bit, palette and alpha are converted
    (transparent pixels become white), EXIF rotation is applied."""
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            im = im.point(lambda v: v / 256).convert("L")
        if im.mode == "P":
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA"):
            background = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(background, im.convert("RGBA"))
        return im.convert("RGB")


def read_references(folder: str | Path) -> list[ReferenceImage]:
    folder = Path(folder)
    if not folder.is_dir():
        raise GalError(f"--references {folder}: not a folder; expected a folder of reference images")
    refs, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            if path.suffix.lower() != ".txt":
                skipped.append(path.name)
            continue
        try:
            image = load_rgb(path)
        except Image.DecompressionBombError as e:
            raise GalError(f"--references {path}: too many pixels ({_reason(e)}); expected a photo, e.g. resized "
                           "to 2048 px on its long side") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise GalError(f"--references {path}: not a readable image ({_reason(e)}); "
                           "expected PNG, JPEG, WebP, BMP, GIF or TIFF") from None
        caption = read_caption(path.with_suffix(".txt"))
        refs.append(ReferenceImage(path, image, caption or None))
    if skipped:
        print(f"gal: note: ignored {len(skipped)} non-image file(s) in {folder}: {', '.join(skipped[:5])}"
              + (" ..." if len(skipped) > 5 else ""), file=sys.stderr)
    if not refs:
        raise GalError(f"--references {folder}: no images found; expected at least one PNG/JPEG/WebP image")
    return refs


def read_caption(path: Path) -> str | None:
    """A reference's sidecar caption as one line (line breaks and other white space become single spaces)."""
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GalError(f"--references {path}: cannot read the caption as UTF-8 text ({e.__class__.__name__}); "
                       "expected one line of text, the image's non-subject content") from None
    if any(unicodedata.category(ch) == "Cc" and not ch.isspace() for ch in text):
        raise GalError(f"--references {path}: the caption holds control characters; expected one line of text")
    return " ".join(text.split()) or None


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
