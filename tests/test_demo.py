"""`gal demo`'s inputs come from the miniature world; `--base miniature` names the bundled model."""

from gal.cli import main
from gal.locations import bundled
from gal.miniature.inputs import prepare


def test_demo_inputs_for_a_held_out_style(tmp_path):
    flags, prompts = prepare(tmp_path, "mosaic")
    options = dict(zip(flags[::2], flags[1::2]))
    assert options["--subject"] == "in <mosaic> style" and options["--kind"] == "style"
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


def test_demo_runs_end_to_end_through_the_python_api(tiny, tmp_path, capsys):
    """`make demo`'s code path (run, evaluate, show, report) on tiny random models (`gal demo`'s hidden --base and
    --scorer, as `gal bench`'s)."""
    assert main(["demo", "--out", str(tmp_path / "run"), "--base", str(tiny / "pipeline"),
                 "--scorer", str(tiny / "clip")]) == 0
    out = capsys.readouterr().out
    assert "TXT-ALN" in out and "keep: round" in out and (tmp_path / "run" / "report.html").exists()


def test_demo_without_the_bundled_weights_says_how_to_make_them(tmp_path, monkeypatch, capsys):
    import gal.locations

    monkeypatch.setattr(gal.locations, "bundled", lambda: None)
    assert main(["demo", "--out", str(tmp_path / "run")]) == 2
    assert "gal miniature train OUT" in capsys.readouterr().err and not (tmp_path / "run").exists()
