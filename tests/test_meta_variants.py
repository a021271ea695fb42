"""VariantTestService: deep overrides (mappings merge, lists replace, re-validated), the
starred comparison, the causal analysis read from the journals, failed variants kept."""
from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest

import fault_plugins as fp
import metaflow_nb as mf
from metaflow_nb.config.buildspecs import deep_merge
from metaflow_nb.engine.metrics import METRIC_DIRECTION
from metaflow_nb.errors import ConfigError
from metaflow_nb.services.operation import OperationService
from metaflow_nb.services.parallel import ParallelRunService
from metaflow_nb.services.variants import COMPARISON_METRICS, STAR, VariantTestService

EXIT_VARIANTS = "config/variants/exit_strategy_test.yaml"
STOPS = str(fp.ROOT / "config" / "runs" / "sma_cross_long_stops.yaml")
CROSS = str(fp.ROOT / "config" / "runs" / "sma_cross.yaml")
REASONS = ("MAX_DRAWDOWN", "VOLATILITY_SPIKE", "MARKET_RISK")


def seq() -> VariantTestService:
    return VariantTestService(ParallelRunService(backend="sequential", progress=False))


def write_variants(folder, variants, strategy=STOPS, name="variants.yaml", **body):
    # five years of the daily sample keep the significance bootstraps cheap
    op = fp.write_sp500_operation(folder)
    return fp.write_yaml(folder / name, fp.meta_doc("variant_config", strategy, operation=op, variants=variants,
                                                    **body))


def _sma(fast, slow):
    return {"workforce": {"opportunity_workers": [
        {"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": fast, "slow": slow}}]}}


# ------------------------------------------------------------------ the source design's A/B test

@pytest.fixture(scope="module")
def exit_cmp():
    return mf.compare_variants(EXIT_VARIANTS, backend="sequential", progress=False)


def test_exit_strategy_variants_swap_only_the_exit_planner(exit_cmp):
    base = exit_cmp.base_specs
    base_bp = base.blueprint
    assert [v.name for v in exit_cmp.variants] == ["liquidity_targets", "atr_based"]
    for v in exit_cmp.variants:
        bp = v.specs.blueprint
        exits = bp["workforce"]["planning_workers"]["exit_planning"]
        assert [e["instance_id"] for e in exits] == ["exit_1"]
        for key in ("context_workers", "opportunity_workers", "threat_workers"):
            assert bp["workforce"][key] == base_bp["workforce"][key], key
        for key in ("entry_planning", "size_planning"):
            assert bp["workforce"]["planning_workers"][key] == base_bp["workforce"]["planning_workers"][key]
        assert v.specs.operation == base.operation
    a, b = (v.specs for v in exit_cmp.variants)
    assert a.params("exit_1")["target_opposite_liquidity"] is True
    assert b.blueprint["workforce"]["planning_workers"]["exit_planning"][0]["plugin"] == "atr_based_stops"
    assert b.params("exit_1")["atr_multiplier"] == 2.0
    # the base is never changed by deriving variants
    assert base.blueprint == base_bp and a.hash != b.hash != base.hash


def _expected_winner(cmp_, m):
    vals = {v.name: v.result.metrics[m] for v in cmp_.variants if v.ok}
    sense = METRIC_DIRECTION.get(m, 0)
    if sense == 0 or len(vals) < 2:
        return None
    best = max(vals.values(), key=lambda x: x * sense)
    names = [n for n, x in vals.items() if x == best]
    return names[0] if len(names) == 1 else None


def _check_stars(cmp_):
    """The row winner (by the metric's direction) is starred when its bootstrap test against
    the runner-up is significant (or when no test ran); no other cell has a star."""
    tab = cmp_.table()
    winners = cmp_.winners()
    tests = (cmp_.significance or {}).get("metrics", {})
    for m, label in zip(cmp_.metrics, tab.index):
        want = _expected_winner(cmp_, m)
        assert winners[m] == want, m
        t = tests.get(m)
        starred = [n for n in tab.columns if STAR in tab.loc[label, n]]
        if want is None:
            assert starred == [], m
        else:
            significant = t is None and cmp_.significance is None or (t is not None and t["significant"])
            assert starred == ([want] if significant else []), (m, t)
            if t is not None:
                assert t["winner"] == want and f"({t['label']})" in tab.loc[label, want]
    return sum(STAR in str(x) for x in tab.to_numpy().ravel())


