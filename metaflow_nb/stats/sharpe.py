"""Sharpe ratio, Probabilistic Sharpe Ratio and Deflated Sharpe Ratio.

References
----------
* Bailey, D. H. and Lopez de Prado, M. (2012). "The Sharpe Ratio Efficient Frontier".
  Journal of Risk 15(2). Source of the Probabilistic Sharpe Ratio (PSR).
* Bailey, D. H. and Lopez de Prado, M. (2014). "The Deflated Sharpe Ratio: Correcting for
  Selection Bias, Backtest Overfitting and Non-Normality". Journal of Portfolio Management
  40(5). Source of the Deflated Sharpe Ratio (DSR) and of the expected maximum Sharpe ratio.

Units
-----
The PSR/DSR formulas are written for the *per-period* (non-annualized) Sharpe ratio
``mean / std`` of the ``T`` observed returns. Functions that take already-annualized
figures say so and take ``periods_per_year`` to convert them (``SR_period = SR_ann /
sqrt(periods_per_year)``, ``V_period = V_ann / periods_per_year``). Skewness and kurtosis
are the plain (biased) moment estimators, kurtosis is *non-excess* (3 for a normal law),
as in the papers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Optional, Union

import numpy as np
import pandas as pd

from metaflow_nb.errors import ConfigError, DataError

__all__ = [
    "EULER_GAMMA",
    "DeflatedSharpe",
    "sharpe",
    "psr",
    "psr_from_returns",
    "expected_max_sharpe",
    "deflated_sharpe_ratio",
    "deflated_sharpe_ratio_from_stats",
    "moments",
    "norm_cdf",
    "norm_ppf",
]

#: Euler-Mascheroni constant, used by the expected maximum of N Gaussian Sharpe ratios.
EULER_GAMMA = 0.5772156649015329

_STD_NORMAL = NormalDist()

ArrayLike = Union[np.ndarray, pd.Series, pd.DataFrame, list, tuple]


def norm_cdf(x: float) -> float:
    """Standard normal CDF ``Z[x]`` (stdlib only: scipy is not a runtime dependency).

    >>> round(norm_cdf(1.959963984540054), 6)
    0.975
    """
    if math.isnan(x):
        return math.nan
    # erfc keeps full relative precision deep in the left tail, where 0.5 * (1 + erf)
    # (NormalDist.cdf) cancels to a few significant digits.
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def norm_ppf(p: float) -> float:
    """Standard normal quantile ``Z^-1[p]``; -inf/inf at 0/1.

    >>> round(norm_ppf(0.975), 6)
    1.959964
    """
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"norm_ppf: probability must be in [0, 1], got {p!r}")
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    return _STD_NORMAL.inv_cdf(p)


def _degenerate(sd: Any, mean: Any) -> Any:
    # A constant series has a standard deviation of pure rounding noise (e.g. 1e-19 for ten
    # copies of 0.01), which would turn into an absurd Sharpe ratio instead of "undefined".
    return np.asarray(sd <= 1e-10 * np.abs(mean)) | np.asarray(sd == 0.0)


def _as_1d(returns: ArrayLike, what: str = "returns") -> np.ndarray:
    arr = np.asarray(returns, dtype=float)
    if arr.ndim != 1:
        raise DataError(f"{what}: expected a 1-D series of per-period returns, got shape {arr.shape}")
    return arr[~np.isnan(arr)]


def sharpe(
    returns: ArrayLike,
    periods_per_year: float = 252.0,
    ddof: int = 1,
) -> Any:
    """Sharpe ratio ``mean / std * sqrt(periods_per_year)`` of per-period returns.

    No risk-free rate is subtracted: pass excess returns if you want one. NaNs are
    ignored. ``periods_per_year=1`` gives the per-period Sharpe ratio used by
    :func:`psr` and :func:`deflated_sharpe_ratio`. A zero standard deviation gives NaN
    (the ratio is undefined, and NaN sorts as "no information" in rankings).

    A 1-D input gives a float; a 2-D ``(T, N)`` array gives one value per column (an
    ndarray, or a Series indexed by the columns for a DataFrame), which is what the
    vectorized bootstrap relies on.

    >>> r = np.array([0.01, -0.005, 0.007, 0.002, -0.001])
    >>> round(sharpe(r, periods_per_year=1), 4)
    0.4315
    >>> round(sharpe(r), 2)
    6.85
    >>> sharpe(np.column_stack([r, -r]), periods_per_year=1).round(4)
    array([ 0.4315, -0.4315])
    """
    if periods_per_year <= 0:
        raise ConfigError(f"sharpe: periods_per_year must be > 0, got {periods_per_year!r}")
    scale = math.sqrt(periods_per_year)
    if isinstance(returns, pd.DataFrame):
        values = sharpe(returns.to_numpy(dtype=float), periods_per_year, ddof)
        return pd.Series(values, index=returns.columns, name="sharpe")
    arr = np.asarray(returns, dtype=float)
    if arr.ndim == 1:
        arr = arr[~np.isnan(arr)]
        if arr.size <= ddof:
            return math.nan
        sd = float(arr.std(ddof=ddof))
        mean = float(arr.mean())
        if _degenerate(sd, mean) or not math.isfinite(sd):
            return math.nan
        return mean / sd * scale
    if arr.ndim == 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            if np.isnan(arr).any():
                mean = np.nanmean(arr, axis=0)
                sd = np.nanstd(arr, axis=0, ddof=ddof)
            else:
                mean = arr.mean(axis=0)
                sd = arr.std(axis=0, ddof=ddof)
            ok = ~_degenerate(sd, mean)
            out = np.where(ok, mean / np.where(ok, sd, 1.0), np.nan) * scale
        return out
    raise DataError(f"sharpe: expected 1-D or 2-D returns, got shape {arr.shape}")


def moments(returns: ArrayLike) -> tuple[float, float, float, int]:
    """Per-period Sharpe ratio, skewness, non-excess kurtosis and T of a return series.

    Skewness and kurtosis are the biased moment estimators ``m3 / m2**1.5`` and
    ``m4 / m2**2`` (scipy's ``skew`` / ``kurtosis(fisher=False)`` defaults), the Sharpe
    ratio uses ``ddof=1``. NaNs are dropped.

    >>> sr, g3, g4, t = moments([0.01, -0.02, 0.015, 0.003, -0.004, 0.02])
    >>> round(sr, 4), round(g3, 4), round(g4, 4), t
    (0.2755, -0.6223, 2.2541, 6)
    """
    arr = _as_1d(returns)
    t = int(arr.size)
    if t < 3:
        raise DataError(f"returns: need at least 3 non-NaN observations, got {t}")
    centered = arr - arr.mean()
    # products, not powers: numpy computes x**3 and x**4 with the CPU's vector pow where it
    # has one (AVX-512), so the last bit of the skewness depended on the machine; a product
    # is rounded the same everywhere
    sq = centered * centered
    m2 = float(np.mean(sq))
    if _degenerate(math.sqrt(m2), float(arr.mean())):
        raise DataError("returns: zero variance, the Sharpe ratio is undefined")
    m3 = float(np.mean(sq * centered))
    m4 = float(np.mean(sq * sq))
    sr = float(arr.mean()) / float(arr.std(ddof=1))
    return sr, m3 / m2**1.5, m4 / m2**2, t


def psr(
    sr: float,
    t: int,
    skew: float = 0.0,
    kurt: float = 3.0,
    sr_benchmark: float = 0.0,
) -> float:
    """Probabilistic Sharpe Ratio (Bailey & Lopez de Prado 2012).

    ``PSR(SR*) = Z[(SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2)]``: the
    probability that the true Sharpe ratio exceeds ``sr_benchmark`` given the estimate
    ``sr`` from ``t`` observations with skewness ``skew`` (g3) and non-excess kurtosis
    ``kurt`` (g4). ``sr`` and ``sr_benchmark`` are *per-period* (not annualized).

    Convention of the 2012 paper: the variance of the estimate is evaluated at the
    estimate ``sr`` and divided by ``t - 1``. (Lopez de Prado, Lipton & Zoonekynd 2025
    evaluate it at the benchmark and divide by ``t``; on the 2012 paper's 24-month
    example that gives 0.987 where this convention gives 0.913.) ``t`` may be fractional,
    e.g. a minimum track record length. The paper's example (annualized SR 1.585 on 24
    monthly returns, skewness -2.448, kurtosis 10.164):

    >>> round(psr(1.585 / 12 ** 0.5, t=24, skew=-2.448, kurt=10.164), 3)
    0.913
    >>> round(psr(0.1, t=250), 4)          # normal returns, annual SR ~1.6, one year
    0.9423
    >>> round(psr(0.1, t=250, skew=-3, kurt=10), 4)   # fat left tail: less confident
    0.915
    """
    if t < 2:
        raise DataError(f"psr: need t >= 2 observations, got {t!r}")
    var_term = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not var_term > 0.0:
        # Only reachable with moments no distribution can have (g4 < 1 + g3^2).
        raise ConfigError(
            f"psr: 1 - skew*SR + (kurt-1)/4*SR^2 = {var_term:.6g} <= 0; "
            f"check skew={skew!r}, kurt={kurt!r} (kurt is non-excess, 3 for a normal law)"
        )
    z = (sr - sr_benchmark) * math.sqrt(t - 1) / math.sqrt(var_term)
    return norm_cdf(z)


def psr_from_returns(
    returns: ArrayLike,
    sr_benchmark: float = 0.0,
    periods_per_year: float = 1.0,
) -> float:
    """PSR of a return series against ``sr_benchmark``.

    ``sr_benchmark`` is expressed with ``periods_per_year`` (``1`` = per-period; ``252``
    = an annualized benchmark, converted with ``/ sqrt(252)``).

    >>> rng = np.random.default_rng(0)
    >>> r = rng.normal(0.001, 0.01, 1000)
    >>> round(sharpe(r), 2)                         # annualized, true value 1.59
    0.84
    >>> round(psr_from_returns(r), 4)                # P[true SR > 0]
    0.9532
    >>> round(psr_from_returns(r, sr_benchmark=1.0, periods_per_year=252), 4)
    0.3786
    """
    sr, g3, g4, t = moments(returns)
    return psr(sr, t, g3, g4, sr_benchmark / math.sqrt(periods_per_year))


def expected_max_sharpe(n_trials: float, var_sr: float, mean_sr: float = 0.0) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` trials whose true SR is zero.

    ``SR0 = mean_sr + sqrt(var_sr) * ((1 - gamma) Z^-1[1 - 1/N] + gamma Z^-1[1 - 1/(N e)])``
    (Bailey & Lopez de Prado 2014, eq. for E[max SR_n]; gamma is Euler-Mascheroni). The
    result is in the units of ``var_sr`` (per-period variance -> per-period SR0). With a
    single trial there is no selection, so ``SR0 = mean_sr``.

    >>> round(expected_max_sharpe(100, 0.5 / 250), 4)   # DSR paper's numerical example
    0.1132
    >>> expected_max_sharpe(1, 0.5)
    0.0
    """
    if not n_trials >= 1:
        raise ConfigError(f"expected_max_sharpe: n_trials must be >= 1, got {n_trials!r}")
    if not var_sr >= 0:
        raise ConfigError(f"expected_max_sharpe: var_sr must be >= 0, got {var_sr!r}")
    if n_trials == 1:
        return float(mean_sr)
    n = float(n_trials)
    z = (1.0 - EULER_GAMMA) * norm_ppf(1.0 - 1.0 / n) + EULER_GAMMA * norm_ppf(1.0 - 1.0 / (n * math.e))
    return float(mean_sr) + math.sqrt(var_sr) * z


