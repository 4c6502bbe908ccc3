"""The anchor set A: prompt templates with `{}` where the SoI phrase goes (section 3.2, Eq. 3)."""

from __future__ import annotations

import unicodedata
from importlib import resources
from pathlib import Path

from gal.errors import GalError
from gal.ledger import Anchor

MAX_LINE = 1000  # characters of a template


def read_templates(path: str | Path | None, kind: str) -> dict[int, str]:
    """{line number from 0: template} from a file (one per line; blank lines are skipped), or the
    paper's 18 for the kind."""
    if path is None:
        source = f"the paper's {kind} anchors"
        text = resources.files("gal").joinpath("data", "anchors", f"{kind}.txt").read_text()
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise GalError(f"--anchors {path}: file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise GalError(f"--anchors {path}: cannot read it as UTF-8 text ({e.__class__.__name__})") from None
    templates: dict[int, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.replace("\ufeff", "").strip()  # byte-order marks of files pasted together
        if not line:
            continue
        if any(unicodedata.category(ch) == "Cc" for ch in line) or len(line) > MAX_LINE:
            raise GalError(f"--anchors {source}, line {n}: a control character or over {MAX_LINE} characters; "
                           "expected one template of plain text, e.g. '{} in a museum'")
        if line.count("{}") != 1 or "{" in line.replace("{}", "") or "}" in line.replace("{}", ""):
            raise GalError(f"--anchors {source}, line {n}: '{line}' must hold exactly one '{{}}' "
                           "where the subject phrase goes, e.g. '{} in a museum'")
        if line in templates.values():
            first = next(i for i, t in templates.items() if t == line)
            raise GalError(f"--anchors {source}, line {n}: '{line}' repeats line {first + 1}; expected each anchor once")
        templates[n - 1] = line
    if not templates:
        raise GalError(f"--anchors {source}: no anchor lines; expected one template with '{{}}' per line")
    return templates


def make_anchors(templates: dict[int, str], subject: str, subject_plain: str) -> list[Anchor]:
    """Index = line in the file, stable across rounds; the prompt carries the SoI phrase (Eq. 3),
    the scoring text the same phrase in plain words (placeholders mean nothing to CLIP)."""
    return [Anchor(i, t, t.replace("{}", subject), t.replace("{}", subject_plain)) for i, t in templates.items()]
