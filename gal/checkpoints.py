"""The LoRA checkpoints a trainer leaves behind, found in the layouts people have: a LoRA file; a folder holding
one; a folder of a trainer's checkpoints, by step (kohya's sd-scripts `name-000010.safetensors`, ai-toolkit's
`name_000001000.safetensors`, the diffusers scripts' and SimpleTuner's `checkpoint-N/`); or a gal run (its rounds).
Which keys a file holds is diffusers' business (`load_lora_weights` converts kohya's, ai-toolkit's and other
layouts); this module only finds the files and orders them."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from gal.errors import GalError

DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
_STEP = re.compile(r"(?:^|[-_.])(?:e|ep|epoch|step|s)?0*(\d+)$", re.IGNORECASE)  # the number a trainer appends


class Checkpoint(NamedTuple):
    path: Path  # a .safetensors file, or a folder `load_lora_weights` reads
    label: str  # what the table calls it
    step: int | None  # the trainer's step or epoch, where the name says it (the final file of a series: None)


def find_all(paths: list[str | Path], flag: str = "--lora") -> list[Checkpoint]:
    """The checkpoints at every path (`find`), each once, with labels that tell them apart: where two share one (a
    `cat.safetensors` in two folders, two runs' `round 1`), each is prefixed with what of its own --lora path is not
    the other's (`a/cat`, `b/cat`)."""
    found, given = [], {}
    for path in map(Path, paths):
        for c in find(path, flag):
            other = given.setdefault(c.path.resolve(), path)
            if other is not path:
                raise GalError(f"{flag} {path}: " + ("given twice" if other == path else f"{c.path} is also among the "
                               f"checkpoints of {flag} {other}") + "; expected each checkpoint once")
            found.append((path if path.is_dir() else path.parent, c))
    counts = Counter(c.label for _, c in found)
    return [c._replace(label=_apart(c, [o for o, d in found if d.label == c.label], origin)) if counts[c.label] > 1
            else c for origin, c in found]


def _apart(c: Checkpoint, origins: list[Path], origin: Path) -> str:
    """`c`'s label prefixed with its origin's path below the origins' common folder (the file's own name where they
    share one folder)."""
    common = Path(os.path.commonpath([o.resolve() for o in origins]))
    prefix = origin.resolve().relative_to(common)
    return f"{_shown(str(prefix))}/{c.label}" if prefix.parts else _shown(c.path.name)


def _shown(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def find(path: str | Path, flag: str = "--lora") -> list[Checkpoint]:
    """The checkpoints at `path`, ordered by step (a series' final, unnumbered file last)."""
    path = Path(path)
    if not path.exists():
        raise GalError(f"{flag} {path}: not found; expected a LoRA file (.safetensors), a folder with one, or a "
                       "folder of a trainer's checkpoints")
    if path.is_file():
        if path.suffix != ".safetensors":
            raise GalError(f"{flag} {path}: a {path.suffix or 'file without a suffix'}; expected LoRA weights in a "
                           ".safetensors file (gal loads no pickles)")
        return [Checkpoint(path, _shown(path.stem), _step(path.stem))]
    if (path / "gal.sqlite").exists():
        return _gal_run(path, flag)
    if (path / DIFFUSERS_FILE).exists():
        return [Checkpoint(path, _shown(path.name), _step(path.name))]
    found = [Checkpoint(p, _shown(p.name), _step(p.name)) for p in sorted(path.iterdir())
             if p.is_dir() and (p / DIFFUSERS_FILE).exists()]  # checkpoint-N/ folders
    found += [Checkpoint(p, _shown(p.stem), _step(p.stem)) for p in sorted(path.glob("*.safetensors"))]
    if not found:
        raise GalError(f"{flag} {path}: no LoRA checkpoints in this folder; expected .safetensors files "
                       f"(kohya's name-000010.safetensors, ai-toolkit's name_000001000.safetensors), checkpoint-N/ "
                       f"folders with {DIFFUSERS_FILE}, or a gal run")
    return sorted(found, key=lambda c: (c.step is None, c.step or 0, c.label))


def _step(name: str) -> int | None:
    match = _STEP.search(name)
    return int(match[1]) if match else None


def _gal_run(path: Path, flag: str) -> list[Checkpoint]:
    from gal.ledger import Ledger

    ledger = Ledger(path, read_only=True)  # an emptied ledger is no run's record, and stays as it is
    try:
        ledger.recorded_config()  # an emptied ledger is named as such, not taken for a run without rounds
        rounds = [r for r in ledger.rounds() if r["checkpoint"] and (path / r["checkpoint"] / DIFFUSERS_FILE).exists()]
    finally:
        ledger.close()
    if not rounds:
        raise GalError(f"{flag} {path}: a gal run with no round's LoRA on disk; expected a run with a checkpoint")
    return [Checkpoint(path / r["checkpoint"], f"round {r['round']}", r["round"]) for r in rounds]
