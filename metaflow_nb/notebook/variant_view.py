"""The variant comparison view of the source design (10.3) with its three actions.

``VariantView(cmp)`` shows the starred metrics table, the causal analysis (rejected
opportunities per variant and the top reasons) and the equity overlay, under three
buttons:

* **Export Report**: ``mf.report(cmp.config_path, out=...)``; shows a link to the
  ``index.html`` it wrote (or why it could not);
* **View Details**: a variant dropdown and a reason-code filter over that variant's
  trades and journal;
* **Apply Winner**: writes the chosen variant's merged blueprint (default: the winner of
  the primary metric) as a new ``config/runs/<name>.yaml``; an existing file is never
  overwritten unless the *overwrite* box is ticked (otherwise ``<name>-2.yaml``, ...).

Every action is also a method (``export_report()``, ``show_details()``,
``apply_winner()``), and ``view.export_button.click()`` etc. run the same code as a click.
"""
from __future__ import annotations

import datetime as _dt
import html
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..config.models import WORKFORCE_SECTIONS, section_path
from ..engine.metrics import METRIC_DIRECTION
from ..errors import ConfigError
from ..reporting import api as reporting
from ..services.formatting import format_metric, without_empty_zones
from ..services.names import safe_stem
from ..services.results import setup_key

ALL_REASONS = "(all)"


def safe_name(text: str) -> str:
    """A file-name-safe spelling: letters, digits, ``_`` and ``-`` only.

    >>> safe_name("Exit Strategy / ATR based!")
    'Exit_Strategy_ATR_based'
    """
    return safe_stem(text, "variant")


def ordered_blueprint(bp: dict[str, Any]) -> dict[str, Any]:
    """The blueprint with keys in reading order (name, description, direction, workforce
    sections in pipeline order; each worker as instance_id, plugin, params).

    >>> ordered_blueprint({"workforce": {"opportunity_workers": [{"params": {}, "plugin": "sma_cross",
    ...                                                            "instance_id": "sma_1"}]}, "name": "x"})
    {'name': 'x', 'workforce': {'opportunity_workers': [{'instance_id': 'sma_1', 'plugin': 'sma_cross', 'params': {}}]}}
    """
    def worker(w: dict[str, Any]) -> dict[str, Any]:
        head = {k: w[k] for k in ("instance_id", "plugin", "params") if k in w}
        return {**head, **{k: v for k, v in w.items() if k not in head}}

    out: dict[str, Any] = {k: bp[k] for k in ("name", "description", "direction") if k in bp}
    wf = bp.get("workforce", {})
    owf: dict[str, Any] = {}
    for sec in WORKFORCE_SECTIONS:
        *parents, leaf = section_path(sec)
        src, dst = wf, owf
        for key in parents:
            if key not in src:
                break
            src, dst = src[key], dst.setdefault(key, {})
        else:
            if leaf in src:
                dst[leaf] = [worker(w) for w in src[leaf]]
    for key, sub in owf.items():
        if isinstance(sub, dict):  # keys of a nested group the sections do not name
            sub.update({k: v for k, v in wf[key].items() if k not in sub})
    owf.update({k: v for k, v in wf.items() if k not in owf})
    if wf:
        out["workforce"] = owf
    out.update({k: v for k, v in bp.items() if k not in out})
    return out


def blueprint_yaml(bp: dict[str, Any]) -> str:
    """A blueprint as YAML in the order a person writes it, every float as its exact
    shortest decimal without an exponent (``0.00009674584532728226``, not
    ``9.674584532728226e-05``): what reads back is what ran.

    >>> import yaml
    >>> text = blueprint_yaml({"name": "x", "params": {"min_gap": 9.674584532728226e-05, "rr": 2.0, "n": 3}})
    >>> print(text, end="")
    name: x
    params:
      min_gap: 0.00009674584532728226
      rr: 2.0
      n: 3
    >>> yaml.safe_load(text)["params"]["min_gap"] == 9.674584532728226e-05
    True
    """
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _float(dumper: Any, v: float) -> Any:
        if math.isfinite(v) and v != 0.0 and not 1e-4 <= abs(v) < 1e16:
            text = np.format_float_positional(v, unique=True, trim="-")
            return dumper.represent_scalar("tag:yaml.org,2002:float", text if "." in text else text + ".0")
        return yaml.SafeDumper.represent_float(dumper, v)

    _Dumper.add_representer(float, _float)
    return yaml.dump(ordered_blueprint(bp), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True)


