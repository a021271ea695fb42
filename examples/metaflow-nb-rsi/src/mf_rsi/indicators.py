"""Causal indicator kernels of the example: Wilder's RSI and level crosses.

Arrays in, arrays out, NaN for the warm-up. Each output ``i`` reads inputs ``0..i``
only, and is computed with the same operations whether or not later bars exist, so a
prefix replay (``mf.check_causality``) gives the same bits.
"""
from __future__ import annotations

import numpy as np

import metaflow_nb  # noqa: F401  before numba compiles anything: it points Numba's disk cache at its own folder
from numba import njit  # noqa: E402


@njit(cache=True)
def _rsi_value(avg_gain: float, avg_loss: float) -> float:
    if avg_loss == 0.0:
        # no losses in the window: 100 when it went up, 50 when it did not move at all
        return 100.0 if avg_gain > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


@njit(cache=True)
def _wilder_rsi(close: np.ndarray, period: int) -> np.ndarray:
    n = close.shape[0]
    out = np.full(n, np.nan)
    if period < 1 or n <= period:
        return out
    gain = 0.0
    loss = 0.0
    for i in range(1, period + 1):
        d = close[i] - close[i - 1]
        if d > 0.0:
            gain += d
        elif d < 0.0:
            loss -= d
    avg_gain = gain / period
    avg_loss = loss / period
    out[period] = _rsi_value(avg_gain, avg_loss)
    for i in range(period + 1, n):
        d = close[i] - close[i - 1]
        g = d if d > 0.0 else 0.0
        lo = -d if d < 0.0 else 0.0
        # Wilder's smoothing as he wrote it: (previous * (period - 1) + current) / period
        avg_gain = (avg_gain * (period - 1) + g) / period
        avg_loss = (avg_loss * (period - 1) + lo) / period
        out[i] = _rsi_value(avg_gain, avg_loss)
    return out


def wilder_rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder's Relative Strength Index of ``close`` (0..100), NaN for bars ``0..period-1``.

    With ``d[i] = close[i] - close[i-1]``, gains ``max(d, 0)`` and losses ``max(-d, 0)``:
    the first averages (known at bar ``period``) are the plain means of the gains and
    losses of bars ``1..period``; then ``avg = (avg * (period - 1) + x) / period``.
    ``RSI = 100 - 100 / (1 + avg_gain / avg_loss)``; 100 when ``avg_loss`` is 0 (50 when
    both are 0: a flat window).

    >>> wilder_rsi(np.array([10.0, 11.0, 10.0, 12.0]), period=2).round(4).tolist()
    [nan, nan, 50.0, 83.3333]
    """
    return _wilder_rsi(np.ascontiguousarray(close, dtype=np.float64), int(period))


@njit(cache=True)
def _level_crosses(x: np.ndarray, up_level: float, down_level: float) -> np.ndarray:
    n = x.shape[0]
    out = np.zeros(n, dtype=np.int8)
    for i in range(1, n):
        a = x[i - 1]
        b = x[i]
        if a < up_level <= b:
            out[i] = 1
        elif a > down_level >= b:
            out[i] = -1
    return out


def level_crosses(x: np.ndarray, up_level: float, down_level: float) -> np.ndarray:
    """+1 on bars where ``x`` crosses up through ``up_level`` (``x[i-1] < up_level <= x[i]``),
    -1 where it crosses down through ``down_level`` (``x[i-1] > down_level >= x[i]``), else
    0 (int8). A NaN on either bar is no cross (every comparison with NaN is false).

    >>> level_crosses(np.array([np.nan, 25.0, 31.0, 75.0, 69.0]), 30.0, 70.0).tolist()
    [0, 0, 1, 0, -1]
    """
    return _level_crosses(np.ascontiguousarray(x, dtype=np.float64), float(up_level), float(down_level))
