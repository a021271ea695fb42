"""Integer codes shared by the compiled kernels and the pandas-facing layer.

Kernels only see integers; :mod:`metaflow_nb.assembly.frames` turns them into the
names users read in ``.journal`` and ``.trades``.
"""
from __future__ import annotations

import re
import threading
from typing import Iterable

# journal event types
EV_OPPORTUNITY_DETECTED = 1
EV_OPPORTUNITY_REJECTED = 2
EV_OPPORTUNITY_SKIPPED = 3
EV_ORDER_PLACED = 4
EV_ORDER_CANCELLED = 5
EV_ORDER_EXPIRED = 6
EV_TRADE_OPENED = 7
EV_TRADE_CLOSED = 8

EVENT_NAMES = {
    EV_OPPORTUNITY_DETECTED: "OPPORTUNITY_DETECTED",
    EV_OPPORTUNITY_REJECTED: "OPPORTUNITY_REJECTED",
    EV_OPPORTUNITY_SKIPPED: "OPPORTUNITY_SKIPPED",
    EV_ORDER_PLACED: "ORDER_PLACED",
    EV_ORDER_CANCELLED: "ORDER_CANCELLED",
    EV_ORDER_EXPIRED: "ORDER_EXPIRED",
    EV_TRADE_OPENED: "TRADE_OPENED",
    EV_TRADE_CLOSED: "TRADE_CLOSED",
}

# reasons: threat reasons (rejections), skip/cancel reasons, exit reasons
REASON_NONE = 0
REASON_MAX_DRAWDOWN = 1
REASON_VOLATILITY_SPIKE = 2
REASON_MARKET_RISK = 3
REASON_SESSION_CLOSED = 4
REASON_DIRECTION_NOT_ALLOWED = 20
REASON_IN_POSITION = 21
REASON_ORDER_PENDING = 22
REASON_INSUFFICIENT_CASH = 23
REASON_MAX_POSITIONS = 24  # portfolio mode: max_positions positions and entry orders are open or waiting
REASON_NO_STOP = 25  # a fixed-risk size needs the setup's stop: it is missing (NaN) or at the fill price
REASON_DELISTED = 26  # portfolio mode: a setup, or an entry order waiting, on a delisted instrument's last bar
REASON_ZONE_INVALIDATED = 30
REASON_EXPIRED = 31
EXIT_STOP_LOSS = 40
EXIT_TAKE_PROFIT = 41
EXIT_SIGNAL = 42
EXIT_END_OF_DATA = 43
EXIT_OUT_OF_MONEY = 44
EXIT_TIME_STOP = 45
EXIT_SESSION = 46
EXIT_PARTIAL = 47
EXIT_CONDITION = 48  # a planner's exit condition (ExitPlan.exit_long / exit_short) at the previous close
EXIT_DELISTED = 49  # portfolio mode: a delisted instrument's position closes at its last bar's close

# what decided an exit on a bar that touched both the stop and a take-profit level (or, on
# a limit entry's fill bar, a take-profit level at all): the journal's fill_rule
FILL_RULE_BAR = 0          # the bar alone: only one outcome was possible
FILL_RULE_PESSIMISTIC = 1  # ambiguous, no finer data: the stop first, no take-profit on a limit's fill bar
FILL_RULE_FINER = 2        # ambiguous, decided by the finer bars inside it (the first touched wins)

FILL_RULE_NAMES = {FILL_RULE_BAR: "bar", FILL_RULE_PESSIMISTIC: "pessimistic", FILL_RULE_FINER: "finer_bars"}

REASON_NAMES = {
    REASON_NONE: "",
    REASON_MAX_DRAWDOWN: "MAX_DRAWDOWN",
    REASON_VOLATILITY_SPIKE: "VOLATILITY_SPIKE",
    REASON_MARKET_RISK: "MARKET_RISK",
    REASON_SESSION_CLOSED: "SESSION_CLOSED",
    REASON_DIRECTION_NOT_ALLOWED: "DIRECTION_NOT_ALLOWED",
    REASON_IN_POSITION: "IN_POSITION",
    REASON_ORDER_PENDING: "ORDER_PENDING",
    REASON_INSUFFICIENT_CASH: "INSUFFICIENT_CASH",
    REASON_MAX_POSITIONS: "MAX_POSITIONS",
    REASON_NO_STOP: "NO_STOP",
    REASON_DELISTED: "DELISTED",
    REASON_ZONE_INVALIDATED: "ZONE_INVALIDATED",
    REASON_EXPIRED: "EXPIRED",
    EXIT_STOP_LOSS: "STOP_LOSS",
    EXIT_TAKE_PROFIT: "TAKE_PROFIT",
    EXIT_SIGNAL: "SIGNAL",
    EXIT_END_OF_DATA: "END_OF_DATA",
    EXIT_OUT_OF_MONEY: "OUT_OF_MONEY",
    EXIT_TIME_STOP: "TIME_STOP",
    EXIT_SESSION: "SESSION_EXIT",
    EXIT_PARTIAL: "PARTIAL_TAKE_PROFIT",
    EXIT_CONDITION: "EXIT_CONDITION",
    EXIT_DELISTED: "DELISTED",
}
_BUILT_IN_NAMES = frozenset(REASON_NAMES.values())
#: threat reasons by name; plugins add theirs through :func:`allocate_reason`
THREAT_REASONS = {v: k for k, v in REASON_NAMES.items() if 0 < k < 20}
#: exit reasons named by plugins' exit planners (their exit conditions), through
#: :func:`allocate_exit_reason`; the built-in exit reasons are not in it
EXIT_REASONS: dict[str, int] = {}

