"""Prefix replay: does any worker of a strategy use bars it could not have seen yet?

A causal worker's output at bar ``i`` depends on bars ``0..i`` only, so running it on
the first ``k`` bars (``bars.iloc[:k]``, a *cut* at ``k``) gives, for every ``i < k``,
exactly the values it gives on all the data. :func:`check_causality` runs a strategy (or
one worker) on the full data and again on prefixes ending at a few cut points, and
compares what each part of the run path produced before the cut:

* every array of the feature cache: the context workers' outputs and every feature any
  worker requested with ``ctx.feature``/``ctx.context`` (labelled by the context
  instance that configures it, else by the call, ``ctx.feature("atr", {"period": 5})``);
* each opportunity worker's ``Signals`` (``direction``, ``top``, ``bottom``) per bar,
  and its setups' ``score`` when it defines one (what ``rank: score`` orders a
  portfolio's simultaneous setups by);
* each mask-type threat worker's mask per bar;
* the entry plan's and each exit planner's per-setup arrays (limit, cancel, stop,
  target, ...) for the setups stamped before the cut, and their single values (modes,
  expiry), and the size plan;
* the whole run's journal and closed trades, on bars before the prefix's last bar. On
  its own last bar a prefix run legitimately differs: it places no order (there is no
  next bar to fill it), so a setup of that bar is not placed and later setups of the
  bar are skipped for other reasons, and with ``finalize_trades`` it closes the open
  position there (``END_OF_DATA``). Events of that bar and trades closed on it are not
  compared; everything before it must be identical.

Values are compared exactly (NaN equals NaN): causal code computes bar ``i`` with the
same operations on the same inputs whether or not later bars exist, so it gives the same
bits. The full run is made twice; an output that differs between two identical runs is
reported as ``not reproducible`` (random numbers, state kept between calls) rather than
as look-ahead.

What a finite set of cuts cannot prove: an output can look ahead only on some bars (a
repainting swing that changes only when a later bar exceeds it), and a cut shows only
what changes when bars from the cut on are removed. More cuts, other seeds and other
data make a miss less likely; none makes it impossible.
"""
from __future__ import annotations

import dataclasses
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..assembly.checks import (
    check_drawdown, check_entry, check_exit, check_features, check_mask, check_signals, check_size,
)
from ..assembly.group import worker_scores
from ..assembly.run import run_one, trade_start_bar
from ..assembly.workforce import Workforce
from ..config.buildspecs import BuildSpecs, data_zone_problem, reason_problem
from ..config.loading import validate_model
from ..config.portfolio import is_portfolio_operation
from ..config.translator import ConfigTranslator, DataLike, OperationLike
from ..engine import codes
from ..errors import ConfigError, RunError
from ..workers.calls import call_worker
from ..workers.contracts import EntryPlan, Opportunities, Worker
from ..workers.features import TIMEFRAME_KEY, FeatureContext, cache_key
from ..workers.registry import get_plugin
from .formatting import json_safe
from .operation import resolve_data

CutsLike = Union[int, Sequence[int]]
TargetLike = Union[str, Path, Mapping[str, Any], BuildSpecs, Worker, type]

#: the worker label of the whole run's outputs (journal, trades)
RUN = "run"

#: a strategy that only carries an operation (data, pip size) when one worker is checked
_CARRIER = {
    "name": "causality_check",
    "workforce": {
        "opportunity_workers": [{"instance_id": "carrier", "plugin": "sma_cross"}],
        "planning_workers": {"entry_planning": [{"instance_id": "entry", "plugin": "market_entry"}],
                             "size_planning": [{"instance_id": "size", "plugin": "all_in_sizer"}]},
    },
}

_FINDING_COLUMNS = ["worker", "output", "first_bar", "time", "cut", "prefix", "full", "cuts_flagged", "kind"]


# ---------------------------------------------------------------- what one run produced

@dataclass
class _Observed:
    """Everything one run produced that a prefix run must reproduce, keyed by
    ``(worker instance, output)`` in workforce order."""

    n: int
    per_bar: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    setup_bar: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    setup_key: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.int64))  # worker, direction
    per_setup: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    scalars: dict[tuple[str, str], Any] = field(default_factory=dict)
    journal: Optional[np.ndarray] = None
    trades: Optional[np.ndarray] = None
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    def add_bars(self, worker: str, output: str, value: Any) -> None:
        arr = value if isinstance(value, np.ndarray) else None
        if arr is None or arr.ndim == 0:
            self.skipped.append((worker, output, "not an array"))
        elif arr.shape[0] != self.n:
            self.skipped.append((worker, output, f"{arr.shape[0]} values for {self.n} bars: not one per bar"))
        else:
            self.per_bar[(worker, output)] = arr

    def add_plan(self, worker: str, plan: Any) -> None:
        """The fields of a plan (a dataclass): per-bar arrays (a trailing stop's inputs, the
        bars to close at), per-setup arrays (levels) and single values (modes, expiry)."""
        m = int(self.setup_bar.shape[0])
        for f in dataclasses.fields(plan):
            value = getattr(plan, f.name)
            if isinstance(value, np.ndarray) and value.ndim >= 1:
                # a length of both (a setup on every bar) reads the same either way
                if value.shape[0] == self.n:
                    self.per_bar[(worker, f.name)] = value
                elif value.shape[0] == m:
                    self.per_setup[(worker, f.name)] = value
                else:
                    self.skipped.append((worker, f.name, f"{value.shape[0]} values for {self.n} bars "
                                                         f"and {m} setups"))
            else:
                self.scalars[(worker, f.name)] = value

    def set_setups(self, opps: Opportunities) -> None:
        self.setup_bar = np.asarray(opps.bar, dtype=np.int64)
        self.setup_key = np.stack([np.asarray(opps.worker, dtype=np.int64),
                                   np.asarray(opps.direction, dtype=np.int64)], axis=1)

    def outputs(self) -> list[tuple[str, str]]:
        out = [*self.per_bar, *self.per_setup, *self.scalars]
        if self.journal is not None:
            out += [(RUN, "journal"), (RUN, "trades")]
        return out


