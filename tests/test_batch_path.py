"""Batch and general paths agree.

``OptimizationService.sweep`` runs a sweep either on the batch path (features once per
group, every combination in one ``prange`` kernel call, in this process) or on the general
path (one full backtest per combination). Whatever the parameter space, both must give the
same trades, the same final equity to the last bit and every metric equal to 1e-12
relative; failures (a raising worker, an impossible combination) must be failed rows on
both, with the other combinations unaffected.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fault_plugins  # noqa: F401  (registers test_faulty_cross: detect raises for fast == 7)
import metaflow_nb as mf
from metaflow_nb.config.meta import OptimizationTarget
from metaflow_nb.engine.metrics import METRIC_NAMES
from metaflow_nb.errors import ConfigError
from metaflow_nb.services.optimization import OptimizationService
from metaflow_nb.services.parallel import ParallelRunService
from metaflow_nb.workers import base as wbase
from metaflow_nb.workers.base import ExitPlan, param
from metaflow_nb.workers.planning.exit import PercentStops, PercentStopsParams

ROOT = Path(__file__).resolve().parents[1]
REL = 1e-12


# ---------------------------------------------------------------- test plugins
class RaisingStopsParams(PercentStopsParams):
    fail_when_stop: Optional[float] = param(4.0, description="plan raises RuntimeError for this stop_loss_pct")


@wbase.register
class RaisingStops(PercentStops):
    """percent_stops whose plan raises for one stop: one combination inside a group fails."""

    name = "test_batch_raising_stops"
    Params = RaisingStopsParams

    def plan(self, ctx, opps, entry) -> ExitPlan:
        if self.params.stop_loss_pct == self.params.fail_when_stop:
            raise RuntimeError(f"test_batch_raising_stops refuses stop_loss_pct={self.params.stop_loss_pct}")
        return super().plan(ctx, opps, entry)


# ---------------------------------------------------------------- data and specs
def synthetic_bars(n: int = 4000, seed: int = 11) -> pd.DataFrame:
    """Hourly GBM with alternating trend regimes (so crosses trade and stops are hit); opens
    gap a little from the previous close, so stops from the signal close and from the fill
    differ."""
    rng = np.random.default_rng(seed)
    lens = rng.geometric(1 / 150, n // 50 + 10)
    mu = np.repeat(np.where(np.arange(lens.size) % 2 == 0, 4e-4, -4e-4), lens)[:n]
    close = 100.0 * np.exp(np.cumsum(mu + rng.normal(0.0, 0.006, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * (1.0 + rng.normal(0.0, 0.001, n))
    e = np.abs(rng.normal(0.0, 0.003, (2, n)))
    frame = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * (1 + e[0]),
                          "low": np.minimum(open_, close) * (1 - e[1]), "close": close,
                          "volume": np.full(n, 100.0)},
                         index=pd.date_range("2022-01-03", periods=n, freq="h", name="time"))
    return mf.load_data(frame)


BARS = synthetic_bars()


def sma_blueprint(direction: str = "long_short", exclusive: bool = True, opp_plugin: str = "sma_cross",
                  stops_plugin: str = "percent_stops", fraction: float = 0.5) -> dict[str, Any]:
    bp = copy.deepcopy(yaml.safe_load((ROOT / "config/runs/sma_cross.yaml").read_text()))
    bp["name"] = "batch_vs_general"
    bp["direction"] = direction
    bp["workforce"]["opportunity_workers"][0]["plugin"] = opp_plugin
    pw = bp["workforce"]["planning_workers"]
    pw["exit_planning"] = [
        {"instance_id": "stops_1", "plugin": stops_plugin,
         "params": {"stop_loss_pct": 3.0, "take_profit_pct": None, "reference": "signal_close"}},
        {"instance_id": "exit_1", "plugin": "reverse_on_opposite", "params": {"exclusive_orders": exclusive}},
    ]
    pw["size_planning"] = [{"instance_id": "size_1", "plugin": "fixed_fraction_sizer",
                            "params": {"fraction": fraction, "whole_units": False}}]
    return bp


def operation(commission: float) -> dict[str, Any]:
    return {"name": "synthetic", "data": {"source": "sp500_daily"}, "instrument": {"symbol": "SYN", "pip_size": 0.01},
            "cash": 10_000, "commission": commission, "slippage": 0.0, "seed": 1}


def service() -> OptimizationService:
    return OptimizationService(ParallelRunService(backend="sequential", progress=False))


TARGET = OptimizationTarget(primary_metric="sharpe_ratio")


def both_paths(base, columns, combos, data=BARS):
    svc = service()
    batch = svc.sweep(base, columns, combos, TARGET, data=data, engine="batch")
    general = svc.sweep(base, columns, combos, TARGET, data=data, engine="general")
    return batch, general


def same_value(a: Any, b: Any, rel: float = REL) -> bool:
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    if math.isinf(a) or math.isinf(b):
        return False
    return abs(a - b) <= rel * max(abs(a), abs(b))


def assert_same(batch, general) -> None:
    assert batch.engine == "batch" and general.engine == "general"
    fb, fg = batch.all_results, general.all_results
    assert list(fb["status"]) == list(fg["status"]), (fb["error"].tolist(), fg["error"].tolist())
    ok = (fb["status"] == "ok").to_numpy()
    for i in np.flatnonzero(ok):
        rb, rg = fb.iloc[i], fg.iloc[i]
        assert rb["total_trades"] == rg["total_trades"], (i, rb["total_trades"], rg["total_trades"])
        assert rb["final_equity"] == rg["final_equity"], (i, rb["final_equity"], rg["final_equity"])
        bad = [m for m in METRIC_NAMES if not same_value(rb[m], rg[m])]
        assert not bad, {m: (rb[m], rg[m]) for m in bad}
        assert rb["run_id"] == rg["run_id"]
    # an impossible combination fails on both paths, as a ConfigError naming the combination,
    # the key and the reason in the same words (the error column of a stored sweep must not
    # depend on the engine)
    for i in np.flatnonzero(~ok):
        eb, eg = fb.iloc[i]["error"], fg.iloc[i]["error"]
        assert eb.split(":", 1)[0] == "ConfigError" and eb == eg, (eb, eg)
        assert eb.rsplit(": ", 1)[-1] == eg.rsplit(": ", 1)[-1], (eb, eg)
        assert "combination" in eb and "combination" in eg


# ---------------------------------------------------------------- the property
PARAMS = {
    ("sma_1", "fast"): st.integers(2, 30),
    ("sma_1", "slow"): st.integers(3, 60),
    ("stops_1", "stop_loss_pct"): st.one_of(st.none(), st.floats(0.3, 8.0, allow_nan=False).map(lambda x: round(x, 2))),
    ("stops_1", "take_profit_pct"): st.one_of(st.none(),
                                              st.floats(0.3, 15.0, allow_nan=False).map(lambda x: round(x, 2))),
    ("stops_1", "reference"): st.sampled_from(["signal_close", "fill"]),
    ("size_1", "fraction"): st.floats(0.05, 1.0, allow_nan=False).map(lambda x: round(x, 3)),
}


@st.composite
def spaces(draw):
    """A random subset of the parameters, 1..8 combinations of values for them; at least
    one combination is valid (fast < slow), others may not be."""
    names = sorted(PARAMS)
    mask = draw(st.lists(st.booleans(), min_size=len(names), max_size=len(names)))
    keys = [k for k, use in zip(names, mask) if use] or [draw(st.sampled_from(names))]
    n = draw(st.integers(1, 8))
    combos = []
    for k in range(n):
        combo: dict[str, dict[str, Any]] = {}
        for inst, p in keys:
            combo.setdefault(inst, {})[p] = draw(PARAMS[(inst, p)])
        sma = combo.get("sma_1")
        if k == 0 and sma is not None:
            # the first combination is always valid
            fast = sma.get("fast", 10)
            slow = sma.get("slow", 20)
            if fast >= slow:
                if "slow" in sma:
                    sma["slow"] = fast + draw(st.integers(1, 30))
                else:
                    sma["fast"] = max(2, slow - draw(st.integers(1, 8)))
        combos.append(combo)
    columns = [f"{inst}.{p}" for inst, p in keys]
    return columns, combos


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(space=spaces(), direction=st.sampled_from(["long_short", "long_only", "short_only"]),
       commission=st.sampled_from([0.0, 0.0005, 0.002]), exclusive=st.booleans())
def test_batch_and_general_paths_agree(space, direction, commission, exclusive):
    columns, combos = space
    base = mf.build_specs(sma_blueprint(direction, exclusive), operation(commission), data=BARS)
    batch, general = both_paths(base, columns, combos)
    assert_same(batch, general)
    assert batch.successful_runs >= 1
    event(f"{batch.successful_runs} ok / {batch.failed_runs} failed combinations")


def test_fixed_space_trades_and_hits_stops():
    """A hand-picked space where stops and targets are really hit, so the property test's
    space is not vacuous: stops change the outcome and both paths still agree."""
    base = mf.build_specs(sma_blueprint(), operation(0.001), data=BARS)
    combos = [{"sma_1": {"fast": f, "slow": s}, "stops_1": {"stop_loss_pct": sl, "take_profit_pct": tp,
                                                            "reference": ref}}
              for f, s in ((5, 20), (10, 40)) for sl, tp in ((None, None), (1.0, None), (1.5, 3.0))
              for ref in ("signal_close", "fill")]
    columns = ["sma_1.fast", "sma_1.slow", "stops_1.stop_loss_pct", "stops_1.take_profit_pct", "stops_1.reference"]
    batch, general = both_paths(base, columns, combos)
    assert_same(batch, general)
    eq = batch.all_results["final_equity"].to_numpy()
    assert batch.successful_runs == len(combos)
    # stops, targets and their reference change the runs (no stop: the reference is moot)
    assert len(set(eq.tolist())) >= len(combos) - 2
    assert (batch.all_results["total_trades"] > 10).all()


# ---------------------------------------------------------------- the ICT sweep
def test_ict_fvg_sweep_equal_across_paths():
    svc = service()
    cfg = ROOT / "config/optimizations/optimize_fvg_params.yaml"
    batch = svc.run(cfg, engine="batch")
    general = svc.run(cfg, engine="general")
    assert batch.total_runs == general.total_runs == 16
    assert batch.successful_runs == 16
    assert_same(batch, general)
    assert batch.best_params == general.best_params
    assert batch.all_results["total_trades"].sum() > 0


def test_a_combination_leaving_a_fixed_risk_sizer_without_a_stop_fails_alike_on_both_paths():
    """The translator's checks across planners (a stop for the sizer, one stop provider)
    hold per combination on the batch path too, with the general path's message."""
    bp = sma_blueprint()
    bp["workforce"]["planning_workers"]["size_planning"] = [
        {"instance_id": "size_1", "plugin": "fixed_risk_sizer", "params": {"risk_pct": 1.0}}]
    base = mf.build_specs(bp, operation(0.001), data=BARS)
    combos = [{"stops_1": {"stop_loss_pct": 2.0}}, {"stops_1": {"stop_loss_pct": None}}]
    batch, general = both_paths(base, ["stops_1.stop_loss_pct"], combos)
    assert list(batch.all_results["status"]) == ["ok", "failed"]
    assert_same(batch, general)
    eb, eg = batch.all_results["error"].iloc[1], general.all_results["error"].iloc[1]
    assert eb == eg and eb.endswith("workforce.planning_workers.size_planning[0].plugin: 'fixed_risk_sizer' sizes by "
                                    "the stop distance, but no exit planner sets a stop"), (eb, eg)


