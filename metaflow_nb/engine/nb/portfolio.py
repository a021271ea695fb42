"""The portfolio bar loop: several instruments in lock-step, one shared account.

One call runs one strategy over a basket on the union of the instruments' timestamps
(:class:`~metaflow_nb.engine.records.Basket`). Per union timestamp ``t`` the order of work
is that of :mod:`.simulate`, spread over the instruments:

1. every instrument with a bar at ``t`` (in basket order): its pending exit (an opposite
   signal) or time stop at its open, then its stop, then its target;
2. every instrument with a bar at ``t`` and a pending entry order (in basket order, or
   with ``rank: score`` by its setup's score, highest first, ties in basket order): the
   fill at its open (market) or through its limit; the size comes from the sizer applied
   to the **portfolio's equity** (cash plus every open position marked at its last close,
   one filled at this open at its fill price), capped by the **free cash** (the equity
   less the open positions' margin at market, ``|units| x last close / leverage``: an
   open loss holds cash): an order that cannot buy one unit is skipped
   (``INSUFFICIENT_CASH``); after a market fill its stop and target are live on the bar;
3. the portfolio's equity is marked (each position at its instrument's last close: an
   instrument without a bar at ``t`` keeps its last close; no fill happens there); the
   drawdown monitors see the portfolio's equity;
4. decisions at the close: the setups stamped at ``t``, in basket order (the
   deterministic rule for simultaneous setups: the instruments' order in the operation;
   with ``rank: score``, by the score the opportunity worker gives each setup, highest
   first, ties in basket order: the assembly sorts them so), checked against each instrument's threats; an accepted setup becomes an order unless
   ``max_positions`` positions and entry orders of other instruments are already open or
   waiting (a position due to close at its next open counts: that open may come after
   the new order's fill): then it is skipped with ``MAX_POSITIONS``.

Exits that act on the path (trailing stop, break-even, partial take-profit, session
exits) and intrabar resolution are not in this loop; the assembly refuses plans that use
them. With one instrument the loop is :func:`.simulate.simulate` on that instrument's bars:
the same trades, journal and equity (tests/test_portfolio_mode.py).

The batch path, :func:`sweep_portfolio` (called by
``assembly.portfolio.sweep_shared(runs, bars, cash, max_positions, calendar) -> np.ndarray``),
runs many parameter combinations over one basket in one ``prange`` call: the prices are
shared, each combination brings its merged setups, threat masks and rules
(:class:`~metaflow_nb.engine.records.BasketGroups`, :class:`~metaflow_nb.engine.records.BasketCombos`).
Each runs the same loop as :func:`simulate_portfolio` in its metrics-only mode (``keep``
False, a second compilation of the one loop): no per-bar arrays, no journal; the equity is
folded bar by bar (:func:`_fold_bar`) and the closed trades are kept in a work array
reused across combinations. :func:`portfolio_metrics` folds a kept run's records with the
same helpers and both end in :func:`_metric_vector`, so a combination's row equals the
single run's metrics to the last bit.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..codes import (
    EV_OPPORTUNITY_DETECTED, EV_OPPORTUNITY_REJECTED, EV_OPPORTUNITY_SKIPPED, EV_ORDER_CANCELLED, EV_ORDER_EXPIRED,
    EV_ORDER_PLACED, EV_TRADE_CLOSED, EV_TRADE_OPENED, EXIT_DELISTED, EXIT_END_OF_DATA, EXIT_OUT_OF_MONEY,
    EXIT_SIGNAL, EXIT_STOP_LOSS, EXIT_TIME_STOP, FILL_RULE_PESSIMISTIC, REASON_DELISTED,
    REASON_DIRECTION_NOT_ALLOWED, REASON_EXPIRED,
    REASON_IN_POSITION, REASON_INSUFFICIENT_CASH, REASON_MAX_POSITIONS, REASON_ORDER_PENDING,
    REASON_ZONE_INVALIDATED,
)
from ..records import (
    ACC_DAYS, ACC_DETECTED, ACC_EXPOSED, ACC_FINAL, ACC_MAX_DD, ACC_REJECTED, N_ACC, PORTFOLIO_JOURNAL_DTYPE,
    PORTFOLIO_TRADE_DTYPE, Basket, PortfolioRecords, Rules, Setups, Threats,
)
from .metrics import N_METRICS, _fold_drawdown, fold_trades, stream_metrics
from .simulate import (
    FULL_EQUITY, _at, _event, _exit_hit, _level, _size, _skip_reason, _touched, drawdown_monitors,
)


@njit(cache=True, nogil=True)
def place_instrument(open_out, high_out, low_out, close_out, has_out, s, at, open_, high, low, close):
    """Row ``s`` of the basket's price arrays (instruments x union bars): instrument
    ``s``'s own bar ``j`` at union bar ``at[j]`` (the rest stays as it was: NaN, no bar).
    Compiled ``nogil``, so a sweep packs its prices beside its first planning."""
    for j in range(at.shape[0]):
        u = at[j]
        open_out[s, u] = open_[j]
        high_out[s, u] = high[j]
        low_out[s, u] = low[j]
        close_out[s, u] = close[j]
        has_out[s, u] = True


@njit(cache=True)
def merge_by_union_bar(ubar, direction, off, n):
    """Every instrument's setups in one stream by union bar, then basket order, then the
    instrument's own order: instrument ``s``'s setups are rows ``off[s]:off[s + 1]`` of
    ``ubar`` (each one's union bar, in own order) and ``direction``; ``n`` is the union
    calendar's length. Returns ``(union bar, direction, instrument, own setup number,
    order)``, ``order`` the rows in merged order: a stable counting sort, the order a
    stable sort by (union bar, instrument) gives, without its temporaries."""
    m = ubar.shape[0]
    start = np.zeros(n + 1, dtype=np.int64)
    for j in range(m):
        start[ubar[j] + 1] += 1
    for u in range(n):
        start[u + 1] += start[u]
    bar_o = np.empty(m, dtype=np.int64)
    dir_o = np.empty(m, dtype=np.int64)
    inst_o = np.empty(m, dtype=np.int64)
    local_o = np.empty(m, dtype=np.int64)
    order = np.empty(m, dtype=np.int64)
    for s in range(off.shape[0] - 1):
        for j in range(off[s], off[s + 1]):
            u = ubar[j]
            k = start[u]
            start[u] = k + 1
            bar_o[k] = u
            dir_o[k] = direction[j]
            inst_o[k] = s
            local_o[k] = j - off[s]
            order[k] = j
    return bar_o, dir_o, inst_o, local_o, order


@njit(cache=True, inline="always")
def _ev(journal, n_ev, inst, bar, kind, opp, trade, direction, threat, reason, active, rule):
    """:func:`.simulate._event` with the instrument and the fill rule of the event."""
    _event(journal, n_ev, bar, kind, opp, trade, direction, threat, reason, active)
    if journal.shape[0] > 0:
        e = journal[n_ev]
        e.inst = inst
        e.rule = rule


#: free cash at most this fraction of the equity is none (the rounding left when the other
#: positions were sized to the free cash; float64 carries ~2.2e-16 of a value)
DUST = 1e-9


@njit(cache=True, inline="always")
def _equity_margin(cash, pos, last_close, entry_price, leverage):
    """The account's equity (cash plus open positions marked at their last closes) and
    what its open positions hold of the cash: their margin at the last closes (units x
    last close / leverage) less their open pnl, so that ``cash - held`` is the equity
    less the margin at market. An open loss holds cash: margin at entry prices let a
    losing account open positions beyond leverage x equity."""
    eq = cash
    margin = 0.0
    moved = 0.0
    for s in range(pos.shape[0]):
        if pos[s] != 0.0:
            x = last_close[s] - entry_price[s]
            eq += pos[s] * x
            margin += abs(pos[s]) * entry_price[s] / leverage
            # pnl less the margin's own move: exactly 0 for a long without leverage
            moved += pos[s] * x - abs(pos[s]) * x / leverage
    return eq, margin - moved


@njit(cache=True)
def _ranked_entries(fill, has, ord_opp, pos, score, t):
    """Write into ``fill`` the instruments whose entry order may fill at union bar ``t``
    (a bar there, an order waiting, no position), by their setups' ``score``, highest
    first, ties in basket order; return how many."""
    k = 0
    for s in range(has.shape[0]):
        if not has[s, t] or ord_opp[s] < 0 or pos[s] != 0.0:
            continue
        v = score[ord_opp[s]]
        j = k
        # strictly lower scores move back: an equal one, earlier in the basket, stays first
        while j > 0 and score[ord_opp[fill[j - 1]]] < v:
            fill[j] = fill[j - 1]
            j -= 1
        fill[j] = s
        k += 1
    return k


@njit(cache=True)
def _entry_then_basket(trades, slots, n):
    """Sort the trade rows ``slots[:n]`` (in fill order: by entry bar, and within a bar by
    score) by entry bar, then instrument, as :func:`portfolio_metrics` adds a kept run's
    trades up. An insertion sort: only a bar's few fills move."""
    for j in range(1, n):
        r = slots[j]
        bar, inst = trades[r].entry_bar, trades[r].inst
        i = j
        while i > 0:
            q = trades[slots[i - 1]]
            if q.entry_bar < bar or (q.entry_bar == bar and q.inst <= inst):
                break
            slots[i] = slots[i - 1]
            i -= 1
        slots[i] = r


