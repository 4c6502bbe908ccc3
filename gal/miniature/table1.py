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
from typing import NamedTuple

import numpy as np
from PIL import Image

from gal.miniature import judge as judges
from gal.miniature import world
from gal.storage import folder_in_place, write_text


class Row(NamedTuple):
    key: str  # for --rows
    name: str
    strategy: str
    balance: str
    query_guidance: float | None = None  # None: the run's --guidance; another one also changes round 1's query


ROWS = [Row("random", "Random", "random", "paper"), Row("uncertainty", "Uncertainty", "uncertainty", "off"),
        Row("balance", "Uncertainty + Balance", "uncertainty", "paper"),
        Row("separate", "Uncertainty + separate balance", "uncertainty", "separate"),
        Row("oracle", "Oracle + Balance", "human", "paper"),
        Row("guidance2", "Uncertainty + Balance, query guidance 2", "uncertainty", "paper", query_guidance=2.0)]
BASELINE = "Baseline (DreamBooth)"  # round 1: the default step count
FEWER = "DreamBooth, fewer steps"
EXPOSURE = "DreamBooth, exposure-matched"
FRONTIER = (0.125, 0.25, 0.5, 0.75)  # shares of the default step count; 1x is the baseline
ROW_KEYS = ["frontier", "exposure"] + [r.key for r in ROWS]
FULL = {"subjects": ["mosaic", "neon", "twotone_star", "spotted_ring"], "seeds": [0, 1, 2], "rounds": 4, "m": 10, "n": 4}
# --quick: one style, one object, shorter fine-tunes (the full bench keeps the paper's 500 / 800 steps)
QUICK = {"subjects": ["mosaic", "twotone_star"], "seeds": [0], "rounds": 2, "m": 4, "n": 1,
         "train_steps": {"style": 300, "object": 500}}


def _quiet(*_args, **_kwargs) -> None:
    pass


def oracle_picks(run_dir: Path, judge: judges.Judge, subject: world.Subject, k: int) -> list[str]:
    """What the simulated person accepts in the pending round: one acceptable image (`judge.acceptable`:
    subject shown, prompt followed but for one detail; a fully faithful one first) of each of up to k
    directions, the directions where acceptable images are rarest first."""
    from gal.ledger import Ledger
    from gal.review import pending_round, sample_id

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
    return [sample_id(s.anchor_idx, s.j) for _, _, s in sorted(found)[:k]]


def run_one(cfg, judge: judges.Judge | None = None, subject: world.Subject | None = None) -> None:
    """Run (or resume) one `gal run`; a person's strategy is played by the simulated person (without one,
    the run stops at its first review)."""
    from gal.ledger import Ledger
    from gal.loop import run
    from gal.review import pending_round

    while True:
        run(cfg, log=_quiet, force=True)  # force: a fork's strategy differs from its round 1's
        if cfg.strategy != "human" or judge is None:
            return
        ledger = Ledger(Path(cfg.out))
        try:
            status, pending = ledger.get("status"), pending_round(ledger)
            if pending is not None:
                picks = oracle_picks(Path(cfg.out), judge, subject, cfg.k)
                ledger.submit_review(pending, [_key(i) for i in picks], [])
        finally:
            ledger.close()
        if status == "finished":
            return


def _evaluate(out: Path, prompts: Path, n: int) -> list[dict]:
    from gal.metrics import evaluate_run

    return evaluate_run(out, n=n, prompts_file=str(prompts), log=_quiet)


def _fork(source: Path, out: Path) -> None:
    """Copy a run folder whole, or not at all."""
    import shutil

    with folder_in_place(out) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)


def _key(sample_id: str) -> tuple[int, int]:
    a, j = sample_id.split("-")
    return int(a[1:]), int(j[1:])


