"""Two CPU processes (torchrun, as `accelerate launch` does) give the one-process run's result."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from conftest import run_args

pytestmark = pytest.mark.slow  # left out of `make test-fast`


@pytest.mark.parametrize("strategy", ["random", "uncertainty"])
def test_two_processes_match_one(tiny, tmp_path, strategy):
    """Random's picks do not depend on the scores; uncertainty's do (β, Ω, Eq. 10, adaptive sampling's waves), so
    it checks the scoring too."""
    config = tmp_path / "run.yaml"
    k = 1 if strategy == "uncertainty" else 2  # the tiny model opens one direction: with k = 2 Eq. 10 would end round 1
    # uncertainty samples adaptively: its waves are decided from the scores every process reads back
    sampling = "adaptive" if strategy == "uncertainty" else "full"
    config.write_text(f"m: 4\nk: {k}\nbatch_size: 2\nlr: 0.01\nsampling: {sampling}\n")  # torchrun's parser would take --m
    args = [a for a in run_args(tiny, "OUT", "--rounds", "3", "--strategy", strategy, "--gen-batch-size", "3")]
    for flag in ("--m", "--k"):
        i = args.index(flag)
        del args[i:i + 2]
    args += ["--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    gal = [sys.executable, "-m", "gal"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                str(Path(sys.executable).parent / "gal")]
    for name, launcher in (("one", gal), ("two", torchrun)):  # one port per test: they may run one after another
        launcher = [x.replace("29517", str(29517 + len(strategy))) for x in launcher]
        argv = [str(tmp_path / name) if a == "OUT" else a for a in args]
        subprocess.run(launcher + argv, check=True, env=env, capture_output=True, timeout=300)
    def show(name):
        return json.loads(subprocess.run(gal + ["show", str(tmp_path / name), "--json"], check=True,
                                                      capture_output=True, text=True, env=env).stdout)
    one, two = show("one"), show("two")
    assert len(one["rounds"]) == len(two["rounds"]) >= 2
    assert any(x["selected"] for x in one["rounds"][0]["anchors"])  # something was chosen, so this tests something
    for a, b in zip(one["rounds"], two["rounds"]):
        assert [x["selected"] for x in a["anchors"]] == [x["selected"] for x in b["anchors"]]
        assert [x["beta"] for x in a["anchors"]] == [x["beta"] for x in b["anchors"]]
        assert a["openness"] == pytest.approx(b["openness"]) and a["stop_reason"] == b["stop_reason"]
        assert [(x["path"], x["weight"]) for x in a["added"]] == [(x["path"], x["weight"]) for x in b["added"]]
        if a["checkpoint"]:
            w1, w2 = (load_file(tmp_path / n / a["checkpoint"] / "pytorch_lora_weights.safetensors") for n in ("one", "two"))
            assert w1.keys() == w2.keys()
            assert max(np.abs(w1[k] - w2[k]).max() for k in w1) < 1e-3
        for x, y in zip(a["anchors"], b["anchors"]):
            assert len(x["samples"]) == len(y["samples"])  # the same waves
            for s, t in zip(x["samples"], y["samples"]):
                assert s["seed"] == t["seed"] and s["path"] == t["path"]
                im1 = np.asarray(Image.open(tmp_path / "one" / s["path"]), dtype=int)
                im2 = np.asarray(Image.open(tmp_path / "two" / t["path"]), dtype=int)
                assert np.abs(im1 - im2).max() <= 2  # DDP's gradient all-reduce sums in another order
