"""Adaptive sampling of the query phase (`--sampling adaptive`), beyond the paper: a pure function.

The paper spends m samples on every direction. Most directions are settled long before: their first
samples all copy the references (β near 1) or none do (β near 0), and they will neither be among the
top-k by Ω nor change Eq. 10's decision. Adaptive sampling makes the samples in waves, with the same
per-(round, anchor, j) seeds as the full query, so its samples are a prefix of each direction's full
ones; after each wave it keeps sampling only the directions whose part in the round's choice is still
open, judged by simulating their remaining samples:

- each direction's overfit probability has a Beta posterior from its Φ so far, under a prior fitted to
  the round's directions (empirical Bayes: the directions of one round are alike), worth at most 4 samples;
- DRAWS completions of every direction to m samples give the top-k sets (Eq. 6, ties to the lower
  position, as `strategy.top_k`) and Eq. 10's decisions the full query could reach;
- a direction stays open while its membership in the top-k, or (when Eq. 10 is undecided) its Ω > 0,
  is not settled with probability 1 - EPS; a direction in the current top-k stays open until it has
  all m samples (its new reference is its best of m, as in the paper). When Eq. 10 is settled on
  stopping (at 1 - `EPS_STOP`), nothing more is sampled.

Measured on the miniature bench's runs (benchmarks/adaptive_sampling.py, docs/performance.md): about two
thirds of the images for the same top-k in about 9 rounds of 10; not the default.

Never more than m per direction; with every direction complete it is the full query.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from gal.strategy import entropy, should_stop, top_k

DRAWS = 400
EPS = 0.05
EPS_STOP = 0.005  # Eq. 10 ends the run: it is settled at a stricter level
PRIOR_WEIGHT = 4.0  # the round's other directions count as at most 4 samples of a direction's own


def wave_size(m: int) -> int:
    """Samples per direction and wave: a quarter of m, at least 2 (3 of the paper's m = 10)."""
    return max(2, -(-m // 4))


def prior(counts: np.ndarray, made: np.ndarray) -> tuple[float, float]:
    """Beta(a, b) for the directions' overfit rates, by the moments of the beta-binomial (the spread of
    c_i / n_i beyond what n_i samples alone would give), with a + b at most PRIOR_WEIGHT: a round whose
    directions all began unanimous (β = 0 or 1 so far) must not rule out the late disagreements that the
    bench's runs show (docs/performance.md)."""
    rate = counts / made
    mu = float(np.clip(rate.mean(), 0.02, 0.98))
    inv_n = float(np.mean(1.0 / made))
    rho = (float(rate.var()) / (mu * (1 - mu)) - inv_n) / max(1e-9, 1 - inv_n)  # 1 / (a + b + 1)
    total = min(PRIOR_WEIGHT, 1 / float(np.clip(rho, 0.02, 0.95)) - 1)
    return mu * total, (1 - mu) * total


def still_open(counts, made, m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Which directions to sample further, from c_i overfitted samples (Φ = 1, Eq. 8) of n_i made so far."""
    eps, eps_stop = EPS, EPS_STOP
    counts, made = np.asarray(counts, dtype=np.int64), np.asarray(made, dtype=np.int64)
    n = len(counts)
    left = m - made
    if n == 0 or not left.any():
        return np.zeros(n, dtype=bool)
    omega_now = entropy(counts / made)  # Eq. 7, 6 on the samples so far
    stop_now = should_stop(omega_now, k)  # Eq. 10

    a, b = prior(counts, made)
    p = rng.beta(a + counts, b + made - counts, size=(DRAWS, n))
    final = counts + rng.binomial(left, p)  # each direction completed to m samples
    omega = entropy(final / m)
    in_top = np.zeros((DRAWS, n), dtype=bool)
    order = np.argsort(-omega, axis=1, kind="stable")[:, :k]  # top-k, ties to the lower position
    np.put_along_axis(in_top, order, True, axis=1)
    p_stop = float(((omega > 0).sum(axis=1) < k).mean())
    if p_stop >= 1 - eps_stop and stop_now:  # Eq. 10 will stop the run: no choice to make
        return np.zeros(n, dtype=bool)
    stop_open = not (p_stop <= eps_stop and not stop_now)
    p_in, p_pos = in_top.mean(axis=0), (omega > 0).mean(axis=0)
    current = np.zeros(n, dtype=bool)
    current[top_k(omega_now, k)] = True
    unsettled = (p_in > eps) & (p_in < 1 - eps)
    if stop_open:
        unsettled |= (p_pos > eps) & (p_pos < 1 - eps)
    return (left > 0) & (unsettled | current)


def next_wave(counts, made, m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """How many samples each direction should have after the next wave (its n_i where it is settled)."""
    made = np.asarray(made, dtype=np.int64)
    grow = still_open(counts, made, m, k, rng)
    return np.where(grow, np.minimum(m, made + wave_size(m)), made)


def waves(n: int, m: int, k: int, seed: int, r: int,
          make: Callable[[int, list[int]], Sequence[Sequence[int]]]) -> list[list[int]]:
    """The waves of round r over n directions: `make(wave, targets)` brings each direction i to targets[i]
    samples and returns every direction's Φ in j order. Returns each wave's targets. The decisions read only
    the samples j < target, with a generator seeded by (seed, r, wave): the same samples, the same waves."""
    targets = [min(m, wave_size(m))] * n
    made: list[list[int]] = []
    while True:
        made.append(targets)
        phi = make(len(made), targets)
        counts = [sum(row[:t]) for row, t in zip(phi, targets)]
        grown = next_wave(counts, targets, m, k, np.random.default_rng([seed, r, len(made)])).tolist()
        if grown == targets:
            return made
        targets = grown
