"""Where a model comes from: a local folder, a hub id (`owner/name`), or the bundled miniature world (`miniature`,
resolved here and nowhere else), and the check that a folder holds safetensors weights, not pickles."""

from __future__ import annotations

import re
from pathlib import Path

from gal.errors import GalError

WEIGHTS = Path(__file__).parent / "miniature" / "weights"  # the bundled miniature model and scorer (safetensors)


def bundled() -> tuple[Path, Path] | None:
    """(model folder, scorer folder) of the bundled miniature world, or None where they are not installed."""
    model, scorer = WEIGHTS / "model", WEIGHTS / "scorer"
    if (model / "model_index.json").exists() and (scorer / "config.json").exists():
        return model, scorer
    return None


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PICKLE_SUFFIXES = {".bin", ".ckpt", ".pt", ".pth", ".pkl"}


def locate(name_or_path: str, flag: str) -> str:
    """`miniature` names the bundled miniature world's model (`--base`) or scorer (`--scorer`)."""
    if name_or_path != "miniature":
        return name_or_path
    found = bundled()
    if found is None:
        raise GalError(f"{flag} miniature: the bundled miniature model is not in this installation; train it with "
                       "`gal miniature train OUT` and pass OUT/model and OUT/scorer")
    return str(found[0] if flag == "--base" else found[1])


def check_model_folder(name_or_path: str, flag: str, allow_pickle: bool = False) -> None:
    """A model is a local folder or a hub id (`owner/name`); anything else is a typo worth a clear line.
    A folder whose weights are only pickles is refused: unpickling can run code."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise GalError(f"{flag} {name_or_path}: is a file; expected a model folder (diffusers/transformers layout)")
        files = [p for p in path.rglob("*") if p.is_file()]
        safe = {p.parent for p in files if p.suffix == ".safetensors"}
        pickles = [p for p in files if p.suffix in PICKLE_SUFFIXES and p.parent not in safe]  # per component
        if pickles and not allow_pickle:
            raise GalError(f"{flag} {name_or_path}: holds only pickle weights ({pickles[0].relative_to(path)}), which can run "
                           "code when loaded; expected .safetensors weights (convert them, or pass --allow-pickle "
                           "if you trust this folder)")
        return
    if not HUB_ID.match(name_or_path):
        raise GalError(f"{flag} {name_or_path}: folder not found; expected a model folder or a hub id like owner/name")