@njit(cache=True, inline="always")
def _equity(cash, pos, last_close, entry_price):
    """:func:`_equity_margin`'s equity alone, added up in the same order (the same bits):
    a metrics-only run reads no free cash, so it skips a division per open position."""
    eq = cash
    for s in range(pos.shape[0]):
        if pos[s] != 0.0:
            eq += pos[s] * (last_close[s] - entry_price[s])
    return eq


@njit(cache=True, inline="always")
def _pessimistic(d, o, h, lo, stop, target, full, why):
    """:func:`.simulate._decide` without finer bars: the rule recorded for a bar that
    touched a take-profit level next to the stop (or a limit's fill bar that touched it);
    none for a bar that opened beyond the stop (it filled there, before anything else)."""
    if not _touched(d, h, lo, target) or (full and why != EXIT_STOP_LOSS):
        return 0
    if full and not math.isnan(stop) and ((d > 0 and o <= stop) or (d < 0 and o >= stop)):
        return 0
    return FILL_RULE_PESSIMISTIC


class _Book(NamedTuple):
    """Each instrument's open trade, one value per instrument (arrays the loop updates):
    its position (signed units), entry price, union bar and commission, setup, stop and
    target, journal row of its TRADE_OPENED event, place in entry order, the net pnl
    of the instrument's closed trades, and its own bar numbers (now, at the entry)."""

    pos: np.ndarray
    entry_price: np.ndarray
    entry_bar: np.ndarray
    entry_comm: np.ndarray
    opp: np.ndarray
    stop: np.ndarray
    target: np.ndarray
    opened: np.ndarray
    seq: np.ndarray
    realized: np.ndarray
    own: np.ndarray         # each instrument's own bar number at the union bar
    entry_own: np.ndarray   # the open trade's entry, in the instrument's own bars