def test_exit_strategy_comparison_table_stars_the_row_winners(exit_cmp):
    assert all(v.ok for v in exit_cmp.variants)
    tab = exit_cmp.table()
    assert list(tab.columns) == ["liquidity_targets", "atr_based"]
    assert list(tab.index) == ["Sharpe ratio", "Total return", "Max drawdown", "Win rate", "Total trades"]
    assert set(exit_cmp.winners()) == set(COMPARISON_METRICS)
    assert exit_cmp.winners()["total_trades"] is None, "a neutral metric has no winner"
    # the source design's comparison shows at least one starred winner
    assert _check_stars(exit_cmp) >= 1


def test_exit_strategy_causal_analysis_is_read_from_the_journals(exit_cmp):
    causal = exit_cmp.causal()
    for v in exit_cmp.variants:
        j = v.result.journal
        detected = int((j["event"] == "OPPORTUNITY_DETECTED").sum())
        rejected = j[j["event"] == "OPPORTUNITY_REJECTED"]
        assert causal.loc[v.name, "detected"] == detected == v.result.metrics["opportunities_detected"]
        assert causal.loc[v.name, "rejected"] == len(rejected) > 0
        assert causal.loc[v.name, "rejected_pct"] == pytest.approx(100.0 * len(rejected) / detected)
        # every rejection names the threat that caused it, and its reason code
        assert rejected["threat_id"].notna().all() and (rejected["threat_id"] != "").all()
        reasons = exit_cmp.reasons(v.name, top=10)
        assert reasons["count"].to_dict() == rejected["reason"].value_counts().to_dict()
        assert set(REASONS) <= set(reasons.index)
        assert reasons["count"].sum() == len(rejected)
        # shares have two decimals: each row off by at most 0.005
        assert reasons["share_pct"].sum() == pytest.approx(100.0, abs=0.005 * len(reasons))
        assert reasons["share_pct"].tolist() == (100.0 * reasons["count"] / len(rejected)).round(2).tolist()
        assert list(reasons["count"]) == sorted(reasons["count"], reverse=True)
        # each rejected opportunity was detected first, on the same bar
        det = j[j["event"] == "OPPORTUNITY_DETECTED"].set_index("opportunity_id")["bar"]
        assert (rejected.set_index("opportunity_id")["bar"] == det.loc[rejected["opportunity_id"]].to_numpy()).all()
    assert exit_cmp.most_defensive() == causal["rejected_pct"].astype(float).idxmax()


def test_exit_strategy_rendering(exit_cmp):
    text = exit_cmp.render_text()
    assert text.startswith("\u250c") and text.rstrip().endswith("\u2518")
    assert "VARIANT COMPARISON RESULTS: Exit Strategy Comparison" in text
    assert STAR in text and "Causal analysis" in text
    assert "[Export Report] [View Details] [Apply Winner]" in text
    d = exit_cmp.most_defensive()
    assert f"{d}: " in text
    # 246 against 242 rejections of 754 opportunities: no variant is called more defensive
    assert exit_cmp.more_defensive() is None and " - more defensive" not in text
    other = next(v.name for v in exit_cmp.variants if v.name != d)
    assert f"{d} rejects the largest share, not significantly more than {other}, the next largest (p = " in text
    for reason, row in exit_cmp.reasons(d).iterrows():
        assert f"* {reason}: {int(row['count'])} (" in text
    html = exit_cmp._repr_html_()
    assert STAR in html and "Causal analysis" in html and "MAX_DRAWDOWN" in html
    doc = exit_cmp.to_dict()
    json.dumps(doc)
    for v in exit_cmp.variants:
        counts = {k: x["count"] for k, x in doc["causal_analysis"]["reasons"][v.name].items()}
        assert counts == exit_cmp.reasons(v.name, top=10)["count"].to_dict()


def test_variant_results_equal_single_backtests(exit_cmp):
    for v in exit_cmp.variants:
        single = OperationService().run(v.specs)
        assert single.metrics == v.result.metrics
        assert v.outcome.run_id == v.specs.run_id == single.run_id


# ------------------------------------------------------------------ deep merge

