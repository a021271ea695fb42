"""Grid search over a basket (issue #17 part 4, first step): every combination of a
parameter space is one portfolio run (:func:`~metaflow_nb.services.portfolio.run_portfolio`,
either mode), ranked by a portfolio metric; in ``mode: independent`` also per instrument
(the best combination of each symbol). Deflated Sharpe ratios count every trial: the
combinations for the portfolio's best, combinations x instruments for a symbol's best.

The runs go one by one through the run path (the basket is loaded once); the batch
sweep's instrument axis is not built.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from ..config.meta import Grid, parse_parameter_space
from ..config.translator import ConfigTranslator, StrategyLike
from ..engine.metrics import METRIC_DIRECTION, METRIC_NAMES, daily_returns, periods_per_year
from ..errors import ConfigError
from ..stats.sharpe import deflated_sharpe_ratio_from_stats, moments
from .portfolio import PortfolioResult, load_basket, run_portfolio

__all__ = ["BasketOptimization", "optimize_basket"]


def _dsr(returns: pd.Series, sharpes: np.ndarray, n_trials: int, ppy: float) -> float:
    """Deflated Sharpe ratio of the selected run's daily ``returns`` among ``n_trials``
    trials whose annualised Sharpe ratios are ``sharpes`` (NaN when undefined)."""
    r = returns.dropna().to_numpy(np.float64)
    finite = sharpes[np.isfinite(sharpes)]
    if r.shape[0] < 3 or finite.shape[0] == 0 or not np.std(r) > 0:
        return math.nan
    sr, skew, kurt, t = moments(r)
    var_sr = float(np.var(finite, ddof=1)) if finite.shape[0] > 1 else 0.0
    return deflated_sharpe_ratio_from_stats(sr * math.sqrt(ppy), t, max(n_trials, 1), var_sr, skew, kurt, ppy).dsr


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

    @property
    def total_runs(self) -> int:
        return int(len(self.table))

    def best_per_instrument(self) -> pd.DataFrame:
        """Independent mode: each symbol's best combination by ``target`` with its metrics
        and its deflated Sharpe ratio counting every (symbol, combination) trial."""
        if self.per_instrument is None:
            raise ConfigError("best_per_instrument: a shared account (mode: portfolio) has no per-instrument runs "
                              "to pick from; use mode: independent")
        ordered = self.per_instrument.sort_values(["symbol", self.target], ascending=[True, not self.maximize],
                                                  kind="stable", na_position="last")
        return ordered.groupby("symbol", sort=False).head(1).set_index("symbol")

    def __repr__(self) -> str:
        cols = [c for c in self.table.columns if c not in METRIC_NAMES] + [self.target, "total_return_pct",
                                                                           "max_drawdown_pct", "total_trades"]
        return (f"BasketOptimization({self.total_runs} combinations x {self.n_instruments} instruments, "
                f"target {self.target}, best {self.best}, deflated Sharpe {self.best_dsr:.3f})\n"
                + self.table[list(dict.fromkeys(cols))].head(10).to_string())

    def _repr_html_(self) -> str:
        return (f"<div class='mf-result'><b>basket optimization</b> &middot; {self.total_runs} combinations x "
                f"{self.n_instruments} instruments &middot; target {html.escape(self.target)} &middot; deflated "
                f"Sharpe of the best {self.best_dsr:.3f}" + self.table.head(20).to_html(classes="mf-table")
                + "</div>")


def optimize_basket(strategy: StrategyLike, operation: Any, parameter_space: Any, *,
                    target: str = "sharpe_ratio", max_combinations: int = 1000) -> BasketOptimization:
    """Run every combination of ``parameter_space`` (the forms of
    :func:`~metaflow_nb.config.meta.parse_parameter_space`) over the basket of a portfolio
    ``operation`` and rank them by the portfolio's ``target`` metric.

    >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
    >>> opt = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
    >>> opt.total_runs, len(opt.per_instrument), list(opt.best_per_instrument().index)
    (2, 4, ['IBM', 'MSFT'])
    """
    if target not in METRIC_DIRECTION:
        raise ConfigError(f"target: unknown metric {target!r}; metrics: {', '.join(METRIC_NAMES)}")
    maximize = METRIC_DIRECTION[target] >= 0
    basket = load_basket(operation)
    op, items, bars = basket
    first = items[0]
    specs0 = ConfigTranslator().translate(strategy, first["operation"], data=bars[first["symbol"]])
    axes = parse_parameter_space(parameter_space, specs0)
    grid = Grid([(inst, param, _values(spec)) for inst, param, spec in axes])
    if len(grid) > max_combinations:
        raise ConfigError(f"parameter_space: {len(grid)} combinations, more than max_combinations={max_combinations}")
    rows, per, results = [], [], []
    for k, combo in enumerate(grid):
        overrides = {f"{inst}__{p}": v for inst, params in combo.items() for p, v in params.items()}
        res = run_portfolio(strategy, basket, **overrides)
        results.append(res)
        flat = {f"{inst}.{p}": v for inst, params in combo.items() for p, v in params.items()}
        rows.append({"combination": k, **flat, **res.metrics})
        if op.mode == "independent":
            for sym, r in res.results.items():
                per.append({"symbol": sym, "combination": k, **flat, **r.metrics})
    table = pd.DataFrame(rows)
    order = table[target].sort_values(ascending=not maximize, kind="stable", na_position="last").index
    table = table.loc[order].reset_index(drop=True)
    best_k = int(table["combination"].iloc[0])
    best_res = results[best_k]
    ppy = periods_per_year(best_res.index, next(iter(_specs_of(best_res))).data_calendar)
    port_returns = daily_returns(best_res.equity["total"], best_res.starting_cash,
                                 next(iter(_specs_of(best_res))).data_calendar)
    best_dsr = _dsr(port_returns, table["sharpe_ratio"].to_numpy(np.float64), len(grid), ppy)
    per_frame = None
    if per:
        per_frame = pd.DataFrame(per)
        n_trials = len(grid) * len(items)
        dsr = np.full(len(per_frame), np.nan)
        sharpes = per_frame["sharpe_ratio"].to_numpy(np.float64)
        for sym in per_frame["symbol"].unique():
            mine = per_frame[per_frame["symbol"] == sym]
            pick = mine[target].sort_values(ascending=not maximize, kind="stable", na_position="last").index[0]
            r = results[int(per_frame.loc[pick, "combination"])].results[sym]
            dsr[pick] = _dsr(daily_returns(r.equity, r.specs.cash, r.specs.data_calendar), sharpes, n_trials,
                             periods_per_year(r.equity.index, r.specs.data_calendar))
        per_frame["deflated_sharpe"] = dsr
    best = {k.replace(".", "__", 1): _plain(table[k].iloc[0]) for k in table.columns if "." in k}
    return BasketOptimization(target, maximize, table, best, best_res, best_dsr, per_frame, len(items))


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _values(spec: dict[str, Any]) -> list[Any]:
    from ..config.meta import spec_values
    return spec_values(spec)


def _specs_of(res: PortfolioResult) -> list[Any]:
    specs = getattr(res, "specs", None)
    return list(specs.values()) if specs else [r.specs for r in res.results.values()]
