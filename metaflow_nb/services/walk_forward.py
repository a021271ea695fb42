"""WalkForwardService: optimize in-sample, test the best out-of-sample, roll forward.

Windows are counted in bars of the operation's data. The in-sample optimization of a
window only ever sees that window's bars (its BuildSpecs end the data at the window's
last in-sample bar), so no out-of-sample bar can influence the choice. Out-of-sample runs
may start ``warmup_bars`` earlier to warm indicators up; setups before the window are
ignored and metrics start at the window (``data.trade_start``).
"""
from __future__ import annotations

import html
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import pandas as pd

from ..config.meta import (MetaSource, WalkForwardConfig, Windows, base_specs, basket_operation, expand_space,
                           inline_bases_named, load_meta_config, meta_origin)
from ..config.overrides import row_params
from ..engine.metrics import calendar_parts, metrics_from_frames, periods_per_year, span_years, whole_counts
from ..errors import ConfigError
from ..stats import oos_spread, walk_forward_efficiency
from .files import outputs_kept
from .formatting import METRIC_CENTER, json_safe, metrics_table_html, metrics_table_text, stamp, table_html
from .operation import OperationService, meta_frame, resolve_data
from .optimization import OptimizationService
from .parallel import ParallelRunService, runner_for

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Window:
    """One walk-forward window as bar positions in the data: in-sample ``[is_start, is_end)``,
    out-of-sample ``[oos_start, oos_end)`` (ends exclusive); :func:`make_windows` makes them."""

    index: int
    is_start: int
    is_end: int      # exclusive
    oos_start: int
    oos_end: int     # exclusive


def make_windows(n_bars: int, w: Windows) -> list[Window]:
    """Rolling or anchored windows that fit entirely in ``n_bars``.

    >>> [(x.is_start, x.is_end, x.oos_end) for x in make_windows(100, Windows(in_sample_bars=40,
    ...     out_of_sample_bars=20, step_bars=20))]
    [(0, 40, 60), (20, 60, 80), (40, 80, 100)]
    """
    step = w.step_bars or w.out_of_sample_bars
    out = []
    k = 0
    while True:
        is_end = w.in_sample_bars + k * step
        is_start = 0 if w.mode == "anchored" else k * step
        oos_end = is_end + w.out_of_sample_bars
        if oos_end > n_bars:
            break
        out.append(Window(k, is_start, is_end, is_end, oos_end))
        k += 1
    return out


def _ts(index: pd.DatetimeIndex, i: int) -> str:
    return index[i].isoformat()


def _two(x: float) -> str:
    """A ratio to two decimals; ``n/a`` where undefined (an in-sample return of 0 or less)."""
    return f"{x:.2f}" if math.isfinite(x) else "n/a"


