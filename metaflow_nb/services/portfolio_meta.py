"""Grid search over a basket (issue #17 part 4, first step): every combination of a
parameter space is one portfolio run (:func:`~metaflow_nb.services.portfolio.run_portfolio`,
either mode), ranked by a portfolio metric; in ``mode: independent`` also per instrument
(the best combination of each symbol). Deflated Sharpe ratios count every trial: the
combinations for the portfolio's best, combinations x instruments for a symbol's best.

``engine="batch"`` runs the combinations on the batch path over the basket
(:mod:`metaflow_nb.services.basket_sweep`); ``"general"`` runs them one by one through the
run path (the basket is loaded once). Both give the same table bit for bit.
"""
from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

import numpy as np
import pandas as pd

from ..config.loading import validate_model
from ..config.meta import Grid, OptimizationTarget, check_grid_size, engine_problem, parse_parameter_space
from ..config.overrides import parse_param_overrides
from ..config.translator import ConfigTranslator, StrategyLike
from ..engine.metrics import METRIC_DIRECTION, METRIC_NAMES, daily_returns, periods_per_year
from ..errors import ConfigError
from ..limits import MAX_COMBINATIONS
from ..stats.sharpe import deflated_sharpe_ratio_from_stats, moments
from .significance import ALPHA, distinct_runs, identical_words, pbo_ranking, statistics_words
from .basket_specs import basket_origin
from .names import folder_problem
from .portfolio import PortfolioResult, load_basket, run_portfolio
from .formatting import counted, failures_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BasketOptimization", "BasketRunView", "combination_keys", "meta_store", "optimize_basket"]


def _deflated(returns: pd.Series, sharpes: np.ndarray, n_trials: int, ppy: float) -> Optional[Any]:
    """Deflated Sharpe ratio (:class:`~metaflow_nb.stats.sharpe.DeflatedSharpe`) of the
    selected run's daily ``returns`` among ``n_trials`` trials whose annualised Sharpe
    ratios are ``sharpes``; None when undefined."""
    r = returns.dropna().to_numpy(np.float64)
    finite = sharpes[np.isfinite(sharpes)]
    if r.shape[0] < 3 or finite.shape[0] == 0 or not np.std(r) > 0:
        return None
    sr, skew, kurt, t = moments(r)
    var_sr = float(np.var(finite, ddof=1)) if finite.shape[0] > 1 else 0.0
    return deflated_sharpe_ratio_from_stats(sr * math.sqrt(ppy), t, max(n_trials, 1), var_sr, skew, kurt, ppy)


def _dsr(returns: pd.Series, sharpes: np.ndarray, n_trials: int, ppy: float) -> float:
    """:func:`_deflated`'s probability (NaN when undefined)."""
    d = _deflated(returns, sharpes, n_trials, ppy)
    return math.nan if d is None else d.dsr


