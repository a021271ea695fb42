"""Reports end to end: papermill per page, offline HTML, index, manifest, --verify.

Reports are generated once per test process (``generated(key)``, shared with
``test_reports_offline.py`` and ``test_browser_reports.py``) in a private temporary
folder: concurrent test sessions never write into each other's reports. Set
``MF_KEEP_REPORTS=DIR`` to keep them in DIR instead.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import functools
import gzip
import hashlib
import io
import html
import json
import os
import re
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("MF_KEEP_REPORTS") or tempfile.mkdtemp(prefix="mf-reports-")).resolve()
if not os.environ.get("MF_KEEP_REPORTS"):
    atexit.register(shutil.rmtree, OUT, True)
VARIANT_CONFIG = ROOT / "config/variants/exit_strategy_test.yaml"
OPT_CONFIG = ROOT / "config/optimizations/optimize_fvg_params.yaml"
WF_CONFIG = ROOT / "config/walk_forward/fvg_walk_forward.yaml"
EVIL = "../evil<script>"

EVIL_CONFIG = f"""\
variant_config:
  name: "Names <b>&</b> failures"
  base_operation: "{ROOT}/config/operations/ict_backtest.yaml"
  base_strategy: "{ROOT}/config/runs/ict_smc_strategy.yaml"
  variants:
    - name: "{EVIL}"
      description: "a <script>alert(1)</script> description"
      overrides:
        workforce:
          planning_workers:
            exit_planning:
              - instance_id: "exit_1"
                plugin: "atr_based_stops"
                params:
                  atr_multiplier: 2.0
    - name: "broken"
      description: "a date range outside the data: valid config, fails when it runs"
      overrides:
        operation:
          data:
            start: "2030-01-01"
"""


SURVIVING_CONFIG = f"""\
optimization_config:
  name: "SMA trend, two trials"
  base_operation: "{ROOT}/config/operations/sp500_daily.yaml"
  base_strategy: "{ROOT}/config/runs/sma_cross_long_stops.yaml"
  parameter_space:
    - worker_instance: "sma_1"
      parameters:
        fast: {{values: [50, 55]}}
        slow: {{values: [200]}}
    - worker_instance: "stops_1"
      parameters:
        stop_loss_pct: {{values: [30.0]}}
  optimization_target:
    primary_metric: "sharpe_ratio"
"""


def _tmp(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"src-{name}-", dir=OUT))


def _cli_json(argv: list[str]) -> tuple[int, dict[str, Any]]:
    from metaflow_nb.cli import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(argv)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    assert len(lines) == 1, buf.getvalue()[-2000:]
    return rc, json.loads(lines[0])


def _shifted_csv_config(folder: Path) -> Path:
    """The EURUSD sample as a plain CSV in ``folder`` and a one-variant config reading it."""
    from metaflow_nb.data import sample_path
    csv = folder / "eurusd_15m.csv"
    with gzip.open(sample_path("eurusd_15m"), "rt") as src:
        csv.write_text(src.read())
    op = (ROOT / "config/operations/ict_backtest.yaml").read_text()
    op = re.sub(r"source:\s*eurusd_15m", f"source: {csv}", op)
    assert str(csv) in op
    (folder / "op.yaml").write_text(op)
    cfg = folder / "one_variant.yaml"
    cfg.write_text(f"""\
variant_config:
  name: "ATR stops on a CSV copy"
  base_operation: "{folder / 'op.yaml'}"
  base_strategy: "{ROOT}/config/runs/ict_smc_strategy.yaml"
  variants:
    - name: "atr_based"
      overrides:
        workforce:
          planning_workers:
            exit_planning:
              - instance_id: "exit_1"
                plugin: "atr_based_stops"
                params:
                  atr_multiplier: 2.0
""")
    return cfg


@functools.lru_cache(maxsize=None)
def generated(key: str) -> SimpleNamespace:
    """One report per key per session: ``folder``, ``index``, ``manifest`` and the
    ReportResult (``result``) or the CLI's JSON (``cli``)."""
    from metaflow_nb.reporting import report
    if key in ("variant", "variant_again"):
        rep = report(VARIANT_CONFIG, out=OUT / key, workers=2)
    elif key == "evil":
        cfg = _tmp("evil") / "evil_names.yaml"
        cfg.write_text(EVIL_CONFIG)
        rep = report(cfg, out=OUT / key, workers=2)
    elif key == "optimization":
        rep = report(OPT_CONFIG, out=OUT / key, workers=2)
    elif key == "walk_forward":  # through the CLI, as --json
        rc, doc = _cli_json(["report", str(WF_CONFIG), "--out", str(OUT / key), "--workers", "1", "--json"])
        assert rc == 0, doc
        folder = Path(doc["folder"])
        return SimpleNamespace(folder=folder, index=Path(doc["index"]), cli=doc, result=None,
                               manifest=json.loads((folder / "manifest.json").read_text()))
    elif key == "survives":   # a two-trial SMA sweep whose best run survives selection (DSR 0.99, PBO 0.41)
        cfg = _tmp("survives") / "sma_two_trials.yaml"
        cfg.write_text(SURVIVING_CONFIG)
        rep = report(cfg, out=OUT / key, workers=2)
    elif key == "single":   # one strategy's tear sheet, through the CLI
        rc, doc = _cli_json(["report", str(ROOT / "config/runs/ict_smc_strategy.yaml"), "--operation",
                             str(ROOT / "config/operations/ict_backtest.yaml"), "--out", str(OUT / key), "--json"])
        assert rc == 0, doc
        page = Path(doc["page"])
        return SimpleNamespace(folder=page.parent, index=page, cli=doc, result=None, manifest=None)
    elif key == "portfolio":   # a shared-account basket's portfolio page, through the CLI
        rc, doc = _cli_json(["report", str(ROOT / "config/runs/sma_cross.yaml"), "--operation",
                             str(ROOT / "config/operations/sp500_20_portfolio.yaml"), "--out", str(OUT / key),
                             "--json"])
        assert rc == 0, doc
        page = Path(doc["page"])
        return SimpleNamespace(folder=page.parent, index=page, cli=doc, result=None, manifest=None)
    elif key == "basket_optimization":   # every combination a portfolio run, through the CLI
        rc, doc = _cli_json(["report", str(ROOT / "config/optimizations/sma_basket.yaml"), "--out", str(OUT / key),
                             "--workers", "2", "--json"])
        assert rc == 0, doc
        folder = Path(doc["folder"])
        return SimpleNamespace(folder=folder, index=Path(doc["index"]), cli=doc, result=None,
                               manifest=json.loads((folder / "manifest.json").read_text()))
    elif key == "basket_variants":
        rep = report(ROOT / "config/variants/sma_basket_variants.yaml", out=OUT / key, workers=2)
    elif key == "basket_walk_forward":
        rep = report(ROOT / "config/walk_forward/sma_basket_walk_forward.yaml", out=OUT / key, workers=1)
    elif key == "csv":
        tmp = _tmp("csv")
        rep = report(_shifted_csv_config(tmp), out=tmp / "reports", workers=1)
        return SimpleNamespace(folder=rep.folder, index=rep.index, manifest=rep.manifest, result=rep, cli=None,
                               csv=tmp / "eurusd_15m.csv")
    else:
        raise KeyError(key)
    return SimpleNamespace(folder=rep.folder, index=rep.index, manifest=rep.manifest, result=rep, cli=None)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.imgs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag == "script":
            self.scripts += 1


