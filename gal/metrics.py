"""The paper's metrics (section 4) on held-out test prompts:

    TXT-ALN  mean CLIP cosine between each test image and its prompt (subject in plain words)
    IMG-ALN  mean CLIP cosine between each test image and the reference images
    OVF      share of test images that Eq. 8 calls overfitted

Images come from fixed per-(prompt, j) seeds, so rounds are compared on the same noise.
"""

from __future__ import annotations

import csv
import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image

from gal import strategy
from gal.config import N_EVAL
from gal.errors import GalError
from gal.generate import sample_seed
from gal.locations import check_model_folder
from gal.models import quiet_transformers
from gal.storage import write_png


class TestPrompt(NamedTuple):
    prompt: str  # for generation, with the subject phrase
    text: str  # for CLIP, with the subject in plain words


def _data(*parts: str) -> str:
    return resources.files("gal").joinpath("data", *parts).read_text(encoding="utf-8")


def _without_article(phrase: str) -> str:
    return re.sub(r"^(a|an|the)\s+", "", phrase.strip(), flags=re.IGNORECASE)


def test_prompts(kind: str, subject: str, subject_plain: str, path: str | Path | None = None) -> list[TestPrompt]:
    """The paper's test prompts: for styles the 190 basic PartiPrompts with the style phrase appended; for
    objects the concept's 20 Custom Diffusion prompts (class word -> subject) when the class is one of the
    10, else 20 generic templates. A file of your own: one prompt per line, `{}` where the subject goes."""
    if path is not None:
        try:
            lines = [l.replace("\ufeff", "").strip() for l in Path(path).read_text(encoding="utf-8-sig").splitlines()]
            lines = [l for l in lines if l]
        except (OSError, UnicodeDecodeError) as e:
            raise GalError(f"--prompts {path}: cannot read it ({e.__class__.__name__}); expected a text file") from None
        if not lines:
            raise GalError(f"--prompts {path}: no prompts; expected one per line")
        if kind == "object" and not all("{}" in l for l in lines):
            bad = next(l for l in lines if "{}" not in l)
            raise GalError(f"--prompts {path}: '{bad}' has no '{{}}' where the subject goes")
        return [TestPrompt(*(l.replace("{}", s) if "{}" in l else f"{l} {s}" for s in (subject, subject_plain)))
                for l in lines]
    if kind == "style":
        rows = csv.DictReader(_data("parti_prompts_basic.csv").splitlines())
        return [TestPrompt(f"{r['Prompt']} {subject}", f"{r['Prompt']} {subject_plain}") for r in rows]
    words = subject_plain.split()
    concept = words[-1].lower() if words else ""
    try:
        lines = _data("test_prompts", f"{concept}.txt").splitlines() if concept.isidentifier() else []
    except FileNotFoundError:
        lines = []
    if lines:
        word = re.compile(rf"\b{re.escape(concept)}\b", re.IGNORECASE)
        return [TestPrompt(word.sub(_without_article(subject), l, count=1), l) for l in lines if l.strip()]
    return [TestPrompt(l.replace("{}", subject), l.replace("{}", subject_plain))
            for l in _data("test_prompts", "object_generic.txt").splitlines() if l.strip()]


