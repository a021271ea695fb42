"""Matplotlib figures of backtest, optimization, variant and walk-forward results.

The results' own ``.plot()`` methods draw with these, so they sit beside the results in
the services layer; matplotlib is imported when this module is (only ``.plot()`` and the
notebook and report layers import it).

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot, so no GUI
backend and no second copy shown by the inline backend) and RETURNS it. The figures are
:class:`ResultFigure` instances, which render as PNG in any IPython front end even
without ``%matplotlib inline``; ``figure_png(fig)`` gives the PNG bytes.

>>> import metaflow_nb as mf
>>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
>>> fig = plot_backtest(res)
>>> [ax.get_ylabel() for ax in fig.axes]
['Equity', 'Drawdown (%)']
"""
from __future__ import annotations

import io
import math
from functools import lru_cache
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..engine.metrics import METRIC_DIRECTION
from ..errors import ConfigError, DataError
from .formatting import METRIC_CENTER, METRIC_LABELS, is_count, plain

LONG_COLOR = "#1a9850"
SHORT_COLOR = "#d73027"
REJECTED_COLOR = "#7f7f7f"
EQUITY_COLOR = "#1f4e79"
DRAWDOWN_COLOR = "#c0392b"
STOP_COLOR = "#e67e22"
TARGET_COLOR = "#2e86c1"
CLOSE_COLOR = "#404040"

#: journal events that end a setup's zone (it was filled, expired, cancelled or turned down)
_ZONE_END_EVENTS = ("TRADE_OPENED", "ORDER_EXPIRED", "ORDER_CANCELLED", "OPPORTUNITY_REJECTED",
                    "OPPORTUNITY_SKIPPED")


class ResultFigure(Figure):
    """A Figure that shows itself as PNG in IPython (``_repr_png_``) without pyplot, and
    never fails on a text that is not valid matplotlib math: a name with two ``$`` in it
    (a variant called ``fee $\\frac{ and $``) failed the whole drawing, and a report's index
    lost every figure (hunt59 F1). Such a text is drawn as written; valid math (log-axis
    ticks, a label a researcher adds) stays math. Names the package draws are escaped
    where they are placed (:func:`~metaflow_nb.services.formatting.plain`)."""

    def _repr_png_(self) -> bytes:
        return figure_png(self)

    def draw(self, renderer: Any) -> None:
        from matplotlib.text import Text
        for text in self.findobj(Text):
            s = text.get_text()
            if "$" in s and text.get_parse_math() and not _valid_math(s):
                text.set_parse_math(False)
        super().draw(renderer)


@lru_cache(maxsize=256)
def _valid_math(text: str) -> bool:
    """Whether matplotlib's math parser reads ``text`` (a text with ``$`` in it).

    >>> _valid_math(r"$\\sigma$ of x"), _valid_math(r"fee $\\frac{ and $")
    (True, False)
    """
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import MathTextParser

    try:
        MathTextParser("path").parse(text, 72, FontProperties())
    except Exception:  # noqa: BLE001 - whatever the parser refuses is drawn as written
        return False
    return True


#: line styles that tell apart curves of one colour (matplotlib cycles 10 colours)
LINE_STYLES = ("-", "--", ":", "-.")
#: hatches that tell apart bars of one colour
HATCHES = ("", "//", "..", "xx")


