"""Every model family gal personalizes (gal.family) runs the same loop and records the same ledger: SD 1.x, SDXL,
FLUX.1 (dev and schnell layouts), SD 3.x, FLUX.2 klein, Z-Image, Qwen-Image and Chroma, on tiny random pipelines in
their real layouts. A round's LoRA loads into
the family's plain diffusers pipeline and gives back gal's own query images."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gal
from fixtures.families import build_pipeline
from gal.cli import main

from conftest import check_against_equations, killed_at, ledger_samples, run_args, show_json


@pytest.fixture(scope="session")
def bases(tiny, tmp_path_factory):
    """The tiny pipeline of each family (the scorer, references and anchors are `tiny`'s)."""
    return {"sd": tiny / "pipeline",
            **{family: build_pipeline(tmp_path_factory.mktemp(family) / "pipeline", f"tiny-{family}")
               for family in ("sdxl", "flux", "flux-schnell", "sd3", *NEW)}}


NEW = ("flux2-klein", "z-image", "qwen-image", "chroma")  # the 2026 bases
PIPELINES = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline", "flux": "FluxPipeline",
             "flux-schnell": "FluxPipeline", "sd3": "StableDiffusion3Pipeline", "flux2-klein": "Flux2KleinPipeline",
             "z-image": "ZImagePipeline", "qwen-image": "QwenImagePipeline", "chroma": "ChromaPipeline"}


def family_args(tiny, bases, family, out, *extra):
    """`run_args` on `family`'s tiny pipeline (the flow-matching transformers' native 1024 px: they run at 32)."""
    args = run_args(tiny, out, *(("--resolution", "32") if family not in ("sd", "sdxl", "sd3") else ()), *extra)
    args[args.index("--base") + 1] = str(bases[family])
    return args


RECORD = ("--rounds", "3", "--k", "1", "--strategy", "clip", "--prior", "--num-class-images", "2")  # runs its 3 rounds


def structure(value):
    """The keys of a summary, nested (a list by its first item), without the values."""
    if isinstance(value, dict):
        return {k: structure(v) for k, v in value.items()}
    return [structure(value[0])] if isinstance(value, list) and value else type(value).__name__


@pytest.fixture(scope="module")
def sd_record(tiny, bases, tmp_path_factory):
    out = tmp_path_factory.mktemp("sd") / "run"
    assert main(family_args(tiny, bases, "sd", out, *RECORD)) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sdxl", "flux", "sd3", *NEW])