class ImageEmbedder:
    """A second image-similarity model for IMG-ALN (DINO-style): any transformers vision model folder."""

    def __init__(self, name_or_path: str, device: torch.device | str = "cpu"):
        from transformers import AutoImageProcessor, AutoModel

        check_model_folder(name_or_path, "--image-model")
        with quiet_transformers():
            try:
                self.model = AutoModel.from_pretrained(name_or_path, use_safetensors=True).to(device).eval()
                self.processor = AutoImageProcessor.from_pretrained(name_or_path)
            except (OSError, ValueError) as e:
                raise GalError(f"--image-model {name_or_path}: cannot load it ({str(e).splitlines()[0][:160]}); "
                               "expected a transformers vision model folder with an image processor") from None
        self.name = Path(name_or_path).name
        self.device = torch.device(device)

    @torch.no_grad()
    def features(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        out = self.model(pixel_values=pixels)
        pooled = out.pooler_output if getattr(out, "pooler_output", None) is not None else out.last_hidden_state[:, 0]
        return torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()


def evaluate(query, prompts: Sequence[TestPrompt], references: list[Image.Image], non_soi: list[str], *, n: int,
             seed: int, steps: int, guidance: float, image_model: ImageEmbedder | None = None,
             save_dir: Path | None = None, subjects: list[Image.Image] | None = None, desc: str = "eval") -> dict:
    """Generate `n` images per test prompt through the query (gal.query: the same batches, seeds and oracle as a
    run's) and score them. Returns the three metrics (and the second model's IMG-ALN if given; with `subjects`, the
    references' subjects on grey (`masks.on_grey`), IMG-ALN against them: `img_aln_subject`, which a copied
    background does not raise)."""
    jobs = [(i, j) for i in range(len(prompts)) for j in range(n)]
    seeds = [sample_seed(seed, "eval", i, j) for i, j in jobs]
    ref_clip = query.scorer.image_features(references)
    ref_extra = image_model.features(references) if image_model else None
    ref_subject = query.scorer.image_features(subjects) if subjects else None
    txt, img, ovf, extra, subject = [], [], [], [], []
    for mine, images, features, s_a, s_n in query.scored([prompts[i].prompt for i, _ in jobs],
                                                         [prompts[i].text for i, _ in jobs], non_soi, seeds,
                                                         steps=steps, guidance=guidance, desc=desc):
        f = torch.stack(features)
        txt += s_a
        img += (f @ ref_clip.T).mean(dim=1).tolist()
        if ref_subject is not None:
            subject += (f @ ref_subject.T).mean(dim=1).tolist()
        ovf += strategy.overfit(s_a, s_n).tolist()  # Eq. 8 on test prompts
        if image_model:
            extra += (image_model.features(images) @ ref_extra.T).mean(dim=1).tolist()
        if save_dir is not None:
            for k, image in zip(mine, images):
                i, j = jobs[k]
                write_png(save_dir / f"p{i:03d}-j{j:02d}.png", image)
    result = {"txt_aln": float(np.mean(txt)), "img_aln": float(np.mean(img)), "ovf": float(np.mean(ovf)),
              "images": len(jobs)}
    if image_model:
        result["img_aln_" + image_model.name] = float(np.mean(extra))
    if subject:
        result["img_aln_subject"] = float(np.mean(subject))
    return result


SPLITS = ("test", "validation")


def validation_prompts(anchors, added_from: set[int]) -> list[TestPrompt]:
    """The validation split of a run: its anchor prompts that no round added an image for. They are disjoint from
    the test prompts, and no round trained on them, so a round chosen on them is not chosen on the test prompts
    its metrics are then reported on (`gal.keep`)."""
    return [TestPrompt(a.prompt, a.text) for a in anchors if a.idx not in added_from]


def _file_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as e:
        raise GalError(f"--prompts {path}: cannot read it ({e.__class__.__name__}); expected a text file") from None


def evaluate_splits(run_dir: Path, *, rounds: list[int] | None = None, n: int = N_EVAL, seed: int = 0,
                    prompts_file: str | None = None, image_model: str | None = None, lora_scale: float = 1.0,
                    splits: Sequence[str] = ("test",), device: str = "auto", log=print) -> dict[str, list[dict]]:
    """Every round's checkpoint of a run (or `rounds`) on each split, each once per setting: results are kept in the
    run's ledger and read back on the next call, each round's weights loaded once for all splits. `splits`: the test
    prompts (the paper's, or `prompts_file`) and the validation split (`validation_prompts`); a run whose anchors all
    had an image added has no validation split: [] when other splits are asked for too, else refused. `lora_scale`
    turns each round's LoRA down (or up) as a user of the LoRA file can."""
    from gal import run_folder
    from gal.components import Components
    from gal.config import make_config
    from gal.family import family_of
    from gal.ledger import Ledger
    from gal.masks import on_grey
    from gal.references import non_soi_texts
    from gal.resolve import check_device, this_machine
    from gal.storage import RunLock

    run_dir = Path(run_dir)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise GalError(f"split {unknown[0]!r}: expected one of {', '.join(SPLITS)}")
    if splits == ("validation",) and prompts_file:
        raise GalError("--prompts: the validation split is the run's own anchors; expected no --prompts with it")
    check_lora_scale(lora_scale)
    if not Ledger.exists(run_dir):
        raise GalError(f"{run_dir}: no gal run here; expected a folder made by `gal run --out`")
    with RunLock(run_dir, hint="gal eval records its results in the run's ledger, so run it when that process is "
                              "done (gal show and gal report work meanwhile)"):
        ledger = Ledger(run_dir)
        try:
            cfg = make_config({**ledger.recorded_config(), "out": str(run_dir), "device": device}, source=str(run_dir))
            check_device(device, cfg.mixed_precision, this_machine())
            done = [r for r in ledger.rounds() if r["checkpoint"]]
            if rounds:
                missing = sorted(set(rounds) - {r["round"] for r in done})
                if missing:
                    raise GalError(f"--round {missing[0]}: this run has no checkpoint for it; "
                                   f"rounds with one: {', '.join(str(r['round']) for r in done) or 'none'}")
                done = [r for r in done if r["round"] in rounds]
            digest = _file_digest(prompts_file) if prompts_file else None
            jobs = {}  # split -> (settings, prompts)
            for split in splits:
                settings = {"n": n, "seed": seed, "steps": cfg.steps, "guidance": cfg.guidance,
                            "prompts": prompts_file or "default", "image_model": image_model}
                if split == "validation":
                    added_from = {t.anchor_idx for t in ledger.training_set(len(ledger.rounds()) + 1) if t.added_in_round}
                    prompts = validation_prompts(ledger.anchors(), added_from)
                    if not prompts and len(splits) == 1:
                        raise GalError(f"{run_dir}: no validation split: every anchor had an image added; the round "
                                       "to keep is chosen on the test prompts")
                    settings.update(prompts="validation", anchors=sorted(a.idx for a in ledger.anchors()
                                                                         if a.idx not in added_from))
                else:
                    prompts = test_prompts(cfg.kind, cfg.subject, cfg.subject_plain, prompts_file)
                    for r in done:
                        recorded = ledger.evaluation(r["round"], settings)
                        if recorded and digest and recorded.get("prompts_sha256", digest) != digest:
                            raise GalError(f"--prompts {prompts_file}: changed since round {r['round']} was evaluated "
                                           "with it; expected the same file (its results are kept), or the new prompts "
                                           "under a new name")
                if lora_scale != 1.0:  # absent at 1: evaluations recorded before the scale existed still match
                    settings["lora_scale"] = lora_scale
                if prompts:
                    jobs[split] = (settings, prompts)
            todo = [r for r in done if any(ledger.evaluation(r["round"], j[0]) is None for j in jobs.values())]
            if todo:
                parts = Components(cfg, family_of(cfg.base), trains=False)
                embedder = ImageEmbedder(image_model, parts.accelerator.device) if image_model else None
                references = [run_folder.read_image(run_dir / ref.path, "reference") for ref in ledger.added(0)]
                masks = [run_folder.mask(run_dir / ref.path) for ref in ledger.added(0)]
                subjects = [on_grey(image, run_folder.read_mask(run_dir / ref.path))
                            for image, ref in zip(references, ledger.added(0))] if all(m.exists() for m in masks) else None
                non_soi = non_soi_texts(cfg, ledger.added(0))
                for r in todo:
                    if not (run_dir / r["checkpoint"]).is_dir():
                        raise GalError(f"{run_dir / r['checkpoint']}: missing; it holds round {r['round']}'s weights; "
                                       "restore it from a copy of the run folder (--round N evaluates the others)")
                    run_folder.load_checkpoint(parts.personalizer, run_dir / r["checkpoint"], r["round"],
                                               closed=bool(r["closed"]))
                    for split, (settings, prompts) in jobs.items():
                        if ledger.evaluation(r["round"], settings) is not None:
                            continue
                        folder = f"{run_folder.evaluation(settings)}/round-{r['round']}"
                        with parts.personalizer.merged(lora_scale):
                            metrics = evaluate(parts.query, prompts, references, non_soi, n=n,
                                               seed=seed, steps=cfg.steps, guidance=cfg.guidance, image_model=embedder,
                                               save_dir=run_dir / folder, subjects=subjects, desc=f"round {r['round']}: eval ({split})")
                        metrics["folder"] = folder
                        if digest and split == "test":
                            metrics["prompts_sha256"] = digest
                        ledger.add_evaluation(r["round"], settings, metrics)
            return {split: [{"round": r["round"], **ledger.evaluation(r["round"], jobs[split][0])} for r in done]
                    if split in jobs else [] for split in splits}
        finally:
            ledger.close()


def check_lora_scale(scale: float) -> None:
    if not (0 < scale <= 2):
        raise GalError(f"--lora-scale {scale}: expected a number in (0, 2] (1: the LoRA as trained)")


def rows_text(rows: list[dict]) -> str:
    """`gal eval`'s table: one line per round (or model)."""
    extra = [k for k in rows[0] if k.startswith("img_aln_")] if rows else []
    lines = [f"{'round':>5}  {'TXT-ALN':>7}  {'IMG-ALN':>7}  {'OVF':>6}" + "".join(f"  {k[8:]:>10}" for k in extra) + "  images"]
    for r in rows:
        lines.append(f"{'-' if r['round'] is None else r['round']:>5}  {r['txt_aln']:7.4f}  {r['img_aln']:7.4f}  "
                     f"{r['ovf']:6.3f}" + "".join(f"  {r[k]:10.4f}" for k in extra) + f"  {r['images']}")
    return "\n".join(lines)