def links(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


# ---------------------------------------------------------------- parameters (fast)

@pytest.mark.parametrize("bad, where", [
    ({"overrides": {"fvg_det_1": {"min_gap_size": np.int64(3)}}}, "numpy.int64"),
    ({"overrides": {"fvg_det_1": {"min_gap_size": np.float64(3.0)}}}, "numpy.float64"),
    ({"overrides": {"fvg_det_1": {"window": (1, 2)}}}, "tuple"),
    ({"data": dt.date(2020, 1, 1)}, "date"),
    ({"operation": Path("config/operations/sp500_daily.yaml")}, "PosixPath"),
    ({"overrides": {"fvg_det_1": {"x": float("nan")}}}, "not a finite number"),
    ({"trade_rows": np.int32(5)}, "numpy.int32"),
])
def test_params_reject_types_that_are_not_json_safe(bad, where):
    from metaflow_nb.errors import ConfigError
    from metaflow_nb.reporting.params import BacktestReportParams, validate_parameters
    params = {"strategy": "config/runs/sma_cross.yaml", **bad}
    with pytest.raises(ValueError, match=where):
        BacktestReportParams(**params)
    with pytest.raises(ConfigError, match=where) as exc:
        validate_parameters("backtest_report", params)
    assert "\n" not in str(exc.value)


def test_params_convert_and_validate():
    from metaflow_nb.errors import ConfigError
    from metaflow_nb.reporting.params import (
        OptimizationReportParams, VariantReportParams, json_problems, json_safe_params, validate_parameters,
    )
    raw = {"strategy": Path("/a/b.yaml"), "overrides": {"sma_1": {"fast": np.int64(5), "w": (1, 2)}},
           "data": None, "title": "t"}
    safe = json_safe_params(raw)
    assert safe == {"strategy": "/a/b.yaml", "overrides": {"sma_1": {"fast": 5, "w": [1, 2]}}, "data": None,
                    "title": "t"}
    assert json_problems(safe) == []
    out = validate_parameters("backtest_report", safe)
    assert json.loads(json.dumps(out)) == out
    assert type(out["overrides"]["sma_1"]["fast"]) is int
    # the variant template needs config + variant, or a strategy
    with pytest.raises(ValueError, match="variant"):
        VariantReportParams(config="x.yaml")
    with pytest.raises(ValueError, match="strategy"):
        VariantReportParams()
    with pytest.raises(ValueError, match="extra"):
        VariantReportParams(strategy="x.yaml", colour="red")
    with pytest.raises(ValueError, match="sha256"):
        VariantReportParams(strategy="x.yaml", expected_hash="abc")
    # best_page must stay a file of the report folder
    for href in ("../x.html", "http://example.com/x.html", "/etc/x.html", ".hidden.html"):
        with pytest.raises(ValueError):
            OptimizationReportParams(config="c.yaml", best_page=href)
    with pytest.raises(ConfigError, match="walk_forward_report parameters: config"):
        validate_parameters("walk_forward_report", {"config": Path("c.yaml")})


def test_every_template_has_a_tagged_parameters_cell_matching_its_model():
    import nbformat
    from metaflow_nb.reporting.params import TEMPLATES
    from metaflow_nb.reporting.plan import templates_dir
    for name, model in TEMPLATES.items():
        nb = nbformat.read(templates_dir() / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert nb.metadata["kernelspec"]["name"] == "python3"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} stored with outputs"
        ns: dict[str, Any] = {}
        exec(tagged[0].source, ns)  # the defaults are valid parameters
        assert model.from_namespace(ns).to_parameters()


def test_variant_template_resolves_the_same_run_both_ways():
    from metaflow_nb.api import build_specs
    from metaflow_nb.reporting.pages import variant_specs
    from metaflow_nb.reporting.params import VariantReportParams
    from metaflow_nb.services.variants import VariantTestService
    _, _, variants = VariantTestService().build(VARIANT_CONFIG)
    name, desc, specs = variants[1]
    got, title, description = variant_specs(VariantReportParams(config=str(VARIANT_CONFIG), variant=name,
                                                                expected_hash=specs.hash))
    assert got.hash == specs.hash and title.endswith(name) and description == desc
    plain = build_specs(ROOT / "config/runs/sma_cross.yaml", ROOT / "config/operations/sp500_daily.yaml")
    got, title, _ = variant_specs(VariantReportParams(strategy=str(ROOT / "config/runs/sma_cross.yaml"),
                                                      operation=str(ROOT / "config/operations/sp500_daily.yaml")))
    assert got.hash == plain.hash and title
    with pytest.raises(RuntimeError, match="the report planned"):
        variant_specs(VariantReportParams(config=str(VARIANT_CONFIG), variant=name, expected_hash="0" * 64))
    from metaflow_nb.errors import ConfigError
    with pytest.raises(ConfigError, match="no variant named"):
        variant_specs(VariantReportParams(config=str(VARIANT_CONFIG), variant="nope"))


@pytest.mark.slow
def test_a_notebook_that_times_out_is_recorded_not_raised(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from metaflow_nb.reporting.execute import NotebookJob, run_notebooks
    tpl = tmp_path / "slow.ipynb"
    nb = new_notebook(cells=[new_code_cell("seconds = 1", metadata={"tags": ["parameters"]}),
                             new_code_cell("print('started')"), new_code_cell("import time\ntime.sleep(seconds)")],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, str(tpl))
    out = tmp_path / "out"
    out.mkdir()
    jobs = [NotebookJob("fast", str(tpl), {"seconds": 0}, str(out), str(tmp_path), "fast", timeout=60),
            NotebookJob("slow", str(tpl), {"seconds": 60}, str(out), str(tmp_path), "slow", timeout=2)]
    fast, slow = run_notebooks(jobs, workers=2)
    assert fast.ok and Path(fast.html).is_file()
    assert not slow.ok and "Timeout" in slow.error and Path(slow.notebook).is_file()
    partial = nbformat.read(slow.notebook, as_version=4)
    assert any("started" in o.get("text", "") for c in partial.cells for o in c.get("outputs", []))


def test_file_stems_are_safe_and_unique():
    from metaflow_nb.reporting.names import file_stems, safe_stem
    names = [EVIL, "a b", "a/b", "A_B", "index", "manifest", "..", ".hidden", "-rf", "x" * 300, "ok-1_2"]
    stems = file_stems(names)
    assert stems[0] == "evil_script"
    assert len({s.lower() for s in stems}) == len(stems)
    for s in stems:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", s), s
        assert s.lower() not in ("index", "manifest") and len(s) <= 80
    assert stems[-1] == "ok-1_2"
    assert safe_stem("") == "run"


# ---------------------------------------------------------------- the variant config

@pytest.mark.slow
def test_variant_report_writes_pages_index_and_manifest():
    g = generated("variant")
    assert re.fullmatch(r"exit_strategy_test-[0-9a-f]{8}", g.folder.name)
    assert g.folder.parent == OUT / "variant"
    names = sorted(p.name for p in g.folder.iterdir())
    assert names == ["atr_based.html", "atr_based.ipynb", "atr_based_trades.csv", "index.html",
                     "liquidity_targets.html", "liquidity_targets.ipynb", "liquidity_targets_trades.csv",
                     "manifest.json"]
    rep = g.result
    assert rep.index == g.folder / "index.html" and rep.failed == []
    assert [p.name for p in rep.pages] == ["liquidity_targets", "atr_based"]
    assert all(p.ok and p.html and p.html.is_file() for p in rep.pages)
    # executed with papermill: parameters injected, no error outputs, figures and tables present
    import nbformat
    for p in rep.pages:
        nb = nbformat.read(p.notebook, as_version=4)
        meta = nb.metadata["papermill"]
        assert meta["parameters"]["variant"] == p.run
        assert meta["parameters"]["expected_hash"] == next(r["specs_hash"] for r in g.manifest["content"]["runs"]
                                                           if r["name"] == p.run)
        assert Path(meta["parameters"]["config"]).is_absolute()
        outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outs if o.output_type == "error"]
        assert sum("image/png" in o.get("data", {}) for o in outs) >= 2  # trades, rejections
        page = p.html.read_text()
        assert "pages.setup()" not in page and "from metaflow_nb" not in page  # code cells hidden
        for section in ("Metrics", "Tear sheet", "Equity against buy-and-hold", "Worst drawdowns",
                        "Monthly and yearly returns", "Rolling Sharpe ratio and volatility", "Trade statistics",
                        "Trades", "Rejected opportunities", "Journal", "zone_top", "Sharpe ratio",
                        "OPPORTUNITY_REJECTED", "costs: commission 0.002 % per side (paid ",
                        "overrides of the base config"):
            assert section in page, section
        # every trade, as CSV beside the page and linked from it
        csv = g.folder / f"{p.name}_trades.csv"
        assert f"{p.name}_trades.csv" in links(p.html).hrefs
        n = g.manifest["content"]["results"][p.run]["metrics"]["total_trades"]
        assert len(csv.read_text().splitlines()) == n + 1
        assert links(p.html).scripts == 0
    assert "ReportResult(" in repr(rep)
    assert "index.html" in rep._repr_html_()


@pytest.mark.slow
def test_index_compares_variants_and_links_every_page():
    g = generated("variant")
    text = g.index.read_text()
    lk = links(g.index)
    local = [h for h in lk.hrefs if not h.startswith("#")]
    assert {"liquidity_targets.html", "atr_based.html", "liquidity_targets.ipynb", "atr_based.ipynb",
            "manifest.json"} <= set(local)
    for h in local:  # relative, inside the folder, present
        assert "/" not in h and ":" not in h, h
        assert (g.folder / h).is_file(), h
    assert lk.scripts == 0
    assert len(lk.imgs) >= 2 and all(s.startswith("data:image/png;base64,") for s in lk.imgs)
    # the starred table, the causal analysis and the figures
    for s in ("Comparison", "Sharpe ratio", "Total return", "Max drawdown", "Win rate", "Total trades",
              "Causal analysis", "Top rejection reasons", "Equity overlay", "Rejection reasons"):
        assert s in text, s
    assert text.count("class='win'") >= 1 and "&#9733;" in text
    assert "<link" not in text and "@import" not in text
    # the bootstrap's winners once, under the comparison table; the causal analysis ended with them
    # again, where they read as part of that analysis (hunt103 F3)
    summary = g.manifest["content"]["summary"].get("significance", {}).get("summary") if isinstance(
        g.manifest["content"]["summary"].get("significance"), dict) else None
    causal = text[text.index("<h2>Causal analysis</h2>"):]
    causal = causal[:causal.index("</section>")]
    assert "significant winner" not in causal and "no significant winner" not in causal
    if summary:
        assert text.count(html.escape(summary)) == 1


@pytest.mark.slow
def test_manifest_records_content_apart_from_timings():
    from metaflow_nb.config.buildspecs import canonical_json
    from metaflow_nb.data import file_sha256, sample_path
    from metaflow_nb.services.variants import VariantTestService
    g = generated("variant")
    man = json.loads((g.folder / "manifest.json").read_text())
    assert man == g.manifest
    assert set(man) == {"content", "content_sha256", "timings", "source", "files"}
    c = man["content"]
    # the digest reads the data file by its name and sha256, not where it sits (version 2)
    d = c["data"][0]
    tag = json.dumps(f"<data file {d['file']} sha256 {d['sha256']}>")
    portable = json.loads(json.dumps(c).replace(json.dumps(d["path"]), tag))
    assert portable != c and man["content_sha256"] == hashlib.sha256(canonical_json(portable).encode()).hexdigest()
    assert "timings" not in json.dumps(c) and "wall_s" not in json.dumps(c)
    assert man["timings"]["notebooks"]["atr_based"]["execute_s"] > 0 and man["timings"]["workers"] == 2
    assert c["kind"] == "variant_config" and c["name"] == "Exit Strategy Comparison"
    assert c["config"]["variant_config"]["variants"][0]["name"] == "liquidity_targets"
    assert g.folder.name.endswith(c["config_hash8"])
    _, _, variants = VariantTestService().build(VARIANT_CONFIG)
    runs = {r["name"]: r for r in c["runs"]}
    for name, _, specs in variants:
        assert runs[name]["specs_hash"] == specs.hash
        assert runs[name]["blueprint"] == specs.blueprint and runs[name]["operation"] == specs.operation
        assert runs[name]["page"] == name and runs[name]["status"] == "ok"
    assert c["data"] == [{"source": "eurusd_15m", "file": "eurusd_15m.csv.gz", "path": str(sample_path("eurusd_15m")),
                          "sha256": file_sha256(sample_path("eurusd_15m"))}]
    assert set(c["packages"]) == {"metaflow-nb", "numpy", "pandas", "numba", "papermill", "nbconvert", "python"}
    assert all(c["packages"].values())
    assert c["seed"] == 42
    res = c["results"]["atr_based"]
    assert res["status"] == "ok" and res["metrics"]["total_trades"] > 0
    assert set(res["metrics"]) >= {"sharpe_ratio", "total_return_pct", "max_drawdown_pct", "win_rate_pct"}
    assert c["summary"]["causal_analysis"]["most_defensive"] in runs
    assert [p["status"] for p in c["pages"]] == ["ok", "ok"]


@pytest.mark.slow
def test_same_report_twice_gives_same_numbers_and_content_hash():
    a, b = generated("variant"), generated("variant_again")
    assert a.folder.name == b.folder.name and a.folder != b.folder
    assert a.manifest["content"]["results"] == b.manifest["content"]["results"]
    assert a.manifest["content_sha256"] == b.manifest["content_sha256"]
    assert a.manifest["timings"] != b.manifest["timings"]


@pytest.mark.slow
def test_verify_catches_an_edited_or_missing_page(tmp_path):
    """A page is what gets mailed: the manifest records each file the report wrote
    (sha256, outside the content hash: notebooks carry execution times) and --verify says
    which one no longer is as written (hunt18 F4: an edited index.html passed)."""
    from metaflow_nb.data import file_sha256
    from metaflow_nb.reporting.verify import verify
    g = generated("variant")
    files = g.manifest["files"]
    written = sorted(p.name for p in g.folder.iterdir() if p.is_file() and p.name != "manifest.json")
    assert sorted(files) == written and "index.html" in files
    assert all(files[n] == file_sha256(g.folder / n) for n in written)
    res = verify(g.folder)
    assert res.ok and f"{len(files)} report file(s) as written" in res.summary()
    copy = tmp_path / g.folder.name
    shutil.copytree(g.folder, copy)
    index = copy / "index.html"
    index.write_text(index.read_text().replace("Sharpe ratio", "Sharpe ratio!", 1))
    page = next(n for n in written if n.endswith(".ipynb"))
    (copy / page).unlink()
    assert sorted(verify(copy).differences) == sorted([
        f"file index.html: changed since the report wrote it (sha256 {files['index.html'][:12]} -> "
        f"{file_sha256(index)[:12]})",
        f"file {page}: missing (the report wrote it)"])


@pytest.mark.parametrize("kind", ["variant", "optimization"])
def test_verify_catches_a_csv_edited_with_its_entry_dropped(tmp_path, kind):
    """hunt118 F3: a trades CSV or all_results.csv edited (or removed) with its line taken out
    of the manifest's files passed; a page's does not. The CSVs the report wrote are named
    inside the content now, so each must keep its entry."""
    import json

    from metaflow_nb.reporting.verify import verify
    g = generated(kind)
    pages = g.manifest["content"]["pages"]
    csvs = [p["trades_csv"] for p in pages if p.get("trades_csv")]
    assert csvs and all((g.folder / c).is_file() for c in csvs)
    if kind == "optimization":
        assert g.manifest["content"]["results_csv"] == "all_results.csv"
        csvs.append("all_results.csv")
    for name in csvs:
        copy = tmp_path / f"{g.folder.name}-{name}"
        shutil.copytree(g.folder, copy)
        (copy / name).write_text("x\n")
        man = json.loads((copy / "manifest.json").read_text())
        del man["files"][name]
        (copy / "manifest.json").write_text(json.dumps(man))
        assert f"file {name}: not recorded in the manifest's files (the report wrote it: content names it)" in \
            verify(copy).differences


@pytest.mark.slow
def test_verify_passes_and_catches_an_edited_manifest(tmp_path, capsys):
    from metaflow_nb.cli import main
    from metaflow_nb.reporting.verify import verify
    g = generated("variant")
    assert main(["report", "--verify", str(g.folder)]) == 0
    assert "verify: ok: 2 runs" in capsys.readouterr().out
    # a copy whose manifest claims another Sharpe ratio
    copy = tmp_path / g.folder.name
    shutil.copytree(g.folder, copy)
    man = json.loads((copy / "manifest.json").read_text())
    man["content"]["results"]["atr_based"]["metrics"]["sharpe_ratio"] *= 1 + 1e-9
    (copy / "manifest.json").write_text(json.dumps(man))
    res = verify(copy)
    assert not res.ok
    assert any("content_sha256" in d for d in res.differences)
    assert any(d.startswith("run atr_based: 1 metric(s) differ (sharpe_ratio") for d in res.differences)
    assert main(["report", "--verify", str(copy)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("verify: FAILED: 2 difference(s)") and "\n" not in err



def test_verify_says_when_a_report_was_made_under_other_engine_rules(tmp_path):
    # a report written before a change of the fill or exit rules (ENGINE_REVISION): its
    # numbers differ for that reason alone, which verify says beside the differences
    from metaflow_nb.engine.codes import ENGINE_REVISION
    from metaflow_nb.reporting.verify import verify
    g = generated("variant")
    assert json.loads((g.folder / "manifest.json").read_text())["content"]["engine_revision"] == ENGINE_REVISION

    def older(man: dict) -> None:
        man["content"]["engine_revision"] = ENGINE_REVISION - 1
        man["content"]["results"]["atr_based"]["metrics"]["sharpe_ratio"] *= 1 + 1e-9

    copy, _ = edited_copy(g.folder, tmp_path, older)
    res = verify(copy)
    assert any(d.startswith("run atr_based: 1 metric(s) differ (sharpe_ratio") for d in res.differences)
    # first, as the reason for the rest: the one-line summary shows six (hunt88 F2)
    assert res.differences[0] == (f"manifest: made under revision {ENGINE_REVISION - 1} of the engine's rules; "
                                  f"this version has revision {ENGINE_REVISION}, whose numbers may differ for "
                                  "that reason alone (metaflow_nb.engine.codes.ENGINE_REVISION)")
    assert "made under revision" in res.summary()


def test_verify_names_other_package_versions_beside_differences_and_says_what_it_reran(tmp_path):
    """hunt118 F7: a failing --verify named another engine revision but not the other
    package versions the manifest records; F8: its ok line did not say the numbers are
    re-run from the configs the manifest records (the YAML files are not read)."""
    from metaflow_nb.reporting.verify import verify
    g = generated("variant")
    assert "re-run from the configs the manifest records" in verify(g.folder).summary()

    def older(man: dict) -> None:
        man["content"]["packages"]["numpy"] = "1.0.0"
        man["content"]["results"]["atr_based"]["metrics"]["sharpe_ratio"] *= 1 + 1e-9

    copy, _ = edited_copy(g.folder, tmp_path, older)
    res = verify(copy)
    assert res.differences[0].startswith("manifest: made with other package versions (numpy 1.0.0 -> "), \
        res.differences


def test_a_manifest_from_before_reports_recorded_their_files_verifies_with_a_note(tmp_path):
    """hunt88 F3: a version-1 manifest has no ``files``; every page it listed read as
    missing from them, and a report whose numbers all matched FAILED."""
    from metaflow_nb.reporting.verify import verify
    g = generated("variant")

    def v1(man: dict) -> None:
        man["content"]["manifest_version"] = 1
        del man["files"]

    copy, _ = edited_copy(g.folder, tmp_path, v1)
    res = verify(copy)
    assert res.ok, res.differences
    assert res.notes == ["its report files were not recorded by manifests of version 1: not checked"]
    assert res.summary().endswith("(its report files were not recorded by manifests of version 1: not checked)")

    def stripped(man: dict) -> None:   # a version-2 manifest without them is still refused
        del man["files"]

    copy2, _ = edited_copy(g.folder, tmp_path / "v2", stripped)
    assert any(d.startswith("file index.html: not recorded") for d in verify(copy2).differences)


def edited_copy(folder: Path, tmp_path: Path, edit: Any) -> tuple[Path, dict]:
    """A copy of a report folder whose manifest ``edit(manifest)`` changed, its content hash
    made to match (what another version of the code would write): only a re-run can tell.
    Returns the copy and the edited manifest."""
    from metaflow_nb.reporting.manifest import content_sha256
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    man = json.loads((copy / "manifest.json").read_text())
    edit(man)
    man["content_sha256"] = content_sha256(man["content"])
    (copy / "manifest.json").write_text(json.dumps(man))
    return copy, man

@pytest.mark.slow
def test_verify_recomputes_the_selection_the_pages_open_with(tmp_path):
    """Best run, best params and selection statistics are recomputed from the re-run runs:
    a manifest whose summary says otherwise fails, even with its content hash made to
    match (what another version of the statistics code would write)."""
    from metaflow_nb.reporting.verify import verify
    g = generated("survives")
    assert verify(g.folder).ok
    st = g.manifest["content"]["summary"]["statistics"]
    dsr, pbo = st["dsr"], st["pbo"]

    def edit(man):
        summary = man["content"]["summary"]
        summary["statistics"].update(dsr=0.5, pbo=0.9, n_trials=7)
        summary["best_params"] = next(r for r in man["content"]["runs"]
                                      if r["params"] != summary["best_params"])["params"]

    copy, man = edited_copy(g.folder, tmp_path, edit)
    other = man["content"]["summary"]
    res = verify(copy)
    assert not any("content_sha256" in d for d in res.differences)
    assert res.differences == [
        f"selection: best params {other['best_params']} -> {g.manifest['content']['summary']['best_params']}",
        f"selection statistics: 3 differ (n_trials 7 -> 2, dsr 0.5 -> {dsr!r}, pbo 0.9 -> {pbo!r})"]


@pytest.mark.slow
def test_verify_fails_when_one_close_value_changes():
    from metaflow_nb.cli import main
    from metaflow_nb.data import load_data
    from metaflow_nb.reporting.verify import verify
    g = generated("csv")
    assert g.result.failed == []
    assert g.manifest["content"]["data"][0]["path"] == str(g.csv)
    assert verify(g.folder).ok
    # change one close, keeping the bar valid (low <= close <= high)
    lines = g.csv.read_text().splitlines(keepends=True)
    k = len(lines) // 2
    for k in range(k, len(lines)):
        f = lines[k].rstrip("\n").split(",")
        hi, lo, close = float(f[2]), float(f[3]), float(f[4])
        if hi - lo >= 0.0002:
            break
    new = round(lo + 0.0001, 5) if abs(close - (lo + 0.0001)) > 1e-9 else round(hi - 0.0001, 5)
    f[4] = f"{new:.5f}"
    lines[k] = ",".join(f) + "\n"
    g.csv.write_text("".join(lines))
    load_data(str(g.csv))  # still valid data
    res = verify(g.folder)
    assert not res.ok
    data_diffs = [d for d in res.differences if d.startswith("data eurusd_15m.csv: sha256 changed")]
    assert data_diffs, res.differences
    assert any("data fingerprint changed" in d for d in res.differences)
    import io as _io
    err = _io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["report", "--verify", str(g.folder)]) == 1
    line = err.getvalue().strip()
    assert "\n" not in line and "data eurusd_15m.csv: sha256 changed" in line


# ---------------------------------------------------------------- names, escaping, failures

@pytest.mark.slow
def test_hostile_names_are_sanitized_and_escaped():
    g = generated("evil")
    files = sorted(p.name for p in g.folder.iterdir())
    assert files == ["broken.html", "broken.ipynb", "evil_script.html", "evil_script.ipynb",
                     "evil_script_trades.csv", "index.html", "manifest.json"]   # the failed run has no trades
    assert [p.name for p in g.folder.parent.iterdir()] == [g.folder.name]  # nothing escaped the folder
    text = g.index.read_text()
    assert "../evil&lt;script&gt;" in text and "Names &lt;b&gt;&amp;&lt;/b&gt; failures" in text
    assert "<script" not in text.lower() and "<b>&</b>" not in text
    page = (g.folder / "evil_script.html").read_text()
    assert "<script" not in page.lower()
    assert "../evil&lt;script&gt;" in page  # title and heading, escaped
    assert "evil_script.html" in links(g.index).hrefs
    assert g.manifest["content"]["runs"][0]["name"] == EVIL and g.manifest["content"]["runs"][0]["page"] == "evil_script"


@pytest.mark.slow
def test_a_failing_variant_is_marked_with_its_error_and_partial_notebook():
    import nbformat
    g = generated("evil")
    rep = g.result
    assert [p.name for p in rep.failed] == ["broken"]
    bad = rep.failed[0]
    assert "DataError" in bad.error and "2030-01-01" in bad.error
    assert bad.notebook.is_file() and bad.html is not None and bad.html.is_file()
    nb = nbformat.read(bad.notebook, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0]["ename"] == "DataError"
    assert next(p for p in rep.pages if p.name == "evil_script").ok
    text = g.index.read_text()
    failed_block = text[text.index("id='failed'"):text.index("</section>", text.index("id='failed'"))]
    assert "broken" in failed_block and "DataError" in failed_block and "2030-01-01" in failed_block
    assert "href='broken.ipynb'" in failed_block and "partially executed notebook" in failed_block
    assert "href='broken.html'" in failed_block
    c = g.manifest["content"]
    assert c["results"]["broken"] == {"status": "failed", "metrics": None}
    assert {p["name"]: p["status"] for p in c["pages"]} == {"evil_script": "ok", "broken": "failed"}
    # the report as a whole succeeded; --verify re-runs the failure and accepts it, and
    # says the report holds a failed page (hunt103 F8: its "ok" line did not)
    from metaflow_nb.reporting.verify import verify
    checked = verify(g.folder)
    assert checked.ok and "(1 of 2 pages failed when written: broken)" in checked.summary(), checked.summary()


def test_the_report_command_counts_its_failed_pages(monkeypatch, capsys, tmp_path):
    """hunt103 F8: with 2 of 3 pages failed the command printed a ``failed:`` line each and
    exited 0, as documented (the report is written); a last line now counts them, so a
    reader of the log or a script sees the report is partial. All failed: status 1."""
    from types import SimpleNamespace

    import metaflow_nb.reporting.api as api
    from metaflow_nb.cli import main

    def page(name, ok):
        return SimpleNamespace(name=name, run=None, ok=ok, error="" if ok else "DataError: boom",
                               notebook=tmp_path / f"{name}.ipynb")

    for pages, code, line in (
            ([page("a", True), page("b", False), page("c", False)], 0,
             "report: 2 of 3 pages failed; the index marks them"),
            ([page("a", False)], 1, "report: 1 of 1 page failed; the index marks it")):
        rep = SimpleNamespace(pages=pages, failed=[p for p in pages if not p.ok], index=tmp_path / "index.html")
        monkeypatch.setattr(api, "report", lambda *a, rep=rep, **k: rep)
        assert main(["report", "config/variants/exit_strategy_test.yaml"]) == code
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == line and err[0].startswith("failed: "), err


# ---------------------------------------------------------------- optimization and walk-forward

@pytest.mark.slow
def test_optimization_report_has_results_heatmaps_and_best_run_page():
    g = generated("optimization")
    rep = g.result
    assert rep.failed == []
    assert [p.name for p in rep.pages] == ["optimization", "best_run"]
    c = g.manifest["content"]
    assert c["kind"] == "optimization_config" and len(c["runs"]) == 16 and len(c["results"]) == 16
    best = [r for r in c["runs"] if r["page"] == "best_run"]
    assert len(best) == 1 and best[0]["run_id"] == c["summary"]["best_run_id"]
    text = g.index.read_text()
    for s in ("Best run", "Heatmaps", "Results", "fvg_det_1.min_gap_size", "report of the best run"):
        assert s in text, s
    hrefs = links(g.index).hrefs
    assert {"optimization.html", "best_run.html"} <= set(hrefs)
    assert len(links(g.index).imgs) >= 2
    page = (g.folder / "optimization.html").read_text()
    assert "Heatmaps" in page and "best_run.html" in links(g.folder / "optimization.html").hrefs
    assert sum(1 for s in links(g.folder / "optimization.html").imgs if s.startswith("data:image/png")) >= 4
    best_page = (g.folder / "best_run.html").read_text()
    assert "best run" in best_page and "Equity against buy-and-hold" in best_page and "Worst drawdowns" in best_page
    assert "best_run_trades.csv" in links(g.folder / "best_run.html").hrefs and (g.folder / "best_run_trades.csv").is_file()
    assert "override" in best_page   # the best parameters are marked in the parameters table
    for page in (g.index, g.folder / "optimization.html", g.folder / "best_run.html"):
        assert "costs: commission 0.002 % per side" in page.read_text(), page.name
    # every run in one CSV beside the pages, linked from the index and the optimization page
    assert "all_results.csv" in hrefs and "all_results.csv" in links(g.folder / "optimization.html").hrefs
    import pandas as pd
    every = pd.read_csv(g.folder / "all_results.csv")
    assert sorted(every["run_id"]) == sorted(r["run_id"] for r in c["runs"])
    from metaflow_nb.reporting.verify import verify
    res = verify(g.folder)
    assert res.ok and res.runs == 16, res.differences


def _banner(path: Path) -> str:
    """The honesty banner's HTML in a page (exactly one), attributes in single quotes (the
    notebook export writes them in double quotes)."""
    text = path.read_text()
    starts = [m.start() for m in re.finditer("<div class=[\"']mf-honesty[\"']", text)]
    assert len(starts) == 1, f"{path.name}: {len(starts)} honesty banners"
    return text[starts[0]:text.index("</div>", starts[0])].replace('"', "'")


@pytest.mark.slow
def test_optimization_pages_say_the_best_run_is_luck():
    g = generated("optimization")
    st = g.manifest["content"]["summary"]["statistics"]
    assert st["n_trials"] == 16 and not st["dsr_significant"] and st["pbo"] >= 0.5
    for page in (g.index, g.folder / "optimization.html", g.folder / "best_run.html"):
        b = _banner(page)
        assert "data-verdict='luck'" in b and "Indistinguishable from the luck of 16 trials" in b, page.name
        # the numbers the CLI prints (OptimizationResult.statistics, recorded in the manifest)
        assert f"deflated Sharpe ratio {st['dsr']:.3f} &lt; 0.95" in b and f"PBO {st['pbo']:.2f} &gt;= 0.5" in b
        assert "Probability of backtest overfitting" in b and "threshold 0.95" in b


@pytest.mark.slow
def test_optimization_pages_say_a_surviving_best_run_survives():
    g = generated("survives")
    assert g.result.failed == []
    st = g.manifest["content"]["summary"]["statistics"]
    assert st["n_trials"] == 2 and st["dsr_significant"] and st["pbo"] < 0.5
    for page in (g.index, g.folder / "optimization.html", g.folder / "best_run.html"):
        b = _banner(page)
        assert "data-verdict='survives'" in b and "Survives selection" in b, page.name
        assert f"deflated Sharpe ratio {st['dsr']:.3f} &gt; 0.95" in b and f"PBO {st['pbo']:.2f} &lt; 0.5" in b
        assert "luck of" not in b


@pytest.mark.slow
def test_walk_forward_pages_carry_the_banner():
    g = generated("walk_forward")
    for page in (g.index, g.folder / "walk_forward.html"):
        b = _banner(page)
        assert "data-verdict=" in b and "Deflated Sharpe ratio" in b and "Trials" in b
        assert "parameter sets x" in b and "not computed for a walk-forward" in b


@pytest.mark.slow
def test_variant_pages_show_the_bootstrap_p_values():
    g = generated("variant")
    sig = g.manifest["content"]["summary"]["significance"]
    assert sig["metrics"]
    for name in ("liquidity_targets", "atr_based"):
        text = (g.folder / f"{name}.html").read_text()
        assert "mf-bootstrap" in text and "Runner-up" in text
        for metric, t in sig["metrics"].items():
            assert t["label"] in text, (name, metric)
    # 246 against 242 rejections: the index calls no variant more defensive, and says why
    index = g.index.read_text()
    assert "(more defensive)" not in index and "not significantly more than " in index
    # the same 754 setups in both variants: a paired test (McNemar's, exact)
    assert ", the next largest (p = " in index and "one-sided exact McNemar test on the same 754 setups" in index


@pytest.mark.slow
def test_walk_forward_report_through_the_cli_json():
    g = generated("walk_forward")
    doc = g.cli
    assert set(doc) >= {"folder", "index", "manifest", "pages", "failed"}
    assert doc["failed"] == [] and Path(doc["manifest"]).is_file() and Path(doc["index"]).is_file()
    assert [Path(p).name for p in doc["pages"]] == ["walk_forward.html"]
    c = g.manifest["content"]
    assert c["kind"] == "walk_forward_config" and c["runs"] and all(r["name"].startswith("window_") for r in c["runs"])
    text = g.index.read_text()
    for s in ("Windows", "Stitched out-of-sample equity", "Walk-forward efficiency", "oos_sharpe_ratio"):
        assert s in text, s
    assert len(links(g.index).imgs) == 1
    page = (g.folder / "walk_forward.html").read_text()
    assert "Per-window results" in page and "Stitched out-of-sample equity" in page
    from metaflow_nb.reporting.verify import verify
    res = verify(g.folder)
    assert res.ok and res.runs == len(c["runs"]), res.differences


@pytest.mark.slow
def test_verify_recomputes_a_walk_forwards_stitched_record(tmp_path):
    """The stitched out-of-sample metrics, its test, the efficiency and the spread are
    re-derived from the re-run windows: a summary that says otherwise fails, even with its
    content hash made to match."""
    from metaflow_nb.reporting.verify import verify
    g = generated("walk_forward")
    summary = g.manifest["content"]["summary"]
    sharpe, dsr = summary["oos_metrics"]["sharpe_ratio"], summary["statistics"]["dsr"]
    eff, n = summary["walk_forward_efficiency"], summary["statistics"]["n_trials"]

    def edit(man):
        edited = man["content"]["summary"]
        edited["oos_metrics"]["sharpe_ratio"] = 9.0
        edited["statistics"].update(dsr=0.99, n_trials=1)
        edited["walk_forward_efficiency"] = 5.0

    copy, _ = edited_copy(g.folder, tmp_path, edit)
    res = verify(copy)
    assert res.differences == [
        f"walk-forward: stitched out-of-sample metrics: 1 differ (sharpe_ratio 9.0 -> {sharpe!r})",
        f"walk-forward: statistics: 2 differ (n_trials 1 -> {n!r}, dsr 0.99 -> {dsr!r})",
        f"walk-forward: walk_forward_efficiency 5.0 -> {eff!r}"]


def test_report_command_bad_input_exits_2(tmp_path, capsys):
    from metaflow_nb.cli import main
    assert main(["report"]) == 2
    assert main(["report", str(tmp_path / "missing.yaml")]) == 2
    assert main(["report", str(VARIANT_CONFIG), "--workers", "0"]) == 2
    assert main(["report", "--verify", str(tmp_path)]) == 2
    (tmp_path / "manifest.json").write_text("{not json")
    assert main(["report", "--verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # --workers 0 is refused by the option's parser, in argparse's one-line wording
    assert err.pop(2) == "metaflow-nb report: argument --workers: '0' is not a positive whole number"
    assert len(err) == 4 and all(e.startswith("metaflow-nb: error: ") for e in err)


@pytest.mark.parametrize("operation", ["sp500_daily.yaml", "us_stocks_basket.yaml"])
def test_a_grid_with_invalid_combinations_is_reported_with_them_failed(operation, tmp_path):
    # fast >= slow does not validate: the sweep fails those rows, the report records them (it refused the config)
    from metaflow_nb.reporting.manifest import build_manifest, content_sha256, write_manifest
    from metaflow_nb.reporting.plan import build_plan
    from metaflow_nb.reporting.verify import verify
    cfg = tmp_path / "grid.yaml"   # JSON is YAML
    cfg.write_text(json.dumps({"optimization_config": {
        "name": "a grid with invalid pairs", "base_operation": str(ROOT / "config/operations" / operation),
        "base_strategy": str(ROOT / "config/runs/sma_cross.yaml"),
        "parameter_space": [{"worker_instance": "sma_1",
                             "parameters": {"fast": {"values": [5, 20]}, "slow": {"values": [10, 50]}}}]}}))
    plan = build_plan(cfg)
    bad = [r for r in plan.runs if r.specs is None]
    assert [r.params for r in bad] == [{"sma_1": {"fast": 20, "slow": 10}}]
    assert bad[0].status == "failed" and "fast (20) must be smaller than slow (10)" in bad[0].error
    folder = tmp_path / "report"
    folder.mkdir()
    man = build_manifest(plan, [], {}, folder)
    run = next(r for r in man["content"]["runs"] if r["params"] == bad[0].params)
    assert run["invalid_params"] is True and run["specs_hash"] is None and run["blueprint"]
    write_manifest(man, folder)
    res = verify(folder)
    assert res.ok and res.runs == 4, res.differences
    # a manifest claiming valid parameters were refused: only checking them again can tell
    run["params"] = {"sma_1": {"fast": 5, "slow": 50}}
    man["content_sha256"] = content_sha256(man["content"])
    write_manifest(man, folder)
    assert [d for d in verify(folder).differences if "were refused in the report and now validate" in d]


def test_notebook_processes_do_not_import_from_the_working_folder(tmp_path):
    """A report's notebook processes and kernels import what the command imports: a module
    file in the working folder that shadows a dependency is not run (``python -m`` and
    IPython kernels put the working folder first on sys.path; PYTHONSAFEPATH keeps it off,
    an explicit PYTHONPATH still counts)."""
    import subprocess
    import sys

    from metaflow_nb.reporting.execute import child_env
    (tmp_path / "numba.py").write_text("open('MARKER', 'w').close()\nraise ImportError('planted')\n")
    proc = subprocess.run([sys.executable, "-c", "import numba, sys; print(sys.flags.safe_path)"], cwd=tmp_path,
                          env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True" and not (tmp_path / "MARKER").exists()


def _fake_notebooks(fail_at: int | None = None):
    """run_notebooks without kernels: each job writes a tiny notebook and page; the
    ``fail_at``-th job raises KeyboardInterrupt (Ctrl-C during the report)."""
    from metaflow_nb.reporting.execute import NotebookOutcome

    def run(jobs, workers=None, on_done=None):
        out = []
        for k, job in enumerate(jobs):
            if k == fail_at:
                raise KeyboardInterrupt
            job.notebook.write_text("{}")
            job.html.write_text(f"<html><body>{job.name}</body></html>")
            out.append(NotebookOutcome(job.name, True, notebook=str(job.notebook), html=str(job.html)))
        return out
    return run


def test_a_report_run_again_replaces_its_own_files_only_when_it_is_done(tmp_path, monkeypatch):
    """The new report is made beside the old one and moved in at the end: an interrupted
    (or failing) run leaves the previous report whole, and files the report did not make
    (a user's notebook or CSV in the folder) are never deleted (the folder was emptied of
    every .ipynb/.html/.csv first)."""
    from metaflow_nb.reporting import api as rapi
    monkeypatch.setattr(rapi, "run_notebooks", _fake_notebooks())
    first = rapi.report(VARIANT_CONFIG, out=tmp_path)
    folder = first.folder
    made = sorted(p.name for p in folder.iterdir())
    assert "index.html" in made and "manifest.json" in made
    (folder / "my analysis.ipynb").write_text("{}")
    (folder / "my_weights.csv").write_text("w\n1\n")
    manifest = (folder / "manifest.json").read_bytes()
    monkeypatch.setattr(rapi, "run_notebooks", _fake_notebooks(fail_at=1))
    with pytest.raises(KeyboardInterrupt):
        rapi.report(VARIANT_CONFIG, out=tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(made + ["my analysis.ipynb", "my_weights.csv"])
    assert (folder / "manifest.json").read_bytes() == manifest
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]   # no half-made folder left beside it
    monkeypatch.setattr(rapi, "run_notebooks", _fake_notebooks())
    again = rapi.report(VARIANT_CONFIG, out=tmp_path)
    assert again.folder == folder and (folder / "my analysis.ipynb").exists() and (folder / "my_weights.csv").exists()
    assert all(Path(p.notebook).parent == folder for p in again.pages)
    assert json.loads((folder / "manifest.json").read_text())["source"]["folder"] == str(folder)


@pytest.mark.parametrize("content, key, expected", [
    ({"runs": [{"blueprint": {}}]}, "content.runs[0].name", "expected str (got nothing)"),
    ({"runs": "x"}, "content.runs", "expected list (got str 'x')"),
    ({"data": [{"path": 5}]}, "content.data[0].path", "expected str or null (got int 5)"),
    ({"runs": [{"name": "a", "blueprint": [1]}]}, "content.runs[0].blueprint", "expected dict or null"),
    ({"results": {"a": []}}, "content.results['a']", "expected dict"),
])
def test_verify_of_a_damaged_manifest_is_bad_input(tmp_path, capsys, content, key, expected):
    """A hand-edited or damaged manifest: exit 2 and one line naming the key (a traceback
    and exit 1, the code for 'differences found', before)."""
    from metaflow_nb.cli import main
    from metaflow_nb.reporting.manifest import content_sha256
    (tmp_path / "manifest.json").write_text(json.dumps({"content": content, "content_sha256": content_sha256(content)}))
    assert main(["report", "--verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{tmp_path / 'manifest.json'}: {key}: {expected}" in err


def test_verify_keeps_a_profit_factor_sweeps_infinite_winner(tmp_path):
    """A profit-factor sweep won by a run without a losing trade (inf): the verifier
    selects again from JSON-safe metrics, where inf was None, so it picked another run and
    failed an untouched report (hunt13 F1)."""
    from metaflow_nb.reporting import report
    from metaflow_nb.reporting.verify import verify

    (tmp_path / "long.yaml").write_text(
        "name: sma_long\ndirection: long_only\nworkforce:\n  opportunity_workers:\n"
        "    - {instance_id: sma_1, plugin: sma_cross, params: {fast: 10, slow: 30}}\n"
        "  planning_workers:\n    exit_planning: [{instance_id: rev_1, plugin: reverse_on_opposite}]\n")
    (tmp_path / "op.yaml").write_text(
        "name: spx_2017\ndata: {source: sp500_daily, start: 2016-07-01, end: 2018-01-31, calendar: exchange}\n"
        "instrument: {symbol: SPX, pip_size: 0.01}\ncash: 10000\ncommission: 0.0\nfinalize_trades: true\n")
    (tmp_path / "pf.yaml").write_text(
        "optimization_config:\n  name: pf sweep\n  base_strategy: long.yaml\n  base_operation: op.yaml\n"
        "  parameter_space:\n    - worker_instance: sma_1\n      parameters: {fast: {values: [40]}, "
        "slow: {values: [50, 60]}}\n  optimization_target: {primary_metric: profit_factor}\n")
    rep = report(tmp_path / "pf.yaml", out=tmp_path / "out", workers=2)
    summary = json.loads((rep.folder / "manifest.json").read_text())["content"]["summary"]
    assert summary["best_params"] == {"sma_1": {"fast": 40, "slow": 60}}
    assert summary["best_metrics"]["profit_factor"] is None          # inf: null in JSON
    res = verify(rep.folder)
    assert res.ok, res.differences


def test_verify_recomputes_a_variant_tests_comparison(tmp_path):
    """The winners, the rejected-opportunity analysis and the bootstrap p-values are
    re-derived from the re-run variants: edited ones (content hash made to match) passed
    as ok (hunt17 F5)."""
    from metaflow_nb.reporting.verify import verify
    g = generated("variant")
    assert verify(g.folder).ok
    summary = g.manifest["content"]["summary"]
    tested = next(iter(summary["significance"]["metrics"]))
    p = summary["significance"]["metrics"][tested]["p_value"]
    first = summary["causal_analysis"]["rejected"][0]

    def edit(man):
        edited = man["content"]["summary"]
        edited["significance"]["metrics"][tested]["p_value"] = 0.001
        edited["causal_analysis"]["rejected"][0]["rejected"] = first["rejected"] + 1

    copy, _ = edited_copy(g.folder, tmp_path, edit)
    res = verify(copy)
    assert res.differences == [
        f"variants: causal_analysis: 1 differ (rejected[0].rejected {first['rejected'] + 1} -> {first['rejected']})",
        f"variants: significance: 1 differ (metrics.{tested}.p_value 0.001 -> {p!r})"], res.differences


@pytest.mark.slow
def test_report_zip_is_the_folder_in_one_file_that_verifies_where_it_is_unpacked(tmp_path, capsys):
    """What gets mailed: index.html stands alone, but its links to each variant's page and
    to the manifest need the folder; --zip writes the folder as one file beside it."""
    import zipfile

    from metaflow_nb.cli import main
    from metaflow_nb.reporting.verify import verify
    assert main(["report", str(VARIANT_CONFIG), "--out", str(tmp_path / "r"), "--workers", "2", "--zip",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    folder, archive = Path(doc["folder"]), Path(doc["archive"])
    assert archive == folder.with_suffix(".zip") and archive.is_file()
    names = [n for n in zipfile.ZipFile(archive).namelist() if not n.endswith("/")]
    assert sorted(names) == sorted(f"{folder.name}/{p.name}" for p in folder.iterdir() if p.is_file())
    zipfile.ZipFile(archive).extractall(tmp_path / "mail")
    assert verify(tmp_path / "mail" / folder.name).ok
    assert "the folder beside it" in (folder / "index.html").read_text()


def test_a_zip_of_the_same_files_is_the_same_bytes(tmp_path):
    """hunt118 F6: two --zip archives of one report differed (file times, directory order):
    a checksum mailed beside a zip could not be checked against a colleague's."""
    import time as _time
    import zipfile

    from metaflow_nb.reporting.api import archive_folder
    folder = tmp_path / "rep"
    folder.mkdir()
    for name, text in (("index.html", "<p>hi</p>"), ("a_trades.csv", "x\n1\n"), ("manifest.json", "{}")):
        (folder / name).write_text(text)
    first = archive_folder(folder).read_bytes()
    _time.sleep(2.1)   # a zip's times are to 2 s
    for p in folder.iterdir():
        p.write_text(p.read_text())   # the same bytes, written later
    assert archive_folder(folder).read_bytes() == first
    with zipfile.ZipFile(folder.with_suffix(".zip")) as z:
        assert z.namelist() == ["rep/", "rep/a_trades.csv", "rep/index.html", "rep/manifest.json"]
        assert z.read("rep/index.html") == b"<p>hi</p>"


@pytest.mark.slow
def test_walk_forward_and_variant_pages_state_the_datas_clock_and_fill_rule():
    # hunt22 F4: the walk-forward page said nothing of the bars its windows count, their
    # clock, calendar or fill rule; run pages said less than the tear sheet
    g = generated("walk_forward")
    page = html.unescape((g.folder / "walk_forward.html").read_text())
    assert "Data (out of sample)" in page and "eurusd_15m (" in page
    assert "Europe/Athens (the file's timestamps), shown in UTC" in page and "the stop first (no finer bars)" in page
    index = html.unescape(g.index.read_text())   # the index states them too
    assert "Data (out of sample)" in index and "Europe/Athens (the file's timestamps), shown in UTC" in index
    v = generated("variant")
    run_page = html.unescape((v.folder / f"{v.result.pages[0].name}.html").read_text())
    assert "Ambiguous bars" in run_page and "Calendar" in run_page


@pytest.mark.slow
def test_a_report_keeps_its_content_hash_wherever_its_data_file_sits(tmp_path):
    """hunt36 F1: the hashed content held each data file's absolute path (the package's
    install path for a sample), so the same report from another checkout or a copied
    project had another content hash. A file counts by its name and sha256 now."""
    from metaflow_nb.reporting.manifest import MANIFEST_VERSION, content_sha256
    from metaflow_nb.reporting.verify import verify
    g = generated("variant")
    assert g.manifest["content"]["manifest_version"] == MANIFEST_VERSION == 2
    [d] = g.manifest["content"]["data"]
    moved = tmp_path / "another_checkout" / d["file"]
    moved.parent.mkdir()
    shutil.copy(d["path"], moved)

    def relocate(to: str):
        def edit(man):
            man["content"] = json.loads(json.dumps(man["content"]).replace(json.dumps(d["path"])[1:-1], to))
        return edit

    copy, man = edited_copy(g.folder, tmp_path / "a", relocate(str(moved)))
    assert man["content"]["data"][0]["path"] == str(moved)
    assert man["content_sha256"] == g.manifest["content_sha256"]
    assert verify(copy).ok
    # the same bytes elsewhere are the same report; other bytes are not
    moved.write_bytes(moved.read_bytes() + b"\n")
    assert any("sha256 changed" in x for x in verify(copy).differences)
    # hunt36 F4: a missing file is named, and the manifest is not said to record nothing
    copy, _ = edited_copy(g.folder, tmp_path / "b", relocate(str(tmp_path / "gone.csv.gz")))
    diffs = verify(copy).differences
    assert any("is missing" in x for x in diffs) and not any("records no run" in x for x in diffs)


def test_verify_of_a_manifest_with_nan_or_infinity_is_bad_input(tmp_path, capsys):
    """hunt49 F2: json reads NaN and Infinity, which no manifest holds (they are written as
    null), so one edited in passed the shape check and crashed hashing the content: a
    traceback, exit 1 and no --json object."""
    from metaflow_nb.cli import main
    (tmp_path / "manifest.json").write_text('{"content": {"runs": [{"name": "a", "operation": {"cash": NaN}}]}, '
                                            '"content_sha256": "x"}')
    assert main(["report", "--verify", str(tmp_path), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{tmp_path / 'manifest.json'}: not valid JSON: NaN" in err


def test_an_undefined_metric_in_a_report_table_reads_n_a():
    """hunt73 F4: a never-trading run's Sharpe ratio and win rate were empty cells in the
    report's tables, n/a on its heatmap and tear sheet."""
    import pandas as pd

    from metaflow_nb.reporting.index import _frame_html

    frame = pd.DataFrame({"sma_1.fast": [5, 10], "sharpe_ratio": [0.5, float("nan")], "error": ["", None]})
    body = _frame_html(frame, index=False)
    assert "<td>n/a</td>" in body and "<td>0.5</td>" in body and "<td>None</td>" not in body


def test_a_window_without_a_pick_shows_blank_parameters_not_none():
    """hunt73 F4: a walk-forward window without a pick showed 'None None' in its parameter
    columns in the notebook view and the report's tables."""
    import pandas as pd

    from metaflow_nb.reporting.index import _frame_html
    from metaflow_nb.services.formatting import table_html

    windows = pd.DataFrame({"window": [0, 1], "sma_1.fast": pd.Series([5, None], dtype=object),
                            "status": ["ok", "no eligible run"]})
    for body in (table_html(windows), _frame_html(windows, index=False)):
        assert "None" not in body and ">5<" in body


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/hostname", "sub/../../outside.txt", "lnk/outside.txt"])
def test_verify_reads_no_file_outside_the_report_folder(tmp_path, capsys, name):
    """hunt76 F2: a manifest's ``files`` are the files the report wrote in its own folder,
    but a mailed manifest naming ``../../etc/hostname`` or ``/proc/self/pagemap`` had
    verify open and hash it (telling whether it exists and its digest, or hashing 256 GiB
    of a pseudo-file). Such a name is bad input: exit 2 naming the key, nothing read."""
    from metaflow_nb.cli import main
    from metaflow_nb.reporting.manifest import content_sha256

    report = tmp_path / "report"
    report.mkdir()
    (tmp_path / "outside.txt").write_text("secret")
    (report / "lnk").symlink_to(tmp_path)   # hunt81 F2: out of the folder through a link in it
    content = {"data": []}
    (report / "manifest.json").write_text(json.dumps({"content": content, "content_sha256": content_sha256(content),
                                                      "files": {name: "0" * 64}}))
    assert main(["report", "--verify", str(report)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"files[{name!r}]: expected a file of the report's own folder" in err, err
    assert "outside" not in err.split("files[")[0]


def test_hashing_stops_at_a_pseudo_file_that_reads_on_past_its_size(tmp_path):
    """hunt76 F2: ``content.data[0].path: /proc/self/pagemap`` (size 0, ~256 GiB to read)
    kept verify hashing for minutes per entry. A file that reads on past the size it
    states is no data file: refused at once, naming it."""
    import time

    from metaflow_nb.data.loader import file_sha256
    from metaflow_nb.errors import DataError

    t0 = time.monotonic()
    with pytest.raises(DataError, match="pagemap: reads on past its size"):
        file_sha256("/proc/self/pagemap")
    assert time.monotonic() - t0 < 5
    f = tmp_path / "x.csv"
    f.write_bytes(b"a,b\n1,2\n" * 300_000)
    import hashlib
    assert file_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()


@pytest.mark.parametrize("config", ["config/walk_forward/fvg_walk_forward.yaml", "config/variants/exit_strategy_test.yaml"])
def test_a_config_naming_a_scheduler_is_still_reported_and_verified(tmp_path, monkeypatch, capsys, config):
    """hunt81 F1: refusing ``parallel.scheduler`` when the config was loaded made reports
    of such configs (which ignore ``parallel:``) fail, and reports already published fail
    to verify. Only a sweep that would connect refuses it; a report and verify read it."""
    import yaml

    from metaflow_nb.cli import main
    from metaflow_nb.reporting import api as rapi

    doc = yaml.safe_load((ROOT / config).read_text())
    root = next(iter(doc))
    for key in ("base_strategy", "base_operation"):
        doc[root][key] = str(ROOT / doc[root][key])
    doc[root]["parallel"] = {"backend": "dask", "scheduler": "tcp://127.0.0.1:8786"}
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(rapi, "run_notebooks", _fake_notebooks())
    rep = rapi.report(str(cfg), out=tmp_path / "r")
    capsys.readouterr()
    assert main(["report", "--verify", str(rep.folder)]) == 0, capsys.readouterr()
