"""Adaptive sampling (`gal run --sampling adaptive`) against the full query, on runs already made.

Adaptive sampling makes each direction's samples with the full query's seeds, so its samples are a prefix
of the full ones: the same images (up to the last bits of batches made up differently), the same Φ (Eq. 8). Given a full run's ledger, every round's adaptive
query is therefore known without generating anything: `gal.sampling.waves` (the function `gal run` calls)
reads the full run's Φ in j order and stops where adaptive sampling would. Per round of every
uncertainty-sampling run found under the folders given, this script reports:

- images: how many adaptive sampling makes, against the full query's;
- same top-k: whether Algorithm 1 chooses the same directions (Eq. 6 on the samples each side has);
- same stop: the same Eq. 10 decision;
- same picks: the same new references (direction and sample j);
- Δ: the openness (Eq. 9) each side computes, the weight of the round's new references.

Each round compares the two queries from the same checkpoint (the full run's); a round after a different
choice would train on different images, which this replay does not follow. Identical rounds (the bench's
rows share round 1) count once. `tests/test_adaptive.py` checks on real runs that an adaptive run makes
exactly the waves and the choices this replay computes.

    python benchmarks/adaptive_sampling.py BENCH_DIR [...] [--json F]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402


def replay_run(run_dir: Path) -> list[dict]:
    from gal import sampling
    from gal.ledger import Ledger
    from gal.strategy import score_directions

    ledger = Ledger(run_dir)
    try:
        cfg = ledger.recorded_config()
        if cfg.get("strategy") != "uncertainty" or cfg.get("sampling", "full") != "full":
            return []
        m, k, lam, seed = cfg["m"], cfg["k"], cfg["lambda"], cfg["seed"]
        out = []
        for r in [row["round"] for row in ledger.rounds() if row["closed"]]:
            pool, samples = ledger.pool(r), ledger.samples(r)
            if not samples or len(samples) != len(pool) * m:
                continue  # the last round (no query) or a round of an interrupted run
            full = _decide(score_directions(samples, pool, lam), k, seed, r)
            phi = [[s.overfit for s in samples if s.anchor_idx == a.idx] for a in pool]
            made = sampling.waves(len(pool), m, k, seed, r, lambda wave, targets: phi)
            target = {a.idx: t for a, t in zip(pool, made[-1])}
            kept = [s for s in samples if s.j < target[s.anchor_idx]]
            adaptive = _decide(score_directions(kept, pool, lam), k, seed, r)
            key = hashlib.sha256(repr([(a.idx, s.seed, s.overfit, s.sim_anchor) for a in pool for s in samples
                                       if s.anchor_idx == a.idx]).encode()).hexdigest()[:16]
            out.append({"run": str(run_dir), "seed": seed, "round": r, "key": key, "images": len(kept), "full_images": len(samples),
                        "waves": len(made), "same_topk": adaptive["topk"] == full["topk"],
                        "topk_up_to_ties": _up_to_ties(adaptive["topk"], full["topk"], full["omega"]),
                        "same_stop": adaptive["stop"] == full["stop"], "same_picks": adaptive["picks"] == full["picks"],
                        "full_stop": full["stop"], "delta": adaptive["delta"], "full_delta": full["delta"],
                        "open_directions": int((full["omega"] > 0).sum())})
        return out
    finally:
        ledger.close()


def _up_to_ties(rows: list[int], full_rows: list[int], omega) -> bool:
    """A top-k the full query could have chosen with another tie-break: the same number of directions, each
    with a full-query Ω at least the k-th largest (`strategy.top_k` breaks ties to the lower position, the
    authors' code the other way)."""
    if len(rows) != len(full_rows):
        return False
    return not rows or min(omega[i] for i in rows) >= min(omega[i] for i in full_rows) - 1e-12


def _decide(scored, k: int, seed: int, r: int) -> dict:
    from gal import strategy

    scores, beta, omega, delta = scored
    choice = strategy.choose("uncertainty", scores, k, np.random.default_rng([seed, r]))
    rows = sorted(p.row for p in choice.picks)
    return {"topk": rows, "stop": choice.stop is not None, "picks": sorted(choice.picks), "delta": delta,
            "omega": omega}


def summarize(rows: list[dict]) -> dict:
    def interval(flags) -> list[float]:  # Wilson 95% interval of a share
        n, p, z = len(flags), float(np.mean(flags)), 1.96
        centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return [round(centre - half, 3), round(centre + half, 3)]

    going_on = [r for r in rows if not r["full_stop"]]
    share = [r["images"] / r["full_images"] for r in rows]
    out = {"rounds": len(rows), "image_share": float(np.mean(share)), "image_share_max": float(np.max(share)),
           "same_topk": float(np.mean([r["same_topk"] for r in rows])),
           "same_topk_interval": interval([r["same_topk"] for r in rows]),
           "topk_up_to_ties": float(np.mean([r["topk_up_to_ties"] for r in rows])),
           "topk_up_to_ties_interval": interval([r["topk_up_to_ties"] for r in rows]),
           "same_stop": float(np.mean([r["same_stop"] for r in rows])),
           "same_stop_interval": interval([r["same_stop"] for r in rows]),
           "same_picks": float(np.mean([r["same_picks"] for r in rows])),
           "rounds_going_on": len(going_on),
           "delta_abs_error": float(np.mean([abs(r["delta"] - r["full_delta"]) for r in rows])),
           "delta_mean": float(np.mean([r["full_delta"] for r in rows]))}
    if going_on:
        out["same_topk_going_on"] = float(np.mean([r["same_topk"] for r in going_on]))
        out["image_share_going_on"] = float(np.mean([r["images"] / r["full_images"] for r in going_on]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="run folders, or folders holding runs (searched)")
    parser.add_argument("--json", type=Path, help="write every round's row and the summary here")
    parser.add_argument("--eps", type=float, help="gal.sampling.EPS (a direction is settled at 1 - eps)")
    parser.add_argument("--prior-weight", type=float, help="gal.sampling.PRIOR_WEIGHT")
    a = parser.parse_args()
    from gal import sampling

    sampling.EPS = sampling.EPS if a.eps is None else a.eps  # to trace the images / agreement curve
    sampling.PRIOR_WEIGHT = sampling.PRIOR_WEIGHT if a.prior_weight is None else a.prior_weight
    runs = sorted({p.parent for folder in a.folders for p in folder.rglob("gal.sqlite")})
    rows, seen = [], set()
    for run in runs:
        for row in replay_run(run):
            if row["key"] not in seen:
                seen.add(row["key"])
                rows.append(row)
    if not rows:
        raise SystemExit("no closed query round of an uncertainty-sampling run with --sampling full found")
    summary = {"eps": sampling.EPS, "prior_weight": sampling.PRIOR_WEIGHT, **summarize(rows),
               "by_seed": {seed: summarize([r for r in rows if r["seed"] == seed])
                           for seed in sorted({r["seed"] for r in rows})}}
    for row in rows:
        print(f"{row['run']} round {row['round']}: {row['images']:3d}/{row['full_images']} images, {row['waves']} waves, "
              f"top-k {'same' if row['same_topk'] else 'DIFFERENT'}, stop {'same' if row['same_stop'] else 'DIFFERENT'}, "
              f"Δ {row['delta']:.5f} vs {row['full_delta']:.5f}")
    print(json.dumps(summary, indent=2))
    if a.json:
        a.json.write_text(json.dumps({"summary": summary, "rounds": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
