"""The miniature world: rendering, captions, held-out subjects, anchors, and a tiny real training run."""

import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gal.miniature import world
from gal.miniature.architecture import CLIP_MEAN, scorer_pixels, scorer_processor, write_tokenizer
from gal.miniature.train import Data, TrainConfig, _to_unit, train
from gal.miniature.world import (
    BACKGROUNDS,
    COLORS,
    HELD_OUT_STYLES,
    INSTANCES,
    OBJECT_ANCHORS,
    OBJECT_TEST_PROMPTS,
    SHAPES,
    STYLE_ANCHORS,
    STYLE_TEST_PROMPTS,
    STYLES,
    SUBJECTS,
    Scene,
    caption,
    is_held_out,
    one_off_scenes,
    parse_caption,
    render,
    render_dataset,
    sample_scenes,
)

# A few steps of every phase at toy sizes: the real code path, in seconds.
TINY = TrainConfig(
    n_images=96, vae_channels=(8, 16, 16), vae_groups=8, unet_channels=(32, 32), unet_head_dim=16, unet_groups=8,
    text_width=32, text_layers=1, scorer_width=32, scorer_layers=1, vae_steps=3, scorer_steps=3, unet_steps=4,
    batch_size=8, vae_batch_size=8, scorer_batch_size=8, hard_negatives=2, warmup=2, measure_n=4,
)


def test_rendering_is_deterministic_and_seed_jittered():
    scene = Scene("star", "red", "grass", "striped")
    first = render(scene, seed=3)
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, render(scene, seed=3))
    assert not np.array_equal(first, render(scene, seed=4))


def test_each_attribute_has_at_least_six_values_that_all_look_different():
    assert min(len(SHAPES), len(COLORS), len(BACKGROUNDS), len(STYLES)) >= 6
    assert len(HELD_OUT_STYLES) >= 2 and len(INSTANCES) >= 2
    base = Scene("circle", "red", "grass", "flat")
    for attribute, values in [("shape", SHAPES), ("color", COLORS), ("background", BACKGROUNDS),
                              ("style", STYLES + HELD_OUT_STYLES)]:
        images = [render(replace(base, **{attribute: v}), seed=1) for v in values]
        for i in range(len(images)):
            for j in range(i):
                assert np.abs(images[i].astype(int) - images[j].astype(int)).mean() > 2, (attribute, values)


def test_pretraining_sampler_never_draws_held_out_subjects():
    pairs = sample_scenes(3000, seed=0)
    assert not any(is_held_out(scene) for scene, _ in pairs)
    words = {"mosaic", "neon", "two-tone", "spotted"}
    images, captions, scenes = render_dataset(50, seed=1)
    assert images.shape == (50, 32, 32, 3)
    assert not any(w in c for c in captions for w in words)
    # The scorer's sampler does draw them; the UNet trains only on the held-in part of that set.
    images, _, scenes = render_dataset(60, seed=0, include_held_out=True)
    assert any(is_held_out(scene) for scene in scenes)
    data = Data(images, scenes, tokenizer=None)
    assert 0 < len(data.held_in) < len(scenes)
    assert not any(is_held_out(scenes[i]) for i in data.held_in.tolist())


def test_captions_parse_back_and_partial_captions_are_in_the_grammar():
    for scene, _ in sample_scenes(300, seed=2, include_held_out=True):
        assert parse_caption(caption(scene)) == scene
    assert caption(Scene("star", "red", "grass", "striped")) == "a red star on grass in striped style"
    assert caption(Scene("circle", "orange", "night")) == "an orange circle at night in flat style"
    assert caption(Scene("circle", "orange", "night", None)) == "an orange circle at night"  # style left open
    assert parse_caption("a blue square in mosaic style") == Scene("square", "blue", None, "mosaic")
    with pytest.raises(ValueError, match="not in the miniature grammar"):
        parse_caption("a koala in a museum")


def test_one_off_captions_change_exactly_one_attribute():
    scene = Scene("heart", "pink", "sea", "dotted")
    offs = one_off_scenes(scene)
    assert len(offs) == (len(SHAPES) - 1) + (len(COLORS) - 1) + (len(BACKGROUNDS) - 1) + (len(STYLES) - 1)
    texts = [caption(s) for _, s in offs]
    assert len(set(texts)) == len(texts) and caption(scene) not in texts
    for attribute, off in offs:
        parsed = parse_caption(caption(off))
        changed = [a for a in world.ATTRIBUTES if getattr(parsed, a) != getattr(scene, a)]
        assert changed == [attribute]


