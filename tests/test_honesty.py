"""The honesty banner: the selection verdict (deflated Sharpe ratio, PBO, trials, thresholds)
and the bootstrap p-values of variant pages.

The page content of real reports (a sweep that survives and one that does not) is
asserted in ``test_reports.py`` and ``test_browser_reports.py``; here the pieces, fast.
"""
from __future__ import annotations

import pandas as pd
import pytest

from metaflow_nb.reporting.pages import bootstrap_html, selection_banner_html
from metaflow_nb.services.significance import DSR_THRESHOLD, PBO_THRESHOLD, selection_verdict

LUCK = {"n_trials": 16, "dsr": 0.343, "psr": 0.656, "sharpe_annualized": 0.363,
        "expected_max_sharpe_annualized": 0.727, "dsr_significant": False, "pbo": 0.678, "pbo_splits": 16}
SURVIVES = {"n_trials": 2, "dsr": 0.986, "psr": 0.989, "sharpe_annualized": 0.516,
            "expected_max_sharpe_annualized": 0.022, "dsr_significant": True, "pbo": 0.408, "pbo_splits": 16}


def test_thresholds_are_the_documented_ones():
    assert DSR_THRESHOLD == pytest.approx(0.95) and PBO_THRESHOLD == 0.5


def test_verdict_of_a_sweep_that_is_luck():
    v = selection_verdict(LUCK)
    assert v["survives"] is False
    assert v["headline"] == "Indistinguishable from the luck of 16 trials"
    assert v["reason"] == "deflated Sharpe ratio 0.343 < 0.95; PBO 0.68 >= 0.5"
    rows = dict(v["rows"])
    assert rows["Trials"].startswith("16 ")
    assert "0.73" in rows["Best run Sharpe (ann.)"] and "threshold 0.95" in rows["Deflated Sharpe ratio"]
    assert rows["Probability of backtest overfitting"].startswith("0.68 ")


def test_verdict_of_a_sweep_that_survives():
    v = selection_verdict(SURVIVES)
    assert v["survives"] is True and v["headline"] == "Survives selection"
    assert v["reason"] == "deflated Sharpe ratio 0.986 > 0.95; PBO 0.41 < 0.5"


def test_a_significant_dsr_with_a_high_pbo_does_not_survive():
    v = selection_verdict({**SURVIVES, "pbo": 0.7})
    assert v["survives"] is False and v["headline"] == "Indistinguishable from the luck of 2 trials"


def test_no_statistics_is_no_verdict_and_says_why():
    v = selection_verdict({"n_trials": 1, "note": "needs a best run and at least 2 successful runs"})
    assert v["survives"] is None and "needs a best run" in v["reason"]
    html = selection_banner_html(None)
    assert "data-verdict='none'" in html and "No verdict" in html


def test_banner_html_states_numbers_thresholds_and_verdict():
    html = selection_banner_html(LUCK)
    assert "data-verdict='luck'" in html and "Indistinguishable from the luck of 16 trials" in html
    for s in ("Deflated Sharpe ratio", "0.343", "Probability of backtest overfitting", "0.68", "Trials",
              "threshold 0.95", "threshold 0.5"):
        assert s in html, s
    ok = selection_banner_html(SURVIVES)
    assert "data-verdict='survives'" in ok and "Survives selection" in ok


def test_bootstrap_html_shows_p_values_and_the_variant_role():
    sig = {"alpha": 0.05, "n_boot": 2000, "summary": "no significant winner", "metrics": {
        "sharpe_ratio": {"winner": "a", "runner_up": "b", "p_value": 0.41, "significant": False, "value": 1.2,
                         "label": "p = 0.41"}}}
    html = bootstrap_html(sig, "b")
    assert "p = 0.41" in html and "not significant" in html and "runner-up" in html and "2000 resamples" in html
    assert "no bootstrap test" in bootstrap_html(None, "b")


