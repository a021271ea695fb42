"""The batch sweep over a basket in ``mode: independent``: every (instrument, combination)
run of a wave in one compiled ``prange`` call, and each combination's portfolio metrics.

An independent portfolio is N single runs; its metrics are the single run's metric code
on the accounts combined on the union calendar (``services.portfolio.PortfolioResult``).
The combining lives here, in compiled functions that the single path calls too, so the
sweep's rows equal ``PortfolioResult.metrics`` by construction:

- :func:`fold_account` adds one account's equity, carried onto the union calendar (its
  last equity where it has no bar, its cash before its first), to the running total, in
  instrument order, and marks the union bars where it holds a position;
- :func:`combine_accounts` sorts every instrument's trades (placed on the union calendar)
  by entry bar, stably, so ties keep instrument order (the order of the trades table),
  and hands total, exposure, trades and the summed event counts to
  :func:`.metrics.run_metrics`.

:func:`sweep_accounts` runs combination ``c``'s instruments one after another in one
``prange`` iteration (the combination is the parallel axis: the portfolio's total needs
all of a combination's accounts, summed in instrument order), each with the single run's
loop (:func:`.simulate.simulate`) and metrics (:func:`.metrics.run_metrics`), and folds
each account as soon as it is run: memory holds one account's arrays and one union-long
total per block, not every account of every combination.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..codes import EV_OPPORTUNITY_DETECTED, EV_OPPORTUNITY_REJECTED
from ..records import JOURNAL_DTYPE, TRADE_DTYPE, Account, Bars, Rules, RunRecords, Threats
from .batch import combo_levels
from .metrics import N_METRICS, daily_returns, run_metrics
from .simulate import simulate


class Accounts(NamedTuple):
    """The instruments of a basket, each on its own bars, concatenated: instrument ``s``
    owns rows ``bar_off[s]:bar_off[s + 1]`` of the prices (read-only float64), of
    ``day_end`` (its own calendar's day ends) and of ``own_at`` (each own bar's place on
    the union calendar). Per instrument: ``periods_per_year``, ``years`` (its calendar),
    ``commission``, ``slippage``, ``leverage``, ``finalize``; ``cash`` is every account's.
    ``no_ints``/``no_floats`` are the empty read-only arrays of :class:`Bars`' finer bars.
    """

    bar_off: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    day_end: np.ndarray
    own_at: np.ndarray
    periods_per_year: np.ndarray
    years: np.ndarray
    cash: float
    commission: np.ndarray
    slippage: np.ndarray
    leverage: np.ndarray
    finalize: np.ndarray
    no_ints: np.ndarray
    no_floats: np.ndarray


class AccountGroups(NamedTuple):
    """Feature groups of a basket sweep, one per (instrument, group): group ``g`` is
    instrument ``inst[g]``'s, owns setups ``opp_off[g]:opp_off[g + 1]`` of ``bar`` and
    ``direction`` and its threat masks ``mask[mask_off[g]:mask_off[g + 1]]`` (threats x
    that instrument's bars, flattened); ``reason`` is per threat."""

    inst: np.ndarray
    opp_off: np.ndarray
    bar: np.ndarray
    direction: np.ndarray
    mask_off: np.ndarray
    mask: np.ndarray
    reason: np.ndarray


class PairRules(NamedTuple):
    """The :class:`Rules` fields a sweep over combinations keeps in one record per call
    (``pack.shared_rules``), here one value per (instrument, combination) pair; the rest
    are the pair's row of :class:`~metaflow_nb.engine.records.SweepCombos`."""

    stop_mode: np.ndarray
    target_mode: np.ndarray
    reverse: np.ndarray
    allow_long: np.ndarray
    allow_short: np.ndarray
    sizer_kind: np.ndarray
    whole_units: np.ndarray
    trail_mode: np.ndarray
    partial_mode: np.ndarray


@njit(cache=True)
def fold_account(total, in_market, own_at, equity, position, cash):
    """Add one account to the portfolio on the union calendar (``total``, ``in_market``
    as long as it): its equity at each of its bars, carried to the union bars after it
    (``cash`` before its first bar), is added to ``total``; ``in_market`` becomes 1.0
    where it holds a position (carried the same way)."""
    n = own_at.shape[0]
    k = 0
    cur = cash
    held = False
    for u in range(total.shape[0]):
        if k < n and own_at[k] == u:
            cur = equity[k]
            held = position[k] != 0.0
            k += 1
        total[u] += cur
        if held:
            in_market[u] = 1.0


@njit(cache=True)
def append_trades(buf, n_buf, trades, own_at):
    """Append a run's trades to ``buf`` (``TRADE_DTYPE``, ``n_buf`` used), their bars
    placed on the union calendar (``own_at``); grows ``buf`` when full. Returns
    ``(buf, n_buf)``."""
    need = n_buf + trades.shape[0]
    if need > buf.shape[0]:
        grown = np.zeros(max(need, 2 * buf.shape[0]), dtype=buf.dtype)
        for j in range(n_buf):
            _copy_trade(grown, j, buf[j].entry_bar, buf[j].exit_bar, buf[j].entry_price, buf[j].size,
                        buf[j].pnl)
        buf = grown
    for j in range(trades.shape[0]):
        t = trades[j]
        _copy_trade(buf, n_buf + j, own_at[t.entry_bar], own_at[t.exit_bar], t.entry_price, t.size, t.pnl)
    return buf, need


@njit(cache=True, inline="always")
def _copy_trade(buf, j, entry_bar, exit_bar, entry_price, size, pnl):
    b = buf[j]
    b.entry_bar = entry_bar
    b.exit_bar = exit_bar
    b.entry_price = entry_price
    b.size = size
    b.pnl = pnl


@njit(cache=True)
def combine_accounts(total, in_market, placed, detected, rejected, day_end, cash, ppy, years):
    """The portfolio's metric vector: :func:`.metrics.run_metrics` of the total equity,
    the union bars with a position, every trade in ``placed`` (``TRADE_DTYPE``, union
    bars, instruments concatenated in basket order) sorted stably by entry bar, and the
    summed detections and rejections; ``day_end``, ``ppy`` and ``years`` are the union
    calendar's, ``cash`` the portfolio's starting equity."""
    n_t = placed.shape[0]
    keys = np.empty(n_t, dtype=np.int64)
    for j in range(n_t):
        keys[j] = placed[j].entry_bar
    order = np.argsort(keys, kind="mergesort")
    trades = np.zeros(n_t, dtype=TRADE_DTYPE)
    for j in range(n_t):
        t = placed[order[j]]
        _copy_trade(trades, j, t.entry_bar, t.exit_bar, t.entry_price, t.size, t.pnl)
    journal = np.zeros(detected + rejected, dtype=JOURNAL_DTYPE)
    for j in range(detected + rejected):
        journal[j].event = EV_OPPORTUNITY_DETECTED if j < detected else EV_OPPORTUNITY_REJECTED
    return run_metrics(RunRecords(total, in_market, trades, journal), 0, day_end, cash, ppy, years)


@njit(cache=True)
def _pair_run(acc, groups, pairs, rules, p, s):
    """The single run of pair ``p`` (instrument ``s``): :func:`.simulate.simulate`'s
    records, from the same records a single run packs."""
    a = acc.bar_off[s]
    b = acc.bar_off[s + 1]
    bars = Bars(acc.open[a:b], acc.high[a:b], acc.low[a:b], acc.close[a:b], acc.no_ints, acc.no_ints,
                acc.no_floats, acc.no_floats, acc.no_floats)
    g = pairs.group[p]
    o0 = groups.opp_off[g]
    o1 = groups.opp_off[g + 1]
    setups, exits = combo_levels(groups.bar[o0:o1], groups.direction[o0:o1], pairs, p)
    k = groups.reason.shape[0]
    mask = groups.mask[groups.mask_off[g]:groups.mask_off[g + 1]].reshape((k, b - a))
    threats = Threats(mask, pairs.dd_limit[p], pairs.dd_cooldown[p], groups.reason)
    own = Rules(rules.stop_mode[p], rules.target_mode[p], rules.reverse[p], rules.allow_long[p],
                rules.allow_short[p], pairs.expiry_bars[p], rules.sizer_kind[p], pairs.sizer_param[p],
                rules.whole_units[p], pairs.time_stop_bars[p], rules.trail_mode[p], pairs.trail_param[p],
                pairs.breakeven_r[p], rules.partial_mode[p], pairs.partial_fraction[p])
    account = Account(acc.cash, acc.commission[s], acc.slippage[s], acc.leverage[s], acc.finalize[s])
    return simulate(bars, setups, threats, own, account, exits)


@njit(cache=True)
def _trade_buffer(n):
    """A work array of ``n`` trades (made outside the parallel loop's array rewriting,
    which cannot fill a structured array)."""
    return np.zeros(n, dtype=TRADE_DTYPE)


@njit(parallel=True, cache=True)
def sweep_accounts(acc, union, groups, pairs, rules, ok, returns_out, n_blocks):
    """Metric vectors of a wave of combinations over a basket (mode independent).

    Pair ``p = c * N + s`` is instrument ``s`` under combination ``c`` (N instruments:
    ``acc.bar_off``); ``pairs`` (a :class:`~metaflow_nb.engine.records.SweepCombos`, one
    row per pair, ``group`` indexing ``groups``) and ``rules`` hold what each pair plans.
    ``union`` is the union calendar's :class:`~metaflow_nb.engine.records.Calendar`;
    ``ok[c]`` False skips combination ``c`` (its rows stay NaN). ``returns_out`` is
    (combinations x union days) to keep each combination's daily portfolio returns, or
    (0 x 0). Returns ``(per pair (P x N_METRICS), per combination (C x N_METRICS))``.
    """
    n_inst = acc.bar_off.shape[0] - 1
    n_combo = ok.shape[0]
    n_union = union.day_end.shape[0]
    per_pair = np.full((n_combo * n_inst, N_METRICS), np.nan)
    per_combo = np.full((n_combo, N_METRICS), np.nan)
    keep_returns = returns_out.shape[0] > 0
    start = acc.cash * n_inst
    n_blocks = max(1, min(n_combo, n_blocks))
    for blk in prange(n_blocks):
        total = np.empty(n_union)
        in_market = np.empty(n_union)
        buf = _trade_buffer(1024)
        for c in range(blk, n_combo, n_blocks):
            if not ok[c]:
                continue
            total[:] = 0.0
            in_market[:] = 0.0
            n_buf = 0
            detected = 0
            rejected = 0
            for s in range(n_inst):
                p = c * n_inst + s
                rec = _pair_run(acc, groups, pairs, rules, p, s)
                a = acc.bar_off[s]
                b = acc.bar_off[s + 1]
                vec = run_metrics(rec, 0, acc.day_end[a:b], acc.cash, acc.periods_per_year[s], acc.years[s])
                per_pair[p] = vec
                detected += int(vec[14])
                rejected += int(vec[15])
                own_at = acc.own_at[a:b]
                fold_account(total, in_market, own_at, rec.equity, rec.position, acc.cash)
                buf, n_buf = append_trades(buf, n_buf, rec.trades, own_at)
            per_combo[c] = combine_accounts(total, in_market, buf[:n_buf], detected, rejected, union.day_end,
                                            start, union.periods_per_year, union.years)
            if keep_returns:
                returns_out[c] = daily_returns(total, 0, union.day_end, start)
    return per_pair, per_combo
