"""The compiled bar loop: orders, fills, stops, threats, equity and the journal.

One call simulates one strategy on one instrument. Everything that does not depend on
the path (indicators, opportunities, stop/target levels fixed at decision time, threat
masks) is computed beforehand as arrays; this loop only does what needs the path:
positions, fills, equity, the drawdown threat and the journal.

Per bar ``i`` the order of work is fixed (see the README, "Backtest semantics"):

1. a pending exit (an opposite signal or an exit condition at ``i-1``) fills at
   ``open[i]``; then the time stop: a position entered ``Rules.time_stop_bars`` bars ago
   exits at ``open[i]``;
2. stop then target of the open position (stop wins when both are touched, unless finer
   bars inside the bar show the target came first: ``Bars.fine_*``, :func:`_decide`);
3. the pending entry order: market at ``open[i]``; limit when the bar trades through it;
   after a market fill its stop and target are live on the same bar; then the bar's exits
   (``Exits.flat_at``): flat at ``close[i]``, or an exit condition of the position's side
   that makes the exit pending for ``open[i+1]``;
4. equity is marked at ``close[i]``; the drawdown monitors update;
5. decisions at the close: opportunities stamped on bar ``i`` are detected, checked
   against the threats in workforce order, and accepted ones become orders for ``i+1``.

Between setups most bars have nothing to do but mark the equity: no order waits, no exit
is pending. Those stretches run in a tight loop that only watches the open position's
stop and target (step 6 in the code); the first bar that touches one goes through the
full order of work. A run with a drawdown monitor takes the full path on every bar.

:func:`simulate` keeps equity, positions, trades and the journal; the batch sweep's
:func:`simulate_metrics` runs the same loop keeping only what the metrics need;
:func:`simulate_into` writes equity, positions and trades into the caller's reused arrays
(the basket sweep's runs).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..codes import (
    EV_OPPORTUNITY_DETECTED, EV_OPPORTUNITY_REJECTED, EV_OPPORTUNITY_SKIPPED, EV_ORDER_PLACED,
    EV_ORDER_CANCELLED, EV_ORDER_EXPIRED, EV_TRADE_OPENED, EV_TRADE_CLOSED,
    REASON_DIRECTION_NOT_ALLOWED, REASON_IN_POSITION, REASON_ORDER_PENDING,
    REASON_INSUFFICIENT_CASH, REASON_NO_STOP, REASON_ZONE_INVALIDATED, REASON_EXPIRED,
    EXIT_STOP_LOSS, EXIT_TAKE_PROFIT, EXIT_SIGNAL, EXIT_END_OF_DATA, EXIT_OUT_OF_MONEY, EXIT_TIME_STOP, EXIT_SESSION, EXIT_PARTIAL,
    EXIT_CONDITION,
    FILL_RULE_FINER, FILL_RULE_PESSIMISTIC, BAR_FLAT, BAR_EXIT_LONG, BAR_EXIT_SHORT, EXIT_NAME_MASK,
    EXIT_NAME_SHIFT_LONG, EXIT_NAME_SHIFT_SHORT,
    PRICE_NONE, PRICE_ABSOLUTE, PRICE_DISTANCE, PRICE_FRACTION, PRICE_R_MULTIPLE,
    SIZER_ALL_IN, SIZER_FIXED_FRACTION, SIZER_FIXED_RISK, TRAIL_DISTANCE, TRAIL_LEVEL, TRAIL_NONE, TRAIL_PERCENT,
)
from ..records import (
    ACC_DAYS, ACC_DETECTED, ACC_DUR, ACC_EXPOSED, ACC_FINAL, ACC_GROSS_LOSS, ACC_GROSS_WIN, ACC_MAX_DD,
    ACC_REJECTED, ACC_RET, ACC_WINS, JOURNAL_DTYPE, N_ACC, TRADE_DTYPE, RunRecords,
)
from .metrics import _fold_drawdown

# backtesting.py sizes "all in" orders as 1 - machine epsilon of the available margin
FULL_EQUITY = 1.0 - 2.220446049250313e-16


@njit(cache=True, inline="always")
def drawdown_monitors(eq, bar, dd_limit, dd_cooldown, dd_peak, dd_halt_end, dd_active):
    """Move the drawdown threats' state to the close of ``bar`` at equity ``eq`` (the
    single and the shared-account kernels share this rule): each monitor's peak, its
    cooldown's end and whether it blocks setups now (``dd_active``). A threat whose
    ``dd_limit`` is NaN is a mask threat and is left alone.

    >>> import numpy as np
    >>> peak, halt, active = np.full(1, 100.0), np.full(1, -1), np.zeros(1, np.bool_)
    >>> drawdown_monitors(85.0, 7, np.array([10.0]), np.array([3]), peak, halt, active)
    >>> float(peak[0]), int(halt[0]), bool(active[0])   # 15 % down: blocked until bar 10
    (100.0, 10, True)
    >>> drawdown_monitors(85.0, 10, np.array([10.0]), np.array([3]), peak, halt, active)
    >>> float(peak[0]), int(halt[0]), bool(active[0])   # cooled down: measured from 85 again
    (85.0, -1, False)
    """
    for t in range(dd_limit.shape[0]):
        if math.isnan(dd_limit[t]):
            continue
        if dd_halt_end[t] >= 0 and bar >= dd_halt_end[t]:
            # the cooldown is over: the monitor measures from here again
            dd_halt_end[t] = -1
            dd_peak[t] = eq
        if eq > dd_peak[t]:
            dd_peak[t] = eq
        dd = (dd_peak[t] - eq) / dd_peak[t] * 100.0
        if dd >= dd_limit[t] and dd_halt_end[t] < 0 and dd_cooldown[t] > 0:
            dd_halt_end[t] = bar + dd_cooldown[t]
        dd_active[t] = dd >= dd_limit[t] or dd_halt_end[t] >= 0

@njit(cache=True, inline="always")
def _at(levels, q):
    """Opportunity ``q``'s value of a per-opportunity array; an array of length 1 holds the
    same value for every opportunity (a constant stop or target needs no array)."""
    return levels[0] if levels.shape[0] == 1 else levels[q]


@njit(cache=True)
def _level(mode, value, fill, direction, stop):
    """Price of a stop or target fixed at fill time (NaN when there is none)."""
    if mode == PRICE_NONE or math.isnan(value):
        return np.nan
    if mode == PRICE_ABSOLUTE:
        return value
    if mode == PRICE_DISTANCE:
        return fill + direction * value
    if mode == PRICE_FRACTION:
        return fill * (1.0 + direction * value)
    if mode == PRICE_R_MULTIPLE:
        if math.isnan(stop):
            return np.nan
        # R is the distance to the stop: a stop the fill gapped past (on the wrong side)
        # still puts the level beyond the fill (bits unchanged when the stop is where it
        # belongs: a product with 1.0 and a negation are exact)
        return fill + direction * (value * abs(fill - stop))
    return np.nan


@njit(cache=True, inline="always")
def _skip_reason(kind, price, stop):
    """Why an order sized 0 is skipped: a fixed-risk size without a stop distance
    (``NO_STOP``), else too little cash for one unit (``INSUFFICIENT_CASH``)."""
    if kind == SIZER_FIXED_RISK and not abs(price - stop) > 0.0:
        return REASON_NO_STOP
    return REASON_INSUFFICIENT_CASH


@njit(cache=True)
def _size(kind, param, whole_units, equity, leverage, price, commission, stop):
    """Order size in units at fill time, 0 when nothing can be bought."""
    if equity <= 0.0:
        return 0.0
    # price plus commission per unit, spelled as backtesting.py spells it so all-in sizes
    # agree to the last unit
    adj = price + (FULL_EQUITY * price * commission) / FULL_EQUITY
    cap = equity * leverage * FULL_EQUITY / adj
    if kind == SIZER_ALL_IN:
        size = cap
    elif kind == SIZER_FIXED_FRACTION:
        size = min(equity * param / adj, cap)
    else:  # SIZER_FIXED_RISK: lose param % of equity if the stop is hit
        dist = abs(price - stop)
        if math.isnan(dist) or dist <= 0.0:
            return 0.0
        size = min(equity * param / 100.0 / dist, cap)
    if whole_units:
        size = (equity * leverage * FULL_EQUITY) // adj if kind == SIZER_ALL_IN else math.floor(size)
    return size


@njit(cache=True, inline="always")
def _event(journal, n_ev, bar, kind, opp, trade, direction, threat, reason, active):
    if journal.shape[0] == 0:
        return  # metrics-only run: no journal is kept
    e = journal[n_ev]
    e.bar = bar
    e.event = kind
    e.opp = opp
    e.trade = trade
    e.direction = direction
    e.threat = threat
    e.reason = reason
    e.active = active
    e.rule = 0


@njit(cache=True)
def _exit_hit(d, o, h, lo, stop, target, check_target, slippage):
    """Exit price and reason if the bar touches the stop (first) or the target, else (nan, 0).

    A bar that gaps through the stop fills at its open (worse than the stop); one that
    gaps through the target fills at its open (better). Stop fills pay slippage; target
    fills are limit orders and do not.
    """
    if not math.isnan(stop) and ((d > 0 and lo <= stop) or (d < 0 and h >= stop)):
        px = min(o, stop) if d > 0 else max(o, stop)
        return px * (1.0 - d * slippage), EXIT_STOP_LOSS
    if check_target and not math.isnan(target) and ((d > 0 and h >= target) or (d < 0 and lo <= target)):
        return (max(o, target) if d > 0 else min(o, target)), EXIT_TAKE_PROFIT
    return np.nan, 0


@njit(cache=True)
def _bar_exits(d, o, h, lo, stop, target, partial, check_target, slippage):
    """What a bar does to an open position: ``(partial fill price or NaN, exit price,
    exit reason or 0)``. The stop comes first (then nothing else fills), then the partial
    take-profit (NaN ``partial``: none pending; a limit order, a bar gapping through it
    fills at its better open), then the target when ``check_target``."""
    if math.isnan(partial):
        px, why = _exit_hit(d, o, h, lo, stop, target, check_target, slippage)
        return np.nan, px, why
    px, why = _exit_hit(d, o, h, lo, stop, np.nan, False, slippage)
    if why != 0:
        return np.nan, px, why
    ppx = np.nan
    if (d > 0 and h >= partial) or (d < 0 and lo <= partial):
        ppx = max(o, partial) if d > 0 else min(o, partial)
    px, why = _exit_hit(d, o, h, lo, np.nan, target, check_target, slippage)
    return ppx, px, why


@njit(cache=True, inline="always")
def _touched(d, h, lo, level):
    """Whether a bar reaches a take-profit ``level`` of a ``d`` position (NaN: none)."""
    return (d > 0 and h >= level) or (d < 0 and lo <= level)


@njit(cache=True)
def _replay(d, fo, fh, fl, j0, j1, first_open, stop, target, partial, first_full, slippage):
    """The exits of one bar decided on its finer bars ``j0:j1`` in time order: each finer
    bar is read as a bar of its own (a take-profit level its open is beyond fills at that
    open; then stop, partial take-profit, target; a finer bar touching two levels after its
    open is still decided pessimistically), the first touched wins.
    The first finer bar opens at ``first_open`` (the bar's open, or a limit's fill price)
    and, unless ``first_full``, checks the stop only (a limit filled inside it).
    Returns ``(partial fill price or NaN, exit price, exit reason or 0)`` as
    :func:`_bar_exits` does; ``(NaN, NaN, 0)`` when no finer bar touches a level."""
    ppx = np.nan
    for j in range(j0, j1):
        full = first_full or j > j0
        op = first_open if j == j0 else fo[j]
        if full:
            if not math.isnan(stop) and ((d > 0 and op <= stop) or (d < 0 and op >= stop)):
                return ppx, op * (1.0 - d * slippage), EXIT_STOP_LOSS  # opened beyond the stop: first
            # the open is a finer bar's first price: a take-profit it opens beyond filled
            # there, before any stop the rest of that bar may reach
            if _touched(d, op, op, partial):
                ppx = op
                partial = np.nan
            if _touched(d, op, op, target):
                return ppx, op, EXIT_TAKE_PROFIT
        a, px, why = _bar_exits(d, op, fh[j], fl[j], stop, target, partial if full else np.nan, full, slippage)
        if not math.isnan(a):
            ppx = a
            partial = np.nan
        if why != 0:
            return ppx, px, why
    return ppx, np.nan, 0


@njit(cache=True)
def _limit_fill_at(d, fh, fl, j0, j1, lim):
    """The first finer bar of ``j0:j1`` that trades through a limit at ``lim``, or -1."""
    for j in range(j0, j1):
        if (d > 0 and fl[j] <= lim) or (d < 0 and fh[j] >= lim):
            return j
    return -1


@njit(cache=True)
def _decide(bars, i, d, o, h, lo, stop, target, partial, full, slippage, lim, ppx, px, why):
    """Settle the exits ``(ppx, px, why)`` the bar rule gave for bar ``i`` when the bar
    was ambiguous: it touched the stop and a take-profit level (either may have come
    first), or, on a limit's fill bar (``full`` False), a take-profit level at all (it may
    have come before the fill). With finer bars inside bar ``i`` they decide, from the one
    a limit filled in; without them (or when none touches a level: data that disagree)
    the bar rule's pessimistic outcome stays. Returns ``(ppx, px, why, rule)``."""
    if not (_touched(d, h, lo, target) or _touched(d, h, lo, partial)):
        return ppx, px, why, 0   # no take-profit level in reach: one outcome only
    if full and why != EXIT_STOP_LOSS:
        return ppx, px, why, 0   # the stop was not touched: take-profits fill in price order
    if full and not math.isnan(stop) and ((d > 0 and o <= stop) or (d < 0 and o >= stop)):
        return ppx, px, why, 0   # the bar opened beyond the stop: it filled there, before anything else
    fs = bars.fine_start
    if fs.shape[0] == 0 or fs[i] >= bars.fine_end[i]:
        return ppx, px, why, FILL_RULE_PESSIMISTIC
    j0 = fs[i]
    if not full:
        j0 = _limit_fill_at(d, bars.fine_high, bars.fine_low, j0, bars.fine_end[i], lim)
        if j0 < 0:
            return ppx, px, why, FILL_RULE_PESSIMISTIC
    a, b, w = _replay(d, bars.fine_open, bars.fine_high, bars.fine_low, j0, bars.fine_end[i],
                      o, stop, target, partial, full, slippage)
    if w == 0 and math.isnan(a):
        if not full and why == 0:
            return ppx, px, why, FILL_RULE_FINER  # the finer bars confirm: nothing after the fill
        return ppx, px, why, FILL_RULE_PESSIMISTIC
    return a, b, w, FILL_RULE_FINER


