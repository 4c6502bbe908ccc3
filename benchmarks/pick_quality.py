"""Is there a good image to pick, and does a pick find it? The judge's reading of a round-1 query, per query setting.

GAL adds, for each chosen direction, one of the direction's m samples. That can only help if some sample keeps the
subject *and* follows its anchor (the judge's *faithful*), and only if the pick finds it with what gal has (the CLIP
scorer). This script re-queries a bench run's round-1 checkpoint (the run's own seeds first, then more: nothing is
written to the run) under other query settings (guidance, the LoRA's scale in the query, a negative prompt, more
samples), has the judge (`gal.miniature.judge`) read every sample, and reports per setting:

- samples faithful / kept / followed: the base rates (what a random sample of a direction is);
- directions with a faithful sample among the first m (the most any pick can reach at that m);
- for each pick rule (`gal.strategy.PICKS` and the candidates below), over every direction and over the k that
  uncertainty sampling chooses: the share of its picks that are faithful, kept and followed;
- for an object, the same samples with the references' subject pasted in by their masks (`world.cutouts`, as a user's
  `NAME.mask.png` marks it): the share of composites that are faithful, and of the composite the scorer rates
  closest to its anchor (`composite-best`). `--scale 0` is the base model, prompted with the anchor in plain words.

A pick is worth its name when its faithful share is well above the base rate; the ceiling is the directions'.

    python benchmarks/pick_quality.py /work/bench/twotone_star/seed0/round-1 ... --guidance 4 2 --scale 1 0.75 \\
        --m 10 30 --json F
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def candidates():
    """The pick rules measured: gal's own (strategy.PICKS) and candidates, each `pick(scores, row) -> j`."""
    from gal import strategy

    def margin(scores, row):  # the farthest from copying: s_a - s_n (Eq. 8's two sides)
        return strategy.best_sample(scores.sim_anchor[row] - scores.sim_non_soi[row])

    def identity_only(scores, row):  # the most of the references' subject among Φ = 0
        return strategy._best_within(scores.identity[row], strategy._follows(scores, row))

    return {**strategy.PICKS, "margin": margin, "identity-only": identity_only}


def context(caption: str, subject_plain: str) -> str:
    """A reference's caption less the subject's own words ("a star by a brick wall" -> "by a brick wall")."""
    return " ".join(caption.replace(subject_plain, " ", 1).split())


