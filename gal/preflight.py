"""What a run starts from, before anything is written: the folder's state, the inputs read and checked, every value
of the config settled (`resolve.settle`), and, under the folder's lock, the first record in the ledger."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from gal import run_folder
from gal.anchors import make_anchors, read_templates
from gal.config import Config, result_dict, to_dict, valid_keys
from gal.errors import GalError, warn
from gal.ledger import Anchor, Ledger, Reference
from gal.masks import given_masks, warn_unmasked
from gal.references import ReferenceImage, read_references, reference_prompt
from gal.resolve import settle, stored_config, this_machine, validate
from gal.storage import check_output, write_png, write_text
from gal.view import ledger_summary


class Inputs(NamedTuple):
    """What a new run starts from, read and checked before anything is written."""
    references: list[ReferenceImage]
    templates: dict[int, str]
    captions: list[str]
    masks: list  # per reference, its subject's mask ((H, W) in [0, 1], `masks.given_masks`) or None
    class_images: list[ReferenceImage] = ()  # the user's (--class-images), copied into the run; none: made by the base


class Found(NamedTuple):
    """What `gal run` found: its config settled, and in its folder a new run, an unfinished one or a finished one."""
    state: str  # "new", "unfinished", "finished"
    cfg: Config  # every value settled (a resumed run's `added` and `balance` as it was started)
    family: Any  # the base's model family (gal.family)
    notes: list[str]  # lines for the user about what was settled
    stored: dict | None = None  # the ledger's config (unfinished, finished)
    inputs: Inputs | None = None  # a new run's
    summary: dict | None = None  # a finished run's


def examine(config: Config, force: bool = False) -> Found:
    """The fast answers, before the models load: every value checked, the folder's state, a new run's inputs read
    and checked, and the config settled once from them (a resumed run's as it was started)."""
    from gal.family import family_of

    machine, run_dir = this_machine(), Path(config.out)
    validate(config, machine)  # every value, before the inputs are read with them
    stored = existing_config(run_dir)
    if stored is None:
        check_new_folder(run_dir, {f"--{k.replace('_', '-')}": [getattr(config, k)]
                                   for k in ("references", "base", "scorer", "anchors", "class_images")})
        inputs = read_inputs(config)
        unmasked = [ref.source for ref, mask in zip(inputs.references, inputs.masks) if mask is None]
        cfg, family = settle(config, machine, unmasked=unmasked, family_of=family_of)
        warn_unmasked(inputs.references, inputs.masks, "a run uses masks only where every reference has one, so this "
                      "one uses none (no composites, no masked loss)")
        if cfg.class_images and cfg.prior:
            inputs = inputs._replace(class_images=read_references(cfg.class_images, flag="--class-images"))
        found = Found("new", cfg, family, [], inputs=inputs)
    else:
        was = stored_config(stored)  # left open: as the run was started
        cfg, family = settle(dataclasses.replace(config, added=config.added or was.added,
                                                 balance=config.balance or was.balance), machine, family_of=family_of)
        check_same_config(stored, cfg, force)
        ledger = Ledger(run_dir)
        try:
            finished = ledger.get("status") == "finished"
            found = Found("finished" if finished else "unfinished", cfg, family, [], stored,
                          summary=ledger_summary(ledger) if finished else None)
        finally:
            ledger.close()
    if config.quantize == "auto" and cfg.quantize != "none":  # chosen for this GPU: say so
        from gal.memory import explain

        found.notes.append(explain(family, cfg.base, machine, cfg.quantize))
    return found


def read_inputs(config: Config) -> Inputs:
    """A new run's references (with their captions and masks) and anchors, read and checked."""
    refs = read_references(config.references)
    templates = read_templates(config.anchors, config.kind)
    if config.k > len(templates):
        raise GalError(f"--k {config.k}: larger than the {len(templates)} anchors in the pool; expected --k "
                       f"{len(templates)} or less")
    return Inputs(refs, templates, captions(refs, config), given_masks(refs))


_STATES = {"new": "no run yet", "unfinished": "an unfinished run", "finished": "a finished run"}


def confirm(ledger: Ledger, found: Found, force: bool) -> None:
    """`examine`'s decision again, under the folder's lock and before anything is written: another `gal run` may
    have started, finished or changed the run in between (while this one loaded its models)."""
    config = ledger.get("config")
    state = "new" if config is None else "finished" if ledger.get("status") == "finished" else "unfinished"
    if state != found.state:
        raise GalError(f"--out {ledger.run_dir}: another gal process changed this folder while this command loaded "
                       f"its models (it found {_STATES[found.state]}, now {_STATES[state]}); nothing was changed: "
                       "run the command again to see what to do with it")
    if config is not None:
        check_same_config(config, found.cfg, force, quiet=True)


def prepare(ledger: Ledger, found: Found, parts, force: bool) -> None:
    """The run's folder made ready by the main process, holding its lock, before anything else happens in it:
    `examine`'s decision confirmed, a new run's inputs copied in and recorded, the files a resume reads checked."""
    import numpy as np

    cfg = found.cfg
    confirm(ledger, found, force)  # what was decided about the folder, decided again
    if found.state == "new":
        anchors = make_anchors(found.inputs.templates, cfg.subject, cfg.subject_plain)
        warn_about_inputs(cfg, found.inputs.references, anchors, parts.pipe.tokenizer, parts.resolution)
        start(ledger, cfg, found.inputs)
    if cfg.added == "composite" or cfg.masked_loss is not None:
        keep_masks(ledger, cfg)  # before a changed config is recorded: a refused mask leaves the run as it was
    if found.state != "new" and force:
        ledger.set("config", result_dict(cfg))
    keep_class_images(ledger, cfg)  # a resumed run of an earlier gal copies them now
    if ledger.reference_features().size == 0:  # for the report's map of each round
        images = [run_folder.read_image(ledger.run_dir / t.path, "reference") for t in ledger.added(0)]
        ledger.set_reference_features([f.numpy().astype(np.float16).tobytes() for f in parts.scorer.image_features(images)])
    check_files(ledger)
    ledger.set("status", "running")


def captions(refs: list[ReferenceImage], cfg: Config) -> list[str]:
    """The non-SoI caption of each reference: its sidecar .txt, else the first --non-soi text."""
    out = []
    for ref in refs:
        caption = ref.caption or (cfg.non_soi[0] if cfg.non_soi else None)
        if caption is None:
            raise GalError(f"--non-soi: missing; the oracle (Eq. 8) needs the non-subject content of the references, "
                           f"e.g. --non-soi 'a cat on the stairs', or a caption file {ref.source.with_suffix('.txt').name} "
                           "beside the image")
        out.append(caption)
    return out


def start(ledger: Ledger, cfg: Config, inputs: Inputs) -> None:
    """Copy the references (and the user's class images) into the run as RGB PNG, and record config, anchors and
    T in one transaction: what a resume trains on is the run's own copy, whatever happens to the folders."""
    anchors = make_anchors(inputs.templates, cfg.subject, cfg.subject_plain)
    records = []
    for i, (ref, caption, mask) in enumerate(zip(inputs.references, inputs.captions, inputs.masks)):
        path = run_folder.reference(i, ref.source)
        write_png(ledger.run_dir / path, ref.image)
        if mask is not None:  # the run's own copy too: composites read it (`composite.subjects`)
            write_png(run_folder.mask(ledger.run_dir / path), run_folder.grey(mask))
        records.append(Reference(path, reference_prompt(caption, cfg.subject, cfg.subject_plain, cfg.kind),
                                 1.0, 0, None, caption))
    write_text(ledger.run_dir / run_folder.CONFIG, "# the resolved config of this run\n"
               + yaml.safe_dump(to_dict(cfg), sort_keys=False))
    ledger.start(result_dict(cfg), anchors, records, _copy_class_images(ledger.run_dir, inputs.class_images))


def keep_masks(ledger: Ledger, cfg: Config) -> None:
    """A run that adds composites or trains with masked loss reads its references' masks from its own copies, each
    checked as a new run checks the user's (`run_folder.read_mask`). One that has none (started by an earlier gal, or
    turned to `--added composite` or `--masked-loss` with --force) copies them now from --references, each where the
    image there is still the one the run copied; else one clear line."""
    import numpy as np

    run_dir = ledger.run_dir
    missing = [t for t in ledger.added(0) if not run_folder.mask(run_dir / t.path).exists()]
    folder = Path(cfg.references) if cfg.references else None
    sources = read_references(folder) if missing and folder is not None and folder.is_dir() else []
    by_copy = {run_folder.reference(i, r.source): (r, mask)
               for i, (r, mask) in enumerate(zip(sources, given_masks(sources)))}
    for t in missing:
        source, mask = by_copy.get(t.path, (None, None))
        if mask is None or not np.array_equal(np.asarray(source.image),
                                              np.asarray(run_folder.read_image(run_dir / t.path, "reference"))):
            raise GalError(f"{run_dir / t.path}: no mask in the run, and none for this image in --references {folder}; "
                           f"{'--added composite' if cfg.added == 'composite' else '--masked-loss'} needs one per reference: "
                           f"expected {run_folder.mask(run_dir / t.path)} (white on the subject)")
        write_png(run_folder.mask(run_dir / t.path), run_folder.grey(mask))
    for t in ledger.added(0):
        run_folder.read_mask(run_dir / t.path)


def _copy_class_images(run_dir: Path, images: list[ReferenceImage]) -> list[tuple[int, int, str]]:
    rows = []
    for i, image in enumerate(images):
        path = run_folder.class_image(i, given=True)
        write_png(run_dir / path, image.image)
        rows.append((i, -1, path))  # seed -1: given by the user, not generated
    return rows


def keep_class_images(ledger: Ledger, cfg: Config) -> None:
    """A run started by an earlier gal read --class-images from the user's folder on every resume: copy them into
    the run now, so that a later change of that folder cannot change the run."""
    if cfg.class_images and cfg.prior and not ledger.class_images():
        ledger.add_class_images(_copy_class_images(ledger.run_dir, read_references(cfg.class_images, "--class-images")))


def warn_about_inputs(cfg: Config, refs: list[ReferenceImage], anchors: list[Anchor], tokenizer, resolution: int) -> None:
    """Things that work but probably not as the user meant: small photos, truncated prompts, a placeholder
    that is already a word of the text encoder."""
    for ref in refs:
        if min(ref.image.size) < resolution // 2:
            warn(f"--references {ref.source.name}: {ref.image.size[0]}x{ref.image.size[1]} is much smaller than the "
                 f"training resolution {resolution}; it will be upscaled and look soft")
    limit = tokenizer.model_max_length
    prompts = [a.prompt for a in anchors] + [reference_prompt(c, cfg.subject, cfg.subject_plain, cfg.kind)
                                             for c in captions(refs, cfg)]
    long = [p for p in dict.fromkeys(prompts) if len(tokenizer(p).input_ids) > limit]
    if long:
        warn(f"{len(long)} prompt(s) exceed the text encoder's {limit} tokens and will be truncated, e.g. '{long[0][:60]}...'")
    vocab = tokenizer.get_vocab()
    for token in _placeholders(cfg.subject):
        inner = token.strip("<>").lower()
        if f"{inner}</w>" in vocab:
            warn(f"--subject: the placeholder {token} is the existing word '{inner}' of the text encoder; its old "
                 f"meaning will mix with your subject (a made-up string such as <{inner}-x7> avoids this)")


def _placeholders(subject: str) -> list[str]:
    return re.findall(r"<[^<>\s]+>", subject)


def existing_config(run_dir: Path) -> dict | None:
    if not Ledger.exists(run_dir):
        return None
    ledger = Ledger(run_dir)
    try:
        return ledger.get("config")
    finally:
        ledger.close()


def check_new_folder(run_dir: Path, reads: dict[str, list]) -> None:
    """A new run's --out: a folder of its own (`storage.check_output`: on none of the inputs in `reads`), empty, or one
    that a run killed before its first record left."""
    if Ledger.exists(run_dir):
        if (run_dir / run_folder.ROUNDS).exists():  # rounds without a record: an emptied ledger, not a run to start over
            raise GalError(Ledger.damaged(run_dir, "it holds no record of the run"))
        return  # a run killed before its first transaction: start it again
    check_output("--out", run_dir, reads, folder=True)
    if run_dir.is_dir() and any(p.name not in {".lock", Ledger.FILE} for p in run_dir.iterdir()):
        raise GalError(f"--out {run_dir}: folder exists and holds no gal run; expected a new or empty folder, "
                       "or the folder of an unfinished run to resume")


def changed_keys(stored: dict, cfg: Config) -> list[str]:
    now = result_dict(cfg)
    # A ledger from an earlier version: its values read as today's (balance true -> "paper"), keys it
    # lacks at their defaults (settled as today: the query's steps are --steps), keys unknown today kept as
    # they are (so they count as changed).
    known = set(valid_keys())
    stored = {**result_dict(stored_config(stored)), **{k: v for k, v in stored.items() if k not in known}}
    return [k for k in sorted(set(stored) | set(now)) if stored.get(k) != now.get(k)]


def check_same_config(stored: dict, cfg: Config, force: bool, quiet: bool = False) -> None:
    """A resumed run must be the run that was started, unless the user says otherwise."""
    changed = changed_keys(stored, cfg)
    if changed and not force:
        now = result_dict(cfg)
        details = "; ".join(f"{k}: {stored.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
        raise GalError(f"--out {cfg.out}: this run was started with a different config ({details}); "
                       "resume it with the same settings, choose a new --out, or pass --force to go on with the new one")
    if changed and not quiet:
        warn(f"--force: going on with a changed config ({', '.join(changed)}); earlier rounds keep their old results")


def check_files(ledger: Ledger) -> None:
    """The files the ledger names, before a run resumes: a sample of a round still open is made again (its seed
    is on record: the same image); a reference or class image that training needs is named, with why it cannot
    come back by itself. (A missing checkpoint is trained again by the loop; a closed round's samples that no
    one trains on only show as "missing" in the report.)"""
    run_dir = ledger.run_dir
    for t in ledger.training_set(len(ledger.rounds()) + 1):
        if not (run_dir / t.path).exists():
            what = ("the copy of a reference image the run trains on" if t.added_in_round == 0 else
                    f"an image added to the training set in round {t.added_in_round}, made by that round's weights")
            raise GalError(f"{run_dir / t.path}: missing; it is {what}; expected it back (restore it from a copy "
                           "of the run folder), or start a new run with another --out")
        run_folder.read_image(run_dir / t.path, "reference" if t.added_in_round == 0 else "added image")  # damaged
    for _, _, path in ledger.class_images():
        if not (run_dir / path).exists():
            raise GalError(f"{run_dir / path}: missing; it is a class image of prior preservation the fine-tunes "
                           "train on; expected it back (restore it from a copy of the run folder)")
        run_folder.read_image(run_dir / path, "class image")
    for r in ledger.rounds():
        if r["closed"]:
            continue
        if r["checkpoint"] and (run_dir / r["checkpoint"]).is_dir():
            run_folder.check_weights(run_dir / r["checkpoint"], r["round"])
        gone = [(s.anchor_idx, s.j) for s in ledger.samples(r["round"]) if not (run_dir / s.path).exists()]
        if gone:
            warn(f"{run_dir}: {len(gone)} sample(s) of round {r['round']} missing; making them again "
                 "(their seeds are on record: the same images)")
            ledger.forget_samples(r["round"], gone)
