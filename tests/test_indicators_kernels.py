"""The moving-average and cross kernels against independent references.

``sma`` must give pandas' ``rolling(p).mean()`` bit for bit (strict crosses hinge on exact
ties, and the peer-parity benchmark computes its averages with pandas); ``crosses`` the
strict cross rule written out in NumPy. Prices with few decimals and long flat stretches
make the ties and the rolling sum's rounding show.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metaflow_nb.engine.nb import indicators as nb


def _prices(n: int, seed: int) -> np.ndarray:
    """Cent prices of a random walk with flat stretches (runs of equal closes)."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([-0.02, -0.01, 0.0, 0.0, 0.01, 0.02], n)
    steps[rng.random(n) < 0.1] = 0.0
    return np.round(100.0 + np.cumsum(steps), 2)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.int64)


def _crosses_reference(fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    up = np.zeros(len(fast), dtype=bool)
    down = np.zeros(len(fast), dtype=bool)
    with np.errstate(invalid="ignore"):
        up[1:] = (fast[:-1] < slow[:-1]) & (fast[1:] > slow[1:])
        down[1:] = (fast[:-1] > slow[:-1]) & (fast[1:] < slow[1:])
    return up.astype(np.int8) - down.astype(np.int8)


@pytest.mark.parametrize("seed", [1, 2])
def test_sma_is_pandas_rolling_mean_bit_for_bit(seed):
    x = _prices(5_000, seed)
    for p in (1, 2, 3, 7, 20, 200, 5_000, 5_001):
        want = pd.Series(x).rolling(p).mean().to_numpy()
        assert np.array_equal(_bits(nb.sma(x, p)), _bits(want)), p


def test_crosses_follow_the_strict_rule():
    x = _prices(5_000, 3)
    fast, slow = nb.sma(x, 3), nb.sma(x, 8)
    got = nb.crosses(fast, slow)
    assert got.dtype == np.int8
    want = _crosses_reference(fast, slow)
    assert np.array_equal(got, want)
    assert np.count_nonzero(got == 1) > 10 and np.count_nonzero(got == -1) > 10
    # ties (equal averages) and NaN on either bar are no signal
    a = np.array([1.0, 2.0, 2.0, 3.0, 1.0, np.nan, 3.0, 1.0, 3.0])
    b = np.array([2.0, 2.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, np.nan])
    assert nb.crosses(a, b).tolist() == [0, 0, 0, 0, -1, 0, 0, -1, 0]
    assert nb.crosses(a, b).tolist() == _crosses_reference(a, b).tolist()
    assert nb.crosses(np.empty(0), np.empty(0)).shape == (0,)
    assert nb.crosses(np.ones(1), np.zeros(1)).tolist() == [0]


def test_sma_many_is_sma_of_each_period():
    x = _prices(3_000, 4)
    periods = np.array([1, 2, 5, 5, 20, 199, 3_000, 3_001, 0], dtype=np.int64)
    many = nb.sma_many(x, periods)
    assert many.shape == (len(periods), len(x))
    for k, p in enumerate(periods):
        assert np.array_equal(_bits(many[k]), _bits(nb.sma(x, int(p)))), p
    assert nb.sma_many(x, np.empty(0, np.int64)).shape == (0, len(x))
    # split across threads (a sweep's many averages): the same bits, whatever the split
    for parts in (1, 2, 3, len(periods), len(periods) + 2):
        split = nb.sma_many_parallel(x, periods, parts)
        assert np.array_equal(_bits(split), _bits(many)), parts
    assert nb.sma_many_parallel(x, np.empty(0, np.int64), 2).shape == (0, len(x))


def test_a_sweeps_averages_split_across_threads_are_each_periods_own(monkeypatch):
    from metaflow_nb.workers.context import moving_average as ma
    from metaflow_nb.workers.features import FeatureContext

    x = _prices(2_000, 9)
    ctx = FeatureContext(pd.DataFrame({"open": x, "high": x, "low": x, "close": x, "volume": 1.0},
                                      index=pd.date_range("2024-01-01", periods=len(x), freq="min")))
    params = [ma.PeriodParams(period=p) for p in (3, 10, 10, 77, 500)]
    monkeypatch.setattr(ma, "PARALLEL_VALUES", 0)
    many = ma.Sma.compute_many(ctx, params)
    for p, out in zip(params, many):
        assert np.array_equal(_bits(out["sma"]), _bits(nb.sma(x, p.period))), p


def test_a_sweep_computes_its_averages_together_with_the_same_bits(sp500):
    from metaflow_nb.assembly.group import prefetch_features
    from metaflow_nb.assembly.workforce import Workforce
    from metaflow_nb.workers.base import get_plugin
    from metaflow_nb.workers.features import FeatureContext, cache_key
    import metaflow_nb as mf

    bars = sp500.iloc[:3_000]
    specs = mf.build_specs("config/runs/sma_cross.yaml", data=bars)
    wfs = [Workforce.from_specs(specs.with_params("sma_1", {"fast": f, "slow": s})) for f, s in ((5, 20), (10, 50))]
    cache: dict = {}
    prefetch_features(wfs, bars, specs.pip_size, cache)
    sma = get_plugin("sma")
    ctx = FeatureContext(bars)
    for p in (5, 20, 10, 50):
        got = cache[cache_key("sma", {"period": p})]["sma"]
        assert np.array_equal(_bits(got), _bits(sma("s", sma.Params(period=p)).compute(ctx)["sma"])), p

    class Broken:  # a third-party worker whose declaration fails: nothing is prefetched
        def feature_requests(self):
            raise RuntimeError("no")

    class Plain:  # one that declares nothing
        pass

    empty: dict = {}
    prefetch_features([Workforce([], [Broken(), Plain()], [], None, [], None)], bars, specs.pip_size, empty)
    assert empty == {}
