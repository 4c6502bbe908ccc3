"""What a run starts from: the checks of its inputs and folder, and the first record in the ledger."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from gal.anchors import make_anchors
from gal.config import Config, make_config, resolved, result_dict, to_dict, valid_keys
from gal.errors import GalError
from gal.ledger import Anchor, Ledger, Reference
from gal.references import ReferenceImage, reference_prompt
from gal.storage import write_png, write_text


def warn(message: str) -> None:
    print(f"gal: warning: {message}", file=sys.stderr)


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


def start(ledger: Ledger, cfg: Config, refs: list[ReferenceImage], templates: dict[int, str],
          ref_captions: list[str]) -> None:
    """Copy the references into the run (as RGB PNG) and record config, anchors and T in one transaction."""
    anchors = make_anchors(templates, cfg.subject, cfg.subject_plain)
    records = []
    for i, (ref, caption) in enumerate(zip(refs, ref_captions)):
        path = f"references/{i:02d}-{ref.source.stem[:40]}.png"
        write_png(ledger.run_dir / path, ref.image)
        records.append(Reference(path, reference_prompt(caption, cfg.subject, cfg.subject_plain, cfg.kind),
                                 1.0, 0, None, caption))
    write_text(ledger.run_dir / "config.yaml", "# the resolved config of this run\n"
               + yaml.safe_dump(to_dict(cfg), sort_keys=False))
    ledger.start(result_dict(cfg), anchors, records)


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
    import re

    return re.findall(r"<[^<>\s]+>", subject)


def existing_config(run_dir: Path) -> dict | None:
    if not Ledger.exists(run_dir):
        return None
    ledger = Ledger(run_dir)
    try:
        return ledger.get("config")
    finally:
        ledger.close()


def check_new_folder(run_dir: Path) -> None:
    if Ledger.exists(run_dir):
        if (run_dir / "rounds").exists():  # rounds without a record: an emptied ledger, not a run to start over
            raise GalError(Ledger.damaged(run_dir, "it holds no record of the run"))
        return  # a run killed before its first transaction: start it again
    if run_dir.exists() and not run_dir.is_dir():
        raise GalError(f"--out {run_dir}: is a file; expected a folder for the run")
    if run_dir.is_dir() and any(p.name not in {".lock", Ledger.FILE} for p in run_dir.iterdir()):
        raise GalError(f"--out {run_dir}: folder exists and holds no gal run; expected a new or empty folder, "
                       "or the folder of an unfinished run to resume")


def changed_keys(stored: dict, cfg: Config) -> list[str]:
    now = result_dict(cfg)
    # A ledger from an earlier version: its values read as today's (balance true -> "paper"), keys it
    # lacks at their defaults (resolved as today: the query's steps are --steps), keys unknown today kept as
    # they are (so they count as changed).
    known = set(valid_keys())
    stored = {**result_dict(resolved(make_config({k: v for k, v in stored.items() if k in known}, source="ledger"))),
              **{k: v for k, v in stored.items() if k not in known}}
    return [k for k in sorted(set(stored) | set(now)) if stored.get(k) != now.get(k)]


def check_same_config(stored: dict, cfg: Config, force: bool) -> None:
    """A resumed run must be the run that was started, unless the user says otherwise."""
    changed = changed_keys(stored, cfg)
    if changed and not force:
        now = result_dict(cfg)
        details = "; ".join(f"{k}: {stored.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
        raise GalError(f"--out {cfg.out}: this run was started with a different config ({details}); "
                       "resume it with the same settings, choose a new --out, or pass --force to go on with the new one")
    if changed:
        warn(f"--force: going on with a changed config ({', '.join(changed)}); earlier rounds keep their old results")


def non_soi_texts(cfg: Config, ledger: Ledger) -> list[str]:
    """ē* of Eq. 8: the references' non-SoI captions (or, as in the authors' style code, their whole
    reference prompts in plain words)."""
    refs = ledger.added(0)
    if cfg.oracle == "reference-prompt":
        texts = [reference_prompt(r.caption, cfg.subject_plain, cfg.subject_plain, cfg.kind) for r in refs]
    else:
        texts = list(cfg.non_soi) + [r.caption for r in refs]
    return list(dict.fromkeys(t for t in texts if t))


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
    for _, _, path in ledger.class_images():
        if not (run_dir / path).exists():
            raise GalError(f"{run_dir / path}: missing; it is a class image of prior preservation the fine-tunes "
                           "train on; expected it back (restore it from a copy of the run folder)")
    for r in ledger.rounds():
        if r["closed"]:
            continue
        gone = [(s.anchor_idx, s.j) for s in ledger.samples(r["round"]) if not (run_dir / s.path).exists()]
        if gone:
            warn(f"{run_dir}: {len(gone)} sample(s) of round {r['round']} missing; making them again "
                 "(their seeds are on record: the same images)")
            ledger.forget_samples(r["round"], gone)