@njit(cache=True)
def _close(trades, journal, n_trades, n_ev, book, s, bar, px, commission, why, rule, slots):
    """Close instrument ``s``'s open trade (``book``) at ``px``: record the trade and its
    event, name the trade on its TRADE_OPENED event (trades of several instruments are
    open at once, so a trade's row is known when it closes), add its net pnl to the
    instrument's and flatten it; return the cash it releases (pnl less the exit
    commission), as :func:`.simulate._close_trade` computes it. A metrics-only run keeps
    no journal and notes the trade's row at ``slots[seq]``, ``seq`` its place in entry
    order (the metrics add trades up in that order)."""
    pos, entry_price, entry_comm, opp = book.pos[s], book.entry_price[s], book.entry_comm[s], book.opp[s]
    if journal.shape[0] > 0:
        journal[book.opened[s]].trade = n_trades
    if slots.shape[0] > 0:
        slots[book.seq[s]] = n_trades
    comm = abs(pos) * px * commission
    pnl = pos * (px - entry_price)
    t = trades[n_trades]
    t.inst = s
    t.opp = opp
    t.direction = 1 if pos > 0 else -1
    t.entry_bar = book.entry_bar[s]
    # the bars held are the instrument's own, as a single run counts them (union bars
    # count the other instruments' timestamps too): the exit sits that many after the
    # union entry, and the trades table turns both into own bars
    t.exit_bar = book.entry_bar[s] + (book.own[s] - book.entry_own[s])
    t.entry_price = entry_price
    t.exit_price = px
    t.size = abs(pos)
    t.pnl = pnl - comm - entry_comm
    t.commission = comm + entry_comm
    t.exit_reason = why
    t.stop = book.stop[s]
    t.target = book.target[s]
    _ev(journal, n_ev, s, bar, EV_TRADE_CLOSED, opp, n_trades, 1 if pos > 0 else -1, -1, why, 0, rule)
    book.realized[s] += t.pnl
    book.pos[s] = 0.0
    return pnl - comm


@njit(cache=True, inline="always")
def _fold_start(day_ends, cash):
    """The state :func:`_fold_bar` starts from: no day yet, the first day's end, the
    starting cash as the first peak, no drawdown, no bar in the market."""
    return 0, day_ends[0] if day_ends.shape[0] > 0 else -1, cash, cash, 0.0, 0


@njit(cache=True, inline="always")
def _fold_bar(t, eq, held, day_ends, day_eq, nd, next_end, peak, trough, mdd, exposed):
    """Fold union bar ``t``'s final equity ``eq`` (``held``: some instrument holds a
    position) into what the metrics need: the equity at each day's last bar (``day_eq``),
    drawdown (:func:`.metrics._fold_drawdown`) and the count of bars in the market.
    Returns the folded state ``(nd, next_end, peak, trough, mdd, exposed)``."""
    if t == next_end:
        day_eq[nd] = eq
        nd += 1
        next_end = day_ends[nd] if nd < day_ends.shape[0] else -1
    peak, trough, mdd = _fold_drawdown(eq, peak, trough, mdd)
    if held:
        exposed += 1
    return nd, next_end, peak, trough, mdd, exposed


@njit(cache=True)
def _metric_vector(trades, order, n_closed, nd, day_eq, peak, trough, mdd, exposed, final, detected, rejected,
                   n_bars, cash, ppy, years):
    """The metric vector (``engine.metrics.METRIC_NAMES`` order) of a portfolio run from
    its folded equity (:func:`_fold_bar`), its closed trades ``trades[order[:n_closed]]``
    added up in that order (entry bar, then basket order: the order of the result's trades
    table) by :func:`.metrics.fold_trades`, and its event counts. The one
    place both :func:`portfolio_metrics` (a kept run) and :func:`sweep_portfolio` (the
    batch) make the vector."""
    acc = np.zeros(N_ACC)
    fold_trades(acc, trades, order, n_closed)
    dd = (peak - trough) / peak  # the last peak's drawdown
    acc[ACC_MAX_DD] = dd if dd > mdd else mdd
    acc[ACC_EXPOSED] = exposed
    acc[ACC_DETECTED] = detected
    acc[ACC_REJECTED] = rejected
    acc[ACC_FINAL] = final
    acc[ACC_DAYS] = nd
    return stream_metrics(acc, day_eq, n_closed, n_bars, cash, ppy, years)


