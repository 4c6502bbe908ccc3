"""Personalization: DreamBooth fine-tuning of the denoiser (the UNet, or Flux's transformer) on a weighted
training set, full or LoRA; what differs between model families comes from gal.family.

Eq. 2 with per-sample weights: each sample's diffusion loss is multiplied by its weight (1 for the
user's references, Δ_r or 1 for added ones), then averaged over the batch. Prior preservation adds the
class images' loss, as in DreamBooth. With masked loss (`--masked-loss`), a reference's loss is first weighted per
latent by its subject's mask (`_masked_mse`). The weights stay loaded: `reset` returns to the base model in place
(the authors restart each round from the base), `save`/`load` write and read the formats plain diffusers
loads (`pytorch_lora_weights.safetensors`, or a pipeline folder for a full fine-tune).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gal.errors import GalError
from gal.family import family_of
from gal.models import quantization_method
from gal.progress import progress

KOHYA_FILE = "lora_kohya.safetensors"


class Example(NamedTuple):
    image: Image.Image
    prompt: str
    weight: float
    pixel_weights: np.ndarray | None = None  # masked loss: the loss's weight per pixel, (H, W) at the image's size; None: 1


def masked(mask: np.ndarray, outside: float) -> np.ndarray:
    """Masked loss's weight per pixel from a subject's mask in [0, 1]: 1 on the subject, `outside` elsewhere
    (kohya's --masked_loss and OneTrainer's unmasked weight, 0 by default)."""
    return outside + (1.0 - outside) * np.asarray(mask, dtype=np.float32)


class Term(NamedTuple):
    """One term of the training loss: its examples (each with its own weight) and the term's weight.
    Each step draws a batch of every term: the references, prior preservation's class images, and
    with `--balance separate` the added images."""
    examples: Sequence[Example]
    weight: float = 1.0


def center_crop(size: tuple[int, int], resolution: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """For an image of `size` (width, height): its size with the shorter side resized to `resolution`, and the
    (top, left) corner of the center crop in it."""
    w, h = size
    s = resolution / min(w, h)
    resized = (max(resolution, round(w * s)), max(resolution, round(h * s)))
    return resized, ((resized[1] - resolution) // 2, (resized[0] - resolution) // 2)


def cropped(image: Image.Image, resolution: int, resample=Image.Resampling.BICUBIC) -> Image.Image:
    """The square a fine-tune trains on: the shorter side resized to `resolution`, center-cropped."""
    resized, (top, left) = center_crop(image.size, resolution)
    return image.resize(resized, resample).crop((left, top, left + resolution, top + resolution))


def to_pixels(image: Image.Image, resolution: int) -> torch.Tensor:
    """`cropped`, scaled to [-1, 1]; (3, H, W)."""
    array = np.asarray(cropped(image, resolution), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


def to_pixel_weights(weights: np.ndarray, resolution: int) -> torch.Tensor:
    """A weight map in [0, 1] cropped as `to_pixels` crops its image (bilinear); (1, H, W)."""
    grey = Image.fromarray(np.clip(np.rint(np.asarray(weights) * 255), 0, 255).astype(np.uint8))
    array = np.asarray(cropped(grey, resolution, Image.Resampling.BILINEAR), dtype=np.float32) / 255
    return torch.from_numpy(array)[None]


class Personalizer:
    def __init__(self, pipe, accelerator, *, method: str, lr: float, rank: int, resolution: int, trains: bool = True,
                 optimizer: str = "adamw", family=None):
        """`trains=False` (evaluation): checkpoints load and generate, but no optimizer and, for `full`, no copy
        of the base weights is made. `family`: the pipeline's (gal.family), where the caller has it already."""
        self.pipe, self.accelerator, self.method = pipe, accelerator, method
        self.family = family or family_of(pipe)
        self.resolution = resolution
        # The base model's training noise schedule (the pipeline's sampler may be swapped for queries).
        self.noise_scheduler = self.family.training_schedule(pipe)
        denoiser = getattr(pipe, self.family.denoiser)  # the UNet, or Flux's transformer
        pipe.vae.requires_grad_(False)
        for name in self.family.text_encoders:
            getattr(pipe, name).requires_grad_(False)
        quantized = quantization_method(denoiser)  # --quantize
        self.quantized = quantized is not None
        if method == "lora":
            from peft import LoraConfig

            denoiser.requires_grad_(False)
            if quantized == "bitsandbytes":
                from peft import prepare_model_for_kbit_training  # as the scripts do for their bitsandbytes config

                prepare_model_for_kbit_training(denoiser, use_gradient_checkpointing=False)
            from diffusers.training_utils import cast_training_params

            targets = self.family.lora_targets  # names, or one regular expression (FLUX.2's single blocks)
            targets = targets if isinstance(targets, str) else list(targets)
            denoiser.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets))
            cast_training_params(denoiser, dtype=torch.float32)  # trainable LoRA weights in fp32 under a half-precision UNet
            self.base_state = None
        else:
            denoiser.requires_grad_(trains)
            self.base_state = {k: v.detach().to("cpu", copy=True) for k, v in denoiser.state_dict().items()} if trains else None
        if trains and self.family.gradient_checkpointing:
            denoiser.enable_gradient_checkpointing()
        self.params = [p for p in denoiser.parameters() if p.requires_grad]
        if trains:
            self.denoiser, self.optimizer = accelerator.prepare(denoiser, _adamw(optimizer, self.params, lr, accelerator.device))
        else:
            self.denoiser, self.optimizer = accelerator.prepare(denoiser), None

    # ---- the weights ----------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Back to the base model, in place."""
        denoiser = self.accelerator.unwrap_model(self.denoiser)
        if self.method == "lora":
            from peft.tuners.lora import LoraLayer

            torch.manual_seed(seed)
            for module in denoiser.modules():
                if isinstance(module, LoraLayer):
                    module.reset_lora_parameters("default", init_lora_weights="gaussian")
        else:
            denoiser.load_state_dict(self.base_state)

    @contextmanager
    def merged(self, scale: float = 1.0) -> Iterator[None]:
        """Generation with the LoRA merged into the base weights (peft's merge): each adapted projection is one
        matmul instead of three. `scale` multiplies the LoRA's update, as `pipe.load_lora_weights` users turn a
        LoRA down (`set_adapters(..., adapter_weights=scale)`, `cross_attention_kwargs={"scale": ...}`).
        Afterwards the base weights come back bit for bit from a CPU copy (unmerging subtracts the update again,
        which does not give the same bits back). A full fine-tune has nothing to merge (or scale). On a quantized base
        (--quantize) the LoRA stays unmerged (merging into int8 or 4-bit weights would round the update away): only its
        scale is set."""
        if self.method != "lora":
            if scale != 1.0:
                raise GalError(f"LoRA scale {scale}: a full fine-tune has no LoRA to scale; expected scale 1")
            yield
            return
        from peft.tuners.lora import LoraLayer

        layers = [m for m in self.accelerator.unwrap_model(self.denoiser).modules() if isinstance(m, LoraLayer)]
        scaling = [m.scaling["default"] for m in layers]
        if self.quantized:
            for m in layers:
                m.scaling["default"] *= scale
            try:
                yield
            finally:
                for m, s in zip(layers, scaling):
                    m.scaling["default"] = s
            return
        saved = [m.get_base_layer().weight.detach().to("cpu", copy=True) for m in layers]
        for m in layers:
            m.scaling["default"] *= scale
            m.merge(adapter_names=["default"])
        try:
            yield
        finally:
            for m, weight, s in zip(layers, saved, scaling):
                m.unmerge()
                m.scaling["default"] = s
                m.get_base_layer().weight.data.copy_(weight)

    def save(self, folder: Path) -> None:
        denoiser = self.accelerator.unwrap_model(self.denoiser)
        if self.method == "lora":
            from peft.utils import get_peft_model_state_dict
            from safetensors.torch import save_file

            peft_state = get_peft_model_state_dict(denoiser)
            self.family.save_lora(folder, peft_state)
            kohya = self.family.kohya_state(peft_state)  # the same weights for AUTOMATIC1111, ComfyUI, sd-scripts
            if kohya is not None:
                save_file({k: v.contiguous() for k, v in kohya.items()}, Path(folder) / KOHYA_FILE)
        else:
            self.pipe.save_pretrained(folder, safe_serialization=True)

    def load(self, folder: Path) -> None:
        """Load weights this class saved (resuming a run)."""
        denoiser = self.accelerator.unwrap_model(self.denoiser)
        if self.method == "lora":
            from diffusers.utils import convert_unet_state_dict_to_peft
            from peft import set_peft_model_state_dict

            state = self.family.pipeline_class().lora_state_dict(str(folder))
            state = state[0] if isinstance(state, tuple) else state  # (weights, alphas) for the UNet families
            prefix = self.family.denoiser + "."
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            result = set_peft_model_state_dict(denoiser, convert_unet_state_dict_to_peft(state), adapter_name="default")
            if getattr(result, "unexpected_keys", None):
                raise GalError(f"{folder}: LoRA weights do not match this model ({result.unexpected_keys[0]} ...)")
        else:
            denoiser.load_state_dict(self.family.load_denoiser(self.pipe, folder).state_dict())

    # ---- training ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _encode(self, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Latent mean and std of each image and its prompt's conditioning (gal.family), computed once per round
        (no random augmentation, frozen text encoders)."""
        vae, device = self.pipe.vae, self.accelerator.device
        means, stds = [], []
        for i in range(0, len(examples), 8):
            pixels = torch.stack([to_pixels(e.image, self.resolution) for e in examples[i:i + 8]])
            mean, std = self.family.latent_moments(vae, pixels.to(device, vae.dtype))
            means.append(mean.float())
            stds.append(std.float())
        sizes = [(e.image.height, e.image.width) for e in examples]
        crops = [center_crop(e.image.size, self.resolution)[1] for e in examples]
        cond = self.family.condition(self.pipe, [e.prompt for e in examples], sizes, crops, self.resolution, device)
        return torch.cat(means), torch.cat(stds), cond

    def train(self, terms: Sequence[Term], *, steps: int, batch_size: int, seed: int,
              desc: str = "fine-tune") -> float:
        """`steps` optimizer steps; every step draws a batch of each term (the references, the class images
        of prior preservation, the added images of `--balance separate`) and adds its weighted loss.
        Returns the mean loss."""
        acc = self.accelerator
        device, family, schedule = acc.device, self.family, self.noise_scheduler
        terms = [t for t in terms if t.examples]
        encoded, maps = [], []
        for term in terms:
            mean, std, cond = self._encode(term.examples)
            weights = torch.tensor([e.weight for e in term.examples], dtype=torch.float32, device=device)
            encoded.append((mean, std, cond, weights))
            maps.append(torch.stack([to_pixel_weights(e.pixel_weights if e.pixel_weights is not None else
                                                      np.ones(e.image.size[::-1], np.float32), self.resolution)
                                     for e in term.examples]) if any(e.pixel_weights is not None for e in term.examples)
                        else None)
        # Every process draws the same global batch and trains on its share: with `accelerate launch`,
        # DDP's gradient average then equals the one-process step on the whole batch.
        if batch_size % acc.num_processes:
            raise GalError(f"--batch-size {batch_size}: cannot be split over {acc.num_processes} processes; "
                           f"expected a multiple of {acc.num_processes}")
        share = slice(acc.process_index * batch_size // acc.num_processes,
                      (acc.process_index + 1) * batch_size // acc.num_processes)
        g = torch.Generator("cpu").manual_seed(seed % 2**63)
        orders = [_Batches(len(t.examples), batch_size, g) for t in terms]
        _optimizer_of(self.optimizer).state.clear()  # each round's fine-tune starts a fresh AdamW
        with self._text_encoders_aside():  # the round's embeddings are cached: the encoders are not needed
            self.denoiser.train()
            losses = []
            bar = progress(range(steps), desc=desc, disable=not acc.is_local_main_process)
            for step in bar:
                parts, drawn_maps = [], []
                for (mean, std, cond, weights), order, term_maps in zip(encoded, orders, maps):
                    idx = order.next()
                    parts.append((family.to_latents(_draw(mean[idx], std[idx], g), self.pipe.vae),
                                  {k: v[idx] for k, v in cond.items()}, weights[idx]))
                    drawn_maps.append(term_maps[idx][share] if term_maps is not None else None)
                x0 = torch.cat([x[share] for x, _, _ in parts])
                cond = {k: torch.cat([c[k][share] for _, c, _ in parts]) for k in parts[0][1]}
                noise = torch.cat([torch.randn(x.shape, generator=g)[share] for x, _, _ in parts]).to(device)
                t = torch.cat([family.timesteps(schedule, len(x), g)[share] for x, _, _ in parts]).to(device)
                noisy, target = family.noised(schedule, x0, noise, t)
                with acc.autocast():
                    pred = family.predict(self.pipe, self.denoiser, schedule, noisy, t, cond)
                per_sample = _masked_mse(pred, target, drawn_maps, [len(x[share]) for x, _, _ in parts])
                loss, start = 0.0, 0
                for term, (_, _, w) in zip(terms, parts):
                    w = w[share]
                    loss = loss + term.weight * (per_sample[start:start + len(w)] * w).mean()  # Eq. 2, weighted
                    start += len(w)
                if not math.isfinite(loss.item()):
                    raise GalError(f"{desc}: the training loss became {loss.item()} at step {step + 1}; "
                                   "lower --lr or use --mixed-precision no (generated data so far is kept)")
                acc.backward(loss)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(self.params, 1.0)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            self.denoiser.eval()
        mean_loss = torch.tensor(np.mean(losses) if losses else float("nan"), device=device)
        return float(acc.reduce(mean_loss, "mean"))  # over every process's share

    @contextmanager
    def _text_encoders_aside(self) -> Iterator[None]:
        """On a GPU the frozen text encoders wait in CPU memory while the UNet trains (diffusers' `offload_models`):
        the round's prompt embeddings are cached, and the GPU memory they hold is a step's."""
        from diffusers.training_utils import offload_models

        on_gpu = self.accelerator.device.type == "cuda"
        with offload_models(*[getattr(self.pipe, name) for name in self.family.text_encoders], device="cpu",
                            offload=on_gpu):
            if on_gpu:
                torch.cuda.empty_cache()
            yield


def _adamw(name: str, params, lr: float, device: torch.device):
    """AdamW with diffusers' DreamBooth scripts' betas, eps and weight decay; `adamw8bit` is bitsandbytes' (the
    scripts' --use_8bit_adam), which keeps the optimizer state in 8 bits."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if device.type != "cuda":
        raise GalError(f"--optimizer {name}: bitsandbytes' 8-bit AdamW runs on CUDA GPUs; this run is on {device.type}; "
                       "expected --optimizer adamw")
    try:
        import bitsandbytes
    except ImportError:
        raise GalError(f"--optimizer {name}: bitsandbytes is not installed; expected `pip install bitsandbytes`, "
                       "or --optimizer adamw") from None
    return bitsandbytes.optim.AdamW8bit(params, lr=lr)


class _Batches:
    """Indices in epochs of seeded random order, `size` at a time."""

    def __init__(self, n: int, size: int, generator: torch.Generator):
        self.n, self.size, self.g, self.queue = n, size, generator, []

    def next(self) -> list[int]:
        while len(self.queue) < self.size:
            self.queue += torch.randperm(self.n, generator=self.g).tolist()
        batch, self.queue = self.queue[:self.size], self.queue[self.size:]
        return batch


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, maps: list, sizes: list[int]) -> torch.Tensor:
    """Each example's mean squared error; where a term has weight maps (masked loss), each latent's error is first
    multiplied by its map scaled to the latents' grid (area mean: a latent's share of the subject), as kohya's
    sd-scripts do: the subject's latents learn as without a mask, the rest by their weight. Not normalized by the
    subject's area (OneTrainer's option): that would raise the subject's step size in a small subject."""
    error = F.mse_loss(pred.float(), target.float(), reduction="none")
    if any(m is not None for m in maps):
        grid = error.shape[-2:]
        scaled = [F.interpolate(m.to(error.device), size=grid, mode="area") if m is not None
                  else torch.ones(n, 1, *grid, device=error.device) for m, n in zip(maps, sizes)]
        error = error * torch.cat(scaled)
    return error.mean(dim=(1, 2, 3))


def _draw(mean: torch.Tensor, std: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A sample of the VAE's latent distribution (what `latent_dist.sample()` does, from cached moments)."""
    return mean + std * torch.randn(mean.shape, generator=g).to(mean.device)


def _optimizer_of(optimizer):
    return getattr(optimizer, "optimizer", optimizer)