@dataclass
class WalkForwardResult:
    """Per-window table, stitched out-of-sample equity, aggregate out-of-sample metrics.

    >>> import metaflow_nb as mf
    >>> wf = mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", backend="sequential", progress=False)
    >>> len(wf.windows), wf.windows.columns.tolist()[:3], wf.oos_equity.index.is_monotonic_increasing
    (10, ['window', 'is_start', 'is_end'], True)
    """

    name: str
    primary_metric: str
    windows: pd.DataFrame
    oos_equity: pd.Series
    oos_metrics: dict[str, Any]
    efficiency: float
    spread: dict[str, Any]
    param_columns: list[str]
    oos_results: list[Any] = field(default_factory=list, repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    trials_per_window: int = 0    # parameter sets each window's in-sample optimization tried
    #: over a basket: the stitched record's starting equity (every instrument's cash in independent mode,
    #: also those of instruments no window holds), recorded for --verify; None for one instrument
    starting_equity: Optional[float] = None
    warmup_bars: int = 0          # bars each out-of-sample run starts before its window (windows.warmup_bars)
    resumed: int = 0              # in-sample runs read back from the results store (--resume), over every window

    def warmup_text(self) -> str:
        """What the windows' ``warmup`` column says, in a sentence when some warm-up was too
        short ("" when every window's out-of-sample trades equal the same parameters run on
        every earlier bar, or when the table has no such column: a shared account's, which
        has no warm-up). A longer warm-up mends what indicators with a long memory miss; it
        cannot mend two running averages that tie to the last bit, whose rounding depends on
        the first bar they read (README "Walk-forward").

        >>> import pandas as pd
        >>> table = pd.DataFrame({"window": [0, 1, 2], "warmup": ["ok", "short", "short"]})
        >>> wf = WalkForwardResult("t", "sharpe_ratio", table, pd.Series(dtype=float), {}, 0.0, {}, [], warmup_bars=100)
        >>> wf.warmup_text()[:60]
        'warm-up: 100 bars too short in 2 of 3 windows (1, 2): their '
        """
        if "warmup" not in self.windows:
            return ""
        short = self.windows.loc[self.windows["warmup"] == "short", "window"].tolist()
        if not short:
            return ""
        return (f"warm-up: {self.warmup_bars} bars too short in {len(short)} of {len(self.windows)} windows "
                f"({', '.join(map(str, short))}): their out-of-sample trades differ from the same parameters run "
                f"on every earlier bar; a longer windows.warmup_bars makes them agree, unless two averages tie "
                f"to the last bit there (the note's first differing trade tells)")

    @property
    def statistics(self) -> dict[str, Any]:
        """The stitched out-of-sample record tested as one trial (deflated Sharpe ratio
        against 0), the number of trials and why PBO is not computed; see
        :func:`~metaflow_nb.services.significance.walk_forward_statistics`.

        >>> import metaflow_nb as mf
        >>> wf = mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", backend="sequential", progress=False)
        >>> st = wf.statistics
        >>> st["windows"], st["trials_per_window"], st["n_trials"], st["dsr_significant"]
        (10, 6, 60, False)
        """
        from .significance import walk_forward_statistics
        cached = self.__dict__.get("_statistics")
        if cached is None:
            cached = self.__dict__["_statistics"] = walk_forward_statistics(self)
        return cached

    def to_frame(self) -> pd.DataFrame:
        """A copy of the per-window table: dates, the parameters chosen in-sample, ``is_score``,
        every out-of-sample metric (``oos_*``), ``status`` and ``note``.

        >>> import metaflow_nb as mf
        >>> wf = mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", backend="sequential", progress=False)
        >>> t = wf.to_frame()
        >>> len(t), list(t.columns[:7])
        (10, ['window', 'is_start', 'is_end', 'oos_start', 'oos_end', 'fvg_det_1.min_gap_size', \
'fvg_det_1.require_structure_break'])
        """
        return self.windows.copy()

    def data_facts(self) -> list[tuple[str, str]]:
        """The facts of the bars the windows count in (source and timeframe, clock, calendar,
        what decides ambiguous bars; over a basket its first instrument's), with the stitched
        out-of-sample record's bars and dates; empty without an out-of-sample run
        (:func:`~metaflow_nb.services.tearsheet_page.data_facts` shows the rows)."""
        from .tearsheet_page import data_facts

        if not self.oos_results or not len(self.oos_equity):
            return []
        first, eq = self.oos_results[0], self.oos_equity
        basket = getattr(first, "portfolio", None)
        rows = data_facts(basket.instrument_specs()[0] if basket is not None else first.specs, eq)
        if basket is not None:   # each instrument's bars are a slice of its file: name the basket
            rows[0] = ("Data", f"basket {basket.name} ({len(eq)} bars of its union calendar, {stamp(eq.index[0])} .. "
                               f"{stamp(eq.index[-1])})")
        return [(f"{k} (out of sample)" if k == "Data" else k, v) for k, v in rows]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what ``walk_forward.json`` holds): efficiency, the spread of the
        out-of-sample scores, stitched metrics, one record per window, statistics and costs.

        >>> import metaflow_nb as mf
        >>> wf = mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", backend="sequential", progress=False)
        >>> d = wf.to_dict()
        >>> d["n_windows"], d["oos_spread"]["n"], d["statistics"]["kind"], d["costs"]
        (10, 10, 'walk_forward', 'costs: commission 0.002 % per side, slippage 0')
        """
        return json_safe({"name": self.name, "primary_metric": self.primary_metric,
                          "n_windows": int(len(self.windows)), "resumed_runs": self.resumed,
                          "walk_forward_efficiency": self.efficiency,
                          "oos_spread": self.spread, "oos_metrics": self.oos_metrics,
                          "open_at_window_ends": self.open_at_window_ends()[0],
                          # what those positions made, marked at their windows' last closes (hunt72 F3)
                          "open_at_window_ends_pnl": self.open_at_window_ends()[1],
                          # a window without a pick made the count columns float (13.0 trades)
                          "windows": [whole_counts(r, "oos_") for r in self.windows.astype(object)
                                      .where(self.windows.notna(), None).to_dict(orient="records")],
                          "timings": self.timings,
                          # the stitched record's test, as optimize --json carries its sweep's
                          "statistics": {k: v for k, v in self.statistics.items() if not k.startswith("_")},
                          "costs": self.costs_text(),
                          **({} if self.starting_equity is None else {"starting_equity": self.starting_equity})})

    def write(self, out: str | Path) -> None:
        """``windows.csv``, ``oos_equity.csv`` and ``walk_forward.json`` under ``out``.

        >>> import os, tempfile
        >>> import metaflow_nb as mf
        >>> wf = mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", backend="sequential", progress=False)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     wf.write(tmp); sorted(os.listdir(tmp))
        ['oos_equity.csv', 'walk_forward.json', 'windows.csv']
        """
        import json
        Path(out).mkdir(parents=True, exist_ok=True)
        from .files import write_csv, write_text
        write_csv(self.windows, Path(out) / "windows.csv", index=False)
        write_csv(self.oos_equity, Path(out) / "oos_equity.csv")
        write_text(Path(out) / "walk_forward.json", json.dumps(self.to_dict(), indent=2, default=str))

    def plot(self, **kwargs: Any) -> "Figure":
        """In-sample vs out-of-sample score per window and the stitched out-of-sample equity.
        Returns the Figure.

        >>> import metaflow_nb as mf
        >>> wf = mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", backend="sequential", progress=False)
        >>> [ax.get_ylabel() for ax in wf.plot().axes]
        ['Sharpe ratio', 'Equity']
        """
        from . import plots  # matplotlib, only when a figure is asked for
        return plots.plot_walk_forward(self, **kwargs)

    def verdict_text(self) -> str:
        """The verdict line the report pages state (``verdict: ... (deflated Sharpe ratio ...)``).

        >>> import metaflow_nb as mf
        >>> wf = mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", backend="sequential", progress=False)
        >>> wf.verdict_text().split(" (")[0]
        'verdict: Indistinguishable from luck: the stitched out-of-sample Sharpe ratio is not significant'
        """
        from .significance import selection_verdict
        v = selection_verdict(self.statistics)
        return f"verdict: {v['headline']} ({v['reason']})"

    def costs_text(self) -> str:
        """Commission and slippage of the out-of-sample runs, said out loud when zero (the
        :meth:`to_dict` example shows one)."""
        from .tearsheet import specs_costs_text
        if not self.oos_results:
            return "costs: no out-of-sample run"
        if hasattr(self.oos_results[0].specs, "instrument_costs"):
            # windows of one basket: its rates, per symbol when they differ (a window may lack a symbol)
            rates: dict[str, Any] = {}
            order: list[str] = []
            for r in self.oos_results:
                own = r.specs.instrument_costs()
                rates.update(own)
                _merge_order(order, list(own))
            return specs_costs_text({s: rates[s] for s in order})
        return specs_costs_text({f"window {i}": r.specs for i, r in enumerate(self.oos_results)})

    def open_at_window_ends(self) -> tuple[int, float]:
        """The positions still open at the end of the out-of-sample windows, and their pnl
        as marked there: the stitched equity holds it (each window's record ends marked at
        its last close, the next starts from cash), the stitched trade statistics do not
        (closed trades only). Money in each window's own account.

        >>> wf = WalkForwardResult("x", "sharpe_ratio", pd.DataFrame(), pd.Series(dtype=float), {}, 0.0, {}, [])
        >>> wf.open_at_window_ends()
        (0, 0.0)
        """
        n, marked = 0, 0.0
        for r in self.oos_results:
            run = getattr(r, "portfolio", None)   # a basket's window: its shared or summed account
            equity = r.equity["total"] if isinstance(r.equity, pd.DataFrame) else r.equity
            if not len(equity):
                continue
            start = run.starting_cash if run is not None else r.specs.cash
            held = run.open_at_end() if run is not None else int(r.position.iloc[-1] != 0.0)
            if held:
                # the equity less the closed trades' pnl; with nothing held that is rounding
                # of the sums (1.8e-11 with finalize_trades), not money
                n += held
                marked += float(equity.iloc[-1]) - start - float(r.trades["pnl"].sum() if len(r.trades) else 0.0)
        return n, marked

    def open_text(self) -> str:
        """The stitched trade statistics' caveat in a sentence ("" when no window ended in a
        position)."""
        n, marked = self.open_at_window_ends()
        if not n:
            return ""
        return (f"trade statistics count closed trades only: {n} position{'s' if n != 1 else ''} open at window ends "
                f"(marked in the stitched equity, {marked:+,.2f} in the windows' accounts) "
                f"{'is' if n == 1 else 'are'} not in them")

    def failed_text(self) -> str:
        """The windows whose in-sample runs all failed, in a sentence with the first error
        ("" when none did): the verdict alone said only that no out-of-sample record was
        made (hunt51 F4).

        >>> import pandas as pd
        >>> table = pd.DataFrame({"window": [0, 1], "status": ["failed", "ok"], "note": ["every ... first error: boom", ""]})
        >>> WalkForwardResult("t", "sharpe_ratio", table, pd.Series(dtype=float), {}, 0.0, {}, []).failed_text()
        'failed: 1 of 2 windows (0), every in-sample run failing; window 0: boom'
        """
        if "status" not in self.windows or not len(self.windows):
            return ""
        bad = self.windows[self.windows["status"] == "failed"]
        if bad.empty:
            return ""
        first = str(bad["note"].iloc[0]).split("first error: ", 1)[-1] if "note" in bad else ""
        which = ", ".join(str(int(w)) for w in bad["window"][:10]) + (", ..." if len(bad) > 10 else "")
        return (f"failed: {len(bad)} of {len(self.windows)} windows ({which}), every in-sample run failing; "
                f"window {int(bad['window'].iloc[0])}: {first}")

    def __repr__(self) -> str:
        notes = "".join(f"{t}\n" for t in (self.failed_text(), self.warmup_text(), self.open_text()) if t)
        read = f" ({self.resumed} in-sample runs read from the results store)" if self.resumed else ""
        return (f"WalkForwardResult({self.name!r}: {len(self.windows)} windows, "
                f"walk-forward efficiency {_two(self.efficiency)}){read}\n{self.verdict_text()}\n{self.costs_text()}\n"
                + notes + metrics_table_text(self.oos_metrics))

    def _repr_html_(self) -> str:
        cols = [c for c in ["window", "is_start", "oos_start", "oos_end", *self.param_columns, "is_score",
                            f"oos_{self.primary_metric}", "oos_total_trades", "status"] if c in self.windows.columns]
        warmup, open_, failed = self.warmup_text(), self.open_text(), self.failed_text()
        return (f"<div class='mf-result'><b>{html.escape(self.name)}</b>: {len(self.windows)} windows, "
                f"walk-forward efficiency <b>{_two(self.efficiency)}</b><p>{html.escape(self.verdict_text())}</p>"
                + (f"<p class='mf-warn'>{html.escape(failed)}</p>" if failed else "")
                + f"<p class='mf-costs'>{html.escape(self.costs_text())}</p>"
                + (f"<p class='mf-warn'>{html.escape(warmup)}</p>" if warmup else "")
                + (f"<p class='mf-costs'>{html.escape(open_)}</p>" if open_ else "")
                + table_html(self.windows[cols], "{:.3g}")
                + metrics_table_html(self.oos_metrics, "Out-of-sample (stitched)") + "</div>")


class WalkForwardService:
    """Walk-forward analysis of a ``walk_forward_config`` YAML.

    >>> svc = WalkForwardService(ParallelRunService(backend="sequential", progress=False))
    >>> res = svc.run("config/walk_forward/fvg_walk_forward.yaml")
    >>> len(res.windows) > 0
    True
    """

    def __init__(self, runner: Optional[ParallelRunService] = None):
        self.runner = runner

    def run(self, config: MetaSource, out: Optional[str | Path] = None, resume: bool = False,
            data: Any = None, strategy: Any = None, operation: Any = None,
            **runner_options: Any) -> WalkForwardResult:
        """Run a ``walk_forward_config`` (a YAML path, a dict or a model); ``strategy``,
        ``operation`` and ``data`` replace its base blueprint, operation and data.

        >>> svc = WalkForwardService(ParallelRunService(backend="sequential", progress=False))
        >>> wf = svc.run("config/walk_forward/fvg_walk_forward.yaml")
        >>> wf.name, len(wf.windows), wf.primary_metric, bool((wf.windows["status"] == "ok").all())
        ('FVG Walk-Forward', 10, 'sharpe_ratio', True)
        """
        t0 = time.perf_counter()
        root, model, raw, folder = load_meta_config(config, "walk_forward_config")
        assert isinstance(model, WalkForwardConfig)
        origin = meta_origin(config, root)
        if model.optimization_target.per_instrument:
            # it was silently ignored: each window picks one set of params for the whole basket
            raise ConfigError(f"{origin}: {root}.optimization_target.per_instrument: a walk-forward picks one "
                              "parameter set per window for the whole basket; each symbol's best parameters are "
                              "an optimization's (metaflow-nb optimize)")
        basket = basket_operation(model, folder, origin, root, strategy, operation, data)
        if basket is not None:  # README "Portfolios": the same windows over a basket's union calendar
            from .basket_specs import basket_threads
            with basket_threads(model.parallel, runner_options), \
                    inline_bases_named(model, origin, root, strategy, operation):
                result = _basket_walk_forward(model, raw, *basket, origin, root, out=out, resume=resume,
                                              **runner_options)
            if out is not None:
                with outputs_kept("the walk-forward's tables"):
                    result.write(out)
            return result
        opt = OptimizationService(self.runner)
        base = base_specs(model, folder, origin, root, strategy, operation, data)
        # a frame of the user's own: on the operation's clock, as the base specs read it
        data = meta_frame(data, base.data_clock) if isinstance(data, pd.DataFrame) else data
        if not isinstance(data, pd.DataFrame):
            data = None  # a sample name or path is the operation's source now
        limit = runner_options.pop("max_combinations", None) or model.max_combinations
        columns, combos = expand_space(model.parameter_space, raw["parameter_space"], origin, root, base, limit)
        engine = runner_options.pop("engine", None) or model.parallel.engine
        runner = runner_for(model.parallel, runner_options, out, resume, self.runner, f"{origin}: {root}.")
        bars = resolve_data(base, data)
        windows = make_windows(len(bars), model.windows)
        if not windows:
            raise ConfigError(f"{origin}: {root}.windows: in_sample_bars + out_of_sample_bars = "
                              f"{model.windows.in_sample_bars + model.windows.out_of_sample_bars} exceeds the "
                              f"{len(bars)} bars of the data")
        target = model.optimization_target
        svc = OperationService()
        rows, oos_results = [], []
        resumed = 0
        idx = bars.index
        from tqdm.auto import tqdm
        # one local dask cluster for every window's sweep, not one each
        with runner.kept_open():
            # the windows pace a bar of their own: each in-sample sweep's bar flashes and goes
            # (hunt45 F5: 196 windows, 17 s, and no word of how many were left)
            for w in tqdm(windows, desc=model.name, unit="window", leave=False,
                          disable=not runner.progress or len(windows) < 2):
                is_specs = base.with_overrides({"operation": {"data": {
                    "start": _ts(idx, w.is_start), "end": _ts(idx, w.is_end - 1)}}})
                opt_res = opt.sweep(is_specs, columns, combos, target, name=f"{model.name} w{w.index} in-sample",
                                    origin=origin, root=root, runner=runner, data=None if data is None else data,
                                    engine=engine, merge_store=False)
                resumed += opt_res.resumed
                row: dict[str, Any] = {"window": w.index, "is_start": idx[w.is_start], "is_end": idx[w.is_end - 1],
                                       "oos_start": idx[w.oos_start], "oos_end": idx[w.oos_end - 1]}
                best = opt_res.best_specs
                if best is None:
                    row.update({c: None for c in columns})
                    if opt_res.successful_runs == 0:   # an error, not a choice: the CLI exits 1 on it
                        row.update({"is_score": np.nan, "status": "failed",
                                    "note": f"every in-sample run failed ({opt_res.failed_runs}); first error: "
                                            f"{opt_res.all_results['error'].iloc[0]}"})
                    else:
                        row.update({"is_score": np.nan, "status": "no eligible in-sample run", "note": opt_res.message})
                    rows.append(row)
                    continue
                for c in columns:
                    inst, p = c.split(".", 1)
                    row[c] = opt_res.best_params[inst][p]  # type: ignore[index]
                row["is_score"] = opt_res.best_metrics[target.primary_metric]  # type: ignore[index]
                row["is_total_return_pct"] = opt_res.best_metrics["total_return_pct"]  # type: ignore[index]
                warm = max(0, w.oos_start - model.windows.warmup_bars)
                oos_specs = best.with_overrides({"operation": {"data": {
                    "start": _ts(idx, warm), "end": _ts(idx, w.oos_end - 1), "trade_start": _ts(idx, w.oos_start)}}})
                res = svc.run(oos_specs, data)
                oos_results.append(res)
                row.update({f"oos_{k}": v for k, v in res.metrics.items()})
                row.update({"status": "ok", "note": "", "oos_run_id": res.run_id, "warmup": "ok"})
                if warm > 0:
                    # the oracle: the same parameters on every earlier bar, trading from the same bar
                    full = svc.run(best.with_overrides({"operation": {"data": {
                        "start": _ts(idx, 0), "end": _ts(idx, w.oos_end - 1), "trade_start": _ts(idx, w.oos_start)}}}),
                        data)
                    differs = difference_note(res, full)
                    if differs is not None:
                        row.update({"warmup": "short", "note": differs})
                rows.append(row)
        if runner.store is not None:
            runner.store.close()   # every window's segments merged into one, once
        frame = windows_frame(rows, columns)
        stitched, oos_metrics = stitch_out_of_sample(oos_results, base.cash, base.data_calendar)
        eff, spread = window_efficiency(frame, model.windows, target.primary_metric)
        result = WalkForwardResult(model.name, target.primary_metric, frame, stitched, oos_metrics, float(eff),
                                   spread, columns, oos_results, {"total_s": time.perf_counter() - t0},
                                   trials_per_window=valid_combinations(base, combos),
                                   warmup_bars=model.windows.warmup_bars, resumed=resumed)
        if result.warmup_text():
            warnings.warn(result.warmup_text(), WarmupWarning, stacklevel=2)
        if out is not None:
            with outputs_kept("the walk-forward's tables"):
                result.write(out)
        return result


class WarmupWarning(UserWarning):
    """Some walk-forward windows' out-of-sample trades depend on where their warm-up began:
    ``windows.warmup_bars`` is too short for the strategy's indicators."""


