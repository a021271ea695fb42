"""The batch path over a basket (issue #17 part 4, acceptance 2: batch == single path bit
for bit): services.basket_sweep.sweep_basket runs every (instrument, combination) of a
wave in one prange call; each combination's portfolio metrics must equal
PortfolioResult.metrics of its run_portfolio, each pair's metrics that instrument's single
run (==, or both NaN), and optimize_basket's batch engine must give the general engine's
table, picks and statistics."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.engine.metrics import METRIC_NAMES, daily_returns
from metaflow_nb.errors import ConfigError
from metaflow_nb.services.basket_sweep import sweep_basket
from metaflow_nb.services.portfolio import load_basket, run_portfolio
from metaflow_nb.services.portfolio_meta import optimize_basket
from portfolio_helpers import write_basket

ROOT = Path(__file__).resolve().parents[1]
STRATEGY = "config/runs/sma_cross.yaml"


def _strategy(long_only: bool, drawdown: bool, fraction: bool) -> dict:
    doc = yaml.safe_load((ROOT / "config/runs/sma_cross_long_stops.yaml").read_text())
    doc["direction"] = "long_only" if long_only else "long_short"
    if fraction:
        doc["workforce"]["planning_workers"]["size_planning"][0] = {
            "instance_id": "size_1", "plugin": "fixed_fraction_sizer", "params": {"fraction": 0.4}}
    threats = [{"instance_id": "vol_1", "plugin": "volatility_spike_detector", "params": {"lookback": 20, "percentile": 80}}]
    if drawdown:
        threats.append({"instance_id": "dd_1", "plugin": "max_drawdown_monitor",
                        "params": {"max_drawdown_pct": 5, "cooldown_bars": 3}})
    doc["workforce"]["threat_workers"] = threats
    return doc


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _assert_vector(vec: np.ndarray, metrics: dict, what: object) -> None:
    for name, v in zip(METRIC_NAMES, vec.tolist()):
        assert _same(v, float(metrics[name])), (what, name, v, metrics[name])


COMBOS = [{"sma_1": {"fast": 5, "slow": 20}, "stops_1": {"stop_loss_pct": 0.02}},
          {"sma_1": {"fast": 10, "slow": 30}, "stops_1": {"stop_loss_pct": 0.05}},
          {"sma_1": {"fast": 5, "slow": 30}, "stops_1": {"stop_loss_pct": 0.05}},
          {"sma_1": {"fast": 30, "slow": 20}, "stops_1": {"stop_loss_pct": 0.02}}]   # invalid: fast >= slow


def _overrides(combo: dict) -> dict:
    return {f"{inst}__{p}": v for inst, params in combo.items() for p, v in params.items()}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), n_inst=st.integers(1, 4), n_days=st.integers(50, 110),
       drop=st.sampled_from([0.0, 0.1, 0.3]), long_only=st.booleans(), drawdown=st.booleans(),
       fraction=st.booleans(),
       account=st.sampled_from([{}, {"finalize_trades": True}, {"leverage": 2.0, "slippage": 0.001}]))
def test_independent_batch_equals_the_single_path(seed, n_inst, n_days, drop, long_only, drawdown, fraction,
                                                  account):
    with tempfile.TemporaryDirectory() as tmp:
        write_basket(Path(tmp), seed, n_inst, n_days, drop, vol=0.03)
        op = {"universe": {"path": tmp}, "cash": 10_000, "commission": 0.001, **account}
        basket = load_basket(op)
        strategy = _strategy(long_only, drawdown, fraction)
        sw = sweep_basket(strategy, basket, COMBOS, keep_returns=True)
        assert sw.status == ["ok", "ok", "ok", "failed"] and "fast" in sw.errors[3]
        assert np.isnan(sw.portfolio[3]).all()
        for c, combo in enumerate(COMBOS[:3]):
            res = run_portfolio(strategy, basket, **_overrides(combo))
            _assert_vector(sw.portfolio[c], res.metrics, (c, "portfolio"))
            for s, sym in enumerate(sw.symbols):
                _assert_vector(sw.per_instrument[c, s], res.results[sym].metrics, (c, sym))
            expected = daily_returns(res.equity["total"], res.starting_cash, None)
            assert np.array_equal(sw.returns[c], expected.to_numpy())
            assert sw.days.equals(expected.index)


def test_groups_share_their_threat_masks_and_a_wave_packs_each_once(monkeypatch):
    """Groups with the same threats share one masks array, and a wave packs it once per
    instrument (not once per group: 64 combinations x 20 instruments x threats x bars
    before); combinations that vary a threat's params keep their own masks, and every row
    is still the single run's."""
    import metaflow_nb.assembly.basket as ab

    packed = []
    pack = ab.pack_pairs
    monkeypatch.setattr(ab, "pack_pairs", lambda *a: packed.append(pack(*a)) or packed[-1])
    with tempfile.TemporaryDirectory() as tmp:
        write_basket(Path(tmp), 7, 3, 90, 0.1, vol=0.03)
        basket = load_basket({"universe": {"path": tmp}, "cash": 10_000, "commission": 0.001})
        strategy = _strategy(long_only=False, drawdown=True, fraction=False)
        combos = [{"sma_1": {"fast": f, "slow": 30}, "vol_1": {"percentile": p}} for p in (60, 90) for f in (5, 10)]
        sw = sweep_basket(strategy, basket, combos)
        assert sw.status == ["ok"] * 4
        groups, _, _ = packed[0]
        n_bars = sum(len(b) for b in basket[2].values())
        # 12 groups (4 sma pairs x 3 instruments), two masks per instrument (the percentiles),
        # each (vol, drawdown) x the instrument's bars
        assert groups.inst.shape[0] == 12 and groups.mask.shape[0] == 2 * 2 * n_bars
        assert len(set(groups.mask_at.tolist())) == 6
        for c, combo in enumerate(combos):
            res = run_portfolio(strategy, basket, **_overrides(combo))
            _assert_vector(sw.portfolio[c], res.metrics, (c, "portfolio"))
            for s, sym in enumerate(sw.symbols):
                _assert_vector(sw.per_instrument[c, s], res.results[sym].metrics, (c, sym))


