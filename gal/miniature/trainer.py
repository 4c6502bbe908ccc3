"""A resumable, seeded, killable trainer, for phases of any modules and loss (the miniature world's pretraining).

- `Run`        the run's folder: its state (state.json), log (train.log), step allowance and phase checkpoints
               (safetensors for tensors, JSON for everything else: no pickle anywhere);
- `run_phase`  one phase: AdamW with linear warm-up and cosine decay, gradient clipping, diffusers' `EMAModel`
               when asked; sized from a share of the time budget when no step count is given, logged, measured
               and checkpointed every few minutes, resumed from its last checkpoint.

Randomness is drawn per step from (seed, phase, step), so a checkpoint needs no RNG state. A SIGINT or SIGTERM
(`stop_on_signals`) or the end of the step allowance checkpoints and raises `Interrupted`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

from gal.storage import write_text


class Interrupted(Exception):
    """Raised inside a phase when this call's step allowance is used up (after a checkpoint)."""


class Run:
    """A run's folder, state, log and step allowance. `phases` names the phases in order: a phase's index
    numbers its random stream. `cfg` (a dataclass) also gives `run_phase` its `warmup`, `log_seconds`,
    `measure_minutes` and `checkpoint_minutes`; its `*_steps` fields may change between calls, nothing else."""

    def __init__(self, out_dir: Path, seed: int, cfg, minutes_budget: float, max_steps: int | None,
                 phases: tuple[str, ...]):
        self.out, self.seed, self.cfg, self.phases = out_dir, seed, cfg, phases
        self.ckpt = out_dir / "checkpoint"
        self.steps_left = max_steps
        self.stop_signal: str | None = None  # set by SIGINT/SIGTERM; the step loop then checkpoints and stops
        state_file = self.ckpt / "state.json"
        if state_file.exists():
            self.state = json.loads(state_file.read_text())
            self._check_same_run(minutes_budget)
            self.log(f"resuming from {state_file}: " + ", ".join(
                f"{p} step {s['step']}/{s['total']}" for p, s in self.state["phases"].items()))
        else:
            self.ckpt.mkdir(parents=True, exist_ok=True)
            self.state = {"seed": seed, "config": _jsonable(cfg), "minutes_budget": minutes_budget, "phases": {},
                          "history": [], "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            self.log(f"new run: seed {seed}, budget {minutes_budget} min, config {_jsonable(cfg)}")

    def _check_same_run(self, minutes_budget: float) -> None:
        stored = (self.state["seed"], _without_steps(self.state["config"]))
        if stored != (self.seed, _without_steps(_jsonable(self.cfg))):
            raise ValueError(f"{self.ckpt / 'state.json'} holds a run with another seed or config "
                             f"(seed {stored[0]}); pass force=True to start over")
        if minutes_budget != self.state["minutes_budget"]:
            self.log(f"note: keeping the stored budget of {self.state['minutes_budget']} min, not {minutes_budget}")

    def done(self, phase: str) -> bool:
        return bool(self.state["phases"].get(phase, {}).get("done"))

    @property
    def budget_seconds(self) -> float:
        return 60.0 * self.state["minutes_budget"]

    def step_generator(self, phase: str, step: int) -> torch.Generator:
        """The random stream of one step: the same on every machine and after any resume."""
        entropy = np.random.SeedSequence([self.seed, self.phases.index(phase), step]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(entropy))

    def log(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, flush=True)
        with open(self.out / "train.log", "a") as f:
            f.write(line + "\n")

    def record(self, entry: dict) -> None:
        self.state["history"].append(entry)
        self.log(json.dumps(entry))

    def save_state(self) -> None:
        write_text(self.ckpt / "state.json", json.dumps(self.state, indent=1))  # a crash leaves the old or the new

    def save_phase(self, name: str, tensors: dict[str, dict[str, torch.Tensor]]) -> None:
        """Write the phase's tensors to a fresh folder, then point the state at it, then drop the old one."""
        phase = self.state["phases"][name]
        folder = self.ckpt / f"{name}-{phase['step']:07d}"
        folder.mkdir(exist_ok=True)
        for file, t in tensors.items():
            save_file(t, folder / f"{file}.safetensors")
        old, phase["folder"] = phase.get("folder"), folder.name
        self.save_state()
        if old and old != folder.name:
            shutil.rmtree(self.ckpt / old, ignore_errors=True)

    def load_phase(self, name: str) -> dict[str, dict[str, torch.Tensor]] | None:
        folder = self.state["phases"].get(name, {}).get("folder")
        if not folder:
            return None
        return {p.stem: load_file(p) for p in (self.ckpt / folder).glob("*.safetensors")}


def _jsonable(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _without_steps(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.endswith("_steps")}


@contextmanager
def stop_on_signals(run: Run):
    """Within it, Ctrl-C or a TERM (e.g. from `timeout`) stops at the next step boundary with a checkpoint;
    a second Ctrl-C interrupts at once. The previous handlers come back on leaving."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if run.stop_signal:
            raise KeyboardInterrupt
        run.stop_signal = signal.Signals(signum).name
        run.log(f"{run.stop_signal} received: stopping at the next step with a checkpoint")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------------------------
# Checkpoint tensors: modules and EMA by parameter name, optimizer state by parameter index


def _module_tensors(modules: dict) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().contiguous() for name, m in modules.items() for k, v in m.state_dict().items()}


def _load_modules(modules: dict, tensors: dict[str, torch.Tensor]) -> None:
    for name, m in modules.items():
        prefix = name + "."
        m.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})


def _optimizer_tensors(opt) -> dict[str, torch.Tensor]:
    params = [p for group in opt.param_groups for p in group["params"]]
    return {f"{i}.{k}": v.contiguous() for i, p in enumerate(params) for k, v in opt.state.get(p, {}).items()}


def _load_optimizer(opt, tensors: dict[str, torch.Tensor]) -> None:
    params = [p for group in opt.param_groups for p in group["params"]]
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        opt.state[params[int(i)]][name] = value


def _parameter_names(modules: dict) -> list[str]:
    return [f"{n}.{k}" for n, m in modules.items() for k, _ in m.named_parameters()]


def parameters(modules: dict) -> list[torch.nn.Parameter]:
    """The modules' parameters in one list, in the order of their names (an `EMAModel`'s order)."""
    return [p for m in modules.values() for p in m.parameters()]


def _ema_tensors(ema: EMAModel, modules: dict) -> dict[str, torch.Tensor]:
    return dict(zip(_parameter_names(modules), ema.shadow_params))


def _load_ema(ema: EMAModel, modules: dict, tensors: dict[str, torch.Tensor], step: int) -> None:
    ema.shadow_params = [tensors[name] for name in _parameter_names(modules)]
    ema.optimization_step = step  # one update per step: the count is the phase's step, so a checkpoint omits it


def averaged(ema: EMAModel, modules: dict) -> dict:
    """Copies of the modules holding the averaged weights, in eval mode."""
    out = {n: copy.deepcopy(m).eval() for n, m in modules.items()}
    ema.copy_to(parameters(out))
    return out


# ---------------------------------------------------------------------------------------------
# The phase loop: step, time, calibrate, log, checkpoint, measure


def lr_at(step: int, total: int | None, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if total is not None:
        warmup = min(warmup, max(1, total // 10))
    lr = peak * min(1.0, (step + 1) / warmup)
    if total is not None:
        lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total)))
    return lr


def run_phase(run: Run, name: str, modules: dict, loss_fn, peak_lr: float, measure, explicit_steps: int | None,
              share: float, ema: EMAModel | None = None) -> None:
    """Train `modules` on `loss_fn(generator)` to the phase's total: `explicit_steps`, else what fills `share` of the
    budget at the speed of its first steps. Resumes from the phase's checkpoint; returns at once if it is done
    (the modules, and `ema`, then hold the saved weights). `measure()` gives the figures logged as it goes."""
    cfg = run.cfg
    phase = run.state["phases"].setdefault(name, {"step": 0, "total": explicit_steps, "seconds": 0.0, "measured_at": 0.0})
    params = parameters(modules)
    opt = torch.optim.AdamW(params, lr=peak_lr, weight_decay=0.01)
    saved = run.load_phase(name)
    if saved:
        _load_modules(modules, saved["model"])
        _load_optimizer(opt, saved.get("optimizer", {}))
        if ema is not None:
            _load_ema(ema, modules, saved["ema"], phase["step"])
    if phase.get("done"):
        return
    for m in modules.values():
        m.train()

    def save(final: bool = False):
        tensors = {"model": _module_tensors(modules)}
        if not final:  # a finished phase needs no optimizer state
            tensors["optimizer"] = _optimizer_tensors(opt)
        if ema is not None:
            tensors["ema"] = _ema_tensors(ema, modules)
        run.save_phase(name, tensors)

    calibration = []  # seconds of steps 5..24 of this call, to size the phase from the budget
    last_save = last_log = time.time()
    smoothed = None
    while phase["total"] is None or phase["step"] < phase["total"]:
        if run.stop_signal or (run.steps_left is not None and run.steps_left <= 0):
            save()
            raise Interrupted(f"stopped in phase {name} at step {phase['step']}" +
                              (f" on {run.stop_signal}" if run.stop_signal else ""))
        step = phase["step"]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, phase["total"], peak_lr, cfg.warmup)
        start = time.perf_counter()
        loss = loss_fn(run.step_generator(name, step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema is not None:
            ema.step(params)
        took = time.perf_counter() - start
        phase["step"] += 1
        phase["seconds"] += took
        if run.steps_left is not None:
            run.steps_left -= 1
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()

        if phase["total"] is None:
            calibration.append(took)
            if len(calibration) == 25:
                per_step = float(np.mean(calibration[5:]))
                remaining = share * run.budget_seconds - phase["seconds"]
                phase["total"] = phase["step"] + max(1, int(remaining / per_step))
                run.log(f"{name}: {per_step:.3f} s/step -> {phase['total']} steps in its share of the budget")
        if time.time() - last_log >= cfg.log_seconds or phase["step"] == phase["total"]:
            run.log(f"{name} step {phase['step']}/{phase['total']} loss {smoothed:.4f} "
                    f"lr {opt.param_groups[0]['lr']:.2e} {phase['step'] / max(phase['seconds'], 1e-9):.2f} steps/s "
                    f"(phase {phase['seconds'] / 60:.1f} min)")
            last_log = time.time()
        if phase["seconds"] - phase["measured_at"] >= 60 * cfg.measure_minutes:
            phase["measured_at"] = phase["seconds"]
            run.record({"phase": name, "step": phase["step"], "loss": smoothed, **_timed(measure)})
        if time.time() - last_save >= 60 * cfg.checkpoint_minutes:
            save()
            last_save = time.time()
    phase["done"] = True
    save(final=True)  # before measuring, so an interruption there loses nothing
    run.record({"phase": name, "step": phase["step"], "loss": smoothed, "final": True, **_timed(measure)})
    run.save_state()


def _timed(measure) -> dict:
    start = time.time()
    out = measure()
    return {**out, "measure_seconds": round(time.time() - start, 1)}
