"""The classes of what a real folder, disk, second terminal or typo can do to a run (issue 23): each ends in exit 0
with the run intact, or in one line and exit 2 with nothing written or changed; never a traceback, never lost or
silently changed data."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from gal.cli import main

from conftest import one_line_error, png_bytes, run_args

pytestmark = pytest.mark.hostile

# the cheapest complete run: one fine-tune step, no query
ONE_STEP = ["--rounds", "1", "--strategy", "none", "--train-steps", "1"]


def gal(*argv, env=None, timeout=300) -> subprocess.CompletedProcess:
    """`gal` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "gal", *map(str, argv)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != ".lock"}


# ---- 1. every check under the lock: two processes race on one folder ----------------------------------------

@pytest.mark.slow
def test_a_run_that_lost_the_race_refuses_and_leaves_the_finished_run_intact(tiny, tmp_path):
    """B checks the folder (new), loads its models and waits at a barrier before the lock; A runs and finishes;
    then B goes on. B must not carry on A's run with its own settings (here: one round more)."""
    out, barrier = tmp_path / "run", tmp_path / "barrier"
    second = subprocess.Popen([sys.executable, "-m", "gal", *run_args(tiny, out, "--strategy", "random"), "--rounds", "3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "GAL_PAUSE_AT": f"before-lock:{barrier}"})
    try:
        for _ in range(3000):  # B has examined the folder and loaded its models
            if Path(f"{barrier}.waiting").exists() or second.poll() is not None:
                break
            time.sleep(0.05)
        assert Path(f"{barrier}.waiting").exists(), second.communicate()
        first = gal(*run_args(tiny, out, "--rounds", "2", "--strategy", "random"))
        assert first.returncode == 0, first.stderr
        before = snapshot(out)
        Path(f"{barrier}.go").write_text("")
        _, err = second.communicate(timeout=300)
    finally:
        second.kill()
    assert second.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("gal: ")]
    assert len(lines) == 1 and "another gal process changed this folder" in lines[0] and "a finished run" in lines[0]
    assert "Traceback" not in err
    assert snapshot(out) == before  # one intact run, two rounds, nothing of B's in it
    assert json.loads(gal("show", out, "--json").stdout)["config"]["rounds"] == 2


# ---- 3. what a resume depends on is the run's own copy --------------------------------------------------------

def test_class_images_are_copied_into_the_run_and_a_changed_folder_changes_nothing(tiny, tmp_path, capsys):
    from gal.ledger import Ledger

    given_images = tmp_path / "class"
    given_images.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(given_images / f"{i}.png")
    out = tmp_path / "run"
    args = [a for a in run_args(tiny, out, "--rounds", "2", "--strategy", "human") if a != "--no-prior"]
    args += ["--prior", "--class-images", str(given_images)]
    assert main(args) == 0  # round 1 trained on the class images, then waits for its review
    ledger = Ledger(out)
    copies = ledger.class_images()
    assert [seed for _, seed, _ in copies] == [-1, -1, -1]
    assert [np.asarray(Image.open(out / p)).tolist() for _, _, p in copies] == [
        np.asarray(Image.open(given_images / f"{i}.png")).tolist() for i in range(3)]
    r = 1
    ledger.submit_review(r, [(s.anchor_idx, s.j) for s in ledger.samples(r)[:1]])
    ledger.close()
    shutil.rmtree(given_images)  # the user's folder is gone (or changed): the run trains on its own copies
    assert main(args) == 0
    assert json.loads(_show(out, capsys))["status"] == "finished"


def _show(out, capsys) -> str:
    capsys.readouterr()
    assert main(["show", str(out), "--json"]) == 0
    return capsys.readouterr().out


# ---- 4. every value checked before the first write -----------------------------------------------------------

def _strip(tiny, tmp_path):
    refs = tmp_path / "strip"
    refs.mkdir()
    Image.new("RGB", (1, 600), (9, 9, 9)).save(refs / "strip.png")
    return refs


LATE = {  # flags, or a function of (tiny, tmp_path) giving --references: the error's words
    "an empty --non-soi": (["--non-soi", ""], "--non-soi: empty text"),
    "a negative --seed": (["--seed", "-1"], "--seed -1: expected at least 0"),
    "fp16 on the CPU": (["--mixed-precision", "fp16"], "needs a CUDA GPU"),
    "cuda without a GPU": (["--device", "cuda"], "has no CUDA GPU"),
    "cuda:7": (["--device", "cuda:7"], "has no CUDA GPU"),
    "a device gal does not know": (["--device", "tpu"], "unknown device"),
    "a huge --resolution": (["--resolution", "100000"], "--resolution 100000: expected at most 4096"),
    "a huge --m": (["--m", "1000000"], "--m 1000000: expected at most"),
    "a huge --gen-batch-size": (["--gen-batch-size", "100000"], "expected 1 to 1024"),
    "a 1 x 600 image": (_strip, "the long side more than 8 times the short one"),
}


@pytest.mark.parametrize("case", LATE)
def test_values_checked_before_the_first_write(case, tiny, tmp_path, capsys):
    change, expected = LATE[case]
    out = tmp_path / "out"
    args = run_args(tiny, out)
    if callable(change):
        args[args.index("--references") + 1] = str(change(tiny, tmp_path))
    else:
        for flag, value in zip(change[::2], change[1::2]):
            if flag in args:
                args[args.index(flag) + 1] = value
            else:
                args += [flag, value]
    assert main(args) == 2
    assert expected in one_line_error(capsys)
    assert not out.exists()


def test_a_reference_whose_name_is_not_utf8_runs_with_a_plain_copy_name(tiny, tmp_path, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    name = os.fsdecode(b"chat-\xe9t\xe9.png")  # Latin-1 bytes: not UTF-8, read with surrogate escapes
    (refs / name).write_bytes(png_bytes())
    out = tmp_path / "run"
    args = run_args(tiny, out, *ONE_STEP)
    args[args.index("--references") + 1] = str(refs)
    assert main(args) == 0
    copies = [p.name for p in (out / "references").iterdir()]
    assert copies == ["00-chat-_t_.png"]


# ---- 5. damaged files named -----------------------------------------------------------------------------------

def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])


