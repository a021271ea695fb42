"""Stationary block bootstrap confidence intervals and paired variant comparison.

Reference: Politis, D. N. and Romano, J. P. (1994). "The Stationary Bootstrap". Journal of
the American Statistical Association 89(428), 1303-1313.

Each resample is a concatenation of blocks that start at a uniformly random date and
whose lengths are geometric with mean ``block`` (a new block starts at each step with
probability ``1 / block``); blocks that run past the last date wrap around to the first
one. Unlike fixed-length blocks this keeps the resampled series stationary while still
preserving the short-range dependence (volatility clustering, autocorrelated trade P&L)
that an i.i.d. bootstrap would destroy and that makes i.i.d. intervals too narrow.

The index generation is that of ``arch.bootstrap.StationaryBootstrap``: one resample
from the same ``numpy.random.Generator`` gives the same indices. Several resamples draw
all their block starts, then all their uniforms, in two vectorized calls, so they consume
the stream in another order than arch's one-resample-at-a-time loop.

Default block length: ``ceil(T ** (1/3))`` - the ``T^(1/3)`` growth rate that is
MSE-optimal for block bootstraps of smooth statistics (Hall, Horowitz and Jing 1995;
Politis and White 2004), with unit constant. Pass ``block`` explicitly when the
dependence is known to be longer (e.g. multi-day holding periods).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
import pandas as pd

from metaflow_nb.errors import ConfigError, DataError
from metaflow_nb.stats.sharpe import sharpe
from metaflow_nb.stats.significance import significance_label

__all__ = [
    "BootstrapResult",
    "BootstrapDifference",
    "default_block_length",
    "stationary_bootstrap_indices",
    "bootstrap_metric",
    "bootstrap_difference",
]

Seed = Union[int, np.random.Generator, None]
MetricFn = Callable[[np.ndarray], Any]


def default_block_length(n: int) -> int:
    """Default mean block length ``ceil(n ** (1/3))`` (at least 1).

    >>> default_block_length(1000), default_block_length(1001), default_block_length(1)
    (10, 11, 1)
    """
    if n < 1:
        raise DataError(f"default_block_length: need n >= 1, got {n!r}")
    b = math.ceil(n ** (1.0 / 3.0))
    # Guard against floating-point cube roots of perfect cubes (1000 ** (1/3) = 9.999...).
    if (b - 1) ** 3 >= n:
        b -= 1
    return max(1, b)


def stationary_bootstrap_indices(
    n: int,
    n_boot: int,
    block: Optional[float] = None,
    seed: Seed = 0,
) -> np.ndarray:
    """Row indices of ``n_boot`` stationary-bootstrap resamples of a length-``n`` series.

    Returns an ``(n_boot, n)`` integer array; row ``i`` indexes the i-th resample. ``block``
    is the mean block length (``None`` -> :func:`default_block_length`; ``1`` gives the
    i.i.d. bootstrap). Blocks wrap around from ``n - 1`` to ``0``.

    >>> idx = stationary_bootstrap_indices(8, 2, block=4, seed=3)
    >>> idx.shape, bool(((idx >= 0) & (idx < 8)).all())
    ((2, 8), True)
    >>> stationary_bootstrap_indices(5, 1, block=1e12, seed=0)[0]   # one block, wraps
    array([4, 0, 1, 2, 3])
    """
    if n < 1:
        raise DataError(f"stationary_bootstrap_indices: need n >= 1, got {n!r}")
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot!r}")
    b = float(default_block_length(n) if block is None else block)
    if not b >= 1.0:
        raise ConfigError(f"block (mean block length) must be >= 1, got {block!r}")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(n_boot, n))
    new_block = rng.random((n_boot, n)) < 1.0 / b
    new_block[:, 0] = True
    steps = np.arange(n)
    # Position at which the current block began, for every step of every resample.
    began = np.maximum.accumulate(np.where(new_block, steps, 0), axis=1)
    first = np.take_along_axis(starts, began, axis=1)
    return (first + (steps - began)) % n


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Result of :func:`bootstrap_metric`: point estimate, percentile CI and the draws."""

    estimate: float
    low: float
    high: float
    distribution: np.ndarray
    ci: float
    block: float
    n_boot: int

    @property
    def std_error(self) -> float:
        """Standard deviation of the bootstrap distribution (its finite draws).

        >>> round(BootstrapResult(0.5, 0.1, 0.9, np.array([0.2, 0.4, 0.6, np.nan]), 0.95, 10.0, 4).std_error, 6)
        0.2
        """
        d = self.distribution[np.isfinite(self.distribution)]
        return float(d.std(ddof=1)) if d.size > 1 else math.nan


