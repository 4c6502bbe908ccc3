"""A user's config resolved into the run's: every value checked, then every value left open settled, once.

`settle` turns a user's `Config`, the machine, the base's model family and (a new run's) references' masks into the
resolved config the run records: the kind's and method's settings as the paper's authors set them, the bundled
miniature world's models on a machine without a GPU, the family's sampler and the least quantization that fits the
GPU, and what a chosen direction adds to T (composites for an object whose every reference has a mask). Every
refusal is one `GalError` line that names the flag, the value found and what is expected."""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import unicodedata
from pathlib import Path
from typing import Any, Callable, NamedTuple

from gal.config import (
    ADDED,
    BALANCES,
    KINDS,
    METHODS,
    OPTIMIZERS,
    ORACLE_TEXTS,
    PAPER_BASE,
    PAPER_SCORER,
    PICKS,
    PRECISIONS,
    QUANTIZATIONS,
    SAMPLINGS,
    STRATEGIES,
    Config,
    integer,
    key_of,
    make_config,
    plain_subject,
    valid_keys,
)
from gal.errors import GalError
from gal.strategy import RULES


class Machine(NamedTuple):
    """What the defaults of `--base` and `--scorer` (and the devices a run may ask for) depend on, detected by
    `this_machine` at the call site."""
    cpu_only: bool
    miniature: bool  # the bundled miniature weights are installed
    gpus: int = 0  # CUDA devices
    gpu_memory: int = 0  # bytes of the first CUDA device
    gpu_capability: tuple[int, int] = (0, 0)  # its compute capability


def this_machine() -> Machine:
    import torch

    from gal.locations import bundled

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not gpus:
        return Machine(cpu_only=True, miniature=bundled() is not None)
    props = torch.cuda.get_device_properties(0)
    return Machine(cpu_only=False, miniature=bundled() is not None, gpus=gpus, gpu_memory=props.total_memory,
                   gpu_capability=(props.major, props.minor))


class Settled(NamedTuple):
    config: Config  # every value checked and settled
    family: Any  # the base's model family (gal.family), read once from its model_index.json


def settle(cfg: Config, machine: Machine | None = None, *, unmasked: list[Path] | None = None,
           family_of: Callable[[str], Any] | None = None) -> Settled:
    """Check every value, then settle every value left open, once, in this order:
    - the kind's and the method's (the authors' settings), and the models: without `--base` or `--scorer`, their
      defaults depend on `machine` (required then): the paper's models, or the bundled miniature world on a machine
      without a GPU;
    - the base's model family, `family_of(base)` (gal.family.family_of; without it, SD's, and nothing is read): whether
      it trains whole, its sampler's usual setting, the least quantization that fits the GPU;
    - what a chosen direction adds to T and how it weighs, from a new run's references without a mask (`unmasked`;
      None where they are not read: a resumed run keeps what it started with, an evaluation adds nothing).
    A pure function but for `family_of`. (The model-dependent resolution is filled in later, from the loaded model.)"""
    c = dataclasses.replace(cfg, non_soi=list(cfg.non_soi))
    validate(c, machine)
    fill_defaults(c, machine)
    from gal.family import SD

    family = family_of(c.base) if family_of else SD()
    fill_family_defaults(c, family, machine)
    _settle_added(c, unmasked, family)
    return Settled(c, family)


def validate(c: Config, machine: Machine | None = None) -> None:
    """Every value's choice, type, range, text and path, and the device (with `machine`): one GalError line for the
    first one that is wrong."""
    for key, choices in (("kind", KINDS), ("method", METHODS), ("oracle", ORACLE_TEXTS), ("balance", BALANCES),
                         ("sampling", SAMPLINGS), ("pick", PICKS), ("optimizer", OPTIMIZERS),
                         ("quantize", QUANTIZATIONS), ("added", ADDED)):
        if getattr(c, key) is not None or key not in ("balance", "added"):  # those two may be left to the inputs
            _choice(key, getattr(c, key), choices)
    if c.strategy not in STRATEGIES:
        raise GalError(f"--strategy: unknown strategy '{c.strategy}'; expected one of {', '.join(STRATEGIES)}")
    if c.sampling == "adaptive" and c.strategy != "uncertainty":
        raise GalError(f"--sampling adaptive: only with --strategy uncertainty (it samples where Ω can still change "
                       f"the choice; {c.strategy} reads every sample); expected --sampling full")
    if c.added == "composite":
        _check_composite(c)
    _check_finite(c)
    _check_texts(c)
    _check_paths(c)
    _check_ranges(c)
    _choice("mixed_precision", c.mixed_precision, PRECISIONS)
    if machine is not None:
        _check_device(c, machine)
        _check_quantize(c, machine)


