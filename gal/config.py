"""One typed config for a GAL run, from a YAML file and command-line flags (flags win).

Keys are the flags with `_` for `-` (`--train-steps` -> `train_steps`); `lambda` is spelled as in the
paper. Values left as None are settled from the kind, the method, the model and the references, the way the paper's
authors set them (`gal.resolve.settle`)."""

from __future__ import annotations

import dataclasses
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    balance: str | None = setting(None, "how added images enter the fine-tune (fine_tune.training_terms): paper (weight Δ, "
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
    masked_loss: float | None = setting(None, "train the references' loss on their subject: each latent's error weighted "
                                        "by its share of the mask (NAME.mask.png or an alpha channel), the value "
                                        "outside it (kohya's --masked_loss; --masked-loss alone: 0)", group=TUNING,
                                        metavar="WEIGHT", flag={"nargs": "?", "const": 0.0}, default_text="off")
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


LEGACY_BALANCE = {True: "paper", False: "off"}  # `balance` in ledgers and configs before the schemes had names


def strategy_label(strategy: str, balance: str | bool) -> str:
    """`uncertainty + balance` (the paper's scheme), `uncertainty + separate balance`, `uncertainty`."""
    balance = LEGACY_BALANCE.get(balance, balance)
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
    if key == "balance" and isinstance(value, bool):
        return LEGACY_BALANCE[value]
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


N_EVAL = 4  # images per test prompt: the paper's evaluation (`gal eval --n`)
PAPER_BASE = "CompVis/stable-diffusion-v1-4"  # the paper's base model
PAPER_SCORER = "openai/clip-vit-base-patch32"  # the paper's CLIP ViT-B/32


def to_dict(cfg: Config) -> dict[str, Any]:
    return {key_of(k): v for k, v in dataclasses.asdict(cfg).items()}


def result_dict(cfg: Config) -> dict[str, Any]:
    """The keys that decide what a run computes: a resumed run must match them."""
    return {k: v for k, v in to_dict(cfg).items() if k not in NOT_RESULT_KEYS}
