"""How much GPU memory a run takes, per family and --quantize setting, and the setting `gal run` picks for the GPU it
finds (--quantize auto). Every figure here is *computed from the weights*, none measured on a GPU yet:

    peak = the denoiser's weights + the text encoders' weights (the query needs both on the GPU; while the denoiser
           trains, the text encoders wait in CPU memory) + the VAE + an allowance of 3 GB

at BYTES per parameter. The allowance stands for the activations of a 1024 px step with gradient checkpointing, the
LoRA with its AdamW state and CUDA's own context: an assumption, to be replaced by `benchmarks/families.py`'s
measurements on a GPU. The counts come from the models' configs on empty weights (the released ones are checked by
tests/test_families.py)."""

from __future__ import annotations

GB = 1e9
GIB = 2**30  # a "24 GB" card has 24 GiB
BYTES = {"none": 2.0, "int8": 1.0, "fp8": 1.0, "nf4": 0.56}  # bf16; one byte and a scale per row; 4 bits + absmax
ALLOWANCE_GB = 3.0
ORDER = ("none", "int8", "nf4")  # the least quantization first (fp8 takes int8's memory: chosen by hand)
HEADROOM = 0.95  # of the GPU's memory

# Parameters (denoiser, text encoders, VAE) of the released models, counted on empty weights (2026-12-01)
RELEASED = {
    "SD 1.5": ("sd", 859_520_964, 123_060_480, 83_653_863),
    "SDXL 1.0": ("sdxl", 2_567_463_684, 123_060_480 + 694_659_840, 83_653_863),
    "FLUX.1 dev": ("flux", 11_901_408_320, 4_762_310_656 + 123_060_480, 83_819_683),
    "SD 3.5 Large": ("sd3", 8_056_627_520, 4_762_310_656 + 123_060_480 + 694_659_840, 83_819_683),
    "FLUX.2 klein 4B": ("flux2-klein", 3_875_544_576, 4_022_468_096, 84_046_115),
    "FLUX.2 klein 9B": ("flux2-klein", 9_078_581_248, 8_190_735_360, 84_046_115),
    "Z-Image": ("z-image", 6_154_908_736, 4_022_468_096, 83_819_683),
    "Qwen-Image": ("qwen-image", 20_430_401_088, 8_292_166_656, 126_892_531),
    "Chroma1-HD": ("chroma", 8_899_983_424, 4_762_310_656, 83_819_683),
    # its text encoder, Mistral Small 3.x, at the published 24B (not counted: its processor needs torchvision)
    "FLUX.2 dev": ("flux2-dev", 32_223_281_152, 24_000_000_000, 84_046_115),
}


def peak_gb(denoiser: int, text: int, vae: int, quantize: str) -> float:
    """The computed peak GPU memory of a LoRA run in GB (module docstring)."""
    b = BYTES[quantize]
    return (denoiser * b + text * b + vae * 2.0) / GB + ALLOWANCE_GB


def counts(family, name_or_path: str) -> tuple[int, int, int]:
    """Parameters of the base's denoiser, text encoders and VAE, counted from their configs on empty weights (no
    weights are read)."""
    import diffusers
    import transformers
    from accelerate import init_empty_weights
    from diffusers import DiffusionPipeline

    index = DiffusionPipeline.load_config(name_or_path)
    sizes = {}
    for name in (family.denoiser, *family.text_encoders, "vae"):
        library, cls = index[name]
        with init_empty_weights():
            if library == "diffusers":
                model_cls = getattr(diffusers, cls)
                model = model_cls.from_config(model_cls.load_config(name_or_path, subfolder=name))
            else:
                config = transformers.AutoConfig.from_pretrained(name_or_path, subfolder=name)
                model = getattr(transformers, cls)._from_config(config)
        sizes[name] = sum(p.numel() for p in model.parameters())
    text = sum(sizes[name] for name in family.text_encoders)
    return sizes[family.denoiser], text, sizes["vae"]


def pick_quantization(family, name_or_path: str | None, machine) -> str:
    """--quantize auto: none on the CPU and for the UNet families; on a GPU the least quantization whose computed
    peak fits 95% of its memory (nf4 if none does)."""
    if machine is None or machine.gpus == 0 or not family.quantizable or name_or_path in (None, "miniature"):
        return "none"
    try:
        sizes = counts(family, name_or_path)
    except (OSError, KeyError, ValueError, TypeError, AttributeError):  # the base's own load names what is wrong
        return "none"
    return next((q for q in ORDER if peak_gb(*sizes, q) <= HEADROOM * machine.gpu_memory / GB), ORDER[-1])


def explain(family, name_or_path: str, machine, quantize: str) -> str:
    """The one line `gal run` prints for --quantize auto on a GPU."""
    peak = peak_gb(*counts(family, name_or_path), quantize)
    return (f"--quantize auto: {quantize} for {family.label} on this {machine.gpu_memory / GB:.0f} GB GPU (computed peak "
            f"{peak:.0f} GB, gal.memory; not measured); --quantize none|int8|nf4|fp8 overrides it")


def table(gpus: tuple[int, ...] = (24, 16)) -> str:
    """The README's memory table: each released model's computed peak per setting (GB), and whether a card of each
    size (GiB, as cards are sold) suffices."""
    head = "| model | " + " | ".join(f"{q}: peak, {'/'.join(f'{g} GB' for g in gpus)}" for q in ORDER) + " |"
    rows = [head, "|" + " --- |" * (len(ORDER) + 1)]
    for model, (family, d, t, v) in RELEASED.items():
        cells = []
        for q in ORDER:
            if q != "none" and family in ("sd", "sdxl"):
                cells.append("(not needed)")
                continue
            peak = peak_gb(d, t, v, q)
            cells.append(f"{peak:.1f} GB, " + "/".join("yes" if peak <= HEADROOM * g * GIB / GB else "no" for g in gpus))
        rows.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
