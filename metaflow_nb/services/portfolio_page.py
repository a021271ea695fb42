"""A portfolio run's page: one self-contained, offline HTML file that ``res.report()`` of
:class:`~metaflow_nb.services.portfolio.PortfolioResult` (mode ``independent``) and
:class:`~metaflow_nb.services.portfolio.SharedPortfolioResult` (mode ``portfolio``) write.

It reuses the single run's tear sheet pieces (:mod:`.tearsheet_page`: CSS, tables, PNG
figures, one formatter per metric) and adds what only a basket has: equity per account
(or pnl per instrument on a shared account), the per-instrument breakdown, the
contributions and the correlation of the instruments' strategy returns. Like the tear
sheet it has no script and no remote reference; the one link is the trades CSV beside it.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import pandas as pd

from .formatting import format_metric, metrics_table_html, plain, stamp
from .names import safe_stem
from .tearsheet_page import EQUITY_COLOR, PAGE_CSS, SECTION_CSS, _dates, _figure, _img, _table, write_page_files

if TYPE_CHECKING:
    from .plots import ResultFigure

#: trades shown on the page (all of them are in the CSV)
TOP_TRADES = 50
#: past these many instruments a legend covers its plot, a bar per instrument outgrows the
#: page, and the correlation matrix's numbers are a table no one reads (3.4 MB at 500):
#: the figures and the page summarise instead (hunt37 F6)
LEGEND_MAX = 20
BARS_MAX = 40
MATRIX_MAX = 30
LABELS_MAX = 60

#: the breakdown's columns, in page order, with their headers; values go through
#: :func:`~metaflow_nb.services.formatting.format_metric` under the key on the left
BREAKDOWN_COLUMNS = {
    "bars": "bars", "first": "first bar", "last": "last bar", "trades": "closed trades",
    "pnl": "pnl (open at last close)",
    "return_pct": "return", "contribution_pct": "contribution", "exposure_pct": "exposure",
    "max_drawdown_pct": "max drawdown", "sharpe_ratio": "Sharpe",
    "skipped_max_positions": "skipped: max_positions", "skipped_cash": "skipped: cash",
}

#: formatters of the breakdown's keys that are not metrics
_FORMATS = {"bars": "{:d}", "trades": "{:d}", "pnl": "{:,.2f}", "contribution_pct": "{:.2f} %",
            "skipped_max_positions": "{:d}", "skipped_cash": "{:d}"}


def value_text(key: str, v: Any) -> str:
    """One breakdown or trade value as the page shows it (the metric's formatter when
    ``key`` is a metric; dates as ``YYYY-MM-DD HH:MM``).

    >>> value_text("contribution_pct", 1.234), value_text("trades", 7), value_text("total_return_pct", 3.0)
    ('1.23 %', '7', '3.00 %')
    """
    if isinstance(v, pd.Timestamp) or v is pd.NaT:
        return stamp(v)
    fmt = _FORMATS.get(key)
    if fmt is None:
        return format_metric(key, v)
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return fmt.format(int(v) if "d}" in fmt else float(v))


# ---------------------------------------------------------------- figures

def equity_figure(res: Any) -> "ResultFigure":
    """The portfolio's total equity (top) and each account's equity, or on a shared account
    each instrument's pnl to date (bottom), on the union calendar.

    >>> from metaflow_nb.services.portfolio import run_portfolio
    >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
    >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
    >>> [ax.get_ylabel() for ax in equity_figure(res).axes]
    ['Portfolio equity', 'Equity per account']
    """
    fig = _figure(11.0, 5.6)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1]})
    top.plot(res.equity.index, res.equity["total"], color=EQUITY_COLOR, lw=1.2, label="total")
    top.set_ylabel("Portfolio equity")
    top.grid(alpha=0.3)
    curves, label = res._curves()
    draw_curves(bottom, curves, res.symbols, ncol=6)
    bottom.set_ylabel(label)
    bottom.grid(alpha=0.3)
    _dates(bottom)
    return fig


def draw_curves(ax: Any, curves: pd.DataFrame, symbols: list[str], ncol: int) -> None:
    """One line per symbol, with a legend up to :data:`LEGEND_MAX` of them (past that it
    covers the plot: the title says how many instead)."""
    from .plots import series_style
    for k, sym in enumerate(symbols):
        # past ten instruments, dashes tell the 11th from the 1st (hunt104 F3, as variants: hunt59 F2)
        ax.plot(curves.index, curves[sym], lw=0.9 if len(symbols) <= LEGEND_MAX else 0.5, label=plain(sym),
                **series_style(k))
    if len(symbols) <= LEGEND_MAX:
        ax.legend(loc="upper left", fontsize=8, ncol=min(len(symbols), ncol))
    else:
        ax.set_title(f"{len(symbols)} instruments (no legend past {LEGEND_MAX}: the breakdown names them)",
                     fontsize=9)


def contributions_figure(res: Any, title: Optional[str] = None, figsize: Optional[Sequence[float]] = None,
                         dpi: float = 100) -> "ResultFigure":
    """A bar per instrument: its contribution to the portfolio's return (%); past
    :data:`BARS_MAX` instruments the largest and the smallest half of that many, sorted.
    ``figsize``: by default as wide as the bars need.

    >>> from metaflow_nb.services.portfolio import run_portfolio
    >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
    >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
    >>> ax = contributions_figure(res).axes[0]
    >>> ax.get_ylabel(), [t.get_text() for t in ax.get_xticklabels()]
    ('Contribution to return (%)', ['FB', 'IBM'])
    """
    from .plots import LONG_COLOR, SHORT_COLOR, _new_figure
    b = res.breakdown()["contribution_pct"]
    n = len(b)
    if n > BARS_MAX:
        ranked = b.sort_values(ascending=False, kind="stable")
        b = pd.concat([ranked.iloc[:BARS_MAX // 2], ranked.iloc[-(BARS_MAX // 2):]])
        title = (f"{title}: " if title else "") + f"the {BARS_MAX // 2} largest and smallest of {n} instruments"
    fig = _new_figure(figsize or (min(11.0, max(4.0, 0.45 * len(b) + 2.0)), 3.4), dpi)
    ax = fig.subplots()
    v = b.to_numpy(float)
    ax.bar(range(len(b)), v, color=[LONG_COLOR if x >= 0 else SHORT_COLOR for x in v])
    ax.set_xticks(range(len(b)), [plain(s) for s in b.index])
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("Contribution to return (%)")
    ax.tick_params(axis="x", labelrotation=45 if len(b) > 8 else 0)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def correlation_figure(corr: pd.DataFrame) -> "ResultFigure":
    """The correlation matrix as a heatmap on a diverging scale centred on zero (-1 .. 1),
    as the monthly-returns heatmap is, each cell annotated.

    >>> corr = pd.DataFrame([[1.0, 0.25], [0.25, 1.0]], index=["A", "B"], columns=["A", "B"])
    >>> [t.get_text() for t in correlation_figure(corr).axes[0].texts]
    ['1.00', '0.25', '0.25', '1.00']
    """
    from matplotlib.colors import Normalize
    n = len(corr)
    side = min(10.0, max(3.5, 0.45 * n + 2.0))
    fig = _figure(side + 1.0, side)
    ax = fig.subplots()
    values = corr.to_numpy(float)
    im = ax.imshow(np.ma.masked_invalid(values), cmap="RdYlGn", norm=Normalize(-1.0, 1.0), aspect="auto")
    if n <= LABELS_MAX:
        ax.set_xticks(range(n), [plain(c) for c in corr.columns], rotation=90 if n > 8 else 0, fontsize=8)
        ax.set_yticks(range(n), [plain(c) for c in corr.index], fontsize=8)
    else:   # labels past that overprint each other
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{n} instruments in the breakdown's order")
    if n <= 25:   # past that the numbers no longer fit their cells
        for i in range(n):
            for j in range(n):
                x = values[i, j]
                ax.text(j, i, "n/a" if not np.isfinite(x) else f"{x:.2f}", ha="center", va="center",
                        fontsize=7 if n > 10 else 8)
    fig.colorbar(im, ax=ax, shrink=0.8, label="correlation of daily strategy returns")
    return fig


# ---------------------------------------------------------------- tables

def breakdown_table_html(res: Any) -> str:
    """The per-instrument breakdown, one formatter per column (:func:`value_text`).

    >>> from metaflow_nb.services.portfolio import run_portfolio
    >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
    >>> breakdown_table_html(run_portfolio("config/runs/sma_cross.yaml", op)).count("<tr>")
    3
    """
    b = res.breakdown()
    cols = [c for c in BREAKDOWN_COLUMNS if c in b.columns]
    rows = [[str(sym), *(value_text(c, r[c]) for c in cols)] for sym, r in b.iterrows()]
    return _table(["symbol", *(BREAKDOWN_COLUMNS[c] for c in cols)], rows, "mf-breakdown")


def _flat_note(corr: pd.DataFrame) -> str:
    """Why an instrument's row is n/a even on its diagonal: its strategy returns never
    moved (no trade), and a constant has no correlation.

    >>> corr = pd.DataFrame([[1.0, np.nan], [np.nan, np.nan]], index=["A", "B"], columns=["A", "B"])
    >>> _flat_note(corr)
    '; n/a for B: its strategy returns never moved (no trade), and a constant has no correlation'
    """
    diag = np.diag(corr.to_numpy(float))
    flat = [str(s) for s, x in zip(corr.index, diag) if not np.isfinite(x)]
    if not flat:
        return ""
    named = ", ".join(flat[:10]) + (f" and {len(flat) - 10} more" if len(flat) > 10 else "")
    return f"; n/a for {named}: its strategy returns never moved (no trade), and a constant has no correlation"


def correlation_table_html(corr: pd.DataFrame, pairs: int = 10) -> str:
    """The correlation matrix as numbers (two decimals; ``n/a`` without common days); past
    :data:`MATRIX_MAX` instruments the mean over the pairs and the ``pairs`` most
    correlated pairs instead (``res.correlation()`` has the whole matrix).

    >>> corr = pd.DataFrame([[1.0, np.nan], [np.nan, 1.0]], index=["A", "B"], columns=["A", "B"])
    >>> correlation_table_html(corr).count("<td>n/a</td>"), correlation_table_html(corr).count("<td>1.00</td>")
    (2, 2)
    """
    values = corr.to_numpy(float)
    if len(corr) <= MATRIX_MAX:
        rows = [[str(s), *("n/a" if not np.isfinite(x) else f"{x:.2f}" for x in r)]
                for s, r in zip(corr.index, values)]
        return _table(["", *map(str, corr.columns)], rows, "mf-correlation")
    i, j = np.triu_indices(len(corr), k=1)
    v = values[i, j]
    ok = np.isfinite(v)
    order = np.argsort(-v[ok], kind="stable")[:pairs]
    a, b, v = i[ok][order], j[ok][order], v[ok][order]
    mean = float(np.mean(values[i, j][ok])) if ok.any() else float("nan")
    rows = [[str(corr.index[x]), str(corr.columns[y]), f"{c:.2f}"] for x, y, c in zip(a, b, v)]
    return (f"<p class='mf-note'>{len(corr)} instruments: the mean correlation over the {int(ok.sum()):,} pairs "
            f"with common days is {mean:.2f}; the {len(rows)} most correlated pairs (the whole matrix: "
            f"<code>res.correlation()</code>):</p>" + _table(["instrument", "instrument", "correlation"], rows,
                                                              "mf-correlation"))


#: the trades' columns shown on the page (the CSV has all)
TRADE_COLUMNS = ("symbol", "direction", "entry_time", "entry_price", "exit_time", "exit_price", "size",
                 "pnl", "return_pct", "exit_reason")


def trades_table_html(trades: pd.DataFrame, top: int = TOP_TRADES) -> str:
    """The ``top`` trades by absolute pnl (best and worst first), with their symbol.

    >>> t = pd.DataFrame({"symbol": ["A", "B", "A"], "direction": ["long", "short", "long"], "pnl": [10.0, -250.0, 40.0]})
    >>> print(trades_table_html(t, top=2).split("<tbody>")[1])   # the two largest moves, the loss first
    <tr><th>B</th><td>short</td><td>-250.00</td></tr><tr><th>A</th><td>long</td><td>40.00</td></tr></tbody></table></div>
    """
    if trades.empty:
        return "<p class='mf-note'>No trades.</p>"
    cols = [c for c in TRADE_COLUMNS if c in trades.columns]
    t = trades.loc[trades["pnl"].abs().sort_values(ascending=False, kind="stable").index[:top], cols]

    def cell(c: str, v: Any) -> str:
        if c in ("symbol", "direction", "exit_reason"):
            return str(v)
        if c in ("entry_price", "exit_price", "size"):
            return f"{float(v):.6g}"
        if c == "pnl":
            return value_text("pnl", v)
        return value_text(c, v)

    rows = [[cell(c, r[c]) for c in cols] for _, r in t.iterrows()]
    return _table(list(cols), rows, "mf-trades")


# ---------------------------------------------------------------- the page

def portfolio_html(res: Any, trades_csv: Optional[str] = None, top: int = TOP_TRADES, level: int = 2) -> str:
    """The portfolio's section as one HTML block (``<div class='mf-tearsheet'>``): facts,
    portfolio metrics and the costs line, equity, the breakdown, contributions, the
    correlation heatmap and table, the top trades and a link to ``trades_csv``; headings
    at ``level``. :func:`page_html` and a report's portfolio pages show it.

    >>> from metaflow_nb.services.portfolio import run_portfolio
    >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
    >>> block = portfolio_html(run_portfolio("config/runs/sma_cross.yaml", op), level=3)
    >>> "<h3>Per instrument</h3>" in block, "<h1>" in block, "<script" in block
    (True, False, False)
    """
    h = f"h{level}"
    idx = res.index
    facts = [("Basket", res.name), ("Mode", res.mode + (" (one account shared by all)" if res.mode == "portfolio"
                                                       else " (one account per instrument)")),
             ("Instruments", f"{len(res.symbols)}: {', '.join(res.symbols)}"),
             ("Calendar", f"union of the instruments' bars: {len(idx)} bars, {stamp(idx[0])} .. {stamp(idx[-1])}"),
             ("Starting equity", f"{res.starting_cash:,.2f}")]
    if res.mode == "portfolio" and getattr(res.operation, "max_positions", None):
        facts.append(("Max positions", str(res.operation.max_positions)))
    if res.mode == "portfolio":
        facts.append(("Simultaneous setups", "by the opportunity workers' scores, highest first, ties in basket order"
                      if getattr(res.operation, "rank", "basket") == "score" else "in basket order"))
    facts_html = "".join(f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
                         for k, v in facts)
    corr = res.correlation()
    n = len(res.trades)
    csv = (f"<p><a href='{html.escape(trades_csv, quote=True)}' download>All {n} trades as CSV</a> "
           f"({html.escape(trades_csv)}, with a symbol column)</p>" if trades_csv else "")
    curves = ("each instrument's pnl to date on the shared account" if res.mode == "portfolio"
              else "each account's equity")
    parts = [
        f"<div class='mf-scroll'><table class='mf-facts'>{facts_html}</table></div>",
        f"<p class='mf-costs'>{html.escape(res.costs_text())}</p>",
        f"<div class='mf-scroll'>{metrics_table_html(res.metrics, 'Portfolio metrics')}</div>",
        f"<{h}>Equity</{h}>", _img(equity_figure(res), f"portfolio equity and {curves}"),
        f"<p class='mf-note'>Top: the portfolio's total equity; bottom: {curves}.</p>",
        f"<{h}>Per instrument</{h}>", breakdown_table_html(res),
        "<p class='mf-note'>Contribution: the instrument's pnl over the portfolio's starting equity (they add "
        "up to the portfolio's return).</p>",
        f"<{h}>Contributions to return</{h}>", _img(contributions_figure(res), "contributions to return"),
        f"<{h}>Correlation of the instruments' strategy returns</{h}>",
        _img(correlation_figure(corr), "correlation heatmap"), correlation_table_html(corr),
        "<p class='mf-note'>Pearson correlation of daily strategy returns over the days both instruments "
        "have bars" + _flat_note(corr) + ".</p>",
        f"<{h}>Trades (top {min(top, n)} of {n} by absolute pnl)</{h}>", trades_table_html(res.trades, top), csv,
    ]
    return f"{SECTION_CSS}<div class='mf-tearsheet'>{''.join(parts)}</div>"


def page_html(res: Any, title: Optional[str] = None, trades_csv: Optional[str] = None,
              top: int = TOP_TRADES) -> str:
    """The whole page: the title over :func:`portfolio_html`.

    >>> from metaflow_nb.services.portfolio import run_portfolio
    >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
    >>> page = page_html(run_portfolio("config/runs/sma_cross.yaml", op), trades_csv="t.csv")
    >>> "Correlation" in page, "href='t.csv'" in page, "<script" in page
    (True, True, False)
    """
    name = title or f"{res.name}: portfolio"
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(name)}</title>{PAGE_CSS}</head><body>"
            f"<h1>{html.escape(name)}</h1>{portfolio_html(res, trades_csv, top)}</body></html>")


def write_page(res: Any, path: Optional[str | Path] = None, title: Optional[str] = None,
               top: int = TOP_TRADES) -> Path:
    """Write the portfolio page to ``path`` (an ``.html`` file, or a folder; default
    ``reports/``) as ``<basket>-<mode>-<run id, 8 digits>.html`` (another strategy or
    other params on the same basket get a page of their own, as single runs do) and every
    trade beside it as ``<stem>_trades.csv`` (with ``symbol``); returns the page's path."""
    return write_page_files(res.trades, path, f"{safe_stem(res.name)}-{res.mode}-{res.basket_specs.run_id[:8]}.html",
                            lambda csv_name: page_html(res, title, csv_name, top))
