"""The batch path of a sweep: features once per group, all combinations in one kernel call.

Combinations are grouped by the params of the workers that compute per-bar arrays
(context, opportunity and mask-type threat workers). A group computes its features,
opportunities and threat masks once (indicator panels are shared across groups through
the feature cache, keyed by plugin and params); each combination then only runs its
planners (entry, exit, size) and drawdown limits, which are cheap and vectorised. The
compiled :func:`metaflow_nb.engine.nb.batch.sweep` runs every combination in ``prange``
and keeps metric vectors only.

The kernels, planners and metrics are the general path's own, so both paths give the
same trades, final equity and metrics bit for bit (tested with hypothesis).
"""
from __future__ import annotations

import hashlib
import json
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
from pydantic import ValidationError

from ..config.buildspecs import SPEC_VERSION, BuildSpecs, canonical_json, spec_hash
from ..config.loading import validation_message
from ..engine import codes
from ..engine.metrics import calendar, metrics_json
from ..engine.simulation import Workforce, combine_exits, constant_levels, kernel_levels, merge_signals
from ..workers.base import FeatureContext, Worker
from .parallel import RunOutcome
from .results import json_safe

#: upper bound of the per-call level arrays and masks; larger sweeps are split in chunks
CHUNK_BYTES = 128 * 1024 * 1024


def unsupported_reason(base: BuildSpecs) -> Optional[str]:
    """Why the batch path cannot run these specs, or None when it can."""
    if base._operation["data"].get("trade_start"):
        return "data.trade_start is set (warm-up slices run on the general path)"
    return None


@dataclass
class _Prepared:
    index: int
    run_id: str
    spec_hash: str
    workforce: Workforce
    group_key: str


def _replace(wf: Workforce, new: dict[str, Worker]) -> Workforce:
    def sub(ws: list[Worker]) -> list[Worker]:
        return [new.get(w.instance_id, w) for w in ws]
    return Workforce(context=sub(wf.context), opportunity=sub(wf.opportunity), threat=sub(wf.threat),
                     entry=new.get(wf.entry.instance_id, wf.entry), exits=sub(wf.exits),
                     size=new.get(wf.size.instance_id, wf.size))


def _group_key(wf: Workforce, canonical: Optional[dict[str, str]] = None) -> str:
    """Identifies the per-bar arrays of a combination: the canonical JSON of
    ``[[instance_id, params], ...]`` of its context, opportunity and mask-type threat
    workers. ``canonical`` holds the params' canonical JSON per instance, when known."""
    parts = []
    for w in (*wf.context, *wf.opportunity, *wf.threat):
        if w.role == "threat" and w.drawdown_limit() is not None:  # type: ignore[attr-defined]
            continue  # path-dependent: varies per combination inside the kernel
        params = canonical.get(w.instance_id) if canonical is not None else None
        if params is None:
            params = canonical_json(w.params.model_dump(mode="json"))
        parts.append(f"[{json.dumps(w.instance_id)},{params}]")
    return "[" + ",".join(parts) + "]"


