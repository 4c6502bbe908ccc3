"""A simulated person for the miniature world: a small CNN trained on the renderer's own labels (never on
the CLIP scorer) that tells what an image shows. It plays the human of the paper's "Oracle + Balance"
row in `gal bench`: it accepts the images that show the subject *and* follow their prompt.

    python -m gal.miniature.judge OUT [--steps N]     # trains in a few minutes on a CPU
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from gal.miniature import world

HEADS = {
    "shape": world.SHAPES + tuple(world.INSTANCES),
    "color": tuple(world.COLORS),
    "background": tuple(world.BACKGROUNDS),
    "style": world.STYLES + world.HELD_OUT_STYLES,
}


class JudgeNet(nn.Module):
    def __init__(self, width: int = 48):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.GELU(), nn.Conv2d(w, w, 3, padding=1, stride=2), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GELU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1, stride=2), nn.GELU(),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(16 * w, len(v)) for k, v in HEADS.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(x)
        return {k: head(h) for k, head in self.heads.items()}


def _batch(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def _labels(scenes: list[world.Scene]) -> dict[str, torch.Tensor]:
    out = {}
    for key, values in HEADS.items():
        out[key] = torch.tensor([values.index(getattr(s, key)) if getattr(s, key) in values else -100 for s in scenes])
    return out


def _degrade(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Generated samples are imperfect: judge them under noise and blur too."""
    noise = torch.rand(len(x), 1, 1, 1, generator=g) * 0.15
    x = x + noise * torch.randn(x.shape, generator=g)
    blurred = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
    pick = (torch.rand(len(x), 1, 1, 1, generator=g) < 0.4).float()
    return pick * blurred + (1 - pick) * x


def train_judge(out: str | Path, steps: int = 1500, seed: int = 0, batch: int = 96, pool: int = 12_000,
                log=print) -> dict:
    """Train on a pool of renders drawn once (rendering, not the CNN, was the cost of each step)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    images, _, scenes = world.render_dataset(pool, seed=seed * 100003 + 5, include_held_out=True)
    images, labels_all = _batch(images), _labels(scenes)
    log(f"judge: rendered {pool} scenes")
    net = JudgeNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for step in range(steps):
        idx = torch.randint(pool, (batch,), generator=g)
        x = _degrade(images[idx], g)
        labels, logits = {k: v[idx] for k, v in labels_all.items()}, net(x)
        loss = sum(F.cross_entropy(logits[k], labels[k], ignore_index=-100) for k in HEADS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            log(f"judge step {step + 1}/{steps} loss {loss.item():.3f}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out / "judge.safetensors")
    accuracy = Judge(out).accuracy(n=512)
    (out / "judge.json").write_text(json.dumps({"heads": HEADS, "steps": steps, "seed": seed, "accuracy": accuracy}, indent=1))
    return accuracy


class Judge:
    def __init__(self, folder: str | Path):
        self.net = JudgeNet()
        self.net.load_state_dict(load_file(Path(folder) / "judge.safetensors"))
        self.net.eval()

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> list[world.Scene]:
        logits = self.net(_batch(np.asarray(images)))
        picks = {k: logits[k].argmax(1).tolist() for k in HEADS}
        scenes = []
        for i in range(len(images)):
            shape = HEADS["shape"][picks["shape"][i]]
            color = None if shape in world.INSTANCES else HEADS["color"][picks["color"][i]]
            scenes.append(world.Scene(shape, color, HEADS["background"][picks["background"][i]],
                                      HEADS["style"][picks["style"][i]]))
        return scenes

    def accuracy(self, n: int = 512, seed: int = 99) -> dict:
        """Per attribute, on fresh clean renders (held-out subjects included)."""
        pairs = world.sample_scenes(n, seed=seed, include_held_out=True)
        predicted = self.predict(np.stack([world.render(s, r) for s, r in pairs]))
        return {k: float(np.mean([getattr(p, k) == getattr(s, k) for p, (s, _) in zip(predicted, pairs)
                                  if getattr(s, k) is not None])) for k in HEADS}


def expected_scene(template: str, subject: world.Subject) -> world.Scene:
    """What an anchor or test prompt asks for, in the world's terms (the subject in its own words)."""
    if subject.kind == "object":
        return world.parse_caption(template.replace("{}", f"a {subject.description}"))
    return world.parse_caption(template.replace("{}", subject.plain))


def misses(seen: world.Scene, wanted: world.Scene) -> list[str]:
    """The attributes the prompt states that the judge does not see."""
    return [k for k in HEADS if getattr(wanted, k) is not None and getattr(wanted, k) != getattr(seen, k)]


def faithful(seen: world.Scene, wanted: world.Scene) -> bool:
    """Every attribute the prompt states is what the judge sees."""
    return not misses(seen, wanted)


def verdict(seen: world.Scene, wanted: world.Scene, subject: world.Subject) -> tuple[bool, bool]:
    """The ground truth of the bench's second metric family: (subject kept, prompt followed). Kept: the judge sees
    the subject (an object's instance shape, a style's held-out style). Followed: it sees every other attribute the
    prompt states. A copy of the references' background is fidelity to CLIP-like IMG-ALN, not here."""
    attribute = "shape" if subject.kind == "object" else "style"
    return getattr(seen, attribute) == subject.name, not [k for k in misses(seen, wanted) if k != attribute]


def acceptable(seen: world.Scene, wanted: world.Scene) -> bool:
    """What a person accepts: the subject, the setting and the style as asked, and at most one detail of
    the content (its colour, or a plain shape) off. A copy of the reference's content misses two or more."""
    off = misses(seen, wanted)
    return not off or (len(off) == 1 and (off[0] == "color" or (off[0] == "shape" and wanted.shape not in world.INSTANCES)))


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="Train the miniature world's simulated person.")
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=1500)
    args = p.parse_args()
    print(json.dumps(train_judge(args.out, args.steps), indent=1))
