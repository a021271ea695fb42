"""Helpers the template notebooks in ``reporting/templates/`` call: resolve the run a page is about,
check it is the run the report planned, and show tables and figures as HTML.

Everything shown goes through :func:`html.escape` (run names come from config files).
"""
from __future__ import annotations

import html
import warnings
from typing import Any, Optional

import pandas as pd

from ..config.translator import ConfigTranslator
from ..errors import ConfigError
from ..services.formatting import format_metric, metrics_table_html, without_empty_zones
from ..services.operation import OperationService
from ..services.optimization import constraint_checks
from ..services.results import setup_key
from ..services.significance import ALPHA, selection_verdict
from ..services.tearsheet_page import data_facts, overrides_text
from ..services.variants import VariantTestService
from .figures import close, rejections_bar
from .params import BacktestReportParams, PortfolioReportParams, VariantReportParams

CSS = """<style>
.mf-page table {border-collapse: collapse; font-size: 12px; margin: 4px 0 12px}
.mf-page th, .mf-page td {padding: 3px 8px; border-bottom: 1px solid #ddd}
.mf-page .mf-meta td {color: #333}
.mf-page .mf-note {color: #666; font-size: 12px}
.mf-page .mf-error {color: #b00020; font-weight: bold}
.mf-page .mf-scroll {overflow-x: auto; max-width: 100%}
.mf-page .mf-scroll td {white-space: nowrap}
</style>"""


def setup() -> None:
    """Inline PNG figures (embedded in the HTML export) and compact pandas tables.

    >>> with pd.option_context("display.max_columns", 20, "display.width", 80, "display.precision", 6):
    ...     setup()
    ...     pd.get_option("display.max_columns"), pd.get_option("display.precision")
    (40, 5)
    """
    from IPython import get_ipython

    from ..services.walk_forward import WarmupWarning
    # a page states its warm-up check in its summary: the warning's stderr box (with this
    # machine's paths) would only repeat it
    warnings.filterwarnings("ignore", category=WarmupWarning)
    ip = get_ipython()
    if ip is not None:
        ip.run_line_magic("matplotlib", "inline")
        ip.run_line_magic("config", "InlineBackend.figure_formats = ['png']")
        ip.run_line_magic("config", "InlineBackend.rc = {'figure.dpi': 100}")
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.width", 200)
    pd.set_option("display.precision", 5)


def _display(obj: Any) -> None:
    from IPython.display import display
    display(obj)


def show_html(markup: str) -> None:
    """Display ``markup`` in the notebook, inside the page's ``mf-page`` block (the
    caller escapes what it puts in).

    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     show_html("<b>ok</b>")
    <div class='mf-page'><b>ok</b></div>
    """
    from IPython.display import HTML
    _display(HTML(f"<div class='mf-page'>{markup}</div>"))


def heading(text: str, level: int = 1, note: str = "") -> None:
    """An escaped heading (and an optional escaped note under it).

    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     heading("P&L <by year>", level=2)  # doctest: +ELLIPSIS
    <div class='mf-page'><style>...</style><h2>P&amp;L &lt;by year&gt;</h2></div>
    """
    n = f"<p class='mf-note'>{html.escape(note)}</p>" if note else ""
    show_html(f"{CSS}<h{level}>{html.escape(str(text))}</h{level}>{n}")


def with_overrides(overrides: Optional[Any]) -> str:
    """A page's note on the parameters it overrides, as a reader reads them (a Python dict
    was printed as it is; hunt103 F5); "" for none.

    >>> with_overrides({"sma_1": {"fast": 15, "slow": 50}}), with_overrides({"stops_1__stop_loss_pct": 2.0})
    (' with sma_1.fast = 15; sma_1.slow = 50', ' with stops_1.stop_loss_pct = 2.0')
    >>> with_overrides(None)
    ''
    """
    from ..config.overrides import parse_param_overrides

    # written as the tear sheet's override note and the best run's line write them
    text = overrides_text(parse_param_overrides(overrides)) if overrides else ""
    return f" with {text}" if text else ""


