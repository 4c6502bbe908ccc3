"""`gal bench --suite ... --dry-run`: the paper's protocol as a plan, and a check of the user's data."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gal import suite
from gal.cli import add_config_flags, main
from gal.config import command_line, make_config
from gal.resolve import settle

from conftest import run_args


def test_paper_object_plan_counts_the_work():
    p = suite.plan("paper-object", Path("DATA"), Path("out"))
    assert len(p["concepts"]) == 10 and p["runs"] == 60
    # per concept: 1 baseline fine-tune + 5 rows x 4 rounds; a 4-round run queries 18, 15, 12 anchors x m=10
    assert p["fine_tunes"] == 10 * (1 + 5 * 4)
    assert p["images"]["query"] == 10 * 5 * (18 + 15 + 12) * 10
    assert p["images"]["evaluation"] == 10 * 20 * 4 * (1 + 5 * 4)


def test_paper_style_runs_follow_the_authors_settings():
    runs = suite.runs("paper-style", Path("DATA"), Path("out"))
    assert len(runs) == 36
    concept, row, cfg = runs[4]
    assert (concept, row) == ("cat", "Uncertainty + Balance")
    assert cfg.subject == "in watercolor painting style" and cfg.non_soi == ["A cat"]
    assert (cfg.train_steps, cfg.batch_size, cfg.lr, cfg.method, cfg.balance) == (500, 2, 5e-6, "full", "paper")
    assert settle(cfg).config.m == 10  # valid as it stands: the models are named, nothing is left to the machine


def test_a_config_as_flags_parses_back_to_itself():
    """`config.command_line` (the dry run's example command) and `gal run`'s parser agree."""
    for _, _, cfg in suite.runs("paper-object", Path("DATA"), Path("out"))[:6]:
        parser = argparse.ArgumentParser()
        add_config_flags(parser)
        assert make_config(vars(parser.parse_args(command_line(cfg)))) == cfg


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


@pytest.mark.slow
def test_miniature_bench_plumbing_on_tiny_models(tiny, tmp_path):
    """The comparison's machinery end to end (tiny random models, a barely trained judge): both controls (fewer steps,
    a lower LoRA scale), the exposure-matched baseline, a strategy row, a person's row (the simulated person's picks
    go through the review ledger), a pick that keeps the subject and the perfect-image diagnostics run (composites,
    an object's row, do not run for a style); every round has the judge's reading and the validation split's metrics;
    the table and plot are written."""
    from gal.miniature import bench, results
    from gal.miniature.judge import train_judge
    from gal.miniature.rows import BASELINE, EXPOSURE, FEWER, PERFECT, SCALED

    train_judge(tmp_path / "judge", steps=3, pool=300, log=lambda line: None)
    keys = ["fewer-steps", "lora-scale", "exposure", "uncertainty", "balance", "human", "pick-identity-off",
            "perfect3-off", "perfect18-separate", "composite"]
    # the bench on other models: here tiny ones, with few steps, on one subject
    bench.main(tmp_path / "b", settings=dict(bench.QUICK, subjects=["mosaic"], rounds=2, m=2),
               models={"base": str(tiny / "pipeline"), "scorer": str(tiny / "clip"), "steps": 3, "train_steps": 10},
               judge_dir=tmp_path / "judge", rows=keys, results=str(tmp_path / "results.md"),
               summary=str(tmp_path / "part.json"), log=lambda line: None)
    summary = json.loads((tmp_path / "part.json").read_text())
    rows = [r["row"] for r in summary["results"]]  # by key; "composite" pastes an object's subject: not for a style
    assert rows == ["dreambooth"] + ["fewer-steps"] * 4 + ["lora-scale"] * 3 + [
        "human", "uncertainty", "balance", "pick-identity-off", "perfect3-off", "perfect18-separate", "exposure"]
    # the frontier: 1/8 .. 3/4 of the 10 steps the test's models train, each a one-round DreamBooth run
    assert [r["train_steps"] for r in summary["results"] if r["row"] == FEWER] == [1, 2, 5, 8]
    # the scale control is round 1's LoRA turned down: the same checkpoint, other images
    scaled = [r for r in summary["results"] if r["row"] == SCALED]
    assert [r["scale"] for r in scaled] == [0.25, 0.5, 0.75] and all(len(r["rounds"]) == 1 for r in scaled)
    assert len({r["rounds"][0]["folder"] for r in scaled}) == 3
    assert all(len(r["rounds"]) == 1 for r in summary["results"] if r["row"] in (FEWER, EXPOSURE))
    assert all(r["rounds"] and all(0 <= x["kept"] <= 1 and 0 <= x["followed"] <= 1 for x in r["rounds"])
               for r in summary["results"])
    # round 1 is run once and shared: every GAL row starts from the same checkpoint and metrics
    run = tmp_path / "b" / "mosaic" / "seed0"
    assert (run / "round-1" / "rounds" / "1" / "checkpoint").is_dir()
    gal_rows = [r for r in summary["results"] if r["row"] not in (FEWER, SCALED, EXPOSURE)]
    assert gal_rows[0]["row"] == BASELINE
    first = {k: v for k, v in gal_rows[0]["rounds"][0].items() if k != "validation"}
    assert all({k: v for k, v in r["rounds"][0].items() if k != "validation"} == first for r in gal_rows)
    assert all(0 <= d["open_directions"] <= 1 for r in gal_rows[1:] for d in r["diversity"])
    assert all("validation" in x for r in gal_rows[1:] if r["row"] not in PERFECT for x in r["rounds"])
    # the diagnostics end after round 2, trained on the world's renders in place of the picks
    from gal.ledger import Ledger

    for key, count in (("perfect3-off", 3), ("perfect18-separate", 18)):
        ledger = Ledger(run / key)
        added = ledger.added(1)
        assert len(ledger.rounds()) == 2 and len(added) == count
        assert {t.weight for t in added} == ({1.0} if key.endswith("off") else {ledger.round(1)["openness"]})
        assert ledger.get("config")["balance"] == key.split("-")[1]
        ledger.close()
    perfect = next(r for r in summary["results"] if r["row"] == "perfect3-off")
    assert perfect["query"][0]["added"] == 3  # the judge read the added renders
    # the tables name the rows by their display names
    text = (tmp_path / "results.md").read_text()
    for line in ("| Baseline (DreamBooth) |", "| Human |", "| DreamBooth, exposure-matched |",
                 "| Uncertainty, identity pick − Uncertainty + Balance |", "## Which round to keep",
                 "## Round 2: the added images against perfect ones", "| Uncertainty, identity pick | weight 1 | style |",
                 "| mosaic | DreamBooth, fewer steps (0.5x) |"):
        assert line in text, line
    assert (tmp_path / "results-figure5.png").stat().st_size > 1000
    # a person's notes below the marker survive a rewrite; the table is rewritten, not appended
    (tmp_path / "results.md").write_text(text + "What I read in it.\n")
    results.write_results(summary, tmp_path / "results.md", "gal bench", "here")
    text = (tmp_path / "results.md").read_text()
    assert text.count("# Results on the miniature world") == 1 and "| mosaic | Human |" in text
    assert text.endswith(results.NOTES + "\nWhat I read in it.\n")


def test_bench_rows_are_named_by_key(tmp_path, capsys):
    """`--rows` takes row keys, checked before anything runs; the error lists them."""
    assert main(["bench", "--quick", "--rows", "balance,frontier", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--rows frontier: not part of this bench" in err and "fewer-steps, lora-scale, exposure, masked, masked-fewer-steps" in err
    assert not any(tmp_path.iterdir())


def test_frontier_is_the_upper_envelope_of_training_less(tmp_path):
    from gal.miniature import results as mb
    from gal.miniature.rows import BASELINE, FEWER

    # (IMG-ALN, TXT-ALN, OVF): the 0.15 point is beaten by the 0.2 one on both metrics and drops out
    points = [(0.1, 0.56, 0.0), (0.15, 0.50, 0.1), (0.2, 0.52, 0.0), (0.26, 0.42, 0.2)]
    assert mb.envelope(points) == [(0.1, 0.56, 0.0), (0.2, 0.52, 0.0), (0.26, 0.42, 0.2)]
    txt, ovf = mb.on_frontier(points, 0.23)
    assert txt == pytest.approx(0.47) and ovf == pytest.approx(0.1)
    assert mb.on_frontier(points, 0.05) == pytest.approx((0.56, 0.0))  # beyond the ends: the nearest end

    def result(row, img, txt, ovf, seed=0):
        return {"subject": "s", "kind": "style", "seed": seed, "row": row, "share": 1,
                "rounds": [{"round": 1, "img_aln": img, "txt_aln": txt, "ovf": ovf}]}
    summary = {"results": [result(BASELINE, 0.26, 0.42, 0.2), result(FEWER, 0.1, 0.56, 0.0),
                           result(FEWER, 0.2, 0.52, 0.0), result("GAL", 0.23, 0.50, 0.05)]}
    gal = [d for d in mb.distances(summary) if d["row"] == "GAL"]
    assert gal[0]["above"] == pytest.approx(0.03) and gal[0]["ovf_above"] == pytest.approx(-0.05)
    assert all(abs(d["above"]) < 1e-12 for d in mb.distances(summary) if d["row"] != "GAL")  # on the frontier
    # an earlier bench's rows join the table where this one lacks them, measured against this frontier; a summary
    # written before rows were keyed names them by their display names, read as keys
    earlier = {"settings": {"rows": ["random"]},  # a bench with the judge's metrics: today's rows
               "results": [result("GAL", 0.1, 0.1, 0.0), result("Random", 0.26, 0.40, 0.3)]}
    for e in earlier["results"]:
        e["rounds"][0].update(kept=0.5, followed=0.5)
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    merged = mb.merge_summaries(summary, mb.read_summary(tmp_path / "earlier.json"), "earlier.json")
    assert [e["row"] for e in merged["results"]][-1] == "random" and len(merged["results"]) == 5
    assert merged["settings"]["rows"] == ["random"]  # the tables name what either bench ran
    assert [d["above"] for d in mb.distances(merged) if d["row"] == "random"] == [pytest.approx(-0.02)]
    # a bench from before the rows were renamed (no judge's metrics): its Random had the weight Δ (a row of its own,
    # in no table), its oracle is Human + Balance, and its --rows named the fewer-steps control "frontier"
    older = {"settings": {"rows": ["frontier", "random", "oracle"]},
             "results": [result("Random", 0.26, 0.40, 0.3), result("Oracle + Balance", 0.2, 0.5, 0.0)]}
    (tmp_path / "older.json").write_text(json.dumps(older))
    merged = mb.merge_summaries(summary, mb.read_summary(tmp_path / "older.json"), "older.json")
    assert [e["row"] for e in merged["results"][4:]] == ["random-delta", "oracle"]
    assert merged["settings"]["rows"] == ["fewer-steps", "random", "oracle"]
    assert [e["row"] for e in mb.table(merged)] == ["dreambooth", "oracle"]


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_runs():
    from gal.miniature.results import interval

    rng = np.random.default_rng(1)
    few, many = rng.normal(0.03, 0.02, 6), rng.normal(0.03, 0.02, 60)
    for values in (few, many):
        mean, low, high = interval(values)
        assert low < mean < high and mean == pytest.approx(values.mean())
    assert interval(many)[2] - interval(many)[1] < interval(few)[2] - interval(few)[1]


def test_recommended_round_keeps_the_subject():
    from gal.keep import recommended_round

    rounds = [{"round": 1, "txt_aln": 0.42, "img_aln": 0.26}, {"round": 2, "txt_aln": 0.53, "img_aln": 0.22},
              {"round": 3, "txt_aln": 0.56, "img_aln": 0.15}]
    r, why = recommended_round(rounds)
    assert r == 2 and "round(s) 3" in why  # round 3 has the best TXT-ALN but lost 42% of the IMG-ALN
    assert recommended_round(rounds[:1])[0] == 1
    assert recommended_round(rounds, keep=0.5)[0] == 3


def test_both_controls_the_judges_reading_and_a_round_chosen_off_the_test_prompts():
    from gal.miniature import results as mb
    from gal.miniature.rows import BASELINE, FEWER, SCALED

    def result(row, rounds, **extra):
        return {"subject": "s", "kind": "object", "seed": 0, "row": row, "rounds": rounds, **extra}

    def r(n, img, txt, ovf=0.0, kept=0.5, followed=0.5, **extra):
        return {"round": n, "img_aln": img, "txt_aln": txt, "ovf": ovf, "kept": kept, "followed": followed,
                "faithful": 0.0, **extra}

    summary = {"results": [
        result(BASELINE, [r(1, 0.30, 0.40, kept=0.6, followed=0.2)], share=1.0),
        result(FEWER, [r(1, 0.10, 0.50, kept=0.1, followed=0.6)], share=0.25),
        result(SCALED, [r(1, 0.20, 0.52, kept=0.3, followed=0.6)], scale=0.5),  # beats training less at 0.2
        # round 2 looks best on the test prompts, round 3 on the validation split
        result("GAL", [r(1, 0.30, 0.40, validation=r(1, 0.3, 0.40)), r(2, 0.25, 0.48, validation=r(2, 0.2, 0.41)),
                       r(3, 0.26, 0.47, kept=0.5, followed=0.5, validation=r(3, 0.26, 0.45))])]}
    gal = {(d["row"], d["round"]): d["above"] for d in mb.distances(summary)}
    assert gal["GAL", 3] == pytest.approx(0.47 - 0.448)  # between the scale point and 1x: 0.52 - 0.12 * 0.6
    steps_only = {d["row"]: d["above"] for d in mb.distances(summary, control="steps")}
    assert steps_only["GAL"] == pytest.approx(0.47 - 0.42)  # fewer steps alone: a weaker control
    judged = {d["row"]: d["above"] for d in mb.distances(summary, space="judge")}
    assert judged["GAL"] == pytest.approx(0.5 - (0.6 - 0.4 * 2 / 3))  # on the envelope (0.3, 0.6)-(0.6, 0.2)
    assert mb.recommended_on("test")(summary["results"][-1])["round"] == 2
    assert mb.recommended_on("validation")(summary["results"][-1])["round"] == 3
    assert mb.round_two(summary["results"][0])["round"] == 1  # a run that stopped at round 1 keeps its model


@pytest.mark.slow
def test_composite_probe_pastes_the_references_subject_into_gals_directions(tiny, tmp_path):
    """The composite rows' player: of GAL's top-k directions by Ω (or every direction), the sample whose composite the
    scorer finds closest to its anchor has its file replaced by that composite (the references' subject pasted in by
    their masks, onto the sample or, cleared and restyled, onto the base model's image from the same seed: the steps
    of gal/composite.py, tested through `gal run` in test_composite.py); the other samples are left alone."""
    import shutil

    from gal import composite, strategy
    from gal.ledger import Ledger
    from gal.miniature import players, world

    run, anchors = tmp_path / "run", tmp_path / "anchors.txt"
    anchors.write_text("{} in a workshop\n{} in a museum\n{} on a boat\n{} in dotted style\n{} in the style of a mosaic\n"
                       "{} in a garden in striped style\n")
    assert main(run_args(tiny, run, "--rounds", "2", "--strategy", "human", "--anchors", str(anchors))) == 0  # waits
    ledger = Ledger(run)
    directions, samples, templates = ledger.directions(1), ledger.samples(1), {a.idx: a.template for a in ledger.anchors()}
    ledger.close()
    before = {s.path: np.asarray(Image.open(run / s.path).convert("RGB")) for s in samples}
    restyled = tmp_path / "restyled"
    shutil.copytree(run, restyled)
    subject = world.SUBJECTS["twotone_star"]
    picks = players.composite_picks(run, subject, 2, 2)
    top = {directions[i]["anchor_idx"] for i in strategy.top_k([d["entropy"] for d in directions], 2)}
    assert {a for a, _ in picks} == top and len(picks) == 2
    cutouts = [composite.Subject(*c) for c in world.cutouts(subject.name)]
    changed = set()
    for s in samples:
        now = np.asarray(Image.open(run / s.path).convert("RGB"))
        if (s.anchor_idx, s.j) in picks:
            assert np.array_equal(now, composite.paste(before[s.path], cutouts[s.j % len(cutouts)]))
            assert not np.array_equal(now, before[s.path])
            changed.add(s.path)
        else:
            assert np.array_equal(now, before[s.path])
    assert len(changed) == 2
    # every direction, on the base model's images cleared and restyled: the subject's pixels are the reference's
    # where the anchor names no style and redrawn where it names one; the rest is not the fine-tuned model's sample
    drawn = {True: 0, False: 0}
    picks = players.composite_picks(restyled, subject, 18, 2, on="restyle")
    assert {a for a, _ in picks} == {d["anchor_idx"] for d in directions}
    for anchor_idx, j in picks:
        s = next(s for s in samples if (s.anchor_idx, s.j) == (anchor_idx, j))
        now = np.asarray(Image.open(restyled / s.path).convert("RGB"))
        cut = cutouts[s.j % len(cutouts)]
        styled = composite.names_a_style(templates[anchor_idx])
        assert np.array_equal(now[cut.mask], cut.pixels[cut.mask]) != styled
        assert not np.array_equal(now, composite.paste(before[s.path], cut))
        drawn[styled] += 1
    assert drawn[True] and drawn[False], drawn