@pytest.mark.parametrize("what", ["checkpoint", "reference"])
@pytest.mark.parametrize("command", ["run", "eval"])
def test_a_truncated_file_of_the_run_is_named(what, command, reviewed_run, tmp_path, capsys):
    run, args = reviewed_run.copy(tmp_path / "run")
    path = (run / "rounds" / "1" / "checkpoint" / "pytorch_lora_weights.safetensors" if what == "checkpoint"
            else sorted((run / "references").iterdir())[0])
    _truncate(path)
    before = snapshot(run)
    capsys.readouterr()
    assert main(args if command == "run" else ["eval", str(run), "--n", "1"]) == 2
    line = one_line_error(capsys)
    assert str(path.parent if what == "checkpoint" else path) in line and "cannot" in line
    assert ("round 1" in line) if what == "checkpoint" else ("copy the reference image back" in line)
    assert snapshot(run) == before


@pytest.mark.parametrize("command", ["show", "eval", "report", "run"])
def test_a_ledger_that_is_a_folder_is_named(command, tiny, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "gal.sqlite").mkdir(parents=True)
    argv = run_args(tiny, run) if command == "run" else [command, str(run)]
    assert main(argv) == 2
    assert "gal.sqlite: is a folder" in one_line_error(capsys)


def test_odd_model_folders_and_lora_folders_are_named(tiny, tmp_path, capsys):
    odd = tmp_path / "odd"
    shutil.copytree(tiny / "pipeline", odd)
    for content, words in (("[1, 2]", "holds a list"), ('{"_class_name": ["x"]}', "does not personalize")):
        (odd / "model_index.json").write_text(content)
        assert main(run_args(tiny, tmp_path / "out") + ["--base", str(odd)]) == 2
        assert words in one_line_error(capsys)
        assert not (tmp_path / "out").exists()
    empty = tmp_path / "no-lora"
    empty.mkdir()
    (empty / "notes.txt").write_text("no weights here")
    assert main(["eval", "--base", str(tiny / "pipeline"), "--scorer", str(tiny / "clip"), "--references",
                 str(tiny / "references"), "--subject", "a <sks> ball", "--non-soi", "a ball", "--steps", "2",
                 "--lora", str(empty)]) == 2
    assert f"--lora {empty}: no LoRA checkpoints in this folder" in one_line_error(capsys)


