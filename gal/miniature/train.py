"""Reproducible, resumable pretraining of the miniature world's text-to-image model and scorer.

Phases, in order; each saves a checkpoint every few minutes and resumes from it (gal.miniature.trainer):
  data    render the training set once (cached as .npy in the checkpoint folder)
  vae     diffusers AutoencoderKL, 32x32x3 -> 8x8x4: L1 + L2 reconstruction, tiny KL
  scorer  transformers CLIPModel, contrastive, with one-attribute-off captions as hard negatives
          and noise/blur/VAE-roundtrip augmentation (so it judges imperfect samples fairly)
  unet    UNet2DConditionModel + CLIPTextModel trained jointly on VAE latents: v-prediction,
          min-SNR weighting, caption dropout (for classifier-free guidance), EMA, cosine LR
  final   OUT/model: StableDiffusionPipeline (EMA weights); OUT/scorer: CLIPModel + CLIPProcessor

The architectures are gal.miniature.architecture's. The step count of each phase is fixed either by the config
(exact reproduction) or, by default, from the time budget: each phase times its first steps and sets its total to
fill its share of the budget. The totals are recorded in the checkpoint, so a resumed run keeps them.
Randomness is drawn per step from (seed, phase, step), so a checkpoint needs no RNG state.

    python -m gal.miniature.train OUT --minutes 120
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel, compute_snr

from gal.miniature import check as quality
from gal.miniature.architecture import (
    MAX_LENGTH,
    Sizes,
    build_pipeline,
    build_scorer,
    build_text_encoder,
    build_unet,
    build_vae,
    noise_schedulers,
    scorer_pixels,
    scorer_processor,
    write_tokenizer,
)
from gal.miniature.trainer import Interrupted, Run, averaged, parameters, run_phase, stop_on_signals
from gal.miniature.world import Scene, caption, is_held_out, one_off_captions, render, sample_scenes
from gal.score import ClipScorer
from gal.storage import RunLock, folder_in_place

PHASES = ("vae", "scorer", "unet")


@dataclass(frozen=True)
class TrainConfig(Sizes):
    """The models' sizes (architecture.Sizes), and how to train them."""

    n_images: int = 48_000  # rendered once; ~a quarter show held-out subjects (VAE and scorer only)
    # time split of the budget; the rest (~8%) goes to rendering, measuring and saving.
    # The scorer gets more than a quarter: in an 85-minute run its shape judgement limited every gate.
    vae_share: float = 0.17
    scorer_share: float = 0.28
    unet_share: float = 0.47
    # explicit step counts override the budget (for exact reproduction on another machine)
    vae_steps: int | None = None
    scorer_steps: int | None = None
    unet_steps: int | None = None
    # optimisation
    batch_size: int = 64  # UNet
    vae_batch_size: int = 32  # the VAE learns per step more than per sample, and its steps are the dearest
    scorer_batch_size: int = 128
    hard_negatives: int = 6  # near-miss captions per image in each scorer step
    vae_lr: float = 1e-3
    scorer_lr: float = 5e-4
    unet_lr: float = 5e-4
    warmup: int = 100
    ema_decay: float = 0.999
    caption_dropout: float = 0.1  # empty caption, so classifier-free guidance has an unconditional model
    min_snr_gamma: float = 5.0
    # bookkeeping
    checkpoint_minutes: float = 5.0
    measure_minutes: float = 15.0  # measured in each phase's own training time
    log_seconds: float = 30.0
    measure_n: int = 64


# ---------------------------------------------------------------------------------------------
# Data