def _cached_features(obs: _Observed, ctx: FeatureContext, own: Mapping[Any, str]) -> None:
    """Every feature in the context's cache: ``own`` names the ones a configured context
    instance computes; the others are named by the call that requested them."""
    for key, value in list(ctx.cache.items()):
        # feature entries are keyed (plugin + params JSON, plugin class id); the run path's
        # own entries (prices, groups, masks) are keyed by strings or "__...__" tuples
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str)
                and not key[0].startswith("__") and isinstance(value, dict)):
            continue
        label = own.get(key)
        if label is None:
            text = key[0]
            at = text.find("{")
            plugin, params = (text[:at], json.loads(text[at:])) if at > 0 else (text, {})
            if plugin.endswith("]") and "[" in plugin:  # on a higher timeframe: "plugin[4h@fx]"
                plugin, spec = plugin[:-1].split("[", 1)
                params = {**params, TIMEFRAME_KEY: spec}
            label = f"ctx.feature({plugin!r}, {params!r})"
        for name, arr in value.items():
            obs.add_bars(label, str(name), arr)


def _observe_strategy(specs: BuildSpecs, bars: pd.DataFrame) -> _Observed:
    """One run of ``specs`` on ``bars`` through the run path, with a cache of its own
    (nothing computed on other data can be reused)."""
    wf = Workforce.from_specs(specs)
    out = run_one(specs, bars, {}, workforce=wf)
    group, plan, ctx = out.group, out.plan, out.group.ctx
    obs = _Observed(n=ctx.n)
    own: dict[Any, str] = {}
    for w in wf.context:
        try:
            own.setdefault(cache_key(w.name, wf.feature_params(w)), w.instance_id)
        except KeyError:  # not registered under its name: its outputs are labelled by the call
            pass
    _cached_features(obs, ctx, own)
    for w in wf.opportunity:
        # the merged setups drop warm-up bars and keep only nonzero directions: the
        # worker's own arrays say more, and cost one more call on cached features
        sig = call_worker(w, "detect", ctx)
        for name in ("direction", "top", "bottom"):
            obs.add_bars(w.instance_id, name, getattr(sig, name))
    for j, w in enumerate(wf.threat):
        if call_worker(w, "drawdown_limit") is None:
            obs.add_bars(w.instance_id, "mask", group.masks[j])
    obs.set_setups(group.opps)
    for k, w in enumerate(wf.opportunity):
        _add_scores(obs, w, ctx, group.opps, k)
    obs.add_plan(wf.entry.instance_id, plan.entry)
    for w in wf.exits:
        # each planner on its own, so a level is blamed on the instance that made it
        obs.add_plan(w.instance_id, call_worker(w, "plan", ctx, group.opps, plan.entry))
    obs.add_plan(wf.size.instance_id, plan.size)
    obs.journal, obs.trades = out.journal, out.trades
    return obs


def _add_scores(obs: _Observed, w: Worker, ctx: FeatureContext, opps: Opportunities, k: int) -> None:
    """Opportunity worker ``w``'s scores of its own setups (``opps.worker == k``), NaN on
    the other workers' setups, when it defines ``score``."""
    if not callable(getattr(w, "score", None)):
        return
    sel, scores = worker_scores(w, ctx, opps, k)
    values = np.full(len(opps), np.nan)
    values[sel] = scores
    obs.per_setup[(w.instance_id, "score")] = values


def _synthetic_setups(ctx: FeatureContext) -> Opportunities:
    """A setup on every bar, for a planner checked on its own: long after an up bar,
    short after a down bar, its zone the bar's own range (all known at its close)."""
    n = ctx.n
    bar = np.arange(n, dtype=np.int64)
    return Opportunities(bar=bar, direction=np.where(ctx.close >= ctx.open, 1, -1).astype(np.int64),
                         worker=np.zeros(n, dtype=np.int64), top=ctx.high.copy(), bottom=ctx.low.copy(),
                         signal_close=ctx.close.copy())


def _observe_worker(make: Callable[[], Worker], bars: pd.DataFrame, pip_size: float) -> _Observed:
    """One worker on its own on ``bars`` (a fresh instance per run: no state carries over),
    its outputs checked as the run path checks them (``assembly.checks``): an output a run
    refuses (a Series, a NaN direction, a wrong length) is a PluginError here too, not an
    output left uncompared."""
    w = make()
    ctx = FeatureContext(bars, pip_size=pip_size, cache={})
    obs = _Observed(n=ctx.n)
    wid = w.instance_id
    if w.role == "context":
        out = call_worker(w, "compute", ctx)
        check_features(w, out, ctx.n)
        for name, arr in out.items():
            obs.add_bars(wid, str(name), arr)
    elif w.role == "opportunity":
        sig = call_worker(w, "detect", ctx)
        bar, direction, top, bottom = check_signals(w, sig, ctx.n)
        for name in ("direction", "top", "bottom"):
            obs.add_bars(wid, name, getattr(sig, name))
        # its setups: where the cuts just after setups go, and what its scores are of
        opps = Opportunities(bar=bar.astype(np.int64), direction=direction,
                             worker=np.zeros(bar.shape[0], dtype=np.int64), top=np.ascontiguousarray(top),
                             bottom=np.ascontiguousarray(bottom), signal_close=ctx.close[bar])
        obs.set_setups(opps)
        if callable(getattr(w, "score", None)):
            _add_scores(obs, w, ctx, opps, 0)
    elif w.role == "threat":
        limit = call_worker(w, "drawdown_limit")
        if limit is None:
            obs.add_bars(wid, "mask", check_mask(w, call_worker(w, "mask", ctx), ctx.n))
        else:
            check_drawdown(w, limit)
            obs.skipped.append((wid, "drawdown_limit", "path dependent (runs inside the kernel): check it "
                                                       "within a strategy, whose journal is compared"))
    elif w.role in ("entry", "exit"):
        opps = _synthetic_setups(ctx)
        obs.set_setups(opps)
        if w.role == "entry":
            plan = call_worker(w, "plan", ctx, opps)
            check_entry(w, plan, opps)
        else:
            entry = EntryPlan(limit=(opps.top + opps.bottom) / 2.0, cancel=np.full(ctx.n, np.nan))
            plan = call_worker(w, "plan", ctx, opps, entry)
            check_exit(w, plan, opps, ctx.n)
        obs.add_plan(wid, plan)
    elif w.role == "size":
        plan = call_worker(w, "plan")
        check_size(w, plan)
        obs.add_plan(wid, plan)
    _cached_features(obs, ctx, {})
    return obs


