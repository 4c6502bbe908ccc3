"""Objects with masks (issue 35): composites that keep the subject, masked loss, and the round to keep.

Reads `gal bench` summaries of the two miniature objects (rows `composite`, `composite-masked`, the controls
`fewer-steps`, `lora-scale` and their masked-loss twins `masked`, `masked-fewer-steps`, `masked-lora-scale`) and
prints, as markdown:

1. every row against the envelope of all the controls (both metric families, 95% bootstrap intervals, per run the
   round the keep rule recommends on the validation split), with OVF and the judge's kept share per subject against
   DreamBooth 1x's;
2. paired differences between the rows;
3. the keep rule: candidate rules, each run's recommended round against the judge's best round (regret: the judge's
   distance above the envelope of the best round minus the recommended one's), chosen on seeds `--choose` and
   validated on the others.

    python benchmarks/masked_objects.py /work/bench35/b-*.json \\
        --merge docs/measurements/miniature-bench-2026-12-01.json \\
        --old-composite docs/measurements/miniature-bench-gal-composite-2026-12-02.json \\
        --json docs/measurements/masked-objects-2026-12-07.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gal.keep import KEEP_IMAGE, keep_rule
from gal.miniature.results import distances, interval, merge_summaries, read_summary

OBJECTS = ("twotone_star", "spotted_ring")
OLD = "composite-2026-12-02"  # gal's object default before the composites kept the subject (restyle repainted it)
ROWS = ("dreambooth", "masked", "composite", "composite-masked", OLD)


def _subject_first(rounds: list[dict], split: str, metric: str) -> list[float]:
    return [(r["validation"] if split == "validation" else r)[metric] for r in rounds]


def rule(metric: str, keep: float):
    """The keep rule on the validation split: the best TXT-ALN among the rounds keeping `keep` of round 1's
    `metric` (gal.keep.keep_rule)."""
    def choose(rounds: list[dict]) -> int:
        if not all("validation" in r and metric in r["validation"] for r in rounds):
            return len(rounds) - 1
        values = _subject_first(rounds, "validation", metric)
        return keep_rule(_subject_first(rounds, "validation", "txt_aln"), values, values[0], keep)[0]
    return choose


RULES = {"IMG-ALN 80%": rule("img_aln", KEEP_IMAGE),  # gal.keep's
         **{f"subject IMG-ALN {k:.0%}": rule("img_aln_subject", k) for k in (0.8, 0.9, 0.95, 1.0)},
         "last round": lambda rounds: len(rounds) - 1, "round 1": lambda rounds: 0}


def load(paths: list[str], merge: list[str], old_composite: list[str]) -> dict:
    summary = None
    for p in paths:
        s = read_summary(Path(p))
        summary = s if summary is None else merge_summaries(summary, s, p)
    for p in merge:
        summary = merge_summaries(summary, read_summary(Path(p)), p)
    for p in old_composite:
        old = read_summary(Path(p))
        old["results"] = [{**e, "row": OLD} for e in old["results"] if e["row"] == "composite"]
        summary = merge_summaries(summary, old, p)
    summary["results"] = [e for e in summary["results"] if e["subject"] in OBJECTS]
    return summary


def at(index_of):
    """A `pick` for gal.miniature.results: the round `index_of(rounds)` chooses."""
    return lambda e: e["rounds"][index_of(e["rounds"])]


def above(summary: dict, row: str, pick, space: str, control: str = "all") -> dict:
    return {(d["subject"], d["seed"]): d for d in distances(summary, pick, space, control) if d["row"] == row}


def fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]" + (" **real**" if v[1] > 0 or v[2] < 0 else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("summaries", nargs="+")
    p.add_argument("--merge", action="append", default=[], help="another bench's runs this one lacks")
    p.add_argument("--old-composite", action="append", default=[],
                   help="a bench summary whose `composite` rows ran with the code before 2026-12-07 (repeatable)")
    p.add_argument("--rule", default="IMG-ALN 80%", help="the keep rule the tables use (see RULES)")
    p.add_argument("--choose", default="0,1,2", help="the seeds the keep rule is chosen on; the others validate it")
    p.add_argument("--json", help="write the merged summary here")
    a = p.parse_args()
    summary = load(a.summaries, a.merge, a.old_composite)
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=1))
    results = summary["results"]
    choose_seeds = {int(s) for s in a.choose.split(",")}
    pick = at(RULES[a.rule])
    print(f"## Against the envelope of all the controls (the round `{a.rule}` recommends)\n")
    print("| Row | Runs | above ↑ | above, judge ↑ | OVF above ↓ | without the masked controls: above ↑ | "
          "above, judge ↑ | last round: above ↑ | above, judge ↑ | kept | followed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in ROWS:
        runs = [e for e in results if e["row"] == row and e["rounds"]]
        if not runs:
            continue
        clip, judge = above(summary, row, pick, "clip"), above(summary, row, pick, "judge")
        others = [above(summary, row, pick, "clip", "both"), above(summary, row, pick, "judge", "both"),
                  above(summary, row, lambda e: e["rounds"][-1], "clip"), above(summary, row, lambda e: e["rounds"][-1], "judge")]
        print(f"| {row} | {len(runs)} | {fmt(interval([d['above'] for d in clip.values()]))} | "
              f"{fmt(interval([d['above'] for d in judge.values()]))} | "
              f"{fmt(interval([d['ovf_above'] for d in clip.values()]))} | "
              + " | ".join(fmt(interval([d['above'] for d in o.values()])) for o in others) + " | "
              f"{np.mean([pick(e)['kept'] for e in runs]):.2f} | {np.mean([pick(e)['followed'] for e in runs]):.2f} |")
    print("\n## The judge's kept share per subject (recommended round) against DreamBooth 1x's\n")
    print("| Row | " + " | ".join(OBJECTS) + " |\n| --- | " + " | ".join("---" for _ in OBJECTS) + " |")
    for row in ROWS:
        cells = []
        for subject in OBJECTS:
            runs = [e for e in results if e["row"] == row and e["subject"] == subject and e["rounds"]]
            cells.append(f"{np.mean([pick(e)['kept'] for e in runs]):.2f} ({len(runs)})" if runs else "–")
        print(f"| {row} | " + " | ".join(cells) + " |")
    print("\n## The added images themselves, by the judge (every round that added some)\n")
    print("| Row | images | kept | followed | faithful |\n| --- | --- | --- | --- | --- |")
    for row in ROWS:
        added = [q for e in results if e["row"] == row for q in e.get("query", []) if q.get("added")]
        if added:
            n = sum(q["added"] for q in added)
            share = {k: sum(q[f"added_{k}"] * q["added"] for q in added) / n for k in ("kept", "followed", "faithful")}
            print(f"| {row} | {n} | {share['kept']:.2f} | {share['followed']:.2f} | {share['faithful']:.2f} |")
    print("\n## Paired differences (a − b above the envelope of all controls, same subject and seed)\n")
    print("| a | b | CLIP-like | judge |\n| --- | --- | --- | --- |")
    for x, y in (("composite", "masked"), ("composite", OLD), ("composite-masked", "composite"),
                 ("composite-masked", "masked"), ("masked", "dreambooth")):
        cells = []
        for space in ("clip", "judge"):
            ax, by = above(summary, x, pick, space), above(summary, y, pick, space)
            diffs = [ax[k]["above"] - by[k]["above"] for k in ax if k in by]
            cells.append(f"{fmt(interval(diffs))} ({len(diffs)})" if diffs else "–")
        print(f"| {x} | {y} | " + " | ".join(cells) + " |")
    print(f"\n## The keep rule: regret against the judge's best round (chosen on seeds {sorted(choose_seeds)})\n")
    gal_runs = [e for e in results if e["row"] in ("composite", "composite-masked") and len(e["rounds"]) > 1]
    judged = {}  # (subject, seed, row) -> the judge's distance above the envelope of each round
    longest = max((len(e["rounds"]) for e in gal_runs), default=0)
    for i in range(longest):
        for key, d in above_all(summary, at(lambda rounds, i=i: min(i, len(rounds) - 1))).items():
            judged.setdefault(key, []).append(d)
    print("| Rule | regret, choice seeds | regret, validation seeds | best round chosen, validation |")
    print("| --- | --- | --- | --- |")
    for name, choose in RULES.items():
        regret = {True: [], False: []}
        hit = []
        for e in gal_runs:
            scores = judged[(e["subject"], e["seed"], e["row"])][:len(e["rounds"])]
            r = choose(e["rounds"])
            regret[e["seed"] in choose_seeds].append(max(scores) - scores[r])
            if e["seed"] not in choose_seeds:
                hit.append(scores[r] == max(scores))
        print(f"| {name} | {fmt(interval(regret[True]))} ({len(regret[True])}) | "
              f"{fmt(interval(regret[False]))} ({len(regret[False])}) | {np.mean(hit) if hit else float('nan'):.2f} |")


def above_all(summary: dict, pick) -> dict:
    return {(d["subject"], d["seed"], d["row"]): d["above"] for d in distances(summary, pick, "judge", "all")}


if __name__ == "__main__":
    main()