def test_auto_engine_reports_the_path_it_took():
    base = mf.build_specs(sma_blueprint(), operation(0.001), data=BARS)
    combos = [{"sma_1": {"fast": 5, "slow": 30}}, {"sma_1": {"fast": 8, "slow": 30}}]
    loky = OptimizationService(ParallelRunService(backend="loky", progress=False))
    assert loky.sweep(base, ["sma_1.fast", "sma_1.slow"], combos, TARGET, data=BARS).engine == "batch"
    seq = service()
    assert seq.sweep(base, ["sma_1.fast", "sma_1.slow"], combos, TARGET, data=BARS).engine == "general"
    with pytest.raises(ConfigError, match="unknown engine"):
        seq.sweep(base, ["sma_1.fast"], combos, TARGET, data=BARS, engine="warp")


# ---------------------------------------------------------------- failures
def _store_records(out: Path) -> list[dict]:
    from metaflow_nb.services.store import ResultsStore

    store = ResultsStore(out / "store")
    return [store.get(k) for k in store.keys()]


def _write_optimization(folder: Path, blueprint: dict, space: list, op: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    st_path = folder / "strategy.yaml"
    st_path.write_text(yaml.safe_dump(blueprint, sort_keys=False))
    BARS.to_parquet(folder / "bars.parquet")
    op = {**op, "data": {"source": str(folder / "bars.parquet")}}
    op_path = folder / "operation.yaml"
    op_path.write_text(yaml.safe_dump(op, sort_keys=False))
    doc = {"optimization_config": {"name": "raising", "base_operation": str(op_path), "base_strategy": str(st_path),
                                   "parameter_space": space,
                                   "optimization_target": {"primary_metric": "sharpe_ratio"}}}
    path = folder / "optimization.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_raising_workers_fail_their_rows_with_tracebacks_on_the_batch_path(tmp_path):
    bp = sma_blueprint(opp_plugin="test_faulty_cross", stops_plugin="test_batch_raising_stops")
    space = [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 7, 9]}, "slow": {"values": [30]}}},
             {"worker_instance": "stops_1", "parameters": {"stop_loss_pct": {"values": [2.0, 4.0]}}}]
    cfg = _write_optimization(tmp_path / "cfg", bp, space, operation(0.001))
    out = tmp_path / "out"
    # loky is the default backend: the sweep takes the batch path, in this process, where the
    # test plugins are registered
    res = mf.optimize(cfg, out=out, progress=False)
    assert res.engine == "batch"
    frame = res.all_results
    status = dict(zip(zip(frame["sma_1.fast"], frame["stops_1.stop_loss_pct"]), frame["status"]))
    assert status == {(5, 2.0): "ok", (5, 4.0): "failed", (7, 2.0): "failed", (7, 4.0): "failed",
                      (9, 2.0): "ok", (9, 4.0): "failed"}
    errors = dict(zip(zip(frame["sma_1.fast"], frame["stops_1.stop_loss_pct"]), frame["error"]))
    # named by the worker instance and method that raised (workers.calls)
    assert errors[(7, 2.0)].startswith("PluginError: sma_1 (opportunity): detect raised ValueError: "
                                       "test_faulty_cross refuses fast=7")
    assert errors[(5, 4.0)].startswith("PluginError: stops_1 (exit): plan raised RuntimeError: "
                                       "test_batch_raising_stops refuses stop_loss_pct=4.0")
    ok = frame[frame["status"] == "ok"]
    assert (ok["total_trades"] > 0).all() and ok["final_equity"].notna().all()
    # every failed run's record keeps its traceback, pointing at the raising line
    failed = [r for r in _store_records(out) if r["status"] == "failed"]
    assert len(failed) == 4
    for rec in failed:
        assert rec["traceback"].startswith("Traceback (most recent call last)")
        if "refuses fast=7" in rec["traceback"]:
            assert "fault_plugins.py" in rec["traceback"]
        else:
            assert "refuses stop_loss_pct=4.0" in rec["traceback"] and "test_batch_path.py" in rec["traceback"]
    # the general path fails the same rows and computes the same successful ones
    svc = service()
    general = svc.run(cfg, engine="general")
    assert general.engine == "general"
    assert list(general.all_results["status"]) == list(frame["status"])
    for col in ("total_trades", "final_equity"):
        assert ok[col].tolist() == general.all_results.loc[ok.index, col].tolist()


