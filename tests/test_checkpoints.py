"""`gal eval --base B --lora PATH ... --lora-scale X ...`: any trainer's checkpoints, at several scales, with where
they copy, the subject-only IMG-ALN and the one to keep."""

import json
import shutil

import pytest
from PIL import Image, ImageDraw

from gal.checkpoints import find
from gal.cli import main

from conftest import one_line_error, run_args


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """A finished 2-round run: two LoRAs, each in diffusers' layout and kohya's."""
    out = tmp_path_factory.mktemp("series") / "run"
    assert main(run_args(tiny, out, "--rounds", "2", "--strategy", "random")) == 0
    return out


@pytest.fixture(scope="module")
def layouts(trained, tmp_path_factory):
    """The run's LoRAs as trainers leave them: kohya's numbered files (and its final, unnumbered one), ai-toolkit's,
    the diffusers scripts' checkpoint-N/ folders."""
    root = tmp_path_factory.mktemp("layouts")
    rounds = [trained / "rounds" / str(r) / "checkpoint" for r in (1, 2)]
    kohya, toolkit, scripts = root / "kohya", root / "ai-toolkit", root / "diffusers"
    for folder in (kohya, toolkit, scripts):
        folder.mkdir()
    for step, ckpt in zip((10, 20), rounds):
        shutil.copy(ckpt / "lora_kohya.safetensors", kohya / f"cat-{step:06d}.safetensors")
        shutil.copy(ckpt / "pytorch_lora_weights.safetensors", toolkit / f"cat_{step * 100:09d}.safetensors")
        (scripts / f"checkpoint-{step * 100}").mkdir()
        shutil.copy(ckpt / "pytorch_lora_weights.safetensors", scripts / f"checkpoint-{step * 100}")
    shutil.copy(rounds[1] / "lora_kohya.safetensors", kohya / "cat.safetensors")  # the final one, unnumbered
    return {"kohya": kohya, "ai-toolkit": toolkit, "diffusers": scripts}


def eval_args(tiny, *extra):
    return ["eval", "--base", str(tiny / "pipeline"), "--scorer", str(tiny / "clip"), "--references",
            str(tiny / "references"), "--subject", "a <sks> ball", "--non-soi", "a ball on grass", "--anchors",
            str(tiny / "anchors6.txt"), "--steps", "2", "--n", "1", "--m", "2", *extra]


def test_the_layouts_are_found_in_step_order(layouts, trained):
    assert [(c.label, c.step) for c in find(layouts["kohya"])] == [("cat-000010", 10), ("cat-000020", 20), ("cat", None)]
    assert [c.step for c in find(layouts["ai-toolkit"])] == [1000, 2000]
    assert [c.label for c in find(layouts["diffusers"])] == ["checkpoint-1000", "checkpoint-2000"]
    assert [c.label for c in find(trained)] == ["round 1", "round 2"]
    assert [c.label for c in find(layouts["kohya"] / "cat-000010.safetensors")] == ["cat-000010"]


@pytest.mark.slow
def test_a_series_at_several_scales_with_where_it_copies_and_the_one_to_keep(layouts, tiny, tmp_path, capsys):
    report = tmp_path / "which.html"
    capsys.readouterr()
    assert main(eval_args(tiny, "--lora", str(layouts["kohya"]), "--lora-scale", "0.5", "1", "--json",
                          "--report", str(report))) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["rows"]
    assert [(r["checkpoint"], r["scale"]) for r in rows] == [(c, s) for c in ("cat-000010", "cat-000020", "cat")
                                                              for s in (0.5, 1.0)]
    for r in rows:
        assert {"lora", "scale", "txt_aln", "img_aln", "ovf"} <= set(r) and len(r["beta"]) == 6
        assert 0 <= r["copies"] <= 6 and set(r["validation"]) == {"txt_aln", "img_aln", "ovf", "images"}
    assert rows[0]["txt_aln"] != rows[1]["txt_aln"]  # half the LoRA is another model
    rec = result["recommended"]
    assert {"lora", "scale", "why"} <= set(rec) and (rec["lora"], rec["scale"]) in {(r["lora"], r["scale"]) for r in rows}
    assert "validation split" in rec["why"]
    page = report.read_text()
    assert "Which checkpoint" in page and page.count("<tr") >= 7 and "data:image/png;base64" in page


def test_a_kohya_file_scores_as_the_diffusers_folder_of_the_same_weights(layouts, trained, tiny, capsys):
    capsys.readouterr()
    assert main(eval_args(tiny, "--lora", str(layouts["kohya"] / "cat-000010.safetensors"),
                          "--lora", str(trained / "rounds" / "1" / "checkpoint"), "--json")) == 0
    kohya, folder = json.loads(capsys.readouterr().out)["rows"]
    for key in ("txt_aln", "img_aln"):
        assert kohya[key] == pytest.approx(folder[key], abs=2e-3)


def test_the_subject_region_has_its_own_img_aln(layouts, tiny, tmp_path, capsys):
    from fixtures.models import build_clipseg

    segmenter = build_clipseg(tmp_path / "clipseg")
    refs = tmp_path / "refs"
    shutil.copytree(tiny / "references", refs)
    first = sorted(refs.glob("*.png"))[0]
    mask = Image.new("L", Image.open(first).size, 0)
    ImageDraw.Draw(mask).ellipse([12, 12, 36, 36], fill=255)
    mask.save(first.with_name(first.stem + ".mask.png"))  # a user's mask of one reference (CLIPSeg's for the others)
    args = eval_args(tiny, "--lora", str(layouts["ai-toolkit"]), "--masked", "--segmenter", str(segmenter), "--json")
    args[args.index("--references") + 1] = str(refs)
    capsys.readouterr()
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert all(r["img_aln_masked"] != r["img_aln"] for r in rows)  # the subject's region, not the whole image


def test_bad_checkpoints_are_refused_in_one_line(layouts, trained, tiny, tmp_path, capsys):
    from fixtures.families import build_pipeline

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no checkpoints")
    cases = [(["--lora", str(empty)], "no LoRA checkpoints in this folder"),
             (["--lora", str(layouts["kohya"]), "--lora-scale", "3"], "--lora-scale 3.0: expected a number in (0, 2]"),
             (["--lora", str(layouts["kohya"]), "--lora-scale", "0"], "expected a number in (0, 2]"),
             (["--lora", str(tmp_path / "nope")], "not found")]
    xl = tmp_path / "xl"
    build_pipeline(xl, "tiny-sdxl")
    sdxl = eval_args(tiny, "--lora", str(layouts["diffusers"]))
    sdxl[sdxl.index("--base") + 1] = str(xl)
    for extra, words in cases:
        assert main(eval_args(tiny, *extra)) == 2
        assert words in one_line_error(capsys)
    assert main(sdxl) == 2  # an SD LoRA on an SDXL base
    assert "--lora" in one_line_error(capsys)
    other = tmp_path / "other-rank"
    assert main(run_args(tiny, other, *["--rounds", "1", "--strategy", "none", "--lora-rank", "2"])) == 0
    capsys.readouterr()
    mixed = tmp_path / "mixed"
    shutil.copytree(layouts["ai-toolkit"], mixed)
    shutil.copy(other / "rounds" / "1" / "checkpoint" / "pytorch_lora_weights.safetensors", mixed / "cat_000003000.safetensors")
    assert main(eval_args(tiny, "--lora", str(mixed))) == 2
    assert "rank 2" in one_line_error(capsys)
