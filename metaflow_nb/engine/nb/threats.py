"""Kernels of the threat workers: rolling percentiles, volatility spikes, regime masks.

Arrays in, arrays out; every output ``i`` reads inputs ``0..i`` only (causal). Masks are
int8 bitmasks: bit 0 (1) blocks longs, bit 1 (2) blocks shorts, 3 blocks both.
"""
from __future__ import annotations

import numpy as np
from numba import njit

BLOCK_LONG = 1
BLOCK_SHORT = 2
BLOCK_BOTH = 3


@njit(cache=True)
def _lerp(a, b, t):
    """``a + (b - a) * t`` computed the way NumPy's ``percentile`` (linear) computes it."""
    d = b - a
    if t >= 0.5:
        return b - d * (1.0 - t)
    return a + d * t


@njit(cache=True)
def rolling_percentile(x, window, q):
    """Percentile ``q`` (0..100, linear interpolation as ``np.percentile``) of the last
    ``window`` values ``x[i-window+1 .. i]``, NaN until the window holds ``window`` finite
    values (a NaN inside the window makes the bar NaN as well).

    A sorted copy of the window is kept and updated by one binary-search insertion and one
    deletion per bar: ``O(n * window)`` memory moves in the worst case, no sorting.
    """
    n = x.shape[0]
    out = np.full(n, np.nan)
    if window < 1:
        return out
    buf = np.empty(window)
    cnt = 0          # finite values currently in buf (sorted ascending)
    nan_in = 0       # NaNs inside the current window
    rank = q / 100.0 * (window - 1)
    lo = int(np.floor(rank))
    if lo > window - 1:
        lo = window - 1
    hi = lo + 1 if lo + 1 < window else window - 1
    frac = rank - lo
    for i in range(n):
        # value leaving the window
        if i >= window:
            old = x[i - window]
            if np.isnan(old):
                nan_in -= 1
            else:
                # binary search for old, delete it
                a = 0
                b = cnt
                while a < b:
                    mid = (a + b) >> 1
                    if buf[mid] < old:
                        a = mid + 1
                    else:
                        b = mid
                for k in range(a, cnt - 1):
                    buf[k] = buf[k + 1]
                cnt -= 1
        v = x[i]
        if np.isnan(v):
            nan_in += 1
        else:
            a = 0
            b = cnt
            while a < b:
                mid = (a + b) >> 1
                if buf[mid] <= v:
                    a = mid + 1
                else:
                    b = mid
            for k in range(cnt, a, -1):
                buf[k] = buf[k - 1]
            buf[a] = v
            cnt += 1
        if cnt == window and nan_in == 0:
            out[i] = _lerp(buf[lo], buf[hi], frac)
    return out


@njit(cache=True)
def spike_mask(x, threshold):
    """3 where ``x[i] > threshold[i]`` (both finite), else 0."""
    n = x.shape[0]
    out = np.zeros(n, dtype=np.int8)
    for i in range(n):
        if x[i] > threshold[i]:  # False when either is NaN
            out[i] = BLOCK_BOTH
    return out


@njit(cache=True)
def trend_against_mask(adx, ema, adx_threshold, slope_bars):
    """Strong trend against the setup: with ``adx[i] >= adx_threshold``, a falling EMA
    (``ema[i] < ema[i - slope_bars]``) blocks longs (1), a rising one blocks shorts (2).
    NaN inputs (warm-up) and bars ``i < slope_bars`` block nothing."""
    n = adx.shape[0]
    out = np.zeros(n, dtype=np.int8)
    for i in range(slope_bars, n):
        a = adx[i]
        if not a >= adx_threshold:  # also False for NaN
            continue
        e1 = ema[i]
        e0 = ema[i - slope_bars]
        if e1 < e0:
            out[i] = BLOCK_LONG
        elif e1 > e0:
            out[i] = BLOCK_SHORT
    return out


@njit(cache=True)
def gap_mask(open_, close, atr, multiple, cooldown_bars):
    """Abnormal opening gaps: ``|open[i] - close[i-1]| >= multiple * atr[i-1]`` blocks both
    directions (3) on bars ``i .. i + cooldown_bars``. The gap is known at bar ``i``'s open,
    the ATR used is the previous bar's; NaN ATR (warm-up) and a zero gap are no gap."""
    n = close.shape[0]
    out = np.zeros(n, dtype=np.int8)
    until = -1
    for i in range(1, n):
        g = abs(open_[i] - close[i - 1])
        if g > 0.0 and g >= multiple * atr[i - 1]:  # False for a NaN ATR
            until = i + cooldown_bars
        if i <= until:
            out[i] = BLOCK_BOTH
    return out
