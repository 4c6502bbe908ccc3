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
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Collection, Iterator, NamedTuple, Sequence

import numpy as np
from accelerate.utils import gather_object

from gal.generate import generate
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