def composite_blocker(c: Config, family=None) -> str | None:
    """Why `--added composite` cannot go with the rest of `c` (None: it can), as '--flag value: reason'; with the
    base's `family`, whether it has the img2img pipeline the restyle needs too."""
    if family is not None and not family.composites:
        return f"--base {c.base}: gal has no image-to-image pipeline for {family.label}"
    if c.kind != "object":
        return f"--kind {c.kind}: a style has no region to paste"
    if c.method != "lora":
        return f"--method {c.method}: the base model's pictures need the LoRA turned off"
    if RULES[c.strategy].person:
        return f"--strategy {c.strategy}: a person picks the images"
    if c.pick != "best":
        return f"--pick {c.pick}: it picks one of the samples, and composites are not samples"
    return None


def _check_composite(c: Config, family=None) -> None:
    blocker = composite_blocker(c, family)
    if blocker:
        raise GalError(f"--added composite: not with {blocker}; expected --added samples")


def _settle_added(c: Config, unmasked: list[Path] | None, family) -> None:
    """`added` and `balance` left open: composites at weight 1 for an object whose every reference has a mask (the
    winner of docs/results.md's "images worth adding"), unless the paper's balance scheme is asked for by name; else
    the paper's samples at Δ. (A resumed run's are its ledger's: `stored_config`.) Composites asked for by name need
    every reference's mask."""
    for flag, needs in (("--added composite", c.added == "composite"), ("--masked-loss", c.masked_loss is not None)):
        if needs and unmasked:
            raise GalError(f"{flag}: {unmasked[0]} has no mask; expected {unmasked[0].stem}.mask.png beside it "
                           "(white on the subject) or an alpha channel")
    if c.added is None:
        composites = unmasked == [] and c.balance != "paper" and composite_blocker(c, family) is None
        c.added = "composite" if composites else "samples"
    if c.balance is None:
        c.balance = "off" if c.added == "composite" else "paper"


# The authors' DreamBooth settings per kind (shared/docs/algorithm.md): style 500 steps batch 2, object 800 steps
# batch 1 with prior preservation; their learning rate for the whole UNet, diffusers' DreamBooth-LoRA scripts' for
# LoRA.
AUTHORS = {"object": {"train_steps": 800, "batch_size": 1, "prior": True},
           "style": {"train_steps": 500, "batch_size": 2, "prior": False}}
LR = {"full": 5e-6, "lora": 1e-4}
MINIATURE_SAMPLER = (20, 4.0)  # steps and guidance: the bundled miniature model's query needs fewer and less than SD's


def fill_defaults(c: Config, machine: Machine | None = None) -> None:
    """The values left open that follow from the kind, the method and the machine."""
    if c.subject_plain is None:
        c.subject_plain = plain_subject(c.subject)
    for key, value in AUTHORS[c.kind].items():
        if getattr(c, key) is None:
            setattr(c, key, value)
    if c.base is None or c.scorer is None:
        if machine is None:
            raise ValueError("settle: --base or --scorer left open; pass the machine (resolve.this_machine())")
        miniature = machine.cpu_only and machine.miniature
        c.base = c.base or ("miniature" if miniature else PAPER_BASE)
        c.scorer = c.scorer or ("miniature" if miniature else PAPER_SCORER)
    if c.lr is None:
        c.lr = default_lr(c.method, miniature=c.base == "miniature")


def fill_family_defaults(c: Config, family, machine: Machine | None = None) -> None:
    """What the base's family decides: whether it trains whole, its sampler's usual setting (SD: DPM-Solver, 50 steps
    at 7.5; the miniature model's query needs fewer and less), and (--quantize auto) the least quantization whose
    computed peak fits the machine's GPU (gal.memory; none without one)."""
    if c.quantize == "auto":
        from gal.memory import pick_quantization

        c.quantize = pick_quantization(family, c.base, machine)
    if c.added == "composite":
        _check_composite(c, family)
    if c.method == "full" and not family.full_fine_tune:
        raise GalError(f"--method full: gal fine-tunes {family.label} (--base {c.base}) with LoRA only; "
                       "expected --method lora")
    steps, guidance = MINIATURE_SAMPLER if c.base == "miniature" else family.sampling_defaults(c.base)
    if c.steps is None:
        c.steps = steps
    if c.guidance is None:
        c.guidance = guidance
    c.query_steps = c.query_steps or c.steps
    c.query_guidance = c.guidance if c.query_guidance is None else c.query_guidance


