"""Probability of Backtest Overfitting by Combinatorially Symmetric Cross-Validation.

Reference: Bailey, D. H., Borwein, J., Lopez de Prado, M. and Zhu, Q. J. (2015). "The
Probability of Backtest Overfitting". Journal of Computational Finance 20(4).

Algorithm (section 2 of the paper): the ``(T x N)`` matrix of per-period returns of N
configurations is cut into S contiguous blocks of equal length. For each of the
``C(S, S/2)`` ways to pick S/2 blocks as the in-sample (IS) set - the other half being the
out-of-sample (OOS) set - the configuration with the best IS metric is selected and its
OOS relative rank ``omega = rank / (N + 1)`` is recorded as the logit
``ln(omega / (1 - omega))``. PBO is the fraction of logits ``<= 0``: how often the IS
winner lands at or below the OOS median.

Reproduces the documented outputs of the R package ``pbo`` 1.3.5 (vignette and unit
tests; see tests/test_stats_reference.py). That package divides the rank by N instead of
the paper's N + 1, which changes PBO only when the IS winner's OOS rank falls in
(N/2, (N+1)/2] (odd N, or ties).
"""
from __future__ import annotations

import inspect
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
import pandas as pd

from metaflow_nb.errors import ConfigError, DataError
from metaflow_nb.stats.sharpe import sharpe

__all__ = ["PBOResult", "pbo_cscv", "split_paths"]

Metric = Callable[[np.ndarray], Any]

# Upper bound on the number of (combination x configuration) cells held in memory at once;
# keeps S=20 / N=1000 (185k combinations) within a few hundred MB.
_CHUNK_CELLS = 2_000_000