@njit(cache=True)
def portfolio_metrics(records, order, day_ends, day_eq, cash, ppy, years):
    """The metric vector of a kept portfolio run (:class:`~metaflow_nb.engine.records.PortfolioRecords`
    of :func:`simulate_portfolio`): its equity and positions folded bar by bar as the
    metrics-only loop folds them, its closed trades in ``order`` (by entry bar, then
    instrument), its detections and rejections counted in the journal; ``day_ends`` are
    the union bars that close a trading day, ``day_eq`` (as long) a work array.
    ``assembly.portfolio.basket_metrics`` calls it for ``SharedPortfolioResult.metrics``.

    >>> from metaflow_nb.engine.records import PORTFOLIO_JOURNAL_DTYPE, PORTFOLIO_TRADE_DTYPE
    >>> tr = np.zeros(1, dtype=PORTFOLIO_TRADE_DTYPE)   # one trade: bars 1 -> 2, 1 unit at 10, lost 1
    >>> tr["entry_bar"], tr["exit_bar"], tr["entry_price"], tr["size"], tr["pnl"] = 1, 2, 10.0, 1.0, -1.0
    >>> rec = PortfolioRecords(np.array([100.0, 110.0, 99.0]), np.zeros(3), np.array([[0.0, 1.0, 0.0]]),
    ...                        np.zeros((1, 3)), tr, np.zeros(0, dtype=PORTFOLIO_JOURNAL_DTYPE))
    >>> v = portfolio_metrics(rec, np.zeros(1, dtype=np.int64), np.arange(3), np.empty(3), 100.0, 252.0, 0.0)
    >>> [round(float(x), 4) for x in v[[0, 5, 10, 12]]]   # return %, max drawdown %, trades, exposure %
    [-1.0, 10.0, 1.0, 33.3333]
    """
    equity, position = records.equity, records.position
    n_inst, n = position.shape[0], equity.shape[0]
    nd, next_end, peak, trough, mdd, exposed = _fold_start(day_ends, cash)
    for t in range(n):
        held = False
        for s in range(n_inst):
            if position[s, t] != 0.0:
                held = True
                break
        nd, next_end, peak, trough, mdd, exposed = _fold_bar(t, equity[t], held, day_ends, day_eq, nd, next_end,
                                                             peak, trough, mdd, exposed)
    detected = 0
    rejected = 0
    for j in range(records.journal.shape[0]):
        if records.journal[j].event == EV_OPPORTUNITY_DETECTED:
            detected += 1
        elif records.journal[j].event == EV_OPPORTUNITY_REJECTED:
            rejected += 1
    final = equity[n - 1] if n > 0 else cash
    return _metric_vector(records.trades, order, order.shape[0], nd, day_eq, peak, trough, mdd, exposed, final,
                          detected, rejected, n, cash, ppy, years)


@njit(cache=True)
def simulate_portfolio(basket, setups, threats, rules, account):
    """Simulate one strategy over a basket with one shared account; see the module
    docstring. ``setups`` are sorted by (union bar, instrument), ``basket.setup_inst``
    names each one's instrument; ``threats.mask`` is (instruments x threats x bars).

    Returns :class:`~metaflow_nb.engine.records.PortfolioRecords`: the portfolio's equity
    and free cash at every union bar, each instrument's position, trades and journal
    (bars are union bars; ``inst`` the instrument).
    """
    none = np.zeros(0, dtype=np.int64)
    out = _loop(basket, setups, threats, rules, account, True, none, np.empty(0),
                np.empty(0, dtype=PORTFOLIO_TRADE_DTYPE), none, 0.0, 0.0)
    equity, free_cash, position, pnl, trades, n_trades, journal, n_ev, _ = out
    return PortfolioRecords(equity, free_cash, position, pnl, trades[:n_trades], journal[:n_ev])


