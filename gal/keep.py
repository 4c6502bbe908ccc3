"""Which round to keep: a user wants one checkpoint, and the last round is not always the best one."""

from __future__ import annotations

from typing import Sequence

KEEP_IMAGE = 0.8  # the share of the fully trained checkpoint's IMG-ALN a recommended one keeps


def keep_rule(txt_aln: Sequence[float], img_aln: Sequence[float], reference: float, keep: float = KEEP_IMAGE
              ) -> tuple[int, list[int]]:
    """The rule that names the checkpoint to keep, for a run's rounds and for any trainer's checkpoints alike: the best
    TXT-ALN among the candidates that keep `keep` of the `reference` IMG-ALN (the fully trained checkpoint's: the
    subject is still there), ties to the first candidate (list them in the order to prefer). Returns the chosen
    candidate and those that lost more of it."""
    floor = reference - (1 - keep) * abs(reference)
    kept = [i for i, v in enumerate(img_aln) if v >= floor]
    return max(kept, key=lambda i: (txt_aln[i], -i)), [i for i, v in enumerate(img_aln) if v < floor]


def recommended_round(evaluated: Sequence[dict], keep: float = KEEP_IMAGE) -> tuple[int, str]:
    """The round to keep, from a run's evaluated rounds (in order, round 1 first): `keep_rule` against round 1's IMG-ALN,
    ties to the earlier round. `gal bench` measures how this choice stands against the frontier of training less."""
    first = evaluated[0]
    chosen, lost = keep_rule([r["txt_aln"] for r in evaluated], [r["img_aln"] for r in evaluated], first["img_aln"], keep)
    best, dropped = evaluated[chosen], [evaluated[i]["round"] for i in lost]
    why = (f"the best TXT-ALN ({best['txt_aln']:.3f}) among the rounds that keep {keep:.0%} of round 1's "
           f"IMG-ALN ({first['img_aln']:.3f})")
    if dropped:
        why += f"; round(s) {', '.join(map(str, dropped))} lost more of it"
    return best["round"], why


def recommendation(summary: dict) -> dict | None:
    """`recommended_round` for a run's summary (`Ledger.summary`), from the latest evaluation settings that
    cover every round with a checkpoint, the validation split's first (`gal eval`: the run's anchors that no round
    added an image for, so the round is not chosen on the test prompts its metrics are reported on); None before
    `gal eval`. Evaluations of a turned-down LoRA (`--lora-scale`) are of another model and do not count."""
    rounds = [r for r in summary["rounds"] if r["checkpoint"]]
    settings = [e["settings"] for e in rounds[0]["evaluations"] if "lora_scale" not in e["settings"]] if rounds else []
    validation = [s for s in settings if s.get("prompts") == "validation"]
    for chosen in reversed(validation):
        found = _covering(rounds, chosen)
        if found:
            n, why = recommended_round(found)
            return {"round": n, "checkpoint": _checkpoint(rounds, n), "split": "validation",
                    "why": why + f", on the validation split ({len(chosen.get('anchors', []))} anchors no round "
                                 "added an image for; not the test prompts)"}
    for chosen in reversed([s for s in settings if s.get("prompts") != "validation"]):
        found = _covering(rounds, chosen)
        if found:
            n, why = recommended_round(found)
            return {"round": n, "checkpoint": _checkpoint(rounds, n), "split": "test",
                    "why": why + ", on the test prompts (the same prompts these metrics are reported on: "
                                 "`gal eval` also evaluates the validation split, which does not choose on them)"}
    return None


def _covering(rounds: list[dict], settings: dict) -> list[dict] | None:
    found = [next((e for e in r["evaluations"] if e["settings"] == settings), None) for r in rounds]
    return [{**e, "round": r["round"]} for r, e in zip(rounds, found)] if all(found) else None


def _checkpoint(rounds: list[dict], n: int) -> str:
    return next(r["checkpoint"] for r in rounds if r["round"] == n)
