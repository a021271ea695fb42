"""``index.html``: every run of a report side by side, one self-contained offline page.

Inline CSS only, figures as base64 PNG, no scripts; relative links to the pages; every
name from a config goes through :func:`html.escape`. Failed pages are marked with their
error and a link to the partially executed notebook.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from ..services.files import write_text
from ..services.formatting import format_metric, metrics_table_html
from ..services.optimization import constraint_checks
from ..services.tearsheet_page import overrides_text
from ..services.variants import STAR
from . import figures
from .export import make_offline, remote_references
from .pages import numbers_shown, readable_times, selection_banner_html

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;margin:0;color:#1d2330;
background:#f5f6f8;font-size:14px}
main{max-width:1180px;margin:0 auto;padding:18px 28px 40px}
header{background:#1f3a5f;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:24px}
header p{margin:0;color:#d6e2f2;font-size:13px}
header a{color:#fff}
header code{background:#2e4f7a;color:#fff}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:14px 18px;margin:16px 0;overflow-x:auto}
h2{font-size:18px;margin:0 0 10px;color:#1f3a5f}
h3{font-size:15px;margin:12px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:4px 0 8px}
th,td{padding:5px 10px;border-bottom:1px solid #e3e6eb;text-align:right;vertical-align:top}
th:first-child,td.l{text-align:left}
thead th{background:#eef1f5;text-align:right}
thead th:first-child{text-align:left}
td.win{background:#fff6d6;font-weight:600}
.star{color:#d49b00}
.ok{color:#17803d;font-weight:600}
.failed{color:#b00020;font-weight:600}
.err{background:#fdecee;border-left:4px solid #b00020;padding:8px 12px;margin:8px 0;font-family:monospace;
font-size:12px;white-space:pre-wrap;word-break:break-word}
.note{color:#5b6472;font-size:12px}
.flex{display:flex;flex-wrap:wrap;gap:18px}
img{max-width:100%;height:auto;border:1px solid #eef0f3}
code{font-size:12px;background:#f0f2f5;padding:1px 4px;border-radius:3px;word-break:break-all}
footer{color:#5b6472;font-size:12px;margin-top:24px}
.scroll{overflow-x:auto}
.scroll td{white-space:nowrap}
"""

KIND_LABEL = {"variant_config": "Variant test", "optimization_config": "Optimization",
              "walk_forward_config": "Walk-forward validation"}


def e(x: Any) -> str:
    """``x`` as text safe inside HTML and its attributes (every name from a config goes
    through it).

    >>> e("<b>fast & 'slow'</b>")
    '&lt;b&gt;fast &amp; &#x27;slow&#x27;&lt;/b&gt;'
    """
    return html.escape(str(x), quote=True)


def _img(fig: Any, alt: str) -> str:
    return f"<img alt='{e(alt)}' src='{figures.png_data_uri(fig)}'>"


def _figure(make: Any, alt: str) -> str:
    try:
        return _img(make(), alt)
    except Exception as exc:  # noqa: BLE001 - an index without one figure beats no index
        return f"<p class='note'>{e(alt)}: figure unavailable ({e(type(exc).__name__)}: {e(exc)})</p>"


def _frame_html(frame: pd.DataFrame, index: bool = True, fmt: str = "{:.4g}") -> str:
    body = numbers_shown(readable_times(frame), fmt).to_html(escape=True, index=index, na_rep="", border=0)
    return f"<div class='scroll'>{body}</div>"


def _page_link(page: Any, text: Optional[str] = None) -> str:
    label = e(text if text is not None else page.title)
    if page.html:
        return f"<a href='{e(Path(page.html).name)}'>{label}</a>"
    return label


def _status(page: Any) -> str:
    return "<span class='ok'>ok</span>" if page.ok else "<span class='failed'>failed</span>"


def pages_section(pages: Sequence[Any], runs_by_page: dict[str, Any]) -> str:
    """The *Pages* section: per page a link (a variant's page by its run name), the run's
    description, ok or failed, the run id and the executed notebook.

    >>> from types import SimpleNamespace as NS
    >>> page = NS(name="atr", title="Exits: atr", kind="variant", run="atr", ok=True, html="r/atr.html",
    ...           notebook="r/atr.ipynb")
    >>> "<a href='atr.html'>atr</a>" in pages_section([page], {})
    True
    """
    rows = []
    for p in pages:
        run = runs_by_page.get(p.name)
        rid = f"<code>{e(run.specs.run_id)}</code>" if run is not None else ""
        nb = f"<a href='{e(Path(p.notebook).name)}'>{e(Path(p.notebook).name)}</a>" if p.notebook else ""
        desc = e(run.description) if run is not None and run.description else ""
        label = p.run if p.kind == "variant" and p.run else p.title
        rows.append(f"<tr><td class='l'>{_page_link(p, label)}</td><td class='l'>{desc}</td>"
                    f"<td class='l'>{_status(p)}</td><td class='l'>{rid}</td><td class='l'>{nb}</td></tr>")
    return ("<section><h2>Pages</h2><table><thead><tr><th>Page</th><th>Description</th><th>Status</th>"
            "<th>Run id</th><th>Notebook</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>")


