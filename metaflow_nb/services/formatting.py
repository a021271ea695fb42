"""How results are shown: metric labels and formats, tables, JSON.

The one home of these, below every result type, the figures, the report pages and the
command line that show metrics.
"""
from __future__ import annotations

import html
import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd

def plain(name: Any) -> str:
    """``name`` as a figure's text that matplotlib draws as written: its ``$`` escaped, so a
    variant, strategy or symbol name with two of them is not read as math.

    >>> print(plain("costs in $ and $x$"))
    costs in \\$ and \\$x\\$
    """
    return str(name).replace("$", "\\$")


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
    # tear sheet (services.tearsheet): trade statistics and costs, in the account currency
    "trades": ("Trades", "{:d}"),
    "net_pnl": ("Net P&L", "{:,.2f}"),
    "avg_pnl": ("Avg P&L per trade", "{:,.2f}"),
    "avg_win": ("Avg win", "{:,.2f}"),
    "avg_loss": ("Avg loss", "{:,.2f}"),
    "best_trade": ("Best trade", "{:,.2f}"),
    "worst_trade": ("Worst trade", "{:,.2f}"),
    "avg_return_pct": ("Avg return per trade", "{:.3f} %"),
    "avg_duration_bars": ("Avg duration", "{:.1f} bars"),
    "commission_paid": ("Commission paid", "{:,.2f}"),
    "slippage_paid": ("Slippage paid", "{:,.2f}"),
    "depth_pct": ("Depth", "{:.2f} %"),
    "return_pct": ("Return", "{:.2f} %"),
}


#: the value a diverging colour scale of a metric is centred on: signed metrics at 0 (a
#: Sharpe of -0.29 is never green), the profit factor at 1 (break-even). Metrics not listed
#: are coloured over their range; :data:`~metaflow_nb.engine.metrics.METRIC_DIRECTION`
#: says which end is good (-1: lower is better, drawdown; 0: neutral, counts).
METRIC_CENTER = {
    "total_return_pct": 0.0, "cagr_pct": 0.0, "sharpe_ratio": 0.0, "sortino_ratio": 0.0, "calmar_ratio": 0.0,
    "expectancy_pct": 0.0, "profit_factor": 1.0,
}


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless one (hunt104: "1 instruments").

    >>> counted(1, "instrument"), counted(20, "instrument")
    ('1 instrument', '20 instruments')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"


def failures_text(table: Any, param_columns: list[str]) -> str:
    """One line on the failed rows of a sweep's table (``status`` other than ok): how
    many, the first one's parameters and error; "" when none failed.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"sma_1.fast": [5, 25], "status": ["ok", "failed"], "error": ["", "ConfigError: fast >= slow"]})
    >>> failures_text(t, ["sma_1.fast"])
    '1 failed: sma_1.fast=25: ConfigError: fast >= slow'
    """
    if "status" not in table:
        return ""
    failed = table[table["status"] != "ok"]
    if not len(failed):
        return ""
    row = failed.iloc[0]
    params = ", ".join(f"{c}={row[c]}" for c in param_columns)
    more = f" (and {len(failed) - 1} more: all_results.error)" if len(failed) > 1 else ""
    return f"{len(failed)} failed: {params + ': ' if params else ''}{row.get('error', '')}{more}"


def is_count(name: str) -> bool:
    """True for metrics that are counts (shown as integers: ``373``, never ``373.00``).

    >>> is_count("total_trades"), is_count("sharpe_ratio")
    (True, False)
    """
    return "d}" in METRIC_LABELS.get(name, ("", ""))[1]


def stamp(t: Any) -> str:
    """A timestamp as pages and facts show it: ``YYYY-MM-DD HH:MM`` (README "Reports"), ""
    for NaT.

    >>> stamp(pd.Timestamp("2024-01-02 09:30:15")), stamp(pd.NaT)
    ('2024-01-02 09:30', '')
    """
    return "" if pd.isna(t) else pd.Timestamp(t).strftime("%Y-%m-%d %H:%M")


