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