def test_deep_merge_mappings_merge_lists_replace():
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": [1, 2, 3], "c": "keep"}
    snapshot = copy.deepcopy(base)
    out = deep_merge(base, {"a": {"y": {"q": 9}}, "b": [7]})
    assert out == {"a": {"x": 1, "y": {"p": 1, "q": 9}}, "b": [7], "c": "keep"}
    assert base == snapshot, "the base is not mutated"
    out["a"]["y"]["p"] = 100
    assert base["a"]["y"]["p"] == 1, "no structure shared with the base"
    # a mapping may replace a scalar and a list may replace a mapping: replacement, not merge
    assert deep_merge({"a": [{"k": 1}, {"k": 2}]}, {"a": [{"k": 3}]}) == {"a": [{"k": 3}]}
    with pytest.raises(ConfigError, match=r"a\.y\.zz: no such key in the blueprint \(keys here: p, q\)"):
        deep_merge(base, {"a": {"y": {"zz": 1}}})


def test_variant_overrides_merge_mappings_and_replace_lists(tmp_path):
    cfg = write_variants(tmp_path, [
        {"name": "base"},
        {"name": "long_short", "overrides": {"direction": "long_short"}},
        {"name": "one_exit", "overrides": {"workforce": {"planning_workers": {"exit_planning": [
            {"instance_id": "exit_1", "plugin": "reverse_on_opposite", "params": {"exclusive_orders": True}}]}}}},
        {"name": "fast5", "overrides": _sma(5, 40)},
        {"name": "no_costs", "overrides": {"operation": {"commission": 0.0}}},
    ])
    model, base, variants = seq().build(cfg)
    specs = {n: s for n, _, s in variants}
    bp = base.blueprint
    assert specs["base"].hash == base.hash
    ls = specs["long_short"].blueprint
    assert ls["direction"] == "long_short" and ls["workforce"] == bp["workforce"]
    exits = specs["one_exit"].blueprint["workforce"]["planning_workers"]["exit_planning"]
    assert [e["instance_id"] for e in exits] == ["exit_1"], "the list is replaced, not merged"
    assert len(bp["workforce"]["planning_workers"]["exit_planning"]) == 2
    assert specs["one_exit"].blueprint["workforce"]["planning_workers"]["entry_planning"] == \
        bp["workforce"]["planning_workers"]["entry_planning"], "sibling mappings survive"
    assert specs["fast5"].params("sma_1") == {"fast": 5, "slow": 40}
    assert specs["no_costs"].operation["commission"] == 0.0
    assert specs["no_costs"].blueprint == bp
    cmp_ = seq().run(cfg)
    res = cmp_.results
    assert res["no_costs"].metrics["final_equity"] > res["base"].metrics["final_equity"]
    assert res["no_costs"].metrics["total_trades"] == res["base"].metrics["total_trades"]
    one = OperationService().run(base.with_params("sma_1", {"fast": 5, "slow": 40}))
    assert res["fast5"].metrics == one.metrics


def test_a_list_override_must_be_complete(tmp_path):
    # lists replace: an entry without its plugin is invalid, named by variant and key path
    cfg = write_variants(tmp_path, [{"name": "ok"}, {"name": "partial", "overrides": {"workforce": {
        "opportunity_workers": [{"instance_id": "sma_1", "params": {"fast": 5}}]}}}])
    with pytest.raises(ConfigError) as exc:
        seq().build(cfg)
    msg = str(exc.value)
    assert msg.startswith(str(cfg)) and "variant_config.variants[1].overrides" in msg
    assert "opportunity_workers[0].plugin" in msg


@pytest.mark.parametrize("overrides,needle", [
    (_sma(0, 40), "variants[1].overrides.workforce.opportunity_workers[0].params.fast: must be > 0"),
    (_sma(50, 40), "variants[1].overrides.workforce.opportunity_workers[0].params: fast (50) must be smaller"),
    ({"workforce": {"opportunity_workers": [{"instance_id": "sma_1", "plugin": "sma_cross",
                                             "params": {"fats": 5}}]}},
     "variants[1].overrides.workforce.opportunity_workers[0].params.fats: unknown key"),
    ({"workforce": {"opportunity_workers": [{"instance_id": "sma_1", "plugin": "percent_stops"}]}},
     "variants[1].overrides.workforce.opportunity_workers[0].plugin: 'percent_stops' is a"),
    ({"workforce": {"planning_workers": {"exit_plan": []}}},
     "variants[1].overrides.workforce.planning_workers.exit_plan: no such key"),
    ({"operation": {"comission": 0.0}}, "variants[1].overrides.operation.comission: no such key"),
    ({"direction": "sideways"}, "variants[1].overrides.direction"),
])
def test_merged_blueprint_is_revalidated_naming_the_variant(tmp_path, overrides, needle, monkeypatch):
    cfg = write_variants(tmp_path, [{"name": "ok"}, {"name": "bad", "overrides": overrides}])

    def _boom(*a, **k):
        raise AssertionError("a run started although a variant is invalid")

    monkeypatch.setattr(ParallelRunService, "run", _boom)
    with pytest.raises(ConfigError) as exc:
        seq().run(cfg)
    msg = str(exc.value)
    assert msg.startswith(f"{cfg}: "), msg
    assert needle in msg, msg
    assert "\n" not in msg