@njit(cache=True)
def _loop(basket, setups, threats, rules, account, keep, day_ends, day_eq, work, slots, ppy, years):
    """The lock-step loop behind :func:`simulate_portfolio` (``keep``: equity, free cash,
    position and pnl per bar, trades and journal) and the metrics-only runs of
    :func:`sweep_portfolio` (``keep`` False: the trades go to the work array ``work``,
    their rows in entry order to ``slots``, the day-end equities to ``day_eq``; returns the
    metric vector last). Numba compiles it once per value of ``keep``."""
    open_, high, low, close, has = basket.open, basket.high, basket.low, basket.close, basket.has
    inst_of = basket.setup_inst
    commission, slippage = basket.commission, basket.slippage
    max_positions = basket.max_positions
    n_inst, n = close.shape[0], close.shape[1]
    opp_bar, opp_dir = setups.bar, setups.direction
    m = opp_bar.shape[0]
    k = threats.dd_limit.shape[0]
    cash0, leverage, finalize = account.cash, account.leverage, account.finalize
    stop_mode, target_mode, reverse = rules.stop_mode, rules.target_mode, rules.reverse
    time_stop, expiry_bars = rules.time_stop_bars, rules.expiry_bars

    rows = n if keep else 0
    equity = np.empty(rows)
    free_cash = np.empty(rows)
    position = np.zeros((n_inst, rows))
    pnl = np.zeros((n_inst, rows))
    realized = np.zeros(n_inst)       # net pnl of each instrument's closed trades
    trades = np.empty(m + n_inst, dtype=PORTFOLIO_TRADE_DTYPE) if keep else work
    # per setup: detected, placed or skipped, opened, closed; per instrument: a delisting's
    # close and cancelled order, finalize's close
    journal = np.empty(4 * (m + n_inst) + 3 * n_inst if keep else 0, dtype=PORTFOLIO_JOURNAL_DTYPE)
    n_trades = 0
    n_ev = 0
    # metrics-only run: the equity folded bar by bar, the trades' rows in entry order
    nd, next_end, peak, trough, mdd, exposed = _fold_start(day_ends, cash0)
    final = cash0
    detected = 0
    rejected = 0
    n_opened = 0
    seq = np.full(n_inst, -1)         # the open trade's place in entry order

    cash = cash0
    pos = np.zeros(n_inst)
    entry_price = np.zeros(n_inst)
    entry_bar = np.full(n_inst, -1)
    entry_own = np.full(n_inst, -1)
    entry_comm = np.zeros(n_inst)
    cur_opp = np.full(n_inst, -1)
    cur_stop = np.full(n_inst, np.nan)
    cur_target = np.full(n_inst, np.nan)
    exit_pending = np.zeros(n_inst, dtype=np.bool_)
    open_ev = np.full(n_inst, -1)      # journal row of the open trade's TRADE_OPENED event
    ord_opp = np.full(n_inst, -1)
    ord_own = np.full(n_inst, -1)
    last_close = np.full(n_inst, np.nan)
    own = np.full(n_inst, -1)          # the instrument's own bar number at t
    last_t = np.full(n_inst, -1)       # the union index of each instrument's last bar
    for s in range(n_inst):
        for t in range(n - 1, -1, -1):
            if has[s, t]:
                last_t[s] = t
                break
    delist_at = basket.delist_at   # a declared delisting's union bar per instrument (-1: none)

    book = _Book(pos, entry_price, entry_bar, entry_comm, cur_opp, cur_stop, cur_target, open_ev, seq, realized, own,
                 entry_own)
    score = basket.setup_score
    ranked = score.shape[0] > 0
    fill = np.empty(n_inst, dtype=np.int64)  # rank: score: the order the entries waiting at t fill in
    n_orders = 0  # entry orders waiting: a bar without any skips the entry step

    dd_peak = np.full(k, cash0)
    dd_halt_end = np.full(k, -1)
    dd_active = np.zeros(k, dtype=np.bool_)
    p = 0
    for t in range(n):
        # 1. exits: pending signal or time stop at the open, then stop, then target
        for s in range(n_inst):
            if not has[s, t]:
                continue
            own[s] += 1
            if pos[s] == 0.0:
                exit_pending[s] = False
                continue
            o, h, lo = open_[s, t], high[s, t], low[s, t]
            d = 1.0 if pos[s] > 0 else -1.0
            why = 0
            if exit_pending[s]:
                why = EXIT_SIGNAL
            elif time_stop > 0 and own[s] - entry_own[s] >= time_stop:
                why = EXIT_TIME_STOP
            exit_pending[s] = False
            if why != 0:
                cash += _close(trades, journal, n_trades, n_ev, book, s, t, o * (1.0 - d * slippage[s]),
                               commission[s], why, 0, slots)
                n_ev += 1
                n_trades += 1
                continue
            px, why = _exit_hit(d, o, h, lo, cur_stop[s], cur_target[s], True, slippage[s])
            if why != 0:
                rule = _pessimistic(d, o, h, lo, cur_stop[s], cur_target[s], True, why) if why == EXIT_STOP_LOSS else 0
                cash += _close(trades, journal, n_trades, n_ev, book, s, t, px, commission[s], why, rule, slots)
                n_ev += 1
                n_trades += 1

        # 2. pending entries, in basket order (rank: score: by their setups' scores), sized
        # on the portfolio's equity and the free cash
        n_fill = 0 if n_orders == 0 else (_ranked_entries(fill, has, ord_opp, pos, score, t) if ranked else n_inst)
        for j in range(n_fill):
            s = fill[j] if ranked else j
            if not has[s, t] or ord_opp[s] < 0 or pos[s] != 0.0:
                continue
            q = ord_opp[s]
            o, h, lo, c = open_[s, t], high[s, t], low[s, t], close[s, t]
            d = float(opp_dir[q])
            lim = _at(setups.limit, q)
            is_market = math.isnan(lim)
            cl = _at(setups.cancel, q)
            # as in the single kernel: an open beyond the cancel level invalidates the zone first
            gone = not is_market and not math.isnan(cl) and ((d > 0 and o < cl) or (d < 0 and o > cl))
            filled = False
            px = np.nan
            if is_market:
                px = o * (1.0 + d * slippage[s])
                filled = True
            elif not gone and ((d > 0 and lo <= lim) or (d < 0 and h >= lim)):
                px = min(o, lim) if d > 0 else max(o, lim)
                filled = True
            if filled:
                stop = _level(stop_mode, _at(setups.stop, q), px, -d, np.nan)
                target = _level(target_mode, _at(setups.target, q), px, d, stop)
                eq_now, margin = _equity_margin(cash, pos, last_close, entry_price, leverage)
                free = cash - margin
                size = _size(rules.sizer_kind, rules.sizer_param, rules.whole_units, eq_now, leverage, px,
                             commission[s], stop)
                adj = px + (FULL_EQUITY * px * commission[s]) / FULL_EQUITY
                # spent: what is left is the rounding of sizing the others to the free cash
                # (~1e-16 of the equity), not cash to open a position of ~$1e-11 with
                spent = free <= eq_now * DUST
                if spent:
                    size = 0.0
                elif free < eq_now:  # flat with no other position: the single run's size, unchanged
                    cap = free * leverage * FULL_EQUITY / adj
                    if rules.whole_units:
                        cap = (free * leverage * FULL_EQUITY) // adj
                    size = min(size, cap)
                if size <= 0.0 or (rules.whole_units and size < 1.0):
                    # free cash aside, a fixed-risk size without a stop distance is no cash problem
                    why = REASON_INSUFFICIENT_CASH if spent else _skip_reason(rules.sizer_kind, px, stop)
                    _ev(journal, n_ev, s, t, EV_OPPORTUNITY_SKIPPED, q, -1, int(d), -1, why, 0, 0)
                    n_ev += 1
                else:
                    pos[s] = d * size
                    entry_price[s] = px
                    # worth its fill price until its first close: marked at the previous close,
                    # a gap at this open would size the next fill at t on a phantom gain or loss
                    last_close[s] = px
                    entry_bar[s] = t
                    entry_own[s] = own[s]
                    entry_comm[s] = size * px * commission[s]
                    cash -= entry_comm[s]
                    cur_opp[s] = q
                    cur_stop[s] = stop
                    cur_target[s] = target
                    open_ev[s] = n_ev
                    # entries happen here only, at union bar t in basket order: this count is the
                    # trades table's order (entry time, then symbol)
                    seq[s] = n_opened
                    if slots.shape[0] > 0:
                        slots[n_opened] = -1  # still open
                    n_opened += 1
                    _ev(journal, n_ev, s, t, EV_TRADE_OPENED, q, -1, int(d), -1, 0, 0, 0)
                    n_ev += 1
                    # a limit the bar opened beyond filled at the open, before the rest of the
                    # bar: its fill bar is a market fill's (stop and target both live)
                    full = is_market or px == o
                    first_open = o if full else px
                    xp, why = _exit_hit(d, first_open, h, lo, stop, target, full, slippage[s])
                    rule = 0
                    if why == EXIT_STOP_LOSS or not full:
                        rule = _pessimistic(d, o, h, lo, stop, target, full, why)
                        if rule != 0 and journal.shape[0] > 0:
                            journal[n_ev - 1].rule = rule
                    if why != 0:
                        cash += _close(trades, journal, n_trades, n_ev, book, s, t, xp, commission[s], why, rule,
                                       slots)
                        n_ev += 1
                        n_trades += 1
                ord_opp[s] = -1
                n_orders -= 1
            else:
                if gone or (not math.isnan(cl) and ((d > 0 and c < cl) or (d < 0 and c > cl))):
                    _ev(journal, n_ev, s, t, EV_ORDER_CANCELLED, q, -1, int(d), -1, REASON_ZONE_INVALIDATED, 0, 0)
                    n_ev += 1
                    ord_opp[s] = -1
                    n_orders -= 1
                elif expiry_bars > 0 and own[s] - ord_own[s] >= expiry_bars:
                    _ev(journal, n_ev, s, t, EV_ORDER_EXPIRED, q, -1, int(d), -1, REASON_EXPIRED, 0, 0)
                    n_ev += 1
                    ord_opp[s] = -1
                    n_orders -= 1

        # 3. mark the portfolio at the last closes
        for s in range(n_inst):
            if has[s, t]:
                last_close[s] = close[s, t]
                if delist_at[s] == t:
                    # a delisted instrument's last bar (declared, so known): what it holds closes at
                    # this close and its waiting order goes; its slot and cash are free from here
                    if pos[s] != 0.0:
                        d = 1.0 if pos[s] > 0 else -1.0
                        cash += _close(trades, journal, n_trades, n_ev, book, s, t,
                                       close[s, t] * (1.0 - d * slippage[s]), commission[s], EXIT_DELISTED, 0, slots)
                        n_ev += 1
                        n_trades += 1
                    exit_pending[s] = False
                    if ord_opp[s] >= 0:
                        q = ord_opp[s]
                        _ev(journal, n_ev, s, t, EV_ORDER_CANCELLED, q, -1, int(opp_dir[q]), -1, REASON_DELISTED, 0, 0)
                        n_ev += 1
                        ord_opp[s] = -1
                        n_orders -= 1
        if keep:
            eq, margin = _equity_margin(cash, pos, last_close, entry_price, leverage)
        else:
            eq, margin = _equity(cash, pos, last_close, entry_price), 0.0
        if eq <= 0.0:
            # out of money: every position closes at its last close, trading stops
            for s in range(n_inst):
                if pos[s] != 0.0:
                    cash += _close(trades, journal, n_trades, n_ev, book, s, t, last_close[s], commission[s],
                                   EXIT_OUT_OF_MONEY, 0, slots)
                    n_ev += 1
                    n_trades += 1
            for j in range(t, n):
                if keep:
                    equity[j] = 0.0
                    free_cash[j] = 0.0
                    for s in range(n_inst):
                        pnl[s, j] = realized[s]
                else:
                    nd, next_end, peak, trough, mdd, exposed = _fold_bar(j, 0.0, False, day_ends, day_eq, nd,
                                                                         next_end, peak, trough, mdd, exposed)
            final = 0.0
            break
        drawdown_monitors(eq, t, threats.dd_limit, threats.dd_cooldown, dd_peak, dd_halt_end, dd_active)

        # 4. decisions at the close, in basket order
        while p < m and opp_bar[p] < t:
            p += 1
        while p < m and opp_bar[p] == t:
            s = inst_of[p]
            d = opp_dir[p]
            _ev(journal, n_ev, s, t, EV_OPPORTUNITY_DETECTED, p, -1, d, -1, 0, 0, 0)
            n_ev += 1
            detected += 1
            if delist_at[s] == t:
                # no bar follows to fill it: the delisting is declared
                _ev(journal, n_ev, s, t, EV_OPPORTUNITY_SKIPPED, p, -1, d, -1, REASON_DELISTED, 0, 0)
                n_ev += 1
                p += 1
                continue
            if reverse > 0 and pos[s] != 0.0 and (pos[s] > 0) != (d > 0):
                exit_pending[s] = True
            if (d > 0 and not rules.allow_long) or (d < 0 and not rules.allow_short):
                _ev(journal, n_ev, s, t, EV_OPPORTUNITY_SKIPPED, p, -1, d, -1, REASON_DIRECTION_NOT_ALLOWED, 0, 0)
                n_ev += 1
                p += 1
                continue
            first = -1
            active = 0
            bit = 1 if d > 0 else 2
            for u in range(k):
                hit = dd_active[u] if not math.isnan(threats.dd_limit[u]) else (threats.mask[s, u, t] & bit) != 0
                if hit:
                    active |= 1 << u
                    if first < 0:
                        first = u
            if first >= 0:
                _ev(journal, n_ev, s, t, EV_OPPORTUNITY_REJECTED, p, -1, d, first, threats.reason[first], active, 0)
                n_ev += 1
                rejected += 1
            elif pos[s] != 0.0 and not exit_pending[s] and reverse < 2:
                _ev(journal, n_ev, s, t, EV_OPPORTUNITY_SKIPPED, p, -1, d, -1, REASON_IN_POSITION, 0, 0)
                n_ev += 1
            elif ord_opp[s] >= 0:
                _ev(journal, n_ev, s, t, EV_OPPORTUNITY_SKIPPED, p, -1, d, -1, REASON_ORDER_PENDING, 0, 0)
                n_ev += 1
            elif t < n - 1:
                # an order on an instrument's last bar before a gap (or before it ends) waits for
                # its next bar: that no bar follows is future data (it holds a slot meanwhile)
                busy = 0
                for u in range(n_inst):
                    # a position due to close at its next open still counts: that open may come
                    # after this order's fill (the instruments' bars need not coincide)
                    if u != s and (pos[u] != 0.0 or ord_opp[u] >= 0):
                        busy += 1
                if max_positions > 0 and busy >= max_positions:
                    _ev(journal, n_ev, s, t, EV_OPPORTUNITY_SKIPPED, p, -1, d, -1, REASON_MAX_POSITIONS, 0, 0)
                    n_ev += 1
                else:
                    if pos[s] != 0.0:
                        exit_pending[s] = True  # exclusive orders: a new setup closes the open position
                    ord_opp[s] = p
                    n_orders += 1
                    ord_own[s] = own[s]
                    _ev(journal, n_ev, s, t, EV_ORDER_PLACED, p, -1, d, -1, 0, 0, 0)
                    n_ev += 1
            p += 1

        # the basket's last bar: what is still held closes (finalize). Not before: whether an
        # instrument's bars go on is future data, so one whose file ends early keeps its slot
        # and margin to here, and closes at the last close it is marked at, its row on its
        # own last bar; one with a bar here closes at this bar's open, as a single run does
        if finalize and t == n - 1:
            closed = False
            for s in range(n_inst):
                if pos[s] != 0.0:
                    d = 1.0 if pos[s] > 0 else -1.0
                    px = open_[s, t] if has[s, t] else last_close[s]
                    cash += _close(trades, journal, n_trades, n_ev, book, s, last_t[s], px * (1.0 - d * slippage[s]),
                                   commission[s], EXIT_END_OF_DATA, 0, slots)
                    n_ev += 1
                    n_trades += 1
                    closed = True
            if closed and keep:
                eq, margin = _equity_margin(cash, pos, last_close, entry_price, leverage)
            elif closed:
                eq = _equity(cash, pos, last_close, entry_price)

        # the bar's books, once its last trade has closed
        if keep:
            equity[t] = eq
            free_cash[t] = cash - margin
            for s in range(n_inst):
                position[s, t] = pos[s]
                pnl[s, t] = realized[s]
                if pos[s] != 0.0:
                    pnl[s, t] += pos[s] * (last_close[s] - entry_price[s]) - entry_comm[s]
        else:
            held = False
            for s in range(n_inst):
                if pos[s] != 0.0:
                    held = True
                    break
            nd, next_end, peak, trough, mdd, exposed = _fold_bar(t, eq, held, day_ends, day_eq, nd, next_end, peak,
                                                                 trough, mdd, exposed)
            final = eq

    vec = np.empty(0)
    if not keep:
        # the closed trades' rows in entry order (a trade still open has none)
        n_closed = 0
        for j in range(n_opened):
            if slots[j] >= 0:
                slots[n_closed] = slots[j]
                n_closed += 1
        if ranked:
            # fills of one bar came by score: the trades table's order is entry bar, then basket
            _entry_then_basket(trades, slots, n_closed)
        vec = _metric_vector(trades, slots, n_closed, nd, day_eq, peak, trough, mdd, exposed, final, detected,
                             rejected, n, cash0, ppy, years)
    return equity, free_cash, position, pnl, trades, n_trades, journal, n_ev, vec


