"""Step 3 of the run path: a group and its plans as the kernels' named records.

:func:`run_records` packs one run; :class:`SweepPacker` packs many combinations (of
several groups) into the records of one batch kernel call. Both read the rules and the
account the same way (:func:`rules_of`, :func:`account_of`).
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..config.buildspecs import BuildSpecs
from ..data.intrabar import FinerBars
from ..engine.records import (
    Account, Bars, Exits, Rules, Setups, SweepCombos, SweepGroups, Threats, account, bars as make_bars, rules,
    setups as make_setups,
)
from .group import Group
from .plan import CombinationPlan

#: upper bound of the per-call level arrays and masks; larger sweeps are split in chunks
CHUNK_BYTES = 128 * 1024 * 1024


def kernel_levels(levels: Optional[np.ndarray]) -> np.ndarray:
    """A plan's per-opportunity levels as the kernel takes them: a contiguous float array,
    or a single value when every opportunity has the same one (None: NaN, no level; a
    broadcast view from :func:`metaflow_nb.workers.contracts.same_for_all`).

    >>> from metaflow_nb.workers.contracts import same_for_all
    >>> kernel_levels(None).tolist(), kernel_levels(same_for_all(0.02, 500)).tolist()
    ([nan], [0.02])
    >>> kernel_levels(np.array([1.5, 2.5])).tolist()
    [1.5, 2.5]
    """
    if levels is None:
        return np.full(1, np.nan)
    if constant_levels(levels):
        return np.array([levels[0]], dtype=np.float64)
    return np.ascontiguousarray(levels, dtype=np.float64)


def constant_levels(levels: Optional[np.ndarray]) -> bool:
    """Whether one value stands for every opportunity (None, or a stride-0 view), so the
    kernel gets that one number (:func:`kernel_levels`).

    >>> from metaflow_nb.workers.contracts import same_for_all
    >>> constant_levels(None), constant_levels(same_for_all(0.02, 3)), constant_levels(np.array([1.0, 2.0]))
    (True, True, False)
    """
    return levels is None or (levels.ndim == 1 and len(levels) > 1 and levels.strides[0] == 0)


def rules_of(specs: BuildSpecs, plan: CombinationPlan) -> Rules:
    """The kernel's :class:`~metaflow_nb.engine.records.Rules` of one combination.

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.run import prepare
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> g, plan, _ = prepare(specs, mf.load_data("sp500_daily"))
    >>> r = rules_of(specs, plan)
    >>> r.reverse, r.allow_short   # 2: exclusive orders
    (2, True)
    """
    ex, size = plan.exit, plan.size
    return rules(stop_mode=ex.stop_mode, target_mode=ex.target_mode, reverse=2 if ex.exclusive else int(ex.reverse),
                 allow_long=specs.direction != "short_only", allow_short=specs.direction != "long_only",
                 expiry_bars=plan.entry.expiry_bars, sizer_kind=size.kind, sizer_param=size.param,
                 whole_units=size.whole_units, time_stop_bars=ex.time_stop_bars, trail_mode=ex.trail_mode,
                 trail_param=ex.trail_param, breakeven_r=ex.breakeven_r, partial_mode=ex.partial_mode,
                 partial_fraction=ex.partial_fraction)


def account_of(specs: BuildSpecs) -> Account:
    """The kernel's :class:`~metaflow_nb.engine.records.Account` of a run.

    >>> import metaflow_nb as mf
    >>> account_of(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"))
    Account(cash=10000.0, commission=0.0, slippage=0.0, leverage=1.0, finalize=False)
    """
    return account(specs.cash, specs.commission, specs.slippage, specs.leverage, specs.finalize_trades)


def bars_of(group: Group, fine: Optional[FinerBars] = None) -> Bars:
    """The price arrays of a group's dataset (shared, never copied), with the finer bars
    inside them when intrabar resolution is on (:func:`.dataset.dataset_finer_bars`).

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.run import prepare
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> g, plan, _ = prepare(specs, mf.load_data("sp500_daily"))
    >>> bars_of(g).close is g.ctx.close
    True
    """
    ctx = group.ctx
    return make_bars(ctx.open, ctx.high, ctx.low, ctx.close, fine)


def exits_of(plan: CombinationPlan) -> Exits:
    """The kernel's :class:`~metaflow_nb.engine.records.Exits` of one combination (its
    per-bar arrays as the kernel takes them: one value when constant).

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.run import prepare
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> g, plan, _ = prepare(specs, mf.load_data("sp500_daily"))
    >>> exits_of(plan).flat_at.tolist()   # no exits at a time of day
    [0.0]
    """
    ex = plan.exit
    return Exits(kernel_levels(ex.trail_long), kernel_levels(ex.trail_short),
                 np.zeros(1) if ex.flat_at is None else kernel_levels(ex.flat_at))


def run_records(specs: BuildSpecs, group: Group, plan: CombinationPlan, fine: Optional[FinerBars] = None,
                ) -> tuple[Bars, Setups, Threats, Rules, Account, Exits]:
    """The six records :func:`metaflow_nb.engine.nb.simulate.simulate` takes for one run
    (``fine``: the finer bars inside the bars, for intrabar resolution).

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.run import prepare
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> g, plan, _ = prepare(specs, mf.load_data("sp500_daily"))
    >>> [type(r).__name__ for r in run_records(specs, g, plan)]
    ['Bars', 'Setups', 'Threats', 'Rules', 'Account', 'Exits']
    """
    opps, entry, ex = group.opps, plan.entry, plan.exit
    setups = make_setups(opps.bar, opps.direction, kernel_levels(entry.limit), kernel_levels(entry.cancel),
                    kernel_levels(ex.stop), kernel_levels(ex.target), kernel_levels(ex.partial))
    threats = Threats(group.masks, plan.dd_limit, plan.dd_cooldown, group.reasons)
    return bars_of(group, fine), setups, threats, rules_of(specs, plan), account_of(specs), exits_of(plan)


def shared_rules(r: Rules) -> Rules:
    """The part of ``r`` a batch kernel call shares: each combination brings its own
    expiry, sizer parameter, time stop, trailing parameter, break-even move and partial fraction
    (:class:`~metaflow_nb.engine.records.SweepCombos`).

    >>> from metaflow_nb.engine.records import rules
    >>> r = shared_rules(rules(sizer_param=0.5, time_stop_bars=10, reverse=1))
    >>> r.sizer_param, r.time_stop_bars, r.reverse
    (0.0, 0, 1)
    """
    return r._replace(expiry_bars=0, sizer_param=0.0, time_stop_bars=0, trail_param=0.0, breakeven_r=0.0,
                      partial_fraction=0.0)


class LevelPack:
    """One flat array of the per-opportunity levels (limits, stops, ...) of a kernel call.

    A level array that holds one value for every opportunity (None = NaN, or a broadcast
    view from :func:`metaflow_nb.workers.contracts.same_for_all`) is stored as that one
    value, which the kernel applies to all opportunities; an array seen before (the same
    object, e.g. one entry plan shared by a group) is stored once. So a sweep of percent
    stops costs a few numbers per combination, not a copy of its levels per combination.
    """

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.size = 0
        self.seen: dict[int, tuple[int, int]] = {}
        self.scalars: dict[str, tuple[int, int]] = {}

    def _put(self, values: np.ndarray) -> tuple[int, int]:
        span = (self.size, self.size + len(values))
        self.parts.append(values)
        self.size += len(values)
        return span

    def add(self, levels: Optional[np.ndarray]) -> tuple[int, int]:
        """Pack ``levels`` (per opportunity; None: NaN for all) and return its span
        ``(start, end)`` in :meth:`array`: one value for a constant level, each value
        packed once, the same array object packed once.

        >>> p = LevelPack()
        >>> p.add(None), p.add(np.array([1.0, 2.0])), p.add(np.array([5.0]))
        ((0, 1), (1, 3), (3, 4))
        """
        span = self.seen.get(id(levels))
        if span is None:
            if constant_levels(levels):
                # one number: looked up by its bits before any array is made for it
                value = np.nan if levels is None else float(levels[0])  # type: ignore[index]
                span = self._scalar(value)
            else:
                values = kernel_levels(levels)
                span = self._scalar(float(values[0])) if len(values) == 1 else self._put(values)
            self.seen[id(levels)] = span
        return span

    def _scalar(self, value: float) -> tuple[int, int]:
        key = value.hex()  # exact, and one key for NaN
        span = self.scalars.get(key)
        if span is None:
            span = self.scalars[key] = self._put(np.array([value], dtype=np.float64))
        return span

    def array(self) -> np.ndarray:
        """Every packed value, contiguous, in the order :meth:`add` placed them.

        >>> p = LevelPack()
        >>> _ = p.add(np.array([1.0, 2.0]))
        >>> p.array().tolist()
        [1.0, 2.0]
        """
        return np.ascontiguousarray(np.concatenate(self.parts) if self.parts else np.empty(0))


def sweep_records(items: Sequence[tuple[str, CombinationPlan, Rules]], groups: dict[str, Group],
                  ) -> tuple[SweepGroups, SweepCombos]:
    """The group and combination records of one batch kernel call.

    ``items`` are ``(group key, plan, rules)`` of combinations that share
    :func:`shared_rules`; ``groups`` maps group keys to their :class:`Group`.

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.run import prepare
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> g, plan, _ = prepare(specs, mf.load_data("sp500_daily"))
    >>> sweep_groups, combos = sweep_records([("g", plan, rules_of(specs, plan))] * 2, {"g": g})
    >>> sweep_groups.opp_off.tolist(), combos.group.tolist()   # one group's 261 setups, two combinations
    ([0, 261], [0, 0])
    """
    gkeys = list(dict.fromkeys(gk for gk, _, _ in items))
    gpos = {gk: j for j, gk in enumerate(gkeys)}
    opps_list = [groups[gk].opps for gk in gkeys]
    opp_off = np.zeros(len(gkeys) + 1, dtype=np.int64)
    opp_off[1:] = np.cumsum([len(x) for x in opps_list])
    opp_bar = np.ascontiguousarray(np.concatenate([x.bar for x in opps_list]).astype(np.int64))
    opp_dir = np.ascontiguousarray(np.concatenate([x.direction for x in opps_list]).astype(np.int64))
    masks = np.ascontiguousarray(np.stack([groups[gk].masks for gk in gkeys]))
    n_c = len(items)
    k = masks.shape[1]
    plans = [plan for _, plan, _ in items]
    rules_ = [r for _, _, r in items]
    # column by column: each level slot's spans and each scalar in one comprehension (a
    # row at a time cost ~16 us per combination in numpy scalar writes)
    packs = [LevelPack() for _ in _LEVEL_SLOTS]
    levels_at = np.empty((n_c, 2 * len(packs)), dtype=np.int64)
    for q, (slot, pack) in enumerate(zip(_LEVEL_SLOTS, packs)):
        levels_at[:, 2 * q:2 * q + 2] = [pack.add(slot(plan)) for plan in plans]
    exit_packs = [LevelPack() for _ in _EXIT_SLOTS]
    exits_at = np.empty((n_c, 2 * len(exit_packs)), dtype=np.int64)
    for q, (slot, pack) in enumerate(zip(_EXIT_SLOTS, exit_packs)):
        exits_at[:, 2 * q:2 * q + 2] = [pack.add(slot(plan)) for plan in plans]
    dd_limit = np.array([plan.dd_limit for plan in plans], dtype=np.float64).reshape(n_c, k)
    dd_cool = np.array([plan.dd_cooldown for plan in plans], dtype=np.int64).reshape(n_c, k)
    combo_group = np.array([gpos[gk] for gk, _, _ in items], dtype=np.int64)
    expiry = np.array([r.expiry_bars for r in rules_], dtype=np.int64)
    sizer_param = np.array([r.sizer_param for r in rules_], dtype=np.float64)
    time_stop = np.array([r.time_stop_bars for r in rules_], dtype=np.int64)
    trail_param = np.array([r.trail_param for r in rules_], dtype=np.float64)
    breakeven = np.array([r.breakeven_r for r in rules_], dtype=np.float64)
    partial_fraction = np.array([r.partial_fraction for r in rules_], dtype=np.float64)
    limit, cancel, stop, target, partial = (pack.array() for pack in packs)
    trail_long, trail_short, flat_at = (pack.array() for pack in exit_packs)
    return (SweepGroups(opp_off, opp_bar, opp_dir, masks, groups[gkeys[0]].reasons),
            SweepCombos(combo_group, limit, cancel, stop, target, levels_at, dd_limit, dd_cool, expiry,
                        sizer_param, time_stop, trail_param, breakeven, partial, partial_fraction, trail_long,
                        trail_short, flat_at, exits_at))


#: "close at no bar" as the flat_at levels of a plan without one
_NO_FLAT = np.zeros(1)

#: a combination's per-opportunity levels in the order of SweepCombos.levels_at's pairs
_LEVEL_SLOTS = (lambda p: p.entry.limit, lambda p: p.entry.cancel, lambda p: p.exit.stop, lambda p: p.exit.target,
                lambda p: p.exit.partial)
#: its per-bar exit inputs in the order of SweepCombos.exits_at's pairs
_EXIT_SLOTS = (lambda p: p.exit.trail_long, lambda p: p.exit.trail_short,
               lambda p: _NO_FLAT if p.exit.flat_at is None else p.exit.flat_at)


def chunks(items: Sequence[tuple[str, CombinationPlan, Any]], groups: dict[str, Group], day_bytes: int,
           limit: Optional[int] = None) -> Iterator[list]:
    """Split ``(group key, plan, ...)`` items so the inputs of one kernel call stay under
    ``limit`` bytes: per group its opportunities and threat masks, per combination its
    levels as packed (a constant level is one number) and, when kept, its daily returns
    (``day_bytes``); ``limit`` defaults to :data:`CHUNK_BYTES`.

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.run import prepare
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> g, plan, _ = prepare(specs, mf.load_data("sp500_daily"))
    >>> items = [("g", plan)] * 3
    >>> [len(c) for c in chunks(items, {"g": g}, 0)], [len(c) for c in chunks(items, {"g": g}, 0, limit=1)]
    ([3], [1, 1, 1])
    """
    limit = CHUNK_BYTES if limit is None else limit
    chunk: list = []
    seen: set[str] = set()
    size = 0
    for item in items:
        gk, plan = item[0], item[1]
        g = groups[gk]
        own = 96 + day_bytes + 8 * sum(1 if constant_levels(x) else len(x) for x in (
            plan.entry.limit, plan.entry.cancel, plan.exit.stop, plan.exit.target, plan.exit.partial, plan.exit.trail_long,
            plan.exit.trail_short, plan.exit.flat_at))
        shared = g.masks.nbytes + 16 * len(g.opps)
        if chunk and size + own + (0 if gk in seen else shared) > limit:
            yield chunk
            chunk, seen, size = [], set(), 0
        if gk not in seen:
            size += shared
            seen.add(gk)
        chunk.append(item)
        size += own
    if chunk:
        yield chunk
