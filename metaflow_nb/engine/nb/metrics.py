"""Metrics of one run from its raw arrays; the single implementation both the general
path and the batch sweep kernel use, so they agree to the last bit."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..codes import EV_OPPORTUNITY_DETECTED, EV_OPPORTUNITY_REJECTED
from ..records import (
    ACC_DAYS, ACC_DETECTED, ACC_DUR, ACC_EXPOSED, ACC_FINAL, ACC_GROSS_LOSS, ACC_GROSS_WIN, ACC_MAX_DD, ACC_REJECTED,
    ACC_RET, ACC_WINS, N_ACC,
)

# order of the metric vector; names in metaflow_nb.engine.metrics.METRIC_NAMES
N_METRICS = 17


@njit(cache=True)
def daily_returns(equity, first, day_end, cash):
    """Returns of the equity at each calendar day's last bar (from bar ``first``), the first
    day against ``cash``; non-finite returns (after ruin) count as 0."""
    return returns_in_place(_day_end_equities(equity, first, day_end), cash)


@njit(cache=True)
def _day_end_equities(equity, first, day_end):
    """The equity at each day-closing bar from bar ``first`` on (a new array)."""
    n = equity.shape[0]
    nd = 0
    for i in range(first, n):
        if day_end[i]:
            nd += 1
    out = np.empty(nd)
    k = 0
    for i in range(first, n):
        if day_end[i]:
            out[k] = equity[i]
            k += 1
    return out


@njit(cache=True)
def returns_in_place(day_eq, cash):
    """Day-end equities made daily returns in place (the first day against ``cash``;
    non-finite returns, after ruin, count as 0); returns ``day_eq``."""
    return _returns_and_sum(day_eq, cash)[0]


@njit(cache=True)
def _returns_and_sum(day_eq, cash):
    """:func:`returns_in_place` and the sum of the returns, added in day order (the sum
    the mean is made of: one pass over the days instead of two)."""
    prev = cash
    total = 0.0
    for j in range(day_eq.shape[0]):
        e = day_eq[j]
        v = _day_return(e, prev)
        day_eq[j] = v
        total += v
        prev = e
    return day_eq, total


@njit(cache=True, inline="always")
def _day_return(e, prev):
    """A day's return from the equity before it; 0 where it is not finite (after ruin)."""
    v = e / prev - 1.0 if prev != 0.0 else 0.0
    return v if math.isfinite(v) else 0.0


@njit(cache=True, inline="always")
def _spread(x, mean, ss, dn):
    """Add one daily return ``x`` to the sums of squared deviations from ``mean`` and of
    squared negative returns (branch-free: a return >= 0 adds +0.0, which leaves the sum,
    >= 0, as it is)."""
    neg = min(x, 0.0)
    return ss + (x - mean) ** 2, dn + neg * neg


@njit(cache=True, inline="always")
def _fold_drawdown(eq, peak, trough, mdd):
    """Fold one equity into ``(peak, lowest equity since the peak, max drawdown so far)``.

    Within one peak ``(peak - e) / peak`` is largest at the lowest ``e`` (rounding is
    monotone), so dividing once per new peak (and once at the end) gives the per-bar
    maximum of :func:`run_metrics` bit for bit, without a division per bar.
    """
    if eq > peak:
        dd = (peak - trough) / peak
        if dd > mdd:
            mdd = dd
        return eq, eq, mdd
    if eq < trough:
        trough = eq
    return peak, trough, mdd


@njit(cache=True)
def run_metrics(records, first, day_end, cash, ppy, years):
    """Metric vector of a run (:class:`~metaflow_nb.engine.records.RunRecords`) measured
    from bar ``first`` (see the README for formulas); ``day_end[i]`` marks the last bar of
    a calendar day."""
    equity, trades, journal = records.equity, records.trades, records.journal
    n_trades = trades.shape[0]
    det = 0
    rej = 0
    for j in range(journal.shape[0]):
        if journal[j].event == EV_OPPORTUNITY_DETECTED:
            det += 1
        elif journal[j].event == EV_OPPORTUNITY_REJECTED:
            rej += 1
    acc = np.zeros(N_ACC)
    fold_trades(acc, trades, np.zeros(0, dtype=np.int64), n_trades)
    acc[ACC_DETECTED] = det
    acc[ACC_REJECTED] = rej
    r, total = fold_equity(acc, equity, records.position, first, day_end, cash)
    return _assemble(acc, r, total, equity.shape[0] - first, n_trades, cash, ppy, years)


