"""`gal bench --suite ... --dry-run`: the paper's protocol as a plan, and a check of the user's data."""

import json

from PIL import Image

from gal import bench
from gal.cli import main


def test_paper_object_plan_counts_the_work():
    p = bench.plan("paper-object", bench.Path("DATA"), bench.Path("out"))
    assert len(p["concepts"]) == 10 and p["runs"] == 60
    # per concept: 1 baseline fine-tune + 5 rows x 4 rounds; a 4-round run queries 18, 15, 12 anchors x m=10
    assert p["fine_tunes"] == 10 * (1 + 5 * 4)
    assert p["images"]["query"] == 10 * 5 * (18 + 15 + 12) * 10
    assert p["images"]["evaluation"] == 10 * 20 * 4 * (1 + 5 * 4)


def test_paper_style_commands_follow_the_authors_settings():
    runs = bench.commands("paper-style", bench.Path("DATA"), bench.Path("out"))
    assert len(runs) == 36
    concept, row, argv = runs[4]
    assert (concept, row) == ("cat", "Uncertainty + Balance")
    value = lambda flag: argv[argv.index(flag) + 1]
    assert value("--subject") == "in watercolor painting style" and value("--non-soi") == "A cat"
    assert value("--train-steps") == "500" and value("--batch-size") == "2" and value("--lr") == "5e-6"
    assert "--balance" in argv


def test_dry_run_checks_a_data_folder(tmp_path, capsys):
    for c in ("cat", "person", "laptop", "watermelon", "3dflower"):
        (tmp_path / c).mkdir()
        Image.new("RGB", (64, 64)).save(tmp_path / c / "original.jpg")
    (tmp_path / "face").mkdir()
    assert main(["bench", "--suite", "paper-style", "--dry-run", "--data", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "36 runs" in out and "face: no images found" in out and "1 problem(s)" in out
    Image.new("RGB", (64, 64)).save(tmp_path / "face" / "original.jpg")
    assert main(["bench", "--suite", "paper-style", "--dry-run", "--data", str(tmp_path)]) == 0
    assert "ready" in capsys.readouterr().out


def test_miniature_bench_plumbing_on_tiny_models(tiny, tmp_path, capsys):
    """The comparison's machinery end to end (tiny random models, a barely trained judge): every
    strategy row runs, the oracle's picks go through the review ledger, the table and plot are written."""
    from gal.miniature import bench as mb
    from gal.miniature.judge import train_judge

    train_judge(tmp_path / "judge", steps=3, pool=300, log=lambda line: None)
    settings = dict(mb.QUICK, subjects=["mosaic"], rounds=2, m=2)
    mb.QUICK, saved = settings, mb.QUICK
    try:
        assert main(["bench", "--quick", "--out", str(tmp_path / "b"), "--base", str(tiny / "pipeline"),
                     "--scorer", str(tiny / "clip"), "--judge", str(tmp_path / "judge"),
                     "--results", str(tmp_path / "results.md")]) == 0
    finally:
        mb.QUICK = saved
    summary = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert [r["row"] for r in summary["results"]] == [r for r, _, _ in mb.ROWS]
    assert all(r["rounds"] for r in summary["results"])
    # round 1 is run once and shared: every row starts from the same checkpoint and metrics
    assert (tmp_path / "b" / "mosaic" / "seed0" / "round-1" / "rounds" / "1" / "checkpoint").is_dir()
    assert len({json.dumps(r["rounds"][0], sort_keys=True) for r in summary["results"]}) == 1
    text = (tmp_path / "results.md").read_text()
    assert "| Baseline (DreamBooth) |" in text and "| Oracle + Balance |" in text
    assert (tmp_path / "results-figure5.png").stat().st_size > 1000
    # a person's notes below the marker survive a rewrite; the table is rewritten, not appended
    (tmp_path / "results.md").write_text(text + "What I read in it.\n")
    mb.write_results(summary, tmp_path / "results.md", "gal bench", "here")
    text = (tmp_path / "results.md").read_text()
    assert text.count("\n| Oracle + Balance |") == 1 and "| mosaic | Oracle + Balance |" in text and text.endswith(mb.NOTES + "\nWhat I read in it.\n")