def failed_section(pages: Sequence[Any]) -> str:
    """The *Failed* section: each failed page's error and links to its partially executed
    notebook (and its HTML); empty when every page ran.

    >>> from types import SimpleNamespace as NS
    >>> bad = NS(ok=False, run="atr", title="Exits: atr", error="ValueError: x", notebook="r/atr.ipynb", html=None)
    >>> failed_section([bad])[:65], failed_section([])
    ("<section id='failed'><h2>Failed (1)</h2><div class='failed-page'>", '')
    """
    failed = [p for p in pages if not p.ok]
    if not failed:
        return ""
    items = []
    for p in failed:
        links = [f"<a href='{e(Path(p.notebook).name)}'>partially executed notebook ({e(Path(p.notebook).name)})</a>"]
        if p.html:
            links.append(f"<a href='{e(Path(p.html).name)}'>as HTML</a>")
        items.append(f"<div class='failed-page'><h3><span class='failed'>failed</span> {e(p.run or p.title)}</h3>"
                     f"<div class='err'>{e(p.error)}</div><p>{' &middot; '.join(links)}</p></div>")
    return f"<section id='failed'><h2>Failed ({len(failed)})</h2>{''.join(items)}</section>"


# ---------------------------------------------------------------- variants

def comparison_table(cmp: Any, pages_by_run: dict[str, Any]) -> str:
    """The starred metrics table: metric rows, one column per variant.

    Cells come from the comparison's own :meth:`~VariantComparison.table`, so a report
    stars exactly what the notebook and the CLI star: a winner only where the bootstrap
    says the difference is significant, with its p-value either way.

    >>> import pandas as pd
    >>> from types import SimpleNamespace as NS
    >>> cmp = NS(table=lambda: pd.DataFrame({"a": [f"1.2 (p=0.01) {STAR}"], "b": ["0.9"]}, index=["Sharpe"]),
    ...          variants=[NS(name="a", ok=True), NS(name="b", ok=True)], significance=None)
    >>> comparison_table(cmp, {}).count("class='win'")
    1
    """
    table = cmp.table()
    head = "".join(f"<th>{_page_link(pages_by_run[v.name], v.name) if v.name in pages_by_run else e(v.name)}</th>"
                   for v in cmp.variants)
    rows = []
    for label in table.index:
        cells = []
        for v in cmp.variants:
            text = str(table.loc[label, v.name])
            if not v.ok:
                cells.append("<td class='failed'>failed</td>")
            elif STAR in text:
                val = e(text.replace(f" {STAR}", "")).replace(" (", " <span class='note'>(", 1)
                val = val + "</span>" if "<span" in val else val
                cells.append(f"<td class='win'>{val} <span class='star' title='significant winner'>&#9733;</span></td>")
            else:
                val = e(text).replace(" (", " <span class='note'>(", 1)
                cells.append(f"<td>{val + '</span>' if '<span' in val else val}</td>")
        rows.append(f"<tr><th>{e(label)}</th>{''.join(cells)}</tr>")
    summary = (cmp.significance or {}).get("summary")
    note = f"<p class='note'>Bootstrap test of each row winner against the runner-up: {e(summary)}</p>" \
        if summary else ""
    return (f"<table class='comparison'><thead><tr><th>Metric</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{note}")


