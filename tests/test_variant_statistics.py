"""The statistics behind a variant comparison's stars and its "more defensive" verdict,
on hand-made variants where the answer is known (hunt32): a star is only given in the
direction the table names, near the significance level the bootstrap is refined, and a
small count is tested exactly."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from metaflow_nb.services.significance import _max_drawdown, _returns, variant_significance
from metaflow_nb.services.variants import VariantComparison, VariantRun

DAYS = 300
IDX = pd.date_range("2021-01-04", periods=DAYS * 24, freq="h")


def _bar_drawdown(eq: np.ndarray) -> float:
    peak = np.maximum.accumulate(np.maximum(eq, 100_000.0))
    return float(np.max((peak - eq) / peak) * 100)


def _run(name: str, eq: np.ndarray, rng, **metrics) -> VariantRun:
    pnl = np.where(rng.random(50) < 0.5, 1.0, -1.0)
    res = SimpleNamespace(equity=pd.Series(eq, index=IDX), specs=SimpleNamespace(cash=100_000.0, data_calendar=None),
                          trades=pd.DataFrame({"pnl": pnl}),
                          metrics={"sharpe_ratio": 0.0, "total_return_pct": 0.0, "max_drawdown_pct": _bar_drawdown(eq),
                                   "win_rate_pct": 50.0, "total_trades": 50, **metrics})
    return VariantRun(name, "", None, SimpleNamespace(ok=True), res)


def test_no_star_for_a_drawdown_the_daily_test_ranks_the_other_way():
    """hunt32 F1: the table's drawdown is measured on every bar, the bootstrap's on daily
    closes. A (a smooth 20 % slide) won the row against B (a 30 % dip inside one day that
    recovers by the close), and was starred p = 0.003 although the test's interval of
    dd(A) - dd(B) was [2.2, 29.1]: A's daily drawdown is significantly the larger."""
    rng = np.random.default_rng(0)
    d_a = rng.normal(0.0008, 0.002, DAYS)
    d_a[100:140] = -0.0055
    eq_a = np.repeat(100_000 * np.cumprod(1 + d_a), 24)
    eq_b = np.repeat(100_000 * np.cumprod(1 + rng.normal(0.0008, 0.002, DAYS)), 24)
    eq_b[200 * 24 + 5: 200 * 24 + 8] *= 0.70
    cmp = VariantComparison("dd", [_run("A", eq_a, rng), _run("B", eq_b, rng, sharpe_ratio=0.1,
                                                                 total_return_pct=0.1)])
    sig = variant_significance(cmp, n_boot=2000, seed=42)
    t = sig["metrics"]["max_drawdown_pct"]
    daily = {v.name: _max_drawdown(_returns(v.result).to_numpy()) for v in cmp.variants}
    assert t["winner"] == "A" and daily["A"] > daily["B"] and t["ci_low"] > 0   # the test says A is worse
    assert not t["significant"] and "other way" in t["label"], t
    assert "Max drawdown" not in sig["summary"]


def _unpaired(counts: dict) -> VariantComparison:
    runs = []
    for name, (det, rej) in counts.items():
        res = SimpleNamespace(metrics={"opportunities_detected": det, "opportunities_rejected": rej,
                                       "rejection_rate_pct": 100.0 * rej / det if det else 0.0})
        runs.append(VariantRun(name, "", None, SimpleNamespace(ok=True, status="ok"), res))
    c = VariantComparison("t", runs)
    c._paired = lambda a, b: None   # the variants saw other data: the unpaired test
    return c


@pytest.mark.parametrize("a, b", [((2, 2), (2, 0)), ((3, 3), (3, 0)), ((10, 4), (10, 0)), ((4, 4), (4, 3))])
def test_small_unpaired_counts_are_tested_exactly(a, b):
    """hunt32 F3: 2 of 2 against 0 of 2 was "more defensive" at p = 0.023 by the normal
    approximation; Fisher's exact test gives 0.167. With an expected count under 5 the
    one-sided Fisher test decides, and the text names it."""
    c = _unpaired({"A": a, "B": b})
    name, p = c.defensive_test()
    fisher = stats.fisher_exact([[a[1], a[0] - a[1]], [b[1], b[0] - b[1]]], alternative="greater").pvalue
    assert name == "A" and p == pytest.approx(fisher, rel=1e-12)
    assert "Fisher" in c.defensive_text()


def test_large_unpaired_counts_keep_the_two_proportion_test():
    c = _unpaired({"A": (754, 479), "B": (754, 440)})
    name, p = c.defensive_test()
    r1, r2, n = 479 / 754, 440 / 754, 754
    pooled = (479 + 440) / (2 * n)
    z = (r1 - r2) / math.sqrt(pooled * (1 - pooled) * 2 / n)
    assert name == "A" and p == pytest.approx(stats.norm.sf(z), rel=1e-9)
    assert "two-proportion" in c.defensive_text()


def test_a_runner_up_without_setups_is_said_not_left_as_an_empty_method():
    c = _unpaired({"A": (5, 3), "B": (0, 0)})
    text = c.defensive_text()
    assert "(p n/a: B detected no opportunity)" in text and ", )" not in text, text


@pytest.mark.parametrize("metric, goal, defined", [("max_drawdown_pct", "minimize", False),
                                                   ("total_return_pct", "maximize", True)])
def test_pbos_probability_of_a_loss_is_only_given_for_a_ranking_signed_by_profit(metric, goal, defined):
    """hunt32 F5: ranked by the lowest drawdown, CSCV ranks the negated drawdown, always
    below 0: the 'probability of an out-of-sample loss' read 1.000 for any sweep."""
    import metaflow_nb as mf
    from metaflow_nb.config.loading import read_yaml

    cfg = read_yaml("config/optimizations/sma_grid.yaml")
    cfg["optimization_config"]["optimization_target"] = {"primary_metric": metric, "goal": goal}
    opt = mf.optimize(cfg, backend="sequential", progress=False)
    loss = opt.statistics["pbo_prob_oos_loss"]
    assert math.isfinite(opt.statistics["pbo"]) and (math.isfinite(loss) == defined), opt.statistics