def format_metric(name: str, value: Any) -> str:
    """A metric value as shown in tables (``n/a`` for NaN, ``inf`` for infinity).

    A value that is not zero never shows as zero: one its decimals round away is shown with
    two significant digits (an FX strategy's expectancy of +0.0003 % beside a profit factor
    of 1.06).

    >>> format_metric("total_return_pct", 12.345), format_metric("sharpe_ratio", float("nan"))
    ('12.35 %', 'n/a')
    >>> format_metric("expectancy_pct", 0.000307), format_metric("expectancy_pct", 0.0)
    ('0.00031 %', '0.000 %')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    fmt = METRIC_LABELS.get(name, (name, "{}"))[1]
    try:
        out = fmt.format(int(value) if "d}" in fmt else value)
    except (ValueError, TypeError):
        return str(value)
    if "f}" in fmt and value and out in (fmt.format(0.0), fmt.format(-0.0)):
        out = re.sub(r"\{:\.\d+f\}", "{:.2g}", fmt).format(value)
    return out


def metrics_table_html(metrics: dict[str, Any], title: str = "") -> str:
    """An HTML table of metrics, labelled and formatted.

    >>> metrics_table_html({"total_trades": 3})
    "<table class='mf-metrics'><tr><th style='text-align:left'>Total trades</th><td style='text-align:right'>3</td></tr></table>"
    """
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(METRIC_LABELS.get(k, (k,))[0])}</th>"
        f"<td style='text-align:right'>{html.escape(format_metric(k, v))}</td></tr>"
        for k, v in metrics.items())
    cap = f"<caption style='text-align:left;font-weight:bold'>{html.escape(title)}</caption>" if title else ""
    return f"<table class='mf-metrics'>{cap}{rows}</table>"


def metrics_table_text(metrics: dict[str, Any]) -> str:
    """A plain-text table of metrics, labels left and values right.

    >>> print(metrics_table_text({"total_trades": 3, "sharpe_ratio": 1.234}))
    Total trades                 3
    Sharpe ratio              1.23
    """
    width = max(len(METRIC_LABELS.get(k, (k,))[0]) for k in metrics) if metrics else 0
    return "\n".join(f"{METRIC_LABELS.get(k, (k,))[0]:<{width}}  {format_metric(k, v):>16}" for k, v in metrics.items())


def table_html(frame: pd.DataFrame, float_format: str = "{:.4g}", index: bool = False) -> str:
    """A result table for a notebook: timestamps as ``YYYY-MM-DD HH:MM`` (the date alone
    when every time is midnight), cells on one line, and a box that scrolls sideways when
    the table is wider than the output (instead of being clipped on the right).

    >>> f = pd.DataFrame({"oos_start": pd.to_datetime(["2023-01-05 03:00"]), "score": [0.71428]})
    >>> ">2023-01-05 03:00</td>" in table_html(f) and "overflow-x:auto" in table_html(f)
    True
    >>> "None" in table_html(pd.DataFrame({"sma_1.fast": [5, None]}, dtype=object))
    False
    """
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            t = out[c]
            midnight = bool(((t.dt.hour == 0) & (t.dt.minute == 0)).all())
            out[c] = t.dt.strftime("%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M")
        elif out[c].dtype == object:
            # None (a walk-forward window without a pick has no parameters) is a blank, as NaN
            # is, not the word None (hunt73 F4)
            out[c] = out[c].map(lambda v: "" if v is None else v)
    body = out.to_html(index=index, escape=True, na_rep="", border=0, float_format=lambda v: float_format.format(v))
    body = body.replace("<td>", "<td style='white-space:nowrap'>")
    return f"<div style='overflow-x:auto;max-width:100%'>{body}</div>"


#: journal columns a strategy without zones (an SMA cross) leaves empty
ZONE_COLUMNS = ("zone_top", "zone_bottom")


def without_empty_zones(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without its zone columns when none of them holds a value (a table of an
    SMA run showed two empty columns); unchanged otherwise.

    >>> f = pd.DataFrame({"event": ["TRADE_OPENED"], "zone_top": [np.nan], "zone_bottom": [np.nan]})
    >>> list(without_empty_zones(f).columns), list(without_empty_zones(f.fillna(1.0)).columns)
    (['event'], ['event', 'zone_top', 'zone_bottom'])
    """
    cols = [c for c in ZONE_COLUMNS if c in frame.columns]
    if cols and frame[cols].isna().all().all():
        return frame.drop(columns=cols)
    return frame


def json_safe(obj: Any) -> Any:
    """Replace NaN and infinities with None and numpy scalars with Python ones, recursively.

    >>> import numpy as np
    >>> json_safe({"a": np.int64(2), "b": [float("nan"), np.float64(0.5)]})
    {'a': 2, 'b': [None, 0.5]}
    """
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


def json_line(doc: Any) -> str:
    """``doc`` as one line of JSON (:func:`json_safe` first): what ``--json`` prints.

    >>> json_line({"sharpe_ratio": float("inf"), "trades": 3})
    '{"sharpe_ratio": null, "trades": 3}'
    """
    return json.dumps(json_safe(doc), indent=None, sort_keys=False)