def show(fig: Any) -> None:
    """Display a matplotlib figure once (as PNG) and close it.

    >>> from unittest import mock
    >>> from matplotlib.figure import Figure
    >>> with mock.patch("IPython.display.display", lambda fig: print(type(fig).__name__)):
    ...     show(Figure())
    Figure
    """
    _display(fig)
    close(fig)


def numbers_shown(frame: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """``frame`` with each float column written as text by ``fmt``, an undefined value
    (NaN) as ``n/a``, as every other view of a metric does (hunt73 F4: a never-trading
    run's Sharpe ratio was an empty cell); other columns keep their blank for nothing
    (None too).

    >>> shown = numbers_shown(pd.DataFrame({"sharpe": [1.23456, float("nan")], "trades": [3, 0]}), "{:.3g}")
    >>> shown["sharpe"].tolist(), shown["trades"].tolist()
    (['1.23', 'n/a'], [3, 0])
    """
    out = frame.copy()
    for k, c in enumerate(frame.columns):
        col = frame.iloc[:, k]
        if col.dtype.kind == "f":
            out.isetitem(k, col.map(lambda v: "n/a" if pd.isna(v) else fmt.format(v)).astype(object))
        elif col.dtype == object:   # None (a window without a pick) is a blank, not the word
            out.isetitem(k, col.map(lambda v: "" if v is None else v))
    return out


def readable_times(frame: pd.DataFrame) -> pd.DataFrame:
    """Datetime columns as ``YYYY-MM-DD HH:MM`` text (no wrapping, no seconds).

    >>> frame = pd.DataFrame({"time": pd.to_datetime(["2024-01-02 09:30:15"]), "pnl": [12.5]})
    >>> readable_times(frame).to_dict("records")
    [{'time': '2024-01-02 09:30', 'pnl': 12.5}]
    """
    cols = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    if not cols:
        return frame
    out = frame.copy()
    for c in cols:
        out[c] = out[c].dt.strftime("%Y-%m-%d %H:%M")
    return out


def table(frame: pd.DataFrame, caption: str = "", index: bool = True, float_format: str = "{:.5g}") -> None:
    """A DataFrame as an escaped HTML table (scrolls sideways when wide).

    >>> frame = pd.DataFrame({"time": pd.to_datetime(["2024-01-02 09:30"]), "pnl": [12.5]})
    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     table(frame, "Trades <long>", index=False)  # doctest: +ELLIPSIS
    <div class='mf-page'><p><b>Trades &lt;long&gt;</b></p><div class='mf-scroll' ...<td>2024-01-02 09:30</td>...
    """
    body = numbers_shown(readable_times(frame), float_format).to_html(escape=True, index=index, na_rep="", border=0)
    cap = f"<p><b>{html.escape(caption)}</b></p>" if caption else ""
    # cells on one line (a timestamp wrapped over three); a wide table scrolls in its box, not the page
    show_html(f"{cap}<div class='mf-scroll' style='overflow-x:auto'>{body}</div>")


# ---------------------------------------------------------------- resolving runs

def check_hash(specs: Any, expected: Optional[str]) -> None:
    """Fail loudly if the notebook resolved a different run than the report planned.

    >>> from types import SimpleNamespace
    >>> check_hash(SimpleNamespace(hash="a" * 64), "a" * 64)  # the planned run: nothing to say
    >>> check_hash(SimpleNamespace(hash="a" * 64), "b" * 64)
    Traceback (most recent call last):
    ...
    RuntimeError: this notebook resolved run aaaaaaaaaaaaaaaa but the report planned bbbbbbbbbbbbbbbb: the config or the data changed while the report ran
    """
    if expected is not None and specs.hash != expected:
        raise RuntimeError(f"this notebook resolved run {specs.hash[:16]} but the report planned "
                           f"{expected[:16]}: the config or the data changed while the report ran")


def variant_specs(p: VariantReportParams) -> tuple[Any, str, str]:
    """``(specs, title, description)`` of the run a variant page is about.

    >>> p = VariantReportParams(config="config/variants/exit_strategy_test.yaml", variant="atr_based")
    >>> variant_specs(p)[1:]
    ('Exit Strategy Comparison: atr_based', 'ATR-based stops')
    """
    if p.config is not None:
        model, _, variants = VariantTestService().build(p.config)
        for name, description, specs in variants:
            if name == p.variant:
                check_hash(specs, p.expected_hash)
                return specs, p.title or f"{model.name}: {name}", p.description or description
        raise ConfigError(f"{p.config}: no variant named {p.variant!r}; variants: "
                          f"{', '.join(n for n, _, _ in variants)}")
    specs = ConfigTranslator().translate(p.strategy, p.operation)  # type: ignore[arg-type]
    check_hash(specs, p.expected_hash)
    return specs, p.title or specs.name, p.description


def backtest_specs(p: BacktestReportParams) -> Any:
    """The BuildSpecs of a backtest page: its strategy on its operation (or ``data``),
    with the page's parameter ``overrides`` applied, checked against the planned hash.

    >>> p = BacktestReportParams(strategy="config/runs/sma_cross.yaml", data="sp500_daily",
    ...                          overrides={"sma_1": {"fast": 5}})
    >>> backtest_specs(p).params("sma_1")
    {'fast': 5, 'slow': 20}
    """
    specs = ConfigTranslator().translate(p.strategy, p.operation, p.data).with_param_overrides(p.overrides or {})
    check_hash(specs, p.expected_hash)
    return specs


def run(specs: Any) -> Any:
    """Backtest ``specs``: the page's BacktestResult.

    >>> specs = backtest_specs(BacktestReportParams(strategy="config/runs/sma_cross.yaml", data="sp500_daily"))
    >>> run(specs).run_id == specs.run_id
    True
    """
    return OperationService().run(specs)


# ---------------------------------------------------------------- sections

def run_info(res: Any, description: str = "") -> None:
    """The table that identifies a run: strategy, run id, BuildSpecs hash, the data facts
    (source, timeframe, clock, calendar, fill rule), fingerprint, cash, costs and seed.

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     run_info(res, "10/20 crossover")  # doctest: +ELLIPSIS
    <div class='mf-page'><table class='mf-meta'><tr><th ...>Description</th><td>10/20 crossover</td></tr>...
    """
    eq, specs = res.equity, res.specs
    rows = [("Strategy", res.name), ("Run id", res.run_id), ("BuildSpecs hash", specs.hash),
            *data_facts(specs, eq),   # source and timeframe, clock, calendar, what decides ambiguous bars
            ("Data fingerprint", specs.data_fingerprint),
            ("Cash / leverage", f"{specs.cash:g} / {specs.leverage:g}"),
            ("Costs", res.costs().text()),
            ("Seed", str(specs.seed))]
    if description:
        rows.insert(0, ("Description", description))
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in rows)
    show_html(f"<table class='mf-meta'>{body}</table>")


