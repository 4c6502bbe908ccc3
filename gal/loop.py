"""Algorithm 1 of the paper, one round at a time:

    fine-tune f_θ on T -> generate m images per anchor (Eq. 4) -> oracle Φ (Eq. 8) -> β, Ω (Eq. 7, 6)
    -> openness Δ (Eq. 9) -> stop (Eq. 10) -> add the top-k directions' best images to T -> next round

Every step's result goes to the ledger before the next step starts, so a killed run resumes where it stopped: a
round with a checkpoint is not trained again, a sample on record is not generated again. The parts (`Components`: the
fine-tune, the query, the composer) do the work and the pure functions of `gal.strategy` decide; `gal.writer`'s `Writer`
records it from the main process of an `accelerate launch`, so nothing here knows how many processes there are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from gal import preflight, strategy
from gal.components import Components
from gal.config import Config
from gal.fine_tune import picked_samples
from gal.ledger import Ledger
from gal.references import non_soi_texts
from gal.storage import disk_errors
from gal.view import ledger_summary, round_line, start_line
from gal.writer import Writer, open_record


def run(config: Config, log: Callable[[str], None] = print, force: bool = False) -> dict:
    """Run (or resume) GAL into `config.out`; returns the ledger's summary."""
    found = preflight.examine(config, force)  # every value settled; the folder: new (its inputs read), unfinished, ...
    cfg, run_dir = found.cfg, Path(config.out)
    for note in found.notes:
        log(note)
    if found.state == "finished":
        log(f"{run_dir}: this run has already finished (result: {found.summary['result']}); nothing to do")
        return found.summary
    parts = Components(cfg, found.family)  # loads the models: a bad --base or --scorer fails here, before any write
    with disk_errors(run_dir), open_record(run_dir, parts.accelerator,
                                           lambda ledger: preflight.prepare(ledger, found, parts, force)) as (ledger, writer):
        writer.log(start_line(cfg, ledger, parts.accelerator.device), log)
        _rounds(cfg, ledger, writer, parts, lambda line: writer.log(line, log))
        return ledger_summary(ledger)


def _rounds(cfg: Config, ledger: Ledger, writer: Writer, parts: Components, log) -> None:
    """Algorithm 1, from the first round not yet closed in the ledger."""
    prior = parts.fine_tune.class_images(ledger, writer) if cfg.prior else []  # DreamBooth's prior preservation
    non_soi = non_soi_texts(cfg, ledger.added(0))  # ē* of Eq. 8
    rule = strategy.RULES[cfg.strategy]
    for r in range(1, cfg.rounds + 1):
        state = ledger.round(r)
        if state and state["closed"]:
            continue
        loss = parts.fine_tune.round(ledger, writer, r, prior)  # f_θ on T, Eq. 2 (or the round's recorded weights)
        pool = ledger.pool(r)
        reason = ("strategy none: the DreamBooth baseline" if not rule.queries else
                  f"round budget spent ({cfg.rounds} rounds)" if r == cfg.rounds else
                  f"only {len(pool)} anchor(s) left in the pool, fewer than k = {cfg.k}" if len(pool) < cfg.k else None)
        if reason:  # the last round fine-tunes and stops: its query could only feed a round that will not run
            writer.close_round(r, openness=None, directions=[], added=[], stop_reason=reason)
            log(f"round {r}: fine-tuned (loss {loss:.4f}); {reason}; result: {ledger.round(r)['checkpoint']}")
            return
        with parts.personalizer.merged():  # the LoRA merged for generation, the exact base weights back after
            parts.query.round(cfg, ledger, writer, r, pool, non_soi, log)  # I_ij per anchor (Eq. 4), Φ (Eq. 8)
        scores, beta, omega, delta = strategy.score_directions(ledger.samples(r), pool, cfg.lambda_)  # Eq. 8, 7, 6, 9
        if cfg.pick != "best":  # a pick that also reads how much of the subject each sample shows
            scores = scores._replace(identity=parts.query.identity(ledger, r, pool))
        directions = [(a.idx, float(beta[i]), float(omega[i]), 0) for i, a in enumerate(pool)]
        if rule.person and ledger.review(r) is None:  # a person picks any images of any directions (`gal review`)
            writer.wait_for_review(r, delta, directions)
            log(f"round {r}: waiting for review: run `gal review {ledger.run_dir}`, then this command again")
            return
        reviewed = strategy.reviewed_picks(ledger.review(r)["accepted"], pool) if rule.person else None
        choice = strategy.choose(cfg.strategy, scores, cfg.k, np.random.default_rng([cfg.seed, r]), reviewed,
                                 pick=cfg.pick)  # the top-k directions by Ω (section 3.2), or Eq. 10's stop
        weight = strategy.reference_weight(delta, cfg.balance)  # section 3.3
        chosen = [pool[p.row] for p in choice.picks]
        added = (parts.composer.add(parts.personalizer, ledger, writer, r, chosen, weight, steps=cfg.steps,
                                    guidance=cfg.query_guidance) if cfg.added == "composite" else
                 picked_samples(ledger.samples(r), pool, choice.picks, weight, r))
        writer.close_round(r, openness=delta, directions=[(*d[:3], int(any(d[0] == a.idx for a in chosen)))
                                                          for d in directions],
                           added=added, stop_reason=choice.stop)  # T updated with the picks (section 3.3)
        log(round_line(r, loss, pool, beta, omega, delta, choice.picks, choice.stop))
        if choice.stop:
            log(f"result: {ledger.round(r)['checkpoint']}")
            return
