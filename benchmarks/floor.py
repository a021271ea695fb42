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
def sma_cross_floor(open_, high, low, close, fast, slow, stop_pct, cash0, commission, whole_units, fraction=1.0,
                    day_end=None, day_eq=None, bar_eq=None):
    """``(closed_trades, final_equity)`` of one SMA-cross run (``stop_pct`` <= 0: no stop;
    ``fraction`` < 1: that fraction of equity per trade, else all in).

    With ``day_end`` (a bool per bar: the bar closes a calendar day) the equity at each
    day's close goes into ``day_eq`` (as long as there are days), what a daily Sharpe
    ratio needs (:func:`daily_sharpe`). With ``bar_eq`` (as long as the bars) the equity
    at every close goes there, what a portfolio of accounts needs. Left None, Numba prunes
    that code: the compiled loop is the plain floor's.
    """
    n = close.shape[0]
    if bar_eq is not None:
        for i in range(min(slow, n)):
            bar_eq[i] = cash0
    nd = 0
    if day_end is not None:
        # the warm-up holds no position: the equity is the cash at those closes
        for i in range(min(slow, n)):
            if day_end[i]:
                day_eq[nd] = cash0
                nd += 1
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
        if day_end is not None:
            if day_end[i]:
                day_eq[nd] = cash + pos * (c - entry) if pos != 0.0 else cash
                nd += 1
        if bar_eq is not None:
            bar_eq[i] = cash + pos * (c - entry) if pos != 0.0 else cash
    # marked at the last close, open positions are not closed (finalize_trades=False)
    eq = cash + pos * (close[n - 1] - entry) if pos != 0.0 else cash
    return trades, eq


@njit(cache=True, nogil=True)
def daily_sharpe(day_eq, cash0, ppy):
    """Annualised Sharpe ratio of the day-close equities ``day_eq``: the daily returns
    (the first day against ``cash0``; a non-finite return counts as 0), their mean over
    their sample standard deviation, times sqrt(``ppy``); NaN with fewer than two days or
    no variation. The least a sweep ranked by Sharpe has to compute per combination:
    one division a day (metaflow-nb's definition, README "Metrics")."""
    nd = day_eq.shape[0]
    if nd < 2:
        return np.nan
    prev = cash0
    total = 0.0
    for j in range(nd):
        e = day_eq[j]
        v = e / prev - 1.0 if prev != 0.0 else 0.0
        v = v if math.isfinite(v) else 0.0
        day_eq[j] = v
        total += v
        prev = e
    mean = total / nd
    ss = 0.0
    for j in range(nd):
        ss += (day_eq[j] - mean) ** 2
    sd = math.sqrt(ss / (nd - 1))
    return mean / sd * math.sqrt(ppy) if sd > 0.0 else np.nan


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


@njit(cache=True, parallel=True)
def sma_cross_floor_batch_daily(open_, high, low, close, fasts, slows, stops, cash0, commission, whole_units,
                                day_end, ppy, n_blocks, fraction=1.0):
    """:func:`sma_cross_floor_batch` that also gives each combination's daily Sharpe
    ratio (:func:`daily_sharpe` of its day-close equities; ``day_end`` marks the bars
    closing a day, ``ppy`` the periods per year): the floor of a sweep ranked by Sharpe.
    Combinations run in ``n_blocks`` interleaved blocks, each with one work array for
    the day-close equities (one allocation per block, not per combination)."""
    m = fasts.shape[0]
    n_days = 0
    for i in range(day_end.shape[0]):
        if day_end[i]:
            n_days += 1
    n_trades = np.empty(m, dtype=np.int64)
    final = np.empty(m)
    sharpe = np.empty(m)
    n_blocks = max(1, min(m, n_blocks))
    for b in prange(n_blocks):
        day_eq = np.empty(n_days)
        for k in range(b, m, n_blocks):
            t, e = sma_cross_floor(open_, high, low, close, fasts[k], slows[k], stops[k], cash0, commission,
                                   whole_units, fraction, day_end, day_eq)
            n_trades[k] = t
            final[k] = e
            sharpe[k] = daily_sharpe(day_eq, cash0, ppy)
    return n_trades, final, sharpe