@njit(cache=True)
def fold_equity(acc, equity, position, first, day_end, cash):
    """What the metrics read of a run's equity and position from bar ``first`` on: its
    drawdown, exposure and final equity into ``acc`` (``records.ACC_*``); returns its
    daily returns and their sum."""
    n = equity.shape[0]
    final = equity[n - 1] if n > first else cash
    r, total = _returns_and_sum(_day_end_equities(equity, first, day_end), cash)
    exposed = 0
    for i in range(first, n):
        if position[i] != 0.0:
            exposed += 1
    acc[ACC_MAX_DD] = max_drawdown(equity, first, cash)
    acc[ACC_EXPOSED] = exposed
    acc[ACC_FINAL] = final
    return r, total


@njit(cache=True)
def max_drawdown(equity, first, cash):
    """The largest fall from a running peak of ``equity[first:]`` (the starting ``cash``
    is the first peak), as a fraction of that peak, folded as the streaming loop folds it:
    one division per new peak instead of one per bar."""
    peak = cash
    trough = cash
    mdd = 0.0
    for i in range(first, equity.shape[0]):
        peak, trough, mdd = _fold_drawdown(equity[i], peak, trough, mdd)
    dd = (peak - trough) / peak
    return dd if dd > mdd else mdd


@njit(cache=True)
def fold_trades(acc, trades, order, n):
    """Set the trade sums of ``acc`` (``records.ACC_WINS`` .. ``ACC_DUR``) to those of ``n``
    closed trades, added up in the order ``trades[order[j]]`` (``order`` empty:
    ``trades[j]``): the one place :func:`run_metrics` and the portfolio metrics
    (:func:`.portfolio.portfolio_metrics`, whose trades are in entry order) spell them."""
    wins = 0
    gw = 0.0
    gl = 0.0
    ret = 0.0
    dur = 0.0
    for j in range(n):
        tr = trades[order[j]] if order.shape[0] > 0 else trades[j]
        pnl = tr.pnl
        if pnl > 0:
            wins += 1
            gw += pnl
        elif pnl < 0:
            gl -= pnl
        ret += pnl / (tr.entry_price * tr.size) * 100.0
        dur += float(tr.exit_bar) - float(tr.entry_bar)
    acc[ACC_WINS] = wins
    acc[ACC_GROSS_WIN] = gw
    acc[ACC_GROSS_LOSS] = gl
    acc[ACC_RET] = ret
    acc[ACC_DUR] = dur


@njit(cache=True)
def stream_metrics(acc, day_eq, n_trades, n_bars, cash, ppy, years):
    """Metric vector of a metrics-only run (:func:`.simulate.simulate_metrics`): the same
    numbers :func:`run_metrics` derives from the kept arrays, to the last bit. Turns the
    run's day-end equities ``day_eq`` into its daily returns in place on the way."""
    r, total = _returns_and_sum(day_eq[:int(acc[ACC_DAYS])], cash)
    return _assemble(acc, r, total, n_bars, n_trades, cash, ppy, years)


@njit(cache=True)
def stream_metrics_quad(accs, r0, r1, r2, r3, n_trades, n_bars, cash, ppy, years):
    """:func:`stream_metrics` of four metrics-only runs at once (rows of ``accs`` and
    ``n_trades``, day-end equities ``r0`` .. ``r3``), the same numbers to the last bit.

    Each run's sums are still added in day order, but the four runs' sums advance side by
    side, so the processor overlaps them instead of waiting on one sum at a time, and the
    returns are divided in a loop of their own, which the compiler vectorises. On daily
    bars (a day a bar) this halves the cost of the daily statistics.
    """
    out = np.empty((4, N_METRICS))
    nd = int(accs[0, ACC_DAYS])
    if nd < 2 or nd != int(accs[1, ACC_DAYS]) or nd != int(accs[2, ACC_DAYS]) or nd != int(accs[3, ACC_DAYS]):
        out[0] = stream_metrics(accs[0], r0, n_trades[0], n_bars, cash, ppy, years)
        out[1] = stream_metrics(accs[1], r1, n_trades[1], n_bars, cash, ppy, years)
        out[2] = stream_metrics(accs[2], r2, n_trades[2], n_bars, cash, ppy, years)
        out[3] = stream_metrics(accs[3], r3, n_trades[3], n_bars, cash, ppy, years)
        return out
    x0, x1, x2, x3 = r0[:nd], r1[:nd], r2[:nd], r3[:nd]
    _divide_returns(x0, cash)
    _divide_returns(x1, cash)
    _divide_returns(x2, cash)
    _divide_returns(x3, cash)
    t0 = t1 = t2 = t3 = 0.0
    for j in range(nd):
        t0 += x0[j]
        t1 += x1[j]
        t2 += x2[j]
        t3 += x3[j]
    m0, m1, m2, m3 = t0 / nd, t1 / nd, t2 / nd, t3 / nd
    s0 = s1 = s2 = s3 = 0.0
    d0 = d1 = d2 = d3 = 0.0
    for j in range(nd):
        s0, d0 = _spread(x0[j], m0, s0, d0)
        s1, d1 = _spread(x1[j], m1, s1, d1)
        s2, d2 = _spread(x2[j], m2, s2, d2)
        s3, d3 = _spread(x3[j], m3, s3, d3)
    out[0] = _assemble_moments(accs[0], nd, t0, s0, d0, n_bars, n_trades[0], cash, ppy, years)
    out[1] = _assemble_moments(accs[1], nd, t1, s1, d1, n_bars, n_trades[1], cash, ppy, years)
    out[2] = _assemble_moments(accs[2], nd, t2, s2, d2, n_bars, n_trades[2], cash, ppy, years)
    out[3] = _assemble_moments(accs[3], nd, t3, s3, d3, n_bars, n_trades[3], cash, ppy, years)
    return out


