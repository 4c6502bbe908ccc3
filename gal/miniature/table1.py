"""`gal bench` on the miniature world: the paper's Table 1 and Figure 5, and the question every practitioner
asks first: does GAL beat simply training less?

For each held-out subject and seed it runs

- DreamBooth at the default step count (round 1, which every GAL row shares: it runs once and each row's
  run starts from a copy) and at 1/8, 1/4, 1/2 and 3/4 of it: the *frontier* of training less;
- DreamBooth exposure-matched: as many reference draws as Uncertainty + Balance's last round had;
- GAL with each strategy of Table 1 (Random, Uncertainty, Uncertainty + Balance, Oracle + Balance) and
  with the separate balance scheme (`gal.loop.training_terms`);

evaluates every round on the world's test prompts, and writes the table (mean and 95% bootstrap interval
over subjects and seeds), each row's TXT-ALN above the frontier at equal IMG-ALN, and a Figure-5 plot with
the frontier drawn as a curve. The oracle is a simulated person (`gal.miniature.judge`), not the CLIP
scorer. Every run is a resumable `gal run` folder, so an interrupted bench picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from gal.config import N_EVAL, Config
from gal.miniature import judge as judges
from gal.miniature import world
from gal.storage import folder_in_place, write_png, write_text
from gal.suite import TABLE1, Row

# Table 1's rows (the baseline is round 1, which every row shares), then the bench's own
ROWS = TABLE1[1:] + [
    Row("separate", "Uncertainty + separate balance", "uncertainty", "separate"),
    Row("guidance2", "Uncertainty + Balance, query guidance 2", "uncertainty", "paper", {"query_guidance": 2.0}),
    # picks that keep the subject (`gal run --pick`), at a real weight: the added images must be good to be worth it
    Row("pick-kept-off", "Uncertainty, kept-subject pick", "uncertainty", "off", {"pick": "kept"}),
    Row("pick-identity-off", "Uncertainty, identity pick", "uncertainty", "off", {"pick": "identity"}),
    Row("pick-identity-separate", "Uncertainty + separate balance, identity pick", "uncertainty", "separate",
        {"pick": "identity"}),
    # gal's object default (gal/composite.py), through `gal run` itself: the composite probe's winner made an option
    Row("composite", "Uncertainty, composites (gal's object default)", "uncertainty", "off", {"added": "composite"}),
]
# Diagnostics a user does not have: after round 1, the world's own renders of the subject in the anchors'
# contexts replace the added images (three in GAL's top-k directions, Eq. 10 set aside; or one per anchor), then
# round 2 trains with them. The ceiling of what any pick can reach at that number of added images.
PERFECT = {"perfect3-off": 3, "perfect3-paper": 3, "perfect3-separate": 3,
           "perfect18-off": 18, "perfect18-paper": 18, "perfect18-separate": 18}
_WEIGHTS = {"off": "weight 1", "paper": "weight Δ", "separate": "separate"}
PERFECT_ROWS = [Row(key, f"Perfect images x{n}, {_WEIGHTS[key.split('-')[1]]} (diagnostic)", "human", key.split("-")[1])
                for key, n in PERFECT.items()]
# A probe of the generation side: the subject cut from the user's own references (by their masks, which gal already
# reads: `NAME.mask.png`) and pasted onto a picture of the anchor, so that an added image keeps the subject by
# construction and follows the anchor as far as its picture does: the round's own query samples, or the base model's
# samples of the anchor in plain words (it was never fine-tuned on the references, so it does not copy them). GAL's
# top-k directions (Eq. 10 set aside) or every direction; of each, the composite the scorer finds closest to its
# anchor (s_a). "clear": the base model's samples with their own object cleared first where the subject goes (its
# outline grown, filled from around: `composite.paste(clear=...)`), so that no other object shows through the
# subject's holes or round its edge. "restyle": where the anchor states a style, the cleared composite is then redrawn
# by the base model a little way (img2img), since a pasted subject is always flat ("restyle-noclear": the same without
# clearing). The probe that chose gal/composite.py's steps; `gal run --added composite` is its "restyle", the row
# "composite" runs it through `gal run` itself.
COMPOSITE = {"composite3-off": (3, "query"), "composite18-off": (18, "query"), "composite18-separate": (18, "query"),
             "composite3-base-off": (3, "base"), "composite18-base-off": (18, "base"),
             "composite3-clear-off": (3, "clear"), "composite18-clear-off": (18, "clear"),
             "composite3-restyle-off": (3, "restyle"), "composite18-restyle-off": (18, "restyle"),
             "composite18-restyle-noclear-off": (18, "restyle-noclear")}
_ON = {"query": "", "base": " on the base model's samples", "clear": " on the base model's samples, cleared",
       "restyle": " on the base model's samples, cleared, restyled", "restyle-noclear": " on the base model's samples, restyled"}
COMPOSITE_ROWS = [Row(key, f"Composites x{n}{_ON[on]}, {_WEIGHTS[key.split('-')[-1]]} (probe)", "human",
                      key.split("-")[-1]) for key, (n, on) in COMPOSITE.items()]
TWO_ROUNDS = {r.name for r in PERFECT_ROWS + COMPOSITE_ROWS}  # rows that stop after round 2: no round to choose
BASELINE = TABLE1[0].name  # round 1: the default step count
FEWER = "DreamBooth, fewer steps"
SCALED = "DreamBooth, LoRA scale"  # round 1's LoRA turned down at inference: the cheapest control of all
EXPOSURE = "DreamBooth, exposure-matched"
FRONTIER = (0.125, 0.25, 0.5, 0.75)  # shares of the default step count; 1x is the baseline
SCALES = (0.25, 0.5, 0.75)  # LoRA scales of the 1x DreamBooth; 1 is the baseline
ROW_KEYS = ["frontier", "scale", "exposure"] + [r.key for r in ROWS + PERFECT_ROWS + COMPOSITE_ROWS]
_PAPER = Config()  # the paper's round budget and m (gal run's defaults), and its evaluation's n
FULL = {"subjects": ["mosaic", "neon", "twotone_star", "spotted_ring"], "seeds": [0, 1, 2], "rounds": _PAPER.rounds,
        "m": _PAPER.m, "n": N_EVAL}
# --quick: one style, one object, shorter fine-tunes (the full bench keeps the paper's 500 / 800 steps)
QUICK = {"subjects": ["mosaic", "twotone_star"], "seeds": [0], "rounds": 2, "m": 4, "n": 1,
         "train_steps": {"style": 300, "object": 500}}


def _quiet(*_args, **_kwargs) -> None:
    pass


def oracle_picks(run_dir: Path, judge: judges.Judge, subject: world.Subject, k: int) -> list[tuple[int, int]]:
    """What the simulated person accepts in the pending round: one acceptable image (`judge.acceptable`:
    subject shown, prompt followed but for one detail; a fully faithful one first) of each of up to k
    directions, the directions where acceptable images are rarest first."""
    from gal.ledger import Ledger
    from gal.review import pending_round

    ledger = Ledger(run_dir)
    try:
        r = pending_round(ledger)
        anchors = {a.idx: a for a in ledger.anchors()}
        by_anchor: dict[int, list] = {}
        for s in ledger.samples(r):
            by_anchor.setdefault(s.anchor_idx, []).append(s)
    finally:
        ledger.close()
    found = []
    for idx, samples in sorted(by_anchor.items()):
        wanted = judges.expected_scene(anchors[idx].template, subject)
        seen = judge.predict(np.stack([np.asarray(Image.open(run_dir / s.path).convert("RGB")) for s in samples]))
        good = sorted((len(judges.misses(v, wanted)), s.j, s) for s, v in zip(samples, seen) if judges.acceptable(v, wanted))
        if good:
            found.append((len(good) / len(samples), idx, good[0][2]))
    return [(s.anchor_idx, s.j) for _, _, s in sorted(found)[:k]]


def _to_fill(run_dir: Path, count: int, k: int):
    """The pending round's directions a diagnostic or probe fills: GAL's top-k by Ω (Eq. 6; Eq. 10 set aside), or
    every direction of the pool (`count` > k); returns the run's config, its anchors by index and each direction's
    samples."""
    from gal import strategy
    from gal.config import make_config
    from gal.ledger import Ledger
    from gal.review import pending_round

    ledger = Ledger(run_dir)
    try:
        r = pending_round(ledger)
        cfg = make_config({**ledger.get("config"), "out": str(run_dir)}, source=str(run_dir))
        anchors = {a.idx: a for a in ledger.anchors()}
        directions = ledger.directions(r)
        samples = ledger.samples(r)
    finally:
        ledger.close()
    rows = strategy.top_k([d["entropy"] for d in directions], k) if count <= k else range(len(directions))
    return cfg, anchors, [[s for s in samples if s.anchor_idx == directions[row]["anchor_idx"]] for row in rows]


def perfect_picks(run_dir: Path, subject: world.Subject, count: int, k: int) -> list[tuple[int, int]]:
    """The diagnostic's picks: of the directions to fill (`_to_fill`), each one's best sample by s_a, whose file is
    then replaced by the world's own render of the subject in the anchor's context (the render's seed is the
    sample's)."""
    from gal import strategy

    _, anchors, chosen = _to_fill(run_dir, count, k)
    picks = []
    for own in chosen:
        best = own[strategy.best_sample([s.sim_anchor for s in own])]
        scene = judges.expected_scene(anchors[best.anchor_idx].template, subject)
        write_png(run_dir / best.path, Image.fromarray(world.render(scene, best.seed % 2**31)))
        picks.append((best.anchor_idx, best.j))
    return picks


def composite_picks(run_dir: Path, subject: world.Subject, count: int, k: int, on: str = "query") -> list[tuple[int, int]]:
    """The composite probe's picks (`COMPOSITE`): of the directions to fill (`_to_fill`), each of the samples (`on`
    "query"), or the base model's image of the anchor in plain words from the same seed ("base"; "clear": with its
    object cleared where the subject goes; "restyle": cleared, then where the anchor names a style, img2img'd;
    "restyle-noclear": img2img'd without clearing), with the references' subject pasted in by their masks (reference
    j mod their number), scored by the run's scorer against the anchor (s_a); the best one's file is then replaced by
    its composite. The steps are gal/composite.py's, which `gal run --added composite` takes as "restyle"."""
    from gal import composite, strategy

    cfg, anchors, chosen = _to_fill(run_dir, count, k)
    flat = [s for own in chosen for s in own]
    texts = {s.path: anchors[s.anchor_idx].text for s in flat}
    if on == "query":
        from gal.score import ClipScorer

        pictures = [Image.open(run_dir / s.path) for s in flat]
        composer, scorer = None, ClipScorer(cfg.scorer)
    else:  # the base model, never fine-tuned: no checkpoint loaded
        from gal.components import Components
        from gal.generate import generate

        parts = Components(cfg, trains=False)
        pictures = [im for _, batch in generate(parts.pipe, [texts[s.path] for s in flat], [s.seed for s in flat],
                                                steps=cfg.steps, guidance=cfg.query_guidance, resolution=parts.resolution,
                                                batch_size=parts.gen_batch_size, autocast_dtype=parts.autocast_dtype)
                    for im in batch]
        composer = composite.Composer(parts.pipe, parts.scorer, parts.resolution, parts.gen_batch_size)
        scorer = parts.scorer
    cutouts = [composite.Subject(*c) for c in world.cutouts(subject.name)]
    clear = composite.clearing(np.asarray(pictures[0]).shape[0]) if on in ("clear", "restyle") else 0
    pasted = {s.path: composite.paste(np.asarray(im.convert("RGB")), cutouts[s.j % len(cutouts)], clear)
              for s, im in zip(flat, pictures)}
    if on.startswith("restyle"):
        styled = [s for s in flat if composite.names_a_style(anchors[s.anchor_idx].template)]  # "in dotted style"
        pasted.update(zip([s.path for s in styled], composer.restyle(
            [pasted[s.path] for s in styled], [texts[s.path] for s in styled], [s.seed for s in styled],
            steps=cfg.steps, guidance=cfg.query_guidance)))
    picks = []
    for own in chosen:
        s_a = scorer.similarity(scorer.image_features([pasted[s.path] for s in own]), [texts[own[0].path]])[:, 0]
        best = own[strategy.best_sample(s_a.numpy())]
        write_png(run_dir / best.path, Image.fromarray(pasted[best.path]))
        picks.append((best.anchor_idx, best.j))
    return picks


Player = Callable[[Path, int], list[tuple[int, int]]]  # (run folder, k) -> the (anchor, j) a person accepts


def run_one(cfg, player: Player | None = None) -> None:
    """Run (or resume) one `gal run`; a person's strategy is played by `player` (without one, the run stops at
    its first review)."""
    from gal.ledger import Ledger
    from gal.loop import run
    from gal.review import pending_round

    while True:
        run(cfg, log=_quiet, force=True)  # force: a fork's strategy differs from its round 1's
        if cfg.strategy != "human" or player is None:
            return
        ledger = Ledger(Path(cfg.out))
        try:
            status, pending = ledger.get("status"), pending_round(ledger)
        finally:
            ledger.close()
        if pending is not None:
            picks = player(Path(cfg.out), cfg.k)
            ledger = Ledger(Path(cfg.out))
            try:
                ledger.submit_review(pending, picks)
            finally:
                ledger.close()
        if status == "finished":
            return


def evaluated(run_dir: Path, prompts: Path, n: int, subject: world.Subject, judge: judges.Judge | None,
              lora_scale: float = 1.0, rounds: list[int] | None = None, validation: bool = False) -> list[dict]:
    """Every round's CLIP-like metrics on the world's test prompts, and (with a judge) the ground truth of the same
    images: the share where the judge sees the subject (`kept`), every other stated attribute (`followed`), both
    (`faithful`); with `validation`, the round's metrics on the validation split too (what `gal show` chooses on)."""
    from gal.metrics import evaluate_splits

    found = evaluate_splits(run_dir, n=n, prompts_file=str(prompts), lora_scale=lora_scale, rounds=rounds, log=_quiet,
                            splits=("test", "validation") if validation else ("test",))
    out = found["test"]
    for r, v in zip(out, found.get("validation", [])):
        r["validation"] = {k: v[k] for k in ("txt_aln", "img_aln", "ovf")}
    if judge is not None:
        templates = [line for line in prompts.read_text().splitlines() if line.strip()]
        for r in out:
            files = sorted((run_dir / r.get("folder", f"eval/round-{r['round']}")).glob("p*-j*.png"))
            seen = judge.predict(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))
            wanted = [judges.expected_scene(templates[int(f.name[1:4])], subject) for f in files]
            verdicts = np.array([judges.verdict(v, w, subject) for v, w in zip(seen, wanted)])
            r.update(kept=float(verdicts[:, 0].mean()), followed=float(verdicts[:, 1].mean()),
                     faithful=float(verdicts.all(axis=1).mean()))
    return out