@pytest.mark.parametrize("value", ["３", "²", "١٠", "1_0", "0x10", "  "])
@pytest.mark.parametrize("flag", ["--m", "--gen-batch-size", "--lr"])
def test_digit_like_characters_in_numbers_are_refused(flag, value, tiny, tmp_path, capsys):
    out = tmp_path / "out"
    args = run_args(tiny, out)
    args = args[:args.index(flag)] + args[args.index(flag) + 2:] if flag in args else args
    assert main(args + [flag, value]) == 2
    line = one_line_error(capsys)
    assert flag in line and ("expected" in line or "invalid" in line)
    assert not out.exists()


def test_a_nul_byte_in_a_review_url_is_not_found(reviewed_run, tmp_path):
    from starlette.testclient import TestClient

    from gal.review import create_app

    run = reviewed_run.copy(tmp_path / "run").folder
    client = TestClient(create_app(run, "t0k3n"))
    for path in ("/file/rounds%00/x.png?token=t0k3n", "/file/rounds/1/samples/a000-j00.png%00.png?token=t0k3n"):
        assert client.get(path).status_code == 404


# ---- 6. nonsense is refused, odd but meaningful input is read as meant ---------------------------------------

NONSENSE = {  # flag changes: the error's words
    "an empty --out": (["--out", ""], "--out: empty"),
    "a newline in --out": (["--out", "runs/a\nb"], "--out: a control character"),
    "a subject that is only a placeholder": (["--subject", "<sks>"], "only a placeholder"),
    "an unclosed placeholder": (["--subject", "a <sks ball"], "without its other half"),
    "an empty --subject-plain": (["--subject-plain", " "], "--subject-plain: empty text"),
    "a 10,000-character subject": (["--subject", "a <sks> " + "ball " * 2000], "expected at most 1000"),
    "a zero-width character in the subject": (["--subject", "a <sks>\u200b ball"], "a control character"),
}


@pytest.mark.parametrize("case", NONSENSE)
def test_nonsense_is_refused(case, tiny, tmp_path, capsys, monkeypatch):
    change, expected = NONSENSE[case]
    monkeypatch.chdir(tmp_path)  # an empty --out would be this folder
    args = run_args(tiny, tmp_path / "out")
    for flag, value in zip(change[::2], change[1::2]):
        args = args[:args.index(flag)] + args[args.index(flag) + 2:] if flag in args else args
        args += [flag, value]
    assert main(args) == 2
    assert expected in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_duplicate_yaml_keys_are_refused_with_their_lines(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("m: 4\nk: 2\nm: 8\n")
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "'m' is given twice (line 1 and line 3)" in one_line_error(capsys)


def test_byte_order_marks_are_dropped_from_anchors_and_captions(tiny, tmp_path):
    from gal.ledger import Ledger

    anchors = tmp_path / "anchors.txt"
    anchors.write_bytes("\ufeff{} in a museum\n{} on a boat\n\ufeff{} in a garden\n".encode())
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "a.png").write_bytes(png_bytes())
    (refs / "a.txt").write_bytes("\ufeffa ball on grass\n".encode())
    out = tmp_path / "run"
    args = run_args(tiny, out, *ONE_STEP, "--k", "1")
    args[args.index("--anchors") + 1], args[args.index("--references") + 1] = str(anchors), str(refs)
    assert main(args) == 0
    ledger = Ledger(out)
    assert [a.template for a in ledger.anchors()] == ["{} in a museum", "{} on a boat", "{} in a garden"]
    assert ledger.added(0)[0].caption == "a ball on grass"
    ledger.close()


def test_a_float_tiff_is_converted_not_clipped_to_black(tmp_path):
    from gal.references import load_rgb

    Image.fromarray(np.full((16, 16), 0.5, dtype=np.float32), mode="F").save(tmp_path / "x.tif")
    assert 120 <= load_rgb(tmp_path / "x.tif").getpixel((0, 0))[0] <= 135


