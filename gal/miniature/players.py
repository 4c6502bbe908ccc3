"""Who plays the person in `gal bench`'s human rows (`gal.miniature.rows`): the simulated person
(`gal.miniature.judge`), and the diagnostics' and probes' players, which replace the added images by the world's
own renders (perfect images) or by composites of the references' subject. A player takes the run folder with a
round waiting for review and k, and returns the (anchor, j) it accepts (`gal.miniature.bench.run_one` submits them)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from gal.miniature import judge as judges
from gal.miniature import world
from gal.storage import write_png

Player = Callable[[Path, int], list[tuple[int, int]]]  # (run folder, k) -> the (anchor, j) a person accepts


def oracle_picks(run_dir: Path, judge: judges.Judge, subject: world.Subject, k: int) -> list[tuple[int, int]]:
    """What the simulated person accepts in the pending round: one acceptable image (`judge.acceptable`:
    subject shown, prompt followed but for one detail; a fully faithful one first) of each of up to k
    directions, the directions where acceptable images are rarest first."""
    from gal.ledger import Ledger
    from gal.review import pending_round

    ledger = Ledger(run_dir)
    try:
        r = pending_round(ledger)
        anchors = {a.idx: a for a in ledger.anchors()}
        by_anchor: dict[int, list] = {}
        for s in ledger.samples(r):
            by_anchor.setdefault(s.anchor_idx, []).append(s)
    finally:
        ledger.close()
    found = []
    for idx, samples in sorted(by_anchor.items()):
        wanted = judges.expected_scene(anchors[idx].template, subject)
        seen = judge.predict(np.stack([np.asarray(Image.open(run_dir / s.path).convert("RGB")) for s in samples]))
        good = sorted((len(judges.misses(v, wanted)), s.j, s) for s, v in zip(samples, seen) if judges.acceptable(v, wanted))
        if good:
            found.append((len(good) / len(samples), idx, good[0][2]))
    return [(s.anchor_idx, s.j) for _, _, s in sorted(found)[:k]]


def _to_fill(run_dir: Path, count: int, k: int):
    """The pending round's directions a diagnostic or probe fills: GAL's top-k by Ω (Eq. 6; Eq. 10 set aside), or
    every direction of the pool (`count` > k); returns the run's config, its anchors by index and each direction's
    samples."""
    from gal import strategy
    from gal.config import make_config
    from gal.ledger import Ledger
    from gal.review import pending_round

    ledger = Ledger(run_dir)
    try:
        r = pending_round(ledger)
        cfg = make_config({**ledger.get("config"), "out": str(run_dir)}, source=str(run_dir))
        anchors = {a.idx: a for a in ledger.anchors()}
        directions = ledger.directions(r)
        samples = ledger.samples(r)
    finally:
        ledger.close()
    rows = strategy.top_k([d["entropy"] for d in directions], k) if count <= k else range(len(directions))
    return cfg, anchors, [[s for s in samples if s.anchor_idx == directions[row]["anchor_idx"]] for row in rows]


def perfect_picks(run_dir: Path, subject: world.Subject, count: int, k: int) -> list[tuple[int, int]]:
    """The diagnostic's picks: of the directions to fill (`_to_fill`), each one's best sample by s_a, whose file is
    then replaced by the world's own render of the subject in the anchor's context (the render's seed is the
    sample's)."""
    from gal import strategy

    _, anchors, chosen = _to_fill(run_dir, count, k)
    picks = []
    for own in chosen:
        best = own[strategy.best_sample([s.sim_anchor for s in own])]
        scene = judges.expected_scene(anchors[best.anchor_idx].template, subject)
        write_png(run_dir / best.path, Image.fromarray(world.render(scene, best.seed % 2**31)))
        picks.append((best.anchor_idx, best.j))
    return picks


def composite_picks(run_dir: Path, subject: world.Subject, count: int, k: int, on: str = "query") -> list[tuple[int, int]]:
    """The composite probe's picks (`rows.COMPOSITE`): of the directions to fill (`_to_fill`), each of the samples (`on`
    "query"), or the base model's image of the anchor in plain words from the same seed ("base"; "clear": with its
    object cleared where the subject goes; "restyle": cleared, then where the anchor names a style, img2img'd;
    "restyle-noclear": img2img'd without clearing), with the references' subject pasted in by their masks (reference
    j mod their number), scored by the run's scorer against the anchor (s_a); the best one's file is then replaced by
    its composite. The steps are gal/composite.py's, which `gal run --added composite` takes as "restyle"."""
    from gal import composite, strategy

    cfg, anchors, chosen = _to_fill(run_dir, count, k)
    flat = [s for own in chosen for s in own]
    texts = {s.path: anchors[s.anchor_idx].text for s in flat}
    if on == "query":
        from gal.score import ClipScorer

        pictures = [Image.open(run_dir / s.path) for s in flat]
        composer, scorer = None, ClipScorer(cfg.scorer)
    else:  # the base model, never fine-tuned: no checkpoint loaded
        from gal.components import Components
        from gal.family import family_of
        from gal.generate import generate

        parts = Components(cfg, family_of(cfg.base), trains=False)
        pictures = [im for _, batch in generate(parts.pipe, [texts[s.path] for s in flat], [s.seed for s in flat],
                                                steps=cfg.steps, guidance=cfg.query_guidance, resolution=parts.resolution,
                                                batch_size=parts.gen_batch_size, autocast_dtype=parts.autocast_dtype)
                    for im in batch]
        composer = composite.Composer(parts.pipe, parts.family, parts.scorer, parts.resolution, parts.gen_batch_size)
        scorer = parts.scorer
    cutouts = [composite.Subject(*c) for c in world.cutouts(subject.name)]
    clear = composite.clearing(np.asarray(pictures[0]).shape[0]) if on in ("clear", "restyle") else 0
    pasted = {s.path: composite.paste(np.asarray(im.convert("RGB")), cutouts[s.j % len(cutouts)], clear)
              for s, im in zip(flat, pictures)}
    if on.startswith("restyle"):
        styled = [s for s in flat if composite.names_a_style(anchors[s.anchor_idx].template)]  # "in dotted style"
        pasted.update(zip([s.path for s in styled], composer.restyle(
            [pasted[s.path] for s in styled], [texts[s.path] for s in styled], [s.seed for s in styled],
            steps=cfg.steps, guidance=cfg.query_guidance)))
    picks = []
    for own in chosen:
        s_a = scorer.similarity(scorer.image_features([pasted[s.path] for s in own]), [texts[own[0].path]])[:, 0]
        best = own[strategy.best_sample(s_a.numpy())]
        write_png(run_dir / best.path, Image.fromarray(pasted[best.path]))
        picks.append((best.anchor_idx, best.j))
    return picks
