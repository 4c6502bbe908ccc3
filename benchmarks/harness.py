"""The harness of the speed benchmarks (query_phase.py, train_phase.py, gpu.sh).

- which models to measure on: the bundled miniature model when gal/miniature ships one, else a tiny
  random model built on the spot with the repository's fixtures (or, on request, the miniature or SD 1.5 architecture
  with random weights: speed depends on the architecture, not on the weights);
- one process per measured side, so that each side's peak memory is its own;
- FLOP counting and the GPUs' bf16 dense peaks, for gpu.sh.

Also a small command line, used by gpu.sh:

    python benchmarks/harness.py build-sd15 DIR [--small]      # SD 1.5 architecture, random weights
    python benchmarks/harness.py build-clip DIR [--small]      # CLIP ViT-B/32 architecture, random weights
    python benchmarks/harness.py summary QUERY.json TRAIN.json [TRAIN_FULL.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the benchmarks never download anything
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

warnings.filterwarnings("ignore", category=FutureWarning)  # diffusers' config deprecation notes
warnings.filterwarnings("ignore", category=DeprecationWarning)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

ARCHS = ("auto", "tiny", "miniature-random", "sd15", "sd15-small")

# bf16 dense tensor-core peaks, TFLOP/s (vendor data sheets, without sparsity)
BF16_PEAKS = (  # (substring of torch.cuda.get_device_name, label, peak); first match wins
    ("H200", "H200", 989.0),
    ("H100 PCIe", "H100 PCIe", 756.0),
    ("H100 NVL", None, None),  # not in our table: say "unknown peak" rather than guess
    ("H100", "H100 SXM", 989.0),
    ("A100", "A100", 312.0),
    ("L40S", "L40S", 362.0),
)


# ---- models ---------------------------------------------------------------------------------------

def resolve_models(base: str | None, scorer: str | None, arch: str, workdir: Path) -> dict:
    """The (base, scorer) folders to measure on, building random-weight models (fixtures) when asked or
    when nothing is bundled; `label` says which, for the report."""
    from fixtures import families, models
    from gal.miniature import bundled

    if base and scorer:
        return {"base": base, "scorer": scorer, "label": f"given folders ({base}, {scorer})"}
    note = None
    if arch == "auto":
        found = bundled()
        if found:
            return {"base": base or str(found[0]), "scorer": scorer or str(found[1]), "label": "bundled miniature model"}
        arch, note = "tiny", "no bundled miniature model found: tiny random model (fixtures)"
    workdir.mkdir(parents=True, exist_ok=True)
    pipeline, clip = workdir / "pipeline", workdir / "clip"
    if arch == "miniature-random":
        models.build_miniature(pipeline, clip)
        label = "miniature architecture (gal.miniature.architecture.Sizes), random weights"
    elif arch in families.ARCHS:
        families.build_pipeline(pipeline, arch)
        models.build_clip(clip, arch)
        label = note or {"tiny": "tiny random model (fixtures)", "sd15": "SD 1.5 architecture, random weights",
                         "sd15-small": "SD 1.5 architecture, random weights (scaled down for a CPU dry run)"}[arch]
    else:
        raise SystemExit(f"--arch {arch}: expected one of {', '.join(ARCHS)}")
    return {"base": base or str(pipeline), "scorer": scorer or str(clip), "label": label}


# ---- devices, precision, memory -------------------------------------------------------------------

def pick_device(name: str) -> torch.device:
    from gal.models import pick_device as gal_pick_device

    return gal_pick_device(name)


def resolve_dtype(name: str, device: torch.device) -> str:
    """auto: fp32 on the CPU, bf16 on GPUs that have it, else fp16 (gal's own rule)."""
    from gal.models import mixed_precision

    return name if name != "auto" else {"no": "fp32"}.get(mixed_precision("auto", device), mixed_precision("auto", device))


def resolve_args(a, steps_gpu: int, steps_cpu: int) -> torch.device:
    """Device, precision, step count and warm-up of a parsed command line, filled in place."""
    device = pick_device(a.device)
    a.device = str(device)
    a.dtype = resolve_dtype(a.dtype, device)
    if a.steps is None:
        a.steps = steps_gpu if device.type == "cuda" else steps_cpu
    if a.warmup == "auto":  # on the CPU nothing is compiled or autotuned
        a.warmup = "on" if device.type == "cuda" else "off"
    return device


def add_shared_flags(p, warmup_help: str, sides: tuple[str, ...] = ("project", "plain")) -> None:
    """The flags both benchmarks take after their own."""
    p.add_argument("--warmup", default="auto", choices=["auto", "on", "off"], help=warmup_help)
    p.add_argument("--repeat", type=int, default=1,
                   help="measure each side N times, alternating, and keep each side's fastest run (default 1)")
    p.add_argument("--only", choices=sides, help="measure one side only")
    p.add_argument("--workdir", help="where random-weight models are built (default: a temporary folder)")
    p.add_argument("--label", help="name of the model in the report (default: where it came from)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--side", choices=sides, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)


TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # accelerate's names


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device) -> dict:
    """This process's peak resident memory (MB); on CUDA also the peak allocated GPU memory (MB)."""
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # Linux: KiB
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model or platform.processor()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def bf16_peak(name: str) -> tuple[str | None, float | None]:
    for key, label, peak in BF16_PEAKS:
        if key.lower() in name.lower():
            return label, peak
    return None, None


