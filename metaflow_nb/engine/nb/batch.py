"""The batch sweep kernel: many parameter combinations in one compiled ``prange`` call.

Combinations are grouped by the parameters that change features; a group shares its
opportunities and threat masks. Each combination brings its own per-opportunity levels
(limits, stops, targets) and scalars (sizing, drawdown limits, expiry). Each one runs
:func:`.simulate.simulate_metrics`: the general path's bar loop with no equity, trade or
journal arrays, folding drawdown, exposure, trade sums and daily returns as it goes, so a
combination costs one pass over the bars and memory does not grow with the bars or the
number of combinations (only the metric table, and the daily returns when asked for).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .metrics import N_METRICS, stream_metrics
from .simulate import simulate_metrics


@njit(parallel=True, cache=True)
def sweep(open_, high, low, close, day_end,
          opp_off, opp_bar, opp_dir, masks, threat_reason,
          combo_group, limit, cancel, stop, target, levels_at,
          dd_limit, dd_cool, expiry, sizer_param,
          stop_mode, target_mode, reverse, allow_long, allow_short, sizer_kind, whole_units,
          cash, commission, slippage, leverage, finalize, ppy, years, returns_out):
    """Metric vectors, one row per combination.

    Group ``g`` owns opportunities ``opp_off[g]:opp_off[g+1]`` and threat masks
    ``masks[g]``; combination ``c`` belongs to group ``combo_group[c]``. Its entry and exit
    levels are ``limit[levels_at[c, 0]:levels_at[c, 1]]``, ``cancel[levels_at[c, 2]:...3]``,
    ``stop[...4:...5]`` and ``target[...6:...7]``: one value per opportunity of its group,
    or one for all of them; combinations with the same levels share one slice.
    ``returns_out`` is (combinations x days) to keep each run's daily returns (for the
    overfitting statistics), or (0 x 0) to keep metrics only.
    """
    n_combo = combo_group.shape[0]
    n = close.shape[0]
    day_ends = np.flatnonzero(day_end)
    n_days = day_ends.shape[0]
    keep_returns = returns_out.shape[0] > 0
    out = np.empty((n_combo, N_METRICS))
    for c in prange(n_combo):
        g = combo_group[c]
        a = opp_off[g]
        b = opp_off[g + 1]
        # the run's day-end equities, made its daily returns by stream_metrics
        day_ret = returns_out[c] if keep_returns else np.empty(n_days)
        acc, n_trades = simulate_metrics(
            open_, high, low, close,
            opp_bar[a:b], opp_dir[a:b], limit[levels_at[c, 0]:levels_at[c, 1]],
            cancel[levels_at[c, 2]:levels_at[c, 3]], stop[levels_at[c, 4]:levels_at[c, 5]],
            target[levels_at[c, 6]:levels_at[c, 7]],
            masks[g], dd_limit[c], dd_cool[c], threat_reason,
            stop_mode, target_mode, reverse, allow_long, allow_short, expiry[c],
            sizer_kind, sizer_param[c], whole_units,
            cash, commission, slippage, leverage, finalize, day_ends, day_ret)
        out[c] = stream_metrics(acc, day_ret, n_trades, n, cash, ppy, years)
    return out