@njit(cache=True, parallel=True)
def sma_cross_basket_floor(open_, high, low, close, start, fasts, slows, stops, cash0, commission, whole_units):
    """Independent accounts over a basket: :func:`sma_cross_floor` of every instrument x
    combination in one ``prange``, each instrument on its own bars.

    The bars of every instrument are concatenated (instrument ``s`` owns rows
    ``start[s]:start[s + 1]``); returns ``(n_trades, final)``, each (instruments x
    combinations).
    """
    n_inst = start.shape[0] - 1
    m = fasts.shape[0]
    n_trades = np.empty((n_inst, m), dtype=np.int64)
    final = np.empty((n_inst, m))
    for q in prange(n_inst * m):
        s = q // m
        k = q - s * m
        a, b = start[s], start[s + 1]
        t, e = sma_cross_floor(open_[a:b], high[a:b], low[a:b], close[a:b], fasts[k], slows[k], stops[k], cash0,
                               commission, whole_units)
        n_trades[s, k] = t
        final[s, k] = e
    return n_trades, final


@njit(cache=True, parallel=True)
def sma_cross_basket_floor_total(open_, high, low, close, start, own_at, union_day_end, fasts, slows, stops, cash0,
                                 commission, whole_units, ppy, n_blocks):
    """:func:`sma_cross_basket_floor` that also makes each combination's portfolio, what
    a sweep ranked on the portfolio has to compute: every account's equity at each of
    its closes, carried onto the union calendar (its cash before its first bar, its last
    equity where it has no bar) and added up in basket order, and the daily Sharpe ratio
    of that total (:func:`daily_sharpe`; ``union_day_end`` marks the union bars closing
    a day, ``ppy`` their periods per year). ``own_at`` (as long as the concatenated bars)
    places each instrument's bars on the union calendar. Combinations run in
    ``n_blocks`` interleaved blocks, each with one set of work arrays. Returns
    ``(n_trades, final)`` (instruments x combinations) and the portfolio Sharpe per
    combination."""
    n_inst = start.shape[0] - 1
    m = fasts.shape[0]
    n_union = union_day_end.shape[0]
    n_days = 0
    for u in range(n_union):
        if union_day_end[u]:
            n_days += 1
    longest = 0
    for s in range(n_inst):
        longest = max(longest, start[s + 1] - start[s])
    n_trades = np.empty((n_inst, m), dtype=np.int64)
    final = np.empty((n_inst, m))
    sharpe = np.empty(m)
    n_blocks = max(1, min(m, n_blocks))
    for b in prange(n_blocks):
        bar_eq = np.empty(longest)
        total = np.empty(n_union)
        day_eq = np.empty(n_days)
        for k in range(b, m, n_blocks):
            total[:] = 0.0
            for s in range(n_inst):
                a, z = start[s], start[s + 1]
                t, e = sma_cross_floor(open_[a:z], high[a:z], low[a:z], close[a:z], fasts[k], slows[k], stops[k],
                                       cash0, commission, whole_units, 1.0, None, None, bar_eq)
                n_trades[s, k] = t
                final[s, k] = e
                j = a
                cur = cash0
                for u in range(n_union):
                    if j < z and own_at[j] == u:
                        cur = bar_eq[j - a]
                        j += 1
                    total[u] += cur
            nd = 0
            for u in range(n_union):
                if union_day_end[u]:
                    day_eq[nd] = total[u]
                    nd += 1
            sharpe[k] = daily_sharpe(day_eq, cash0 * n_inst, ppy)
    return n_trades, final, sharpe