def test_variants_tied_for_the_largest_share_both_list_their_reasons():
    """hunt33 F6: two variants tied at 33 of 306 rejected named no most defensive one, and
    the text then listed no rejection reason at all (BIG_GAP was only in --json)."""
    runs = []
    for name, reason in (("a", "BIG_GAP"), ("b", "MARKET_RISK")):
        table = pd.DataFrame({"count": [33], "share_pct": [100.0], "active": [33]}, index=pd.Index([reason]))
        res = SimpleNamespace(metrics={"opportunities_detected": 306, "opportunities_rejected": 33,
                                       "rejection_rate_pct": 100 * 33 / 306},
                              rejections=lambda t=table: t)
        runs.append(VariantRun(name, "", None, SimpleNamespace(ok=True, status="ok"), res))
    c = VariantComparison("tie", runs)
    c._paired = lambda a, b: None
    c.table = lambda: pd.DataFrame({"a": ["1"], "b": ["1"]}, index=["Sharpe ratio"])
    c.costs_text = lambda: "costs"
    text = c.render_text()
    assert c.most_defensive() is None
    assert "Top rejection reasons (a):" in text and "BIG_GAP: 33" in text and "MARKET_RISK: 33" in text


def test_a_win_rate_too_few_trades_to_test_is_not_called_the_other_way():
    """The win-rate row has no daily-close measure: a test that could not run (the
    runner-up closed one trade) is p = 1, not 'the other way on daily closes'."""
    rng = np.random.default_rng(1)
    eq = np.repeat(100_000 * np.cumprod(1 + rng.normal(0.0005, 0.002, DAYS)), 24)
    a = _run("A", eq, rng, win_rate_pct=60.0)
    b = _run("B", eq * 1.0, rng, win_rate_pct=40.0)
    b.result.trades = pd.DataFrame({"pnl": [1.0]})
    t = variant_significance(VariantComparison("wr", [a, b]), n_boot=200, seed=1)["metrics"]["win_rate_pct"]
    assert t["winner"] == "A" and t["p_value"] == 1.0 and not t["significant"]
    assert t["label"] == "p = 1.00", t


def test_no_variant_is_the_most_defensive_when_none_rejected_anything():
    """hunt73 F2: a variant that rejected 0 of 13 beside one that detected nothing (its
    rejected share NaN, dropped) was named the most defensive in --json and the widget,
    and the text said nothing; with a share of nothing nobody is defensive."""
    runs = []
    for name, det in (("trades", 13), ("never", 0)):
        res = SimpleNamespace(metrics={"opportunities_detected": det, "opportunities_rejected": 0,
                                       "rejection_rate_pct": 0.0 if det else float("nan")})
        runs.append(VariantRun(name, "", None, SimpleNamespace(ok=True, status="ok"), res))
    c = VariantComparison("t", runs)
    c._paired = lambda a, b: None
    assert c.most_defensive() is None
    assert c.defensive_text() == "no variant rejected an opportunity"
    c.table = lambda: pd.DataFrame({"trades": ["1"], "never": ["n/a"]}, index=["Sharpe ratio"])
    c.costs_text = lambda: "costs"
    assert "NaN" not in c._repr_html_()   # the text says n/a for the share of nothing detected (hunt73 F4)
    alone = VariantComparison("t", runs[:1])   # one variant that ran, rejecting nothing
    assert alone.most_defensive() is None


def test_a_variant_that_detected_nothing_beside_one_that_rejected_is_the_runner_up():
    """hunt74 F1: one variant rejecting 83 of 297 beside one that detected nothing (its
    rejected share NaN) named the first most defensive, then lost the runner-up, and the
    text (CLI, report, widget) raised."""
    runs = []
    for name, det, rej in (("normal", 297, 83), ("huge_gaps", 0, 0)):
        res = SimpleNamespace(metrics={"opportunities_detected": det, "opportunities_rejected": rej,
                                       "rejection_rate_pct": 100.0 * rej / det if det else float("nan")})
        runs.append(VariantRun(name, "", None, SimpleNamespace(ok=True, status="ok"), res))
    c = VariantComparison("t", runs)
    c._paired = lambda a, b: None
    assert c.most_defensive() == "normal"
    text = c.defensive_text()
    assert text.startswith("normal rejects the largest share") and "huge_gaps detected no opportunity" in text


@pytest.mark.parametrize("order", [("halt", "never", "plain"), ("halt", "plain", "never")])
def test_the_runner_up_is_a_variant_that_detected_setups_whatever_the_order(order):
    """hunt75 F1: 90 of 261 rejected beside 0 of 0 and 0 of 261: the 0 of 0 variant tied for
    second place and, listed first, was the runner-up, so the test had no p-value."""
    counts = {"halt": (261, 90), "never": (0, 0), "plain": (261, 0)}
    runs = []
    for name in order:
        det, rej = counts[name]
        res = SimpleNamespace(metrics={"opportunities_detected": det, "opportunities_rejected": rej,
                                       "rejection_rate_pct": 100.0 * rej / det if det else float("nan")})
        runs.append(VariantRun(name, "", None, SimpleNamespace(ok=True, status="ok"), res))
    c = VariantComparison("t", runs)
    c._paired = lambda a, b: None
    name, p = c.defensive_test()
    assert name == "halt" and p < 1e-20
    assert "than plain, the next largest" in c.defensive_text()
