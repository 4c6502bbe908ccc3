"""What the tests share: tiny random models in the real on-disk layouts, the run folders many tests start from (built
once per test process, each test working on its own copy), and the helpers that read a run the way a user does.

`make test-fast` runs the tests not marked `slow`: every module's contract (the pure functions, the refusals, one SD
run end to end, one kill and resume). `make test` runs them all."""

import io
import json
import math
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach a hub
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models gain nothing from threads; oversubscription costs a lot

import shutil  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NamedTuple  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402
from PIL import Image  # noqa: E402

settings.register_profile("gal", deadline=None)  # timing varies on shared CI machines; correctness does not
settings.load_profile("gal")

torch.set_num_threads(1)

from fixtures.families import build_pipeline  # noqa: E402  (after the environment above)
from fixtures.models import build_clip, write_references  # noqa: E402
from gal.cli import main  # noqa: E402


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny random SD pipeline and CLIP scorer saved in the real layouts, plus reference images."""
    root = tmp_path_factory.mktemp("tiny")
    build_pipeline(root / "pipeline")
    build_clip(root / "clip")
    write_references(root / "references")
    anchors = root / "anchors6.txt"
    anchors.write_text("{} in a workshop\n{} in a museum\n{} on a plane\n{} on a boat\n{} in a garden\n{} under a tree\n")
    return root


def run_args(tiny, out, *extra):
    """A small but complete `gal run` command line on the tiny models."""
    return ["run", "--base", str(tiny / "pipeline"), "--scorer", str(tiny / "clip"),
            "--references", str(tiny / "references"), "--subject", "a <sks> ball", "--non-soi", "a ball on grass",
            "--anchors", str(tiny / "anchors6.txt"), "--m", "4", "--k", "2", "--train-steps", "4", "--steps", "3",
            "--no-prior", "--out", str(out), *extra]


def flags(fields: dict) -> list[str]:
    """`gal.Config` fields (e.g. `gal.miniature.inputs.inputs`') as `gal run` flags."""
    return [x for key, value in fields.items() for x in (f"--{key.replace('_', '-')}", value)]


# ---- run folders, built once per test process --------------------------------------------------------------------

class Run(NamedTuple):
    folder: Path
    args: list[str]  # the `gal run` command line that made it (and resumes it)

    def copy(self, to: Path) -> "Run":
        """A copy of the run in `to`, with its command line pointing there: a test's own run to change."""
        shutil.copytree(self.folder, to)
        return Run(to, [str(to) if a == str(self.folder) else a for a in self.args])


@pytest.fixture(scope="session")
def finished_run(tiny, tmp_path_factory) -> Run:
    """A finished random-strategy run of two rounds (round 2 trained, nothing evaluated). Copy it to change it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    args = run_args(tiny, out, "--rounds", "2", "--strategy", "random")
    assert main(args) == 0
    return Run(out, args)


@pytest.fixture(scope="session")
def human_run(tiny, tmp_path_factory) -> Run:
    """A --strategy human run (the balance scheme, three rounds) waiting for its first review: round 1 trained and
    queried. Copy it to change it."""
    out = tmp_path_factory.mktemp("human") / "run"
    args = run_args(tiny, out, "--rounds", "3", "--strategy", "human", "--balance")
    assert main(args) == 0
    return Run(out, args)


@pytest.fixture(scope="session")
def reviewed_run(human_run, tmp_path_factory) -> Run:
    """`human_run` with a person's review of two of round 1's images submitted (round 1 is not closed yet: the next
    `gal run` closes it and trains round 2)."""
    from gal.ledger import Ledger

    run = human_run.copy(tmp_path_factory.mktemp("reviewed") / "run")
    ledger = Ledger(run.folder)
    ledger.submit_review(1, [(s.anchor_idx, s.j) for s in ledger.samples(1)[:8:4]])
    ledger.close()
    return run


@pytest.fixture(scope="session")
def waiting_run(reviewed_run, tmp_path_factory) -> Run:
    """`reviewed_run` resumed: round 1 closed with its two added images, round 2 trained and queried, waiting for its
    review."""
    run = reviewed_run.copy(tmp_path_factory.mktemp("waiting") / "run")
    assert main(run.args) == 0
    return run


# ---- reading a run as a user does --------------------------------------------------------------------------------

def show_json(run_dir, capsys) -> dict:
    capsys.readouterr()
    assert main(["show", str(run_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gal: error: "), err
    return err[0]


def png_bytes(size=(32, 32), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def ledger_samples(out: Path) -> int:
    """How many samples a run's ledger holds (0 before it has one), read while another process writes it."""
    try:
        return sqlite3.connect(out / "gal.sqlite", timeout=1).execute("SELECT count(*) FROM sample").fetchone()[0]
    except sqlite3.Error:
        return 0


def killed_at(point: str, args: list[str], barrier: Path, timeout: float = 300) -> None:
    """`gal *args` in a process of its own, SIGKILLed while it waits at `point` (`gal.storage.pause_point`, e.g.
    "samples#3": right after its third batch of samples is recorded): the kill lands there, on any machine."""
    proc = subprocess.Popen([sys.executable, "-m", "gal", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "GAL_PAUSE_AT": f"{point}:{barrier}"})
    deadline = time.monotonic() + timeout
    while not Path(f"{barrier}.waiting").exists():
        assert proc.poll() is None, f"the run ended (status {proc.returncode}) before it reached {point}"
        assert time.monotonic() < deadline, f"the run did not reach {point} in {timeout} s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def entropy(beta):
    return 0.0 if beta in (0.0, 1.0) else -((1 - beta) * math.log(1 - beta) + beta * math.log(beta))


def check_against_equations(summary):
    """Recompute Eq. 6-10 and the selection from the scores the run recorded."""
    cfg = summary["config"]
    selected_before = set()
    for r in summary["rounds"]:
        anchors = r["anchors"]
        if not anchors:  # a round without a query: the last one
            assert r["stopped"] and r is summary["rounds"][-1]
            continue
        assert not selected_before & {a["index"] for a in anchors}  # chosen directions leave the pool
        omegas = []
        for a in anchors:
            assert len(a["samples"]) == cfg["m"]
            phi = [int(s["sim_anchor"] <= s["sim_non_soi"]) for s in a["samples"]]  # Eq. 8
            assert phi == [s["overfit"] for s in a["samples"]]
            beta = sum(phi) / len(phi)  # Eq. 7
            assert a["beta"] == pytest.approx(beta)
            assert a["entropy"] == pytest.approx(entropy(beta))  # Eq. 6
            omegas.append(a["entropy"])
        delta = cfg["lambda"] / len(anchors) * sum(omegas)  # Eq. 9
        assert r["openness"] == pytest.approx(delta)
        chosen = [a for a in anchors if a["selected"]]
        if cfg["strategy"] == "uncertainty":
            stop = sum(o > 0 for o in omegas) < cfg["k"]  # Eq. 10
            assert r["stopped"] == stop
            if not stop:
                ranked = sorted(anchors, key=lambda a: (-a["entropy"], a["index"]))[:cfg["k"]]
                assert {a["index"] for a in chosen} == {a["index"] for a in ranked}
        if not r["stopped"]:
            assert len(chosen) == len(r["added"]) == cfg["k"]
            for a, added in zip(chosen, r["added"]):
                assert added["anchor_index"] == a["index"] and added["prompt"] == a["prompt"]
                assert added["weight"] == pytest.approx(1.0 if cfg["balance"] == "off" else delta)
                if cfg["strategy"] in ("uncertainty", "clip"):
                    best = max(a["samples"], key=lambda s: (s["sim_anchor"], -s["j"]))
                    assert added["path"] == best["path"]
        selected_before |= {a["index"] for a in chosen}


# The longest tests (a minute or more each on 2 cores), first: with two xdist workers, one of them started last would
# keep its worker busy after the other has finished (`make test`'s wall time, not a test's behaviour).
LONGEST = ("test_the_readme_api_example_runs_as_written", "test_a_killed_two_process_run_resumes_to_the_uninterrupted_result",
           "test_three_kills_resume_to_the_uninterrupted_result", "test_gal_run_and_eval_on_the_miniature_model",
           "test_miniature_bench_plumbing_on_tiny_models", "test_two_processes_match_one")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.originalname not in LONGEST)  # stable: the rest keep their order
