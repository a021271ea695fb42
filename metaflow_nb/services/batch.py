"""The batch path of a sweep: features once per group, all combinations in one kernel call.

Combinations are grouped by the params of the workers that compute per-bar arrays
(context, opportunity and mask-type threat workers). A group computes its features,
opportunities and threat masks once (indicator panels are shared across groups through
the feature cache, keyed by plugin and params); each combination then only runs its
planners (entry, exit, size) and drawdown limits, which are cheap and vectorised. The
compiled :func:`metaflow_nb.engine.nb.batch.sweep` runs every combination in ``prange``
and keeps metric vectors only.

Grouping, planning and packing are the run path's own (:mod:`metaflow_nb.assembly`);
this module orchestrates: run ids, validation, waves, progress. Kernels, planners and
metrics are the single run's, so both give the same trades, final equity and metrics bit
for bit (tested with hypothesis).
"""
from __future__ import annotations

import hashlib
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import pandas as pd
from pydantic import ValidationError

from ..assembly.group import Group, build_group, forget_groups, group_key, prefetch_features
from ..assembly.pack import bars_of, chunks, rules_of, shared_rules
from ..assembly.plan import CombinationPlan, plan_combination, plan_entry
from ..assembly.run import day_work, run_sweep_call
from ..assembly.workforce import Workforce
from ..config.buildspecs import (BuildSpecs, canonical_json, data_zone_problem, reason_problem, section_entries,
                                 stop_and_target_problem)
from ..config.loading import format_loc, validation_message
from ..assembly.dataset import dataset_calendar, dataset_day_labels, dataset_finer_bars
from ..engine.metrics import metrics_json
from ..workers.contracts import Worker
from .parallel import RunOutcome
from .results import json_safe


def unsupported_reason(base: BuildSpecs) -> Optional[str]:
    """Why the batch path cannot run these specs, or None when it can.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> unsupported_reason(specs), unsupported_reason(specs.with_overrides({"operation": {"data": {"trade_start": "2010-01-04"}}}))
    (None, 'data.trade_start is set (warm-up slices run on the general path)')
    """
    if base.trade_start:
        return "data.trade_start is set (warm-up slices run on the general path)"
    return None


@dataclass
class _Prepared:
    index: int
    run_id: str
    spec_hash: str
    workforce: Workforce
    group_key: str