def series_style(k: int) -> dict[str, Any]:
    """Colour and line style of the ``k``-th of many curves: the 11th differs from the 1st
    by its dashes (hunt59 F2: 22 variants in 10 colours).

    >>> series_style(0), series_style(10)
    ({'color': 'C0', 'linestyle': '-'}, {'color': 'C0', 'linestyle': '--'})
    """
    return {"color": f"C{k % 10}", "linestyle": LINE_STYLES[(k // 10) % len(LINE_STYLES)]}


def figure_png(fig: Figure, dpi: Optional[float] = None, compress_level: int = 6) -> bytes:
    """The figure rendered to PNG bytes (Agg, no display needed); ``compress_level`` 1 is
    several times faster to encode than the default 6, for a somewhat larger file.

    >>> figure_png(Figure(figsize=(2, 1)), dpi=50)[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi, pil_kwargs={"compress_level": compress_level})
    return buf.getvalue()


def _new_figure(figsize: Sequence[float], dpi: float = 100, constrained: bool = True) -> ResultFigure:
    return ResultFigure(figsize=tuple(figsize), dpi=dpi, layout="constrained" if constrained else None)


def plot_pbo(pbo: Any, what: str, said: str) -> ResultFigure:
    """The logits of a sweep's PBO (``statistics``' CSCV result; detached, as every result
    figure: pyplot keeps none of them), or a ConfigError naming ``what`` has none and
    ``said`` (its statistics in words) when ``pbo`` is None."""
    if pbo is None:
        raise ConfigError(f"no PBO for this {what}: {said}")
    fig = _new_figure((6, 3.5))
    pbo.plot_logits(ax=fig.subplots())
    return fig


def _metric_label(metric: str) -> str:
    label, fmt = METRIC_LABELS.get(metric, (metric, ""))
    return f"{label} (%)" if "%" in fmt else label


#: colour map of metrics without a good end (counts, exposure)
NEUTRAL_CMAP = "Blues"


def metric_scale(metric: str, values: np.ndarray, cmap: str = "RdYlGn") -> tuple[str, Any]:
    """``(colormap name, Normalize)`` of a heatmap of ``metric``. ``cmap`` runs from bad to
    good; it is reversed for lower-is-better metrics (max drawdown: the deepest is red),
    centred on :data:`~metaflow_nb.services.formatting.METRIC_CENTER` with symmetric
    limits for signed metrics (a negative Sharpe is never green), and neutral metrics
    (trade counts) get the single-hue :data:`NEUTRAL_CMAP`.

    >>> name, norm = metric_scale("sharpe_ratio", np.array([-0.29, 0.5, 1.2]))
    >>> name, round(float(norm(0.0)), 2), round(float(norm(-0.29)), 2) < 0.5
    ('RdYlGn', 0.5, True)
    >>> metric_scale("max_drawdown_pct", np.array([7.04, 15.75]))[0]
    'RdYlGn_r'
    """
    from matplotlib.colors import Normalize
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    direction = METRIC_DIRECTION.get(metric, 1)
    if direction == 0:
        return NEUTRAL_CMAP, Normalize(lo, hi)
    base = cmap[:-2] if cmap.endswith("_r") else cmap
    good_high = (direction > 0) != cmap.endswith("_r")
    name = base if good_high else f"{base}_r"
    center = METRIC_CENTER.get(metric)
    if center is not None:
        half = max(abs(hi - center), abs(lo - center)) or 1.0
        return name, Normalize(center - half, center + half)
    return name, Normalize(lo, hi)


def _failed_cells(frame: pd.DataFrame, x: str, y: str, xs: list, ys: list, fixed: dict[str, Any]) -> set:
    """``(row, column)`` of the heatmap cells every run of which failed (hunt104: they read
    'n/a', as a run whose metric is undefined); ``fixed``: the other parameters' values the
    cells show."""
    for p, v in fixed.items():
        frame = frame[frame[p] == v]
    at: dict[tuple[int, int], set[bool]] = {}   # a labelled grid is small: index() is cheap
    for status, vx, vy in zip(frame["status"], frame[x], frame[y]):
        if vx in xs and vy in ys:
            at.setdefault((ys.index(vy), xs.index(vx)), set()).add(status == "ok")
    return {cell for cell, oks in at.items() if oks == {False}}


def _heat_text(metric: str, v: float) -> str:
    if not np.isfinite(v):
        return "n/a"
    if is_count(metric):
        return f"{int(round(v))}"
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.2f}"


def _direction_note(metric: str) -> str:
    d = METRIC_DIRECTION.get(metric, 1)
    return {1: "higher is better", -1: "lower is better", 0: "neither end is better"}[d]


def _wrapped(title: str, fig: Any, inches: Optional[float] = None) -> str:
    """``title`` broken into lines that fit the figure's width, or ``inches`` (a panel's;
    a long config name was cut at the figure's edge).

    >>> from matplotlib.figure import Figure
    >>> len(_wrapped("a " * 60, Figure(figsize=(6, 4))).splitlines())
    2
    >>> max(len(line) for line in _wrapped("a " * 60, Figure(figsize=(12, 4)), inches=4).splitlines())
    43
    """
    import textwrap
    # ~11 characters an inch at the default title size
    width = max(20, int((inches or fig.get_figwidth()) * 11))
    return "\n".join(textwrap.wrap(title, width)) or title


#: above this many points a line over bars is drawn from its envelope (:func:`envelope`)
PLOT_POINTS = 50_000


def envelope(x: Any, y: Any, buckets: int = PLOT_POINTS // 10) -> tuple[Any, np.ndarray]:
    """``(x, y)`` thinned for drawing: at most ``PLOT_POINTS`` points are kept as they are;
    above, :func:`decimate_minmax` keeps the first and last point and each of ``buckets``
    equal stretches' lowest and highest, in order. At a figure's width that draws the same
    picture (every peak and every trough is kept) as millions of points, in a fraction of
    the time (5M one-minute bars took 10-18 s to draw).

    >>> x = np.arange(200_000); y = np.sin(x / 5000.0)
    >>> xs, ys = envelope(x, y)
    >>> len(xs) <= 10_002, bool(ys.max() == y.max()), bool(ys.min() == y.min()), int(xs[-1])
    (True, True, True, 199999)
    """
    values = np.asarray(y, dtype=float)
    if values.size <= PLOT_POINTS:
        return x, values
    return decimate_minmax(x, values, 2 * buckets)


def drawdown_pct(equity: pd.Series | np.ndarray) -> np.ndarray:
    """Drawdown from the running peak, in percent (0 at a new high, negative below it).

    >>> drawdown_pct(np.array([100.0, 110.0, 99.0, 121.0])).round(6).tolist()
    [0.0, 0.0, -10.0, 0.0]
    """
    eq = np.asarray(equity, dtype=float)
    if eq.size == 0:
        return eq
    peak = np.maximum.accumulate(np.where(np.isfinite(eq), eq, -np.inf))
    with np.errstate(invalid="ignore", divide="ignore"):
        dd = (eq / peak - 1.0) * 100.0
    return np.where(np.isfinite(dd), dd, 0.0)


def decimate_minmax(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the minimum and maximum of ``y`` in each of ``max_points / 2`` buckets (plus the
    ends): a line drawn through them looks the same at screen resolution as the full one.

    >>> x = np.arange(1000); y = np.sin(x / 50.0)
    >>> xs, ys = decimate_minmax(x, y, 100)
    >>> len(xs), bool(ys.max() == y.max()), bool(ys.min() == y.min()), int(xs[-1])
    (100, True, True, 999)
    """
    n = len(y)
    if n <= max_points or max_points < 4:
        return x, y
    k = max_points // 2
    size = int(math.ceil(n / k))
    pad = size * k - n
    yy = np.asarray(y, dtype=float)
    if pad:
        yy = np.concatenate([yy, np.full(pad, yy[-1])])
    blocks = yy.reshape(k, size)
    offs = np.arange(k) * size
    lo = np.minimum(blocks.argmin(axis=1) + offs, n - 1)
    hi = np.minimum(blocks.argmax(axis=1) + offs, n - 1)
    idx = np.unique(np.concatenate([[0], lo, hi, [n - 1]]))
    return x[idx], np.asarray(y)[idx]


def _date_axis(ax: Any) -> None:
    import matplotlib.dates as mdates
    loc = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def _fmt_value(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def _sorted_unique(values: Iterable[Any]) -> list[Any]:
    uniq = list(dict.fromkeys(v.item() if hasattr(v, "item") else v for v in values))
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


# ---------------------------------------------------------------- single backtest

def plot_backtest(res: Any, kind: str = "equity", **kwargs: Any) -> ResultFigure:
    """``kind="equity"``: equity with drawdown (%) underneath on a shared time axis.
    ``kind="trades"``: candlesticks (up to ``max_candles`` bars; the close line always)
    with entries/exits (triangles/crosses, green long, red short), each trade's stop and
    target as short dashed segments, the setup (FVG) zones of the journal's detected
    opportunities as translucent rectangles (grey: rejected or skipped), and the
    strategy's context features: those in price units (EMA, liquidity levels, swing
    points) over the price, the others (ATR, ADX) in a panel per worker instance below
    (``features=False`` for none, or a list of instance ids). The bars shown are
    ``start``/``end``, or ``page`` k of the trades (``trades_per_page`` trades each, in
    entry order, with ``margin`` bars around them; ``page=-1`` the last; every trade is
    on some page), or the ``last`` N bars (default 500; before ``end`` when given). ``start``
    and ``end`` are dates read as :func:`~metaflow_nb.data.load_data` reads them (both
    inclusive, ``end="2018-06"`` keeps all of June, an offset is an instant) or bar
    positions (``end`` exclusive, as in slicing); x is
    the bar position, labelled with its time, so nights and weekends leave no gaps. Other
    keywords: ``zones``, ``levels``, ``candles``, ``figsize``, ``title``.

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml")
    >>> n = trade_pages(res)          # 10 trades a page
    >>> fig = res.plot("trades", page=-1)
    >>> f"(page {n} of {n})" in fig.axes[0].get_title(), [ax.get_ylabel() for ax in fig.axes]
    (True, ['Price', 'atr_1', 'adx_1'])
    """
    if kind == "equity":
        return _plot_equity(res, **kwargs)
    if kind == "trades":
        return _plot_trades(res, **kwargs)
    raise ConfigError(f"unknown plot kind {kind!r}; kinds: 'equity', 'trades'")


def _plot_equity(res: Any, figsize: Sequence[float] = (10, 6), title: Optional[str] = None,
                 dpi: float = 100) -> ResultFigure:
    eq = res.equity
    fig = _new_figure(figsize, dpi)
    gs = fig.add_gridspec(2, 1, height_ratios=[3, 1])
    ax = fig.add_subplot(gs[0])
    axd = fig.add_subplot(gs[1], sharex=ax)
    x = eq.index
    ax.plot(*envelope(x, eq.to_numpy(float)), color=EQUITY_COLOR, lw=1.2, label="Equity")
    cash = res.specs.cash
    ax.axhline(cash, color="grey", ls="--", lw=0.8, label=f"Starting cash ({cash:,.0f})")
    ax.set_ylabel("Equity")
    ax.set_title(title or f"{plain(res.name)}: equity and drawdown "
                 f"(total return {res.metrics.get('total_return_pct', float('nan')):+.2f} %)")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    ax.tick_params(labelbottom=False)
    draw_drawdown(axd, eq)
    return fig


def draw_drawdown(axd: Any, equity: pd.Series) -> None:
    """The drawdown (%) panel under an equity curve: filled, its deepest point annotated
    with the max drawdown, time on x (a single run's and a basket's ``plot()``)."""
    x = equity.index
    dd = drawdown_pct(equity)
    xd, ddv = envelope(x, dd)
    axd.fill_between(xd, ddv, 0.0, color=DRAWDOWN_COLOR, alpha=0.35, lw=0)
    axd.plot(xd, ddv, color=DRAWDOWN_COLOR, lw=0.8, label="Drawdown")
    if len(dd):
        i = int(np.argmin(dd))
        right = i > len(dd) // 2
        axd.annotate(f"max {dd[i]:.2f} %", xy=(x[i], dd[i]), xytext=(-6 if right else 6, 2),
                     textcoords="offset points", ha="right" if right else "left", va="bottom",
                     fontsize="small", color=DRAWDOWN_COLOR)
    axd.set_ylabel("Drawdown (%)")
    axd.set_xlabel("Time")
    axd.grid(alpha=0.3)
    _date_axis(axd)


#: bars a trades chart shows without a window
LAST_BARS = 500


def _window(index: pd.DatetimeIndex, start: Any, end: Any, last: Optional[int]) -> tuple[int, int]:
    """Bar positions ``i0, i1`` of a chart's window: ``start``/``end`` as bar positions
    (``end`` exclusive) or as :func:`~metaflow_nb.data.load_data` reads dates (partial
    dates cover their period, offsets are instants), ``last`` bars back from ``end``."""
    from ..data.loader import positions_between

    n = len(index)
    if last is not None and (isinstance(last, bool) or not isinstance(last, (int, np.integer)) or last < 2):
        raise ConfigError(f"last: expected a whole number of bars, at least 2 (got {last!r})")
    if last is not None and start is not None:
        raise ConfigError("last: counts bars back from end= (or the last bar); with start= give end= instead")

    def pos(v: Any, what: str) -> int:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return int(v) if v >= 0 else n + int(v)
        try:
            i0, i1 = positions_between(index, v if what == "start" else None, v if what == "end" else None,
                                       "plot")
        except DataError:
            raise ConfigError(f"{what}={v!r}: expected a bar position or a date such as 2018-12-31 or "
                              f"2018-12-31 16:00") from None
        return i0 if what == "start" else i1

    if start is None and end is None:
        i1 = n
        i0 = max(0, n - (LAST_BARS if last is None else int(last)))
    else:
        i0 = 0 if start is None else pos(start, "start")
        i1 = n if end is None else pos(end, "end")
        if start is None and last is not None:
            i0 = max(0, i1 - int(last))
    i0, i1 = max(0, min(i0, n)), max(0, min(i1, n))
    if i1 - i0 < 2:
        if n < 2:   # no window asked for: the run itself is too short to draw (hunt73 F5)
            raise ConfigError(f"the run has {n} bar{'' if n == 1 else 's'} ({index[0] if n else 'none'}); a price "
                              "chart needs at least 2")
        raise ConfigError(f"the window {start!r} .. {end!r} holds {max(i1 - i0, 0)} bars of "
                         f"{index[0]} .. {index[-1]}; need at least 2")
    return i0, i1


def trade_pages(res: Any, trades_per_page: int = 10) -> int:
    """How many pages ``res.plot("trades", page=k)`` has (0 without trades).

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")   # 260 trades
    >>> trade_pages(res), trade_pages(res, trades_per_page=100)
    (26, 3)
    """
    if isinstance(trades_per_page, bool) or not isinstance(trades_per_page, (int, np.integer)) \
            or trades_per_page < 1:
        raise ConfigError(f"trades_per_page: expected a whole number, at least 1 (got {trades_per_page!r})")
    return -(-len(res.trades) // trades_per_page)


def open_at_end(res: Any) -> Optional[tuple[str, int]]:
    """``(direction, entry bar)`` of the position a single run still holds after its last
    bar (the last trade it opened), or None.

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")   # always in the market
    >>> direction, bar = open_at_end(res); direction in ("long", "short"), bar >= int(res.trades["exit_bar"].max())
    (True, True)
    """
    position = getattr(res, "position", None)
    journal = getattr(res, "journal", None)
    if position is None or journal is None or not len(position) or float(position.iloc[-1]) == 0.0:
        return None
    opened = journal[journal["event"] == "TRADE_OPENED"]
    if not len(opened):
        return None
    return ("long" if float(position.iloc[-1]) > 0 else "short"), int(opened["bar"].iloc[-1])


def _page_window(res: Any, page: int, trades_per_page: int, margin: int) -> tuple[int, int, str]:
    """Bars of page ``page``: its trades' entry and exit bars, ``margin`` bars either side."""
    n_pages = trade_pages(res, trades_per_page)
    if isinstance(page, bool) or not isinstance(page, (int, np.integer)):
        raise ConfigError(f"page: expected a whole number (got {page!r})")
    if n_pages == 0:
        held = open_at_end(res)
        still = "" if held is None else (f" (a {held[0]} position opened {res.data.index[held[1]]:%Y-%m-%d} is open "
                                         "at its end)")
        raise ConfigError(f"page: this run has no {'closed ' if held else ''}trades{still}; use start=/end= or "
                          "last= for a window of bars")
    if not -n_pages <= page < n_pages:
        raise ConfigError(f"page {page}: this run has {n_pages} page(s) of {trades_per_page} trades "
                         f"(0 .. {n_pages - 1}, or -{n_pages} .. -1)")
    k = int(page) % n_pages
    t = res.trades.sort_values("entry_bar", kind="stable").iloc[k * trades_per_page:(k + 1) * trades_per_page]
    n = len(res.data)
    i0 = max(0, int(t["entry_bar"].min()) - margin)
    i1 = min(n, int(t["exit_bar"].max()) + margin + 1)
    first = k * trades_per_page + 1
    shown = f"trade {first}" if len(t) == 1 else f"trades {first}-{first + len(t) - 1}"
    what = f"{shown} of {len(res.trades)} (page {k + 1} of {n_pages})"
    return i0, i1, what


def _candles(ax: Any, x: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> None:
    """Candlesticks at positions ``x``: wick high-low, body open-close (green up, red down).
    Drawn with matplotlib's collections (not one artist per bar, and not mplfinance,
    whose axes number bars from 0 and would not line up with the bar positions here)."""
    from matplotlib.collections import LineCollection, PolyCollection

    up = c >= o
    colors = np.where(up, LONG_COLOR, SHORT_COLOR)
    ax.add_collection(LineCollection(np.stack([np.column_stack([x, lo]), np.column_stack([x, h])], axis=1),
                                     colors=colors, linewidths=0.7, zorder=2, label="_candle wicks"))
    w = 0.35
    bottom, top = np.minimum(o, c), np.maximum(o, c)
    top = np.where(top - bottom > 0, top, bottom + (h - lo) * 0.02)   # a doji stays visible
    verts = np.stack([np.column_stack([x - w, bottom]), np.column_stack([x - w, top]),
                      np.column_stack([x + w, top]), np.column_stack([x + w, bottom])], axis=1)
    ax.add_collection(PolyCollection(verts, facecolors=np.where(up, "#ffffff", SHORT_COLOR), edgecolors=colors,
                                     linewidths=0.7, zorder=3, label="_candle bodies"))


def context_features(res: Any, only: Optional[Sequence[str]] = None) -> list[tuple[str, dict[str, np.ndarray]]]:
    """``(instance id, outputs)`` of the run's context workers, computed as the run computed
    them (from the run's feature cache when it has one). ``only`` keeps those instances.

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml")
    >>> [i for i, _ in context_features(res)], list(context_features(res, only=["adx_1"])[0][1])
    (['structure_1', 'atr_1', 'liquidity_1', 'ema_1', 'adx_1'], ['adx', 'plus_di', 'minus_di'])
    """
    from ..assembly.workforce import Workforce
    from ..workers.features import FeatureContext

    wf = Workforce.from_specs(res.specs)
    if only is not None:
        unknown = sorted(set(only) - {w.instance_id for w in wf.context})
        if unknown:
            raise ConfigError(f"features: no context worker {', '.join(unknown)}; context workers: "
                             f"{', '.join(w.instance_id for w in wf.context) or 'none'}")
    ctx = res.context if res.context is not None and getattr(res.context, "n", -1) == len(res.data) else \
        FeatureContext(res.data, pip_size=res.specs.pip_size, context_params=wf.context_params())
    return [(w.instance_id, ctx.feature(w.name, wf.feature_params(w), label=w.instance_id)) for w in wf.context
            if only is None or w.instance_id in only]


def _feature_layers(features: list[tuple[str, dict[str, np.ndarray]]], i0: int, i1: int, lo: float,
                    hi: float) -> tuple[list[tuple[str, np.ndarray]], dict[str, list[tuple[str, np.ndarray]]]]:
    """Split feature outputs into overlays on the price (float outputs whose values in the
    window lie within the window's price range, widened by half of it) and panels per
    instance; state codes, counts, flags and bar numbers (integer or boolean outputs,
    names ending in ``_bar``) are left out."""
    span = hi - lo
    overlays: list[tuple[str, np.ndarray]] = []
    panels: dict[str, list[tuple[str, np.ndarray]]] = {}
    for inst, outs in features:
        for name, arr in outs.items():
            arr = np.asarray(arr)
            if arr.dtype.kind != "f" or name.endswith("_bar") or arr.ndim != 1:
                continue
            y = arr[i0:i1].astype(float)
            ok = np.isfinite(y)
            if not ok.any():
                continue
            if lo - span / 2 <= float(y[ok].min()) and float(y[ok].max()) <= hi + span / 2:
                overlays.append((f"{inst}.{name}", y))
            else:
                panels.setdefault(inst, []).append((name, y))
    return overlays, panels


def _plot_trades(res: Any, start: Any = None, end: Any = None, last: Optional[int] = None,
                 figsize: Optional[Sequence[float]] = None, zones: bool = True, levels: bool = True,
                 min_zone_bars: int = 3, title: Optional[str] = None, dpi: float = 100,
                 page: Optional[int] = None, trades_per_page: int = 10, margin: int = 20,
                 features: bool | Sequence[str] = True, candles: Optional[bool] = None,
                 max_candles: int = 600) -> ResultFigure:
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    bars = res.data
    if bars is None:
        raise DataError("this result carries no price data (res.data is None); rerun it with mf.backtest")
    index = bars.index
    what = ""
    trade_pages(res, trades_per_page)   # checks trades_per_page, page= or not
    if page is not None:
        if start is not None or end is not None:
            raise ConfigError("page= picks the bars itself; give it without start=/end=")
        i0, i1, what = _page_window(res, page, trades_per_page, margin)
    else:
        i0, i1 = _window(index, start, end, last)
    x = np.arange(i0, i1)
    o, h, lo_, c = (bars[k].to_numpy(float)[i0:i1] for k in ("open", "high", "low", "close"))
    feats = [] if features is False else context_features(res, None if features is True else list(features))
    overlays, panels = _feature_layers(feats, i0, i1, float(np.min(lo_)), float(np.max(h)))
    if figsize is None:
        figsize = (12, 6 + 1.6 * len(panels))
    fig = _new_figure(figsize, dpi)
    gs = fig.add_gridspec(1 + len(panels), 1, height_ratios=[4] + [1.2] * len(panels))
    ax = fig.add_subplot(gs[0])
    ax.plot(x, c, color=CLOSE_COLOR, lw=0.6 if candles is not False else 1.0, alpha=0.6, label="Close")
    if candles or (candles is None and i1 - i0 <= max_candles):
        _candles(ax, x, o, h, lo_, c)
    # no green or red: those say long/short and up/down here
    palette = ["#6a3d9a", "#b15928", "#1f78b4", "#ff7f00", "#17becf", "#8c564b", "#e377c2", "#7f7f7f"]
    for k, (label, y) in enumerate(overlays):
        dense = np.isfinite(y).mean() > 0.5
        ax.plot(x, y, color=palette[k % len(palette)], lw=0.9 if dense else 0, ls="-" if dense else "none",
                marker=None if dense else ".", ms=4, alpha=0.85, label=label, zorder=4)

    # ---- setup zones (fair value gaps) from the journal
    if zones and len(res.journal):
        j = res.journal
        det = j[(j["event"] == "OPPORTUNITY_DETECTED") & (j["bar"] >= i0) & (j["bar"] < i1)]
        det = det[np.isfinite(det["zone_top"].to_numpy(float)) & np.isfinite(det["zone_bottom"].to_numpy(float))]
        if len(det):
            later = j[j["event"].isin(_ZONE_END_EVENTS) & j["opportunity_id"].isin(det["opportunity_id"])]
            end_bar = later.groupby("opportunity_id")["bar"].min()
            turned_down = set(later.loc[later["event"].isin(("OPPORTUNITY_REJECTED", "OPPORTUNITY_SKIPPED")),
                                        "opportunity_id"])
            labelled: set[str] = set()
            for row in det.itertuples(index=False):
                b0 = int(row.bar)
                b1 = int(end_bar.get(row.opportunity_id, i1 - 1))
                b1 = min(max(b1, b0 + min_zone_bars), i1 - 1)
                lo, hi = float(row.zone_bottom), float(row.zone_top)
                if row.opportunity_id in turned_down:
                    cat, color = "Rejected/skipped setup zone", REJECTED_COLOR
                elif row.direction == "long":
                    cat, color = "Bullish setup zone (FVG)", LONG_COLOR
                else:
                    cat, color = "Bearish setup zone (FVG)", SHORT_COLOR
                label = cat if cat not in labelled else "_nolegend_"
                labelled.add(cat)
                ax.add_patch(Rectangle((b0 - 0.5, min(lo, hi)), max(b1 - b0, 1) + 0.5, abs(hi - lo),
                                       facecolor=color, edgecolor=color, alpha=0.2, lw=0.6, label=label))

    # ---- trades: entry/exit markers, stop/target segments
    t = res.trades
    if len(t):
        t = t[(t["entry_bar"] < i1) & (t["exit_bar"] >= i0)]
    if len(t):
        eb, xb = t["entry_bar"].to_numpy(int), t["exit_bar"].to_numpy(int)
        long_ = (t["direction"] == "long").to_numpy()
        ein = (eb >= i0) & (eb < i1)
        xin = (xb >= i0) & (xb < i1)
        for mask, marker, color, label in (
                (long_ & ein, "^", LONG_COLOR, "Long entry"), (~long_ & ein, "v", SHORT_COLOR, "Short entry")):
            if mask.any():
                ax.scatter(eb[mask], t["entry_price"].to_numpy(float)[mask], marker=marker, s=70, color=color,
                           edgecolor="black", linewidths=0.5, zorder=6, label=label)
        for mask, color, label in ((long_ & xin, LONG_COLOR, "Long exit"), (~long_ & xin, SHORT_COLOR, "Short exit")):
            if mask.any():
                ax.scatter(xb[mask], t["exit_price"].to_numpy(float)[mask], marker="X", s=60, color=color,
                           edgecolor="black", linewidths=0.5, zorder=5, label=label)
        if levels:
            lo_x = np.maximum(eb, i0) - 0.4
            hi_x = np.minimum(xb, i1 - 1) + 0.4
            for col, color, label in (("stop_price", STOP_COLOR, "Stop"), ("target_price", TARGET_COLOR, "Target")):
                y = t[col].to_numpy(float)
                ok = np.isfinite(y)
                if ok.any():
                    ax.hlines(y[ok], lo_x[ok], hi_x[ok], colors=color, linestyles="--", lw=1.2, label=label,
                              zorder=4)

    # a position still open at the end is no row of the trades table: shaded from its entry
    # bar, which a chart of closed trades never showed (hunt104 F5)
    held = open_at_end(res)
    if held is not None and held[1] < i1:
        direction, bar = held
        ax.axvspan(max(bar, i0) - 0.5, i1 - 0.5, color=LONG_COLOR if direction == "long" else SHORT_COLOR,
                   alpha=0.08, lw=0, zorder=1, label=f"{direction.capitalize()} position open at the end")

    step_s = float(np.median(np.diff(index.asi8[: min(len(index), 200)]))) / 1e9 if len(index) > 1 else 86400.0
    tfmt = "%Y-%m-%d" if step_s >= 86400 else "%m-%d %H:%M"

    def fmt(v: float, _pos: Any) -> str:
        k = int(round(v))
        return index[k].strftime(tfmt) if 0 <= k < len(index) else ""

    span = f"{index[i0]:%Y-%m-%d %H:%M} \u2192 {index[i1 - 1]:%Y-%m-%d %H:%M} ({i1 - i0} bars)"
    ax.set_xlim(i0 - 1, i1)
    ax.set_ylabel("Price")
    ax.grid(alpha=0.3)
    ax.set_title(title or (f"{plain(res.name)}: {what}, {span}" if what else f"{plain(res.name)}: trades {span}"))
    ax.legend(loc="upper left", fontsize="small", ncol=3, framealpha=0.8)
    bottom = ax
    for r, (inst, outs) in enumerate(panels.items(), start=1):
        axp = fig.add_subplot(gs[r], sharex=ax)
        for k, (name, y) in enumerate(outs):
            axp.plot(x, y, color=palette[k % len(palette)], lw=0.9, label=name)
        axp.set_ylabel(inst)
        axp.grid(alpha=0.3)
        axp.legend(loc="upper left", fontsize="x-small", ncol=len(outs), framealpha=0.8)
        bottom.tick_params(labelbottom=False)
        bottom = axp
    bottom.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    bottom.xaxis.set_major_formatter(FuncFormatter(fmt))
    bottom.set_xlabel("Bar time")
    return fig


# ---------------------------------------------------------------- optimization

#: the widest and tallest heatmap whose cells hold their value's label (the figure is at
#: most 14 x 10 inches)
LABELLED_COLUMNS = 24
LABELLED_ROWS = 30


def plot_optimization(res: Any, x: Optional[str] = None, y: Optional[str] = None, metric: Optional[str] = None,
                      agg: str = "best", annotate: Optional[bool] = None, cmap: str = "RdYlGn",
                      figsize: Optional[Sequence[float]] = None, dpi: float = 100) -> ResultFigure:
    """Heatmap of ``metric`` (default: the target metric) over two parameter columns
    (default: the first two). Other parameters are fixed at the best run's values
    (``agg="best"``) or aggregated (``"mean"``, ``"max"``, ``"min"``, ``"median"``).
    A one-parameter space gives a line plot. Each cell shows its value while the cells can
    hold a label (at most :data:`LABELLED_COLUMNS` x :data:`LABELLED_ROWS`; ``annotate``
    True or False decides instead).

    >>> import metaflow_nb as mf
    >>> opt = mf.optimize("config/optimizations/sma_grid.yaml", progress=False)
    >>> print(plot_optimization(opt, metric="total_return_pct", agg="mean").axes[0].get_title())
    SMA grid: Total return (%) by sma_1.fast × sma_1.slow
    mean over stops_1.stop_loss_pct
    """
    frame = res.all_results
    params = list(res.param_columns)
    metric = metric or res.target.primary_metric
    numeric = [c for c in frame.columns if c not in params and pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    if metric not in numeric:
        # only a number colours a cell (hunt116 F5: 'status' was listed, then 'could not
        # convert string to float')
        what = "not a number a cell can show" if metric in frame.columns else "unknown"
        raise ConfigError(f"metric {metric!r}: {what}; metrics: {', '.join(numeric)}")
    for name, v in (("x", x), ("y", y)):
        if v is not None and v not in params:
            raise ConfigError(f"{name}={v!r} is not a parameter of this optimization; parameters: {', '.join(params)}")
    if agg not in ("best", "mean", "max", "min", "median"):
        raise ConfigError(f"agg={agg!r}: use 'best', 'mean', 'max', 'min' or 'median'")
    ok = frame[frame["status"] == "ok"]
    maximize = res.target.maximize()
    if len(params) == 1:
        return _plot_opt_line(res, ok, params[0], metric, figsize or (8, 4.5), dpi)
    if x is None:
        x = next(p for p in params if p != y)
    if y is None:
        y = next(p for p in params if p != x)
    if x == y:
        raise ConfigError(f"x and y are both {x!r}; pick two different parameters")
    others = [p for p in params if p not in (x, y)]

    best_row = res.best_row
    fix_row, fixed_at = best_row, "the best run"
    if best_row is None and len(ok):
        # no run the sweep could pick: the others are fixed at the run best by the plotted
        # metric, in its own direction, and no cell is boxed (hunt116 F1: a refused run was
        # boxed 'best run', the deepest drawdown for metric='max_drawdown_pct')
        vals = pd.to_numeric(ok[metric], errors="coerce")
        if vals.notna().any():
            up = METRIC_DIRECTION.get(metric, 1 if maximize else -1) >= 0
            fix_row = ok.loc[vals.idxmax() if up else vals.idxmin()]
            fixed_at = f"the run of the best {_metric_label(metric)} (no best run)"
    note = ""
    fixed: dict[str, Any] = {}
    if agg == "best":
        sub = ok
        if others and fix_row is not None:
            fixed = {p: fix_row[p] for p in others}
            for p, v in fixed.items():
                sub = sub[sub[p] == v]
            note = f"others fixed at {fixed_at}: " + ", ".join(f"{p}={_fmt_value(v)}" for p, v in fixed.items())
        grid = sub.groupby([y, x])[metric].first().unstack(x) if len(sub) else pd.DataFrame()
    else:
        grid = ok.groupby([y, x])[metric].agg(agg).unstack(x) if len(ok) else pd.DataFrame()
        if others:
            note = f"{agg} over " + ", ".join(others)
    xs, ys = _sorted_unique(frame[x]), _sorted_unique(frame[y])
    grid = grid.reindex(index=ys, columns=xs) if len(grid) else pd.DataFrame(np.nan, index=ys, columns=xs)
    values = grid.to_numpy(float)

    if figsize is None:
        figsize = (min(3 + 0.9 * len(xs), 14), min(2.5 + 0.6 * len(ys), 10))
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    data = np.ma.masked_invalid(values)
    cmap_name, norm = metric_scale(metric, values, cmap)
    mesh = ax.pcolormesh(np.arange(len(xs) + 1) - 0.5, np.arange(len(ys) + 1) - 0.5, data,
                         cmap=cmap_name, norm=norm, shading="flat", edgecolors="white", linewidth=0.5)
    fig.colorbar(mesh, ax=ax, label=f"{_metric_label(metric)}: {_direction_note(metric)}")
    if annotate is None:
        # a label a cell cannot hold is unreadable, and each costs ~1.35 ms (hunt45 F4: a
        # 100 x 200 grid took 27 s): past that the colour scale speaks alone, and the title says so
        annotate = len(xs) <= LABELLED_COLUMNS and len(ys) <= LABELLED_ROWS
        if not annotate:
            note = (note + "\n" if note else "") + f"{len(xs)} x {len(ys)} cells: no labels (annotate=True draws them)"
    if annotate:
        neutral = cmap_name == NEUTRAL_CMAP
        failed = _failed_cells(frame, x, y, xs, ys, fixed)
        for r in range(len(ys)):
            for c in range(len(xs)):
                v = values[r, c]
                pos = float(np.clip(norm(v), 0.0, 1.0)) if np.isfinite(v) else 0.5
                dark = np.isfinite(v) and (pos > 0.65 if neutral else abs(pos - 0.5) > 0.35)
                text = "failed" if (r, c) in failed and not np.isfinite(v) else _heat_text(metric, v)
                ax.text(c, r, text, ha="center", va="center", fontsize="small", color="white" if dark else "black")
    if best_row is not None and best_row[x] in xs and best_row[y] in ys:
        bx, by = xs.index(best_row[x]), ys.index(best_row[y])
        if np.isfinite(values[by, bx]) and (agg == "best" or not others):
            from matplotlib.patches import Rectangle
            ax.add_patch(Rectangle((bx - 0.5, by - 0.5), 1, 1, fill=False, edgecolor="black", lw=2.5,
                                   label="best run"))
            ax.legend(loc="upper left", bbox_to_anchor=(0, -0.12), fontsize="small", frameon=False)
    ax.set_xticks(range(len(xs)), [_fmt_value(v) for v in xs])
    ax.set_yticks(range(len(ys)), [_fmt_value(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{plain(res.name)}: {_metric_label(metric)} by {x} \u00d7 {y}" + (f"\n{note}" if note else ""),
                 fontsize="medium")
    return fig


def _plot_opt_line(res: Any, ok: pd.DataFrame, p: str, metric: str, figsize: Sequence[float],
                   dpi: float) -> ResultFigure:
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    xs = _sorted_unique(res.all_results[p])
    ser = ok.groupby(p)[metric].first().reindex(xs) if len(ok) else pd.Series(np.nan, index=xs)
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in xs)
    pos = np.asarray(xs, float) if numeric else np.arange(len(xs))
    ax.plot(pos, ser.to_numpy(float), marker="o", color=EQUITY_COLOR, label=_metric_label(metric))
    best = res.best_row
    if best is not None and best[p] in xs:
        k = xs.index(best[p])
        ax.scatter([pos[k]], [ser.iloc[k]], marker="*", s=250, color="gold", edgecolor="black", zorder=5,
                   label="best run")
    if not numeric:
        ax.set_xticks(pos, [_fmt_value(v) for v in xs])
    ax.set_xlabel(p)
    ax.set_ylabel(_metric_label(metric))
    ax.set_title(f"{plain(res.name)}: {_metric_label(metric)} by {p}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


# ---------------------------------------------------------------- variants

def plot_variants(cmp: Any, kind: str = "equity", figsize: Optional[Sequence[float]] = None,
                  dpi: float = 100) -> ResultFigure:
    """``kind="equity"``: the variants' equity curves overlaid; ``kind="rejections"``:
    grouped bars of rejected opportunities per reason code and variant (what
    :meth:`VariantComparison.plot <metaflow_nb.services.variants.VariantComparison.plot>`
    draws; its example shows both)."""
    results = cmp.results
    if kind == "equity":
        fig = _new_figure(figsize or (10, 5), dpi)
        ax = fig.add_subplot(1, 1, 1)
        for k, (name, r) in enumerate(results.items()):
            ax.plot(*envelope(r.equity.index, r.equity.to_numpy(float)), lw=1.1, **series_style(k),
                    label=f"{plain(name)} ({r.metrics.get('total_return_pct', float('nan')):+.2f} %)")
        if not results:
            ax.text(0.5, 0.5, "no variant ran successfully", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("Time")
        ax.set_ylabel("Equity")
        ax.set_title(_wrapped(f"{plain(cmp.name)}: equity by variant", fig))
        ax.grid(alpha=0.3)
        if len(results) > 1:
            ax.legend(loc="upper left", fontsize="small")
        if results:
            _date_axis(ax)
        return fig
    if kind == "rejections":
        counts = {name: c[c > 0] for name, c in ((n, r.rejections()["count"]) for n, r in results.items())}
        total = pd.concat(counts.values(), axis=1).fillna(0).sum(axis=1) if counts else pd.Series(dtype=float)
        reasons = list(total.sort_values(ascending=False, kind="stable").index)
        fig = _new_figure(figsize or (max(6, 1.6 * max(len(reasons), 1) + 3), 4.5), dpi)
        ax = fig.add_subplot(1, 1, 1)
        ax.set_title(_wrapped(f"{plain(cmp.name)}: rejection reasons by variant", fig))
        if not reasons:
            # no bars: empty axes around 0 and a legend of one colour read as a broken chart (hunt103 F2)
            ax.text(0.5, 0.5, "no opportunity was rejected", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return fig
        n = max(len(counts), 1)
        width = 0.8 / n
        pos = np.arange(len(reasons))
        for k, (name, c) in enumerate(counts.items()):
            vals = c.reindex(reasons).fillna(0).to_numpy(float)
            bars = ax.bar(pos - 0.4 + width * (k + 0.5), vals, width, label=plain(name), color=f"C{k % 10}",
                          hatch=HATCHES[(k // 10) % len(HATCHES)] or None, edgecolor="white", linewidth=0.3)
            ax.bar_label(bars, fmt="%d", fontsize="x-small", padding=1)
        ax.set_xticks(pos, reasons)
        ax.set_xlabel("Reason code")
        ax.set_ylabel("Rejected opportunities")
        ax.grid(axis="y", alpha=0.3)
        if len(counts) > 1:
            ax.legend(fontsize="small")
        return fig
    raise ConfigError(f"unknown plot kind {kind!r}; kinds: 'equity', 'rejections'")


# ---------------------------------------------------------------- walk-forward

def plot_walk_forward(wf: Any, figsize: Sequence[float] = (11, 7), dpi: float = 100) -> ResultFigure:
    """In-sample (best of the grid) vs out-of-sample score per window as bars, and the
    stitched out-of-sample equity below with the window starts marked."""
    w = wf.windows
    metric = wf.primary_metric
    fig = _new_figure(figsize, dpi)
    gs = fig.add_gridspec(2, 1, height_ratios=[1, 1.2])
    ax = fig.add_subplot(gs[0])
    axe = fig.add_subplot(gs[1])
    pos = np.arange(len(w))
    is_s = pd.to_numeric(w["is_score"], errors="coerce").to_numpy(float) if "is_score" in w else np.full(len(w), np.nan)
    col = f"oos_{metric}"
    oos_s = pd.to_numeric(w[col], errors="coerce").to_numpy(float) if col in w else np.full(len(w), np.nan)
    ax.bar(pos - 0.2, is_s, 0.4, color="#7fa7d1", label="In-sample (best of grid)")
    ax.bar(pos + 0.2, oos_s, 0.4, color="#e08a3c", label="Out-of-sample")
    ax.axhline(0, color="black", lw=0.6)
    starts = w["oos_start"] if "oos_start" in w else [None] * len(w)
    ax.set_xticks(pos, [f"W{int(k)}\n{pd.Timestamp(s):%Y-%m-%d}" if s is not None else f"W{int(k)}"
                        for k, s in zip(w["window"] if "window" in w else pos, starts)], fontsize="small")
    ax.set_xlabel("Window (out-of-sample start)")
    ax.set_ylabel(_metric_label(metric))
    eff = getattr(wf, "efficiency", float("nan"))
    ax.set_title(f"{plain(wf.name)}: in-sample vs out-of-sample {_metric_label(metric)} "
                 f"(walk-forward efficiency {f'{eff:.2f}' if np.isfinite(eff) else 'n/a'})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    eq = wf.oos_equity
    if len(eq):
        axe.plot(*envelope(eq.index, eq.to_numpy(float)), color=EQUITY_COLOR, lw=1.1,
                 label="Out-of-sample equity (stitched)")
        for s in starts:
            if s is not None:
                axe.axvline(pd.Timestamp(s), color="grey", lw=0.6, ls=":")
        _date_axis(axe)
    else:
        axe.text(0.5, 0.5, "no out-of-sample run", ha="center", va="center", transform=axe.transAxes)
    axe.set_xlabel("Time")
    axe.set_ylabel("Equity")
    axe.set_title("Stitched out-of-sample equity (dotted lines: window starts)")
    axe.grid(alpha=0.3)
    return fig
