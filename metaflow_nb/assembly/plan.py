"""Step 2 of the run path: the plans of one combination."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..engine import codes
from ..workers.calls import call_worker
from ..workers.contracts import EntryPlan, ExitPlan, Opportunities, SizePlan, Worker
from ..workers.features import FeatureContext
from .checks import check_drawdown, check_entry, check_exit, check_size, checked_reason, plugin_error
from .group import Group
from .workforce import Workforce


@dataclass(frozen=True)
class CombinationPlan:
    """What the planners of one combination decided, plus its drawdown limits
    (per threat: ``dd_limit`` percent, NaN for a mask threat, and ``dd_cooldown`` bars).

    ``exit_names`` pairs each exit planner's own exit reason code with its name: codes are
    allocated per process, so the plan names them for a result read in another one."""

    entry: EntryPlan
    exit: ExitPlan
    size: SizePlan
    dd_limit: np.ndarray
    dd_cooldown: np.ndarray
    exit_names: tuple[tuple[int, str], ...] = ()


def plan_combination(wf: Workforce, group: Group, entry: Optional[EntryPlan] = None,
                     memo: Optional[dict] = None) -> CombinationPlan:
    """Run the entry, exit and size planners of ``wf`` on the setups of ``group``.

    ``entry`` is a plan already made by the same entry worker on the same group (sweep
    combinations that differ only in exits or sizing share it and its level arrays).
    ``memo`` (a dict a sweep keeps for its combinations) holds each planner's checked plan
    per worker object, group and entry plan: a worker a sweep does not vary is one object
    in all its combinations (``services.batch.validate_combos``), and planners are pure.

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.group import build_group
    >>> specs = mf.build_specs("config/runs/sma_cross_long_stops.yaml", data="sp500_daily")
    >>> wf = Workforce.from_specs(specs)
    >>> plan = plan_combination(wf, build_group(wf, mf.load_data("sp500_daily"), specs.pip_size))
    >>> plan.exit.stop_mode != codes.PRICE_NONE, plan.size.kind == codes.SIZER_ALL_IN
    (True, True)
    """
    if entry is None:
        entry = plan_entry(wf, group)
    exit_plan = combine_exits(group.ctx, wf.exits, group.opps, entry, memo)
    size = _memo(memo, (id(wf.size),), (wf.size,), lambda: _size_plan(wf.size))
    if size.kind == codes.SIZER_FIXED_RISK and exit_plan.stop_mode == codes.PRICE_NONE:
        # every order would be skipped as if the cash were short
        raise plugin_error(wf.size, "a fixed-risk size plan sizes by the stop distance, but no exit planner sets a stop")
    k = len(wf.threat)
    dd_limit = np.full(k, np.nan)
    dd_cool = np.zeros(k, dtype=np.int64)
    for j, w in enumerate(wf.threat):
        dd = call_worker(w, "drawdown_limit")
        if dd is not None:
            check_drawdown(w, dd)
            dd_limit[j], dd_cool[j] = dd
    return CombinationPlan(entry, exit_plan, size, dd_limit, dd_cool, exit_names(wf.exits, memo))


def exit_names(exits: list[Worker], memo: Optional[dict] = None) -> tuple[tuple[int, str], ...]:
    """``(code, name)`` of each exit planner's own exit reason (those naming one), in order.

    >>> from metaflow_nb.workers.contracts import ExitPlanner, Params
    >>> class Back(ExitPlanner):
    ...     name, reasons = "back_inside", ("BACK_INSIDE",)
    >>> [name for _, name in exit_names([Back("x_1", Params())])]
    ['BACK_INSIDE']
    """
    return tuple(dict.fromkeys(named for named in (_exit_name(w, memo) for w in exits) if named[0]))


def _exit_name(w: Worker, memo: Optional[dict]) -> tuple[int, str]:
    """``(code, name)`` of the exit reason planner ``w`` names its exits with (``(0, "")``:
    none, they read EXIT_CONDITION); once per planner object in a sweep's ``memo``."""
    def make() -> tuple[int, str]:
        name = checked_reason(w)
        return (codes.allocate_exit_reason(name) if name else 0), name
    return _memo(memo, ("__exit_name__", id(w)), (w,), make)


def _memo(memo: Optional[dict], key: tuple, pinned: tuple, make: Callable[[], Any]) -> Any:
    """``make()``, kept in ``memo`` under ``key`` (ids of objects): the value keeps
    ``pinned`` (those objects) alive, so no other object can take one of their ids while
    the memo lives."""
    if memo is None:
        return make()
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = (pinned, make())
    return hit[1]


def _size_plan(w: Worker) -> SizePlan:
    size = call_worker(w, "plan")
    check_size(w, size)
    return size


def plan_entry(wf: Workforce, group: Group) -> EntryPlan:
    """The entry worker's plan for the setups of ``group``, checked (one level per setup).

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.group import build_group
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> wf = Workforce.from_specs(specs)
    >>> group = build_group(wf, mf.load_data("sp500_daily"), specs.pip_size)
    >>> len(plan_entry(wf, group).limit) == len(group.opps)
    True
    """
    entry = call_worker(wf.entry, "plan", group.ctx, group.opps)
    check_entry(wf.entry, entry, group.opps)
    return entry