@dataclass(frozen=True)
class DeflatedSharpe:
    """Result of :func:`deflated_sharpe_ratio`. All Sharpe figures are per-period.

    ``dsr`` is PSR(SR0): the probability that the selected run's true Sharpe ratio beats
    the best Sharpe ratio expected from ``n_trials`` skill-less trials. ``psr`` is PSR(0)
    of the same run, i.e. without the selection-bias correction.
    """

    dsr: float
    psr: float
    sr: float
    sr0: float
    n_trials: float
    var_sr: float
    skew: float
    kurt: float
    t: int
    periods_per_year: float = 1.0

    def significant(self, alpha: float = 0.05) -> bool:
        """True when ``dsr > 1 - alpha`` (the deflated Sharpe is significant at ``alpha``).

        >>> d = DeflatedSharpe(dsr=0.97, psr=0.99, sr=0.1, sr0=0.05, n_trials=10, var_sr=0.001, skew=0.0, kurt=3.0,
        ...                    t=1000, periods_per_year=252)
        >>> d.significant(), d.significant(alpha=0.01)
        (True, False)
        """
        if not 0.0 < alpha < 1.0:
            raise ConfigError(f"significant: alpha must be in (0, 1), got {alpha!r}")
        return bool(self.dsr > 1.0 - alpha)

    @property
    def sr_annualized(self) -> float:
        """``sr * sqrt(periods_per_year)``: the selected run's Sharpe ratio a year.

        >>> d = DeflatedSharpe(dsr=0.97, psr=0.99, sr=0.1, sr0=0.05, n_trials=10, var_sr=0.001, skew=0.0, kurt=3.0,
        ...                    t=1000, periods_per_year=252)
        >>> round(d.sr_annualized, 3)   # 0.1 a day, 252 days
        1.587
        """
        return self.sr * math.sqrt(self.periods_per_year)

    @property
    def sr0_annualized(self) -> float:
        """``sr0 * sqrt(periods_per_year)``: the best Sharpe ratio a year expected from
        ``n_trials`` skill-less trials.

        >>> d = DeflatedSharpe(dsr=0.97, psr=0.99, sr=0.1, sr0=0.05, n_trials=10, var_sr=0.001, skew=0.0, kurt=3.0,
        ...                    t=1000, periods_per_year=252)
        >>> round(d.sr0_annualized, 3)
        0.794
        """
        return self.sr0 * math.sqrt(self.periods_per_year)