#: what makes two runs' trades the same (and the first that differs say when)
_TRADE_KEYS = ["entry_time", "exit_time", "direction", "entry_price", "exit_price", "size", "exit_reason"]


def first_difference(a: Any, b: Any) -> Optional[pd.Timestamp]:
    """When the trades of results ``a`` and ``b`` first differ (the earlier entry of the
    first unequal pair, or the first extra trade's), the last bar when only their final
    positions do, or None when they trade alike.

    >>> import metaflow_nb as mf
    >>> a = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> b = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily", sma_1__fast=11)
    >>> first = min(a.trades.entry_time.iloc[0], b.trades.entry_time.iloc[0])
    >>> first_difference(a, a) is None, first_difference(a, b) == first
    (True, True)
    """
    found = _first_unequal(a, b)
    return None if found is None else found[0]


def difference_note(a: Any, b: Any) -> Optional[str]:
    """A walk-forward window's ``note`` when its out-of-sample run ``a`` trades otherwise
    than ``b``, the same parameters on every earlier bar (:func:`first_difference`'s time,
    and a basket's instrument of the first trade that differs), else None.

    >>> import metaflow_nb as mf
    >>> a = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> difference_note(a, a) is None
    True
    """
    found = _first_unequal(a, b)
    if found is None:
        return None
    at, symbol = found
    # a basket's note names the instrument: a time alone leaves its reader searching the basket (hunt100 F4)
    return (f"out-of-sample trades differ from the same parameters on every earlier bar from {at}"
            + (f" (first on {symbol})" if symbol is not None else ""))