def test_invalid_combinations_are_failed_rows_on_both_paths():
    base = mf.build_specs(sma_blueprint(), operation(0.001), data=BARS)
    combos = [{"sma_1": {"fast": f, "slow": s}} for f in (5, 20, 30) for s in (20, 25)]
    batch, general = both_paths(base, ["sma_1.fast", "sma_1.slow"], combos)
    assert_same(batch, general)
    valid = [f < s for f in (5, 20, 30) for s in (20, 25)]
    assert (batch.all_results["status"] == "ok").tolist() == valid
    bad = batch.all_results[batch.all_results["status"] == "failed"]
    assert bad["error"].str.contains("must be smaller than slow").all()
    assert bad["final_equity"].isna().all()
    assert batch.failed_runs == valid.count(False) == 3


def test_small_chunks_split_the_kernel_calls_and_change_nothing(monkeypatch):
    """Kernel calls are bounded by CHUNK_BYTES (opportunities and masks per group, packed
    levels per combination); splitting a sweep into many calls gives the same results,
    and constant levels (percent stops from the fill) count as one number each."""
    from metaflow_nb.engine.nb import batch as nb_batch
    from metaflow_nb.assembly import pack as assembly_pack

    base = mf.build_specs(sma_blueprint(), operation(0.001), data=BARS)
    combos = [{"sma_1": {"fast": f, "slow": 40}, "stops_1": {"stop_loss_pct": sl, "reference": "fill"}}
              for f in (5, 10) for sl in (1.0, 2.0, 3.0)]
    columns = ["sma_1.fast", "sma_1.slow", "stops_1.stop_loss_pct"]
    calls: list[int] = []
    real = nb_batch.sweep

    def counting(*args):
        calls.append(len(args[3].group))  # SweepCombos: combinations in this call
        return real(*args)

    monkeypatch.setattr(nb_batch, "sweep", counting)
    svc = OptimizationService(ParallelRunService(backend="loky", progress=False))
    whole = svc.sweep(base, columns, combos, TARGET, data=BARS)
    assert whole.engine == "batch" and calls == [6]  # one group per fast: masks and setups fit
    calls.clear()
    # room for one group's setups and one combination's few level numbers, not two groups
    opps = len(mf.backtest(base, data=BARS).journal.query("event == 'OPPORTUNITY_DETECTED'"))
    monkeypatch.setattr(assembly_pack, "CHUNK_BYTES", 16 * opps + 64 + 8 * 4 * 3)
    split = svc.sweep(base, columns, combos, TARGET, data=BARS)
    assert len(calls) > 1 and sum(calls) == 6
    cols = ["total_trades", "final_equity", "sharpe_ratio", "max_drawdown_pct"]
    pd.testing.assert_frame_equal(split.all_results[cols], whole.all_results[cols])
    # both groups' setups plus six combinations of constant levels: one call (a copy of the
    # levels per combination and opportunity would not fit)
    calls.clear()
    monkeypatch.setattr(assembly_pack, "CHUNK_BYTES", 2 * 16 * opps + 6 * (64 + 8 * 4))
    svc.sweep(base, columns, combos, TARGET, data=BARS)
    assert calls == [6]


