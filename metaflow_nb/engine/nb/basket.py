"""The batch sweep over a basket in ``mode: independent``: every (instrument, combination)
run of a wave in one compiled ``prange`` call, and each combination's portfolio metrics.

An independent portfolio is N single runs; its metrics are the single run's metric code
on the accounts combined on the union calendar (``services.portfolio.PortfolioResult``).
The combining lives here, in compiled functions that the single path calls too, so the
sweep's rows equal ``PortfolioResult.metrics`` by construction:

- :func:`fold_account` adds one account's equity, carried onto the union calendar (its
  last equity where it has no bar, its cash before its first), to the running total, in
  instrument order, and marks the union bars where it holds a position;
- :func:`combine_accounts` orders every instrument's trades (placed on the union
  calendar) by entry bar, stably, so ties keep instrument order (the order of the trades
  table), and measures total, exposure, trades and the summed event counts with
  :func:`.metrics.run_metrics`' own pieces (``fold_trades``, ``fold_equity``).

:func:`sweep_accounts` runs a chunk of combinations in one ``prange`` iteration (the
combination is the parallel axis: the portfolio's total needs all of a combination's
accounts, summed in instrument order), instrument by instrument, so an instrument's bars
are read once per chunk; each run is the single run's loop
(:func:`.simulate.simulate_into`, into the block's reused work arrays) and
:func:`fold_run` folds it onto its combination's total and, in the same pass, measures
it as :func:`.metrics.run_metrics` would. Memory holds one account's arrays and a chunk's
union-long totals per block, not every account of every combination.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit, prange

from ..records import (
    ACC_DAYS, ACC_DETECTED, ACC_EXPOSED, ACC_FINAL, ACC_MAX_DD, ACC_REJECTED, JOURNAL_DTYPE, N_ACC, TRADE_DTYPE,
    Account, Bars, Calendar, Rules, RunRecords, Threats,
)
from .batch import combo_levels
from .metrics import (
    N_METRICS, _assemble, daily_returns, fold_equity, fold_trades, max_drawdown, stream_metrics,
)
from .simulate import simulate_into, trade_rows


class Accounts(NamedTuple):
    """The instruments of a basket, each on its own bars, concatenated: instrument ``s``
    owns rows ``bar_off[s]:bar_off[s + 1]`` of the prices (read-only float64) and of
    ``own_at`` (each own bar's place on the union calendar), and rows
    ``day_off[s]:day_off[s + 1]`` of ``day_ends`` (the indices of its own bars that close
    a day on its calendar). Per instrument: ``periods_per_year``, ``years`` (its calendar),
    ``commission``, ``slippage``, ``leverage``, ``finalize``; ``cash`` is every account's.
    ``no_ints``/``no_floats`` are the empty read-only arrays of :class:`Bars`' finer bars.
    """

    bar_off: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    day_off: np.ndarray
    day_ends: np.ndarray
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
    ``direction`` and its threat masks, threats x that instrument's bars flattened from
    ``mask[mask_at[g]]`` on (groups with the same masks share them); ``reason`` is per
    threat."""

    inst: np.ndarray
    opp_off: np.ndarray
    bar: np.ndarray
    direction: np.ndarray
    mask_at: np.ndarray
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


class SweepWork(NamedTuple):
    """The work arrays of :func:`sweep_accounts`, one row per block, made once per sweep
    (:func:`sweep_work`) and reused by every wave: fresh memory for them in every call
    cost page faults, most of a wave's non-compiled time in a fresh process. ``total``
    and ``in_market`` (uint8): a chunk's combinations' union-long totals and marks;
    ``equity``, ``position``, ``day_eq``: one run's; ``starts``: the entry-order sort's
    counts; ``trades`` (``TRADE_DTYPE``): a chunk's trades, placed on the union calendar
    (:func:`chunk_trade_rows` says how many a wave needs)."""

    total: np.ndarray
    in_market: np.ndarray
    equity: np.ndarray
    position: np.ndarray
    day_eq: np.ndarray
    starts: np.ndarray
    trades: np.ndarray


def sweep_work(acc: Accounts, n_union: int, n_blocks: int, trade_rows: int = 4096) -> SweepWork:
    """:class:`SweepWork` for ``n_blocks`` blocks over the basket ``acc`` on a union
    calendar of ``n_union`` bars, with room for ``trade_rows`` trades a chunk."""
    longest = int(np.diff(acc.bar_off).max()) if acc.bar_off.shape[0] > 1 else 0
    return SweepWork(np.empty((n_blocks, CHUNK, n_union)), np.empty((n_blocks, CHUNK, n_union), dtype=np.uint8),
                     np.empty((n_blocks, longest)), np.empty((n_blocks, longest)), np.empty((n_blocks, longest)),
                     np.empty((n_blocks, n_union + 1), dtype=np.int64),
                     np.zeros((n_blocks, trade_rows), dtype=TRADE_DTYPE))


def chunk_trade_rows(groups: AccountGroups, pairs: Any, n_inst: int) -> int:
    """The most trade rows a chunk of :func:`sweep_accounts` can write for this wave:
    :data:`CHUNK` times, summed over the instruments, the most any combination's run of
    that instrument can write (a run writes at most one row per setup, plus one, twice
    that with a partial take-profit)."""
    m = np.diff(groups.opp_off)[pairs.group]
    rows = np.where(pairs.partial_fraction > 0.0, 2 * m + 2, m + 1).reshape(-1, n_inst)
    return int(CHUNK * rows.max(axis=0).sum()) if rows.size else 0


@njit(cache=True)
def fold_account(total, in_market, own_at, equity, position, cash):
    """Add one account to the portfolio on the union calendar (``total``, ``in_market``
    as long as it): its equity at each of its bars, carried to the union bars after it
    (``cash`` before its first bar), is added to ``total``; ``in_market`` becomes 1.0
    where it holds a position (carried the same way)."""
    held = np.zeros(total.shape[0], dtype=np.uint8)
    _carry(total, held, own_at, equity, position, cash)
    for u in range(total.shape[0]):
        if held[u]:
            in_market[u] = 1.0


@njit(cache=True)
def fold_run(total, in_market, own_at, equity, position, cash, ends, day_eq, acc):
    """:func:`fold_account` of a run, which also measures what :func:`.metrics.run_metrics`
    reads of its equity and position, with the same expressions in the same order, while
    its arrays are in cache: drawdown, exposure and final equity into ``acc``
    (``records.ACC_*``), and the equities at its day ends (``ends``: the indices of the
    bars that close a day) into ``day_eq``; :func:`.metrics.stream_metrics` then gives
    run_metrics' vector to the last bit. ``in_market`` is uint8 here."""
    n = own_at.shape[0]
    for j in range(ends.shape[0]):
        day_eq[j] = equity[ends[j]]
    acc[ACC_MAX_DD] = max_drawdown(equity, 0, cash)
    acc[ACC_EXPOSED] = _carry(total, in_market, own_at, equity, position, cash)
    acc[ACC_DAYS] = ends.shape[0]
    acc[ACC_FINAL] = equity[n - 1] if n > 0 else cash


@njit(cache=True)
def _carry(total, in_market, own_at, equity, position, cash):
    """The adding half of :func:`fold_account`: bar ``k``'s equity holds from its union
    bar up to the next of the account's bars (its cash before the first); ``in_market``
    (uint8) becomes 1 where it holds a position. Returns how many of its own bars hold a
    position."""
    n = own_at.shape[0]
    n_union = total.shape[0]
    first = own_at[0] if n > 0 else n_union
    for u in range(first):
        total[u] += cash
    exposed = 0
    k = 0
    while k < n:
        u = own_at[k]
        if k + _RUN < n and own_at[k + _RUN] - u == _RUN:
            # _RUN bars on consecutive union bars, and the next bar right after them (the
            # usual case: no union bar between them to carry to): a branch-free loop on
            # slices, which the compiler vectorizes (2.6x faster than bar by bar)
            t = total[u:u + _RUN]
            e = equity[k:k + _RUN]
            m = in_market[u:u + _RUN]
            p = position[k:k + _RUN]
            for j in range(_RUN):
                t[j] += e[j]
                h = np.uint8(p[j] != 0.0)
                m[j] |= h
                exposed += h
            k += _RUN
            continue
        eq = equity[k]
        held = np.uint8(position[k] != 0.0)
        exposed += held
        for v in range(u, own_at[k + 1] if k + 1 < n else u + 1):
            total[v] += eq
            in_market[v] |= held
        k += 1
    if n > 0:
        # after its last bar: its last equity
        eq = equity[n - 1]
        held = np.uint8(position[n - 1] != 0.0)
        for v in range(own_at[n - 1] + 1, n_union):
            total[v] += eq
            in_market[v] |= held
    return exposed


_RUN = 32


@njit(cache=True)
def append_trades(buf, n_buf, trades, own_at):
    """Append a run's trades to ``buf`` (``TRADE_DTYPE``, ``n_buf`` used), their entry
    bars placed on the union calendar (``own_at``), their exits the own bars held after
    it (a duration counts the instrument's bars, as its single run does); grows ``buf``
    when full. Returns ``(buf, n_buf)``."""
    need = n_buf + trades.shape[0]
    if need > buf.shape[0]:
        grown = np.zeros(max(need, 2 * buf.shape[0]), dtype=buf.dtype)
        for j in range(n_buf):
            _copy_trade(grown, j, buf[j].entry_bar, buf[j].exit_bar, buf[j].entry_price, buf[j].size,
                        buf[j].pnl)
        buf = grown
    for j in range(trades.shape[0]):
        t = trades[j]
        at = own_at[t.entry_bar]
        _copy_trade(buf, n_buf + j, at, at + (t.exit_bar - t.entry_bar), t.entry_price, t.size, t.pnl)
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
    rows = np.arange(placed.shape[0])
    return _combine(total, in_market, placed, rows, detected, rejected, Calendar(day_end, ppy, years), cash,
                    np.empty(total.shape[0] + 1, dtype=np.int64), np.empty(rows.shape[0], dtype=np.int64))


@njit(cache=True)
def _combine(total, in_market, buf, rows, detected, rejected, union, cash, work, order):
    """:func:`combine_accounts` of the trades ``buf[rows]`` (``rows`` in basket order),
    added up in entry order through an index (no copy); ``work`` is an int64 work array
    one longer than the union calendar, ``order`` (as long as ``rows``) receives the
    entry order."""
    _entry_order(buf, rows, work, order)
    acc = np.zeros(N_ACC)
    fold_trades(acc, buf, order, rows.shape[0])
    acc[ACC_DETECTED] = detected
    acc[ACC_REJECTED] = rejected
    r, r_sum = fold_equity(acc, total, in_market, 0, union.day_end, cash)
    return _assemble(acc, r, r_sum, total.shape[0], rows.shape[0], cash, union.periods_per_year, union.years)


@njit(cache=True)
def _entry_order(buf, rows, starts, order):
    """``rows`` sorted stably by their trades' entry bar into ``order`` (a counting sort
    over the union calendar: the permutation a stable sort gives, in O(trades + bars)
    instead of a merge sort's O(trades log trades)); ``starts`` is an int64 work array
    one longer than the calendar."""
    starts[:] = 0
    for j in range(rows.shape[0]):
        starts[buf[rows[j]].entry_bar + 1] += 1
    for u in range(1, starts.shape[0]):
        starts[u] += starts[u - 1]
    for j in range(rows.shape[0]):
        e = buf[rows[j]].entry_bar
        order[starts[e]] = rows[j]
        starts[e] += 1


@njit(cache=True)
def _pair_inputs(acc, groups, pairs, rules, p, s):
    """The records of pair ``p``'s single run (instrument ``s``), as a single run packs
    them."""
    a = acc.bar_off[s]
    b = acc.bar_off[s + 1]
    bars = Bars(acc.open[a:b], acc.high[a:b], acc.low[a:b], acc.close[a:b], acc.no_ints, acc.no_ints,
                acc.no_floats, acc.no_floats, acc.no_floats)
    g = pairs.group[p]
    o0 = groups.opp_off[g]
    o1 = groups.opp_off[g + 1]
    setups, exits = combo_levels(groups.bar[o0:o1], groups.direction[o0:o1], pairs, p)
    k = groups.reason.shape[0]
    m0 = groups.mask_at[g]
    mask = groups.mask[m0:m0 + k * (b - a)].reshape((k, b - a))
    threats = Threats(mask, pairs.dd_limit[p], pairs.dd_cooldown[p], groups.reason)
    own = Rules(rules.stop_mode[p], rules.target_mode[p], rules.reverse[p], rules.allow_long[p],
                rules.allow_short[p], pairs.expiry_bars[p], rules.sizer_kind[p], pairs.sizer_param[p],
                rules.whole_units[p], pairs.time_stop_bars[p], rules.trail_mode[p], pairs.trail_param[p],
                pairs.breakeven_r[p], rules.partial_mode[p], pairs.partial_fraction[p])
    account = Account(acc.cash, acc.commission[s], acc.slippage[s], acc.leverage[s], acc.finalize[s])
    return bars, setups, threats, own, account, exits


@njit(cache=True)
def _trade_buffer(n):
    """A work array of ``n`` trades (made outside the parallel loop's array rewriting,
    which cannot fill a structured array)."""
    return np.zeros(n, dtype=TRADE_DTYPE)


@njit(cache=True)
def _journal_none():
    """An empty journal: the sweep's runs keep none."""
    return np.empty(0, dtype=JOURNAL_DTYPE)


@njit(cache=True)
def _run_pair(acc, groups, pairs, rules, p, s, work, ends, day_eq, total, in_market):
    """Run pair ``p`` (instrument ``s``) into the block's work arrays (grown when its
    setups need more trade rows), fold it onto the combination's ``total`` and
    ``in_market`` and return ``(its metric vector, its trades, the work arrays)``: the
    vector :func:`.metrics.run_metrics` gives of :func:`.simulate.simulate`'s records."""
    bars, setups, threats, own, account, exits = _pair_inputs(acc, groups, pairs, rules, p, s)
    need = trade_rows(setups, own)
    if need > work.trades.shape[0]:
        work = RunRecords(work.equity, work.position, _trade_buffer(max(need, 2 * work.trades.shape[0])),
                          work.journal)
    a = acc.bar_off[s]
    b = acc.bar_off[s + 1]
    n = b - a
    run = RunRecords(work.equity[:n], work.position[:n], work.trades, work.journal)
    v = np.zeros(N_ACC)
    n_trades, _ = simulate_into(bars, setups, threats, own, account, exits, run, v)
    fold_run(total, in_market, acc.own_at[a:b], run.equity, run.position, acc.cash, ends, day_eq, v)
    vec = stream_metrics(v, day_eq, n_trades, n, acc.cash, acc.periods_per_year[s], acc.years[s])
    return vec, work.trades[:n_trades], work


@njit(parallel=True, cache=True, nogil=True)
def sweep_accounts(acc, union, groups, pairs, rules, ok, returns_out, scratch):
    """Metric vectors of a wave of combinations over a basket (mode independent).

    Pair ``p = c * N + s`` is instrument ``s`` under combination ``c`` (N instruments:
    ``acc.bar_off``); ``pairs`` (a :class:`~metaflow_nb.engine.records.SweepCombos`, one
    row per pair, ``group`` indexing ``groups``) and ``rules`` hold what each pair plans.
    ``union`` is the union calendar's :class:`~metaflow_nb.engine.records.Calendar`;
    ``ok[c]`` False skips combination ``c`` (its rows stay NaN). ``returns_out`` is
    (combinations x union days) to keep each combination's daily portfolio returns, or
    (0 x 0). ``scratch`` (:class:`SweepWork`) has a row per block. Returns ``(per pair
    (P x N_METRICS), per combination (C x N_METRICS))``.

    The call releases the GIL: the sweep plans its next wave meanwhile. Combinations go
    in chunks of at most :data:`CHUNK`, as many for each block; a chunk runs instrument
    by instrument,
    each instrument under every combination of the chunk, so an instrument's bars are
    read from memory once per chunk rather than once per combination. Each combination
    keeps its own total, still added up in basket order.
    """
    n_inst = acc.bar_off.shape[0] - 1
    n_combo = ok.shape[0]
    n_union = union.day_end.shape[0]
    per_pair = np.full((n_combo * n_inst, N_METRICS), np.nan)
    per_combo = np.full((n_combo, N_METRICS), np.nan)
    keep_returns = returns_out.shape[0] > 0
    start = acc.cash * n_inst
    # chunks of equal size (to one combination) and the same number for every block: the
    # blocks finish together
    n_blocks = max(1, min(n_combo, scratch.total.shape[0]))
    per_block = (n_combo + n_blocks * CHUNK - 1) // (n_blocks * CHUNK)
    n_chunks = n_blocks * per_block
    for blk in prange(n_blocks):
        # the block's work arrays, reused by every run of the block (and every wave)
        total = scratch.total[blk]
        in_market = scratch.in_market[blk]
        day_eq = scratch.day_eq[blk]
        starts = scratch.starts[blk]
        work = RunRecords(scratch.equity[blk], scratch.position[blk], _trade_buffer(1024),
                          _journal_none())
        seg = np.zeros((CHUNK, n_inst + 1), dtype=np.int64)
        buf = scratch.trades[blk]
        rows_buf = np.empty(4096, dtype=np.int64)
        order_buf = np.empty(4096, dtype=np.int64)
        for ch in range(blk, n_chunks, n_blocks):
            c0 = ch * n_combo // n_chunks
            c1 = (ch + 1) * n_combo // n_chunks
            total[:] = 0.0
            in_market[:] = 0
            n_buf = 0
            for s in range(n_inst):
                own_at = acc.own_at[acc.bar_off[s]:acc.bar_off[s + 1]]
                ends = acc.day_ends[acc.day_off[s]:acc.day_off[s + 1]]
                for c in range(c0, c1):
                    seg[c - c0, s] = n_buf
                    if not ok[c]:
                        continue
                    p = c * n_inst + s
                    vec, trades, work = _run_pair(acc, groups, pairs, rules, p, s, work, ends, day_eq,
                                                  total[c - c0], in_market[c - c0])
                    per_pair[p] = vec
                    buf, n_buf = append_trades(buf, n_buf, trades, own_at)
            for c in range(c0, c1):
                seg[c - c0, n_inst] = n_buf
            for c in range(c0, c1):
                if not ok[c]:
                    continue
                b = c - c0
                detected = 0
                rejected = 0
                n_t = 0
                for s in range(n_inst):
                    detected += int(per_pair[c * n_inst + s, 14])
                    rejected += int(per_pair[c * n_inst + s, 15])
                    n_t += _seg_len(seg, b, s, c1 - c0)
                if n_t > rows_buf.shape[0]:
                    rows_buf = np.empty(2 * n_t, dtype=np.int64)
                    order_buf = np.empty(2 * n_t, dtype=np.int64)
                rows = rows_buf[:n_t]
                j = 0
                for s in range(n_inst):
                    a = seg[b, s]
                    for q in range(a, a + _seg_len(seg, b, s, c1 - c0)):
                        rows[j] = q
                        j += 1
                per_combo[c] = _combine(total[b], in_market[b], buf, rows, detected, rejected, union, start, starts,
                                        order_buf[:n_t])
                if keep_returns:
                    returns_out[c] = daily_returns(total[b], 0, union.day_end, start)
    return per_pair, per_combo


@njit(cache=True, inline="always")
def _seg_len(seg, b, s, width):
    """How many trades pair (chunk row ``b``, instrument ``s``) appended: up to where the
    next pair of the chunk (the next row, or the first row of the next instrument)
    started appending."""
    if b + 1 < width:
        return seg[b + 1, s] - seg[b, s]
    return seg[0, s + 1] - seg[b, s]


#: combinations a block of :func:`sweep_accounts` runs together, instrument by instrument
CHUNK = 8