def query_quality(run_dir: Path, subject: world.Subject, judge: judges.Judge) -> list[dict]:
    """Per queried round, what the judge sees in the query (is there a good image to pick?): the share of samples
    that keep the subject and follow their anchor (`faithful`), the share of directions with at least one, and of
    the images the round added: the share faithful, kept and followed."""
    from gal.ledger import Ledger

    ledger = Ledger(run_dir)
    try:
        anchors = {a.idx: a for a in ledger.anchors()}
        out = []
        for r in ledger.rounds():
            samples = ledger.samples(r["round"])
            if not samples:
                continue

            def judged(items):  # (anchor index, image file) -> (kept, followed) per item
                seen = judge.predict(np.stack([np.asarray(Image.open(run_dir / path).convert("RGB")) for _, path in items]))
                return np.array([judges.verdict(v, judges.expected_scene(anchors[a].template, subject), subject)
                                 for v, (a, _) in zip(seen, items)]).reshape(-1, 2)

            v = judged([(s.anchor_idx, s.path) for s in samples])
            faithful = v.all(axis=1)
            per_direction = {}
            for s, f in zip(samples, faithful):
                per_direction[s.anchor_idx] = per_direction.get(s.anchor_idx, False) or bool(f)
            entry = {"round": r["round"], "samples_faithful": float(faithful.mean()),
                     "directions_with_faithful": float(np.mean(list(per_direction.values())))}
            added = ledger.added(r["round"])
            if added:
                a = judged([(t.anchor_idx, t.path) for t in added])
                entry.update(added=len(added), added_faithful=float(a.all(axis=1).mean()),
                             added_kept=float(a[:, 0].mean()), added_followed=float(a[:, 1].mean()))
            out.append(entry)
        return out
    finally:
        ledger.close()


