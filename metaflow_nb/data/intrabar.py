"""Finer bars inside a run's bars, for deciding ambiguous bars (intrabar resolution).

A bar that touches both a position's stop and its target does not say which came first;
the engine then assumes the stop (the pessimistic rule). With finer bars inside each bar
(15-minute bars inside 1-hour bars, say), the kernel replays such a bar on its finer
bars and the first level touched wins (:func:`metaflow_nb.engine.nb.simulate._decide`).
Only ambiguous bars are replayed: a run whose bars never touch two levels gives the same
trades with or without finer data.

Two ways to get the finer bars, both declared in the operation's ``data`` section:

* ``timeframe: 1h`` and ``intrabar: source``: the run's bars are resampled from the
  source (:func:`metaflow_nb.data.timeframe.resample`) and the source's own bars are the
  finer bars;
* ``intrabar: <sample or path>``: a second file at a finer timeframe, read on the data's
  clock.

:func:`map_finer_bars` puts finer bar ``j`` inside bar ``i`` when it opens in
``[open_i, min(open_i + spacing, open_{i+1}))`` (``spacing``: the bars' median spacing);
a finer bar outside the high-low range of its bar is refused: the two do not show the
same prices (another source, another clock). Finer bars that do not show their bar's
whole path (the first opening at its open, none missing between the first and the last,
together reaching its high and low: a gappy file) leave that bar to the pessimistic rule.

>>> import pandas as pd
>>> idx = pd.date_range("2024-01-02", periods=8, freq="15min")
>>> fine = pd.DataFrame({"open": 1.0, "high": [2, 2, 3, 2, 2, 2, 2, 4.0], "low": 1.0, "close": 1.0}, index=idx)
>>> base = pd.DataFrame({"open": [1.0, 1.0], "high": [3.0, 4.0], "low": [1.0, 1.0], "close": 1.0},
...                     index=idx[::4])
>>> fb = map_finer_bars(base, fine)
>>> fb.start.tolist(), fb.end.tolist()
([0, 4], [4, 8])
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import pandas as pd

from ..errors import DataError
from .timeframe import median_spacing

__all__ = ["FinerBars", "map_finer_bars"]


class FinerBars(NamedTuple):
    """Bar ``i`` of a run holds finer bars ``start[i]:end[i]`` (int64; empty when equal)
    of ``open``/``high``/``low`` (float64). The kernel's ``Bars.fine_*`` fields."""

    start: np.ndarray
    end: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray

    @property
    def covered(self) -> int:
        """How many bars of the run have finer bars.

        >>> FinerBars(np.array([0, 4, 8]), np.array([4, 8, 8]), *np.zeros((3, 8))).covered   # the last has none
        2
        """
        return int(np.count_nonzero(self.end > self.start))


def _prices(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.ascontiguousarray(df[c].to_numpy(np.float64)) for c in ("open", "high", "low"))  # type: ignore


