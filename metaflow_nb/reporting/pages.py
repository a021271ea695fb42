"""Helpers the template notebooks in ``reporting/templates/`` call: resolve the run a page is about,
check it is the run the report planned, and show tables and figures as HTML.

Everything shown goes through :func:`html.escape` (run names come from config files).
"""
from __future__ import annotations

import html
from typing import Any, Optional

import pandas as pd

from ..config.translator import ConfigTranslator
from ..errors import ConfigError
from ..services.formatting import format_metric, metrics_table_html, without_empty_zones
from ..services.operation import OperationService
from ..services.optimization import constraint_checks
from ..services.significance import ALPHA, selection_verdict
from ..services.tearsheet_page import data_facts
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
    """Inline PNG figures (embedded in the HTML export) and compact pandas tables."""
    from IPython import get_ipython
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
    from IPython.display import HTML
    _display(HTML(f"<div class='mf-page'>{markup}</div>"))


def heading(text: str, level: int = 1, note: str = "") -> None:
    """An escaped heading (and an optional escaped note under it)."""
    n = f"<p class='mf-note'>{html.escape(note)}</p>" if note else ""
    show_html(f"{CSS}<h{level}>{html.escape(str(text))}</h{level}>{n}")


def show(fig: Any) -> None:
    """Display a matplotlib figure once (as PNG) and close it."""
    _display(fig)
    close(fig)


def readable_times(frame: pd.DataFrame) -> pd.DataFrame:
    """Datetime columns as ``YYYY-MM-DD HH:MM`` text (no wrapping, no seconds)."""
    cols = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    if not cols:
        return frame
    out = frame.copy()
    for c in cols:
        out[c] = out[c].dt.strftime("%Y-%m-%d %H:%M")
    return out


def table(frame: pd.DataFrame, caption: str = "", index: bool = True, float_format: str = "{:.5g}") -> None:
    """A DataFrame as an escaped HTML table (scrolls sideways when wide)."""
    body = readable_times(frame).to_html(escape=True, index=index, na_rep="",
                                         float_format=lambda v: float_format.format(v), border=0)
    cap = f"<p><b>{html.escape(caption)}</b></p>" if caption else ""
    # cells on one line (a timestamp wrapped over three); a wide table scrolls in its box, not the page
    show_html(f"{cap}<div class='mf-scroll' style='overflow-x:auto'>{body}</div>")


# ---------------------------------------------------------------- resolving runs

def check_hash(specs: Any, expected: Optional[str]) -> None:
    """Fail loudly if the notebook resolved a different run than the report planned."""
    if expected is not None and specs.hash != expected:
        raise RuntimeError(f"this notebook resolved run {specs.hash[:16]} but the report planned "
                           f"{expected[:16]}: the config or the data changed while the report ran")


def variant_specs(p: VariantReportParams) -> tuple[Any, str, str]:
    """``(specs, title, description)`` of the run a variant page is about."""
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
    specs = ConfigTranslator().translate(p.strategy, p.operation, p.data).with_param_overrides(p.overrides or {})
    check_hash(specs, p.expected_hash)
    return specs


def run(specs: Any) -> Any:
    return OperationService().run(specs)


# ---------------------------------------------------------------- sections

def run_info(res: Any, description: str = "") -> None:
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
    """The override document of the variant a page shows, as its config writes it."""
    if p.config is None:
        return None
    model, _, _ = VariantTestService().build(p.config)
    return next((dict(v.overrides) for v in model.variants if v.name == p.variant), None)


def metrics(res: Any, title: str = "Metrics") -> None:
    show_html(metrics_table_html(res.metrics, title))


