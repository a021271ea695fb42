"""The batch sweep kernel: many parameter combinations in one compiled ``prange`` call.

Combinations are grouped by the parameters that change features; a group shares its
opportunities and threat masks. Each combination brings its own per-opportunity levels
(limits, stops, targets) and scalars (sizing, drawdown limits, expiry). Only the metric
vector of each combination is kept: the equity and record arrays of the simulation are
transient per iteration, so memory does not grow with the number of combinations.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .metrics import N_METRICS, daily_returns, run_metrics
from .simulate import simulate


@njit(parallel=True, cache=True)
def sweep(open_, high, low, close, day_end,
          opp_off, opp_bar, opp_dir, masks, threat_reason,
          combo_group, val_off, limit, cancel, stop, target,
          dd_limit, dd_cool, expiry, sizer_param,
          stop_mode, target_mode, reverse, allow_long, allow_short, sizer_kind, whole_units,
          cash, commission, slippage, leverage, finalize, ppy, years, returns_out):
    """Metric vectors, one row per combination.

    Group ``g`` owns opportunities ``opp_off[g]:opp_off[g+1]`` and threat masks
    ``masks[g]``; combination ``c`` belongs to group ``combo_group[c]`` and owns the
    per-opportunity levels ``val_off[c]:val_off[c+1]`` of the flat level arrays.
    ``returns_out`` is (combinations x days) to keep each run's daily returns (for the
    overfitting statistics), or (0 x 0) to keep metrics only.
    """
    n_combo = combo_group.shape[0]
    out = np.empty((n_combo, N_METRICS))
    for c in prange(n_combo):
        g = combo_group[c]
        a = opp_off[g]
        b = opp_off[g + 1]
        va = val_off[c]
        vb = val_off[c + 1]
        equity, position, trades, n_trades, journal, n_ev = simulate(
            open_, high, low, close,
            opp_bar[a:b], opp_dir[a:b], limit[va:vb], cancel[va:vb], stop[va:vb], target[va:vb],
            masks[g], dd_limit[c], dd_cool[c], threat_reason,
            stop_mode, target_mode, reverse, allow_long, allow_short, expiry[c],
            sizer_kind, sizer_param[c], whole_units,
            cash, commission, slippage, leverage, finalize)
        out[c] = run_metrics(equity, position, 0, trades, n_trades, journal, n_ev, day_end, cash, ppy, years)
        if returns_out.shape[0] > 0:
            returns_out[c] = daily_returns(equity, 0, day_end, cash)
    return out