def assert_bit_for_bit(batch, general) -> None:
    """:func:`assert_same`, and every metric of every ok row identical."""
    assert_same(batch, general)
    fb, fg = batch.all_results, general.all_results
    for i in np.flatnonzero((fb["status"] == "ok").to_numpy()):
        for m in METRIC_NAMES:
            a, b = float(fb.iloc[i][m]), float(fg.iloc[i][m])
            assert a == b or (math.isnan(a) and math.isnan(b)), (i, m, a, b)


def test_a_combination_with_two_faults_names_the_same_one_on_both_paths():
    """The batch path met the swept workers in parameter-space order, the translator in
    workforce order: sizing listed first named the sizer's fault on one path and the SMA's
    on the other (hunt13 F5)."""
    base = mf.build_specs(sma_blueprint(), operation(0.0), data=BARS)
    columns = ["size_1.fraction", "sma_1.fast"]
    combos = [{"size_1": {"fraction": 0.5}, "sma_1": {"fast": 5}},
              {"size_1": {"fraction": 7.0}, "sma_1": {"fast": 40}}]     # fraction > 1 and fast >= slow
    batch, general = both_paths(base, columns, combos)
    assert_same(batch, general)
    assert batch.all_results["error"].iloc[1].endswith(
        "workforce.opportunity_workers[0].params: fast (40) must be smaller than slow (20)")