def test_a_megabyte_caption_is_refused(tmp_path):
    from gal.errors import GalError
    from gal.references import read_references

    (tmp_path / "a.png").write_bytes(png_bytes())
    (tmp_path / "a.txt").write_text("a ball " * 150_000)
    with pytest.raises(GalError, match=r"a caption of 1049999 characters; expected one line of at most 1000"):
        read_references(tmp_path)


def test_gal_eval_of_a_run_refuses_a_lora(reviewed_run, tmp_path, capsys):
    run = reviewed_run.copy(tmp_path / "run").folder
    assert main(["eval", str(run), "--lora", str(run / "rounds" / "1" / "checkpoint")]) == 2
    assert "gal eval RUN evaluates the run's own rounds" in one_line_error(capsys)


# ---- 7. messages that say what happened ----------------------------------------------------------------------

def test_a_missing_class_images_folder_is_named_as_such(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    args = [a for a in run_args(tiny, out) if a != "--no-prior"] + ["--prior", "--class-images", str(tmp_path / "nope")]
    assert main(args) == 2
    line = one_line_error(capsys)
    assert line.startswith(f"gal: error: --class-images {tmp_path / 'nope'}: not a folder")
    assert not out.exists()


def test_an_avif_reference_is_read(tmp_path):
    from gal.references import image_suffixes, read_references

    assert ".avif" in image_suffixes()  # Pillow 11.2 and newer (pyproject.toml) read AVIF
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "a.avif")
    (ref,) = read_references(tmp_path)
    assert ref.image.size == (32, 32)


@pytest.mark.slow
def test_a_file_size_limit_is_named_not_taken_for_a_damaged_ledger(tiny, tmp_path):
    out = tmp_path / "run"
    limit = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048)); "
    done = subprocess.run([sys.executable, "-c", limit + "from gal.cli import entry; entry()", *run_args(tiny, out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    line = [l for l in done.stderr.splitlines() if l.startswith("gal: error")][-1]
    assert "file-size limit" in line and "damaged" not in line
    assert main(run_args(tiny, out)) == 0  # as the line says: without the limit, the same command goes on


# ---- 8. what a user points at is never written over, and no mask is silently wrong (issue 36) -----------------

def _square(size=16, value=255, dtype=np.uint8) -> Image.Image:
    """A mask of a 16 x 16 photo: `value` on its middle quarter (the subject), 0 around it."""
    values = np.zeros((size, size), dtype)
    values[4:12, 4:12] = value
    return Image.fromarray(values)


def _on_transparency(folder: Path, name: str, colour=(200, 30, 30)) -> None:
    image = Image.new("RGBA", (16, 16), (*colour, 255))
    image.putalpha(_square())
    image.save(folder / name)


MASKS_READ = {  # beside the photo a.png (16 x 16): what is written, and the mask's mean (None: no mask)
    "a mask saved as JPEG": (lambda f: _square().save(f / "a.mask.jpg"), 0.25),
    "an upper-case suffix": (lambda f: _square().save(f / "a.MASK.PNG"), 0.25),
    "a 16-bit soft mask": (lambda f: _square(value=32768, dtype=np.uint16).save(f / "a.mask.png"), 0.125),
    "a bilevel mask": (lambda f: _square().convert("1").save(f / "a.mask.png"), 0.25),
    "white on transparency": (lambda f: _on_transparency(f, "a.mask.png", (255, 255, 255)), 0.25),
    "the photo's own alpha": (lambda f: _on_transparency(f, "a.png"), 0.25),
    "an opaque RGBA photo": (lambda f: Image.new("RGBA", (16, 16), (200, 30, 30, 255)).save(f / "a.png"), None),
}


@pytest.mark.parametrize("case", MASKS_READ)
def test_masks_are_read_by_one_contract_and_never_taken_for_photos(case, tmp_path):
    from gal.masks import given_masks
    from gal.references import read_references

    write, mean = MASKS_READ[case]
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "a.png")
    write(tmp_path)
    refs = read_references(tmp_path)
    assert [r.source.name for r in refs] == ["a.png"]  # the mask is no second photo of the subject
    (mask,) = given_masks(refs)
    if mean is None:
        assert mask is None
    else:
        assert mask.shape == (16, 16) and mask.mean() == pytest.approx(mean, abs=0.03)


MASKS_REFUSED = {  # beside the photo a.png (16 x 16): what is written, and the error's words
    "an all-white mask": (lambda f: Image.new("L", (16, 16), 255).save(f / "a.mask.png"), "all subject"),
    "an all-black mask": (lambda f: Image.new("L", (16, 16), 0).save(f / "a.mask.png"), "no subject in it"),
    "a mask of another size": (lambda f: _square(size=20).save(f / "a.mask.png"),
                               "20x20 pixels; expected the mask of a.png at its size, 16x16"),
    "two masks of one photo": (lambda f: [_square().save(f / n) for n in ("a.mask.png", "a.mask.webp")],
                               "2 masks of a.png (a.mask.png, a.mask.webp)"),
    "a mask that is no image": (lambda f: (f / "a.mask.png").write_bytes(b"white on the cat"), "cannot read the mask"),
    "a photo transparent everywhere": (lambda f: Image.new("RGBA", (16, 16), (200, 30, 30, 0)).save(f / "a.png"),
                                       "transparent everywhere"),
}


@pytest.mark.parametrize("case", MASKS_REFUSED)
def test_masks_no_one_can_mean_are_refused_in_one_line(case, tmp_path):
    from gal.errors import GalError
    from gal.masks import given_masks
    from gal.references import read_references

    write, words = MASKS_REFUSED[case]
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "a.png")
    write(tmp_path)
    with pytest.raises(GalError, match=re.escape(words)) as e:
        given_masks(read_references(tmp_path))
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)


