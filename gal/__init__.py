"""gal: generative active learning for text-to-image personalization (Zhang et al., ACM MM 2024).

The Python API under every command:

    import gal

    config = gal.Config(references="photos/cat", kind="object", subject="a <cute-cat> cat",
                        non_soi=["a cat on the stairs"], out="runs/cat")
    summary = gal.run(config)            # Algorithm 1; running it again resumes
    rounds = gal.evaluate("runs/cat")    # TXT-ALN, IMG-ALN, OVF per round (kept in the run)
    run = gal.open_run("runs/cat")       # the run folder, read-only: rounds, directions, samples, ...
    run.recommended                      # the round to keep, once evaluated
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from gal.config import N_EVAL, Config
from gal.errors import GalError
from gal.view import Run, open_run

# torchao (--quantize int8, fp8), once installed, is imported by diffusers with every pipeline: keep its import-time
# notes (kernels built for other GPUs, torch.compile registrations) off the user's terminal; errors still show.
for _name in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
    logging.getLogger(_name).setLevel(logging.ERROR)

__version__ = "0.1.0"
__all__ = ["Config", "GalError", "Run", "evaluate", "evaluate_checkpoints", "evaluate_model", "open_run", "run"]


def run(config: Config, log: Callable[[str], None] = print, force: bool = False) -> dict:
    """Run (or resume) GAL into `config.out`; returns the ledger's summary. `force` resumes a run whose
    config changed. Bad input raises `GalError` before anything is written."""
    from gal.loop import run as run_loop  # the model stack loads only here

    return run_loop(config, log=log, force=force)


def evaluate(run_dir: str | Path, *, rounds: list[int] | None = None, n: int = N_EVAL, seed: int = 0,
             prompts_file: str | None = None, image_model: str | None = None, lora_scale: float = 1.0,
             split: str = "test", validation: bool = True, device: str = "auto") -> list[dict]:
    """TXT-ALN, IMG-ALN and OVF of every round's checkpoint (or `rounds`) on the test prompts (`split="validation"`:
    on the run's anchors that no round added an image for); computed once per setting and kept in the run's ledger.
    With `validation` (the default) the validation split is evaluated too, in the same pass: the round `gal show`
    and `open_run(...).recommended` name is then chosen on it, not on the test prompts these rows report."""
    from gal.metrics import evaluate_splits

    splits = (split, "validation") if validation and split == "test" else (split,)
    return evaluate_splits(Path(run_dir), rounds=rounds, n=n, seed=seed, prompts_file=prompts_file,
                           image_model=image_model, lora_scale=lora_scale, splits=splits, device=device)[split]


def evaluate_checkpoints(config: Config, loras: list[str], scales: list[float] = (1.0,), **options) -> dict:
    """Each checkpoint of any trainer's LoRA (files, folders, a folder of a trainer's checkpoints, a gal run) at each
    scale: the paper's metrics on the test prompts, where it copies (per-anchor β) and the (checkpoint, scale) to keep
    (`gal eval --base ... --lora ...`; gal.compare)."""
    from gal.compare import evaluate_checkpoints as evaluate_all

    return evaluate_all(config, loras, scales, **options)


def evaluate_model(config: Config, *, lora: str | None = None, n: int = N_EVAL, seed: int = 0, prompts_file: str | None = None,
                   image_model: str | None = None, lora_scale: float = 1.0, device: str = "auto") -> dict:
    """The same metrics for one model without a run (`gal eval --base ...`): `config`'s base (plus `lora`),
    scorer, references, subject, non-SoI texts and sampler."""
    from gal.compare import evaluate_model as evaluate_one

    return evaluate_one(config, lora=lora, n=n, seed=seed, prompts_file=prompts_file, image_model=image_model,
                        lora_scale=lora_scale, device=device)