def test_anchors_are_eighteen_templates_per_kind_and_test_prompts_are_disjoint():
    for anchors, tests in [(OBJECT_ANCHORS, OBJECT_TEST_PROMPTS), (STYLE_ANCHORS, STYLE_TEST_PROMPTS)]:
        assert len(anchors) == 18 and len(set(anchors)) == 18
        assert all(a.count("{}") == 1 for a in anchors + tests)
        assert len(tests) == 20 and not set(tests) & set(anchors)
    for subject in SUBJECTS.values():
        anchors = OBJECT_ANCHORS if subject.kind == "object" else STYLE_ANCHORS
        tests = OBJECT_TEST_PROMPTS if subject.kind == "object" else STYLE_TEST_PROMPTS
        _, _, non_soi = world.reference_images(subject.name, n=1)
        for template in anchors + tests:
            plain = template.format(subject.plain)
            parse_caption(plain)  # scoring text is in the scorer's grammar
            assert plain != non_soi[0], (subject.name, template)  # else overfitting could not be told apart
            assert subject.token in template.format(subject.phrase)


def test_reference_images_show_the_subject_on_its_fixed_content():
    images, prompts, non_soi = world.reference_images("mosaic")
    assert images.shape == (1, 32, 32, 3)
    assert prompts == ["a red circle on grass in <mosaic> style"] and non_soi == ["a red circle on grass"]
    plain = render(Scene("circle", "red", "grass"), seed=0)
    assert np.abs(images[0].astype(int) - plain.astype(int)).mean() > 10  # the style changes the picture
    images, prompts, non_soi = world.reference_images("spotted_ring")
    assert len(images) == 4 and not np.array_equal(images[0], images[1])
    assert prompts[0] == "a <spotted-ring> ring by a brick wall in flat style"
    assert non_soi[0] == "a ring by a brick wall in flat style"


def test_tokenizer_has_whole_world_words_and_tokenizes_any_placeholder(tmp_path):
    tokenizer = write_tokenizer(tmp_path)
    for word in ["star", "checkered", "desert", "mosaic", "purple"]:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    ids = tokenizer("a <sks> dog").input_ids
    assert tokenizer.unk_token_id not in ids[1:-1] and len(ids) > 5


def test_scorer_training_normalization_matches_the_saved_processor(tmp_path):
    processor = scorer_processor(write_tokenizer(tmp_path))
    image = render(Scene("ring", "blue", "sea", "dotted"), seed=5)
    saved = processor(images=[image], return_tensors="pt")["pixel_values"]
    ours = scorer_pixels(_to_unit(torch.from_numpy(image[None])))
    assert torch.allclose(saved, ours, atol=1e-5)
    assert list(processor.image_processor.image_mean) == list(CLIP_MEAN)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini") / "run"
    result = train(out, seed=0, minutes_budget=1, config=TINY)
    return out, result


