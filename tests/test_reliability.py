"""Crash safety, locks, pickles, warnings: what a serious run needs besides the algorithm."""

import errno
import json
import os

import pytest
import torch

from gal.cli import main
from gal.storage import RunLock

from conftest import run_args


def summary(out, capsys):
    capsys.readouterr()
    assert main(["show", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_torch_load_is_never_reached(tiny, tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError(f"torch.load reached with {args[:1]}")

    monkeypatch.setattr(torch, "load", refuse)
    out = tmp_path / "run"
    assert main(run_args(tiny, out, "--rounds", "2", "--strategy", "random")) == 0
    assert main(run_args(tiny, out, "--rounds", "2", "--strategy", "random")) == 0  # the finished run, read back


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "full"])
def test_torch_load_is_never_reached_when_checkpoints_are_loaded(tiny, tmp_path, monkeypatch, capsys, method):
    """A resumed run loads its round's checkpoint, `gal eval` loads every round's: safetensors only."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"torch.load reached with {args[:1]}")

    from gal.personalize import Personalizer

    loaded, load = [], Personalizer.load
    monkeypatch.setattr(Personalizer, "load", lambda self, folder: loaded.append(folder) or load(self, folder))
    monkeypatch.setattr(torch, "load", refuse)
    out = tmp_path / "run"
    args = run_args(tiny, out, "--rounds", "2", "--strategy", "human", "--method", method)
    assert main(args) == 0 and "waiting for review" in capsys.readouterr().out  # round 1, then the review
    assert loaded == []
    assert main(args) == 0 and "waiting for review" in capsys.readouterr().out  # resumed: loads round 1's weights
    assert len(loaded) == 1
    assert main(["eval", str(out), "--n", "1"]) == 0
    assert len(loaded) == 2


def test_pickle_only_model_is_refused_unless_allowed(tiny, tmp_path, capsys):
    from diffusers import StableDiffusionPipeline

    pickled = tmp_path / "pickled"
    StableDiffusionPipeline.from_pretrained(tiny / "pipeline", safety_checker=None).save_pretrained(
        pickled, safe_serialization=False)
    assert not list((pickled / "unet").rglob("*.safetensors"))
    out = tmp_path / "run"
    args = run_args(tiny, out, "--rounds", "1")
    args[args.index("--base") + 1] = str(pickled)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "only pickle weights" in err and "--allow-pickle" in err and not out.exists()


def test_second_run_in_a_locked_folder_is_refused_and_a_stale_lock_is_taken_over(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        assert main(run_args(tiny, out, "--rounds", "1")) == 2
        assert f"pid {os.getpid()}" in capsys.readouterr().err
    (out / ".lock").write_text("999999")  # left by a process that died: no OS lock on it
    assert main(run_args(tiny, out, "--rounds", "1")) == 0


@pytest.mark.slow
def test_full_disk_stops_cleanly_and_the_run_resumes_to_the_same_result(tiny, tmp_path, monkeypatch, capsys):
    extra = ("--rounds", "3", "--strategy", "random")
    clean, full = tmp_path / "clean", tmp_path / "full"
    assert main(run_args(tiny, clean, *extra)) == 0
    import gal.storage

    real_fsync, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > 12:  # references, config and some samples get written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(gal.storage.os, "fsync", fsync)
    capsys.readouterr()
    assert main(run_args(tiny, full, *extra)) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("gal: ")]  # progress bars aside
    assert len(err) == 1 and "no space left" in err[0]
    monkeypatch.setattr(gal.storage.os, "fsync", real_fsync)
    assert main(run_args(tiny, full, *extra)) == 0
    a, b = summary(clean, capsys), summary(full, capsys)
    assert [[x["selected"] for x in r["anchors"]] for r in a["rounds"]] == \
           [[x["selected"] for x in r["anchors"]] for r in b["rounds"]]
    assert [r["openness"] for r in a["rounds"]] == [r["openness"] for r in b["rounds"]]


def test_nan_loss_aborts_the_round_with_a_message_and_keeps_the_data(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny, out, "--rounds", "2", "--lr", "1e20", "--train-steps", "8")) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("gal: ")]
    assert len(err) == 1 and "loss became" in err[0] and "--lr" in err[0]
    assert (out / "gal.sqlite").exists() and len(list((out / "references").iterdir())) == 3


@pytest.mark.slow
def test_a_run_that_diverged_goes_on_with_a_new_lr_only_with_force(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    args = run_args(tiny, out, "--rounds", "2", "--strategy", "random")
    assert main(args + ["--lr", "1e20", "--train-steps", "8"]) == 2  # NaN loss: the round aborts
    assert main(args + ["--lr", "1e-4", "--train-steps", "8"]) == 2  # a changed config is refused ...
    assert "pass --force" in capsys.readouterr().err
    assert main(args + ["--lr", "1e-4", "--train-steps", "8", "--force"]) == 0  # ... unless forced
    assert summary(out, capsys)["config"]["lr"] == 1e-4
    assert summary(out, capsys)["status"] == "finished"


def test_input_warnings(tiny, tmp_path, capsys):
    from PIL import Image

    refs = tmp_path / "refs"
    refs.mkdir()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(refs / "small.png")
    anchors = tmp_path / "anchors.txt"
    anchors.write_text("{} in a museum\n{} " + "on a very long and winding road " * 4 + "\n")
    out = tmp_path / "run"
    args = run_args(tiny, out, "--rounds", "1", "--k", "1")
    args[args.index("--references") + 1] = str(refs)
    args[args.index("--anchors") + 1] = str(anchors)
    args[args.index("--subject") + 1] = "a <b> ball"  # 'b' is a word of the tiny tokenizer's vocabulary
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "small.png: 8x8 is much smaller" in err
    assert "exceed the text encoder's 77 tokens" in err
    assert "placeholder <b> is the existing word" in err


def test_heic_renamed_to_jpg_is_refused(tiny, tmp_path, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "IMG_0001.jpg").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    args = run_args(tiny, tmp_path / "run", "--rounds", "1")
    args[args.index("--references") + 1] = str(refs)
    assert main(args) == 2
    assert "IMG_0001.jpg: not a readable image" in capsys.readouterr().err