def deflated_sharpe_ratio_from_stats(
    sr: float,
    t: int,
    n_trials: float,
    var_sr: float,
    skew: float = 0.0,
    kurt: float = 3.0,
    periods_per_year: float = 1.0,
) -> DeflatedSharpe:
    """Deflated Sharpe Ratio from summary statistics.

    ``sr`` (the selected run's Sharpe) and ``var_sr`` (variance of the Sharpe ratios of all
    ``n_trials`` trials) are given in the units of ``periods_per_year`` (``1`` =
    per-period; ``252`` = annualized) and converted to per-period before applying
    ``DSR = PSR(SR0)``. ``skew``/``kurt`` are those of the selected run's returns
    (non-excess kurtosis), ``t`` its number of returns.

    The paper's numerical example (N=100, V=1/2 annualized, T=1250, skew=-3, kurt=10,
    annualized SR=2.5 on 250 days a year):

    >>> d = deflated_sharpe_ratio_from_stats(2.5, t=1250, n_trials=100, var_sr=0.5,
    ...                                      skew=-3, kurt=10, periods_per_year=250)
    >>> round(d.sr, 4), round(d.sr0, 4), round(d.dsr, 4), d.significant(0.05)
    (0.1581, 0.1132, 0.9004, False)
    """
    if periods_per_year <= 0:
        raise ConfigError(f"periods_per_year must be > 0, got {periods_per_year!r}")
    sr_p = sr / math.sqrt(periods_per_year)
    var_p = var_sr / periods_per_year
    sr0 = expected_max_sharpe(n_trials, var_p)
    return DeflatedSharpe(
        dsr=psr(sr_p, t, skew, kurt, sr0),
        psr=psr(sr_p, t, skew, kurt, 0.0),
        sr=sr_p,
        sr0=sr0,
        n_trials=n_trials,
        var_sr=var_p,
        skew=float(skew),
        kurt=float(kurt),
        t=int(t),
        periods_per_year=float(periods_per_year),
    )


