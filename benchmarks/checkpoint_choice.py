"""Does `gal eval`'s recommendation pick the checkpoint and LoRA scale a person would keep? (issue 26, item 8)

DreamBooth's frontier runs of `gal bench` (the same training stopped at 1/8, 1/4, 1/2, 3/4 of its steps, and the
full run) are a trainer's checkpoint series. This script copies their LoRAs into a folder in kohya's layout
(`<subject>-000100.safetensors`, ...: the file `gal run` writes beside diffusers', which `load_lora_weights`
converts), scores the series with `gal.evaluate_checkpoints` at several LoRA scales (the user's command, `gal eval
--base miniature --lora FOLDER --lora-scale ...`), and lets the miniature world's judge look at every (checkpoint,
scale)'s test images: the share *faithful* (the subject kept and every other attribute the prompt states followed).
Per subject and seed it reports the recommended pair, the judge's best pair, and the regret (best - recommended
faithful share), against the choice a user of the trainer makes without gal (the last checkpoint at scale 1).

The recommendation reads only the anchors' samples (the validation split); the judge reads the test prompts' images.

    python benchmarks/checkpoint_choice.py --bench /work/bench --out /work/ckpt --only twotone_star --seed 0 \
        --json docs/measurements/checkpoint-choice-2026-12-01.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402


def series(bench: Path, subject: str, seed: int, folder: Path) -> Path:
    """The frontier's LoRAs, numbered by their step count, kohya-style."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    for run in sorted((bench / subject / f"seed{seed}").glob("dreambooth-*")) + [bench / subject / f"seed{seed}" / "round-1"]:
        steps = yaml.safe_load((run / "config.yaml").read_text())["train_steps"]
        shutil.copy(run / "rounds" / "1" / "checkpoint" / "lora_kohya.safetensors",
                    folder / f"{subject}-{steps:06d}.safetensors")
    return folder


def judged(rows: list[dict], prompts: Path, subject_name: str, judge) -> None:
    from PIL import Image

    from gal.miniature import judge as judges
    from gal.miniature import world

    subject = world.SUBJECTS[subject_name]
    templates = [line for line in prompts.read_text().splitlines() if line.strip()]
    for r in rows:
        files = sorted(Path(r["images_dir"]).glob("p*-j*.png"))
        seen = judge.predict(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))
        v = np.array([judges.verdict(s, judges.expected_scene(templates[int(f.name[1:4])], subject), subject)
                      for s, f in zip(seen, files)])
        r.update(kept=float(v[:, 0].mean()), followed=float(v[:, 1].mean()), faithful=float(v.all(axis=1).mean()))


def one(bench: Path, out: Path, subject: str, seed: int, scales: list[float], m: int, judge) -> dict:
    import gal
    from gal.miniature import SETTINGS
    from gal.miniature.inputs import inputs

    work = out / subject / f"seed{seed}"
    done = work / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    fields, prompts = inputs(work / "inputs", subject)
    cfg = gal.Config(**fields, **SETTINGS, seed=seed)
    found = gal.evaluate_checkpoints(cfg, [str(series(bench, subject, seed, work / "series"))], scales, m=m,
                                     prompts_file=str(prompts), save_dir=work / "images", log=lambda *_: None)
    rows = found["rows"]
    judged(rows, prompts, subject, judge)
    result = {"subject": subject, "seed": seed, "m": m, "scales": scales, "recommended": found["recommended"]["label"],
              "why": found["recommended"]["why"],
              "rows": [{k: r[k] for k in ("label", "step", "scale", "txt_aln", "img_aln", "ovf", "copies", "validation",
                                          "kept", "followed", "faithful")} for r in rows]}
    done.write_text(json.dumps(result, indent=1))
    return result


# The judge's reading of "best": every image both keeps the subject and follows the prompt (`faithful`), or, as that
# share is small for every checkpoint of a 32 px model, the mean of the two shares (`balanced`)
CRITERIA = {"faithful": lambda r: r["faithful"], "balanced": lambda r: (r["kept"] + r["followed"]) / 2}


def scored(result: dict, criterion: str) -> dict:
    """The recommended pair's judge score against the best pair's, and those of the choices a user has without gal:
    the last checkpoint at scale 1, a pair drawn at random (the mean), and (leaking) the same rule read on the test
    prompts."""
    from gal.compare import recommended

    score, rows = CRITERIA[criterion], result["rows"]
    by_label = {r["label"]: r for r in rows}
    best = max(rows, key=score)
    last = next(r for r in rows if r["step"] == rows[-1]["step"] and r["scale"] == 1.0)
    leaky = recommended([{**r, "checkpoint": r["step"], "lora": None, "validation": r} for r in rows])["label"]
    chosen = by_label[result["recommended"]]
    return {"hit": chosen is best or score(chosen) == score(best), "regret": score(best) - score(chosen),
            "regret_last": score(best) - score(last), "regret_test": score(best) - score(by_label[leaky]),
            "regret_random": score(best) - sum(map(score, rows)) / len(rows),
            "best": best["label"], "best_score": score(best), "chosen_score": score(chosen)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", type=Path, required=True, help="a gal bench folder with the frontier rows")
    p.add_argument("--out", type=Path, required=True, help="work folder (resumable: a finished subject/seed is kept)")
    p.add_argument("--only", action="append", help="subject (repeatable; default: every one in --bench)")
    p.add_argument("--seed", type=int, action="append", help="seed (repeatable; default 0 1 2)")
    p.add_argument("--scales", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    p.add_argument("--m", type=int, default=4, help="samples per anchor for β and the validation split")
    p.add_argument("--json", type=Path, help="write every subject/seed's result here")
    a = p.parse_args()
    from gal.locations import WEIGHTS
    from gal.miniature import judge as judges

    judge = judges.Judge(WEIGHTS / "judge")
    subjects = a.only or sorted(d.name for d in a.bench.iterdir() if (d / "seed0").is_dir())
    results = []
    for seed in a.seed or [0, 1, 2]:
        for subject in subjects:
            if not (a.bench / subject / f"seed{seed}" / "round-1").exists():
                continue
            r = one(a.bench, a.out, subject, seed, a.scales, a.m, judge)
            results.append(r)
            f = scored(r, "faithful")
            print(f"{subject} seed {seed}: keep {r['recommended']} (faithful {f['chosen_score']:.3f}); the judge's best "
                  f"{f['best']} ({f['best_score']:.3f})", flush=True)
    from gal.miniature.results import interval

    for criterion in CRITERIA:
        s = [scored(r, criterion) for r in results]
        cells = {k: interval([x[k] for x in s]) for k in ("regret", "regret_last", "regret_test", "regret_random")}
        print(f"{criterion}: recommended = the judge's best in {sum(x['hit'] for x in s)} of {len(s)}; regret (best - "
              "chosen, mean [95% interval]): " + "; ".join(f"{k} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for k, v in cells.items()))
    if a.json:
        a.json.write_text(json.dumps({"results": results, "scored": {c: [scored(r, c) for r in results] for c in CRITERIA}},
                                     indent=1) + "\n")


if __name__ == "__main__":
    main()
