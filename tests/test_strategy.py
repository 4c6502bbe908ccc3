"""Eq. 6-10 and the selection rules, on plain arrays."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gal import strategy as S


def test_overfit_is_one_when_anchor_similarity_does_not_exceed_non_soi():
    s_a = np.array([[0.30, 0.20, 0.25]])
    s_n = np.array([[0.25, 0.20, 0.30]])
    assert S.overfit(s_a, s_n).tolist() == [[0, 1, 1]]  # Eq. 8: a tie counts as overfitted


def test_entropy_of_known_rates():
    omega = S.entropy([0.0, 0.5, 1.0, 0.3])
    assert omega[0] == 0 and omega[2] == 0
    assert omega[1] == pytest.approx(math.log(2))
    assert omega[3] == pytest.approx(-(0.7 * math.log(0.7) + 0.3 * math.log(0.3)))


@given(st.lists(st.floats(0, 1, allow_subnormal=False), min_size=1, max_size=20))
def test_entropy_is_symmetric_bounded_and_positive_inside(betas):
    b = np.array(betas)
    omega = S.entropy(b)
    assert np.allclose(omega, S.entropy(1 - b))
    assert np.all(omega >= 0) and np.all(omega <= math.log(2) + 1e-12)
    assert np.all((omega > 0) == ((b > 0) & (b < 1)))


@given(arrays(np.int64, st.tuples(st.integers(1, 12), st.integers(2, 10)), elements=st.integers(0, 1)))
def test_rate_and_openness_follow_eq_7_and_9(phi):
    beta = S.overfit_rate(phi)
    assert np.allclose(beta, phi.sum(axis=1) / phi.shape[1])
    omega = S.entropy(beta)
    assert S.openness(omega, 0.005) == pytest.approx(0.005 / len(omega) * omega.sum())


def test_stop_rule_counts_directions_with_positive_entropy():
    assert S.should_stop([0.0, 0.5, 0.0], k=2)
    assert not S.should_stop([0.1, 0.5, 0.0], k=2)
    assert S.should_stop([], k=1)


def test_top_k_breaks_ties_to_the_lower_index():
    assert S.top_k([0.5, 0.7, 0.7, 0.1, 0.7], 2) == [1, 2]
    assert S.top_k([0.0, 0.0, 0.0], 2) == [0, 1]


def test_uncertainty_picks_highest_entropy_then_highest_s_a():
    s_a = np.array([[0.1, 0.9, 0.3], [0.5, 0.2, 0.8], [0.4, 0.4, 0.1], [0.3, 0.2, 0.1]])
    omega = np.array([0.2, 0.69, 0.0, 0.69])
    picks = S.uncertainty(S.RoundScores(s_a, omega), 2, np.random.default_rng(0))
    assert picks == [S.Pick(1, 2), S.Pick(3, 0)]


def test_clip_feedback_picks_directions_with_best_faithful_sample():
    s_a = np.array([[0.1, 0.2], [0.9, 0.1], [0.5, 0.6]])
    picks = S.clip_feedback(S.RoundScores(s_a, np.zeros(3)), 2, np.random.default_rng(0))
    assert picks == [S.Pick(1, 0), S.Pick(2, 1)]


def test_picks_that_keep_the_subject_keep_to_their_anchor():
    """One direction, four samples: j=0 has the best s_a but copies the references (Φ = 1); j=1 follows its anchor
    but has lost the subject; j=2 and j=3 follow it and keep the subject, j=3 a little more."""
    s_a = np.array([[0.60, 0.55, 0.50, 0.48], [0.3, 0.3, 0.3, 0.3]])
    s_n = np.array([[0.65, 0.30, 0.31, 0.32], [0.9, 0.9, 0.9, 0.9]])
    identity = np.array([[0.90, 0.10, 0.60, 0.70], [0.5, 0.5, 0.5, 0.5]])
    scores = S.RoundScores(s_a, np.array([0.6, 0.0]), s_n, identity)
    assert S.PICKS["best"](scores, 0) == 0  # the paper's: highest s_a, the copy
    assert S.PICKS["kept"](scores, 0) == 2  # the best s_a among Φ = 0 with identity >= the round's median (0.5)
    assert S.PICKS["identity"](scores, 0) == 3  # standardised s_a + identity among Φ = 0
    assert S.PICKS["kept"](scores, 1) == S.PICKS["identity"](scores, 1) == 0  # nothing follows: the paper's pick
    assert S.choose("uncertainty", scores, 1, np.random.default_rng(0), pick="kept").picks == [S.Pick(0, 2)]


@given(st.integers(1, 15), st.integers(1, 15), st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_random_picks_k_distinct_directions_reproducibly(n, k, m, seed):
    scores = S.RoundScores(np.zeros((n, m)), np.zeros(n))
    a = S.random_directions(scores, k, np.random.default_rng(seed))
    b = S.random_directions(scores, k, np.random.default_rng(seed))
    assert a == b
    assert len({p.row for p in a}) == len(a) == min(k, n)
    assert all(0 <= p.j < m for p in a)


def test_balance_weight_is_openness_or_one():
    assert S.reference_weight(0.0021, balance="paper") == 0.0021
    assert S.reference_weight(0.0021, balance="separate") == 0.0021  # normalised inside the fine-tune
    assert S.reference_weight(0.0021, balance="off") == 1.0
