"""Result objects of single runs; meta-workflow results live beside their services."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Optional

import pandas as pd

from ..config.buildspecs import BuildSpecs

#: how metrics are shown in tables: label and format
METRIC_LABELS = {
    "total_return_pct": ("Total return", "{:.2f} %"),
    "cagr_pct": ("CAGR", "{:.2f} %"),
    "sharpe_ratio": ("Sharpe ratio", "{:.2f}"),
    "sortino_ratio": ("Sortino ratio", "{:.2f}"),
    "calmar_ratio": ("Calmar ratio", "{:.2f}"),
    "max_drawdown_pct": ("Max drawdown", "{:.2f} %"),
    "volatility_ann_pct": ("Volatility (ann.)", "{:.2f} %"),
    "win_rate_pct": ("Win rate", "{:.1f} %"),
    "profit_factor": ("Profit factor", "{:.2f}"),
    "expectancy_pct": ("Expectancy per trade", "{:.3f} %"),
    "total_trades": ("Total trades", "{:d}"),
    "avg_trade_duration_bars": ("Avg trade duration", "{:.1f} bars"),
    "exposure_pct": ("Exposure", "{:.1f} %"),
    "final_equity": ("Final equity", "{:,.2f}"),
    "opportunities_detected": ("Opportunities detected", "{:d}"),
    "opportunities_rejected": ("Opportunities rejected", "{:d}"),
    "rejection_rate_pct": ("Rejection rate", "{:.1f} %"),
}


def format_metric(name: str, value: Any) -> str:
    """A metric value as shown in tables (``n/a`` for NaN, ``inf`` for infinity)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    fmt = METRIC_LABELS.get(name, (name, "{}"))[1]
    try:
        return fmt.format(int(value) if "d}" in fmt else value)
    except (ValueError, TypeError):
        return str(value)


def metrics_table_html(metrics: dict[str, Any], title: str = "") -> str:
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(METRIC_LABELS.get(k, (k,))[0])}</th>"
        f"<td style='text-align:right'>{html.escape(format_metric(k, v))}</td></tr>"
        for k, v in metrics.items())
    cap = f"<caption style='text-align:left;font-weight:bold'>{html.escape(title)}</caption>" if title else ""
    return f"<table class='mf-metrics'>{cap}{rows}</table>"


def metrics_table_text(metrics: dict[str, Any]) -> str:
    width = max(len(METRIC_LABELS.get(k, (k,))[0]) for k in metrics) if metrics else 0
    return "\n".join(f"{METRIC_LABELS.get(k, (k,))[0]:<{width}}  {format_metric(k, v):>16}" for k, v in metrics.items())


@dataclass
class BacktestResult:
    """The outcome of one backtest.

    ``metrics`` (dict), ``trades`` and ``journal`` (DataFrames, built from the kernel's
    records on first access: sweeps that keep metrics only never pay for them), ``equity``
    and ``position`` (Series at every bar's close), the ``specs`` it ran and ``timings``.
    """

    specs: BuildSpecs
    metrics: dict[str, Any]
    equity: pd.Series
    position: pd.Series
    timings: dict[str, float] = field(default_factory=dict)
    data: Optional[pd.DataFrame] = field(default=None, repr=False)
    context: Any = field(default=None, repr=False)
    records: Any = field(default=None, repr=False)  # (SimulationOutput, opportunity worker ids)

    @cached_property
    def trades(self) -> pd.DataFrame:
        """One row per closed trade, linked to its opportunity by ``opportunity_id``."""
        from ..assembly.frames import trades_frame
        return trades_frame(self.records[0])

    @cached_property
    def journal(self) -> pd.DataFrame:
        """Every detection, rejection (threat and reason), order and trade event."""
        from ..assembly.frames import journal_frame
        return journal_frame(*self.records)

    @property
    def run_id(self) -> str:
        return self.specs.run_id

    @property
    def name(self) -> str:
        return self.specs._blueprint.get("name", "strategy")

    def rejections(self) -> pd.DataFrame:
        """Rejected opportunities per reason: count and share of all rejections (%)."""
        rej = self.journal[self.journal["event"] == "OPPORTUNITY_REJECTED"]
        counts = rej["reason"].value_counts()
        total = int(counts.sum())
        return pd.DataFrame({"count": counts.astype(int),
                             "share_pct": (counts / total * 100.0) if total else counts.astype(float)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: run id, metrics (non-finite as None), trade count."""
        return {"run_id": self.run_id, "name": self.name, "metrics": json_safe(self.metrics),
                "trades": int(len(self.trades))}

    def plot(self, kind: str = "equity", **kwargs: Any):
        """Matplotlib figure: ``"equity"`` (equity with drawdown underneath) or ``"trades"``
        (price with trades, stops/targets and setup zones). Returns the Figure."""
        from ..notebook import plots
        return plots.plot_backtest(self, kind=kind, **kwargs)

    def __repr__(self) -> str:
        return (f"BacktestResult({self.name!r}, run_id={self.run_id}, bars={len(self.equity)})\n"
                + metrics_table_text(self.metrics))

    def _repr_html_(self) -> str:
        return (f"<div class='mf-result'><b>{html.escape(self.name)}</b> "
                f"<code>{self.run_id}</code> &middot; {len(self.equity)} bars "
                f"{self.equity.index[0]:%Y-%m-%d} &rarr; {self.equity.index[-1]:%Y-%m-%d}"
                + metrics_table_html(self.metrics) + "</div>")


def json_safe(obj: Any) -> Any:
    """Replace NaN and infinities with None and numpy scalars with Python ones, recursively."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(obj).isoformat()
    return obj
