"""Reports of the meta configs over a basket (README "Portfolios", "Reports"): each
combination, variant or out-of-sample window is one portfolio run, recorded in the
manifest by its ``BasketSpecs`` (blueprint, resolved basket, window, each instrument's
specs hash), shown on a ``portfolio_report`` page, and run again by ``--verify``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_reports import edited_copy, generated

import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.errors import ConfigError
from metaflow_nb.reporting.manifest import content_sha256
from metaflow_nb.reporting.verify import verify

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ["AAPL", "FB", "GOOG", "IBM", "MSFT", "NASDAQ"]

pytestmark = pytest.mark.slow


def _runs(g):
    return g.manifest["content"]["runs"]


def test_basket_optimization_report_records_every_combination_and_its_best_page():
    import metaflow_nb as mf
    g = generated("basket_optimization")
    assert g.cli["failed"] == []
    runs = _runs(g)
    opt = mf.optimize(str(ROOT / "config/optimizations/sma_basket.yaml"), progress=False)
    assert [r["name"] for r in runs] == [f"combination_{k}" for k in range(6)]
    for r in runs:
        assert [i["symbol"] for i in r["basket"]["instruments"]] == SYMBOLS and r["basket"]["window"] is None
        assert [i["symbol"] for i in r["operation"]["instruments"]] == SYMBOLS and r["operation"]["universe"] is None
    # every recorded metric is the table's, the best page is the table's first row
    by_combo = opt.table.set_index("combination")
    results = g.manifest["content"]["results"]
    for k, r in enumerate(runs):
        assert results[r["name"]]["metrics"]["sharpe_ratio"] == pytest.approx(by_combo.loc[k, "sharpe_ratio"], rel=1e-15)
    best = next(r for r in runs if r["page"] == "best_run")
    assert best["specs_hash"] == opt.best_result.basket_specs.hash
    assert best["params"] == {"sma_1": {"fast": int(opt.best["sma_1__fast"]), "slow": int(opt.best["sma_1__slow"])}}
    # six instrument files, each with its sha256
    data = g.manifest["content"]["data"]
    assert sorted(Path(d["path"]).name.split(".")[0] for d in data) == SYMBOLS and all(d["sha256"] for d in data)
    # the CSV holds every combination; the index states each symbol's costs and pick
    assert len(pd.read_csv(g.folder / "all_results.csv")) == 6
    index = g.index.read_text()
    assert "GOOG: commission 0.2 % per side" in index and "Best combination per instrument" in index
    assert "Survives selection" in index or "Indistinguishable" in index
    page = (g.folder / "best_run.html").read_text()
    assert "Per instrument" in page and "Correlation" in page and "best_run_trades.csv" in page
    assert "Bootstrap p-values" not in page   # an optimization's pick has no comparison to test
    trades = pd.read_csv(g.folder / "best_run_trades.csv")
    assert len(trades) == len(opt.best_result.trades) and "symbol" in trades


def test_basket_variant_report_has_a_portfolio_page_per_variant():
    g = generated("basket_variants")
    assert [p.name for p in g.result.pages] == ["plain", "drawdown_halt"] and g.result.failed == []
    for p in g.result.pages:
        text = p.html.read_text()
        assert "Portfolio report" in text and "Bootstrap p-values" in text and "Per instrument" in text
    halt = next(r for r in _runs(g) if r["name"] == "drawdown_halt")
    workers = halt["blueprint"]["workforce"]["threat_workers"]
    assert [w["plugin"] for w in workers] == ["max_drawdown_monitor"]
    assert "MAX_DRAWDOWN" in (g.folder / "drawdown_halt.html").read_text()
    # the costs line states each symbol's rate (GOOG pays 0.2 %, the others the operation's 0.1 %)
    assert "GOOG: commission 0.2 % per side" in g.index.read_text()


def test_basket_walk_forward_report_records_each_window_it_ran():
    g = generated("basket_walk_forward")
    assert g.result.failed == []
    runs = _runs(g)
    assert len(runs) == 5
    assert "GOOG: commission 0.2 % per side" in g.index.read_text()
    for r in runs:
        w = r["basket"]["window"]
        assert w["start"] < w["trade_start"] <= w["end"]   # warm-up bars, then the out-of-sample window
    # a window's record runs again to the same portfolio metrics
    from metaflow_nb.services.portfolio import rerun_portfolio
    first = runs[0]
    again = rerun_portfolio(first["blueprint"], first["operation"], first["basket"]["window"])
    assert again.basket_specs.hash == first["specs_hash"]
    assert again.metrics == pytest.approx(g.manifest["content"]["results"][first["name"]]["metrics"], rel=1e-12,
                                          nan_ok=True)


@pytest.mark.parametrize("key", ["basket_optimization", "basket_variants", "basket_walk_forward"])
def test_verify_runs_every_basket_run_again(key, capsys):
    g = generated(key)
    assert main(["report", "--verify", str(g.folder)]) == 0
    out = capsys.readouterr().out
    assert f"verify: ok: {len(_runs(g))} runs" in out and "6 data file(s)" in out


def test_verify_catches_a_basket_metric_that_no_longer_holds(tmp_path):
    g = generated("basket_variants")
    copy = tmp_path / g.folder.name
    shutil.copytree(g.folder, copy)
    man = json.loads((copy / "manifest.json").read_text())
    man["content"]["results"]["plain"]["metrics"]["total_return_pct"] *= 1 + 1e-9
    man["content_sha256"] = content_sha256(man["content"])   # edited consistently: only a re-run can tell
    (copy / "manifest.json").write_text(json.dumps(man))
    res = verify(copy)
    assert res.differences == [res.differences[0]] and res.differences[0].startswith(
        "run plain: 1 metric(s) differ (total_return_pct")
    # an instrument's recorded hash that is not the basket's any more
    man["content"]["results"]["plain"]["metrics"]["total_return_pct"] /= 1 + 1e-9
    man["content"]["runs"][0]["specs_hash"] = "0" * 64
    man["content_sha256"] = content_sha256(man["content"])
    (copy / "manifest.json").write_text(json.dumps(man))
    assert any(d.startswith("run plain: BuildSpecs hash 000000000000 ->") for d in verify(copy).differences)


def test_verify_recomputes_a_basket_optimizations_selection(tmp_path):
    """The best combination and the deflated Sharpe ratio, trials and PBO of a basket
    optimization are recomputed from the re-run portfolio runs: a summary that says
    otherwise fails, even with its content hash made to match."""
    g = generated("basket_optimization")
    assert verify(g.folder).ok
    st = g.manifest["content"]["summary"]["statistics"]
    dsr, n = st["dsr"], st["n_trials"]
    best = g.manifest["content"]["summary"]["best_params"]

    def flat(params):
        return {f"{i}__{p}": v for i, ps in params.items() for p, v in ps.items()}

    def edit(man):
        summary = man["content"]["summary"]
        summary["best_params"] = next(flat(r["params"]) for r in man["content"]["runs"] if flat(r["params"]) != best)
        summary["statistics"].update(dsr=0.5, n_trials=99)

    copy, man = edited_copy(g.folder, tmp_path, edit)
    summary = man["content"]["summary"]
    assert verify(copy).differences == [
        f"selection: best params {summary['best_params']} -> {best}",
        f"selection statistics: 2 differ (n_trials 99 -> {n!r}, dsr 0.5 -> {dsr!r})"]


def test_a_portfolio_page_refuses_a_run_other_than_the_planned_one():
    from metaflow_nb.reporting import pages
    from metaflow_nb.reporting.params import PortfolioReportParams
    p = PortfolioReportParams(config=str(ROOT / "config/variants/sma_basket_variants.yaml"), variant="plain",
                              expected_hash="0" * 64)
    with pytest.raises(RuntimeError, match="resolved run .* but the report planned 0000000000000000"):
        pages.portfolio_run(p)
    with pytest.raises(ConfigError, match="no variant named 'nope'; variants: plain, drawdown_halt"):
        pages.portfolio_run(PortfolioReportParams(config=str(ROOT / "config/variants/sma_basket_variants.yaml"),
                                                  variant="nope"))


@pytest.mark.parametrize("params, message", [
    ({"config": "v.yaml"}, "config given without variant"),
    ({"config": "v.yaml", "variant": "a", "strategy": "s.yaml"}, "not both"),
    ({"strategy": "s.yaml"}, "give config and variant, or strategy and a basket operation"),
])
def test_portfolio_page_parameters_name_one_run(params, message):
    from metaflow_nb.reporting.params import validate_parameters
    with pytest.raises(ConfigError, match=message):
        validate_parameters("portfolio_report", params)


def test_a_failed_basket_variant_is_recorded_and_reported_as_failed(monkeypatch, tmp_path):
    # a variant whose portfolio run raises: a failed column with its record, as a failed single variant
    import metaflow_nb.services.portfolio as portfolio
    from metaflow_nb.reporting.manifest import build_manifest
    from metaflow_nb.reporting.plan import build_plan
    real = portfolio.run_portfolio

    def flaky(strategy, operation, **kw):
        if isinstance(strategy, dict) and strategy["workforce"].get("threat_workers"):
            raise RuntimeError("the threat worker broke")
        return real(strategy, operation, **kw)

    monkeypatch.setattr(portfolio, "run_portfolio", flaky)
    plan = build_plan(ROOT / "config/variants/sma_basket_variants.yaml")
    failed = next(r for r in plan.runs if r.name == "drawdown_halt")
    assert failed.status == "failed" and "the threat worker broke" in failed.error and failed.metrics is None
    assert [i["symbol"] for i in failed.specs.instruments] == SYMBOLS
    assert failed.specs.blueprint["workforce"]["threat_workers"][0]["plugin"] == "max_drawdown_monitor"
    man = build_manifest(plan, [], {}, tmp_path)
    run = next(r for r in man["content"]["runs"] if r["name"] == "drawdown_halt")
    assert run["status"] == "failed" and run["specs_hash"] == failed.specs.hash
    monkeypatch.setattr(portfolio, "run_portfolio", real)
    from metaflow_nb.services.portfolio import rerun_portfolio
    assert rerun_portfolio(run["blueprint"], run["operation"]).basket_specs.hash == run["specs_hash"]


def test_a_report_of_the_users_own_basket_folder_verifies_from_anywhere(tmp_path, monkeypatch):
    # a universe named by a path relative to the operation file: the record lists each file absolute
    import gzip

    from metaflow_nb.reporting import report
    from metaflow_nb.data.basket import basket_files
    own = tmp_path / "research" / "stocks"
    own.mkdir(parents=True)
    for sym, path in basket_files("us_stocks").items():
        if sym in ("IBM", "MSFT"):
            with gzip.open(path, "rt") as src:
                (own / f"{sym}.csv").write_text(src.read())
    (tmp_path / "research" / "basket.yaml").write_text(
        "name: mine\nmode: portfolio\nmax_positions: 1\nuniverse: {path: stocks}\ndata: {start: '2010-01-01'}\n")
    cfg = tmp_path / "research" / "variants.yaml"
    cfg.write_text(f"""\