def tearsheet(res: Any, overrides: Optional[dict[str, Any]] = None, trades_csv: Optional[str] = None,
              override_doc: Optional[dict[str, Any]] = None) -> None:
    """The run's tear sheet section (:func:`~metaflow_nb.services.tearsheet_page.tearsheet_html`,
    the same as ``res.report()`` writes), headings one level under the page's sections."""
    from ..services.tearsheet_page import tearsheet_html
    show_html(tearsheet_html(res, overrides, trades_csv, level=3, override_doc=override_doc))


def variant_overrides(p: VariantReportParams) -> Optional[dict[str, Any]]:
    """The override document of the variant a page shows, as its config writes it (None
    for a plain strategy page).

    >>> p = VariantReportParams(config="config/variants/exit_strategy_test.yaml", variant="atr_based")
    >>> variant_overrides(p)["workforce"]["planning_workers"]["exit_planning"][0]["plugin"]
    'atr_based_stops'
    """
    if p.config is None:
        return None
    model, _, _ = VariantTestService().build(p.config)
    return next((dict(v.overrides) for v in model.variants if v.name == p.variant), None)


def metrics(res: Any, title: str = "Metrics") -> None:
    """The run's metrics as a table (formatted values, ``title`` as its caption).

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     metrics(res)  # doctest: +ELLIPSIS
    <div class='mf-page'><table class='mf-metrics'><caption ...>Metrics</caption><tr><th ...>Total return</th>...
    """
    show_html(metrics_table_html(res.metrics, title))


