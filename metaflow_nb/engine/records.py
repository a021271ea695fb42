"""The named records the compiled kernels take and return.

Kernels receive a handful of NamedTuples instead of long positional lists, and write
trades and journal events into structured arrays; this module is the one place that
says what each field means. Numba compiles NamedTuples of arrays and scalars natively
(one type per field layout), so :func:`rules` and :func:`account` fix the scalar types:
an ``int`` where a ``float`` was compiled before would compile a second specialisation.

An instrument axis (several instruments' ``Bars``) and timeframe-aligned or intrabar
arrays are further fields or further records beside these, not new argument lists.

>>> import numpy as np
>>> b = bars(np.ones(3), np.ones(3), np.ones(3), np.ones(3))
>>> b.close.shape, rules().stop_mode, account(10_000).cash
((3,), 0, 10000.0)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import codes


_NO_FLOATS = np.zeros(0)
_NO_INTS = np.zeros(0, dtype=np.int64)
_NO_FLOATS.flags.writeable = False  # the types of :func:`frozen` arrays: one compiled loop
_NO_INTS.flags.writeable = False


class Bars(NamedTuple):
    """Per-bar prices of one instrument (float64, contiguous, equal lengths), and the
    finer bars inside each of them when intrabar resolution is on.

    ``fine_start[i]:fine_end[i]`` (int64, one per bar) index the finer bars of bar ``i``
    in ``fine_open``/``fine_high``/``fine_low``; empty arrays (the default): no finer
    data, ambiguous bars are decided by the pessimistic rule (the stop first).
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    fine_start: np.ndarray = _NO_INTS
    fine_end: np.ndarray = _NO_INTS
    fine_open: np.ndarray = _NO_FLOATS
    fine_high: np.ndarray = _NO_FLOATS
    fine_low: np.ndarray = _NO_FLOATS


class Setups(NamedTuple):
    """Accepted-or-not candidate setups, sorted by the bar they are stamped on.

    ``bar`` and ``direction`` (+1/-1) are int64, one per setup. ``limit`` (NaN = market
    order), ``cancel`` (a close beyond it cancels an unfilled limit; NaN = never),
    ``stop`` and ``target`` (read by :attr:`Rules.stop_mode`/``target_mode``) are float64
    with one value per setup, or a single value that applies to every setup.
    """

    bar: np.ndarray
    direction: np.ndarray
    limit: np.ndarray
    cancel: np.ndarray
    stop: np.ndarray
    target: np.ndarray
    partial: np.ndarray


class Threats(NamedTuple):
    """The threat workers, in workforce order.

    ``mask[k, i]`` (int8) has bit 0 set when threat ``k`` blocks longs at bar ``i`` and
    bit 1 when it blocks shorts; a threat with a finite ``dd_limit`` (percent) is a
    drawdown monitor evaluated in the loop instead, halting for ``dd_cooldown`` bars.
    ``reason`` holds each threat's reason code (:mod:`.codes`).
    """

    mask: np.ndarray
    dd_limit: np.ndarray
    dd_cooldown: np.ndarray
    reason: np.ndarray


class Rules(NamedTuple):
    """How setups become orders and how positions end: the scalars of the plans."""

    stop_mode: int        # codes.PRICE_*: how Setups.stop becomes a price at the fill
    target_mode: int      # codes.PRICE_*
    reverse: int          # 0 hold, 1 exit on an opposite setup, 2 exclusive orders
    allow_long: bool
    allow_short: bool
    expiry_bars: int      # an unfilled limit expires after this many bars (0 = never)
    sizer_kind: int       # codes.SIZER_*
    sizer_param: float
    whole_units: bool
    time_stop_bars: int   # close at the open of the bar this many bars after the entry (0 = never)
    trail_mode: int       # codes.TRAIL_*: how the stop follows the trade (read with Exits)
    trail_param: float    # TRAIL_PERCENT: fraction of the best close; TRAIL_DISTANCE: multiple of Exits' distance
    breakeven_r: float    # move the stop to the entry once the bar reaches +this many R (0 = never)
    partial_mode: int     # codes.PRICE_*: how Setups.partial becomes the first take-profit's price
    partial_fraction: float  # the fraction of the position closed there (0 = no partial take-profit)