def _first_unequal(a: Any, b: Any) -> Optional[tuple[pd.Timestamp, Optional[str]]]:
    """:func:`first_difference`'s time, with the instrument of the trade entered then (a
    basket's; None for a single run's, or when only the final positions differ)."""
    # a basket's trades name their instrument: the same trade on another one is another trade
    basket = "symbol" in a.trades.columns and "symbol" in b.trades.columns
    keys = _TRADE_KEYS + (["symbol"] if basket else [])
    ta, tb = a.trades[keys].reset_index(drop=True), b.trades[keys].reset_index(drop=True)
    n = min(len(ta), len(tb))
    unequal = ~(ta.iloc[:n] == tb.iloc[:n]).all(axis=1).to_numpy()
    if unequal.any():
        k = int(np.argmax(unequal))
        first = min((ta, tb), key=lambda t: t["entry_time"].iloc[k])
    elif len(ta) != len(tb):
        k = n
        first = ta if len(ta) > n else tb
    elif _final_positions(a) != _final_positions(b):
        return a.equity.index[-1], None
    else:
        return None
    return first["entry_time"].iloc[k], (str(first["symbol"].iloc[k]) if basket else None)


def _final_positions(r: Any) -> dict[Optional[str], float]:
    """The position each account of run ``r`` holds after its last bar: a single run's
    (``None``), or each instrument's of a basket's (a :class:`BasketRunView` in mode
    independent)."""
    if hasattr(r, "position"):
        return {None: float(r.position.iloc[-1]) if len(r.position) else 0.0}
    return {sym: float(res.position.iloc[-1]) for sym, res in r.portfolio.results.items() if len(res.position)}


