"""The Python side of one simulation: workers -> kernel arrays -> named outputs.

``prepare`` runs the workers (vectorised, outside the loop) and assembles the arrays the
compiled loop needs; ``simulate`` calls the kernel; ``trades_frame``/``journal_frame``
name what comes back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from ..config.buildspecs import BuildSpecs
from ..errors import RunError
from ..workers.base import (
    EntryPlan, ExitPlan, FeatureContext, Opportunities, SizePlan, Worker, get_plugin,
)
from . import codes
from .nb import simulate as nbsim


@dataclass
class Workforce:
    """The plugin instances of one BuildSpecs, by role, in workforce order."""

    context: list[Worker]
    opportunity: list[Worker]
    threat: list[Worker]
    entry: Worker
    exits: list[Worker]
    size: Worker

    @classmethod
    def from_specs(cls, specs: BuildSpecs) -> "Workforce":
        made: dict[str, list[Worker]] = {}
        for w in specs._workers:  # read only: the params are validated into new models
            plugin = get_plugin(w["plugin"])
            made.setdefault(w["section"], []).append(plugin(w["instance_id"], plugin.Params.model_validate(w["params"])))
        return cls(
            context=made.get("context_workers", []),
            opportunity=made.get("opportunity_workers", []),
            threat=made.get("threat_workers", []),
            entry=made["entry_planning"][0],
            exits=made.get("exit_planning", []),
            size=made["size_planning"][0],
        )

    def context_params(self) -> dict[str, dict[str, Any]]:
        """The first configured instance of each context plugin sets what ``ctx.context`` returns."""
        out: dict[str, dict[str, Any]] = {}
        for w in self.context:
            out.setdefault(w.name, w.params.model_dump(mode="json"))
        return out


@dataclass
class KernelInputs:
    """Everything :func:`metaflow_nb.engine.nb.simulate.simulate` takes, by name."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    opps: Opportunities
    entry: EntryPlan
    exit: ExitPlan
    size: SizePlan
    threat_mask: np.ndarray
    threat_dd_limit: np.ndarray
    threat_dd_cooldown: np.ndarray
    threat_reason: np.ndarray
    threat_ids: list[str]
    allow_long: bool
    allow_short: bool
    cash: float
    commission: float
    slippage: float
    leverage: float
    finalize: bool
    context: FeatureContext = field(repr=False, default=None)  # type: ignore[assignment]

    def args(self) -> tuple:
        o = self.opps
        return (self.open, self.high, self.low, self.close,
                o.bar, o.direction, kernel_levels(self.entry.limit), kernel_levels(self.entry.cancel),
                kernel_levels(self.exit.stop), kernel_levels(self.exit.target),
                self.threat_mask, self.threat_dd_limit, self.threat_dd_cooldown, self.threat_reason,
                int(self.exit.stop_mode), int(self.exit.target_mode),
                2 if self.exit.exclusive else int(self.exit.reverse),
                self.allow_long, self.allow_short, int(self.entry.expiry_bars),
                int(self.size.kind), float(self.size.param), bool(self.size.whole_units),
                self.cash, self.commission, self.slippage, self.leverage, self.finalize)


def merge_signals(ctx: FeatureContext, workers: list[Worker]) -> Opportunities:
    """Run every opportunity worker and merge their setups, sorted by bar then worker."""
    bars, dirs, who, tops, bottoms = [], [], [], [], []
    for k, w in enumerate(workers):
        sig = w.detect(ctx)  # type: ignore[attr-defined]
        if sig.direction.shape[0] != ctx.n:
            raise RunError(f"{w.instance_id}: opportunity worker returned {sig.direction.shape[0]} bars, "
                           f"expected {ctx.n}")
        # nonzero of a boolean mask is several times faster than of the int8 directions
        idx = np.flatnonzero(sig.direction != 0)
        bars.append(idx)
        dirs.append(sig.direction[idx].astype(np.int64))
        who.append(np.full(idx.shape[0], k, dtype=np.int64))
        tops.append(sig.top[idx])
        bottoms.append(sig.bottom[idx])
    if len(bars) == 1:
        # one worker: its setups are already in bar order (what the sort below gives)
        bar = bars[0].astype(np.int64, copy=False)
        return Opportunities(
            bar=np.ascontiguousarray(bar), direction=np.ascontiguousarray(dirs[0]),
            worker=who[0], top=np.ascontiguousarray(tops[0]), bottom=np.ascontiguousarray(bottoms[0]),
            signal_close=np.ascontiguousarray(ctx.close[bar]),
        )
    bar = np.concatenate(bars) if bars else np.empty(0, np.int64)
    worker = np.concatenate(who) if who else np.empty(0, np.int64)
    order = np.lexsort((worker, bar))
    bar = bar[order].astype(np.int64)
    return Opportunities(
        bar=np.ascontiguousarray(bar),
        direction=np.ascontiguousarray(np.concatenate(dirs)[order] if dirs else np.empty(0, np.int64)),
        worker=np.ascontiguousarray(worker[order]),
        top=np.ascontiguousarray(np.concatenate(tops)[order] if tops else np.empty(0)),
        bottom=np.ascontiguousarray(np.concatenate(bottoms)[order] if bottoms else np.empty(0)),
        signal_close=np.ascontiguousarray(ctx.close[bar]),
    )


