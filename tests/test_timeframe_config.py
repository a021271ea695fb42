"""``timeframe:`` on a context worker instance, through the run path.

A blueprint's context instance with ``timeframe: 4h`` (and ``trading_day``) runs on 4h
bars; consumers reading ``ctx.context(plugin)`` see the 4h values; the key is left out of
the resolved JSON when unset (run ids of existing configs unchanged); it is refused on
other roles; groups with and without it never share a cache entry; a sweep over a
resampled worker's params gives bit-for-bit the results of single backtests; the bundled
two-timeframe strategy is swept here (its config: test_htf_bias_strategy.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import metaflow_nb as mf
from metaflow_nb.assembly.group import build_group, group_key
from metaflow_nb.assembly.workforce import Workforce
from metaflow_nb.config.meta import OptimizationTarget
from metaflow_nb.data.timeframe import align, resample
from metaflow_nb.errors import ConfigError
from metaflow_nb.services.optimization import OptimizationService
from metaflow_nb.services.parallel import ParallelRunService
from metaflow_nb.workers.base import FeatureContext

ROOT = Path(__file__).resolve().parents[1]
STRATEGY = "config/runs/ict_htf_bias_strategy.yaml"
OPERATION = "config/operations/ict_backtest.yaml"


def ict(**changes) -> dict:
    bp = yaml.safe_load((ROOT / "config/runs/ict_smc_strategy.yaml").read_text())
    for w in bp["workforce"]["context_workers"]:
        if w["instance_id"] in changes:
            w.update(changes[w["instance_id"]])
    return bp


@pytest.fixture(scope="module")
def eurusd_slice():
    return mf.load_data("eurusd_15m").iloc[:6000]


def test_timeframe_key_is_resolved_and_reaches_the_workforce(eurusd_slice):
    bp = ict(structure_1={"timeframe": "240m", "trading_day": "fx"})
    specs = mf.build_specs(bp, OPERATION, data=eurusd_slice)
    ctx_workers = specs.blueprint["workforce"]["context_workers"]
    assert ctx_workers[0]["timeframe"] == "4h" and ctx_workers[0]["trading_day"] == "fx"
    assert all("timeframe" not in w for w in ctx_workers[1:])
    entry = next(e for e in specs.entries() if e.instance_id == "structure_1")
    assert entry.timeframe == "4h@fx"
    wf = Workforce.from_specs(specs)
    assert wf.timeframes == {"structure_1": "4h@fx"}
    # consumers (the FVG detector's structure filter) read the 4h structure
    g = build_group(wf, eurusd_slice, specs.pip_size, {})
    got = g.ctx.context("market_structure")["trend"]
    r = resample(eurusd_slice, "4h", "fx")
    want = align(FeatureContext(r.frame).feature("market_structure", {"left": 2, "right": 2})["trend"], r.group)
    assert np.array_equal(got, want)
    base = build_group(Workforce.from_specs(mf.build_specs(ict(), OPERATION, data=eurusd_slice)),
                       eurusd_slice, specs.pip_size, {})
    assert not np.array_equal(g.opps.bar, base.opps.bar)   # other setups with the 4h structure


def test_existing_configs_resolve_without_the_new_keys():
    for strategy, op in (("config/runs/ict_smc_strategy.yaml", OPERATION),
                         ("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")):
        specs = mf.build_specs(strategy, op)
        text = repr(specs.blueprint)
        assert "timeframe" not in text and "trading_day" not in text
        assert all(e.timeframe is None for e in specs.entries())


@pytest.mark.parametrize("change,message", [
    ({"timeframe": "7m"}, "must divide 24 hours"),
    ({"timeframe": "4h", "trading_day": "tokyo"}, "unknown trading day"),
    ({"trading_day": "fx"}, "trading_day is set but timeframe is not"),
])
def test_bad_timeframes_are_config_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        mf.build_specs(ict(structure_1=change), OPERATION)


def test_timeframe_only_on_context_workers():
    bp = ict()
    bp["workforce"]["opportunity_workers"][0]["timeframe"] = "4h"
    with pytest.raises(ConfigError, match=r"opportunity_workers\[0\]\.timeframe: only context workers"):
        mf.build_specs(bp, OPERATION)


def test_groups_with_and_without_a_timeframe_never_share_a_cache_entry(eurusd_slice):
    plain = mf.build_specs(ict(), OPERATION, data=eurusd_slice)
    higher = mf.build_specs(ict(structure_1={"timeframe": "4h"}), OPERATION, data=eurusd_slice)
    wp, wh = Workforce.from_specs(plain), Workforce.from_specs(higher)
    assert group_key(wp) != group_key(wh) and group_key(wp) == group_key(wp.replace({}))
    assert group_key(wh.replace({})) == group_key(wh)   # a sweep's swapped workforce keeps it
    shared: dict = {}
    a = build_group(wp, eurusd_slice, plain.pip_size, shared)
    b = build_group(wh, eurusd_slice, higher.pip_size, shared)
    c = build_group(wp, eurusd_slice, plain.pip_size, shared)
    assert a is c and a is not b
    assert not np.array_equal(a.opps.bar, b.opps.bar)
    # and a fresh cache gives the same as the shared one
    assert np.array_equal(build_group(wh, eurusd_slice, higher.pip_size, {}).opps.bar, b.opps.bar)


def test_a_sweep_over_a_resampled_workers_params_is_bit_for_bit_the_single_runs(eurusd_slice):
    base = mf.build_specs(STRATEGY, OPERATION, data=eurusd_slice)
    # the higher timeframe itself is a param of higher_timeframe_bias: swept like any other
    combos = [{"htf_bias_1": {"left": left, "timeframe": tf}, "fvg_det_1": {"min_gap_size": gap}}
              for left in (1, 2) for tf in ("1h", "4h", "1d") for gap in (3, 5)]
    columns = ["htf_bias_1.left", "htf_bias_1.timeframe", "fvg_det_1.min_gap_size"]
    svc = OptimizationService(ParallelRunService(backend="sequential", progress=False))
    target = OptimizationTarget(primary_metric="sharpe_ratio")
    batch = svc.sweep(base, columns, combos, target, data=eurusd_slice, engine="batch")
    general = svc.sweep(base, columns, combos, target, data=eurusd_slice, engine="general")
    fb, fg = batch.all_results, general.all_results
    assert (fb["status"] == "ok").all() and (fg["status"] == "ok").all()
    for col in ("total_trades", "final_equity", "sharpe_ratio", "max_drawdown_pct"):
        assert fb[col].tolist() == fg[col].tolist(), col
    for i, combo in enumerate(combos):
        single = mf.backtest(base.with_params("htf_bias_1", combo["htf_bias_1"])
                             .with_params("fvg_det_1", combo["fvg_det_1"]), data=eurusd_slice)
        assert single.metrics["total_trades"] == fb.iloc[i]["total_trades"]
        assert single.metrics["final_equity"] == fb.iloc[i]["final_equity"]
    assert len(set(fb["total_trades"])) > 1


def test_a_timeframe_finer_than_the_data_exits_2_naming_it(tmp_path, capsys):
    from metaflow_nb.cli import main
    bp = {"name": "t", "workforce": {
        "context_workers": [{"instance_id": "b1", "plugin": "higher_timeframe_bias", "params": {"timeframe": "4h"}}],
        "opportunity_workers": [{"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 10, "slow": 20}}],
        "threat_workers": [{"instance_id": "f1", "plugin": "higher_timeframe_bias_filter"}]}}
    path = tmp_path / "daily.yaml"
    path.write_text(yaml.safe_dump(bp))
    assert main(["backtest", "--strategy", str(path), "--data", "sp500_daily"]) == 2
    # hunt35 F4: the line named neither the file, nor the key, nor the data
    assert capsys.readouterr().err == (
        f"metaflow-nb: error: {path}: workforce.context_workers[0].params.timeframe: timeframe 4h is finer than "
        "the data's bars (sp500_daily, 1440 minutes apart): a higher timeframe must be coarser than the data\n")
    # an instance's own timeframe: key too
    bp["workforce"]["context_workers"].append({"instance_id": "atr_1", "plugin": "atr", "timeframe": "1h"})
    bp["workforce"]["context_workers"][0]["params"]["timeframe"] = "1w"    # weekly on daily: fine
    path.write_text(yaml.safe_dump(bp))
    assert main(["backtest", "--strategy", str(path), "--data", "sp500_daily"]) == 2
    assert capsys.readouterr().err.startswith(
        f"metaflow-nb: error: {path}: workforce.context_workers[1].timeframe: timeframe 1h is finer than the data's "
        "bars (sp500_daily, 1440 minutes apart)")
    del bp["workforce"]["context_workers"][1]
    path.write_text(yaml.safe_dump(bp))
    assert main(["backtest", "--strategy", str(path), "--data", "sp500_daily"]) == 0


def test_check_causality_of_a_strategy_with_a_timeframe_instance(eurusd_slice):
    bp = ict(structure_1={"timeframe": "4h", "trading_day": "fx"})
    res = mf.check_causality(bp, operation=OPERATION, data=eurusd_slice, cuts=3, seed=2)
    assert res.ok, repr(res)
    # the 4h structure's aligned outputs are among the outputs compared, named by the instance
    assert {o for w, o in res.compared if w == "structure_1"} >= {"trend"}
    assert not any("[4h@fx]" in w for w, _ in res.compared)


def test_a_timeframe_finer_than_the_data_names_the_data_and_the_key():
    # hunt26 F6: the message named neither
    import metaflow_nb as mf
    from metaflow_nb.errors import ConfigError
    with pytest.raises(ConfigError, match=r"^sp500_daily: data\.timeframe: timeframe 1h is finer than the data's bars"):
        mf.backtest("config/runs/sma_cross.yaml", {"data": {"source": "sp500_daily", "timeframe": "1h"}})
