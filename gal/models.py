"""Loading the base pipeline from a diffusers folder or hub id: safetensors only, no remote code."""

from __future__ import annotations

import importlib.util
import warnings
from contextlib import contextmanager

import torch

from gal.errors import GalError
from gal.locations import check_model_folder, locate


@contextmanager
def quiet_transformers():
    """Keep library chatter (progress bars, backend fallbacks) off the user's terminal."""
    import diffusers
    import transformers

    t_level, d_level = transformers.logging.get_verbosity(), diffusers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    diffusers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            # diffusers 0.42 renamed from_pretrained's torch_dtype to dtype; the oldest diffusers gal supports (0.32)
            # knows only torch_dtype, so gal passes that and keeps the rename's notice off the terminal
            warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
            yield
    finally:
        transformers.logging.set_verbosity(t_level)
        diffusers.logging.set_verbosity(d_level)


def load_pipeline(name_or_path: str, frozen_dtype: torch.dtype = torch.float32,
                  denoiser_dtype: torch.dtype = torch.float32, allow_pickle: bool = False, quantize: str = "none",
                  family=None):
    """The pipeline of the base's family (gal.family; read from its model_index.json unless given), with VAE and text
    encoders in `frozen_dtype` (an SDXL VAE stays fp32) and the denoiser (UNet, or Flux's transformer) in
    `denoiser_dtype`; `quantize` (int8, nf4, fp8) quantizes the denoiser's and the text encoders' linear layers as they
    load (`quantization_config`)."""
    from gal.family import family_of

    name_or_path = locate(name_or_path, "--base")
    check_model_folder(name_or_path, "--base", allow_pickle)
    with quiet_transformers():
        family = family or family_of(name_or_path)
        try:
            # each part read straight into its dtype: a 12B Flux transformer never sits in CPU memory in fp32
            dtypes = {"default": frozen_dtype, family.denoiser: denoiser_dtype,
                      "vae": torch.float32 if family.vae_fp32 else frozen_dtype}
            quantized = {} if quantize in ("none", "auto") else {
                "quantization_config": quantization_config(family, quantize, name_or_path, denoiser_dtype)}
            pipe = family.pipeline_class().from_pretrained(
                name_or_path, use_safetensors=None if allow_pickle else True, torch_dtype=dtypes, **family.load_kwargs,
                **quantized)
        except (OSError, ValueError, TypeError, AttributeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise GalError(f"--base {name_or_path}: cannot load a {family.pipeline} ({first[:200]}); "
                           f"expected a diffusers {family.pipeline} folder with safetensors weights") from None
    pipe.vae.enable_slicing()  # decode a query batch image by image: its peak memory stays that of one
    pipe.set_progress_bar_config(disable=True)
    return pipe


def quantization_config(family, quantize: str, name_or_path: str, compute_dtype: torch.dtype):
    """diffusers' `PipelineQuantizationConfig` for the denoiser and the text encoders, as diffusers' DreamBooth-LoRA
    scripts quantize (bitsandbytes NF4 for --bnb_quantization_config_path, torchao for the rest): int8 and fp8 are
    torchao's weight-only configs (a scale per row), nf4 bitsandbytes' 4-bit NormalFloat computing in the run's
    precision."""
    import diffusers
    import transformers
    from diffusers.quantizers import PipelineQuantizationConfig

    if not family.quantizable:
        raise GalError(f"--quantize {quantize}: gal quantizes the transformer families (FLUX, SD3, Z-Image, Qwen-Image, "
                       f"Chroma); {family.label} (--base {name_or_path}) fits a 16 GB GPU without it; expected --quantize none")
    library = "bitsandbytes" if quantize == "nf4" else "torchao"
    if importlib.util.find_spec(library) is None:  # a run started elsewhere, evaluated here
        raise GalError(f"--quantize {quantize}: {library} is not installed; expected `pip install {library}` "
                       "(or `pip install gal[quantize]`)")
    if quantize == "nf4":
        kwargs = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype)
        configs = (diffusers.BitsAndBytesConfig(**kwargs), transformers.BitsAndBytesConfig(**kwargs))
    else:
        from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig

        scheme = Int8WeightOnlyConfig() if quantize == "int8" else Float8WeightOnlyConfig()
        configs = (diffusers.TorchAoConfig(scheme), transformers.TorchAoConfig(scheme))
    return PipelineQuantizationConfig(quant_mapping={family.denoiser: configs[0],
                                                     **{name: configs[1] for name in family.text_encoders}})


def quantization_method(module) -> str | None:
    """"bitsandbytes" or "torchao" for a model loaded with a `quantization_config` (--quantize), else None."""
    quantizer = getattr(module, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    return getattr(method, "value", method)


def native_resolution(pipe) -> int:
    from gal.family import family_of

    return family_of(pipe).native_resolution(pipe)


def image_resolution(pipe, requested: int | None, family=None) -> int:
    """`--resolution`, or the model's own; refused in one line when the family cannot work at it (Flux packs 2x2
    latent pixels: with its 8x VAE, sides are multiples of 16)."""
    from gal.family import family_of

    family = family or family_of(pipe)
    resolution, multiple = requested or family.native_resolution(pipe), family.resolution_multiple(pipe)
    if resolution % multiple:
        raise GalError(f"--resolution {resolution}: {family.label} works on sides that are multiples of {multiple}; "
                       f"expected e.g. --resolution {max(multiple, resolution // multiple * multiple)}")
    return resolution


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise GalError(f"--device {name}: unknown device; expected auto, cpu, cuda or cuda:N") from None


def precision_dtype(precision: str) -> torch.dtype:
    """The dtype of the frozen weights (and autocast) under accelerate's `precision` (no, fp16, bf16)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def mixed_precision(name: str, device: torch.device) -> str:
    """auto: bf16 on GPUs that have it, fp16 on older GPUs, none on the CPU."""
    if name != "auto":
        return name
    if device.type != "cuda":
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
