"""The small version of benchmarks/kill_resume.py: three SIGKILLs at random moments, each resumed."""

import importlib.util
from pathlib import Path

import pytest

from conftest import run_args

pytestmark = pytest.mark.slow  # left out of `make test-fast`


def load_benchmark():
    path = Path(__file__).parent.parent / "benchmarks" / "kill_resume.py"
    spec = importlib.util.spec_from_file_location("kill_resume", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_kills_resume_to_the_uninterrupted_result(tiny, tmp_path):
    bench = load_benchmark()
    args = run_args(tiny, "unused", "--rounds", "3", "--strategy", "random", "--gen-batch-size", "2",
                    "--train-steps", "20")
    args = args[:args.index("--out")]
    report = bench.torture(3, tmp_path, args, seed=1, log=lambda line: None)
    assert len(report["kills"]) == 3
    assert report["identical"], report["runs"]


def test_the_comparison_sees_a_difference(finished_run, tmp_path):
    """The torture test can fail: a copy of a finished run is identical, and one byte changed in an added image or in
    a checkpoint is not."""
    from gal.ledger import Ledger

    bench = load_benchmark()
    same = finished_run.copy(tmp_path / "same").folder
    assert bench.compare(finished_run.folder, same) == []
    ledger = Ledger(same)
    added = ledger.added(1)[0].path
    ledger.close()
    for i, changed in enumerate((added, "rounds/1/checkpoint/pytorch_lora_weights.safetensors")):
        other = finished_run.copy(tmp_path / f"other{i}").folder
        target = other / changed
        data = bytearray(target.read_bytes())
        data[-9] ^= 1
        target.write_bytes(bytes(data))
        assert bench.compare(finished_run.folder, other), changed


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(tiny, tmp_path):
    """The same under torchrun (as `accelerate launch`): the whole process group is killed once."""
    bench = load_benchmark()
    values = {"base": str(tiny / "pipeline"), "scorer": str(tiny / "clip"), "references": str(tiny / "references"),
              "anchors": str(tiny / "anchors6.txt"), **bench.SETTINGS, "rounds": 2, "batch_size": 2}
    report = bench.torture(1, tmp_path, bench.config_file(tmp_path, values), seed=2, log=lambda line: None,
                           processes=2)
    assert len(report["kills"]) == 1
    assert report["identical"], report["runs"]