def _failed(i: int, run_id: str, h: str, exc: BaseException, message: Optional[str] = None) -> RunOutcome:
    return RunOutcome(i, run_id, h, "failed", error_type=type(exc).__name__, error_message=message or str(exc),
                      traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


class _HashTemplate:
    """Run ids of the base specs with some workers' params replaced, without rebuilding
    the specs per combination (:meth:`BuildSpecs.hash_template`: the payload cut around
    the swept params, joined with each combination's canonical params). The first use is
    checked against :meth:`BuildSpecs.hash_with_params`, and any surprise falls back to it.
    """

    def __init__(self, base: BuildSpecs, instances: tuple[str, ...]):
        self.base = base
        self.instances = instances
        self.parts = base.hash_template(instances)
        self.checked = False

    def hash(self, resolved: dict[str, dict[str, Any]], canonical: dict[str, str]) -> str:
        """The spec hash of the base with ``resolved`` params (canonical JSON in ``canonical``)."""
        if self.parts is None:
            return self.base.hash_with_params(resolved)
        pieces = [self.parts[0]]
        for inst, tail in zip(self.instances, self.parts[1:]):
            pieces.append(canonical[inst])
            pieces.append(tail)
        h = hashlib.sha256("".join(pieces).encode()).hexdigest()
        if not self.checked:
            self.checked = True
            slow = self.base.hash_with_params(resolved)
            if slow != h:  # pragma: no cover - a guard, not an expected path
                self.parts = None
                return slow
        return h


def _param_key(inst: str, params: dict[str, Any]) -> Any:
    """A cache key of one worker's overriding params: scalars by type and value (1, 1.0
    and True validate differently), anything else by its canonical JSON. The same params
    in another order are another key: validated once more, to the same model."""
    items = tuple([(k, type(v), v) for k, v in params.items()])
    for _, t, _ in items:
        if t not in _SCALARS:
            return inst + canonical_json(json_safe(params))
    return (inst, items)


_SCALARS = frozenset({int, float, str, bool, type(None)})


def validate_combos(base: BuildSpecs, combos: Sequence[dict[str, dict[str, Any]]],
                    origin: str = "<parameter_space>", root: str = "optimization_config",
                    stored: Optional[Callable[[str], Optional[dict]]] = None, clock: Optional[str] = None,
                    ) -> tuple[list["_Prepared"], list[Optional[RunOutcome]]]:
    """Validate every combination's params and derive its run id, before anything runs.

    Returns the runnable combinations and an outcome list holding the failed (invalid)
    and the resumed ones (``stored(hash)`` returns a stored record to reuse). ``clock``:
    the data clock a worker's own zone param is checked against, if not ``base``'s (a
    basket's instruments may name theirs). Each
    distinct params set of a worker is validated once; run ids are the general path's
    (:attr:`BuildSpecs.hash` of the specs ``with_params`` would build).

    >>> import metaflow_nb as mf
    >>> base = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> prepared, outcomes = validate_combos(base, [{"sma_1": {"fast": 5}}, {"sma_1": {"fast": 30}}])
    >>> len(prepared), outcomes[1].status, prepared[0].run_id == base.with_params("sma_1", {"fast": 5}).run_id
    (1, 'failed', True)
    """
    wf_base = Workforce.from_specs(base)
    clock = clock or base.read_clock
    by_id = {w.instance_id: w for w in wf_base.all()}
    base_params = {inst: w.params.model_dump(mode="json") for inst, w in by_id.items()}
    # each worker's params key, as the general path's translator names it in a message
    where = {w["instance_id"]: (*loc, "params") for loc, _, w in section_entries(base.blueprint)}
    order = {inst: k for k, inst in enumerate(where)}
    outcomes: list[Optional[RunOutcome]] = [None] * len(combos)
    # per worker and overriding params: (model, resolved params, their canonical JSON, the
    # worker) or the error; one worker object per distinct params, so combinations that
    # share them share plans (assembly.plan's memo) and group keys
    models: dict[Any, Any] = {}
    templates: dict[tuple[str, ...], _HashTemplate] = {}
    # group key per the ids of a workforce's context, opportunity and threat workers (the
    # objects stay alive in wf_base and models while the ids are in use)
    group_keys: dict[tuple[int, ...], str] = {}
    plan_workers = {w.instance_id for w in (*wf_base.exits, wf_base.size)}
    plan_problems: dict[tuple[int, ...], Optional[str]] = {}

    # 1. validate params and derive run ids without building a BuildSpecs per combination
    prepared: list[_Prepared] = []
    for i, combo in enumerate(combos):
        new: dict[str, Worker] = {}
        resolved: dict[str, dict[str, Any]] = {}
        canonical: dict[str, str] = {}
        why: Optional[str] = None
        # in workforce order: a combination with two faults names the one the translator
        # (the general path) meets first
        for inst in sorted(combo, key=order.__getitem__):
            params = combo[inst]
            w = by_id[inst]
            key = _param_key(inst, params)
            hit = models.get(key)
            if hit is None:
                try:
                    model = type(w).Params.model_validate({**base_params[inst], **params})
                except ValidationError as exc:
                    # the general path's wording; only the message is kept: the error holds
                    # its validator's frames, which hold this one and its caller's (the
                    # sweep's features and plans) in a reference cycle until a full
                    # collection (17 MB a W2 sweep)
                    hit = validation_message(exc, "", where[inst]).split(": ", 1)[-1]
                else:
                    dumped = model.model_dump(mode="json")
                    worker = type(w)(inst, model)
                    # a param that picks a reason code: the translator's check, for this value
                    wrong = reason_problem(worker, dumped) if hasattr(worker, "declared_reasons") else None
                    # a zone param on data of a declared clock: the translator's check, for this value
                    wrong = wrong or data_zone_problem(type(w), model, clock)
                    hit = (f"{format_loc(where[inst][:-1])}{wrong[0]}: {wrong[1]}" if wrong else
                           (model, dumped, canonical_json(dumped), worker))
                models[key] = hit
            if isinstance(hit, str):
                why = hit
                break
            _, resolved[inst], canonical[inst], new[inst] = hit
        if why is not None:
            # one impossible combination is a failed row
            outcomes[i] = RunOutcome(i, "", "", "failed", error_type="ConfigError",
                                     error_message=f"{origin}: {root}.parameter_space: combination {combo}: {why}")
            continue
        wf = wf_base.replace(new)
        if plan_workers.intersection(combo):
            # the translator's checks across exit and size planners, once per set of them
            ids = tuple(map(id, (*wf.exits, wf.size)))
            why = plan_problems.get(ids, False)
            if why is False:
                why = plan_problems[ids] = stop_and_target_problem(
                    [(f"workforce.planning_workers.exit_planning[{j}]", type(x), x.params, x.instance_id)
                     for j, x in enumerate(wf.exits)], type(wf.size))
            if why is not None:
                outcomes[i] = RunOutcome(i, "", "", "failed", error_type="ConfigError",
                                         error_message=f"{origin}: {root}.parameter_space: combination {combo}: {why}")
                continue
        swept = tuple(combo)
        template = templates.get(swept)
        if template is None:
            template = templates[swept] = _HashTemplate(base, swept)
        h = template.hash(resolved, canonical)
        rec = stored(h) if stored is not None else None
        if rec is not None and rec.get("status") == "ok":
            outcomes[i] = RunOutcome.from_record(i, rec)
            continue
        ids = tuple(map(id, (*wf.context, *wf.opportunity, *wf.threat)))
        gk = group_keys.get(ids)
        if gk is None:
            gk = group_keys[ids] = group_key(wf, canonical)
        prepared.append(_Prepared(i, h[:16], h, wf, gk))

    return prepared, outcomes


def run_batch(base: BuildSpecs, prepared: list["_Prepared"], outcomes: list[Optional[RunOutcome]],
              data: Optional[pd.DataFrame] = None, cache: Optional[dict] = None,
              on_done: Optional[Callable[[RunOutcome], None]] = None,
              keep_returns: bool = False) -> list[Optional[RunOutcome]]:
    """Run validated combinations through the batch kernel, filling ``outcomes`` in place.

    ``on_done`` sees every computed outcome as soon as its wave finishes; with
    ``keep_returns`` each outcome carries its daily returns (``outcome.result``).

    >>> import metaflow_nb as mf
    >>> base = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> outcomes = run_batch(base, *validate_combos(base, [{"sma_1": {"fast": 5}}, {"sma_1": {"fast": 30}}]))
    >>> [o.status for o in outcomes], outcomes[0].metrics["total_trades"]
    (['ok', 'failed'], 310)
    """
    from .operation import resolve_data

    if not prepared:
        return outcomes  # nothing valid (or everything resumed): no data needs loading
    bars = resolve_data(base, data)

    # 2..4 in waves of whole groups, so progress and the results store advance as we go
    shared = cache if cache is not None else {}
    try:
        _run_waves(base, bars, prepared, shared, outcomes, on_done, keep_returns)
    finally:
        if cache is None:
            # the sweep's own cache is let go: its groups, which hold it, must not stay in it
            forget_groups(shared)
    return outcomes


@contextmanager
def kernel_threads(n: Optional[int]) -> Iterator[None]:
    """The batch kernel's threads limited to ``n`` while in the block (``workers``: the batch
    path ran on every core whatever was asked, hunt51 F7); numba's own count otherwise.

    >>> import numba
    >>> with kernel_threads(1):
    ...     numba.get_num_threads()
    1
    """
    import numba

    before = numba.get_num_threads()
    if n is not None:
        numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


#: the fewest combinations a wave holds (whole groups: a wave may hold more), so a
#: kernel call has enough of them to fill the cores
WAVE_MIN = 256


def _run_waves(base: BuildSpecs, bars: pd.DataFrame, prepared: list["_Prepared"], shared: dict,
               outcomes: list[Optional[RunOutcome]], on_done: Optional[Callable], keep_returns: bool) -> None:
    by_group: dict[str, list[_Prepared]] = {}
    for p in prepared:
        by_group.setdefault(p.group_key, []).append(p)
    cal = dataset_calendar(bars, 0, base.data_calendar)
    work = day_work(int(cal.day_end.sum()), keep_returns)
    # waves bound how much finished work a kill can lose and pace the progress bar; each
    # wave is one kernel call per bucket, so they are kept large enough to fill the cores,
    # and a rest smaller than half a wave joins the wave before it (one call fewer)
    size = max(WAVE_MIN, len(prepared) // 10)
    wave: list[str] = []
    count = 0
    left = len(prepared)
    for gk, members in by_group.items():
        wave.append(gk)
        count += len(members)
        if count >= size and left - count >= size // 2:
            _run_wave(base, bars, cal, wave, by_group, shared, outcomes, on_done, work)
            # a wave's groups (setups, plans, masks: per group x bars) go once its runs are
            # done, so memory holds one wave's, not the sweep's (hunt45 F1: 4.9 GB for 5,000
            # pairs on 1e6 bars); a wave holds whole groups, and features stay shared
            forget_groups(shared)
            left -= count
            wave, count = [], 0
    if wave:
        _run_wave(base, bars, cal, wave, by_group, shared, outcomes, on_done, work)
        forget_groups(shared)


def _group(wf: Workforce, bars: pd.DataFrame, pip: float, shared: dict, key: str) -> Any:
    """The group's per-bar arrays, or the exception computing them (its runs fail, the
    sweep goes on)."""
    try:
        return build_group(wf, bars, pip, shared, key=key)
    except Exception as exc:  # noqa: BLE001
        return exc


def _run_wave(base: BuildSpecs, bars: pd.DataFrame, cal: Any, wave: list[str], by_group: dict[str, list[_Prepared]],
              shared: dict, outcomes: list[Optional[RunOutcome]], on_done: Optional[Callable], work: Any) -> None:
    prefetch_features([by_group[gk][0].workforce for gk in wave], bars, base.pip_size, shared)
    groups = {gk: _group(by_group[gk][0].workforce, bars, base.pip_size, shared, gk) for gk in wave}

    def done(out: RunOutcome) -> None:
        outcomes[out.index] = out
        if on_done is not None:
            on_done(out)

    # per-combination plans, bucketed by the rules a kernel call shares
    buckets: dict[Any, list[tuple[str, CombinationPlan, Any, _Prepared]]] = {}
    entries: dict[tuple, Any] = {}
    plans: dict[tuple, Any] = {}  # exit and size plans per worker and group (plan_combination)
    for gk in wave:
        g = groups[gk]
        for p in by_group[gk]:
            if isinstance(g, BaseException):
                done(_failed(p.index, p.run_id, p.spec_hash, g))
                continue
            wf = p.workforce
            try:
                # one entry plan per group and entry worker: combinations that only differ in
                # exits or sizing share the entry worker object (validate_combos replaces only
                # the swept workers), so they share its plan and level arrays (LevelPack)
                ekey = (gk, id(wf.entry))
                entry = entries.get(ekey)
                if entry is None:
                    entry = entries[ekey] = plan_entry(wf, g)
                plan = plan_combination(wf, g, entry, plans)
                rules = rules_of(base, plan)
            except Exception as exc:  # noqa: BLE001
                done(_failed(p.index, p.run_id, p.spec_hash, exc))
                continue
            buckets.setdefault(shared_rules(rules), []).append((gk, plan, rules, p))

    keep_returns = work.keep_returns
    days = dataset_day_labels(bars, base.data_calendar) if keep_returns else None
    live = {gk: g for gk, g in groups.items() if isinstance(g, Group)}
    finer = dataset_finer_bars(bars, base)
    for rules, items in buckets.items():
        for chunk in chunks(items, live, 8 * work.n_days if keep_returns else 0):
            vecs, returns_out = run_sweep_call(base, bars_of(live[chunk[0][0]], finer), cal, rules, chunk, live,
                                               work)
            for j, (item, metrics) in enumerate(zip(chunk, metrics_json(vecs))):
                p = item[3]
                # a row of the chunk's returns, not a copy: on daily bars a copy per run
                # is 8 bytes a day again (216 MB for W6's 270 runs of 100 000 days)
                done(RunOutcome(p.index, p.run_id, p.spec_hash, "ok", metrics=metrics,
                                result=(days, returns_out[j]) if keep_returns else None))