def test_a_basket_sweeps_refused_combination_reads_the_same_on_both_paths():
    """The general path's row named only the blueprint file, no sweep and no combination."""
    space = [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [10, 40]}, "slow": {"values": [30]}}}]
    rows = {}
    for engine in ("batch", "general"):
        o = mf.optimize_basket(str(ROOT / "config/runs/sma_cross.yaml"), str(ROOT / "config/operations/us_stocks_basket.yaml"),
                               space, engine=engine)
        t = o.table.sort_values("combination")
        rows[engine] = t.loc[t["status"] != "ok", "error"].tolist()
    assert len(rows["batch"]) == 1 and rows["batch"] == rows["general"], rows
    assert "parameter_space: combination {'sma_1': {'fast': 40, 'slow': 30}}: " in rows["general"][0]


def test_a_waves_groups_are_let_go_before_the_next_wave(monkeypatch):
    """hunt45 F1: every group (setups, plans, masks) stayed in the sweep's cache until the
    sweep ended, so memory grew with the distinct feature groups x bars whatever the waves
    (1e6 bars, 5,000 (fast, slow) pairs: 4.9 GB). A wave's groups go once its runs are done;
    the features stay shared, and the results are the same."""
    from metaflow_nb.services import batch as svc_batch

    base = mf.build_specs(sma_blueprint(), operation(0.001), data=BARS)
    combos = [{"sma_1": {"fast": f, "slow": s}} for f in (3, 5, 8) for s in (20, 30, 40)]
    held: list[int] = []
    real = svc_batch._run_wave

    def watching(base_, bars, cal, wave, by_group, shared, *rest):
        # groups memoised when this wave starts: those of earlier waves must be gone
        held.append(sum(1 for k in shared if isinstance(k, tuple) and k and k[0] == "__group__"))
        return real(base_, bars, cal, wave, by_group, shared, *rest)

    monkeypatch.setattr(svc_batch, "_run_wave", watching)
    monkeypatch.setattr(svc_batch, "WAVE_MIN", 1)   # a wave per group
    columns = ["sma_1.fast", "sma_1.slow"]
    svc = OptimizationService(ParallelRunService(backend="loky", progress=False))
    waved = svc.sweep(base, columns, combos, TARGET, data=BARS)
    assert len(held) == 9 and held == [0] * 9
    monkeypatch.setattr(svc_batch, "WAVE_MIN", 256)
    held.clear()
    whole = svc.sweep(base, columns, combos, TARGET, data=BARS)
    assert held == [0]
    cols = ["total_trades", "final_equity", "sharpe_ratio", "max_drawdown_pct"]
    pd.testing.assert_frame_equal(waved.all_results[cols], whole.all_results[cols])