@njit(cache=True)
def _take_partial(trades, journal, n_trades, n_ev, bar, opp, pos, entry_bar, entry_price, entry_comm, px, cash,
                  rules, account, stop, target, acc):
    """Close ``rules.partial_fraction`` of the position at ``px`` (whole units when sizing
    is in whole units; nothing when that rounds to 0) as a trade row of its own, with its
    share of the entry commission. Returns ``(cash, pos, entry_comm, n_trades, n_ev)``."""
    size = abs(pos)
    part = size * rules.partial_fraction
    if rules.whole_units:
        part = math.floor(part)
    if part <= 0.0:
        return cash, pos, entry_comm, n_trades, n_ev
    if part > size:
        part = size
    d = 1.0 if pos > 0 else -1.0
    share = entry_comm * (part / size)
    cash += _close_trade(trades, journal, n_trades, n_ev, bar, opp, d * part, entry_bar, entry_price, share, px,
                         account.commission, EXIT_PARTIAL, stop, target, acc)
    rest = size - part
    return cash, d * rest if rest > 0.0 else 0.0, entry_comm - share, n_trades + 1, n_ev + 1


@njit(cache=True, inline="always")
def _close_trade(trades, journal, n_trades, n_ev, bar, opp, pos, entry_bar, entry_price,
                 entry_comm, px, commission, why, stop, target, acc):
    """Fold a closed trade into ``acc`` (with the very expressions
    :func:`..metrics.run_metrics` applies to a record) and, when trades are kept, record it
    and its journal event; return the cash it releases."""
    d = 1.0 if pos > 0 else -1.0
    comm = abs(pos) * px * commission
    pnl = pos * (px - entry_price)
    net = pnl - comm - entry_comm
    if net > 0:
        acc[ACC_WINS] += 1.0
        acc[ACC_GROSS_WIN] += net
    elif net < 0:
        acc[ACC_GROSS_LOSS] -= net
    acc[ACC_RET] += net / (entry_price * abs(pos)) * 100.0
    acc[ACC_DUR] += float(bar) - float(entry_bar)
    if trades.shape[0] == 0:
        return pnl - comm
    t = trades[n_trades]
    t.opp = opp
    t.direction = 1 if pos > 0 else -1
    t.entry_bar = entry_bar
    t.exit_bar = bar
    t.entry_price = entry_price
    t.exit_price = px
    t.size = abs(pos)
    t.pnl = net
    t.commission = comm + entry_comm
    t.exit_reason = why
    t.stop = stop
    t.target = target
    _event(journal, n_ev, bar, EV_TRADE_CLOSED, opp, n_trades, int(d), -1, why, 0)
    return pnl - comm