class Exits(NamedTuple):
    """Per-bar inputs of the exit rules that act on the path (float64; one value per bar,
    or a single value for every bar).

    ``trail_long``/``trail_short`` are what :attr:`Rules.trail_mode` reads for a long or a
    short position: a distance (``TRAIL_DISTANCE``, e.g. an ATR) or a stop level
    (``TRAIL_LEVEL``, e.g. the last swing low or high); NaN gives no candidate at that bar.
    ``flat_at[i]`` holds bar ``i``'s exits as bit flags (``codes.BAR_*``): ``BAR_FLAT``
    closes the open position at bar ``i``'s close (a session's end, a time of day);
    ``BAR_EXIT_LONG`` (``BAR_EXIT_SHORT``) closes a long (short) one at bar ``i + 1``'s
    open, like an opposite signal at ``i``'s close (an exit condition of a plugin; its
    reason is ``EXIT_CONDITION``, or ``SIGNAL`` when an opposite setup came first).
    """

    trail_long: np.ndarray
    trail_short: np.ndarray
    flat_at: np.ndarray


class Account(NamedTuple):
    """Money and costs of one account."""

    cash: float
    commission: float     # fraction of traded value, each side
    slippage: float       # fraction of price, on market and stop fills
    leverage: float
    finalize: bool        # close what is open at the last bar's open


def frozen(a: np.ndarray, dtype: "np.typing.DTypeLike" = np.float64) -> np.ndarray:
    """``a`` as a contiguous ``dtype`` array the kernels see read-only (a read-only view,
    no copy when it already is contiguous and of that dtype).

    Numba compiles one machine-code version per argument *type*, and a read-only array
    is another type than a writable one: pandas hands out read-only arrays, NumPy
    writable ones, so records mixing both would compile the bar loop once per mix (61
    versions in one test session, ~20 s of compiling each on a fresh machine).

    >>> frozen(np.arange(3.0)).flags.writeable
    False
    """
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def bars(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
         fine: "tuple | None" = None) -> Bars:
    """:class:`Bars` with float64 contiguous arrays (no copy when they already are);
    ``fine``: the finer bars inside each bar, ``(start, end, open, high, low)`` as
    :class:`metaflow_nb.data.intrabar.FinerBars` holds them, for intrabar resolution.

    >>> b = bars([1, 2], [2, 3], [0, 1], [1.5, 2.5])
    >>> b.close.tolist(), b.close.dtype.name, b.close.flags.writeable
    ([1.5, 2.5], 'float64', False)
    """
    prices = [frozen(a) for a in (open_, high, low, close)]
    if fine is None:
        return Bars(*prices)
    if fine[0].shape[0] != prices[0].shape[0]:
        raise ValueError(f"finer bars are mapped onto {fine[0].shape[0]} bars, the run has {prices[0].shape[0]}")
    start, end, f_open, f_high, f_low = fine
    return Bars(*prices, frozen(start, np.int64), frozen(end, np.int64), frozen(f_open), frozen(f_high),
                frozen(f_low))


def setups(bar: np.ndarray, direction: np.ndarray, limit: np.ndarray, cancel: np.ndarray, stop: np.ndarray,
           target: np.ndarray, partial: np.ndarray) -> Setups:
    """:class:`Setups` with the types the kernels are compiled for (int64 bars and
    directions, float64 levels, all read-only: :func:`frozen`).

    >>> s = setups([3], [1], [np.nan], [np.nan], [98.0], [np.nan], [np.nan])
    >>> s.bar.dtype.name, s.stop.tolist()
    ('int64', [98.0])
    """
    return Setups(frozen(bar, np.int64), frozen(direction, np.int64), frozen(limit), frozen(cancel), frozen(stop),
                  frozen(target), frozen(partial))


def rules(stop_mode: int = codes.PRICE_NONE, target_mode: int = codes.PRICE_NONE, reverse: int = 0,
          allow_long: bool = True, allow_short: bool = True, expiry_bars: int = 0,
          sizer_kind: int = codes.SIZER_ALL_IN, sizer_param: float = 1.0, whole_units: bool = True,
          time_stop_bars: int = 0, trail_mode: int = codes.TRAIL_NONE, trail_param: float = 0.0,
          breakeven_r: float = 0.0, partial_mode: int = codes.PRICE_NONE, partial_fraction: float = 0.0) -> Rules:
    """:class:`Rules` with the scalar types the kernels are compiled for.

    >>> r = rules(reverse=True, whole_units=0)
    >>> r.reverse, r.whole_units, r.sizer_kind == codes.SIZER_ALL_IN
    (1, False, True)
    """
    return Rules(int(stop_mode), int(target_mode), int(reverse), bool(allow_long), bool(allow_short),
                 int(expiry_bars), int(sizer_kind), float(sizer_param), bool(whole_units), int(time_stop_bars),
                 int(trail_mode), float(trail_param), float(breakeven_r), int(partial_mode), float(partial_fraction))


