"""Run metrics. Formulas are stated in the README ("Metrics"); percent where the name says pct.

Daily returns are the returns of the equity curve sampled at each calendar day's last
bar (the first day against the starting cash). Sharpe and Sortino use them with risk-free
rate 0 and annualise by sqrt(252), or sqrt(365) when the data has Saturday bars.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

METRIC_NAMES = (
    "total_return_pct", "cagr_pct", "sharpe_ratio", "sortino_ratio", "calmar_ratio", "max_drawdown_pct",
    "volatility_ann_pct", "win_rate_pct", "profit_factor", "expectancy_pct", "total_trades",
    "avg_trade_duration_bars", "exposure_pct", "final_equity", "opportunities_detected",
    "opportunities_rejected", "rejection_rate_pct",
)

#: which way is better, for winners and stars: +1 higher, -1 lower, 0 neither
METRIC_DIRECTION = {
    "total_return_pct": 1, "cagr_pct": 1, "sharpe_ratio": 1, "sortino_ratio": 1, "calmar_ratio": 1,
    "max_drawdown_pct": -1, "volatility_ann_pct": -1, "win_rate_pct": 1, "profit_factor": 1,
    "expectancy_pct": 1, "total_trades": 0, "avg_trade_duration_bars": 0, "exposure_pct": 0,
    "final_equity": 1, "opportunities_detected": 0, "opportunities_rejected": 0, "rejection_rate_pct": 0,
}


def periods_per_year(index: pd.DatetimeIndex) -> int:
    """252 trading days a year, or 365 when the data trades on Saturdays (crypto-style)."""
    return 365 if len(index) and bool((index.dayofweek == 5).any()) else 252


def daily_returns(equity: pd.Series, cash: float) -> pd.Series:
    """Returns of the equity at each calendar day's last bar; the first day against ``cash``."""
    if equity.empty:
        return pd.Series(dtype="float64")
    daily = equity.groupby(equity.index.normalize()).last()
    prev = np.concatenate([[cash], daily.to_numpy()[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        r = daily.to_numpy() / prev - 1.0
    # after ruin equity stays at 0: no more return, not NaN
    r = np.where(np.isfinite(r), r, 0.0)
    return pd.Series(r, index=daily.index, name="daily_return")


def sharpe_sortino(r: np.ndarray, ppy: int) -> tuple[float, float, float]:
    """(Sharpe, Sortino, annualised volatility as a fraction) of per-period returns ``r``."""
    n = r.shape[0]
    if n < 2:
        return math.nan, math.nan, math.nan
    mean = float(r.mean())
    sd = float(r.std(ddof=1))
    down = float(np.sqrt(np.sum(np.minimum(r, 0.0) ** 2) / (n - 1)))
    root = math.sqrt(ppy)
    sharpe = mean / sd * root if sd > 0 else math.nan
    sortino = mean / down * root if down > 0 else math.nan
    return sharpe, sortino, sd * root


def max_drawdown_pct(equity: np.ndarray, cash: float) -> float:
    """Largest fall from a running peak (the starting cash counts as the first peak), in %."""
    if equity.shape[0] == 0:
        return 0.0
    peak = np.maximum.accumulate(np.maximum(equity, cash))
    return float(np.max((peak - equity) / peak) * 100.0)


def compute_metrics(equity: pd.Series, position: np.ndarray, trades: pd.DataFrame, cash: float,
                    detected: int, rejected: int) -> dict[str, Any]:
    """All metrics of one run, as plain Python numbers (NaN where undefined)."""
    eq = equity.to_numpy(np.float64)
    final = float(eq[-1]) if eq.shape[0] else float(cash)
    idx = equity.index
    years = (idx[-1] - idx[0]).total_seconds() / (365.25 * 86400.0) if len(idx) > 1 else 0.0
    growth = final / cash
    if years > 0:
        cagr = (growth ** (1.0 / years) - 1.0) * 100.0 if growth > 0 else -100.0
    else:
        cagr = math.nan
    ppy = periods_per_year(idx)
    sharpe, sortino, vol = sharpe_sortino(daily_returns(equity, cash).to_numpy(), ppy)
    mdd = max_drawdown_pct(eq, cash)

    n = int(len(trades))
    if n:
        pnl = trades["pnl"].to_numpy(np.float64)
        gross_win = float(pnl[pnl > 0].sum())
        gross_loss = float(-pnl[pnl < 0].sum())
        win_rate = float((pnl > 0).mean() * 100.0)
        pf = gross_win / gross_loss if gross_loss > 0 else (math.inf if gross_win > 0 else math.nan)
        expectancy = float(trades["return_pct"].mean())
        duration = float(trades["duration_bars"].mean())
    else:
        win_rate = pf = expectancy = duration = math.nan
    return {
        "total_return_pct": (growth - 1.0) * 100.0,
        "cagr_pct": cagr,
        "sharpe_ratio": sharpe,
        "sortino_ratio": sortino,
        "calmar_ratio": cagr / mdd if mdd > 0 and not math.isnan(cagr) else math.nan,
        "max_drawdown_pct": mdd,
        "volatility_ann_pct": vol * 100.0,
        "win_rate_pct": win_rate,
        "profit_factor": pf,
        "expectancy_pct": expectancy,
        "total_trades": n,
        "avg_trade_duration_bars": duration,
        "exposure_pct": float(np.mean(position != 0.0) * 100.0) if position.shape[0] else 0.0,
        "final_equity": final,
        "opportunities_detected": int(detected),
        "opportunities_rejected": int(rejected),
        "rejection_rate_pct": rejected / detected * 100.0 if detected else 0.0,
    }