def test_walk_forward_statistics_test_the_stitched_record_as_one_trial():
    import metaflow_nb as mf
    wf = mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", backend="sequential", progress=False)
    st = wf.statistics
    assert st["kind"] == "walk_forward" and st["windows"] == len(wf.windows)
    assert st["trials_per_window"] == 6 and st["n_trials"] == 6 * len(wf.windows)
    # the Sharpe the verdict tests is the one the out-of-sample metrics report
    assert st["sharpe_annualized"] == pytest.approx(wf.oos_metrics["sharpe_ratio"], rel=1e-9)
    assert st["expected_max_sharpe_annualized"] == 0.0 and st["dsr"] == pytest.approx(st["psr"])
    # one trial: the deflated Sharpe ratio is the probabilistic Sharpe ratio against 0 of the daily returns
    from metaflow_nb.engine.metrics import daily_returns
    from metaflow_nb.stats import psr_from_returns
    specs = wf.oos_results[0].specs
    calendar = (specs.data_calendar,) if hasattr(specs, "data_calendar") else ()   # the declared trading day
    r = daily_returns(wf.oos_equity, specs.cash, *calendar)
    assert st["days"] == len(r) and st["dsr"] == pytest.approx(psr_from_returns(r.to_numpy(), 0.0), rel=1e-12)
    assert "pbo" not in st and "walk-forward" in st["pbo_note"]
    v = selection_verdict(st)
    assert v["survives"] is (st["dsr"] > 0.95)
    import html
    assert f"verdict: {v['headline']} ({v['reason']})" in repr(wf) and html.escape(v["reason"]) in wf._repr_html_()


def test_the_cli_text_states_the_same_verdict_as_the_pages():
    import metaflow_nb as mf
    opt = mf.optimize("config/optimizations/optimize_fvg_params.yaml", backend="sequential", progress=False)
    v = selection_verdict(opt.statistics)
    assert f"verdict: {v['headline']} ({v['reason']})" in repr(opt)
    assert v["headline"] == "Indistinguishable from the luck of 16 trials"


def test_more_defensive_only_for_a_significant_difference():
    from metaflow_nb.services.variants import VariantComparison

    def cmp_of(counts):
        c = VariantComparison.__new__(VariantComparison)
        frame = pd.DataFrame([{"variant": n, "detected": d, "rejected": r, "rejected_pct": 100 * r / d}
                              for n, d, r in counts]).set_index("variant")
        c.causal = lambda: frame
        return c

    same = cmp_of([("a", 754, 246), ("b", 754, 242)])
    name, p = same.defensive_test()
    assert name == "a" and p > 0.3 and same.more_defensive() is None
    assert "not significantly more" in same.defensive_text()
    clear = cmp_of([("a", 754, 246), ("b", 754, 150)])
    assert clear.more_defensive() == "a" and clear.defensive_test()[1] < 1e-6
    assert clear.defensive_text().startswith("a is more defensive")
    assert cmp_of([("a", 754, 246)]).more_defensive() is None
    # a tie names no variant (the first in the table is no winner); names keep their case
    assert cmp_of([("ATR_Stops", 754, 0), ("SlowSMA", 500, 0)]).defensive_text() == \
        "no variant rejected an opportunity"
    assert cmp_of([("x", 100, 10), ("y", 200, 20)]).defensive_text() == "every variant rejects the same share (10.0 %)"
    assert cmp_of([("ATR_Stops", 754, 246), ("b", 754, 150)]).defensive_text().startswith("ATR_Stops is more")


def _variant_of(name, strategy, operation="config/operations/ict_backtest.yaml"):
    import metaflow_nb as mf
    from metaflow_nb.services.parallel import RunOutcome
    from metaflow_nb.services.variants import VariantRun
    res = mf.backtest(strategy, operation)
    return VariantRun(name, "", res.specs, RunOutcome(0, res.run_id, res.specs.hash, "ok", metrics=res.metrics), res)


def _setups(res):
    """(detected keys, rejected keys) of a journal, by hand."""
    j = res.journal
    key = lambda r: (r["time"], r["direction"], r["source_id"], r["zone_top"], r["zone_bottom"])  # noqa: E731
    detected = {r["opportunity_id"]: key(r) for _, r in j[j["event"] == "OPPORTUNITY_DETECTED"].iterrows()}
    rejected = {detected[o] for o in j.loc[j["event"] == "OPPORTUNITY_REJECTED", "opportunity_id"]}
    return sorted(detected.values()), rejected