def test_tiny_training_writes_loadable_pipeline_and_scorer(trained):
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPModel, CLIPProcessor

    out, result = trained
    assert result["status"] == "done"
    pipe = StableDiffusionPipeline.from_pretrained(out / "model", use_safetensors=True)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.safety_checker is None
    image = pipe("a red star on grass", num_inference_steps=2, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (32, 32, 3) and np.isfinite(image).all()
    scorer = CLIPModel.from_pretrained(out / "scorer", use_safetensors=True)
    processor = CLIPProcessor.from_pretrained(out / "scorer")
    inputs = processor(text=["a red star on grass"], images=[(image * 255).astype(np.uint8)], return_tensors="pt",
                       padding=True, truncation=True)
    assert scorer(**inputs).logits_per_image.shape == (1, 1)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert [h["phase"] for h in state["history"]] == ["vae", "scorer", "unet", "final"]
    assert 0 <= state["final"]["generator"]["top1"] <= 1 and 0 <= state["final"]["scorer"]["top1"] <= 1
    assert result["generator"] == state["final"]["generator"]


def test_second_call_refuses_without_force(trained):
    out, _ = trained
    with pytest.raises(FileExistsError, match="force=True"):
        train(out, seed=0, minutes_budget=1, config=TINY)


@pytest.mark.slow
def test_a_finished_run_trains_its_scorer_longer_without_touching_the_generator(trained, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    unet = out / "model" / "unet" / "diffusion_pytorch_model.safetensors"
    before, scorer_before = load_file(unet), load_file(out / "scorer" / "model.safetensors")
    longer = replace(TINY, scorer_steps=TINY.scorer_steps + 2)
    assert train(out, seed=0, minutes_budget=1, config=longer)["status"] == "done"
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["phases"]["scorer"]["step"] == TINY.scorer_steps + 2
    assert all(torch.equal(before[k], v) for k, v in load_file(unet).items())
    assert any(not torch.equal(scorer_before[k], v) for k, v in load_file(out / "scorer" / "model.safetensors").items())
    with pytest.raises(ValueError, match="only the scorer and the UNet"):
        train(out, seed=0, minutes_budget=1, config=replace(longer, vae_steps=TINY.vae_steps + 1))


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_weights(trained, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    first = train(out, seed=0, minutes_budget=1, config=TINY, max_steps=5)  # stops inside the scorer phase
    assert first["status"] == "interrupted" and not (out / "model").exists()
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["phases"]["vae"]["done"] and state["phases"]["scorer"]["step"] == 2
    # What is left is 1 scorer step and 4 UNet steps: a run that started over would need 10.
    second = train(out, seed=0, minutes_budget=1, config=TINY, max_steps=5)
    assert second["status"] == "done"
    assert "resuming from" in (out / "train.log").read_text()
    reference = load_file(trained[0] / "model" / "unet" / "diffusion_pytorch_model.safetensors")
    resumed = load_file(out / "model" / "unet" / "diffusion_pytorch_model.safetensors")
    assert reference.keys() == resumed.keys()
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_cli_refuses_to_overwrite_weights_or_share_a_folder(tmp_path, capsys):
    from gal.cli import main
    from gal.miniature.train import final_paths
    from gal.storage import RunLock

    model_dir, _ = final_paths(tmp_path / "done")
    model_dir.mkdir(parents=True)
    (model_dir / "model_index.json").write_text("{}")
    assert main(["miniature", "train", str(tmp_path / "done")]) == 2
    assert "--force" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    with RunLock(busy):
        assert main(["miniature", "train", str(busy)]) == 2
        assert "another gal process" in capsys.readouterr().err


@pytest.mark.slow
def test_the_simulated_person_reads_prompts_in_world_terms(tmp_path):
    from gal.miniature import judge, world

    mosaic, star = world.SUBJECTS["mosaic"], world.SUBJECTS["twotone_star"]
    wanted = judge.expected_scene("a blue circle at night {}", mosaic)
    assert wanted == world.Scene("circle", "blue", "night", "mosaic")
    assert judge.faithful(world.Scene("circle", "blue", "night", "mosaic"), wanted)
    assert not judge.faithful(world.Scene("circle", "red", "grass", "mosaic"), wanted)  # copied the reference
    assert not judge.acceptable(world.Scene("circle", "red", "grass", "mosaic"), wanted)
    assert judge.acceptable(world.Scene("ring", "blue", "night", "mosaic"), wanted)  # one detail of the content off
    assert not judge.acceptable(world.Scene("circle", "blue", "night", "flat"), wanted)  # the style is the subject
    assert not judge.acceptable(world.Scene("circle", "blue", "grass", "mosaic"), wanted)  # the setting is not a detail
    wanted = judge.expected_scene("{} in the snow", star)
    assert wanted.shape == "twotone_star" and wanted.background == "snow"
    assert judge.faithful(world.Scene("twotone_star", None, "snow", "flat"), wanted)
    assert not judge.faithful(world.Scene("star", "red", "snow", "flat"), wanted)
    assert not judge.acceptable(world.Scene("star", "red", "snow", "flat"), wanted)  # the object is the subject
    judge.train_judge(tmp_path, steps=3, pool=300, log=lambda line: None)
    seen = judge.Judge(tmp_path).predict(world.reference_images("mosaic")[0])
    assert len(seen) == 1 and seen[0].shape in judge.HEADS["shape"]


def test_a_references_cutout_pasted_on_another_setting_shows_the_subject_there():
    """The composite probe's masks (`world.cutouts`): the object's pixels of each reference, so that pasted onto a
    picture of another setting the bundled judge sees the subject in that setting, not on the reference's brick wall
    (onto a sample with an object of its own, that object can show around and through the subject, unless cleared)."""
    from gal import composite
    from gal.locations import WEIGHTS
    from gal.miniature import judge

    CLEAR = composite.clearing(32)

    person = judge.Judge(WEIGHTS / "judge")
    for name in ("twotone_star", "spotted_ring"):
        cutouts = world.cutouts(name)
        images = world.reference_images(name)[0]
        assert len(cutouts) == len(images) and all(np.array_equal(c[0], im) for c, im in zip(cutouts, images))
        assert all(0.05 < mask.mean() < 0.3 for _, mask in cutouts)  # the object, not the picture
        rng = np.random.default_rng(0)
        snow = [world._to_uint8(world._downsample(world._background("snow", rng))) for _ in cutouts]
        for scene in person.predict(np.stack([composite.paste(s, composite.Subject(*c)) for s, c in zip(snow, cutouts)])):
            assert (scene.shape, scene.background) == (name, "snow"), scene
        # onto a picture with an object of its own, `clear` removes that object where the subject goes first
        yellow = world._rgb(world.COLORS["yellow"]) * 255
        shown = {0: 0.0, CLEAR: 0.0}  # how much of the yellow ring shows round and through the subject
        cleared = []
        for i, (reference, mask) in enumerate(cutouts):
            picture = world.render(world.Scene("ring", "yellow", "snow", "flat"), 100 + i)
            around = composite.grow(composite.outline(mask), CLEAR) & ~mask
            for clear in shown:
                out = composite.paste(picture, composite.Subject(reference, mask), clear)
                assert np.array_equal(out[mask], reference[mask])
                shown[clear] += (np.linalg.norm(out[around] - yellow, axis=-1) < 80).mean()
            cleared.append(out)
        assert shown[CLEAR] < shown[0] / 2, shown
        for scene in person.predict(np.stack(cleared)):
            assert (scene.shape, scene.background) == (name, "snow"), scene
