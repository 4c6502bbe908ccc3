"""One typed config for a GAL run, from a YAML file and command-line flags (flags win).

Keys are the flags with `_` for `-` (`--train-steps` -> `train_steps`); `lambda` is spelled as in the
paper. Values left as None are resolved from the kind, the method or the model, the way the paper's
authors set them (see `resolved`)."""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import yaml

from gal.errors import GalError
from gal.strategy import PICKS as PICK_RULES
from gal.strategy import RULES

STRATEGIES = tuple(RULES)  # uncertainty, random, clip, human, none
PICKS = tuple(PICK_RULES)  # best, kept, identity
BALANCES = ("paper", "separate", "off")
ADDED = ("samples", "composite")  # what a chosen direction adds to T (gal/composite.py)
METHODS = ("lora", "full")
KINDS = ("object", "style")
ORACLE_TEXTS = ("non-soi", "reference-prompt")
PRECISIONS = ("auto", "no", "fp16", "bf16")
SAMPLINGS = ("full", "adaptive")
OPTIMIZERS = ("adamw", "adamw8bit")
QUANTIZATIONS = ("auto", "none", "int8", "nf4", "fp8")  # gal.memory


def setting(default: Any, help: str, *, group: str, choices: tuple[str, ...] | None = None, metavar: str | None = None,
            default_text: str | None = None, flag: dict | None = None) -> Any:
    """A Config field with everything the command line needs to know about it: its help, choices (checked by
    argparse where given), and how its default reads ("(default: ...)" unless `default_text` says otherwise)."""
    factory = {"default_factory": list} if default == [] else {"default": default}
    return field(**factory, metadata={"help": help, "group": group, "choices": choices, "metavar": metavar,
                                      "default_text": default_text, "flag": flag or {}})


WHAT, MODELS, LOOP, TUNING, SAMPLING, WHERE = ("what to personalize", "models", "active learning (defaults: the paper's)",
                                               "fine-tuning", "sampling", "where")


