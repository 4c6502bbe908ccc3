"""Algorithm 1 of the paper, one round at a time:

    fine-tune f_θ on T -> generate m images per anchor (Eq. 4) -> oracle Φ (Eq. 8) -> β, Ω (Eq. 7, 6)
    -> openness Δ (Eq. 9) -> stop (Eq. 10) -> add the top-k directions' best images to T -> next round

Every step's result goes to the ledger before the next step starts, so a killed run resumes where it
stopped: a round with a checkpoint is not trained again, a sample on record is not generated again. The parts
(`Components`: the trainer, the query, the scorer) do the work; the ledger's `Writer` records it from the main
process of an `accelerate launch`, so nothing here knows how many processes there are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from gal import preflight, sampling, strategy
from gal.components import Components
from gal.composite import names_a_style
from gal.config import Config, resolved, strategy_label, this_machine
from gal.errors import GalError
from gal.family import family_of
from gal.generate import sample_seed
from gal.ledger import Anchor, Ledger, Reference, Sample, Writer, open_record
from gal.personalize import Example, Term
from gal.query import Job, Made
from gal.storage import disk_errors, folder_in_place, write_png


def run(config: Config, log: Callable[[str], None] = print, force: bool = False) -> dict:
    """Run (or resume) GAL into `config.out`; returns the ledger's summary."""
    cfg = resolved(config, this_machine(), family_of)
    if config.quantize == "auto" and cfg.quantize != "none":  # chosen for this GPU: say so
        from gal.memory import explain

        log(explain(family_of(cfg.base), cfg.base, this_machine(), cfg.quantize))
    run_dir = Path(cfg.out)
    found = preflight.examine(run_dir, cfg, force)  # new (its inputs read and checked), unfinished or finished
    cfg = found.cfg  # with what the inputs decide (composites for masked objects) settled
    if found.state == "finished":
        log(f"{run_dir}: this run has already finished (result: {found.summary['result']}); nothing to do")
        return found.summary
    parts = Components(cfg)  # loads the models: a bad --base or --scorer fails here, before anything is written
    with disk_errors(run_dir), open_record(run_dir, parts.accelerator,
                                           lambda ledger: preflight.prepare(ledger, found, cfg, parts, force)) as (ledger, writer):
        parts.non_soi_texts = preflight.non_soi_texts(cfg, ledger)
        writer.log(f"{run_dir}: {len(ledger.added(0))} reference(s), {len(ledger.anchors())} anchors, "
                   f"{strategy_label(cfg.strategy, cfg.balance)}, m={cfg.m} k={cfg.k} λ={cfg.lambda_}, "
                   f"{cfg.method} on {cfg.base}, {parts.accelerator.device}"
                   + (", added images: composites (gal/composite.py)" if cfg.added == "composite" else ""), log)
        _rounds(cfg, ledger, writer, parts, lambda line: writer.log(line, log))
        from gal.view import ledger_summary

        return ledger_summary(ledger)