def trades_with_zones(res: Any) -> pd.DataFrame:
    """Trades joined with the setup zone (top/bottom) of the opportunity each came from.

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> t = trades_with_zones(res)
    >>> t.index.name, list(t.columns[-3:])
    ('trade_id', ['source_id', 'zone_top', 'zone_bottom'])
    """
    j = res.journal
    key = setup_key(j, res.trades)
    det = j[j["event"] == "OPPORTUNITY_DETECTED"][[*key, "source_id", "zone_top", "zone_bottom"]]
    det = det.drop_duplicates(key)
    cols = [*key[:-1], "trade_id", "direction", "entry_time", "exit_time", "entry_price", "exit_price", "stop_price",
            "target_price", "pnl", "exit_reason", "opportunity_id"]
    t = res.trades[[c for c in cols if c in res.trades.columns]]
    return t.merge(det, on=key, how="left").set_index("trade_id")


def trades(res: Any, rows: int) -> None:
    """The first ``rows`` trades with their setup zones (zone columns only when a trade
    has one), or a note that there were none.

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     trades(res, 3)  # doctest: +ELLIPSIS
    <div class='mf-page'><p><b>first 3 of 260 trades</b></p>...
    """
    t = without_empty_zones(trades_with_zones(res).drop(columns=["opportunity_id", "source_id"], errors="ignore"))
    if t.empty:
        show_html("<p class='mf-note'>No trades.</p>")
        return
    note = f"first {min(rows, len(t))} of {len(t)} trades" if len(t) > rows else f"{len(t)} trades"
    table(t.head(rows), note)


def rejections(res: Any) -> None:
    """Opportunities detected and rejected, then the rejection reasons as a table and a
    bar chart (nothing more when none was rejected).

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     rejections(res)
    <div class='mf-page'><p>261 opportunities detected, 0 rejected (0.0 %).</p></div>
    """
    rej = res.rejections()
    m = res.metrics
    show_html(f"<p>{int(m['opportunities_detected'])} opportunities detected, "
              f"{int(m['opportunities_rejected'])} rejected "
              f"({format_metric('rejection_rate_pct', m['rejection_rate_pct'])}).</p>")
    if rej.empty:
        return
    table(rej.rename(columns={"count": "rejected", "share_pct": "share %", "active": "active in"}),
          "Rejection reasons (rejected: the first threat active decided; active in: the rejections it was active in)",
          float_format="{:.1f}")
    show(rejections_bar(res))


def journal(res: Any, rows: int) -> None:
    """The journal's event counts, then its first ``rows`` events.

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     journal(res, 3)  # doctest: +ELLIPSIS
    <div class='mf-page'><p><b>Journal events</b></p>...
    <div class='mf-page'><p><b>Journal excerpt: first 3 of 1043 events</b></p>...
    """
    j = res.journal
    cols = [c for c in ("bar", "time", "event", "opportunity_id", "trade_id", "direction", "source_id", "threat_id",
                        "reason", "zone_top", "zone_bottom") if c in j.columns]
    counts = j["event"].value_counts().rename("events").to_frame()
    table(counts, "Journal events")
    table(without_empty_zones(j[cols]).head(rows), f"Journal excerpt: first {min(rows, len(j))} of {len(j)} events",
          index=False)


# ---------------------------------------------------------------- honesty

#: border and background of the banner: survives / does not / no verdict
BANNER_COLORS = {True: ("#17803d", "#eaf6ee"), False: ("#b00020", "#fdecee"), None: ("#8a6d00", "#fff6d6")}