def window_efficiency(frame: pd.DataFrame, windows: Windows, primary_metric: str) -> tuple[float, dict[str, Any]]:
    """Walk-forward efficiency and the spread of the out-of-sample ``primary_metric`` over
    the windows that ran (NaN and ``{}`` when none did).

    >>> f = pd.DataFrame({"window": [0, 1], "status": ["ok", "ok"], "is_total_return_pct": [4.0, 2.0],
    ...                   "oos_total_return_pct": [1.0, 1.0], "oos_sharpe_ratio": [0.5, 1.5]})
    >>> eff, spread = window_efficiency(f, Windows(in_sample_bars=200, out_of_sample_bars=100), "sharpe_ratio")
    >>> round(eff, 3), spread["median"], spread["frac_positive"]
    (0.667, 1.0, 1.0)
    """
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame.iloc[0:0]
    if not len(ok):
        return float("nan"), {}
    is_len = np.array([windows.in_sample_bars if windows.mode == "rolling"
                       else int((r["window"]) * (windows.step_bars or windows.out_of_sample_bars)
                                + windows.in_sample_bars) for _, r in ok.iterrows()], float)
    eff = walk_forward_efficiency(ok["is_total_return_pct"].to_numpy(float),
                                  ok["oos_total_return_pct"].to_numpy(float),
                                  is_lengths=is_len,
                                  oos_lengths=np.full(len(ok), windows.out_of_sample_bars, float))
    spread = oos_spread(ok[f"oos_{primary_metric}"].to_numpy(float)).as_dict()
    if METRIC_CENTER.get(primary_metric) != 0.0:
        # frac_positive is the share of windows that gained where 0 is break-even (the colour
        # scales' centre); a drawdown, a volatility, a profit factor: above 0 says nothing
        # (hunt114 F3: 1.0 read as every window positive)
        spread["frac_positive"] = float("nan")
    return float(eff), spread