def measure(run_dir: Path, subject_name: str, guidances: list[float], scales: list[float], ms: list[int],
            negatives: list[str] = ("none",), judge_dir: Path | None = None) -> list[dict]:
    from gal import composite, strategy
    from gal.components import Components
    from gal.config import make_config
    from gal.family import family_of
    from gal.generate import generate, sample_seed
    from gal.ledger import Ledger
    from gal.locations import WEIGHTS
    from gal.miniature import judge as judges
    from gal.miniature import world
    from gal.references import non_soi_texts

    subject = world.SUBJECTS[subject_name]
    judge = judges.Judge(judge_dir or WEIGHTS / "judge")
    ledger = Ledger(run_dir)
    try:
        cfg = make_config({**ledger.get("config"), "out": str(run_dir)}, source=str(run_dir))
        pool, non_soi = ledger.pool(1), non_soi_texts(cfg, ledger.added(0))
        checkpoint = run_dir / ledger.round(1)["checkpoint"]
        references = torch.from_numpy(ledger.reference_features().astype(np.float32))
        captions = [t.caption or t.prompt for t in ledger.added(0)]
    finally:
        ledger.close()
    parts = Components(cfg, family_of(cfg.base), trains=False)
    parts.personalizer.load(checkpoint)
    m_max = max(ms)
    todo = [(a, j) for a in pool for j in range(m_max)]
    seeds = [sample_seed(cfg.seed, 1, a.idx, j) for a, j in todo]  # j < cfg.m: round 1's own query seeds
    wanted = [judges.expected_scene(a.template, subject) for a, _ in todo]
    picks = candidates()
    pasted = subject.kind == "object"  # a style has no region to paste
    if pasted:
        cutouts = [composite.Subject(*c) for c in world.cutouts(subject_name)]  # the references with their masks
    out = []
    settings = [(g, s, n) for n in negatives for g in guidances for s in scales]
    for guidance, scale, negative in settings:
        # the query's negative prompt: none (the empty one, gal's and the paper's), the references' own non-SoI caption
        # (non-soi: what copying would show; guidance then pushes from it towards the anchor), or that caption less the
        # subject's own words (context: only what copying adds to the subject)
        text = {"none": None, "non-soi": non_soi[0], "context": context(non_soi[0], cfg.subject_plain)}[negative]
        negative_prompts = None if text is None else [text] * len(todo)
        s_a, s_n, ident, verdicts, c_a, c_n, c_verdicts = [], [], [], [], [], [], []
        with parts.personalizer.merged(scale):
            # scale 0 is the base model: it does not know the subject's token, so it gets the anchor in plain words
            prompts = [a.text if scale == 0 else a.prompt for a, _ in todo]
            for start, images in generate(parts.pipe, prompts, seeds, steps=cfg.steps,
                                          guidance=guidance, resolution=parts.resolution,
                                          batch_size=parts.gen_batch_size, autocast_dtype=parts.autocast_dtype,
                                          negative=negative_prompts):
                texts = [todo[i][0].text for i in range(start, start + len(images))]
                f = parts.scorer.image_features(images)
                sa, sn = parts.scorer.oracle(f, texts, non_soi)
                s_a.append(sa), s_n.append(sn)
                ident.append(parts.scorer.identity(f, texts, references, captions))
                seen = judge.predict(np.stack([np.asarray(im.convert("RGB")) for im in images]))
                verdicts += [judges.verdict(v, w, subject) for v, w in zip(seen, wanted[start:start + len(images)])]
                if pasted:  # the same samples with the references' subject pasted in, scored and judged alike
                    c = [composite.paste(np.asarray(im.convert("RGB")), cutouts[todo[i][1] % len(cutouts)])
                         for i, im in zip(range(start, start + len(images)), images)]
                    ca, cn = parts.scorer.oracle(parts.scorer.image_features(c), texts, non_soi)
                    c_a.append(ca), c_n.append(cn)
                    c_verdicts += [judges.verdict(v, w, subject)
                                   for v, w in zip(judge.predict(np.stack(c)), wanted[start:start + len(images)])]
        shape = (len(pool), m_max)
        s_a, s_n, ident = (torch.cat(x).numpy().astype(np.float64).reshape(shape) for x in (s_a, s_n, ident))
        v = np.array(verdicts, dtype=bool).reshape(*shape, 2)
        faithful = v.all(axis=-1)
        for m in ms:
            scores = strategy.RoundScores(s_a[:, :m], np.zeros(len(pool)), s_n[:, :m], ident[:, :m])
            phi = strategy.overfit(scores.sim_anchor, scores.sim_non_soi)  # Eq. 8
            omega = strategy.entropy(strategy.overfit_rate(phi))  # Eq. 7, 6
            chosen = strategy.top_k(omega, cfg.k)
            row = {"run": str(run_dir), "subject": subject_name, "kind": subject.kind, "guidance": guidance,
                   "scale": scale, "negative": negative, "m": m, "samples_faithful": float(faithful[:, :m].mean()),
                   "samples_kept": float(v[:, :m, 0].mean()), "samples_followed": float(v[:, :m, 1].mean()),
                   "phi0_faithful": float(faithful[:, :m][phi == 0].mean()) if (phi == 0).any() else None,
                   "directions_with_faithful": float(faithful[:, :m].any(axis=1).mean()),
                   "chosen_with_faithful": float(faithful[chosen, :m].any(axis=1).mean()),
                   "open": int((omega > 0).sum()), "mean_beta": float(phi.mean())}
            for name, pick in picks.items():
                js = [pick(scores, i) for i in range(len(pool))]
                got = v[np.arange(len(pool)), js]  # (n, 2)
                row[f"{name}_faithful"] = float(got.all(axis=-1).mean())
                row[f"{name}_kept"], row[f"{name}_followed"] = float(got[:, 0].mean()), float(got[:, 1].mean())
                row[f"{name}_chosen_faithful"] = float(got[chosen].all(axis=-1).mean())
            if pasted:
                ca, cn = (torch.cat(x).numpy().astype(np.float64).reshape(shape)[:, :m] for x in (c_a, c_n))
                cv = np.array(c_verdicts, dtype=bool).reshape(*shape, 2)[:, :m]
                row["composite_faithful"] = float(cv.all(axis=-1).mean())
                row["composite_followed"] = float(cv[..., 1].mean())
                for name, values in (("composite-best", ca), ("composite-margin", ca - cn)):
                    got = cv[np.arange(len(pool)), [strategy.best_sample(x) for x in values]]
                    row[f"{name}_faithful"] = float(got.all(axis=-1).mean())
                    row[f"{name}_chosen_faithful"] = float(got[chosen].all(axis=-1).mean())
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