def selection_banner_html(statistics: Optional[dict[str, Any]], what: str = "") -> str:
    """The honesty banner: the plain verdict on selection bias (deflated Sharpe ratio,
    PBO, number of trials, thresholds) of an optimization or walk-forward, as one block of
    inline-styled HTML (the same on notebook pages and the index). ``statistics`` are
    ``OptimizationResult.statistics`` or ``WalkForwardResult.statistics``, read, not
    recomputed (:func:`~metaflow_nb.services.significance.selection_verdict`).

    >>> banner = selection_banner_html(None)  # statistics not computed: no verdict
    >>> banner[:44], "No verdict" in banner
    ("<div class='mf-honesty' data-verdict='none' ", True)
    """
    v = selection_verdict(statistics or {"note": "not computed"})
    border, bg = BANNER_COLORS[v["survives"]]
    rows = "".join(f"<tr><th style='text-align:left;padding:2px 10px 2px 0;white-space:nowrap'>{html.escape(k)}</th>"
                   f"<td style='text-align:left;padding:2px 0'>{html.escape(t)}</td></tr>" for k, t in v["rows"])
    note = f"<p style='margin:2px 0 6px;color:#333'>{html.escape(what)}</p>" if what else ""
    state = {True: "survives", False: "luck", None: "none"}[v["survives"]]
    return (f"<div class='mf-honesty' data-verdict='{state}' style='border-left:6px solid {border};background:{bg};"
            f"padding:10px 14px;margin:8px 0 14px;border-radius:4px'>"
            f"<p style='margin:0 0 4px;font-size:15px'><b>{html.escape(v['headline'])}</b> "
            f"<span style='color:#333'>({html.escape(v['reason'])})</span></p>{note}"
            f"<table style='border-collapse:collapse;font-size:12px;margin:0'>{rows}</table></div>")


def selection_banner(statistics: Optional[dict[str, Any]], what: str = "") -> None:
    """Display :func:`selection_banner_html` (``what``: a line under the verdict).

    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     selection_banner(None, "the best of 12 runs")  # doctest: +ELLIPSIS
    <div class='mf-page'><div class='mf-honesty' data-verdict='none' ...the best of 12 runs</p>...
    """
    show_html(selection_banner_html(statistics, what))


def bootstrap_html(significance: Optional[dict[str, Any]], variant: str = "") -> str:
    """The bootstrap p-values of a variant comparison (``VariantComparison.significance``):
    per tested metric the winner, the runner-up, the p-value and whether it is significant;
    rows where ``variant`` is the winner or the runner-up are marked.

    >>> sig = {"alpha": 0.05, "metrics": {"sharpe_ratio": {"winner": "atr", "runner_up": "fixed", "value": 1.2,
    ...                                                   "label": "0.012", "significant": True}}}
    >>> "significant (p &lt; 0.05)" in bootstrap_html(sig, "atr"), "no bootstrap test" in bootstrap_html(None)
    (True, True)
    """
    sig = significance or {}
    tests = sig.get("metrics") or {}
    alpha = sig.get("alpha", ALPHA)
    if not tests:
        why = sig.get("summary") or "no bootstrap test was run for this page (see the report's index)"
        return f"<div class='mf-bootstrap'><p class='mf-note'>Bootstrap p-values: {html.escape(str(why))}</p></div>"
    from ..services.formatting import METRIC_LABELS
    body = []
    for metric, t in tests.items():
        role = ("winner" if t.get("winner") == variant else "runner-up" if t.get("runner_up") == variant else "")
        verdict = (f"significant (p < {alpha:g})" if t.get("significant")
                   else "not tested: the two cover different days" if t.get("tested") is False
                   else f"not significant (p >= {alpha:g}): indistinguishable from chance")
        style = " style='font-weight:bold'" if role else ""
        label = METRIC_LABELS.get(metric, (metric,))[0]
        body.append(f"<tr{style}><td style='text-align:left'>{html.escape(label)}</td>"
                    f"<td style='text-align:left'>{html.escape(str(t.get('winner')))} "
                    f"({html.escape(format_metric(metric, t.get('value')))})</td>"
                    f"<td style='text-align:left'>{html.escape(str(t.get('runner_up')))}</td>"
                    f"<td style='text-align:right'>{html.escape(str(t.get('label', '')))}</td>"
                    f"<td style='text-align:left'>{html.escape(verdict)}</td>"
                    f"<td style='text-align:left'>{html.escape(role)}</td></tr>")
    head = ("<tr><th style='text-align:left'>Metric</th><th style='text-align:left'>Winner</th>"
            "<th style='text-align:left'>Runner-up</th><th>p-value</th><th style='text-align:left'>Verdict</th>"
            "<th style='text-align:left'>This variant</th></tr>")
    n_boot = sig.get("n_boot")
    note = (f"Paired stationary block bootstrap of the daily returns of the winner and the runner-up"
            + (f" ({n_boot} resamples)" if n_boot else "") + f"; win rate: bootstrap of the trades. "
            f"{sig.get('summary', '')}.")
    # a scroll box: on a narrow window the verdict and "this variant" columns stay reachable
    return (f"<div class='mf-bootstrap' style='overflow-x:auto'><table><thead>{head}</thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
            f"<p class='mf-note'>{html.escape(note)}</p></div>")