@dataclass(frozen=True, eq=False)
class BootstrapDifference:
    """Result of :func:`bootstrap_difference` (metric of A minus metric of B)."""

    estimate: float
    low: float
    high: float
    p_value: float
    distribution: np.ndarray
    ci: float
    block: float
    n_boot: int

    def significant(self, alpha: float = 0.05) -> bool:
        """True when ``p_value < alpha``.

        >>> d = BootstrapDifference(0.3, 0.05, 0.55, 0.02, np.array([]), 0.95, 10.0, 0)
        >>> d.significant(), d.significant(alpha=0.01)
        (True, False)
        """
        return bool(self.p_value < alpha)

    def label(self, alpha: float = 0.05) -> str:
        """:func:`~metaflow_nb.stats.significance_label` of this difference.

        >>> d = BootstrapDifference(0.3, 0.05, 0.55, 0.02, np.array([]), 0.95, 10.0, 0)
        >>> d.label(), d.label(alpha=0.01)
        ('0.30 * (p = 0.02)', '0.30 (p = 0.02)')
        """
        return significance_label(self.estimate, self.p_value, alpha)


def _check_ci(ci: float) -> None:
    if not 0.0 < ci < 1.0:
        raise ConfigError(f"ci must be in (0, 1), got {ci!r}")


def _evaluate(x: np.ndarray, idx: np.ndarray, metric_fn: MetricFn, vectorized: bool) -> np.ndarray:
    if vectorized:
        # One call on the (T, n_boot) matrix whose columns are the resamples.
        vals = np.asarray(metric_fn(x[idx].T), dtype=float).ravel()
        if vals.shape != (idx.shape[0],):
            raise DataError(
                f"vectorized metric_fn must return one value per column ({idx.shape[0]}), got shape {vals.shape}"
            )
        return vals
    return np.fromiter((float(metric_fn(x[row])) for row in idx), dtype=float, count=idx.shape[0])


def _point(x: np.ndarray, metric_fn: MetricFn, vectorized: bool) -> float:
    if vectorized:
        # A vectorized metric expects columns; the original series is a one-column matrix.
        return float(np.asarray(metric_fn(x[:, None]), dtype=float).ravel()[0])
    return float(metric_fn(x))


def _auto_vectorized(metric_fn: MetricFn, vectorized: Optional[bool]) -> bool:
    if vectorized is not None:
        return bool(vectorized)
    # sharpe() is column-wise on 2-D input, so it can score all resamples in one call.
    return metric_fn is sharpe


