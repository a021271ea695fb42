"""WalkForwardService: optimize in-sample, test the best out-of-sample, roll forward.

Windows are counted in bars of the operation's data. The in-sample optimization of a
window only ever sees that window's bars (its BuildSpecs end the data at the window's
last in-sample bar), so no out-of-sample bar can influence the choice. Out-of-sample runs
may start ``warmup_bars`` earlier to warm indicators up; setups before the window are
ignored and metrics start at the window (``data.trade_start``).
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from ..config.meta import MetaSource, WalkForwardConfig, Windows, base_specs, expand_space, load_meta_config, meta_origin
from ..engine.metrics import metrics_from_frames
from ..errors import ConfigError
from ..stats import oos_spread, walk_forward_efficiency
from .formatting import json_safe, metrics_table_html, metrics_table_text, table_html
from .operation import OperationService, meta_frame, resolve_data
from .optimization import OptimizationService
from .parallel import ParallelRunService, runner_for


@dataclass(frozen=True)
class Window:
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


@dataclass
class WalkForwardResult:
    """Per-window table, stitched out-of-sample equity, aggregate out-of-sample metrics."""

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

    @property
    def statistics(self) -> dict[str, Any]:
        """The stitched out-of-sample record tested as one trial (deflated Sharpe ratio
        against 0), the number of trials and why PBO is not computed; see
        :func:`~metaflow_nb.services.significance.walk_forward_statistics`."""
        from .significance import walk_forward_statistics
        cached = self.__dict__.get("_statistics")
        if cached is None:
            cached = self.__dict__["_statistics"] = walk_forward_statistics(self)
        return cached

    def to_frame(self) -> pd.DataFrame:
        return self.windows.copy()

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"name": self.name, "primary_metric": self.primary_metric,
                          "n_windows": int(len(self.windows)), "walk_forward_efficiency": self.efficiency,
                          "oos_spread": self.spread, "oos_metrics": self.oos_metrics,
                          "windows": self.windows.astype(object).where(self.windows.notna(), None)
                          .to_dict(orient="records"), "timings": self.timings})

    def plot(self, **kwargs: Any):
        """In-sample vs out-of-sample score per window and the stitched out-of-sample equity."""
        from . import plots  # matplotlib, only when a figure is asked for
        return plots.plot_walk_forward(self, **kwargs)

    def verdict_text(self) -> str:
        """The verdict line the report pages state (``verdict: ... (deflated Sharpe ratio ...)``)."""
        from .significance import selection_verdict
        v = selection_verdict(self.statistics)
        return f"verdict: {v['headline']} ({v['reason']})"

    def costs_text(self) -> str:
        """Commission and slippage of the out-of-sample runs, said out loud when zero."""
        from .tearsheet import specs_costs_text
        if not self.oos_results:
            return "costs: no out-of-sample run"
        return specs_costs_text({f"window {i}": r.specs for i, r in enumerate(self.oos_results)})

    def __repr__(self) -> str:
        return (f"WalkForwardResult({self.name!r}: {len(self.windows)} windows, "
                f"walk-forward efficiency {self.efficiency:.2f})\n{self.verdict_text()}\n{self.costs_text()}\n"
                + metrics_table_text(self.oos_metrics))

    def _repr_html_(self) -> str:
        cols = [c for c in ["window", "is_start", "oos_start", "oos_end", *self.param_columns, "is_score",
                            f"oos_{self.primary_metric}", "oos_total_trades", "status"] if c in self.windows.columns]
        return (f"<div class='mf-result'><b>{html.escape(self.name)}</b>: {len(self.windows)} windows, "
                f"walk-forward efficiency <b>{self.efficiency:.2f}</b><p>{html.escape(self.verdict_text())}</p>"
                f"<p class='mf-costs'>{html.escape(self.costs_text())}</p>"
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
        ``operation`` and ``data`` replace its base blueprint, operation and data."""
        t0 = time.perf_counter()
        root, model, raw, folder = load_meta_config(config, "walk_forward_config")
        assert isinstance(model, WalkForwardConfig)
        origin = meta_origin(config, root)
        opt = OptimizationService(self.runner)
        data = meta_frame(data) if isinstance(data, pd.DataFrame) else data
        base = base_specs(model, folder, origin, root, strategy, operation, data)
        if not isinstance(data, pd.DataFrame):
            data = None  # a sample name or path is the operation's source now
        limit = runner_options.pop("max_combinations", None) or model.max_combinations
        columns, combos = expand_space(model.parameter_space, raw["parameter_space"], origin, root, base, limit)
        engine = runner_options.pop("engine", None) or model.parallel.engine
        runner = runner_for(model.parallel, runner_options, out, resume, self.runner)
        bars = resolve_data(base, data)
        windows = make_windows(len(bars), model.windows)
        if not windows:
            raise ConfigError(f"{origin}: {root}.windows: in_sample_bars + out_of_sample_bars = "
                              f"{model.windows.in_sample_bars + model.windows.out_of_sample_bars} exceeds the "
                              f"{len(bars)} bars of the data")
        target = model.optimization_target
        svc = OperationService()
        rows, oos_results, equities = [], [], []
        idx = bars.index
        for w in windows:
            is_specs = base.with_overrides({"operation": {"data": {
                "start": _ts(idx, w.is_start), "end": _ts(idx, w.is_end - 1)}}})
            opt_res = opt.sweep(is_specs, columns, combos, target, name=f"{model.name} w{w.index} in-sample",
                                origin=origin, root=root, runner=runner, data=None if data is None else data,
                                engine=engine)
            row: dict[str, Any] = {"window": w.index, "is_start": idx[w.is_start], "is_end": idx[w.is_end - 1],
                                   "oos_start": idx[w.oos_start], "oos_end": idx[w.oos_end - 1]}
            best = opt_res.best_specs
            if best is None:
                row.update({c: None for c in columns})
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
            equities.append(res.equity)
            row.update({f"oos_{k}": v for k, v in res.metrics.items()})
            row.update({"status": "ok", "note": "", "oos_run_id": res.run_id})
            rows.append(row)
        frame = pd.DataFrame(rows)
        cash = base.cash
        stitched = _stitch(equities, cash)
        if oos_results:
            trades = pd.concat([r.trades for r in oos_results], ignore_index=True)
            position = np.concatenate([r.position.to_numpy() for r in oos_results])
            oos_metrics = metrics_from_frames(stitched, position, trades, cash,
                                          sum(r.metrics["opportunities_detected"] for r in oos_results),
                                          sum(r.metrics["opportunities_rejected"] for r in oos_results),
                                          calendar_name=base.data_calendar)
        else:
            oos_metrics = {}
        ok = frame[frame["status"] == "ok"] if "status" in frame else frame.iloc[0:0]
        if len(ok):
            is_len = np.array([model.windows.in_sample_bars if model.windows.mode == "rolling"
                               else int((r["window"]) * (model.windows.step_bars or model.windows.out_of_sample_bars)
                                        + model.windows.in_sample_bars) for _, r in ok.iterrows()], float)
            eff = walk_forward_efficiency(ok["is_total_return_pct"].to_numpy(float),
                                          ok["oos_total_return_pct"].to_numpy(float),
                                          is_lengths=is_len,
                                          oos_lengths=np.full(len(ok), model.windows.out_of_sample_bars, float))
            spread = oos_spread(ok[f"oos_{target.primary_metric}"].to_numpy(float)).as_dict()
        else:
            eff, spread = float("nan"), {}
        result = WalkForwardResult(model.name, target.primary_metric, frame, stitched, oos_metrics, float(eff),
                                   spread, columns, oos_results, {"total_s": time.perf_counter() - t0},
                                   trials_per_window=len(combos))
        if out is not None:
            import json
            Path(out).mkdir(parents=True, exist_ok=True)
            frame.to_csv(Path(out) / "windows.csv", index=False)
            stitched.to_csv(Path(out) / "oos_equity.csv")
            (Path(out) / "walk_forward.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
        return result


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