@dataclass
class BasketOptimization:
    """Every combination's portfolio metrics (:attr:`table`, best first by ``target``), the
    best combination and its run, and in independent mode :attr:`per_instrument` (every
    symbol x combination) and :meth:`best_per_instrument`."""

    target: str
    maximize: bool
    table: pd.DataFrame
    best: dict[str, Any]
    best_result: PortfolioResult
    best_dsr: float
    per_instrument: Optional[pd.DataFrame]
    n_instruments: int
    name: str = "basket optimization"
    message: str = ""
    returns: Optional[pd.DataFrame] = field(default=None, repr=False)  # daily returns, a column per combination
    show_per_instrument: bool = False  # optimization_target.per_instrument: the picks are part of the answer
    returns_note: str = ""  # why the daily returns were not kept (PBO skipped), when they were not
    engine: str = "general"  # the path the combinations ran on: batch or general
    deflated: Optional[Any] = field(default=None, repr=False)  # the best's DeflatedSharpe (None: undefined)
    resumed: int = 0  # combinations read back from the results store (resume), not run again

    @property
    def total_runs(self) -> int:
        """Combinations in the grid (every row of :attr:`table`, failed ones included)."""
        return int(len(self.table))

    @property
    def successful_runs(self) -> int:
        """The combinations that ran (the others are failed rows: ``status``, ``error``).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> opt.total_runs, opt.successful_runs, opt.message
        (2, 2, '2 of 2 combinations eligible')
        """
        return int((self.table["status"] == "ok").sum()) if "status" in self.table else self.total_runs

    @property
    def failed_runs(self) -> int:
        """Combinations that failed (their rows say ``status`` and ``error``)."""
        return self.total_runs - self.successful_runs

    @property
    def all_results(self) -> pd.DataFrame:
        """Every combination's row, best first (:attr:`table`): a single sweep's
        ``all_results`` by the same name, so a notebook reads either (hunt116 F2).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> opt.all_results["sma_1.fast"].tolist(), opt.failed_runs
        ([10, 5], 0)
        """
        return self.table

    @property
    def best_specs(self) -> Optional[Any]:
        """What identifies the best combination's portfolio run
        (:class:`~metaflow_nb.services.basket_specs.BasketSpecs`), None when none is eligible.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> opt.best_specs.run_id == opt.best_result.basket_specs.run_id
        True
        """
        return self.best_result.basket_specs if self.best_eligible else None

    def statistics_text(self) -> str:
        """:attr:`statistics` in words, with the verdict line, as a single sweep's.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> opt.statistics_text().startswith("deflated Sharpe ratio 0.185 (not significant at 5 %; 2 trials")
        True
        """
        return statistics_words(self.statistics)

    @property
    def best_eligible(self) -> bool:
        """Whether the best row meets the constraints and has a target (not NaN).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> opt.best_eligible, opt.best
        (True, {'sma_1__fast': 10, 'sma_1__slow': 30})
        """
        return _first_eligible(self.table)

    @property
    def best_params(self) -> Optional[dict[str, dict[str, Any]]]:
        """``{instance_id: {param: value}}`` of the best combination, None when none is
        eligible (a single sweep's :attr:`OptimizationResult.best_params`; :attr:`best` is
        the flat ``{"instance__param": value}`` form that ``run_portfolio`` takes).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> opt.best_params
        {'sma_1': {'fast': 10, 'slow': 30}}
        """
        return parse_param_overrides(self.best) if self.best_eligible else None

    @property
    def best_metrics(self) -> Optional[dict[str, Any]]:
        """The best combination's portfolio metrics, None when none is eligible.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> round(opt.best_metrics["sharpe_ratio"], 2), opt.best_metrics["total_trades"]
        (-0.46, 59)
        """
        return dict(self.best_result.metrics) if self.best_eligible else None

    def to_frame(self) -> pd.DataFrame:
        """Every combination's row (:attr:`table`, best first), a copy.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> opt.to_frame()[["sma_1.fast", "sma_1.slow"]].head(2).to_dict(orient="records")
        [{'sma_1.fast': 10, 'sma_1.slow': 30}, {'sma_1.fast': 5, 'sma_1.slow': 30}]
        """
        return self.table.copy()

    @property
    def statistics(self) -> dict[str, Any]:
        """Deflated Sharpe ratio of the best combination (counting every combination that ran) and
        the Probability of Backtest Overfitting (CSCV, S=16) of the portfolio's daily
        returns of every combination, when there are enough days (2 x S) and runs (2).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> st = opt.statistics
        >>> st["n_trials"], round(st["dsr"], 3), st["dsr_significant"], round(st["pbo"], 2)
        (2, 0.185, False, 0.78)
        """
        cached = self.__dict__.get("_statistics")
        if cached is not None:
            return cached
        eligible = self.best_eligible
        out: dict[str, Any] = {"n_trials": self.successful_runs, "dsr": self.best_dsr if eligible else math.nan}
        if self.per_instrument is not None:   # what each symbol's pick is deflated by (best_per_instrument)
            out["per_instrument_trials"] = len(self.per_instrument)
        d = self.deflated
        if not eligible:   # no pick: nothing whose selection a deflation (or a verdict) could judge (hunt62 F2)
            out["note"] = "no combination is eligible: no pick to deflate"
        elif d is None:   # too few days or no variation: the banner gives no verdict rather than a NaN one
            out["note"] = "the best combination's deflated Sharpe ratio is undefined (fewer than 3 days or no variation)"
        else:   # the figures the honesty banner reads, as the single sweep's statistics give them
            out.update({"psr": d.psr, "sharpe_annualized": d.sr_annualized,
                        "expected_max_sharpe_annualized": d.sr0_annualized, "var_trial_sharpe": d.var_sr,
                        "skew": d.skew, "kurtosis": d.kurt, "days": d.t, "dsr_significant": bool(d.significant(ALPHA))})
        matrix = None if self.returns is None else self.returns.dropna()
        if matrix is not None and "eligible" in self.table:
            # CSCV over the combinations the optimization could pick (constraints met)
            pickable = set(self.table.loc[self.table["eligible"].astype(bool), "combination"].astype(int))
            matrix = matrix[[c for c in matrix.columns if int(c) in pickable]]
        s = 16
        if matrix is None and self.returns_note:
            out["pbo_note"] = self.returns_note
        elif matrix is None or matrix.shape[1] < 2:
            out["pbo_note"] = "PBO needs at least 2 combinations that meet the constraints"
        elif len(matrix) < 2 * s:
            out["pbo_note"] = f"PBO skipped: {len(matrix)} days < 2 x S ({s})"
        else:
            from ..stats import pbo_cscv
            values, said = distinct_runs(matrix.to_numpy())
            out.update(said)
            if values is not None:
                metric, ranked = pbo_ranking(self.target, self.maximize)
                pbo = pbo_cscv(values, s=s, metric=metric)
                out.update({"pbo": pbo.pbo, "pbo_splits": s, "pbo_combinations": pbo.n_combinations,
                            "pbo_ranking": ranked, "pbo_runs": int(values.shape[1])})
                self.__dict__["_pbo"] = pbo   # plot("pbo") draws it; not a statistic to print
        self.__dict__["_statistics"] = out
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: the best combination and its portfolio metrics, the
        statistics, every combination's row and, in independent mode, each symbol's pick.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> d = opt.to_dict()
        >>> d["mode"], d["instruments"], len(d["all_results"]), len(d["best_per_instrument"])
        ('independent', ['IBM', 'MSFT'], 2, 2)
        """
        from .formatting import json_safe

        picks = None
        if self.per_instrument is not None:
            picks = self.best_per_instrument().reset_index().to_dict(orient="records")
        return json_safe({"name": self.name, "basket": True, "mode": self.best_result.mode, "engine": self.engine,
                          "instruments": self.best_result.symbols, "total_runs": self.total_runs,
                          "successful_runs": self.successful_runs, "primary_metric": self.target,
                          "resumed_runs": self.resumed,
                          "best_params": self.best if self.best_eligible else None,
                          "best_eligible": self.best_eligible, "message": self.message,
                          "best_metrics": self.best_result.metrics if self.best_eligible else None,
                          "statistics": self.statistics, "all_results": self.table.to_dict(orient="records"),
                          "best_per_instrument": picks})

    @property
    def param_columns(self) -> list[str]:
        """The ``instance.param`` columns of :attr:`table`.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> opt.param_columns
        ['sma_1.fast', 'sma_1.slow']
        """
        return [c for c in self.table.columns if "." in c]

    @property
    def best_row(self) -> Optional[pd.Series]:
        """The best combination's row, None when no row is eligible.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> opt.best_row[["sma_1.fast", "sma_1.slow", "eligible"]].to_dict()
        {'sma_1.fast': 10, 'sma_1.slow': 30, 'eligible': True}
        """
        return self.table.iloc[0] if len(self.table) and self.best_eligible else None

    def plot(self, kind: str = "heatmap", x: Optional[str] = None, y: Optional[str] = None,
             metric: Optional[str] = None, agg: str = "best", **kwargs: Any) -> "Figure":
        """Heatmap of a portfolio ``metric`` (default: the target) over two parameter
        columns, as :meth:`OptimizationResult.plot <metaflow_nb.services.optimization.OptimizationResult.plot>`
        draws it; returns the Figure.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> ax = opt.plot().axes[0]
        >>> ax.get_xlabel(), ax.get_ylabel()
        ('sma_1.fast', 'sma_1.slow')
        """
        if kind not in ("heatmap", "pbo"):
            raise ConfigError(f"unknown plot kind {kind!r}; kinds: 'heatmap', 'pbo'")
        from types import SimpleNamespace

        from . import plots
        if kind == "pbo":   # as a single sweep's (hunt116 F2: refused, though the PBO was computed)
            said = self.statistics_text()   # computes the statistics, the PBO's result kept beside them
            return plots.plot_pbo(self.__dict__.get("_pbo"), "basket optimization", said)
        target = SimpleNamespace(primary_metric=self.target, maximize=lambda: self.maximize)
        view = SimpleNamespace(name=self.name, all_results=self.table, param_columns=self.param_columns, target=target,
                               best_row=self.best_row)
        return plots.plot_optimization(view, x=x, y=y, metric=metric, agg=agg, **kwargs)

    def costs_text(self) -> str:
        """Commission and slippage of every combination's instruments (one entry per symbol
        when they differ), said out loud when zero.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> opt.costs_text()
        'costs: none (commission 0, slippage 0)'
        """
        from .tearsheet import specs_costs_text
        res = self.best_result
        return specs_costs_text(dict(zip(res.symbols, res.instrument_specs())))

    def best_per_instrument(self) -> pd.DataFrame:
        """Independent mode: each symbol's best combination by ``target`` with its metrics
        and its deflated Sharpe ratio counting every (symbol, combination) trial.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
        >>> opt.best_per_instrument()[["sma_1.fast", "deflated_sharpe"]].round(3).to_dict(orient="index")
        {'IBM': {'sma_1.fast': 10, 'deflated_sharpe': 0.218}, 'MSFT': {'sma_1.fast': 10, 'deflated_sharpe': 0.216}}
        """
        if self.per_instrument is None:
            raise ConfigError("best_per_instrument: a shared account (mode: portfolio) has no per-instrument runs "
                              "to pick from; use mode: independent")
        return symbol_picks(self.per_instrument, self.target, self.maximize)

    def __repr__(self) -> str:
        # a failed row's error is said once below the table: as a column it pushed every
        # row's metrics off screen
        cols = [c for c in self.table.columns if c not in METRIC_NAMES and c != "error"] + [
            self.target, "total_return_pct", "max_drawdown_pct", "total_trades"]
        stats = self._pbo_text()
        read = f" ({self.resumed} read from the results store)" if self.resumed else ""
        best = (f"best {self.best}, deflated Sharpe {self.best_dsr:.3f}" if self.best_eligible else "best None")
        text = (f"BasketOptimization({self.total_runs} combinations{read} x {counted(self.n_instruments, 'instrument')}, "
                f"target {self.target}, {best})\n"
                + (f"{self.message}; {stats}\n" if self.message else "")
                + self.table[list(dict.fromkeys(cols))].head(10).to_string())
        failed = failures_text(self.table, self.param_columns)
        if failed:
            text += f"\n{failed}"
        if self.show_per_instrument and self.per_instrument is not None:
            picks = self.best_per_instrument()
            keep = [c for c in picks.columns if "." in c] + [self.target, "total_trades", "deflated_sharpe", "eligible"]
            text += (f"\nbest per instrument (deflated Sharpe counting {len(self.per_instrument)} trials: every symbol "
                     f"x combination that ran):\n" + picks[keep].to_string())
        return text

    def _pbo_text(self) -> str:
        """PBO in a few words, or why there is none."""
        st = self.statistics
        return (f"PBO {st['pbo']:.2f} (CSCV, S={st['pbo_splits']}, {st['pbo_combinations']} splits"
                f"{identical_words(st)})" if "pbo" in st else st.get("pbo_note", ""))

    def _repr_html_(self) -> str:
        pbo = self._pbo_text()   # the notebook view says it as the text does (hunt75 F4)
        return (f"<div class='mf-result'><b>basket optimization</b> &middot; {self.total_runs} combinations x "
                f"{counted(self.n_instruments, 'instrument')} &middot; target {html.escape(self.target)} &middot; "
                + (f"deflated Sharpe of the best {self.best_dsr:.3f}" if self.best_eligible else
                   html.escape(self.message))
                + (f" &middot; {html.escape(pbo)}" if pbo else "") + self.table.head(20).to_html(classes="mf-table")
                + "</div>")


#: the daily portfolio returns PBO reads are kept up to this many bytes (combinations x
#: union days x 8 B; 300 combinations of 100,000 days would be 240 MB) and up to
#: RETURNS_MAX_RUNS combinations (the single sweep's bound, ``optimization.RETURNS_MAX_RUNS``,
#: which imports this module); beyond either, PBO is skipped with a note
RETURNS_MAX_BYTES = 256 * 1024 * 1024
RETURNS_MAX_RUNS = 2000


def optimize_basket(strategy: StrategyLike, operation: Any, parameter_space: Any, *,
                    target: str = "sharpe_ratio", max_combinations: int = MAX_COMBINATIONS,
                    maximize: Optional[bool] = None, constraints: Any = None, name: str = "basket optimization",
                    engine: str = "auto", progress: bool = False, store: Any = None, resume: bool = False,
                    origin: Optional[str] = None, root: str = "optimization_config") -> BasketOptimization:
    """Run every combination of ``parameter_space`` (the forms of
    :func:`~metaflow_nb.config.meta.parse_parameter_space`) over the basket of a portfolio
    ``operation`` (a YAML path, a dict, or :func:`~metaflow_nb.services.portfolio.load_basket`'s
    tuple with in-memory frames) and rank them by the portfolio's ``target`` metric.

    ``engine``: ``"batch"`` runs the combinations on the batch path
    (:func:`~metaflow_nb.services.basket_sweep.sweep_basket`), ``"general"`` one portfolio
    run each, ``"auto"`` the batch path (either mode) when the specs allow it
    (no ``data.trade_start``, no intrabar data). Both give the same table, picks and
    statistics; a combination the parameters' rules refuse (fast >= slow) is a failed row.

    ``origin`` (a config file) and ``root`` (its section) name where the options came
    from in the errors it raises: a space the strategy cannot take, a grid whose every
    combination is refused (``<file>: optimization_config.parameter_space: ...``), an
    unknown target or engine; errors of the strategy or the data name their own files.

    ``store`` (a folder or a :class:`~metaflow_nb.services.store.ResultsStore`) keeps every
    combination's row: portfolio metrics, per-instrument metrics and, when PBO keeps them,
    daily returns, under a key made of each instrument's specs with the combination's
    params and the basket's own settings (:func:`combination_keys`). With ``resume`` the
    combinations the store holds are read back, not run; the result is the one a fresh
    run gives, bit for bit.

    >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
    >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
    >>> opt.total_runs, len(opt.per_instrument), list(opt.best_per_instrument().index), opt.engine
    (2, 4, ['IBM', 'MSFT'], 'batch')
    """
    r = rank_basket(strategy, operation, parameter_space, target=target, max_combinations=max_combinations,
                    maximize=maximize, constraints=constraints, name=name, engine=engine, progress=progress,
                    store=store, resume=resume, origin=origin, root=root)
    basket, combos, table, maximize = r.basket, r.combos, r.table, r.maximize
    items = basket[1]
    best = r.best
    # the grid's own values (a None param shows as NaN in the table)
    best_combo = combos[int(table["combination"].iloc[0])]
    best_res = run_portfolio(strategy, basket, **{f"{i}__{p}": v for i, ps in best_combo.items() for p, v in ps.items()})
    best_cal = best_res.instrument_specs()[0].data_calendar
    ppy = periods_per_year(best_res.index, best_cal)
    port_returns = daily_returns(best_res.equity["total"], best_res.starting_cash, best_cal)
    # a trial is a combination that ran (one that never traded too), as in a single sweep;
    # a combination the strategy refused is a failed row
    n_ran = int((table["status"] == "ok").sum())
    deflated = _deflated(port_returns, table["sharpe_ratio"].to_numpy(np.float64), n_ran, ppy)
    best_dsr = math.nan if deflated is None else deflated.dsr
    per_frame = None
    if r.per:
        per_frame = per_instrument_table(r.per, r.flat_cols, target, maximize, constraints,
                                         lambda sym, k: single_returns(_single_run(strategy, basket, sym, combos[k])))
    return BasketOptimization(target, maximize, table, best, best_res, best_dsr, per_frame, len(items), name=name,
                              message=r.message(target), returns=r.returns, returns_note=r.note,
                              engine="batch" if r.use_batch else "general", deflated=deflated, resumed=r.resumed)


def _first_eligible(table: pd.DataFrame) -> bool:
    return bool(table["eligible"].iloc[0]) if "eligible" in table else True


class Ranking(NamedTuple):
    """What :func:`rank_basket` finds: the loaded ``basket``, the grid's ``combos``, the
    ranked ``table``, its param columns, per-instrument rows (mode independent), the kept
    daily returns and why they were not kept, the direction, the path taken and how many
    rows the store gave back."""

    basket: Any
    combos: list
    table: pd.DataFrame
    flat_cols: list
    per: list
    returns: Any
    note: str
    maximize: bool
    use_batch: bool
    resumed: int

    @property
    def best(self) -> dict[str, Any]:
        """The best row's params as :func:`~metaflow_nb.services.portfolio.run_portfolio`
        takes them (``{"sma_1__fast": 10}``)."""
        t = self.table
        return {k.replace(".", "__", 1): _plain(t[k].iloc[0]) for k in t.columns if "." in k}

    @property
    def best_eligible(self) -> bool:
        """Whether the best row meets the constraints and has a target (not NaN)."""
        return _first_eligible(self.table)

    def message(self, target: str) -> str:
        """How many combinations are eligible, or why the first row is none."""
        t = self.table
        n_ok = int(t["eligible"].sum())
        if n_ok:
            return f"{n_ok} of {len(t)} combinations eligible"
        from ..config.meta import traded

        ran = t["status"] == "ok"
        if ran.any() and "total_trades" in t and not traded(t)[ran].any():
            # hunt66 F3: not the constraints nor the target: nothing traded
            return (f"no combination traded ({int(ran.sum())} combinations, no trade in any): a combination "
                    "without trades is no pick; the table's first row is the best of the ineligible")
        return (f"no combination satisfies the constraints (or has a {target}); the table's first row "
                "is the best of the ineligible")


def rank_basket(strategy: StrategyLike, operation: Any, parameter_space: Any, *,
                target: str = "sharpe_ratio", max_combinations: int = MAX_COMBINATIONS,
                maximize: Optional[bool] = None, constraints: Any = None, name: str = "basket optimization",
                engine: str = "auto", progress: bool = False, store: Any = None, resume: bool = False,
                origin: Optional[str] = None, root: str = "optimization_config") -> Ranking:
    """:func:`optimize_basket`'s table alone (same arguments): every combination run and
    ranked, without the best combination's portfolio run, its deflated Sharpe ratio and
    the per-instrument picks, which a walk-forward's windows never read.

    >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
    >>> r = rank_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
    >>> r.table["sma_1.fast"].tolist(), r.use_batch
    ([10, 5], True)
    """
    # with a config file, every error names it and its section; in Python, the keyword
    place = "" if origin is None else f"{origin}: {root}."
    if target not in METRIC_DIRECTION:
        raise ConfigError(f"{place}target: unknown metric {target!r}; metrics: {', '.join(METRIC_NAMES)}")
    wrong = engine_problem(engine)
    if wrong:
        raise ConfigError(f"{place}parallel.engine: {wrong}")
    if maximize is None:
        maximize = METRIC_DIRECTION[target] >= 0
    elif isinstance(maximize, (bool, np.bool_)):
        maximize = bool(maximize)
    else:   # a word is never a boolean: "no" was read as true, and the worst row won
        raise ConfigError(f"{place}maximize: expected True, False or None (the metric's own direction), got "
                          f"{maximize!r:.60}")
    if resume and store is None:
        raise ConfigError(f"{place}resume: reads the results store; give store= too")
    if store is not None and not hasattr(store, "put"):
        problem = folder_problem(store)
        if problem:
            raise ConfigError(f"store {store}: {problem}")
    if constraints is not None:
        validate_model(OptimizationTarget, {"constraints": constraints}, origin or "optimize_basket",
                       (root, "optimization_target") if origin else ())
    if operation is None or not isinstance(operation, (str, os.PathLike, dict, tuple)):
        raise ConfigError(f"{place}operation: expected a basket operation (a YAML path, a dict or load_basket's "
                          f"tuple), got {type(operation).__name__}")
    basket = load_basket(operation)
    op, items, bars = basket
    first = items[0]
    translator = ConfigTranslator()
    specs0 = translator.translate(strategy, first["operation"], data=bars[first["symbol"]])
    axes = (parse_parameter_space(parameter_space, specs0) if origin is None else
            parse_parameter_space(parameter_space, specs0, origin, root))
    # counted (and refused with each axis's length) before any combination is made
    check_grid_size(axes, origin or "optimize_basket", root if origin is not None else "", max_combinations)
    grid = Grid([(inst, param, _values(spec)) for inst, param, spec in axes])
    combos = list(grid)
    calendar = specs0.data_calendar
    keep, note = _returns_budget(len(combos), bars, calendar)
    use_batch = engine == "batch" or (engine == "auto" and _batch_ok(strategy, basket))
    results = None if store is None else _StoredRows(_results_store(store), combos,
                                                     combination_keys(strategy, basket, combos),
                                                     [it["symbol"] for it in items], keep)
    held = results.held(resume) if results is not None else {}
    todo = [k for k in range(len(combos)) if k not in held]
    rows, per, returns = [], [], None
    if todo:
        run = [combos[k] for k in todo]
        if use_batch:
            rows, per, returns = _batch_rows(strategy, basket, run, keep, progress, name,
                                             origin or "<parameter_space>", root)
        else:
            rows, per, returns = _general_rows(strategy, basket, run, keep, origin or "<parameter_space>", root)
        rows, per, returns = _renumbered(rows, per, returns, todo)
        if results is not None:
            results.put(rows, per, returns)
    if held:
        rows, per, returns = results.merged(held, rows, per, returns)  # type: ignore[union-attr]
    if results is not None and results.store is not store:
        results.store.close()  # opened here: its segments merged into one
    if not any(r["status"] == "ok" for r in rows):
        why = rows[0]["error"].split(": ", 1)[-1]
        if place and not why.startswith(f"{origin}: "):
            # the general path's error is the run's own: say which combination of which file
            why = f"{place}parameter_space: combination {combos[int(rows[0]['combination'])]}: {why}"
        raise ConfigError(why)
    flat_cols = [c for c in rows[0] if "." in c]
    table = rank_combinations(pd.DataFrame(rows, columns=["combination", *flat_cols, *METRIC_NAMES, "status", "error"]),
                              target, maximize, constraints)
    return Ranking(basket, combos, table, flat_cols, per, returns, note, maximize, use_batch, len(held))


def combination_keys(strategy: StrategyLike, basket: Any, combos: list[dict[str, dict[str, Any]]]) -> list[str]:
    """The results store's key of each combination of a basket optimization: the sha256
    of the basket's own settings (mode, cash, max_positions, rank, costs, instruments,
    dates) and every instrument's spec hash with the combination's params
    (data fingerprint included, :meth:`~metaflow_nb.config.buildspecs.BuildSpecs.hash_with_params`).
    Stable across processes: a resumed optimization finds the rows it stored.

    >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2012-01-01"}}
    >>> a, b = combination_keys("config/runs/sma_cross.yaml", load_basket(op), [{"sma_1": {"fast": 5}}, {}])
    >>> len(a), a != b, combination_keys("config/runs/sma_cross.yaml", load_basket(op), [{"sma_1": {"fast": 5}}])[0] == a
    (64, True, True)
    """
    import hashlib

    from ..config.buildspecs import canonical_json

    op, items, bars = basket
    translator = ConfigTranslator()
    specs = [translator.translate(strategy, it["operation"], data=bars[it["symbol"]]) for it in items]
    own = canonical_json(op.model_dump(mode="json"))
    keys = []
    for combo in combos:
        parts = [sp.hash_with_params({inst: {**sp.params(inst), **ps} for inst, ps in combo.items()}) for sp in specs]
        keys.append(hashlib.sha256(f"basket combination|{own}|{','.join(parts)}".encode()).hexdigest())
    return keys


def _results_store(store: Any) -> Any:
    from .store import ResultsStore

    return store if isinstance(store, ResultsStore) else ResultsStore(store)


def meta_store(origin: str, out: Any, resume: bool) -> Any:
    """The results store of a meta verb over a basket: ``out/store`` (None without
    ``out``); ``resume`` without ``out`` is a ConfigError, there being nothing to read.

    >>> meta_store("<cfg>", None, False) is None
    True
    """
    if resume and out is None:
        raise ConfigError(f"{origin}: resume needs an output folder: the results store lives in it")
    if out is None:
        return None
    from pathlib import Path

    from .store import ResultsStore

    return ResultsStore(Path(out) / "store")


def _renumbered(rows: list[dict], per: list[dict], returns: Optional[pd.DataFrame],
                todo: list[int]) -> tuple[list[dict], list[dict], Optional[pd.DataFrame]]:
    """Rows of a run over ``combos[todo]`` numbered by their place in the whole grid."""
    for r in (*rows, *per):
        r["combination"] = todo[r["combination"]]
    if returns is not None:
        returns = returns.set_axis([todo[int(c)] for c in returns.columns], axis=1)
    return rows, per, returns


#: what a basket optimization's records are marked as (a store may hold single runs too)
BASKET_RECORD = "basket_combination"


class _StoredRows:
    """A basket optimization's rows in a results store, one record per combination."""

    def __init__(self, store: Any, combos: list, keys: list[str], symbols: list[str], keep: bool):
        self.store, self.combos, self.keys, self.symbols, self.keep = store, combos, keys, symbols, keep

    def held(self, resume: bool) -> dict[int, tuple[dict, Optional[pd.Series]]]:
        """The combinations the store holds whole (record, and daily returns when kept),
        by grid place; nothing without ``resume``."""
        out: dict[int, tuple[dict, Optional[pd.Series]]] = {}
        if not resume:
            return out
        for k, key in enumerate(self.keys):
            rec = self.store.get(key)
            if rec is None or rec.get("kind") != BASKET_RECORD or set(rec.get("per_instrument") or {}) - set(self.symbols):
                continue
            series = None
            if self.keep and rec["status"] == "ok":
                days, values = self.store.get_array(key, "days"), self.store.get_array(key, "daily_returns")
                if days is None or values is None or days.shape != values.shape:
                    continue  # run again: PBO needs its returns
                index = pd.DatetimeIndex(days.astype("datetime64[ns]"))
                tz = rec.get("days_tz")
                series = pd.Series(values, index=index.tz_localize("UTC").tz_convert(tz) if tz else index)
            out[k] = (rec, series)
        return out

    def put(self, rows: list[dict], per: list[dict], returns: Optional[pd.DataFrame]) -> None:
        """Store the rows of a run (numbered by grid place), then flush."""
        by_combo: dict[int, dict[str, dict]] = {}
        for r in per:
            by_combo.setdefault(r["combination"], {})[r["symbol"]] = {m: r[m] for m in METRIC_NAMES}
        for r in rows:
            k = r["combination"]
            key = self.keys[k]
            ok = r["status"] == "ok"
            rec = {"run_id": key[:16], "spec_hash": key, "status": r["status"], "kind": BASKET_RECORD,
                   "metrics": {m: r[m] for m in METRIC_NAMES} if ok else None,
                   "error_type": "" if ok else "ConfigError", "error_message": r.get("error", ""),
                   "duration_s": 0.0, "per_instrument": by_combo.get(k, {})}
            if ok and returns is not None and k in returns.columns:
                col = returns[k]
                idx = col.index
                rec["days_tz"] = str(idx.tz) if idx.tz is not None else None
                days = (idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx).asi8
                self.store.put_array(key, "days", days)
                self.store.put_array(key, "daily_returns", col.to_numpy(np.float64))
            self.store.put(key, rec)
        self.store.flush()
        from .store import write_sweep_params
        # the combinations' parameters by run id (the basket table numbers them instead)
        write_sweep_params(self.store.root, pd.DataFrame(
            [{"run_id": self.keys[r["combination"]][:16], **_flat(self.combos[r["combination"]])} for r in rows]))

    def merged(self, held: dict[int, tuple[dict, Optional[pd.Series]]], rows: list[dict], per: list[dict],
               returns: Optional[pd.DataFrame]) -> tuple[list[dict], list[dict], Optional[pd.DataFrame]]:
        """The run's rows and the stored ones, in grid order, as one fresh run gives them."""
        for k, (rec, _) in held.items():
            flat = _flat(self.combos[k])
            if rec["status"] == "ok":
                rows.append({"combination": k, **flat, **rec["metrics"], "status": "ok", "error": ""})
                for sym in self.symbols:
                    if sym in rec["per_instrument"]:
                        per.append({"symbol": sym, "combination": k, **flat, **rec["per_instrument"][sym]})
            else:
                rows.append({"combination": k, **flat, "status": rec["status"], "error": rec["error_message"]})
        rows.sort(key=lambda r: r["combination"])
        order = {s: j for j, s in enumerate(self.symbols)}
        per.sort(key=lambda r: (r["combination"], order[r["symbol"]]))
        if self.keep:
            cols = {} if returns is None else {k: returns[k] for k in returns.columns}
            cols.update({k: series for k, (rec, series) in held.items() if series is not None})
            returns = pd.DataFrame({k: cols[k] for k in sorted(cols)}) if cols else None
        return rows, per, returns


