"""The batch sweep kernel: many parameter combinations in one compiled ``prange`` call.

Combinations are grouped by the parameters that change features; a group shares its
setups and threat masks (:class:`~metaflow_nb.engine.records.SweepGroups`). Each
combination brings its own per-setup levels and scalars
(:class:`~metaflow_nb.engine.records.SweepCombos`). Each one runs
:func:`.simulate.simulate_metrics`: the general path's bar loop with no equity, trade or
journal arrays, folding drawdown, exposure, trade sums and daily returns as it goes, so a
combination costs one pass over the bars and memory does not grow with the bars or the
number of combinations (only the metric table, and the daily returns when asked for).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..records import Exits, Rules, Setups, Threats
from .metrics import N_METRICS, stream_metrics
from .simulate import simulate_metrics


@njit(cache=True)
def combo_levels(bar, direction, combos, c):
    """Row ``c`` of a :class:`~metaflow_nb.engine.records.SweepCombos` as the loop takes it:
    its setups (the group's setup ``bar`` and ``direction`` with the row's levels) and its
    exits."""
    at = combos.levels_at[c]
    setups = Setups(bar, direction, combos.limit[at[0]:at[1]], combos.cancel[at[2]:at[3]],
                    combos.stop[at[4]:at[5]], combos.target[at[6]:at[7]], combos.partial[at[8]:at[9]])
    ex = combos.exits_at[c]
    exits = Exits(combos.trail_long[ex[0]:ex[1]], combos.trail_short[ex[2]:ex[3]], combos.flat_at[ex[4]:ex[5]])
    return setups, exits


@njit(parallel=True, cache=True)
def sweep(bars, calendar, groups, combos, rules, account, returns_out, n_blocks):
    """Metric vectors, one row per combination of ``combos``.

    ``rules`` gives the scalars every combination of this call shares (modes, sizer kind,
    directions, trailing mode); each combination's expiry, sizer parameter, time stop,
    trailing parameter, break-even move and partial fraction replace the ones in ``rules``. ``returns_out`` is (combinations x days) to keep each run's daily
    returns (for the overfitting statistics), or (0 x 0) to keep metrics only.
    ``n_blocks`` (a few per thread) is how many interleaved blocks of combinations run
    in parallel.
    """
    n_combo = combos.group.shape[0]
    n = bars.close.shape[0]
    day_ends = np.flatnonzero(calendar.day_end)
    n_days = day_ends.shape[0]
    keep_returns = returns_out.shape[0] > 0
    out = np.empty((n_combo, N_METRICS))
    # combinations in a few interleaved blocks per thread, each block with one work array
    # for the day-end equities: one allocation per block, not one per combination (on
    # daily bars that array is as long as the data, and fresh memory costs page faults)
    n_blocks = max(1, min(n_combo, n_blocks))
    for blk in prange(n_blocks):
        scratch = np.empty(0 if keep_returns else n_days)
        for c in range(blk, n_combo, n_blocks):
            g = combos.group[c]
            a = groups.opp_off[g]
            b = groups.opp_off[g + 1]
            setups, exits = combo_levels(groups.bar[a:b], groups.direction[a:b], combos, c)
            threats = Threats(groups.mask[g], combos.dd_limit[c], combos.dd_cooldown[c], groups.reason)
            own = Rules(rules.stop_mode, rules.target_mode, rules.reverse, rules.allow_long, rules.allow_short,
                        combos.expiry_bars[c], rules.sizer_kind, combos.sizer_param[c], rules.whole_units,
                        combos.time_stop_bars[c], rules.trail_mode, combos.trail_param[c], combos.breakeven_r[c],
                        rules.partial_mode, combos.partial_fraction[c])
            # the run's day-end equities, made its daily returns by stream_metrics
            day_ret = returns_out[c] if keep_returns else scratch
            acc, n_trades = simulate_metrics(bars, setups, threats, own, account, exits, day_ends, day_ret)
            out[c] = stream_metrics(acc, day_ret, n_trades, n, account.cash, calendar.periods_per_year,
                                    calendar.years)
    return out
