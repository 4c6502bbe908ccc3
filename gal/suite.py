"""`gal bench --suite paper-object|paper-style`: the paper's protocol (Table 1) for real Stable Diffusion,
as a list of `gal.Config`s (each run then evaluated with `gal.evaluate`). `--dry-run` prints the plan (models, fine-tunes, images,
CLIP forwards) and checks that a data folder holds what the suite needs.

Data layout (the images belong to their datasets; bring your own copy):
    paper-object: DATA/<concept>/*.jpg   for the 10 Custom Diffusion concepts (cat, dog, table, ...)
    paper-style:  DATA/<concept>/*.jpg   one StyleDrop reference per style (cat, person, laptop, ...)
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from gal.config import N_EVAL, PAPER_BASE, PAPER_SCORER, Config, command_line
from gal.errors import GalError
from gal.resolve import AUTHORS, LR


@dataclass(frozen=True)
class Row:
    """A row of Table 1 (or of `gal bench`'s comparison on the miniature world): how its runs differ from `gal run`'s
    defaults."""
    key: str  # `gal bench --rows KEY`
    name: str
    strategy: str
    balance: str
    options: dict = field(default_factory=dict)  # other Config fields, e.g. {"query_guidance": 2.0}
    added: str = "samples"  # what a chosen direction adds to T: the paper's rows add its samples


# The paper's Table 1, for this suite and the miniature bench alike. "Human" is a person's picks at weight 1; with
# the balance scheme the paper calls it the oracle ("Human + Balance (Oracle + ours)").
TABLE1 = [Row("dreambooth", "Baseline (DreamBooth)", "none", "off"), Row("random", "Random", "random", "off"),
          Row("human", "Human", "human", "off"), Row("uncertainty", "Uncertainty", "uncertainty", "off"),
          Row("balance", "Uncertainty + Balance", "uncertainty", "paper"),
          Row("oracle", "Human + Balance", "human", "paper")]


class Concept(NamedTuple):
    name: str
    kind: str
    subject: str
    subject_plain: str
    non_soi: list[str]
    test_prompts: int


def _concepts(suite: str) -> list[Concept]:
    data = resources.files("gal").joinpath("data")
    if suite == "paper-object":
        out = []
        for c in json.loads(data.joinpath("concepts_object.json").read_text()):
            word = c["class_prompt"].replace("_", " ")
            prompts = data.joinpath("test_prompts", f"{c['class_prompt']}.txt").read_text().splitlines()
            out.append(Concept(c["class_prompt"], "object", f"a {c['placeholder']} {word}", f"a {word}",
                               c["caption"], len([p for p in prompts if p.strip()])))
        return out
    if suite == "paper-style":
        parti = len(data.joinpath("parti_prompts_basic.csv").read_text().splitlines()) - 1
        out = []
        for c in json.loads(data.joinpath("concepts_style.json").read_text()):
            prompt = c["instance_prompt"]
            cut = prompt.rfind(" in ")  # "A cat in watercolor painting style": content, then the style phrase
            style, content = prompt[cut + 1:], prompt[:cut]
            out.append(Concept(c["class_prompt"], "style", style, style, [content], parti))
        return out
    raise GalError(f"--suite {suite}: unknown suite; expected paper-object or paper-style")


# The authors' settings (shared/docs/algorithm.md): SD v1.4, full UNet DreamBooth, lr 5e-6.
SETTINGS = {f"paper-{kind}": dict(method="full", lr=LR["full"], **AUTHORS[kind]) for kind in AUTHORS}
_PAPER = Config()  # the paper's m, k, λ, rounds and class images are gal run's defaults
ROUNDS, M, K, LAMBDA, CLASS_IMAGES = _PAPER.rounds, _PAPER.m, _PAPER.k, _PAPER.lambda_, _PAPER.num_class_images
ANCHORS = 18  # the authors' anchor sets (gal/data/anchors)


def runs(suite: str, data: Path, out: Path) -> list[tuple[str, str, Config]]:
    """(concept, row, config) of every run of the suite."""
    found = []
    for c in _concepts(suite):
        for row in TABLE1:
            found.append((c.name, row.name, Config(
                base=PAPER_BASE, scorer=PAPER_SCORER, references=str(data / c.name), kind=c.kind, subject=c.subject,
                subject_plain=c.subject_plain, non_soi=list(c.non_soi), strategy=row.strategy, balance=row.balance,
                rounds=1 if row.strategy == "none" else ROUNDS, m=M, k=K, lambda_=LAMBDA, seed=0, **SETTINGS[suite],
                added=row.added, **row.options, out=str(out / c.name / _folder(row.name)))))
    return found


def _folder(row: str) -> str:
    return row.lower().replace(" + ", "-").replace(" ", "-").replace("(", "").replace(")", "")


def plan(suite: str, data: Path, out: Path) -> dict:
    """What the suite costs, at most (no run stopped early by Eq. 10)."""
    concepts = _concepts(suite)
    finetunes = query = evaluation = class_images = texts = 0
    for c in concepts:
        for row in TABLE1:
            rounds = 1 if row.strategy == "none" else ROUNDS
            finetunes += rounds
            query += sum((ANCHORS - K * r) * M for r in range(rounds - 1))  # no query after the last round
            evaluation += c.test_prompts * N_EVAL * rounds
            class_images += CLASS_IMAGES if c.kind == "object" else 0
        texts += ANCHORS + len(c.non_soi) + c.test_prompts
    images = query + evaluation + class_images
    return {"suite": suite, "base": PAPER_BASE, "scorer": PAPER_SCORER, "concepts": [c.name for c in concepts],
            "rows": [r.name for r in TABLE1], "runs": len(concepts) * len(TABLE1), "fine_tunes": finetunes,
            "images": {"query": query, "evaluation": evaluation, "class": class_images, "total": images},
            "clip_forwards": {"images": query + evaluation, "texts": texts},
            "human_runs": sum(1 for r in TABLE1 if r.strategy == "human") * len(concepts),
            "settings": command_line(Config(**SETTINGS[suite])) + ["--rounds", str(ROUNDS), "--m", str(M), "--k", str(K),
                                                                  "--lambda", str(LAMBDA)]}


def check_data(suite: str, data: Path) -> list[str]:
    """What is missing or unreadable in the data folder (empty: ready)."""
    from gal.references import read_references

    if not data.is_dir():
        return [f"{data}: not a folder"]
    problems = []
    for c in _concepts(suite):
        try:
            refs = read_references(data / c.name)
        except GalError as e:
            problems.append(str(e).removeprefix("--references "))
            continue
        if c.kind == "style" and len(refs) != 1:
            problems.append(f"{data / c.name}: {len(refs)} images; a StyleDrop style has exactly one reference")
    return problems


def dry_run(suite: str, data: Path | None, out: Path, log=print) -> int:
    p = plan(suite, data or Path("DATA"), out)
    log(f"suite {suite}: {len(p['concepts'])} concepts x {len(p['rows'])} rows of Table 1 = {p['runs']} runs")
    log(f"  models: {p['base']} (fine-tuned), {p['scorer']} (oracle and metrics)")
    log(f"  settings: {' '.join(p['settings'])}")
    log(f"  fine-tunes: {p['fine_tunes']} (at most; Eq. 10 may stop runs early)")
    log(f"  images to generate: {p['images']['total']} = {p['images']['query']} query + "
        f"{p['images']['evaluation']} evaluation (n={N_EVAL}) + {p['images']['class']} class images")
    log(f"  CLIP forwards: {p['clip_forwards']['images']} images, {p['clip_forwards']['texts']} distinct texts")
    log(f"  {p['human_runs']} runs use --strategy human: each round waits for `gal review`")
    concept, row, cfg = runs(suite, data or Path("DATA"), out)[0]
    log(f"  e.g. ({concept}, {row}): gal run {shlex.join(command_line(cfg))}")
    if data is None:
        log("  no --data given: pass --data DIR to check your copy of the images")
        return 0
    problems = check_data(suite, data)
    for line in problems:
        log(f"  missing: {line}")
    log(f"  data {data}: " + ("ready" if not problems else f"{len(problems)} problem(s)"))
    return 0 if not problems else 2


def run_suite(suite: str, data: Path | None, out: Path, log=print) -> None:
    """`gal bench --suite`: every run of the suite (resumed where it stopped), each evaluated once it finished."""
    import gal

    if data is None:
        raise GalError(f"--suite {suite}: expected --data DIR with the suite's images (see --dry-run)")
    problems = check_data(suite, data)
    if problems:
        raise GalError(f"--data {data}: {problems[0]} ({len(problems)} problem(s); --dry-run lists them)")
    for concept, row, cfg in runs(suite, data, out):
        log(f"== {concept}: {row}")
        if gal.run(cfg)["status"] == "finished":  # a human row waits for `gal review`, then the suite again
            gal.evaluate(cfg.out, n=N_EVAL)
