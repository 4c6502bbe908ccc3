"""`gal bench` on the miniature world: the paper's Table 1 and Figure 5, and the question every practitioner
asks first: does GAL beat simply training less?

For each held-out subject and seed it runs (`gal.miniature.rows` names each row)

- DreamBooth at the default step count (round 1, which every GAL row shares: it runs once and each row's
  run starts from a copy) and at 1/8, 1/4, 1/2 and 3/4 of it, and round 1's LoRA at lower scales: the controls
  a user has without GAL;
- DreamBooth exposure-matched: as many reference draws as Uncertainty + Balance's last round had;
- GAL with each strategy of Table 1 (Random, Uncertainty, Uncertainty + Balance, Oracle + Balance) and the
  bench's own rows (the separate balance scheme, picks, diagnostics and probes);

and evaluates every round on the world's test prompts, by the CLIP-like scorer and by the simulated person's
ground truth (`gal.miniature.judge`, also the oracle of the human rows: `gal.miniature.players`). The summary
goes to `gal.miniature.results` for the tables and Figure 5. Every run is a resumable `gal run` folder, so an
interrupted bench picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gal.config import N_EVAL, Config
from gal.miniature import judge as judges
from gal.miniature import players, world
from gal.miniature.results import merge_summaries, read_summary, write_results
from gal.miniature.rows import (
    BASELINE,
    COMPOSITE,
    COMPOSITE_ROWS,
    EXPOSURE,
    FEWER,
    MASKED,
    MASKED_FEWER,
    MASKED_LOSS,
    MASKED_SCALED,
    PERFECT,
    PERFECT_ROWS,
    QUICK_ROWS,
    ROW_KEYS,
    ROWS,
    SCALED,
    TWO_ROUNDS,
)
from gal.storage import folder_in_place, write_text
from gal.suite import TABLE1

FRONTIER = (0.125, 0.25, 0.5, 0.75)  # shares of the default step count; 1x is the baseline
SCALES = (0.25, 0.5, 0.75)  # LoRA scales of the 1x DreamBooth; 1 is the baseline
_PAPER = Config()  # the paper's round budget and m (gal run's defaults), and its evaluation's n
FULL = {"subjects": ["mosaic", "neon", "twotone_star", "spotted_ring"], "seeds": [0, 1, 2], "rounds": _PAPER.rounds,
        "m": _PAPER.m, "n": N_EVAL}
# --quick, a smoke test of the machinery (minutes on a CPU): one style, one seed, two rounds, few samples, short
# fine-tunes (the full bench keeps the paper's 500 / 800 steps)
QUICK = {"subjects": ["mosaic"], "seeds": [0], "rounds": 2, "m": 2, "n": 1, "train_steps": {"style": 100}}


def _quiet(*_args, **_kwargs) -> None:
    pass


def run_one(cfg, player: players.Player | None = None) -> None:
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
        r["validation"] = {k: v[k] for k in ("txt_aln", "img_aln", "ovf", "img_aln_subject") if k in v}
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
    from gal.ledger import Ledger
    from gal.miniature.inputs import inputs
    from gal.resolve import settle

    subject = world.SUBJECTS[subject_name]
    fields, prompts = inputs(work / "inputs" / subject_name, subject_name)
    steps = settings.get("train_steps", {}).get(subject.kind)
    base = Config(**{**fields, "rounds": settings["rounds"], "m": settings["m"], "seed": seed,
                     **({"train_steps": steps} if steps else {}), **models})  # the models' settings win
    dreambooth = TABLE1[0].added  # round 1 and the controls add nothing: they record the paper's baseline row's
    settled = settle(base).config
    full_steps = settled.train_steps
    folder = out / subject_name / f"seed{seed}"
    entry = {"subject": subject_name, "kind": subject.kind, "seed": seed}
    results = []

    def record(row: str, run_dir: Path, lora_scale: float = 1.0, validation: bool = False, **extra) -> None:
        rounds = evaluated(run_dir, prompts, settings["n"], subject, judge, lora_scale,
                           rounds=[1] if row in (BASELINE, SCALED, MASKED, MASKED_SCALED) else None, validation=validation)
        results.append({**entry, "row": row, **extra, "rounds": rounds})
        scalars = {k: v for k, v in extra.items() if not isinstance(v, list)}
        log(f"{subject_name} seed {seed} {row}{' ' + str(scalars) if scalars else ''}: " + ", ".join(
            f"R{r['round']} TXT {r['txt_aln']:.3f} IMG {r['img_aln']:.3f} OVF {r['ovf']:.2f}"
            + (f" kept {r['kept']:.2f} followed {r['followed']:.2f}" if "kept" in r else "") for r in rounds))

    # Round 1, shared: with a person as the strategy the run stops after the round's query, before
    # anything is chosen, which is where the rows part.
    first = folder / "round-1"
    run_one(dataclasses.replace(base, strategy="human", balance="paper", added=dreambooth, out=str(first)))
    record(BASELINE, first, train_steps=full_steps, share=1.0, scale=1.0)
    class_images = str(first / "class_images") if settled.prior else None  # generated once
    if FEWER in rows:
        for share in FRONTIER:
            s = max(1, round(share * full_steps))
            run_dir = folder / f"dreambooth-{s}"
            run_one(dataclasses.replace(base, strategy="none", rounds=1, train_steps=s, class_images=class_images,
                                        added=dreambooth, out=str(run_dir)))
            record(FEWER, run_dir, train_steps=s, share=share)
    if SCALED in rows:
        for scale in SCALES:
            record(SCALED, first, lora_scale=scale, train_steps=full_steps, scale=scale)
    # the controls with masked loss (objects: a style has no mask), from their own round 1
    masked_first = folder / "round-1-masked"
    if subject.kind == "object" and {MASKED, MASKED_FEWER, MASKED_SCALED, "composite-masked"} & set(rows):
        run_one(dataclasses.replace(base, strategy="human", balance="paper", added=dreambooth, class_images=class_images,
                                    out=str(masked_first), **MASKED_LOSS))
        if MASKED in rows:
            record(MASKED, masked_first, train_steps=full_steps, share=1.0, scale=1.0)
        if MASKED_FEWER in rows:
            for share in FRONTIER:
                s = max(1, round(share * full_steps))
                run_dir = folder / f"dreambooth-masked-{s}"
                run_one(dataclasses.replace(base, strategy="none", rounds=1, train_steps=s, class_images=class_images,
                                            added=dreambooth, out=str(run_dir), **MASKED_LOSS))
                record(MASKED_FEWER, run_dir, train_steps=s, share=share)
        if MASKED_SCALED in rows:
            for scale in SCALES:
                record(MASKED_SCALED, masked_first, lora_scale=scale, train_steps=full_steps, scale=scale)
    for row in ROWS + PERFECT_ROWS + COMPOSITE_ROWS:
        pastes = row.key in COMPOSITE or row.added == "composite"
        masks = pastes or "masked_loss" in row.options
        if row.key not in rows or (masks and subject.kind != "object"):  # a style has no region to paste or mask
            continue
        run_dir = folder / row.key
        shared = "query_guidance" not in row.options  # round 1 is shared, its query too; else only its class images
        if shared and not run_dir.exists():
            _fork(masked_first if "masked_loss" in row.options else first, run_dir)
        if row.key in PERFECT:
            player = lambda run_dir, k, n=PERFECT[row.key]: players.perfect_picks(run_dir, subject, n, k)  # noqa: E731
        elif row.key in COMPOSITE:
            player = lambda run_dir, k, c=COMPOSITE[row.key]: players.composite_picks(run_dir, subject, c[0], k, c[1])  # noqa: E731
        else:  # the simulated person plays the human rows
            player = lambda run_dir, k: players.oracle_picks(run_dir, judge, subject, k)  # noqa: E731
        cfg = dataclasses.replace(base, strategy=row.strategy, balance=row.balance, added=row.added, **row.options,
                                  class_images=None if shared else class_images, out=str(run_dir))
        two_rounds = row.key in TWO_ROUNDS  # round 2 with the replaced images, then stop
        run_one(dataclasses.replace(cfg, rounds=2) if two_rounds else cfg, player)
        record(row.key, run_dir, validation=not two_rounds, diversity=diversity(run_dir),
               **({"query": query_quality(run_dir, subject, judge)} if judge is not None else {}))
    if EXPOSURE in rows and "balance" in rows:
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
                                        added=dreambooth, out=str(run_dir)))
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


def bench(out: Path, quick: bool = False, settings: dict | None = None, models: dict | None = None,
          judge_dir: Path | None = None, only: list[str] | None = None, seeds: list[int] | None = None,
          rows: list[str] | None = None, log=print) -> dict:
    """Run (or resume) the bench into `out` and return its summary (also `out/bench.json` for a whole bench).

    settings: subjects, seeds, rounds, m, n and the fine-tunes' steps per kind (default `FULL`; `quick`: `QUICK`).
    models: the `Config` fields of the models to bench (default: the bundled world's, `gal.miniature.SETTINGS`),
        e.g. `{"base": "OUT/pipeline", "scorer": "OUT/clip"}` for a world retrained with `gal miniature train OUT`.
    judge_dir: the simulated person (default: the bundled one, else one trained into `out/judge`).
    only, seeds, rows: a part of the bench; rows by key (`rows.ROW_KEYS`; default all, `quick`: `QUICK_ROWS`)."""
    from gal.errors import GalError
    from gal.locations import WEIGHTS, bundled
    from gal.miniature import SETTINGS

    settings = dict(settings or (QUICK if quick else FULL))
    for name, chosen, known in (("--only", only, settings["subjects"]), ("--rows", rows, ROW_KEYS)):
        unknown = [x for x in chosen or [] if x not in known]
        if unknown:
            raise GalError(f"{name} {unknown[0]}: not part of this bench; expected one of {', '.join(map(str, known))}")
    if any(s < 0 for s in seeds or []):
        raise GalError(f"--seed {min(seeds)}: expected a seed of 0 or more")
    settings["subjects"] = [s for s in settings["subjects"] if not only or s in only]
    # --seed: any seed, those of the whole bench (FULL's) or others (more seeds for the rows that decide a default)
    settings["seeds"] = sorted(set(seeds)) if seeds is not None else settings["seeds"]
    settings["rows"] = [k for k in ROW_KEYS if k in (rows or (QUICK_ROWS if quick else ROW_KEYS))]
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


def main(out: Path, *, quick: bool = False, settings: dict | None = None, models: dict | None = None,
         judge_dir: Path | None = None, only: list[str] | None = None, seeds: list[int] | None = None,
         rows: list[str] | None = None, results: str | None = None, summary: str | None = None,
         merge: list[str] | None = None, command: str = "gal bench", log=print) -> dict:
    """`gal bench`: run (or resume) the bench's part that is asked for (`bench`), write its summary, merge other
    benches' runs into it and write the results page (`gal.miniature.results`)."""
    import os
    import platform

    from gal.errors import GalError

    found = bench(out, quick=quick, settings=settings, models=models, judge_dir=judge_dir, only=only, seeds=seeds,
                  rows=rows, log=log)
    if summary:  # also for a part of a bench (--only, --seed), e.g. to --merge it later
        write_text(Path(summary), json.dumps(found, indent=1))
    for path in merge or []:
        try:
            found = merge_summaries(found, read_summary(Path(path)), path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise GalError(f"--merge {path}: cannot read it as a bench summary ({e.__class__.__name__}); "
                           "expected a bench.json written by gal bench") from None
    if results:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        write_results(found, Path(results), command, machine)
    return found
