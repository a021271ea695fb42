"""Acceptance tests of metaflow_nb.stats: DSR/PSR, PBO by CSCV, stationary bootstrap,
walk-forward efficiency and significance labels.

scipy is used here only, as an independent implementation of the normal law, the moments
and the ranks; the package itself must not import it.
"""
from __future__ import annotations

import itertools
import math
import sys
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from metaflow_nb.errors import ConfigError, DataError
from metaflow_nb.stats import (
    EULER_GAMMA,
    NO_SIGNIFICANT_WINNER,
    bootstrap_difference,
    bootstrap_metric,
    default_block_length,
    deflated_sharpe_ratio,
    deflated_sharpe_ratio_from_stats,
    expected_max_sharpe,
    moments,
    norm_cdf,
    norm_ppf,
    oos_spread,
    pbo_cscv,
    psr,
    psr_from_returns,
    sharpe,
    significance_label,
    stationary_bootstrap_indices,
    walk_forward_efficiency,
    winner_label,
)

HYP = settings(max_examples=40, deadline=None, derandomize=True)


def _mean_cols(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=0)


# --------------------------------------------------------------------------------------
# Sharpe, PSR, expected maximum Sharpe, DSR
# --------------------------------------------------------------------------------------


def _scipy_sr0(n: float, v: float) -> float:
    return math.sqrt(v) * (
        (1 - np.euler_gamma) * sps.norm.ppf(1 - 1 / n) + np.euler_gamma * sps.norm.ppf(1 - 1 / (n * math.e))
    )


def _scipy_psr(sr: float, t: int, g3: float, g4: float, sr_star: float) -> float:
    return float(sps.norm.cdf((sr - sr_star) * math.sqrt(t - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)))


def test_dsr_paper_numerical_example():
    """Bailey & Lopez de Prado (2014), "A numerical example": N = 100 trials, V[SR_n] = 1/2
    (annualized), T = 1250 daily observations (5 years of 250 days), skewness -3,
    kurtosis 10, best annualized SR 2.5. The paper reports SR0 ~= 0.1132 (non-annualized)
    and DSR ~= 0.9004, i.e. not significant at 5%."""
    d = deflated_sharpe_ratio_from_stats(
        2.5, t=1250, n_trials=100, var_sr=0.5, skew=-3.0, kurt=10.0, periods_per_year=250
    )
    assert round(d.sr, 4) == 0.1581
    assert round(d.sr0, 4) == 0.1132
    assert round(d.dsr, 4) == 0.9004
    assert not d.significant(0.05) and d.significant(0.10)
    # Independent computation with scipy, to machine precision.
    assert d.sr0 == pytest.approx(_scipy_sr0(100, 0.5 / 250), rel=1e-12)
    assert d.dsr == pytest.approx(_scipy_psr(d.sr, 1250, -3.0, 10.0, d.sr0), rel=1e-12)
    assert d.psr == pytest.approx(_scipy_psr(d.sr, 1250, -3.0, 10.0, 0.0), rel=1e-12)
    assert d.var_sr == pytest.approx(0.5 / 250)
    assert d.sr_annualized == pytest.approx(2.5)
    assert d.sr0_annualized == pytest.approx(d.sr0 * math.sqrt(250))
    # The same example fed per-period gives the same answer.
    d1 = deflated_sharpe_ratio_from_stats(2.5 / math.sqrt(250), 1250, 100, 0.5 / 250, -3.0, 10.0)
    assert d1.dsr == pytest.approx(d.dsr, rel=1e-12)


@pytest.mark.parametrize("n,v", [(2, 1.0), (10, 0.3), (100, 0.002), (1000, 1e-4), (123456, 2.0)])
def test_expected_max_sharpe_matches_scipy(n, v):
    assert expected_max_sharpe(n, v) == pytest.approx(_scipy_sr0(n, v), rel=1e-10)
    assert expected_max_sharpe(n, v, mean_sr=0.05) == pytest.approx(0.05 + _scipy_sr0(n, v), rel=1e-10)


def test_expected_max_sharpe_edge_cases():
    assert expected_max_sharpe(1, 0.7) == 0.0
    assert expected_max_sharpe(1, 0.7, mean_sr=0.2) == 0.2
    assert expected_max_sharpe(50, 0.0) == 0.0
    with pytest.raises(ConfigError):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ConfigError):
        expected_max_sharpe(10, -1.0)
    assert EULER_GAMMA == pytest.approx(np.euler_gamma, abs=1e-15)