def combine_exits(ctx: FeatureContext, exits: list[Worker], opps: Opportunities, entry: EntryPlan,
                  memo: Optional[dict] = None) -> ExitPlan:
    """One exit plan from the exit planners: the stop, target, trailing stop and partial
    take-profit of whichever sets them (the last one), the shortest time stop, the earliest break-even
    move, every bar any planner closes the position at, and reversal if any asks for it.
    Its ``flat_at`` is the kernel's (:class:`~metaflow_nb.engine.records.Exits`): each
    bar's exits as bit flags, the planners' ``flat_at`` (``BAR_FLAT``), ``exit_long`` and
    ``exit_short`` together, with the code of the exit reason of the first planner to flag
    a bar's long (short) exit beside its flag (``codes.EXIT_NAME_SHIFT_*``; 0 for one
    naming none); it has no ``exit_long``/``exit_short`` of its own.
    ``memo``: see :func:`plan_combination`.

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.group import build_group
    >>> specs = mf.build_specs("config/runs/sma_cross_long_stops.yaml", data="sp500_daily")
    >>> wf = Workforce.from_specs(specs)
    >>> g = build_group(wf, mf.load_data("sp500_daily"), specs.pip_size)
    >>> combine_exits(g.ctx, wf.exits, g.opps, plan_entry(wf, g)).stop_mode != codes.PRICE_NONE
    True
    """
    stop_mode, stop, target_mode, target = codes.PRICE_NONE, None, codes.PRICE_NONE, None
    reverse = exclusive = False
    time_stop = 0
    trail: tuple = (codes.TRAIL_NONE, 0.0, None, None)
    breakeven = 0.0
    bar_exits: Optional[np.ndarray] = None  # the kernel's flat_at, as integers while planners add to it
    partial: tuple = (codes.PRICE_NONE, None, 0.0)
    by: dict[str, Worker] = {}   # the planner that sets the stop, the target
    for w in exits:
        plan = _memo(memo, (id(w), id(ctx), id(opps), id(entry)), (w, ctx, opps, entry),
                     lambda w=w: _exit_plan(w, ctx, opps, entry))
        reverse = reverse or plan.reverse
        exclusive = exclusive or plan.exclusive
        if plan.stop_mode != codes.PRICE_NONE:
            _one_provider(by, "stop", w)
            stop_mode, stop = plan.stop_mode, plan.stop
        if plan.target_mode != codes.PRICE_NONE:
            _one_provider(by, "target", w)
            target_mode, target = plan.target_mode, plan.target
        if plan.time_stop_bars > 0 and (time_stop == 0 or plan.time_stop_bars < time_stop):
            time_stop = plan.time_stop_bars
        if plan.trail_mode != codes.TRAIL_NONE:
            trail = (plan.trail_mode, plan.trail_param, plan.trail_long, plan.trail_short)
        if plan.breakeven_r > 0 and (breakeven == 0 or plan.breakeven_r < breakeven):
            breakeven, by["breakeven"] = plan.breakeven_r, w
        if plan.partial_fraction > 0 and plan.partial_mode != codes.PRICE_NONE:
            partial, by["partial"] = (plan.partial_mode, plan.partial, plan.partial_fraction), w
        code = _exit_name(w, memo)[0] if plan.exit_long is not None or plan.exit_short is not None else 0
        for values, flag, shift in ((plan.flat_at, codes.BAR_FLAT, 0),
                                    (plan.exit_long, codes.BAR_EXIT_LONG, codes.EXIT_NAME_SHIFT_LONG),
                                    (plan.exit_short, codes.BAR_EXIT_SHORT, codes.EXIT_NAME_SHIFT_SHORT)):
            if values is not None:
                # a nonzero value flags the bar (NaN never reaches here: check_exit refuses it)
                on = np.asarray(values) != 0
                if bar_exits is None:
                    bar_exits = np.zeros(on.shape[0], dtype=np.int64)
                if code and shift:
                    # the first planner to flag a bar names its exit
                    bar_exits[on & (bar_exits & flag == 0)] |= code << shift
                bar_exits[on] |= flag
    if stop_mode == codes.PRICE_NONE:
        # R is the entry-to-stop distance: with no stop at all these would do nothing on
        # any trade (a setup whose stop is NaN goes without them, as documented)
        for in_r, key, what in ((target_mode == codes.PRICE_R_MULTIPLE, "target", f"target_mode is {target_mode}"),
                                (partial[0] == codes.PRICE_R_MULTIPLE, "partial", f"partial_mode is {partial[0]}"),
                                (breakeven > 0, "breakeven", f"breakeven_r is {breakeven}")):
            if in_r:
                raise plugin_error(by[key], f"{what} (R multiple), but no exit planner sets a stop")
    flat_at = None if bar_exits is None else bar_exits.astype(np.float64)
    return ExitPlan(stop_mode, stop, target_mode, target, reverse, exclusive, time_stop, *trail, breakeven, flat_at,
                    *partial)


def _one_provider(by: dict[str, Worker], what: str, w: Worker) -> None:
    """Note that ``w`` sets the stop (target); a second planner setting one is refused."""
    if what in by:
        # the translator refuses two providers by their classes' flags; a plugin without
        # the flag would silently replace the other's levels
        raise plugin_error(w, f"sets a {what}, as {by[what].instance_id} does; one exit planner sets the {what} "
                              f"(a plugin that sets one declares provides_{what} = True, and the config is refused "
                              "before any run)")
    by[what] = w


def _exit_plan(w: Worker, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
    plan = call_worker(w, "plan", ctx, opps, entry)
    check_exit(w, plan, opps, ctx.n)
    return plan
