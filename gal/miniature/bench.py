"""`gal bench` on the miniature world: the paper's Table 1 and Figure 5, reproduced in direction.

For each held-out subject and seed it runs GAL with each strategy of Table 1 (Random, Uncertainty,
Uncertainty + Balance, Oracle + Balance), evaluates every round on the world's test prompts, and writes
the table (mean and spread over subjects and seeds) and a Figure-5 plot. The baseline (DreamBooth) is
round 1, which every strategy shares: it runs once per subject and seed, and each strategy's run starts
from a copy of it. The oracle is a simulated person (`gal.miniature.judge`), not the CLIP scorer. Every run
is a resumable `gal run` folder, so an interrupted bench picks up where it stopped.
"""

from __future__ import annotations

import json
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
from PIL import Image

from gal.miniature import judge as judges
from gal.miniature import world
from gal.storage import write_text

ROWS = [("Random", "random", False), ("Uncertainty", "uncertainty", False),
        ("Uncertainty + Balance", "uncertainty", True), ("Oracle + Balance", "human", True)]
FULL = {"subjects": ["mosaic", "neon", "twotone_star", "spotted_ring"], "seeds": [0, 1], "rounds": 4, "m": 10, "n": 4}
# --quick: one style, one object, shorter fine-tunes (the full bench keeps the paper's 500 / 800 steps)
QUICK = {"subjects": ["mosaic", "twotone_star"], "seeds": [0], "rounds": 2, "m": 4, "n": 1,
         "train_steps": {"style": 300, "object": 500}}


def _gal(argv: list[str]) -> tuple[int, str]:
    from gal.cli import main

    buffer = StringIO()
    with redirect_stdout(buffer):
        code = main(argv)
    return code, buffer.getvalue()


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


def run_one(out: Path, subject_name: str, seed: int, strategy: str, balance: bool, settings: dict,
            models: list[str], judge: judges.Judge | None, work: Path) -> list[dict]:
    """One GAL run, evaluated per round. Its round 1 (fine-tune on the references and query, the same
    for every strategy) is copied from the subject's shared round-1 run; a run on disk is resumed."""
    from gal.ledger import Ledger
    from gal.review import pending_round

    flags, prompts = _inputs(work, subject_name)
    if not out.exists():
        _fork(_round_one(out.parent / "round-1", flags, prompts, subject_name, seed, settings, models), out)
    argv = ["run", *flags, *_shared_flags(settings, seed, subject_name), *models, "--strategy", strategy,
            "--balance" if balance else "--no-balance", "--force", "--out", str(out)]  # --force: the strategy differs from round 1's
    while True:
        code, _ = _gal(argv)
        if code:
            raise RuntimeError(f"gal run failed with {code}: {' '.join(argv)}")
        if strategy != "human":
            break
        ledger = Ledger(out)
        status, pending = ledger.get("status"), pending_round(ledger)
        if pending is not None:
            ledger.submit_review(pending, [_key(i) for i in oracle_picks(out, judge, world.SUBJECTS[subject_name], 3)], [])
        ledger.close()
        if status == "finished":
            break
    return _evaluate(out, prompts, settings)


def _inputs(work: Path, subject_name: str) -> tuple[list[str], Path]:
    from gal.demo import prepare

    return prepare(work / "inputs" / subject_name, subject_name)


def _shared_flags(settings: dict, seed: int, subject_name: str) -> list[str]:
    """Every run's flags but its strategy (given before `models`, whose flags win)."""
    steps = settings.get("train_steps", {}).get(world.SUBJECTS[subject_name].kind)
    return ["--rounds", str(settings["rounds"]), "--m", str(settings["m"]), "--k", "3", "--seed", str(seed),
            *(["--train-steps", str(steps)] if steps else [])]