def causal_section(cmp: Any) -> str:
    """The *Causal analysis* section: per variant the opportunities detected and rejected
    (the more defensive one tagged, when the difference is significant), and each
    variant's top rejection reasons. Needs a :class:`~metaflow_nb.services.variants.VariantComparison`
    (``mf.compare_variants``); the index of a variant report shows it."""
    defensive = cmp.more_defensive()   # only when the difference in rejected share is significant
    rows = []
    for v in cmp.variants:
        if not v.ok:
            rows.append(f"<tr><td class='l'>{e(v.name)}</td><td colspan='3' class='failed'>failed</td></tr>")
            continue
        m = v.result.metrics
        tag = " <span class='note'>(more defensive)</span>" if v.name == defensive else ""
        rows.append(f"<tr><td class='l'>{e(v.name)}{tag}</td><td>{int(m['opportunities_detected'])}</td>"
                    f"<td>{int(m['opportunities_rejected'])}</td>"
                    f"<td>{format_metric('rejection_rate_pct', m['rejection_rate_pct'])}</td></tr>")
    causal = ("<table><thead><tr><th>Variant</th><th>Detected</th><th>Rejected</th><th>Rejected share</th></tr>"
              f"</thead><tbody>{''.join(rows)}</tbody></table>")
    reasons = []
    for name, res in cmp.results.items():
        r = res.rejections()
        body = "".join(f"<tr><td class='l'>{e(k)}</td><td>{int(row['count'])}</td><td>{row['share_pct']:.1f} %</td>"
                       f"<td>{int(row['active'])}</td></tr>"
                       for k, row in r.head(5).iterrows()) or "<tr><td class='l' colspan='4'>none</td></tr>"
        reasons.append(f"<div><h3>Top rejection reasons: {e(name)}</h3><table><thead><tr><th>Reason</th>"
                       f"<th>Count</th><th>Share</th><th>Active in</th></tr></thead><tbody>{body}</tbody>"
                       "</table></div>")
    verdict = f"<p class='note'>{e(cmp.defensive_text())}.</p>" if cmp.defensive_text() else ""
    return (f"<section><h2>Causal analysis</h2><p>Opportunities each variant's threat workers rejected. A "
            f"rejection counts under the first threat active (workforce order); <i>active in</i> counts every "
            f"rejection a reason was active in, deciding or not.</p>"
            f"{causal}{verdict}"
            f"<div class='flex'>{''.join(reasons)}</div></section>")   # the bootstrap's winners: under the table


def variants_body(plan: Any, pages: Sequence[Any]) -> str:
    """The index of a variant test: the starred comparison table, the causal analysis, the
    equity overlay and the rejection reasons of ``plan.result`` (a VariantComparison)."""
    cmp = plan.result
    pages_by_run = {p.run: p for p in pages if p.run is not None}
    parts = [f"<section><h2>Comparison</h2>{comparison_table(cmp, pages_by_run)}"
             f"<p class='note'>&#9733; marks a row winner whose lead over the runner-up is significant (stationary block bootstrap, 5 %); p-values are shown for every row winner.</p></section>",
             causal_section(cmp)]
    if cmp.results:
        parts.append("<section><h2>Equity overlay</h2>"
                     + _figure(lambda: figures.variants_equity(cmp), "equity overlay") + "</section>")
        parts.append("<section><h2>Rejection reasons</h2>"
                     + _figure(lambda: figures.variants_rejections(cmp), "rejection reasons")
                     + "</section>")
    return "".join(parts)


# ---------------------------------------------------------------- optimization

#: rows of an optimization index's results table (a 1,176-run sweep listed every run:
#: 33,000 px); all runs are in the report's all_results.csv
TOP_RUNS = 50


def _heatmaps(opt: Any, metric: str) -> str:
    """The heatmaps section: ``metric`` and the total return over the first two parameters."""
    heat = "".join(_figure(lambda m=m: figures.optimization_heatmap(opt, m), f"heatmap of {m}")
                   for m in dict.fromkeys([metric, "total_return_pct"]))
    return f"<section><h2>Heatmaps</h2><div class='flex'>{heat}</div></section>"


def _results(frame: pd.DataFrame, params: Sequence[str], metric: str) -> pd.DataFrame:
    """The results table's columns: parameters, ``metric``, the headline metrics, status."""
    cols = [*params, metric, "total_return_pct", "max_drawdown_pct", "win_rate_pct", "total_trades", "eligible",
            "status"]
    return frame[list(dict.fromkeys(c for c in cols if c in frame.columns))]


