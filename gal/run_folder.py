"""A run folder: every path in it, named once, and the guards that read its files back.

    RUN/gal.sqlite                       the ledger (gal.ledger)
    RUN/config.yaml                      the resolved config, for people
    RUN/references/NN-name.png           the run's copies of the references (NN-name.mask.png: a reference's mask)
    RUN/class_images/NNNN.png            prior preservation's class images (given-NNNN.png: the user's, copied in)
    RUN/rounds/R/checkpoint/             round R's weights (a LoRA file diffusers loads, or a pipeline folder)
    RUN/rounds/R/samples/aAAA-jJJ.png    round R's query: anchor AAA's sample j (Eq. 4)
    RUN/rounds/R/added/aAAA.png          an image round R added to T that is none of its samples (composites)
    RUN/eval/SETTINGS/round-R/           `gal eval`'s images, a folder per evaluation setting
    RUN/report.html                      `gal report`

Paths are relative to the run folder, as the ledger stores them. A file the run reads back (an image it trains on, a
round's weights) is read under one guard, which names a damaged or missing file with what it is and what to do.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from gal import masks
from gal.errors import GalError
from gal.references import load_rgb

CONFIG = "config.yaml"
REPORT = "report.html"
ROUNDS = "rounds"


def reference(i: int, source: Path) -> str:
    """The run's copy of the i-th reference: its name in letters, digits, `-` and `_` (a name the file system could
    not decode, or one with spaces, still makes a plain file name)."""
    stem = re.sub(r"[^\w-]", "_", source.stem, flags=re.ASCII)[:40] or "image"
    return f"references/{i:02d}-{stem}.png"


def mask(image: Path | str) -> Path:
    """Where an image's mask is: `NAME.mask.png` beside `NAME.png`, the users' convention and the run's."""
    image = Path(image)
    return image.with_name(image.stem + ".mask.png")


def class_image(i: int, given: bool = False) -> str:
    return f"class_images/given-{i:04d}.png" if given else f"class_images/{i:04d}.png"


def checkpoint(r: int) -> str:
    return f"{ROUNDS}/{r}/checkpoint"


def sample(r: int, anchor: int, j: int) -> str:
    return f"{ROUNDS}/{r}/samples/a{anchor:03d}-j{j:02d}.png"


def added(r: int, anchor: int) -> str:
    return f"{ROUNDS}/{r}/added/a{anchor:03d}.png"


def evaluation(settings: dict) -> str:
    """One evaluation setting's images, a folder of its own per setting, so that no evaluation writes over another's
    images (`eval/n4-seed0-test-1a2b3c`; a round's images in its `round-R/`)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6]
    split = "validation" if settings["prompts"] == "validation" else "test"
    scale = f"-scale{settings['lora_scale']:g}" if "lora_scale" in settings else ""
    return f"eval/n{settings['n']}-seed{settings['seed']}-{split}{scale}-{digest}"


# ---- the guards ---------------------------------------------------------------------------------------------------

FIXES = {"reference": "copy the reference image back from your --references folder under this name",
         "added image": "restore it from a copy of the run folder, or start a new run with another --out",
         "class image": "restore it from a copy of the run folder (or, for generated ones, delete the folder's "
                        "class_images and the run: they are made again only before round 1 trains)",
         "reference's mask": "copy the mask back from your --references folder under this name (NAME.mask.png, "
                             "white on the subject)"}


def read_image(path: Path, what: str) -> Image.Image:
    """A file of the run folder that training or evaluation reads (`what`: a key of FIXES), opened under one guard: a
    damaged or missing file is named, with what it is and what to do."""
    try:
        return load_rgb(path)
    except FileNotFoundError:
        raise GalError(f"{path}: missing; it is a {what} of this run; expected it back: {FIXES[what]}") from None
    except Exception as e:  # noqa: BLE001 - whatever Pillow raises for a damaged file, one line
        raise GalError(f"{path}: cannot read it ({e.__class__.__name__}: {str(e)[:100]}); it is a {what} of this run; "
                       f"{FIXES[what]}") from None


def read_mask(image: Path) -> np.ndarray:
    """The run's copy of a reference's mask, (H, W) in [0, 1], read as the user's are (`masks.read_mask`): one of
    another size than its image, or one no one can mean, is refused as a new run refuses it."""
    path, what = mask(image), "reference's mask"
    if not path.exists():
        raise GalError(f"{path}: missing; it is a {what} of this run; expected it back: {FIXES[what]}")
    try:
        return masks.read_mask(path, image.name, read_image(image, "reference").size)
    except GalError as e:
        raise GalError(f"{e}; it is a {what} of this run: {FIXES[what]}") from None


def grey(values: np.ndarray) -> Image.Image:
    """A mask in [0, 1] as the greyscale PNG the run keeps (white on the subject)."""
    return Image.fromarray(np.clip(np.rint(values * 255), 0, 255).astype(np.uint8))


def _redo(r: int) -> str:
    return (f"delete that folder and run the same `gal run` command again: round {r} is trained again from the same "
            "data and seeds")


def load_checkpoint(personalizer, folder: Path, r: int, closed: bool = False) -> None:
    """Round r's recorded weights, loaded under one guard: a damaged file is named, with what to do (a round still
    open is trained again once its folder is gone; a closed one is not)."""
    fix = "restore the folder from a copy of the run (a closed round is not trained again)" if closed else _redo(r)
    try:
        personalizer.load(folder)
    except GalError:
        raise
    except Exception as e:  # noqa: BLE001 - a truncated or overwritten safetensors file, whatever the library raises
        raise GalError(f"{folder}: cannot load round {r}'s weights ({e.__class__.__name__}: {str(e)[:100]}); "
                       f"{fix}") from None


def check_weights(folder: Path, r: int) -> None:
    """The safetensors files of round r's checkpoint, their headers read (a truncated or overwritten file fails here,
    before a resumed run records anything), named as `load_checkpoint` would name them."""
    from safetensors import safe_open

    for path in sorted(folder.rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                list(f.keys())
        except Exception as e:  # noqa: BLE001 - safetensors' own error types
            raise GalError(f"{folder}: cannot load round {r}'s weights ({path.name}: {str(e)[:100]}); "
                           f"{_redo(r)}") from None
