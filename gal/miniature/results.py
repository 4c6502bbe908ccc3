"""The results of `gal bench` on the miniature world, from its summary (`gal.miniature.bench`): the controls'
frontier and each row's distance above it, bootstrap intervals, paired differences, other benches' summaries merged
in, and the results page (e.g. docs/results.md: its tables and Figure 5). A summary names each row by its key
(`gal.miniature.rows`); the display names are written here only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from gal.miniature.rows import (
    BASELINE,
    COMPOSITE,
    COMPOSITE_ROWS,
    EXPOSURE,
    FEWER,
    MASKED,
    MASKED_FEWER,
    MASKED_SCALED,
    NAMES,
    PERFECT,
    ROWS,
    SCALED,
    TWO_ROUNDS,
    WEIGHTS,
    row_key,
)
from gal.storage import write_text


def read_summary(path: Path) -> dict:
    """A summary written by `gal bench` (its bench.json, or --summary), with every row named by its key
    (`rows.row_key`), however it was named when written."""
    summary = json.loads(path.read_text())
    judged = any("kept" in r for e in summary["results"] for r in e["rounds"])
    settings = summary.get("settings", {})
    rows = {"rows": [row_key(k) for k in settings["rows"]]} if "rows" in settings else {}
    return {**summary, "settings": {**settings, **rows},
            "results": [{**e, "row": row_key(e["row"], judged)} for e in summary["results"]]}


def merge_summaries(summary: dict, other: dict, source: str) -> dict:
    """`summary` with the runs of another bench's summary (e.g. an earlier bench with rows not run here)
    that it lacks, by subject, seed and row (by key: `read_summary`); each marked with its source."""
    have = {(e["subject"], e["seed"], e["row"]) for e in summary["results"]}
    extra = [{**e, "source": source} for e in other["results"] if (e["subject"], e["seed"], e["row"]) not in have]
    settings = dict(summary.get("settings", {}))  # the tables' subjects, seeds and rows: those of both
    for key in ("subjects", "seeds", "rows"):
        if key in settings or key in other.get("settings", {}):
            settings[key] = list(dict.fromkeys(settings.get(key, []) + other.get("settings", {}).get(key, [])))
    return {**summary, "settings": settings, "results": summary["results"] + extra,
            "merged": summary.get("merged", []) + [source]}


# The controls a user has without GAL: train less (DreamBooth at fewer steps) or turn the 1x LoRA down at inference
# the frontiers of training less: fewer steps; and a lower LoRA scale; "all": with masked loss's too (objects)
CONTROLS = {"steps": (BASELINE, FEWER), "both": (BASELINE, FEWER, SCALED),
            "all": (BASELINE, FEWER, SCALED, MASKED, MASKED_FEWER, MASKED_SCALED)}
# Two readings of every image: the CLIP-like scorer's (the paper's metrics) and the judge's ground truth
SPACES = {"clip": ("img_aln", "txt_aln", "ovf"), "judge": ("kept", "followed", "faithful")}
METRICS = ("txt_aln", "img_aln", "ovf")  # the tables' columns, in the paper's order
# Which Table 1 row each weighting's ceiling and picks are measured against (the paper's pick, same weight)
PAPER_PICK = {"off": "uncertainty", "paper": "balance", "separate": "separate"}


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


def row_keys(summary: dict) -> list[str]:
    """The keys of the rows in the tables that `summary` has runs of, in the tables' order."""
    present = {e["row"] for e in summary["results"]}
    return [k for k in NAMES if k in present and k not in (FEWER, SCALED, MASKED_FEWER, MASKED_SCALED)]