def test_a_run_of_each_family_records_what_an_sd_run_records(family, tiny, bases, sd_record, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(family_args(tiny, bases, family, out, *RECORD)) == 0
    summary = show_json(out, capsys)
    check_against_equations(summary)
    assert len(summary["rounds"]) >= 2 and (out / "class_images" / "0001.png").exists()
    assert structure(summary["rounds"]) == structure(show_json(sd_record, capsys)["rounds"])
    assert main(["eval", str(out), "--n", "1"]) == 0
    rows = [r["evaluations"][0] for r in show_json(out, capsys)["rounds"] if r["checkpoint"]]
    assert len({r["txt_aln"] for r in rows}) == len(rows) >= 2  # each round's images are its own weights
    assert main(["report", str(out)]) == 0 and (out / "report.html").exists()
    # one model without its run, as for a LoRA from another trainer: gal eval --base ... --lora ...
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("{} in a museum\n{} on the moon\n")
    capsys.readouterr()
    assert main(["eval", "--base", str(bases[family]), "--lora", str(out / summary["rounds"][0]["checkpoint"]),
                 "--scorer", str(tiny / "clip"), "--references", str(tiny / "references"), "--subject", "a <sks> ball",
                 "--non-soi", "a ball on grass", "--prompts", str(prompts), "--n", "1", "--steps", "3",
                 "--resolution", "32", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rounds"]
    assert main(["eval", str(out), "--round", "1", "--prompts", str(prompts), "--n", "1", "--json"]) == 0
    (own,) = json.loads(capsys.readouterr().out)["rounds"]  # the run's own evaluation: the same seeds, the LoRA merged
    assert row["images"] == own["images"] == 2
    for metric in ("txt_aln", "img_aln"):
        assert row[metric] == pytest.approx(own[metric], abs=1e-3), metric


@pytest.mark.parametrize("family", ["sd", "sdxl", "flux", "flux-schnell", "sd3", *NEW])
def test_a_rounds_lora_reproduces_gals_query_in_plain_diffusers(family, tiny, bases, tmp_path, capsys):
    """What a user writes: the family's pipeline, `load_lora_weights`, the sample's seed in a generator (and, for the
    2026 bases, the guidance arguments gal.family maps --guidance to: Qwen-Image's true CFG against " "; the tiny
    tokenizers' 64 tokens, where the released ones give the pipelines' default 512)."""
    import diffusers
    from diffusers import DPMSolverMultistepScheduler

    from gal.family import family_of

    out = tmp_path / "run"
    lr = "1e-2" if family in ("sd", "sdxl") else "5e-2"  # a visible change in 6 steps of the tiny model
    assert main(family_args(tiny, bases, family, out, "--rounds", "2", "--train-steps", "6", "--lr", lr,
                            "--strategy", "random")) == 0
    summary = show_json(out, capsys)
    sample = summary["rounds"][0]["anchors"][2]["samples"][1]
    cfg = summary["config"]
    cls = getattr(diffusers, PIPELINES[family])

    def generate(pipe):
        if family in ("sd", "sdxl"):  # gal's query sampler for SD and SDXL; Flux and SD3 keep their own
            pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        kind = family_of(pipe)
        return pipe(prompt=summary["rounds"][0]["anchors"][2]["prompt"],
                    generator=torch.Generator().manual_seed(sample["seed"]), num_inference_steps=cfg["query_steps"],
                    height=32, width=32, output_type="np", **kind.guidance_kwargs(cfg["query_guidance"], 1),
                    **kind.pipeline_kwargs(pipe)).images[0]

    checkpoint = out / "rounds" / "1" / "checkpoint"
    pipe = cls.from_pretrained(bases[family])
    pipe.load_lora_weights(checkpoint)
    plain = generate(pipe)
    ours = np.asarray(Image.open(out / sample["path"]), dtype=np.float64) / 255
    assert np.abs(plain - ours).max() <= 2.5 / 255  # gal merges the LoRA into the weights: the last bits differ
    untuned = generate(cls.from_pretrained(bases[family]))
    assert np.abs(untuned - ours).max() > 0.02  # the LoRA is what makes them equal
    if family not in ("sd", "sdxl"):  # ComfyUI reads diffusers' Flux and SD3 layouts: no second copy
        assert not (checkpoint / "lora_kohya.safetensors").exists()
        return
    # the kohya-layout copy (AUTOMATIC1111, ComfyUI) holds the same weights
    base = cls.from_pretrained(bases[family])
    base.load_lora_weights(checkpoint, weight_name="lora_kohya.safetensors")
    assert np.abs(generate(base) - plain).max() < 1e-5


# of the 2026 bases, klein (FLUX.2's patchified, batch-normalized latents) and Qwen-Image (a video VAE, true CFG):
# Z-Image and Chroma resume through the same code (the ledger, the query, the trainer), and CI's 15 minutes are spent
@pytest.mark.slow
@pytest.mark.parametrize("family", ["sdxl", "flux", "flux2-klein", "qwen-image"])
def test_a_killed_run_of_each_family_resumes_to_the_same_result(family, tiny, bases, tmp_path, capsys):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    extra = ("--rounds", "2", "--strategy", "random", "--gen-batch-size", "2")
    assert main(family_args(tiny, bases, family, clean, *extra)) == 0
    killed_at("samples#2", family_args(tiny, bases, family, killed, *extra), tmp_path / "barrier")
    assert ledger_samples(killed) == 4  # in round 1's query
    assert main(family_args(tiny, bases, family, killed, *extra)) == 0
    a, b = show_json(clean, capsys), show_json(killed, capsys)
    assert json.dumps(a["rounds"], sort_keys=True) == json.dumps(b["rounds"], sort_keys=True)
    for name in ("pytorch_lora_weights.safetensors", "lora_kohya.safetensors")[:2 if family == "sdxl" else 1]:
        assert (clean / "rounds/2/checkpoint" / name).read_bytes() == (killed / "rounds/2/checkpoint" / name).read_bytes()


def test_a_family_gal_does_not_personalize_is_named_in_one_line(tiny, tmp_path, capsys):
    other = tmp_path / "pixart"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "PixArtSigmaPipeline", "_diffusers_version": "0.32.0"}))
    args = run_args(tiny, tmp_path / "out")
    args[args.index("--base") + 1] = str(other)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a PixArtSigmaPipeline, which gal does not personalize yet" in err[0]
    assert "StableDiffusionXLPipeline" in err[0] and "FluxPipeline" in err[0] and not (tmp_path / "out").exists()