@njit(cache=True)
def simulate(bars, setups, threats, rules, account, exits):
    """Simulate one strategy on one instrument; see the module docstring for the order of
    work per bar and :mod:`metaflow_nb.engine.records` for what each record holds.

    Returns :class:`~metaflow_nb.engine.records.RunRecords`: equity and position at every
    close, and the trades (``TRADE_DTYPE``) and journal events (``JOURNAL_DTYPE``).
    """
    out = _records(bars.close.shape[0], setups, rules)
    n_trades, n_ev = _run(bars, setups, threats, rules, account, exits, out, np.zeros(0, dtype=np.int64), np.empty(0),
                          np.zeros(N_ACC), False)
    return RunRecords(out.equity, out.position, out.trades[:n_trades], out.journal[:n_ev])


@njit(cache=True)
def simulate_into(bars, setups, threats, rules, account, exits, out, acc):
    """:func:`simulate` writing into the caller's arrays: ``out`` (a
    :class:`~metaflow_nb.engine.records.RunRecords` of work arrays) receives equity and
    position at every bar (both at least as long as the bars) and the trades (at least
    :func:`trade_rows` long); an empty ``out.journal`` keeps no journal. ``acc`` (zeros,
    ``records.N_ACC``) receives the trade sums and the detected and rejected setups, as
    :func:`simulate_metrics` folds them. Returns ``(n_trades, n_events)``. A sweep that
    runs many accounts reuses one set of arrays: no fresh memory per run."""
    return _run(bars, setups, threats, rules, account, exits, out, np.zeros(0, dtype=np.int64), np.empty(0), acc, False)