def map_finer_bars(bars: pd.DataFrame, fine: pd.DataFrame, label: str = "<finer bars>",
                   made_of: bool = False, ends: Optional[np.ndarray] = None, dated: bool = False) -> FinerBars:
    """Map the bars of ``fine`` (a finer timeframe of the same prices, UTC index as
    :func:`metaflow_nb.data.load_data` returns) onto the bars of ``bars``.

    A bar keeps its finer bars only when they show its whole path: the first starts at the
    bar's start and opens at its open, none is missing between the first and the last (no two
    further apart than the finer bars' median spacing), and together they reach its high and
    low. Finer bars missing part of a bar
    (a gappy file) cannot say which level came first, so that bar is left without them
    (the pessimistic rule decides it). ``made_of``: ``bars`` were resampled from ``fine``
    (``intrabar: source``), complete by construction. ``ends``: when each bar ends (ns,
    exclusive), for bars resampled to bins of unequal length (a DST change's two-hour hour,
    a 31-day month), which their spacing would cut short; else each bar ends at the next
    one's start or its own start plus the bars' spacing, whichever comes first. ``dated``:
    ``bars`` are a file's dates, which say no time of day to start at: a date's first finer
    bar starts it (a stock's session opens at 09:30), opening at its open.

    :class:`~metaflow_nb.errors.DataError` naming ``label`` when ``fine`` is not finer
    than ``bars``, covers none of them, or a finer bar's high or low lies outside its bar's.

    >>> from metaflow_nb.data.timeframe import resample
    >>> idx = pd.date_range("2024-01-02", periods=8, freq="15min")
    >>> bars = pd.DataFrame({"open": np.arange(8.0), "high": np.arange(8.0) + 1, "low": np.arange(8.0) - 1,
    ...                      "close": np.arange(8.0) + 0.5, "volume": 1.0}, index=idx)
    >>> fine = map_finer_bars(resample(bars, "1h").frame, bars, made_of=True)
    >>> fine.start.tolist(), fine.end.tolist()   # each hour holds its four 15-minute bars
    ([0, 4], [4, 8])
    """
    base_ns = np.asarray(bars.index.asi8, dtype=np.int64)
    fine_ns = np.asarray(fine.index.asi8, dtype=np.int64)
    n = base_ns.shape[0]
    step, fine_step = median_spacing(base_ns), median_spacing(fine_ns)
    if step is None or fine_step is None:
        step = 0
    elif fine_step >= step:
        raise DataError(f"{label}: intrabar bars are {fine_step // 60_000_000_000} minutes apart, the run's "
                        f"bars {step // 60_000_000_000}: expected finer bars than the run's")
    if ends is None:
        ends = base_ns + step
        if n > 1:
            ends[:-1] = np.minimum(ends[:-1], base_ns[1:])
    start = np.searchsorted(fine_ns, base_ns, side="left").astype(np.int64)
    end = np.searchsorted(fine_ns, ends, side="left").astype(np.int64)
    fb = FinerBars(start, end, *_prices(fine))
    has = end > start
    if n and not has.any():
        raise DataError(f"{label}: no intrabar bar falls inside the run's bars "
                        f"({bars.index[0]} .. {bars.index[-1]}): expected the same period at a finer timeframe")
    whole = _check_inside(bars, fb, has, label)
    if not made_of and whole is not None:
        rows, complete = whole
        if not dated:
            # and the first finer bar starts with its bar: one opening later at the bar's open
            # price may follow a move nobody saw (the stop hit and came back; hunt38 F1). A
            # date has no start time: none of a session opening after midnight did (hunt102 F1)
            complete &= fine_ns[start[rows]] == base_ns[rows]
        if fine_step:
            # and no finer bar is missing between its first and its last: the hole may have
            # touched a level first (hunt111 F1: without 02:15's dip to the stop, 02:30's
            # rally took the target). One missing at the end cannot: the high and low came before
            holes = np.flatnonzero(np.diff(fine_ns) > fine_step)
            complete &= np.searchsorted(holes, end[rows] - 1) == np.searchsorted(holes, start[rows])
        partial = rows[~complete]
        end[partial] = start[partial]
    return fb


#: float32's relative step (2**-23): the tolerance of :func:`_check_inside`
_FLOAT32_STEP = 2.0 ** -23


def _check_inside(bars: pd.DataFrame, fb: FinerBars, has: np.ndarray,
                  label: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Refuse finer bars reaching beyond their bar's high or low (other prices, another
    clock); return the bars that have finer bars and whether those show the bar's whole
    path (open, high and low reached), or None when no bar has any."""
    rows = np.flatnonzero(has)
    if rows.size == 0:
        return None
    starts = fb.start[rows]
    # reduceat over the concatenated runs of finer bars: one max/min per covered bar
    take = np.concatenate([np.arange(s, e) for s, e in zip(fb.start[rows], fb.end[rows])])
    offsets = np.r_[0, np.cumsum(fb.end[rows] - starts)[:-1]]
    hi = np.maximum.reduceat(fb.high[take], offsets)
    lo = np.minimum.reduceat(fb.low[take], offsets)
    high = bars["high"].to_numpy(np.float64)[rows]
    low = bars["low"].to_numpy(np.float64)[rows]
    # one float32 step: bars stored as float32 (Parquet) are the same prices as their
    # float64 finer bars to within half of it; another source or clock is further off
    tol = _FLOAT32_STEP * np.abs(high)
    bad = np.flatnonzero((hi > high + tol) | (lo < low - tol))
    if bad.size:
        b = bad[0]
        k = rows[b]
        by = f"above its high by {hi[b] - high[b]:.3g}" if hi[b] > high[b] + tol[b] else \
            f"below its low by {low[b] - lo[b]:.3g}"
        raise DataError(f"{label}: at {bars.index[k]}, the intrabar bars reach {lo[b]:.10g}..{hi[b]:.10g} "
                        f"outside the bar's low..high {low[b]:.10g}..{high[b]:.10g}, {by} ({bad.size} bar{'' if bad.size == 1 else 's'} so); "
                        f"expected finer bars of the same prices on the same clock")
    opens = bars["open"].to_numpy(np.float64)[rows]
    complete = (hi >= high - tol) & (lo <= low + tol) & (np.abs(fb.open[starts] - opens) <= tol)
    return rows, complete