class Data:
    """The pre-rendered set in memory, with per-caption token ids cached."""

    def __init__(self, images: np.ndarray, scenes: list[Scene], tokenizer):
        self.images = torch.from_numpy(images)  # uint8 (n, 32, 32, 3)
        self.scenes = scenes
        self.held_in = torch.tensor([i for i, s in enumerate(scenes) if not is_held_out(s)])
        self.tokenizer = tokenizer
        self._ids: dict[str, list[int]] = {}

    def token_ids(self, texts: list[str], pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention mask), padded with the end token to pad_to or to the longest text."""
        for t in texts:
            if t not in self._ids:
                self._ids[t] = self.tokenizer(t, truncation=True).input_ids
        rows = [self._ids[t] for t in texts]
        length = pad_to or max(map(len, rows))
        ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask


def load_data(run: Run, tokenizer) -> Data:
    pairs = sample_scenes(run.cfg.n_images, run.seed, include_held_out=True)
    cache = run.ckpt / f"images-{run.cfg.n_images}-{run.seed}.npy"
    if cache.exists():
        images = np.load(cache, allow_pickle=False)
    else:
        start = time.time()
        images = np.stack([render(scene, s) for scene, s in pairs])
        np.save(cache, images, allow_pickle=False)
        run.log(f"rendered {len(images)} images in {time.time() - start:.0f} s")
    return Data(images, [scene for scene, _ in pairs], tokenizer)


def _to_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (b, H, W, 3) -> float (b, 3, H, W) in [0, 1]."""
    return images_uint8.permute(0, 3, 1, 2).float() / 255.0


# ---------------------------------------------------------------------------------------------
# Phase 1: the autoencoder


