"""`gal run --added composite` (gal/composite.py): the chosen directions' added images made from the references'
subject and the base model's own pictures, the object default where every reference has a mask."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gal import composite, run_folder
from gal.cli import main
from gal.ledger import Ledger

from conftest import one_line_error, run_args

ANCHORS = "{} in a workshop\n{} in a museum\n{} on a boat\n{} in dotted style\n{} in a garden in striped style\n"


def masked_references(tiny, folder, n=3, size=48):
    """The tiny references with their masks beside them (the disc each is drawn with), as a user draws them."""
    shutil.copytree(tiny / "references", folder)
    for i in range(n):
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).ellipse([size // 4 + 2 * i, size // 4, 3 * size // 4, 3 * size // 4], fill=255)
        mask.save(folder / f"ref{i}.mask.png")
    return folder


def test_masked_object_references_add_composites_at_weight_1_by_default(tiny, tmp_path, capsys):
    """Every reference has a mask: `gal run` settles on composites at weight 1 (config.yaml says so), copies the
    masks into the run, and each chosen direction adds one new file, not one of its samples. Its subject's pixels
    are the reference's, cropped as training crops it, on every anchor: where it names a style, the base model has
    redrawn what surrounds them, never them. Without masks the same command adds the paper's samples at Δ."""
    refs, anchors = masked_references(tiny, tmp_path / "refs"), tmp_path / "anchors.txt"
    anchors.write_text(ANCHORS)
    run = tmp_path / "run"
    args = run_args(tiny, run, "--rounds", "2", "--anchors", str(anchors), "--strategy", "random", "--k", "5")
    args[args.index("--references") + 1] = str(refs)
    assert main(args) == 0
    assert "added images: composites" in capsys.readouterr().out
    config = (run / "config.yaml").read_text()
    assert "added: composite" in config and "balance: 'off'" in config
    ledger = Ledger(run, read_only=True)
    try:
        references, added = ledger.added(0), ledger.added(1)
        samples = {s.path for s in ledger.samples(1)}
        templates = {a.idx: a.template for a in ledger.anchors()}
    finally:
        ledger.close()
    assert len(added) == 5 and all(t.weight == 1.0 for t in added)
    assert all(t.path.startswith("rounds/1/added/") and t.path not in samples for t in added)
    assert all(run_folder.mask(run / t.path).exists() for t in references)
    size = Image.open(run / added[0].path).size[0]
    subjects = [composite.cutout(Image.open(refs / f"ref{i}.png").convert("RGB"),
                                 np.asarray(Image.open(refs / f"ref{i}.mask.png"), dtype=np.float32) / 255, size)
                for i in range(3)]
    for t in added:
        image = np.asarray(Image.open(run / t.path).convert("RGB"))
        # the subject of one of the references, pasted where its mask is (reference j mod their number)
        kept = [np.array_equal(image[s.mask], s.pixels[s.mask]) for s in subjects]
        assert any(kept), (templates[t.anchor_idx], kept)



def test_a_composite_run_that_eq_10_ends_adds_nothing_and_finishes(tiny, tmp_path):
    refs, anchors = masked_references(tiny, tmp_path / "refs"), tmp_path / "anchors.txt"
    anchors.write_text(ANCHORS)
    run = tmp_path / "run"
    args = run_args(tiny, run, "--rounds", "3", "--anchors", str(anchors), "--k", "5")  # fewer than 5 open: Eq. 10
    args[args.index("--references") + 1] = str(refs)
    assert main(args) == 0
    ledger = Ledger(run, read_only=True)
    try:
        assert ledger.get("config")["added"] == "composite" and ledger.get("status") == "finished"
        assert ledger.round(1)["stop_reason"].startswith("Eq. 10") and not ledger.added(1)
    finally:
        ledger.close()


@pytest.mark.parametrize("masked, extra, added, balance", [
    (True, {}, "composite", "off"),
    (True, {"balance": "separate"}, "composite", "separate"),
    (True, {"balance": "paper"}, "samples", "paper"),  # the paper's scheme asked for by name: the paper's images
    (True, {"kind": "style", "subject": "in <sks> style"}, "samples", "paper"),  # a style has no region to paste
    (True, {"strategy": "human"}, "samples", "paper"),  # a person picks the images
    (False, {}, "samples", "paper"),
])
def test_what_is_added_by_default_follows_the_references_masks(tiny, tmp_path, masked, extra, added, balance):
    """Left open, `--added` and `--balance` are settled by a new run's inputs (`preflight.examine`, before any model
    loads): composites at weight 1 where every reference of an object has a mask, else the paper's samples at Δ."""
    from gal.config import Config
    from gal.preflight import examine

    refs = masked_references(tiny, tmp_path / "refs") if masked else tiny / "references"
    config = Config(**{"references": str(refs), "subject": "a <sks> ball", "base": str(tiny / "pipeline"),
                       "scorer": str(tiny / "clip"), "non_soi": ["a ball on grass"], "out": str(tmp_path / "run"),
                       **extra})
    found = examine(config)
    assert (found.cfg.added, found.cfg.balance) == (added, balance)
    assert (config.added, config.balance) == (None, extra.get("balance"))  # the caller's config is left as it was