@njit(parallel=True, cache=True, nogil=True)
def sweep_portfolio(basket, calendar, groups, combos, rules, account, returns_out, n_blocks):
    """Metric vectors of a portfolio sweep, one row per combination of ``combos``
    (:class:`~metaflow_nb.engine.records.BasketCombos`), each the metrics-only run of
    :func:`_loop` over the shared prices of ``basket`` (its ``setup_inst`` unused) with
    combination ``c``'s merged setups, instruments and threat masks (its group's, of
    ``groups``: :class:`~metaflow_nb.engine.records.BasketGroups`), levels, drawdown limits
    and rules (``rules`` gives the fields no combination varies: the path exits the loop
    does not apply). ``calendar`` is the union calendar's
    :class:`~metaflow_nb.engine.records.Calendar`; ``returns_out`` is (combinations x days)
    to keep each combination's daily returns (those of the single run's total equity), or
    (0 x 0) to keep metrics only; ``n_blocks`` (a few per thread) is how many interleaved
    blocks of combinations run in parallel, each reusing one set of work arrays (day-end
    equities, trades, their entry order). ``assembly.portfolio.sweep_shared`` packs the
    records and calls it (an example there).
    """
    n_combo = combos.group.shape[0]
    n_inst, n = basket.close.shape[0], basket.close.shape[1]
    day_ends = np.flatnonzero(calendar.day_end)
    cap = n_inst
    for g in range(groups.opp_off.shape[0] - 1):
        cap = max(cap, groups.opp_off[g + 1] - groups.opp_off[g] + n_inst)
    out = np.empty((n_combo, N_METRICS))
    n_blocks = max(1, min(n_combo, n_blocks))
    keep_returns = returns_out.shape[0] > 0
    for blk in prange(n_blocks):
        scratch = np.empty(0 if keep_returns else day_ends.shape[0])
        work = np.empty(cap, dtype=PORTFOLIO_TRADE_DTYPE)
        slots = np.empty(cap, dtype=np.int64)
        for c in range(blk, n_combo, n_blocks):
            g = combos.group[c]
            a = groups.opp_off[g]
            b = groups.opp_off[g + 1]
            at = combos.levels_at[c]
            limit = combos.limit[at[0]:at[1]]
            # partial: never read (the portfolio loop has no partial take-profit)
            setups = Setups(groups.bar[a:b], groups.direction[a:b], limit, combos.cancel[at[2]:at[3]],
                            combos.stop[at[4]:at[5]], combos.target[at[6]:at[7]], limit)
            own_basket = Basket(basket.open, basket.high, basket.low, basket.close, basket.has, groups.inst[a:b],
                                groups.score[a:b], basket.commission, basket.slippage, basket.max_positions,
                                basket.delist_at)
            threats = Threats(groups.mask[g], combos.dd_limit[c], combos.dd_cooldown[c], groups.reason)
            own_rules = Rules(combos.stop_mode[c], combos.target_mode[c], combos.reverse[c], combos.allow_long[c],
                              combos.allow_short[c], combos.expiry_bars[c], combos.sizer_kind[c],
                              combos.sizer_param[c], combos.whole_units[c], combos.time_stop_bars[c],
                              rules.trail_mode, rules.trail_param, rules.breakeven_r, rules.partial_mode,
                              rules.partial_fraction)
            # the day-end equities, made the daily returns by the metrics
            day_eq = returns_out[c] if keep_returns else scratch
            res = _loop(own_basket, setups, threats, own_rules, account, False, day_ends, day_eq, work, slots,
                        calendar.periods_per_year, calendar.years)
            out[c] = res[8]
    return out