MAX_LR = 1e30  # AdamW's step at about 3e37 overflows float32 and raises (tests/test_hostile_classes.py found it); below,
# a diverging run ends in the loss check's one line (tests/test_reliability.py's runs at 1e20)
MAX_TEXT = 1000  # characters of a subject phrase or non-SoI text; the text encoders read 77 to 512 tokens
# (lowest, highest) of each count: the highest where memory or time grows with it beyond any real run
RANGES = {"m": (2, 10_000), "k": (1, 10_000), "rounds": (1, 1_000), "num_class_images": (1, 100_000),
          "lora_rank": (1, 1024), "train_steps": (1, 10_000_000), "batch_size": (1, 1024), "resolution": (8, 4096),
          "steps": (1, 10_000), "query_steps": (1, 10_000), "seed": (0, 2**63 - 1), "masked_loss": (0, 1)}


def _flag(name: str) -> str:
    return "--" + key_of(name).replace("_", "-")


def _check_texts(c: Config) -> None:
    """The subject phrase and the non-SoI texts go into prompts: one line of plain text each, of a sane length,
    with the subject's placeholders closed and words left beside them for the scorer."""
    if not c.subject or not c.subject.strip():
        raise GalError("--subject: missing; expected the subject phrase used in prompts, e.g. --subject 'a <sks> cat'")
    if not c.references:
        raise GalError("--references: missing; expected a folder of reference images")
    for key, texts in (("subject", [c.subject]), ("subject_plain", [c.subject_plain]), ("non_soi", c.non_soi)):
        for text in texts:
            if text is None:
                continue
            bad = next((ch for ch in text if unicodedata.category(ch) in ("Cc", "Cf") and ch != "\u200d"), None)
            if bad is not None:
                raise GalError(f"{_flag(key)}: a control character ({bad!r}) in {reprlib.repr(text)}; expected one line "
                               "of plain text (it goes into prompts)")
            if not text.strip():
                raise GalError(f"{_flag(key)}: empty text; expected words, e.g. " +
                               {"subject_plain": "'a cat'", "non_soi": "'a cat on the stairs'"}.get(key, "'a <sks> cat'"))
            if len(text) > MAX_TEXT:
                raise GalError(f"{_flag(key)}: {len(text)} characters; expected at most {MAX_TEXT} (a phrase, not a text)")
    unclosed = re.sub(r"<[^<>]*>", "", c.subject)
    if "<" in unclosed or ">" in unclosed:
        raise GalError(f"--subject {c.subject!r}: a '<' or '>' without its other half; expected placeholders such as "
                       "'a <sks> cat'")
    if c.subject_plain is None and not plain_subject(c.subject):
        raise GalError(f"--subject {c.subject!r}: only a placeholder, nothing left for the scorer once it is taken out; "
                       "expected words beside it, e.g. 'a <sks> cat', or --subject-plain 'a cat'")


def _check_paths(c: Config) -> None:
    if not c.out.strip():
        raise GalError("--out: empty; expected a folder for the run, e.g. --out runs/cat")
    for key in ("out", "references", "anchors", "class_images"):
        value = getattr(c, key)
        bad = next((ch for ch in value or "" if unicodedata.category(ch) == "Cc"), None)
        if bad is not None:
            raise GalError(f"{_flag(key)}: a control character ({bad!r}) in the path {value!r}; expected a plain path")


def _check_finite(c: Config) -> None:
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise GalError(f"{_flag(f.name)} {value}: expected a finite number")


def _check_ranges(c: Config) -> None:
    if c.m < 2:
        raise GalError(f"--m {c.m}: with fewer than 2 samples per anchor the overfit rate (Eq. 7) is 0 or 1, "
                       "so its entropy (Eq. 6) is always 0 and no direction could ever be chosen; expected --m 2 or more")
    for name, (low, high) in RANGES.items():
        v = getattr(c, name)
        if v is None:
            continue
        if v < low:
            raise GalError(f"{_flag(name)} {v}: expected at least {low}")
        if v > high:
            raise GalError(f"{_flag(name)} {v}: expected at most {high}")
    if c.resolution is not None and c.resolution % 8:
        raise GalError(f"--resolution {c.resolution}: expected a multiple of 8")
    for name in ("guidance", "query_guidance"):
        v = getattr(c, name)
        if v is not None and not 0 <= v <= 100:
            raise GalError(f"{_flag(name)} {v}: expected " + ("0 or more" if v < 0 else "at most 100") +
                           " (1: no classifier-free guidance)")
    for name in ("lambda_", "added_weight", "prior_loss_weight"):
        if getattr(c, name) < 0:
            raise GalError(f"{_flag(name)} {getattr(c, name)}: expected 0 or more")
    if c.lr is not None and not 0 < c.lr <= MAX_LR:
        raise GalError(f"--lr {c.lr}: expected a positive learning rate of at most {MAX_LR:g} (AdamW's are about 1e-6 "
                       "to 1e-3)")
    if c.gen_batch_size != "auto":
        try:
            size = integer(c.gen_batch_size)
        except ValueError:
            size = 0
        if not 1 <= size <= 1024:
            raise GalError(f"--gen-batch-size {c.gen_batch_size}: expected 1 to 1024, or 'auto'")