# ---- one process per side -------------------------------------------------------------------------

def run_side(script: str, argv: list[str], side: str, timeout: float | None = None) -> dict:
    """Run `script --side SIDE ...` in a fresh Python process and return the JSON it writes."""
    with tempfile.TemporaryDirectory(prefix="gal-bench-side-") as tmp:
        result, log = Path(tmp) / "result.json", Path(tmp) / "log.txt"
        cmd = [sys.executable, script, *argv, "--side", side, "--result", str(result)]
        with open(log, "w") as stream:
            proc = subprocess.run(cmd, stdout=stream, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
        if proc.returncode != 0 or not result.exists():
            tail = log.read_text()[-4000:]
            raise SystemExit(f"the {side} side failed (exit {proc.returncode}):\n{tail}")
        return json.loads(result.read_text())


def run_sides(script: str, argv: list[str], sides: list[str], repeat: int, rate: str) -> dict:
    """Each side `repeat` times, alternating the order (ABBA...), each run in a fresh process. A side's
    result is its fastest run (on a shared machine the slower runs measure the neighbours), with every
    run's rate under `all_<rate>` and the largest peak memory seen."""
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for i in range(repeat):
        for side in (sides if i % 2 == 0 else sides[::-1]):
            runs[side].append(run_side(script, argv, side))
    out = {}
    for side, results in runs.items():
        best = dict(max(results, key=lambda r: r[rate]))
        best[f"all_{rate}"] = [round(r[rate], 4) for r in results]
        for key in ("peak_rss_mb", "peak_gpu_mb"):
            if key in best:
                best[key] = max(r[key] for r in results)
        out[side] = best
    return out


def child_argv(args, skip: tuple[str, ...] = ("json", "side", "result", "arch", "workdir", "keep")) -> list[str]:
    """The parsed flags back as a command line, for the per-side processes."""
    argv = []
    for key, value in vars(args).items():
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


class Timer:
    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        sync(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        sync(self.device)
        self.seconds = time.perf_counter() - self.start


# ---- FLOPs ----------------------------------------------------------------------------------------

def unet_forward_flops(unet, batch: int, latent: int, seq_len: int) -> int:
    """FLOPs of one UNet forward at `batch` (FlopCounterMode: matmuls, convolutions, attention's two
    matmuls). Counted on a copy of the architecture on the meta device: shapes only, nothing computed,
    and the same count whichever attention kernel the real device picks (FlopCounterMode has no formula
    for some fused kernels, e.g. the CPU's flash attention, and would leave attention out)."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = UNet2DConditionModel.from_config(unet.config)
        x = torch.randn(batch, model.config.in_channels, latent, latent)
        cond = torch.randn(batch, seq_len, model.config.cross_attention_dim)
        t = torch.full((batch,), 500)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x, t, cond)
    return int(counter.get_total_flops())


def time_unet_forward(unet, batch: int, latent: int, seq_len: int, autocast_dtype: torch.dtype | None,
                      iters: int = 5, warmup: int = 2) -> float:
    """Seconds per UNet forward at `batch`, the UNet alone (no scheduler, VAE, CLIP)."""
    from contextlib import nullcontext

    device, dtype = unet.device, unet.dtype
    x = torch.randn(batch, unet.config.in_channels, latent, latent, device=device, dtype=dtype)
    cond = torch.randn(batch, seq_len, unet.config.cross_attention_dim, device=device, dtype=dtype)
    t = torch.full((batch,), 500, device=device)
    autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    with torch.no_grad(), autocast:
        for _ in range(warmup):
            unet(x, t, cond)
        with Timer(device) as timer:
            for _ in range(iters):
                unet(x, t, cond)
    return timer.seconds / iters


# ---- gpu.sh's summary -----------------------------------------------------------------------------

def summary(query_file: str, *train_files: str) -> str:
    lines = [summary_of_query(json.loads(Path(query_file).read_text()))]
    for path in train_files:
        if not Path(path).exists():
            continue
        t = json.loads(Path(path).read_text())
        lines.append(f"training ({t['settings']['method']}, batch {t['settings']['batch_size']}, "
                     f"{t['settings']['resolution']} px, {t['settings']['steps']} steps): project "
                     f"{t['project']['steps_per_s']:.3f} steps/s, plain loop {t['plain']['steps_per_s']:.3f} steps/s, "
                     f"ratio {t['ratio']:.2f}x")
    return "\n".join(lines)


def summary_of_query(q: dict) -> str:
    """query_phase.py's report as text: each side's images/s, the two ratios, the UNet share."""
    s = q["settings"]
    lines = [f"device: {q['device']}", f"model: {q['model']}",
             f"query phase: {s['anchors']} anchors x {s['m']} samples x {s['rounds']} rounds = {s['images']} images, "
             f"{s['steps']} DPM-Solver steps, guidance {s['guidance']}, {s['resolution']} px, {s['dtype']}, LoRA attached:",
             ]

    def memory(x: dict) -> str:
        return f"peak RSS {x['peak_rss_mb']:.0f} MB" + (f", GPU {x['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in x else "")

    if "project" in q:
        x = q["project"]
        lines.append(f"  project     {x['images_per_s']:.3f} images/s (batch {x['batch_size']}; one-time load "
                     f"{x['load_s']:.1f} s; {memory(x)})")
    for side, target in (("authors", 8), ("competent", 2)):
        if side in q:
            ratio = q.get("ratios", {}).get(side)
            verdict = "" if ratio is None or q["device"].startswith("CPU") else \
                f"  (target on a GPU: >= {target}x: {'holds' if ratio >= target else 'does not hold'})"
            lines.append(f"  {side:<11} {q[side]['images_per_s']:.3f} images/s (batch {q[side]['batch_size']}; "
                         f"{memory(q[side])})" + (f", project / {side} {ratio:.2f}x{verdict}" if ratio else ""))
    f = q.get("project", {}).get("unet")
    if f:
        lines.append(f"  UNet share: the phase runs at {100 * f['share']:.1f}% of the UNet alone at batch {f['unet_batch']} "
                     f"(target: >= 85% on a GPU, >= 90% on the CPU)")
        lines.append(f"  UNet: {f['unet_tflop_per_image']:.4g} TFLOP per image; the query phase reaches "
                     f"{f['achieved_tflops']:.4g} TFLOP/s over its whole wall time, the UNet alone "
                     f"{f['unet_only_tflops']:.4g} TFLOP/s at batch {f['unet_batch']}")
        if f.get("peak_tflops"):
            ok = f["unet_only_fraction"] >= 0.35
            lines.append(f"  bf16 dense peak of {f['peak_label']}: {f['peak_tflops']:.0f} TFLOP/s -> "
                         f"{100 * f['achieved_fraction']:.1f}% (whole phase), {100 * f['unet_only_fraction']:.1f}% "
                         f"(UNet alone; target >= 35%: {'holds' if ok else 'does not hold'})")
        else:
            lines.append(f"  unknown peak for '{q['device']}': no utilisation figure")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("build-sd15", "build-clip"):
        p = sub.add_parser(name)
        p.add_argument("folder")
        p.add_argument("--small", action="store_true", help="toy widths, same structure (CPU dry run)")
        p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("summary")
    p.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    if args.cmd in ("build-sd15", "build-clip"):
        from fixtures import families, models

        start = time.perf_counter()
        build = families.build_pipeline if args.cmd == "build-sd15" else models.build_clip
        folder = build(args.folder, "sd15-small" if args.small else "sd15", seed=args.seed)
        print(f"wrote {folder} in {time.perf_counter() - start:.0f} s")
    else:
        print(summary(*args.files))


if __name__ == "__main__":
    main()
