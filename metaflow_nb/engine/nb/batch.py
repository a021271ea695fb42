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

from ..records import N_ACC, Exits, Rules, Setups, Threats
from .metrics import N_METRICS, stream_metrics, stream_metrics_quad
from .simulate import simulate_metrics

#: runs whose daily statistics a block folds together (:func:`.metrics.stream_metrics_quad`)
QUAD = 4


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
def sweep(bars, calendar, groups, combos, rules, account, returns_out, day_eq):
    """Metric vectors, one row per combination of ``combos``.

    ``rules`` gives the scalars every combination of this call shares (modes, sizer kind,
    directions, trailing mode); each combination's expiry, sizer parameter, time stop,
    trailing parameter, break-even move and partial fraction replace the ones in ``rules``.
    ``returns_out`` is (combinations x days) to keep each run's daily returns (for the
    overfitting statistics), or (0 x 0) to keep metrics only. ``day_eq`` (blocks x
    :data:`QUAD` x days, or x 0 when the returns are kept) holds each block's work rows:
    its length is how many interleaved blocks run in parallel (a few per thread). The
    caller makes it once per sweep, so a call allocates no per-day array (on daily bars a
    row is as long as the data, and fresh memory costs page faults).
    """
    n_combo = combos.group.shape[0]
    n = bars.close.shape[0]
    day_ends = np.flatnonzero(calendar.day_end)
    keep_returns = returns_out.shape[0] > 0
    out = np.empty((n_combo, N_METRICS))
    n_blocks = max(1, min(n_combo, day_eq.shape[0]))
    for blk in prange(n_blocks):
        rows = day_eq[blk]
        # a block's runs go by fours: their daily statistics are folded side by side
        # (stream_metrics_quad), the rest one by one
        accs = np.empty((QUAD, N_ACC))
        trades = np.empty(QUAD, dtype=np.int64)
        at = np.empty(QUAD, dtype=np.int64)
        k = 0
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
            # the run's day-end equities, made its daily returns by the metrics
            day_ret = returns_out[c] if keep_returns else rows[k]
            acc, n_trades = simulate_metrics(bars, setups, threats, own, account, exits, day_ends, day_ret)
            accs[k] = acc
            trades[k] = n_trades
            at[k] = c
            k += 1
            if k == QUAD:
                if keep_returns:
                    r0, r1, r2, r3 = returns_out[at[0]], returns_out[at[1]], returns_out[at[2]], returns_out[at[3]]
                else:
                    r0, r1, r2, r3 = rows[0], rows[1], rows[2], rows[3]
                vecs = stream_metrics_quad(accs, r0, r1, r2, r3, trades, n, account.cash, calendar.periods_per_year,
                                           calendar.years)
                for q in range(QUAD):
                    out[at[q]] = vecs[q]
                k = 0
        for q in range(k):
            day_ret = returns_out[at[q]] if keep_returns else rows[q]
            out[at[q]] = stream_metrics(accs[q], day_ret, trades[q], n, account.cash, calendar.periods_per_year,
                                        calendar.years)
    return out