def test_composite_steps_keep_the_subject_and_clear_round_it():
    """paste puts the subject's pixels where its mask is and leaves the rest; clear fills the subject's outline (holes
    included) grown by N pixels from the picture around it, so another object there is gone; a large picture is
    cleared the same way at a smaller size."""
    rng = np.random.default_rng(0)
    for side in (32, 200):
        yy, xx = np.mgrid[:side, :side]
        r = np.hypot(yy - side / 2, xx - side / 2)
        ring = (r < side / 4) & (r > side / 8)  # a ring: its hole is part of its outline
        subject = composite.Subject(rng.integers(0, 255, (side, side, 3), dtype=np.uint8), ring)
        picture = np.full((side, side, 3), 200, np.uint8)
        picture[r < side / 3] = (250, 250, 0)  # another object, larger than the subject
        plain = composite.paste(picture, subject)
        assert np.array_equal(plain[ring], subject.pixels[ring]) and np.array_equal(plain[~ring], picture[~ring])
        grow = round(composite.CLEAR * side)
        region = composite.grow(composite.outline(ring), grow)
        assert composite.outline(ring)[side // 2, side // 2] and not ring[side // 2, side // 2]  # the hole
        cleared = composite.paste(picture, subject, grow)
        assert np.array_equal(cleared[ring], subject.pixels[ring])
        assert np.array_equal(cleared[~region], picture[~region])  # outside the cleared region: untouched
        hole = composite.outline(ring) & ~ring
        assert np.abs(cleared[hole].astype(int) - 200).max() < np.abs(plain[hole].astype(int) - 200).min()


@pytest.mark.parametrize("extra, expected", [
    (["--kind", "style", "--subject", "in <sks> style"], "--added composite: not with --kind style"),
    (["--method", "full"], "--added composite: not with --method full"),
    (["--pick", "kept"], "--added composite: not with --pick kept"),
])
def test_composites_with_what_they_cannot_go_with_are_refused_in_one_line(tiny, tmp_path, capsys, extra, expected):
    run = tmp_path / "run"
    assert main(run_args(tiny, run, "--added", "composite", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gal: error: {expected}") and "\n" not in err and not run.exists()


def test_composites_without_a_mask_for_every_reference_are_refused_before_anything_is_written(tiny, tmp_path, capsys):
    refs = masked_references(tiny, tmp_path / "refs")
    (refs / "ref1.mask.png").unlink()
    run = tmp_path / "run"
    args = run_args(tiny, run, "--added", "composite")
    args[args.index("--references") + 1] = str(refs)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "ref1.png has no mask; expected ref1.mask.png beside it" in err and "\n" not in err and not run.exists()
    Image.new("L", (20, 20)).save(refs / "ref1.mask.png")  # not the image's size
    assert main(args) == 2
    assert "ref1.mask.png: 20x20 pixels; expected the mask of ref1.png at its size, 48x48" in capsys.readouterr().err


def test_masked_loss_needs_every_references_mask_and_records_its_weight(tiny, tmp_path, capsys):
    """`--masked-loss` without a mask for every reference is one line naming the first that has none, before anything
    is written; with masks, the run records the weight outside the subject (`--masked-loss` alone: 0) and keeps its
    own copy of each mask, which a resume trains on."""
    run = tmp_path / "run"
    assert main(run_args(tiny, run, "--masked-loss")) == 2
    line = one_line_error(capsys)
    assert "--masked-loss:" in line and "ref0.png has no mask" in line
    assert not run.exists()
    args = run_args(tiny, run, "--rounds", "1", "--masked-loss", "0.25")
    args[args.index("--references") + 1] = str(masked_references(tiny, tmp_path / "refs"))
    assert main(args) == 0
    ledger = Ledger(run, read_only=True)
    try:
        assert ledger.get("config")["masked_loss"] == 0.25
        assert all(run_folder.mask(run / t.path).exists() for t in ledger.added(0))
    finally:
        ledger.close()
    # with every reference's mask, `gal eval` reads IMG-ALN against the subjects on grey too
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "1", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rounds"]
    assert 0 < row["img_aln_subject"] < 1 and row["img_aln_subject"] != row["img_aln"]


@pytest.mark.parametrize("added,balance,expected", [
    (None, None, ("composite", "off")), (None, "paper", ("samples", "paper")), (None, "separate", ("composite", "separate")),
    (None, "off", ("composite", "off")), ("samples", None, ("samples", "paper")), ("samples", "off", ("samples", "off")),
    ("composite", None, ("composite", "off")), ("composite", "paper", ("composite", "paper")),
    ("composite", "separate", ("composite", "separate"))])
def test_every_added_and_balance_pair_settles_as_the_readme_says(added, balance, expected):
    """The README's paragraph on `--added` and `--balance`, for an object whose every reference has a mask; without
    masks, left open, the paper's samples at Δ."""
    from gal.config import Config
    from gal.resolve import settle

    cfg = Config(references="r", subject="a <sks> cat", base="b", scorer="s", added=added, balance=balance)
    settled = settle(cfg, unmasked=[]).config
    assert (settled.added, settled.balance) == expected
    if added is None:
        unmasked = settle(cfg, unmasked=[Path("r/cat.png")]).config
        assert (unmasked.added, unmasked.balance) == ("samples", balance or "paper")