def kernel_levels(levels: Optional[np.ndarray]) -> np.ndarray:
    """A plan's per-opportunity levels as the kernel takes them: a contiguous float array,
    or a single value when every opportunity has the same one (None: NaN, no level; a
    broadcast view from :func:`metaflow_nb.workers.base.same_for_all`).

    >>> from metaflow_nb.workers.base import same_for_all
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
    kernel gets that one number (:func:`kernel_levels`)."""
    return levels is None or (levels.ndim == 1 and len(levels) > 1 and levels.strides[0] == 0)


def combine_exits(ctx: FeatureContext, exits: list[Worker], opps: Opportunities, entry: EntryPlan) -> ExitPlan:
    """One exit plan from the exit planners: the stop and target of whichever sets them."""
    stop_mode, stop, target_mode, target = codes.PRICE_NONE, None, codes.PRICE_NONE, None
    reverse = exclusive = False
    for w in exits:
        plan = w.plan(ctx, opps, entry)  # type: ignore[attr-defined]
        reverse = reverse or plan.reverse
        exclusive = exclusive or plan.exclusive
        if plan.stop_mode != codes.PRICE_NONE:
            stop_mode, stop = plan.stop_mode, plan.stop
        if plan.target_mode != codes.PRICE_NONE:
            target_mode, target = plan.target_mode, plan.target
    return ExitPlan(stop_mode, stop, target_mode, target, reverse, exclusive)


def trade_start_bar(specs: BuildSpecs, index: pd.DatetimeIndex) -> int:
    """Index of the first bar setups may be acted on (``data.trade_start``), 0 without one."""
    ts = specs._operation["data"].get("trade_start")
    if not ts:
        return 0
    return int(index.searchsorted(pd.Timestamp(ts), side="left"))


def prepare(specs: BuildSpecs, data: pd.DataFrame, cache: Optional[dict] = None,
            workforce: Optional[Workforce] = None) -> KernelInputs:
    """Run the workers on ``data`` and assemble the kernel's inputs (no simulation yet)."""
    wf = workforce or Workforce.from_specs(specs)
    op = specs._operation
    ctx = FeatureContext(data, pip_size=op["instrument"]["pip_size"], context_params=wf.context_params(),
                         cache=cache)
    for w in wf.context:
        # computed up front so a broken context worker fails here, named, not inside another
        ctx.feature(w.name, w.params.model_dump(mode="json"))
    opps = merge_signals(ctx, wf.opportunity)
    first = trade_start_bar(specs, data.index)
    if first > 0:
        keep = opps.bar >= first
        opps = Opportunities(*(np.ascontiguousarray(getattr(opps, f)[keep]) for f in
                               ("bar", "direction", "worker", "top", "bottom", "signal_close")))
    entry = wf.entry.plan(ctx, opps)  # type: ignore[attr-defined]
    exit_plan = combine_exits(ctx, wf.exits, opps, entry)
    size = wf.size.plan()  # type: ignore[attr-defined]

    k = len(wf.threat)
    mask = np.zeros((k, ctx.n), dtype=np.int8)
    dd_limit = np.full(k, np.nan)
    dd_cool = np.zeros(k, dtype=np.int64)
    reason = np.zeros(k, dtype=np.int64)
    for j, w in enumerate(wf.threat):
        reason[j] = codes.THREAT_REASONS[w.reason]  # type: ignore[attr-defined]
        dd = w.drawdown_limit()  # type: ignore[attr-defined]
        if dd is not None:
            dd_limit[j], dd_cool[j] = dd
        else:
            mask[j] = w.mask(ctx)  # type: ignore[attr-defined]

    direction = specs._blueprint["direction"]
    return KernelInputs(
        open=ctx.open, high=ctx.high, low=ctx.low, close=ctx.close, opps=opps, entry=entry,
        exit=exit_plan, size=size, threat_mask=mask, threat_dd_limit=dd_limit,
        threat_dd_cooldown=dd_cool, threat_reason=reason, threat_ids=[w.instance_id for w in wf.threat],
        allow_long=direction != "short_only", allow_short=direction != "long_only",
        cash=float(op["cash"]), commission=float(op["commission"]), slippage=float(op["slippage"]),
        leverage=float(op["leverage"]), finalize=bool(op["finalize_trades"]), context=ctx,
    )