def test_a_workers_own_zone_on_data_of_a_declared_clock_is_refused_on_both_paths():
    """hunt48 F1: session_exit's timezone param other than UTC on data read on a declared
    clock (times read twice) was refused by a single run and the general path, but the batch
    path ran it, and the default engine picked it as the best combination."""
    import yaml
    strat = yaml.safe_load(open(ROOT / "config/runs/ict_smc_strategy.yaml"))
    strat["workforce"]["planning_workers"]["exit_planning"].append(
        {"instance_id": "session_1", "plugin": "session_exit", "params": {"at": "21:45", "zone": "UTC"}})
    op = yaml.safe_load(open(ROOT / "config/operations/ict_backtest.yaml"))
    op["data"]["end"] = "2023-01-15"
    cfg = {"name": "zone", "base_strategy": strat, "base_operation": op,
           "parameter_space": [{"worker_instance": "session_1", "parameters": {"timezone": ["UTC", "Europe/Berlin"]}}]}
    rows = {eng: mf.optimize(cfg, engine=eng, progress=False).to_frame() for eng in ("batch", "general")}
    for eng, frame in rows.items():
        assert frame["status"].tolist() == ["ok", "failed"], eng
        assert frame["error"].iloc[1].endswith("params.timezone: 'Europe/Berlin' would read the timestamps again, "
                                               "but the operation's data.timezone 'Europe/Athens' already turned "
                                               "them into UTC; leave timezone out (it is for data without a "
                                               "declared clock)"), (eng, frame["error"].iloc[1])


def test_a_workers_own_zone_over_a_basket_on_instrument_clocks_is_refused_on_both_engines(tmp_path):
    """A basket whose instruments name their own clock (``timezone:``): the batch engine
    validated a sweep's worker zone against the first instrument's operation, whose data
    (a DataFrame of UTC bars) has no clock left, and ran 'Europe/Berlin' the general engine
    refuses; an instrument without a clock beside one with a clock is refused as well."""
    import yaml
    bars = mf.load_data("eurusd_15m").iloc[:1500]
    bars.rename_axis("time").to_csv(tmp_path / "A.csv")
    (bars * 1.1).rename_axis("time").to_csv(tmp_path / "B.csv")
    strat = yaml.safe_load(open(ROOT / "config/runs/sma_cross.yaml"))
    strat["workforce"]["planning_workers"]["exit_planning"].append(
        {"instance_id": "session_1", "plugin": "session_exit", "params": {"at": "21:45"}})
    for clocks in (("Europe/Berlin", "Europe/Berlin"), (None, "Europe/Berlin")):
        op = {"name": "zones", "mode": "independent", "cash": 10_000,
              "instruments": [{"symbol": s, "source": str(tmp_path / f"{s}.csv"), **({"timezone": c} if c else {})}
                              for s, c in zip("AB", clocks)]}
        cfg = {"name": "zone", "base_strategy": strat, "base_operation": op,
               "parameter_space": [{"worker_instance": "session_1",
                                    "parameters": {"timezone": ["UTC", "Europe/Berlin"]}}]}
        for eng in ("batch", "general"):
            frame = mf.optimize(cfg, engine=eng, progress=False).to_frame()
            assert frame["status"].tolist() == ["ok", "failed"], (clocks, eng)
            assert "'Europe/Berlin' would read the timestamps again" in frame["error"].iloc[1], (clocks, eng)
