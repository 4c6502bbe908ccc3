"""A round's fine-tune of Algorithm 1 (Eq. 2) as a component beside the personalizer: the training set T from the
ledger made into loss terms, trained (or the round's recorded weights loaded) and saved into the run; the class images
of prior preservation; and the images a round's picks add to T.

A round with a checkpoint on record is not trained again; where its folder is gone, it is trained again from the
same data and seeds, which give the same weights on the same machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gal import run_folder, strategy
from gal.config import Config
from gal.errors import GalError, warn
from gal.generate import sample_seed
from gal.ledger import Anchor, Ledger, Reference, Sample
from gal.personalize import Example, Personalizer, Term, masked
from gal.query import Job, Query
from gal.storage import folder_in_place
from gal.writer import Writer


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


def picked_samples(samples: list[Sample], pool: list[Anchor], picks: list[strategy.Pick], weight: float, r: int
                   ) -> list[Reference]:
    """The picked samples of round r as new references of T, with their anchor's prompt and the balance scheme's
    weight (section 3.3)."""
    by_key = {(s.anchor_idx, s.j): s for s in samples}
    return [Reference(by_key[pool[p.row].idx, p.j].path, pool[p.row].prompt, weight, r, pool[p.row].idx)
            for p in picks]


class FineTune:
    def __init__(self, cfg: Config, personalizer: Personalizer, query: Query):
        self.cfg, self.personalizer, self.query = cfg, personalizer, query

    def round(self, ledger: Ledger, writer: Writer, r: int, prior: list[Example]) -> float:
        """Train round r from the base model (or the previous round's weights) on T and record its checkpoint; a round
        with a checkpoint on record loads it instead. Returns the training loss."""
        cfg, run_dir, state = self.cfg, ledger.run_dir, ledger.round(r)
        recorded = state["checkpoint"] if state else None
        if recorded and (run_dir / recorded).exists():
            run_folder.load_checkpoint(self.personalizer, run_dir / recorded, r)
            return state["train_loss"]
        if recorded:
            writer.log(f"{run_dir / recorded}: missing; training round {r} again (the same data and seeds: the same "
                       "weights on this machine)", warn)
        if cfg.from_previous_round and r > 1:
            run_folder.load_checkpoint(self.personalizer, run_dir / ledger.round(r - 1)["checkpoint"], r - 1)
        else:
            self.personalizer.reset(seed=sample_seed(cfg.seed, "init", r) % 2**31)
        references = ledger.training_set(r)
        T = [Example(run_folder.read_image(run_dir / t.path, "reference" if t.added_in_round == 0 else "added image"),
                     t.prompt, t.weight, masked(run_folder.read_mask(run_dir / t.path), cfg.masked_loss)
                     if cfg.masked_loss is not None and t.added_in_round == 0 else None) for t in references]
        loss = self.personalizer.train(training_terms(cfg, T, [t.added_in_round for t in references], prior),
                                       steps=cfg.train_steps, batch_size=cfg.batch_size,
                                       seed=sample_seed(cfg.seed, "train", r), desc=f"round {r}: fine-tune")
        checkpoint = recorded or run_folder.checkpoint(r)
        writer.files(lambda: self._save(run_dir / checkpoint))
        if not recorded:
            writer.record_checkpoint(r, checkpoint, loss)
        return loss

    def _save(self, folder: Path) -> None:
        with folder_in_place(folder) as tmp:
            self.personalizer.save(tmp)

    def class_images(self, ledger: Ledger, writer: Writer) -> list[Example]:
        """Class images for prior preservation: the user's (copied into the run when it started), or made by the base
        model into the run before round 1 trains."""
        cfg, run_dir = self.cfg, ledger.run_dir
        have = {i for i, _, _ in ledger.class_images()}
        todo = [] if cfg.class_images else [i for i in range(cfg.num_class_images) if i not in have]
        if todo and ledger.round(1) is not None:
            raise GalError(f"{run_dir}: class images are missing after training started; expected "
                           f"{cfg.num_class_images} in class_images/")
        if not cfg.class_images:
            self.personalizer.reset(seed=0)  # the base model makes the class images
            jobs = [Job((i,), cfg.subject_plain, sample_seed(cfg.seed, "class", i), run_dir / run_folder.class_image(i))
                    for i in range(cfg.num_class_images)]
            self.query.make(jobs, steps=cfg.steps, guidance=cfg.guidance, desc="class images",
                            skip={(i,) for i in have}, on_batch=lambda made: writer.add_class_images(
                                [(m.job.key[0], m.job.seed, run_folder.class_image(m.job.key[0])) for m in made]))
        return [Example(run_folder.read_image(run_dir / p, "class image"), cfg.subject_plain, 1.0)
                for _, _, p in ledger.class_images()]