def stitch_out_of_sample(results: list[Any], cash: float, calendar: Optional[str]) -> tuple[pd.Series, dict[str, Any]]:
    """The windows' out-of-sample runs (BacktestResults, in window order) as one record:
    the compounded equity (:func:`_stitch`) and its metrics (``{}`` without a run).

    >>> eq, metrics = stitch_out_of_sample([], 10_000.0, None)
    >>> len(eq), metrics
    (0, {})
    """
    stitched = _stitch([r.equity for r in results], cash)
    if not results:
        return stitched, {}
    trades = pd.concat([r.trades for r in results], ignore_index=True)
    position = np.concatenate([r.position.to_numpy() for r in results])
    return stitched, metrics_from_frames(stitched, position, trades, cash,
                                         sum(r.metrics["opportunities_detected"] for r in results),
                                         sum(r.metrics["opportunities_rejected"] for r in results),
                                         calendar_name=calendar,
                                         periods_per_year=windows_year([r.equity.index for r in results], calendar),
                                         years=windows_years([r.equity.index for r in results]))


def valid_combinations(specs: Any, combos: Any) -> int:
    """The parameter sets of ``combos`` that ``specs`` accept: what a walk-forward window's
    search can try (a refused one, fast >= slow, is a failed row, not a trial).

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> valid_combinations(specs, [{"sma_1": {"fast": 5, "slow": 20}}, {"sma_1": {"fast": 20, "slow": 10}}])
    1
    """
    n = 0
    for combo in combos:
        try:
            specs.with_param_overrides(combo)
        except ConfigError:
            continue
        n += 1
    return n


def stitch_basket_out_of_sample(results: list[Any], cash: float) -> tuple[pd.Series, dict[str, Any]]:
    """The out-of-sample portfolio runs of a walk-forward over a basket (PortfolioResults in
    window order, each cut to its window: its ``window`` records where the out-of-sample
    bars start) as one record: each window's portfolio equity scaled to the basket's
    starting equity ``cash`` (a window may hold fewer instruments) and compounded, and
    its metrics (``{}`` without a run). What the walk-forward and a report's ``--verify``
    both compute.

    >>> eq, metrics = stitch_basket_out_of_sample([], 10_000.0)
    >>> len(eq), metrics
    (0, {})
    """
    equities, positions, trades = [], [], []
    detected = rejected = 0
    for res in results:
        window = getattr(res, "window", None) or {}
        start = pd.Timestamp(window.get("trade_start") or window.get("start") or res.index[0])
        keep = res.index >= start
        equities.append(res.equity["total"][keep] / res.starting_cash * cash)
        positions.append(res.in_market()[keep])
        if len(res.trades):   # a run without trades has no timestamps to compare (its columns are empty)
            trades.append(res.trades[res.trades["entry_time"] >= start])
        detected += int(res.metrics["opportunities_detected"])
        rejected += int(res.metrics["opportunities_rejected"])
    stitched = _stitch(equities, cash)
    if not results:
        return stitched, {}
    placed = pd.concat(trades, ignore_index=True) if trades else results[0].trades.iloc[0:0]
    # entries on the stitched calendar, durations in each instrument's own bars
    at = stitched.index.get_indexer(placed["entry_time"])
    placed = placed.assign(entry_bar=at, exit_bar=at + (placed["exit_bar"] - placed["entry_bar"]).to_numpy())
    cal = results[0].instrument_specs()[0].data_calendar
    return stitched, metrics_from_frames(stitched, np.concatenate(positions), placed, cash, detected, rejected,
                                         calendar_name=cal,
                                         periods_per_year=windows_year([e.index for e in equities], cal),
                                         years=windows_years([e.index for e in equities]))


