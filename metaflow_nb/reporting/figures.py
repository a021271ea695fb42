"""Figures of the report pages and the index.

Every chart comes from the results' own ``.plot()`` (:mod:`metaflow_nb.services.plots`),
so a report shows exactly what a notebook shows. This module only picks windows, turns
figures into embedded PNG and adds the one chart the plotting layer has no kind for (a
single run's rejection reasons). Figures are built on :class:`matplotlib.figure.Figure`,
never through pyplot, so no global state is touched.
"""
from __future__ import annotations

import base64
import io
from typing import Any

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _figure(w: float = 10.0, h: float = 4.5):
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def close(fig: Any) -> None:
    """Close ``fig`` if pyplot manages it (no-op for bare Figures)."""
    import sys
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt
        plt.close(fig)


def png_data_uri(fig: Any, dpi: int = 100) -> str:
    """The figure as a ``data:image/png;base64,...`` URI (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------- single run

def backtest_equity(res: Any):
    return res.plot("equity")


def trades_window(res: Any, max_trades: int = 12, max_bars: int = 1500) -> tuple[int, int]:
    """Bar range around the first ``max_trades`` trades (at most ``max_bars`` bars)."""
    n = len(res.data) if res.data is not None else len(res.equity)
    t = res.trades
    if t.empty:
        return max(0, n - max_bars), n
    first = t.head(max_trades)
    lo = max(0, int(first["entry_bar"].min()) - 40)
    hi = min(n, int(first["exit_bar"].max()) + 40)
    return lo, min(hi, lo + max_bars)


def backtest_trades(res: Any, max_trades: int = 12):
    """Price around the first ``max_trades`` trades (the ones the trades table starts with)."""
    lo, hi = trades_window(res, max_trades)
    return res.plot("trades", start=lo, end=hi)


def rejections_bar(res: Any, title: str = ""):
    rej = res.rejections()
    rej = rej[rej["count"] > 0]   # a reason active but never deciding has no bar
    fig = _figure(7, 2.8)
    ax = fig.subplots()
    if rej.empty:
        ax.text(0.5, 0.5, "no opportunity was rejected", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    ax.barh([str(r) for r in rej.index][::-1], rej["count"].to_numpy()[::-1], color=COLORS[1])
    for y, (c, s) in enumerate(zip(rej["count"].to_numpy()[::-1], rej["share_pct"].to_numpy()[::-1])):
        ax.text(c, y, f" {int(c)} ({s:.0f}%)", va="center", fontsize=8)
    ax.set_xlabel("rejected opportunities")
    ax.set_title(title or "Rejection reasons", fontsize=10)
    ax.margins(x=0.2)
    return fig


# ---------------------------------------------------------------- many runs

def variants_equity(cmp: Any):
    return cmp.plot("equity")


def variants_rejections(cmp: Any):
    return cmp.plot("rejections")


def optimization_heatmap(opt: Any, metric: str):
    return opt.plot("heatmap", metric=metric)


def walk_forward_figure(wf: Any):
    return wf.plot()