# ---------------------------------------------------------------- comparing two runs

def _first_diff(a: np.ndarray, b: np.ndarray) -> Optional[int]:
    """Index of the first row where ``a`` and ``b`` differ (NaN equals NaN), or None."""
    if a.shape != b.shape:
        return 0
    if a.shape[0] == 0:
        return None
    try:
        neq = np.asarray(a != b)
    except (TypeError, ValueError):
        neq = np.array([not _same_value(x, y) for x, y in zip(a, b)])
    if neq.shape != a.shape:  # an elementwise comparison numpy could not make
        neq = np.array([not _same_value(x, y) for x, y in zip(a, b)])
    if a.dtype.kind in "fcOmM" or b.dtype.kind in "fcOmM":
        neq = neq & ~(pd.isna(a) & pd.isna(b))
    if neq.ndim > 1:
        neq = neq.reshape(neq.shape[0], -1).any(axis=1)
    idx = np.flatnonzero(neq)
    return int(idx[0]) if idx.size else None


def _same_value(x: Any, y: Any) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        x, y = np.asarray(x), np.asarray(y)
        return x.shape == y.shape and _first_diff(x.reshape(-1), y.reshape(-1)) is None
    try:
        if pd.isna(x) and pd.isna(y):
            return True
    except (TypeError, ValueError):
        pass
    try:
        return bool(x == y)
    except (TypeError, ValueError):
        return False