def deflated_sharpe_ratio(
    returns: ArrayLike,
    trial_sharpes: Optional[ArrayLike] = None,
    *,
    n_trials: Optional[float] = None,
    var_sr: Optional[float] = None,
    periods_per_year: float = 252.0,
) -> DeflatedSharpe:
    """Deflated Sharpe Ratio of the best run of an optimization.

    ``returns`` are the per-period returns of the selected (best) run: they give SR, T,
    skewness and kurtosis. The selection is described either by ``trial_sharpes`` (the
    Sharpe ratios of *all* trials, best included: ``N = len``, ``V = sample variance with
    ddof=1``) or explicitly by ``n_trials`` and ``var_sr``; explicit values win, so you can
    pass an effective number of independent trials with the observed Sharpe ratios.
    ``trial_sharpes``/``var_sr`` are in the units of ``periods_per_year`` - the default 252
    matches :func:`sharpe`'s default annualization; pass ``1`` for per-period figures.

    >>> rng = np.random.default_rng(1)
    >>> trials = rng.normal(0.0, 0.01, size=(1000, 200))       # 200 skill-less configs
    >>> srs = sharpe(trials)
    >>> best = trials[:, np.argmax(srs)]
    >>> d = deflated_sharpe_ratio(best, srs)
    >>> d.n_trials, round(d.sr_annualized, 2), round(d.sr0_annualized, 2)
    (200, 1.04, 1.38)
    >>> round(d.psr, 3), round(d.dsr, 3), d.significant()   # PSR alone would be fooled
    (0.981, 0.254, False)
    """
    sr_p, g3, g4, t = moments(returns)
    if trial_sharpes is not None:
        srs = np.asarray(trial_sharpes, dtype=float).ravel()
        srs = srs[~np.isnan(srs)]
        if n_trials is None:
            n_trials = int(srs.size)
        if var_sr is None:
            if srs.size < 2:
                raise DataError("trial_sharpes: need at least 2 finite Sharpe ratios for their variance")
            var_sr = float(srs.var(ddof=1))
    if n_trials is None or var_sr is None:
        raise ConfigError("deflated_sharpe_ratio: pass trial_sharpes, or both n_trials and var_sr")
    sr0 = expected_max_sharpe(n_trials, var_sr / periods_per_year)
    return DeflatedSharpe(
        dsr=psr(sr_p, t, g3, g4, sr0),
        psr=psr(sr_p, t, g3, g4, 0.0),
        sr=sr_p,
        sr0=sr0,
        n_trials=n_trials,
        var_sr=var_sr / periods_per_year,
        skew=g3,
        kurt=g4,
        t=t,
        periods_per_year=float(periods_per_year),
    )
