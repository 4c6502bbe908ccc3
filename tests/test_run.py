"""`gal run` end to end on tiny random models loaded from disk like real checkpoints."""

import sqlite3

import numpy as np
import pytest
import torch

from gal.cli import main

from conftest import check_against_equations, killed_at, ledger_samples, run_args, show_json


def test_three_rounds_record_every_number_and_match_eq_6_to_10(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny, out, "--rounds", "3", "--strategy", "random")) == 0
    summary = show_json(out, capsys)
    assert summary["status"] == "finished"
    assert [r["round"] for r in summary["rounds"]] == [1, 2, 3]
    assert summary["rounds"][-1]["stop_reason"].startswith("round budget spent")
    assert summary["result"] == "rounds/3/checkpoint"
    check_against_equations(summary)
    for r in summary["rounds"]:
        assert (out / r["checkpoint"] / "pytorch_lora_weights.safetensors").is_file()
        for a in r["anchors"]:
            for s in a["samples"]:
                assert (out / s["path"]).is_file()
    # the table view prints one line per round
    assert main(["show", str(out)]) == 0
    table = capsys.readouterr().out
    assert "random + balance" in table and len([l for l in table.splitlines() if l.strip()[:1].isdigit()]) == 3


@pytest.mark.slow
def test_uncertainty_run_follows_its_recorded_scores(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny, out, "--rounds", "3", "--m", "6", "--k", "1", "--no-balance")) == 0
    summary = show_json(out, capsys)
    check_against_equations(summary)
    assert any(a["selected"] for r in summary["rounds"] for a in r["anchors"]), "no direction was chosen: nothing tested"


def test_lora_of_a_round_loads_in_plain_diffusers(tiny, tmp_path):
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "run"
    assert main(run_args(tiny, out, "--rounds", "1", "--train-steps", "6", "--lr", "1e-2")) == 0
    pipe = StableDiffusionPipeline.from_pretrained(tiny / "pipeline", safety_checker=None)
    kwargs = dict(prompt="a <sks> ball in a museum", num_inference_steps=3, height=32, width=32, output_type="np")
    base = pipe(generator=torch.Generator().manual_seed(1), **kwargs).images
    pipe.load_lora_weights(out / "rounds" / "1" / "checkpoint")
    tuned = pipe(generator=torch.Generator().manual_seed(1), **kwargs).images
    assert tuned.shape == (1, 32, 32, 3) and np.isfinite(tuned).all()
    assert np.abs(tuned - base).max() > 1e-4  # the LoRA changed the model
    # the kohya-layout copy (for AUTOMATIC1111 / ComfyUI) holds the same weights
    kohya = StableDiffusionPipeline.from_pretrained(tiny / "pipeline", safety_checker=None)
    kohya.load_lora_weights(out / "rounds" / "1" / "checkpoint", weight_name="lora_kohya.safetensors")
    same = kohya(generator=torch.Generator().manual_seed(1), **kwargs).images
    assert np.abs(same - tuned).max() < 1e-5


def test_full_fine_tune_writes_pipeline_folders(tiny, tmp_path):
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "run"
    assert main(run_args(tiny, out, "--rounds", "2", "--method", "full", "--lr", "1e-3", "--strategy", "clip")) == 0
    base = StableDiffusionPipeline.from_pretrained(tiny / "pipeline", safety_checker=None)
    for r in (1, 2):
        pipe = StableDiffusionPipeline.from_pretrained(out / "rounds" / str(r) / "checkpoint", safety_checker=None)
        changed = [not torch.equal(a, b) for a, b in zip(pipe.unet.parameters(), base.unet.parameters())]
        assert any(changed)
        assert all(torch.equal(a, b) for a, b in zip(pipe.vae.parameters(), base.vae.parameters()))