def test_the_family_and_its_sampler_defaults_are_read_from_the_folder(tiny, bases):
    from gal.family import family_of
    from gal.resolve import settle

    assert [family_of(str(bases[f])).name for f in PIPELINES] == ["sd", "sdxl", "flux", "flux", "sd3", *NEW]
    defaults = {f: settle(gal.Config(references="r", subject="a <sks> ball", base=str(bases[f]), scorer="s"),
                          family_of=family_of).config for f in PIPELINES}
    assert [(c.steps, c.guidance) for c in defaults.values()] == [(50, 7.5), (50, 7.5), (28, 3.5), (4, 0.0), (28, 7.0),
                                                                  (4, 1.0), (50, 5.0), (50, 4.0), (35, 5.0)]
    # klein's base (undistilled) models and Z-Image Turbo, told apart by model_index.json and by name
    import shutil

    base_klein = Path(str(bases["flux2-klein"]) + "-base")
    shutil.copytree(bases["flux2-klein"], base_klein)
    index = base_klein / "model_index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "is_distilled": False}))
    turbo = Path(str(bases["z-image"]) + "-Z-Image-Turbo")
    shutil.copytree(bases["z-image"], turbo)
    assert family_of(str(base_klein)).sampling_defaults(str(base_klein)) == (50, 4.0)
    assert family_of(str(turbo)).sampling_defaults(str(turbo)) == (9, 0.0)


def test_each_sd3_release_samples_at_its_model_cards_setting(bases, tmp_path):
    import shutil

    from gal.family import family_of

    for changes, expected in (({}, (28, 7.0)), ({"qk_norm": "rms_norm"}, (28, 3.5)),
                              ({"qk_norm": "rms_norm", "dual_attention_layers": [0]}, (40, 4.5))):
        folder = tmp_path / str(len(changes))
        shutil.copytree(bases["sd3"], folder)
        config = folder / "transformer" / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), **changes}))
        assert family_of(str(folder)).sampling_defaults(str(folder)) == expected, changes