def table(summary: dict, pick=last_round) -> list[dict]:
    """Table 1's layout plus the distances to the frontier: per row and kind, the mean and interval over subjects
    and seeds of the round `pick` chooses (the DreamBooth rows: their only round), in both metric spaces."""
    dist = {(space, control): distances(summary, pick, space, control)
            for space in SPACES for control in CONTROLS}
    rows = []
    for key in row_keys(summary):
        entry = {"row": key}
        for kind in ("object", "style", "all"):
            runs = [e for e in summary["results"] if e["row"] == key and e["rounds"] and kind in ("all", e["kind"])]
            entry[f"{kind}_runs"] = len(runs)
            for metric in SPACES["clip"] + SPACES["judge"]:
                values = [pick(e)[metric] for e in runs if metric in pick(e)]
                entry[f"{kind}_{metric}"] = interval(values) if values else None
            for (space, control), found in dist.items():
                d = [x for x in found if x["row"] == key and kind in ("all", x["kind"])]
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
    base, ceiling = PAPER_PICK[weight], f"perfect{count}-{weight}"
    gain = paired(summary, row, base, round_two, space, kind)
    top = paired(summary, ceiling, base, round_two, space, kind)
    if gain is None or top is None:
        return None
    return {"gain": gain, "ceiling": top, "closed": gain[0] / top[0] if abs(top[0]) > 1e-9 else float("nan")}


def figure(summary: dict, path: Path) -> None:
    """Figure 5: TXT-ALN against IMG-ALN per round, mean over runs (a run that stopped counts with its
    last round from then on), one arrowed line per strategy; the two controls (fewer steps, a lower LoRA scale) as
    curves; the judge's reading of the same images below."""
    from matplotlib.figure import Figure  # not pyplot: no window, no global state

    fig = Figure(figsize=(10, 8.4))
    grid = fig.subplots(2, 2)
    for axes, (space, (x, y, _)) in zip(grid, SPACES.items()):
        for ax, kind in zip(axes, ("object", "style")):
            for control, by, style in ((FEWER, "share", "--s"), (SCALED, "scale", ":^")):
                points = [e for e in summary["results"] if e["kind"] == kind and e["row"] in (BASELINE, control)
                          and e["rounds"] and x in e["rounds"][0]]
                shares = sorted({e.get(by, 1.0) for e in points})
                if len(shares) > 1:
                    xs = [np.mean([e["rounds"][0][x] for e in points if e.get(by, 1.0) == s]) for s in shares]
                    ys = [np.mean([e["rounds"][0][y] for e in points if e.get(by, 1.0) == s]) for s in shares]
                    ax.plot(xs, ys, style, color="0.45", ms=4, label=NAMES[control] if space == "clip" else None)
                    for px, py, s in zip(xs, ys, shares):
                        ax.annotate(f"{s:g}{'x' if by == 'share' else ''}", (px, py), textcoords="offset points",
                                    xytext=(3, 3), fontsize=6, color="0.35")
            for key in row_keys(summary)[1:]:
                runs = [e["rounds"] for e in summary["results"] if e["kind"] == kind and e["row"] == key and e["rounds"]
                        and x in e["rounds"][0]]
                if not runs:
                    continue
                depth = max(len(r) for r in runs)  # a run that stopped early keeps its last round's model
                xs = [float(np.mean([r[min(i, len(r) - 1)][x] for r in runs])) for i in range(depth)]
                ys = [float(np.mean([r[min(i, len(r) - 1)][y] for r in runs])) for i in range(depth)]
                line, = ax.plot(xs, ys, "-o", ms=3, label=NAMES[key] if space == "clip" else None,
                                alpha=0.6 if key in PERFECT else 1.0)
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


NOTES = "<!-- notes: what follows is kept when `gal bench --results` rewrites this file -->"


def _cell(v) -> str:
    return "–" if v is None else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def _signed(v) -> str:
    return "–" if v is None else f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]" + (" **real**" if v[1] > 0 or v[2] < 0 else "")