def test_portfolio_mode_through_the_wiring_equals_the_single_path():
    with tempfile.TemporaryDirectory() as tmp:
        write_basket(Path(tmp), 7, 3, 90, 0.2, vol=0.03)
        op = {"mode": "portfolio", "max_positions": 2, "universe": {"path": tmp}, "cash": 10_000,
              "commission": 0.001}
        basket = load_basket(op)
        strategy = _strategy(False, True, True)
        sw = sweep_basket(strategy, basket, COMBOS, keep_returns=True)
        assert sw.per_instrument is None and sw.status[3] == "failed"
        for c, combo in enumerate(COMBOS[:3]):
            single = run_portfolio(strategy, basket, **_overrides(combo))
            _assert_vector(sw.portfolio[c], single.metrics, c)
            # the daily portfolio returns PBO reads, as the general path makes them
            expected = daily_returns(single.equity["total"], single.starting_cash, None)
            assert np.array_equal(sw.returns[c], expected.to_numpy()) and sw.days.equals(expected.index)


def test_portfolio_mode_optimization_batch_equals_general():
    op = {"mode": "portfolio", "max_positions": 3, "universe": {"path": "us_stocks"},
          "data": {"start": "2010-01-01"}, "commission": 0.001}
    space = {"sma_1": {"fast": [5, 10], "slow": [20, 50]}}
    batch = optimize_basket(STRATEGY, op, space)   # auto: the batch path in mode portfolio too
    general = optimize_basket(STRATEGY, op, space, engine="general")
    assert (batch.engine, general.engine) == ("batch", "general")
    pd.testing.assert_frame_equal(batch.table.drop(columns="error"), general.table.drop(columns="error"))
    assert batch.best == general.best and batch.statistics == general.statistics and "pbo" in batch.statistics


OP = {"universe": {"path": "us_stocks"}, "data": {"start": "2010-01-01"}, "commission": 0.001}
SPACE = {"sma_1": {"fast": [5, 10, 40], "slow": [20, 50]}}   # 40/20 is invalid


@pytest.fixture(scope="module")
def both():
    return (optimize_basket(STRATEGY, OP, SPACE, engine="batch"),
            optimize_basket(STRATEGY, OP, SPACE, engine="general"))


def test_batch_optimization_equals_general_on_us_stocks(both):
    batch, general = both
    assert (batch.engine, general.engine) == ("batch", "general")
    assert batch.total_runs == 6 and batch.successful_runs == 5
    assert list(batch.table["status"]) == ["ok"] * 5 + ["failed"]
    pd.testing.assert_frame_equal(batch.table.drop(columns="error"), general.table.drop(columns="error"))
    pd.testing.assert_frame_equal(batch.per_instrument, general.per_instrument)
    pd.testing.assert_frame_equal(batch.best_per_instrument(), general.best_per_instrument())
    assert batch.best == general.best and batch.statistics == general.statistics
    assert "pbo" in batch.statistics and batch.best_result.metrics == general.best_result.metrics


def test_batch_refusals_and_validation(tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown engine 'fast'"):
        optimize_basket(STRATEGY, OP, SPACE, engine="fast")
    with pytest.raises(ConfigError, match="must be smaller than slow"):
        optimize_basket(STRATEGY, OP, {"sma_1": {"fast": [40], "slow": [20]}}, engine="batch")
    # warm-up slices (the walk-forward's out-of-sample runs) are not on the batch path
    op, items, bars = load_basket({"universe": {"path": "us_stocks", "symbols": ["IBM"]},
                                   "data": {"start": "2012-01-01"}})
    warm = [{**it, "operation": {**it["operation"], "data": {**it["operation"]["data"],
                                                              "trade_start": "2012-06-01"}}} for it in items]
    with pytest.raises(ConfigError, match="trade_start"):
        sweep_basket(STRATEGY, (op, warm, bars), [{"sma_1": {"fast": 5}}])
    assert optimize_basket(STRATEGY, (op, warm, bars), {"sma_1": {"fast": [5]}}).engine == "general"
    # the meta verb passes parallel.engine: batch is no longer refused, nor --resume (its store)
    cfg = {"name": "b", "base_strategy": STRATEGY, "base_operation": {**OP, "data": {"start": "2012-01-01"}},
           "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 10]}}}]}
    path = tmp_path / "opt.yaml"
    path.write_text(json.dumps({"optimization_config": cfg}))
    assert main(["optimize", str(path), "--engine", "batch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"] == "batch"
    assert mf.optimize(cfg, engine="general", progress=False).engine == "general"
    assert main(["optimize", str(path), "--engine", "batch", "--out", str(tmp_path / "r"), "--resume"]) == 0
    assert (tmp_path / "r" / "store").is_dir()
