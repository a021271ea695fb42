"""Vectorised indicator kernels. Arrays in, arrays out; NaN marks the warm-up.

Every kernel is causal: output ``i`` reads inputs ``0..i`` only.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _kahan_add(s, comp, v):
    """``s + v`` with Kahan compensation ``comp``: the new sum and compensation."""
    y = v - comp
    t = s + y
    return t, t - s - y


@njit(cache=True)
def sma(x, period):
    """Simple moving average; NaN for the first ``period - 1`` bars.

    Bit-for-bit the algorithm of pandas' ``rolling(period).mean()``: a running sum with
    separate Kahan compensations for values entering and leaving the window (leaving
    first), and the window's value itself when all its values are equal. Strict crosses
    of two averages on prices with few decimals hinge on exact ties, so a peer computing
    averages with pandas must see the same bits.
    """
    n = x.shape[0]
    out = np.full(n, np.nan)
    if period < 1 or n < period:
        return out
    s = 0.0
    comp_add = 0.0
    comp_rem = 0.0
    same = 0
    prev = np.nan
    for i in range(n):
        if i >= period:
            s, comp_rem = _kahan_add(s, comp_rem, -x[i - period])
        v = x[i]
        s, comp_add = _kahan_add(s, comp_add, v)
        if v == prev:
            same += 1
        else:
            same = 1
        prev = v
        if i >= period - 1:
            out[i] = prev if same >= period else s / period
    return out


@njit(cache=True)
def sma_many(x, periods):
    """``out[k] = sma(x, periods[k])`` for every k, bit for bit, in one pass over ``x``.

    One average's running sum is a chain of dependent additions (the CPU waits for each
    before the next); advancing several averages bar by bar lets it overlap their chains:
    18 averages of 100k bars in about half the time of 18 calls of :func:`sma`.
    """
    out = np.empty((periods.shape[0], x.shape[0]))
    _sma_rows(x, periods, out)
    return out


@njit(parallel=True, cache=True)
def sma_many_parallel(x, periods, parts):
    """:func:`sma_many` with the periods split into ``parts`` runs of :func:`sma_many`'s
    pass, one per thread: the same bits (each average is computed alone either way).

    >>> x = np.linspace(1.0, 2.0, 50)
    >>> p = np.array([3, 5, 8, 60])
    >>> bool(np.array_equal(sma_many_parallel(x, p, 2), sma_many(x, p), equal_nan=True))
    True
    """
    m = periods.shape[0]
    out = np.empty((m, x.shape[0]))
    for q in prange(parts):
        lo = q * m // parts
        hi = (q + 1) * m // parts
        if hi > lo:
            _sma_rows(x, periods[lo:hi], out[lo:hi])
    return out


@njit(cache=True)
def _sma_rows(x, periods, out):
    """The pass of :func:`sma_many`, into ``out`` (one row per period)."""
    n = x.shape[0]
    m = periods.shape[0]
    out[:] = np.nan
    s = np.zeros(m)
    comp_add = np.zeros(m)
    comp_rem = np.zeros(m)
    same = 0
    prev = np.nan
    for i in range(n):
        v = x[i]
        if v == prev:
            same += 1
        else:
            same = 1
        prev = v
        for k in range(m):
            p = periods[k]
            if p < 1 or n < p:
                continue  # all NaN, as sma gives
            sk = s[k]
            if i >= p:
                sk, comp_rem[k] = _kahan_add(sk, comp_rem[k], -x[i - p])
            sk, comp_add[k] = _kahan_add(sk, comp_add[k], v)
            s[k] = sk
            if i >= p - 1:
                out[k, i] = v if same >= p else sk / p


@njit(cache=True)
def ema(x, period):
    """Exponential moving average with alpha = 2 / (period + 1), seeded with the SMA of the
    first ``period`` values; NaN before that."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    if period < 1 or n < period:
        return out
    alpha = 2.0 / (period + 1.0)
    s = 0.0
    for i in range(period):
        s += x[i]
    v = s / period
    out[period - 1] = v
    for i in range(period, n):
        v = alpha * x[i] + (1.0 - alpha) * v
        out[i] = v
    return out


@njit(cache=True)
def true_range(high, low, close):
    """True range; the first bar has no previous close and uses high - low."""
    n = close.shape[0]
    out = np.empty(n)
    if n == 0:
        return out
    out[0] = high[0] - low[0]
    for i in range(1, n):
        a = high[i] - low[i]
        b = abs(high[i] - close[i - 1])
        c = abs(low[i] - close[i - 1])
        out[i] = max(a, max(b, c))
    return out


@njit(cache=True)
def wilder(x, period):
    """Wilder's smoothing (RMA): seeded with the mean of the first ``period`` values of
    ``x``, then ``v = v + (x - v) / period``; NaN before the seed."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    if period < 1 or n < period:
        return out
    s = 0.0
    for i in range(period):
        s += x[i]
    v = s / period
    out[period - 1] = v
    for i in range(period, n):
        v = v + (x[i] - v) / period
        out[i] = v
    return out


@njit(cache=True)
def atr(high, low, close, period):
    """Average true range, Wilder-smoothed."""
    return wilder(true_range(high, low, close), period)


@njit(cache=True)
def crosses(fast, slow):
    """+1 where ``fast`` crosses above ``slow`` at bar i, -1 where below, else 0.

    Strict on both sides: ``fast[i-1] < slow[i-1] and fast[i] > slow[i]``; equal
    averages are no signal, and a NaN on either bar is no signal.
    """
    n = fast.shape[0]
    out = np.empty(n, dtype=np.int8)
    if n == 0:
        return out
    out[0] = 0
    for i in range(1, n):
        # without branches the loop vectorises: ~1.8x faster on 100k bars, where crosses
        # are rare and the branches cost more than computing both sides
        up = (fast[i - 1] < slow[i - 1]) & (fast[i] > slow[i])
        down = (fast[i - 1] > slow[i - 1]) & (fast[i] < slow[i])
        out[i] = np.int8(up) - np.int8(down)
    return out
