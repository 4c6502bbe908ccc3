"""How fast the SD 1.5 UNet's forward can go on this device, and what gets it there: a lead for the
query phase, whose time on a GPU is mostly UNet forwards (docs/performance.md).

Times one forward of the SD 1.5-architecture UNet (random weights; nothing downloaded) at the query
phase's guidance batch, in bf16, as diffusers runs it and with one change at a time: channels_last,
fused QKV projections, cuDNN autotuning, torch.compile. Also measures the device's bf16 matrix-product
rate (8192^3), the ceiling the UNet's TFLOP/s is compared with.

    python benchmarks/unet_variants.py --json OUT.json          # CUDA
    python benchmarks/unet_variants.py --small --device cpu     # checks the script (figures meaningless)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import torch  # noqa: E402

from fixtures import families  # noqa: E402


def matmul_tflops(device, n: int, iters: int = 10) -> float:
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    with harness.Timer(device) as timer:
        for _ in range(iters):
            a @ b
    return 2 * n**3 * iters / timer.seconds / 1e12


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=128, help="UNet batch (64 images with guidance)")
    p.add_argument("--small", action="store_true", help="toy widths, for a CPU check")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--json")
    a = p.parse_args()
    from diffusers import UNet2DConditionModel

    device = torch.device(a.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = families.sd15_configs(a.small)["unet"]
    latent, seq = cfg["sample_size"], 77
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**cfg).to(dtype).eval()
    flops = harness.unet_forward_flops(unet, a.batch, latent, seq)
    iters, warmup = (5, 2) if device.type == "cuda" else (1, 1)
    results = {"device": harness.device_name(device), "batch": a.batch, "latent": latent,
               "tflop_per_forward": flops / 1e12, "torch": torch.__version__, "variants": {}}
    if device.type == "cuda":
        results["bf16_matmul_tflops_8192"] = matmul_tflops(device, 8192)
        print(f"bf16 matmul 8192^3: {results['bf16_matmul_tflops_8192']:.0f} TFLOP/s", flush=True)

    def measure(name: str, model) -> None:
        start = time.perf_counter()
        seconds = harness.time_unet_forward(model, a.batch, latent, seq, None, iters=iters, warmup=warmup)
        results["variants"][name] = {"forward_s": seconds, "tflops": flops / seconds / 1e12,
                                     "wall_s_incl_warmup": time.perf_counter() - start}
        print(f"{name:40s} {seconds * 1e3:8.1f} ms  {flops / seconds / 1e12:7.1f} TFLOP/s", flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=1))

    measure("diffusers as is (bf16, SDPA)", unet)
    torch.backends.cudnn.benchmark = True
    measure("+ cudnn.benchmark", unet)
    unet.to(memory_format=torch.channels_last)
    measure("+ channels_last", unet)
    unet.fuse_qkv_projections()
    measure("+ fused QKV", unet)
    if not a.no_compile:
        measure("+ torch.compile (default mode)", torch.compile(unet))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