@dataclass
class Config:
    # what to personalize
    references: str | None = setting(None, "folder of reference images (NAME.txt beside an image: its caption)",
                                     group=WHAT, metavar="DIR", default_text="")
    kind: str = setting("object", "object or style", group=WHAT, choices=KINDS)
    subject: str | None = setting(None, "subject phrase in prompts, e.g. 'a <sks> cat' or 'in <sks> style'", group=WHAT,
                                  default_text="")
    subject_plain: str | None = setting(None, "the subject phrase for CLIP", group=WHAT,
                                        default_text="--subject without <...> tokens")
    non_soi: list[str] = setting([], "non-subject content of the references, e.g. 'a cat on the stairs' (repeatable)",
                                 group=WHAT, default_text="")  # non-SoI texts of Eq. 8
    anchors: str | None = setting(None, "anchor templates, one per line with {}", group=WHAT, metavar="FILE",
                                  default_text="the paper's 18 for the kind")
    # the models (None: the paper's on a GPU, the bundled miniature world on a CPU-only machine)
    base: str | None = setting(None, "diffusers pipeline folder, hub id or 'miniature'", group=MODELS,
                               default_text="CompVis/stable-diffusion-v1-4 on a GPU, the bundled miniature model without one")
    scorer: str | None = setting(None, "transformers CLIP folder, hub id or 'miniature'", group=MODELS,
                                 default_text="openai/clip-vit-base-patch32 on a GPU, miniature without one")
    # the active-learning loop (paper defaults, section 4)
    strategy: str = setting("uncertainty", f"one of {', '.join(STRATEGIES)}", group=LOOP)
    added: str | None = setting(None, "what a chosen direction adds to T: samples (its best sample, the paper's), or "
                                "composite (the references' subject, cut out by their masks, NAME.mask.png or an alpha "
                                "channel, pasted onto the base model's own pictures of the anchor: gal/composite.py; "
                                "objects, --method lora)", group=LOOP, choices=ADDED,
                                default_text="composite for an object whose every reference has a mask (unless --balance paper), "
                                "else samples")
    balance: str | None = setting(None, "how added images enter the fine-tune (loop.training_terms): paper (weight Δ, "
                                  "drawn with the references, section 3.3), separate (the references keep round 1's "
                                  "draws, the added images are a second loss term), off (weight 1); --balance alone: "
                                  "paper", group=LOOP, choices=BALANCES,
                                  flag={"nargs": "?", "const": "paper", "negative": "off"},
                                  default_text="off with composites, else paper")
    added_weight: float = setting(1.0, "--balance separate: loss weight of the added images' term", group=LOOP)
    pick: str = setting("best", "which sample of a chosen direction is added: best (the highest s_a, the paper's), "
                        "kept (the highest s_a among those that follow their anchor, Φ = 0, and show at least the "
                        "round's median of the references' subject), identity (the best s_a plus subject score among "
                        "Φ = 0); strategy.PICKS", group=LOOP, choices=PICKS, default_text="best, the paper's")
    rounds: int = setting(4, "maximum rounds, round 1 = DreamBooth", group=LOOP)
    m: int = setting(10, "samples per anchor", group=LOOP)
    k: int = setting(3, "anchors chosen per round", group=LOOP)
    lambda_: float = setting(0.005, "openness rate λ of Eq. 9", group=LOOP)
    oracle: str = setting("non-soi", "what Eq. 8 compares against; reference-prompt: the authors' code's style oracle",
                          group=LOOP, choices=ORACLE_TEXTS, default_text="non-soi, the paper's")
    # personalization (None: the authors' setting for the kind / method)
    method: str = setting("lora", "lora, or full (DreamBooth on the whole UNet, as the paper; SD and SDXL)", group=TUNING)
    train_steps: int | None = setting(None, "steps per round", group=TUNING, default_text="object 800, style 500")
    lr: float | None = setting(None, "learning rate", group=TUNING,
                               default_text="full 5e-6, lora 1e-4; 10x on the miniature model")
    batch_size: int | None = setting(None, "training batch", group=TUNING, default_text="object 1, style 2")
    lora_rank: int = setting(4, "LoRA rank", group=TUNING)
    optimizer: str = setting("adamw", "adamw, or adamw8bit: bitsandbytes' 8-bit AdamW, less GPU memory for a full "
                             "fine-tune (a CUDA GPU and `pip install bitsandbytes`)", group=TUNING, choices=OPTIMIZERS)
    quantize: str = setting("auto", "the transformer's and text encoders' weights: none (bf16), int8 (torchao "
                            "weight-only, also on the CPU), nf4 (bitsandbytes 4-bit, CUDA), fp8 (torchao, CUDA with compute "
                            "capability 8.9+); the LoRA trains on top and stays unmerged in the query (FLUX, SD3, "
                            "Z-Image, Qwen-Image, Chroma)", group=TUNING, choices=QUANTIZATIONS,
                            default_text="auto: the least that fits this GPU by gal.memory's table; none on the CPU")
    resolution: int | None = setting(None, "image size", group=TUNING, default_text="the model's")
    from_previous_round: bool = setting(False, "start each round from the previous round's weights instead of the base "
                                        "(the authors restart from the base)", group=TUNING)
    prior: bool | None = setting(None, "prior preservation with class images", group=TUNING, default_text="on for objects")
    class_images: str | None = setting(None, "class images for prior preservation", group=TUNING, metavar="DIR",
                                       default_text="generated by the base model")
    num_class_images: int = setting(100, "class images to generate", group=TUNING)
    prior_loss_weight: float = setting(1.0, "loss weight of the class images' term", group=TUNING)
    # sampling
    steps: int | None = setting(None, "sampling steps (SD, SDXL: DPM-Solver; the transformers: their flow-matching Euler)",
                                group=SAMPLING, default_text="50; Flux dev 28, schnell 4; SD3 28, 3.5 Medium 40; klein 4 "
                                "(base models 50); Z-Image Turbo 9 (Base 50); Qwen-Image 50; Chroma 35; 20 on the miniature model")
    guidance: float | None = setting(None, "guidance scale (classifier-free, 1: none; Flux dev: the distilled "
                                     "guidance it embeds)", group=SAMPLING,
                                     default_text="7.5; Flux dev 3.5, schnell 0; SD3 7, 3.5 Large 3.5, 3.5 Medium 4.5; klein 1 "
                                                  "(base models 4); Z-Image Turbo 0 (Base 5); Qwen-Image 4 (its true CFG); "
                                                  "Chroma 5; 4 on the miniature model")
    query_steps: int | None = setting(None, "sampling steps of the query (Eq. 4), if not --steps", group=SAMPLING,
                                      default_text="--steps")
    query_guidance: float | None = setting(None, "guidance of the query, if not --guidance (a lower one spreads an "
                                           "anchor's samples: docs/results.md)", group=SAMPLING, default_text="--guidance")
    sampling: str = setting("full", "the query's samples: full (m per anchor, the paper's) or adaptive (in waves, "
                            "only where the round's choice is still open: gal/sampling.py; --strategy uncertainty)",
                            group=SAMPLING, choices=SAMPLINGS, default_text="full, the paper's")
    gen_batch_size: str = setting("auto", "images per pipeline call, or auto", group=SAMPLING)
    seed: int = setting(0, "run seed", group=SAMPLING)
    # where and how
    out: str = setting("gal-run", "run folder", group=WHERE, metavar="DIR")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N", group=WHERE)
    mixed_precision: str = setting("auto", "auto: bf16 on GPUs", group=WHERE, choices=PRECISIONS)
    allow_pickle: bool = setting(False, "load .bin/.ckpt weights when a model has no safetensors (they can run code)",
                                 group=WHERE, default_text="refuse")
    compile: bool = setting(False, "torch.compile the UNet (worth it on GPUs for long runs)", group=WHERE)