def subject_runs(out: Path, subject_name: str, seed: int, settings: dict, models: dict, rows: list[str],
                 judge: judges.Judge | None, work: Path, log=print) -> list[dict]:
    """Every run of one subject and seed (see the module's docstring), evaluated per round."""
    from gal.config import Config, resolved
    from gal.demo import inputs
    from gal.ledger import Ledger

    subject = world.SUBJECTS[subject_name]
    fields, prompts = inputs(work / "inputs" / subject_name, subject_name)
    steps = settings.get("train_steps", {}).get(subject.kind)
    base = Config(**{**fields, "rounds": settings["rounds"], "m": settings["m"], "k": 3, "seed": seed,
                     **({"train_steps": steps} if steps else {}), **models})  # the models' settings win
    settled = resolved(base)
    full_steps = settled.train_steps
    folder = out / subject_name / f"seed{seed}"
    entry = {"subject": subject_name, "kind": subject.kind, "seed": seed}
    results = []

    def record(row: str, run_dir: Path, **extra) -> None:
        rounds = _evaluate(run_dir, prompts, settings["n"])
        results.append({**entry, "row": row, **extra, "rounds": rounds})
        log(f"{subject_name} seed {seed} {row}{' ' + str(extra) if extra else ''}: " + ", ".join(
            f"R{r['round']} TXT {r['txt_aln']:.3f} IMG {r['img_aln']:.3f} OVF {r['ovf']:.2f}" for r in rounds))

    # Round 1, shared: with a person as the strategy the run stops after the round's query, before
    # anything is chosen, which is where the rows part.
    first = folder / "round-1"
    run_one(dataclasses.replace(base, strategy="human", balance="paper", out=str(first)))
    record(BASELINE, first, train_steps=full_steps, share=1.0)
    class_images = str(first / "class_images") if settled.prior else None  # generated once
    if "frontier" in rows:
        for share in FRONTIER:
            s = max(1, round(share * full_steps))
            run_dir = folder / f"dreambooth-{s}"
            run_one(dataclasses.replace(base, strategy="none", rounds=1, train_steps=s, class_images=class_images,
                                        out=str(run_dir)))
            record(FEWER, run_dir, train_steps=s, share=share)
    for row in ROWS:
        if row.key not in rows:
            continue
        run_dir = folder / row.key
        shared = row.query_guidance is None  # round 1 is shared, its query too; else only its class images
        if shared and not run_dir.exists():
            _fork(first, run_dir)
        run_one(dataclasses.replace(base, strategy=row.strategy, balance=row.balance, query_guidance=row.query_guidance,
                                    class_images=None if shared else class_images, out=str(run_dir)), judge, subject)
        record(row.name, run_dir, diversity=diversity(run_dir))
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
    from gal.miniature import SETTINGS, WEIGHTS, bundled

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
    judge = None
    if "oracle" in settings["rows"]:
        if judge_dir is None:  # the bundled simulated person, else one trained into the bench folder
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


def merge(summary: dict, other: dict, source: str) -> dict:
    """`summary` with the runs of another bench's summary (e.g. an earlier bench with rows not run here)
    that it lacks, by subject, seed and row; each marked with its source."""
    have = {(e["subject"], e["seed"], e["row"]) for e in summary["results"]}
    extra = [{**e, "source": source} for e in other["results"] if (e["subject"], e["seed"], e["row"]) not in have]
    return {**summary, "results": summary["results"] + extra, "merged": summary.get("merged", []) + [source]}


# ---- the analysis: the frontier, distances to it, intervals ------------------------------------------

def envelope(points: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """The frontier's upper envelope: the (IMG-ALN, TXT-ALN, OVF) points no other point beats on both
    IMG-ALN and TXT-ALN, by IMG-ALN."""
    keep = [p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q[:2] != p[:2] for q in points)]
    return sorted(set(keep))


def on_frontier(points: list[tuple[float, float, float]], img: float) -> tuple[float, float]:
    """TXT-ALN and OVF of the frontier at IMG-ALN `img`, linear between envelope points; outside their
    range, the nearest end's values (generous to rows beyond the last point, which no step count reached)."""
    env = envelope(points)
    xs = [p[0] for p in env]
    return float(np.interp(img, xs, [p[1] for p in env])), float(np.interp(img, xs, [p[2] for p in env]))


def last_round(entry: dict) -> dict:
    return entry["rounds"][-1]


def distances(summary: dict, pick=last_round) -> list[dict]:
    """Every run's (subject, seed, row) TXT-ALN above the frontier of its subject and seed at equal
    IMG-ALN, and its OVF above the frontier's there; `pick` chooses which round of a run counts."""
    frontiers: dict[tuple, list] = {}
    for e in summary["results"]:
        if e["row"] in (BASELINE, FEWER):
            r = e["rounds"][0]
            frontiers.setdefault((e["subject"], e["seed"]), []).append((r["img_aln"], r["txt_aln"], r["ovf"]))
    out = []
    for e in summary["results"]:
        points = frontiers.get((e["subject"], e["seed"]))
        if not points or not e["rounds"]:
            continue
        r = pick(e)
        txt, ovf = on_frontier(points, r["img_aln"])
        out.append({**{k: e[k] for k in ("subject", "kind", "seed", "row")}, "round": r["round"],
                    "above": r["txt_aln"] - txt, "ovf_above": r["ovf"] - ovf})
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
    return [n for n in [BASELINE, EXPOSURE] + [r.name for r in ROWS] if n in present]