def _rounds(cfg: Config, ledger: Ledger, writer: Writer, parts: Components, log) -> None:
    """Algorithm 1, from the first round not yet closed in the ledger."""
    prior = _class_images(cfg, ledger, writer, parts) if cfg.prior else []
    rule = strategy.RULES[cfg.strategy]
    for r in range(1, cfg.rounds + 1):
        state = ledger.round(r)
        if state and state["closed"]:
            continue
        loss = _fine_tune(cfg, ledger, writer, parts, r, prior)  # f_θ on T, Eq. 2 (or the round's recorded weights)
        pool = ledger.pool(r)
        reason = ("strategy none: the DreamBooth baseline" if not rule.queries else
                  f"round budget spent ({cfg.rounds} rounds)" if r == cfg.rounds else
                  f"only {len(pool)} anchor(s) left in the pool, fewer than k = {cfg.k}" if len(pool) < cfg.k else None)
        if reason:  # the last round fine-tunes and stops: its query could only feed a round that will not run
            writer.close_round(r, openness=None, directions=[], added=[], stop_reason=reason)
            log(f"round {r}: fine-tuned (loss {loss:.4f}); {reason}; result: {ledger.round(r)['checkpoint']}")
            return
        with parts.personalizer.merged():  # the LoRA merged for generation, the exact base weights back after
            _query(cfg, ledger, writer, parts, r, pool, log)  # I_ij for every anchor in the pool (Eq. 4), Φ (Eq. 8)
        scores, beta, omega, delta = score_directions(ledger.samples(r), pool, cfg.lambda_)  # Eq. 8, 7, 6, 9
        if cfg.pick != "best":  # a pick that also reads how much of the subject each sample shows
            scores = scores._replace(identity=_identity(ledger, parts, r, pool))
        directions = [(a.idx, float(beta[i]), float(omega[i]), 0) for i, a in enumerate(pool)]
        if rule.person and ledger.review(r) is None:  # a person picks any images of any directions (`gal review`)
            writer.wait_for_review(r, delta, directions)
            log(f"round {r}: waiting for review: run `gal review {ledger.run_dir}`, then this command again")
            return
        choice = strategy.choose(cfg.strategy, scores, cfg.k, np.random.default_rng([cfg.seed, r]),
                                 _reviewed(ledger.review(r), pool) if rule.person else None, pick=cfg.pick)
        weight = strategy.reference_weight(delta, cfg.balance)  # section 3.3
        added = (_composites(cfg, ledger, writer, parts, r, [pool[p.row] for p in choice.picks], weight)
                 if cfg.added == "composite" else _new_references(ledger, r, pool, choice.picks, weight))
        chosen = {pool[p.row].idx for p in choice.picks}
        writer.close_round(r, openness=delta, directions=[(*d[:3], int(d[0] in chosen)) for d in directions],
                           added=added, stop_reason=choice.stop)  # T updated with the picks (section 3.3)
        log(_round_line(r, loss, pool, beta, omega, delta, choice.picks, choice.stop))
        if choice.stop:
            log(f"result: {ledger.round(r)['checkpoint']}")
            return


def score_directions(samples: list[Sample], pool: list[Anchor], lam: float):
    """A round's scores per direction: s_a, s_n and Ω (what the strategies read), β, and the openness Δ. A
    direction that adaptive sampling left with fewer samples has its s_a padded with -inf (never picked)."""
    rows = _by_direction(samples, pool)
    s_a = _padded([[s.sim_anchor for s in row] for row in rows], -np.inf)
    s_n = _padded([[s.sim_non_soi for s in row] for row in rows], np.inf)
    beta = np.array([strategy.overfit_rate(strategy.overfit([s.sim_anchor for s in row], [s.sim_non_soi for s in row]))
                     for row in rows])  # Eq. 8, Eq. 7
    omega = strategy.entropy(beta)  # Eq. 6
    return strategy.RoundScores(s_a, omega, s_n), beta, omega, strategy.openness(omega, lam)  # Eq. 9


def _by_direction(samples: list[Sample], pool: list[Anchor]) -> list[list[Sample]]:
    return [[s for s in samples if s.anchor_idx == a.idx] for a in pool]


def _padded(rows: list[list[float]], fill: float) -> np.ndarray:
    width = max(len(row) for row in rows)
    return np.array([row + [fill] * (width - len(row)) for row in rows], dtype=np.float64)


def _identity(ledger: Ledger, parts: Components, r: int, pool: list[Anchor]) -> np.ndarray:
    """(n, m) how much of the references' subject each of round r's samples shows (`ClipScorer.identity`), from
    the features on record; padded like s_a."""
    import torch

    rows = _by_direction(ledger.samples(r), pool)
    flat = [s for row in rows for s in row]
    text = {a.idx: a.text for a in pool}
    values = iter(parts.scorer.identity(
        torch.from_numpy(np.stack([np.frombuffer(s.features, np.float16) for s in flat])),
        [text[s.anchor_idx] for s in flat], torch.from_numpy(ledger.reference_features()),
        [t.caption or t.prompt for t in ledger.added(0)]).tolist())
    return _padded([[next(values) for _ in row] for row in rows], -np.inf)


def _reviewed(review: dict, pool: list[Anchor]) -> list[strategy.Pick]:
    row_of = {a.idx: i for i, a in enumerate(pool)}
    return [strategy.Pick(row_of[a], j) for a, j in review["accepted"]]


def _new_references(ledger: Ledger, r: int, pool: list[Anchor], picks: list[strategy.Pick], weight: float
                    ) -> list[Reference]:
    """The picked samples as new references of T, with their anchor's prompt and the balance scheme's weight."""
    samples = {(s.anchor_idx, s.j): s for s in ledger.samples(r)}
    return [Reference(samples[pool[p.row].idx, p.j].path, pool[p.row].prompt, weight, r, pool[p.row].idx)
            for p in picks]


