"""How likely a winner is real: statistics attached to optimization and variant results.

- Optimizations: the Deflated Sharpe Ratio of the best run (number of trials, variance of
  the trials' Sharpe ratios, skewness and kurtosis of the best run's daily returns) and
  the Probability of Backtest Overfitting by CSCV over the daily-returns matrix of all
  successful runs.
- Variant tests: a paired stationary block bootstrap of each starred metric's difference
  between the winner and the runner-up (same days resampled for both), so a star comes
  with its p-value and "no significant winner" is said when that is the truth.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import pandas as pd

from ..config.buildspecs import specs_from_row
from ..engine.metrics import METRIC_DIRECTION, daily_returns, periods_per_year
from ..errors import DataError
from ..stats import (bootstrap_difference, deflated_sharpe_ratio, distinct_columns, format_p, pbo_cscv,
                     psr_from_returns, sharpe)
from ..stats.pbo import split_paths
from .formatting import METRIC_LABELS, plain
from .operation import OperationService

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ALPHA = 0.05


def _returns(res: Any) -> pd.Series:
    return daily_returns(res.equity, res.specs.cash, res.specs.data_calendar)


def _compound(m: np.ndarray) -> np.ndarray:
    return np.prod(1.0 + m, axis=0) - 1.0


def _drawdown(m: np.ndarray) -> np.ndarray:
    path = np.cumprod(1.0 + m, axis=0)
    peak = np.maximum.accumulate(np.maximum(path, 1.0), axis=0)
    return np.max((peak - path) / peak, axis=0)


def _sortino(m: np.ndarray) -> np.ndarray:
    down = np.sqrt(np.mean(np.minimum(m, 0.0) ** 2, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(down > 0, m.mean(axis=0) / np.where(down > 0, down, 1.0), np.nan)


def _calmar(m: np.ndarray) -> np.ndarray:
    return _calmar_of(_compound(m), _drawdown(m), m.shape[0])


def _calmar_of(compound: np.ndarray, dd: np.ndarray, rows: int) -> np.ndarray:
    # a yearly growth rate over a maximum drawdown; the halves CSCV compares are equally
    # long, so the growth over the rows ranks as the annual one would once per-row
    growth = np.log1p(np.maximum(compound, -1.0 + 1e-300)) / rows
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dd > 0, np.expm1(growth) / np.where(dd > 0, dd, 1.0), np.nan)


# The path statistics over every CSCV half in one compiled pass (pbo's metric.splits):
# the per-half numpy functions above copy each of the 12,870 halves (hunt45 F2: 122 s for
# 300 runs of 2,520 days ranked by drawdown); these give the same numbers, bit for bit.
_compound.splits = lambda m, s, mask: split_paths(m, s, mask)[0] - 1.0  # type: ignore[attr-defined]
_drawdown.splits = lambda m, s, mask: split_paths(m, s, mask)[1]  # type: ignore[attr-defined]


def _calmar_splits(m: np.ndarray, s: int, mask: np.ndarray) -> np.ndarray:
    growth, dd = split_paths(m, s, mask)
    return _calmar_of(growth - 1.0, dd, (m.shape[0] // s) * (s // 2))   # each half: s / 2 blocks


_calmar.splits = _calmar_splits  # type: ignore[attr-defined]


#: primary metrics that are functions of the daily returns: how CSCV ranks the runs by
#: them on a subset of the days (higher = better; a minimized metric is negated)
_RANKINGS = {"total_return_pct": _compound, "cagr_pct": _compound, "final_equity": _compound,
             "max_drawdown_pct": _drawdown, "volatility_ann_pct": lambda m: m.std(axis=0, ddof=1),
             "sortino_ratio": _sortino, "calmar_ratio": _calmar}


#: rankings whose sign says profit or loss (PBO's probability of an out-of-sample loss)
_PROFIT_SIGNED = frozenset({"sharpe_ratio", "total_return_pct", "cagr_pct", "final_equity", "sortino_ratio",
                            "calmar_ratio"})


def pbo_ranking(metric: str, maximize: bool) -> tuple[Any, str]:
    """How PBO's CSCV ranks the runs on a subset of days so that it tests the sweep's own
    selection: ``(metric for pbo_cscv, words)``; the metric is None for the Sharpe ratio
    (pbo_cscv's fast path). A metric that is no function of daily returns (win rate,
    trades ...) falls back to the Sharpe ratio, and the words say so.

    >>> pbo_ranking("sharpe_ratio", True)
    (None, 'ranked by Sharpe ratio, as the sweep selects')
    >>> fn, words = pbo_ranking("max_drawdown_pct", False)
    >>> words, fn(np.array([[0.1, -0.5], [-0.1, 0.5]])).round(2).tolist()
    ('ranked by lowest max drawdown, as the sweep selects', [-0.1, -0.5])
    >>> pbo_ranking("win_rate_pct", True)[1]
    'ranked by Sharpe ratio: the sweep selects by highest win rate, which daily returns do not give'
    """
    label = METRIC_LABELS.get(metric, (metric,))[0]
    label = label if label[:2].isupper() or label.startswith("Sharpe") else label[0].lower() + label[1:]
    best = "highest" if maximize else "lowest"
    if metric == "sharpe_ratio" and maximize:
        return None, "ranked by Sharpe ratio, as the sweep selects"
    fn = _RANKINGS.get(metric)
    if fn is None and metric != "sharpe_ratio":
        return None, f"ranked by Sharpe ratio: the sweep selects by {best} {label}, which daily returns do not give"
    if fn is None:
        from ..stats import sharpe as _sharpe_of

        def fn(m: np.ndarray) -> np.ndarray:
            return np.array([_sharpe_of(m[:, j], 1.0) for j in range(m.shape[1])])
    sign = 1.0 if maximize else -1.0

    def ranked(m: np.ndarray) -> np.ndarray:
        return sign * fn(m)

    every = getattr(fn, "splits", None)
    if every is not None:
        ranked.splits = lambda m, s, mask: sign * every(m, s, mask)  # type: ignore[attr-defined]
    return ranked, f"ranked by {best} {label}, as the sweep selects"


def optimization_statistics(result: Any, s: int = 16, max_configs: int = 2000) -> dict[str, Any]:
    """DSR of the best run and PBO of the whole sweep (re-runs successful combinations to get
    their daily returns; PBO is skipped above ``max_configs`` runs).

    The DSR counts every distinct successful configuration as a trial. PBO runs CSCV over
    the runs the sweep could pick (``eligible``: constraints met), ranked as the sweep
    ranks them (:func:`pbo_ranking`). Returns computed here go to the sweep's results
    store, written before this returns (the sweep's own writes are done by then).

    >>> import metaflow_nb as mf
    >>> st = optimization_statistics(mf.optimize("config/optimizations/sma_grid.yaml", progress=False))
    >>> st["n_trials"], round(st["dsr"], 3), round(st["pbo"], 2), st["pbo_combinations"]
    (40, 0.563, 0.75, 12870)
    """
    store = getattr(result, "store", None)
    try:
        return _statistics(result, s, max_configs, store)
    finally:
        if store is not None:
            store.flush()


def _statistics(result: Any, s: int, max_configs: int, store: Any) -> dict[str, Any]:
    frame = result.all_results
    # every configuration tried is a trial, one that never traded (no Sharpe ratio) too;
    # the same configuration twice is one; the trials' Sharpe variance reads the finite ones
    tried = frame[frame["status"] == "ok"].drop_duplicates("run_id")
    ok = tried[np.isfinite(pd.to_numeric(tried["sharpe_ratio"], errors="coerce"))]
    out: dict[str, Any] = {"n_trials": int(len(tried))}
    if result.best_index is None:
        # said apart (hunt114 F2: one note for both, "at least 2 successful runs" beside 4)
        out["note"] = ("no deflated Sharpe ratio: no run met the target's constraints (no best run)" if len(tried)
                       else "no deflated Sharpe ratio: no run succeeded")
        return out
    svc = OperationService()
    base = result.base_specs
    # every run the sweep could pick (eligible: the target is a number, it traded, constraints met)
    pickable = tried[tried["eligible"].astype(bool)] if "eligible" in tried else ok
    # a batch sweep's runs give their daily returns from one batch call (hunt45 F3: one
    # whole backtest per run took 4-9x the sweep); a store has them already
    swept = _swept_returns(result, pickable) if (
        store is None and getattr(result, "engine", "") == "batch" and 2 <= len(pickable) <= max_configs) else {}

    def specs_of(row: pd.Series):
        return specs_from_row(base, row, result.param_columns, grid_nulls=True)

    def returns_of(row: pd.Series) -> pd.Series:
        r = swept.get(row["run_id"])
        if r is not None:
            return r
        # daily returns are kept beside the run's record, so a resumed sweep runs nothing again
        specs = specs_of(row)
        if store is not None:
            days = store.get_array(specs.hash, "days")
            vals = store.get_array(specs.hash, "daily_returns")
            if days is not None and vals is not None and len(days) == len(vals):
                return pd.Series(vals, index=pd.DatetimeIndex(days))
        r = _returns(svc.run(specs, getattr(result, "data", None)))
        if store is not None:
            store.put_array(specs.hash, "days", r.index.asi8)
            store.put_array(specs.hash, "daily_returns", r.to_numpy())
        return r

    best = frame.iloc[result.best_index]
    if not np.isfinite(pd.to_numeric(best["sharpe_ratio"], errors="coerce")):
        # (a run that never traded is no pick: select_best)
        out["note"] = ("no deflated Sharpe ratio: the best run has no Sharpe ratio (fewer than 2 days, or daily "
                       "returns that do not vary)")
    elif len(tried) < 2:
        # the deflation compares trials; the run's own PSR (Sharpe above 0) needs none
        out["note"] = "no deflated Sharpe ratio: one configuration was tried (it needs at least 2)"
        out["psr"] = psr_from_returns(returns_of(best).to_numpy())
    elif len(ok) < 2:
        out["note"] = "no deflated Sharpe ratio: it needs at least 2 runs with a Sharpe ratio"
    else:
        best_r = returns_of(best)
        ppy = periods_per_year(best_r.index, base.data_calendar)
        dsr = deflated_sharpe_ratio(best_r.to_numpy(), ok["sharpe_ratio"].to_numpy(float), n_trials=len(tried),
                                    periods_per_year=ppy)
        out.update({"dsr": dsr.dsr, "psr": dsr.psr, "sharpe_annualized": dsr.sr_annualized,
                    "expected_max_sharpe_annualized": dsr.sr0_annualized, "var_trial_sharpe": dsr.var_sr,
                    "skew": dsr.skew, "kurtosis": dsr.kurt, "days": dsr.t,
                    "dsr_significant": bool(dsr.significant(ALPHA))})
    if len(pickable) > max_configs:
        out["pbo_note"] = f"PBO skipped: {len(pickable)} runs > {max_configs}"
        return out
    if len(pickable) < 2:
        out["pbo_note"] = f"PBO skipped: {len(pickable)} run{'' if len(pickable) == 1 else 's'} met the constraints " \
                          f"(it needs 2)"
        return out
    cols = {}
    for idx, row in pickable.iterrows():
        cols[row["run_id"]] = returns_of(row)
    swept.clear()
    matrix = _returns_matrix(cols)
    cols.clear()
    if len(matrix) < 2 * s:
        out["pbo_note"] = f"PBO skipped: {len(matrix)} days < 2 x S ({s})"
        return out
    matrix, said = distinct_runs(matrix)
    out.update(said)
    if matrix is None:
        return out
    target = result.target
    metric, ranked = pbo_ranking(target.primary_metric, target.maximize())
    pbo = pbo_cscv(matrix, s=s, metric=metric)
    # a loss is a ranking value below 0 only where its sign is profit or loss: not a
    # drawdown or a volatility ranked by its negation (always "a loss", hunt32 F5)
    signed = metric is None or (target.maximize() and target.primary_metric in _PROFIT_SIGNED)
    out.update({"pbo": pbo.pbo, "pbo_prob_oos_loss": pbo.prob_oos_loss if signed else math.nan,
                "pbo_combinations": pbo.n_combinations,
                "pbo_splits": s, "pbo_ranking": ranked, "pbo_runs": int(matrix.shape[1])})
    out["_pbo_result"] = pbo
    return out


def identical_words(st: dict[str, Any]) -> str:
    """``"; N runs with another's daily returns counted once"`` when PBO ranked fewer runs
    than it could pick (runs alike: :func:`~metaflow_nb.stats.distinct_columns`), else "".

    >>> identical_words({"pbo_identical_runs": 2}), identical_words({})
    ("; 2 runs with another's daily returns counted once", '')
    """
    same = st.get("pbo_identical_runs")
    return f"; {same} run{'s' if same != 1 else ''} with another's daily returns counted once" if same else ""


def distinct_runs(matrix: np.ndarray) -> tuple[Optional[np.ndarray], dict[str, Any]]:
    """The runs' daily returns (days x runs) that PBO ranks, alike runs counted once
    (:func:`~metaflow_nb.stats.distinct_columns`), and what the statistics say of it:
    ``pbo_identical_runs`` when some were, or ``pbo_note`` (and no matrix) when fewer
    than 2 differ; a single sweep's and a basket sweep's PBO read it.

    >>> x = np.arange(8.0).reshape(4, 2)
    >>> m, said = distinct_runs(np.c_[x, x[:, :1]]); m.shape, said
    ((4, 2), {'pbo_identical_runs': 1})
    >>> distinct_runs(np.c_[x[:, :1], x[:, :1]])[1]["pbo_note"].split(" (")[0]
    'PBO skipped: the 2 runs it could rank have the same daily returns'
    """
    distinct = distinct_columns(matrix)
    if distinct.size < 2:
        return None, {"pbo_note": f"PBO skipped: the {matrix.shape[1]} runs it could rank have the same daily "
                                  f"returns (one configuration; it needs 2 that differ)"}
    same = int(matrix.shape[1] - distinct.size)
    return (matrix[:, distinct], {"pbo_identical_runs": same}) if same else (matrix, {})


def _returns_matrix(cols: dict[str, pd.Series]) -> np.ndarray:
    """The runs' daily returns side by side (days x runs), the days every run has: one
    copy when the runs share their days (one dataset's runs do), as pandas' aligned
    frame and its dropna made three (hunt45 F3: ~5x the matrix at peak).

    >>> a = pd.Series([0.1, 0.2], index=pd.to_datetime(["2024-01-02", "2024-01-03"]))
    >>> _returns_matrix({"x": a, "y": a * 2}).tolist()
    [[0.1, 0.2], [0.2, 0.4]]
    """
    series = list(cols.values())
    first = series[0].index
    if all(r.index.equals(first) for r in series[1:]):
        m = np.empty((len(first), len(series)))
        for j, r in enumerate(series):
            m[:, j] = r.to_numpy()
        gaps = np.isnan(m).any(axis=1)
        return m[~gaps] if gaps.any() else m
    return pd.DataFrame(cols).dropna().to_numpy()


def _swept_returns(result: Any, rows: pd.DataFrame) -> dict[str, pd.Series]:
    """The daily returns of ``rows`` (results rows of a batch sweep) by run id, from one
    batch call keeping each run's returns: the numbers the single runs give (the batch
    path's property), without a backtest, trades and journal per run. Runs that fail here
    are left out (the caller runs them alone)."""
    from ..config.overrides import row_params
    from .batch import run_batch, validate_combos

    base = result.base_specs
    combos = [row_params(row, result.param_columns, grid_nulls=True) for _, row in rows.iterrows()]
    prepared, outcomes = validate_combos(base, combos)
    run_batch(base, prepared, outcomes, getattr(result, "data", None), keep_returns=True)
    out: dict[str, pd.Series] = {}
    for run_id, o in zip(rows["run_id"], outcomes):
        if o is not None and o.ok and o.result is not None and o.run_id == run_id:
            days, vals = o.result
            out[run_id] = pd.Series(vals, index=pd.DatetimeIndex(days))
    return out


def _total_return(r: np.ndarray) -> float:
    return float((np.prod(1.0 + r) - 1.0) * 100.0)


def _max_drawdown(r: np.ndarray) -> float:
    path = np.cumprod(1.0 + r)
    peak = np.maximum.accumulate(np.maximum(path, 1.0))
    return float(np.max((peak - path) / peak) * 100.0)


def contends(metrics: Any, metric: str) -> bool:
    """Whether a variant with ``metrics`` may win row ``metric`` of a comparison, or be its
    runner-up: one that never traded wins no lower-is-better row (its drawdown of 0 is no
    risk control).

    >>> contends({"total_trades": 0}, "max_drawdown_pct"), contends({"total_trades": 0}, "total_return_pct")
    (False, True)
    """
    return METRIC_DIRECTION.get(metric, 0) >= 0 or (metrics.get("total_trades") or 0) > 0


def variant_significance(cmp: Any, n_boot: int = 2000, seed: int = 42) -> dict[str, Any]:
    """Bootstrap p-values of each metric winner against the runner-up.

    Sharpe, total return and max drawdown: paired stationary block bootstrap of the two
    variants' daily returns, when both cover the same days (else the metric is ``tested:
    False``, no p-value, no star). Win rate: independent bootstrap of each variant's trades.

    >>> import metaflow_nb as mf
    >>> cmp = mf.compare_variants("config/variants/exit_strategy_test.yaml", backend="sequential", progress=False)
    >>> sig = variant_significance(cmp, n_boot=200)
    >>> t = sig["metrics"]["win_rate_pct"]
    >>> sig["n_boot"], t["winner"], t["runner_up"], bool(t["ci_low"] <= t["ci_high"])
    (200, 'liquidity_targets', 'atr_based', True)
    """
    runs = [v for v in cmp.variants if v.ok]
    out: dict[str, Any] = {"alpha": ALPHA, "n_boot": n_boot, "seed": seed, "metrics": {}}
    if len(runs) < 2:
        out["summary"] = "no significance test: fewer than two variants ran"
        return out
    winners = cmp.winners()
    rets = {v.name: _returns(v.result) for v in runs}
    ppy = periods_per_year(runs[0].result.equity.index, runs[0].result.specs.data_calendar)
    fns = {"sharpe_ratio": lambda r: float(sharpe(r, ppy)), "total_return_pct": _total_return,
           "max_drawdown_pct": _max_drawdown}
    significant = []
    for metric, win in winners.items():
        if win is None:
            continue
        sense = -1 if metric == "max_drawdown_pct" else 1
        others = [v for v in runs if v.name != win and contends(v.result.metrics, metric)]
        if not others:
            continue
        runner_up = max(others, key=lambda v: sense * _num(v.result.metrics.get(metric)))
        if metric in fns and not rets[win].index.equals(rets[runner_up.name].index):
            # the table's numbers are each variant's whole period; a paired test on the days
            # they share would test other numbers (the winner there may be the loser)
            out["metrics"][metric] = {"winner": win, "runner_up": runner_up.name, "p_value": math.nan,
                                      "ci_low": math.nan, "ci_high": math.nan, "significant": False,
                                      "tested": False, "value": _num(cmp.results[win].metrics.get(metric)),
                                      "label": "not tested: other days"}
            continue
        def test(boots: int) -> tuple[float, float, float, float, np.ndarray]:
            if metric in fns:
                d = bootstrap_difference(rets[win], rets[runner_up.name], fns[metric], n_boot=boots, seed=seed,
                                         vectorized=False)
                return float(d.p_value), float(d.low), float(d.high), float(d.estimate), d.distribution
            p_, lo_, hi_, dist_, est_ = _win_rate_test(cmp.results[win].trades, runner_up.result.trades, boots, seed)
            return p_, lo_, hi_, est_, dist_

        if metric not in fns and metric != "win_rate_pct":
            continue
        boots = n_boot
        p, low, high, est, dist = test(boots)
        if near_alpha(p, boots):
            # a p-value within Monte Carlo error of the level would star by the seed (hunt32 F2:
            # 0.049 with seed 42, 0.048-0.076 over 20 seeds): ten times the resamples decide
            boots = 10 * n_boot
            p, low, high, est, dist = test(boots)
        out.setdefault("_distributions", {})[metric] = dist
        value = _num(cmp.results[win].metrics.get(metric))
        # the table names the winner on its own measure (drawdown on every bar); the test
        # measures daily closes, and may find the pair the other way round: no star then
        against = sense * est < 0
        sig = p < ALPHA and not against
        label = f"p {_p_text(p)} the other way on daily closes" if against else f"p {_p_text(p)}"
        out["metrics"][metric] = {"winner": win, "runner_up": runner_up.name, "p_value": p, "ci_low": low,
                                  "ci_high": high, "significant": sig, "value": value, "label": label}
        if boots != n_boot:
            out["metrics"][metric]["n_boot"] = boots
        if sig:
            significant.append(f"{METRIC_LABELS[metric][0]}: {win} (p {_p_text(p)})")
    out["summary"] = ("significant winners: " + "; ".join(significant)) if significant else "no significant winner"
    untested = [METRIC_LABELS[m][0] for m, t in out["metrics"].items() if t.get("tested") is False]
    if untested:
        out["summary"] += (f" ({', '.join(untested)} not tested: the winner and the runner-up cover different "
                           "days, and the paired bootstrap compares the same days)")
    return out


def near_alpha(p: float, n_boot: int, alpha: float = ALPHA) -> bool:
    """Whether a bootstrap p-value from ``n_boot`` resamples is within three Monte Carlo
    standard errors of ``alpha`` (the two-sided p is twice a tail share, so its error is
    twice that share's): the star would depend on the seed.

    >>> near_alpha(0.049, 2000), near_alpha(0.008, 2000), near_alpha(0.04, 20000)
    (True, False, False)
    """
    if not math.isfinite(p):
        return False
    q = alpha / 2.0
    return abs(p - alpha) < 3.0 * 2.0 * math.sqrt(q * (1.0 - q) / max(1, n_boot))


def _p_text(p: float) -> str:
    t = format_p(p)
    return t if t.startswith("<") else f"= {t}"


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return -math.inf
    return f if math.isfinite(f) else -math.inf


def _win_rate_test(a: pd.DataFrame, b: pd.DataFrame, n_boot: int,
                   seed: int) -> tuple[float, float, float, np.ndarray, float]:
    """``(p, low, high, bootstrap differences, estimate)`` of win rate ``a`` minus ``b`` (%)."""
    wa = (a["pnl"].to_numpy() > 0).astype(float)
    wb = (b["pnl"].to_numpy() > 0).astype(float)
    if wa.size < 2 or wb.size < 2:
        return 1.0, math.nan, math.nan, np.empty(0), math.nan
    rng = np.random.default_rng(seed)
    da = _resampled_means(wa, n_boot, rng)
    db = _resampled_means(wb, n_boot, rng)
    diff = (da - db) * 100.0
    est = (wa.mean() - wb.mean()) * 100.0
    low, high = float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))
    if est == 0:
        return 1.0, low, high, diff, est
    k = int(np.sum(diff <= 0)) if est > 0 else int(np.sum(diff >= 0))
    return min(1.0, 2.0 * (k + 1) / (n_boot + 1)), low, high, diff, est


def _resampled_means(w: np.ndarray, n_boot: int, rng: np.random.Generator, cells: int = 1 << 20) -> np.ndarray:
    """The means of ``n_boot`` resamples (with replacement) of ``w``, drawn a block of rows
    at a time: the same numbers as one ``(n_boot, w.size)`` draw, in about ``cells``
    values of memory instead of 16 bytes x n_boot x trades (3.4 GB for 110,000 trades).

    >>> w = np.array([1.0, 0.0, 1.0])
    >>> a = _resampled_means(w, 5, np.random.default_rng(0), cells=3)
    >>> bool((a == w[np.random.default_rng(0).integers(0, 3, (5, 3))].mean(axis=1)).all())
    True
    """
    out = np.empty(n_boot)
    rows = max(1, cells // max(1, w.size))
    for a in range(0, n_boot, rows):
        k = min(rows, n_boot - a)
        out[a:a + k] = w[rng.integers(0, w.size, (k, w.size))].mean(axis=1)
    return out


def plot_bootstrap(cmp: Any) -> "Figure":
    """Histograms of the bootstrap differences (winner minus runner-up) per tested metric,
    with 0 and the confidence interval marked; returns the Figure
    (``VariantComparison.plot("bootstrap")``, whose example draws one)."""
    from .plots import ResultFigure, _wrapped

    sig = cmp.significance or {}
    dists = sig.get("_distributions", {})
    fig = ResultFigure(figsize=(PANEL_INCHES * max(1, len(dists)), 3.2), layout="constrained")   # names as written
    if not dists:
        ax = fig.add_subplot(1, 1, 1)
        ax.set_title("no bootstrap distributions")
        ax.axis("off")
        return fig
    for k, (metric, dist) in enumerate(dists.items()):
        ax = fig.add_subplot(1, len(dists), k + 1)
        t = sig["metrics"][metric]
        d = np.asarray(dist)
        ax.hist(d[np.isfinite(d)], bins=40, color="#4c72b0", alpha=0.8)
        ax.axvline(0.0, color="black", lw=1, label="no difference")
        ax.axvline(t["ci_low"], color="#c44e52", ls="--", lw=1, label=f"{100 * (1 - ALPHA):g} % interval")
        ax.axvline(t["ci_high"], color="#c44e52", ls="--", lw=1)
        # wrapped to its own panel: long variant names ran over the next panel's title
        head = _wrapped(f"{METRIC_LABELS[metric][0]}: {plain(t['winner'])} - {plain(t['runner_up'])}", fig,
                        inches=PANEL_INCHES)
        ax.set_title(f"{head}\n{_wrapped(t['label'], fig, inches=PANEL_INCHES)}", fontsize=9)
        unit = " (percentage points)" if "%" in METRIC_LABELS[metric][1] else ""
        ax.set_xlabel(f"bootstrap difference{unit}")
        ax.set_ylabel("count")
        ax.legend(fontsize="x-small", loc="upper right")
    return fig


#: width of a bootstrap panel, in inches
PANEL_INCHES = 4.0


# ---------------------------------------------------------------- the verdict every page states

#: a best run "survives selection" when its deflated Sharpe ratio exceeds this (DSR is a
#: probability: 0.95 = significant at ALPHA) ...
DSR_THRESHOLD = 1.0 - ALPHA
#: ... and the probability of backtest overfitting is below this (PBO 0.5: the in-sample
#: winner is as likely as not to rank below the median out of sample)
PBO_THRESHOLD = 0.5


def selection_verdict(st: dict[str, Any]) -> dict[str, Any]:
    """The plain verdict on statistics of :func:`optimization_statistics` or
    :func:`walk_forward_statistics`: ``survives`` (bool, None when nothing was computed),
    ``headline`` ("Survives selection" / "Indistinguishable from the luck of N trials"),
    ``reason`` (the numbers against their thresholds) and ``rows`` (label, text) for a table.
    Reads the numbers, never recomputes them.

    >>> v = selection_verdict({"n_trials": 16, "dsr": 0.343, "dsr_significant": False, "pbo": 0.68,
    ...                        "sharpe_annualized": 0.36, "expected_max_sharpe_annualized": 0.73})
    >>> v["survives"], v["headline"]
    (False, 'Indistinguishable from the luck of 16 trials')
    >>> v["reason"]
    'deflated Sharpe ratio 0.343 < 0.95; PBO 0.68 >= 0.5'
    """
    n = int(st.get("n_trials") or 0)
    trials = f"{n} trial{'s' if n != 1 else ''}"
    if st.get("kind") == "walk_forward":
        per = st.get("trials_per_window")
        tried = (f"{n} ({per} parameter sets x {st.get('windows')} windows; each window's choice made in-sample)" if per
                 else f"{st.get('windows')} windows, each window's parameters chosen in-sample")
    else:
        tried = f"{n} (successful runs of the sweep; the best run was picked from them)"
    rows: list[tuple[str, str]] = [("Trials", tried)]
    if "dsr" not in st or "dsr_significant" not in st:
        why = st.get("note") or "not computed"
        rows.append(("Deflated Sharpe ratio", f"n/a ({why})"))
        return {"survives": None, "headline": "No verdict: the selection statistics were not computed",
                "reason": str(why), "rows": rows}
    dsr_ok = bool(st["dsr_significant"])
    reasons = [f"deflated Sharpe ratio {st['dsr']:.3f} {'>' if dsr_ok else '<'} {DSR_THRESHOLD:.2f}"]
    pbo = st.get("pbo")
    pbo_ok = pbo is None or pbo < PBO_THRESHOLD
    if pbo is not None:
        reasons.append(f"PBO {pbo:.2f} {'<' if pbo_ok else '>='} {PBO_THRESHOLD:.1f}")
    survives = dsr_ok and pbo_ok
    if st.get("kind") == "walk_forward":
        headline = ("Survives selection: the stitched out-of-sample Sharpe ratio is significant" if survives
                    else "Indistinguishable from luck: the stitched out-of-sample Sharpe ratio is not significant")
        rows.append(("Out-of-sample Sharpe (ann.)", f"{st['sharpe_annualized']:.2f} over {st.get('days', '?')} days"))
        rows.append(("Deflated Sharpe ratio", f"{st['dsr']:.3f} (one out-of-sample record: against a Sharpe of 0; "
                                              f"threshold {DSR_THRESHOLD:.2f})"))
    else:
        headline = "Survives selection" if survives else f"Indistinguishable from the luck of {trials}"
        rows.append(("Best run Sharpe (ann.)", f"{st['sharpe_annualized']:.2f}; the best of {trials} of pure noise "
                                               f"is expected at {st['expected_max_sharpe_annualized']:.2f}"))
        rows.append(("Deflated Sharpe ratio", f"{st['dsr']:.3f} (probability the best run beats that luck; "
                                              f"threshold {DSR_THRESHOLD:.2f})"))
    if pbo is not None:
        ranked = f"; {st['pbo_ranking']}" if st.get("pbo_ranking") else ""
        ranked += identical_words(st)
        rows.append(("Probability of backtest overfitting", f"{pbo:.2f} (CSCV, S={st.get('pbo_splits')}: how often the "
                                                             f"in-sample best ranks below the median out of sample"
                                                             f"{ranked}; threshold {PBO_THRESHOLD:.1f})"))
    else:
        rows.append(("Probability of backtest overfitting", f"n/a ({st.get('pbo_note', 'not computed')})"))
    return {"survives": survives, "headline": headline, "reason": "; ".join(reasons), "rows": rows}


def walk_forward_statistics(wf: Any) -> dict[str, Any]:
    """The stitched out-of-sample record of a walk-forward, tested as one trial: each
    window's parameters were chosen on in-sample bars only, so its deflated Sharpe ratio
    is the probabilistic Sharpe ratio against 0 (:func:`deflated_sharpe_ratio` with
    ``n_trials=1``). ``n_trials`` counts the parameter sets tried in-sample; PBO (CSCV) is
    not computed for a walk-forward (``pbo_note`` says so).

    >>> import metaflow_nb as mf
    >>> wf = mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", backend="sequential", progress=False)
    >>> st = walk_forward_statistics(wf)
    >>> st["n_trials"], st["days"], bool(0.0 < st["dsr"] < 1.0), "pbo_note" in st
    (60, 210, True, True)
    """
    windows = int(len(wf.windows))
    per = int(getattr(wf, "trials_per_window", 0) or 0)
    out: dict[str, Any] = {"kind": "walk_forward", "windows": windows, "trials_per_window": per or None,
                           "n_trials": per * windows if per else windows,
                           "pbo_note": "not computed for a walk-forward: each window's choice is tested on bars "
                                       "it never saw"}
    eq = wf.oos_equity
    if eq is None or len(eq) < 3:
        out["note"] = "no out-of-sample record"
        return out
    # the level the stitched record starts from: over a basket every account's cash (a first
    # window holding fewer instruments has less), else the first window's
    first = getattr(wf, "starting_equity", None)
    if first is None:
        first = wf.oos_results[0].specs.cash if wf.oos_results else float(eq.iloc[0])
    cal = wf.oos_results[0].specs.data_calendar if wf.oos_results else None
    r = daily_returns(eq, first, cal)
    if len(r) < 3:
        out["note"] = f"{len(r)} out-of-sample days"
        return out
    ppy = periods_per_year(r.index, cal)
    try:
        dsr = deflated_sharpe_ratio(r.to_numpy(), n_trials=1, var_sr=0.0, periods_per_year=ppy)
    except DataError as exc:   # e.g. no trade out of sample: a flat record has no Sharpe ratio to test
        out["note"] = f"not computed: the stitched out-of-sample {exc}"
        return out
    # the test is on per-day figures; the Sharpe shown beside it is the out-of-sample metric's own
    shown = (wf.oos_metrics or {}).get("sharpe_ratio")
    shown = float(shown) if shown is not None and math.isfinite(float(shown)) else dsr.sr_annualized
    out.update({"dsr": dsr.dsr, "psr": dsr.psr, "sharpe_annualized": shown,
                "expected_max_sharpe_annualized": 0.0, "days": dsr.t,
                "dsr_significant": bool(dsr.significant(ALPHA))})
    return out


def statistics_words(st: dict[str, Any]) -> str:
    """An optimization's :attr:`statistics` in words, with the verdict line the report pages
    state: a single sweep's and a basket's (they share the keys).

    >>> print(statistics_words({"n_trials": 1, "note": "no deflated Sharpe ratio: no run succeeded"}))
    no deflated Sharpe ratio: no run succeeded
    """
    parts = []
    if "dsr" in st and "dsr_significant" in st:   # a basket keeps a NaN dsr without a pick
        parts.append(f"deflated Sharpe ratio {st['dsr']:.3f} ({'significant' if st['dsr_significant'] else 'not significant'}"
                     f" at 5 %; {st['n_trials']} trials, expected max Sharpe of noise "
                     f"{st['expected_max_sharpe_annualized']:.2f})")
    if "pbo" in st:
        ranked = f", {st['pbo_ranking']}" if st.get("pbo_ranking") else ""
        ranked += identical_words(st).replace(";", ",", 1)
        parts.append(f"probability of backtest overfitting {st['pbo']:.2f} (CSCV, S={st['pbo_splits']}, "
                     f"{st['pbo_combinations']} splits{ranked})")
    for key in ("note", "pbo_note"):
        if key in st:
            parts.append(st[key])
    text = "; ".join(parts)
    v = selection_verdict(st)
    if v["survives"] is not None:  # the verdict the report pages state, in the same words
        text += f"\nverdict: {v['headline']} ({v['reason']})"
    return text