def _failed(i: int, run_id: str, h: str, exc: BaseException, message: Optional[str] = None) -> RunOutcome:
    return RunOutcome(i, run_id, h, "failed", error_type=type(exc).__name__, error_message=message or str(exc),
                      traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


class _HashTemplate:
    """:func:`spec_hash` of the base specs with some workers' params replaced, without
    rebuilding and re-serialising the whole blueprint per combination.

    Canonical JSON is compositional: a value serialises the same inside the document as
    on its own. The payload is serialised once with a placeholder as each swept worker's
    params; a combination's canonical JSON is that text with the placeholders replaced
    by the canonical JSON of its resolved params. The first use is checked against
    :func:`spec_hash` of the rebuilt blueprint, and any surprise falls back to it.
    """

    def __init__(self, base: BuildSpecs, instances: tuple[str, ...]):
        self.base = base
        self.instances = instances
        self.parts: Optional[list[str]] = None
        self.checked = False
        marks = {inst: f"\x00metaflow-nb:params:{k}\x00" for k, inst in enumerate(instances)}
        blueprint = json.loads(base.blueprint_json)
        for section in _sections(blueprint):
            for w in section:
                if w["instance_id"] in marks:
                    w["params"] = marks[w["instance_id"]]
        op = dict(base._operation)
        op["data"] = {k: v for k, v in op["data"].items() if k != "source"}  # as spec_hash does
        text = canonical_json({"v": SPEC_VERSION, "blueprint": blueprint, "operation": op,
                               "data": base.data_fingerprint})
        parts: list[str] = []
        for inst in instances:
            mark = canonical_json(marks[inst])
            if text.count(mark) != 1:
                return  # not where expected: every hash the slow way
            head, text = text.split(mark)
            parts.append(head)
        parts.append(text)
        self.parts = parts

    def _slow(self, resolved: dict[str, dict[str, Any]]) -> str:
        blueprint = json.loads(self.base.blueprint_json)
        for section in _sections(blueprint):
            for w in section:
                if w["instance_id"] in resolved:
                    w["params"] = resolved[w["instance_id"]]
        return spec_hash(blueprint, self.base._operation, self.base.data_fingerprint)

    def hash(self, resolved: dict[str, dict[str, Any]], canonical: dict[str, str]) -> str:
        """The spec hash of the base with ``resolved`` params (canonical JSON in ``canonical``)."""
        if self.parts is None:
            return self._slow(resolved)
        pieces = [self.parts[0]]
        for inst, tail in zip(self.instances, self.parts[1:]):
            pieces.append(canonical[inst])
            pieces.append(tail)
        h = hashlib.sha256("".join(pieces).encode()).hexdigest()
        if not self.checked:
            self.checked = True
            slow = self._slow(resolved)
            if slow != h:  # pragma: no cover - a guard, not an expected path
                self.parts = None
                return slow
        return h


def _param_key(inst: str, params: dict[str, Any]) -> Any:
    """A cache key of one worker's overriding params: scalars by type and value (1, 1.0
    and True validate differently), anything else by its canonical JSON."""
    try:
        items = tuple(sorted((k, type(v), v) for k, v in params.items()))
        hash(items)
        if all(type(v) in _SCALARS for _, _, v in items):
            return (inst, items)
    except TypeError:
        pass
    return inst + canonical_json(json_safe(params))


_SCALARS = frozenset({int, float, str, bool, type(None)})


def validate_combos(base: BuildSpecs, combos: Sequence[dict[str, dict[str, Any]]],
                    origin: str = "<parameter_space>", root: str = "optimization_config",
                    stored: Optional[Callable[[str], Optional[dict]]] = None,
                    ) -> tuple[list["_Prepared"], list[Optional[RunOutcome]]]:
    """Validate every combination's params and derive its run id, before anything runs.

    Returns the runnable combinations and an outcome list holding the failed (invalid)
    and the resumed ones (``stored(hash)`` returns a stored record to reuse). Each
    distinct params set of a worker is validated once; run ids are the general path's
    (:attr:`BuildSpecs.hash` of the specs ``with_params`` would build).
    """
    wf_base = Workforce.from_specs(base)
    by_id = {w.instance_id: w for w in (*wf_base.context, *wf_base.opportunity, *wf_base.threat, wf_base.entry,
                                        *wf_base.exits, wf_base.size)}
    base_params = {inst: w.params.model_dump(mode="json") for inst, w in by_id.items()}
    outcomes: list[Optional[RunOutcome]] = [None] * len(combos)
    # per worker and overriding params: (model, resolved params, their canonical JSON) or the error
    models: dict[Any, Any] = {}
    templates: dict[tuple[str, ...], _HashTemplate] = {}

    # 1. validate params and derive run ids without building a BuildSpecs per combination
    prepared: list[_Prepared] = []
    for i, combo in enumerate(combos):
        new: dict[str, Worker] = {}
        resolved: dict[str, dict[str, Any]] = {}
        canonical: dict[str, str] = {}
        error: Optional[ValidationError] = None
        for inst, params in combo.items():
            w = by_id[inst]
            key = _param_key(inst, params)
            hit = models.get(key)
            if hit is None:
                try:
                    model = type(w).Params.model_validate({**base_params[inst], **params})
                except ValidationError as exc:
                    hit = exc
                else:
                    dumped = model.model_dump(mode="json")
                    hit = (model, dumped, canonical_json(dumped))
                models[key] = hit
            if isinstance(hit, ValidationError):
                error = hit
                break
            model, resolved[inst], canonical[inst] = hit
            new[inst] = type(w)(inst, model)
        if error is not None:
            # the same wording as the general path: one impossible combination is a failed row
            why = validation_message(error, "", ()).split(": ", 2)[-1]
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
        wf = _replace(wf_base, new)
        prepared.append(_Prepared(i, h[:16], h, wf, _group_key(wf, canonical)))

    return prepared, outcomes


def run_batch(base: BuildSpecs, prepared: list["_Prepared"], outcomes: list[Optional[RunOutcome]],
              data: Optional[pd.DataFrame] = None, cache: Optional[dict] = None,
              on_done: Optional[Callable[[RunOutcome], None]] = None,
              keep_returns: bool = False) -> list[Optional[RunOutcome]]:
    """Run validated combinations through the batch kernel, filling ``outcomes`` in place.

    ``on_done`` sees every computed outcome as soon as its wave finishes; with
    ``keep_returns`` each outcome carries its daily returns (``outcome.result``).
    """
    from .operation import resolve_data

    if not prepared:
        return outcomes  # nothing valid (or everything resumed): no data needs loading
    bars = resolve_data(base, data)

    # 2..4 in waves of whole groups, so progress and the results store advance as we go
    shared = cache if cache is not None else {}
    by_group: dict[str, list[_Prepared]] = {}
    for p in prepared:
        by_group.setdefault(p.group_key, []).append(p)
    # waves bound how much finished work a kill can lose and pace the progress bar; each
    # wave is one kernel call per bucket, so they are kept large enough to fill the cores
    wave_size = max(256, len(prepared) // 10)
    shared.setdefault("__calendar__", calendar(bars.index))
    wave: list[str] = []
    count = 0
    for gk, members in by_group.items():
        wave.append(gk)
        count += len(members)
        if count >= wave_size:
            _run_wave(base, bars, wave, by_group, shared, outcomes, on_done, keep_returns)
            wave, count = [], 0
    if wave:
        _run_wave(base, bars, wave, by_group, shared, outcomes, on_done, keep_returns)
    return outcomes


def _group_arrays(wf: Workforce, bars: pd.DataFrame, pip: float, shared: dict) -> dict[str, Any]:
    """Features, opportunities and threat masks of one group (or the error computing them)."""
    try:
        ctx = FeatureContext(bars, pip_size=pip, context_params=wf.context_params(), cache=shared)
        for w in wf.context:
            ctx.feature(w.name, w.params.model_dump(mode="json"))
        opps = merge_signals(ctx, wf.opportunity)
        k = len(wf.threat)
        masks = np.zeros((k, ctx.n), dtype=np.int8)
        reasons = np.zeros(k, dtype=np.int64)
        for j, w in enumerate(wf.threat):
            reasons[j] = codes.THREAT_REASONS[w.reason]  # type: ignore[attr-defined]
            if w.drawdown_limit() is None:  # type: ignore[attr-defined]
                # a mask depends on its plugin's params and the data only: groups share it
                key = ("__mask__", w.name, canonical_json(w.params.model_dump(mode="json")),
                       canonical_json(wf.context_params()))
                mask = shared.get(key)
                if mask is None:
                    mask = shared[key] = w.mask(ctx)  # type: ignore[attr-defined]
                masks[j] = mask
        return {"ctx": ctx, "opps": opps, "masks": masks, "reasons": reasons}
    except Exception as exc:  # noqa: BLE001 - the group's runs fail, the sweep goes on
        return {"error": exc}


def _run_wave(base: BuildSpecs, bars: pd.DataFrame, wave: list[str], by_group: dict[str, list[_Prepared]],
              shared: dict, outcomes: list[Optional[RunOutcome]], on_done: Optional[Callable],
              keep_returns: bool = False) -> None:
    from ..engine.nb.batch import sweep

    op = base._operation
    groups = {gk: _group_arrays(by_group[gk][0].workforce, bars, op["instrument"]["pip_size"], shared)
              for gk in wave}

    def done(out: RunOutcome) -> None:
        outcomes[out.index] = out
        if on_done is not None:
            on_done(out)

    # per-combination plans, bucketed by what the kernel takes as scalars
    buckets: dict[tuple, list[tuple[_Prepared, Any]]] = {}
    entries: dict[tuple, Any] = {}
    for gk in wave:
        g = groups[gk]
        for p in by_group[gk]:
            if "error" in g:
                done(_failed(p.index, p.run_id, p.spec_hash, g["error"]))
                continue
            wf = p.workforce
            try:
                # one entry plan per group and entry worker: combinations that only differ in
                # exits or sizing share the entry worker object (validate_combos replaces only
                # the swept workers), so they share its plan and level arrays (_LevelPack)
                ekey = (gk, id(wf.entry))
                entry = entries.get(ekey)
                if entry is None:
                    entry = entries[ekey] = wf.entry.plan(g["ctx"], g["opps"])  # type: ignore[attr-defined]
                exit_plan = combine_exits(g["ctx"], wf.exits, g["opps"], entry)
                size = wf.size.plan()  # type: ignore[attr-defined]
                k = len(wf.threat)
                dd_limit = np.full(k, np.nan)
                dd_cool = np.zeros(k, dtype=np.int64)
                for j, w in enumerate(wf.threat):
                    dd = w.drawdown_limit()  # type: ignore[attr-defined]
                    if dd is not None:
                        dd_limit[j], dd_cool[j] = dd
            except Exception as exc:  # noqa: BLE001
                done(_failed(p.index, p.run_id, p.spec_hash, exc))
                continue
            key = (int(exit_plan.stop_mode), int(exit_plan.target_mode),
                   2 if exit_plan.exclusive else int(exit_plan.reverse), int(size.kind), bool(size.whole_units))
            buckets.setdefault(key, []).append((p, (entry, exit_plan, size, dd_limit, dd_cool)))

    direction = base._blueprint["direction"]
    index = bars.index
    day_end, ppy, years = shared["__calendar__"]
    n_days = int(day_end.sum())
    days = index[day_end].normalize().asi8
    o, h_, lo, c_ = shared["__prices__"][:4]
    for (stop_mode, target_mode, reverse, sizer_kind, whole), items in buckets.items():
        for chunk in _chunks(items, groups, 8 * n_days if keep_returns else 0):
            gkeys = list(dict.fromkeys(p.group_key for p, _ in chunk))
            gpos = {gk: j for j, gk in enumerate(gkeys)}
            opps_list = [groups[gk]["opps"] for gk in gkeys]
            opp_off = np.zeros(len(gkeys) + 1, dtype=np.int64)
            opp_off[1:] = np.cumsum([len(x) for x in opps_list])
            opp_bar = np.ascontiguousarray(np.concatenate([x.bar for x in opps_list]).astype(np.int64))
            opp_dir = np.ascontiguousarray(np.concatenate([x.direction for x in opps_list]).astype(np.int64))
            masks = np.ascontiguousarray(np.stack([groups[gk]["masks"] for gk in gkeys]))
            reasons = groups[gkeys[0]]["reasons"]
            n_c = len(chunk)
            combo_group = np.array([gpos[p.group_key] for p, _ in chunk], dtype=np.int64)
            packs = [_LevelPack() for _ in range(4)]
            levels_at = np.empty((n_c, 8), dtype=np.int64)
            k = masks.shape[1]
            dd_limit = np.full((n_c, k), np.nan)
            dd_cool = np.zeros((n_c, k), dtype=np.int64)
            expiry = np.zeros(n_c, dtype=np.int64)
            sizer_param = np.zeros(n_c)
            returns_out = np.empty((n_c, n_days) if keep_returns else (0, 0))
            for j, (p, (entry, ex, size, ddl, ddc)) in enumerate(chunk):
                for q, levels in enumerate((entry.limit, entry.cancel, ex.stop, ex.target)):
                    levels_at[j, 2 * q:2 * q + 2] = packs[q].add(levels)
                dd_limit[j] = ddl
                dd_cool[j] = ddc
                expiry[j] = int(entry.expiry_bars)
                sizer_param[j] = float(size.param)
            limit, cancel, stop, target = (pack.array() for pack in packs)
            vecs = sweep(o, h_, lo, c_, day_end, opp_off, opp_bar, opp_dir, masks, reasons,
                         combo_group, limit, cancel, stop, target, levels_at, dd_limit, dd_cool, expiry, sizer_param,
                         stop_mode, target_mode, reverse, direction != "short_only", direction != "long_only",
                         sizer_kind, whole, float(op["cash"]), float(op["commission"]), float(op["slippage"]),
                         float(op["leverage"]), bool(op["finalize_trades"]), ppy, years, returns_out)
            for j, ((p, _), metrics) in enumerate(zip(chunk, metrics_json(vecs))):
                done(RunOutcome(p.index, p.run_id, p.spec_hash, "ok", metrics=metrics,
                                result=(days, returns_out[j].copy()) if keep_returns else None))


class _LevelPack:
    """One flat array of the per-opportunity levels (limits, stops, ...) of a kernel call.

    A level array that holds one value for every opportunity (None = NaN, or a broadcast
    view from :func:`metaflow_nb.workers.base.same_for_all`) is stored as that one value,
    which the kernel applies to all opportunities; an array seen before (the same object,
    e.g. one entry plan shared by a group) is stored once. So a sweep of percent stops
    costs a few numbers per combination, not a copy of its levels per combination.
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
        span = self.seen.get(id(levels))
        if span is None:
            values = kernel_levels(levels)
            if len(values) == 1:
                key = float(values[0]).hex()  # exact, and one key for NaN
                span = self.scalars.get(key)
                if span is None:
                    span = self.scalars[key] = self._put(values)
            else:
                span = self._put(values)
            self.seen[id(levels)] = span
        return span

    def array(self) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(self.parts) if self.parts else np.empty(0))


def _sections(bp: dict[str, Any]) -> list[list[dict[str, Any]]]:
    wf = bp["workforce"]
    return [wf["context_workers"], wf["opportunity_workers"], wf["threat_workers"], *wf["planning_workers"].values()]


def _chunks(items: list, groups: dict, day_bytes: int):
    """Split a bucket so the inputs of one kernel call stay under CHUNK_BYTES: per group
    its opportunities and threat masks, per combination its levels as packed (a constant
    level is one number) and, when kept, its daily returns (``day_bytes``)."""
    chunk: list = []
    seen: set[str] = set()
    size = 0
    for item in items:
        p, (entry, ex, *_rest) = item
        g = groups[p.group_key]
        own = 64 + day_bytes + 8 * sum(1 if constant_levels(x) else len(x)
                                       for x in (entry.limit, entry.cancel, ex.stop, ex.target))
        shared = g["masks"].nbytes + 16 * len(g["opps"])
        if chunk and size + own + (0 if p.group_key in seen else shared) > CHUNK_BYTES:
            yield chunk
            chunk, seen, size = [], set(), 0
        if p.group_key not in seen:
            size += shared
            seen.add(p.group_key)
        chunk.append(item)
        size += own
    if chunk:
        yield chunk
