"""The bundled two-timeframe strategy, ``config/runs/ict_htf_bias_strategy.yaml`` (15m FVG
entries only in the direction of the 4h structure), and its comparison with the
single-timeframe strategy, ``config/variants/htf_bias_eurusd.yaml``, reported by ``make demo``.
"""
from __future__ import annotations

import numpy as np

import metaflow_nb as mf
from metaflow_nb.data.timeframe import align, resample
from metaflow_nb.reporting import showcase
from metaflow_nb.services.variants import VariantTestService
from metaflow_nb.workers.base import FeatureContext

STRATEGY = "config/runs/ict_htf_bias_strategy.yaml"
VARIANTS = "config/variants/htf_bias_eurusd.yaml"
OPERATION = "config/operations/ict_backtest.yaml"


def test_bundled_strategy_takes_fvg_entries_only_with_the_4h_structure():
    specs = mf.build_specs(STRATEGY, OPERATION)
    by_id = {e.instance_id: e for e in specs.entries()}
    assert by_id["htf_bias_1"].plugin == "higher_timeframe_bias"
    assert dict(by_id["htf_bias_1"].params) == {"timeframe": "4h", "trading_day": "fx", "left": 2, "right": 2}
    assert by_id["htf_bias_filter_1"].plugin == "higher_timeframe_bias_filter"
    single = mf.build_specs("config/runs/ict_smc_strategy.yaml", OPERATION)
    same = {k: dict(e.params) for k, e in by_id.items() if not k.startswith("htf_")}
    assert same == {e.instance_id: dict(e.params) for e in single.entries()}
    res = mf.backtest(STRATEGY, OPERATION)
    bias = res_bias(res)
    j = res.journal
    assert len(res.trades) > 50
    sign = {"long": 1, "short": -1}
    # no order was placed on a setup stamped while the last closed 4h bar's trend pointed
    # against it (before the first 4h break there is no trend: block_neutral is off)
    placed = j[j["event"] == "ORDER_PLACED"]
    assert len(placed) > 50
    with_bias = [bias[b] * sign[d] for b, d in zip(placed["bar"], placed["direction"])]
    assert min(with_bias) == 0 and sum(v == 1 for v in with_bias) > 0.95 * len(placed)
    # and every setup against it was refused with AGAINST_BIAS (unless refused before, by another threat)
    rejected = j[(j["event"] == "OPPORTUNITY_REJECTED") & (j["reason"] == "AGAINST_BIAS")]
    assert len(rejected) > 100
    assert all(bias[b] == -sign[d] for b, d in zip(rejected["bar"], rejected["direction"]))


def res_bias(res) -> np.ndarray:
    r = resample(res.data, "4h", "fx")
    return align(FeatureContext(r.frame).feature("market_structure", {"left": 2, "right": 2})["trend"], r.group)


def test_variant_comparison_config_and_make_demo():
    model, base, variants = VariantTestService().build(VARIANTS)
    names = [name for name, _, _ in variants]
    assert names == ["single_timeframe", "htf_4h_bias", "htf_1d_bias"]
    specs = {name: s for name, _, s in variants}
    single = mf.build_specs("config/runs/ict_smc_strategy.yaml", OPERATION)
    assert specs["single_timeframe"].hash == single.hash
    # the 4h variant is the bundled two-timeframe strategy, workforce for workforce
    bundled = mf.build_specs(STRATEGY, OPERATION)
    key = lambda s: sorted((e.instance_id, e.plugin, repr(dict(e.params))) for e in s.entries())  # noqa: E731
    assert key(specs["htf_4h_bias"]) == key(bundled)
    assert specs["htf_1d_bias"].params("htf_bias_1")["timeframe"] == "1d"
    assert VARIANTS in showcase.CONFIGS


def _active_oracle(journal, keys=("reason",)):
    """Rejections each reason was active in, counted from the journal by hand."""
    counts: dict = {}
    rej = journal[journal["event"] == "OPPORTUNITY_REJECTED"]
    for _, row in rej.iterrows():
        for name in row["active_reasons"].split("|"):
            key = tuple(row[k] for k in keys[:-1]) + (name,)
            counts[key if len(key) > 1 else name] = counts.get(key if len(key) > 1 else name, 0) + 1
    return counts


def test_rejections_count_every_reason_active_beside_the_one_that_decided():
    # on the 1h operation MARKET_RISK sits behind AGAINST_BIAS: it decides few rejections
    # but is active in many; rejections() says both
    res = mf.backtest(STRATEGY, "config/operations/ict_1h.yaml")
    rej = res.rejections()
    assert dict(rej["active"]) == _active_oracle(res.journal)
    primary = res.journal[res.journal["event"] == "OPPORTUNITY_REJECTED"]["reason"].value_counts()
    assert dict(rej["count"][rej["count"] > 0]) == dict(primary)
    assert rej.loc["MARKET_RISK", "active"] > 5 * rej.loc["MARKET_RISK", "count"] > 0
    assert (rej["active"] >= rej["count"]).all() and rej["count"].sum() == len(
        res.journal[res.journal["event"] == "OPPORTUNITY_REJECTED"])


def test_a_baskets_rejections_by_symbol_count_the_active_reasons_too():
    from metaflow_nb.services.portfolio import run_portfolio
    strategy = {"name": "guarded", "workforce": {
        "opportunity_workers": [{"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 5, "slow": 20}}],
        "threat_workers": [{"instance_id": "dd", "plugin": "max_drawdown_monitor", "params": {"max_drawdown_pct": 2.0}},
                           {"instance_id": "vol", "plugin": "volatility_spike_detector",
                            "params": {"percentile": 50.0, "lookback": 50}}]}}
    res = run_portfolio(strategy, {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]},
                                   "data": {"start": "2010-01-01", "end": "2012-12-31"}})
    rej = res.rejections(by_symbol=True)
    assert dict(rej["active"]) == _active_oracle(res.journal, ("symbol", "reason"))
    assert rej["count"].sum() == (res.journal["event"] == "OPPORTUNITY_REJECTED").sum() > 0
    assert (rej["active"] > rej["count"]).any()   # both threats active on some rejections
