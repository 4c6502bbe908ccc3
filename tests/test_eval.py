"""`gal eval`: the paper's TXT-ALN, IMG-ALN and OVF per round, computed once and kept in the ledger."""

import json

import pytest
from PIL import Image

from gal.cli import main
from gal.metrics import test_prompts as make_test_prompts


def test_the_papers_test_prompts():
    style = make_test_prompts("style", "in <sks> style", "in watercolor painting style")
    assert len(style) == 190
    assert style[0].prompt == "an F1 in <sks> style" and style[0].text == "an F1 in watercolor painting style"
    cat = make_test_prompts("object", "a <cute-cat> cat", "a cat")
    assert len(cat) == 20
    assert cat[1].prompt == "<cute-cat> cat swimming in a pool" and cat[1].text == "cat swimming in a pool"
    other = make_test_prompts("object", "a <sks> kite", "a kite")
    assert len(other) == 20 and other[1] == ("a <sks> kite in times square", "a kite in times square")


@pytest.fixture(scope="module")
def evaluated_run(finished_run, tmp_path_factory):
    """This module's copy of the finished run: its tests evaluate it, and the evaluations stay in its ledger."""
    return finished_run.copy(tmp_path_factory.mktemp("eval") / "run").folder


def test_eval_reports_three_metrics_per_round_recomputable_from_its_images(evaluated_run, tiny, capsys):
    from gal.score import ClipScorer

    capsys.readouterr()
    assert main(["eval", str(evaluated_run), "--n", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rounds"]
    assert [r["round"] for r in rows] == [1, 2]
    scorer = ClipScorer(str(tiny / "clip"))
    prompts = make_test_prompts("object", "a <sks> ball", "a ball")
    refs = scorer.image_features([Image.open(p).convert("RGB") for p in sorted((evaluated_run / "references").iterdir())])
    for r in rows:
        files = sorted((evaluated_run / r["folder"]).glob("*.png"))
        assert len(files) == r["images"] == 40
        f = scorer.image_features([Image.open(p).convert("RGB") for p in files])
        texts = [prompts[int(p.name[1:4])].text for p in files]
        s_a = (f * scorer.text_features(texts)).sum(-1)
        s_n = scorer.similarity(f, ["a ball on grass"]).max(1).values
        assert r["txt_aln"] == pytest.approx(s_a.mean().item(), abs=1e-5)
        assert r["img_aln"] == pytest.approx((f @ refs.T).mean().item(), abs=1e-5)
        assert r["ovf"] == pytest.approx((s_a <= s_n).float().mean().item())


@pytest.mark.slow
def test_eval_is_computed_once_and_shown(evaluated_run, capsys):
    assert main(["eval", str(evaluated_run), "--n", "2", "--round", "2", "--json"]) == 0
    first = capsys.readouterr().out
    folder = evaluated_run / json.loads(first)["rounds"][0]["folder"]
    stamp = [p.stat().st_mtime_ns for p in folder.glob("*.png")]
    assert main(["eval", str(evaluated_run), "--n", "2", "--round", "2", "--json"]) == 0
    assert capsys.readouterr().out == first
    assert [p.stat().st_mtime_ns for p in folder.glob("*.png")] == stamp
    assert main(["show", str(evaluated_run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rounds"][1]["evaluations"][0]["settings"]["n"] == 2
    # once every round is evaluated with the same settings, `gal show` names the round to keep
    from gal.keep import recommended_round

    assert main(["eval", str(evaluated_run), "--n", "2"]) == 0
    capsys.readouterr()
    assert main(["show", str(evaluated_run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)

    # chosen on the validation split (the anchors no round added an image for), not on the test prompts
    rows = [{**next(e for e in r["evaluations"] if e["settings"]["prompts"] == "validation"), "round": r["round"]}
            for r in summary["rounds"]]
    assert summary["recommended"]["round"] == recommended_round(rows)[0] and summary["recommended"]["split"] == "validation"
    assert len(rows[0]["settings"]["anchors"]) == 6 - 2 and rows[0]["images"] == 4 * 2
    assert main(["show", str(evaluated_run)]) == 0
    assert f"keep: round {summary['recommended']['round']} (rounds/" in capsys.readouterr().out
    # the same run through the Python API's read-only view
    import gal

    run = gal.open_run(evaluated_run)
    assert run.config.strategy == "random" and [r.number for r in run.rounds] == [1, 2]
    assert run.recommended["checkpoint"] == evaluated_run / summary["recommended"]["checkpoint"]
    first = run.rounds[0]
    assert first.checkpoint.is_dir() and len(first.directions) == 6 and all(len(d.samples) == 4 for d in first.directions)
    assert [d.index for d in run.selections[1]] == [a["index"] for a in summary["rounds"][0]["anchors"] if a["selected"]]
    assert all(a.path.exists() for a in first.added) and len(first.added) == 2
    assert gal.evaluate(evaluated_run, n=2) == rows_of(summary, "default")
    assert main(["eval", str(evaluated_run), "--round", "7"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def rows_of(summary: dict, prompts: str) -> list[dict]:
    return [{"round": r["round"], **{k: v for k, v in e.items() if k != "settings"}}
            for r in summary["rounds"] for e in r["evaluations"] if e["settings"]["prompts"] == prompts]


@pytest.mark.slow
def test_evaluations_never_write_over_each_other(evaluated_run, tmp_path, capsys):
    """Another seed, n, prompt file or LoRA scale: images of their own; the ledger's metrics and the files agree."""
    import gal

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("{} in a museum\n{} on the moon\n")
    runs = [gal.evaluate(evaluated_run, rounds=[1], **{"n": 1, **extra}) for extra in
            ({}, {"seed": 5}, {"n": 2}, {"prompts_file": str(prompts)}, {"lora_scale": 0.5}, {"split": "validation"})]
    folders = [r[0]["folder"] for r in runs]
    assert len(set(folders)) == len(folders)
    for (row,), folder in zip(runs, folders):
        assert len(list((evaluated_run / folder).glob("*.png"))) == row["images"]
    assert runs[0][0] != runs[4][0]  # the LoRA at half strength is another model
    # a prompt file that changed under the same name is refused, naming it, instead of reusing its results
    prompts.write_text("{} in a cave\n")
    capsys.readouterr()
    assert main(["eval", str(evaluated_run), "--round", "1", "--n", "1", "--prompts", str(prompts)]) == 2
    assert "changed since round 1 was evaluated" in capsys.readouterr().err
    assert main(["eval", str(evaluated_run), "--lora", str(evaluated_run)]) == 2
    assert "--lora" in capsys.readouterr().err
    assert main(["eval", str(evaluated_run), "--lora-scale", "3"]) == 2


@pytest.mark.slow
def test_eval_of_one_model_with_a_lora_and_a_second_image_model(evaluated_run, tiny, tmp_path, capsys):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    vit = tmp_path / "vit"
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=37)).save_pretrained(vit)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(vit)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("{} in a museum\n{} on the moon\n")
    capsys.readouterr()
    assert main(["eval", "--base", str(tiny / "pipeline"), "--lora", str(evaluated_run / "rounds" / "2" / "checkpoint"),
                 "--scorer", str(tiny / "clip"), "--references", str(tiny / "references"), "--subject", "a <sks> ball",
                 "--non-soi", "a ball on grass", "--prompts", str(prompts), "--n", "2", "--steps", "3",
                 "--image-model", str(vit), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rounds"]
    # the same images as the run's own evaluation of that round (the same seeds), the LoRA loaded instead of merged
    assert main(["eval", str(evaluated_run), "--round", "2", "--prompts", str(prompts), "--n", "2",
                 "--image-model", str(vit), "--json"]) == 0
    (own,) = json.loads(capsys.readouterr().out)["rounds"]
    assert row["images"] == own["images"] == 4 and row["ovf"] == own["ovf"]
    for metric in ("txt_aln", "img_aln", "img_aln_vit"):
        assert row[metric] == pytest.approx(own[metric], abs=1e-3), metric
    assert row["img_aln_vit"] != row["img_aln"]  # the second model's column is its own