@njit(cache=True)
def trade_rows(setups, rules):
    """How many trade rows a run with these setups can write (a partial take-profit
    closes each trade in two rows at most)."""
    m = setups.bar.shape[0]
    return 2 * m + 2 if rules.partial_fraction > 0.0 else m + 1


@njit(cache=True)
def journal_rows(setups, rules):
    """How many journal events a run with these setups can write."""
    return (5 if rules.partial_fraction > 0.0 else 4) * (setups.bar.shape[0] + 1)


@njit(cache=True)
def _records(n_bars, setups, rules):
    """Fresh arrays for a run keeping trades and journal, and equity and position at each
    of ``n_bars`` bars (0: none)."""
    return RunRecords(np.empty(n_bars), np.empty(n_bars), np.empty(trade_rows(setups, rules), dtype=TRADE_DTYPE),
                      np.empty(journal_rows(setups, rules), dtype=JOURNAL_DTYPE))


@njit(cache=True)
def _no_records():
    """Work arrays that keep nothing: a metrics-only run."""
    return RunRecords(np.empty(0), np.empty(0), np.empty(0, dtype=TRADE_DTYPE), np.empty(0, dtype=JOURNAL_DTYPE))


@njit(cache=True)
def simulate_metrics(bars, setups, threats, rules, account, exits, day_ends, day_eq):
    """The same run as :func:`simulate`, keeping what the metrics need and nothing else.

    No equity, position, trade or journal arrays: ``day_ends`` holds the sorted indices of
    the bars that close a calendar day, ``day_eq`` (as long) receives the equity at each of
    them, and drawdown, exposure, trade sums and event counts are folded into the returned
    accumulator vector (``records.ACC_*``) with the same expressions, in the same order, as
    :func:`..metrics.run_metrics` applies to the arrays :func:`simulate` keeps;
    :func:`..metrics.stream_metrics` turns both into a metric vector equal to the last bit.
    Returns ``(acc, n_trades)``.
    """
    acc = np.zeros(N_ACC)
    out = _no_records()
    if _is_lean(rules, exits):
        n_trades, _ = _run(bars, setups, threats, rules, account, exits, out, day_ends, day_eq, acc, True)
    else:
        n_trades, _ = _run(bars, setups, threats, rules, account, exits, out, day_ends, day_eq, acc, False)
    return acc, n_trades


@njit(cache=True)
def simulate_events(bars, setups, threats, rules, account, exits, day_ends, day_eq):
    """:func:`simulate_metrics` that also keeps the trades and the journal: a whole
    backtest without one array per bar (equity and position are :func:`simulate`'s, on
    demand). Returns ``(acc, trades, journal)``."""
    acc = np.zeros(N_ACC)
    out = _records(0, setups, rules)
    n_trades, n_ev = _run(bars, setups, threats, rules, account, exits, out, day_ends, day_eq, acc, False)
    return acc, out.trades[:n_trades], out.journal[:n_ev]


@njit(cache=True)
def _path_exits(rules, exits):
    """True when an exit rule acts on the path of an open position (trailing stop,
    break-even move, a flat-at time): such a position needs every bar."""
    if rules.trail_mode != TRAIL_NONE or rules.breakeven_r > 0.0:
        return True
    for j in range(exits.flat_at.shape[0]):
        if exits.flat_at[j] != 0.0:
            return True
    return False


@njit(cache=True)
def _is_lean(rules, exits):
    """True when no exit rule acts on the path and there is no partial take-profit (the
    loop compiled without them is faster)."""
    return not rules.partial_fraction > 0.0 and not _path_exits(rules, exits)