def _merge_order(order: list[str], seen: list[str]) -> None:
    """Add to ``order`` the names of ``seen`` it lacks, each right after its predecessor in
    ``seen``: windows holding subsets of one basket give the basket's order (a symbol listed
    since its first bars, FB from 2012, is not put last).

    >>> order = ["AAPL", "IBM"]; _merge_order(order, ["AAPL", "FB", "IBM"]); order
    ['AAPL', 'FB', 'IBM']
    """
    for k, name in enumerate(seen):
        if name in order:
            continue
        at = order.index(seen[k - 1]) + 1 if k > 0 else 0
        order.insert(at, name)


def windows_year(indexes: list[pd.DatetimeIndex], calendar: Optional[str]) -> Optional[float]:
    """The year of a stitched out-of-sample record: None for a named calendar (its own
    ``P``), else the mean of the windows' measured ``P`` (each window's bars), not one
    measured on the stitched days, whose gaps between windows (a step longer than the
    out-of-sample length, a window without a pick) would count as days without bars.

    >>> days = pd.date_range("2024-01-01", periods=30, freq="D")
    >>> windows_year([days[:10], days[20:]], None), windows_year([days[:10]], "exchange")
    (365.25, None)
    """
    if calendar_parts(calendar)[0] is not None or not indexes:
        return None
    return float(np.mean([periods_per_year(ix, calendar) for ix in indexes]))


def windows_years(indexes: list[pd.DatetimeIndex]) -> float:
    """The years a stitched out-of-sample record spans, its CAGR's: from its first bar to its
    last, less the gaps between windows (a step longer than the out-of-sample length, a window
    without a pick; hunt114 F1: the growth was spread over them too, while Sharpe's ``P``
    already left them out). A junction further apart than any two bars inside a window is
    such a gap and counts as one bar's step (the bars' median spacing), as between adjacent
    windows; any other counts as it is.

    >>> days = pd.date_range("2024-01-01", periods=60, freq="D")
    >>> round(windows_years([days[:10], days[10:20]]) * 365.25), round(windows_years([days[:10], days[50:]]) * 365.25)
    (19, 19)
    """
    held = [ix.as_unit("ns") for ix in indexes if len(ix)]
    if not held:
        return 0.0
    years = span_years(pd.DatetimeIndex([held[0][0], held[-1][-1]]))
    inside = np.concatenate([np.diff(ix.asi8) for ix in held])
    if not inside.size:
        return years
    junctions = np.array([b.asi8[0] - a.asi8[-1] for a, b in zip(held, held[1:])], dtype=np.int64)
    gaps = junctions[junctions > inside.max()]
    # adjacent windows: exactly the first-to-last span, as any run's
    return years - float((gaps - int(np.median(inside))).sum()) / 1e9 / (365.25 * 86400.0) if gaps.size else years