def _check_device(c: Config, machine: Machine) -> None:
    check_device(c.device, c.mixed_precision, machine)


def check_device(device: str, mixed_precision: str, machine: Machine) -> None:
    """A device or precision this machine does not have fails at the first training step: refuse it here."""
    match = re.fullmatch(r"(auto|cpu|cuda)(?::([0-9]+))?", device)
    if not match or (match[2] is not None and match[1] != "cuda"):
        raise GalError(f"--device {device}: unknown device; expected auto, cpu, cuda or cuda:N")
    if match[1] == "cuda" and machine.gpus == 0:
        raise GalError(f"--device {device}: this machine has no CUDA GPU (torch.cuda.is_available() is False); "
                       "expected --device cpu or auto")
    if match[2] is not None and int(match[2]) >= machine.gpus:
        raise GalError(f"--device {device}: this machine has {machine.gpus} CUDA GPU(s), cuda:0 to "
                       f"cuda:{machine.gpus - 1}")
    on_cpu = match[1] == "cpu" or (match[1] == "auto" and machine.gpus == 0)
    if on_cpu and mixed_precision == "fp16":
        raise GalError("--mixed-precision fp16: half precision needs a CUDA GPU, and this run is on the CPU; "
                       "expected --mixed-precision no or auto (bf16 also runs on the CPU)")


def _check_quantize(c: Config, machine: Machine) -> None:
    """A quantization this machine or its libraries cannot run fails when the base loads: refuse it here."""
    import importlib.util

    on_gpu = machine.gpus > 0 and not c.device.startswith("cpu")
    if c.quantize in ("nf4", "fp8") and not on_gpu:
        raise GalError(f"--quantize {c.quantize}: {'bitsandbytes 4-bit' if c.quantize == 'nf4' else 'torchao fp8'} "
                       "weights need a CUDA GPU, and this run is on the CPU; expected --quantize int8 or none")
    if c.quantize == "fp8" and machine.gpu_capability < (8, 9):
        major, minor = machine.gpu_capability
        raise GalError(f"--quantize fp8: fp8 matmuls need a GPU of compute capability 8.9 or newer (Ada, Hopper); this "
                       f"one has {major}.{minor}; expected --quantize int8 or nf4")
    library = {"int8": "torchao", "fp8": "torchao", "nf4": "bitsandbytes"}.get(c.quantize)
    if library and importlib.util.find_spec(library) is None:
        raise GalError(f"--quantize {c.quantize}: {library} is not installed; expected `pip install {library}` "
                       "(or `pip install gal[quantize]`), or --quantize none")
    if c.quantize not in ("auto", "none") and c.method != "lora":
        raise GalError(f"--quantize {c.quantize}: a quantized base trains a LoRA on top; expected --method lora")


def default_lr(method: str, miniature: bool = False) -> float:
    """full: the authors' 5e-6; LoRA: diffusers' DreamBooth-LoRA default 1e-4. The miniature model is ~30x
    smaller than SD and 500 LoRA steps at 1e-4 left its samples unstyled (docs/miniature.md): 10x for it."""
    return LR[method] * (10 if miniature else 1)



def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise GalError(f"--{key.replace('_', '-')}: unknown value '{value}'; expected one of {', '.join(choices)}")



def stored_config(stored: dict) -> Config:
    """A ledger's config read as today's: keys it lacks at their defaults, settled as today (a run of an earlier gal
    added samples, at Δ unless it said otherwise)."""
    known = set(valid_keys())
    values = {"added": "samples", "balance": "paper", **{k: v for k, v in stored.items() if k in known}}
    return settle(make_config(values, source="ledger")).config
