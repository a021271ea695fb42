"""A run's tear sheet as figures and HTML: the section the report pages show and the
self-contained page ``res.report()`` writes.

The numbers come from :mod:`.tearsheet`; this module only draws and lays them out. It
sits in services, beside the results and their figures (:mod:`.plots`), because
``BacktestResult.report()`` writes it and services import nothing above them; the report
notebooks (:mod:`metaflow_nb.reporting.pages`) show the same section.

The page is offline by construction: figures are embedded PNG (``data:`` URIs), the CSS
is inline, there is no script, and the one link is the trades CSV next to the page.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..paths import user_path
from .files import write_csv, write_text
from .formatting import METRIC_LABELS, format_metric, metrics_table_html, plain, stamp
from .names import safe_stem
from .tearsheet import MONTHS, TearSheet, tearsheet

if TYPE_CHECKING:
    from .plots import ResultFigure

EQUITY_COLOR = "#1f4e79"
BENCH_COLOR = "#8c8c8c"
DRAWDOWN_COLOR = "#c0392b"
SHARPE_COLOR = "#1f4e79"
VOL_COLOR = "#e67e22"

#: the page's CSS: tables never wider than the page (they scroll inside their box), figures
#: scale down with the window; the body stays within a 1280 px window
SECTION_CSS = """<style>
.mf-tearsheet h2 {font-size: 18px; margin: 22px 0 6px; border-bottom: 1px solid #ddd; padding-bottom: 3px}
.mf-tearsheet table {border-collapse: collapse; font-size: 12px; margin: 4px 0 12px}
.mf-tearsheet th, .mf-tearsheet td {padding: 3px 8px; border-bottom: 1px solid #e4e4e4; white-space: nowrap}
.mf-tearsheet td {text-align: right}
.mf-tearsheet .mf-params td {text-align: left}
.mf-tearsheet th {text-align: left}
.mf-tearsheet .mf-scroll {overflow-x: auto; max-width: 100%}
.mf-tearsheet img {max-width: 100%; height: auto; display: block}
.mf-tearsheet .mf-note {color: #555; font-size: 12px}
.mf-tearsheet .mf-costs {font-weight: bold}
.mf-tearsheet .mf-row {display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start}
</style>"""
PAGE_CSS = """<style>
body {font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; max-width: 1180px;
      margin: 0 auto; padding: 12px 24px; box-sizing: border-box}
</style>""" + SECTION_CSS


# ---------------------------------------------------------------- figures

def _figure(w: float, h: float) -> "ResultFigure":
    from .plots import ResultFigure
    return ResultFigure(figsize=(w, h), dpi=100, layout="constrained")


def _dates(ax: Any) -> None:
    import matplotlib.dates as mdates
    loc = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def equity_figure(res: Any, ts: TearSheet, log: bool = False) -> "ResultFigure":
    """Equity against buy-and-hold (log scale with ``log``), drawdown (%) underneath.

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
    >>> fig = equity_figure(res, tearsheet(res), log=True)
    >>> fig.axes[0].get_yscale(), fig.axes[1].get_ylabel()
    ('log', 'Drawdown (%)')
    """
    from .plots import drawdown_pct, envelope
    eq = res.equity
    fig = _figure(10.5, 5.2)
    gs = fig.add_gridspec(2, 1, height_ratios=[3, 1])
    ax = fig.add_subplot(gs[0])
    axd = fig.add_subplot(gs[1], sharex=ax)
    ax.plot(*envelope(eq.index, eq.to_numpy(float)), color=EQUITY_COLOR, lw=1.2, label="Strategy")
    ax.plot(*envelope(ts.benchmark.index, ts.benchmark.to_numpy(float)), color=BENCH_COLOR, lw=1.0,
            label=f"Buy and hold {plain(res.specs.symbol or '')}".rstrip())
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("Equity" + (" (log scale)" if log else ""))
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    ax.tick_params(labelbottom=False)
    dd = drawdown_pct(eq)
    axd.fill_between(*envelope(eq.index, dd), 0.0, color=DRAWDOWN_COLOR, alpha=0.35, lw=0)
    axd.set_ylabel("Drawdown (%)")
    axd.grid(alpha=0.3)
    _dates(axd)
    return fig


def monthly_figure(ts: TearSheet) -> "ResultFigure":
    """Monthly returns (%) as a heatmap: diverging colours centred on zero with symmetric
    limits (a loss is never green), the value in each cell.

    >>> import metaflow_nb as mf
    >>> fig = monthly_figure(tearsheet(mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")))
    >>> norm = fig.axes[0].images[0].norm
    >>> norm.vmin == -norm.vmax
    True
    """
    from matplotlib.colors import Normalize
    m = ts.monthly[list(MONTHS)]
    values = m.to_numpy(float)
    rows = max(1, len(m))
    fig = _figure(10.5, 0.55 * rows + 1.3)
    ax = fig.add_subplot(1, 1, 1)
    finite = values[np.isfinite(values)]
    half = float(np.abs(finite).max()) if finite.size else 1.0
    half = half or 1.0
    im = ax.imshow(np.ma.masked_invalid(values), cmap="RdYlGn", norm=Normalize(-half, half), aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8,
                    color="black" if abs(v) < 0.6 * half else "white")
    ax.set_xticks(range(12), list(MONTHS))
    ax.set_yticks(range(len(m)), [str(y) for y in m.index])
    ax.set_title("Monthly returns (%)", fontsize=10)
    cb = fig.colorbar(im, ax=ax, shrink=0.9)
    cb.set_label("%, centred on 0", fontsize=8)
    return fig


def distribution_figure(ts: TearSheet) -> "ResultFigure":
    """Histogram of the daily returns (%), with their mean and the 5 % / 95 % quantiles.

    >>> import metaflow_nb as mf
    >>> fig = distribution_figure(tearsheet(mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")))
    >>> fig.axes[0].get_ylabel()
    'days'
    """
    r = ts.daily.to_numpy(float) * 100.0
    fig = _figure(5.2, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    r = r[np.isfinite(r)]
    if r.size == 0:
        ax.text(0.5, 0.5, "no daily returns", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    ax.hist(r, bins=min(60, max(10, int(math.sqrt(r.size)) * 2)), color=EQUITY_COLOR, alpha=0.75)
    ax.axvline(float(r.mean()), color="black", lw=1, label=f"mean {r.mean():.3f} %")
    for q in (5, 95):
        ax.axvline(float(np.percentile(r, q)), color=DRAWDOWN_COLOR, lw=0.8, ls="--")
    ax.set_xlabel("daily return (%)  (dashed: 5 % and 95 % quantiles)")
    ax.set_ylabel("days")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def rolling_figure(ts: TearSheet) -> "ResultFigure":
    """Rolling Sharpe ratio and annualised volatility over :attr:`TearSheet.window` days.

    >>> import metaflow_nb as mf
    >>> fig = rolling_figure(tearsheet(mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")))
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['Sharpe ratio', 'Volatility (%)']
    """
    fig = _figure(10.5, 4.2)
    ax, axv = fig.subplots(2, 1, sharex=True)
    s, v = ts.rolling_sharpe, ts.rolling_volatility
    if v.notna().sum() == 0:
        for a in (ax, axv):
            a.text(0.5, 0.5, f"fewer than {ts.window} trading days: no rolling window", ha="center",
                   va="center", transform=a.transAxes)
        return fig
    if s.notna().sum() == 0:
        # full windows whose returns never move: the volatility is 0 %, the Sharpe ratio undefined
        ax.text(0.5, 0.5, "the daily returns do not move in any window: Sharpe ratio undefined", ha="center",
                va="center", transform=ax.transAxes)
    else:
        ax.plot(s.index, s.to_numpy(float), color=SHARPE_COLOR, lw=1.0)
        ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_ylabel("Sharpe ratio")
    ax.set_title(f"Rolling {ts.window} trading days (annualised with {ts.periods_per_year:g} days a year)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    axv.plot(v.index, v.to_numpy(float), color=VOL_COLOR, lw=1.0)
    axv.set_ylabel("Volatility (%)")
    axv.grid(alpha=0.3)
    _dates(axv)
    return fig


def _png(fig: Any) -> str:
    from .plots import figure_png
    data = figure_png(fig)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _img(fig: Any, alt: str) -> str:
    return f"<img src='{_png(fig)}' alt='{html.escape(alt, quote=True)}'>"


# ---------------------------------------------------------------- tables

def _cell(key: str, v: Any) -> str:
    if isinstance(v, pd.Timestamp) or (v is pd.NaT):
        return stamp(v)
    return format_metric(key, v)


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" if i else f"<th>{html.escape(c)}</th>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return (f"<div class='mf-scroll'><table class='{cls}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def monthly_table_html(ts: TearSheet) -> str:
    """Monthly returns (%) as a table, one row per year, the year compounded last.

    >>> import metaflow_nb as mf
    >>> "<th>Year</th>" in monthly_table_html(tearsheet(mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")))
    True
    """
    rows = [[str(y), *("" if not np.isfinite(v) else f"{v:.2f}" for v in r)]
            for y, r in zip(ts.monthly.index, ts.monthly.to_numpy(float))]
    return _table(["year", *MONTHS, "Year"], rows, "mf-monthly")


def yearly_table_html(ts: TearSheet) -> str:
    """Return, trading days and deepest drawdown per year.

    >>> import metaflow_nb as mf
    >>> "max drawdown" in yearly_table_html(tearsheet(mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")))
    True
    """
    y = ts.yearly
    rows = [[str(year), format_metric("return_pct", r["return_pct"]), f"{int(r['days'])}",
             format_metric("max_drawdown_pct", r.get("max_drawdown_pct", float("nan")))]
            for year, r in y.iterrows()]
    return _table(["year", "return", "trading days", "max drawdown"], rows, "mf-yearly")


def drawdowns_table_html(ts: TearSheet) -> str:
    """The worst drawdowns: start (peak), trough, recovery, depth, bars and days.

    >>> import metaflow_nb as mf
    >>> drawdowns_table_html(tearsheet(mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily"))).count("<tr>")
    6
    """
    d = ts.drawdowns
    if d.empty:
        return "<p class='mf-note'>No drawdown: the equity never fell below its peak.</p>"
    rows = [[str(k), _cell("", r["start"]), _cell("", r["trough"]),
             _cell("", r["recovery"]) or "not recovered", format_metric("depth_pct", r["depth_pct"]),
             f"{int(r['bars'])}", f"{int(r['days'])}"] for k, r in d.iterrows()]
    return _table(["#", "start (peak)", "trough", "recovery", "depth", "bars", "days"], rows, "mf-drawdowns")


def trade_stats_html(ts: TearSheet) -> str:
    """Trade statistics, one formatter per statistic, for all, long and short trades.

    >>> import metaflow_nb as mf
    >>> "<th>Profit factor</th>" in trade_stats_html(tearsheet(mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")))
    True
    """
    t = ts.trades
    rows = [[METRIC_LABELS.get(k, (k,))[0], *(format_metric(k, t.at[k, c]) for c in t.columns)] for k in t.index]
    return _table(["", *t.columns], rows, "mf-trade-stats")


def costs_html(ts: TearSheet) -> str:
    """The costs line and the table of rates and amounts paid.

    >>> import metaflow_nb as mf
    >>> costs_html(tearsheet(mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")))[:62]
    "<p class='mf-costs'>costs: none (commission 0, slippage 0)</p>"
    """
    c = ts.costs
    table = _table(["", "rate", "paid"], [[k, r["rate"], r["paid"]] for k, r in c.frame().iterrows()], "mf-costs")
    note = ("" if c.free or c.slippage_rate == 0 else
            f"<p class='mf-note'>Slippage paid by {c.slipped_fills} market and stop fills, against their "
            f"unslipped price.</p>")
    return f"<p class='mf-costs'>{html.escape(c.text())}</p>{table}{note}"


def parameters_html(ts: TearSheet, overrides: Optional[Mapping[str, Any]] = None,
                    override_doc: Optional[Mapping[str, Any]] = None) -> str:
    """Every worker's parameters (``overrides`` noted and marked; a variant's
    ``override_doc`` shown as JSON).

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily", sma_1__fast=5)
    >>> "sma_1.fast = 5" in parameters_html(tearsheet(res, {"sma_1": {"fast": 5}}), {"sma_1": {"fast": 5}})
    True
    """
    p = ts.parameters
    rows = [[r["instance"], r["plugin"], r["param"], r["value"], r["set_by"]] for _, r in p.iterrows()]
    note = ""
    if overrides:
        note = f"<p class='mf-note'>Overrides: <code>{html.escape(overrides_text(overrides))}</code></p>"
    if override_doc:
        import json
        note += (f"<p class='mf-note'>This variant's overrides of the base config:</p>"
                 f"<div class='mf-scroll'><pre>{html.escape(json.dumps(override_doc, indent=1, default=str))}"
                 f"</pre></div>")
    return note + _table(["instance", "plugin", "param", "value", "set by"], rows, "mf-params")


def overrides_text(overrides: Mapping[str, Any]) -> str:
    """Parameter overrides ``{instance: {param: value}}`` as a page writes them.

    >>> overrides_text({"sma_1": {"fast": 15, "slow": 50}, "stops_1": {"stop_loss_pct": 2.0}})
    'sma_1.fast = 15; sma_1.slow = 50; stops_1.stop_loss_pct = 2.0'
    """
    parts = []
    for inst, ps in overrides.items():
        if isinstance(ps, Mapping):
            parts += [f"{inst}.{k} = {v!r}" for k, v in ps.items()]
        else:
            parts.append(f"{inst} = {ps!r}")
    return "; ".join(parts)


# ---------------------------------------------------------------- the section and the page

def tearsheet_html(res: Any, overrides: Optional[Mapping[str, Any]] = None, trades_csv: Optional[str] = None,
                   log: bool = False, level: int = 2, ts: Optional[TearSheet] = None,
                   override_doc: Optional[Mapping[str, Any]] = None) -> str:
    """The tear sheet section of a run as one HTML block (``<div class='mf-tearsheet'>``):
    costs, equity against buy-and-hold, monthly and yearly returns, the return
    distribution, rolling Sharpe and volatility, the worst drawdowns, trade statistics
    (long/short), the parameters (``overrides`` marked; a variant's ``override_doc``
    shown as written) and a link to ``trades_csv`` (a file name next to the page) when given.

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
    >>> block = tearsheet_html(res, trades_csv="trades.csv")
    >>> "Worst drawdowns" in block, "href='trades.csv'" in block, "<script" in block
    (True, True, False)
    """
    ts = ts or tearsheet(res, overrides)
    h = f"h{level}"
    n = int(ts.trades.at["trades", "all"])
    csv = (f"<p><a href='{html.escape(trades_csv, quote=True)}' download>All {n} trades as CSV</a> "
           f"({html.escape(trades_csv)})</p>" if trades_csv else "")
    parts = [
        f"<{h}>Costs</{h}>", costs_html(ts),
        f"<{h}>Equity against buy-and-hold</{h}>",
        _img(equity_figure(res, ts, log), "equity against buy-and-hold, drawdown"),
        f"<{h}>Monthly and yearly returns</{h}>", _img(monthly_figure(ts), "monthly returns heatmap"),
        monthly_table_html(ts), yearly_table_html(ts),
        f"<{h}>Return distribution</{h}>",
        "<div class='mf-row'>" + _img(distribution_figure(ts), "daily return distribution")
        + _distribution_table(ts) + "</div>",
        f"<{h}>Rolling Sharpe ratio and volatility</{h}>", _img(rolling_figure(ts), "rolling Sharpe and volatility"),
        f"<{h}>Worst drawdowns</{h}>", drawdowns_table_html(ts),
        f"<{h}>Trade statistics</{h}>", trade_stats_html(ts), csv,
        f"<{h}>Parameters</{h}>", parameters_html(ts, overrides, override_doc),
        f"<p class='mf-note'>Daily returns on the {html.escape(res.specs.data_calendar or 'measured')} calendar "
        f"({ts.periods_per_year:g} trading days a year); rolling windows of {ts.window} days; buy-and-hold "
        f"holds the starting cash from the first bar's close, without costs.</p>",
    ]
    return f"{SECTION_CSS}<div class='mf-tearsheet'>{''.join(parts)}</div>"


def _distribution_table(ts: TearSheet) -> str:
    r = ts.daily.astype(float) * 100.0
    if r.empty:
        return ""
    def num(x: float) -> str:   # undefined moments (returns that never move, too few days) as elsewhere
        return f"{x:.2f}" if np.isfinite(x) else "n/a"

    rows = [["days", f"{len(r)}"], ["mean", f"{r.mean():.3f} %"], ["std", f"{r.std(ddof=1):.3f} %" if len(r) > 1 else "n/a"],
            ["skew", num(r.skew())], ["kurtosis", num(r.kurt())],
            ["best day", f"{r.max():.2f} %"], ["worst day", f"{r.min():.2f} %"],
            ["positive days", f"{(r > 0).mean() * 100:.1f} %"]]
    return _table(["daily returns", ""], rows, "mf-dist")


def data_label(specs: Any, source: Optional[str] = None) -> str:
    """The run's data as a reader needs it: the source, and the timeframe it was resampled
    to (``eurusd_15m resampled to 1h``).

    >>> import metaflow_nb as mf
    >>> data_label(mf.build_specs("config/runs/ict_smc_strategy.yaml", "config/operations/ict_1h.yaml"))
    'eurusd_15m resampled to 1h'
    """
    label = shown_source(source or specs.data_source)
    return f"{label} resampled to {specs.data_timeframe}" if specs.data_timeframe else label


def shown_source(source: Any) -> str:
    """A data source as a page shows it: a sample's name, a file's name. Where the file sits
    is not shown (hunt118 F4: the same report from another checkout had other pages, and a
    mailed page told the author's folders); the data fingerprint beside it says which file.

    >>> shown_source("/home/me/data/spx.csv"), shown_source("sp500_daily")
    ('spx.csv', 'sp500_daily')
    """
    text = str(source)
    return Path(text).name if Path(text).is_absolute() else text


def fills_label(specs: Any) -> str:
    """What decides a bar that touched the stop and a take-profit level: finer bars
    (``data.intrabar``) or the pessimistic rule.

    >>> import metaflow_nb as mf
    >>> fills_label(mf.build_specs("config/runs/ict_smc_strategy.yaml", "config/operations/ict_1h_intrabar.yaml"))
    'decided by the finer bars of the source (eurusd_15m)'
    """
    finer = specs.data_intrabar
    if finer is None:
        return "the stop first (no finer bars)"
    return (f"decided by the finer bars of the source ({shown_source(specs.data_source)})" if finer == "source"
            else f"decided by the finer bars of {shown_source(finer)}")


def data_facts(specs: Any, eq: pd.Series) -> list[tuple[str, str]]:
    """The facts rows of a run's data: source and timeframe with its bars, the clock its
    timestamps were written in (when declared), the trading day, and the fill rule.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
    >>> data_facts(specs, pd.Series(1.0, index=pd.date_range("2024-01-01", periods=3, freq="D")))
    [('Data', 'sp500_daily (3 bars, 2024-01-01 00:00 .. 2024-01-03 00:00)'), ('Calendar', 'exchange'), \
('Ambiguous bars', 'the stop first (no finer bars)')]
    """
    rows = [("Data", f"{data_label(specs)} ({len(eq)} bars, {stamp(eq.index[0])} .. {stamp(eq.index[-1])})")]
    if specs.data_timezone:
        rows.append(("Clock", f"{specs.data_timezone} (the file's timestamps), shown in UTC"))
    rows.append(("Calendar", specs.data_calendar or "measured from the data"))
    rows.append(("Ambiguous bars", fills_label(specs)))
    return rows


def _page_html(res: Any, title: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None,
              trades_csv: Optional[str] = None, log: bool = False) -> str:
    """A whole offline HTML page: the run's facts, metrics and costs, then the tear sheet
    (what :func:`write_page` writes; tests/test_tearsheet.py reads it back)."""
    eq, specs = res.equity, res.specs
    name = title or f"{res.name}: tear sheet"
    facts = [("Strategy", res.name), ("Run id", res.run_id), *data_facts(specs, eq),
             ("Cash / leverage", f"{specs.cash:,.2f} / {specs.leverage:g}"),
             ("BuildSpecs hash", specs.hash)]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
                   for k, v in facts)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(name)}</title>{PAGE_CSS.replace(SECTION_CSS, '')}</head><body><div class='mf-tearsheet'>"
            f"<h1>{html.escape(name)}</h1><div class='mf-scroll'><table class='mf-facts'>{body}</table></div>"
            f"<div class='mf-scroll'>{metrics_table_html(res.metrics, 'Metrics')}</div></div>"
            f"{tearsheet_html(res, overrides, trades_csv, log)}</body></html>")


def write_page(res: Any, path: Optional[str | Path] = None, title: Optional[str] = None,
               overrides: Optional[Mapping[str, Any]] = None, log: bool = False) -> Path:
    """Write the run's tear sheet page to ``path`` (default
    ``reports/<name>-<run id[:8]>.html`` under the working directory) and its trades next to
    it (``<stem>_trades.csv``, linked from the page); returns the page's path. A ``path``
    not ending in ``.html`` is a folder to write ``<name>-<run id[:8]>.html`` into."""
    return write_page_files(res.trades, path, f"{safe_stem(res.name)}-{res.run_id[:8]}.html",
                            lambda csv_name: _page_html(res, title, overrides, csv_name, log))


def write_page_files(trades: Any, path: Optional[str | Path], name: str, page: Callable[[str], str]) -> Path:
    """Write a page and its trades next to it: ``path`` is an ``.html`` file or a folder
    to write ``name`` into (default ``reports/`` under the working directory); the trades
    go to ``<stem>_trades.csv`` and ``page(csv_name)`` gives the page's HTML, which links
    them. Returns the page's path.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     page = write_page_files(pd.DataFrame({"pnl": [1.0]}), tmp, "run.html", lambda csv: f"<a href='{csv}'>trades</a>")
    ...     page.read_text(), sorted(p.name for p in page.parent.iterdir())
    ("<a href='run_trades.csv'>trades</a>", ['run.html', 'run_trades.csv'])
    """
    out = Path.cwd() / "reports" / name if path is None else user_path(path)
    if out.suffix.lower() != ".html":   # a folder
        out = out / name
    csv = out.with_name(f"{out.stem}_trades.csv")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # whole or not at all, and a failure names the file (a full disk cut the trades
        # mid-row and the error named the page, hunt87 F2)
        write_csv(trades, csv, index=False)
        write_text(out, page(csv.name))
    except OSError as exc:   # a path the user gave: their input, named, not a traceback
        raise ConfigError(f"report: cannot write {exc.filename or out}: {exc.strerror or exc}") from None
    return out.resolve()