# ------------------------------------------------------------------ failures, ties, backends

def test_a_failing_variant_is_kept_with_its_error(tmp_path):
    faulty = {"plugins": ["fault_plugins"], "workforce": {"opportunity_workers": [
        {"instance_id": "sma_1", "plugin": "fault_plugins:FaultyCross", "params": {"fast": 7, "slow": 30}}]}}
    cfg = write_variants(tmp_path, [{"name": "a", "overrides": _sma(10, 30)},
                                    {"name": "broken", "overrides": faulty},
                                    {"name": "b", "overrides": _sma(20, 60)}], strategy=CROSS)
    for backend in ("sequential", "loky"):
        cmp_ = VariantTestService().run(cfg, backend=backend, max_workers=2, progress=False)
        broken = cmp_.variants[1]
        assert not broken.ok and broken.outcome.status == "failed"
        assert broken.outcome.error_type == "PluginError"
        assert broken.outcome.error_message == fp.refused(7)
        assert "fault_plugins.py" in broken.outcome.traceback
        assert list(cmp_.table()["broken"]) == ["failed"] * 5
        assert set(cmp_.results) == {"a", "b"}
        assert cmp_.causal().loc["broken"].isna().all()
        text = cmp_.render_text()
        assert f"! broken failed: PluginError: {fp.refused(7)}" in text
        assert "broken: failed" in text
        doc = cmp_.to_dict()
        assert doc["variants"][1]["status"] == "failed" and doc["variants"][1]["metrics"] is None
        assert "refuses fast=7" in doc["variants"][1]["error"]
        assert cmp_.to_frame().loc["broken", "error"] == f"PluginError: {fp.refused(7)}"
        json.dumps(doc)


def test_a_tie_is_no_win(tmp_path):
    # same strategy twice, spelled differently: identical numbers, no star anywhere
    cfg = write_variants(tmp_path, [{"name": "as_is"}, {"name": "spelled_out", "overrides": _sma(10, 20)}],
                         strategy=CROSS)
    cmp_ = seq().run(cfg)
    a, b = cmp_.variants
    assert a.specs.hash == b.specs.hash and a.result.metrics == b.result.metrics
    assert all(w is None for w in cmp_.winners().values())
    assert not any(STAR in str(x) for x in cmp_.table().to_numpy().ravel())


def test_winner_stars_on_sp500_variants_and_backend_parity(tmp_path):
    cfg = write_variants(tmp_path, [{"name": f"f{f}", "overrides": _sma(f, 60)} for f in (5, 20, 40)],
                         strategy=CROSS)
    s = seq().run(cfg)
    loky = VariantTestService().run(cfg, backend="loky", max_workers=2, progress=False)
    for x, y in zip(s.variants, loky.variants):
        assert x.result.metrics == y.result.metrics
        pd.testing.assert_frame_equal(x.result.trades, y.result.trades)
        pd.testing.assert_series_equal(x.result.equity, y.result.equity)
    sharpe = {v.name: v.result.metrics["sharpe_ratio"] for v in s.variants}
    assert s.winners()["sharpe_ratio"] == max(sharpe, key=sharpe.get)
    _check_stars(s)
    assert s.table().equals(loky.table())


def test_unknown_plot_kind_names_every_kind(exit_cmp):
    with pytest.raises(ConfigError, match=r"unknown plot kind 'bootstrp'; kinds: 'equity', 'rejections', 'bootstrap'"):
        exit_cmp.plot("bootstrp")


def _causal_only(rejected, detected=6):
    """A comparison whose causal table is ``rejected`` of ``detected`` per variant none, B, C."""
    from metaflow_nb.services.variants import VariantComparison

    cmp_ = object.__new__(VariantComparison)
    table = pd.DataFrame({"detected": [detected] * 3, "rejected": rejected,
                          "rejected_pct": [r / detected * 100 for r in rejected]},
                         index=pd.Index(["none", "B", "C"], name="variant"))
    cmp_.causal = lambda: table
    return cmp_