def _composites(cfg: Config, ledger: Ledger, writer: Writer, parts: Components, r: int, chosen: list[Anchor],
                weight: float) -> list[Reference]:
    """`--added composite`: the chosen directions' composites (gal/composite.py) as new references, made from their
    samples' seeds and written before the round that names them closes (a resumed round makes the same ones again)."""
    if not chosen:  # Eq. 10 ended the run: nothing to add
        return []
    run_dir = ledger.run_dir
    seeds = [[s.seed for s in sorted(row, key=lambda s: s.j)] for row in _by_direction(ledger.samples(r), chosen)]
    with parts.personalizer.merged(0.0):  # the base model: the LoRA's update at scale 0
        made = parts.composer.best([a.text for a in chosen], seeds, [names_a_style(a.template) for a in chosen],
                                   preflight.subjects(ledger, parts.resolution), steps=cfg.steps,
                                   guidance=cfg.query_guidance)
    paths = [f"rounds/{r}/added/a{a.idx:03d}.png" for a in chosen]
    writer.files(lambda: [write_png(run_dir / p, Image.fromarray(image)) for p, image in zip(paths, made)])
    return [Reference(p, a.prompt, weight, r, a.idx) for p, a in zip(paths, chosen)]


def _fine_tune(cfg: Config, ledger: Ledger, writer: Writer, parts: Components, r: int, prior: list[Example]) -> float:
    """Train round r from the base model (or the previous round's weights) and record its checkpoint; a round
    with a checkpoint on record loads it instead (or, where its folder is gone, trains it again: the same data
    and seeds give the same weights)."""
    run_dir, state = ledger.run_dir, ledger.round(r)
    recorded = state["checkpoint"] if state else None
    if recorded and (run_dir / recorded).exists():
        preflight.load_checkpoint(parts.personalizer, run_dir / recorded, r)
        return state["train_loss"]
    if recorded:
        writer.log(f"{run_dir / recorded}: missing; training round {r} again (the same data and seeds: the same "
                   "weights on this machine)", preflight.warn)
    if cfg.from_previous_round and r > 1:
        preflight.load_checkpoint(parts.personalizer, run_dir / ledger.round(r - 1)["checkpoint"], r - 1)
    else:
        parts.personalizer.reset(seed=sample_seed(cfg.seed, "init", r) % 2**31)
    references = ledger.training_set(r)
    T = [Example(preflight.read_image(run_dir / t.path, "reference" if t.added_in_round == 0 else "added image"),
                 t.prompt, t.weight) for t in references]
    loss = parts.personalizer.train(training_terms(cfg, T, [t.added_in_round for t in references], prior),
                                    steps=cfg.train_steps,
                                    batch_size=cfg.batch_size, seed=sample_seed(cfg.seed, "train", r),
                                    desc=f"round {r}: fine-tune")
    checkpoint = recorded or f"rounds/{r}/checkpoint"
    writer.files(lambda: _save(parts, run_dir / checkpoint))
    if not recorded:
        writer.record_checkpoint(r, checkpoint, loss)
    return loss


def _save(parts: Components, folder: Path) -> None:
    with folder_in_place(folder) as tmp:
        parts.personalizer.save(tmp)


def training_terms(cfg: Config, T: list[Example], added_in_round: list[int], prior: list[Example]) -> list[Term]:
    """The loss terms of a fine-tune on T (Eq. 2).

    paper / off: one term over T, each image weighted by its stored weight (Δ of its round, or 1), all
    drawn alike, so the references get 1/(1 + k(r-1)) of the draws in round r.
    separate: the references keep round 1's draws; the added images are a second term, as prior
    preservation's class images are, weighted `added_weight` with Δ normalised to mean 1 inside it."""
    prior_term = Term(prior, cfg.prior_loss_weight)
    if cfg.balance != "separate":
        return [Term(T), prior_term]
    references = [e for e, r in zip(T, added_in_round) if r == 0]
    added = [e for e, r in zip(T, added_in_round) if r > 0]
    mean = float(np.mean([e.weight for e in added])) if added else 0.0
    added = [e._replace(weight=e.weight / mean if mean > 0 else 1.0) for e in added]
    return [Term(references), prior_term, Term(added, cfg.added_weight)]