def _masked(tiny, folder: Path, masks: dict) -> Path:
    """The tiny references with `masks` (name: mask image) beside them."""
    shutil.copytree(tiny / "references", folder)
    for name, image in masks.items():
        image.save(folder / name)
    return folder


def _disc() -> Image.Image:
    """A mask of a tiny reference (48 x 48): a disc."""
    mask = Image.new("L", (48, 48), 0)
    ImageDraw.Draw(mask).ellipse([12, 12, 36, 36], fill=255)
    return mask


@pytest.fixture(scope="module")
def doctor(tiny, tmp_path_factory):
    """`gal eval --base ... [flags]` on the tiny models, as small as it goes: one test prompt, two anchors."""
    prompts = tmp_path_factory.mktemp("doctor")
    (prompts / "anchors.txt").write_text("{} in a museum\n{} on a boat\n")
    (prompts / "test.txt").write_text("{} in the snow\n")
    return lambda *extra: ["eval", "--base", str(tiny / "pipeline"), "--scorer", str(tiny / "clip"), "--references",
                           str(tiny / "references"), "--subject", "a <sks> ball", "--non-soi", "a ball on grass",
                           "--anchors", str(prompts / "anchors.txt"), "--prompts", str(prompts / "test.txt"),
                           "--steps", "2", "--n", "1", "--m", "2", *map(str, extra)]


@pytest.mark.parametrize("command", ["run", "eval --masked"])
def test_run_and_eval_refuse_the_same_mask_before_any_model_loads(command, tiny, doctor, tmp_path, capsys):
    refs = _masked(tiny, tmp_path / "refs", {"ref0.mask.png": Image.new("L", (48, 48), 0)})
    out = tmp_path / "out"
    args = run_args(tiny, out) if command == "run" else doctor("--masked")
    args[args.index("--references") + 1] = str(refs)
    assert main(args) == 2
    assert f"{refs / 'ref0.mask.png'}: no subject in it" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refs"]


def test_masks_for_some_references_and_orphan_masks_are_named(tiny, tmp_path, capsys):
    from gal.config import Config
    from gal.preflight import examine

    refs = _masked(tiny, tmp_path / "refs", {"ref0.mask.png": _disc(), "ref9.mask.png": _disc()})
    config = Config(references=str(refs), subject="a <sks> ball", base=str(tiny / "pipeline"), scorer=str(tiny / "clip"),
                    non_soi=["a ball on grass"], out=str(tmp_path / "run"))
    assert examine(config).cfg.added == "samples"  # masks used only where every reference has one
    err = capsys.readouterr().err
    assert "ref9.mask.png: a mask with no image of its name beside it; ignored" in err
    assert "2 of the 3 references have no mask (ref1.png, ref2.png); a run uses masks only where every" in err