def bootstrap(significance: Optional[dict[str, Any]], variant: str = "") -> None:
    """Display :func:`bootstrap_html`: the variant comparison's p-values, ``variant``'s rows marked.

    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     bootstrap(None)  # doctest: +ELLIPSIS
    <div class='mf-page'><div class='mf-bootstrap'><p class='mf-note'>Bootstrap p-values: no bootstrap test was run...
    """
    show_html(bootstrap_html(significance, variant))


# ---------------------------------------------------------------- optimization

def _facts(rows: list[tuple[str, Any]]) -> None:
    # values wrap: one long value (a basket's costs per symbol) kept every other one out of
    # view, right of a table wider than the page (the export's cells do not wrap)
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                   f"<td style='text-align:left;white-space:normal'>{html.escape(str(v))}</td></tr>" for k, v in rows)
    show_html(f"<table class='mf-meta'>{body}</table>")


def optimization_summary(opt: Any) -> None:
    """The facts of an optimization (an OptimizationResult): runs (ok, failed),
    parameters, target, constraints, how the best run was selected, engine and costs."""
    t = opt.target
    cons = ", ".join(label for label, *_ in constraint_checks(t)) or "none"
    _facts([("Runs", f"{opt.total_runs} ({opt.successful_runs} ok, {opt.failed_runs} failed)"),
            ("Parameters", ", ".join(opt.param_columns)),
            ("Target", f"{'maximize' if t.maximize() else 'minimize'} {t.primary_metric}"),
            ("Constraints", cons), ("Selection", opt.message), ("Engine", opt.engine),
            ("Costs", opt.costs_text())])


def optimization_table(opt: Any, top: int, results_csv: Optional[str] = None) -> None:
    """The top ``top`` runs by the target metric, with a link to every run's CSV."""
    m = opt.target.primary_metric
    cols = [*opt.param_columns, m, "total_return_pct", "max_drawdown_pct", "win_rate_pct", "total_trades",
            "eligible", "status", "run_id"]
    cols = list(dict.fromkeys(c for c in cols if c in opt.all_results.columns))
    frame = opt.all_results[cols].sort_values(m, ascending=not opt.target.maximize(), na_position="last")
    note = f"top {top} of {len(frame):,} runs by {m}" if len(frame) > top else f"all {len(frame):,} runs by {m}"
    table(frame.head(top), note, index=False, float_format="{:.4g}")
    if results_csv:
        href = html.escape(results_csv, quote=True)
        show_html(f"<p class='mf-note'>Every run: <a href='{href}'>{html.escape(results_csv)}</a></p>")


def best_run(opt: Any, best_page: Optional[str] = None) -> None:
    """The best run's parameters and run id (a link to its own page, ``best_page``) and
    its metrics; why there is none when no run qualified.

    >>> from types import SimpleNamespace
    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     best_run(SimpleNamespace(best_params=None, message="no run met the constraints"))
    <div class='mf-page'><p class='mf-error'>No best run: no run met the constraints</p></div>
    """
    if opt.best_params is None:
        show_html(f"<p class='mf-error'>No best run: {html.escape(opt.message)}</p>")
        return
    params = overrides_text(opt.best_params)
    link = (f" &middot; <a href='{html.escape(best_page, quote=True)}'>full report of the best run</a>"
            if best_page else "")
    show_html(f"<p>Best parameters: <code>{html.escape(params)}</code> (run "
              f"<code>{html.escape(str(opt.best_row['run_id']))}</code>){link}</p>")
    show_html(metrics_table_html(opt.best_metrics or {}, "Best run"))


# ---------------------------------------------------------------- walk-forward