def test_two_variants_tied_for_the_largest_rejected_share_name_neither():
    """3 of 6 for B and C: no "B rejects the largest share", no top reasons of B by table order."""
    tied = _causal_only([0, 3, 3])
    assert tied.most_defensive() is None and tied.more_defensive() is None
    name, p = tied.defensive_test()
    assert name is None and math.isnan(p)
    assert tied.defensive_text() == "B and C reject the same largest share (50.0 %)"
    assert tied.reasons().empty
    lead = _causal_only([0, 3, 4])
    assert lead.most_defensive() == "C" and lead.defensive_test()[0] == "C"
    assert lead.defensive_text().startswith("C rejects the largest share")
    assert _causal_only([2, 2, 2]).defensive_text() == "every variant rejects the same share (33.3 %)"
    assert _causal_only([0, 0, 0]).defensive_text() == "no variant rejected an opportunity"


# ------------------------------------------------------------------ a variant on other data

IBM = "metaflow_nb/data/samples/us_stocks/IBM.csv.gz"


def _other_data_config(folder, source):
    import yaml
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    doc = {"variant_config": {"name": "other data", "base_operation": str(root / "config/operations/sp500_daily.yaml"),
                              "base_strategy": str(root / "config/runs/sma_cross.yaml"),
                              "variants": [{"name": "spx"},
                                           {"name": "ibm", "overrides": {"operation": {"data": {"source": source}}}}]}}
    path = folder / "cfg" / "other.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("backend", ["sequential", "loky"])