def table(rows: list[dict]) -> str:
    """Markdown: per kind and query setting, the mean over runs (95% bootstrap interval) of the base rates (and the
    faithful share kept and followed would give if they were independent), of the directions with a faithful sample,
    and of each pick's faithful share over every direction; with composites, theirs."""
    from gal.miniature.results import interval

    def cell(values) -> str:
        mean, lo, hi = interval(values)
        return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]" if hi > lo else f"{mean:.3f}"

    composite = any("composite-best_faithful" in r for r in rows)
    names = list(candidates()) + (["composite-best"] if composite else [])
    head = (["Kind", "Guidance", "LoRA scale", "Negative", "m", "Runs", "Samples kept", "Samples followed",
             "Samples faithful", "If independent", "Directions with one", "GAL's k with one"] + [f"Pick {n}: faithful" for n in names]
            + (["Composites faithful"] if composite else []))
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    unique = {(r["run"], r["guidance"], r["scale"], r.get("negative", "none"), r["m"]): r for r in rows}  # last wins
    groups: dict[tuple, list[dict]] = {}
    for r in unique.values():
        groups.setdefault((r["kind"], r["guidance"], r["scale"], r.get("negative", "none"), r["m"]), []).append(r)
    for key, group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][3], -kv[0][1], -kv[0][2], kv[0][4])):
        cells = [cell([r[c] for r in group]) for c in ("samples_kept", "samples_followed", "samples_faithful")]
        cells.append(cell([r["samples_kept"] * r["samples_followed"] for r in group]))
        cells += [cell([r[c] for r in group]) for c in ("directions_with_faithful", "chosen_with_faithful")]
        cells += [cell([r[f"{n}_faithful"] for r in group]) if f"{n}_faithful" in group[0] else "–" for n in names]
        if composite:
            cells.append(cell([r["composite_faithful"] for r in group]) if "composite_faithful" in group[0] else "–")
        lines.append("| " + " | ".join([*map(str, key), str(len(group)), *cells]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path, help="bench round-1 folders (SUBJECT/seedN/round-1)")
    p.add_argument("--subject", help="the world's subject (default: the folder two levels up)")
    p.add_argument("--guidance", type=float, nargs="+", default=[4.0, 2.0])
    p.add_argument("--scale", type=float, nargs="+", default=[1.0, 0.75],
                   help="the LoRA's scale in the query (0: the base model, prompted with the anchor in plain words)")
    p.add_argument("--negative", nargs="+", default=["none"], choices=["none", "non-soi", "context"],
                   help="the query's negative prompt: none, the references' non-SoI caption, or that caption less the "
                        "subject's words")
    p.add_argument("--m", type=int, nargs="+", default=[10, 30], help="samples per anchor (the first m of the largest)")
    p.add_argument("--json", metavar="FILE", help="also write the rows here")
    p.add_argument("--table", metavar="JSON", nargs="+", help="only print the table of these earlier --json files")
    a = p.parse_args(argv)
    if a.table:
        print(table([row for f in a.table for row in json.loads(Path(f).read_text())]))
        return
    rows = [row for run in a.runs for row in measure(run, a.subject or run.parent.parent.name, a.guidance, a.scale, a.m,
                                                 a.negative)]
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