@njit(cache=True)
def _follow(long_, i, h, lo, c, entry, stop, best, risk, at_breakeven, rules, exits):
    """The stop of an open position for the bar after ``i``: the break-even move once the
    bar has reached +``breakeven_r`` R, then the trailing stop's candidate; the stop only
    moves in the trade's favour. Returns ``(stop, best close, at_breakeven)``."""
    sign = 1.0 if long_ else -1.0
    cand = np.nan
    if rules.breakeven_r > 0.0 and not at_breakeven and risk > 0.0:
        reached = h >= entry + rules.breakeven_r * risk if long_ else lo <= entry - rules.breakeven_r * risk
        if reached:
            cand = entry
            at_breakeven = True
    mode = rules.trail_mode
    trail = np.nan
    if mode == TRAIL_PERCENT:
        if (long_ and c > best) or (not long_ and c < best):
            best = c
        trail = best * (1.0 - sign * rules.trail_param)
    elif mode == TRAIL_DISTANCE:
        trail = c - sign * rules.trail_param * _at(exits.trail_long if long_ else exits.trail_short, i)
    elif mode == TRAIL_LEVEL:
        trail = _at(exits.trail_long if long_ else exits.trail_short, i)
    # NaN candidates compare false: no move
    if math.isnan(cand) or (long_ and trail > cand) or (not long_ and trail < cand):
        if not math.isnan(trail):
            cand = trail
    if not math.isnan(cand) and (math.isnan(stop) or (long_ and cand > stop) or (not long_ and cand < stop)):
        stop = cand
    return stop, best, at_breakeven


@njit(cache=True, inline="always")
def _nearer(target, partial, long_):
    """The level a long (short) position's bar must reach first, of two take-profit
    levels: the lower (higher) one; NaN (none) when both are NaN."""
    if math.isnan(partial):
        return target
    if math.isnan(target):
        return partial
    return min(target, partial) if long_ else max(target, partial)


def _marks(adverse, favour, close, i, end, s, stop_s, near_s, cash, pos, entry_price, day_ends, day_eq, nd, next_end,
           peak, trough, mdd, exposed):
    """Step 6 of a metrics-only run with a position open: mark bars ``i..end-1`` until one
    touches the stop (``s * adverse <= stop_s``) or a take-profit (``s * favour >= near_s``)
    or would ruin the account; fold each equity as step 4 does. Returns the first bar
    left for the full path and the folded state."""
    n_days = day_ends.shape[0]
    while i < end:
        if s * adverse[i] <= stop_s or s * favour[i] >= near_s:
            break
        eq = cash + pos * (close[i] - entry_price)
        if eq <= 0.0:
            break
        if i == next_end:
            day_eq[nd] = eq
            nd += 1
            next_end = day_ends[nd] if nd < n_days else -1
        peak, trough, mdd = _fold_drawdown(eq, peak, trough, mdd)
        exposed += 1
        i += 1
    return i, nd, next_end, peak, trough, mdd, exposed


# Two compilations of one loop. A long stretch is a call of its own: inside the bar loop,
# with every value of the full path live around it, the compiler kept this loop's values
# on the stack (+1 ns a bar); a short one is inlined, where the call would cost more.
_marks_call = njit(cache=True)(_marks)
_marks_inline = njit(cache=True, inline="always")(_marks)