def train_vae(run: Run, data: Data):
    cfg = run.cfg
    torch.manual_seed(run.seed)
    vae = build_vae(cfg)
    fresh = torch.from_numpy(np.stack([render(s, seed) for s, seed in sample_scenes(256, run.seed + 7, include_held_out=True)]))

    def loss_fn(g):
        idx = torch.randint(len(data.images), (cfg.vae_batch_size,), generator=g)
        x = _to_unit(data.images[idx]) * 2 - 1
        x = torch.where(torch.rand(len(x), 1, 1, 1, generator=g) < 0.5, x.flip(-1), x)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)
        # Noisy latents teach the decoder to clean up the UNet's imperfect latents.
        noisy = torch.rand(len(z), 1, 1, 1, generator=g) < 0.5
        z = z + noisy * 0.1 * z.detach().std() * torch.randn(z.shape, generator=g)
        recon = vae.decode(z).sample
        return F.l1_loss(recon, x) + F.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()

    @torch.no_grad()
    def measure():
        vae.eval()
        x = _to_unit(fresh) * 2 - 1
        mse = F.mse_loss(vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1), x).item()
        vae.train()
        return {"vae_psnr": round(10 * math.log10(4 / mse), 2)}

    run_phase(run, "vae", {"vae": vae}, loss_fn, cfg.vae_lr, measure, cfg.vae_steps, cfg.vae_share)
    return vae.eval()


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of each image (sampled afresh at every UNet step)."""
    means, stds = [], []
    for i in range(0, len(images), batch):
        posterior = vae.encode(_to_unit(images[i : i + batch]) * 2 - 1).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def vae_roundtrips(vae, images: torch.Tensor, seed: int, batch: int = 256) -> torch.Tensor:
    """Images passed through the autoencoder with latent noise: the look of generated samples."""
    out = []
    g = torch.Generator().manual_seed(seed)
    for i in range(0, len(images), batch):
        posterior = vae.encode(_to_unit(images[i : i + batch]) * 2 - 1).latent_dist
        z = posterior.mean + 0.1 * posterior.mean.std() * torch.randn(posterior.mean.shape, generator=g)
        x = (vae.decode(z).sample.clamp(-1, 1) + 1) * 127.5
        out.append(x.round().to(torch.uint8).permute(0, 2, 3, 1))
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Phase 2: the scorer


def _said(scene: Scene, g: torch.Generator) -> Scene:
    """What a caption states of the scene: mostly everything; sometimes no background, colour or style,
    so that prompts such as anchors ('a blue square in <mosaic> style') and Eq. 8's content-only text
    ('a red circle on grass') are in distribution."""
    r = torch.rand((), generator=g).item()
    if r < 0.15:
        return replace(scene, background=None)
    if r < 0.2 and scene.color is not None:
        return replace(scene, color=None)
    if r < 0.3:
        return replace(scene, style=None)
    return scene


@lru_cache(maxsize=None)
def _near_misses(scene: Scene) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(shape near misses, all near misses) of a scene's caption."""
    off = one_off_captions(scene)
    return tuple(t for a, t in off if a == "shape"), tuple(t for _, t in off)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Blur half of the batch, add pixel noise of random strength, flip at random; x in [0, 1]."""
    b = len(x)
    sigma = 0.3 + 0.9 * torch.rand((), generator=g).item()
    k = torch.exp(-0.5 * (torch.arange(-2, 3, dtype=torch.float32) / sigma) ** 2)
    k = (k[:, None] * k[None, :] / k.sum() ** 2).expand(3, 1, 5, 5)
    blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k, groups=3)
    x = torch.where(torch.rand(b, 1, 1, 1, generator=g) < 0.5, blurred, x)
    x = x + 0.12 * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    x = torch.where(torch.rand(b, 1, 1, 1, generator=g) < 0.5, x.flip(-1), x)
    return x.clamp(0, 1)


def _pooled(output) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected feature.
    return output if torch.is_tensor(output) else output.pooler_output


def train_scorer(run: Run, data: Data, vae, tokenizer):
    cfg = run.cfg
    pool, pool_scene = data.images, torch.arange(len(data.images))
    if not run.done("scorer"):  # a quarter of the images also as VAE round trips
        subset = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(run.seed))
        subset = subset[: len(data.images) // 4]
        pool = torch.cat([pool, vae_roundtrips(vae, data.images[subset], run.seed)])
        pool_scene = torch.cat([pool_scene, subset])
    torch.manual_seed(run.seed + 1)
    model = build_scorer(cfg, tokenizer)
    processor = scorer_processor(tokenizer)

    def loss_fn(g):
        idx = torch.randint(len(pool), (cfg.scorer_batch_size,), generator=g)
        scenes = [_said(data.scenes[i], g) for i in pool_scene[idx].tolist()]
        truths = [caption(s) for s in scenes]
        negatives = []
        # A few near misses per image: the distinctions the checks ask about. Half are shapes, the
        # attribute a small ViT learns last (after 7 minutes: shape 0.31, colour 1.0, background 1.0).
        for s in scenes:
            for misses in _near_misses(s):
                if misses:
                    pick = torch.randint(len(misses), (cfg.hard_negatives // 2,), generator=g).tolist()
                    negatives += [misses[j] for j in pick]
        texts = sorted(set(truths) | set(negatives))
        position = {t: i for i, t in enumerate(texts)}
        target = torch.tensor([position[t] for t in truths])
        ids, mask = data.token_ids(texts)
        image_f = _pooled(model.get_image_features(pixel_values=scorer_pixels(_augment(_to_unit(pool[idx]), g))))
        text_f = _pooled(model.get_text_features(input_ids=ids, attention_mask=mask))
        image_f = image_f / image_f.norm(dim=-1, keepdim=True)
        text_f = text_f / text_f.norm(dim=-1, keepdim=True)
        logits = model.logit_scale.clamp(max=math.log(100)).exp() * image_f @ text_f.T
        return F.cross_entropy(logits, target)

    def measure():
        model.eval()
        out = quality.scorer_accuracy(ClipScorer.from_modules(model, processor), n=2 * cfg.measure_n)
        model.train()
        return {"scorer": out}

    run_phase(run, "scorer", {"scorer": model}, loss_fn, cfg.scorer_lr, measure, cfg.scorer_steps, cfg.scorer_share)
    return model.eval(), processor


# ---------------------------------------------------------------------------------------------
# Phase 3: the denoiser and its text encoder


def _training_caption(scene: Scene, g: torch.Generator, dropout: float) -> str:
    """A caption variant (see `_said`), or with probability `dropout` the empty caption (for guidance)."""
    if torch.rand((), generator=g).item() < dropout:
        return ""
    return caption(_said(scene, g))


def train_unet(run: Run, data: Data, vae, tokenizer, scorer, processor):
    cfg = run.cfg
    held_in = data.held_in
    mean, std = encode_latents(vae, data.images[held_in]) if not run.done("unet") else (None, None)
    if "scaling_factor" not in run.state:
        run.state["scaling_factor"] = float(1.0 / mean.std())  # unit-variance latents, as SD's 0.18215 does
    scaling = run.state["scaling_factor"]
    vae.register_to_config(scaling_factor=scaling)
    torch.manual_seed(run.seed + 2)
    text_encoder = build_text_encoder(cfg, tokenizer)
    unet = build_unet(cfg)
    modules = {"unet": unet, "text_encoder": text_encoder}
    # diffusers' warm-up: decay min(ema_decay, n / (9 + n)) at update n, except the first, which copies the weights
    ema = EMAModel(parameters(modules), decay=cfg.ema_decay)
    noise_scheduler = noise_schedulers()[0]

    def loss_fn(g):
        pick = torch.randint(len(held_in), (cfg.batch_size,), generator=g)
        z = (mean[pick] + std[pick] * torch.randn(mean[pick].shape, generator=g)) * scaling
        texts = [_training_caption(data.scenes[i], g, cfg.caption_dropout) for i in held_in[pick].tolist()]
        ids, _ = data.token_ids(texts, pad_to=MAX_LENGTH)  # padded as the pipeline pads prompts
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(z),), generator=g)
        noise = torch.randn(z.shape, generator=g)
        prediction = unet(noise_scheduler.add_noise(z, noise, t), t, text_encoder(ids)[0]).sample
        target = noise_scheduler.get_velocity(z, noise, t)
        snr = compute_snr(noise_scheduler, t)
        weight = snr.clamp(max=cfg.min_snr_gamma) / (snr + 1)  # min-SNR weighting for v-prediction
        return (weight * (prediction - target).pow(2).mean(dim=(1, 2, 3))).mean()

    def measure():
        average = averaged(ema, modules)
        pipe = build_pipeline(vae, average["text_encoder"], tokenizer, average["unet"])
        return {"generator": quality.generator_accuracy(pipe, ClipScorer.from_modules(scorer, processor), n=cfg.measure_n)}

    run_phase(run, "unet", modules, loss_fn, cfg.unet_lr, measure, cfg.unet_steps, cfg.unet_share, ema=ema)
    return averaged(ema, modules)


# ---------------------------------------------------------------------------------------------
# Entry point


def extend(run: Run) -> list[str]:
    """Explicit step counts above a phase's recorded total train that phase longer (the cosine
    schedule stretched to the new total, a fresh optimizer if the phase had finished). Only the
    scorer and the UNet: nothing else is trained on them, while the VAE's latents are."""
    extended = []
    for name in PHASES:
        steps, phase = getattr(run.cfg, f"{name}_steps"), run.state["phases"].get(name)
        if steps is None or phase is None or phase["total"] in (None, steps):
            continue
        if name == "vae" or steps < phase["step"]:
            raise ValueError(f"--{name}-steps {steps}: the run's {name} phase is at step {phase['step']} of "
                             f"{phase['total']}; only the scorer and the UNet can be trained longer")
        run.log(f"{name}: extending from {phase['total']} to {steps} steps")
        phase.update(total=steps, done=False)
        extended.append(name)
    return extended