def test_a_variant_on_another_file_is_that_files_backtest(tmp_path, backend):
    """A variant overriding operation.data.source kept the base's data fingerprint: the same
    run id as the base, and in one process the base's cached features and trades (hunt17
    F1, F2). A relative source is read from the variant config's folder (hunt17 F3)."""
    import shutil
    from pathlib import Path

    here = tmp_path / "cfg" / "data"
    here.mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / IBM, here / "IBM.csv.gz")
    cmp = mf.compare_variants(_other_data_config(tmp_path, "data/IBM.csv.gz"), backend=backend, progress=False)
    direct = mf.backtest("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml", data=IBM)
    spx = mf.backtest("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
    runs = {r.name: r for r in cmp.variants}
    assert runs["ibm"].specs.run_id == direct.run_id != spx.run_id == runs["spx"].specs.run_id
    assert runs["ibm"].result.metrics == direct.metrics
    pd.testing.assert_frame_equal(runs["ibm"].result.trades, direct.trades)


def test_a_variant_on_another_clock_is_that_clocks_backtest():
    """``operation.data.timezone: UTC`` on the EURUSD base (broker time) ran the base's bars
    under the base's run id in one process (hunt17 F1)."""
    cfg = {"variant_config": {"name": "clock", "base_operation": "config/operations/ict_backtest.yaml",
                              "base_strategy": "config/runs/sma_cross.yaml",
                              "variants": [{"name": "broker"},
                                           {"name": "utc", "overrides": {"operation": {"data": {"timezone": "UTC"}}}}]}}
    cmp = mf.compare_variants(cfg, backend="sequential", progress=False)
    direct = mf.backtest(mf.build_specs("config/runs/sma_cross.yaml", "config/operations/ict_backtest.yaml",
                                        timezone="UTC"))
    runs = {r.name: r for r in cmp.variants}
    assert runs["utc"].specs.run_id == direct.run_id != runs["broker"].specs.run_id
    assert runs["utc"].result.metrics == direct.metrics


def test_a_variant_on_a_missing_file_or_over_a_dataframe_is_refused_before_any_run(tmp_path, capsys):
    from metaflow_nb.cli import main as cli_main

    cfg = _other_data_config(tmp_path, "no_such.csv")
    assert cli_main(["variants", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"metaflow-nb: error: {cfg}: variant_config.variants[1].overrides.operation.data.source: "), err
    assert "no_such.csv: file not found" in err[0]
    with pytest.raises(ConfigError, match="operation.data.timezone: the base runs on a DataFrame"):
        mf.build_specs("config/runs/sma_cross.yaml", data=mf.load_data("sp500_daily")).with_overrides(
            {"operation": {"data": {"timezone": "UTC"}}})


def test_the_win_rate_bootstrap_keeps_its_numbers_in_bounded_memory():
    """Two tables of 2,000 resamples x every trade: 3.35 GB more for 110,000 trades (hunt15
    F1). Drawn a block of rows at a time, the numbers are the same to the last bit."""
    import tracemalloc

    import numpy as np

    from metaflow_nb.services.significance import _win_rate_test

    def old(a, b, n_boot, seed):
        wa, wb = (a["pnl"].to_numpy() > 0).astype(float), (b["pnl"].to_numpy() > 0).astype(float)
        rng = np.random.default_rng(seed)
        da = wa[rng.integers(0, wa.size, (n_boot, wa.size))].mean(axis=1)
        db = wb[rng.integers(0, wb.size, (n_boot, wb.size))].mean(axis=1)
        return (da - db) * 100.0

    rng = np.random.default_rng(1)
    for na, nb in ((3, 2), (101, 77), (5001, 4999)):
        a, b = (pd.DataFrame({"pnl": rng.normal(0.1, 1.0, n)}) for n in (na, nb))
        assert np.array_equal(_win_rate_test(a, b, 2000, 7)[3], old(a, b, 2000, 7))
    big = pd.DataFrame({"pnl": rng.normal(0.0, 1.0, 60_000)})
    tracemalloc.start()
    _win_rate_test(big, big, 2000, 7)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100e6, peak   # one draw of the whole table: 2 x 2000 x 60,000 x 16 bytes


def test_variants_on_other_days_are_not_bootstrapped_on_the_days_they_share():
    """The table shows each variant's whole period, the paired bootstrap read the days both
    have: there the starred 'winner' on drawdown was the loser (56.96 % vs 46.43 %;
    hunt17 F4). Such a metric is not tested, named in the summary, never starred."""
    from metaflow_nb.reporting.pages import bootstrap_html

    cfg = {"variant_config": {"name": "periods", "base_operation": "config/operations/sp500_daily.yaml",
                              "base_strategy": "config/runs/sma_cross.yaml",
                              "variants": [{"name": "spx"},
                                           {"name": "spx_2010", "overrides": {"operation": {"data": {
                                               "start": "2010-01-01"}}}}]}}
    cmp = mf.compare_variants(cfg, backend="sequential", progress=False)
    tests = cmp.significance["metrics"]
    for m in ("sharpe_ratio", "total_return_pct", "max_drawdown_pct"):
        if m in tests:
            assert tests[m]["tested"] is False and not tests[m]["significant"] and math.isnan(tests[m]["p_value"])
    assert "not tested: the winner and the runner-up cover different days" in cmp.significance["summary"]
    assert STAR not in cmp.table().to_string()
    assert "not tested: the two cover different days" in bootstrap_html(cmp.significance, "spx")
    same = mf.compare_variants({"variant_config": {**cfg["variant_config"], "variants": [
        {"name": "a"}, {"name": "b", "overrides": {"workforce": {"opportunity_workers": [
            {"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 5, "slow": 20}}]}}}]}},
        backend="sequential", progress=False)
    assert all(t.get("tested", True) for t in same.significance["metrics"].values())


def test_the_text_box_gives_shares_to_one_decimal_as_the_html(exit_cmp):
    """The box rounded to whole percents: 1 rejection of 754 read "(0%)", and 63.5 % in the
    HTML was 64% here (hunt17 F7)."""
    text = exit_cmp.render_text()
    for name, row in exit_cmp.causal().iterrows():
        assert f"{name}: {int(row['rejected'])} of {int(row['detected'])} ({float(row['rejected_pct']):.1f} %)" in text
    for reason, row in exit_cmp.reasons(exit_cmp.most_defensive()).iterrows():
        assert f"* {reason}: {int(row['count'])} ({float(row['share_pct']):.1f} %)" in text


def test_a_variant_without_setups_has_no_rejection_rate():
    """0 rejected of 0 detected was a rate of 0.0 and the box said "0 of 0 (0%)"; the README
    says an undefined value is NaN (hunt17 F6)."""
    from metaflow_nb.reporting.index import causal_section

    cfg = {"variant_config": {"name": "none", "base_operation": "config/operations/sp500_daily.yaml",
                              "base_strategy": "config/runs/sma_cross.yaml",
                              "variants": [{"name": "base"},
                                           {"name": "never", "overrides": {"workforce": {"opportunity_workers": [
                                               {"instance_id": "sma_1", "plugin": "sma_cross",
                                                "params": {"fast": 4000, "slow": 5020}}]}}}]}}
    cmp = mf.compare_variants(cfg, backend="sequential", progress=False)
    m = cmp.results["never"].metrics
    assert m["opportunities_detected"] == 0 and math.isnan(m["rejection_rate_pct"])
    assert "never: 0 of 0 (n/a)" in cmp.render_text()
    assert "<td>0</td><td>0</td><td>n/a</td>" in causal_section(cmp)