#: a threat reason named by a plugin gets a code from here on: far above the built-in skip,
#: cancel and exit codes (which grow from 20 and 40), so a new built-in never collides
FIRST_PLUGIN_REASON = 1000
_REASON_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# threads backends register plugins concurrently: one code per name, never two
_ALLOCATE = threading.Lock()
# the last plugin code given: the next is found from it, not by scanning every name
_last_code = FIRST_PLUGIN_REASON - 1


def allocate_reason(name: str) -> int:
    """The integer code of threat reason ``name``, allocated on first use.

    Built-in threat reasons keep their codes; a new name gets the next free code from
    :data:`FIRST_PLUGIN_REASON` on and appears in :data:`REASON_NAMES` and
    :data:`THREAT_REASONS`. Codes are local to a process (they follow the order plugins
    are registered in): what leaves a process are names. ``ValueError`` for a name that
    is not an upper-case identifier, that is a built-in skip, cancel or exit reason, or
    that an exit planner named.

    >>> allocate_reason("MARKET_RISK") == REASON_MARKET_RISK
    True
    >>> code = allocate_reason("AGAINST_TREND")
    >>> code >= FIRST_PLUGIN_REASON, REASON_NAMES[code], allocate_reason("AGAINST_TREND") == code
    (True, 'AGAINST_TREND', True)
    """
    return _allocate(THREAT_REASONS, name, "a threat")


def allocate_exit_reason(name: str) -> int:
    """The integer code of ``name``, an exit reason of a plugin's exit planner (its exit
    conditions close trades under it instead of ``EXIT_CONDITION``), allocated on first
    use as :func:`allocate_reason` allocates a threat's. ``ValueError`` for a name that is
    not an upper-case identifier, a built-in reason or a threat's reason.

    >>> code = allocate_exit_reason("RSI_BACK")
    >>> code >= FIRST_PLUGIN_REASON, REASON_NAMES[code], allocate_exit_reason("RSI_BACK") == code
    (True, 'RSI_BACK', True)
    """
    return _allocate(EXIT_REASONS, name, "an exit")


def _allocate(table: dict[str, int], name: str, what: str) -> int:
    """``table[name]``, given the next free plugin code on first use (one per name, also
    when threads register plugins at once)."""
    code = table.get(name)
    if code is not None:
        return code
    with _ALLOCATE:
        code = table.get(name)
        if code is None:
            code = table[name] = _new_code(name, what)
        return code


def _new_code(name: str, what: str) -> int:
    """The next free plugin code, given to ``name`` in :data:`REASON_NAMES` (under the lock)."""
    if not isinstance(name, str) or not _REASON_NAME.fullmatch(name):
        raise ValueError(f"reason code {name!r} is not an upper-case identifier (A-Z, 0-9, _; "
                         f"at most 64 characters), e.g. 'AGAINST_TREND'")
    if name in THREAT_REASONS:
        raise ValueError(f"reason code {name!r} is a threat's reason; {what} needs a name of its own")
    if name in EXIT_REASONS:
        raise ValueError(f"reason code {name!r} is an exit planner's exit reason; {what} needs a name of its own")
    if name in _BUILT_IN_NAMES:
        raise ValueError(f"reason code {name!r} is a built-in skip, cancel or exit reason; "
                         f"{what} needs a name of its own")
    global _last_code
    code = _last_code + 1
    while code in REASON_NAMES:
        code += 1
    if code > EXIT_NAME_MASK:
        # exit names are packed into 16 bits beside their flags (see EXIT_NAME_SHIFT_LONG)
        raise ValueError(f"reason code {name!r}: no codes left in this process ({code - FIRST_PLUGIN_REASON} "
                         f"plugin reasons allocated)")
    REASON_NAMES[code] = name
    _last_code = code
    return code