def _query(cfg: Config, ledger: Ledger, writer: Writer, parts: Components, r: int, pool: list[Anchor], log) -> None:
    """The round's m samples per anchor (Eq. 4), or with `--sampling adaptive` as many as its choice needs:
    waves recorded in the ledger before they are made (a resumed run finishes the last one and decides the
    next from the same samples), each with the full query's seeds (gal/sampling.py)."""
    if cfg.sampling == "full":
        return _sample(cfg, ledger, writer, parts, r, [(a, j) for a in pool for j in range(cfg.m)])

    made: list[list[int]] = [[0] * len(pool)]

    def make(wave: int, targets: list[int]) -> list[list[int]]:
        writer.record_wave(r, wave, {a.idx: t for a, t in zip(pool, targets)})  # on record before it is made
        made.append(targets)
        for before, after in zip(made, made[1:]):  # each wave's own samples, in its own batches
            _sample(cfg, ledger, writer, parts, r, [(a, j) for a, b, t in zip(pool, before, after) for j in range(b, t)])
        return [[s.overfit for s in row] for row in _by_direction(ledger.samples(r), pool)]  # Φ, in j order

    waves = sampling.waves(len(pool), cfg.m, cfg.k, cfg.seed, r, make)
    log(f"round {r}: adaptive sampling made {sum(waves[-1])} of {len(pool) * cfg.m} images in {len(waves)} wave(s)")


def _sample(cfg: Config, ledger: Ledger, writer: Writer, parts: Components, r: int,
            wanted: list[tuple[Anchor, int]]) -> None:
    """The `wanted` samples not yet on record, made and scored by the query (Eq. 4, 8) and recorded batch by batch."""
    run_dir = ledger.run_dir
    jobs = [Job((a.idx, j), a.prompt, sample_seed(cfg.seed, r, a.idx, j),
                run_dir / f"rounds/{r}/samples/a{a.idx:03d}-j{j:02d}.png", a.text) for a, j in wanted]

    def record(made: list[Made]) -> None:
        writer.add_samples([Sample(r, *m.job.key, m.job.seed, m.job.path.relative_to(run_dir).as_posix(), m.s_a, m.s_n,
                                   int(strategy.overfit(m.s_a, m.s_n)), _blob(m.features)) for m in made])

    parts.query.make(jobs, steps=cfg.query_steps, guidance=cfg.query_guidance, desc=f"round {r}: query",
                     on_batch=record, skip={(s.anchor_idx, s.j) for s in ledger.samples(r)},
                     non_soi=parts.non_soi_texts)


def _class_images(cfg: Config, ledger: Ledger, writer: Writer, parts: Components) -> list[Example]:
    """Class images for prior preservation: the user's (copied into the run when it started), or made by the base
    model into the run before round 1 trains."""
    class_prompt = cfg.subject_plain
    have = {i for i, _, _ in ledger.class_images()}
    todo = [] if cfg.class_images else [i for i in range(cfg.num_class_images) if i not in have]
    if todo and ledger.round(1) is not None:
        raise GalError(f"{ledger.run_dir}: class images are missing after training started; expected "
                       f"{cfg.num_class_images} in class_images/")
    if not cfg.class_images:
        parts.personalizer.reset(seed=0)  # the base model makes the class images
        jobs = [Job((i,), class_prompt, sample_seed(cfg.seed, "class", i), ledger.run_dir / f"class_images/{i:04d}.png")
                for i in range(cfg.num_class_images)]
        parts.query.make(jobs, steps=cfg.steps, guidance=cfg.guidance, desc="class images", skip={(i,) for i in have},
                         on_batch=lambda made: writer.add_class_images(
                             [(m.job.key[0], m.job.seed, f"class_images/{m.job.key[0]:04d}.png") for m in made]))
    return [Example(preflight.read_image(ledger.run_dir / p, "class image"), class_prompt, 1.0)
            for _, _, p in ledger.class_images()]


def _blob(feature) -> bytes:
    return feature.numpy().astype(np.float16).tobytes()


def _round_line(r, loss, pool, beta, omega, delta, picks, reason) -> str:
    chosen = ", ".join(f"[{pool[p.row].idx}] {pool[p.row].template} (Ω {omega[p.row]:.3f})" for p in picks)
    line = (f"round {r}: loss {loss:.4f} | anchor overfit {float(beta.mean()):.2f} over {len(pool)} directions | "
            f"{int((omega > 0).sum())} uncertain | openness Δ {delta:.5f}")
    return line + (f" | stop: {reason}" if reason else f" | chose {chosen}")
