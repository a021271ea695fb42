"""Walk-forward efficiency and the spread of out-of-sample results across windows."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from metaflow_nb.errors import DataError

__all__ = ["SpreadSummary", "walk_forward_efficiency", "oos_spread"]

Scores = Union[np.ndarray, pd.Series, Sequence[float]]


def _vector(values: Scores, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"{what}: expected a non-empty 1-D sequence, got shape {arr.shape}")
    return arr


def walk_forward_efficiency(
    is_scores: Scores,
    oos_scores: Scores,
    is_lengths: Optional[Scores] = None,
    oos_lengths: Optional[Scores] = None,
) -> float:
    """Walk-forward efficiency: mean OOS performance rate / mean IS performance rate.

    One entry per walk-forward window. Two ways to call it:

    * without lengths, the scores must already be on a common time scale - annualized
      returns, or Sharpe ratios - and ``WFE = mean(oos_scores) / mean(is_scores)``;
    * with ``is_lengths``/``oos_lengths`` (bars per window), the scores are whole-window
      figures such as total return and are first turned into per-bar rates:
      ``WFE = mean(oos_i / oos_len_i) / mean(is_i / is_len_i)``. This equals the ratio of
      the (linearly) annualized returns for any ``periods_per_year``, which cancels - so a
      3-month OOS window is not penalized against a 12-month IS window.

    This is Pardo's "annualized out-of-sample rate of return / annualized in-sample rate
    of return", averaged over windows before the ratio is taken.

    Windows with a NaN score on either side are skipped. The ratio is only meaningful for a profitable in-sample:
    when ``mean IS <= 0`` the result is NaN. Rule of thumb (Pardo): WFE >= 0.5 suggests
    the optimization is not mostly fitting noise.

    >>> walk_forward_efficiency([2.0, 1.6], [1.0, 0.8])                 # Sharpe ratios
    0.5
    >>> walk_forward_efficiency([0.20, 0.20], [0.05, 0.05], [252, 252], [63, 63])
    1.0
    """
    is_s = _vector(is_scores, "is_scores")
    oos_s = _vector(oos_scores, "oos_scores")
    if is_s.shape != oos_s.shape:
        raise DataError(
            f"walk_forward_efficiency: is_scores ({is_s.size}) and oos_scores ({oos_s.size}) "
            "must have one entry per window"
        )
    if (is_lengths is None) != (oos_lengths is None):
        raise DataError("walk_forward_efficiency: pass both is_lengths and oos_lengths, or neither")
    if is_lengths is not None and oos_lengths is not None:
        is_l = _vector(is_lengths, "is_lengths")
        oos_l = _vector(oos_lengths, "oos_lengths")
        if is_l.shape != is_s.shape or oos_l.shape != is_s.shape:
            raise DataError("walk_forward_efficiency: lengths must have one entry per window")
        if (is_l <= 0).any() or (oos_l <= 0).any():
            raise DataError("walk_forward_efficiency: window lengths must be > 0 bars")
        is_s = is_s / is_l
        oos_s = oos_s / oos_l
    # A window only counts when both of its halves have a score: the ratio compares the
    # same windows in and out of sample.
    ok = ~(np.isnan(is_s) | np.isnan(oos_s))
    if not ok.any():
        return math.nan
    is_mean = float(is_s[ok].mean())
    oos_mean = float(oos_s[ok].mean())
    if not is_mean > 0:
        return math.nan
    return oos_mean / is_mean


@dataclass(frozen=True)
class SpreadSummary:
    """Distribution summary of per-window out-of-sample results."""

    n: int
    mean: float
    std: float
    min: float
    q25: float
    median: float
    q75: float
    max: float
    frac_positive: float

    def as_dict(self) -> dict:
        """Plain dict, e.g. for a one-row DataFrame or a report table.

        >>> d = oos_spread([0.5, -0.2, 1.1, 0.3]).as_dict()
        >>> list(d)[:4], d["frac_positive"]
        (['n', 'mean', 'std', 'min'], 0.75)
        """
        return asdict(self)


def oos_spread(values: Scores) -> SpreadSummary:
    """Mean, std (ddof=1), min, quartiles, max and fraction ``> 0`` of OOS values.

    NaNs are ignored; ``n`` counts the finite values. A strategy whose OOS mean is
    carried by one or two windows shows up as a low ``frac_positive`` and a wide spread.

    >>> s = oos_spread([0.5, -0.2, 1.1, 0.3])
    >>> s.n, round(s.mean, 3), s.min, s.median, s.max, s.frac_positive
    (4, 0.425, -0.2, 0.4, 1.1, 0.75)
    """
    arr = np.asarray(values, dtype=float).ravel()
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        nan = math.nan
        return SpreadSummary(0, nan, nan, nan, nan, nan, nan, nan, nan)
    q25, med, q75 = np.quantile(arr, [0.25, 0.5, 0.75])
    return SpreadSummary(
        n=int(arr.size),
        mean=float(arr.mean()),
        std=float(arr.std(ddof=1)) if arr.size > 1 else math.nan,
        min=float(arr.min()),
        q25=float(q25),
        median=float(med),
        q75=float(q75),
        max=float(arr.max()),
        frac_positive=float(np.mean(arr > 0)),
    )