def _fork(source: Path, out: Path) -> None:
    """Copy a run folder whole, or not at all."""
    import shutil

    with folder_in_place(out) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)


def subject_runs(out: Path, subject_name: str, seed: int, settings: dict, models: dict, rows: list[str],
                 judge: judges.Judge | None, work: Path, log=print) -> list[dict]:
    """Every run of one subject and seed (see the module's docstring), evaluated per round."""
    from gal.config import Config, resolved
    from gal.ledger import Ledger
    from gal.miniature.inputs import inputs

    subject = world.SUBJECTS[subject_name]
    fields, prompts = inputs(work / "inputs" / subject_name, subject_name)
    steps = settings.get("train_steps", {}).get(subject.kind)
    base = Config(**{**fields, "added": "samples", "rounds": settings["rounds"], "m": settings["m"], "seed": seed,
                     **({"train_steps": steps} if steps else {}), **models})  # the models' settings win
    settled = resolved(base)
    full_steps = settled.train_steps
    folder = out / subject_name / f"seed{seed}"
    entry = {"subject": subject_name, "kind": subject.kind, "seed": seed}
    results = []

    def record(row: str, run_dir: Path, lora_scale: float = 1.0, validation: bool = False, **extra) -> None:
        rounds = evaluated(run_dir, prompts, settings["n"], subject, judge, lora_scale,
                           rounds=[1] if row in (BASELINE, SCALED) else None, validation=validation)
        results.append({**entry, "row": row, **extra, "rounds": rounds})
        scalars = {k: v for k, v in extra.items() if not isinstance(v, list)}
        log(f"{subject_name} seed {seed} {row}{' ' + str(scalars) if scalars else ''}: " + ", ".join(
            f"R{r['round']} TXT {r['txt_aln']:.3f} IMG {r['img_aln']:.3f} OVF {r['ovf']:.2f}"
            + (f" kept {r['kept']:.2f} followed {r['followed']:.2f}" if "kept" in r else "") for r in rounds))

    # Round 1, shared: with a person as the strategy the run stops after the round's query, before
    # anything is chosen, which is where the rows part.
    first = folder / "round-1"
    run_one(dataclasses.replace(base, strategy="human", balance="paper", out=str(first)))
    record(BASELINE, first, train_steps=full_steps, share=1.0, scale=1.0)
    class_images = str(first / "class_images") if settled.prior else None  # generated once
    if "frontier" in rows:
        for share in FRONTIER:
            s = max(1, round(share * full_steps))
            run_dir = folder / f"dreambooth-{s}"
            run_one(dataclasses.replace(base, strategy="none", rounds=1, train_steps=s, class_images=class_images,
                                        out=str(run_dir)))
            record(FEWER, run_dir, train_steps=s, share=share)
    if "scale" in rows:
        for scale in SCALES:
            record(SCALED, first, lora_scale=scale, train_steps=full_steps, scale=scale)
    for row in ROWS + PERFECT_ROWS + COMPOSITE_ROWS:
        pastes = row.key in COMPOSITE or row.options.get("added") == "composite"
        if row.key not in rows or (pastes and subject.kind != "object"):  # a style has no region to paste
            continue
        run_dir = folder / row.key
        shared = "query_guidance" not in row.options  # round 1 is shared, its query too; else only its class images
        if shared and not run_dir.exists():
            _fork(first, run_dir)
        if row.key in PERFECT:
            player = lambda run_dir, k, n=PERFECT[row.key]: perfect_picks(run_dir, subject, n, k)  # noqa: E731
        elif row.key in COMPOSITE:
            player = lambda run_dir, k, c=COMPOSITE[row.key]: composite_picks(run_dir, subject, c[0], k, c[1])  # noqa: E731
        else:  # the simulated person plays the human rows
            player = lambda run_dir, k: oracle_picks(run_dir, judge, subject, k)  # noqa: E731
        cfg = dataclasses.replace(base, strategy=row.strategy, balance=row.balance, **row.options,
                                  class_images=None if shared else class_images, out=str(run_dir))
        two_rounds = row.key in PERFECT or row.key in COMPOSITE  # round 2 with the replaced images, then stop
        run_one(dataclasses.replace(cfg, rounds=2) if two_rounds else cfg, player)
        record(row.name, run_dir, validation=not two_rounds, diversity=diversity(run_dir),
               **({"query": query_quality(run_dir, subject, judge)} if judge is not None else {}))
    if "exposure" in rows and "balance" in rows:
        # as many reference draws as Uncertainty + Balance's last round: its T holds the references
        # and the added images, drawn alike
        ledger = Ledger(folder / "balance")
        try:
            T = ledger.training_set(max(r["round"] for r in ledger.rounds() if r["checkpoint"]))
        finally:
            ledger.close()
        s = max(1, round(full_steps * sum(t.added_in_round == 0 for t in T) / len(T)))
        run_dir = first if s == full_steps else folder / f"dreambooth-{s}"
        if s != full_steps:
            run_one(dataclasses.replace(base, strategy="none", rounds=1, train_steps=s, class_images=class_images,
                                        out=str(run_dir)))
        record(EXPOSURE, run_dir, train_steps=s, share=s / full_steps)
    return results