def test_a_full_flux_fine_tune_is_refused_in_one_line_before_anything_is_written(tiny, bases, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(family_args(tiny, bases, "flux", out, "--method", "full")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--method full" in err[0] and "FLUX.1" in err[0] and "--method lora" in err[0]
    assert not out.exists()


def test_a_resolution_the_family_cannot_pack_is_refused_in_one_line(tiny, bases, tmp_path, capsys):
    """Flux packs 2x2 latent pixels: with FLUX.1's 8x VAE (as the tiny one) a side must be a multiple of 16."""
    out = tmp_path / "run"
    assert main(family_args(tiny, bases, "flux", out, "--resolution", "40")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gal: error: --resolution 40: FLUX.1 (dev, schnell) works on sides that are multiples of 16; "
                   "expected e.g. --resolution 32"] and not out.exists()


@pytest.mark.slow
def test_every_strategy_runs_on_flux(tiny, bases, tmp_path, capsys):
    """The loop and the strategies do not know the family (human waits for `gal review`, as on SD)."""
    for strategy in ("uncertainty", "random", "clip", "none", "human"):
        out = tmp_path / strategy
        assert main(family_args(tiny, bases, "flux", out, "--strategy", strategy, "--rounds", "2", "--m", "2",
                                "--train-steps", "2", "--steps", "2")) == 0
        summary = show_json(out, capsys)
        assert summary["rounds"][0]["checkpoint"], strategy
        assert summary["status"] == ("waiting for review" if strategy == "human" else "finished"), strategy


@pytest.mark.slow
def test_a_full_sdxl_fine_tune_is_a_pipeline_folder_plain_diffusers_loads(tiny, bases, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    out = tmp_path / "run"
    assert main(family_args(tiny, bases, "sdxl", out, "--rounds", "1", "--method", "full", "--lr", "1e-3")) == 0
    pipe = StableDiffusionXLPipeline.from_pretrained(out / "rounds" / "1" / "checkpoint")
    base = StableDiffusionXLPipeline.from_pretrained(bases["sdxl"])
    changed = [n for n, p in pipe.unet.named_parameters() if not torch.equal(p, base.unet.get_parameter(n))]
    assert changed and pipe.vae.dtype == torch.float32


@pytest.mark.slow
def test_a_v_prediction_base_trains_on_the_velocity(tiny, tmp_path, capsys):
    """SD 2.x (768-v) layout: the same StableDiffusionPipeline with a v-prediction scheduler; the trainer's target is
    the velocity, read from the scheduler config, and the query samples with it."""
    import shutil

    from gal.personalize import Personalizer

    base = tmp_path / "sd2v"
    shutil.copytree(tiny / "pipeline", base)
    config = base / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "prediction_type": "v_prediction"}))
    out = tmp_path / "run"
    args = run_args(tiny, out, "--rounds", "2", "--strategy", "random")
    args[args.index("--base") + 1] = str(base)
    assert main(args) == 0
    check_against_equations(show_json(out, capsys))
    from accelerate import Accelerator

    from gal.models import load_pipeline
    from gal.personalize import Example, Term
    from gal.references import read_references

    refs = [Example(r.image, "a <sks> ball", 1.0) for r in read_references(str(tiny / "references"))]
    losses = {}
    for name, folder in (("epsilon", tiny / "pipeline"), ("v_prediction", base)):
        trainer = Personalizer(load_pipeline(str(folder)), Accelerator(cpu=True), method="lora", lr=1e-4, rank=4,
                               resolution=32)
        assert trainer.noise_scheduler.config.prediction_type == name
        losses[name] = trainer.train([Term(refs)], steps=2, batch_size=1, seed=0)
    assert losses["epsilon"] != losses["v_prediction"]  # the same noise and timesteps, another target


@pytest.mark.slow
@pytest.mark.parametrize("family", PIPELINES)
def test_each_familys_query_images_do_not_depend_on_the_batch_size(family, bases):
    """Each sample's noise comes from its own seed (gal.family.initial_noise), whatever the batch."""
    from gal.family import family_of
    from gal.generate import generate, sample_seed
    from gal.models import load_pipeline

    pipe = load_pipeline(str(bases[family]))
    family_of(pipe).use_query_sampler(pipe)
    prompts = ["a <sks> ball in a museum", "a <sks> ball on a boat", "a <sks> ball under a tree"] * 2
    seeds = [sample_seed(0, 1, i, 0) for i in range(len(prompts))]
    runs = []
    for batch_size in (1, 4, 6):
        images = []
        for _, batch in generate(pipe, prompts, seeds, steps=3, guidance=3.5, resolution=32, batch_size=batch_size):
            images += [np.asarray(im, dtype=np.int16) for im in batch]
        runs.append(np.stack(images))
    assert np.abs(runs[0] - runs[1]).max() <= 1 and np.abs(runs[0] - runs[2]).max() <= 1
    assert np.abs(runs[0][0] - runs[0][3]).max() > 0  # different seeds, different images