def _html_table(df: pd.DataFrame, max_rows: int, what: str) -> str:
    if df.empty:
        return f"<p style='color:#666'>no {what}</p>"
    note = f"<p style='color:#666'>showing the first {max_rows} of {len(df)} {what}</p>" if len(df) > max_rows else ""
    body = without_empty_zones(df).head(max_rows).to_html(index=False, escape=True,
                                                          float_format=lambda v: f"{v:.6g}", na_rep="")
    return f"{note}<div style='max-height:320px;overflow:auto'>{body}</div>"


class VariantView:
    """Widget view of a :class:`~metaflow_nb.services.variants.VariantComparison`.

    ``runs_dir``: where *Apply Winner* writes blueprints (default ``config/runs`` of the
    working directory); ``report_out``: the ``out`` folder passed to ``mf.report``.
    """

    def __init__(self, cmp: Any, runs_dir: Optional[str | Path] = None, report_out: Optional[str | Path] = None,
                 max_rows: int = 200, figsize: Sequence[float] = (9.5, 4.2), dpi: float = 80):
        import ipywidgets as W

        from .plots import figure_png, plot_variants

        self.cmp = cmp
        self.runs_dir = Path(runs_dir) if runs_dir is not None else Path.cwd() / "config" / "runs"
        self.report_out = report_out
        self.max_rows = max_rows
        self.last_report: Any = None
        self.last_written: Optional[Path] = None

        src = f" &middot; <code>{html.escape(str(cmp.config_path))}</code>" if cmp.config_path else ""
        self.header = W.HTML(f"<h3 style='margin:4px 0'>Variant comparison: {html.escape(cmp.name)}</h3>"
                             f"<span style='color:#666'>primary metric {html.escape(cmp.primary_metric)}{src}</span>")
        self.table_html = W.HTML(self._table_html())
        self.table_html.add_class("mf-variant-table")
        self.causal_html = W.HTML(self._causal_html())
        self.causal_html.add_class("mf-variant-causal")
        self.equity_image = W.Image(value=figure_png(plot_variants(cmp, "equity", figsize=figsize, dpi=dpi)),
                                    format="png", layout=W.Layout(width=f"{int(figsize[0] * dpi)}px"))

        self.export_button = W.Button(description="Export Report", icon="file-export", button_style="primary",
                                      tooltip="Execute the report notebooks (papermill) and write an HTML comparison")
        self.details_button = W.Button(description="View Details", icon="table",
                                       tooltip="Trades and journal of one variant, filtered by reason code")
        self.apply_button = W.Button(description="Apply Winner", icon="check", button_style="success",
                                     tooltip="Write the chosen variant as a new blueprint YAML")
        self.export_button.on_click(lambda _b: self.export_report())
        self.details_button.on_click(lambda _b: self.show_details())
        self.apply_button.on_click(lambda _b: self.apply_winner())

        self.export_status = W.HTML()
        self.export_status.add_class("mf-export-status")

        ok = [v.name for v in cmp.variants if v.ok]
        self.details_variant = W.Dropdown(options=ok, value=ok[0] if ok else None, description="variant")
        self.details_reason = W.Dropdown(options=[ALL_REASONS], value=ALL_REASONS, description="reason code")
        self.details_html = W.HTML()
        self.details_html.add_class("mf-variant-details")
        hide = W.Button(description="Hide details", icon="times")
        hide.on_click(lambda _b: setattr(self.details_box.layout, "display", "none"))
        self.details_box = W.VBox([W.HBox([self.details_variant, self.details_reason, hide]), self.details_html],
                                  layout=W.Layout(display="none"))
        self.details_variant.observe(self._on_variant, names="value")
        self.details_reason.observe(lambda _c: self._render_details(), names="value")

        winner = self.winner()
        self.winner_choice = W.Dropdown(options=ok, value=winner if winner in ok else (ok[0] if ok else None),
                                        description="variant", tooltip="The variant Apply Winner writes")
        self.overwrite = W.Checkbox(value=False, description="overwrite an existing file", indent=False)
        self.apply_status = W.HTML()
        self.apply_status.add_class("mf-apply-status")
        if not ok:
            self.apply_button.disabled = True
            self.details_button.disabled = True

        self.widget = W.VBox([
            self.header, self.table_html, self.causal_html, self.equity_image,
            W.HBox([self.export_button, self.details_button, self.apply_button]),
            self.export_status,
            W.HBox([self.winner_choice, self.overwrite]), self.apply_status,
            self.details_box,
        ])
        self.widget.add_class("mf-variant-view")

    # ------------------------------------------------------------ content
    def _table_html(self) -> str:
        sig = ""
        if self.cmp.significance:
            sig = f"<p>{html.escape(str(self.cmp.significance.get('summary', '')))}</p>"
        failed = "".join(f"<p style='color:#b00020'>{html.escape(v.name)} failed: {html.escape(v.outcome.error_type)}: "
                         f"{html.escape(v.outcome.error_message)}</p>" for v in self.cmp.variants if not v.ok)
        return ("<p><b>Metrics</b> (\u2605 = significant winner of the row)</p>"
                + self.cmp.table().to_html(escape=True, classes="mf-metrics") + sig + failed)

    def _causal_html(self) -> str:
        c = self.cmp.causal()
        defensive = self.cmp.most_defensive()
        clearly = self.cmp.more_defensive()   # only a significant difference earns the tag
        lines = []
        for name, row in c.iterrows():
            if row["detected"] is None or pd.isna(row["detected"]):
                lines.append(f"<li>{html.escape(str(name))}: failed</li>")
                continue
            tag = " &mdash; <i>more defensive</i>" if name == clearly else ""
            lines.append(f"<li>{html.escape(str(name))}: {int(row['rejected'])} of {int(row['detected'])} "
                         f"({format_metric('rejection_rate_pct', row['rejected_pct'])}){tag}</li>")
        out = "<p><b>Causal analysis</b>: opportunities rejected</p><ul>" + "".join(lines) + "</ul>"
        if self.cmp.defensive_text():
            out += f"<p>{html.escape(self.cmp.defensive_text())}.</p>"
        if defensive:
            r = self.cmp.reasons(defensive)
            items = "".join(f"<li>{html.escape(str(k))}: {int(v['count'])} ({float(v['share_pct']):.0f} %)</li>"
                            for k, v in r.iterrows())
            out += f"<p>Top rejection reasons ({html.escape(defensive)})</p><ul>{items or '<li>none</li>'}</ul>"
        return out

    def winner(self) -> Optional[str]:
        """The winner of the primary metric (ties: none), else the best by it, else the first."""
        m = self.cmp.primary_metric
        w = self.cmp.winners().get(m) if m in self.cmp.metrics else None
        if w:
            return w
        res = self.cmp.results
        sense = METRIC_DIRECTION.get(m, 1) or 1
        vals = [(r.metrics.get(m), n) for n, r in res.items()]
        vals = [(v, n) for v, n in vals if isinstance(v, (int, float)) and v == v]
        if vals:
            return max(vals, key=lambda t: t[0] * sense)[1]
        return next(iter(res), None)

    # ------------------------------------------------------------ actions
    def export_report(self) -> Any:
        """Run ``mf.report`` on the comparison's config; show a link to its index.html."""
        if not self.cmp.config_path:
            self.export_status.value = ("<span style='color:#b00020'>This comparison has no config file to report "
                                        "on; run it with mf.compare_variants(path).</span>")
            return None
        self.export_status.value = "<i>Exporting report&hellip; (executes one notebook per variant)</i>"
        try:
            rep = reporting.report(self.cmp.config_path, out=self.report_out)
        except (ImportError, NotImplementedError) as exc:
            self.export_status.value = (f"<span style='color:#b00020'>Export Report is not available: "
                                        f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>")
            return None
        except Exception as exc:  # noqa: BLE001 - shown, not raised, from a button
            self.export_status.value = (f"<span style='color:#b00020'>Export failed: {html.escape(type(exc).__name__)}: "
                                        f"{html.escape(str(exc))}</span>")
            return None
        self.last_report = rep
        index = Path(rep.index)
        try:
            href = os.path.relpath(index, Path.cwd())
        except ValueError:  # another drive (Windows)
            href = index.as_uri()
        self.export_status.value = (f"Report written: <a href='{html.escape(href)}' target='_blank'>"
                                    f"{html.escape(index.name)}</a> <code>{html.escape(str(index))}</code>")
        return rep

    def _reason_codes(self, name: str) -> list[str]:
        res = self.cmp.results.get(name)
        if res is None:
            return []
        j = res.journal
        codes = pd.concat([j["reason"], j["active_reasons"].str.split("|").explode(), res.trades["exit_reason"]])
        codes = codes[codes.astype(bool)]
        return list(codes.value_counts().index)

    def _check_reason(self, reason: str) -> None:
        """A reason code some worker could give (a built-in's, a plugin's, one in any
        variant's journal); a typo would show as a code that never fired (hunt54 F3)."""
        from ..engine.codes import REASON_NAMES

        if reason and reason in REASON_NAMES.values():
            return   # every code the engine and the plugins of this process give: no journal read
        seen = {c for n in self.cmp.results for c in self._reason_codes(n)}
        known = (set(REASON_NAMES.values()) - {""}) | seen
        if reason not in known:
            raise ConfigError(f"reason {reason!r}: no such reason code; these variants' codes: "
                              f"{', '.join(sorted(seen)) or 'none'} (known: {', '.join(sorted(known))})")

    def _on_variant(self, _change: Any = None) -> None:
        codes = [ALL_REASONS] + self._reason_codes(self.details_variant.value)
        keep = self.details_reason.value if self.details_reason.value in codes else ALL_REASONS
        self._hold = True
        try:
            self.details_reason.options = codes
            self.details_reason.value = keep
        finally:
            self._hold = False
        self._render_details()

    def filtered(self, name: str, reason: Optional[str] = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(trades, journal)`` of one variant; with ``reason``, journal events carrying that
        code (as reason or among the active threats) and the trades exiting with it or
        coming from those opportunities."""
        res = self.cmp.results[name]
        trades, journal = res.trades, res.journal
        if reason and reason != ALL_REASONS:
            self._check_reason(reason)
            active = journal["active_reasons"].str.split("|").map(lambda xs: reason in xs)
            journal = journal[(journal["reason"] == reason) | active]
            key = setup_key(trades, journal)
            mine = pd.MultiIndex.from_frame(trades[key]).isin(pd.MultiIndex.from_frame(journal[key]))
            trades = trades[(trades["exit_reason"] == reason).to_numpy() | mine]
        return trades, journal

    def _render_details(self) -> None:
        if getattr(self, "_hold", False):
            return
        name = self.details_variant.value
        if name is None:
            self.details_html.value = "<p>no variant ran successfully</p>"
            return
        reason = self.details_reason.value
        trades, journal = self.filtered(name, reason)
        what = "" if reason == ALL_REASONS else f" with reason code <b>{html.escape(reason)}</b>"
        self.details_html.value = (
            f"<p><b>{html.escape(name)}</b>{what}: {len(trades)} trades, {len(journal)} journal events</p>"
            f"<p><b>Trades</b></p>{_html_table(trades, self.max_rows, 'trades')}"
            f"<p><b>Journal</b></p>{_html_table(journal, self.max_rows, 'journal events')}")

    def show_details(self, variant: Optional[str] = None, reason: Optional[str] = None) -> None:
        """Open the details panel (optionally on one variant and reason code)."""
        if reason is not None and reason != ALL_REASONS:
            self._check_reason(reason)
        if variant is not None:
            if variant not in self.details_variant.options:
                # it was ipywidgets' TraitError (hunt116 F5)
                raise ConfigError(f"variant {variant!r}: no such variant; variants: "
                                  f"{', '.join(map(str, self.details_variant.options))}")
            self.details_variant.value = variant
        self._on_variant()
        if reason is not None:
            if reason not in self.details_reason.options:
                self.details_reason.options = [*self.details_reason.options, reason]
            self.details_reason.value = reason
        self.details_box.layout.display = None
        self._render_details()

    def apply_winner(self, variant: Optional[str] = None, name: Optional[str] = None,
                     overwrite: Optional[bool] = None) -> Optional[Path]:
        """Write the variant's merged blueprint to ``runs_dir/<name>.yaml``; returns the path.

        ``variant`` defaults to the dropdown (initially the winner of the primary metric);
        ``name`` to ``<blueprint>_<variant>``; an existing file is kept and ``-2``, ``-3``...
        appended unless ``overwrite`` (default: the checkbox) is set.
        """
        variant = variant or self.winner_choice.value
        run = next((v for v in self.cmp.variants if v.name == variant), None)
        if run is None or run.specs is None:
            self.apply_status.value = f"<span style='color:#b00020'>no variant {html.escape(str(variant))!s}</span>"
            return None
        overwrite = self.overwrite.value if overwrite is None else overwrite
        bp = run.specs.blueprint
        stem = safe_name(name or f"{bp.get('name', 'strategy')}_{variant}")
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            m = run.result.metrics if run.result is not None else {}
            head = (f"# Winner of the variant test {self.cmp.name!r}"
                    + (f" ({self.cmp.config_path})" if self.cmp.config_path else "") + "\n"
                    f"# variant {variant!r}: {run.description}\n"
                    f"# base run id {run.specs.run_id}; {self.cmp.primary_metric} = "
                    f"{format_metric(self.cmp.primary_metric, m.get(self.cmp.primary_metric))}\n"
                    f"# written by metaflow_nb VariantView.apply_winner, {_dt.datetime.now():%Y-%m-%d %H:%M}\n")
            text = head + blueprint_yaml(bp)
            path = self._write(stem, text, overwrite)
        except OSError as exc:
            self.apply_status.value = (f"<span style='color:#b00020'>could not write the blueprint: "
                                       f"{html.escape(str(exc))}</span>")
            return None
        self.last_written = path
        verb = "Overwrote" if overwrite and self._existed else "Wrote"
        note = "" if path.name == f"{stem}.yaml" else f" ({stem}.yaml exists; not overwritten)"
        self.apply_status.value = (f"{verb} the blueprint of <b>{html.escape(variant)}</b> to "
                                   f"<code>{html.escape(str(path))}</code>{note}")
        return path

    def _write(self, stem: str, text: str, overwrite: bool) -> Path:
        target = self.runs_dir / f"{stem}.yaml"
        self._existed = target.exists()
        if overwrite:
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
            return target
        k = 1
        while True:
            path = target if k == 1 else self.runs_dir / f"{stem}-{k}.yaml"
            try:
                with open(path, "x", encoding="utf-8") as fh:  # exclusive: never clobbers
                    fh.write(text)
                return path
            except FileExistsError:
                k += 1

    # ------------------------------------------------------------ display
    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(include=include, exclude=exclude, **kwargs)

    def __repr__(self) -> str:
        return f"VariantView({self.cmp.name!r}, variants={[v.name for v in self.cmp.variants]})"


def show_comparison(cmp: Any, **kwargs: Any) -> VariantView:
    """The :class:`VariantView` of a comparison; end a cell with it to show it."""
    return VariantView(cmp, **kwargs)
