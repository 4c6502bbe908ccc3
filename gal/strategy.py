"""Eq. 6-10 of the paper and the selection rules of its Table 1: pure functions over arrays.

Shapes: a round scores `n` anchors still in the pool with `m` samples each, so `sim_anchor`,
`sim_non_soi` and `phi` are (n, m) and `beta`, `omega` are (n,). Rows are positions in the pool,
not anchor indices; the loop maps them back. `score_directions` reads a round's samples on record (the ledger's
`Sample`s, by their fields) into these arrays.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np


def overfit(sim_anchor, sim_non_soi) -> np.ndarray:
    """Eq. 8: Φ = 1 when the image is no closer to its anchor text than to the non-SoI text."""
    return (np.asarray(sim_anchor) <= np.asarray(sim_non_soi)).astype(np.int64)


def overfit_rate(phi) -> np.ndarray:
    """Eq. 7: β_i, the share of overfitted samples of each anchor."""
    return np.asarray(phi, dtype=np.float64).mean(axis=-1)


def entropy(beta) -> np.ndarray:
    """Eq. 6: Ω = -[(1-β) ln(1-β) + β ln β], natural log, 0 when β is 0 or 1."""
    b = np.asarray(beta, dtype=np.float64)
    inside = (b > 0) & (b < 1)
    safe = np.where(inside, b, 0.5)
    return np.where(inside, -((1 - safe) * np.log(1 - safe) + safe * np.log(safe)), 0.0)


def openness(omega, lam: float) -> float:
    """Eq. 9: Δ = λ/|A| Σ Ω over the anchors evaluated this round."""
    omega = np.asarray(omega, dtype=np.float64)
    return float(lam * omega.sum() / len(omega)) if len(omega) else 0.0


def should_stop(omega, k: int) -> bool:
    """Eq. 10: stop when fewer than k directions are left with Ω > 0."""
    return int((np.asarray(omega) > 0).sum()) < k


def top_k(values, k: int) -> list[int]:
    """The k largest values, ties to the lower position (the authors' code breaks them the other way)."""
    values = np.asarray(values, dtype=np.float64)
    return sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]


def reference_weight(delta: float, balance: str) -> float:
    """Section 3.3: a new reference weighs Δ of its round with a balance scheme, 1 without ("off")."""
    return 1.0 if balance == "off" else float(delta)


class Pick(NamedTuple):
    row: int  # position of the anchor in the round's pool
    j: int  # which of its samples becomes a new reference


class RoundScores(NamedTuple):
    sim_anchor: np.ndarray  # (n, m) s_a
    omega: np.ndarray  # (n,) Ω
    sim_non_soi: np.ndarray | None = None  # (n, m) s_n: the picks that keep to Φ = 0 read it
    identity: np.ndarray | None = None  # (n, m) how much of the references' subject each sample shows (score.identity)


# Which sample of direction `row` becomes a new reference: `pick(scores, row) -> j`.
SamplePick = Callable[[RoundScores, int], int]
# A strategy is `strategy(scores, k, rng, pick) -> picks`, modAL-style: no model inside.
Strategy = Callable[[RoundScores, int, np.random.Generator, SamplePick], list[Pick]]


def best_sample(sim_anchor_row) -> int:
    """The most faithful sample of a direction: highest s_a (ties: lower j)."""
    return top_k(sim_anchor_row, 1)[0]


def highest_s_a(scores: RoundScores, row: int) -> int:
    """The paper's pick: the sample closest to its anchor text."""
    return best_sample(scores.sim_anchor[row])


def _best_within(values, allowed) -> int:
    """The highest value among the allowed samples (ties: lower j); all samples where none is allowed."""
    values, allowed = np.asarray(values, dtype=np.float64), np.asarray(allowed, dtype=bool)
    return best_sample(np.where(allowed, values, -np.inf) if allowed.any() else values)


def _follows(scores: RoundScores, row: int) -> np.ndarray:
    """Φ = 0 (Eq. 8): the samples that follow their anchor rather than the references' non-SoI content."""
    return overfit(scores.sim_anchor[row], scores.sim_non_soi[row]) == 0


def kept_subject(scores: RoundScores, row: int) -> int:
    """The highest-s_a sample among those that follow their anchor (Φ = 0) and show at least the round's median
    share of the references' subject; with none, the highest s_a among Φ = 0; with none of those, the paper's."""
    s_a, phi0 = scores.sim_anchor[row], _follows(scores, row)
    kept = phi0 & (scores.identity[row] >= np.median(scores.identity[np.isfinite(scores.sim_anchor)]))
    return _best_within(s_a, kept if kept.any() else phi0)