def _round_one(folder: Path, flags: list[str], prompts: Path, subject_name: str, seed: int, settings: dict,
               models: list[str]) -> Path:
    """Round 1 of a subject and seed, run once: with a person as the strategy the run stops after the
    round's query, before anything is chosen, which is where the strategies part. Evaluated here, so
    every copy carries round 1's metrics."""
    argv = ["run", *flags, *_shared_flags(settings, seed, subject_name), *models, "--strategy", "human", "--balance",
            "--out", str(folder)]
    code, _ = _gal(argv)
    if code:
        raise RuntimeError(f"gal run failed with {code}: {' '.join(argv)}")
    _evaluate(folder, prompts, settings)
    return folder


def _fork(source: Path, out: Path) -> None:
    """Copy a run folder whole, or not at all."""
    import shutil

    tmp = out.with_name(out.name + ".copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    tmp.rename(out)


def _evaluate(out: Path, prompts: Path, settings: dict) -> list[dict]:
    code, text = _gal(["eval", str(out), "--prompts", str(prompts), "--n", str(settings["n"]), "--json"])
    if code:
        raise RuntimeError(f"gal eval failed with {code} on {out}")
    return json.loads(text)["rounds"]


def _key(sample_id: str) -> tuple[int, int]:
    a, j = sample_id.split("-")
    return int(a[1:]), int(j[1:])


def bench(out: Path, quick: bool = False, models: list[str] | None = None, judge_dir: Path | None = None,
          only: list[str] | None = None, log=print) -> dict:
    from gal.errors import GalError
    from gal.miniature import WEIGHTS, bundled

    settings = QUICK if quick else FULL
    if only:
        unknown = [s for s in only if s not in settings["subjects"]]
        if unknown:
            raise GalError(f"--only {unknown[0]}: not a subject of this bench; expected one of {', '.join(settings['subjects'])}")
        settings = dict(settings, subjects=[s for s in settings["subjects"] if s in only])
    if models is None and bundled() is None:
        raise GalError("gal bench: the bundled miniature model is not in this installation; train it with "
                       "`gal miniature train OUT` (docs/miniature.md)")
    models = models or ["--base", "miniature", "--scorer", "miniature", "--steps", "20", "--guidance", "4"]
    if judge_dir is None:  # the bundled simulated person, else one trained into the bench folder
        judge_dir = WEIGHTS / "judge" if (WEIGHTS / "judge" / "judge.safetensors").exists() else out / "judge"
    if not (judge_dir / "judge.safetensors").exists():
        log(f"training the simulated person into {judge_dir}")
        judges.train_judge(judge_dir, log=log)
    judge = judges.Judge(judge_dir)
    results = []
    start = time.time()
    for subject in settings["subjects"]:
        for seed in settings["seeds"]:
            for row, strategy, balance in ROWS:
                folder = out / subject / f"seed{seed}" / row.lower().replace(" + ", "-").replace(" ", "-")
                rounds = run_one(folder, subject, seed, strategy, balance, settings, models, judge, out)
                results.append({"subject": subject, "kind": world.SUBJECTS[subject].kind, "seed": seed, "row": row,
                                "rounds": rounds})
                log(f"{subject} seed {seed} {row}: " + ", ".join(
                    f"R{r['round']} TXT {r['txt_aln']:.3f} IMG {r['img_aln']:.3f} OVF {r['ovf']:.2f}" for r in rounds))
    summary = {"settings": settings, "results": results, "minutes": round((time.time() - start) / 60, 1)}
    if not only:  # a part of a bench leaves the whole bench's summary alone
        write_text(out / "bench.json", json.dumps(summary, indent=1))
    return summary


def table(summary: dict) -> list[dict]:
    """Table 1's layout: per row and kind, mean and std over subjects and seeds of the last round
    (the baseline: round 1)."""
    rows = []
    for name in ["Baseline (DreamBooth)"] + [r for r, _, _ in ROWS]:
        entry = {"row": name}
        for kind in ("object", "style"):
            runs = [x for x in summary["results"] if x["kind"] == kind and
                    (x["row"] == name or (name.startswith("Baseline") and x["row"] == "Uncertainty + Balance"))]
            picked = [x["rounds"][0] if name.startswith("Baseline") else x["rounds"][-1] for x in runs if x["rounds"]]
            for metric in ("txt_aln", "img_aln", "ovf"):
                values = [p[metric] for p in picked]
                entry[f"{kind}_{metric}"] = (float(np.mean(values)), float(np.std(values))) if values else None
        rows.append(entry)
    return rows


def figure(summary: dict, path: Path) -> None:
    """Figure 5: TXT-ALN against IMG-ALN per round, mean over runs (a run that stopped counts with its
    last round from then on), one arrowed line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, kind in zip(axes, ("object", "style")):
        for row, _, _ in ROWS:
            runs = [x["rounds"] for x in summary["results"] if x["kind"] == kind and x["row"] == row and x["rounds"]]
            if not runs:
                continue
            depth = max(len(r) for r in runs)  # a run that stopped early keeps its last round's model
            xs = [float(np.mean([r[min(i, len(r) - 1)]["img_aln"] for r in runs])) for i in range(depth)]
            ys = [float(np.mean([r[min(i, len(r) - 1)]["txt_aln"] for r in runs])) for i in range(depth)]
            line, = ax.plot(xs, ys, "-o", ms=3, label=row)
            if depth > 1:
                ax.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-2], ys[-2]),
                            arrowprops=dict(arrowstyle="->", color=line.get_color()))
        ax.set_title(kind)
        ax.set_xlabel("IMG-ALN")
        ax.set_ylabel("TXT-ALN")
        ax.ticklabel_format(useOffset=False)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


NOTES = "<!-- notes: what follows is kept when `gal bench --results` rewrites this file -->"


def write_results(summary: dict, path: Path, command: str, machine: str) -> None:
    def cell(v):
        return "–" if v is None else f"{v[0]:.3f} ± {v[1]:.3f}"

    lines = [
        "# Results on the miniature world", "",
        f"Command: `{command}`  ", f"Machine: {machine}  ", f"Date: {time.strftime('%Y-%m-%d')}  ",
        f"Settings: {json.dumps(summary['settings'])}; this invocation took {summary['minutes']} minutes "
        "(runs already on disk are resumed, not redone).", "",
        "Last round of each run (Baseline: round 1), mean ± std over subjects and seeds; the layout of the paper's Table 1.", "",
        "| Models | Object TXT-ALN ↑ | Object IMG-ALN ↑ | Object OVF ↓ | Style TXT-ALN ↑ | Style IMG-ALN ↑ | Style OVF ↓ |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in table(summary):
        lines.append(f"| {e['row']} | " + " | ".join(cell(e[f"{k}_{m}"]) for k in ("object", "style")
                                                     for m in ("txt_aln", "img_aln", "ovf")) + " |")
    lines += ["", "Per subject, mean over seeds of the last round; rounds: how many rounds the runs had (Eq. 10, or "
              "a person accepting nothing, ends a run early).", "",
              "| Subject | Models | Rounds | TXT-ALN ↑ | IMG-ALN ↑ | OVF ↓ |", "| --- | --- | --- | --- | --- | --- |"]
    for subject in summary["settings"]["subjects"]:
        for name in ["Baseline (DreamBooth)"] + [r for r, _, _ in ROWS]:
            baseline = name.startswith("Baseline")
            runs = [x["rounds"] for x in summary["results"] if x["subject"] == subject and x["rounds"] and
                    x["row"] == ("Uncertainty + Balance" if baseline else name)]
            if not runs:
                continue
            last = [r[0] if baseline else r[-1] for r in runs]
            depth = "1" if baseline else "/".join(str(len(r)) for r in runs)
            lines.append(f"| {subject} | {name} | {depth} | " +
                         " | ".join(f"{np.mean([x[m] for x in last]):.3f}" for m in ("txt_aln", "img_aln", "ovf")) + " |")
    figure(summary, path.with_name(path.stem + "-figure5.png"))
    lines += ["", "Figure 5's layout: TXT-ALN against IMG-ALN per round, mean over subjects and seeds; a run that "
              "stopped early counts with its last round in the later ones.", "",
              f"![TXT-ALN against IMG-ALN per round]({path.stem}-figure5.png)", ""]
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES):] if NOTES in old else NOTES + "\n"  # a person's reading of the results stays
    write_text(path, "\n".join(lines) + "\n" + notes)