@dataclass(frozen=True, eq=False)
class PBOResult:
    """Outcome of :func:`pbo_cscv`; arrays have one entry per CSCV combination.

    Attributes
    ----------
    pbo: fraction of combinations whose IS-best configuration has an OOS logit <= 0.
    logits: ``ln(omega / (1 - omega))`` per combination.
    omega: OOS relative rank ``rank / (N + 1)`` of the IS-best configuration (ranks
        ascending in the metric, 1 = worst, ties get their average rank).
    is_perf, oos_perf: IS and OOS metric of the IS-best configuration - the performance
        degradation pairs (plot ``oos_perf`` against ``is_perf``).
    prob_oos_loss: fraction of combinations whose IS-best configuration has
        ``oos_perf < 0``.
    n_combinations: ``C(S, S/2)``.
    best_index: column index of the IS-best configuration per combination.
    oos_rank: its OOS rank (1..N).
    n_configs, n_splits, n_rows_used: N, S and the number of rows actually used
        (the ``T mod S`` oldest rows are dropped so that all blocks are equally long).
    config_names: column labels when a DataFrame was given.
    """

    pbo: float
    logits: np.ndarray
    omega: np.ndarray
    is_perf: np.ndarray
    oos_perf: np.ndarray
    prob_oos_loss: float
    n_combinations: int
    best_index: np.ndarray
    oos_rank: np.ndarray
    n_configs: int
    n_splits: int
    n_rows_used: int
    config_names: Optional[tuple] = None

    def degradation(self) -> tuple[float, float]:
        """Least-squares ``(slope, intercept)`` of ``oos_perf`` on ``is_perf``.

        A slope well below 1 (often negative) is the paper's "performance degradation":
        the better a configuration looked in-sample, the less of it survives out-of-sample.
        NaN when ``is_perf`` is constant.

        >>> m = np.random.default_rng(0).normal(0, 0.01, size=(320, 10))   # 10 skill-less configs
        >>> slope, intercept = pbo_cscv(m, s=8).degradation()
        >>> round(slope, 2)   # the in-sample best does worse out of sample
        -0.51
        """
        x = np.asarray(self.is_perf, dtype=float)
        y = np.asarray(self.oos_perf, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if x.size < 2 or np.ptp(x) == 0:
            return math.nan, math.nan
        slope, intercept = np.polyfit(x, y, 1)
        return float(slope), float(intercept)

    def plot_logits(self, ax: Any = None) -> Any:
        """Histogram of the logits with the PBO in the title; returns the Figure.

        matplotlib is imported here only, so computing PBO never needs it.

        >>> m = np.random.default_rng(0).normal(0, 0.01, size=(320, 10))
        >>> m[:, 3] += 0.002
        >>> pbo_cscv(m, s=8).plot_logits().axes[0].get_title()
        'PBO = 0.34  (S = 8, N = 10)'
        """
        from matplotlib.figure import Figure  # lazy: plotting is optional

        if ax is None:   # a Figure of its own, not pyplot's: repeated plots do not pile up there
            fig = Figure(figsize=(6, 3.5))
            ax = fig.subplots()
        else:
            fig = ax.figure
        finite = self.logits[np.isfinite(self.logits)]
        bins = min(50, max(10, int(np.sqrt(finite.size)))) if finite.size else 10
        ax.hist(finite, bins=bins, color="tab:blue", alpha=0.75)
        ax.axvline(0.0, color="tab:red", linestyle="--", linewidth=1)
        ax.set_xlabel("logit of OOS relative rank of the IS-best configuration")
        ax.set_ylabel("combinations")
        ax.set_title(f"PBO = {self.pbo:.2f}  (S = {self.n_splits}, N = {self.n_configs})")
        return fig


def _combinations(s: int) -> np.ndarray:
    half = s // 2
    combos = np.fromiter(
        itertools.chain.from_iterable(itertools.combinations(range(s), half)),
        dtype=np.intp,
    )
    combos = combos.reshape(-1, half)
    mask = np.zeros((combos.shape[0], s), dtype=bool)
    mask[np.arange(combos.shape[0])[:, None], combos] = True
    return mask


def _sharpe_splits(m: np.ndarray, s: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-period Sharpe of every configuration on the IS and OOS halves of each combination.

    Works on per-block sums and sums of squares, so each combination costs one small
    matrix product instead of a pass over T/2 rows.
    """
    t, n = m.shape
    block = t // s
    half_rows = block * (s // 2)
    col_mean = m.mean(axis=0)
    # Centering first keeps sum-of-squares variance free of catastrophic cancellation.
    centered = m - col_mean
    b_sum = centered.reshape(s, block, n).sum(axis=1)
    b_sq = (centered * centered).reshape(s, block, n).sum(axis=1)
    tot_sum = b_sum.sum(axis=0)
    tot_sq = b_sq.sum(axis=0)
    w = mask.astype(float)
    is_sum = w @ b_sum
    is_sq = w @ b_sq
    oos_sum = tot_sum - is_sum
    oos_sq = tot_sq - is_sq

    def _sr(sm: np.ndarray, sq: np.ndarray) -> np.ndarray:
        var = (sq - sm * sm / half_rows) / (half_rows - 1)
        # Relative threshold: a variance that is pure rounding noise means a constant series.
        tiny = 1e-14 * (tot_sq / (t - 1) + col_mean * col_mean)
        ok = var > tiny
        sd = np.sqrt(np.where(ok, var, 1.0))
        return np.where(ok, (sm / half_rows + col_mean) / sd, np.nan)

    return _sr(is_sum, is_sq), _sr(oos_sum, oos_sq)


def _metric_splits(m: np.ndarray, s: int, mask: np.ndarray, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    t, n = m.shape
    block = t // s
    blocks = np.arange(s * block).reshape(s, block)
    codes = mask @ (1 << np.arange(s, dtype=np.int64))
    full = (1 << s) - 1
    where = {int(c): i for i, c in enumerate(codes)}
    # The OOS half of a combination is the IS half of its complement, which CSCV also
    # enumerates: evaluating the metric once per combination covers both.
    every = getattr(metric, "splits", None)
    if every is not None:
        # the metric's own pass over every combination (a path statistic: split_paths)
        perf = np.asarray(every(m, s, mask), dtype=float)
        if perf.shape != (mask.shape[0], n):
            raise DataError(f"pbo_cscv: metric.splits must return one value per combination and configuration "
                            f"{(mask.shape[0], n)}, got shape {perf.shape}")
    else:
        perf = np.empty((mask.shape[0], n), dtype=float)
        for i in range(mask.shape[0]):
            rows = blocks[mask[i]].ravel()
            vals = np.asarray(metric(m[rows]), dtype=float).ravel()
            if vals.shape != (n,):
                raise DataError(
                    f"pbo_cscv: metric must return one value per configuration ({n}), got shape {vals.shape}"
                )
            perf[i] = vals
    oos_idx = np.array([where[full ^ int(c)] for c in codes], dtype=np.intp)
    return perf, perf[oos_idx]


def split_paths(m: np.ndarray, s: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The compounded growth ``prod(1 + r)`` and the maximum drawdown of each column of
    ``m`` over the rows of each CSCV combination (``mask[i]``: which of the ``s`` equal
    blocks it takes, in time order), each ``(combinations, columns)``: what a ranking by
    return or drawdown needs of every half, in one compiled pass without copying the
    halves. The numbers are those of numpy on each half (``np.prod(1 + h, axis=0)``; the
    running peak of ``cumprod(1 + h)`` from 1, drawdown ``(peak - path) / peak``), bit for
    bit: each is one multiplication per row in time order.

    >>> m = np.array([[0.1, -0.5], [-0.1, 0.5]])
    >>> growth, dd = split_paths(m, 2, np.array([[True, True]]))
    >>> growth.round(3).tolist(), dd.round(2).tolist()
    ([[0.99, 0.75]], [[0.1, 0.5]])
    """
    from metaflow_nb.stats._paths_nb import split_paths_nb  # numba (and scipy with it) on first use only

    m = np.ascontiguousarray(m, dtype=np.float64)
    return split_paths_nb(m, m.shape[0] // s, np.ascontiguousarray(mask, dtype=np.bool_))


def _rank_of_best(is_perf: np.ndarray, oos_perf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # NaN (undefined metric) is treated as the worst possible value on both halves.
    is_f = np.where(np.isnan(is_perf), -np.inf, is_perf)
    oos_f = np.where(np.isnan(oos_perf), -np.inf, oos_perf)
    rows = np.arange(is_f.shape[0])
    best = np.argmax(is_f, axis=1)
    oos_best = oos_f[rows, best]
    below = (oos_f < oos_best[:, None]).sum(axis=1)
    equal = (oos_f == oos_best[:, None]).sum(axis=1)
    rank = below + (equal + 1) / 2.0
    return best, rank, is_perf[rows, best], oos_perf[rows, best]


def distinct_columns(m: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """The indices of the columns of ``m`` that are no copy of another column, in order:
    two columns are alike when every value differs by at most ``rtol`` times the larger of
    their largest magnitudes (runs that differ by rounding alone, a few ulps of equity,
    ``0.0`` against ``1e-16``, are the same run, whatever the returns' scale); of alike
    columns the first is kept. Runs with the same returns (a stop that never fires, a
    filter that never triggers) are one configuration to CSCV, which would rank their tie
    at the median of every split and call it overfit (hunt73 F1: PBO 1.00 for two
    identical runs; hunt74 F4, hunt75 F3: ~1.0 for two that differed by rounding).

    >>> x = np.arange(6.0).reshape(3, 2)
    >>> distinct_columns(np.c_[x, x[:, :1], x[:, 1:] * 2, x[:, :1] * (1 + 1e-15)]).tolist()
    [0, 1, 3]
    >>> distinct_columns(np.c_[x * 1e-13, x * 1.001e-13]).tolist()   # small returns, not alike
    [0, 1, 2, 3]
    """
    m = np.asarray(m, dtype=float)
    n = m.shape[1]
    if n < 2:
        return np.arange(n, dtype=np.intp)
    scale = np.nanmax(np.abs(m), axis=0) if m.shape[0] else np.zeros(n)
    scale = np.where(np.isfinite(scale), scale, np.inf)
    # candidates by a random projection with positive weights, sorted: alike columns lie
    # within sum(w) x their tolerance of each other, other columns rarely do, so each is
    # compared with a few neighbours, in one pass however many share their sums (hunt74
    # F4: the first rule was quadratic then)
    w = np.random.default_rng(0).random(m.shape[0]) + 0.5
    proj = np.nan_to_num(w @ np.nan_to_num(m, nan=0.0), nan=0.0, posinf=0.0, neginf=0.0)
    # no alike pair lies further apart than this (their tolerance is at most rtol x the
    # largest scale)
    reach = float(w.sum()) * rtol * float(np.max(scale))
    order = np.argsort(proj, kind="stable")
    group = np.arange(n)
    for a, j in enumerate(order):
        for b in range(a - 1, -1, -1):
            i = order[b]
            if proj[j] - proj[i] > reach:
                break
            if np.all(np.abs(m[:, i] - m[:, j]) <= rtol * max(scale[i], scale[j])):
                group[j] = group[i]
                break
    first = {}
    for j in range(n):   # each group by its first column
        first.setdefault(int(group[j]), j)
    return np.asarray(sorted(first.values()), dtype=np.intp)


def pbo_cscv(
    returns: Union[np.ndarray, pd.DataFrame],
    s: int = 16,
    metric: Optional[Metric] = None,
) -> PBOResult:
    """Probability of Backtest Overfitting of selecting the IS-best of N configurations.

    Parameters
    ----------
    returns: ``(T, N)`` per-period returns, one column per configuration, rows in time
        order, no NaN. The oldest ``T mod S`` rows are dropped.
    s: number of blocks S (even, >= 2; default 16 -> 12870 combinations).
    metric: ranking metric. ``None`` (default) is the per-period Sharpe ratio
        ``mean / std`` (ddof=1), computed in vectorized form. Otherwise a callable taking a
        ``(rows, N)`` ndarray and returning N values, higher = better; it is called once
        per combination (the OOS side reuses the complement's IS value), so it is slower.

    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(0, 0.01, size=(1000, 50))
    >>> res = pbo_cscv(noise)
    >>> res.n_combinations, 0.2 < res.pbo < 0.9
    (12870, True)
    >>> noise[:, 7] += 0.004                      # plant a real edge in config 7
    >>> res = pbo_cscv(noise)
    >>> res.pbo, bool((res.best_index == 7).all()), res.prob_oos_loss
    (0.0, True, 0.0)
    """
    names = tuple(returns.columns) if isinstance(returns, pd.DataFrame) else None
    m = np.asarray(returns, dtype=float)
    if m.ndim != 2:
        raise DataError(f"pbo_cscv: returns must be a (T periods x N configurations) matrix, got shape {m.shape}")
    if np.isnan(m).any():
        raise DataError("pbo_cscv: returns contain NaN; fill or drop them so all configurations share the same rows")
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 2 or s % 2:
        raise ConfigError(f"pbo_cscv: s must be an even integer >= 2, got {s!r}")
    t, n = m.shape
    if n < 2:
        raise DataError(f"pbo_cscv: need at least 2 configurations (columns), got {n}")
    block = t // s
    if block < 1 or block * (s // 2) < 2:
        raise DataError(f"pbo_cscv: T={t} rows are too few for S={s} blocks (need T >= {max(s, 4)})")
    m = m[t - block * s:]

    mask = _combinations(int(s))
    n_comb = mask.shape[0]
    fast_scale = _sharpe_scale(metric)
    if fast_scale is not None:
        chunk = max(1, _CHUNK_CELLS // n)
        parts = []
        for lo in range(0, n_comb, chunk):
            is_p, oos_p = _sharpe_splits(m, int(s), mask[lo:lo + chunk])
            parts.append(_rank_of_best(is_p, oos_p))
        best, rank, is_best, oos_best = (np.concatenate(x) for x in zip(*parts))
        is_best, oos_best = is_best * fast_scale, oos_best * fast_scale
    else:
        assert metric is not None
        is_p, oos_p = _metric_splits(m, int(s), mask, metric)
        best, rank, is_best, oos_best = _rank_of_best(is_p, oos_p)

    omega = rank / (n + 1.0)
    logits = np.log(omega / (1.0 - omega))
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        omega=omega,
        is_perf=is_best,
        oos_perf=oos_best,
        prob_oos_loss=float(np.mean(oos_best < 0.0)),
        n_combinations=int(n_comb),
        best_index=best,
        oos_rank=rank,
        n_configs=int(n),
        n_splits=int(s),
        n_rows_used=int(block * s),
        config_names=names,
    )


def _sharpe_scale(metric: Optional[Metric]) -> Optional[float]:
    """Factor turning the vectorized per-period Sharpe into ``metric``, None if it cannot."""
    if metric is None:
        return 1.0

    # The public sharpe() with its default annualization only rescales the per-period
    # ratio, which leaves every ranking unchanged, so it can take the vectorized path.
    if metric is sharpe:
        return math.sqrt(float(inspect.signature(sharpe).parameters["periods_per_year"].default))
    return None
