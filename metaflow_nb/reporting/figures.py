"""Figures of the report pages and the index.

Each function prefers the result's own ``.plot()`` (``metaflow_nb.notebook.plots``) and
draws a plain matplotlib figure itself when that is not available. Fallback figures are
built on :class:`matplotlib.figure.Figure` directly, never through pyplot, so making them
touches no global state (safe in threads and in a user's notebook session).
"""
from __future__ import annotations

import base64
import io
import math
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

#: what "not available" means for ``result.plot()``
UNAVAILABLE = (ImportError, AttributeError, NotImplementedError)
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _figure(w: float = 10.0, h: float = 4.5):
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def prefer(plot: Callable[[], Any], fallback: Callable[[], Any], strict: bool = True):
    """``plot()`` if the plotting layer provides it, else ``fallback()``. With ``strict``
    only a missing plotting layer falls back; otherwise any error does (the index must be
    written even if a plot has a bug)."""
    try:
        fig = plot()
    except UNAVAILABLE:
        return fallback()
    except Exception:
        if strict:
            raise
        return fallback()
    return fig if fig is not None else fallback()


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

def drawdown_pct(equity: pd.Series) -> pd.Series:
    return (equity / equity.cummax() - 1.0) * 100.0


def equity_fallback(res: Any, title: str = ""):
    fig = _figure(10, 5)
    ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    eq = res.equity
    ax.plot(eq.index, eq.to_numpy(), color=COLORS[0], lw=1.2, label="equity")
    ax.axhline(float(res.specs._operation["cash"]), color="#999", lw=0.8, ls="--", label="initial cash")
    ax.set_ylabel("equity")
    ax.set_title(title or f"Equity and drawdown: {res.name}")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    dd = drawdown_pct(eq)
    ax2.fill_between(dd.index, dd.to_numpy(), 0.0, color=COLORS[3], alpha=0.4, lw=0)
    ax2.set_ylabel("drawdown %")
    ax2.grid(alpha=0.3)
    return fig


def backtest_equity(res: Any, title: str = "", strict: bool = True):
    return prefer(lambda: res.plot("equity"), lambda: equity_fallback(res, title), strict)


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


