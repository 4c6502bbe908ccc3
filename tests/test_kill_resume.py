"""The small version of benchmarks/kill_resume.py: three SIGKILLs at random moments, each resumed."""

import importlib.util
from pathlib import Path

from conftest import run_args


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


def test_the_comparison_sees_a_difference(tiny, tmp_path):
    """The torture test can fail: a run with another seed is not identical."""
    import subprocess

    bench = load_benchmark()
    args = run_args(tiny, "unused", "--rounds", "2", "--strategy", "random")
    args = args[:args.index("--out")]
    subprocess.run(bench.gal(*args, "--out", str(tmp_path / "a")), check=True, capture_output=True)
    subprocess.run(bench.gal(*args, "--seed", "7", "--out", str(tmp_path / "b")), check=True, capture_output=True)
    assert bench.compare(tmp_path / "a", tmp_path / "b")


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(tiny, tmp_path):
    """The same under torchrun (as `accelerate launch`): the whole process group is killed once."""
    bench = load_benchmark()
    values = {"base": str(tiny / "pipeline"), "scorer": str(tiny / "clip"), "references": str(tiny / "references"),
              "anchors": str(tiny / "anchors6.txt"), **bench.SETTINGS, "rounds": 2, "batch_size": 2}
    report = bench.torture(1, tmp_path, bench.config_file(tmp_path, values), seed=2, log=lambda line: None,
                           processes=2)
    assert len(report["kills"]) == 1
    assert report["identical"], report["runs"]