def trades_with_zones(res: Any) -> pd.DataFrame:
    """Trades joined with the setup zone (top/bottom) of the opportunity each came from."""
    j = res.journal
    det = j[j["event"] == "OPPORTUNITY_DETECTED"][["opportunity_id", "source_id", "zone_top", "zone_bottom"]]
    det = det.drop_duplicates("opportunity_id")
    cols = ["trade_id", "direction", "entry_time", "exit_time", "entry_price", "exit_price", "stop_price",
            "target_price", "pnl", "exit_reason", "opportunity_id"]
    t = res.trades[[c for c in cols if c in res.trades.columns]]
    return t.merge(det, on="opportunity_id", how="left").set_index("trade_id")


def trades(res: Any, rows: int) -> None:
    t = without_empty_zones(trades_with_zones(res).drop(columns=["opportunity_id", "source_id"], errors="ignore"))
    if t.empty:
        show_html("<p class='mf-note'>No trades.</p>")
        return
    note = f"first {min(rows, len(t))} of {len(t)} trades" if len(t) > rows else f"{len(t)} trades"
    table(t.head(rows), note)


def rejections(res: Any) -> None:
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
    recomputed (:func:`~metaflow_nb.services.significance.selection_verdict`)."""
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
    show_html(selection_banner_html(statistics, what))


def bootstrap_html(significance: Optional[dict[str, Any]], variant: str = "") -> str:
    """The bootstrap p-values of a variant comparison (``VariantComparison.significance``):
    per tested metric the winner, the runner-up, the p-value and whether it is significant;
    rows where ``variant`` is the winner or the runner-up are marked."""
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
    show_html(bootstrap_html(significance, variant))


# ---------------------------------------------------------------- optimization

def _facts(rows: list[tuple[str, Any]]) -> None:
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in rows)
    show_html(f"<table class='mf-meta'>{body}</table>")


def optimization_summary(opt: Any) -> None:
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
    if opt.best_params is None:
        show_html(f"<p class='mf-error'>No best run: {html.escape(opt.message)}</p>")
        return
    params = "; ".join(f"{inst}.{k} = {v!r}" for inst, ps in opt.best_params.items() for k, v in ps.items())
    link = (f" &middot; <a href='{html.escape(best_page, quote=True)}'>full report of the best run</a>"
            if best_page else "")
    show_html(f"<p>Best parameters: <code>{html.escape(params)}</code> (run "
              f"<code>{html.escape(str(opt.best_row['run_id']))}</code>){link}</p>")
    show_html(metrics_table_html(opt.best_metrics or {}, "Best run"))


# ---------------------------------------------------------------- walk-forward

def walk_forward_summary(wf: Any) -> None:
    ok = int((wf.windows["status"] == "ok").sum()) if "status" in wf.windows else 0
    spread = wf.spread or {}
    rows = [("Windows", f"{len(wf.windows)} ({ok} with an out-of-sample run)"),
            ("Parameters", ", ".join(wf.param_columns)), ("Target", wf.primary_metric),
            ("Walk-forward efficiency", f"{wf.efficiency:.3f}"), ("Costs", wf.costs_text()),
            ("Out-of-sample spread", ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in spread.items()) or "n/a")]
    _facts(rows + wf.data_facts())   # the bars the windows count in, their clock, calendar and fill rule


def walk_forward_table(wf: Any) -> None:
    m = wf.primary_metric
    cols = ["window", "is_start", "is_end", "oos_start", "oos_end", *wf.param_columns, "is_score",
            f"oos_{m}", "oos_total_return_pct", "oos_max_drawdown_pct", "oos_total_trades", "status"]
    w = wf.windows
    table(w[[c for c in cols if c in w.columns]], "Per-window results", index=False, float_format="{:.4g}")


def walk_forward_metrics(wf: Any) -> None:
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
    res = opt.best_result
    _facts([("Combinations", f"{opt.total_runs} ({opt.successful_runs} ran)"),
            ("Basket", f"{res.name}: {opt.n_instruments} instruments, mode {res.mode}"),
            ("Parameters", ", ".join(opt.param_columns)),
            ("Target", f"{'maximize' if opt.maximize else 'minimize'} the portfolio's {opt.target}"),
            ("Selection", opt.message or "best eligible combination"), ("Engine", opt.engine)])


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