def identity_and_anchor(scores: RoundScores, row: int) -> int:
    """Among the samples that follow their anchor (Φ = 0), the best sum of s_a and identity, each standardised over
    the round (one is not worth more than the other for its spread); with none, over all of the direction's."""
    valid = np.isfinite(scores.sim_anchor)
    z = [(x[row] - x[valid].mean()) / (x[valid].std() + 1e-12) for x in (scores.sim_anchor, scores.identity)]
    return _best_within(z[0] + z[1], _follows(scores, row))


PICKS: dict[str, SamplePick] = {"best": highest_s_a, "kept": kept_subject, "identity": identity_and_anchor}


def uncertainty(scores: RoundScores, k: int, rng: np.random.Generator, pick: SamplePick = highest_s_a) -> list[Pick]:
    """Section 3.2: the k directions of highest entropy, each with its pick (the paper: highest s_a)."""
    return [Pick(i, pick(scores, i)) for i in top_k(scores.omega, k)]


def random_directions(scores: RoundScores, k: int, rng: np.random.Generator,
                      pick: SamplePick = highest_s_a) -> list[Pick]:
    """Table 1's Random: k directions and one of their samples, uniformly at random (`pick` is not read)."""
    n, m = scores.sim_anchor.shape
    rows = sorted(int(i) for i in rng.choice(n, size=min(k, n), replace=False))
    return [Pick(i, int(rng.integers(m))) for i in rows]


def clip_feedback(scores: RoundScores, k: int, rng: np.random.Generator, pick: SamplePick = highest_s_a) -> list[Pick]:
    """StyleDrop-CF style feedback: the k directions whose best sample has the highest s_a, each with its pick."""
    best = scores.sim_anchor.max(axis=1)
    return [Pick(i, pick(scores, i)) for i in top_k(best, k)]


def by_direction(samples: list, pool: list) -> list[list]:
    """A round's samples (the ledger's, in j order) grouped by the anchors of its pool, in pool order."""
    return [[s for s in samples if s.anchor_idx == a.idx] for a in pool]


def padded(rows: list[list[float]], fill: float) -> np.ndarray:
    """(n, m) from rows of up to m values: a direction that adaptive sampling left with fewer is padded with `fill`."""
    width = max(len(row) for row in rows)
    return np.array([row + [fill] * (width - len(row)) for row in rows], dtype=np.float64)


def score_directions(samples: list, pool: list, lam: float) -> tuple[RoundScores, np.ndarray, np.ndarray, float]:
    """A round's scores per direction from its samples on record: s_a, s_n and Ω (what the strategies read), β, and
    the openness Δ. A direction that adaptive sampling left with fewer samples has its s_a padded with -inf (never
    picked)."""
    rows = by_direction(samples, pool)
    s_a = padded([[s.sim_anchor for s in row] for row in rows], -np.inf)
    s_n = padded([[s.sim_non_soi for s in row] for row in rows], np.inf)
    beta = np.array([overfit_rate(overfit([s.sim_anchor for s in row], [s.sim_non_soi for s in row]))
                     for row in rows])  # Eq. 8, Eq. 7
    omega = entropy(beta)  # Eq. 6
    return RoundScores(s_a, omega, s_n), beta, omega, openness(omega, lam)  # Eq. 9


def reviewed_picks(accepted: list[tuple[int, int]], pool: list) -> list[Pick]:
    """A person's accepted images, (anchor index, j), as picks of the round's pool."""
    row_of = {a.idx: i for i, a in enumerate(pool)}
    return [Pick(row_of[a], j) for a, j in accepted]


class Choice(NamedTuple):
    picks: list[Pick]
    stop: str | None = None  # why the run ends after this round; None: it goes on


class Rule(NamedTuple):
    """A strategy of the loop: how it picks (None: no query, or a person's review) and whether Eq. 10 ends it."""
    pick: Strategy | None
    queries: bool = True
    stop_rule: bool = False  # Eq. 10 belongs to uncertainty sampling; Table 1's baselines run their round budget
    person: bool = False  # `gal review`: a person picks any images of any directions


RULES: dict[str, Rule] = {"uncertainty": Rule(uncertainty, stop_rule=True), "random": Rule(random_directions),
                          "clip": Rule(clip_feedback),
                          "human": Rule(None, person=True), "none": Rule(None, queries=False)}


def choose(name: str, scores: RoundScores, k: int, rng: np.random.Generator,
           reviewed: list[Pick] | None = None, pick: str = "best") -> Choice | None:
    """The round's picks (each direction's sample by `PICKS[pick]`) and whether the run stops; None while a
    person's review is still to come."""
    rule = RULES[name]
    if rule.person:
        if reviewed is None:
            return None
        return Choice(reviewed, None if reviewed else "review: no image accepted")
    if rule.stop_rule and should_stop(scores.omega, k):  # Eq. 10
        return Choice([], f"Eq. 10: {int((scores.omega > 0).sum())} direction(s) with Ω > 0, fewer than k = {k}")
    return Choice(rule.pick(scores, k, rng, PICKS[pick]))