def _shown(value: Any) -> Any:
    """A value as a finding shows it: Python scalars (floats at full precision), lists."""
    if isinstance(value, np.ndarray):
        return [_shown(v) for v in value.tolist()] if value.ndim else _shown(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _event_text(row: Optional[np.void], last: int) -> str:
    if row is None:
        return f"(no further event before bar {last})"
    parts = [f"bar {int(row['bar'])}", codes.EVENT_NAMES.get(int(row["event"]), str(int(row["event"])))]
    if row["opp"] >= 0:
        parts.append(f"setup {int(row['opp'])}")
    if row["trade"] >= 0:
        parts.append(f"trade {int(row['trade'])}")
    parts.append("long" if row["direction"] > 0 else "short")
    reason = codes.REASON_NAMES.get(int(row["reason"]), str(int(row["reason"])))
    if reason:
        parts.append(reason)
    return " ".join(parts)


def _trade_text(row: Optional[np.void], last: int) -> str:
    if row is None:
        return f"(no further trade closed before bar {last})"
    reason = codes.REASON_NAMES.get(int(row["exit_reason"]), str(int(row["exit_reason"])))
    return (f"setup {int(row['opp'])} {'long' if row['direction'] > 0 else 'short'} "
            f"bar {int(row['entry_bar'])} @ {float(row['entry_price'])!r} -> bar {int(row['exit_bar'])} "
            f"@ {float(row['exit_price'])!r} size {float(row['size'])!r} pnl {float(row['pnl'])!r} {reason}")


#: the fields of a trade its entry decides
_TRADE_ENTRY = ("opp", "direction", "entry_bar", "entry_price", "size")


def _rows_differ(a: np.void, b: np.void) -> bool:
    return any(not _same_value(a[name], b[name]) for name in a.dtype.names)


def _compare(full: _Observed, part: _Observed, k: int, whole: bool = False) -> list[dict[str, Any]]:
    """Findings of ``part`` (the run on the first ``k`` bars) against ``full``: per output,
    the first bar before ``k`` whose value differs. ``whole``: ``part`` is a second run on
    the same data, compared everywhere (journal included)."""
    found: list[dict[str, Any]] = []

    def hit(key: tuple[str, str], bar: int, p: Any, f: Any) -> None:
        found.append({"worker": key[0], "output": key[1], "first_bar": int(bar), "prefix": _shown(p),
                      "full": _shown(f)})

    for key, fa in full.per_bar.items():
        pa = part.per_bar.get(key)
        if pa is None or pa.shape[0] != k:
            continue  # not requested on the prefix, or not one value per bar there
        i = _first_diff(pa, fa[:k])
        if i is not None:
            hit(key, i, pa[i], fa[i])

    # setups stamped before the cut, as long as both runs agree on which they are (where
    # they stop agreeing, the opportunity workers' own findings say why)
    m = int(np.searchsorted(full.setup_bar, k)) if not whole else int(full.setup_bar.shape[0])
    c = min(m, int(part.setup_bar.shape[0]))
    same = (full.setup_bar[:c] == part.setup_bar[:c]) & (full.setup_key[:c] == part.setup_key[:c]).all(axis=1)
    aligned = c if same.all() else int(np.argmin(same))
    for key, fa in full.per_setup.items():
        pa = part.per_setup.get(key)
        if pa is None:
            continue
        j = _first_diff(np.asarray(pa[:aligned]), np.asarray(fa[:aligned]))
        if j is not None:
            hit(key, full.setup_bar[j], pa[j], fa[j])
    first_setup = int(full.setup_bar[0]) if full.setup_bar.shape[0] else 0
    for key, fv in full.scalars.items():
        if key in part.scalars and not _same_value(part.scalars[key], fv):
            # one value for every setup: it changed for the first setup it applies to
            hit(key, first_setup, part.scalars[key], fv)

    if full.journal is not None and part.journal is not None:
        last = full.n if whole else k - 1  # the prefix's last bar: see the module docstring
        fj = full.journal[full.journal["bar"] < last]
        pj = part.journal[part.journal["bar"] < last]
        c = min(len(fj), len(pj))
        diff = np.flatnonzero(fj[:c] != pj[:c])
        j = int(diff[0]) if diff.size else (c if len(fj) != len(pj) else None)
        if j is not None:
            pr = pj[j] if j < len(pj) else None
            fr = fj[j] if j < len(fj) else None
            bar = min(int(r["bar"]) for r in (pr, fr) if r is not None)
            hit((RUN, "journal"), bar, _event_text(pr, last), _event_text(fr, last))
        ft = full.trades[full.trades["exit_bar"] < last]
        pt = part.trades[part.trades["exit_bar"] < last]
        best: Optional[tuple[int, Any, Any]] = None
        for j in range(max(len(ft), len(pt))):
            pr = pt[j] if j < len(pt) else None
            fr = ft[j] if j < len(ft) else None
            if pr is not None and fr is not None and not _rows_differ(pr, fr):
                continue
            # where the closed trades first differ: a trade both runs entered alike differs at
            # its earlier exit, one only one run has closed at its exit (the other may hold
            # it still; had it entered otherwise, the journal says so at the entry), one
            # entered otherwise at the earlier entry
            if pr is not None and fr is not None and not any(
                    not _same_value(pr[f], fr[f]) for f in _TRADE_ENTRY):
                bar = min(int(pr["exit_bar"]), int(fr["exit_bar"]))
            elif pr is None or fr is None:
                bar = int((fr if pr is None else pr)["exit_bar"])
            else:
                bar = min(int(pr["entry_bar"]), int(fr["entry_bar"]))
            if best is None or bar < best[0]:
                best = (bar, _trade_text(pr, last), _trade_text(fr, last))
        if best is not None:
            hit((RUN, "trades"), *best)
    return found


# ---------------------------------------------------------------- the result

@dataclass
class CausalityResult:
    """What :func:`check_causality` found.

    ``ok`` is True when no output changed; ``findings`` has one row per offending output:
    ``worker`` (instance id, ``ctx.feature(...)`` for a feature requested by a call, or
    ``run`` for the journal and trades), ``output``, ``first_bar`` (the earliest bar, over
    all cuts, whose value on a prefix differs from the full run's), its ``time``, the
    ``cut`` that showed it, the ``prefix`` and ``full`` values there, ``cuts_flagged``
    ("3/5": how many cuts changed the output) and ``kind`` (``look-ahead``, or
    ``not reproducible`` when two runs on the same full data differ). ``asked`` is the
    number of random cuts asked for when the bars allowed fewer (a cut at every bar of
    the range), else None.

    >>> res = check_causality("ema", params={"period": 20}, data="sp500_daily", cuts=[3000])
    >>> res.ok, res.cuts, res.findings.empty
    (True, [3000], True)
    """

    target: str
    data: str
    n_bars: int
    cuts: list[int]
    seed: Optional[int]
    compared: list[tuple[str, str]]
    skipped: list[tuple[str, str, str]]
    findings: pd.DataFrame
    asked: Optional[int] = None
    #: the short prefixes run besides ``cuts`` (:func:`early_cuts`), and those whose run failed
    #: with what it raised (a worker may need more bars than a short prefix holds)
    early_cuts: list[int] = field(default_factory=list)
    early_failed: list[tuple[int, str]] = field(default_factory=list)
    #: the window of consecutive cuts (:func:`dense_window`): ``(from_bar, first_cut,
    #: last_cut)``, the runs made on the bars from ``from_bar`` on; None when not run
    dense: Optional[tuple[int, int, int]] = None
    #: why the window of cuts stopped (or did not run), when it did
    dense_failed: Optional[str] = None

    @property
    def ok(self) -> bool:
        """True when no compared output changed before any cut.

        >>> check_causality("config/runs/sma_cross.yaml", data="sp500_daily", cuts=2).ok
        True
        """
        return len(self.findings) == 0

    def finding_lines(self) -> list[str]:
        """One line per offending output: where it first changed and the two values.

        >>> f = pd.DataFrame({"worker": ["peek_1"], "output": ["signal"], "first_bar": [99], "time": [pd.Timestamp("2024-04-09")],
        ...                   "cut": [100], "prefix": [0.0], "full": [1.0], "cuts_flagged": ["2/2"], "kind": ["look-ahead"]})
        >>> r = CausalityResult("peek", "demo", 200, [100, 150], 0, [("peek_1", "signal")], [], f)
        >>> r.finding_lines()
        ['peek_1.signal: first changed at bar 99 (2024-04-09), cut 100 (2/2 cuts): prefix 0.0, full 1.0']
        """
        lines = []
        for r in self.findings.itertuples(index=False):
            if r.kind == "look-ahead":
                lines.append(f"{r.worker}.{r.output}: first changed at bar {r.first_bar} ({_when(r.time)}), cut {r.cut} "
                             f"({r.cuts_flagged} cuts): prefix {_text(r.prefix)}, full {_text(r.full)}")
            else:
                lines.append(f"{r.worker}.{r.output}: not reproducible, two runs on the same data differ from "
                             f"bar {r.first_bar} ({_when(r.time)}): {_text(r.prefix)} vs {_text(r.full)}")
        return lines

    def _head(self) -> str:
        seed = f", seed {self.seed}" if self.seed is not None else ""
        cuts = f"{len(self.cuts)} cut{'s' if len(self.cuts) > 1 else ''}"
        shown = list(map(str, self.cuts))
        if len(shown) > 12:  # thousands of cuts on one line say less than their range (--json has them all)
            shown = [*shown[:5], "...", *shown[-2:]]
        capped = f" ({self.asked} asked: a cut at every bar from {self.cuts[0]})" if self.asked else ""
        early = (f"; {len(self.early_cuts)} early cut{'s' if len(self.early_cuts) > 1 else ''} at "
                 f"{', '.join(map(str, self.early_cuts))}" if self.early_cuts else "")
        dense = (f"; a cut at every bar from {self.dense[1]} to {self.dense[2]} (run from bar {self.dense[0]})"
                 if self.dense else "")
        return (f"causality check of {self.target} on {self.data} ({self.n_bars} bars), "
                f"{cuts} at {', '.join(shown)}{seed}{capped}{early}{dense}")

    def _verdict(self) -> str:
        m = len(self.compared)
        if self.ok:
            return f"ok: none of {m} outputs changed before a cut"
        kinds = self.findings["kind"]
        la, nr = int((kinds == "look-ahead").sum()), int((kinds == "not reproducible").sum())
        parts = [f"LOOK-AHEAD: {la} of {m} outputs changed before a cut"] if la else []
        if nr:
            parts.append(f"NOT REPRODUCIBLE: {nr} of {m} outputs differ between two runs on the same data")
        return "; ".join(parts)

    def __repr__(self) -> str:
        lines = [self._head()]
        lines.append(self._verdict())
        lines += ["  " + s for s in self.finding_lines()]
        if self.skipped:
            lines.append("not compared: " + "; ".join(f"{w}.{o} ({why})" for w, o, why in self.skipped))
        if self.early_failed:
            lines.append(self._early_failed_text())
        if self.dense_failed:
            lines.append(f"window of cuts not run whole: {self.dense_failed}")
        return "\n".join(lines)

    def _early_failed_text(self) -> str:
        k, why = self.early_failed[-1]   # the longest prefix that failed says most
        return (f"early cuts not run: {', '.join(str(c) for c, _ in self.early_failed)} (the run on the first {k} "
                f"bars raised {why})")

    def _repr_html_(self) -> str:
        head = html.escape(self._head())
        color = "#1a7f37" if self.ok else "#cf222e"
        body = f"<p style='color:{color}'>{html.escape(self._verdict())}</p>"
        if not self.ok:
            body += self.findings.to_html(index=False)
        if self.skipped:
            body += "<p>not compared: " + html.escape("; ".join(f"{w}.{o} ({why})" for w, o, why in
                                                               self.skipped)) + "</p>"
        if self.early_failed:
            body += f"<p>{html.escape(self._early_failed_text())}</p>"
        if self.dense_failed:
            body += f"<p>{html.escape('window of cuts not run whole: ' + self.dense_failed)}</p>"
        return f"<div class='mf-result'><b>{head}</b>{body}</div>"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``check-causality --json`` prints).

        >>> f = pd.DataFrame({"worker": ["peek_1"], "output": ["signal"], "first_bar": [99], "time": [pd.Timestamp("2024-04-09")],
        ...                   "cut": [100], "prefix": [0.0], "full": [1.0], "cuts_flagged": ["2/2"], "kind": ["look-ahead"]})
        >>> r = CausalityResult("peek", "demo", 200, [100, 150], 0, [("peek_1", "signal")], [], f)
        >>> d = r.to_dict()
        >>> d["ok"], d["cuts"], d["findings"][0]["time"]
        (False, [100, 150], '2024-04-09 00:00:00')
        """
        rows = [{**r, "time": None if pd.isna(r["time"]) else str(r["time"]),
                 "cut": None if pd.isna(r["cut"]) else int(r["cut"])}
                for r in self.findings.to_dict(orient="records")]
        return json_safe({"ok": self.ok, "target": self.target, "data": self.data, "bars": self.n_bars,
                          "cuts": self.cuts, "asked": self.asked, "seed": self.seed, "early_cuts": self.early_cuts,
                          "early_failed": [list(f) for f in self.early_failed],
                          "dense": list(self.dense) if self.dense else None, "dense_failed": self.dense_failed,
                          "compared": len(self.compared),
                          "findings": rows, "skipped": [list(s) for s in self.skipped]})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _when(t: Any) -> str:
    """A bar's time as text: the date alone for a bar stamped at midnight (daily data)."""
    if not isinstance(t, pd.Timestamp):
        return str(t)
    return str(t.date()) if t == t.normalize() else str(t)


