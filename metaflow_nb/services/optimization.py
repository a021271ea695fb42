"""OptimizationService: grid search over a parameter_space with a target metric and constraints."""
from __future__ import annotations

import html
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..assembly.group import forget_groups
from ..config.buildspecs import BuildSpecs, specs_from_row
from ..config.meta import (MetaSource, OptimizationConfig, OptimizationTarget, base_specs, basket_operation,
                           constraint_checks, engine_backend_problem, engine_problem, expand_space, inline_bases_named,
                           load_meta_config, meta_origin, traded)
from ..config.meta import passes as _passes
from ..config.overrides import row_params
from ..data import data_fingerprint
from ..data.loader import trusted_fingerprint
from ..engine.metrics import METRIC_NAMES, whole_counts
from ..errors import ConfigError
from . import batch
from .batch import unsupported_reason
from .files import outputs_kept, write_csv, write_text
from .formatting import failures_text, json_safe, metrics_table_html, metrics_table_text, table_html
from .operation import meta_frame, rebase_on
from .parallel import ParallelRunService, RunOutcome, runner_for, store_outcome
from .significance import optimization_statistics, statistics_words
from .store import ResultsStore, write_sweep_params

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .portfolio_meta import BasketOptimization


def select_best(frame: pd.DataFrame, target: OptimizationTarget) -> tuple[Optional[int], str]:
    """Row position of the best eligible run and a plain-words note.

    Eligible: status ok, a target metric that is a number (not NaN; an infinite profit
    factor, a run without a losing trade, is one), at least one trade (a run that never
    traded has a drawdown and a volatility of 0, which a risk target would pick: no risk
    control, hunt62 F1), every constraint met. Ties break on the lower row position (the
    grid order), so the choice is deterministic. Adds the ``eligible`` column to ``frame``.

    >>> f = pd.DataFrame({"status": ["ok", "ok", "failed"], "sharpe_ratio": [0.4, 0.9, np.nan],
    ...                   "total_trades": [30, 5, 0]})
    >>> select_best(f, OptimizationTarget(constraints={"min_trades": 20})), f["eligible"].tolist()
    ((0, '1 of 3 runs eligible'), [True, False, False])
    """
    metric = target.primary_metric
    ok = frame["status"] == "ok"
    eligible = ok.copy()
    notes = []
    for label, col, op, bound in constraint_checks(target):
        passed = frame[col].map(lambda v: _passes(v, op, bound)) & ok
        notes.append(f"{label}: {int(passed.sum())} of {int(ok.sum())} successful runs pass")
        eligible &= passed
    passing = eligible.copy()
    vals = pd.to_numeric(frame[metric], errors="coerce")
    eligible &= vals.notna() & traded(frame)
    frame["eligible"] = eligible.to_numpy()
    if not eligible.any():
        if not ok.any():
            return None, f"no run succeeded ({len(frame)} failed); see the error column"
        if notes and not passing.any():
            return None, "no run satisfies the constraints (" + "; ".join(notes) + ")"
        # hunt62 F4: runs passed the constraints; the target or the trades are missing
        which = "that satisfies the constraints " if notes else ""
        if not (vals.notna() & passing).any():
            return None, f"no successful run {which}has a {metric}"
        return None, (f"no successful run {which}traded ({int(passing.sum())} runs, no trade in any): a run "
                      "without trades is no pick")
    cand = vals[eligible]
    order = cand.to_numpy()
    pos = np.flatnonzero(eligible.to_numpy())
    best = int(pos[np.argmax(order)] if target.maximize() else pos[np.argmin(order)])
    return best, f"{int(eligible.sum())} of {len(frame)} runs eligible"