def test_rerun_of_finished_run_exits_0_and_changed_config_is_refused(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny, out, "--rounds", "1")) == 0
    before = (out / "gal.sqlite").read_bytes()
    capsys.readouterr()
    assert main(run_args(tiny, out, "--rounds", "1")) == 0
    assert "already finished" in capsys.readouterr().out
    assert main(run_args(tiny, out, "--rounds", "1", "--m", "5")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different config" in err[0] and "m: 4 -> 5" in err[0]
    assert (out / "gal.sqlite").read_bytes() == before


@pytest.mark.slow
def test_prior_preservation_generates_class_images_once(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    args = [a for a in run_args(tiny, out, "--rounds", "2", "--strategy", "random") if a != "--no-prior"]
    assert main(args + ["--prior", "--num-class-images", "3"]) == 0
    assert sorted(p.name for p in (out / "class_images").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    rows = sqlite3.connect(out / "gal.sqlite").execute("SELECT count(*) FROM class_image").fetchone()
    assert rows == (3,)


def test_killed_run_resumes_to_the_same_result(tiny, tmp_path, capsys):
    """SIGKILL in the middle of round 1's query, run again: same selections, weights and added images."""
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    extra = ("--rounds", "3", "--strategy", "random", "--gen-batch-size", "2")
    assert main(run_args(tiny, clean, *extra)) == 0
    killed_at("samples#2", run_args(tiny, killed, *extra), tmp_path / "barrier")  # after 4 of round 1's 24 samples
    assert ledger_samples(killed) == 4  # it stopped mid-query
    assert main(run_args(tiny, killed, *extra)) == 0
    a, b = show_json(clean, capsys), show_json(killed, capsys)
    for ra, rb in zip(a["rounds"], b["rounds"]):
        assert [x["selected"] for x in ra["anchors"]] == [x["selected"] for x in rb["anchors"]]
        assert ra["openness"] == rb["openness"]
        assert [(x["path"], x["weight"]) for x in ra["added"]] == [(x["path"], x["weight"]) for x in rb["added"]]
        for x in ra["added"]:
            assert (clean / x["path"]).read_bytes() == (killed / x["path"]).read_bytes()
    assert len(a["rounds"]) == len(b["rounds"]) == 3
    leftovers = [p for p in killed.rglob(".*tmp-*")]
    assert leftovers == []


def test_the_query_with_the_lora_merged_matches_the_adapter_and_gives_the_base_weights_back(tiny):
    from accelerate import Accelerator

    from gal.generate import generate, sample_seed
    from gal.models import load_pipeline
    from gal.personalize import Example, Personalizer, Term
    from gal.references import read_references

    pipe = load_pipeline(str(tiny / "pipeline"))
    trainer = Personalizer(pipe, Accelerator(cpu=True), method="lora", lr=0.05, rank=4, resolution=32)
    refs = [Example(r.image, "a <sks> ball", 1.0) for r in read_references(str(tiny / "references"))]
    trainer.train([Term(refs)], steps=3, batch_size=1, seed=0)  # a LoRA that changes the images
    prompts, seeds = ["a <sks> ball in a museum"] * 2, [sample_seed(0, 1, 0, j) for j in range(2)]

    def images():
        return np.stack([np.asarray(im, dtype=np.int16) for _, batch in generate(
            pipe, prompts, seeds, steps=3, guidance=7.5, resolution=32, batch_size=2) for im in batch])

    base = {k: v.clone() for k, v in pipe.unet.state_dict().items() if "lora" not in k}
    adapter = images()
    with trainer.merged():
        merged = images()
        changed = [k for k, v in pipe.unet.state_dict().items() if "lora" not in k and not torch.equal(v, base[k])]
    assert changed  # the update really is in the base weights while merged
    assert np.abs(adapter - merged).max() <= 2
    after = pipe.unet.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())  # bit for bit, not base + update - update
    assert np.array_equal(images(), adapter)


def test_frozen_components_load_in_the_asked_precision(tiny):
    from gal.models import load_pipeline

    pipe = load_pipeline(str(tiny / "pipeline"), frozen_dtype=torch.bfloat16, denoiser_dtype=torch.float32)
    assert pipe.vae.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
    assert pipe.unet.dtype == torch.float32


@pytest.mark.slow
def test_from_previous_round_continues_instead_of_restarting(tiny, tmp_path):
    from safetensors.torch import load_file

    for name, extra in (("base", ()), ("continued", ("--from-previous-round",))):
        assert main(run_args(tiny, tmp_path / name, "--rounds", "2", "--strategy", "random", "--lr", "1e-2", *extra)) == 0
    def weights(name, r):
        return load_file(tmp_path / name / "rounds" / str(r) / "checkpoint" / "pytorch_lora_weights.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(weights("base", 1).values(), weights("continued", 1).values()))
    assert any(not torch.equal(a, b) for a, b in zip(weights("base", 2).values(), weights("continued", 2).values()))


def test_balance_schemes_build_the_loss_terms():
    """paper/off: one term over T with the stored weights; separate: the references alone (round 1's draws),
    the class images, and the added images as their own term, Δ normalised to mean 1 times --added-weight."""
    from PIL import Image

    from gal.config import Config
    from gal.fine_tune import training_terms
    from gal.personalize import Example

    image = Image.new("RGB", (8, 8))
    T = [Example(image, "ref", 1.0), Example(image, "a", 0.002), Example(image, "b", 0.002), Example(image, "c", 0.001)]
    rounds, prior = [0, 1, 1, 2], [Example(image, "class", 1.0)]
    paper = training_terms(Config(balance="paper"), T, rounds, prior)
    assert [len(t.examples) for t in paper] == [4, 1] and paper[0].examples == T
    separate = training_terms(Config(balance="separate", added_weight=0.5, prior_loss_weight=0.7), T, rounds, prior)
    assert [[e.prompt for e in t.examples] for t in separate] == [["ref"], ["class"], ["a", "b", "c"]]
    assert [t.weight for t in separate] == [1.0, 0.7, 0.5]
    assert [e.weight for e in separate[2].examples] == pytest.approx([1.2, 1.2, 0.6])  # Δ / mean(Δ)


def test_separate_balance_runs_and_resumes_like_the_paper_scheme(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny, out, "--rounds", "2", "--strategy", "random", "--balance", "separate")) == 0
    summary = show_json(out, capsys)
    assert summary["status"] == "finished" and summary["config"]["balance"] == "separate"
    check_against_equations(summary)  # the stored weights are still Δ: the normalisation is the fine-tune's
    assert main(run_args(tiny, out, "--rounds", "2", "--strategy", "random", "--balance", "separate")) == 0
    assert "already finished" in capsys.readouterr().out


@pytest.mark.slow
def test_the_query_has_its_own_sampler_settings(tiny, tmp_path, capsys):
    """--query-guidance changes round 1's samples, not its fine-tune; a ledger written before the setting
    existed reads as `--guidance` (no changed config on resume)."""
    from gal.config import Config, to_dict
    from gal.preflight import changed_keys
    from gal.resolve import settle

    runs = {}
    for name, extra in (("default", ()), ("low", ("--query-guidance", "1", "--query-steps", "2"))):
        out = tmp_path / name
        assert main(run_args(tiny, out, "--rounds", "2", "--strategy", "human", *extra)) == 0
        runs[name] = out
    a, b = show_json(runs["default"], capsys), show_json(runs["low"], capsys)
    assert (a["config"]["query_guidance"], a["config"]["query_steps"]) == (a["config"]["guidance"], a["config"]["steps"])
    assert (b["config"]["query_guidance"], b["config"]["query_steps"]) == (1.0, 2)
    lora = "rounds/1/checkpoint/pytorch_lora_weights.safetensors"
    assert (runs["default"] / lora).read_bytes() == (runs["low"] / lora).read_bytes()
    first = a["rounds"][0]["anchors"][0]["samples"][0]["path"]
    assert (runs["default"] / first).read_bytes() != (runs["low"] / first).read_bytes()

    cfg = settle(Config(references="r", subject="a <sks> cat", base="b", scorer="s")).config
    before = {k: v for k, v in to_dict(cfg).items() if not k.startswith("query_")}
    assert changed_keys(before, cfg) == []
    assert changed_keys(before, settle(Config(references="r", subject="a <sks> cat", base="b", scorer="s",
                                              query_guidance=2.0)).config) == ["query_guidance"]


def test_8bit_adamw_off_a_gpu_is_refused_in_one_line_before_anything_is_written(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny, out, "--optimizer", "adamw8bit")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--optimizer adamw8bit" in err[0] and "CUDA" in err[0]
    assert not out.exists()