def test_the_full_size_architectures_have_the_published_parameter_counts(tmp_path):
    """fixtures.families' SDXL and FLUX.1 architectures, which the GPU benchmarks build with random weights
    (benchmarks/families.py), are the released ones: SDXL 1.0's UNet and FLUX.1's transformer to the parameter."""
    from accelerate import init_empty_weights

    from fixtures.families import flux_pipeline, sdxl_pipeline, write_t5_tokenizer
    from gal.miniature.layout import write_clip_tokenizer

    tokenizer = write_clip_tokenizer(tmp_path / "clip")
    with init_empty_weights():  # shapes only
        sdxl = sdxl_pipeline(tokenizer, full=True)
        flux = flux_pipeline(tokenizer, write_t5_tokenizer(tmp_path / "t5"), dev=True, full=True)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(sdxl.unet) == 2_567_463_684 and count(flux.transformer) == 11_901_408_320


def test_the_2026_bases_full_size_architectures_have_the_released_parameter_counts(tmp_path):
    """The released denoisers' configs (transformer/config.json of FLUX.2-klein-4B and -9B, Z-Image-Turbo, Qwen-Image,
    Chroma1-HD) counted on empty weights: 3.88B, 9.08B, 6.15B, 20.43B and 8.90B, the "4B", "9B", "6B", "20B" and
    "8.9B" their model cards give; Z-Image's Qwen3-4B text encoder 4.02B. gal.memory's table uses these counts."""
    from accelerate import init_empty_weights

    from fixtures.families import chroma_pipeline, flux2_klein_pipeline, qwen_image_pipeline, z_image_pipeline

    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    with init_empty_weights():
        klein4, klein9 = flux2_klein_pipeline(tmp_path / "k4", "4b"), flux2_klein_pipeline(tmp_path / "k9", "9b")
        z_image = z_image_pipeline(tmp_path / "z", full=True)
        assert count(klein4.transformer) == 3_875_544_576 and count(klein9.transformer) == 9_078_581_248
        assert count(z_image.transformer) == 6_154_908_736 and count(z_image.text_encoder) == 4_022_468_096
        del klein4, klein9, z_image
        assert count(qwen_image_pipeline(tmp_path / "q", full=True).transformer) == 20_430_401_088
        assert count(chroma_pipeline(tmp_path / "c", full=True).transformer) == 8_899_983_424


@pytest.mark.parametrize("args", [("--family", "flux"), ("--family", "qwen-image", "--quantize", "int8")])
def test_the_family_benchmark_runs_its_code_path_on_the_cpu(args):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import families

    result = families.main([*args, "--dry-run"])
    assert result["query"]["images"] == 12 and result["query"]["ratio"] > 0 and result["lora"]["steps_per_s"] > 0


QUANTIZED_TOLERANCE = 4 / 255  # the int8 base's rounding: measured 1.6 and 2.1 / 255 on the tiny klein (2026-12-01)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["flux2-klein"])
def test_a_lora_trained_on_an_int8_base_gives_back_gals_images_in_the_unquantized_pipeline(family, tiny, bases,
                                                                                            tmp_path, capsys):
    """QLoRA as the diffusers scripts do it (--quantize int8: torchao's weight-only int8 under the LoRA, which stays
    unmerged in the query): the round's file loads into the plain, unquantized pipeline, which gives back gal's query
    images within the base's rounding."""
    import diffusers

    from gal.family import family_of

    out = tmp_path / "run"
    assert main(family_args(tiny, bases, family, out, "--rounds", "2", "--train-steps", "6", "--lr", "5e-2",
                            "--strategy", "random", "--quantize", "int8")) == 0
    summary = show_json(out, capsys)
    assert summary["config"]["quantize"] == "int8"
    anchor = summary["rounds"][0]["anchors"][2]
    cfg = summary["config"]

    def generate(pipe, seed):
        kind = family_of(pipe)
        return pipe(prompt=anchor["prompt"], generator=torch.Generator().manual_seed(seed),
                    num_inference_steps=cfg["query_steps"], height=32, width=32, output_type="np",
                    **kind.guidance_kwargs(cfg["query_guidance"], 1), **kind.pipeline_kwargs(pipe)).images[0]

    cls = getattr(diffusers, PIPELINES[family])
    pipe = cls.from_pretrained(bases[family])
    pipe.load_lora_weights(out / "rounds" / "1" / "checkpoint")
    untuned = cls.from_pretrained(bases[family])
    diffs, effects = [], []
    for sample in anchor["samples"][:2]:
        ours = np.asarray(Image.open(out / sample["path"]), dtype=np.float64) / 255
        diffs.append(np.abs(generate(pipe, sample["seed"]) - ours).max())
        effects.append(np.abs(generate(untuned, sample["seed"]) - ours).max())
    assert max(diffs) <= QUANTIZED_TOLERANCE
    assert min(effects) > 2 * QUANTIZED_TOLERANCE  # the LoRA is what makes them equal (10 / 255), not the tolerance