def optimization_body(plan: Any, pages: Sequence[Any], link_csv: bool = True) -> str:
    """The optimization index: honesty banner, summary, best run, heatmaps and the top
    :data:`TOP_RUNS` runs, with a link to every run's CSV."""
    opt = plan.result
    t = opt.target
    m = t.primary_metric
    facts = [("Runs", f"{opt.total_runs} ({opt.successful_runs} ok, {opt.failed_runs} failed)"),
             ("Parameters", ", ".join(opt.param_columns)),
             ("Target", f"{'maximize' if t.maximize() else 'minimize'} {m}"),
             ("Constraints", ", ".join(c[0] for c in constraint_checks(t)) or "none"), ("Selection", opt.message)]
    parts = [f"<section><h2>Selection bias</h2>{selection_banner_html(opt.statistics)}</section>",
             "<section><h2>Summary</h2><table>" + "".join(
        f"<tr><th>{e(k)}</th><td class='l'>{e(v)}</td></tr>" for k, v in facts) + "</table></section>"]
    best_page = next((p for p in pages if p.kind == "best_run"), None)
    if opt.best_params is not None:
        params = overrides_text(opt.best_params)
        link = f" &middot; {_page_link(best_page, 'report of the best run')}" if best_page else ""
        parts.append(f"<section><h2>Best run</h2><p><code>{e(params)}</code>{link}</p>"
                     + metrics_table_html(opt.best_metrics or {}) + "</section>")
    parts.append(_heatmaps(opt, m))
    frame = _results(opt.all_results, opt.param_columns, m).sort_values(m, ascending=not t.maximize(), na_position="last")
    shown = f"top {TOP_RUNS} of {len(frame):,}" if len(frame) > TOP_RUNS else f"all {len(frame):,}"
    csv = " &middot; every run: <a href='all_results.csv'>all_results.csv</a>" if link_csv else ""
    parts.append(f"<section><h2>Results</h2><p class='note'>{shown} runs sorted by {e(m)}{csv}</p>"
                 + _frame_html(frame.head(TOP_RUNS), index=False) + "</section>")
    return "".join(parts)


def basket_optimization_body(plan: Any, pages: Sequence[Any]) -> str:
    """The index of an optimization over a basket: honesty banner, summary, best
    combination, heatmaps and the top :data:`TOP_RUNS` combinations (every combination
    one portfolio run), each symbol's pick in mode independent with ``per_instrument``."""
    opt = plan.result
    m = opt.target
    res = opt.best_result
    facts = [("Combinations", f"{opt.total_runs} ({opt.successful_runs} ran)"),
             ("Basket", f"{res.name}: {opt.n_instruments} instruments ({', '.join(res.symbols)}), mode {res.mode}"),
             ("Parameters", ", ".join(opt.param_columns)),
             ("Target", f"{'maximize' if opt.maximize else 'minimize'} the portfolio's {m}"),
             ("Selection", opt.message or "best eligible combination")]
    parts = [f"<section><h2>Selection bias</h2>{selection_banner_html(opt.statistics)}</section>",
             "<section><h2>Summary</h2><table>" + "".join(
        f"<tr><th>{e(k)}</th><td class='l'>{e(v)}</td></tr>" for k, v in facts) + "</table></section>"]
    best_page = next((p for p in pages if p.kind == "best_run"), None)
    if opt.best_row is not None:
        params = "; ".join(f"{c} = {opt.best_row[c]}" for c in opt.param_columns)
        link = f" &middot; {_page_link(best_page, 'page of the best combination')}" if best_page else ""
        parts.append(f"<section><h2>Best combination</h2><p><code>{e(params)}</code>{link}</p>"
                     + metrics_table_html(res.metrics) + "</section>")
    if opt.param_columns:
        parts.append(_heatmaps(opt, m))
    frame = _results(opt.table, opt.param_columns, m)
    shown = f"top {TOP_RUNS} of {len(frame):,}" if len(frame) > TOP_RUNS else f"all {len(frame):,}"
    parts.append(f"<section><h2>Results</h2><p class='note'>{shown} combinations by {e(m)} &middot; every "
                 f"combination: <a href='all_results.csv'>all_results.csv</a></p>"
                 + _frame_html(frame.head(TOP_RUNS), index=False) + "</section>")
    if opt.show_per_instrument and opt.per_instrument is not None:
        picks = opt.best_per_instrument()
        keep = [c for c in picks.columns if "." in c] + [m, "total_trades", "deflated_sharpe", "eligible"]
        parts.append("<section><h2>Best combination per instrument</h2><p class='note'>Deflated Sharpe ratio "
                     "counting every symbol x combination.</p>"
                     + _frame_html(picks[[c for c in keep if c in picks.columns]]) + "</section>")
    return "".join(parts)


# ---------------------------------------------------------------- walk-forward