def _interval(dist: np.ndarray, ci: float) -> tuple[float, float]:
    finite = dist[np.isfinite(dist)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = (1.0 - ci) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_metric(
    returns: Union[np.ndarray, pd.Series, list],
    metric_fn: MetricFn = sharpe,
    n_boot: int = 2000,
    block: Optional[float] = None,
    ci: float = 0.95,
    seed: Seed = 0,
    *,
    vectorized: Optional[bool] = None,
) -> BootstrapResult:
    """Percentile confidence interval of ``metric_fn(returns)`` by stationary bootstrap.

    ``returns`` is a 1-D series of per-period returns (NaNs dropped). ``metric_fn`` maps a
    1-D array to a float (default: annualized :func:`sharpe`). With ``vectorized=True`` it
    is instead called once with the ``(T, n_boot)`` matrix of resamples (one per column)
    and must return ``n_boot`` values - much faster; it is switched on automatically for
    :func:`sharpe`. ``seed`` is an int or a ``numpy.random.Generator``.

    Returns ``estimate`` (metric on the original data), ``low``/``high`` (the
    ``(1-ci)/2`` and ``(1+ci)/2`` quantiles of the bootstrap distribution) and
    ``distribution``.

    >>> rng = np.random.default_rng(0)
    >>> r = rng.normal(0.001, 0.01, 1000)
    >>> res = bootstrap_metric(r, seed=1)             # annualized Sharpe, 95% CI
    >>> round(res.estimate, 2), round(res.low, 2), round(res.high, 2), res.distribution.shape
    (0.84, -0.06, 1.83, (2000,))
    >>> bootstrap_metric(r, seed=1).low == res.low        # same seed, same interval
    True
    """
    x = np.asarray(returns, dtype=float)
    if x.ndim != 1:
        raise DataError(f"bootstrap_metric: returns must be 1-D, got shape {x.shape}")
    x = x[~np.isnan(x)]
    if x.size < 2:
        raise DataError(f"bootstrap_metric: need at least 2 non-NaN returns, got {x.size}")
    _check_ci(ci)
    b = float(default_block_length(x.size) if block is None else block)
    idx = stationary_bootstrap_indices(x.size, n_boot, b, seed)
    dist = _evaluate(x, idx, metric_fn, _auto_vectorized(metric_fn, vectorized))
    low, high = _interval(dist, ci)
    return BootstrapResult(
        estimate=_point(x, metric_fn, _auto_vectorized(metric_fn, vectorized)),
        low=low,
        high=high,
        distribution=dist,
        ci=ci,
        block=b,
        n_boot=int(n_boot),
    )


def _paired(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        # Pair by date, not by position: variants may cover slightly different ranges.
        joined = pd.concat([a, b], axis=1, join="inner").dropna()
        return joined.iloc[:, 0].to_numpy(dtype=float), joined.iloc[:, 1].to_numpy(dtype=float)
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if xa.ndim != 1 or xb.ndim != 1:
        raise DataError(f"bootstrap_difference: returns must be 1-D, got shapes {xa.shape} and {xb.shape}")
    if xa.shape != xb.shape:
        raise DataError(
            f"bootstrap_difference: returns_a and returns_b must cover the same dates; lengths "
            f"{xa.size} != {xb.size} (pass pandas Series to align them on their index)"
        )
    ok = ~(np.isnan(xa) | np.isnan(xb))
    return xa[ok], xb[ok]


def bootstrap_difference(
    returns_a: Union[np.ndarray, pd.Series, list],
    returns_b: Union[np.ndarray, pd.Series, list],
    metric_fn: MetricFn = sharpe,
    n_boot: int = 2000,
    block: Optional[float] = None,
    ci: float = 0.95,
    seed: Seed = 0,
    *,
    vectorized: Optional[bool] = None,
) -> BootstrapDifference:
    """Paired stationary-bootstrap test of ``metric_fn(a) - metric_fn(b)``.

    Both variants are resampled with the *same* block indices (the same dates), so the
    market moves they share cancel out of the difference. Two pandas Series are aligned on
    their index (inner join); arrays must have equal length. Rows where either is NaN are
    dropped.

    ``p_value`` tests ``difference == 0`` two-sided: with ``k`` the number of bootstrap
    differences on the other side of 0 from the estimate (``<= 0`` for a positive
    estimate, ``>= 0`` for a negative one) and ``m`` the number of finite ones (a resample
    of a variant that rarely trades may have no Sharpe ratio), ``p = min(1, 2 (k + 1) / (m + 1))``;
    ``p = 1`` when the estimate is 0 or undefined.

    >>> rng = np.random.default_rng(0)
    >>> market = rng.normal(0.0, 0.01, 1000)
    >>> a = market + rng.normal(0.0008, 0.002, 1000)     # same market, small extra edge
    >>> b = market + rng.normal(0.0000, 0.002, 1000)
    >>> d = bootstrap_difference(a, b, seed=0)
    >>> d.label(), round(d.low, 2), round(d.high, 2)
    ('1.40 * (p < 0.001)', 1.13, 1.67)
    """
    xa, xb = _paired(returns_a, returns_b)
    if xa.size < 2:
        raise DataError(f"bootstrap_difference: need at least 2 paired non-NaN returns, got {xa.size}")
    _check_ci(ci)
    b = float(default_block_length(xa.size) if block is None else block)
    idx = stationary_bootstrap_indices(xa.size, n_boot, b, seed)
    vec = _auto_vectorized(metric_fn, vectorized)
    dist = _evaluate(xa, idx, metric_fn, vec) - _evaluate(xb, idx, metric_fn, vec)
    est = _point(xa, metric_fn, vec) - _point(xb, metric_fn, vec)
    low, high = _interval(dist, ci)
    finite = dist[np.isfinite(dist)]
    if not math.isfinite(est) or est == 0.0 or finite.size == 0:
        p = 1.0
    else:
        other_side = int(np.sum(finite <= 0.0)) if est > 0 else int(np.sum(finite >= 0.0))
        p = min(1.0, 2.0 * (other_side + 1) / (finite.size + 1))
    return BootstrapDifference(
        estimate=est,
        low=low,
        high=high,
        p_value=p,
        distribution=dist,
        ci=ci,
        block=b,
        n_boot=int(n_boot),
    )
