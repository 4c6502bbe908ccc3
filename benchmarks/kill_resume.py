"""Torture test: SIGKILL a `gal run` at random moments, resume it each time, and compare the result with
an uninterrupted run of the same command.

    python benchmarks/kill_resume.py --kills 20            # tiny random models built on the spot
    python benchmarks/kill_resume.py --kills 20 --base DIR --scorer DIR --references DIR
    python benchmarks/kill_resume.py --kills 20 --miniature mosaic     # the bundled model, a held-out style
    python benchmarks/kill_resume.py --kills 20 --processes 2          # under torchrun, as `accelerate launch`

With --processes 2 the launcher and every worker are killed, and the uninterrupted run it is
compared with ran under the same launcher. The settings go in a --config file (torchrun's own parser would
take flags such as --m).

Identical means: the same selected anchors, openness and weights in every round, byte-identical added
images and checkpoints, no duplicate or orphan sample rows or files, no temporary file left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's fixtures

SETTINGS = {"subject": "a <sks> ball", "non_soi": ["a ball on grass"], "rounds": 3, "m": 4, "k": 2, "train_steps": 30,
            "steps": 4, "strategy": "random", "gen_batch_size": "2", "prior": False}
MINIATURE = {"rounds": 3, "m": 4, "k": 2, "train_steps": 100, "strategy": "uncertainty", "gen_batch_size": "8"}


ANCHORS = ["{} in a workshop", "{} in a museum", "{} on a plane", "{} on a boat", "{} in a garden", "{} under a tree"]


def gal(*args: str, processes: int = 1, port: int = 29600) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "gal", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
            str(port), str(Path(sys.executable).parent / "gal"), *args]


def phase_of(run_dir: Path) -> str:
    """Where a killed run stood, from its ledger: for the report."""
    try:
        db = sqlite3.connect(run_dir / "gal.sqlite", timeout=5)
        rounds = db.execute("SELECT round, checkpoint IS NOT NULL, closed FROM round ORDER BY round").fetchall()
        samples = dict(db.execute("SELECT round, count(*) FROM sample GROUP BY round").fetchall())
        db.close()
    except sqlite3.Error:
        return "start-up"
    if not rounds:
        return "round 1: training"
    r, trained, closed = rounds[-1]
    if closed:
        return f"after round {r} closed (loading, or round {r + 1}'s training)"
    return f"round {r}: query ({samples.get(r, 0)} samples on record)" if trained else f"round {r}: loading or training"


def compare(clean: Path, other: Path) -> list[str]:
    """What differs between two finished runs (empty: identical)."""
    def show(d):
        return json.loads(subprocess.run(gal("show", str(d), "--json"), check=True, capture_output=True,
                                                   text=True).stdout)
    a, b = show(clean), show(other)
    problems = []
    if b["status"] != "finished":
        problems.append(f"status {b['status']}")
    if len(a["rounds"]) != len(b["rounds"]):
        problems.append(f"{len(b['rounds'])} rounds instead of {len(a['rounds'])}")
    for ra, rb in zip(a["rounds"], b["rounds"]):
        r = ra["round"]
        if [(x["index"], x["selected"], x["beta"]) for x in ra["anchors"]] != \
                [(x["index"], x["selected"], x["beta"]) for x in rb["anchors"]]:
            problems.append(f"round {r}: directions differ")
        if ra["openness"] != rb["openness"]:
            problems.append(f"round {r}: openness {rb['openness']} != {ra['openness']}")
        if [(x["path"], x["weight"]) for x in ra["added"]] != [(x["path"], x["weight"]) for x in rb["added"]]:
            problems.append(f"round {r}: added references differ")
        for x in ra["added"]:
            if (clean / x["path"]).read_bytes() != (other / x["path"]).read_bytes():
                problems.append(f"round {r}: added image {x['path']} differs")
        for f in (clean / ra["checkpoint"]).rglob("*.safetensors"):
            if f.read_bytes() != (other / f.relative_to(clean)).read_bytes():
                problems.append(f"round {r}: checkpoint {f.name} differs")
        recorded = {s["path"] for x in rb["anchors"] for s in x["samples"]}
        on_disk = {str(p.relative_to(other)) for p in (other / "rounds" / str(r) / "samples").glob("*.png")}
        if on_disk != recorded:
            problems.append(f"round {r}: {len(on_disk ^ recorded)} orphan or missing sample file(s)")
    leftovers = [p for p in other.rglob(".*tmp-*")]
    if leftovers:
        problems.append(f"temporary files left: {leftovers[:2]}")
    return problems


def torture(kills: int, workdir: Path, run_args: list[str], seed: int = 0, log=print, processes: int = 1) -> dict:
    rng = random.Random(seed)
    ports = iter(range(29600 + 100 * seed, 29700 + 100 * seed))  # a fresh port per launch (no TIME_WAIT clash)

    def launch(out: Path) -> list[str]:
        return gal(*run_args, "--out", str(out), processes=processes, port=next(ports))

    clean = workdir / "clean"
    t0 = time.time()
    subprocess.run(launch(clean), check=True, capture_output=True)
    duration = time.time() - t0
    log(f"uninterrupted run: {duration:.1f} s")
    report = {"kills": [], "runs": [], "duration_s": duration, "processes": processes}
    n_run = 0
    while len(report["kills"]) < kills:
        n_run += 1
        out = workdir / f"killed-{n_run}"
        while len(report["kills"]) < kills:
            proc = subprocess.Popen(launch(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)  # its own process group: launcher and workers
            moment = rng.uniform(0.2, 1.0) * duration
            try:
                proc.wait(timeout=moment)
                break  # it finished before the kill
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                proc.wait()
                where = phase_of(out)
                report["kills"].append({"run": n_run, "after_s": round(moment, 2), "phase": where})
                log(f"kill {len(report['kills']):>2} at {moment:5.1f} s: {where}")
        resumed = subprocess.run(launch(out), capture_output=True, text=True)  # resume to the end
        problems = ([f"the resume exited {resumed.returncode}: {resumed.stderr.strip()[-600:]}"] if resumed.returncode
                    else compare(clean, out))
        report["runs"].append({"run": n_run, "identical": not problems, "problems": problems})
        log(f"run {n_run}: {'identical to the uninterrupted run' if not problems else '; '.join(problems)}")
    report["identical"] = all(r["identical"] for r in report["runs"])
    return report


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant: torchrun starts its workers in sessions of their own, so killing
    the launcher's process group alone would leave them running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, found = [pid], []
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    for p in found:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def config_file(workdir: Path, values: dict) -> list[str]:
    """`run --config FILE`: every setting in a file."""
    import yaml

    path = workdir / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    return ["run", "--config", str(path)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--processes", type=int, default=1, help="worker processes (torchrun), default 1")
    p.add_argument("--miniature", metavar="SUBJECT", help="the bundled miniature model on this held-out subject")
    p.add_argument("--base")
    p.add_argument("--scorer")
    p.add_argument("--references")
    p.add_argument("--workdir")
    args = p.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gal-kill-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.miniature:
        from gal.miniature import SETTINGS as BUNDLED
        from gal.miniature.inputs import inputs

        fields, _ = inputs(workdir / "inputs", args.miniature)
        values = {**fields, **BUNDLED, **MINIATURE}
    else:
        if not args.base:
            from fixtures.families import build_pipeline
            from fixtures.models import build_clip, write_references

            args.base = str(build_pipeline(workdir / "models" / "pipeline"))
            args.scorer = str(build_clip(workdir / "models" / "clip"))
            args.references = str(write_references(workdir / "models" / "references"))
        anchors = workdir / "anchors.txt"
        anchors.write_text("".join(f"{t}\n" for t in ANCHORS))
        values = {"base": args.base, "scorer": args.scorer, "references": args.references, "anchors": str(anchors),
                  **SETTINGS}
    report = torture(args.kills, workdir, config_file(workdir, values), args.seed, processes=args.processes)
    n_ok = sum(r["identical"] for r in report["runs"])
    print(f"{len(report['kills'])} kills over {len(report['runs'])} runs; "
          f"{n_ok} of {len(report['runs'])} resumed runs identical to the uninterrupted run")
    (workdir / "report.json").write_text(json.dumps(report, indent=1))
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