def test_more_defensive_on_the_same_setups_is_a_paired_exact_test():
    """hunt17 F10: variants on the same data detect the same setups; which ones each rejects
    is paired, so the test is McNemar's (exact, one-sided) on the setups only one variant
    rejects, not a two-proportion test that treats them as independent samples."""
    import math

    import yaml

    from metaflow_nb.services.variants import VariantComparison
    def only(k):   # the strategy with one of its three threat workers
        doc = yaml.safe_load(open("config/runs/ict_smc_strategy.yaml"))
        doc["workforce"]["threat_workers"] = [doc["workforce"]["threat_workers"][k]]
        return doc

    cmp = VariantComparison("t", [_variant_of("volatility", only(1)), _variant_of("market_risk", only(2))])
    (da, ra), (db, rb) = _setups(cmp.results["volatility"]), _setups(cmp.results["market_risk"])
    assert da == db and len(ra) > len(rb)
    b, c = len(ra - rb), len(rb - ra)
    n = b + c
    p = sum(math.comb(n, k) for k in range(b, n + 1)) / 2 ** n
    name, got = cmp.defensive_test()
    assert name == "volatility" and got == pytest.approx(p, rel=1e-12) and 0.01 < p < 0.99
    # not the unpaired test's answer
    n1, r1, r2 = len(da), len(ra), len(rb)
    pooled = (r1 + r2) / (2 * n1)
    z = (r1 - r2) / n1 / math.sqrt(pooled * (1 - pooled) * 2 / n1)
    assert abs(got - (1 - 0.5 * (1 + math.erf(z / math.sqrt(2))))) > 1e-3
    assert f"one-sided exact McNemar test on the same {len(da)} setups" in cmp.defensive_text()


def test_more_defensive_on_other_setups_stays_a_two_proportion_test():
    import yaml

    from metaflow_nb.services.variants import VariantComparison
    base = yaml.safe_load(open("config/runs/ict_smc_strategy.yaml"))
    other = yaml.safe_load(open("config/runs/ict_smc_strategy.yaml"))
    det = other["workforce"]["opportunity_workers"][0]
    det["params"] = {**det.get("params", {}), "min_gap_size": 0.0003}   # other setups
    cmp = VariantComparison("t", [_variant_of("a", base), _variant_of("b", other)])
    assert _setups(cmp.results["a"])[0] != _setups(cmp.results["b"])[0]
    assert "two-proportion test" in cmp.defensive_text() or "same share" in cmp.defensive_text()


def test_a_variant_that_never_traded_wins_no_risk_row():
    """hunt17 F10: a variant that never trades (here: a gap no EURUSD bar makes) has a
    drawdown of 0 and was starred the winner of max drawdown; not taking risk is no risk
    control. It may still win return (not trading beats losing)."""
    import yaml

    from metaflow_nb.services.variants import VariantComparison
    base = yaml.safe_load(open("config/runs/ict_smc_strategy.yaml"))
    idle = yaml.safe_load(open("config/runs/ict_smc_strategy.yaml"))
    det = idle["workforce"]["opportunity_workers"][0]
    det["params"] = {**det.get("params", {}), "min_gap_size": 5000}   # pips
    cmp = VariantComparison("t", [_variant_of("base", base), _variant_of("idle", idle)])
    idle_m, base_m = cmp.results["idle"].metrics, cmp.results["base"].metrics
    assert idle_m["total_trades"] == 0 < base_m["total_trades"] and idle_m["max_drawdown_pct"] == 0.0
    won = cmp.winners()
    assert won["max_drawdown_pct"] is None   # the only other variant traded: no winner, not the idle one
    if base_m["total_return_pct"] < 0:
        assert won["total_return_pct"] == "idle"


def test_a_variant_that_never_traded_is_no_runner_up_on_drawdown():
    import yaml

    from metaflow_nb.services.significance import variant_significance
    from metaflow_nb.services.variants import VariantComparison

    def only(k):
        doc = yaml.safe_load(open("config/runs/ict_smc_strategy.yaml"))
        doc["workforce"]["threat_workers"] = [doc["workforce"]["threat_workers"][k]]
        return doc

    idle = yaml.safe_load(open("config/runs/ict_smc_strategy.yaml"))
    idle["workforce"]["opportunity_workers"][0]["params"]["min_gap_size"] = 5000
    cmp = VariantComparison("t", [_variant_of("a", only(0)), _variant_of("idle", idle), _variant_of("b", only(1))])
    win = cmp.winners()["max_drawdown_pct"]
    assert win in ("a", "b")
    test = variant_significance(cmp, n_boot=200)["metrics"]["max_drawdown_pct"]
    assert test["winner"] == win and test["runner_up"] == ({"a", "b"} - {win}).pop()
