"""`--sampling adaptive`: waves of the full query's own samples, decided by gal.sampling, resumed exactly."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gal import sampling, strategy
from gal.cli import main
from gal.ledger import Ledger

from conftest import killed_at, ledger_samples, run_args

ADAPTIVE = ("--rounds", "2", "--m", "6", "--sampling", "adaptive", "--gen-batch-size", "2")


@given(st.integers(2, 12).flatmap(lambda m: st.tuples(
    st.just(m), st.integers(1, 4),
    st.lists(st.lists(st.integers(0, 1), min_size=m, max_size=m), min_size=1, max_size=12))),
    st.integers(0, 2**31))
def test_waves_grow_to_at_most_m_and_complete_every_chosen_direction(case, seed):
    m, k, phi = case
    made = sampling.waves(len(phi), m, k, seed, 1, lambda wave, targets: phi)
    assert made[0] == [min(m, sampling.wave_size(m))] * len(phi)
    for before, after in zip(made, made[1:]):
        assert all(b <= a <= m for b, a in zip(before, after)) and before != after
    final = made[-1]
    assert made == sampling.waves(len(phi), m, k, seed, 1, lambda wave, targets: phi)  # deterministic
    beta = np.array([np.mean(row[:t]) for row, t in zip(phi, final)])
    omega = strategy.entropy(beta)
    if not strategy.should_stop(omega, k):  # the directions Eq. 6 ranks first get their m samples
        assert all(final[i] == m for i in strategy.top_k(omega, k))


def test_a_settled_round_stops_sampling_and_an_open_one_goes_on():
    m, k = 10, 2
    settled = [[0] * 3] * 10 + [[1, 0, 1], [0, 1, 0], [1, 1, 0]]  # 3 mixed, 10 unanimous directions
    grow = sampling.next_wave([sum(r) for r in settled], [3] * len(settled), m, k, np.random.default_rng(0))
    assert list(grow[-3:]) != [3, 3, 3]  # the candidates for the top-k are sampled further
    assert not sampling.still_open([0, 10, 5], [10, 10, 10], m, k, np.random.default_rng(0)).any()  # all complete


def _samples(run_dir, r=1):
    ledger = Ledger(run_dir)
    try:
        return {(s.anchor_idx, s.j): s for s in ledger.samples(r)}, ledger.waves(r), ledger.pool(r)
    finally:
        ledger.close()


@pytest.mark.slow
def test_adaptive_run_is_a_prefix_of_the_full_query_and_resumes_to_the_same_waves(tiny, tmp_path, capsys):
    full, adaptive, killed = tmp_path / "full", tmp_path / "adaptive", tmp_path / "killed"
    assert main(run_args(tiny, full, *ADAPTIVE[:-4], "--gen-batch-size", "2")) == 0
    assert main(run_args(tiny, adaptive, *ADAPTIVE)) == 0
    assert "adaptive sampling made" in capsys.readouterr().out
    every, _, pool = _samples(full)
    some, recorded, _ = _samples(adaptive)
    assert set(some) < set(every) or len(some) == len(every)
    for key, s in some.items():  # the same seeds: the same images and scores
        assert (s.seed, s.sim_anchor, s.sim_non_soi) == (every[key].seed, every[key].sim_anchor, every[key].sim_non_soi)
        assert (adaptive / s.path).read_bytes() == (full / every[key].path).read_bytes()
    # the recorded waves are what gal.sampling makes of the full query's Φ, and say which samples were skipped
    phi = [[every[a.idx, j].overfit for j in range(6)] for a in pool]
    replay = sampling.waves(len(pool), 6, 2, 0, 1, lambda wave, targets: phi)
    assert recorded == [{a.idx: t for a, t in zip(pool, w)} for w in replay]
    assert sorted(some) == sorted((a.idx, j) for a, t in zip(pool, replay[-1]) for j in range(t))

    assert sum(replay[0]) == 12 and sum(replay[-1]) > 14  # wave 1: 2 samples of each of 6 directions
    killed_at("samples#7", run_args(tiny, killed, *ADAPTIVE), tmp_path / "barrier")  # wave 2's first batch recorded
    assert ledger_samples(killed) == 14 and len(Ledger(killed).waves(1)) == 2
    assert main(run_args(tiny, killed, *ADAPTIVE)) == 0
    for r in (1, 2):
        a, b = _samples(adaptive, r), _samples(killed, r)
        assert b[1] == a[1] and sorted(b[0]) == sorted(a[0])
        assert [s.seed for s in b[0].values()] == [s.seed for s in a[0].values()]


def test_adaptive_sampling_is_refused_for_strategies_that_read_every_sample(tiny, tmp_path, capsys):
    assert main(run_args(tiny, tmp_path / "r", "--sampling", "adaptive", "--strategy", "random")) == 2
    err = capsys.readouterr().err
    assert "--sampling adaptive: only with --strategy uncertainty" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