def _returns_budget(n_combos: int, bars: dict[str, pd.DataFrame], calendar: Optional[str]) -> tuple[bool, str]:
    """Whether every combination's daily portfolio returns are kept for PBO
    (:data:`RETURNS_MAX_BYTES`, ``optimization.RETURNS_MAX_RUNS``), and the note when not."""
    from ..assembly.basket import union_calendar
    from ..engine.metrics import calendar as day_calendar

    union, _ = union_calendar([b.index for b in bars.values()])
    n_days = int(day_calendar(union, calendar)[0].sum()) if len(union) else 0
    size = n_combos * n_days * 8
    if n_combos > RETURNS_MAX_RUNS:
        return False, f"PBO skipped: {n_combos} combinations, more than {RETURNS_MAX_RUNS}"
    if size > RETURNS_MAX_BYTES:
        return False, (f"PBO skipped: the daily returns of {n_combos} combinations x {n_days} days would take "
                       f"{size / 2**20:.0f} MB (more than {RETURNS_MAX_BYTES // 2**20} MB)")
    return True, ""


def _batch_ok(strategy: StrategyLike, basket: Any) -> bool:
    """Whether the batch path can run this basket (``engine: auto``)."""
    from .basket_sweep import batch_unsupported

    op, items, bars = basket
    translator = ConfigTranslator()
    specs = [translator.translate(strategy, it["operation"], data=bars[it["symbol"]]) for it in items]
    return batch_unsupported(specs) is None