def no_exits() -> Exits:
    """:class:`Exits` of a plan without path-dependent exit rules.

    >>> no_exits().flat_at.tolist()
    [0.0]
    """
    nan = np.full(1, np.nan)
    return Exits(nan, nan, np.zeros(1))


def account(cash: float, commission: float = 0.0, slippage: float = 0.0, leverage: float = 1.0,
            finalize: bool = False) -> Account:
    """:class:`Account` with the scalar types the kernels are compiled for.

    >>> account(10_000, commission=0.001)
    Account(cash=10000.0, commission=0.001, slippage=0.0, leverage=1.0, finalize=False)
    """
    return Account(float(cash), float(commission), float(slippage), float(leverage), bool(finalize))


class Basket(NamedTuple):
    """Several instruments on the union of their timestamps, for the portfolio loop
    (:mod:`.nb.portfolio`).

    ``open``/``high``/``low``/``close`` are (instruments x union bars) float64, NaN where
    ``has`` (bool, same shape) is False: the instrument has no bar there. The assembly
    lays them out in column (Fortran) order, every instrument of one bar side by side,
    as the loop reads them; any layout gives the same results. ``setup_inst``
    (int64) names the instrument of each setup of the :class:`Setups` beside it (sorted by
    union bar, then instrument); ``commission``/``slippage`` are per instrument;
    ``max_positions`` caps open positions plus waiting entry orders (0: no cap).
    ``setup_score`` (float64) is empty when simultaneous setups go in basket order
    (``rank: basket``), else each setup's score (``rank: score``: the setups are sorted
    by union bar, then score, highest first, then instrument, and the entries waiting at
    a bar fill by their setups' scores, ties in basket order). ``delist_at`` (int64, per
    instrument) is the union bar of a declared delisting (-1: none): the
    instrument's last bar in its file, when that lies before the basket's last bar; there,
    what it holds closes at the close.
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    has: np.ndarray
    setup_inst: np.ndarray
    setup_score: np.ndarray
    commission: np.ndarray
    slippage: np.ndarray
    max_positions: int
    delist_at: np.ndarray


class PortfolioRecords(NamedTuple):
    """What :func:`.nb.portfolio.simulate_portfolio` returns: the portfolio's equity and
    free cash (cash less the open positions' margin) at every union bar, each instrument's
    position and pnl to date (net of commissions, open positions at the last close; both
    instruments x bars: the pnl of a bar's column adds up to its equity less the starting
    cash), and the trades and journal (with ``inst``)."""

    equity: np.ndarray
    free_cash: np.ndarray
    position: np.ndarray
    pnl: np.ndarray
    trades: np.ndarray
    journal: np.ndarray


class BasketGroups(NamedTuple):
    """The per-group arrays of a portfolio sweep (:func:`.nb.portfolio.sweep_portfolio`):
    a group is the combinations with the same features on every instrument.

    Group ``g`` owns the merged setups ``opp_off[g]:opp_off[g + 1]`` of ``bar`` (union
    bars), ``direction`` and ``inst`` (the instrument), sorted by union bar, then
    instrument, then the instrument's own order (``rank: score``: by union bar, then
    ``score``, highest first, then instrument; ``score`` is empty in basket order), and
    the threat masks ``mask[g]`` (groups x instruments x threats x union bars, int8);
    ``reason`` is per threat.
    """

    opp_off: np.ndarray
    bar: np.ndarray
    direction: np.ndarray
    inst: np.ndarray
    score: np.ndarray
    mask: np.ndarray
    reason: np.ndarray


class BasketCombos(NamedTuple):
    """What each combination of a portfolio sweep brings of its own.

    Combination ``c`` belongs to group ``group[c]``; its merged levels are
    ``limit[levels_at[c, 0]:levels_at[c, 1]]``, ``cancel[...2:...3]``, ``stop[...4:...5]``
    and ``target[...6:...7]`` (one value per setup of its group, or one for all of them);
    ``dd_limit``/``dd_cooldown`` (combinations x threats) its drawdown monitors; the rest
    are its fields of :class:`Rules` (the path exits are not in the portfolio loop).
    """

    group: np.ndarray
    levels_at: np.ndarray
    limit: np.ndarray
    cancel: np.ndarray
    stop: np.ndarray
    target: np.ndarray
    dd_limit: np.ndarray
    dd_cooldown: np.ndarray
    stop_mode: np.ndarray
    target_mode: np.ndarray
    reverse: np.ndarray
    allow_long: np.ndarray
    allow_short: np.ndarray
    expiry_bars: np.ndarray
    sizer_kind: np.ndarray
    sizer_param: np.ndarray
    whole_units: np.ndarray
    time_stop_bars: np.ndarray


#: one closed trade
TRADE_DTYPE = np.dtype([
    ("opp", np.int64),          # index of its setup in Setups
    ("direction", np.int64),    # +1 long, -1 short
    ("entry_bar", np.int64),
    ("exit_bar", np.int64),
    ("entry_price", np.float64),
    ("exit_price", np.float64),
    ("size", np.float64),       # units, positive
    ("pnl", np.float64),        # net of both commissions
    ("commission", np.float64),
    ("exit_reason", np.int64),  # codes.EXIT_*
    ("stop", np.float64),       # the stop and target prices fixed at the fill (NaN: none)
    ("target", np.float64),
])

#: one journal event
JOURNAL_DTYPE = np.dtype([
    ("bar", np.int64),
    ("event", np.int64),        # codes.EV_*
    ("opp", np.int64),          # setup index, -1 for none
    ("trade", np.int64),        # trade index, -1 for none
    ("direction", np.int64),
    ("threat", np.int64),       # index of the first threat that rejected, -1 for none
    ("reason", np.int64),       # codes.REASON_* / EXIT_*
    ("active", np.int64),       # bit t set: threat t was active
    ("rule", np.int64),         # codes.FILL_RULE_*: what decided a trade's exit on its bar
])


#: a portfolio's trade and journal event: the single run's fields and the instrument
PORTFOLIO_TRADE_DTYPE = np.dtype(TRADE_DTYPE.descr + [("inst", np.int64)])
PORTFOLIO_JOURNAL_DTYPE = np.dtype(JOURNAL_DTYPE.descr + [("inst", np.int64)])


class RunRecords(NamedTuple):
    """What :func:`.nb.simulate.simulate` returns: per-bar equity and position at each
    close, and the trades and journal it recorded (exactly ``n`` rows each)."""

    equity: np.ndarray
    position: np.ndarray
    trades: np.ndarray
    journal: np.ndarray


#: what a metrics-only run accumulates instead of keeping equity, trades and journal
#: (:func:`.nb.simulate.simulate_metrics`): trade sums in the order ``run_metrics`` adds
#: them, the drawdown and exposure of the marked equity, the event counts, the final
#: equity, the day count
ACC_WINS, ACC_GROSS_WIN, ACC_GROSS_LOSS, ACC_RET, ACC_DUR, ACC_MAX_DD, ACC_EXPOSED, \
    ACC_DETECTED, ACC_REJECTED, ACC_FINAL, ACC_DAYS = range(11)
N_ACC = 11


class Calendar(NamedTuple):
    """What the metrics need of the bar index: ``day_end[i]`` is True at the last bar of
    each calendar day; periods per year annualise; ``years`` is the span for CAGR."""

    day_end: np.ndarray
    periods_per_year: float
    years: float


class SweepGroups(NamedTuple):
    """The per-bar arrays of a sweep's groups (combinations with the same features).

    Group ``g`` owns setups ``opp_off[g]:opp_off[g + 1]`` of ``bar``/``direction`` and the
    threat masks ``mask[g]`` (groups x threats x bars); ``reason`` is per threat.
    """

    opp_off: np.ndarray
    bar: np.ndarray
    direction: np.ndarray
    mask: np.ndarray
    reason: np.ndarray


class SweepCombos(NamedTuple):
    """What each combination of a sweep brings of its own.

    Combination ``c`` belongs to group ``group[c]``; its levels are
    ``limit[levels_at[c, 0]:levels_at[c, 1]]``, ``cancel[levels_at[c, 2]:...3]``,
    ``stop[...4:...5]``, ``target[...6:...7]`` and ``partial[...8:...9]`` (one value per setup of its group, or
    one for all of them; combinations with the same levels share one slice); likewise
    its :class:`Exits` arrays at ``exits_at[c]`` (trail_long, trail_short, flat_at: one
    value per bar or one for all). The rest are its per-threat drawdown limits and its
    scalars of :class:`Rules`.
    """

    group: np.ndarray
    limit: np.ndarray
    cancel: np.ndarray
    stop: np.ndarray
    target: np.ndarray
    levels_at: np.ndarray
    dd_limit: np.ndarray
    dd_cooldown: np.ndarray
    expiry_bars: np.ndarray
    sizer_param: np.ndarray
    time_stop_bars: np.ndarray
    trail_param: np.ndarray
    breakeven_r: np.ndarray
    partial: np.ndarray
    partial_fraction: np.ndarray
    trail_long: np.ndarray
    trail_short: np.ndarray
    flat_at: np.ndarray
    exits_at: np.ndarray
