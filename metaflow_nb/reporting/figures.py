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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _figure(w: float = 10.0, h: float = 4.5):
    from ..services.plots import ResultFigure   # draws names as written, never as math
    return ResultFigure(figsize=(w, h), dpi=100, layout="constrained")


def close(fig: Any) -> None:
    """Close ``fig`` if pyplot manages it (no-op for bare Figures).

    >>> from matplotlib.figure import Figure
    >>> close(Figure())  # not pyplot's: nothing to release
    """
    import sys
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt
        plt.close(fig)


def png_data_uri(fig: Any, dpi: int = 100) -> str:
    """The figure as a ``data:image/png;base64,...`` URI (the figure is closed).

    >>> from matplotlib.figure import Figure
    >>> png_data_uri(Figure(figsize=(1, 1)), dpi=10)[:30]
    'data:image/png;base64,iVBORw0K'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------- single run

def backtest_equity(res: Any) -> "Figure":
    """A run's equity with its drawdown underneath: ``res.plot("equity")``.

    >>> class Run:  # a stand-in: records what it is asked to draw
    ...     def plot(self, kind, **kw): return kind
    >>> backtest_equity(Run())
    'equity'
    """
    return res.plot("equity")


def trades_window(res: Any, max_trades: int = 12, max_bars: int = 1500) -> tuple[int, int]:
    """Bar range ``(start, end)`` around the first ``max_trades`` trades, 40 bars either
    side (at most ``max_bars`` bars); the last ``max_bars`` bars without trades.

    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> res = SimpleNamespace(data=None, equity=range(1000),
    ...                       trades=pd.DataFrame({"entry_bar": [100, 500], "exit_bar": [120, 530]}))
    >>> trades_window(res), trades_window(res, max_trades=1), trades_window(res, max_bars=200)
    ((60, 570), (60, 160), (60, 260))
    """
    n = len(res.data) if res.data is not None else len(res.equity)
    t = res.trades
    if t.empty:
        return max(0, n - max_bars), n
    first = t.head(max_trades)
    lo = max(0, int(first["entry_bar"].min()) - 40)
    hi = min(n, int(first["exit_bar"].max()) + 40)
    return lo, min(hi, lo + max_bars)


def backtest_trades(res: Any, max_trades: int = 12) -> "Figure":
    """Price around the first ``max_trades`` trades (the ones the trades table starts with).

    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> res = SimpleNamespace(data=None, equity=range(1000),
    ...                       trades=pd.DataFrame({"entry_bar": [100], "exit_bar": [120]}),
    ...                       plot=lambda kind, **window: (kind, window))  # a stand-in run
    >>> backtest_trades(res)
    ('trades', {'start': 60, 'end': 160})
    """
    lo, hi = trades_window(res, max_trades)
    return res.plot("trades", start=lo, end=hi)


def rejections_bar(res: Any, title: str = "") -> "Figure":
    """Horizontal bars of a run's rejection reasons (count and share of the rejected
    opportunities each decided), or a note when nothing was rejected.

    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> rej = pd.DataFrame({"count": [3, 0], "share_pct": [100.0, 0.0]}, index=["MAX_DRAWDOWN", "SESSION"])
    >>> fig = rejections_bar(SimpleNamespace(rejections=lambda: rej))
    >>> fig.axes[0].get_title(), len(fig.axes[0].patches)  # SESSION never decided: no bar
    ('Rejection reasons', 1)
    """
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

def variants_equity(cmp: Any) -> "Figure":
    """The variants' equity curves overlaid: ``cmp.plot("equity")`` of a variant comparison.

    >>> class Comparison:  # a stand-in: records what it is asked to draw
    ...     def plot(self, kind, **kw): return kind
    >>> variants_equity(Comparison())
    'equity'
    """
    return cmp.plot("equity")


def variants_rejections(cmp: Any) -> "Figure":
    """Rejected opportunities per reason code and variant: ``cmp.plot("rejections")``.

    >>> class Comparison:  # a stand-in: records what it is asked to draw
    ...     def plot(self, kind, **kw): return kind
    >>> variants_rejections(Comparison())
    'rejections'
    """
    return cmp.plot("rejections")


def optimization_heatmap(opt: Any, metric: str) -> "Figure":
    """Heatmap of ``metric`` over the first two parameters of an optimization.

    >>> class Optimization:  # a stand-in: records what it is asked to draw
    ...     def plot(self, kind, **kw): return kind, kw
    >>> optimization_heatmap(Optimization(), "sharpe_ratio")
    ('heatmap', {'metric': 'sharpe_ratio'})
    """
    return opt.plot("heatmap", metric=metric)


def walk_forward_figure(wf: Any) -> "Figure":
    """In-sample against out-of-sample score per window, and the stitched out-of-sample
    equity: ``wf.plot()`` of a walk-forward result.

    >>> class WalkForward:  # a stand-in for a WalkForwardResult
    ...     def plot(self): return "windows and stitched equity"
    >>> walk_forward_figure(WalkForward())
    'windows and stitched equity'
    """
    return wf.plot()