def test_flux2_dev_without_torchvision_and_a_quantization_the_machine_lacks_are_refused_in_one_line(tiny, bases,
                                                                                                   tmp_path, capsys):
    import importlib.util

    dev = tmp_path / "flux2-dev"
    dev.mkdir()
    (dev / "model_index.json").write_text(json.dumps({"_class_name": "Flux2Pipeline", "_diffusers_version": "0.36.0"}))
    cases = [(("--base", str(dev)), "PixtralProcessor", "pip install torchvision")] * \
        (importlib.util.find_spec("torchvision") is None)
    cases += [(("--quantize", "nf4", "--device", "cpu"), "--quantize nf4", "CUDA GPU"),
              (("--quantize", "fp8", "--device", "cpu"), "--quantize fp8", "CUDA GPU"),
              (("--quantize", "int4"), "--quantize", "invalid choice"),
              (("--quantize", "int8", "--base", str(tiny / "pipeline")), "--quantize int8", "--quantize none")]
    for i, (extra, first, second) in enumerate(cases):
        out = tmp_path / f"out{i}"
        args = family_args(tiny, bases, "flux2-klein", out)
        for flag, value in zip(extra[::2], extra[1::2]):
            if flag in args:
                args[args.index(flag) + 1] = value
            else:
                args += [flag, value]
        assert main(args) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and first in err[0] and second in err[0], (extra, err)
        assert not out.exists()


def test_quantize_auto_picks_the_least_quantization_whose_computed_peak_fits_the_gpu(tmp_path):
    """gal.memory on FLUX.2 klein 9B's released configs (written without weights): bf16 on an 80 GB GPU, int8 on 24 GB,
    NF4 on 16 GB, nothing on the CPU or for SD; docs/families.md's table is gal.memory's."""
    from accelerate import init_empty_weights

    from fixtures.families import flux2_klein_pipeline
    from gal.family import FAMILIES
    from gal.memory import RELEASED, counts, pick_quantization, table
    from gal.resolve import Machine

    folder = tmp_path / "klein-9b"
    with init_empty_weights():
        pipe = flux2_klein_pipeline(tmp_path / "_", "9b")
    pipe.save_config(folder)  # model_index.json
    for name in ("transformer", "vae", "scheduler"):
        getattr(pipe, name).save_config(folder / name)
    pipe.text_encoder.config.save_pretrained(folder / "text_encoder")
    klein = FAMILIES["Flux2KleinPipeline"]
    assert counts(klein, str(folder)) == RELEASED["FLUX.2 klein 9B"][1:]
    gpu = lambda gb: Machine(cpu_only=False, miniature=False, gpus=1, gpu_memory=int(gb * 2**30))  # noqa: E731
    assert [pick_quantization(klein, str(folder), gpu(gb)) for gb in (80, 24, 16)] == ["none", "int8", "nf4"]
    assert pick_quantization(klein, str(folder), Machine(cpu_only=True, miniature=False)) == "none"
    assert pick_quantization(FAMILIES["StableDiffusionPipeline"], "any", gpu(8)) == "none"
    assert table() in (Path(__file__).resolve().parent.parent / "docs" / "families.md").read_text()