def walk_forward_summary(wf: Any) -> None:
    """The facts of a walk-forward validation (a WalkForwardResult): windows, parameters,
    target, walk-forward efficiency, costs, the out-of-sample spread and the data facts."""
    ok = int((wf.windows["status"] == "ok").sum()) if "status" in wf.windows else 0
    spread = wf.spread or {}
    rows = [("Windows", f"{len(wf.windows)} ({ok} with an out-of-sample run)"),
            ("Parameters", ", ".join(wf.param_columns)), ("Target", wf.primary_metric),
            ("Walk-forward efficiency", f"{wf.efficiency:.3f}"), ("Costs", wf.costs_text()),
            ("Out-of-sample spread", ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in spread.items()) or "n/a")]
    if "warmup" in wf.windows:   # each window's trades checked against a run on every earlier bar
        rows.append(("Warm-up", wf.warmup_text() or f"{wf.warmup_bars} bars: every window's out-of-sample trades "
                                                    "equal the same parameters run on every earlier bar"))
    if wf.open_text():   # beside the stitched trade statistics, which count closed trades only
        rows.append(("Open at window ends", wf.open_text()))
    _facts(rows + wf.data_facts())   # the bars the windows count in, their clock, calendar and fill rule


def walk_forward_table(wf: Any) -> None:
    """The per-window table of a walk-forward validation: in- and out-of-sample dates, the
    chosen parameters, the in-sample score and the out-of-sample results."""
    m = wf.primary_metric
    cols = ["window", "is_start", "is_end", "oos_start", "oos_end", *wf.param_columns, "is_score",
            f"oos_{m}", "oos_total_return_pct", "oos_max_drawdown_pct", "oos_total_trades", "warmup", "status"]
    w = wf.windows
    table(w[[c for c in cols if c in w.columns]], "Per-window results", index=False, float_format="{:.4g}")


def walk_forward_metrics(wf: Any) -> None:
    """The metrics of the stitched out-of-sample run, or why there are none.

    >>> from types import SimpleNamespace
    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     walk_forward_metrics(SimpleNamespace(oos_metrics={}))
    <div class='mf-page'><p class='mf-error'>No window produced an out-of-sample run.</p></div>
    """
    if wf.oos_metrics:
        show_html(metrics_table_html(wf.oos_metrics, "Out-of-sample metrics (stitched)"))
    else:
        show_html("<p class='mf-error'>No window produced an out-of-sample run.</p>")


# ---------------------------------------------------------------- portfolios (README "Portfolios")

def portfolio_run(p: PortfolioReportParams) -> tuple[Any, str, str]:
    """``(result, title, description)`` of the portfolio run a page is about: a variant of
    a basket variant config, or a strategy over a basket operation with ``overrides``;
    checked against the run the report planned (``expected_hash``)."""
    from ..config.meta import basket_operation, load_meta_config
    from ..services.portfolio import run_portfolio
    from ..services.variants import basket_variant_blueprints
    if p.config is not None:
        root, model, _, folder = load_meta_config(p.config, "variant_config")
        basket = basket_operation(model, folder, p.config, root)
        if basket is None:
            raise ConfigError(f"{p.config}: {root}.base_operation names one instrument; its variants are "
                              f"reported by variant_report")
        loaded, blueprints = basket_variant_blueprints(model, *basket, p.config, root)
        for v, blueprint in zip(model.variants, blueprints):
            if v.name == p.variant:
                res = run_portfolio(blueprint, loaded)
                check_hash(res.basket_specs, p.expected_hash)
                return res, p.title or f"{model.name}: {v.name}", p.description or v.description
        raise ConfigError(f"{p.config}: no variant named {p.variant!r}; variants: "
                          f"{', '.join(v.name for v in model.variants)}")
    res = run_portfolio(p.strategy, p.operation, **p.overrides)
    check_hash(res.basket_specs, p.expected_hash)
    return res, p.title or f"{res.name}: portfolio", p.description


