"""The explorer's live chart, and the result figures under their notebook name.

The figures of results live in :mod:`metaflow_nb.services.plots`, beside the results
whose ``.plot()`` draws them; they are re-exported here for notebooks.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..services.plots import (  # noqa: F401  (re-exported for notebooks)
    DRAWDOWN_COLOR, EQUITY_COLOR, ResultFigure, decimate_minmax, drawdown_pct, figure_png, plot_backtest,
    plot_optimization, plot_variants, plot_walk_forward,
)


# ---------------------------------------------------------------- live chart (explorer)

class LiveEquityChart:
    """One reused figure (equity over drawdown) re-rendered to PNG for every explorer run.

    The lines are updated in place (``set_data``), long series are min/max-decimated to
    ``max_points`` (about two per pixel column of the axes, so nothing visible is lost), so a
    redraw costs a few tens of milliseconds whatever the data length.
    """

    def __init__(self, figsize: Sequence[float] = (9.5, 4.6), dpi: float = 80, max_points: int = 1600):
        import matplotlib.dates as mdates

        self.max_points = max_points
        self.fig = ResultFigure(figsize=tuple(figsize), dpi=dpi)
        self.fig.subplots_adjust(left=0.09, right=0.98, top=0.92, bottom=0.1, hspace=0.08)
        gs = self.fig.add_gridspec(2, 1, height_ratios=[3, 1])
        self.ax = self.fig.add_subplot(gs[0])
        self.axd = self.fig.add_subplot(gs[1], sharex=self.ax)
        (self.base_line,) = self.ax.plot([], [], color="#b0b0b0", lw=1.0, label="First run")
        (self.line,) = self.ax.plot([], [], color=EQUITY_COLOR, lw=1.2, label="Equity")
        (self.dd_line,) = self.axd.plot([], [], color=DRAWDOWN_COLOR, lw=0.8)
        self._fill = None
        self.ax.set_ylabel("Equity")
        self.ax.grid(alpha=0.3)
        self.ax.tick_params(labelbottom=False)
        self.axd.set_ylabel("Drawdown (%)")
        self.axd.set_xlabel("Time")
        self.axd.grid(alpha=0.3)
        self.ax.xaxis_date()
        self.axd.xaxis_date()
        loc = mdates.AutoDateLocator(minticks=3, maxticks=8)
        self.axd.xaxis.set_major_locator(loc)
        self.axd.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        from matplotlib.ticker import MaxNLocator
        self.ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        self.axd.yaxis.set_major_locator(MaxNLocator(nbins=3))
        # a fixed title position: matplotlib would otherwise measure every tick label of
        # the axes on each draw to place it (a quarter of the redraw time)
        self._title = self.ax.set_title("", fontsize="medium", y=1.0, pad=4)
        self._legend = None

    def _xy(self, equity: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        import matplotlib.dates as mdates
        x = mdates.date2num(equity.index.to_numpy())
        return x, equity.to_numpy(float)

    def update(self, equity: pd.Series, title: str = "", baseline: Optional[pd.Series] = None) -> bytes:
        """Redraw with a new equity curve (and an optional faint baseline); PNG bytes.

        >>> equity = pd.Series([100.0, 103.0, 98.0, 105.0], index=pd.date_range("2024-01-01", periods=4))
        >>> png = LiveEquityChart(figsize=(3, 2), dpi=40).update(equity, "fast=5", baseline=equity * 0.99)
        >>> png[1:4], len(png) > 1000  # a PNG file's signature
        (b'PNG', True)
        """
        x, y = self._xy(equity)
        self.line.set_data(*decimate_minmax(x, y, self.max_points))
        if baseline is not None and len(baseline):
            self.base_line.set_data(*decimate_minmax(*self._xy(baseline), self.max_points))
            self.base_line.set_visible(True)
        else:
            self.base_line.set_visible(False)
        if self._legend is None and baseline is not None:
            self._legend = self.ax.legend(loc="upper left", fontsize="small")
        dx, dd = decimate_minmax(x, drawdown_pct(y), self.max_points)
        self.dd_line.set_data(dx, dd)
        if self._fill is not None:
            self._fill.remove()
        self._fill = self.axd.fill_between(dx, dd, 0.0, color=DRAWDOWN_COLOR, alpha=0.35, lw=0)
        for a in (self.ax, self.axd):
            a.relim(visible_only=True)
            a.autoscale_view()
        if len(x):
            self.ax.set_xlim(x[0], x[-1])
        self._title.set_text(title)
        return figure_png(self.fig, compress_level=1)