def table(summary: dict) -> list[dict]:
    """Table 1's layout plus the distance to the frontier: per row and kind, the mean and interval over
    subjects and seeds of the last round (the DreamBooth rows: their only round)."""
    dist = distances(summary)
    rows = []
    for name in row_names(summary):
        entry = {"row": name}
        for kind in ("object", "style", "all"):
            runs = [e for e in summary["results"] if e["row"] == name and e["rounds"] and kind in ("all", e["kind"])]
            for metric in ("txt_aln", "img_aln", "ovf"):
                values = [last_round(e)[metric] for e in runs]
                entry[f"{kind}_{metric}"] = interval(values) if values else None
            d = [x for x in dist if x["row"] == name and kind in ("all", x["kind"])]
            entry[f"{kind}_above"] = interval([x["above"] for x in d]) if d else None
            entry[f"{kind}_ovf_above"] = interval([x["ovf_above"] for x in d]) if d else None
        rows.append(entry)
    return rows


def paired(summary: dict, a: str, b: str, pick=last_round) -> tuple[float, float, float] | None:
    """Row a's TXT-ALN above the frontier minus row b's, per subject and seed: mean and interval."""
    dist = {(x["subject"], x["seed"], x["row"]): x["above"] for x in distances(summary, pick)}
    diffs = [v - dist[(s, seed, b)] for (s, seed, row), v in dist.items() if row == a and (s, seed, b) in dist]
    return interval(diffs) if diffs else None


