"""The query of Algorithm 1 (Eq. 4) and its oracle (Eq. 8) as one component, the way a diffusers pipeline wires
its parts: built from the pipeline, the CLIP scorer, the accelerate state and a batch size, it makes images from
prompts and seeds and scores them against their texts and the non-SoI texts.

What it owns so that its callers (the loop's query and class images, `gal eval`, the benchmarks) do not:
- batching: a job list is cut into batches of `batch_size` per process, always from the whole list, so a job made
  again (after a kill, or because its file went missing) is made in the very batch it was first made in (batched
  arithmetic of another make-up can move a pixel by one level): the same bytes, not only the same seed;
- the split across the processes of an `accelerate launch`: every process sees the same batches and makes its
  share of each;
- skipping what is on record: only the batches holding a job still to do are made;
- the files: PNGs are written in a thread while the next batch generates, and a batch's rows reach the caller only
  once its files are on disk (the ledger never names a file that is not there).

`round` is Algorithm 1's query of one round on top of it: every anchor of the pool m times (Eq. 4), or in waves where
the round's choice is still open (`--sampling adaptive`, gal/sampling.py), each sample recorded in the ledger with its
seed, file, s_a, s_n and Φ (Eq. 8) batch by batch, so that a resumed round makes only what is not on record.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Collection, Iterator, NamedTuple, Sequence

import numpy as np
from accelerate.utils import gather_object

from gal import run_folder, sampling, strategy
from gal.generate import generate, sample_seed
from gal.ledger import Sample
from gal.progress import progress
from gal.storage import write_png


class Job(NamedTuple):
    key: tuple  # what the caller knows the image by, e.g. (anchor index, j)
    prompt: str  # for generation
    seed: int  # its own noise (`gal.generate.sample_seed`)
    path: Path | None = None  # where its PNG goes (None: not written)
    text: str | None = None  # for the oracle (Eq. 8): the prompt with the subject in plain words; None: not scored


class Made(NamedTuple):
    job: Job
    s_a: float | None  # sim(I, its text)
    s_n: float | None  # max sim(I, a non-SoI text)
    features: np.ndarray | None  # the scorer's image embedding


class Query:
    def __init__(self, pipe, scorer, accelerator, batch_size: int, resolution: int, autocast_dtype=None):
        self.pipe, self.scorer, self.accelerator = pipe, scorer, accelerator
        self.batch_size, self.resolution, self.autocast_dtype = batch_size, resolution, autocast_dtype

    def images(self, prompts: Sequence[str], seeds: Sequence[int], *, steps: int, guidance: float, desc: str,
               needed: Collection[int] | None = None) -> Iterator[tuple[list[int], list]]:
        """(indices, images) of this process's share of each global batch of `prompts` that holds a `needed` index
        (default: every batch)."""
        acc, size = self.accelerator, self.batch_size
        needed = set(range(len(prompts)) if needed is None else needed)
        bar = progress(total=len(needed), desc=desc, unit="img", disable=not acc.is_main_process or not needed)
        step = size * acc.num_processes
        for start in range(0, len(prompts), step):
            chunk = needed.intersection(range(start, start + step))
            if not chunk:
                continue
            first = start + acc.process_index * size
            mine = list(range(first, min(first + size, len(prompts))))
            images: list = []
            if mine:
                for _, images in generate(self.pipe, [prompts[i] for i in mine], [seeds[i] for i in mine],
                                          steps=steps, guidance=guidance, resolution=self.resolution,
                                          batch_size=size, autocast_dtype=self.autocast_dtype):
                    pass  # one batch
            yield mine, images
            bar.update(len(chunk))
        bar.close()

    def scored(self, prompts: Sequence[str], texts: Sequence[str], non_soi: Sequence[str], seeds: Sequence[int], *,
               steps: int, guidance: float, desc: str, needed: Collection[int] | None = None,
               ) -> Iterator[tuple[list[int], list, list, list[float], list[float]]]:
        """`images`, each batch verified by the oracle against each image's text and the non-SoI texts (Eq. 8):
        (indices, images, CLIP image features, s_a, s_n). benchmarks/query_phase.py times this."""
        for mine, images in self.images(prompts, seeds, steps=steps, guidance=guidance, desc=desc, needed=needed):
            if not mine:
                yield mine, [], [], [], []
                continue
            features = self.scorer.image_features(images)
            s_a, s_n = self.scorer.oracle(features, [texts[i] for i in mine], list(non_soi))
            yield mine, images, list(features), s_a.tolist(), s_n.tolist()

    def make(self, jobs: Sequence[Job], *, steps: int, guidance: float, desc: str, on_batch: Callable[[list[Made]], None],
             skip: Collection[tuple] = (), non_soi: Sequence[str] = ()) -> None:
        """Make (and, where the jobs have texts, score) the jobs whose keys are not in `skip`; per batch, once its
        PNGs are on disk, `on_batch` gets every process's rows of it (called on every process; it records them on
        the main one)."""
        needed = [i for i, job in enumerate(jobs) if job.key not in skip]
        scoring = all(job.text is not None for job in jobs)
        prompts, seeds = [job.prompt for job in jobs], [job.seed for job in jobs]
        batches = (self.scored(prompts, [job.text for job in jobs], non_soi, seeds, steps=steps, guidance=guidance,
                               desc=desc, needed=needed) if scoring else
                   ((mine, images, [None] * len(mine), [None] * len(mine), [None] * len(mine))
                    for mine, images in self.images(prompts, seeds, steps=steps, guidance=guidance, desc=desc,
                                                    needed=needed)))

        def deliver(written: Future, rows: list[Made]) -> None:
            written.result()  # the files exist before the rows that name them
            on_batch(gather_object(rows))

        with ThreadPoolExecutor(max_workers=1) as writer:
            previous = None
            for mine, images, features, s_a, s_n in batches:
                rows, files = [], []
                for i, image, sa, sn, f in zip(mine, images, s_a, s_n, features):
                    if jobs[i].key in skip:
                        continue  # made again only to keep its batch as it was
                    if jobs[i].path is not None:
                        files.append((jobs[i].path, image))
                    rows.append(Made(jobs[i], sa, sn, f))
                written = writer.submit(lambda files=files: [write_png(path, image) for path, image in files])
                if previous is not None:
                    deliver(*previous)
                previous = (written, rows)
            if previous is not None:
                deliver(*previous)

    # ---- Algorithm 1's query of a round -----------------------------------------------------------------------------
    def round(self, cfg, ledger, writer, r: int, pool: list, non_soi: Sequence[str], log) -> None:
        """Round r's m samples per anchor of the pool (Eq. 4), scored by the oracle (Eq. 8) and recorded; with
        `--sampling adaptive` as many as the round's choice needs: waves recorded in the ledger before they are made
        (a resumed run finishes the last one and decides the next from the same samples), each with the full query's
        seeds (gal/sampling.py)."""
        if cfg.sampling == "full":
            return self._sample(cfg, ledger, writer, r, [(a, j) for a in pool for j in range(cfg.m)], non_soi)
        made: list[list[int]] = [[0] * len(pool)]

        def make(wave: int, targets: list[int]) -> list[list[int]]:
            writer.record_wave(r, wave, {a.idx: t for a, t in zip(pool, targets)})  # on record before it is made
            made.append(targets)
            for before, after in zip(made, made[1:]):  # each wave's own samples, in its own batches
                self._sample(cfg, ledger, writer, r, [(a, j) for a, b, t in zip(pool, before, after) for j in range(b, t)],
                             non_soi)
            return [[s.overfit for s in row] for row in strategy.by_direction(ledger.samples(r), pool)]  # Φ, j order

        waves = sampling.waves(len(pool), cfg.m, cfg.k, cfg.seed, r, make)
        log(f"round {r}: adaptive sampling made {sum(waves[-1])} of {len(pool) * cfg.m} images in {len(waves)} wave(s)")

    def _sample(self, cfg, ledger, writer, r: int, wanted: list[tuple], non_soi: Sequence[str]) -> None:
        """The `wanted` (anchor, j) samples not yet on record, made and scored (Eq. 4, 8) and recorded batch by batch."""
        run_dir = ledger.run_dir
        jobs = [Job((a.idx, j), a.prompt, sample_seed(cfg.seed, r, a.idx, j), run_dir / run_folder.sample(r, a.idx, j),
                    a.text) for a, j in wanted]

        def record(made: list[Made]) -> None:
            writer.add_samples([Sample(r, *m.job.key, m.job.seed, m.job.path.relative_to(run_dir).as_posix(), m.s_a,
                                       m.s_n, int(strategy.overfit(m.s_a, m.s_n)),
                                       m.features.numpy().astype(np.float16).tobytes()) for m in made])

        self.make(jobs, steps=cfg.query_steps, guidance=cfg.query_guidance, desc=f"round {r}: query", on_batch=record,
                  skip={(s.anchor_idx, s.j) for s in ledger.samples(r)}, non_soi=non_soi)

    def identity(self, ledger, r: int, pool: list) -> np.ndarray:
        """(n, m) how much of the references' subject each of round r's samples shows (`ClipScorer.identity`), from the
        features on record; padded like s_a (`strategy.score_directions`)."""
        import torch

        rows = strategy.by_direction(ledger.samples(r), pool)
        flat = [s for row in rows for s in row]
        text = {a.idx: a.text for a in pool}
        values = iter(self.scorer.identity(
            torch.from_numpy(np.stack([np.frombuffer(s.features, np.float16) for s in flat])),
            [text[s.anchor_idx] for s in flat], torch.from_numpy(ledger.reference_features()),
            [t.caption or t.prompt for t in ledger.added(0)]).tolist())
        return strategy.padded([[next(values) for _ in row] for row in rows], -np.inf)