def test_expected_max_sharpe_approximates_monte_carlo_maximum():
    # The closed form is an approximation of E[max of N iid normals]; it should be within
    # a couple of percent for the N a grid search produces.
    rng = np.random.default_rng(7)
    for n in (20, 100, 500):
        mc = rng.standard_normal((4000, n)).max(axis=1).mean()
        assert expected_max_sharpe(n, 1.0) == pytest.approx(mc, rel=0.03)


def test_norm_cdf_ppf_match_scipy():
    for x in (-8.0, -3.0, -1.0, 0.0, 0.3, 2.5, 7.0):
        assert norm_cdf(x) == pytest.approx(sps.norm.cdf(x), rel=1e-12, abs=1e-300)
    for p in (1e-12, 1e-4, 0.01, 0.3, 0.5, 0.99, 1 - 1e-9):
        assert norm_ppf(p) == pytest.approx(sps.norm.ppf(p), rel=1e-9)
    assert norm_ppf(1.0) == math.inf and norm_ppf(0.0) == -math.inf
    assert norm_cdf(math.inf) == 1.0 and norm_cdf(-math.inf) == 0.0


def test_psr_matches_formula_with_scipy_moments():
    rng = np.random.default_rng(11)
    # Skewed, fat-tailed returns: a lognormal shock flipped to give a left tail.
    r = 0.0008 + 0.01 * rng.standard_normal(750) - 0.004 * (rng.lognormal(0, 0.8, 750) - math.exp(0.32))
    sr_, g3, g4, t = moments(r)
    assert t == 750
    assert sr_ == pytest.approx(r.mean() / r.std(ddof=1), rel=1e-12)
    assert g3 == pytest.approx(sps.skew(r), rel=1e-10)
    assert g4 == pytest.approx(sps.kurtosis(r, fisher=False), rel=1e-10)
    assert g3 < -0.1 and g4 > 3.0
    for bench in (0.0, 0.02, 0.05):
        assert psr(sr_, t, g3, g4, bench) == pytest.approx(_scipy_psr(sr_, t, g3, g4, bench), rel=1e-12)
        assert psr_from_returns(r, bench) == pytest.approx(_scipy_psr(sr_, t, g3, g4, bench), rel=1e-12)
    # Annualized benchmark: 1.0 a year on daily data is 1/sqrt(252) per day.
    assert psr_from_returns(r, 1.0, periods_per_year=252) == pytest.approx(
        _scipy_psr(sr_, t, g3, g4, 1 / math.sqrt(252)), rel=1e-12
    )
    # Normal returns: the denominator reduces to sqrt(1 + SR^2 / 2).
    assert psr(0.1, 500) == pytest.approx(sps.norm.cdf(0.1 * math.sqrt(499) / math.sqrt(1 + 0.01 / 2)), rel=1e-12)
    assert psr(0.1, 500, sr_benchmark=0.1) == 0.5


def test_psr_is_calibrated_under_the_null():
    """With normal returns whose true per-period SR equals the benchmark, PSR is close to
    uniform: it exceeds 0.95 in about 5% of samples."""
    rng = np.random.default_rng(2024)
    true_sr = 0.1
    x = true_sr + rng.standard_normal((250, 3000))  # mean/std = 0.1 per period
    p = np.array([psr_from_returns(x[:, j], true_sr) for j in range(x.shape[1])])
    assert 0.03 <= np.mean(p > 0.95) <= 0.07
    assert 0.45 <= np.mean(p > 0.5) <= 0.55


def test_psr_rejects_impossible_moments():
    with pytest.raises(ConfigError):
        psr(1.0, 100, skew=5.0, kurt=1.0)
    with pytest.raises(DataError):
        psr(0.1, 1)


@HYP
@given(
    sr_lo=st.floats(-0.5, 0.5),
    delta=st.floats(1e-3, 0.5),
    t=st.integers(10, 5000),
    skew=st.floats(-2.0, 2.0),
    excess=st.floats(0.0, 20.0),
)
def test_psr_increases_with_sr_and_decreases_with_benchmark(sr_lo, delta, t, skew, excess):
    kurt = 1.0 + skew**2 + excess  # any real distribution has g4 >= 1 + g3^2
    lo = psr(sr_lo, t, skew, kurt, 0.0)
    hi = psr(sr_lo + delta, t, skew, kurt, 0.0)
    assert 0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0
    # Monotone in the estimate as long as the variance term is monotone in the range we test.
    assert psr(sr_lo, t, skew, kurt, sr_lo - delta) >= 0.5 >= psr(sr_lo, t, skew, kurt, sr_lo + delta)
    assert psr(sr_lo, t, skew, kurt, sr_lo) == 0.5
    if skew <= 0 and sr_lo >= 0:
        assert hi >= lo