variant_config:
  name: "my basket"
  base_operation: "basket.yaml"
  base_strategy: "{ROOT}/config/runs/sma_cross.yaml"
  variants:
    - name: "plain"
    - name: "slow"
      overrides:
        workforce:
          opportunity_workers:
            - instance_id: sma_1
              plugin: sma_cross
              params: {{fast: 20, slow: 50}}
""")
    monkeypatch.chdir(tmp_path / "research")
    rep = report(cfg, out=tmp_path / "reports", workers=2)
    assert rep.failed == []
    run = rep.manifest["content"]["runs"][0]
    assert [Path(i["source"]) for i in run["operation"]["instruments"]] == [own / "IBM.csv", own / "MSFT.csv"]
    assert sorted(d["path"] for d in rep.manifest["content"]["data"]) == [str(own / "IBM.csv"), str(own / "MSFT.csv")]
    monkeypatch.chdir(tmp_path)
    assert verify(rep.folder).ok
    # one close of one file changed: verify names the file
    text = (own / "MSFT.csv").read_text().splitlines(keepends=True)
    f = text[-1].rstrip("\n").split(",")
    f[4] = f"{float(f[4]) * 1.0001:.6f}"   # the last close, still inside its bar's range
    text[-1] = ",".join(f) + "\n"
    (own / "MSFT.csv").write_text("".join(text))
    assert any(d.startswith("data MSFT.csv: sha256 changed") for d in verify(rep.folder).differences)


def test_verify_does_not_pass_a_manifest_with_nothing_to_check(tmp_path):
    from metaflow_nb.reporting.manifest import write_manifest
    g = generated("basket_walk_forward")
    man = json.loads((g.folder / "manifest.json").read_text())
    man["content"]["runs"], man["content"]["results"], man["content"]["data"] = [], {}, []
    man["content_sha256"] = content_sha256(man["content"])
    man["files"] = {}   # written alone: the report's pages are not beside it
    write_manifest(man, tmp_path)
    res = verify(tmp_path)
    assert not res.ok and res.differences == ["manifest: records no run and no data file (e.g. no walk-forward "
                                              "window had an eligible combination): nothing to verify"]


def test_verify_recomputes_each_symbols_pick_of_a_basket_optimization(tmp_path):
    """Independent mode: each symbol's best combination, its metrics and its deflated
    Sharpe ratio (every symbol x combination a trial) are re-derived from the re-run
    portfolios: an edited pick fails even with the content hash made to match."""
    g = generated("basket_optimization")
    picks = g.manifest["content"]["summary"]["best_per_instrument"]
    aapl = next(p for p in picks if p["symbol"] == "AAPL")
    other = next(r for r in range(6) if r != aapl["combination"])

    def edit(man):
        for p in man["content"]["summary"]["best_per_instrument"]:
            if p["symbol"] == "AAPL":
                p["combination"] = other
            if p["symbol"] == "IBM":
                p["deflated_sharpe"] = 0.99

    copy, _ = edited_copy(g.folder, tmp_path, edit)
    diffs = verify(copy).differences
    assert len(diffs) == 1 and diffs[0].startswith("selection: best per instrument: 2 differ ("), diffs
    assert f"AAPL.combination {other} -> {aapl['combination']}" in diffs[0] and "IBM.deflated_sharpe 0.99 ->" in diffs[0]


def test_verify_recomputes_a_basket_walk_forwards_stitched_record(tmp_path):
    """The stitched out-of-sample record of a walk-forward over a basket (the windows'
    portfolios on the basket's starting equity), its test, efficiency and spread are
    re-derived from the re-run windows, as for a single instrument."""
    g = generated("basket_walk_forward")
    assert verify(g.folder).ok
    summary = g.manifest["content"]["summary"]
    sharpe, dsr = summary["oos_metrics"]["sharpe_ratio"], summary["statistics"]["dsr"]
    trades, eff = summary["oos_metrics"]["total_trades"], summary["walk_forward_efficiency"]

    def edit(man):
        edited = man["content"]["summary"]
        edited["oos_metrics"].update(sharpe_ratio=9.0, total_trades=trades + 1)
        edited["statistics"]["dsr"] = 0.99
        edited["walk_forward_efficiency"] = 5.0

    copy, _ = edited_copy(g.folder, tmp_path, edit)
    assert verify(copy).differences == [
        f"walk-forward: stitched out-of-sample metrics: 2 differ (sharpe_ratio 9.0 -> {sharpe!r}, "
        f"total_trades {trades + 1!r} -> {trades!r})",
        f"walk-forward: statistics: 1 differ (dsr 0.99 -> {dsr!r})",
        f"walk-forward: walk_forward_efficiency 5.0 -> {eff!r}"]


def test_verify_recomputes_a_basket_variant_comparison(tmp_path):
    """A variant test over a basket: winners, the rejected-opportunity analysis and the
    bootstrap p-values are re-derived from the re-run portfolios."""
    g = generated("basket_variants")
    summary = g.manifest["content"]["summary"]
    p = summary["significance"]["metrics"]["sharpe_ratio"]["p_value"]
    rejected = summary["causal_analysis"]["rejected"][1]["rejected"]

    def edit(man):
        edited = man["content"]["summary"]
        edited["significance"]["metrics"]["sharpe_ratio"]["p_value"] = 0.5
        edited["causal_analysis"]["rejected"][1]["rejected"] = rejected + 7

    copy, _ = edited_copy(g.folder, tmp_path, edit)
    assert verify(copy).differences == [
        f"variants: causal_analysis: 1 differ (rejected[1].rejected {rejected + 7!r} -> {rejected!r})",
        f"variants: significance: 1 differ (metrics.sharpe_ratio.p_value 0.5 -> {p!r})"]


def test_a_basket_walk_forwards_test_reads_returns_from_the_stitched_start():
    """hunt18 F2: the stitched record starts at the whole basket's cash (FB has no bar in
    the first windows); its daily returns were taken against the first window's cash, a
    fake +20 % first day that lifted the deflated Sharpe ratio from 0.712 to 0.851."""
    import numpy as np

    import metaflow_nb as mf
    from metaflow_nb.stats.sharpe import psr_from_returns
    wf = mf.walk_forward(str(ROOT / "config/walk_forward/sma_basket_walk_forward.yaml"), progress=False)
    assert wf.starting_equity == 60_000.0 and wf.oos_results[0].portfolio.starting_cash == 50_000.0
    eq = wf.oos_equity
    days = eq.groupby(eq.index.normalize()).last()
    r = np.diff(np.concatenate([[wf.starting_equity], days.to_numpy()])) / np.concatenate(
        [[wf.starting_equity], days.to_numpy()[:-1]])
    assert abs(r[0]) < 0.05   # no fake jump on the first day
    assert wf.statistics["psr"] == pytest.approx(psr_from_returns(r, 0.0), rel=1e-9)
    assert wf.statistics["psr"] == pytest.approx(0.712301, abs=1e-6)


def test_an_instrument_delisted_in_a_windows_warm_up_sits_the_window_out():
    """hunt18 F1: bars only before trade_start cannot trade; the instrument's cash joined
    the window's starting equity and halved its return."""
    from metaflow_nb.services.basket_specs import slice_basket
    from metaflow_nb.services.portfolio import load_basket
    op, items, bars = load_basket({"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}})
    bars = dict(bars, IBM=bars["IBM"].loc[:"2010-06-30"])   # IBM "delisted" at the end of June 2010
    start, end, trade_start = pd.Timestamp("2010-06-01"), pd.Timestamp("2010-12-31"), pd.Timestamp("2010-07-15")
    _, kept, part = slice_basket((op, items, bars), start, end, trade_start)
    assert [it["symbol"] for it in kept] == ["MSFT"] and list(part) == ["MSFT"]
    _, kept, _ = slice_basket((op, items, bars), start, end, pd.Timestamp("2010-06-15"))
    assert [it["symbol"] for it in kept] == ["IBM", "MSFT"]   # a bar on or after trade_start: it takes part


@pytest.mark.parametrize("base_operation", ["config/operations/us_stocks_basket.yaml",
                                            "config/operations/sp500_daily.yaml"])
def test_a_walk_forwards_trials_leave_out_refused_parameter_sets(base_operation):
    """hunt18 F3: fast >= slow is a failed row, not a trial (as in optimize): 3 of the 6
    pairs of this grid are trials in each window."""
    import yaml

    import metaflow_nb as mf
    doc = yaml.safe_load((ROOT / "config/walk_forward/sma_basket_walk_forward.yaml").read_text())
    body = doc["walk_forward_config"]
    body["base_operation"] = str(ROOT / base_operation)
    body["base_strategy"] = str(ROOT / body["base_strategy"])
    body["parameter_space"][0]["parameters"] = {"fast": {"values": [5, 10, 20]}, "slow": {"values": [10, 20]}}
    if "sp500" in base_operation:
        body["windows"].update(in_sample_bars=1000, out_of_sample_bars=1000, step_bars=1000)
    wf = mf.walk_forward(doc, progress=False)
    st = wf.statistics
    assert st["trials_per_window"] == 3 and st["n_trials"] == 3 * st["windows"] > 0


def test_verify_checks_a_basket_optimizations_headline_metrics(tmp_path):
    """hunt18 F4: the best combination's metrics the pages open with are the re-run best's,
    as for a single instrument (an edit with a matching content hash passed)."""
    g = generated("basket_optimization")
    ret = g.manifest["content"]["summary"]["best_metrics"]["total_return_pct"]

    def edit(man):
        man["content"]["summary"]["best_metrics"]["total_return_pct"] = ret + 100

    copy, _ = edited_copy(g.folder, tmp_path, edit)
    assert verify(copy).differences == [
        f"selection: best run's metrics differ (total_return_pct {ret + 100!r} -> {ret!r})"]


def test_a_basket_walk_forwards_pages_name_the_basket_and_its_calendar():
    import html
    g = generated("basket_walk_forward")
    for page in (g.index, g.folder / "walk_forward.html"):
        text = html.unescape(page.read_text())
        assert "basket us_stocks_basket (" in text and "bars of its union calendar" in text, page.name
        assert "exchange" in text and "the stop first (no finer bars)" in text


def test_a_basket_trades_zones_are_their_own_setups():
    """hunt47 F1's sibling: each instrument numbers its opportunities from 0, and the trades
    table of a page took each trade's setup zone by opportunity id alone: an IBM trade
    showed AAPL's zone of the same number."""
    import numpy as np

    from metaflow_nb.reporting.pages import trades_with_zones
    op = {"universe": {"path": "us_stocks", "symbols": ["AAPL", "IBM"]}, "data": {"start": "2006-01-01",
                                                                                 "end": "2008-01-01"}}
    res = mf.backtest(ROOT / "config/runs/ict_smc_strategy.yaml", op)
    t = trades_with_zones(res)
    assert list(t.columns[:2]) == ["symbol", "direction"] and len(t) == len(res.trades) > 0
    j = res.journal
    det = j[j["event"] == "OPPORTUNITY_DETECTED"][["symbol", "opportunity_id", "zone_top", "zone_bottom"]]
    own = t.merge(det, on=["symbol", "opportunity_id"], suffixes=("", "_own"))
    assert len(own) == len(t) and set(t["symbol"]) == {"AAPL", "IBM"}
    np.testing.assert_array_equal(own["zone_top"], own["zone_top_own"])
    np.testing.assert_array_equal(own["zone_bottom"], own["zone_bottom_own"])


def test_basket_meta_pages_carry_no_warning_box_and_state_costs_and_open_positions():
    """hunt47 F2-F5: the bundled basket optimization and walk-forward pages opened with a
    BasketParallelWarning about the sequential backend the templates ask for (and the raw
    WarmupWarning the page's Warm-up row states), their facts' values sat right of a wide
    costs line, the walk-forward pages left out the positions open at window ends beside a
    profit factor of 0.49, and the basket optimization page stated no costs."""
    import html
    opt_page = (generated("basket_optimization").folder / "optimization.html").read_text()
    wf = generated("basket_walk_forward")
    wf_page = (wf.folder / "walk_forward.html").read_text()
    for text in (opt_page, wf_page):
        assert "BasketParallelWarning" not in text and "WarmupWarning" not in text and str(ROOT) not in text
        assert "text-align:left;white-space:normal" in text   # facts wrap, values in view
    assert "GOOG: commission 0.2 % per side" in html.unescape(opt_page)
    for text in (wf_page, wf.index.read_text()):
        assert "positions open at window ends (marked in the stitched equity" in html.unescape(text)


def test_verify_passes_a_basket_optimization_without_an_eligible_combination(tmp_path):
    """hunt63 F4: a basket sweep whose combinations all miss the constraints records no best
    (hunt62 F2), while --verify recomputed the first row as the best and failed the untouched
    report: 'selection: best params None -> {...}'."""
    import yaml

    op = {"name": "bk", "mode": "independent", "data": {"start": "2010-01-01", "end": "2012-01-01"},
          "universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "cash": 10000, "commission": 0.001}
    (tmp_path / "op.yaml").write_text(yaml.safe_dump(op))
    cfg = {"optimization_config": {
        "name": "none eligible", "base_operation": "op.yaml",
        "base_strategy": str(Path("config/runs/sma_cross.yaml").resolve()),
        "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 10]}}}],
        "optimization_target": {"primary_metric": "sharpe_ratio", "constraints": {"min_trades": 100000}}}}
    path = tmp_path / "opt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = mf.report(path, out=tmp_path / "rep", workers=1)
    summary = json.loads((res.manifest_path).read_text())["content"]["summary"]
    assert summary["best_params"] is None and summary["best_eligible"] is False
    assert verify(res.manifest_path.parent).ok, verify(res.manifest_path.parent).differences