@dataclass
class SimulationOutput:
    """Raw kernel output plus what is needed to name it."""

    inputs: KernelInputs
    index: pd.DatetimeIndex
    equity: np.ndarray
    position: np.ndarray
    trades: np.ndarray
    journal: np.ndarray


def simulate(specs: BuildSpecs, data: pd.DataFrame, cache: Optional[dict] = None) -> SimulationOutput:
    """Prepare and run one simulation."""
    inputs = prepare(specs, data, cache)
    equity, position, trades, n_trades, journal, n_ev = nbsim.simulate(*inputs.args())
    return SimulationOutput(inputs, data.index, equity, position, trades[:n_trades], journal[:n_ev])


_TRADE_COLUMNS = ["trade_id", "opportunity_id", "direction", "entry_bar", "exit_bar", "entry_time", "exit_time",
                  "entry_price", "exit_price", "size", "pnl", "return_pct", "commission", "exit_reason",
                  "stop_price", "target_price", "duration_bars"]


def trades_frame(out: SimulationOutput) -> pd.DataFrame:
    """One row per closed trade, linked to its opportunity by ``opportunity_id``."""
    t = out.trades
    n = t.shape[0]
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in _TRADE_COLUMNS})
    if _from_blocks is not None and out.index.dtype == _NS:
        return _trades_from_blocks(t, out.index)
    entry_bar = t[:, nbsim.T_ENTRY_BAR].astype(np.int64)
    exit_bar = t[:, nbsim.T_EXIT_BAR].astype(np.int64)
    size = t[:, nbsim.T_SIZE]
    entry_price = t[:, nbsim.T_ENTRY_PRICE]
    pnl = t[:, nbsim.T_PNL]
    reasons = _REASON_TABLE[t[:, nbsim.T_EXIT_REASON].astype(np.int64)]
    return pd.DataFrame({
        "trade_id": np.arange(n, dtype=np.int64),
        "opportunity_id": t[:, nbsim.T_OPP].astype(np.int64),
        "direction": _text(_DIRECTION_TABLE[(t[:, nbsim.T_DIR] > 0).view(np.int8)]),
        "entry_bar": entry_bar,
        "exit_bar": exit_bar,
        "entry_time": out.index[entry_bar],
        "exit_time": out.index[exit_bar],
        "entry_price": entry_price,
        "exit_price": t[:, nbsim.T_EXIT_PRICE],
        "size": size,
        "pnl": pnl,
        "return_pct": pnl / (entry_price * size) * 100.0,
        "commission": t[:, nbsim.T_COMMISSION],
        "exit_reason": _text(reasons),
        "stop_price": t[:, nbsim.T_STOP],
        "target_price": t[:, nbsim.T_TARGET],
        "duration_bars": exit_bar - entry_bar,
    })


def _trades_from_blocks(t: np.ndarray, index: pd.DatetimeIndex) -> pd.DataFrame:
    """:func:`trades_frame` built as its four dtype blocks directly: the same frame (values,
    dtypes, columns, index) without the constructor's per-column inference and copies."""
    n = t.shape[0]
    ints = np.empty((5, n), dtype=np.int64)  # trade_id, opportunity_id, entry_bar, exit_bar, duration_bars
    ints[0] = np.arange(n, dtype=np.int64)
    ints[1] = t[:, nbsim.T_OPP]  # float -> int64 as astype does
    ints[2] = t[:, nbsim.T_ENTRY_BAR]
    ints[3] = t[:, nbsim.T_EXIT_BAR]
    np.subtract(ints[3], ints[2], out=ints[4])
    floats = np.empty((8, n), dtype=np.float64)
    for row, col in enumerate((nbsim.T_ENTRY_PRICE, nbsim.T_EXIT_PRICE, nbsim.T_SIZE, nbsim.T_PNL)):
        floats[row] = t[:, col]
    floats[4] = floats[3] / (floats[0] * floats[2]) * 100.0  # return_pct
    floats[5] = t[:, nbsim.T_COMMISSION]
    floats[6] = t[:, nbsim.T_STOP]
    floats[7] = t[:, nbsim.T_TARGET]
    times = np.empty((2, n), dtype=_NS)
    stamps = index.asi8
    times.view(np.int64)[0] = stamps[ints[2]]
    times.view(np.int64)[1] = stamps[ints[3]]
    text = np.empty((2, n), dtype=object)
    text[0] = _DIRECTION_TABLE[(t[:, nbsim.T_DIR] > 0).view(np.int8)]
    text[1] = _REASON_TABLE[t[:, nbsim.T_EXIT_REASON].astype(np.int64)]
    return _from_blocks([(ints, _TRADE_INT_AT), (floats, _TRADE_FLOAT_AT), (times, _TRADE_TIME_AT),
                         (text, _TRADE_TEXT_AT)], pd.RangeIndex(n), _TRADE_COLUMN_INDEX)


