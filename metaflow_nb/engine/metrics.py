"""Run metrics. Formulas are stated in the README ("Metrics"); percent where the name says pct.

Daily returns are the returns of the equity curve sampled at each calendar day's last
bar (the first day against the starting cash). Sharpe and Sortino use them with risk-free
rate 0 and annualise by sqrt(252), or sqrt(365) when the data has Saturday bars.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import pandas as pd

from .records import JOURNAL_DTYPE, TRADE_DTYPE, RunRecords

METRIC_NAMES = (
    "total_return_pct", "cagr_pct", "sharpe_ratio", "sortino_ratio", "calmar_ratio", "max_drawdown_pct",
    "volatility_ann_pct", "win_rate_pct", "profit_factor", "expectancy_pct", "total_trades",
    "avg_trade_duration_bars", "exposure_pct", "final_equity", "opportunities_detected",
    "opportunities_rejected", "rejection_rate_pct",
)

#: which way is better, for winners and stars: +1 higher, -1 lower, 0 neither
METRIC_DIRECTION = {
    "total_return_pct": 1, "cagr_pct": 1, "sharpe_ratio": 1, "sortino_ratio": 1, "calmar_ratio": 1,
    "max_drawdown_pct": -1, "volatility_ann_pct": -1, "win_rate_pct": 1, "profit_factor": 1,
    "expectancy_pct": 1, "total_trades": 0, "avg_trade_duration_bars": 0, "exposure_pct": 0,
    "final_equity": 1, "opportunities_detected": 0, "opportunities_rejected": 0, "rejection_rate_pct": 0,
}


_NS_PER_DAY = 86_400 * 1_000_000_000


def _ns(index: pd.DatetimeIndex) -> np.ndarray:
    """int64 nanoseconds of a tz-naive index (no conversion when it is in ns already)."""
    return index.asi8 if index.unit == "ns" else index.as_unit("ns").asi8


def _days(index: pd.DatetimeIndex) -> np.ndarray:
    """Whole days since the epoch of each (tz-naive, or local wall-clock) timestamp."""
    if index.tz is not None:
        index = index.tz_localize(None)
    return np.floor_divide(_ns(index), _NS_PER_DAY)


def calendar(index: pd.DatetimeIndex) -> tuple[np.ndarray, float, float]:
    """``(day_end, periods_per_year, years)`` of a bar index: what the metrics need to know
    about the calendar, computed once per dataset (from integer days, no datetime fields).

    ``day_end`` is True at the last bar of each calendar day; a year has 252 trading days,
    or 365 when the data trades on Saturdays (crypto-style).
    """
    years = span_years(index)
    if index.tz is not None:
        index = index.tz_localize(None)
    n = len(index)
    if n == 0:
        return np.zeros(0, dtype=np.bool_), 252.0, years
    t = _ns(index)
    first_day, last_day = int(t[0] // _NS_PER_DAY), int(t[-1] // _NS_PER_DAY)
    if 8 * (last_day - first_day) <= n and index.is_monotonic_increasing:
        # many bars a day, sorted: the last bar of a day is the one before the first bar at
        # or after the next midnight; one binary search per calendar day instead of a
        # division per bar. With few bars a day (daily data) the division per bar is the
        # cheaper O(n) way: a search per day would cost n log n.
        midnights = np.arange(first_day + 1, last_day + 1, dtype=np.int64) * _NS_PER_DAY
        ends = np.append(np.searchsorted(t, midnights, side="left") - 1, n - 1)
        day_end = np.zeros(n, dtype=np.bool_)
        day_end[ends] = True
        end_days = t[ends] // _NS_PER_DAY
    else:
        d = t // _NS_PER_DAY
        day_end = np.append(d[1:] != d[:-1], True)
        end_days = d[day_end]
    # 1970-01-01 was a Thursday (day of week 3), so Saturday is (days + 3) % 7 == 5
    saturday = bool(np.any((end_days + 3) % 7 == 5))
    return day_end, float(365 if saturday else 252), years


def periods_per_year(index: pd.DatetimeIndex) -> int:
    """252 trading days a year, or 365 when the data trades on Saturdays."""
    return int(calendar(index)[1])


def daily_returns(equity: pd.Series, cash: float) -> pd.Series:
    """Returns of the equity at each calendar day's last bar; the first day against ``cash``."""
    from .nb.metrics import daily_returns as nb_daily_returns

    if equity.empty:
        return pd.Series(dtype="float64", name="daily_return")
    ends = calendar(equity.index)[0]
    r = nb_daily_returns(equity.to_numpy(np.float64), 0, ends, float(cash))
    return pd.Series(r, index=equity.index[ends].normalize(), name="daily_return")


def span_years(index: pd.DatetimeIndex) -> float:
    return (index[-1] - index[0]).total_seconds() / (365.25 * 86400.0) if len(index) > 1 else 0.0


def metrics_dict(vec: np.ndarray) -> dict[str, Any]:
    """Name a metric vector; counts become ints."""
    out: dict[str, Any] = {}
    for name, v in zip(METRIC_NAMES, vec.tolist()):
        out[name] = int(v) if name in _COUNTS else v
    return out


_COUNTS = {"total_trades", "opportunities_detected", "opportunities_rejected"}


def metrics_json(vecs: np.ndarray) -> list[dict[str, Any]]:
    """One JSON-ready metrics dict per row of ``vecs``: :func:`metrics_dict` with NaN and
    infinities as None (what ``json_safe(metrics_dict(row))`` gives), in one pass."""
    isfinite = math.isfinite
    is_count = [name in _COUNTS for name in METRIC_NAMES]
    out = []
    for row in vecs.tolist():
        out.append({name: int(v) if count else (v if isfinite(v) else None)
                    for name, count, v in zip(METRIC_NAMES, is_count, row)})
    return out


def compute_metrics(records: RunRecords, first: int, index: pd.DatetimeIndex, cash: float,
                    cal: Optional[tuple[np.ndarray, float, float]] = None) -> dict[str, Any]:
    """All metrics of one run (its :class:`~.records.RunRecords`) measured from bar
    ``first`` of ``index``, as Python numbers (NaN where undefined). The arithmetic lives in
    :func:`metaflow_nb.engine.nb.metrics.run_metrics`. ``cal`` is :func:`calendar` of
    ``index[first:]``, when the caller has it cached."""
    from .nb.metrics import run_metrics

    if cal is None:
        cal = calendar(index[first:])
    day_end = cal[0] if first == 0 else np.concatenate([np.zeros(first, dtype=np.bool_), cal[0]])
    return metrics_dict(run_metrics(records, first, day_end, float(cash), cal[1], cal[2]))


def metrics_from_frames(equity: pd.Series, position: np.ndarray, trades: pd.DataFrame, cash: float,
                        detected: int, rejected: int) -> dict[str, Any]:
    """Metrics of an equity curve assembled from several runs (walk-forward stitching)."""
    from .codes import EV_OPPORTUNITY_DETECTED, EV_OPPORTUNITY_REJECTED

    tm = np.zeros(len(trades), dtype=TRADE_DTYPE)
    for name in ("entry_bar", "exit_bar", "entry_price", "size", "pnl"):
        tm[name] = trades[name].to_numpy()
    jm = np.zeros(detected + rejected, dtype=JOURNAL_DTYPE)
    jm["event"][:detected] = EV_OPPORTUNITY_DETECTED
    jm["event"][detected:] = EV_OPPORTUNITY_REJECTED
    records = RunRecords(equity.to_numpy(np.float64), np.asarray(position, np.float64), tm, jm)
    return compute_metrics(records, 0, equity.index, cash)