@dataclass
class OptimizationResult:
    """Outcome of a grid search.

    ``all_results`` has one row per combination: parameter columns (``instance.param``),
    every metric, ``status``, ``error``, ``run_id`` and ``eligible``.

    >>> import metaflow_nb as mf
    >>> opt = mf.optimize("config/optimizations/sma_grid.yaml", backend="sequential", progress=False)
    >>> opt.total_runs, opt.successful_runs, opt.best_params["sma_1"], int(opt.best_row["sma_1.fast"])
    (40, 40, {'fast': 15, 'slow': 120}, 15)
    """

    name: str
    target: OptimizationTarget
    param_columns: list[str]
    all_results: pd.DataFrame
    best_index: Optional[int]
    message: str
    base_specs: BuildSpecs = field(repr=False)
    engine: str = "general"
    timings: dict[str, float] = field(default_factory=dict)
    store: Optional[ResultsStore] = field(default=None, repr=False)
    data: Optional[pd.DataFrame] = field(default=None, repr=False)  # when the sweep ran on a given frame
    resumed: int = 0   # runs read back from the results store (--resume), not computed again

    @property
    def total_runs(self) -> int:
        """Combinations in the grid (every row of ``all_results``, failed ones included)."""
        return int(len(self.all_results))

    @property
    def successful_runs(self) -> int:
        """Runs that finished (``status`` ok), eligible or not."""
        return int((self.all_results["status"] == "ok").sum())

    @property
    def failed_runs(self) -> int:
        """Runs that failed or timed out (their ``error`` column says why)."""
        return self.total_runs - self.successful_runs

    @property
    def best_row(self) -> Optional[pd.Series]:
        """The best run's row of ``all_results`` (parameters, metrics, run id), None when no
        run is eligible."""
        return None if self.best_index is None else self.all_results.iloc[self.best_index]

    @property
    def best_params(self) -> Optional[dict[str, dict[str, Any]]]:
        """``{instance_id: {param: value}}`` of the best run, None when no run is eligible.

        >>> import metaflow_nb as mf
        >>> opt = mf.optimize("config/optimizations/sma_grid.yaml", progress=False)
        >>> opt.best_params
        {'sma_1': {'fast': 15, 'slow': 120}, 'stops_1': {'stop_loss_pct': 2.0}}
        """
        row = self.best_row
        if row is None:
            return None
        return row_params(row, self.param_columns, grid_nulls=True)

    @property
    def best_metrics(self) -> Optional[dict[str, Any]]:
        """Every metric of the best run as plain Python numbers, None when no run is eligible.

        >>> import metaflow_nb as mf
        >>> opt = mf.optimize("config/optimizations/sma_grid.yaml", progress=False)
        >>> round(opt.best_metrics["sharpe_ratio"], 3), opt.best_metrics["total_trades"]
        (0.315, 33)
        """
        row = self.best_row
        if row is None:
            return None
        # a failed row's NaN made the counts' column float: 19.0 trades (hunt39 F1)
        return whole_counts({m: (row[m].item() if hasattr(row[m], "item") else row[m]) for m in METRIC_NAMES})

    @property
    def best_specs(self) -> Optional[BuildSpecs]:
        """The best run's BuildSpecs (the base with its parameters), ready to run again with
        :meth:`~metaflow_nb.services.operation.OperationService.run`; None when no run is
        eligible.

        >>> import metaflow_nb as mf
        >>> opt = mf.optimize("config/optimizations/sma_grid.yaml", progress=False)
        >>> opt.best_specs.params("sma_1"), opt.best_specs.run_id == opt.best_row["run_id"]
        ({'fast': 15, 'slow': 120}, True)
        """
        row = self.best_row
        return None if row is None else specs_from_row(self.base_specs, row, self.param_columns, grid_nulls=True)

    def to_frame(self) -> pd.DataFrame:
        """A copy of ``all_results``: one row per combination, in grid order.

        >>> import metaflow_nb as mf
        >>> opt = mf.optimize("config/optimizations/sma_grid.yaml", progress=False)
        >>> t = opt.to_frame()
        >>> t.shape, list(t.columns[:3])
        ((40, 25), ['sma_1.fast', 'sma_1.slow', 'stops_1.stop_loss_pct'])
        """
        return self.all_results.copy()

    @property
    def statistics(self) -> dict[str, Any]:
        """Deflated Sharpe Ratio of the best run and Probability of Backtest Overfitting
        (CSCV, S=16) of the sweep; computed on first use (it re-runs successful runs to get
        their daily returns).

        >>> import metaflow_nb as mf
        >>> opt = mf.optimize("config/optimizations/sma_grid.yaml", progress=False)
        >>> st = opt.statistics
        >>> st["n_trials"], round(st["dsr"], 2), st["dsr_significant"], round(st["pbo"], 2)
        (40, 0.56, False, 0.75)
        """
        cached = self.__dict__.get("_statistics")
        if cached is None:
            try:
                cached = optimization_statistics(self)
            except Exception as exc:  # noqa: BLE001 - statistics must not sink the result
                cached = {"note": f"statistics not computed: {type(exc).__name__}: {exc}"}
            self.__dict__["_statistics"] = cached
        return cached

    def statistics_text(self) -> str:
        """:attr:`statistics` in words, with the verdict line the report pages state.

        >>> import metaflow_nb as mf
        >>> opt = mf.optimize("config/optimizations/sma_grid.yaml", progress=False)
        >>> print(opt.statistics_text().splitlines()[-1])
        verdict: Indistinguishable from the luck of 40 trials (deflated Sharpe ratio 0.563 < 0.95; PBO 0.75 >= 0.5)
        """
        return statistics_words(self.statistics)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what ``optimize --json`` prints): counts, best parameters and
        metrics, the selection message, timings and statistics.

        >>> import metaflow_nb as mf
        >>> opt = mf.optimize("config/optimizations/sma_grid.yaml", progress=False)
        >>> d = opt.to_dict()
        >>> d["total_runs"], d["engine"], d["message"], d["best_params"]["sma_1"]
        (40, 'batch', '40 of 40 runs eligible', {'fast': 15, 'slow': 120})
        """
        return json_safe({
            "name": self.name, "engine": self.engine, "total_runs": self.total_runs,
            "successful_runs": self.successful_runs, "failed_runs": self.failed_runs,
            "primary_metric": self.target.primary_metric, "best_params": self.best_params,
            "best_metrics": self.best_metrics,
            "best_run_id": None if self.best_row is None else self.best_row["run_id"],
            "message": self.message, "timings": self.timings, "resumed_runs": self.resumed,
            "statistics": {k: v for k, v in self.statistics.items() if not k.startswith("_")},
        })

    def plot(self, kind: str = "heatmap", x: Optional[str] = None, y: Optional[str] = None,
             metric: Optional[str] = None, agg: str = "best", **kwargs: Any) -> "Figure":
        """Heatmap of ``metric`` over two parameter columns (others fixed at the best run's
        values with ``agg="best"``, or aggregated with ``"mean"``/``"max"``), or with
        ``kind="pbo"`` the histogram of the CSCV logits. Returns the Figure.

        >>> import metaflow_nb as mf
        >>> opt = mf.optimize("config/optimizations/sma_grid.yaml", progress=False)
        >>> ax = opt.plot().axes[0]
        >>> ax.get_xlabel(), ax.get_ylabel()
        ('sma_1.fast', 'sma_1.slow')
        """
        if kind not in ("heatmap", "pbo"):
            raise ConfigError(f"unknown plot kind {kind!r}; kinds: 'heatmap', 'pbo'")
        from . import plots  # matplotlib, only when a figure is asked for
        if kind == "pbo":
            return plots.plot_pbo(self.statistics.get("_pbo_result"), "sweep", self.statistics_text())
        return plots.plot_optimization(self, x=x, y=y, metric=metric, agg=agg, **kwargs)

    def costs_text(self) -> str:
        """Commission and slippage of every run of the sweep (the base operation's), said
        out loud when zero.

        >>> import metaflow_nb as mf
        >>> opt = mf.optimize("config/optimizations/sma_grid.yaml", progress=False)
        >>> opt.costs_text()
        'costs: commission 0.2 % per side, slippage 0'
        """
        from .tearsheet import costs_text
        return costs_text(self.base_specs.commission, self.base_specs.slippage)

    def __repr__(self) -> str:
        read = f" ({self.resumed} read from the results store)" if self.resumed else ""
        head = (f"OptimizationResult({self.name!r}: {self.total_runs} runs{read}, {self.successful_runs} ok, "
                f"{self.failed_runs} failed, engine={self.engine})\n{self.message}\n{self.costs_text()}")
        if self.best_index is not None:
            head += "\n" + self.statistics_text()
        failed = failures_text(self.all_results, self.param_columns)
        if failed:
            head += f"\n{failed}"
        if self.best_params is None:
            return head
        return head + f"\nbest params: {self.best_params}\n" + metrics_table_text(self.best_metrics or {})

    def _repr_html_(self) -> str:
        best = (f"<p>best params: <code>{html.escape(str(self.best_params))}</code></p>"
                + metrics_table_html(self.best_metrics or {}, "Best run")) if self.best_params else ""
        # ranked as the best run was chosen: the runs the constraints leave first
        frame = self.all_results
        if "eligible" not in frame:
            frame = frame.assign(eligible=frame["status"] == "ok")
        key = pd.to_numeric(frame[self.target.primary_metric], errors="coerce")
        top = frame.assign(_k=key if self.target.maximize() else -key).sort_values(
            ["eligible", "_k"], ascending=[False, False], kind="stable", na_position="last").head(10)
        cols = self.param_columns + [self.target.primary_metric, "total_trades", "max_drawdown_pct", "status",
                                     "eligible"]
        return (f"<div class='mf-result'><b>{html.escape(self.name)}</b>: {self.total_runs} runs, "
                f"{self.successful_runs} ok, {self.failed_runs} failed &middot; engine {self.engine}"
                f"<p>{html.escape(self.message)}</p><p class='mf-costs'>{html.escape(self.costs_text())}</p>"
                + (f"<p>{html.escape(self.statistics_text())}</p>" if self.best_index is not None else "")
                + (f"<p>{html.escape(failed)}</p>" if (failed := failures_text(frame, self.param_columns)) else "")
                + f"{best}<p>Top runs by {self.target.primary_metric}</p>"
                + table_html(top[cols]) + "</div>")


class OptimizationService:
    """Grid search: generate combinations, derive BuildSpecs from the base, run, pick the best.

    >>> svc = OptimizationService(ParallelRunService(backend="sequential", progress=False))
    >>> res = svc.run("config/optimizations/optimize_fvg_params.yaml")
    >>> res.total_runs
    16
    """

    def __init__(self, runner: Optional[ParallelRunService] = None):
        self.runner = runner

    def run(self, config: MetaSource, out: Optional[str | Path] = None, resume: bool = False,
            strategy: Any = None, operation: Any = None, data: Any = None,
            **runner_options: Any) -> OptimizationResult:
        """Run an ``optimization_config`` (a YAML path, a dict or a model); ``strategy``,
        ``operation`` and ``data`` replace its base blueprint, operation and data.

        >>> res = OptimizationService().run("config/optimizations/sma_grid.yaml", progress=False)
        >>> res.name, res.total_runs, res.best_params["sma_1"]
        ('SMA grid', 40, {'fast': 15, 'slow': 120})
        """
        root, model, raw, folder = load_meta_config(config, "optimization_config")
        assert isinstance(model, OptimizationConfig)
        origin = meta_origin(config, root)
        basket = basket_operation(model, folder, origin, root, strategy, operation, data)
        if basket is not None:  # README "Portfolios": every combination one portfolio run
            runner_options.setdefault("progress", getattr(self.runner, "progress", True))  # the runner's say
            from .basket_specs import basket_threads
            with basket_threads(model.parallel, runner_options), \
                    inline_bases_named(model, origin, root, strategy, operation):
                return _basket_optimization(model, raw, *basket, origin, root, out=out, resume=resume,
                                              **runner_options)
        # resolved first: an unreadable operation is not "a single instrument" (its own error says what is wrong)
        base = base_specs(model, folder, origin, root, strategy, operation, data)
        frame = meta_frame(data, base.data_clock)   # a frame of the user's own: on the operation's clock
        if model.optimization_target.per_instrument:
            raise ConfigError(f"{origin}: {root}.optimization_target.per_instrument: needs a base_operation that "
                              "names a basket (instruments: or universe:); this one is a single instrument")
        limit = runner_options.pop("max_combinations", None) or model.max_combinations
        columns, combos = expand_space(model.parameter_space, raw["parameter_space"], origin, root, base, limit)
        engine = runner_options.pop("engine", None) or model.parallel.engine
        return self.sweep(base, columns, combos, model.optimization_target, name=model.name, origin=origin,
                          root=root, out=out, resume=resume, runner=runner_for(model.parallel, runner_options, out, resume, self.runner, f"{origin}: {root}."),
                          engine=engine, data=frame)

    def sweep(self, base: BuildSpecs, columns: list[str], combos: Sequence[dict[str, dict[str, Any]]],
              target: OptimizationTarget, name: str = "optimization", origin: str = "<parameter_space>",
              root: str = "optimization_config", out: Optional[str | Path] = None, resume: bool = False,
              runner: Optional[ParallelRunService] = None, data: Optional[pd.DataFrame] = None,
              engine: str = "auto", merge_store: bool = True) -> OptimizationResult:
        """Run given combinations of ``{instance: {param: value}}`` on ``base``. With a
        results store, ``merge_store`` merges its segments when the sweep ends (a caller
        running many sweeps on one store, a walk-forward, merges once itself).

        >>> import metaflow_nb as mf
        >>> base = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> combos = [{"sma_1": {"fast": 5}}, {"sma_1": {"fast": 30}}]   # fast 30 >= slow 20: refused
        >>> res = OptimizationService().sweep(base, ["sma_1.fast"], combos, OptimizationTarget())
        >>> res.all_results["status"].tolist(), res.best_params
        (['ok', 'failed'], {'sma_1': {'fast': 5}})
        """
        import time

        t0 = time.perf_counter()
        runner = runner or self.runner or ParallelRunService()
        where = f"{origin}: {root}.parallel.engine"
        wrong = engine_problem(engine)
        if wrong:
            raise ConfigError(f"{where}: {wrong}")
        if engine == "batch" and runner.timeout is not None:
            raise ConfigError(f"{where}: 'batch' runs every combination in one compiled call, which "
                              f"timeout_per_run ({runner.timeout:g} s) cannot interrupt; drop one of the two")
        wrong = engine_backend_problem(engine, runner.backend)
        if wrong:
            raise ConfigError(f"{where}: {wrong}")
        if data is not None and base.data_fingerprint != _fingerprint(data):
            # run ids and store keys must name the data the runs actually see
            base = rebase_on(base, data)
        reason = unsupported_reason(base)
        if engine == "batch" and reason:
            raise ConfigError(f"{where}: 'batch' cannot run this sweep: {reason}")
        # the batch kernel runs in this process on all cores; explicit process/cluster
        # backends and per-run timeouts need the general path
        use_batch = engine == "batch" or (engine == "auto" and reason is None and runner.backend == "loky"
                                          and runner.timeout is None)
        # daily returns feed PBO, which reads every run's only up to RETURNS_MAX_RUNS runs;
        # above that only the best run's are read (computed once after the sweep and stored)
        runner.keep_returns = len(combos) <= RETURNS_MAX_RUNS
        if use_batch:
            outcomes = self._run_batch(base, combos, runner, data, name, origin, root, columns)
            specs_s = 0.0
            used = "batch"
        else:
            outcomes, specs_s = self._run_general(base, combos, runner, data, name, origin, root, columns)
            used = "general"
        if runner.store is not None and merge_store:
            # the sweep's segments merged into one; a walk-forward merges once at its end
            # (hunt120 F1: a merge per window read and wrote every earlier window's again)
            runner.store.close()
        t1 = t0 + specs_s
        t2 = time.perf_counter()
        frame = outcomes_frame(outcomes, columns, combos)
        best, message = select_best(frame, target)
        if out is not None:
            with outputs_kept("the sweep's all_results.csv and parameters"):
                Path(out).mkdir(parents=True, exist_ok=True)
                write_csv(frame.drop(columns=["duration_s"]), Path(out) / "all_results.csv", index=False)
                write_sweep_params(Path(out) / "store", frame)
        return OptimizationResult(name=name, target=target, param_columns=columns, all_results=frame,
                                  best_index=best, message=message, base_specs=base, engine=used, store=runner.store,
                                  data=data, resumed=sum(1 for o in outcomes if o is not None and o.cached),
                                  timings={"specs_s": t1 - t0, "runs_s": t2 - t1, "total_s": time.perf_counter() - t0})

    @staticmethod
    def _run_general(base: BuildSpecs, combos: Sequence[dict[str, dict[str, Any]]], runner: ParallelRunService,
                     data: Optional[pd.DataFrame], name: str, origin: str,
                     root: str, columns: Sequence[str] = ()) -> tuple[list[RunOutcome], float]:
        """One full backtest per combination, ``SWEEP_CHUNK`` combinations at a time
        (their specs built, run and stored before the next chunk's are built); returns the
        outcomes and the seconds spent building specs."""
        import time

        outcomes: list[RunOutcome] = []
        specs_s = 0.0
        n_invalid = 0
        first_invalid = ""
        for lo in range(0, len(combos), SWEEP_CHUNK):
            t0 = time.perf_counter()
            valid: list[tuple[int, BuildSpecs]] = []
            chunk_outcomes: list[Optional[RunOutcome]] = []
            for k, combo in enumerate(combos[lo:lo + SWEEP_CHUNK], start=lo):
                try:
                    valid.append((k, base.with_param_overrides(combo)))
                    chunk_outcomes.append(None)
                except ConfigError as exc:
                    # one impossible combination (fast >= slow) is a failed row, not a failed sweep
                    message = f"{origin}: {root}.parameter_space: combination {combo}: {str(exc).split(': ', 1)[-1]}"
                    chunk_outcomes.append(RunOutcome(k, "", "", "failed", error_type="ConfigError",
                                                     error_message=message))
                    n_invalid += 1
                    first_invalid = first_invalid or message
            specs_s += time.perf_counter() - t0
            if n_invalid == len(combos):
                raise ConfigError(first_invalid)
            params_ahead(runner.store, columns, [(s.run_id, combos[k]) for k, s in valid])
            ran = runner.run([s for _, s in valid], data=data, desc=name) if valid else []
            for (k, _), done in zip(valid, ran):
                done.index = k
                chunk_outcomes[k - lo] = done
            outcomes.extend(o for o in chunk_outcomes if o is not None)
        return outcomes, specs_s

    @staticmethod
    def _run_batch(base: BuildSpecs, combos: Sequence[dict[str, dict[str, Any]]], runner: ParallelRunService,
                   data: Optional[pd.DataFrame], name: str, origin: str, root: str,
                   columns: Sequence[str] = ()) -> list[RunOutcome]:
        """The batch kernel, ``SWEEP_CHUNK`` combinations at a time (validated, run and
        stored before the next chunk is made); groups' features are shared across chunks."""
        store = runner.store
        stored = store.get if (store is not None and runner.resume) else None
        bar = None
        results: list[RunOutcome] = []
        cache: dict = {}
        ran = False

        def on_done(out: RunOutcome) -> None:
            if store is not None:
                store_outcome(store, out)
            if bar is not None:
                bar.update(1)

        try:
            for lo in range(0, len(combos), SWEEP_CHUNK):
                prepared, outcomes = batch.validate_combos(base, combos[lo:lo + SWEEP_CHUNK], origin=origin,
                                                           root=root, stored=stored)
                cached = sum(1 for o in outcomes if o is not None and o.cached)
                if bar is None and prepared:
                    bar = runner._progress_bar(len(combos), len(results) + cached, name)
                elif bar is not None:
                    bar.update(cached)
                if prepared:
                    ran = True
                    params_ahead(store, columns, [(p.run_id, combos[lo + p.index]) for p in prepared])
                    with batch.kernel_threads(runner.max_workers):   # workers: the kernel's threads here
                        batch.run_batch(base, prepared, outcomes, data, cache=cache, on_done=on_done,
                                        keep_returns=store is not None and runner.keep_returns)
                for o in outcomes:
                    if o is not None:
                        o.index += lo
                        results.append(o)
        finally:
            forget_groups(cache)  # the sweep's cache is let go: no group may hold it in a cycle
            if bar is not None:
                bar.close()
            if store is not None:
                store.flush()  # finished runs reach the disk, Ctrl-C included
        if not ran and results and all(o.error_type == "ConfigError" for o in results):
            raise ConfigError(results[0].error_message)
        return results


def params_ahead(store: Optional[ResultsStore], columns: Sequence[str],
                 runs: Sequence[tuple[str, dict[str, dict[str, Any]]]]) -> None:
    """Keep the parameter columns of the runs about to be computed (``(run_id, combo)``)
    in ``store`` before they run: a sweep stopped by Ctrl-C or SIGTERM wrote them nowhere,
    and ``mf.runs`` listed its finished runs without their values (hunt79 F2).

    >>> import tempfile
    >>> store = ResultsStore(tempfile.mkdtemp())
    >>> params_ahead(store, ["sma_1.fast"], [("ab" * 8, {"sma_1": {"fast": 5}})])
    >>> len(list((store.root / "params").glob("*.csv")))
    1
    """
    if store is None or not columns or not runs:
        return
    split = [(col, *col.split(".", 1)) for col in columns]
    table = pd.DataFrame({"run_id": [rid for rid, _ in runs],
                          **{col: [combo[inst][p] for _, combo in runs] for col, inst, p in split}})
    write_sweep_params(store.root, table)


#: a sweep stores every run's daily returns up to this many combinations: PBO (CSCV) needs
#: them all and is computed up to as many runs (significance.optimization_statistics'
#: max_configs); above it only DSR's best run is read, so storing 11,466 runs' returns
#: (67 MB of the issue-19 sweep's 71 MB on 5,031 daily bars, even compressed) buys nothing
RETURNS_MAX_RUNS = 2000


#: combinations validated, built and run at a time: a sweep never holds more of them than
#: this (their specs, workforces and plans); results come back in grid order whatever it is
SWEEP_CHUNK = 50_000


def outcomes_frame(outcomes: Sequence[RunOutcome], columns: list[str],
                   combos: Sequence[dict[str, dict[str, Any]]]) -> pd.DataFrame:
    """One row per run: parameters, metrics (NaN when failed), status, error, run_id.

    >>> failed = RunOutcome(0, "", "", "failed", error_type="ConfigError", error_message="fast >= slow")
    >>> t = outcomes_frame([failed], ["sma_1.fast"], [{"sma_1": {"fast": 30}}])
    >>> t.loc[0, ["status", "error"]].tolist(), bool(np.isnan(t.loc[0, "sharpe_ratio"]))
    (['failed', 'ConfigError: fast >= slow'], True)
    """
    names = [*columns, *METRIC_NAMES, "status", "error", "run_id", "duration_s"]
    runs = list(zip(outcomes, combos))  # a lazy grid builds each combination once
    if not runs:
        return pd.DataFrame([], columns=names)  # object columns, as rows of nothing give
    # column by column: a row dict per run cost ~15 us of a 300-run sweep's 5 ms
    data: dict[str, list] = {}
    for col in columns:
        inst, p = col.split(".", 1)
        data[col] = [combo[inst][p] for _, combo in runs]
    # every metric of a run in one C-level call, then transposed: 34 dict look-ups per
    # run from Python cost more than the DataFrame itself
    values = [_metric_values(out.metrics) for out, _ in runs]
    for m, col in zip(METRIC_NAMES, zip(*values)):
        data[m] = [np.nan if v is None else v for v in col] if None in col else list(col)
    data["status"] = [out.status for out, _ in runs]
    data["error"] = ["" if out.ok else f"{out.error_type}: {out.error_message}" for out, _ in runs]
    data["run_id"] = [out.run_id for out, _ in runs]
    data["duration_s"] = [out.duration_s for out, _ in runs]
    frame = pd.DataFrame(data, columns=names)
    restore_infinite_profit_factors(frame)
    return frame


_ALL_METRICS = operator.itemgetter(*METRIC_NAMES)


def restore_infinite_profit_factors(frame: pd.DataFrame) -> None:
    """Put back, in ``frame``'s ``profit_factor`` column, the infinite profit factors that
    runs' JSON-safe metrics hold as None (NaN in a table): one is infinite exactly when it
    is not a number and the run has trades and a winning one (gross profit > 0, no gross
    loss; with neither it is undefined, NaN). A sweep ranked on ``profit_factor`` then sees
    the run without losses as the best it is.

    >>> t = pd.DataFrame({"profit_factor": [np.nan, np.nan, 2.0], "total_trades": [3, 0, 4],
    ...                   "win_rate_pct": [100.0, np.nan, 50.0]})
    >>> restore_infinite_profit_factors(t); t["profit_factor"].tolist()
    [inf, nan, 2.0]
    """
    hit = (np.isnan(frame["profit_factor"].to_numpy(np.float64)) & (frame["total_trades"].to_numpy(np.float64) > 0)
           & (frame["win_rate_pct"].to_numpy(np.float64) > 0))
    if hit.any():
        frame.loc[hit, "profit_factor"] = np.inf


def _metric_values(metrics: Optional[dict[str, Any]]) -> tuple:
    """A run's metrics in :data:`METRIC_NAMES` order, None where it has none."""
    if not metrics:
        return (None,) * len(METRIC_NAMES)
    try:
        return _ALL_METRICS(metrics)
    except KeyError:  # a record without some metric (a run stored by an older version)
        return tuple(metrics.get(m) for m in METRIC_NAMES)


def _fingerprint(data: pd.DataFrame) -> str:
    return trusted_fingerprint(data) or data_fingerprint(data)


def _basket_optimization(model: Any, raw: dict[str, Any], strategy: Any, operation: Any, origin: str, root: str,
                           out: Any = None, resume: bool = False, **runner_options: Any) -> "BasketOptimization":
    """An ``optimization_config`` whose ``base_operation`` names a basket: :func:`optimize_basket`
    on its parameter_space, target (metric, goal, constraints) and ``max_combinations``;
    ``out`` gets ``all_results.csv``, ``per_instrument.csv`` and ``optimization.json``, and
    its results store (``out/store``): with ``resume`` the combinations it holds are read
    back, not run.

    >>> import metaflow_nb as mf
    >>> opt = mf.optimize({"name": "b", "base_strategy": "config/runs/sma_cross.yaml",
    ...                    "base_operation": {"universe": {"path": "us_stocks", "symbols": ["IBM"]},
    ...                                       "data": {"start": "2012-01-01"}},
    ...                    "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10]}}]},
    ...                   progress=False)
    >>> type(opt).__name__, opt.total_runs
    ('BasketOptimization', 2)
    """
    from pathlib import Path

    from .basket_specs import warn_unused_parallel
    from .portfolio import load_basket
    from .portfolio_meta import meta_store, optimize_basket

    warn_unused_parallel(model.parallel, runner_options, origin, root)
    store = meta_store(origin, out, resume)
    target = model.optimization_target
    limit = runner_options.get("max_combinations") or model.max_combinations
    op = load_basket(operation)
    if target.per_instrument and op[0].mode != "independent":
        raise ConfigError(f"{origin}: {root}.optimization_target.per_instrument: a shared account (mode: portfolio) "
                          "has no per-instrument runs; use mode: independent")
    try:
        # its errors name this config (origin, root), or the strategy's or the data's file
        opt = optimize_basket(strategy, op, raw["parameter_space"], target=target.primary_metric,
                              max_combinations=limit, maximize=target.maximize(), constraints=target.constraints,
                              name=model.name, engine=runner_options.get("engine") or model.parallel.engine,
                              progress=runner_options.get("progress", True),
                              store=store, resume=resume, origin=origin, root=root)
    finally:
        if store is not None:
            store.close()  # its segments merged into one
    opt.show_per_instrument = target.per_instrument
    if out is not None:
        import json

        with outputs_kept("the basket sweep's tables and optimization.json"):
            Path(out).mkdir(parents=True, exist_ok=True)
            write_csv(opt.table, Path(out) / "all_results.csv", index=False)
            if opt.per_instrument is not None:
                write_csv(opt.per_instrument, Path(out) / "per_instrument.csv", index=False)
            write_text(Path(out) / "optimization.json", json.dumps(opt.to_dict(), indent=2))
    return opt
