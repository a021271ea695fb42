"""The run path of a basket sweep in ``mode: independent``, and the one way an
independent portfolio's accounts are combined.

:func:`combine_runs` combines N single runs on the union calendar (total equity,
exposure, metrics); ``services.portfolio.PortfolioResult`` calls it, and the batch kernel
:func:`metaflow_nb.engine.nb.basket.sweep_accounts` calls the same compiled functions, so
a sweep's portfolio rows equal the portfolio runs' metrics bit for bit.

:func:`pack_accounts` packs the instruments' bars once per sweep; :func:`pack_pairs`
packs one wave's (instrument, combination) pairs, each grouped and planned by the run
path's own :func:`.group.build_group` and :func:`.plan.plan_combination`;
:func:`run_accounts_call` makes the kernel call.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..config.buildspecs import BuildSpecs
from ..engine.nb.basket import AccountGroups, Accounts, PairRules, SweepWork
from ..engine.records import _NO_FLOATS, _NO_INTS, TRADE_DTYPE, Calendar, SweepCombos, frozen
from .group import Group
from .pack import _EXIT_SLOTS, _LEVEL_SLOTS, LevelPack
from .plan import CombinationPlan

__all__ = ["combine_runs", "pack_accounts", "pack_pairs", "run_accounts_call", "union_calendar", "union_day_calendar"]


def union_calendar(indexes: Sequence[pd.DatetimeIndex]) -> tuple[pd.DatetimeIndex, list[np.ndarray]]:
    """The union of the instruments' timestamps and each one's bars' places on it.

    >>> idx, at = union_calendar([pd.DatetimeIndex(["2024-01-02", "2024-01-04"]),
    ...                           pd.DatetimeIndex(["2024-01-03", "2024-01-04"])])
    >>> len(idx), [a.tolist() for a in at]
    (3, [[0, 2], [1, 2]])
    """
    union = pd.DatetimeIndex([], name="time")
    for ix in indexes:
        union = union.union(ix)
    union.name = "time"
    return union, [union.get_indexer(ix).astype(np.int64) for ix in indexes]


def union_day_calendar(index: pd.DatetimeIndex, name: Optional[str]) -> Calendar:
    """The :class:`~metaflow_nb.engine.records.Calendar` of the union calendar ``index``
    under calendar ``name``: what the portfolio's metrics are measured on.

    >>> union_day_calendar(pd.DatetimeIndex(["2024-01-02", "2024-01-03"]), "exchange").periods_per_year
    252.0
    """
    from ..engine.metrics import calendar

    day_end, ppy, years = calendar(index, name)
    return Calendar(np.ascontiguousarray(day_end, dtype=np.bool_), float(ppy), float(years))


def combine_runs(index: pd.DatetimeIndex, runs: Sequence[tuple[pd.Series, pd.Series, pd.DataFrame, int, int]],
                 cash: float, calendar: Optional[str] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An independent portfolio of single runs on the union calendar ``index``: each run
    is ``(equity, position, trades, detected, rejected)`` (its own bars, the trades table's
    ``entry_time``, ``entry_bar``, ``exit_bar``, ``entry_price``, ``size``, ``pnl``; ``cash`` each
    account's). Returns ``(total equity, in_market, metric vector)``: the accounts summed in
    basket order (each at its last equity where it has no bar, ``cash`` before its first),
    1.0 where one holds a position, and the single run's metrics of that portfolio
    (:func:`metaflow_nb.engine.nb.basket.combine_accounts`; ``calendar``: the operation's
    ``data.calendar``).

    >>> idx = pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-04"])
    >>> eq = [pd.Series([100.0, 110.0], index=idx[[0, 2]]), pd.Series([100.0, 90.0], index=idx[1:])]
    >>> pos = [pd.Series([0.0, 1.0], index=idx[[0, 2]]), pd.Series([0.0, 0.0], index=idx[1:])]
    >>> none = pd.DataFrame({c: [] for c in ("entry_time", "entry_bar", "exit_bar", "entry_price", "size", "pnl")})
    >>> total, held, vec = combine_runs(idx, [(e, p, none, 0, 0) for e, p in zip(eq, pos)], 100.0)
    >>> total.tolist(), held.tolist(), round(float(vec[0]), 6)     # total_return_pct
    ([200.0, 200.0, 200.0], [0.0, 0.0, 1.0], 0.0)
    """
    from ..engine.nb.basket import combine_accounts, fold_account

    n = len(index)
    total = np.zeros(n)
    in_market = np.zeros(n)
    placed = []
    detected = rejected = 0
    for equity, position, trades, det, rej in runs:
        own_at = index.get_indexer(equity.index).astype(np.int64)
        fold_account(total, in_market, own_at, np.ascontiguousarray(equity.to_numpy(np.float64)),
                     np.ascontiguousarray(position.reindex(equity.index).to_numpy(np.float64)), float(cash))
        tm = np.zeros(len(trades), dtype=TRADE_DTYPE)
        # durations in the instrument's own bars, as its single run counts them
        tm["entry_bar"] = index.get_indexer(trades["entry_time"])
        tm["exit_bar"] = tm["entry_bar"] + (trades["exit_bar"].to_numpy(np.int64) - trades["entry_bar"].to_numpy(np.int64))
        for f in ("entry_price", "size", "pnl"):
            tm[f] = trades[f].to_numpy(np.float64)
        placed.append(tm)
        detected += int(det)
        rejected += int(rej)
    cal = union_day_calendar(index, calendar)
    all_trades = np.concatenate(placed) if placed else np.zeros(0, dtype=TRADE_DTYPE)
    vec = combine_accounts(total, in_market, all_trades, detected, rejected, cal.day_end,
                           float(cash) * len(runs), cal.periods_per_year, cal.years)
    return total, in_market, vec