def write_results(summary: dict, path: Path, command: str, machine: str) -> None:
    """The results page at `path` (tables, then Figure 5 beside it); what follows `NOTES` in the page stays."""
    units = sorted({(e["subject"], e["seed"]) for e in summary["results"]})
    keys = row_keys(summary)
    gal_rows = [k for k in keys if k not in (BASELINE, EXPOSURE)]
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
        cells = [_cell(e[f"object_{m}"]) for m in METRICS] + [_signed(e["object_above"]), _signed(e["object_above_judge"])]
        cells += [_cell(e[f"style_{m}"]) for m in METRICS] + [_signed(e["style_above"]), _signed(e["style_above_judge"])]
        cells += [_signed(e["all_above"]), _signed(e["all_above_clip_steps"]), _signed(e["all_ovf_above"]),
                  _signed(e["all_above_judge"])]
        lines.append(f"| {NAMES[e['row']]} | {e['all_runs']} | " + " | ".join(cells) + " |")
    lines += ["", "The judge's shares (last round):", "",
              "| Models | Object kept ↑ | Object followed ↑ | Object faithful ↑ | Style kept ↑ | Style followed ↑ | Style faithful ↑ |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for e in table(summary):
        lines.append(f"| {NAMES[e['row']]} | " + " | ".join(_cell(e[f"{k}_{m}"]) for k in ("object", "style")
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
            lines.append(f"| {NAMES[e['row']]} | {_signed(e['object_above'])} | {_signed(e['object_above_judge'])} | "
                         f"{_signed(e['style_above'])} | {_signed(e['style_above_judge'])} | {_signed(e['all_above'])} |")
    lines += ["", "Share of the gap to perfect images each pick closes (round 2, same weight, paired by subject and seed; "
              "*closed* is the ratio of the mean gains):", "",
              "| Pick | Weight | Kind | Gain over the paper's pick ↑ | Perfect images' gain | Closed | Gain, judge ↑ | Perfect, judge | Closed, judge |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in ROWS + COMPOSITE_ROWS:
        if row.key not in keys or row.balance not in PAPER_PICK or row.key == PAPER_PICK[row.balance] \
                or (row.strategy != "uncertainty" and row.key not in COMPOSITE):  # measured against the paper's pick
            continue
        count = COMPOSITE.get(row.key, (3,))[0]
        for kind in ("object", "style"):
            c, j = (gap_closed(summary, row.key, row.balance, space, kind, count) for space in SPACES)
            if c:
                lines.append(f"| {row.name} | {WEIGHTS[row.balance]} | {kind} | {_signed(c['gain'])} | {_signed(c['ceiling'])} | "
                             f"{c['closed']:+.2f} | " + (f"{_signed(j['gain'])} | {_signed(j['ceiling'])} | {j['closed']:+.2f} |"
                                                        if j else "– | – | – |"))
    lines += ["", "## Paired differences", "", "*Above* (both controls, last round), same subject and seed, all runs:", "",
              "| Comparison | CLIP-like ↑ | Judge ↑ |", "| --- | --- | --- |"]
    for a in gal_rows:
        if a in TWO_ROUNDS:
            continue
        row = next(r for r in ROWS if r.key == a)
        for b in dict.fromkeys(["balance", PAPER_PICK.get(row.balance)]):
            if b and a != b and b in keys:
                lines.append(f"| {NAMES[a]} − {NAMES[b]} | {_signed(paired(summary, a, b))} | {_signed(paired(summary, a, b, space='judge'))} |")
    lines += ["", "## Which round to keep, chosen without the test prompts", "",
              "*Above* (both controls) of the round `gal show` recommends (`gal.keep`: the best TXT-ALN among the rounds "
              "that keep 80% of round 1's IMG-ALN), chosen on the validation split (the anchors no round added an image "
              "for: disjoint from the test prompts) or, leaking, on the test prompts themselves; against the last round:", "",
              "| Models | Last round | Chosen on test prompts (leaks) | Chosen on validation | Validation − last | Validation, judge |",
              "| --- | --- | --- | --- | --- | --- |"]
    for key in gal_rows:
        if key in TWO_ROUNDS:
            continue
        cells = [interval([x["above"] for x in distances(summary, p) if x["row"] == key])
                 for p in (last_round, recommended_on("test"), recommended_on("validation"))]
        judged = [x["above"] for x in distances(summary, recommended_on("validation"), "judge") if x["row"] == key]
        judge = interval(judged) if judged else None
        lines.append(f"| {NAMES[key]} | " + " | ".join(_signed(c) for c in cells) +
                     f" | {_signed(paired(summary, key, key, recommended_on('validation'), pick_b=last_round))} | {_signed(judge)} |")
    lines += ["", "## Is there a good image to pick?", "",
              "What the judge sees in each row's queries (all queried rounds): the share of samples that keep the subject "
              "and follow their anchor, the share of directions with at least one such sample, and of the images the "
              "row added: the share faithful, kept and followed.", "",
              "| Models | Kind | Samples faithful | Directions with one | Added: faithful | Added: kept | Added: followed |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for key in gal_rows:
        for kind in ("object", "style"):
            q = [r for e in summary["results"] if e["row"] == key and e["kind"] == kind for r in e.get("query", [])]
            if not q:
                continue
            added = [r for r in q if "added" in r]

            def mean(field, rows):
                return f"{np.mean([r[field] for r in rows]):.2f}" if rows else "–"
            lines.append(f"| {NAMES[key]} | {kind} | {mean('samples_faithful', q)} | {mean('directions_with_faithful', q)} | "
                         f"{mean('added_faithful', added)} | {mean('added_kept', added)} | {mean('added_followed', added)} |")
    other = [r.key for r in ROWS if "query_guidance" in r.options]  # their own round 1
    lines += ["", "## Diversity of the queries", "",
              "Round 1, shared by every row but those with their own query guidance: mean pairwise cosine distance of an "
              "anchor's samples in the scorer's space, and the share of directions with 0 < β < 1.", "",
              "| Subject | Pairwise distance | Open directions |" + "".join(f" {NAMES[k]}: distance | open |" for k in other),
              "| --- | --- | --- |" + " --- | --- |" * len(other)]

    def mean_first(subject: str, rows) -> str:
        first = [e["diversity"][0] for e in summary["results"]
                 if e["subject"] == subject and e.get("diversity") and e["row"] in rows]
        return (f" {np.mean([d['pairwise_distance'] for d in first]):.3f} | "
                f"{np.mean([d['open_directions'] for d in first]):.2f} |") if first else " | |"

    shared = {r.key for r in ROWS} - set(other)
    for subject in summary["settings"]["subjects"]:
        lines.append(f"| {subject} |" + mean_first(subject, shared) + "".join(mean_first(subject, {k}) for k in other))
    lines += ["", "## Per subject", "", "Mean over seeds of the last round; rounds: how many rounds the runs had (Eq. 10, "
              "or a person accepting nothing, ends a run early); steps: DreamBooth's fine-tuning steps.", "",
              "| Subject | Models | Rounds / steps | TXT-ALN ↑ | IMG-ALN ↑ | OVF ↓ | Kept ↑ | Followed ↑ | Above ↑ | Above, judge ↑ |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    dist, dist_judge = distances(summary), distances(summary, space="judge")
    for subject in summary["settings"]["subjects"]:
        for key in NAMES:
            runs = [e for e in summary["results"] if e["subject"] == subject and e["row"] == key and e["rounds"]]
            by = {FEWER: "share", SCALED: "scale"}.get(key)
            groups = sorted({e.get(by, 0) for e in runs}) if by else [None]
            for share in groups:
                group = [e for e in runs if share is None or e.get(by) == share]
                if not group:
                    continue
                depth = ("/".join(str(e["train_steps"]) for e in group) if "train_steps" in group[0]
                         else "/".join(str(len(e["rounds"])) for e in group))
                seeds = {e["seed"] for e in group}
                above = [x["above"] for x in dist if x["subject"] == subject and x["row"] == key and x["seed"] in seeds]
                judged = [x["above"] for x in dist_judge if x["subject"] == subject and x["row"] == key and x["seed"] in seeds]
                label = NAMES[key] + (f" ({share:g}{'x' if by == 'share' else ''})" if share is not None else "")
                values = [np.mean([last_round(e)[m] for e in group]) if all(m in last_round(e) for e in group) else None
                          for m in METRICS + SPACES["judge"][:2]]
                control = key in (BASELINE, FEWER, SCALED)
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