def test_sharpe_helper():
    r = np.array([0.01, -0.005, 0.007, 0.002, -0.001])
    per_period = r.mean() / r.std(ddof=1)
    assert sharpe(r, periods_per_year=1) == pytest.approx(per_period)
    assert sharpe(r) == pytest.approx(per_period * math.sqrt(252))
    assert sharpe(list(r) + [float("nan")], 1) == pytest.approx(per_period)
    two = sharpe(np.column_stack([r, 2 * r, -r]), periods_per_year=1)
    np.testing.assert_allclose(two, [per_period, per_period, -per_period])
    df = pd.DataFrame({"a": r, "b": -r})
    s = sharpe(df, 1)
    assert isinstance(s, pd.Series) and list(s.index) == ["a", "b"]
    assert math.isnan(sharpe(np.full(10, 0.01)))
    assert np.isnan(sharpe(np.column_stack([np.full(5, 0.01), r]), 1)[0])
    with pytest.raises(ConfigError):
        sharpe(r, periods_per_year=0)


def test_deflated_sharpe_from_returns_is_consistent_with_stats():
    rng = np.random.default_rng(3)
    trials = rng.normal(0.0003, 0.01, size=(800, 40))
    srs_ann = sharpe(trials)
    best = trials[:, int(np.argmax(srs_ann))]
    d = deflated_sharpe_ratio(best, srs_ann)
    sr_, g3, g4, t = moments(best)
    ref = deflated_sharpe_ratio_from_stats(
        sr_ * math.sqrt(252), t, 40, float(np.var(srs_ann, ddof=1)), g3, g4, periods_per_year=252
    )
    assert d.dsr == pytest.approx(ref.dsr, rel=1e-12)
    assert d.n_trials == 40 and d.t == 800
    assert d.skew == pytest.approx(sps.skew(best)) and d.kurt == pytest.approx(sps.kurtosis(best, fisher=False))
    # Per-period trial Sharpe ratios with periods_per_year=1 describe the same selection.
    d1 = deflated_sharpe_ratio(best, sharpe(trials, 1), periods_per_year=1)
    assert d1.dsr == pytest.approx(d.dsr, rel=1e-10)
    # Explicit n_trials / var_sr override what trial_sharpes imply.
    d2 = deflated_sharpe_ratio(best, srs_ann, n_trials=1000)
    assert d2.n_trials == 1000 and d2.sr0 > d.sr0 and d2.dsr < d.dsr
    d3 = deflated_sharpe_ratio(best, n_trials=40, var_sr=float(np.var(srs_ann, ddof=1)))
    assert d3.dsr == pytest.approx(d.dsr, rel=1e-12)
    with pytest.raises(ConfigError):
        deflated_sharpe_ratio(best)
    with pytest.raises(DataError):
        deflated_sharpe_ratio(best[:2], srs_ann)