@njit(cache=True, nogil=True)
def sma_cross_portfolio_floor(open_, high, low, close, start, has, fast, slow, stop_pct, cash0, commission,
                              fraction, max_positions):
    """``(closed_trades, final_equity, entries_capped_by_cash, setups_skipped_for_max_positions)``
    of one SMA-cross run over a basket with ONE shared account, the instruments in
    lock-step on the union calendar.

    Bars as in :func:`sma_cross_basket_floor` (concatenated, ``start`` offsets);
    ``has[t, s]``: instrument ``s`` has a bar at union timestamp ``t`` (its bars, in order,
    are its ``True`` cells). The single run's rules (module docstring) per instrument, and
    at each union timestamp, in this order (metaflow-nb's ``mode: portfolio``):

    1. every instrument with a bar (basket order): an exit due at its open (the opposite
       cross of the previous close), else its stop;
    2. every instrument with a bar and an entry order: the market fill at its open, sized
       at ``fraction`` of the *portfolio's* equity (cash plus every open position marked at
       its instrument's last close; ``fraction`` >= 1: all in), fractional units, capped by
       the free cash (the equity less the open positions' ``|units| x last close``, i.e.
       cash less ``|units| x entry price`` and the open losses; no leverage; a position
       filled at this open is worth its fill price): no free cash, no entry; its stop is
       live on the fill bar;
    3. last closes are updated (an instrument without a bar keeps its last close);
    4. the crosses at this close, basket order: an opposite cross closes the open position
       at the instrument's next open, and orders the reverse entry unless
       ``max_positions`` (> 0) other instruments hold a position or an order (a position
       due to close still counts); nothing is ordered on the basket's last bar (an
       instrument's last bar before a gap or its end orders: no bar following is future data).

    Like the single floor: commission on entry and exit, no slippage, open positions
    marked at the last closes and not closed at the end, no out-of-money handling.
    """
    n_inst = start.shape[0] - 1
    n = has.shape[0]
    use_stop = stop_pct > 0.0
    inv_f = 1.0 / fast
    inv_s = 1.0 / slow
    j = np.full(n_inst, -1)              # each instrument's own bar number at t
    pos = np.zeros(n_inst)
    entry = np.zeros(n_inst)
    stop = np.full(n_inst, np.nan)
    pending = np.zeros(n_inst, dtype=np.int64)
    exit_due = np.zeros(n_inst, dtype=np.bool_)
    s_fast = np.zeros(n_inst)
    s_slow = np.zeros(n_inst)
    prev_f = np.zeros(n_inst)
    prev_s = np.zeros(n_inst)
    last_close = np.full(n_inst, np.nan)
    cash = cash0
    trades = 0
    capped = 0
    skipped = 0
    n_pending = 0                        # orders waiting (most bars have none: step 2 is skipped)
    for t in range(n):
        # 1. exits at the open
        for s in range(n_inst):
            if not has[t, s]:
                continue
            j[s] += 1
            if pos[s] == 0.0:
                exit_due[s] = False
                continue
            i = start[s] + j[s]
            o = open_[i]
            if exit_due[s]:
                exit_due[s] = False
                cash += pos[s] * (o - entry[s]) - abs(pos[s]) * o * commission
                trades += 1
                pos[s] = 0.0
            elif use_stop:
                if pos[s] > 0.0 and low[i] <= stop[s]:
                    px = min(o, stop[s])
                elif pos[s] < 0.0 and high[i] >= stop[s]:
                    px = max(o, stop[s])
                else:
                    continue
                cash += pos[s] * (px - entry[s]) - abs(pos[s]) * px * commission
                trades += 1
                pos[s] = 0.0
        # 2. entries at the open, sized on the portfolio's equity, capped by the free cash
        for s in range(n_inst if n_pending > 0 else 0):
            if not has[t, s] or pending[s] == 0 or pos[s] != 0.0:
                continue
            i = start[s] + j[s]
            o = open_[i]
            d = float(pending[s])
            pending[s] = 0
            n_pending -= 1
            eq = cash
            margin = 0.0
            moved = 0.0
            for u in range(n_inst):
                if pos[u] != 0.0:
                    x = last_close[u] - entry[u]
                    eq += pos[u] * x
                    margin += abs(pos[u]) * entry[u]
                    moved += pos[u] * x - abs(pos[u]) * x
            free = cash - (margin - moved)
            adj = o + (FULL_EQUITY * o * commission) / FULL_EQUITY
            size = eq * FULL_EQUITY / adj
            if fraction < 1.0:
                size = min(eq * fraction / adj, size)
            if free <= eq * 1e-9 or eq <= 0.0:   # spent: the rounding left is no cash (ENGINE_REVISION 4)
                size = 0.0
            elif free < eq:
                cap = free * FULL_EQUITY / adj
                if cap < size:
                    size = cap
                    capped += 1
            if size <= 0.0:
                continue
            pos[s] = d * size
            entry[s] = o
            last_close[s] = o  # worth its fill price until its first close
            cash -= size * o * commission
            if use_stop:
                stop[s] = o * (1.0 - d * stop_pct)
                if (d > 0.0 and low[i] <= stop[s]) or (d < 0.0 and high[i] >= stop[s]):
                    px = stop[s]
                    cash += pos[s] * (px - o) - size * px * commission
                    trades += 1
                    pos[s] = 0.0
        # 3. marks, 4. the crosses at the close
        for s in range(n_inst):
            if not has[t, s]:
                continue
            i = start[s] + j[s]
            c = close[i]
            last_close[s] = c
            if j[s] < slow:
                # warm-up: the first complete averages, at own bar slow - 1
                s_slow[s] += c
                if j[s] >= slow - fast:
                    s_fast[s] += c
                if j[s] == slow - 1:
                    prev_f[s] = s_fast[s] * inv_f
                    prev_s[s] = s_slow[s] * inv_s
                continue
            s_fast[s] += c - close[i - fast]
            s_slow[s] += c - close[i - slow]
            f = s_fast[s] * inv_f
            sl = s_slow[s] * inv_s
            d = 0
            if prev_f[s] < prev_s[s]:
                if f > sl:
                    d = 1
            elif prev_f[s] > prev_s[s]:
                if f < sl:
                    d = -1
            prev_f[s] = f
            prev_s[s] = sl
            if d == 0:
                continue
            if pos[s] != 0.0 and (pos[s] > 0.0) != (d > 0):
                exit_due[s] = True
            if pending[s] != 0 or t == n - 1:
                continue
            busy = 0
            for u in range(n_inst):
                if u != s and (pos[u] != 0.0 or pending[u] != 0):
                    busy += 1
            if max_positions > 0 and busy >= max_positions:
                skipped += 1
                continue
            if pos[s] != 0.0:
                exit_due[s] = True
            pending[s] = d
            n_pending += 1
    eq = cash
    for s in range(n_inst):
        if pos[s] != 0.0:
            eq += pos[s] * (last_close[s] - entry[s])
    return trades, eq, capped, skipped


@njit(cache=True, parallel=True)
def sma_cross_portfolio_floor_batch(open_, high, low, close, start, has, fasts, slows, stops, cash0, commission,
                                    fraction, max_positions):
    """:func:`sma_cross_portfolio_floor` of every ``(fasts[k], slows[k], stops[k])`` in one
    ``prange``: trade counts, final equities, entries capped by cash, setups skipped."""
    m = fasts.shape[0]
    n_trades = np.empty(m, dtype=np.int64)
    final = np.empty(m)
    capped = np.empty(m, dtype=np.int64)
    skipped = np.empty(m, dtype=np.int64)
    for k in prange(m):
        t, e, c, sk = sma_cross_portfolio_floor(open_, high, low, close, start, has, fasts[k], slows[k], stops[k],
                                                cash0, commission, fraction, max_positions)
        n_trades[k] = t
        final[k] = e
        capped[k] = c
        skipped[k] = sk
    return n_trades, final, capped, skipped


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
