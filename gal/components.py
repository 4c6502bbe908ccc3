"""The loaded components of a run, kept across rounds: the pipeline (with its LoRA or full weights) of the base's
family, the personalizer, the CLIP scorer, the query (gal.query), the round's fine-tune (gal.fine_tune), the composer
of `--added composite` (gal.composite) and the accelerate state. Loaded once; nothing is re-read from disk per round."""

from __future__ import annotations

import torch

from gal.config import Config
from gal.fine_tune import FineTune
from gal.generate import auto_batch_size
from gal.models import image_resolution, load_pipeline, mixed_precision, pick_device, precision_dtype
from gal.personalize import Personalizer
from gal.query import Query
from gal.score import ClipScorer


class Components:

    def __init__(self, cfg: Config, family, trains: bool = True):
        """The run's models on its device, the pipeline of the base's `family` (gal.family, read once when the config
        was settled); `trains=False` for evaluation (no optimizer, no copy of the weights, no fine-tune)."""
        from accelerate import Accelerator

        device = pick_device(cfg.device)
        precision = mixed_precision(cfg.mixed_precision, device)
        self.accelerator = Accelerator(mixed_precision=precision, cpu=device.type == "cpu")
        frozen_dtype = precision_dtype(precision)
        self.autocast_dtype = frozen_dtype if precision != "no" else None
        # the scorer is small: its errors come first
        self.scorer = ClipScorer(cfg.scorer, device=self.accelerator.device, allow_pickle=cfg.allow_pickle)
        # Frozen weights in half precision on GPUs; a fully fine-tuned UNet keeps fp32 master weights.
        self.family = family
        self.pipe = load_pipeline(cfg.base, frozen_dtype, frozen_dtype if cfg.method == "lora" else torch.float32,
                                  allow_pickle=cfg.allow_pickle, quantize=cfg.quantize, family=family)
        self.resolution = image_resolution(self.pipe, cfg.resolution, family)
        self.pipe.to(self.accelerator.device)
        self.personalizer = Personalizer(self.pipe, self.accelerator, method=cfg.method, lr=cfg.lr, rank=cfg.lora_rank,
                                         resolution=self.resolution, trains=trains, optimizer=cfg.optimizer,
                                         family=family)
        if cfg.compile:
            getattr(self.pipe, family.denoiser).compile()  # in place: pipeline, trainer and LoRA share it
        family.use_query_sampler(self.pipe)
        self.gen_batch_size = (auto_batch_size(self.accelerator.device, self.resolution)
                               if cfg.gen_batch_size == "auto" else int(cfg.gen_batch_size))
        self.query = Query(self.pipe, self.scorer, self.accelerator, self.gen_batch_size, self.resolution,
                           self.autocast_dtype)
        self.fine_tune = FineTune(cfg, self.personalizer, self.query) if trains else None
        self.composer = None  # --added composite: what makes the added images (gal/composite.py)
        if trains and cfg.added == "composite":
            from gal.composite import Composer

            self.composer = Composer(self.pipe, family, self.scorer, self.resolution, self.gen_batch_size,
                                     self.autocast_dtype)