def pack_accounts(specs: Sequence[BuildSpecs], bars: Sequence[pd.DataFrame], own_at: Sequence[np.ndarray],
                  ) -> Accounts:
    """The instruments' bars, own calendars, places on the union calendar and costs, packed
    once for every wave of a sweep (:class:`~metaflow_nb.engine.nb.basket.Accounts`).

    >>> import metaflow_nb as mf
    >>> specs, bars = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"), mf.load_data("sp500_daily")
    >>> index, own_at = union_calendar([bars.index, bars.index[100:]])
    >>> pack_accounts([specs, specs], [bars, bars.iloc[100:]], own_at).bar_off.tolist()   # each one's bars
    [0, 5031, 9962]
    """
    from .dataset import dataset_calendar, dataset_day_ends

    cals = [dataset_calendar(b, 0, sp.data_calendar) for sp, b in zip(specs, bars)]
    ends = [dataset_day_ends(b, sp.data_calendar) for sp, b in zip(specs, bars)]
    off = np.zeros(len(bars) + 1, dtype=np.int64)
    off[1:] = np.cumsum([len(b) for b in bars])
    day_off = np.zeros(len(bars) + 1, dtype=np.int64)
    day_off[1:] = np.cumsum([len(e) for e in ends])
    prices = {c: frozen(np.concatenate([b[c].to_numpy(np.float64) for b in bars])) for c in
              ("open", "high", "low", "close")}
    return Accounts(frozen(off, np.int64), prices["open"], prices["high"], prices["low"], prices["close"],
                    frozen(day_off, np.int64), frozen(np.concatenate(ends), np.int64),
                    frozen(np.concatenate(list(own_at)), np.int64),
                    frozen([c.periods_per_year for c in cals]), frozen([c.years for c in cals]),
                    float(specs[0].cash), frozen([sp.commission for sp in specs]),
                    frozen([sp.slippage for sp in specs]), frozen([sp.leverage for sp in specs]),
                    frozen([bool(sp.finalize_trades) for sp in specs], np.bool_), _NO_INTS, _NO_FLOATS)