def _grid(seed: int, n_cfg: int = 200, t: int = 1000, edge_annual_sr: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.normal(0.0, 0.01, size=(t, n_cfg))
    m[:, 0] += 0.01 * edge_annual_sr / math.sqrt(252)
    return m


@pytest.mark.parametrize("seed", range(4))
def test_noise_best_of_200_is_not_significant(seed):
    m = _grid(seed)
    srs = sharpe(m)
    d = deflated_sharpe_ratio(m[:, int(np.argmax(srs))], srs)
    assert d.dsr < 0.95 and not d.significant()
    # ... even though the undeflated PSR of the same run usually looks convincing.
    assert d.psr > 0.9


@pytest.mark.parametrize("seed", range(3))
def test_planted_edge_is_significant_and_not_overfit(seed):
    m = _grid(seed, edge_annual_sr=3.0)
    srs = sharpe(m)
    best = int(np.argmax(srs))
    assert best == 0
    d = deflated_sharpe_ratio(m[:, best], srs)
    assert d.dsr > 0.95 and d.significant(0.05)
    res = pbo_cscv(m)
    assert res.pbo < 0.1
    assert res.prob_oos_loss < 0.1


# --------------------------------------------------------------------------------------
# PBO by CSCV
# --------------------------------------------------------------------------------------


def _pbo_reference(m: np.ndarray, s: int, metric) -> dict:
    """Direct transcription of the paper's algorithm, one combination at a time."""
    t, n = m.shape
    block = t // s
    m = m[t - block * s:]
    parts = [m[i * block:(i + 1) * block] for i in range(s)]
    logits, is_best, oos_best = [], [], []
    for combo in itertools.combinations(range(s), s // 2):
        j = np.vstack([parts[i] for i in combo])
        jbar = np.vstack([parts[i] for i in range(s) if i not in combo])
        r_is, r_oos = metric(j), metric(jbar)
        star = int(np.argmax(r_is))
        rank = sps.rankdata(r_oos)[star]  # average rank of ties, 1 = worst
        w = rank / (n + 1)
        logits.append(math.log(w / (1 - w)))
        is_best.append(r_is[star])
        oos_best.append(r_oos[star])
    logits = np.array(logits)
    return {
        "logits": logits,
        "pbo": float(np.mean(logits <= 0)),
        "is": np.array(is_best),
        "oos": np.array(oos_best),
        "loss": float(np.mean(np.array(oos_best) < 0)),
    }


@pytest.mark.parametrize("s", [2, 4, 6, 8, 16])
def test_pbo_number_of_combinations(s):
    m = np.random.default_rng(s).normal(0, 1, size=(64, 5))
    res = pbo_cscv(m, s=s)
    assert res.n_combinations == math.comb(s, s // 2)
    assert res.logits.shape == res.omega.shape == res.is_perf.shape == (math.comb(s, s // 2),)
    assert res.n_splits == s and res.n_configs == 5


def test_pbo_default_s_is_16_with_12870_combinations():
    res = pbo_cscv(np.random.default_rng(0).normal(size=(160, 4)))
    assert res.n_combinations == 12870 == math.comb(16, 8)


@pytest.mark.parametrize("seed,s,n", [(0, 6, 7), (1, 8, 5), (2, 10, 12)])
def test_pbo_matches_reference_implementation(seed, s, n):
    rng = np.random.default_rng(seed)
    m = rng.normal(0.0002, 0.01, size=(203, n))
    m[:, 1] += 0.0015 * np.sin(np.arange(203) / 15.0)  # regime-dependent config
    per_period_sharpe = lambda x: x.mean(axis=0) / x.std(axis=0, ddof=1)  # noqa: E731
    ref = _pbo_reference(m, s, per_period_sharpe)
    for res in (pbo_cscv(m, s=s), pbo_cscv(m, s=s, metric=per_period_sharpe)):
        np.testing.assert_allclose(res.logits, ref["logits"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(res.is_perf, ref["is"], rtol=1e-9)
        np.testing.assert_allclose(res.oos_perf, ref["oos"], rtol=1e-9)
        assert res.pbo == ref["pbo"]
        assert res.prob_oos_loss == ref["loss"]
        assert res.n_rows_used == (203 // s) * s
    # A custom metric goes through the generic path and must agree with the reference too.
    ref_mean = _pbo_reference(m, s, _mean_cols)
    res_mean = pbo_cscv(m, s=s, metric=_mean_cols)
    np.testing.assert_allclose(res_mean.logits, ref_mean["logits"], atol=1e-12)
    np.testing.assert_allclose(res_mean.oos_perf, ref_mean["oos"], rtol=1e-12)


def test_pbo_is_one_when_is_best_is_always_oos_worst():
    """Demeaned columns + mean metric: on equal-size halves OOS mean = -IS mean for every
    configuration, so the ranking flips exactly and the IS winner is the OOS loser."""
    rng = np.random.default_rng(5)
    n = 9
    m = rng.normal(0, 0.01, size=(480, n))
    m -= m.mean(axis=0)
    res = pbo_cscv(m, s=16, metric=_mean_cols)
    assert res.pbo == 1.0
    np.testing.assert_allclose(res.oos_rank, 1.0)
    np.testing.assert_allclose(res.logits, -math.log(n), atol=1e-12)
    np.testing.assert_allclose(res.oos_perf, -res.is_perf, atol=1e-15)
    assert res.prob_oos_loss == pytest.approx(np.mean(res.is_perf > 0))
    assert res.prob_oos_loss > 0.99
    slope, _ = res.degradation()
    assert slope == pytest.approx(-1.0)
    # Default Sharpe metric: a demeaned config and its mirror image.
    x = m[:, 0]
    res2 = pbo_cscv(np.column_stack([x, -x]), s=8)
    assert res2.pbo == 1.0 and res2.n_combinations == 70


def test_pbo_planted_drift_is_near_zero():
    rng = np.random.default_rng(8)
    m = rng.normal(0, 0.01, size=(1000, 30))
    m[:, 17] += 0.003  # per-period SR 0.3 on a column among noise
    res = pbo_cscv(m)
    assert res.pbo == 0.0
    assert (res.best_index == 17).all()
    assert res.prob_oos_loss == 0.0
    assert (res.omega > 0.5).all()


def test_pbo_on_noise_is_near_one_half_on_average():
    """Skill-less configurations: the IS winner's OOS rank is uniform, so PBO averages
    ~0.5 over data sets (a single data set can be far from it: CSCV combinations share
    data)."""
    pbos = [pbo_cscv(np.random.default_rng(100 + k).normal(0, 0.01, size=(400, 20))).pbo for k in range(24)]
    assert 0.4 <= float(np.mean(pbos)) <= 0.7


def test_pbo_drops_oldest_remainder_rows_and_keeps_names():
    rng = np.random.default_rng(9)
    m = rng.normal(size=(170, 4))
    res = pbo_cscv(m, s=16)
    assert res.n_rows_used == 160
    np.testing.assert_array_equal(pbo_cscv(m[-160:], s=16).logits, res.logits)
    df = pd.DataFrame(m, columns=["a", "b", "c", "d"])
    assert pbo_cscv(df, s=4).config_names == ("a", "b", "c", "d")
    # The public annualized sharpe() ranks like the per-period default, scaled values.
    res_ann = pbo_cscv(m, s=4, metric=sharpe)
    res_pp = pbo_cscv(m, s=4)
    np.testing.assert_array_equal(res_ann.logits, res_pp.logits)
    np.testing.assert_allclose(res_ann.is_perf, res_pp.is_perf * math.sqrt(252))


def test_pbo_handles_constant_and_tied_configs():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 1))
    m = np.hstack([x, x, np.zeros((64, 1))])  # two identical configs and a flat one
    res = pbo_cscv(m, s=4)
    assert np.isfinite(res.logits).all()
    # The flat config has no Sharpe ratio and ranks last; the tied twins share ranks 2-3.
    np.testing.assert_array_equal(res.oos_rank, 2.5)
    np.testing.assert_array_equal(res.best_index, 0)


def test_pbo_input_validation():
    m = np.random.default_rng(0).normal(size=(100, 5))
    for bad_s in (3, 0, -2, 2.0, True):
        with pytest.raises(ConfigError):
            pbo_cscv(m, s=bad_s)
    with pytest.raises(DataError):
        pbo_cscv(m[:, :1])
    with pytest.raises(DataError):
        pbo_cscv(m[:10], s=16)
    with pytest.raises(DataError):
        pbo_cscv(m[:, 0])
    bad = m.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError):
        pbo_cscv(bad)
    with pytest.raises(DataError):
        pbo_cscv(m, s=4, metric=lambda x: x.mean())


def test_pbo_is_fast_for_1000_by_100():
    m = np.random.default_rng(1).normal(0, 0.01, size=(1000, 100))
    pbo_cscv(m[:200, :10])  # warm-up
    t0 = time.perf_counter()
    res = pbo_cscv(m)
    elapsed = time.perf_counter() - t0
    assert res.n_combinations == 12870
    assert elapsed < 1.5, f"pbo_cscv took {elapsed:.2f}s"


def test_pbo_plot_logits_returns_figure():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt

    res = pbo_cscv(np.random.default_rng(2).normal(size=(64, 6)), s=8)
    fig = res.plot_logits()
    assert isinstance(fig, mpl.figure.Figure)
    assert "PBO" in fig.axes[0].get_title()
    fig2, ax = plt.subplots()
    assert res.plot_logits(ax=ax) is fig2
    plt.close(fig)
    plt.close(fig2)


def test_stats_package_imports_neither_scipy_nor_matplotlib():
    import subprocess

    # Only what metaflow_nb.stats itself pulls in counts: the parent package is not ours.
    code = (
        "import sys, numpy as np, metaflow_nb; "
        "before = {m for m in ('scipy', 'matplotlib') if m in sys.modules}; "
        "import metaflow_nb.stats as s; "
        "s.pbo_cscv(np.random.default_rng(0).normal(size=(64, 4)), s=4); "
        "s.bootstrap_metric(np.random.default_rng(0).normal(size=50), n_boot=10); "
        "s.deflated_sharpe_ratio(np.random.default_rng(0).normal(size=50), n_trials=5, var_sr=0.1); "
        "bad = [m for m in ('scipy', 'matplotlib') if m in sys.modules and m not in before]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------
# Stationary bootstrap
# --------------------------------------------------------------------------------------


def test_default_block_length_is_cube_root_rounded_up():
    assert [default_block_length(n) for n in (1, 2, 8, 9, 27, 28, 250, 1000, 1001, 2520)] == [
        1, 2, 2, 3, 3, 4, 7, 10, 11, 14
    ]


def test_indices_shape_range_and_reproducibility():
    a = stationary_bootstrap_indices(300, 50, block=5, seed=42)
    assert a.shape == (50, 300) and a.min() >= 0 and a.max() < 300
    np.testing.assert_array_equal(a, stationary_bootstrap_indices(300, 50, block=5, seed=42))
    np.testing.assert_array_equal(
        stationary_bootstrap_indices(300, 50, 5, np.random.default_rng(42)), a
    )
    assert not np.array_equal(a, stationary_bootstrap_indices(300, 50, block=5, seed=43))
    with pytest.raises(ConfigError):
        stationary_bootstrap_indices(10, 5, block=0.5)
    with pytest.raises(ConfigError):
        stationary_bootstrap_indices(10, 0)


def test_blocks_wrap_around():
    # One block per resample (mean length astronomically large): a rotation of 0..n-1.
    n = 7
    idx = stationary_bootstrap_indices(n, 200, block=1e15, seed=1)
    for row in idx:
        np.testing.assert_array_equal(row, (row[0] + np.arange(n)) % n)
    assert (idx[:, 0] != 0).any()  # some blocks start late and therefore wrap
    # With ordinary block lengths, n-1 -> 0 continuations occur too.
    idx = stationary_bootstrap_indices(20, 500, block=10, seed=2)
    wraps = (idx[:, :-1] == 19) & (idx[:, 1:] == 0)
    assert wraps.sum() > 100


def _block_lengths(idx: np.ndarray) -> np.ndarray:
    n = idx.shape[1]
    lengths = []
    for row in idx:
        breaks = np.flatnonzero(row[1:] != (row[:-1] + 1) % n) + 1
        edges = np.r_[0, breaks, n]
        lengths.append(np.diff(edges)[:-1])  # the last block is cut by the series end
    return np.concatenate(lengths)


@pytest.mark.parametrize("b", [1.0, 3.0, 8.0, 20.0])
def test_block_lengths_are_geometric_with_mean_b(b):
    idx = stationary_bootstrap_indices(4000, 40, block=b, seed=int(b))
    lengths = _block_lengths(idx)
    # A new block that happens to start right after the previous index is invisible; with
    # n = 4000 that merges blocks with probability 1/4000, negligible at this tolerance.
    assert lengths.mean() == pytest.approx(b, rel=0.04)
    assert np.mean(lengths == 1) == pytest.approx(1 / b, abs=0.02)


@HYP
@given(n=st.integers(1, 60), n_boot=st.integers(1, 20), b=st.floats(1.0, 30.0), seed=st.integers(0, 2**32 - 1))
def test_indices_shape_and_range_property(n, n_boot, b, seed):
    idx = stationary_bootstrap_indices(n, n_boot, block=b, seed=seed)
    assert idx.shape == (n_boot, n)
    assert ((idx >= 0) & (idx < n)).all()


def test_bootstrap_ci_coverage_on_iid_normal():
    """95% percentile interval of the mean covers the true mean in ~95% of 200 data sets."""
    true_mean = 0.001
    covered = 0
    for k in range(200):
        x = np.random.default_rng(1000 + k).normal(true_mean, 0.01, 250)
        res = bootstrap_metric(x, _mean_cols, n_boot=1000, seed=k, vectorized=True)
        covered += res.low <= true_mean <= res.high
    assert 0.90 <= covered / 200 <= 0.99


def test_bootstrap_metric_fields_and_reproducibility():
    x = np.random.default_rng(0).normal(0.001, 0.01, 500)
    res = bootstrap_metric(x, seed=3)
    assert res.estimate == pytest.approx(sharpe(x))
    assert res.distribution.shape == (2000,) and res.n_boot == 2000
    assert res.block == default_block_length(500) and res.ci == 0.95
    assert res.low == pytest.approx(np.quantile(res.distribution, 0.025))
    assert res.high == pytest.approx(np.quantile(res.distribution, 0.975))
    assert res.std_error > 0
    again = bootstrap_metric(x, seed=3)
    np.testing.assert_array_equal(again.distribution, res.distribution)
    assert not np.array_equal(bootstrap_metric(x, seed=4).distribution, res.distribution)
    # The vectorized sharpe path equals the one-resample-at-a-time path.
    slow = bootstrap_metric(x, lambda r: sharpe(r), n_boot=300, seed=5)
    fast = bootstrap_metric(x, sharpe, n_boot=300, seed=5)
    np.testing.assert_allclose(fast.distribution, slow.distribution, rtol=1e-12)
    # The distribution is the metric over the documented resamples.
    idx = stationary_bootstrap_indices(500, 300, default_block_length(500), seed=5)
    np.testing.assert_allclose(fast.distribution, [sharpe(x[i]) for i in idx], rtol=1e-12)
    narrow = bootstrap_metric(x, seed=3, ci=0.5)
    assert res.low < narrow.low < narrow.high < res.high
    with pytest.raises(ConfigError):
        bootstrap_metric(x, ci=1.5)
    with pytest.raises(DataError):
        bootstrap_metric(np.ones((5, 2)))


def test_block_bootstrap_widens_interval_for_autocorrelated_returns():
    # AR(1) returns with phi = 0.5: the iid bootstrap understates the s.e. of the mean by
    # sqrt((1 + phi) / (1 - phi)) = 1.73; blocks of mean length 20 recover most of it.
    rng = np.random.default_rng(12)
    e = rng.normal(0, 0.01, 2000)
    x = np.empty_like(e)
    x[0] = e[0]
    for i in range(1, e.size):
        x[i] = 0.5 * x[i - 1] + e[i]
    iid = bootstrap_metric(x, _mean_cols, n_boot=1000, block=1, seed=0, vectorized=True)
    blk = bootstrap_metric(x, _mean_cols, n_boot=1000, block=20, seed=0, vectorized=True)
    assert blk.std_error / iid.std_error > 1.4


def test_bootstrap_difference_paired_and_p_value():
    rng = np.random.default_rng(21)
    market = rng.normal(0, 0.01, 750)
    a = market + rng.normal(0.0005, 0.001, 750)
    b = market + rng.normal(0.0, 0.001, 750)
    d = bootstrap_difference(a, b, _mean_cols, n_boot=999, seed=1, vectorized=True)
    assert d.estimate == pytest.approx(a.mean() - b.mean())
    # Same block indices for both variants.
    idx = stationary_bootstrap_indices(750, 999, default_block_length(750), seed=1)
    np.testing.assert_allclose(d.distribution, a[idx].mean(axis=1) - b[idx].mean(axis=1), rtol=1e-10)
    assert d.p_value == pytest.approx(2 * (np.sum(d.distribution <= 0) + 1) / 1000)
    assert d.p_value < 0.01 and d.significant() and "*" in d.label()
    assert d.low > 0
    # Unpaired the market noise would swamp the same edge: a shuffled pairing is not significant.
    b_shuffled = b[rng.permutation(750)]
    assert bootstrap_difference(a, b_shuffled, _mean_cols, n_boot=999, seed=1, vectorized=True).p_value > 0.05


def test_bootstrap_difference_exact_cases():
    x = np.random.default_rng(2).normal(0.0005, 0.01, 300)
    same = bootstrap_difference(x, x.copy(), n_boot=500, seed=0)
    assert same.estimate == 0.0 and same.p_value == 1.0
    np.testing.assert_array_equal(same.distribution, 0.0)
    # A constant shift changes the mean by exactly that in every resample.
    shifted = bootstrap_difference(x + 0.001, x, _mean_cols, n_boot=500, seed=0, vectorized=True)
    assert shifted.p_value == pytest.approx(2 / 501)
    np.testing.assert_allclose(shifted.distribution, 0.001, rtol=1e-9)
    neg = bootstrap_difference(x, x + 0.001, _mean_cols, n_boot=500, seed=0, vectorized=True)
    assert neg.estimate < 0 and neg.p_value == pytest.approx(2 / 501)
    # Series are paired by date.
    idx = pd.bdate_range("2020-01-01", periods=300)
    sa = pd.Series(x, index=idx)
    sb = pd.Series(x[50:], index=idx[50:])
    d = bootstrap_difference(sa, sb, n_boot=200, seed=0)
    assert d.estimate == 0.0
    with pytest.raises(DataError):
        bootstrap_difference(x, x[:-1])


def test_bootstrap_difference_p_value_size_under_null():
    rejections = 0
    for k in range(150):
        rng = np.random.default_rng(5000 + k)
        a, b = rng.normal(0, 0.01, (2, 250))
        rejections += bootstrap_difference(a, b, _mean_cols, n_boot=500, seed=k, vectorized=True).p_value < 0.05
    assert rejections / 150 <= 0.11


@HYP
@given(seed=st.integers(0, 10_000), shift=st.floats(-0.01, 0.01))
def test_bootstrap_difference_p_value_in_unit_interval(seed, shift):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 0.01, 60)
    b = a + shift + rng.normal(0, 0.002, 60)
    d = bootstrap_difference(a, b, _mean_cols, n_boot=99, seed=seed, vectorized=True)
    assert 2 / 100 - 1e-12 <= d.p_value <= 1.0
    assert d.low <= d.high


# --------------------------------------------------------------------------------------
# Walk-forward efficiency
# --------------------------------------------------------------------------------------


def test_walk_forward_efficiency_ratio_of_means():
    assert walk_forward_efficiency([2.0, 1.6], [1.0, 0.8]) == pytest.approx(0.5)
    assert walk_forward_efficiency([1.0, 3.0], [-1.0, 0.5]) == pytest.approx(-0.25 / 2.0)
    assert math.isnan(walk_forward_efficiency([-1.0, 0.5], [1.0, 1.0]))
    # The window with a missing IS score is dropped on both sides.
    assert walk_forward_efficiency([1.0, np.nan, 3.0], [1.0, 5.0, 1.0]) == pytest.approx(1.0 / 2.0)
    assert math.isnan(walk_forward_efficiency([np.nan], [1.0]))


def test_walk_forward_efficiency_annualizes_by_window_length():
    # 12-month IS windows earning 20%, 3-month OOS windows earning 5%: the same annual
    # rate, so WFE is 1 - not the 0.25 a naive ratio of total returns would give.
    assert walk_forward_efficiency([0.20, 0.20], [0.05, 0.05], [252, 252], [63, 63]) == pytest.approx(1.0)
    is_r, oos_r = np.array([0.3, 0.1, 0.2]), np.array([0.02, 0.04, -0.01])
    is_l, oos_l = np.array([500, 480, 510]), np.array([120, 125, 118])
    expected = np.mean(oos_r / oos_l * 252) / np.mean(is_r / is_l * 252)
    assert walk_forward_efficiency(is_r, oos_r, is_l, oos_l) == pytest.approx(expected)
    with pytest.raises(DataError):
        walk_forward_efficiency(is_r, oos_r, is_l, None)
    with pytest.raises(DataError):
        walk_forward_efficiency(is_r, oos_r[:2])
    with pytest.raises(DataError):
        walk_forward_efficiency(is_r, oos_r, is_l, np.array([1, 0, 1]))


@HYP
@given(
    is_s=st.lists(st.floats(0.01, 5.0), min_size=1, max_size=12),
    scale=st.floats(0.1, 100.0),
)
def test_walk_forward_efficiency_is_scale_free(is_s, scale):
    oos = [0.5 * v - 0.1 for v in is_s]
    base = walk_forward_efficiency(is_s, oos)
    assert walk_forward_efficiency([scale * v for v in is_s], [scale * v for v in oos]) == pytest.approx(base)
    lengths = [100] * len(is_s)
    assert walk_forward_efficiency(is_s, oos, lengths, lengths) == pytest.approx(base)


def test_oos_spread_summary():
    vals = np.array([0.5, -0.2, 1.1, 0.3, np.nan, 0.0])
    s = oos_spread(vals)
    finite = vals[~np.isnan(vals)]
    assert s.n == 5
    assert s.mean == pytest.approx(finite.mean()) and s.std == pytest.approx(finite.std(ddof=1))
    desc = pd.Series(finite).describe()
    assert (s.min, s.q25, s.median, s.q75, s.max) == pytest.approx(
        (desc["min"], desc["25%"], desc["50%"], desc["75%"], desc["max"])
    )
    assert s.frac_positive == pytest.approx(3 / 5)
    assert set(s.as_dict()) == {"n", "mean", "std", "min", "q25", "median", "q75", "max", "frac_positive"}
    empty = oos_spread([])
    assert empty.n == 0 and math.isnan(empty.mean)
    assert math.isnan(oos_spread([1.0]).std)


# --------------------------------------------------------------------------------------
# Significance labels
# --------------------------------------------------------------------------------------


def test_significance_label_format():
    assert significance_label(2.78, 0.03) == "2.78 * (p = 0.03)"
    assert significance_label(2.78, 0.41) == "2.78 (p = 0.41)"
    assert significance_label(2.78, 0.05) == "2.78 (p = 0.05)"  # p < alpha is required
    assert significance_label(2.78, 0.049) == "2.78 * (p = 0.049)"
    assert significance_label(-1.234, 0.0001) == "-1.23 * (p < 0.001)"
    assert significance_label(2.78, 0.08, alpha=0.10) == "2.78 * (p = 0.08)"
    with pytest.raises(ConfigError):
        significance_label(1.0, 0.5, alpha=0.0)


@HYP
@given(est=st.floats(-100, 100), p=st.floats(0.0, 1.0), alpha=st.floats(0.001, 0.5))
def test_significance_label_star_iff_significant(est, p, alpha):
    label = significance_label(est, p, alpha)
    assert ("*" in label) == (p < alpha)
    assert label.startswith(f"{est:.2f}")


def test_winner_label():
    assert winner_label({}) == NO_SIGNIFICANT_WINNER == "no significant winner"
    assert winner_label({"a": (0.4, 0.3), "b": (0.9, 0.06)}) == "no significant winner"
    assert winner_label({"a": (-0.4, 0.001)}) == "no significant winner"  # significantly worse
    assert winner_label({"a": (0.4, 0.01), "b": (0.9, 0.04), "c": (2.0, 0.5)}) == "b: 0.90 * (p = 0.04)"
    assert winner_label({"a": (-0.4, 0.01)}, higher_is_better=False) == "a: -0.40 * (p = 0.01)"