def _flat(combo: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {f"{inst}.{p}": v for inst, params in combo.items() for p, v in params.items()}


def _batch_rows(strategy: StrategyLike, basket: Any, combos: list, keep: bool, progress: bool,
                name: str, origin: str, root: str) -> tuple[list[dict], list[dict], Optional[pd.DataFrame]]:
    """Table rows, per-instrument rows and daily returns from the batch path."""
    from ..engine.metrics import metrics_dict
    from .basket_sweep import sweep_basket

    sw = sweep_basket(strategy, basket, combos, keep_returns=keep, progress=progress, desc=name, origin=origin,
                      root=root)
    rows, per = [], []
    for k, combo in enumerate(combos):
        flat = _flat(combo)
        if sw.status[k] != "ok":
            rows.append({"combination": k, **flat, "status": "failed", "error": sw.errors[k]})
            continue
        rows.append({"combination": k, **flat, **metrics_dict(sw.portfolio[k]), "status": "ok", "error": ""})
        if sw.per_instrument is not None:
            for s, sym in enumerate(sw.symbols):
                per.append({"symbol": sym, "combination": k, **flat, **metrics_dict(sw.per_instrument[k, s])})
    returns = None
    if sw.returns is not None:
        ok = [k for k in range(len(combos)) if sw.status[k] == "ok"]
        returns = pd.DataFrame(sw.returns[ok].T, index=sw.days, columns=ok)
    return rows, per, returns


def _general_rows(strategy: StrategyLike, basket: Any, combos: list, keep: bool, origin: str,
                  root: str) -> tuple[list[dict], list[dict], Optional[pd.DataFrame]]:
    """Table rows, per-instrument rows and daily returns, one portfolio run per combination;
    a refused combination's row is worded as the batch path words it (``origin``, ``root``)."""
    op = basket[0]
    rows, per, returns = [], [], {}
    for k, combo in enumerate(combos):
        flat = _flat(combo)
        overrides = {f"{inst}__{p}": v for inst, params in combo.items() for p, v in params.items()}
        try:
            res = run_portfolio(strategy, basket, **overrides)
            metrics = res.metrics
        except ConfigError as exc:
            # one impossible combination (fast >= slow) is a failed row, as in the single sweep,
            # worded as the batch path words it; what the operation refuses names its file
            text = str(exc)
            if not text.startswith(f"{basket_origin(basket)}: "):
                text = f"{origin}: {root}.parameter_space: combination {combo}: {text.split(': ', 1)[-1]}"
            rows.append({"combination": k, **flat, "status": "failed", "error": f"ConfigError: {text}"})
            continue
        if keep:
            returns[k] = daily_returns(res.equity["total"], res.starting_cash, res.instrument_specs()[0].data_calendar)
        rows.append({"combination": k, **flat, **metrics, "status": "ok", "error": ""})
        if op.mode == "independent":
            for sym, r in res.results.items():
                per.append({"symbol": sym, "combination": k, **flat, **r.metrics})
    return rows, per, (pd.DataFrame(returns) if keep else None)


def per_instrument_table(per: list[dict[str, Any]], flat_cols: list[str], target: str, maximize: bool,
                         constraints: Any, pick_returns: Any) -> pd.DataFrame:
    """Independent mode: every (symbol, combination) row of ``per`` with ``eligible`` and,
    on each symbol's pick (:func:`_picks`), its ``deflated_sharpe`` counting every row as a
    trial; ``pick_returns(symbol, combination)`` gives the pick's ``(daily returns,
    periods a year)`` (what :func:`optimize_basket` and a report's ``--verify`` share).

    >>> per = [{"symbol": "A", "combination": k, "sma.fast": k, "sharpe_ratio": s, "total_trades": 9}
    ...        for k, s in enumerate([0.5, 1.5])]
    >>> flat = pd.Series([0.01, -0.01] * 20)
    >>> t = per_instrument_table(per, ["sma.fast"], "sharpe_ratio", True, None, lambda sym, k: (flat, 252.0))
    >>> t[["combination", "eligible"]].values.tolist(), t["deflated_sharpe"].notna().tolist()
    ([[0, True], [1, True]], [False, True])
    """
    per_frame = pd.DataFrame(per, columns=["symbol", "combination", *flat_cols, *METRIC_NAMES])
    # a symbol's pick meets the constraints as the portfolio's does (the best of the ineligible otherwise)
    per_frame["eligible"] = _eligible(per_frame, target, constraints)
    n_trials = len(per_frame)  # every (symbol, combination) that ran
    dsr = np.full(len(per_frame), np.nan)
    sharpes = per_frame["sharpe_ratio"].to_numpy(np.float64)
    for sym in per_frame["symbol"].unique():
        pick = _picks(per_frame[per_frame["symbol"] == sym], target, maximize).index[0]
        returns, ppy = pick_returns(sym, int(per_frame.loc[pick, "combination"]))
        dsr[pick] = _dsr(returns, sharpes, n_trials, ppy)
    per_frame["deflated_sharpe"] = dsr
    return per_frame


def symbol_picks(per_frame: pd.DataFrame, target: str, maximize: bool) -> pd.DataFrame:
    """Each symbol's best row of a :func:`per_instrument_table` (:func:`_picks`), indexed by
    symbol in alphabetical order.

    >>> per = pd.DataFrame({"symbol": ["IBM", "IBM", "AAPL", "AAPL"], "combination": [0, 1, 0, 1],
    ...                     "sharpe_ratio": [0.2, 0.5, 0.9, 0.1], "eligible": [True, False, True, True]})
    >>> symbol_picks(per, "sharpe_ratio", True)["combination"].to_dict()   # IBM's 0.5 misses a constraint
    {'AAPL': 0, 'IBM': 0}
    """
    ordered = per_frame.sort_values("symbol", kind="stable")
    ordered = pd.concat([_picks(g, target, maximize) for _, g in ordered.groupby("symbol", sort=False)])
    return ordered.groupby("symbol", sort=False).head(1).set_index("symbol")


def single_returns(res: Any) -> tuple[pd.Series, float]:
    """``(daily returns, periods a year)`` of one instrument's single run.

    >>> import metaflow_nb as mf
    >>> r, ppy = single_returns(mf.backtest("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml"))
    >>> len(r), ppy   # exchange days
    (5031, 252.0)
    """
    cal = res.specs.data_calendar
    return daily_returns(res.equity, res.specs.cash, cal), periods_per_year(res.equity.index, cal)


def _single_run(strategy: StrategyLike, basket: Any, symbol: str, combo: dict[str, dict[str, Any]]) -> Any:
    """Instrument ``symbol``'s single run under ``combo``: the run an independent portfolio
    run makes of it (:func:`~metaflow_nb.services.portfolio.run_portfolio`)."""
    from .operation import shared_service

    op, items, bars = basket
    it = next(i for i in items if i["symbol"] == symbol)
    overrides = {f"{inst}__{p}": v for inst, params in combo.items() for p, v in params.items()}
    specs = ConfigTranslator().translate(strategy, it["operation"], data=bars[symbol], params=overrides or None)
    return shared_service().run(specs, bars[symbol])


def _picks(rows: pd.DataFrame, target: str, maximize: bool) -> pd.DataFrame:
    """``rows`` best first: eligible (constraints met, finite target) before the others,
    then by ``target``; ties in row order."""
    key = rows[target] if maximize else -rows[target]
    elig = rows["eligible"] if "eligible" in rows else pd.Series(True, index=rows.index)
    order = rows.assign(_e=elig, _k=key).sort_values(["_e", "_k"], ascending=[False, False], kind="stable",
                                                     na_position="last").index
    return rows.loc[order]


def rank_combinations(table: pd.DataFrame, target: str, maximize: bool, constraints: Any) -> pd.DataFrame:
    """A basket optimization's table as it is shown and selected from: an ``eligible``
    column (:func:`_eligible`), eligible combinations first, each group best first by
    ``target``, ties in grid order; the first row is the best when it is eligible.

    >>> t = pd.DataFrame({"combination": [0, 1, 2], "sharpe_ratio": [0.5, 1.5, float("nan")],
    ...                   "status": ["ok", "ok", "failed"]})
    >>> rank_combinations(t, "sharpe_ratio", True, None)["combination"].tolist()
    [1, 0, 2]
    """
    table = table.copy()
    table["eligible"] = _eligible(table, target, constraints)
    key = table[target] if maximize else -table[target]
    order = table.assign(_k=key, _ok=table["status"] == "ok").sort_values(
        ["eligible", "_ok", "_k"], ascending=[False, False, False], kind="stable", na_position="last").index
    return table.loc[order].reset_index(drop=True)


def _eligible(table: pd.DataFrame, target: str, constraints: Any) -> np.ndarray:
    """A target that is a number (an infinite profit factor is one) and every constraint of
    an ``optimization_target`` met (the single sweep's rule,
    :func:`~metaflow_nb.services.optimization.constraint_checks`)."""
    from ..config.meta import OptimizationTarget, constraint_checks, passes, traded

    ok = ~np.isnan(pd.to_numeric(table[target], errors="coerce").to_numpy(np.float64))
    ok &= traded(table).to_numpy(bool)   # a drawdown of 0 without trades is no risk control (hunt62 F1)
    if constraints is not None:
        for _, col, op_, bound in constraint_checks(OptimizationTarget(constraints=constraints)):
            ok &= table[col].map(lambda v: passes(v, op_, bound)).to_numpy(bool)
    return ok


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _values(spec: dict[str, Any]) -> list[Any]:
    from ..config.meta import spec_values
    return spec_values(spec)


# ------------------------------------------------------------------ the meta verbs over a basket
# mf.optimize, mf.compare_variants and mf.walk_forward hand a config whose base_operation names a
# basket to the functions below: the same configs, tables and statistics, every run a portfolio run.


@dataclass
class BasketRunView:
    """A portfolio run seen as one run by the variant and walk-forward tables: ``equity``
    is the portfolio's total, ``specs`` carries its starting equity, calendar and costs;
    the whole :class:`PortfolioResult` is ``portfolio``.

    >>> res = run_portfolio("config/runs/sma_cross.yaml", {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]},
    ...                                                  "data": {"start": "2012-01-01"}})
    >>> view = BasketRunView(res)
    >>> view.specs.cash, view.equity.equals(res.equity["total"])
    (20000.0, True)
    """

    portfolio: PortfolioResult

    @property
    def metrics(self) -> dict[str, Any]:
        """The portfolio's metrics."""
        return self.portfolio.metrics

    @property
    def equity(self) -> pd.Series:
        """The portfolio's total equity on the union calendar."""
        return self.portfolio.equity["total"]

    @property
    def trades(self) -> pd.DataFrame:
        """Every instrument's trades, with ``symbol``."""
        return self.portfolio.trades

    @property
    def journal(self) -> pd.DataFrame:
        """Every instrument's journal, with ``symbol``."""
        return self.portfolio.journal

    @property
    def run_id(self) -> str:
        """The basket run's id (:attr:`specs`' ``run_id``)."""
        return self.specs.run_id

    @property
    def specs(self) -> Any:
        """:class:`~metaflow_nb.services.basket_specs.BasketSpecs` of the run (its starting
        equity, calendar and costs, what a report records of it)."""
        cached = self.__dict__.get("_specs")
        if cached is None:
            cached = self.__dict__["_specs"] = self.portfolio.basket_specs
        return cached

    def rejections(self, by_symbol: bool = False) -> pd.DataFrame:
        """The portfolio's rejected opportunities per reason (:meth:`PortfolioResult.rejections`)."""
        return self.portfolio.rejections(by_symbol=by_symbol)

    # a variant's or a window's run is drawn, summed up and shown as its portfolio is
    # (hunt116 F3: the README's every-result .plot() was missing here)
    def plot(self, kind: str = "equity", **kwargs: Any) -> "Figure":
        """:meth:`PortfolioResult.plot` of :attr:`portfolio`."""
        return self.portfolio.plot(kind, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """:meth:`PortfolioResult.to_dict` of :attr:`portfolio`."""
        return self.portfolio.to_dict()

    def _repr_html_(self) -> str:
        return self.portfolio._repr_html_()

    def __repr__(self) -> str:
        return repr(self.portfolio)