# Keys that do not change what a run computes: they may differ when a run is resumed.
NOT_RESULT_KEYS = {"out", "gen_batch_size", "device", "allow_pickle", "compile"}


def strategy_label(strategy: str, balance: str | bool) -> str:
    """`uncertainty + balance` (the paper's scheme), `uncertainty + separate balance`, `uncertainty`."""
    balance = {True: "paper", False: "off"}.get(balance, balance)  # ledgers written before the schemes had names
    return strategy + {"off": "", "paper": " + balance"}.get(balance, f" + {balance} balance")


def key_of(name: str) -> str:
    return "lambda" if name == "lambda_" else name


def field_of(key: str) -> str:
    return "lambda_" if key == "lambda" else key


def command_line(cfg: Config) -> list[str]:
    """The `gal run` flags that give `cfg` (its fields that differ from the defaults)."""
    out = []
    for f in dataclasses.fields(Config):
        value, flag = getattr(cfg, f.name), "--" + key_of(f.name).replace("_", "-")
        default = [] if f.default is dataclasses.MISSING else f.default
        if value == default:
            continue
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            out += [x for v in value for x in (flag, str(v))]
        else:
            out += [flag, str(value)]
    return out


def valid_keys() -> list[str]:
    return [key_of(f.name) for f in dataclasses.fields(Config)]


class _UniqueKeys(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"'{key}' is given twice (line {seen[key] + 1} and line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = yaml.load(p.read_text(encoding="utf-8-sig"), Loader=_UniqueKeys)  # noqa: S506 - a safe loader
    except FileNotFoundError:
        raise GalError(f"--config {p}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GalError(f"--config {p}: cannot read it ({e})") from None
    except ValueError as e:  # e.g. an integer of thousands of digits (Python's conversion limit)
        raise GalError(f"--config {p}: invalid YAML ({str(e)[:100]}); expected a mapping of keys to values") from None
    except yaml.constructor.ConstructorError as e:
        if "given twice" in str(e.problem):
            raise GalError(f"--config {p}: {e.problem}; expected each key once") from None
        raise GalError(f"--config {p}: invalid YAML ({str(e.problem)[:100]}); expected a mapping of keys to values") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise GalError(f"--config {p}: invalid YAML{at}; expected a mapping of keys to values") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GalError(f"--config {p}: found a {type(data).__name__}; expected a mapping of keys to values")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(valid_keys()))
    if unknown:
        raise GalError(f"--config {p}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid_keys())}")
    return data


def make_config(values: dict[str, Any], source: str = "config") -> Config:
    """Build a Config from plain values (YAML keys), checking each value's type."""
    cfg = Config()
    types = {f.name: f.type for f in dataclasses.fields(Config)}
    for key, value in values.items():
        name = field_of(key)
        if name not in types:
            raise GalError(f"{source}: unknown key '{key}'; valid keys: {', '.join(valid_keys())}")
        setattr(cfg, name, _coerce(key, value, types[name], source))
    return cfg


def _coerce(key: str, value: Any, type_: str, source: str) -> Any:
    if value is None:
        if "None" in type_:
            return None
        raise GalError(f"{source}: '{key}' is empty; expected a value")
    want = type_.replace(" | None", "")
    if key == "balance" and isinstance(value, bool):  # before the schemes had names: on = the paper's
        return "paper" if value else "off"
    try:
        if want == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "1", "on"):
                return True
            if str(value).lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if want == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return integer(value) if isinstance(value, str) else int(value)
        if want == "float":
            if isinstance(value, bool):
                raise ValueError
            return number(value) if isinstance(value, str) else float(value)
        scalar = (str, int, float, bool)  # not a mapping or a list: a YAML alias can make those enormous
        if want == "list[str]":
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(v, scalar) for v in items):
                raise ValueError
            return [str(v) for v in items]
        if not isinstance(value, scalar):
            raise ValueError
        return str(value)
    except (TypeError, ValueError, OverflowError):
        shown = reprlib.repr(value)  # bounded, whatever a YAML alias made of it
        raise GalError(f"{source}: '{key}' is {shown}; expected {want.replace('str', 'text')}") from None


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)