def figure(summary: dict, path: Path) -> None:
    """Figure 5: TXT-ALN against IMG-ALN per round, mean over runs (a run that stopped counts with its
    last round from then on), one arrowed line per strategy; the frontier of training less as a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, kind in zip(axes, ("object", "style")):
        points = [e for e in summary["results"] if e["kind"] == kind and e["row"] in (BASELINE, FEWER)]
        shares = sorted({e["share"] for e in points})
        if shares:
            xs = [np.mean([e["rounds"][0]["img_aln"] for e in points if e["share"] == s]) for s in shares]
            ys = [np.mean([e["rounds"][0]["txt_aln"] for e in points if e["share"] == s]) for s in shares]
            ax.plot(xs, ys, "--s", color="0.45", ms=4, label="DreamBooth, fewer steps")
            for x, y, s in zip(xs, ys, shares):
                ax.annotate(f"{s:g}x", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6, color="0.35")
        for name in row_names(summary)[1:]:
            runs = [e["rounds"] for e in summary["results"] if e["kind"] == kind and e["row"] == name and e["rounds"]]
            if not runs:
                continue
            depth = max(len(r) for r in runs)  # a run that stopped early keeps its last round's model
            xs = [float(np.mean([r[min(i, len(r) - 1)]["img_aln"] for r in runs])) for i in range(depth)]
            ys = [float(np.mean([r[min(i, len(r) - 1)]["txt_aln"] for r in runs])) for i in range(depth)]
            line, = ax.plot(xs, ys, "-o", ms=3, label=name)
            if depth > 1:
                ax.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-2], ys[-2]),
                            arrowprops=dict(arrowstyle="->", color=line.get_color()))
        ax.set_title(kind)
        ax.set_xlabel("IMG-ALN")
        ax.set_ylabel("TXT-ALN")
        ax.ticklabel_format(useOffset=False)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


NOTES = "<!-- notes: what follows is kept when `gal bench --results` rewrites this file -->"


def _cell(v) -> str:
    return "–" if v is None else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def _signed(v) -> str:
    return "–" if v is None else f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]"


def write_results(summary: dict, path: Path, command: str, machine: str) -> None:
    from gal.keep import recommended_round

    units = sorted({(e["subject"], e["seed"]) for e in summary["results"]})
    lines = [
        "# Results on the miniature world", "",
        f"Command: `{command}`  ", f"Machine: {machine}  ", f"Date: {time.strftime('%Y-%m-%d')}  ",
        f"Settings: {json.dumps(summary['settings'])}; {len(units)} runs per row (subjects x seeds); this invocation "
        f"took {summary['minutes']} minutes (runs already on disk are resumed, not redone)." +
        "".join(f" Rows not run here come from `{m}`." for m in summary.get("merged", [])), "",
        "Last round of each run (the DreamBooth rows: their only round): mean and 95% bootstrap interval over "
        "subjects and seeds. *Above frontier*: TXT-ALN minus the frontier's TXT-ALN at the same IMG-ALN, where the "
        "frontier is DreamBooth at 1/8, 1/4, 1/2, 3/4 and 1x the steps for the same subject and seed (its upper "
        "envelope, linear in between); a row is better than training less only where this interval is above 0.", "",
        "| Models | Runs | Object TXT-ALN ↑ | Object IMG-ALN ↑ | Object OVF ↓ | Object above frontier ↑ "
        "| Style TXT-ALN ↑ | Style IMG-ALN ↑ | Style OVF ↓ | Style above frontier ↑ | All: above frontier ↑ | All: OVF above frontier ↓ |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in table(summary):
        cells = [_cell(e[f"{k}_{m}"]) for k in ("object",) for m in ("txt_aln", "img_aln", "ovf")]
        cells += [_signed(e["object_above"])]
        cells += [_cell(e[f"style_{m}"]) for m in ("txt_aln", "img_aln", "ovf")] + [_signed(e["style_above"])]
        cells += [_signed(e["all_above"]), _signed(e["all_ovf_above"])]
        runs = sum(x["row"] == e["row"] for x in summary["results"])
        lines.append(f"| {e['row']} | {runs} | " + " | ".join(cells) + " |")
    names = row_names(summary)
    lines += ["", "Paired differences of *above frontier* (same subject and seed), all runs:", "",
              "| Comparison | Mean [95% interval] |", "| --- | --- |"]
    for a in names[2:]:
        for b in names[2:]:
            if a != b and b == "Uncertainty + Balance":
                lines.append(f"| {a} − {b} | {_signed(paired(summary, a, b))} |")
    # the recommended round (`gal show`), validated: is it closer to the frontier than the last round?
    def recommended(e):
        return next(r for r in e["rounds"] if r["round"] == recommended_round(e["rounds"])[0])
    lines += ["", "Which round to keep: *above frontier* of the round `gal show` recommends (the best TXT-ALN among "
              "the rounds that keep 80% of round 1's IMG-ALN) against the last round's, GAL rows, all runs:", "",
              "| Models | Last round | Recommended round | Recommended − last |", "| --- | --- | --- | --- |"]
    for name in names[2:]:
        last = [x["above"] for x in distances(summary) if x["row"] == name]
        rec = [x["above"] for x in distances(summary, recommended) if x["row"] == name]
        lines.append(f"| {name} | {_signed(interval(last))} | {_signed(interval(rec))} | "
                     f"{_signed(paired_rounds(summary, name, recommended))} |")
    other = {r.name: r.query_guidance for r in ROWS if r.query_guidance is not None}  # rows with their own round 1
    lines += ["", "Diversity of the queries (round 1, shared by every row but those with their own query guidance): "
              "mean pairwise cosine distance of an anchor's samples in the scorer's space, and the share of directions "
              "with 0 < β < 1.", "",
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
    lines += ["", "Per subject, mean over seeds of the last round; rounds: how many rounds the runs had (Eq. 10, or "
              "a person accepting nothing, ends a run early); steps: DreamBooth's fine-tuning steps.", "",
              "| Subject | Models | Rounds / steps | TXT-ALN ↑ | IMG-ALN ↑ | OVF ↓ | Above frontier ↑ |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    dist = distances(summary)
    for subject in summary["settings"]["subjects"]:
        for name in [BASELINE, FEWER, EXPOSURE] + [r.name for r in ROWS]:
            runs = [e for e in summary["results"] if e["subject"] == subject and e["row"] == name]
            groups = sorted({e.get("share", 0) for e in runs}) if name == FEWER else [None]
            for share in groups:
                group = [e for e in runs if share is None or e.get("share") == share]
                if not group:
                    continue
                depth = ("/".join(str(e["train_steps"]) for e in group) if "train_steps" in group[0]
                         else "/".join(str(len(e["rounds"])) for e in group))
                above = [x["above"] for x in dist if x["subject"] == subject and x["row"] == name and
                         any(e["seed"] == x["seed"] for e in group)]
                label = f"{name} ({share:g}x)" if share is not None else name
                lines.append(f"| {subject} | {label} | {depth} | " +
                             " | ".join(f"{np.mean([last_round(e)[m] for e in group]):.3f}" for m in ("txt_aln", "img_aln", "ovf")) +
                             (f" | {np.mean(above):+.3f} |" if above and name not in (BASELINE, FEWER) else " | |"))
    figure(summary, path.with_name(path.stem + "-figure5.png"))
    lines += ["", "Figure 5's layout: TXT-ALN against IMG-ALN per round, mean over subjects and seeds (a run that "
              "stopped early counts with its last round in the later ones); the dashed curve is DreamBooth at 1/8 "
              "to 1x the steps.", "", f"![TXT-ALN against IMG-ALN per round]({path.stem}-figure5.png)", ""]
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES):] if NOTES in old else NOTES + "\n"  # a person's reading of the results stays
    write_text(path, "\n".join(lines) + "\n" + notes)


def paired_rounds(summary: dict, name: str, pick) -> tuple[float, float, float]:
    """Per run of row `name`: *above frontier* of the round `pick` chooses minus the last round's."""
    last = {(x["subject"], x["seed"]): x["above"] for x in distances(summary) if x["row"] == name}
    other = {(x["subject"], x["seed"]): x["above"] for x in distances(summary, pick) if x["row"] == name}
    return interval([other[k] - last[k] for k in last if k in other])