def pack_pairs(pairs: Sequence[tuple[tuple[int, str], CombinationPlan, Any]], groups: dict[tuple[int, str], Group],
               n_threats: int) -> tuple[AccountGroups, SweepCombos, PairRules]:
    """The group, pair and rules records of one kernel call: ``pairs`` are
    ``((instrument, group key), plan, rules)`` in pair order (combination-major, every
    instrument of a combination in basket order), ``groups`` their groups."""
    gkeys = list(dict.fromkeys(gk for gk, _, _ in pairs))
    gpos = {gk: j for j, gk in enumerate(gkeys)}
    opps = [groups[gk].opps for gk in gkeys]
    opp_off = np.zeros(len(gkeys) + 1, dtype=np.int64)
    opp_off[1:] = np.cumsum([len(x) for x in opps])
    # each distinct masks array once: groups with the same threats share one (build_group),
    # so a wave holds an instrument's masks once, not once per group of it
    masks: list[np.ndarray] = []
    seen: dict[int, int] = {}
    mask_at = np.empty(len(gkeys), dtype=np.int64)
    size = 0
    for j, gk in enumerate(gkeys):
        m = groups[gk].masks
        start = seen.get(id(m))  # the groups keep every array alive: ids are not reused
        if start is None:
            flat = np.ascontiguousarray(m, dtype=np.int8).ravel()
            start = seen[id(m)] = size
            masks.append(flat)
            size += flat.shape[0]
        mask_at[j] = start
    reason = groups[gkeys[0]].reasons if gkeys else np.zeros(n_threats, dtype=np.int64)
    ag = AccountGroups(np.array([gk[0] for gk in gkeys], dtype=np.int64), opp_off,
                       np.ascontiguousarray(np.concatenate([x.bar for x in opps]).astype(np.int64)),
                       np.ascontiguousarray(np.concatenate([x.direction for x in opps]).astype(np.int64)),
                       mask_at, np.concatenate(masks) if masks else np.zeros(0, dtype=np.int8),
                       np.ascontiguousarray(reason, dtype=np.int64))
    n_p = len(pairs)
    plans = [plan for _, plan, _ in pairs]
    rules_ = [r for _, _, r in pairs]
    # column by column, as pack.sweep_records does: each level slot's spans in pair order
    # (the same spans as pair by pair: every slot has its own pack) and each field at once
    packs = [LevelPack() for _ in _LEVEL_SLOTS]
    levels_at = np.empty((n_p, 2 * len(packs)), dtype=np.int64)
    for q, (slot, pack) in enumerate(zip(_LEVEL_SLOTS, packs)):
        levels_at[:, 2 * q:2 * q + 2] = np.array([pack.add(slot(plan)) for plan in plans],
                                                 dtype=np.int64).reshape(n_p, 2)
    exit_packs = [LevelPack() for _ in _EXIT_SLOTS]
    exits_at = np.empty((n_p, 2 * len(exit_packs)), dtype=np.int64)
    for q, (slot, pack) in enumerate(zip(_EXIT_SLOTS, exit_packs)):
        exits_at[:, 2 * q:2 * q + 2] = np.array([pack.add(slot(plan)) for plan in plans],
                                                dtype=np.int64).reshape(n_p, 2)
    dd_limit = np.array([plan.dd_limit for plan in plans], dtype=np.float64).reshape(n_p, n_threats)
    dd_cool = np.array([plan.dd_cooldown for plan in plans], dtype=np.int64).reshape(n_p, n_threats)
    group = np.array([gpos[gk] for gk, _, _ in pairs], dtype=np.int64)
    ints = {f: np.array([getattr(r, f) for r in rules_], dtype=np.int64) for f in (
        "stop_mode", "target_mode", "reverse", "sizer_kind", "trail_mode", "partial_mode", "expiry_bars",
        "time_stop_bars")}
    bools = {f: np.array([getattr(r, f) for r in rules_], dtype=np.bool_) for f in (
        "allow_long", "allow_short", "whole_units")}
    floats = {f: np.array([getattr(r, f) for r in rules_], dtype=np.float64) for f in (
        "sizer_param", "trail_param", "breakeven_r", "partial_fraction")}
    limit, cancel, stop, target, partial = (p.array() for p in packs)
    trail_long, trail_short, flat_at = (p.array() for p in exit_packs)
    combos = SweepCombos(group, limit, cancel, stop, target, levels_at, dd_limit, dd_cool, ints["expiry_bars"],
                         floats["sizer_param"], ints["time_stop_bars"], floats["trail_param"], floats["breakeven_r"],
                         partial, floats["partial_fraction"], trail_long, trail_short, flat_at, exits_at)
    rules = PairRules(ints["stop_mode"], ints["target_mode"], ints["reverse"], bools["allow_long"],
                      bools["allow_short"], ints["sizer_kind"], bools["whole_units"], ints["trail_mode"],
                      ints["partial_mode"])
    return ag, combos, rules


def run_accounts_call(accounts: Accounts, union: Calendar, records: tuple[AccountGroups, SweepCombos, PairRules],
                      ok: np.ndarray, keep_returns: bool, scratch: SweepWork,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One :func:`~metaflow_nb.engine.nb.basket.sweep_accounts` call over ``len(ok)``
    combinations: per pair and per combination metric vectors and, with ``keep_returns``,
    each combination's daily portfolio returns (combinations x union days). ``scratch``:
    the sweep's :func:`~metaflow_nb.engine.nb.basket.sweep_work` arrays, reused by every
    call."""
    from ..engine.nb.basket import sweep_accounts

    n_days = int(union.day_end.sum())
    returns_out = np.full((len(ok), n_days) if keep_returns else (0, 0), np.nan)
    groups, pairs, rules = records
    per_pair, per_combo = sweep_accounts(accounts, union, groups, pairs, rules, np.ascontiguousarray(ok, np.bool_),
                                         returns_out, scratch)
    return per_pair, per_combo, returns_out