# ---------------------------------------------------------------- the check

def choose_cuts(n: int, cuts: CutsLike = 5, seed: Optional[int] = 0, first: int = 0) -> list[int]:
    """The cut points of a check on ``n`` bars, sorted: a prefix run keeps bars ``0..k-1``.

    An int asks for that many random cuts (``seed``), one in each of that many equal
    stretches of the bars after the warm-up (``first``, ``data.trade_start``) in the
    second half of the data, never the full length. A list gives the cuts themselves
    (negative ones count from the end); each must leave at least one bar out.

    >>> choose_cuts(1000, 4, seed=0)
    [606, 704, 813, 908]
    >>> choose_cuts(1000, [300, -100])
    [300, 900]
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ConfigError(f"seed: {seed!r}; expected a whole number >= 0 (or None)")
    if n < 3:
        raise ConfigError(f"cuts: the data has {n} bars; a causality check needs at least 3")
    if isinstance(cuts, (int, np.integer)) and not isinstance(cuts, bool):
        count = int(cuts)
        if count < 1:
            raise ConfigError(f"cuts: {count} random cuts asked for; at least 1 is needed (a list counts from "
                              f"the end: [{count}] or --cuts={count}, with the comma, cuts {-count} bar(s) before the end)"
                              if count < 0 else f"cuts: {count} random cuts asked for; at least 1 is needed")
        lo, hi = _cut_range(n, first)
        count = min(count, hi - lo + 1)
        # one cut per equal stretch: random, yet spread over the whole range
        edges = np.floor(np.linspace(lo, hi + 1, count + 1)).astype(np.int64)
        rng = np.random.default_rng(seed)
        return [int(rng.integers(edges[j], edges[j + 1])) for j in range(count)]
    out = set()
    for c in cuts:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise ConfigError(f"cuts: {c!r} is not a bar index")
        k = int(c) + n if int(c) < 0 else int(c)
        if not 1 <= k <= n - 1:
            raise ConfigError(f"cuts: {int(c)} is outside 1..{n - 1} (a prefix keeps bars 0..cut-1 of {n}, "
                              f"and leaves at least one out)")
        out.add(k)
    if not out:
        raise ConfigError("cuts: an empty list; give bar indices or a number of random cuts")
    return sorted(out)


def _cut_range(n: int, first: int) -> tuple[int, int]:
    """The bars ``lo..hi`` random cuts fall on: the second half of the data after the
    warm-up (``first``), at least one bar cut off."""
    lo, hi = max(n // 2, first + 1, 1), n - 1
    return (1 if lo > hi else lo), hi


def early_cuts(n: int, first: int = 0) -> list[int]:
    """Short prefixes a check with random cuts runs too: 2, 4, 8, ... bars, doubling up to
    where the random cuts begin (:func:`choose_cuts`). A look-ahead on the first bars alone
    (a warm-up filled backwards, ``.bfill()``; a scale taken from a leading window) shows
    only on a prefix that ends inside it, and random cuts in the second half never do
    (hunt58 F1).

    >>> early_cuts(1000)
    [2, 4, 8, 16, 32, 64, 128, 256]
    >>> early_cuts(10), early_cuts(1000, first=800)   # random cuts from bar 5; from 801
    ([2, 4], [2, 4, 8, 16, 32, 64, 128, 256, 512])
    """
    lo, _ = _cut_range(n, first)
    out, k = [], 2
    while k < lo:
        out.append(k)
        k *= 2
    return out


def setup_cuts(setup_bar: np.ndarray, n: int, count: int, seed: Optional[int] = 0, first: int = 0) -> list[int]:
    """Up to ``count`` cuts just after setups, sorted: ``b + 1`` for setups ``b`` drawn
    (``seed``) from those whose cut falls where random cuts fall (:func:`choose_cuts`).
    A prefix ending at a setup's bar is where a level planned from later bars, or a
    signal stamped before the bar that makes it, shows; random cuts meet sparse setups
    seldom (hunt30 F2: 20-70 % of such look-aheads with 5 random cuts).

    >>> setup_cuts(np.array([10, 600, 700, 800, 998]), 1000, 2, seed=0)
    [701, 999]
    """
    lo, hi = _cut_range(n, first)
    after = np.unique(np.asarray(setup_bar, dtype=np.int64) + 1)
    after = after[(after >= lo) & (after <= hi)]
    if count <= 0 or after.size == 0:
        return []
    rng = np.random.default_rng(None if seed is None else [seed, 1])   # a stream of its own
    return sorted(int(k) for k in rng.choice(after, size=min(count, after.size), replace=False))


#: a window of consecutive cuts (:func:`dense_window`) holds about this many setups, and
#: spans this many bars at least / at most; its runs start this many bars before it at least
DENSE_SETUPS = 24
DENSE_MIN = 32
DENSE_MAX = 160
DENSE_LEAD = 400
#: seconds the window's cuts may take about, and the fewest cuts it keeps to meet that
DENSE_BUDGET_S = 20.0
DENSE_FEWEST = 8


def dense_window(n: int, first: int, setup_bar: np.ndarray, seed: Optional[int] = 0,
                 cuts: int = 0) -> Optional[tuple[int, int, int]]:
    """``(from_bar, first_cut, last_cut)``: a cut at every bar of a window (seeded) in the
    random cuts' range, run on the bars from ``from_bar`` (a lead of
    :data:`DENSE_LEAD` bars, or twice the warm-up, before the window) to a little past it,
    compared with the run on those same bars. A look-ahead that shows only at cuts on
    some bars is met there: one that drops a setup when the next bar goes against it (a
    "failed breakout" filter) leaves no setup for :func:`setup_cuts` to cut after and was
    missed with every seed (hunt82 F1); one on every 4th bar (an hourly value looked up a
    15-minute bar early) by the default seed. The window spans about
    :data:`DENSE_SETUPS` of the full run's setups (:data:`DENSE_MIN` to :data:`DENSE_MAX`
    bars; 2 x ``DENSE_MIN`` without setups). None when the range has a single bar, or
    when ``cuts`` random cuts already cut at every bar of it.

    >>> dense_window(5000, 0, np.arange(0, 5000, 50), seed=0)
    (4392, 4792, 4951)
    >>> dense_window(5000, 0, np.array([], dtype=np.int64), seed=0)[2] - dense_window(5000, 0, np.array([]))[1] + 1
    64
    """
    lo, hi = _cut_range(n, first)
    span = hi - lo + 1
    if span <= 1 or cuts >= span:
        return None
    after = np.asarray(setup_bar, dtype=np.int64) + 1
    m = int(np.count_nonzero((after >= lo) & (after <= hi)))
    width = 2 * DENSE_MIN if m == 0 else int(np.clip(math.ceil(DENSE_SETUPS * span / m), DENSE_MIN, DENSE_MAX))
    width = min(width, span)
    rng = np.random.default_rng(None if seed is None else [seed, 2])   # a stream of its own
    start = int(rng.integers(lo, hi - width + 2))
    return max(0, start - max(DENSE_LEAD, 2 * first)), start, start + width - 1


def check_causality(strategy_or_worker: TargetLike, data: DataLike = None, operation: OperationLike = None,
                    cuts: CutsLike = 5, seed: Optional[int] = 0,
                    params: Optional[Mapping[str, Any]] = None, *, timezone: Optional[str] = None,
                    date_column: Optional[str] = None) -> CausalityResult:
    """Prefix replay of a strategy's workers (or of one worker) at a few cut points.

    ``strategy_or_worker`` is a strategy (YAML path, dict, StrategyBlueprint or
    BuildSpecs: all its workers and the whole run's journal are checked), or one worker:
    an instance, a worker class or a registered plugin name with ``params`` (a planner
    checked alone plans a setup on every bar). ``data``, ``operation``, ``timezone`` and
    ``date_column`` are as for :func:`metaflow_nb.backtest`. ``cuts`` is a number of random cut points (``seed``)
    in the second half of the data after the warm-up (for a strategy, as many again just
    after setups: :func:`setup_cuts`; short prefixes: :func:`early_cuts`; and a cut at
    every bar of one window: :func:`dense_window`), or a list
    of bar indices ``k``:
    the run on ``bars.iloc[:k]`` is compared with the full run on bars before ``k``.
    See the module docstring for what is compared and what is not.

    >>> r = check_causality("config/runs/sma_cross.yaml", data="sp500_daily", cuts=2)
    >>> r.ok, len(r.cuts), list(r.findings.columns)[:4]     # 2 random cuts, 2 after setups
    (True, 4, ['worker', 'output', 'first_bar', 'time'])
    >>> check_causality("ema", params={"period": 20}, data="sp500_daily", cuts=[3000]).ok
    True
    """
    if operation is not None and is_portfolio_operation(operation):
        # it said "mode: unknown key": a basket is valid, it is just not one instrument
        where = operation if isinstance(operation, (str, Path)) else "<operation>"
        what = ("drop the basket operation: --data (data=) names the instrument's data already" if data is not None
                else "give one instrument's data (--data FILE, data=) or a single-instrument operation")
        raise ConfigError(f"{where}: a basket operation (instruments: or universe:); check-causality replays one "
                          f"instrument: {what}")
    observe, specs, target = _target(strategy_or_worker, data, operation, params,
                                     {"timezone": timezone, "date_column": date_column})
    bars = resolve_data(specs, data if isinstance(data, pd.DataFrame) else None)
    n = len(bars)
    first = trade_start_bar(specs, bars.index)
    ks = choose_cuts(n, cuts, seed, first)
    explicit = not (isinstance(cuts, (int, np.integer)) and not isinstance(cuts, bool))

    full = observe(bars)
    if not explicit and 0 < full.setup_bar.shape[0] < n:
        # a strategy or an opportunity worker: as many cuts again just after setups (a
        # planner alone plans a setup on every bar: random cuts meet them all)
        ks = sorted(set(ks) | set(setup_cuts(full.setup_bar, n, int(cuts), seed, first)))
    early = [] if explicit else [k for k in early_cuts(n, first) if k not in ks]
    dense = None if explicit else dense_window(n, first, full.setup_bar, seed, int(cuts))
    again = observe(bars)
    # (kind, worker, output) -> [first_bar, cut, prefix, full, cuts flagged]
    worst: dict[tuple[str, str, str], list[Any]] = {}
    unstable = set()
    for f in _compare(full, again, n, whole=True):
        unstable.add((f["worker"], f["output"]))
        worst[("not reproducible", f["worker"], f["output"])] = [f["first_bar"], None, f["prefix"], f["full"], 0]
    early_failed: list[tuple[int, str]] = []
    for k in sorted({*ks, *early}):
        try:
            part = observe(_prefix(bars, k))
        except Exception as exc:  # a worker that cannot run on a prefix: say which one
            if k in early:
                # a few bars may be too few for a worker (a coarse bar not yet complete): noted
                early_failed.append((k, f"{type(exc).__name__}: {exc}"))
                continue
            raise RunError(f"the run on the first {k} bars (cut {k}) failed: {type(exc).__name__}: {exc}") from exc
        _record(worst, unstable, _compare(full, part, k), k)
    run = len(ks) + len(early) - len(early_failed)
    dense_failed = None
    if dense is not None:
        dense_run, dense, why = _dense_cuts(observe, bars, dense, worst, unstable)
        run += dense_run
        dense_failed = why
        if dense_run == 0:
            dense = None
    order = {key: j for j, key in enumerate(full.outputs())}
    rows = [{"worker": w, "output": o, "first_bar": v[0], "time": bars.index[v[0]] if 0 <= v[0] < n else pd.NaT,
             "cut": v[1], "prefix": v[2], "full": v[3],
             "cuts_flagged": f"{v[4]}/{run}" if kind == "look-ahead" else "", "kind": kind}
            for (kind, w, o), v in worst.items()]
    # earliest first: the first output to change is usually the cause of the others
    rows.sort(key=lambda r: (r["first_bar"], order.get((r["worker"], r["output"]), len(order))))
    # values keep their own types (an int direction beside a float level): object columns
    findings = pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype=object) for c in _FINDING_COLUMNS})
    findings["first_bar"] = findings["first_bar"].astype(np.int64)
    findings["cut"] = findings["cut"].astype("Int64")
    findings["time"] = pd.DatetimeIndex(findings["time"]) if rows else pd.DatetimeIndex([])
    for col in ("worker", "output", "cuts_flagged", "kind"):
        findings[col] = findings[col].astype(object)
    return CausalityResult(target=target, data=_data_name(specs, data), n_bars=n, cuts=ks,
                           seed=None if explicit else seed, compared=full.outputs(), skipped=full.skipped,
                           findings=findings, asked=None if explicit or len(ks) >= int(cuts) else int(cuts),
                           early_cuts=early, early_failed=early_failed, dense=dense, dense_failed=dense_failed)


def _record(worst: dict, unstable: set, found: list[dict[str, Any]], k: int, offset: int = 0) -> None:
    """Add the findings of the cut at ``k`` (bars numbered from ``offset``) to ``worst``:
    per output, the earliest bar changed and the number of cuts that changed it."""
    for f in found:
        key = (f["worker"], f["output"])
        if key in unstable:
            continue  # already reported: its differences say nothing about the cut
        bar = f["first_bar"] + offset
        row = worst.setdefault(("look-ahead", *key), [bar, k, f["prefix"], f["full"], 0])
        row[4] += 1
        if bar < row[0]:
            row[:4] = [bar, k, f["prefix"], f["full"]]


def _dense_cuts(observe: Callable[[pd.DataFrame], "_Observed"], bars: pd.DataFrame, dense: tuple[int, int, int],
                worst: dict, unstable: set) -> tuple[int, tuple[int, int, int], Optional[str]]:
    """Run the window of consecutive cuts (:func:`dense_window`) on the bars from its
    ``from_bar``; returns how many cuts ran, the window (its runs start earlier when a
    worker needs more bars than the lead holds: the lead doubles until the window's own
    run works, from bar 0 at most) and why it stopped, if it did (hunt84 F2)."""
    import time

    s0, lo, hi = dense
    end = min(len(bars), hi + DENSE_MIN)
    while True:
        window = _prefix(bars.iloc[s0:], end - s0)
        try:
            ref = observe(window)
            t0 = time.perf_counter()
            shortest = observe(_prefix(window, lo - s0))   # the lead alone, as the first cut runs it
            each = time.perf_counter() - t0
            break
        except Exception as exc:  # noqa: BLE001 - too few bars for a worker: a longer lead
            if s0 == 0:
                return 0, dense, (f"0 of {hi - lo + 1} cuts run; the run on bars 0..{lo - 1} or 0..{end - 1} raised "
                                  f"{type(exc).__name__}: {exc}")
            s0 = max(0, lo - 2 * (lo - s0))
    # a lead grown to a long calibration makes every cut a long run: fewer cuts, not minutes
    keep = max(DENSE_FEWEST, int(DENSE_BUDGET_S / max(each, 1e-6)))
    short = None
    if keep < hi - lo + 1:
        short = (f"{keep} of {hi - lo + 1} cuts run: each run of the window takes {each:.2g} s "
                 f"(from bar {s0}), and the window keeps to ~{DENSE_BUDGET_S:g} s")
        hi = lo + keep - 1
    dense = (s0, lo, hi)
    ran = 0
    for k in range(lo, hi + 1):
        try:
            part = shortest if k == lo else observe(_prefix(window, k - s0))
        except Exception as exc:  # noqa: BLE001
            # the window names the cuts run (hunt85 F4)
            return ran, (s0, lo, k - 1), (f"{ran} of {hi - lo + 1} cuts run; the run on bars {s0}..{k - 1} raised "
                                          f"{type(exc).__name__}: {exc}")
        found = _compare(ref, part, k - s0)
        for f in found:
            if f["worker"] == RUN:   # its events name bars and setups of the window's runs (hunt85 F5)
                note = f" (in the window's runs from bar {s0}: bars and setups counted from there)"
                f["prefix"], f["full"] = f"{f['prefix']}{note}", f"{f['full']}{note}"
        _record(worst, unstable, found, k, s0)
        ran += 1
    return ran, dense, short


def _prefix(bars: pd.DataFrame, k: int) -> pd.DataFrame:
    part = bars.iloc[:k]
    # pandas carries attrs into a slice: the full data's fingerprint does not name it
    part.attrs = {key: v for key, v in bars.attrs.items() if key != "fingerprint"}
    return part


def _data_name(specs: BuildSpecs, data: DataLike) -> str:
    if isinstance(data, pd.DataFrame):
        return "<DataFrame>"
    src = specs.data_source
    name = Path(src).name if ("/" in src or "\\" in src) else src
    # the cuts are positions in the run's bars: name the timeframe they are bars of
    return f"{name} resampled to {specs.data_timeframe}" if specs.data_timeframe else name


def _target(target: TargetLike, data: DataLike, operation: OperationLike, params: Optional[Mapping[str, Any]],
            read: Mapping[str, Optional[str]]) -> tuple[Callable[[pd.DataFrame], _Observed], BuildSpecs, str]:
    """How to observe one run of ``target``, the specs that carry its data (read as ``read``:
    the translator's ``timezone`` and ``date_column``), and its name."""
    translator = ConfigTranslator()
    if isinstance(target, str) and not Path(target).exists() and Path(target).suffix.lower() not in (".yaml", ".yml"):
        # not a file and not named like one: a plugin, by name or as a declared module:Class
        try:
            target = get_plugin(target)
        except KeyError as exc:
            raise ConfigError(f"{target!r}: neither a file nor a known plugin: {exc.args[0]}") from None
    if isinstance(target, Worker) or (isinstance(target, type) and issubclass(target, Worker)):
        make, label = _worker_factory(target, params)
        specs = translator.translate(_CARRIER, operation, data, **read)
        worker = make()
        # a zone param of its own on data read on a declared clock: the translator's check
        wrong = data_zone_problem(type(worker), worker.params, specs.read_clock)
        if wrong:
            raise ConfigError(f"{worker.instance_id}: params{wrong[0][len('.params'):]}: {wrong[1]}")
        pip = specs.pip_size
        return (lambda bars: _observe_worker(make, bars, pip)), specs, label
    if params is not None:
        raise ConfigError("params: given with a strategy; params belong to a single worker "
                          "(strategy params are set in its YAML)")
    specs = translator.translate(target, operation, data, **read)  # type: ignore[arg-type]
    label = str(target) if isinstance(target, (str, Path)) else specs.name
    return (lambda bars: _observe_strategy(specs, bars)), specs, label


def _worker_factory(target: Any, params: Optional[Mapping[str, Any]]) -> tuple[Callable[[], Worker], str]:
    if isinstance(target, Worker):
        if params is not None:
            raise ConfigError(f"params: {target.instance_id} is an instance and has its params already")
        cls, iid, model = type(target), target.instance_id, target.params
    else:
        cls = target if isinstance(target, type) else get_plugin(target)
        iid = cls.name or cls.__name__
        model = validate_model(cls.Params, dict(params or {}), f"{iid}", ("params",))
        if hasattr(cls, "declared_reasons"):   # a param picking a reason code its plugin does not declare
            wrong = reason_problem(cls(iid, model), model.model_dump(mode="json"))
            if wrong:
                raise ConfigError(f"{iid}: params{wrong[0][len('.params'):]}: {wrong[1]}")

    def make() -> Worker:
        try:
            return cls(iid, model)
        except TypeError:  # a constructor of its own: reuse the given instance
            if isinstance(target, Worker):
                return target
            raise
    return make, f"{cls.role} worker {iid}"