def journal_frame(out: SimulationOutput, worker_ids: list[str]) -> pd.DataFrame:
    """The run's event log: every detection, rejection (with threat and reason), order and trade.

    ``opportunity_id`` links events of one setup; ``trade_id`` links TRADE_OPENED/CLOSED to
    the trades table; ``threat_id`` names the first threat (workforce order) that rejected
    a setup, ``reason`` its reason code and ``active_reasons`` all threats active then.
    """
    j = out.journal
    opps = out.inputs.opps
    threat_ids = out.inputs.threat_ids
    n = j.shape[0]
    bar = j[:, nbsim.J_BAR]
    opp = j[:, nbsim.J_OPP]
    threat = j[:, nbsim.J_THREAT]
    active = j[:, nbsim.J_ACTIVE]
    has_opp = opp >= 0
    safe_opp = np.where(has_opp, opp, 0) if len(opps) else np.zeros(n, dtype=np.int64)
    # names by lookup tables indexed with the integer codes: no Python loop per event
    reason_of = [codes.REASON_NAMES[int(r)] for r in out.inputs.threat_reason]
    active_names = np.full(n, "", dtype=object)
    for a in np.unique(active[active != 0]):
        a = int(a)
        active_names[active == a] = "|".join(reason_of[t] for t in range(len(threat_ids)) if a >> t & 1)
    source = np.asarray([*worker_ids, ""], dtype=object)
    src_idx = np.where(has_opp, opps.worker[safe_opp], len(worker_ids)) if len(opps) else \
        np.full(n, len(worker_ids), dtype=np.int64)
    threat_names = np.asarray([*threat_ids, ""], dtype=object)
    return pd.DataFrame({
        "event_id": np.arange(n, dtype=np.int64),
        "bar": bar,
        "time": out.index[bar] if n else pd.DatetimeIndex([]),
        "event": _text(_EVENT_TABLE[j[:, nbsim.J_TYPE]]),
        "opportunity_id": opp,
        "trade_id": j[:, nbsim.J_TRADE],
        "direction": _text(_DIRECTION_TABLE[(j[:, nbsim.J_DIR] > 0).view(np.int8)]),
        "source_id": _text(source[src_idx]),
        "threat_id": _text(threat_names[np.where(threat >= 0, threat, len(threat_ids))]),
        "reason": _text(_REASON_TABLE[j[:, nbsim.J_REASON]]),
        "active_reasons": _text(active_names),
        "zone_top": np.where(has_opp, opps.top[safe_opp], np.nan) if len(opps) else np.full(n, np.nan),
        "zone_bottom": np.where(has_opp, opps.bottom[safe_opp], np.nan) if len(opps) else np.full(n, np.nan),
    })


def _text(values: np.ndarray) -> pd.Series:
    # plain object columns: pandas 3 would otherwise convert every string to Arrow, which
    # costs more than the whole simulation of a 100k-bar run
    return pd.Series(values, dtype=object, copy=False)


def _table(names: dict[int, str]) -> np.ndarray:
    t = np.full(max(names) + 1, "", dtype=object)
    for k, v in names.items():
        t[k] = v
    return t


_EVENT_TABLE = _table(codes.EVENT_NAMES)
_REASON_TABLE = _table(codes.REASON_NAMES)
_DIRECTION_TABLE = np.array(["short", "long"], dtype=object)  # indexed by direction > 0

try:  # pandas >= 3: a frame from ready-made blocks (public, "advanced" API)
    from pandas.api.internals import create_dataframe_from_blocks as _from_blocks
except ImportError:  # pragma: no cover - pandas 2: the constructor path above
    _from_blocks = None
_NS = np.dtype("datetime64[ns]")
_TRADE_COLUMN_INDEX = pd.Index(_TRADE_COLUMNS)
_TRADE_INT_AT, _TRADE_FLOAT_AT, _TRADE_TIME_AT, _TRADE_TEXT_AT = (
    np.array([_TRADE_COLUMNS.index(c) for c in cols], dtype=np.intp) for cols in (
        ("trade_id", "opportunity_id", "entry_bar", "exit_bar", "duration_bars"),
        ("entry_price", "exit_price", "size", "pnl", "return_pct", "commission", "stop_price", "target_price"),
        ("entry_time", "exit_time"),
        ("direction", "exit_reason")))
