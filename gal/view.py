"""A read-only view of a run folder: the ledger's summary as objects (`gal.open_run`).

Paths are absolute (the ledger stores them relative to the run folder)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gal.config import Config, make_config, strategy_label
from gal.errors import GalError
from gal.keep import recommendation


@dataclass(frozen=True)
class Sample:
    anchor_index: int
    j: int
    seed: int
    path: Path
    sim_anchor: float | None  # s_a of Eq. 8
    sim_non_soi: float | None  # s_n of Eq. 8
    overfit: bool | None  # Φ


@dataclass(frozen=True)
class Direction:
    index: int
    prompt: str
    beta: float  # Eq. 7
    entropy: float  # Ω, Eq. 6
    selected: bool
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class Added:
    path: Path
    prompt: str
    weight: float
    anchor_index: int | None


@dataclass(frozen=True)
class Round:
    number: int
    checkpoint: Path | None
    train_loss: float | None
    openness: float | None  # Δ, Eq. 9
    stopped: bool
    stop_reason: str | None
    directions: tuple[Direction, ...]
    added: tuple[Added, ...]  # the images this round added to T
    evaluations: tuple[dict, ...]  # `gal eval`'s metrics, each with its settings


@dataclass(frozen=True)
class Run:
    folder: Path
    config: Config
    status: str | None
    result: Path | None  # the last round's checkpoint
    references: tuple[Added, ...]
    rounds: tuple[Round, ...]
    recommended: dict | None  # `gal.keep.recommendation`: the round to keep, once evaluated

    @property
    def selections(self) -> dict[int, list[Direction]]:
        """The directions chosen in each round."""
        return {r.number: [d for d in r.directions if d.selected] for r in self.rounds}


def ledger_summary(ledger) -> dict:
    """The whole run as plain data (`gal show --json`; paths relative to the run folder)."""
    anchors = {a.idx: a for a in ledger.anchors()}
    rounds = []
    for r in ledger.rounds():
        samples: dict[int, list[dict]] = {}
        for s in ledger.samples(r["round"]):
            samples.setdefault(s.anchor_idx, []).append(
                {"j": s.j, "seed": s.seed, "path": s.path, "sim_anchor": s.sim_anchor,
                 "sim_non_soi": s.sim_non_soi, "overfit": s.overfit})
        directions = [
            {"index": d["anchor_idx"], "prompt": anchors[d["anchor_idx"]].prompt, "beta": d["beta"],
             "entropy": d["entropy"], "selected": bool(d["selected"]), "samples": samples.get(d["anchor_idx"], [])}
            for d in ledger.directions(r["round"])]
        rounds.append({
            "round": r["round"], "openness": r["openness"], "stopped": bool(r["stopped"]),
            "stop_reason": r["stop_reason"], "checkpoint": r["checkpoint"], "train_loss": r["train_loss"],
            "anchors": directions, "evaluations": ledger.evaluations(r["round"]),
            "added": [{"path": a.path, "prompt": a.prompt, "weight": a.weight, "anchor_index": a.anchor_idx}
                      for a in ledger.added(r["round"])],
        })
    return {
        "config": ledger.recorded_config(), "status": ledger.get("status"), "result": ledger.get("result"),
        "references": [{"path": a.path, "prompt": a.prompt, "weight": a.weight} for a in ledger.added(0)],
        "rounds": rounds,
    }


def run_summary(folder: str | Path) -> dict:
    """The ledger's summary (`gal show --json`; paths relative to the run folder) with the round to keep."""
    from gal.ledger import Ledger

    folder = Path(folder)
    if not Ledger.exists(folder):
        raise GalError(f"{folder}: no gal run here (no {Ledger.FILE}); expected a folder made by `gal run --out`")
    ledger = Ledger(folder, read_only=True)  # a reader never writes the ledger
    try:
        summary = ledger_summary(ledger)
    finally:
        ledger.close()
    return {**summary, "recommended": recommendation(summary)}


def open_run(folder: str | Path) -> Run:
    return from_summary(Path(folder), run_summary(folder))