def release_reasons(names: Iterable[str]) -> None:
    """Forget the plugin reason codes ``names`` (a threat's or an exit's; built-in ones are
    kept): the reasons of workers whose module failed to import, which never ran, so the
    fixed module may declare the names again, of either kind.

    >>> code = allocate_reason("RELEASED_DEMO")
    >>> release_reasons(["RELEASED_DEMO", "STOP_LOSS"]); "RELEASED_DEMO" in THREAT_REASONS, code in REASON_NAMES
    (False, False)
    """
    with _ALLOCATE:
        for name in names:
            for table in (THREAT_REASONS, EXIT_REASONS):
                code = table.get(name)
                if code is not None and code >= FIRST_PLUGIN_REASON:
                    del table[name]
                    REASON_NAMES.pop(code, None)


def reason_code(name: str) -> int:
    """The code of an allocated threat reason; ``KeyError`` names the known ones.

    >>> reason_code("VOLATILITY_SPIKE") == REASON_VOLATILITY_SPIKE
    True
    """
    code = THREAT_REASONS.get(name)
    if code is None:
        raise KeyError(f"unknown threat reason {name!r}; known: {', '.join(sorted(THREAT_REASONS))}")
    return code

# how a stop / target value attached to an opportunity is turned into a price at fill time
PRICE_NONE = 0       # no stop / no target
PRICE_ABSOLUTE = 1   # the value is a price, fixed at decision time
PRICE_DISTANCE = 2   # the value is a distance from the fill price
PRICE_FRACTION = 3   # the value is a fraction of the fill price (0.03 = 3 %)
PRICE_R_MULTIPLE = 4 # targets only: the value is a multiple of the entry-to-stop distance

# sizers
SIZER_ALL_IN = 0
SIZER_FIXED_FRACTION = 1
SIZER_FIXED_RISK = 2

# a bar's exits (bit flags of engine.records.Exits.flat_at): flat at its close (a session's
# end), a long or a short closed at the next bar's open (an exit condition of a plugin)
BAR_FLAT = 1
BAR_EXIT_LONG = 2
BAR_EXIT_SHORT = 4
# beside the flags, the code naming a long's (short's) exit condition: a plugin's own exit
# reason (allocate_exit_reason), 0 for EXIT_CONDITION; flat_at is float64, exact to 2**53
EXIT_NAME_SHIFT_LONG = 8
EXIT_NAME_SHIFT_SHORT = 24
EXIT_NAME_MASK = 0xFFFF

# how a trailing stop follows a position (see records.Rules.trail_mode and records.Exits)
TRAIL_NONE = 0
TRAIL_PERCENT = 1    # a fraction below (long) / above (short) the best close since the entry
TRAIL_DISTANCE = 2   # a multiple of a per-bar distance (e.g. ATR) from the close
TRAIL_LEVEL = 3      # a per-bar level (e.g. the last swing low / high)

#: the revision of the engine's rules (fills, exits, what the kernels count): raised by a
#: change that moves the numbers of runs whose ids stay the same (a run id names the
#: config, the data and a plugin's code, not the engine's rules). A results store records
#: it with each finished run and computes again the runs of another revision.
#: 2: a limit the bar opens beyond its far edge is cancelled (limit_entry_at_fvg), a limit
#: gapped through at the open fills as a market order does, exit planners name their exits,
#: a shared account places a setup on an instrument's last bar before a gap.
#: 3: a shared account's finalize_trades closes at the basket's last bar only (an
#: instrument whose data ends early keeps its slot and margin to there).
#: 4: a shared account's free cash within 1e-9 of its equity is none (no position opened on
#: the rounding left of spent cash).
#: 5: an R-multiple level lies beyond the fill when the fill gapped past the stop; a bar
#: opening beyond the stop stops there with or without finer bars (fill rule "bar").
#: 6: daily returns that differ by rounding alone (std <= 1e-10 x |mean|) have no Sharpe
#: ratio (NaN) and no volatility (0), as metaflow_nb.stats reads them.
#: 7: a resampled bar's finer bars (data.intrabar) are every source bar of its bin, also
#: of a bin longer than the bars' spacing (a DST change's two-hour hour, a 31-day month).
#: 8: a higher timeframe's first period is whole when its first bar opens as far into it as
#: the second period's does (a session's open); a shared account calls a bar that opened
#: beyond the stop "bar", not "pessimistic", as the single run does; finer bars within
#: float32's step of their bar's range are of the same prices; a measured year leaves out
#: gaps of two weeks or more without bars (a halt).
#: 9: the rules of 8 as they were finished after it was named (hunt88 F1: stores of those
#: trees were reused): the measured year leaves out the gaps of weekly and monthly bars too
#: (a step over three times the usual one), and a higher timeframe's first week or month is
#: whole only from its first day.
#: 10: a file of dates (D1 beside its H1 file) keeps the finer bars of a session that opens
#: after midnight (a stock's 09:30): its first finer bar of the date, opening at its open, starts it.
#: 11: finer bars with one missing between a bar's first and its last (a gap wider than the
#: file's median spacing) leave that bar to the pessimistic rule (hunt111 F1).
ENGINE_REVISION = 11
