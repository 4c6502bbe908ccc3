"""How different are an anchor's m query samples, and how many directions stay open (0 < β < 1)?

Uncertainty sampling can only choose a direction whose samples disagree (Eq. 6: Ω = 0 when β is 0 or 1),
and Eq. 10 ends a run when fewer than k directions are open. This script re-queries a run's round-1
checkpoint (the same anchors, seeds and oracle as `gal run`'s query, nothing written to the run) under
other query settings, and reports per setting:

- pairwise distance: mean cosine distance between an anchor's samples in the scorer's image space;
- open directions: the share of anchors with 0 < β < 1, and their number (Eq. 10 needs k);
- mean β (the overfit rate);
- against the first setting measured (the run's own, which reproduces its ledger): the share of samples
  whose Φ (Eq. 8) is the same, whether the uncertainty strategy would choose the same top-k directions and
  make the same Eq. 10 decision (what `--query-steps` and `--query-guidance` would change, or merging the
  LoRA into the weights: `--lora adapter merged`).

    python benchmarks/query_diversity.py RUN [RUN ...] --guidance 4 2 --sampler dpm sde-dpm --steps 20 10 --json F
"""

from __future__ import annotations

import argparse
import json
import os
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

SAMPLERS = {"dpm": {"algorithm_type": "dpmsolver++"},  # gal's query sampler (DPM-Solver, deterministic)
            "sde-dpm": {"algorithm_type": "sde-dpmsolver++"}}  # the same solver with noise at each step


def measure(run_dir: Path, guidances: list[float], samplers: list[str], step_counts: list[int] | None = None,
            loras: tuple[str, ...] = ("merged",)) -> list[dict]:
    from diffusers import DPMSolverMultistepScheduler

    from gal import strategy
    from gal.components import Components
    from gal.config import make_config
    from gal.family import family_of
    from gal.generate import generate, sample_seed
    from gal.ledger import Ledger
    from gal.references import non_soi_texts

    ledger = Ledger(run_dir)
    try:
        cfg = make_config({**ledger.get("config"), "out": str(run_dir)}, source=str(run_dir))
        pool, non_soi = ledger.pool(1), non_soi_texts(cfg, ledger.added(0))
        checkpoint = run_dir / ledger.round(1)["checkpoint"]
    finally:
        ledger.close()
    parts = Components(cfg, family_of(cfg.base))
    parts.personalizer.load(checkpoint)
    base_config = parts.pipe.scheduler.config
    todo = [(a, j) for a in pool for j in range(cfg.m)]
    seeds = [sample_seed(cfg.seed, 1, a.idx, j) for a, j in todo]  # round 1's query seeds
    out, reference = [], None
    settings = [(sampler, guidance, steps, lora) for sampler in samplers for guidance in guidances
                for steps in step_counts or [cfg.steps] for lora in loras]
    for sampler, guidance, steps, lora in settings:
        parts.pipe.scheduler = DPMSolverMultistepScheduler.from_config(base_config, **SAMPLERS[sampler])
        features, s_a, s_n = [], [], []
        with parts.personalizer.merged() if lora == "merged" else nullcontext():
            for start, images in generate(parts.pipe, [a.prompt for a, _ in todo], seeds, steps=steps,
                                          guidance=guidance, resolution=parts.resolution,
                                          batch_size=parts.gen_batch_size, autocast_dtype=parts.autocast_dtype):
                f = parts.scorer.image_features(images)
                sa, sn = parts.scorer.oracle(f, [todo[i][0].text for i in range(start, start + len(images))], non_soi)
                features.append(f), s_a.append(sa), s_n.append(sn)
        f = torch.cat(features).numpy().reshape(len(pool), cfg.m, -1)
        phi = strategy.overfit(torch.cat(s_a).numpy(), torch.cat(s_n).numpy()).reshape(len(pool), cfg.m)  # Eq. 8
        beta = strategy.overfit_rate(phi)  # Eq. 7
        omega = strategy.entropy(beta)  # Eq. 6
        stop = strategy.should_stop(omega, cfg.k)  # Eq. 10
        chosen = set() if stop else set(strategy.top_k(omega, cfg.k))
        off_diagonal = ~np.eye(cfg.m, dtype=bool)
        spread = [float((1 - fa @ fa.T)[off_diagonal].mean()) for fa in f]
        open_ = (beta > 0) & (beta < 1)
        reference = reference or (phi, chosen, stop)
        out.append({"run": str(run_dir), "sampler": sampler, "guidance": guidance, "steps": steps, "lora": lora,
                    "pairwise_distance": float(np.mean(spread)), "open_share": float(open_.mean()),
                    "open": int(open_.sum()), "k": cfg.k, "mean_beta": float(beta.mean()),
                    "phi_agreement": float((phi == reference[0]).mean()), "same_top_k": chosen == reference[1],
                    "same_stop": stop == reference[2]})
        print(json.dumps(out[-1]), flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="gal run folders with a round-1 checkpoint")
    p.add_argument("--guidance", type=float, nargs="+", default=[4.0, 2.0])
    p.add_argument("--sampler", nargs="+", default=["dpm", "sde-dpm"], choices=list(SAMPLERS))
    p.add_argument("--steps", type=int, nargs="+", help="sampling steps (default: the run's)")
    p.add_argument("--lora", nargs="+", default=["merged"], choices=["merged", "adapter"],
                   help="the round's LoRA merged into the weights (gal run's query since 2026-11-29) or as an adapter "
                        "(before: `--lora adapter merged` reproduces an older ledger, then compares)")
    p.add_argument("--json", metavar="FILE", help="also write the rows here")
    a = p.parse_args(argv)
    rows = [row for run in a.runs for row in measure(run, a.guidance, a.sampler, a.steps, a.lora)]
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
