"""`gal eval --base B --lora PATH [--lora PATH ...] --lora-scale X [X ...]`: which checkpoint of any trainer, at
which LoRA scale, and where does it copy?

For every (checkpoint, scale), through the same Query component as `gal run`:
- the paper's metrics on the test prompts (TXT-ALN, IMG-ALN, OVF), and with `masked` IMG-ALN on the subject's region
  (`gal.masks`: a copied background cannot inflate it);
- the anchors' per-direction overfit rate β (m samples per anchor, Eq. 8): where the LoRA copies the references'
  non-subject content. The same samples are the validation split (the anchors, disjoint from the test prompts):
- the recommendation is `gal.keep`'s leak-free rule read on them: the best TXT-ALN among the (checkpoint, scale)
  pairs that keep 80% of the IMG-ALN of the last checkpoint at scale 1 (the fully trained LoRA, as round 1 is a
  run's), chosen without the test prompts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from gal import strategy
from gal.checkpoints import Checkpoint, find_all
from gal.config import N_EVAL, Config
from gal.errors import GalError
from gal.generate import sample_seed
from gal.metrics import TestPrompt, check_lora_scale, test_prompts


def evaluate_checkpoints(cfg: Config, loras: Sequence[str], scales: Sequence[float] = (1.0,), *, n: int = N_EVAL,
                         seed: int = 0, m: int | None = None, prompts_file: str | None = None, masked: bool = False,
                         segmenter: str | None = None, image_model: str | None = None, anchors: bool = True,
                         device: str = "auto", save_dir: Path | None = None, log=print) -> dict:
    """{"rows": one per (checkpoint, scale), by step then scale; "anchors": the anchor templates; "prompts": the test
    prompts; "recommended":
    {"lora", "scale", "why"}}. Each row: lora, label, step, scale, txt_aln, img_aln, ovf (and img_aln_masked), images,
    beta (per anchor), copies (the number of anchors with β > 0.5), validation (TXT-ALN, IMG-ALN, OVF on the
    anchors). `save_dir`: the test images, one folder per row (the report's grid)."""
    from accelerate import PartialState

    from gal import models
    from gal.anchors import make_anchors, read_templates
    from gal.family import family_of
    from gal.generate import auto_batch_size
    from gal.query import Query
    from gal.references import read_references
    from gal.resolve import check_device, settle, this_machine
    from gal.score import ClipScorer

    for s in scales:
        check_lora_scale(s)
    machine = this_machine()
    cfg, family = settle(cfg, machine, family_of=family_of)
    check_device(device, cfg.mixed_precision, machine)
    m = m or cfg.m
    found = find_all(loras) if loras else [None]
    if len(scales) != len(set(scales)):
        raise GalError("--lora-scale: a scale given twice; expected each once")
    if not loras and list(scales) != [1.0]:
        raise GalError(f"--lora-scale {scales[0]:g}: there is no --lora to scale; expected --lora PATH with it")
    refs = read_references(cfg.references)
    given = _given_masks(refs, cfg) if masked else None
    non_soi = list(dict.fromkeys(t for t in [*cfg.non_soi, *(r.caption for r in refs)] if t))  # as `gal run`'s ē*
    if not non_soi:
        raise GalError("--non-soi: missing, and no reference has a caption; OVF (Eq. 8) needs the references' "
                       "non-subject content, e.g. --non-soi 'a cat on the stairs'")
    prompts = test_prompts(cfg.kind, cfg.subject, cfg.subject_plain, prompts_file)
    directions = make_anchors(read_templates(cfg.anchors, cfg.kind), cfg.subject, cfg.subject_plain) if anchors else []
    torch_device = models.pick_device(device)
    scorer = ClipScorer(cfg.scorer, device=torch_device)
    precision = models.mixed_precision(cfg.mixed_precision, torch_device)  # bf16 on GPUs, as `gal run`
    dtype = models.precision_dtype(precision)
    pipe = models.load_pipeline(cfg.base, dtype, dtype, family=family).to(torch_device)
    family.use_query_sampler(pipe)
    resolution = models.image_resolution(pipe, cfg.resolution, family)
    query = Query(pipe, scorer, PartialState(), auto_batch_size(torch_device, resolution), resolution,
                  dtype if precision != "no" else None)
    regions = _Regions(segmenter, torch_device, refs, given, _class_word(cfg), scorer) if masked else None
    from gal.metrics import ImageEmbedder

    embedder = ImageEmbedder(image_model, torch_device) if image_model else None
    second = (embedder, embedder.features([r.image for r in refs])) if embedder else None
    reference_features = scorer.image_features([r.image for r in refs])
    names, shape = [], None
    for i, checkpoint in enumerate(found):  # every file readable, one training's, before any image
        names.append(_load(pipe, checkpoint, f"c{i}") if checkpoint else None)
        if checkpoint:
            shape = _same_shape(pipe, checkpoint, names[-1], shape)
    rows = []
    for checkpoint, name in zip(found, names):
        for scale in scales if checkpoint else [1.0]:
            if name:
                pipe.set_adapters([name], adapter_weights=[scale])
            label = f"{checkpoint.label} @ {scale:g}" if checkpoint else "base"
            folder = save_dir / f"{len(rows):03d}-{_slug(label)}" if save_dir else None  # one per row, whatever its label
            test = _scored(query, prompts, non_soi, reference_features, n, seed, cfg, f"{label}: test", folder,
                           regions, second)
            test.pop("beta")
            row = {"lora": str(checkpoint.path) if checkpoint else None, "label": label,
                   "checkpoint": checkpoint.label if checkpoint else None,
                   "step": checkpoint.step if checkpoint else None, "scale": scale, **test,
                   "images_dir": str(folder) if folder else None}
            if directions:
                val = _scored(query, [TestPrompt(a.prompt, a.text) for a in directions], non_soi,
                              reference_features, m, seed, cfg, f"{label}: anchors", None, None, salt="anchors")
                beta = val.pop("beta")
                row.update(beta=beta, copies=int(sum(b > 0.5 for b in beta)), validation=val)
            rows.append(row)
            log(f"{label}: TXT-ALN {test['txt_aln']:.4f} IMG-ALN {test['img_aln']:.4f} OVF {test['ovf']:.3f}" +
                (f"; copies in {row['copies']} of {len(directions)} directions" if directions else ""))
    if any(names):
        pipe.delete_adapters([name for name in names if name])
    return {"rows": rows, "anchors": [a.template for a in directions], "prompts": [p.prompt for p in prompts],
            "recommended": recommended(rows) if loras and directions else None}


def evaluate_model(cfg: Config, *, lora: str | None = None, n: int = N_EVAL, seed: int = 0, prompts_file: str | None = None,
                   image_model: str | None = None, lora_scale: float = 1.0, device: str = "auto") -> dict:
    """TXT-ALN, IMG-ALN and OVF of one model without a run: `cfg`'s base (and `lora`, at `lora_scale`), scorer,
    references, subject, non-SoI texts and sampler (`gal.compare.evaluate_checkpoints` for one checkpoint)."""
    found = evaluate_checkpoints(cfg, [lora] if lora else [], [lora_scale], n=n, seed=seed, prompts_file=prompts_file,
                                 image_model=image_model, anchors=False, device=device, log=lambda line: None)
    if len(found["rows"]) != 1:
        raise GalError(f"--lora {lora}: {len(found['rows'])} checkpoints; expected one (gal eval --base ... --lora "
                       "scores a series: gal.compare.evaluate_checkpoints)")
    (row,) = found["rows"]
    return {k: v for k, v in row.items() if k == "images" or k.startswith(("txt_aln", "img_aln", "ovf"))}


def recommended(rows: list[dict]) -> dict:
    """`gal.keep.keep_rule` on the validation split (the anchors), against the IMG-ALN of the last checkpoint at scale 1
    (or the row nearest scale 1), ties to the earlier step and the lower scale."""
    from gal.keep import KEEP_IMAGE, keep_rule

    last = [r for r in rows if r["checkpoint"] == rows[-1]["checkpoint"]]
    reference = min(last, key=lambda r: abs(r["scale"] - 1.0))
    order = sorted(rows, key=lambda r: (r["step"] or 0, r["scale"]))  # the ties' preference
    chosen, lost = keep_rule([r["validation"]["txt_aln"] for r in order], [r["validation"]["img_aln"] for r in order],
                             reference["validation"]["img_aln"])
    best, dropped = order[chosen], len(lost)
    why = (f"the best TXT-ALN on the validation split (the anchors, {best['validation']['txt_aln']:.3f}) among the "
           f"checkpoints and scales that keep {KEEP_IMAGE:.0%} of {reference['label']}'s IMG-ALN "
           f"({reference['validation']['img_aln']:.3f})" + (f"; {dropped} lost more of it" if dropped else ""))
    return {"lora": best["lora"], "label": best["label"], "scale": best["scale"], "why": why}


def copying_line(result: dict, row: dict, worst: int = 2) -> str:
    """"copies the references' content in 14 of 18 directions; worst: {} in the snow, {} on a beach"."""
    order = sorted(range(len(row["beta"])), key=lambda i: -row["beta"][i])
    named = [result["anchors"][i] for i in order[:worst] if row["beta"][i] > 0.5]
    return (f"copies the references' content in {row['copies']} of {len(row['beta'])} directions"
            + (f"; worst: {', '.join(named)}" if named else ""))


def _class_word(cfg: Config) -> str:
    """What CLIPSeg is prompted with: an object's class word, a style's words."""
    words = re.sub(r"^(a|an|the)\s+", "", cfg.subject_plain.strip(), flags=re.IGNORECASE)
    return words.split()[-1] if cfg.kind == "object" and words else words


def _given_masks(refs, cfg: Config) -> list:
    """The user's masks of the references (`masks.given_masks`), before any model loads; the rest are CLIPSeg's."""
    from gal.masks import given_masks, warn_unmasked

    given = given_masks(refs)
    warn_unmasked(refs, given, f"--masked uses CLIPSeg's mask of them (prompted with '{_class_word(cfg)}')")
    return given


class _Regions:
    """Subject masks: the user's for the references where given, CLIPSeg's (prompted with the class word) else."""

    def __init__(self, segmenter: str | None, device, refs, given: list, prompt: str, scorer):
        from gal.masks import DEFAULT_SEGMENTER, Segmenter, on_grey

        self.segmenter = Segmenter(segmenter or DEFAULT_SEGMENTER, device)
        self.prompt = prompt
        found = self.segmenter.masks([r.image for r in refs], self.prompt)
        self.features = scorer.image_features([on_grey(r.image, g if g is not None else f)
                                               for r, g, f in zip(refs, given, found)])  # the references' subject
        self.on_grey = on_grey

    def subject(self, images):
        return [self.on_grey(im, mask) for im, mask in zip(images, self.segmenter.masks(images, self.prompt))]


def _scored(query, prompts: Sequence[TestPrompt], non_soi, reference_features, n: int, seed: int, cfg: Config,
            desc: str, folder: Path | None, regions: _Regions | None, second=None, salt: str = "eval") -> dict:
    """TXT-ALN, IMG-ALN, OVF (and the masked IMG-ALN, a second model's IMG-ALN) of `n` images per prompt, and β per
    prompt (Eq. 7). The seeds are `gal eval`'s (`metrics.evaluate`): the same images for the same model."""
    from gal.storage import write_png

    jobs = [(i, j) for i in range(len(prompts)) for j in range(n)]
    seeds = [sample_seed(seed, salt, i, j) for i, j in jobs]
    txt, img, phi, masked, extra = [], [], [], [], []
    embedder, extra_refs = second or (None, None)  # a second image model and its features of the references
    for mine, images, features, s_a, s_n in query.scored([prompts[i].prompt for i, _ in jobs],
                                                         [prompts[i].text for i, _ in jobs], non_soi, seeds,
                                                         steps=cfg.steps, guidance=cfg.guidance, desc=desc):
        f = torch.stack(features)
        txt += s_a
        img += (f @ reference_features.T).mean(dim=1).tolist()
        phi += strategy.overfit(s_a, s_n).tolist()
        if regions:
            masked += (query.scorer.image_features(regions.subject(images)) @ regions.features.T).mean(dim=1).tolist()
        if embedder:
            extra += (embedder.features(images) @ extra_refs.T).mean(dim=1).tolist()
        if folder is not None:
            for k, image in zip(mine, images):
                write_png(folder / f"p{jobs[k][0]:03d}-j{jobs[k][1]:02d}.png", image)
    out = {"txt_aln": float(np.mean(txt)), "img_aln": float(np.mean(img)), "ovf": float(np.mean(phi)),
           "images": len(jobs), "beta": np.asarray(phi).reshape(len(prompts), n).mean(axis=1).tolist()}
    if regions:
        out["img_aln_masked"] = float(np.mean(masked))
    if embedder:
        out["img_aln_" + embedder.name] = float(np.mean(extra))
    return out


def _load(pipe, checkpoint: Checkpoint, name: str) -> str:
    """The checkpoint as adapter `name`; a file diffusers cannot read, or one with no weights for the base's denoiser
    (a text encoder's alone, or another family's), named in one line with the layout found."""
    import tempfile

    import diffusers

    from gal.models import quiet_transformers

    path = checkpoint.path
    with tempfile.TemporaryDirectory() as links:
        readable = _plain_name(path, Path(links))
        where = dict(pretrained_model_name_or_path_or_dict=str(readable.parent), weight_name=readable.name) \
            if readable.is_file() else dict(pretrained_model_name_or_path_or_dict=str(readable))
        try:
            with quiet_transformers():  # its notes on text-encoder keys, and a failed load's dump: ours is one line
                diffusers.logging.set_verbosity(diffusers.logging.CRITICAL)
                pipe.load_lora_weights(**where, adapter_name=name)
        except Exception as e:  # noqa: BLE001 - whatever diffusers' converters raise for a layout they do not know
            raise GalError(f"--lora {path}: {type(pipe).__name__}.load_lora_weights cannot read it ({_layout(readable)}; "
                           f"{str(e).strip().splitlines()[0][:140] if str(e).strip() else e.__class__.__name__}); expected "
                           "a LoRA of this base's family in a layout diffusers reads (diffusers, kohya, ai-toolkit, ...)") from None
        if name not in pipe.get_list_adapters().get(_denoiser(pipe), []):
            raise GalError(f"--lora {path}: none of its weights fits this base's {_denoiser(pipe)} ({_layout(readable)}); "
                           f"expected a LoRA trained on a {type(pipe).__name__} base, with weights for its "
                           f"{_denoiser(pipe)} (a text encoder's alone is not a checkpoint gal eval compares)")
    return name


def _plain_name(path: Path, links: Path) -> Path:
    """`path`, or, where its name is not UTF-8 (which the safetensors library cannot open), a link to it of a plain
    name in the folder `links`."""
    try:
        str(path).encode()
        return path
    except UnicodeEncodeError:
        link = links / ("lora.safetensors" if path.is_file() else "lora")
        link.symlink_to(path.resolve())
        return link


def _denoiser(pipe) -> str:
    return "unet" if hasattr(pipe, "unet") else "transformer"


def _layout(path: Path) -> str:
    """What the file's keys look like, for an error message."""
    from safetensors import safe_open

    file = path if path.is_file() else next(iter(sorted(path.glob("*.safetensors"))), None)
    if file is None:
        return "no .safetensors file"
    try:
        with safe_open(str(file), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:  # noqa: BLE001
        return f"not a safetensors file: {str(e)[:60]}"
    prefixes = sorted({k.split(".")[0].split("_")[0] for k in keys})
    return f"{len(keys)} tensors, keys beginning {', '.join(prefixes[:4])}"


def _same_shape(pipe, checkpoint: Checkpoint, name: str, shape: tuple | None) -> tuple:
    """(rank, targets) of the adapter just loaded: the checkpoints of one series are of one training."""
    from peft.tuners.lora import LoraLayer

    denoiser = getattr(pipe, _denoiser(pipe))
    layers = [(n, m) for n, m in denoiser.named_modules() if isinstance(m, LoraLayer) and name in m.lora_A]
    mine = (max(m.r[name] for _, m in layers), len(layers))
    if shape is not None and mine != shape:
        raise GalError(f"--lora {checkpoint.path}: rank {mine[0]} on {mine[1]} modules, where the earlier checkpoints "
                       f"have rank {shape[0]} on {shape[1]}; expected the checkpoints of one training (give another "
                       "training's in a gal eval of its own)")
    return mine


def _slug(label: str) -> str:
    return re.sub(r"[^\w.-]+", "_", label, flags=re.ASCII).strip("_")


def check_report(path: Path, reads: dict[str, list]) -> None:
    """Before any scoring: `--report` can be written (`storage.check_output`: on none of the inputs in `reads`), and a
    file already there is an earlier report to replace, not another file."""
    from gal.storage import check_output

    check_output("--report", path, reads)
    if path.is_file():
        with open(path, "rb") as f:
            if not f.read(200).lstrip().lower().startswith((b"<!doctype html", b"<html")):
                raise GalError(f"--report {path}: a file that is not an HTML page is there; expected a new file name, "
                               "or an earlier report to replace")


def write_report(result: dict, path: Path, base: str, n: int, m: int) -> Path:
    """A self-contained HTML page (plots and thumbnails inlined): the table, TXT-ALN against IMG-ALN per checkpoint,
    the per-anchor copying heat map and a grid of test prompts x checkpoints."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from gal.report import _png, thumbnail
    from gal.storage import write_text

    rows = result["rows"]
    recommended = result["recommended"]
    chosen = next((r for r in rows if recommended and r["label"] == recommended["label"]), None)
    grid = []
    if rows and rows[0]["images_dir"]:
        files = sorted(Path(rows[0]["images_dir"]).glob("p*-j00.png"))
        for f in files[:12]:
            i = int(f.stem[1:4])
            grid.append({"prompt": result["prompts"][i] if i < len(result.get("prompts", [])) else f.stem[:4],
                         "images": [thumbnail(Path(r["images_dir"]) / f.name) for r in rows]})
    page = Environment(loader=PackageLoader("gal", "templates"), autoescape=select_autoescape()).get_template(
        "compare.html").render(title=path.stem, base=base, rows=rows, anchors=result["anchors"], n=n, m=m,
                               recommended=recommended, copying=copying_line(result, chosen) if chosen else "",
                               masked=bool(rows and "img_aln_masked" in rows[0]), curve=_png(_curve(rows)),
                               heatmap=_png(_heatmap(result)), grid=grid)
    write_text(path, page)
    return path


def _curve(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for scale in sorted({r["scale"] for r in rows}):
        line = [r for r in rows if r["scale"] == scale]
        xs, ys = [r["img_aln"] for r in line], [r["txt_aln"] for r in line]
        drawn, = ax.plot(xs, ys, "-o", ms=3, label=f"scale {scale:g}")
        for r in line:
            ax.annotate(r["checkpoint"] or "base", (r["img_aln"], r["txt_aln"]), fontsize=6, xytext=(2, 2),
                        textcoords="offset points")
        if len(line) > 1:
            ax.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-2], ys[-2]),
                        arrowprops=dict(arrowstyle="->", color=drawn.get_color()))
    ax.set_xlabel("IMG-ALN")
    ax.set_ylabel("TXT-ALN")
    ax.legend(fontsize=7)
    return fig


def _heatmap(result: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, anchors = result["rows"], result["anchors"]
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(rows) + 3), max(3, 0.22 * len(anchors) + 1)))
    image = ax.imshow(np.array([r["beta"] for r in rows]).T, cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=60, ha="right", fontsize=6)
    ax.set_yticks(range(len(anchors)), anchors, fontsize=6)
    fig.colorbar(image, ax=ax, label="β (overfitted share)")
    return fig