def portfolio_info(res: Any, description: str = "") -> None:
    """What identifies the run: its id and hash, each instrument's data and run id."""
    bs = res.basket_specs
    rows = [("Strategy", bs.name), ("Run id", bs.run_id), ("Basket hash", bs.hash),
            ("Seed", str(bs.seed))]
    if bs.window is not None:
        w = bs.window
        rows.append(("Window", f"{w['start']} .. {w['end']}"
                               + (f", trading from {w['trade_start']}" if w.get("trade_start") else "")))
    if description:
        rows.insert(0, ("Description", description))
    _facts(rows)
    per = pd.DataFrame([{"symbol": i["symbol"], "run id": i["run_id"], "data fingerprint": i["data_fingerprint"][:16]}
                        for i in bs.instruments])
    table(per, "Instruments", index=False)


def portfolio(res: Any, trades_csv: Optional[str] = None, top: int = 50) -> None:
    """The portfolio's section: metrics, equity, per-instrument breakdown, contributions,
    correlation and top trades (what ``res.report()`` writes), headings one level down."""
    from ..services.portfolio_page import portfolio_html
    show_html(portfolio_html(res, trades_csv, top, level=3))


def basket_optimization_summary(opt: Any) -> None:
    """The facts of an optimization over a basket: combinations, basket and mode,
    parameters, target, how the best combination was selected and the engine."""
    res = opt.best_result
    _facts([("Combinations", f"{opt.total_runs} ({opt.successful_runs} ran)"),
            ("Basket", f"{res.name}: {opt.n_instruments} instruments, mode {res.mode}"),
            ("Parameters", ", ".join(opt.param_columns)),
            ("Target", f"{'maximize' if opt.maximize else 'minimize'} the portfolio's {opt.target}"),
            ("Selection", opt.message or "best eligible combination"), ("Engine", opt.engine),
            ("Costs", opt.costs_text())])


def basket_optimization_table(opt: Any, top: int, results_csv: Optional[str] = None) -> None:
    """The top ``top`` combinations (best first), with a link to every combination's CSV;
    in mode independent with ``per_instrument`` each symbol's pick."""
    cols = [*opt.param_columns, opt.target, "total_return_pct", "max_drawdown_pct", "win_rate_pct", "total_trades",
            "eligible", "status"]
    frame = opt.table[list(dict.fromkeys(c for c in cols if c in opt.table.columns))]
    note = (f"top {top} of {len(frame):,} combinations by {opt.target}" if len(frame) > top
            else f"all {len(frame):,} combinations by {opt.target}")
    table(frame.head(top), note, index=False, float_format="{:.4g}")
    if results_csv:
        href = html.escape(results_csv, quote=True)
        show_html(f"<p class='mf-note'>Every combination: <a href='{href}'>{html.escape(results_csv)}</a></p>")
    if opt.show_per_instrument and opt.per_instrument is not None:
        picks = opt.best_per_instrument()
        keep = [c for c in picks.columns if "." in c] + [opt.target, "total_trades", "deflated_sharpe", "eligible"]
        table(picks[[c for c in keep if c in picks.columns]],
              "Best combination per instrument (deflated Sharpe counting every symbol x combination)",
              float_format="{:.4g}")


def basket_best_run(opt: Any, best_page: Optional[str] = None) -> None:
    """The best combination's parameters (a link to its portfolio page, ``best_page``) and
    its portfolio metrics; why there is none when no combination qualified.

    >>> from types import SimpleNamespace
    >>> from unittest import mock
    >>> with mock.patch("IPython.display.display", lambda h: print(h.data)):  # print what the page shows
    ...     basket_best_run(SimpleNamespace(best_row=None, message="no combination traded"))
    <div class='mf-page'><p class='mf-error'>No best combination: no combination traded</p></div>
    """
    if opt.best_row is None:
        show_html(f"<p class='mf-error'>No best combination: {html.escape(opt.message)}</p>")
        return
    row = opt.best_row
    from ..config.overrides import plain
    params = "; ".join(f"{c} = {plain(row[c])!r}" for c in opt.param_columns)
    link = (f" &middot; <a href='{html.escape(best_page, quote=True)}'>full page of the best portfolio run</a>"
            if best_page else "")
    show_html(f"<p>Best parameters: <code>{html.escape(params)}</code>{link}</p>")
    show_html(metrics_table_html(opt.best_result.metrics, "Best combination: portfolio metrics"))