def diversity(run_dir: Path) -> list[dict]:
    """Per queried round: how different an anchor's m samples are (mean pairwise cosine distance of their
    scorer features, averaged over anchors) and the share of directions with 0 < β < 1, the only ones
    uncertainty sampling can choose (Eq. 6)."""
    from gal.ledger import Ledger

    ledger = Ledger(run_dir)
    try:
        out = []
        for r in ledger.rounds():
            samples = ledger.samples(r["round"])
            if not samples:
                continue
            by_anchor: dict[int, list] = {}
            for s in samples:
                by_anchor.setdefault(s.anchor_idx, []).append(s)
            spread, open_ = [], []
            for rows in by_anchor.values():
                f = np.stack([np.frombuffer(s.features, dtype=np.float16).astype(np.float64) for s in rows])
                f /= np.linalg.norm(f, axis=1, keepdims=True)
                sim = f @ f.T
                m = len(rows)
                spread.append(float((1 - sim)[~np.eye(m, dtype=bool)].mean()) if m > 1 else 0.0)
                beta = float(np.mean([s.overfit for s in rows]))
                open_.append(0.0 < beta < 1.0)
            out.append({"round": r["round"], "pairwise_distance": float(np.mean(spread)),
                        "open_directions": float(np.mean(open_))})
        return out
    finally:
        ledger.close()


def bench(out: Path, quick: bool = False, models: dict | None = None, judge_dir: Path | None = None,
          only: list[str] | None = None, seeds: list[int] | None = None, rows: list[str] | None = None,
          log=print) -> dict:
    from gal.errors import GalError
    from gal.locations import WEIGHTS, bundled
    from gal.miniature import SETTINGS

    settings = dict(QUICK if quick else FULL)
    for name, chosen, known in (("--only", only, settings["subjects"]), ("--seed", seeds, settings["seeds"]),
                                ("--rows", rows, ROW_KEYS)):
        unknown = [x for x in chosen or [] if x not in known]
        if unknown:
            raise GalError(f"{name} {unknown[0]}: not part of this bench; expected one of {', '.join(map(str, known))}")
    settings["subjects"] = [s for s in settings["subjects"] if not only or s in only]
    settings["seeds"] = [s for s in settings["seeds"] if seeds is None or s in seeds]
    settings["rows"] = [k for k in ROW_KEYS if rows is None or k in rows]
    if models is None and bundled() is None:
        raise GalError("gal bench: the bundled miniature model is not in this installation; train it with "
                       "`gal miniature train OUT` (docs/miniature.md)")
    models = models or SETTINGS
    # the simulated person: the human rows' oracle, and the judge of every row's ground-truth metrics
    if judge_dir is None:  # the bundled one, else one trained into the bench folder
        judge_dir = WEIGHTS / "judge" if (WEIGHTS / "judge" / "judge.safetensors").exists() else out / "judge"
    if not (judge_dir / "judge.safetensors").exists():
        log(f"training the simulated person into {judge_dir}")
        judges.train_judge(judge_dir, log=log)
    judge = judges.Judge(judge_dir)
    results = []
    start = time.time()
    for seed in settings["seeds"]:  # seed-major: an interrupted bench has every subject's first seeds
        for subject in settings["subjects"]:
            results += subject_runs(out, subject, seed, settings, models, settings["rows"], judge, out, log)
    summary = {"settings": settings, "results": results, "minutes": round((time.time() - start) / 60, 1)}
    if not only and seeds is None:  # a part of a bench leaves the whole bench's summary alone
        write_text(out / "bench.json", json.dumps(summary, indent=1))
    return summary