def integer(text: str) -> int:
    """An integer in ASCII digits (Python's int() also reads other scripts' digits and `1_000`)."""
    if not _INT.fullmatch(str(text).strip()):
        raise ValueError(f"invalid int value: {text!r}")
    return int(text)


def number(text: str) -> float:
    """A number in ASCII digits (or inf, nan: refused later with a reason)."""
    if not _FLOAT.fullmatch(str(text).strip()):
        raise ValueError(f"invalid float value: {text!r}")
    return float(text)


def plain_subject(subject: str) -> str:
    """`a <sks> cat` -> `a cat`: placeholder tokens mean nothing to CLIP."""
    return re.sub(r"\s+", " ", re.sub(r"<[^<>]*>", " ", subject)).strip()


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


def resolved(cfg: Config, machine: Machine | None = None, family_of: Callable[[str], Any] | None = None) -> Config:
    """Check every value and fill the values left open with the authors' settings: a pure function. Without
    `--base` or `--scorer`, their defaults depend on `machine` (required then): the paper's models, or the
    bundled miniature world on a machine without a GPU. `family_of(base)` names the base's model family
    (gal.family.family_of), whose sampler defaults and trainable methods apply; without it, SD's. (The
    model-dependent resolution is filled in later, from the loaded model.)"""
    c = dataclasses.replace(cfg, non_soi=list(cfg.non_soi))
    validate(c, machine)
    fill_defaults(c, machine)
    from gal.family import SD

    fill_family_defaults(c, family_of(c.base) if family_of else SD(), machine)
    return c


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


def settle_added(c: Config, every_reference_masked: bool, family=None) -> None:
    """`added` and `balance` left open, from a new run's inputs: composites at weight 1 for an object whose every
    reference has a mask (the winner of docs/results.md's "images worth adding"), unless the paper's balance scheme
    is asked for by name; else the paper's samples at Δ."""
    if c.added is None:
        composites = every_reference_masked and c.balance != "paper" and composite_blocker(c, family) is None
        c.added = "composite" if composites else "samples"
    if c.balance is None:
        c.balance = "off" if c.added == "composite" else "paper"


# The authors' DreamBooth settings per kind (shared/docs/algorithm.md): style 500 steps batch 2, object 800 steps
# batch 1 with prior preservation; their learning rate for the whole UNet, diffusers' DreamBooth-LoRA scripts' for
# LoRA.
AUTHORS = {"object": {"train_steps": 800, "batch_size": 1, "prior": True},
           "style": {"train_steps": 500, "batch_size": 2, "prior": False}}
LR = {"full": 5e-6, "lora": 1e-4}


def fill_defaults(c: Config, machine: Machine | None = None) -> None:
    """The values left open that follow from the kind, the method and the machine."""
    if c.subject_plain is None:
        c.subject_plain = plain_subject(c.subject)
    for key, value in AUTHORS[c.kind].items():
        if getattr(c, key) is None:
            setattr(c, key, value)
    if c.base is None or c.scorer is None:
        if machine is None:
            raise ValueError("resolved: --base or --scorer left open; pass the machine (config.this_machine())")
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
    steps, guidance = (20, 4.0) if c.base == "miniature" else family.sampling_defaults(c.base)
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
          "steps": (1, 10_000), "query_steps": (1, 10_000), "seed": (0, 2**63 - 1)}


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


N_EVAL = 4  # images per test prompt: the paper's evaluation (`gal eval --n`)
PAPER_BASE = "CompVis/stable-diffusion-v1-4"  # the paper's base model
PAPER_SCORER = "openai/clip-vit-base-patch32"  # the paper's CLIP ViT-B/32


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise GalError(f"--{key.replace('_', '-')}: unknown value '{value}'; expected one of {', '.join(choices)}")


def to_dict(cfg: Config) -> dict[str, Any]:
    return {key_of(k): v for k, v in dataclasses.asdict(cfg).items()}


def result_dict(cfg: Config) -> dict[str, Any]:
    """The keys that decide what a run computes: a resumed run must match them."""
    return {k: v for k, v in to_dict(cfg).items() if k not in NOT_RESULT_KEYS}