def trades_fallback(res: Any, max_trades: int = 12):
    """Close price around the first trades: entries, exits, stops, targets and the setup
    zones (``zone_top``/``zone_bottom`` of each traded opportunity)."""
    fig = _figure(10, 4.8)
    ax = fig.subplots()
    bars = res.data if res.data is not None else None
    lo, hi = trades_window(res, max_trades)
    if bars is None:
        ax.text(0.5, 0.5, "no price data kept for this run", ha="center", va="center", transform=ax.transAxes)
        return fig
    px = bars["close"].iloc[lo:hi]
    x = np.arange(lo, hi)
    ax.plot(x, px.to_numpy(), color="#444", lw=0.9, label="close")
    t = res.trades
    sel = t[(t["entry_bar"] >= lo) & (t["exit_bar"] < hi)]
    j = res.journal
    zones = j[j["event"] == "OPPORTUNITY_DETECTED"].set_index("opportunity_id")[["bar", "zone_top", "zone_bottom"]]
    for _, tr in sel.iterrows():
        long = tr["direction"] == "long"
        c = COLORS[2] if long else COLORS[3]
        oid = tr["opportunity_id"]
        if oid in zones.index:
            z = zones.loc[oid]
            if np.isfinite(z["zone_top"]) and np.isfinite(z["zone_bottom"]):
                ax.fill_between([z["bar"], tr["entry_bar"]], z["zone_bottom"], z["zone_top"], color=c, alpha=0.18,
                                lw=0)
        ax.plot([tr["entry_bar"], tr["exit_bar"]], [tr["entry_price"], tr["exit_price"]], color=c, lw=1.2)
        ax.scatter([tr["entry_bar"]], [tr["entry_price"]], marker="^" if long else "v", color=c, zorder=3, s=36)
        ax.scatter([tr["exit_bar"]], [tr["exit_price"]], marker="x", color="#000", zorder=3, s=25)
        for col, style in (("stop_price", ":"), ("target_price", "--")):
            v = tr.get(col)
            if v is not None and np.isfinite(v):
                ax.hlines(v, tr["entry_bar"], tr["exit_bar"], colors=c, linestyles=style, lw=0.8)
    idx = bars.index
    ticks = np.linspace(lo, hi - 1, 6).astype(int)
    ax.set_xticks(ticks)
    ax.set_xticklabels([idx[i].strftime("%Y-%m-%d %H:%M") if idx[i].hour or idx[i].minute else
                        idx[i].strftime("%Y-%m-%d") for i in ticks], fontsize=8)
    ax.set_title(f"First {len(sel)} trades: entries (triangles), exits (x), stops (dotted), targets (dashed), "
                 f"setup zones (shaded)", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def backtest_trades(res: Any, max_trades: int = 12, strict: bool = True):
    """Price around the first ``max_trades`` trades (the ones the trades table starts with)."""
    lo, hi = trades_window(res, max_trades)

    def plot():
        try:
            return res.plot("trades", start=lo, end=hi)
        except TypeError:  # a plot() without a window
            return res.plot("trades")
    return prefer(plot, lambda: trades_fallback(res, max_trades), strict)


def rejections_bar(res: Any, title: str = ""):
    rej = res.rejections()
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


# ---------------------------------------------------------------- variants

def variants_equity_fallback(cmp: Any):
    fig = _figure(10, 5)
    ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for k, (name, res) in enumerate(cmp.results.items()):
        c = COLORS[k % len(COLORS)]
        ax.plot(res.equity.index, res.equity.to_numpy(), lw=1.1, color=c, label=name)
        dd = drawdown_pct(res.equity)
        ax2.plot(dd.index, dd.to_numpy(), lw=0.9, color=c)
    ax.set_title(f"Equity overlay: {cmp.name}")
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    if cmp.results:
        ax.legend(loc="upper left", fontsize=8)
    ax2.set_ylabel("drawdown %")
    ax2.grid(alpha=0.3)
    return fig


def variants_rejections_fallback(cmp: Any):
    frames = {name: res.rejections()["count"] for name, res in cmp.results.items()}
    table = pd.DataFrame(frames).fillna(0).astype(int) if frames else pd.DataFrame()
    fig = _figure(10, 3.6)
    ax = fig.subplots()
    if table.empty:
        ax.text(0.5, 0.5, "no opportunity was rejected", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    reasons = list(table.index)
    width = 0.8 / max(1, len(table.columns))
    for k, name in enumerate(table.columns):
        xs = np.arange(len(reasons)) + k * width
        ax.bar(xs, table[name].to_numpy(), width=width, color=COLORS[k % len(COLORS)], label=name)
    ax.set_xticks(np.arange(len(reasons)) + 0.4 - width / 2)
    ax.set_xticklabels([str(r) for r in reasons], fontsize=8)
    ax.set_ylabel("rejected opportunities")
    ax.set_title("Rejection reasons per variant")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def variants_equity(cmp: Any, strict: bool = True):
    return prefer(lambda: cmp.plot("equity"), lambda: variants_equity_fallback(cmp), strict)


def variants_rejections(cmp: Any, strict: bool = True):
    return prefer(lambda: cmp.plot("rejections"), lambda: variants_rejections_fallback(cmp), strict)


# ---------------------------------------------------------------- optimization

def heatmap_fallback(opt: Any, metric: str, x: Optional[str] = None, y: Optional[str] = None):
    """``metric`` over two parameter columns (the best run's value of any other parameter;
    the mean when there is no best run)."""
    frame = opt.all_results
    cols = list(opt.param_columns)
    fig = _figure(7, 3.8)
    ax = fig.subplots()
    vals = pd.to_numeric(frame[metric], errors="coerce")
    if len(cols) == 1 or (x is None and len(cols) < 2):
        p = x or cols[0]
        ax.plot(frame[p].astype(str), vals.to_numpy(), marker="o")
        ax.set_xlabel(p)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} by {p}")
        return fig
    x = x or cols[0]
    y = y or cols[1]
    sub = frame.assign(_v=vals)
    best = opt.best_row
    for c in cols:
        if c not in (x, y) and best is not None:
            sub = sub[sub[c] == best[c]]
    grid = sub.pivot_table(index=y, columns=x, values="_v", aggfunc="mean", dropna=False)
    data = grid.to_numpy(dtype=float)
    finite = data[np.isfinite(data)]
    im = ax.imshow(data, aspect="auto", cmap="viridis", origin="lower",
                   vmin=float(finite.min()) if finite.size else None, vmax=float(finite.max()) if finite.size else None)
    ax.set_xticks(range(len(grid.columns)))
    ax.set_xticklabels([str(c) for c in grid.columns], fontsize=8)
    ax.set_yticks(range(len(grid.index)))
    ax.set_yticklabels([str(i) for i in grid.index], fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    for (i, j), v in np.ndenumerate(data):
        if math.isfinite(v):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7,
                    color="white" if finite.size and v < (finite.min() + finite.max()) / 2 else "black")
    fig.colorbar(im, ax=ax, label=metric)
    ax.set_title(f"{metric} over {x} x {y}", fontsize=10)
    return fig


def optimization_heatmap(opt: Any, metric: str, strict: bool = True):
    return prefer(lambda: opt.plot("heatmap", metric=metric), lambda: heatmap_fallback(opt, metric), strict)


# ---------------------------------------------------------------- walk-forward

def walk_forward_fallback(wf: Any):
    fig = _figure(10, 5.5)
    ax, ax2 = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1, 2]})
    w = wf.windows
    m = wf.primary_metric
    if len(w):
        xs = np.arange(len(w))
        ax.bar(xs - 0.2, pd.to_numeric(w.get("is_score"), errors="coerce").to_numpy(float), 0.4,
               label=f"in-sample {m}", color=COLORS[0])
        oos = w.get(f"oos_{m}")
        if oos is not None:
            ax.bar(xs + 0.2, pd.to_numeric(oos, errors="coerce").to_numpy(float), 0.4,
                   label=f"out-of-sample {m}", color=COLORS[1])
        ax.set_xticks(xs)
        ax.set_xticklabels([f"w{int(i)}" for i in w["window"]], fontsize=8)
        ax.axhline(0, color="#999", lw=0.8)
        ax.legend(fontsize=8)
    ax.set_title(f"{wf.name}: in-sample vs out-of-sample {m} per window", fontsize=10)
    eq = wf.oos_equity
    if len(eq):
        ax2.plot(eq.index, eq.to_numpy(), color=COLORS[2], lw=1.2)
    ax2.set_title("Stitched out-of-sample equity", fontsize=10)
    ax2.set_ylabel("equity")
    ax2.grid(alpha=0.3)
    return fig


def walk_forward_figure(wf: Any, strict: bool = True):
    return prefer(lambda: wf.plot(), lambda: walk_forward_fallback(wf), strict)
