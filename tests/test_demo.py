"""`gal demo`'s inputs come from the miniature world; `--base miniature` names the bundled model."""

import dataclasses

import pytest

from gal.cli import main
from gal.locations import bundled
from gal.miniature.inputs import inputs


def test_demo_inputs_for_a_held_out_style(tmp_path):
    fields, prompts = inputs(tmp_path, "mosaic")
    assert fields["subject"] == "in <mosaic> style" and fields["kind"] == "style"
    refs = sorted(p.name for p in (tmp_path / "references").iterdir())
    assert refs == ["mosaic-0.png", "mosaic-0.txt"]
    assert (tmp_path / "references" / "mosaic-0.txt").read_text().strip() == "a red circle on grass"
    assert len((tmp_path / "anchors.txt").read_text().splitlines()) == 18
    assert len(prompts.read_text().splitlines()) == 20


def test_miniature_names_the_bundled_model_or_says_it_is_missing(tiny, tmp_path, capsys):
    argv = ["run", "--base", "miniature", "--scorer", str(tiny / "clip"), "--references", str(tiny / "references"),
            "--subject", "a <sks> ball", "--non-soi", "a ball", "--out", str(tmp_path / "run"), "--rounds", "1",
            "--train-steps", "1", "--m", "2", "--k", "1", "--no-prior", "--steps", "2"]
    if bundled() is None:
        assert main(argv) == 2
        assert "bundled miniature model is not in this installation" in capsys.readouterr().err
    else:
        assert main(argv[:4] + ["miniature"] + argv[5:]) == 0


@pytest.mark.slow
def test_demo_runs_end_to_end_through_the_python_api(tiny, tmp_path, capsys):
    """`make demo`'s code path (its run's config, gal.run, then evaluate, show and report) on tiny random models in
    place of the bundled ones, with few steps."""
    import gal
    from gal import demo

    out = tmp_path / "run"
    cfg, test_prompts = demo.demo_config(out, "mosaic")
    assert (cfg.base, cfg.scorer, cfg.strategy, cfg.kind) == ("miniature", "miniature", "uncertainty", "style")
    gal.run(dataclasses.replace(cfg, base=str(tiny / "pipeline"), scorer=str(tiny / "clip"), steps=3, train_steps=10))
    demo.evaluate_and_report(out, test_prompts)
    printed = capsys.readouterr().out
    assert "TXT-ALN" in printed and "keep: round" in printed and (out / "report.html").exists()


def test_demo_without_the_bundled_weights_says_how_to_make_them(tmp_path, monkeypatch, capsys):
    import gal.locations

    monkeypatch.setattr(gal.locations, "bundled", lambda: None)
    assert main(["demo", "--out", str(tmp_path / "run")]) == 2
    assert "gal miniature train OUT" in capsys.readouterr().err and not (tmp_path / "run").exists()
