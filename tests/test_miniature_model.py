"""The bundled miniature model and scorer: real from_pretrained loading, the quality gates on a fast
subset, and `gal run` / `gal eval` end to end on them (docs/miniature.md has the full-size figures)."""

import json

import numpy as np
import pytest

from gal.cli import main
from gal.miniature import bundled, check, world
from gal.miniature.inputs import inputs
from gal.models import load_pipeline
from gal.score import ClipScorer

from conftest import flags

# Fast subsets of `gal miniature check`'s gates (scorer >= 0.90 on 200 renders, generator >= 0.70 on
# 100 prompts there). Smaller samples are noisier, so these bounds sit a little under the full gates.
SCORER_SUBSET = 0.85
GENERATOR_SUBSET = 0.6


@pytest.fixture(scope="module")
def weights():
    found = bundled()
    assert found is not None, "gal/miniature/weights is missing: the package ships the miniature model and scorer"
    return found


def test_bundled_folders_are_safetensors_within_the_size_limit_and_load_as_real_checkpoints(weights):
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPModel, CLIPProcessor

    model_dir, scorer_dir = weights
    files = [p for d in weights for p in d.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert sum(p.stat().st_size for p in files) <= 40 * 2**20
    pipe = StableDiffusionPipeline.from_pretrained(model_dir, use_safetensors=True)
    assert pipe.tokenizer.add_tokens(["<sks>"]) == 1  # a placeholder token can be added, as DreamBooth does
    CLIPModel.from_pretrained(scorer_dir, use_safetensors=True)
    CLIPProcessor.from_pretrained(scorer_dir)


@pytest.mark.slow
def test_scorer_and_generator_gates_on_a_fast_subset(weights):
    clip = ClipScorer(str(weights[1]))
    scorer = check.scorer_accuracy(clip, n=96)
    assert scorer["top1"] >= SCORER_SUBSET, scorer
    generator = check.generator_accuracy(load_pipeline(str(weights[0])), clip, n=32)
    assert generator["top1"] >= GENERATOR_SUBSET, generator


@pytest.mark.slow
def test_gal_run_and_eval_on_the_miniature_model(weights, tmp_path, capsys):
    fields, prompts = inputs(tmp_path / "inputs", "mosaic")
    out = tmp_path / "run"
    argv = ["run", *flags(fields), "--base", "miniature", "--scorer", "miniature", "--strategy", "uncertainty", "--balance",
            "--rounds", "2", "--m", "4", "--k", "2", "--train-steps", "60", "--steps", "10", "--guidance", "4",
            "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["show", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["lr"] == pytest.approx(1e-3)  # the miniature model's LoRA rate
    first = summary["rounds"][0]
    assert len(first["anchors"]) == len(world.STYLE_ANCHORS)
    assert all(a["beta"] == pytest.approx(np.mean([s["overfit"] for s in a["samples"]])) for a in first["anchors"])
    assert (out / "rounds" / "1" / "checkpoint" / "pytorch_lora_weights.safetensors").exists()

    assert main(["eval", str(out), "--prompts", str(prompts), "--n", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rounds"]
    assert [r["round"] for r in rows] == [r["round"] for r in summary["rounds"] if r["checkpoint"]]
    for r in rows:  # the bundled model draws what its prompts say, as its scorer reads them
        assert r["txt_aln"] > 0.3 and r["ovf"] * r["images"] == round(r["ovf"] * r["images"])
    # The metrics measure the images: the base model (no personalization) scores differently.
    assert main(["eval", "--base", "miniature", "--scorer", "miniature", "--references", str(tmp_path / "inputs" / "references"),
                 "--kind", "style", "--subject", "in <mosaic> style", "--subject-plain", "in mosaic style", "--non-soi", "a red circle on grass",
                 "--prompts", str(prompts), "--n", "1", "--steps", "10", "--guidance", "4", "--json"]) == 0
    base = json.loads(capsys.readouterr().out)["rounds"]
    assert not np.isclose(base[0]["img_aln"], rows[0]["img_aln"])