def run_text(folder: str | Path, summary: dict) -> str:
    """`gal show`: the run's set-up, one line per round, and the round to keep."""
    def fmt(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    c = summary["config"]
    lines = [f"{folder}: {summary['status']}   strategy {strategy_label(c['strategy'], c['balance'])}, "
             f"m={c['m']}{' (adaptive)' if c.get('sampling') == 'adaptive' else ''} k={c['k']} λ={c['lambda']}, "
             f"{c['method']} on {c['base']}",
             f"references: {len(summary['references'])}; result: {summary['result'] or '-'}",
             f"{'round':>5}  {'loss':>7}  {'images':>6}  {'overfit β':>9}  {'uncertain':>9}  {'openness Δ':>10}  "
             "chosen directions / stop"]
    for r in summary["rounds"]:
        anchors = r["anchors"]
        beta = sum(a["beta"] for a in anchors) / len(anchors) if anchors else None
        uncertain = sum(a["entropy"] > 0 for a in anchors) if anchors else None
        chosen = [f"[{a['index']}] {a['prompt']} (Ω {a['entropy']:.3f})" for a in anchors if a["selected"]]
        images = sum(len(a["samples"]) for a in anchors)  # the query's (fewer than m per anchor when adaptive)
        lines.append(f"{r['round']:>5}  {fmt(r['train_loss'], '.4f'):>7}  {images or '-':>6}  {fmt(beta, '.2f'):>9}  "
                     f"{fmt(uncertain, 'd'):>9}  "
                     f"{fmt(r['openness'], '.5f'):>10}  {'; '.join(chosen)}{'stop: ' + r['stop_reason'] if r['stopped'] else ''}")
    rec = summary["recommended"]
    if rec:
        lines.append(f"keep: round {rec['round']} ({rec['checkpoint']}): {rec['why']}")
    elif any(r["checkpoint"] for r in summary["rounds"]):
        lines.append(f"keep: evaluate the rounds first (gal eval {folder}), then gal show names the round to keep")
    return "\n".join(lines)


def from_summary(folder: Path, summary: dict) -> Run:
    def path(p):
        return folder / p if p else None

    def added(rows):
        return tuple(Added(path(a["path"]), a["prompt"], a["weight"], a.get("anchor_index")) for a in rows)

    rounds = tuple(
        Round(r["round"], path(r["checkpoint"]), r["train_loss"], r["openness"], r["stopped"], r["stop_reason"],
              tuple(Direction(d["index"], d["prompt"], d["beta"], d["entropy"], d["selected"],
                              tuple(Sample(d["index"], s["j"], s["seed"], path(s["path"]), s["sim_anchor"],
                                           s["sim_non_soi"], None if s["overfit"] is None else bool(s["overfit"]))
                                    for s in d["samples"]))
                    for d in r["anchors"]),
              added(r["added"]), tuple(r["evaluations"]))
        for r in summary["rounds"])
    recommended = summary["recommended"]
    if recommended:
        recommended = {**recommended, "checkpoint": path(recommended["checkpoint"])}
    return Run(folder, make_config(summary["config"] or {}, source=str(folder)), summary["status"],
               path(summary["result"]), added(summary["references"]), rounds, recommended)


def round_line(r: int, loss: float, pool, beta, omega, delta: float, picks, stop: str | None) -> str:
    """The line `gal run` prints as it closes a round: its loss, β, Ω and Δ (Eq. 7, 6, 9), and what it chose."""
    chosen = ", ".join(f"[{pool[p.row].idx}] {pool[p.row].template} (Ω {omega[p.row]:.3f})" for p in picks)
    line = (f"round {r}: loss {loss:.4f} | anchor overfit {float(beta.mean()):.2f} over {len(pool)} directions | "
            f"{int((omega > 0).sum())} uncertain | openness Δ {delta:.5f}")
    return line + (f" | stop: {stop}" if stop else f" | chose {chosen}")


def start_line(cfg: Config, ledger, device) -> str:
    """The line `gal run` prints as it starts or resumes a run: T, the anchors and the settings of Algorithm 1."""
    return (f"{ledger.run_dir}: {len(ledger.added(0))} reference(s), {len(ledger.anchors())} anchors, "
            f"{strategy_label(cfg.strategy, cfg.balance)}, m={cfg.m} k={cfg.k} λ={cfg.lambda_}, "
            f"{cfg.method} on {cfg.base}, {device}"
            + (", added images: composites (gal/composite.py)" if cfg.added == "composite" else ""))