@njit(cache=True)
def _run(bars, setups, threats, rules, account, exits, out, day_ends, day_eq, acc, lean):
    """The bar loop behind :func:`simulate`, :func:`simulate_into`, :func:`simulate_metrics`
    and :func:`simulate_events`. It writes into ``out`` (a
    :class:`~metaflow_nb.engine.records.RunRecords` of work arrays) what they have room
    for: equity and position at every bar (``keep``), trades, journal events; without
    ``keep`` the equity's metrics are folded into ``acc`` and ``day_eq``. Trade sums and
    event counts go to ``acc`` always. Returns ``(n_trades, n_events)``."""
    # the records' fields as locals: the loop below reads them on every bar
    open_, high, low, close = bars.open, bars.high, bars.low, bars.close
    opp_bar, opp_dir = setups.bar, setups.direction
    opp_limit, opp_cancel, opp_stop, opp_target = setups.limit, setups.cancel, setups.stop, setups.target
    opp_partial = setups.partial
    partial_mode, partial_fraction = rules.partial_mode, rules.partial_fraction
    threat_mask, threat_dd_limit = threats.mask, threats.dd_limit
    threat_dd_cooldown, threat_reason = threats.dd_cooldown, threats.reason
    stop_mode, target_mode, reverse = rules.stop_mode, rules.target_mode, rules.reverse
    allow_long, allow_short, expiry_bars = rules.allow_long, rules.allow_short, rules.expiry_bars
    sizer_kind, sizer_param, whole_units = rules.sizer_kind, rules.sizer_param, rules.whole_units
    time_stop = rules.time_stop_bars
    trail_mode, trail_param, breakeven_r = rules.trail_mode, rules.trail_param, rules.breakeven_r
    trail_long, trail_short, flat_at = exits.trail_long, exits.trail_short, exits.flat_at
    cash0, commission, slippage = account.cash, account.commission, account.slippage
    leverage, finalize = account.leverage, account.finalize
    n = close.shape[0]
    m = opp_bar.shape[0]
    k = threat_mask.shape[0]

    equity, position, trades, journal = out.equity, out.position, out.trades, out.journal
    keep = equity.shape[0] > 0
    n_trades = 0
    n_ev = 0
    # metrics-only run: what the metrics need of the equity, streamed bar by bar; the
    # day-end equities become returns later (a division per bar in this loop would cost
    # more than the rest of the bar's work)
    n_days = day_ends.shape[0]
    nd = 0
    next_end = day_ends[0] if n_days > 0 else -1
    peak = cash0
    trough = cash0
    mdd = 0.0
    exposed = 0
    last_eq = cash0
    last_pos = 0.0
    detected = 0
    rejected = 0

    cash = cash0
    pos = 0.0            # signed units held
    entry_price = 0.0
    entry_bar = -1
    entry_comm = 0.0
    cur_opp = -1
    cur_stop = np.nan
    cur_target = np.nan
    exit_pending = False
    pending_why = 0      # why the pending exit fills: the first cause in its bar (EXIT_CONDITION or EXIT_SIGNAL)
    best = np.nan        # best close since the entry (percent trailing stop)
    cur_partial = np.nan  # the partial take-profit's price while it has not filled
    risk = np.nan        # entry-to-stop distance at the fill: 1 R (break-even move)
    at_breakeven = False

    ord_opp = -1         # pending entry order (index into the opportunity arrays)
    ord_bar = -1

    dd_peak = np.full(k, cash0)
    dd_halt_end = np.full(k, -1)
    dd_active = np.zeros(k, dtype=np.bool_)

    p = 0
    broke = False
    last = n - 1
    # quiet stretches (step 6) are only skipped when no drawdown monitor needs every bar
    can_skip = True
    for t in range(k):
        if not math.isnan(threat_dd_limit[t]):
            can_skip = False
    # exit rules that act on the path need every bar of an open position
    path_exits = _path_exits(rules, exits)
    i = 0
    while i < n:
        o = open_[i]
        h = high[i]
        lo = low[i]
        c = close[i]

        # 1. exits at the open: the previous bar's opposite signal, else the time stop of a
        # trade that has lived its bars
        why = 0
        if pos != 0.0:
            if exit_pending:
                why = pending_why
            elif time_stop > 0 and i - entry_bar >= time_stop:
                why = EXIT_TIME_STOP
        exit_pending = False
        if why != 0:
            d = 1.0 if pos > 0 else -1.0
            px = o * (1.0 - d * slippage)
            cash += _close_trade(trades, journal, n_trades, n_ev, i, cur_opp, pos, entry_bar, entry_price,
                                 entry_comm, px, commission, why, cur_stop, cur_target, acc)
            n_ev += 1
            n_trades += 1
            pos = 0.0

        # 2. stop, then the partial take-profit, then the target, of a position opened on an
        # earlier bar
        if pos != 0.0:
            d = 1.0 if pos > 0 else -1.0
            if lean:
                ppx = np.nan
                px, why = _exit_hit(d, o, h, lo, cur_stop, cur_target, True, slippage)
            else:
                ppx, px, why = _bar_exits(d, o, h, lo, cur_stop, cur_target, cur_partial, True, slippage)
            rule = 0
            if why == EXIT_STOP_LOSS:  # a take-profit level may have come first
                ppx, px, why, rule = _decide(bars, i, d, o, h, lo, cur_stop, cur_target, cur_partial, True,
                                             slippage, np.nan, ppx, px, why)
            if not math.isnan(ppx):
                before = n_ev
                cash, pos, entry_comm, n_trades, n_ev = _take_partial(
                    trades, journal, n_trades, n_ev, i, cur_opp, pos, entry_bar, entry_price, entry_comm, ppx,
                    cash, rules, account, cur_stop, cur_target, acc)
                if rule != 0 and n_ev > before and journal.shape[0] > 0:
                    journal[before].rule = rule
                cur_partial = np.nan
            if why != 0 and pos != 0.0:
                cash += _close_trade(trades, journal, n_trades, n_ev, i, cur_opp, pos, entry_bar, entry_price,
                                     entry_comm, px, commission, why, cur_stop, cur_target, acc)
                if rule != 0 and journal.shape[0] > 0:
                    journal[n_ev].rule = rule
                n_ev += 1
                n_trades += 1
                pos = 0.0

        # 3. the pending entry order
        if ord_opp >= 0 and pos == 0.0:
            q = ord_opp
            d = float(opp_dir[q])
            lim = _at(opp_limit, q)
            is_market = math.isnan(lim)
            cl = _at(opp_cancel, q)
            # a limit whose bar opens beyond its cancel level (the zone's far edge): the zone
            # is invalidated at that open, before the order could fill at its own level
            gone = not is_market and not math.isnan(cl) and ((d > 0 and o < cl) or (d < 0 and o > cl))
            filled = False
            px = np.nan
            if is_market:
                px = o * (1.0 + d * slippage)
                filled = True
            elif not gone and ((d > 0 and lo <= lim) or (d < 0 and h >= lim)):
                # a bar that gaps through the limit fills at its (better) open
                px = min(o, lim) if d > 0 else max(o, lim)
                filled = True
            if filled:
                stop = _level(stop_mode, _at(opp_stop, q), px, -d, np.nan)
                target = _level(target_mode, _at(opp_target, q), px, d, stop)
                eq_now = cash  # flat here, so equity is cash
                size = _size(sizer_kind, sizer_param, whole_units, eq_now, leverage, px, commission, stop)
                if size <= 0.0 or (whole_units and size < 1.0):
                    _event(journal, n_ev, i, EV_OPPORTUNITY_SKIPPED, q, -1, int(d), -1,
                           _skip_reason(sizer_kind, px, stop), 0)
                    n_ev += 1
                else:
                    pos = d * size
                    entry_price = px
                    entry_bar = i
                    entry_comm = size * px * commission
                    cash -= entry_comm
                    cur_opp = q
                    cur_stop = stop
                    cur_target = target
                    best = px
                    risk = abs(px - stop)  # NaN without a stop: no break-even move
                    cur_partial = np.nan
                    if partial_fraction > 0.0:
                        cur_partial = _level(partial_mode, _at(opp_partial, q), px, d, stop)
                    at_breakeven = False
                    _event(journal, n_ev, i, EV_TRADE_OPENED, q, n_trades, int(d), -1, 0, 0)
                    n_ev += 1
                    # stops are live from the fill bar on; after a limit fill inside the bar
                    # only the stop is checked (pessimistic: the target may have come first)
                    # a limit fills inside the bar, after its open: the stop can fill no better than
                    # the fill price itself (a stop above a long's fill exits at the fill)
                    # (like the target, the partial take-profit is not checked on a limit's fill bar)
                    # a limit the bar opened beyond filled at the open, before the rest of the
                    # bar: its fill bar is a market fill's (stop, partial and target all live)
                    full = is_market or px == o
                    first_open = o if full else px
                    if lean:
                        ppx = np.nan
                        xp, why = _exit_hit(d, first_open, h, lo, stop, target, full, slippage)
                    else:
                        ppx, xp, why = _bar_exits(d, first_open, h, lo, stop, target,
                                                  cur_partial if full else np.nan, full, slippage)
                    rule = 0
                    if why == EXIT_STOP_LOSS or not full:
                        ppx, xp, why, rule = _decide(bars, i, d, first_open, h, lo, stop, target, cur_partial,
                                                     full, slippage, lim, ppx, xp, why)
                        if rule != 0 and journal.shape[0] > 0:
                            journal[n_ev - 1].rule = rule  # the opening: its fill bar was ambiguous
                    if not math.isnan(ppx):
                        before = n_ev
                        cash, pos, entry_comm, n_trades, n_ev = _take_partial(
                            trades, journal, n_trades, n_ev, i, q, pos, i, entry_price, entry_comm, ppx,
                            cash, rules, account, stop, target, acc)
                        if rule != 0 and n_ev > before and journal.shape[0] > 0:
                            journal[before].rule = rule
                        cur_partial = np.nan
                    if why != 0 and pos != 0.0:
                        cash += _close_trade(trades, journal, n_trades, n_ev, i, q, pos, i, entry_price,
                                             entry_comm, xp, commission, why, stop, target, acc)
                        if rule != 0 and journal.shape[0] > 0:
                            journal[n_ev].rule = rule
                        n_ev += 1
                        n_trades += 1
                        pos = 0.0
                ord_opp = -1
            else:
                # unfilled limit: cancelled when its bar opens or closes beyond the far edge, else expires
                if gone or (not math.isnan(cl) and ((d > 0 and c < cl) or (d < 0 and c > cl))):
                    _event(journal, n_ev, i, EV_ORDER_CANCELLED, q, -1, int(d), -1, REASON_ZONE_INVALIDATED, 0)
                    n_ev += 1
                    ord_opp = -1
                elif expiry_bars > 0 and i - ord_bar >= expiry_bars:
                    _event(journal, n_ev, i, EV_ORDER_EXPIRED, q, -1, int(d), -1, REASON_EXPIRED, 0)
                    n_ev += 1
                    ord_opp = -1

        # 3b. the bar's exits: a session's end or a time of day closes the position at this
        # bar's close; an exit condition of the position's side closes it at the next open
        # (as an opposite signal at this close does)
        bar_exits = 0 if lean or pos == 0.0 else int(_at(flat_at, i))
        if bar_exits & BAR_FLAT:
            d = 1.0 if pos > 0 else -1.0
            cash += _close_trade(trades, journal, n_trades, n_ev, i, cur_opp, pos, entry_bar, entry_price,
                                 entry_comm, c * (1.0 - d * slippage), commission, EXIT_SESSION, cur_stop,
                                 cur_target, acc)
            n_ev += 1
            n_trades += 1
            pos = 0.0
        elif (pos > 0.0 and bar_exits & BAR_EXIT_LONG) or (pos < 0.0 and bar_exits & BAR_EXIT_SHORT):
            exit_pending = True
            # the planner's own name for it, packed beside the flag (0: it names none)
            named = (bar_exits >> (EXIT_NAME_SHIFT_LONG if pos > 0.0 else EXIT_NAME_SHIFT_SHORT)) & EXIT_NAME_MASK
            pending_why = named if named != 0 else EXIT_CONDITION

        # 3c. the stop follows the trade for the next bar (only ever in its favour)
        if not lean and pos != 0.0 and (trail_mode != TRAIL_NONE or breakeven_r > 0.0):
            cur_stop, best, at_breakeven = _follow(pos > 0.0, i, h, lo, c, entry_price, cur_stop, best, risk,
                                                   at_breakeven, rules, exits)

        # 4. mark to market at the close
        eq = cash + pos * (c - entry_price) if pos != 0.0 else cash
        if eq <= 0.0:
            # out of money: liquidate at the close and stop trading, as backtesting.py does
            if pos != 0.0:
                d = 1.0 if pos > 0 else -1.0
                cash += _close_trade(trades, journal, n_trades, n_ev, i, cur_opp, pos, entry_bar, entry_price,
                                     entry_comm, c, commission, EXIT_OUT_OF_MONEY, cur_stop, cur_target, acc)
                n_ev += 1
                n_trades += 1
                pos = 0.0
            cash = 0.0
            if keep:
                for j in range(i, n):
                    equity[j] = 0.0
                    position[j] = 0.0
            else:
                for j in range(nd, n_days):
                    day_eq[j] = 0.0  # broke: the equity is 0 from this bar on
                nd = n_days
                trough = 0.0
            broke = True
            break
        if keep:
            equity[i] = eq
            position[i] = pos
        elif i < last:
            if i == next_end:
                day_eq[nd] = eq
                nd += 1
                next_end = day_ends[nd] if nd < n_days else -1
            peak, trough, mdd = _fold_drawdown(eq, peak, trough, mdd)
            if pos != 0.0:
                exposed += 1
        else:
            last_eq = eq  # streamed after the loop: finalize may still close at this bar
            last_pos = pos

        drawdown_monitors(eq, i, threat_dd_limit, threat_dd_cooldown, dd_peak, dd_halt_end, dd_active)

        # 5. decisions at the close of bar i
        while p < m and opp_bar[p] < i:
            p += 1  # stamped before the first bar of a slice; never happens on clean input
        while p < m and opp_bar[p] == i:
            d = opp_dir[p]
            _event(journal, n_ev, i, EV_OPPORTUNITY_DETECTED, p, -1, d, -1, 0, 0)
            n_ev += 1
            detected += 1
            if reverse > 0 and pos != 0.0 and (pos > 0) != (d > 0):
                if not exit_pending:
                    pending_why = EXIT_SIGNAL
                exit_pending = True
            if (d > 0 and not allow_long) or (d < 0 and not allow_short):
                _event(journal, n_ev, i, EV_OPPORTUNITY_SKIPPED, p, -1, d, -1, REASON_DIRECTION_NOT_ALLOWED, 0)
                n_ev += 1
                p += 1
                continue
            first = -1
            active = 0
            bit = 1 if d > 0 else 2
            for t in range(k):
                hit = dd_active[t] if not math.isnan(threat_dd_limit[t]) else (threat_mask[t, i] & bit) != 0
                if hit:
                    active |= 1 << t
                    if first < 0:
                        first = t
            if first >= 0:
                _event(journal, n_ev, i, EV_OPPORTUNITY_REJECTED, p, -1, d, first, threat_reason[first], active)
                n_ev += 1
                rejected += 1
            elif pos != 0.0 and not exit_pending and reverse < 2:
                _event(journal, n_ev, i, EV_OPPORTUNITY_SKIPPED, p, -1, d, -1, REASON_IN_POSITION, 0)
                n_ev += 1
            elif ord_opp >= 0:
                _event(journal, n_ev, i, EV_OPPORTUNITY_SKIPPED, p, -1, d, -1, REASON_ORDER_PENDING, 0)
                n_ev += 1
            elif i < last:
                if pos != 0.0:
                    if not exit_pending:
                        pending_why = EXIT_SIGNAL
                    exit_pending = True  # exclusive orders: a new setup closes the open position
                ord_opp = p
                ord_bar = i
                _event(journal, n_ev, i, EV_ORDER_PLACED, p, -1, d, -1, 0, 0)
                n_ev += 1
            p += 1

        # 6. quiet bars: up to the next setup's bar, with no order and no exit pending,
        # nothing can happen but a stop or target of the open position. Those bars only
        # mark the equity, in a tight loop; the first bar that touches a level (or would
        # ruin the account) goes back through steps 1-5.
        i += 1
        if can_skip and not exit_pending and ord_opp < 0:
            quiet_end = opp_bar[p] if p < m else last
            if quiet_end > last:
                quiet_end = last  # the last bar may finalize: always the full path
            if pos == 0.0:
                # flat: the equity is the cash on every one of them
                if keep:
                    for q in range(i, quiet_end):
                        equity[q] = cash
                        position[q] = 0.0
                else:
                    while 0 <= next_end < quiet_end:
                        day_eq[nd] = cash
                        nd += 1
                        next_end = day_ends[nd] if nd < n_days else -1
                if quiet_end > i:
                    i = quiet_end
            elif not path_exits:
                if time_stop > 0 and entry_bar + time_stop < quiet_end:
                    quiet_end = entry_bar + time_stop  # that bar's open closes the trade
                long_ = pos > 0.0
                # one loop for both sides, without a branch on the side in it: a long's bar
                # hits when low <= stop or high >= target, a short's when -high <= -stop or
                # -low >= -target (sign flips are exact; NaN levels compare false: none)
                s = 1.0 if long_ else -1.0
                adverse = low if long_ else high
                favour = high if long_ else low
                stop_s = s * cur_stop
                near_s = s * _nearer(cur_target, cur_partial, long_)
                if keep:
                    while i < quiet_end:
                        if s * adverse[i] <= stop_s or s * favour[i] >= near_s:
                            break
                        eq = cash + pos * (close[i] - entry_price)
                        if eq <= 0.0:
                            break
                        equity[i] = eq
                        position[i] = pos
                        i += 1
                elif quiet_end - i >= 64:
                    i, nd, next_end, peak, trough, mdd, exposed = _marks_call(
                        adverse, favour, close, i, quiet_end, s, stop_s, near_s, cash, pos, entry_price,
                        day_ends, day_eq, nd, next_end, peak, trough, mdd, exposed)
                else:
                    i, nd, next_end, peak, trough, mdd, exposed = _marks_inline(
                        adverse, favour, close, i, quiet_end, s, stop_s, near_s, cash, pos, entry_price,
                        day_ends, day_eq, nd, next_end, peak, trough, mdd, exposed)

    if finalize and not broke and pos != 0.0:
        # close what is still open at the last bar's open, like backtesting.py's finalize_trades
        d = 1.0 if pos > 0 else -1.0
        px = open_[last] * (1.0 - d * slippage)
        cash += _close_trade(trades, journal, n_trades, n_ev, last, cur_opp, pos, entry_bar, entry_price,
                             entry_comm, px, commission, EXIT_END_OF_DATA, cur_stop, cur_target, acc)
        n_ev += 1
        n_trades += 1
        pos = 0.0
        if keep:
            equity[last] = cash
            position[last] = 0.0
        else:
            last_eq = cash
            last_pos = 0.0

    if not keep:
        if not broke and n > 0:
            if last == next_end:
                day_eq[nd] = last_eq
                nd += 1
            peak, trough, mdd = _fold_drawdown(last_eq, peak, trough, mdd)
            if last_pos != 0.0:
                exposed += 1
        dd = (peak - trough) / peak  # the last peak's drawdown
        acc[ACC_MAX_DD] = dd if dd > mdd else mdd
        acc[ACC_DAYS] = nd
        acc[ACC_EXPOSED] = exposed
        acc[ACC_FINAL] = (0.0 if broke else last_eq) if n > 0 else cash0
    acc[ACC_DETECTED] = detected
    acc[ACC_REJECTED] = rejected
    return n_trades, n_ev