def walk_forward_body(plan: Any, pages: Sequence[Any]) -> str:
    """The index of a walk-forward validation: honesty banner, summary (windows,
    efficiency, data facts), the per-window table and the stitched out-of-sample equity
    and metrics of ``plan.result`` (a WalkForwardResult)."""
    wf = plan.result
    m = wf.primary_metric
    eff = "n/a" if wf.efficiency is None or not math.isfinite(wf.efficiency) else f"{wf.efficiency:.3f}"
    facts = [("Windows", str(len(wf.windows))), ("Parameters", ", ".join(wf.param_columns)), ("Target", m),
             ("Walk-forward efficiency", eff), *wf.data_facts()]
    parts = [f"<section><h2>Selection bias</h2>{selection_banner_html(wf.statistics)}</section>",
             "<section><h2>Summary</h2><table>" + "".join(
        f"<tr><th>{e(k)}</th><td class='l'>{e(v)}</td></tr>" for k, v in facts) + "</table></section>"]
    cols = ["window", "is_start", "oos_start", "oos_end", *wf.param_columns, "is_score", f"oos_{m}",
            "oos_total_return_pct", "oos_max_drawdown_pct", "oos_total_trades", "status"]
    w = wf.windows
    parts.append("<section><h2>Windows</h2>" + _frame_html(w[[c for c in cols if c in w.columns]], index=False)
                 + "</section>")
    parts.append("<section><h2>Stitched out-of-sample equity</h2>"
                 + _figure(lambda: figures.walk_forward_figure(wf), "out-of-sample equity")
                 + (metrics_table_html(wf.oos_metrics, "Out-of-sample metrics (stitched)") if wf.oos_metrics else "")
                 + (f"<p class='note'>{e(wf.open_text())}</p>" if wf.open_text() else "")
                 + "</section>")
    return "".join(parts)


BODIES = {"variant_config": variants_body, "optimization_config": optimization_body,
          "walk_forward_config": walk_forward_body}


def _footer(manifest: dict[str, Any]) -> str:
    c = manifest["content"]
    data = "".join(f"<li><code>{e(d['file'] or d['source'])}</code> sha256 <code>{e(d['sha256'])}</code></li>"
                   for d in c.get("data", []))
    pk = ", ".join(f"{e(k)} {e(v)}" for k, v in c.get("packages", {}).items())
    return (f"<footer><p>Manifest content sha256 <code>{e(manifest['content_sha256'])}</code> &middot; "
            f"<a href='manifest.json'>manifest.json</a> &middot; seed {e(c.get('seed'))}</p>"
            "<p>This page stands alone: its tables and figures are in it. Its links to each run's page and to "
            "the manifest need the folder beside it (<code>metaflow-nb report --zip</code> writes the folder "
            "as one file to send).</p>"
            f"<ul>{data}</ul><p>{pk}</p></footer>")


def render_index(plan: Any, pages: Sequence[Any], manifest: dict[str, Any]) -> str:
    """The whole ``index.html`` of a report plan as text: header (kind, config, runs,
    costs), failed pages, the pages table, the body of the plan's kind and the manifest
    footer; inline CSS, no scripts."""
    runs_by_page = {r.page: r for r in plan.runs if r.page}
    n_failed = sum(1 for p in pages if not p.ok)
    sub = (f"{e(KIND_LABEL[plan.root])} &middot; config <code>{e(plan.config_path.name)}</code> &middot; "
           f"{len(plan.runs)} runs, {len(pages)} pages"
           + (f", <a href='#failed'>{n_failed} failed</a>" if n_failed else "")
           + " &middot; <a href='manifest.json'>manifest.json</a>")
    body = (basket_optimization_body if getattr(plan, "basket", False) and plan.root == "optimization_config"
            else BODIES[plan.root])(plan, pages)
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{e(plan.name)}: report</title><style>{CSS}</style></head><body>"
            f"<header><h1>{e(plan.name)}</h1><p>{sub}</p>"
            f"<p class='mf-costs'>{e(plan.result.costs_text())}</p></header><main>"
            f"{failed_section(pages)}{pages_section(pages, runs_by_page)}{body}{_footer(manifest)}"
            "</main></body></html>\n")


def write_index(plan: Any, pages: Sequence[Any], manifest: dict[str, Any], folder: Path) -> Path:
    """Write :func:`render_index` to ``folder/index.html`` (checked to load nothing from
    the network); returns its path."""
    text = make_offline(render_index(plan, pages, manifest))
    bad = remote_references(text)
    if bad:  # pragma: no cover
        raise RuntimeError(f"index.html would reference the network: {bad[0]}")
    return write_text(Path(folder) / "index.html", text)   # a full disk names the file (hunt87 F3)