@njit(cache=True)
def _divide_returns(day_eq, cash):
    """:func:`returns_in_place` without the sum: from the last day back, so each day still
    reads the equity before it, in a loop the compiler vectorises."""
    n = day_eq.shape[0]
    for j in range(n - 1, 0, -1):
        day_eq[j] = _day_return(day_eq[j], day_eq[j - 1])
    if n > 0:
        day_eq[0] = _day_return(day_eq[0], cash)


@njit(cache=True)
def _assemble(acc, r, total, n_bars, n_trades, cash, ppy, years):
    """The metric vector from a run's accumulators (``records.ACC_*``: drawdown, exposure,
    trade sums, event counts, final equity), its daily returns ``r`` and their sum."""
    nd = r.shape[0]
    ss = 0.0
    dn = 0.0
    if nd >= 2:
        mean = total / nd
        for j in range(nd):
            ss, dn = _spread(r[j], mean, ss, dn)
    return _assemble_moments(acc, nd, total, ss, dn, n_bars, n_trades, cash, ppy, years)


@njit(cache=True)
def _assemble_moments(acc, nd, total, ss, dn, n_bars, n_trades, cash, ppy, years):
    """:func:`_assemble` from the sums over the ``nd`` daily returns: ``total`` of the
    returns, ``ss`` of their squared deviations from the mean, ``dn`` of the squared
    negative ones."""
    final, mdd, exposed = acc[ACC_FINAL], acc[ACC_MAX_DD], acc[ACC_EXPOSED]
    wins, gw, gl, ret, dur = acc[ACC_WINS], acc[ACC_GROSS_WIN], acc[ACC_GROSS_LOSS], acc[ACC_RET], acc[ACC_DUR]
    det, rej = acc[ACC_DETECTED], acc[ACC_REJECTED]
    out = np.full(N_METRICS, np.nan)
    growth = final / cash
    out[0] = (growth - 1.0) * 100.0
    if years > 0:
        out[1] = (growth ** (1.0 / years) - 1.0) * 100.0 if growth > 0 else -100.0

    if nd >= 2:
        mean = total / nd
        sd = math.sqrt(ss / (nd - 1))
        down = math.sqrt(dn / (nd - 1))
        root = math.sqrt(ppy)
        if sd <= 1e-10 * abs(mean):
            # returns alike but for rounding (the same growth every day): their spread is
            # noise (~1e-16), the ratio an absurd 1e14; undefined, as metaflow_nb.stats says
            sd = 0.0
        if sd > 0:
            out[2] = mean / sd * root
        if down > 0:
            out[3] = mean / down * root
        out[6] = sd * root * 100.0

    out[5] = mdd * 100.0
    if mdd > 0 and not math.isnan(out[1]):
        out[4] = out[1] / out[5]

    if n_trades > 0:
        out[7] = wins / n_trades * 100.0
        if gl > 0:
            out[8] = gw / gl
        elif gw > 0:
            out[8] = np.inf
        out[9] = ret / n_trades
        out[11] = dur / n_trades
    out[10] = n_trades
    out[12] = exposed / n_bars * 100.0 if n_bars > 0 else 0.0
    out[13] = final
    out[14] = det
    out[15] = rej
    out[16] = rej / det * 100.0 if det > 0 else np.nan  # no setup: no rate (README: undefined is NaN)
    return out