def main(out: Path, *, quick: bool = False, only: list[str] | None = None, seeds: list[int] | None = None,
         rows: list[str] | None = None, results: str | None = None, summary: str | None = None,
         merge: list[str] | None = None, base: str | None = None, scorer: str | None = None, judge: str | None = None,
         command: str = "gal bench", log=print) -> dict:
    """`gal bench`: run (or resume) the bench's part that is asked for, write its summary, merge other benches'
    runs into it and write the results page. `base`, `scorer`, `judge`: other models (tests: tiny ones, few steps)."""
    import os
    import platform

    from gal.errors import GalError

    models = {"base": base, "scorer": scorer, "steps": 3, "train_steps": 10} if base else None
    found = bench(out, quick=quick, models=models, judge_dir=Path(judge) if judge else None, only=only, seeds=seeds,
                  rows=rows, log=log)
    if summary:  # also for a part of a bench (--only, --seed), e.g. to --merge it later
        write_text(Path(summary), json.dumps(found, indent=1))
    for path in merge or []:
        try:
            found = merge_summaries(found, json.loads(Path(path).read_text()), path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise GalError(f"--merge {path}: cannot read it as a bench summary ({e.__class__.__name__}); "
                           "expected a bench.json written by gal bench") from None
    if results:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        write_results(found, Path(results), command, machine)
    return found


# Rows of earlier benches under the names they have now; their Random had the weight Δ, not the paper's weight 1
RENAMED = {"Oracle + Balance": "Human + Balance", "Random": "Random, weight Δ (an earlier bench's)"}


def merge_summaries(summary: dict, other: dict, source: str) -> dict:
    """`summary` with the runs of another bench's summary (e.g. an earlier bench with rows not run here)
    that it lacks, by subject, seed and row; each marked with its source. An earlier bench's rows are renamed
    (`RENAMED`) where the row's name changed; its runs have no judge's metrics."""
    judged = any("kept" in r for e in other["results"] for r in e["rounds"])
    if not judged:  # a bench from before the renames (and before the judge's metrics)
        other = {**other, "results": [{**e, "row": RENAMED.get(e["row"], e["row"])} for e in other["results"]]}
    have = {(e["subject"], e["seed"], e["row"]) for e in summary["results"]}
    extra = [{**e, "source": source} for e in other["results"] if (e["subject"], e["seed"], e["row"]) not in have]
    settings = dict(summary.get("settings", {}))  # the tables' subjects, seeds and rows: those of both
    for key in ("subjects", "seeds", "rows"):
        if key in settings or key in other.get("settings", {}):
            settings[key] = list(dict.fromkeys(settings.get(key, []) + other.get("settings", {}).get(key, [])))
    return {**summary, "settings": settings, "results": summary["results"] + extra,
            "merged": summary.get("merged", []) + [source]}


# ---- the analysis: the frontier, distances to it, intervals ------------------------------------------

# The controls a user has without GAL: train less (DreamBooth at fewer steps) or turn the 1x LoRA down at inference
CONTROLS = {"steps": (BASELINE, FEWER), "both": (BASELINE, FEWER, SCALED)}
# Two readings of every image: the CLIP-like scorer's (the paper's metrics) and the judge's ground truth
SPACES = {"clip": ("img_aln", "txt_aln", "ovf"), "judge": ("kept", "followed", "faithful")}
# Which Table 1 row each weighting's ceiling and picks are measured against (the paper's pick, same weight)
PAPER_PICK = {"off": "Uncertainty", "paper": "Uncertainty + Balance", "separate": "Uncertainty + separate balance"}


def envelope(points: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """The frontier's upper envelope: the (x, y, z) points (IMG-ALN, TXT-ALN, OVF) no other point beats on both
    x and y, by x."""
    keep = [p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q[:2] != p[:2] for q in points)]
    return sorted(set(keep))


def on_frontier(points: list[tuple[float, float, float]], x: float) -> tuple[float, float]:
    """y and z of the frontier at x, linear between envelope points; outside their range, the nearest end's values
    (generous to rows beyond the last point, which no control reached)."""
    env = envelope(points)
    xs = [p[0] for p in env]
    return float(np.interp(x, xs, [p[1] for p in env])), float(np.interp(x, xs, [p[2] for p in env]))


def last_round(entry: dict) -> dict:
    return entry["rounds"][-1]


def round_two(entry: dict) -> dict:
    """Round 2, where the diagnostics' ceilings are; a run that stopped at round 1 keeps its model."""
    return entry["rounds"][min(1, len(entry["rounds"]) - 1)]


def recommended_on(split: str):
    """The round `gal show` recommends (`gal.keep`), chosen on the test prompts' metrics (`test`: the same prompts
    the metric is then read on) or on the validation split's (`validation`: the anchors no round added an image
    for); a run without validation metrics falls back to the test prompts."""
    from gal.keep import recommended_round

    def pick(entry: dict) -> dict:
        rounds = entry["rounds"]
        rows = [r["validation"] | {"round": r["round"]} for r in rounds] if split == "validation" and all(
            "validation" in r for r in rounds) else rounds
        n = recommended_round(rows)[0]
        return next(r for r in rounds if r["round"] == n)
    return pick


def distances(summary: dict, pick=last_round, space: str = "clip", control: str = "both") -> list[dict]:
    """Every run's (subject, seed, row) y above the control frontier of its subject and seed at equal x, and its z
    above the frontier's there (`SPACES`: TXT-ALN at equal IMG-ALN and OVF; the judge's prompt-followed share at
    equal subject-kept share and the faithful share); `pick` chooses which round of a run counts."""
    x, y, z = SPACES[space]
    frontiers: dict[tuple, list] = {}
    for e in summary["results"]:
        if e["row"] in CONTROLS[control] and e["rounds"] and x in e["rounds"][0]:
            r = e["rounds"][0]
            frontiers.setdefault((e["subject"], e["seed"]), []).append((r[x], r[y], r[z]))
    out = []
    for e in summary["results"]:
        points = frontiers.get((e["subject"], e["seed"]))
        if not points or not e["rounds"] or x not in e["rounds"][0]:
            continue
        r = pick(e)
        at_y, at_z = on_frontier(points, r[x])
        out.append({**{k: e[k] for k in ("subject", "kind", "seed", "row")}, "round": r["round"],
                    "above": r[y] - at_y, "z_above": r[z] - at_z, "ovf_above": r[z] - at_z})
    return out


def interval(values, n: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval over runs (subjects x seeds)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        m = float(values.mean()) if len(values) else float("nan")
        return m, m, m
    means = np.random.default_rng(seed).choice(values, size=(n, len(values))).mean(axis=1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def row_names(summary: dict) -> list[str]:
    present = {e["row"] for e in summary["results"]}
    return [n for n in [BASELINE, EXPOSURE] + [r.name for r in ROWS + PERFECT_ROWS + COMPOSITE_ROWS] if n in present]


def table(summary: dict, pick=last_round) -> list[dict]:
    """Table 1's layout plus the distances to the frontier: per row and kind, the mean and interval over subjects
    and seeds of the round `pick` chooses (the DreamBooth rows: their only round), in both metric spaces."""
    dist = {(space, control): distances(summary, pick, space, control)
            for space in SPACES for control in CONTROLS}
    rows = []
    for name in row_names(summary):
        entry = {"row": name}
        for kind in ("object", "style", "all"):
            runs = [e for e in summary["results"] if e["row"] == name and e["rounds"] and kind in ("all", e["kind"])]
            entry[f"{kind}_runs"] = len(runs)
            for metric in SPACES["clip"] + SPACES["judge"]:
                values = [pick(e)[metric] for e in runs if metric in pick(e)]
                entry[f"{kind}_{metric}"] = interval(values) if values else None
            for (space, control), found in dist.items():
                d = [x for x in found if x["row"] == name and kind in ("all", x["kind"])]
                suffix = "" if (space, control) == ("clip", "both") else f"_{space}" if control == "both" else f"_{space}_{control}"
                entry[f"{kind}_above{suffix}"] = interval([x["above"] for x in d]) if d else None
                entry[f"{kind}_z_above{suffix}"] = interval([x["z_above"] for x in d]) if d else None
        entry["object_ovf_above"], entry["all_ovf_above"] = entry["object_z_above"], entry["all_z_above"]
        rows.append(entry)
    return rows


def paired(summary: dict, a: str, b: str, pick=last_round, space: str = "clip", kind: str = "all",
           pick_b=None) -> tuple[float, float, float] | None:
    """Row a's distance above the frontier (both controls) minus row b's, per subject and seed: mean and interval.
    `pick_b`: the round of row b (default: `pick`)."""
    mine = {(x["subject"], x["seed"]): x["above"] for x in distances(summary, pick, space)
            if x["row"] == a and kind in ("all", x["kind"])}
    other = {(x["subject"], x["seed"]): x["above"] for x in distances(summary, pick_b or pick, space)
             if x["row"] == b and kind in ("all", x["kind"])}
    diffs = [v - other[key] for key, v in mine.items() if key in other]
    return interval(diffs) if diffs else None


def gap_closed(summary: dict, row: str, weight: str, space: str = "clip", kind: str = "object",
               count: int = 3) -> dict | None:
    """At round 2 (`count` added images), how much of the distance between the paper's pick and perfect images at
    the same weight and number a row closes: its gain over the paper's pick, the ceiling's gain, and their ratio (of
    the means)."""
    base, ceiling = PAPER_PICK[weight], f"Perfect images x{count}, {_WEIGHTS[weight]} (diagnostic)"
    gain = paired(summary, row, base, round_two, space, kind)
    top = paired(summary, ceiling, base, round_two, space, kind)
    if gain is None or top is None:
        return None
    return {"gain": gain, "ceiling": top, "closed": gain[0] / top[0] if abs(top[0]) > 1e-9 else float("nan")}


def figure(summary: dict, path: Path) -> None:
    """Figure 5: TXT-ALN against IMG-ALN per round, mean over runs (a run that stopped counts with its
    last round from then on), one arrowed line per strategy; the two controls (fewer steps, a lower LoRA scale) as
    curves; the judge's reading of the same images below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 2, figsize=(10, 8.4))
    for axes, (space, (x, y, _)) in zip(grid, SPACES.items()):
        for ax, kind in zip(axes, ("object", "style")):
            for control, key, style in ((FEWER, "share", "--s"), (SCALED, "scale", ":^")):
                points = [e for e in summary["results"] if e["kind"] == kind and e["row"] in (BASELINE, control)
                          and e["rounds"] and x in e["rounds"][0]]
                shares = sorted({e.get(key, 1.0) for e in points})
                if len(shares) > 1:
                    xs = [np.mean([e["rounds"][0][x] for e in points if e.get(key, 1.0) == s]) for s in shares]
                    ys = [np.mean([e["rounds"][0][y] for e in points if e.get(key, 1.0) == s]) for s in shares]
                    ax.plot(xs, ys, style, color="0.45", ms=4, label=f"{control}" if space == "clip" else None)
                    for px, py, s in zip(xs, ys, shares):
                        ax.annotate(f"{s:g}{'x' if key == 'share' else ''}", (px, py), textcoords="offset points",
                                    xytext=(3, 3), fontsize=6, color="0.35")
            for name in row_names(summary)[1:]:
                runs = [e["rounds"] for e in summary["results"] if e["kind"] == kind and e["row"] == name and e["rounds"]
                        and x in e["rounds"][0]]
                if not runs:
                    continue
                depth = max(len(r) for r in runs)  # a run that stopped early keeps its last round's model
                xs = [float(np.mean([r[min(i, len(r) - 1)][x] for r in runs])) for i in range(depth)]
                ys = [float(np.mean([r[min(i, len(r) - 1)][y] for r in runs])) for i in range(depth)]
                line, = ax.plot(xs, ys, "-o", ms=3, label=name if space == "clip" else None,
                                alpha=0.6 if "diagnostic" in name else 1.0)
                if depth > 1:
                    ax.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-2], ys[-2]),
                                arrowprops=dict(arrowstyle="->", color=line.get_color()))
            ax.set_title(f"{kind}, {'CLIP-like scorer' if space == 'clip' else 'judge (ground truth)'}")
            ax.set_xlabel({"img_aln": "IMG-ALN", "kept": "subject kept (judge)"}[x])
            ax.set_ylabel({"txt_aln": "TXT-ALN", "followed": "prompt followed (judge)"}[y])
            ax.ticklabel_format(useOffset=False)
    handles, labels = grid[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=3)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


NOTES = "<!-- notes: what follows is kept when `gal bench --results` rewrites this file -->"


def _cell(v) -> str:
    return "–" if v is None else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def _signed(v) -> str:
    return "–" if v is None else f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]" + (" **real**" if v[1] > 0 or v[2] < 0 else "")


def write_results(summary: dict, path: Path, command: str, machine: str) -> None:
    units = sorted({(e["subject"], e["seed"]) for e in summary["results"]})
    names = row_names(summary)
    gal_rows = [n for n in names if n not in (BASELINE, EXPOSURE)]
    lines = [
        "# Results on the miniature world", "",
        f"Command: `{command}`  ", f"Machine: {machine}  ", f"Date: {time.strftime('%Y-%m-%d')}  ",
        f"Settings: {json.dumps(summary['settings'])}; {len(units)} (subject, seed) pairs; this invocation "
        f"took {summary['minutes']} minutes (runs already on disk are resumed, not redone)." +
        "".join(f" Rows not run here come from `{m}`." for m in summary.get("merged", [])), "",
        "Every figure is a mean over runs (subjects x seeds) with its 95% bootstrap interval; **real** marks an "
        "interval that excludes 0. *Above*: a row's TXT-ALN minus the controls' TXT-ALN at the same IMG-ALN, "
        "where the controls are the two things a user can do without GAL, for the same subject and seed: DreamBooth "
        "at 1/8, 1/4, 1/2, 3/4 and 1x the steps, and the 1x LoRA at scale 0.25, 0.5 and 0.75 (the upper envelope of "
        "all nine points, linear in between). The judge's columns read the same test images by the world's ground "
        "truth: *kept*, the share where the subject is there (the object's instance shape, the held-out style); "
        "*followed*, the share where every other stated attribute is; *above* there, followed above the controls' "
        "at the same kept share. Rows marked diagnostic use what a user does not have.", "",
        "## Last round of each run", "",
        "| Models | Runs | Object TXT-ALN ↑ | Object IMG-ALN ↑ | Object OVF ↓ | Object above ↑ | Object above, judge ↑ "
        "| Style TXT-ALN ↑ | Style IMG-ALN ↑ | Style OVF ↓ | Style above ↑ | Style above, judge ↑ | All: above ↑ "
        "| All: above fewer steps only ↑ | All: OVF above ↓ | All: above, judge ↑ |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in table(summary):
        cells = [_cell(e[f"object_{m}"]) for m in SPACES["clip"]] + [_signed(e["object_above"]), _signed(e["object_above_judge"])]
        cells += [_cell(e[f"style_{m}"]) for m in SPACES["clip"]] + [_signed(e["style_above"]), _signed(e["style_above_judge"])]
        cells += [_signed(e["all_above"]), _signed(e["all_above_clip_steps"]), _signed(e["all_ovf_above"]),
                  _signed(e["all_above_judge"])]
        lines.append(f"| {e['row']} | {e['all_runs']} | " + " | ".join(cells) + " |")
    lines += ["", "The judge's shares (last round):", "",
              "| Models | Object kept ↑ | Object followed ↑ | Object faithful ↑ | Style kept ↑ | Style followed ↑ | Style faithful ↑ |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for e in table(summary):
        lines.append(f"| {e['row']} | " + " | ".join(_cell(e[f"{k}_{m}"]) for k in ("object", "style")
                                                     for m in SPACES["judge"]) + " |")
    # the ceilings: round 2, three added images
    lines += ["", "## Round 2: the added images against perfect ones", "",
              "Round 2 of each row (three images added after round 1; a run that stopped at round 1 counts with it), "
              "above the controls. The diagnostics replace GAL's three picks by the world's own renders of the "
              "subject in the same anchors' contexts (x3), or add one for every anchor (x18).", "",
              "| Models | Object above ↑ | Object above, judge ↑ | Style above ↑ | Style above, judge ↑ | All: above ↑ |",
              "| --- | --- | --- | --- | --- | --- |"]
    for e in table(summary, round_two):
        if e["row"] in gal_rows:
            lines.append(f"| {e['row']} | {_signed(e['object_above'])} | {_signed(e['object_above_judge'])} | "
                         f"{_signed(e['style_above'])} | {_signed(e['style_above_judge'])} | {_signed(e['all_above'])} |")
    lines += ["", "Share of the gap to perfect images each pick closes (round 2, same weight, paired by subject and seed; "
              "*closed* is the ratio of the mean gains):", "",
              "| Pick | Weight | Kind | Gain over the paper's pick ↑ | Perfect images' gain | Closed | Gain, judge ↑ | Perfect, judge | Closed, judge |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in ROWS + COMPOSITE_ROWS:
        if row.name not in names or row.balance not in PAPER_PICK or row.name == PAPER_PICK[row.balance] \
                or (row.strategy != "uncertainty" and row.key not in COMPOSITE):  # measured against the paper's pick
            continue
        count = COMPOSITE.get(row.key, (3,))[0]
        for kind in ("object", "style"):
            c, j = (gap_closed(summary, row.name, row.balance, space, kind, count) for space in SPACES)
            if c:
                lines.append(f"| {row.name} | {_WEIGHTS[row.balance]} | {kind} | {_signed(c['gain'])} | {_signed(c['ceiling'])} | "
                             f"{c['closed']:+.2f} | " + (f"{_signed(j['gain'])} | {_signed(j['ceiling'])} | {j['closed']:+.2f} |"
                                                        if j else "– | – | – |"))
    lines += ["", "## Paired differences", "", "*Above* (both controls, last round), same subject and seed, all runs:", "",
              "| Comparison | CLIP-like ↑ | Judge ↑ |", "| --- | --- | --- |"]
    for a in gal_rows:
        if a in TWO_ROUNDS:
            continue
        row = next(r for r in ROWS if r.name == a)
        for b in dict.fromkeys(["Uncertainty + Balance", PAPER_PICK.get(row.balance)]):
            if b and a != b and b in names:
                lines.append(f"| {a} − {b} | {_signed(paired(summary, a, b))} | {_signed(paired(summary, a, b, space='judge'))} |")
    lines += ["", "## Which round to keep, chosen without the test prompts", "",
              "*Above* (both controls) of the round `gal show` recommends (`gal.keep`: the best TXT-ALN among the rounds "
              "that keep 80% of round 1's IMG-ALN), chosen on the validation split (the anchors no round added an image "
              "for: disjoint from the test prompts) or, leaking, on the test prompts themselves; against the last round:", "",
              "| Models | Last round | Chosen on test prompts (leaks) | Chosen on validation | Validation − last | Validation, judge |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name in gal_rows:
        if name in TWO_ROUNDS:
            continue
        cells = [interval([x["above"] for x in distances(summary, p) if x["row"] == name])
                 for p in (last_round, recommended_on("test"), recommended_on("validation"))]
        judged = [x["above"] for x in distances(summary, recommended_on("validation"), "judge") if x["row"] == name]
        judge = interval(judged) if judged else None
        lines.append(f"| {name} | " + " | ".join(_signed(c) for c in cells) +
                     f" | {_signed(paired(summary, name, name, recommended_on('validation'), pick_b=last_round))} | {_signed(judge)} |")
    lines += ["", "## Is there a good image to pick?", "",
              "What the judge sees in each row's queries (all queried rounds): the share of samples that keep the subject "
              "and follow their anchor, the share of directions with at least one such sample, and of the images the "
              "row added: the share faithful, kept and followed.", "",
              "| Models | Kind | Samples faithful | Directions with one | Added: faithful | Added: kept | Added: followed |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in gal_rows:
        for kind in ("object", "style"):
            q = [r for e in summary["results"] if e["row"] == name and e["kind"] == kind for r in e.get("query", [])]
            if not q:
                continue
            added = [r for r in q if "added" in r]

            def mean(key, rows):
                return f"{np.mean([r[key] for r in rows]):.2f}" if rows else "–"
            lines.append(f"| {name} | {kind} | {mean('samples_faithful', q)} | {mean('directions_with_faithful', q)} | "
                         f"{mean('added_faithful', added)} | {mean('added_kept', added)} | {mean('added_followed', added)} |")
    other = {r.name: r.options["query_guidance"] for r in ROWS if "query_guidance" in r.options}  # own round 1
    lines += ["", "## Diversity of the queries", "",
              "Round 1, shared by every row but those with their own query guidance: mean pairwise cosine distance of an "
              "anchor's samples in the scorer's space, and the share of directions with 0 < β < 1.", "",
              "| Subject | Pairwise distance | Open directions |" + "".join(f" {n}: distance | open |" for n in other),
              "| --- | --- | --- |" + " --- | --- |" * len(other)]

    def mean_first(subject: str, rows) -> str:
        first = [e["diversity"][0] for e in summary["results"]
                 if e["subject"] == subject and e.get("diversity") and e["row"] in rows]
        return (f" {np.mean([d['pairwise_distance'] for d in first]):.3f} | "
                f"{np.mean([d['open_directions'] for d in first]):.2f} |") if first else " | |"

    shared = {r.name for r in ROWS} - set(other)
    for subject in summary["settings"]["subjects"]:
        lines.append(f"| {subject} |" + mean_first(subject, shared) + "".join(mean_first(subject, {n}) for n in other))
    lines += ["", "## Per subject", "", "Mean over seeds of the last round; rounds: how many rounds the runs had (Eq. 10, "
              "or a person accepting nothing, ends a run early); steps: DreamBooth's fine-tuning steps.", "",
              "| Subject | Models | Rounds / steps | TXT-ALN ↑ | IMG-ALN ↑ | OVF ↓ | Kept ↑ | Followed ↑ | Above ↑ | Above, judge ↑ |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    dist, dist_judge = distances(summary), distances(summary, space="judge")
    for subject in summary["settings"]["subjects"]:
        for name in [BASELINE, FEWER, SCALED, EXPOSURE] + [r.name for r in ROWS + PERFECT_ROWS + COMPOSITE_ROWS]:
            runs = [e for e in summary["results"] if e["subject"] == subject and e["row"] == name and e["rounds"]]
            key = {FEWER: "share", SCALED: "scale"}.get(name)
            groups = sorted({e.get(key, 0) for e in runs}) if key else [None]
            for share in groups:
                group = [e for e in runs if share is None or e.get(key) == share]
                if not group:
                    continue
                depth = ("/".join(str(e["train_steps"]) for e in group) if "train_steps" in group[0]
                         else "/".join(str(len(e["rounds"])) for e in group))
                seeds = {e["seed"] for e in group}
                above = [x["above"] for x in dist if x["subject"] == subject and x["row"] == name and x["seed"] in seeds]
                judged = [x["above"] for x in dist_judge if x["subject"] == subject and x["row"] == name and x["seed"] in seeds]
                label = f"{name} ({share:g}{'x' if key == 'share' else ''})" if share is not None else name
                values = [np.mean([last_round(e)[m] for e in group]) if all(m in last_round(e) for e in group) else None
                          for m in SPACES["clip"] + SPACES["judge"][:2]]
                control = name in (BASELINE, FEWER, SCALED)
                lines.append(f"| {subject} | {label} | {depth} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in values) +
                             (f" | {np.mean(above):+.3f}" if above and not control else " |") +
                             (f" | {np.mean(judged):+.3f} |" if judged and not control else " | |"))
    figure(summary, path.with_name(path.stem + "-figure5.png"))
    lines += ["", "Figure 5's layout: TXT-ALN against IMG-ALN per round (top), and the judge's prompt-followed against "
              "subject-kept shares of the same images (bottom), mean over subjects and seeds (a run that stopped early "
              "counts with its last round in the later ones); the dashed curve is DreamBooth at 1/8 to 1x the steps, the "
              "dotted one the 1x LoRA at scales 0.25 to 1.", "", f"![TXT-ALN against IMG-ALN per round]({path.stem}-figure5.png)", ""]
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES):] if NOTES in old else NOTES + "\n"  # a person's reading of the results stays
    write_text(path, "\n".join(lines) + "\n" + notes)