def final_paths(out_dir: str | Path) -> tuple[Path, Path]:
    return Path(out_dir) / "model", Path(out_dir) / "scorer"


def write_final(out_dir: Path, pipe, scorer, processor) -> None:
    """Save both folders beside their final place, then move them in: no half-written weights."""
    model_dir, scorer_dir = final_paths(out_dir)
    with folder_in_place(model_dir) as tmp:  # a longer-trained run replaces its earlier weights
        pipe.save_pretrained(tmp, safe_serialization=True)
    with folder_in_place(scorer_dir) as tmp:
        scorer.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)


def train(out_dir: str | Path, seed: int = 0, minutes_budget: float = 120.0, force: bool = False,
          config: TrainConfig | None = None, max_steps: int | None = None) -> dict:
    """Train the miniature world's pipeline and scorer into OUT/model and OUT/scorer.

    Resumes from OUT/checkpoint when one exists. `max_steps` caps the optimizer steps of this call
    (the run then stops with a checkpoint and returns status "interrupted"). Refuses to overwrite
    finished weights unless force=True, which starts over."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(out_dir):  # two trainings in one folder would overwrite each other's checkpoints
        torch.set_flush_denormal(True)  # denormal floats made CPU steps several times slower at random
        try:
            return _train_locked(out_dir, seed, minutes_budget, force, config or TrainConfig(), max_steps)
        finally:
            torch.set_flush_denormal(False)  # process-wide state: leave it as found


def _train_locked(out_dir: Path, seed: int, minutes_budget: float, force: bool, cfg: TrainConfig,
                  max_steps: int | None) -> dict:
    model_dir, scorer_dir = final_paths(out_dir)
    finished = (model_dir / "model_index.json").exists() or (scorer_dir / "config.json").exists()
    if force:
        for path in (model_dir, scorer_dir, out_dir / "checkpoint"):
            shutil.rmtree(path, ignore_errors=True)
        (out_dir / "train.log").unlink(missing_ok=True)
    if finished and not force and not (out_dir / "checkpoint" / "state.json").exists():
        raise FileExistsError(f"{out_dir} already holds trained weights ({model_dir}, {scorer_dir}); "
                              "pass force=True (--force) to train again from scratch")
    run = Run(out_dir, seed, cfg, minutes_budget, max_steps, PHASES)
    if not extend(run) and finished and not force:
        raise FileExistsError(f"{out_dir} already holds trained weights ({model_dir}, {scorer_dir}); "
                              "pass force=True (--force) to train again from scratch, or a larger "
                              "--scorer-steps/--unet-steps to train a phase longer")
    start = time.time()
    try:
        with stop_on_signals(run):
            tokenizer = write_tokenizer(run.ckpt / "tokenizer")
            data = load_data(run, tokenizer)
            vae = train_vae(run, data)
            scorer, processor = train_scorer(run, data, vae, tokenizer)
            average = train_unet(run, data, vae, tokenizer, scorer, processor)
    except Interrupted as stop:
        run.log(f"{stop}; run again to resume")
        return {"status": "interrupted", "checkpoint": str(run.ckpt)}
    write_final(out_dir, build_pipeline(vae, average["text_encoder"], tokenizer, average["unet"]), scorer, processor)
    final = quality.check(model_dir, scorer_dir, n=cfg.measure_n)
    run.state["final"] = final
    run.state["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    run.record({"phase": "final", **final, "minutes_this_call": round((time.time() - start) / 60, 1)})
    run.save_state()
    return {"status": "done", "model": str(model_dir), "scorer": str(scorer_dir), **final}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pretrain the miniature world's model and scorer (resumable).")
    parser.add_argument("out_dir")
    parser.add_argument("--minutes", type=float, default=120.0, help="time budget of the whole run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="start over even if OUT holds weights")
    parser.add_argument("--n-images", type=int, default=TrainConfig.n_images)
    parser.add_argument("--max-steps", type=int, default=None, help="stop (with a checkpoint) after this many steps")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads; on a shared machine 1 beats an oversubscribed 2 by far")
    for phase in PHASES:
        parser.add_argument(f"--{phase}-steps", type=int, default=None, help=f"fix the {phase} step count")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = replace(TrainConfig(), n_images=args.n_images, vae_steps=args.vae_steps, scorer_steps=args.scorer_steps,
                  unet_steps=args.unet_steps)
    result = train(args.out_dir, seed=args.seed, minutes_budget=args.minutes, force=args.force, config=cfg,
                   max_steps=args.max_steps)
    print(json.dumps(result, indent=1))
    if result["status"] != "done":
        raise SystemExit(3)  # so that scripts can tell an interrupted run from a finished one


if __name__ == "__main__":
    main()