def windows_frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """The per-window table of ``rows``: a parameter whose picks are whole numbers stays so
    beside a window without a pick (pandas made the column float: ``fast`` 5.0; hunt39 F1).

    >>> windows_frame([{"window": 0, "sma.fast": 5}, {"window": 1, "sma.fast": None}], ["sma.fast"])["sma.fast"].tolist()
    [5, None]
    """
    frame = pd.DataFrame(rows)
    for c in columns:
        values = [r.get(c) for r in rows]
        if c in frame and frame[c].dtype.kind == "f" and any(v is None for v in values) and all(
                v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
            frame[c] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def _stitch(equities: list[pd.Series], cash: float) -> pd.Series:
    """Chain each window's equity (each starts from the same cash) into one compounded curve."""
    if not equities:
        return pd.Series(dtype="float64", name="oos_equity")
    parts, level = [], cash
    for eq in equities:
        scaled = eq / cash * level
        parts.append(scaled)
        level = float(scaled.iloc[-1])
    out = pd.concat(parts)
    out.name = "oos_equity"
    return out


def _basket_walk_forward(model: Any, raw: dict[str, Any], strategy: Any, operation: Any, origin: str, root: str,
                        out: Optional[str | Path] = None, resume: bool = False,
                        **runner_options: Any) -> WalkForwardResult:
    """A ``walk_forward_config`` whose ``base_operation`` names a basket: windows counted
    in bars of the basket's union calendar; each window's in-sample bars are searched by
    :func:`optimize_basket` (an instrument without a bar in the window sits it out), the
    winner runs as one portfolio on the out-of-sample bars, and the out-of-sample portfolio
    equities are stitched (each window restarts from the starting equity, compounded).
    With ``out`` the windows' searches keep their rows in the results store ``out/store``
    (each window's own keys: its in-sample data is part of them); ``resume`` reads them
    back."""
    import time

    from tqdm.auto import tqdm

    from ..assembly.basket import union_calendar
    from .basket_specs import slice_basket, warn_unused_parallel, window_doc
    from .portfolio import load_basket, run_portfolio
    from .portfolio_meta import BasketRunView, meta_store, rank_basket

    t0 = time.perf_counter()
    warn_unused_parallel(model.parallel, runner_options, origin, root)
    store = meta_store(origin, out, resume)
    target = model.optimization_target
    limit = runner_options.get("max_combinations") or model.max_combinations
    basket = load_basket(operation)
    op, items, bars = basket
    w_cfg = model.windows
    if op.mode == "portfolio" and w_cfg.warmup_bars:
        raise ConfigError(f"{origin}: {root}.windows.warmup_bars: a shared account (mode: portfolio) has no "
                          "data.trade_start yet; set warmup_bars: 0 or use mode: independent")
    idx = union_calendar([b.index for b in bars.values()])[0]
    windows = make_windows(len(idx), w_cfg)
    if not windows:
        raise ConfigError(f"{origin}: {root}.windows: in_sample_bars + out_of_sample_bars = "
                          f"{w_cfg.in_sample_bars + w_cfg.out_of_sample_bars} exceeds the {len(idx)} bars of the "
                          "basket's union calendar")

    def sliced(lo: int, hi: int, trade_start: Optional[pd.Timestamp] = None) -> tuple[Any, list, dict]:
        # the loaded basket itself: its slices keep the operation's file for the messages
        return slice_basket(basket, idx[lo], idx[hi - 1], trade_start)

    rows, views = [], []
    resumed = 0
    columns: list[str] = []
    cash = op.cash * (len(items) if op.mode == "independent" else 1)
    # a basket's window costs seconds of per-instrument work: the windows pace the bar
    bar = tqdm(windows, desc=model.name, unit="window", leave=False,
               disable=not runner_options.get("progress", True) or len(windows) < 2)
    try:
        for w in bar:
            row: dict[str, Any] = {"window": w.index, "is_start": idx[w.is_start], "is_end": idx[w.is_end - 1],
                                   "oos_start": idx[w.oos_start], "oos_end": idx[w.oos_end - 1]}
            # the table alone: the best row's own portfolio run, its deflated Sharpe ratio and
            # the per-instrument picks are an optimization's, which no window reads
            opt = rank_basket(strategy, sliced(w.is_start, w.is_end), raw["parameter_space"],
                              target=target.primary_metric, max_combinations=limit, maximize=target.maximize(),
                              constraints=target.constraints, name=f"{model.name} w{w.index} in-sample",
                              engine=runner_options.get("engine") or model.parallel.engine, store=store,
                              resume=resume, origin=origin, root=root)
            resumed += opt.resumed
            columns = [c for c in opt.table.columns if "." in c]
            if not opt.best_eligible:
                row.update({c: None for c in columns})
                row.update({"is_score": np.nan, "status": "no eligible in-sample run",
                             "note": opt.message(target.primary_metric)})
                rows.append(row)
                continue
            best = opt.table.iloc[0]
            row.update({c: (best[c].item() if hasattr(best[c], "item") else best[c]) for c in columns})
            row["is_score"] = float(best[target.primary_metric])
            row["is_total_return_pct"] = float(best["total_return_pct"])
            warm = max(0, w.oos_start - w_cfg.warmup_bars)
            trade_start = idx[w.oos_start] if warm < w.oos_start else None
            res = run_portfolio(strategy, sliced(warm, w.oos_end, trade_start), **opt.best)
            res.window = window_doc(idx[warm], idx[w.oos_end - 1], trade_start)  # what --verify cuts again
            views.append(BasketRunView(res))
            row.update({f"oos_{k}": v for k, v in res.metrics.items()})
            row.update({"status": "ok", "note": "", "oos_run_id": views[-1].run_id,
                        "oos_instruments": len(res.symbols)})
            if op.mode == "independent":
                # the oracle, as a single instrument's windows have it: the same parameters on
                # every earlier bar of the basket, trading from the same bar (a shared account
                # has no trade_start, and so no warm-up to check)
                row["warmup"] = "ok"
                full = run_portfolio(strategy, sliced(0, w.oos_end, idx[w.oos_start]), **opt.best)
                differs = difference_note(views[-1], BasketRunView(full))
                if differs is not None:
                    row.update({"warmup": "short", "note": differs})
            rows.append(row)
    finally:
        bar.close()
        if store is not None:
            store.close()  # the windows' segments merged into one
    frame = windows_frame(rows, columns)
    stitched, oos_metrics = stitch_basket_out_of_sample([v.portfolio for v in views], cash)
    eff, spread = window_efficiency(frame, w_cfg, target.primary_metric)
    # no window picked (no out-of-sample run to validate the grid on): the combinations
    # that ran in the last window, a refused one being a failed row, not a trial (hunt62 F3)
    n_combos = int((opt.table["status"] == "ok").sum())
    result = WalkForwardResult(model.name, target.primary_metric, frame, stitched, oos_metrics, eff, spread, columns,
                               views, {"total_s": time.perf_counter() - t0},
                               trials_per_window=valid_combinations(
                                   views[0].portfolio.instrument_specs()[0],
                                   [row_params(r, columns, grid_nulls=True) for _, r in opt.table.iterrows()])
                               if views else n_combos,
                               starting_equity=cash, warmup_bars=w_cfg.warmup_bars, resumed=resumed)
    if result.warmup_text():
        warnings.warn(result.warmup_text(), WarmupWarning, stacklevel=3)
    return result