def test_the_tiny_qwen_tokenizer_drops_qwen_images_system_prompt_as_the_released_one(bases):
    """QwenImagePipeline drops the first 34 tokens of its template: the system prompt, 34 tokens with Qwen2.5's own
    tokenizer. The tiny layout's tokenizer (fixtures.families) makes them 34 too, so the prompt's own states are what the
    tiny transformer reads."""
    from diffusers import QwenImagePipeline
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bases["qwen-image"] / "tokenizer")
    pipe_template = QwenImagePipeline.__init__.__code__.co_consts  # the template lives in the pipeline's __init__
    template = next(c for c in pipe_template if isinstance(c, str) and c.startswith("<|im_start|>system"))
    prefix = template.split("{}")[0]
    assert len(tokenizer(prefix)["input_ids"]) == 34


@pytest.mark.slow
def test_composites_restyle_where_the_family_has_an_img2img_twin_and_are_refused_where_not(tiny, bases, tmp_path, capsys):
    """`--added composite` redraws with the family's diffusers img2img pipeline (SDEdit from a strength): where a
    family has one, it redraws a picture from its seed; where it has none (`family.composites`), the option is
    refused in one line before anything is written."""
    from gal.composite import Composer
    from gal.family import family_of
    from gal.models import load_pipeline
    from gal.score import ClipScorer

    scorer = ClipScorer(str(tiny / "clip"))
    picture = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    for family, base in bases.items():
        if family_of(str(base)).composites:
            pipe = load_pipeline(str(base), torch.float32, torch.float32)
            composer = Composer(pipe, family_of(pipe), scorer, 32, 2)
            made = composer.restyle([picture, picture], ["a ball in dotted style"] * 2, [1, 2], steps=4, guidance=3.0)
            assert made[0].shape == picture.shape and not np.array_equal(made[0], picture), family
            assert not np.array_equal(made[0], made[1]), family  # each from its own seed
        else:
            out = tmp_path / family
            assert main(family_args(tiny, bases, family, out, "--added", "composite")) == 2, family
            err = capsys.readouterr().err.strip()
            assert "--added composite: not with --base" in err and "\n" not in err and not out.exists(), err
    assert [f for f, b in bases.items() if not family_of(str(b)).composites] == ["flux2-klein", "z-image", "chroma"]


@pytest.mark.parametrize("family", ["sd", "sdxl", "flux", "sd3", *NEW])
def test_masked_loss_learns_nothing_from_outside_the_subject_on_every_family(family, bases, tiny, monkeypatch):
    """`--masked-loss`: each latent's error is weighted by its share of the mask, in the family's own latent grid (SD's
    unpacked latents; FLUX.2's patchified ones, half the size): with a mask on the left half of each reference, the
    loss's gradient reaches the denoiser's prediction on the left latents and is exactly 0 on the right ones; with
    the weight 1 outside, masked loss is plain DreamBooth's loss bit for bit."""
    from accelerate import Accelerator

    from gal.models import load_pipeline
    from gal.personalize import Example, Personalizer, Term, masked
    from gal.references import read_references

    left = np.zeros((32, 32), np.float32)  # at the training resolution: no resize blurs its edge
    left[:, :16] = 1
    images = [r.image.resize((32, 32)) for r in read_references(str(tiny / "references"))]
    trainer = Personalizer(load_pipeline(str(bases[family])), Accelerator(cpu=True), method="lora", lr=1e-4, rank=4,
                           resolution=32)
    grads = []
    predict = trainer.family.predict

    def watched(*args, **kwargs):  # the prediction's gradient, as the loss sends it back
        pred = predict(*args, **kwargs)
        pred.register_hook(lambda g: grads.append(g.detach().clone()))
        return pred
    monkeypatch.setattr(trainer.family, "predict", watched)

    def loss(outside):
        examples = [Example(im, "a <sks> ball", 1.0, None if outside is None else masked(left, outside)) for im in images]
        trainer.reset(seed=0)
        return trainer.train([Term(examples)], steps=1, batch_size=1, seed=0)

    assert loss(None) == loss(1.0)  # weight 1 everywhere: plain DreamBooth
    grads.clear()
    loss(0.0)
    (g,) = grads
    half = g.shape[-1] // 2
    assert g[..., half:].abs().max() == 0 and g[..., :half].abs().min() > 0
