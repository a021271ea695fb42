"""The Numba "floor": the least any Numba implementation of the benchmark strategy needs.

One loop over the bars, SMA cross with an optional percent stop, no journal, no trade
records, no metrics beyond the trade count and the final equity. ``sma_cross_floor_batch``
runs many ``(fast, slow, stop)`` combinations in one ``prange`` call, the way a
hand-written batch kernel would.

The semantics are those of metaflow-nb's ``config/runs/sma_cross.yaml`` (backtesting.py's
``SmaCross`` with ``exclusive_orders=True``), so trade counts and final equity can be
compared exactly:

* a strict cross at bar ``i``'s close (``fast[i-1] < slow[i-1]`` and ``fast[i] > slow[i]``,
  or the mirror) orders a market entry in its direction for the open of ``i+1``; the open
  position, if any, is closed at that same open first (reversal);
* the order buys all the equity (or a fixed fraction of it), net of the entry commission,
  in whole units or not, sized with the expressions backtesting.py and metaflow-nb use;
* a stop of ``stop_pct`` below (above, short) the fill price is live from the fill bar on;
  a bar that touches it exits at the stop, one that gaps through it at its open;
* commission is paid on entry and exit; open positions are marked at the close and not
  closed at the end (``finalize_trades=False``); no out-of-money handling (the workloads
  are sized so equity never reaches zero).

The averages are plain running sums (not pandas' compensated algorithm): cheaper, and on
continuous synthetic prices exact ties do not occur.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

FULL_EQUITY = 1.0 - 2.220446049250313e-16


@njit(cache=True, nogil=True)
def sma_cross_floor(open_, high, low, close, fast, slow, stop_pct, cash0, commission, whole_units, fraction=1.0):
    """``(closed_trades, final_equity)`` of one SMA-cross run (``stop_pct`` <= 0: no stop;
    ``fraction`` < 1: that fraction of equity per trade, else all in)."""
    n = close.shape[0]
    if n <= slow:
        return 0, cash0
    cash = cash0
    pos = 0.0            # signed units held
    entry = 0.0
    stop = np.nan
    trades = 0
    pending = 0          # direction of the market order for this bar's open, 0 = none
    use_stop = stop_pct > 0.0
    inv_f = 1.0 / fast
    inv_s = 1.0 / slow
    # warm-up: the first complete averages, at bar slow - 1 (no cross can be seen before bar slow)
    s_fast = 0.0
    s_slow = 0.0
    for i in range(slow):
        s_slow += close[i]
        if i >= slow - fast:
            s_fast += close[i]
    prev_f = s_fast * inv_f
    prev_s = s_slow * inv_s
    for i in range(slow, n):
        o = open_[i]
        if pending != 0:
            d = float(pending)
            if pos != 0.0:
                # exclusive orders: the new setup closes the open position at this open
                cash += pos * (o - entry) - abs(pos) * o * commission
                trades += 1
                pos = 0.0
            adj = o + (FULL_EQUITY * o * commission) / FULL_EQUITY
            if fraction < 1.0:
                size = min(cash * fraction / adj, cash * FULL_EQUITY / adj)
                if whole_units:
                    size = math.floor(size)
            elif whole_units:
                size = (cash * FULL_EQUITY) // adj
            else:
                size = cash * FULL_EQUITY / adj
            if size > 0.0:
                pos = d * size
                entry = o
                cash -= size * o * commission
                if use_stop:
                    stop = o * (1.0 - d * stop_pct)
                    # live on the fill bar: a market fill at the open, then the bar's range
                    if (d > 0.0 and low[i] <= stop) or (d < 0.0 and high[i] >= stop):
                        cash += pos * (stop - entry) - size * stop * commission
                        trades += 1
                        pos = 0.0
            pending = 0
        elif use_stop and pos != 0.0:
            if pos > 0.0 and low[i] <= stop:
                px = min(o, stop)
                cash += pos * (px - entry) - pos * px * commission
                trades += 1
                pos = 0.0
            elif pos < 0.0 and high[i] >= stop:
                px = max(o, stop)
                cash += pos * (px - entry) + pos * px * commission
                trades += 1
                pos = 0.0
        c = close[i]
        s_fast += c - close[i - fast]
        s_slow += c - close[i - slow]
        f = s_fast * inv_f
        s = s_slow * inv_s
        # a strict cross at this close orders an entry for the next open (the last bar's is moot)
        if prev_f < prev_s:
            if f > s:
                pending = 1
        elif prev_f > prev_s:
            if f < s:
                pending = -1
        prev_f = f
        prev_s = s
    # marked at the last close, open positions are not closed (finalize_trades=False)
    eq = cash + pos * (close[n - 1] - entry) if pos != 0.0 else cash
    return trades, eq


@njit(cache=True, parallel=True)
def sma_cross_floor_batch(open_, high, low, close, fasts, slows, stops, cash0, commission, whole_units,
                          fraction=1.0):
    """Trade counts and final equities of every ``(fasts[k], slows[k], stops[k])``."""
    m = fasts.shape[0]
    n_trades = np.empty(m, dtype=np.int64)
    final = np.empty(m)
    for k in prange(m):
        t, e = sma_cross_floor(open_, high, low, close, fasts[k], slows[k], stops[k], cash0, commission,
                               whole_units, fraction)
        n_trades[k] = t
        final[k] = e
    return n_trades, final


def warm_up() -> None:
    """Compile (or load from the cache) both kernels on a tiny input."""
    x = np.linspace(100.0, 101.0, 64)
    sma_cross_floor(x, x, x, x, 2, 5, 0.0, 1e4, 0.001, True)
    sma_cross_floor_batch(x, x, x, x, np.array([2]), np.array([5]), np.array([0.02]), 1e4, 0.001, True)


def stop_fraction(stop_loss_pct: float | None) -> float:
    """The floor's ``stop_pct`` for a ``percent_stops.stop_loss_pct`` (None or NaN: no stop)."""
    if stop_loss_pct is None or (isinstance(stop_loss_pct, float) and math.isnan(stop_loss_pct)):
        return 0.0
    return float(stop_loss_pct) / 100.0