def test_a_resumed_run_refuses_a_copied_mask_of_another_size(reviewed_run, tmp_path, capsys):
    run, args = reviewed_run.copy(tmp_path / "run")
    for image in sorted((run / "references").glob("*.png")):
        _square(size=20).save(image.with_name(image.stem + ".mask.png"))  # not the copies' 48 x 48
    before = snapshot(run)
    capsys.readouterr()
    assert main(args + ["--masked-loss", "--force"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gal: error")]
    assert len(errors) == 1 and "00-ref0.mask.png: 20x20 pixels; expected the mask of 00-ref0.png at its size" in errors[0]
    assert snapshot(run) == before  # the changed config is not recorded either


@pytest.fixture
def lora(finished_run, tmp_path) -> Path:
    """A copy of a round's LoRA file."""
    path = tmp_path / "loras" / "cat.safetensors"
    path.parent.mkdir()
    shutil.copy(finished_run.folder / "rounds" / "1" / "checkpoint" / "pytorch_lora_weights.safetensors", path)
    return path


OUTPUTS = {  # --report, and what else the command is given: the error's words
    "the LoRA it scores": (lambda t, lora: (lora, []), "is --lora"),
    "a folder": (lambda t, lora: (t, []), "is a folder"),
    "under a file": (lambda t, lora: (lora / "which.html", []), "is a file, so nothing can be made under it"),
    "a file that is no report": (lambda t, lora: (lora.parent / "notes.txt", []), "not an HTML page"),
    "inside the run it scores": (lambda t, lora: (t / "run" / "which.html", ["--lora", t / "run"]), "inside --lora"),
}


@pytest.mark.parametrize("case", OUTPUTS)
def test_a_report_never_lands_on_what_the_command_reads(case, lora, finished_run, doctor, tmp_path, capsys):
    finished_run.copy(tmp_path / "run")
    (lora.parent / "notes.txt").write_text("my notes")
    report, extra = OUTPUTS[case][0](tmp_path, lora)
    before = snapshot(tmp_path)
    assert main(doctor("--lora", str(lora), *extra, "--report", report)) == 2
    assert OUTPUTS[case][1] in one_line_error(capsys)
    assert snapshot(tmp_path) == before  # refused before any work: nothing written, nothing changed


def test_a_run_never_lands_in_its_references(tiny, tmp_path, capsys):
    refs = shutil.copytree(tiny / "references", tmp_path / "refs")
    args = run_args(tiny, refs / "run")
    args[args.index("--references") + 1] = str(refs)
    before = snapshot(tmp_path)
    assert main(args) == 2
    assert f"--out {refs / 'run'}: inside --references {refs}, which this command reads" in one_line_error(capsys)
    assert snapshot(tmp_path) == before


BENCH_OUTPUTS = {  # gal bench flags ({file}: a file that is there): the error's words
    "--out a file": (["--out", "{file}"], "--out {file}: is a file; expected a folder"),
    "--out under a file": (["--out", "{file}/bench"], "is a file, so nothing can be made under it"),
    "--summary over its --merge": (["--summary", "{file}", "--merge", "{file}"], "--summary {file}: is --merge"),
    "--results a folder": (["--results", "{folder}"], "--results {folder}: is a folder"),
}


@pytest.mark.parametrize("case", BENCH_OUTPUTS)
def test_bench_outputs_are_checked_before_the_bench(case, tmp_path, capsys):
    file = tmp_path / "bench.json"
    file.write_text("{}")
    flags, words = BENCH_OUTPUTS[case]
    fill = {"file": file, "folder": tmp_path}
    before = snapshot(tmp_path)
    assert main(["bench", "--quick", "--only", "no-such-subject", "--out", str(tmp_path / "bench"),
                 *(f.format(**fill) for f in flags)]) == 2
    assert words.format(**fill) in one_line_error(capsys)
    assert snapshot(tmp_path) == before


def test_the_doctor_reads_an_emptied_run_without_writing_its_ledger(finished_run, doctor, tmp_path, capsys):
    run = finished_run.copy(tmp_path / "run").folder
    (run / "gal.sqlite").write_bytes(b"")
    assert main(doctor("--lora", str(run))) == 2
    line = one_line_error(capsys)
    assert "gal.sqlite: the run's ledger is damaged" in line and "checkpoints of round(s) 1, 2" in line
    assert (run / "gal.sqlite").read_bytes() == b""
    for command in (["show", str(run)], ["report", str(run)]):  # the other readers of a run
        assert main(command) == 2
        assert "gal.sqlite: the run's ledger is damaged" in one_line_error(capsys)
        assert (run / "gal.sqlite").read_bytes() == b""


def test_the_doctor_scores_each_checkpoint_once(lora, finished_run, doctor, capsys):
    assert main(doctor("--lora", str(lora), "--lora", str(lora))) == 2
    assert f"--lora {lora}: given twice; expected each checkpoint once" in one_line_error(capsys)
    run = finished_run.folder
    assert main(doctor("--lora", str(run), "--lora", str(run / "rounds" / "2" / "checkpoint"))) == 2
    assert f"is also among the checkpoints of --lora {run}" in one_line_error(capsys)


def test_the_doctor_refuses_a_lora_of_the_text_encoder_alone(doctor, tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "te.safetensors"
    save_file({f"text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_{ab}.weight": torch.zeros(shape)
               for ab, shape in (("A", (4, 32)), ("B", (32, 4)))}, str(path))
    assert main(doctor("--lora", str(path))) == 2
    assert f"--lora {path}: none of its weights fits this base's unet" in one_line_error(capsys)


def test_the_doctor_labels_two_files_of_one_name_apart_whatever_the_name(lora, doctor, tmp_path, capsys):
    """Two checkpoints named alike in two folders (a name that is not UTF-8), each at two scales given one by one."""
    name = os.fsdecode(b"chat-\xe9.safetensors")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(lora, tmp_path / folder / name)
    capsys.readouterr()
    assert main(doctor("--lora", str(tmp_path / "a" / name), "--lora", str(tmp_path / "b" / name),
                        "--lora-scale", "0.5", "--lora-scale", "1", "--json")) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["checkpoint"], r["scale"]) for r in rows] == [(f"{f}/chat-\\xe9", s) for f in "ab" for s in (0.5, 1.0)]
    assert rows[0]["txt_aln"] == pytest.approx(rows[2]["txt_aln"])  # the same weights, read under that name


# ---- the CLI's flags, any value -------------------------------------------------------------------------------

TEXT_FLAGS = ["--subject", "--subject-plain", "--non-soi", "--out", "--device", "--gen-batch-size"]
NUMBER_FLAGS = ["--m", "--k", "--rounds", "--seed", "--lr", "--guidance", "--resolution", "--lambda",
                "--lora-rank", "--steps", "--batch-size", "--prior-loss-weight"]


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(flag=st.sampled_from(TEXT_FLAGS + NUMBER_FLAGS),
       value=st.one_of(st.text(max_size=30), st.integers(-2**70, 2**70).map(str),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr)))
@example(flag="--lr", value="3.914511618742852e+37")  # found 2026-12-02: AdamW's step overflowed float32 and raised
def test_any_flag_value_runs_or_is_refused_in_one_line(flag, value, tiny, tmp_path_factory):
    import contextlib
    import io

    work = tmp_path_factory.mktemp("fuzz")
    out = work / "out"
    args = run_args(tiny, out, *ONE_STEP)
    args = args[:args.index(flag)] + args[args.index(flag) + 2:] if flag in args else args
    err = io.StringIO()
    cwd = os.getcwd()
    os.chdir(work)  # a relative --out lands here
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(args + [f"{flag}={value}"])
            except SystemExit as e:  # argparse's own refusal (gal.cli.Parser: one line)
                code = e.code
    finally:
        os.chdir(cwd)
    assert code in (0, 2), err.getvalue()
    lines = [line for line in err.getvalue().splitlines() if line.startswith("gal: error")]
    if code == 2:
        assert len(lines) == 1
        assert sorted(p.name for p in work.iterdir()) == []  # no folder left after a refusal
