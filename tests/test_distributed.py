"""Two CPU processes (torchrun, as `accelerate launch` does) give the one-process run's result."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import run_args


def test_two_processes_match_one(tiny, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("m: 4\nk: 2\nbatch_size: 2\nlr: 0.01\n")  # torchrun's own parser would take --m
    args = [a for a in run_args(tiny, "OUT", "--rounds", "3", "--strategy", "random", "--gen-batch-size", "3")]
    for flag in ("--m", "--k"):
        i = args.index(flag)
        del args[i:i + 2]
    args += ["--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    gal = [sys.executable, "-m", "gal"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                str(Path(sys.executable).parent / "gal")]
    for name, launcher in (("one", gal), ("two", torchrun)):
        argv = [str(tmp_path / name) if a == "OUT" else a for a in args]
        subprocess.run(launcher + argv, check=True, env=env, capture_output=True, timeout=300)
    def show(name):
        return json.loads(subprocess.run(gal + ["show", str(tmp_path / name), "--json"], check=True,
                                                      capture_output=True, text=True, env=env).stdout)
    one, two = show("one"), show("two")
    assert len(one["rounds"]) == len(two["rounds"]) == 3
    for a, b in zip(one["rounds"], two["rounds"]):
        assert [x["selected"] for x in a["anchors"]] == [x["selected"] for x in b["anchors"]]
        assert [x["path"] for x in a["added"]] == [x["path"] for x in b["added"]]
        for x, y in zip(a["anchors"], b["anchors"]):
            for s, t in zip(x["samples"], y["samples"]):
                assert s["seed"] == t["seed"] and s["path"] == t["path"]
                im1 = np.asarray(Image.open(tmp_path / "one" / s["path"]), dtype=int)
                im2 = np.asarray(Image.open(tmp_path / "two" / t["path"]), dtype=int)
                assert np.abs(im1 - im2).max() <= 2  # DDP's gradient all-reduce sums in another order
