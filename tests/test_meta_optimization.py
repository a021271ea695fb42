"""OptimizationService: grids, constraints, ties, failed and timed-out runs, resume.

Small grids on the daily S&P 500 sample; the source design's FVG sweep once as a
notebook call. Faulty and slow workers come from ``tests/fault_plugins.py``.
"""
from __future__ import annotations

import html
import json
import time

import numpy as np
import pandas as pd
import pytest

import fault_plugins as fp
import metaflow_nb as mf
from metaflow_nb.assembly.dataset import clear_dataset_memo
from metaflow_nb.config.meta import OptimizationTarget, RangeSpec, base_specs, expand_space, load_meta_config
from metaflow_nb.engine.metrics import METRIC_NAMES
from metaflow_nb.errors import ConfigError
from metaflow_nb.services.operation import OperationService
from metaflow_nb.services.optimization import OptimizationService, select_best
from metaflow_nb.services import parallel as parallel_mod
from metaflow_nb.services.parallel import ParallelRunService
from metaflow_nb.services.store import ResultsStore

STOPS = str(fp.ROOT / "config" / "runs" / "sma_cross_long_stops.yaml")
CROSS = str(fp.ROOT / "config" / "runs" / "sma_cross.yaml")


def seq() -> OptimizationService:
    return OptimizationService(ParallelRunService(backend="sequential", progress=False))


# ------------------------------------------------------------------ ranges

@pytest.mark.parametrize("raw,expected", [
    ({"start": 3, "end": 10, "step": 1}, [3, 4, 5, 6, 7, 8, 9, 10]),
    ({"start": 0.1, "end": 0.3, "step": 0.1}, [0.1, 0.2, 0.3]),
    ({"start": 0.5, "end": 1.0, "step": 0.2}, [0.5, 0.7, 0.9]),
    ({"start": 1, "end": 2, "step": 0.5}, [1.0, 1.5, 2.0]),
    ({"start": 0, "end": 1, "step": 0.3}, [0.0, 0.3, 0.6, 0.9]),
    ({"start": 5, "end": 5, "step": 1}, [5]),
    ({"start": 0.05, "end": 0.25, "step": 0.05}, [0.05, 0.1, 0.15, 0.2, 0.25]),
    ({"start": 10, "end": 100, "step": 30}, [10, 40, 70, 100]),
    ({"start": 10, "end": 99, "step": 30}, [10, 40, 70]),
])
def test_range_includes_end_when_step_lands_on_it_without_float_drift(raw, expected):
    values = RangeSpec(**raw).expand(raw)
    assert values == expected
    # exactly the literals, not 0.30000000000000004
    assert [repr(v) for v in values] == [repr(v) for v in expected]
    ints = all(isinstance(raw[k], int) for k in ("start", "end", "step"))
    assert all(isinstance(v, int) if ints else isinstance(v, float) for v in values)


def test_float_range_reaches_the_specs_exactly(tmp_path):
    space = [{"worker_instance": "stops_1", "parameters": {"stop_loss_pct": {"start": 0.1, "end": 0.3, "step": 0.1}}},
             {"worker_instance": "sma_1", "parameters": {"fast": {"start": 5, "end": 15, "step": 5}}}]
    cfg = fp.write_optimization(tmp_path, space, STOPS)
    root, model, raw, _ = load_meta_config(cfg)
    base = mf.build_specs(STOPS, fp.SP500_OPERATION)
    columns, combos = expand_space(model.parameter_space, raw["parameter_space"], str(cfg), root, base)
    assert columns == ["stops_1.stop_loss_pct", "sma_1.fast"]
    assert len(combos) == 9
    # config order, last parameter fastest
    assert [(c["stops_1"]["stop_loss_pct"], c["sma_1"]["fast"]) for c in combos] == \
        [(s, f) for s in (0.1, 0.2, 0.3) for f in (5, 10, 15)]
    res = seq().run(cfg)
    assert res.all_results["stops_1.stop_loss_pct"].tolist() == [0.1] * 3 + [0.2] * 3 + [0.3] * 3
    specs = base.with_params("stops_1", {"stop_loss_pct": combos[3]["stops_1"]["stop_loss_pct"]})
    assert specs.params("stops_1")["stop_loss_pct"] == 0.2


def test_source_design_fvg_grid_expands_to_16_combinations():
    root, model, raw, folder = load_meta_config("config/optimizations/optimize_fvg_params.yaml")
    base = base_specs(model, folder, "optimize_fvg_params.yaml", root)
    columns, combos = expand_space(model.parameter_space, raw["parameter_space"], "x", root, base)
    assert len(combos) == 16
    assert sorted({c["fvg_det_1"]["min_gap_size"] for c in combos}) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert all(isinstance(c["fvg_det_1"]["min_gap_size"], int) for c in combos)


def test_notebook_optimize_source_design_fvg_params():
    res = mf.optimize("config/optimizations/optimize_fvg_params.yaml", backend="sequential", progress=False)
    assert res.total_runs == 16 and res.successful_runs == 16 and res.failed_runs == 0
    assert res.param_columns == ["fvg_det_1.min_gap_size", "fvg_det_1.require_structure_break"]
    combos = list(zip(res.all_results["fvg_det_1.min_gap_size"], res.all_results["fvg_det_1.require_structure_break"]))
    assert combos == [(g, b) for g in range(3, 11) for b in (True, False)]
    frame = res.all_results
    eligible = (frame["total_trades"] >= 10) & (frame["max_drawdown_pct"] <= 15.0)
    assert frame["eligible"].tolist() == eligible.tolist()
    assert res.best_index == int(frame[eligible]["sharpe_ratio"].idxmax())
    # the best specs reproduce the best metrics in a single backtest
    single = OperationService().run(res.best_specs)
    for m in ("sharpe_ratio", "total_trades", "final_equity", "max_drawdown_pct"):
        assert single.metrics[m] == pytest.approx(res.best_metrics[m], rel=1e-12)
    assert "FVG Parameter Sweep" in res._repr_html_()
    assert res.to_dict()["total_runs"] == 16


# ------------------------------------------------------------------ constraints and selection

@pytest.fixture(scope="module")
def stops_grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    space = fp.sma_space([5, 10, 20], [30, 60]) + [
        {"worker_instance": "stops_1", "parameters": {"stop_loss_pct": {"values": [2.0, 5.0]}}}]
    cfg = fp.write_optimization(tmp, space, STOPS)
    return seq().run(cfg)


def test_constraints_filter_the_eligible_runs(stops_grid):
    frame = stops_grid.all_results.copy()
    assert len(frame) == 12 and (frame["status"] == "ok").all()
    trades = np.sort(frame["total_trades"].to_numpy())
    dd = np.sort(frame["max_drawdown_pct"].to_numpy())
    min_trades = int(trades[len(trades) // 2])
    max_dd = float(dd[len(dd) // 2])
    target = OptimizationTarget(primary_metric="sharpe_ratio",
                                constraints={"min_trades": min_trades, "max_drawdown": max_dd})
    best, msg = select_best(frame, target)
    want = (frame["total_trades"] >= min_trades) & (frame["max_drawdown_pct"] <= max_dd)
    assert 0 < want.sum() < len(frame)
    assert frame["eligible"].tolist() == want.tolist()
    assert best == int(frame[want]["sharpe_ratio"].idxmax())
    assert f"{int(want.sum())} of 12 runs eligible" in msg

    target = OptimizationTarget(primary_metric="total_return_pct",
                                constraints={"min_sharpe": float(frame["sharpe_ratio"].median()),
                                             "min_win_rate": float(frame["win_rate_pct"].min())})
    best, _ = select_best(frame, target)
    want = (frame["sharpe_ratio"] >= frame["sharpe_ratio"].median()) & \
           (frame["win_rate_pct"] >= frame["win_rate_pct"].min())
    assert best == int(frame[want]["total_return_pct"].idxmax())


def test_minimized_metric_picks_the_smallest(stops_grid):
    frame = stops_grid.all_results.copy()
    target = OptimizationTarget(primary_metric="max_drawdown_pct")
    assert not target.maximize()
    best, _ = select_best(frame, target)
    assert best == int(frame["max_drawdown_pct"].idxmin())
    target = OptimizationTarget(primary_metric="total_return_pct", goal="minimize")
    assert select_best(frame, target)[0] == int(frame["total_return_pct"].idxmin())


def test_no_run_satisfies_the_constraints(tmp_path):
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10], [30]), CROSS,
                                target={"primary_metric": "sharpe_ratio",
                                        "constraints": {"min_trades": 10**6, "max_drawdown": 1.0}})
    res = seq().run(cfg)
    assert res.successful_runs == 2
    assert res.best_index is None and res.best_params is None
    assert res.best_metrics is None and res.best_specs is None and res.best_row is None
    assert res.message.startswith("no run satisfies the constraints")
    assert "min_trades >= 1000000: 0 of 2 successful runs pass" in res.message
    assert not res.all_results["eligible"].any()
    assert "no run satisfies the constraints" in repr(res)
    assert "no run satisfies the constraints" in res._repr_html_()
    d = res.to_dict()
    assert d["best_params"] is None and d["best_run_id"] is None
    json.dumps(d)


def test_ties_break_on_grid_order():
    frame = pd.DataFrame({"status": ["ok"] * 5, "sharpe_ratio": [0.5, 1.5, 0.2, 1.5, 1.5],
                          "max_drawdown_pct": [9.0, 3.0, 3.0, 7.0, 3.0], "total_trades": [10] * 5})
    assert select_best(frame.copy(), OptimizationTarget(primary_metric="sharpe_ratio"))[0] == 1
    assert select_best(frame.copy(), OptimizationTarget(primary_metric="max_drawdown_pct"))[0] == 1
    # a NaN target metric is never chosen
    frame.loc[0, "sharpe_ratio"] = np.nan
    frame.loc[1, "sharpe_ratio"] = np.nan
    assert select_best(frame.copy(), OptimizationTarget(primary_metric="sharpe_ratio"))[0] == 3


@pytest.mark.parametrize("engine", ["general", "batch"])
def test_identical_combinations_the_first_wins(tmp_path, engine):
    # stops far out of reach never trigger: three different combos, identical numbers
    space = [{"worker_instance": "stops_1",
              "parameters": {"stop_loss_pct": {"values": [50.0, 90.0, 80.0]},
                             "take_profit_pct": {"values": [200.0]}}}]
    cfg = fp.write_optimization(tmp_path, space, STOPS, name="ties.yaml")
    svc = OptimizationService()
    res = svc.run(cfg, backend="sequential" if engine == "general" else "loky", engine=engine, progress=False)
    assert res.engine == engine
    frame = res.all_results
    assert frame["sharpe_ratio"].nunique() == 1 and frame["status"].eq("ok").all()
    assert res.best_index == 0 and frame.loc[0, "stops_1.stop_loss_pct"] == 50.0
    assert res.best_row["run_id"] == frame.loc[0, "run_id"]
    # the same combination twice would be the same run id, one more trial that tried nothing new
    dup = fp.write_optimization(tmp_path, fp.sma_space([10, 10], [30]), STOPS, name="dup.yaml")
    with pytest.raises(ConfigError, match="fast.values: 10 is listed twice"):
        svc.run(dup, engine=engine, progress=False)


# ------------------------------------------------------------------ failed runs

def _faulty_cfg(tmp_path, fast=(5, 7, 9, 11), fail=7):
    # declared, so loky worker processes import it
    bp = fp.write_blueprint(tmp_path, plugin="fault_plugins:FaultyCross", params={"fail_when_fast": fail},
                            plugins=["fault_plugins"])
    return fp.write_optimization(tmp_path, fp.sma_space(list(fast), [30]), bp)


@pytest.mark.parametrize("backend,engine", [("sequential", "general"), ("threads", "general"),
                                            ("loky", "general"), ("loky", "batch")])
def test_failed_runs_are_reported_with_their_error(tmp_path, backend, engine):
    cfg = _faulty_cfg(tmp_path)
    out = tmp_path / "out"
    res = OptimizationService().run(cfg, out=out, backend=backend, max_workers=2, progress=False, engine=engine)
    assert res.engine == engine
    frame = res.all_results
    assert res.total_runs == 4 and res.failed_runs == 1 and res.successful_runs == 3
    assert frame["sma_1.fast"].tolist() == [5, 7, 9, 11]
    assert frame["status"].tolist() == ["ok", "failed", "ok", "ok"]
    assert frame.loc[1, "error"] == f"PluginError: {fp.refused(7)}"
    assert (frame.loc[[0, 2, 3], "error"] == "").all()
    assert frame.loc[1, list(METRIC_NAMES)].isna().all()
    assert not frame.loc[1, "eligible"]
    assert res.best_params["sma_1"]["fast"] != 7
    # the outcome (store record) keeps type, message and traceback
    rec = ResultsStore(out / "store").get(_spec_hash(res, 1))
    assert rec["status"] == "failed" and rec["error_type"] == "PluginError"
    assert rec["error_message"] == fp.refused(7)
    assert "Traceback" in rec["traceback"] and "fault_plugins.py" in rec["traceback"]
    assert "raise ValueError" in rec["traceback"]
    csv = pd.read_csv(out / "all_results.csv", keep_default_na=False)
    assert csv["error"].tolist()[1] == f"PluginError: {fp.refused(7)}"


def _spec_hash(res, i: int) -> str:
    row = res.all_results.iloc[i]
    specs = res.base_specs
    for col in res.param_columns:
        inst, p = col.split(".", 1)
        v = row[col]
        specs = specs.with_params(inst, {p: v.item() if hasattr(v, "item") else v})
    assert specs.run_id == row["run_id"]
    return specs.hash


def test_failed_run_outcome_fields_from_the_runner(tmp_path):
    base = mf.build_specs(fp.write_blueprint(tmp_path, plugin="test_faulty_cross"), fp.SP500_OPERATION)
    specs = [base.with_params("sma_1", {"fast": f, "slow": 30}) for f in (7, 8)]
    outs = ParallelRunService(backend="sequential", progress=False).run(specs)
    bad, good = outs
    assert (bad.status, bad.ok, bad.error_type) == ("failed", False, "PluginError")
    assert bad.error_message == fp.refused(7)
    # the worker's own exception, then the PluginError naming it (workers.calls)
    assert bad.traceback.startswith("Traceback") and bad.traceback.rstrip().endswith(f"PluginError: {fp.refused(7)}")
    assert "ValueError: test_faulty_cross refuses fast=7\n" in bad.traceback
    assert bad.metrics is None and bad.run_id == specs[0].run_id and bad.spec_hash == specs[0].hash
    assert good.ok and good.metrics["total_trades"] > 0 and good.index == 1


def test_partly_invalid_grid_keeps_the_valid_runs(tmp_path):
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 25, 10]), CROSS)  # slow is 20
    for backend in ("sequential", "loky"):
        res = OptimizationService().run(cfg, backend=backend, progress=False)
        frame = res.all_results
        assert frame["status"].tolist() == ["ok", "failed", "ok"], res.engine
        assert "fast (25) must be smaller than slow (20)" in frame.loc[1, "error"]
        assert res.best_params["sma_1"]["fast"] in (5, 10)
    # hunt104 L4: the reprs said "1 failed" and no error (a user had to know all_results.error)
    line = f"1 failed: sma_1.fast=25: {frame.loc[1, 'error']}"
    assert line in repr(res).splitlines(), repr(res)
    assert html.escape(line) in res._repr_html_()


# ------------------------------------------------------------------ timeouts

def _slow_cfg(tmp_path, delay, slow_when_fast=7, fast=(5, 7, 9), **extra):
    bp = fp.write_blueprint(tmp_path, plugin="fault_plugins:SlowCross",
                            params={"delay": delay, "slow_when_fast": slow_when_fast}, plugins=["fault_plugins"])
    return fp.write_optimization(tmp_path, fp.sma_space(list(fast), [30]), bp, **extra)


@pytest.mark.parametrize("backend", ["sequential", "loky"])
def test_timeout_interrupts_the_run_and_the_sweep_goes_on(tmp_path, backend):
    cfg = _slow_cfg(tmp_path, delay=5.0, parallel={"timeout_per_run": 0.3})
    t0 = time.perf_counter()
    res = OptimizationService().run(cfg, backend=backend, max_workers=2, progress=False)
    elapsed = time.perf_counter() - t0
    assert res.engine == "general"
    assert elapsed < 4.5, "the slow run was not interrupted"
    frame = res.all_results
    assert frame["status"].tolist() == ["ok", "timeout", "ok"]
    assert frame.loc[1, "error"].startswith("TimeoutError: run exceeded timeout_per_run=0.3s")
    assert frame.loc[1, list(METRIC_NAMES)].isna().all()
    assert res.failed_runs == 1 and res.best_params["sma_1"]["fast"] in (5, 9)


def test_timeout_on_threads_is_reported_after_the_run(tmp_path):
    # threads cannot be interrupted: the run finishes, then counts as timed out
    cfg = _slow_cfg(tmp_path, delay=0.6)
    res = OptimizationService().run(cfg, backend="threads", max_workers=2, timeout_per_run=0.2, progress=False)
    assert res.engine == "general"
    assert res.all_results["status"].tolist() == ["ok", "timeout", "ok"]
    assert "took" in res.all_results.loc[1, "error"]


def test_timeout_on_loky_with_builtin_plugins(tmp_path):
    # a timeout no run can meet: every run is reported as timed out, none is dropped
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10, 15], [30]), CROSS,
                                parallel={"backend": "loky", "max_workers": 2, "timeout_per_run": 1e-6})
    res = OptimizationService().run(cfg, progress=False)
    assert res.engine == "general"
    assert res.all_results["status"].tolist() == ["timeout"] * 3
    assert res.all_results["error"].str.startswith("TimeoutError: run exceeded timeout_per_run=1e-06s").all()
    assert res.best_params is None and res.message.startswith("no run succeeded")


# ------------------------------------------------------------------ store and resume (service level)

def test_resume_recomputes_only_missing_and_unsuccessful_runs(tmp_path, monkeypatch):
    log = tmp_path / "exec.log"
    monkeypatch.setenv(fp.EXEC_LOG_ENV, str(log))
    cfg = _slow_cfg(tmp_path, delay=0.5, fast=(5, 7, 9, 11), parallel={"timeout_per_run": 0.2})
    out = tmp_path / "out"
    first = OptimizationService().run(cfg, out=out, backend="sequential", progress=False)
    assert first.all_results["status"].tolist() == ["ok", "timeout", "ok", "ok"]
    assert len(fp.store_records(out)) == 4
    # forget one successful record: resume recomputes it and the timed-out run, nothing else
    ok_hashes = [_spec_hash(first, i) for i in range(4) if first.all_results.loc[i, "status"] == "ok"]
    victim_hash = sorted(ok_hashes)[0]
    assert ResultsStore(out / "store").drop([victim_hash]) == 1
    log.unlink()
    # a resume is a new process: nothing the first sweep computed in this one (the run
    # service's features, the datasets' memos) may answer for it
    clear_dataset_memo()
    monkeypatch.setattr(parallel_mod, "_SERVICE", None)
    again = OptimizationService().run(cfg, out=out, backend="sequential", progress=False, resume=True)
    executed = sorted(int(line.split()[1]) for line in log.read_text().splitlines())
    by_hash = {_spec_hash(first, i): int(first.all_results.loc[i, "sma_1.fast"]) for i in range(4)}
    victim_fast = by_hash[victim_hash]
    assert executed == sorted({7, victim_fast})
    cols = [c for c in first.all_results.columns if c != "duration_s"]
    pd.testing.assert_frame_equal(again.all_results[cols], first.all_results[cols])


# ------------------------------------------------------------------ which path runs a sweep

def test_engine_is_a_config_key_and_an_override(tmp_path):
    space = fp.sma_space([5, 10], [30])
    auto = OptimizationService().run(fp.write_optimization(tmp_path / "a", space, CROSS), progress=False)
    assert auto.engine == "batch"
    cfg = fp.write_optimization(tmp_path / "g", space, CROSS, parallel={"engine": "general"})
    general = OptimizationService().run(cfg, progress=False)
    assert general.engine == "general"
    assert OptimizationService().run(cfg, engine="batch", progress=False).engine == "batch"  # API/CLI override
    # the two paths agree on the same config
    assert general.all_results["final_equity"].tolist() == auto.all_results["final_equity"].tolist()


@pytest.mark.parametrize("parallel,expect", [
    ({"engine": "warp"}, "optimization_config.parallel.engine"),
    ({"engine": "batch", "timeout_per_run": 5}, "timeout_per_run (5 s) cannot interrupt"),
    ({"engine": "batch", "backend": "dask"}, "not on the dask cluster that backend 'dask' asks for"),
])
def test_impossible_engine_settings_are_refused_by_name(tmp_path, parallel, expect):
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10], [30]), CROSS, parallel=parallel)
    with pytest.raises(ConfigError) as err:
        OptimizationService().run(cfg, progress=False)
    assert str(cfg) in str(err.value) and expect in str(err.value), str(err.value)


def test_notebook_view_ranks_as_the_best_was_chosen_and_plot_kinds_are_checked(tmp_path):
    """The HTML repr's top table starts with the best run (the runs the constraints
    exclude come after those they leave) and shows ``eligible``; a plot kind that is not
    one is refused by name."""
    import re

    bp = fp.write_blueprint(tmp_path)
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10, 20], [50, 100, 150]), bp,
                                target={"primary_metric": "sharpe_ratio", "constraints": {"min_trades": 60}})
    res = mf.optimize(cfg, backend="sequential", progress=False)
    frame = res.all_results
    # the constraint excludes a run with a higher Sharpe than the best's (what the view put first)
    assert frame.loc[~frame["eligible"], "sharpe_ratio"].max() > res.best_row["sharpe_ratio"]
    html = res._repr_html_()
    table = html.split("Top runs by sharpe_ratio")[1]
    first = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)[0]   # the first body row (the header row has a style)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", first, flags=re.S)
    assert cells[:2] == [str(res.best_params["sma_1"]["fast"]), str(res.best_params["sma_1"]["slow"])]
    assert "eligible" in table
    with pytest.raises(ConfigError, match=r"unknown plot kind 'pb0'; kinds: 'heatmap', 'pbo'"):
        res.plot("pb0")


def test_ctrl_c_in_a_sequential_sweep_lets_the_run_finish_keeps_it_and_stops(tmp_path, request):
    """A Ctrl-C that arrives during a run of an in-process sweep stops the sweep after that
    run, which is kept: it can no longer land inside a compiled kernel (a crash, or an
    exception the sweep recorded as a failed run and went on)."""
    import signal

    # Ctrl-C as a terminal gives it: an earlier test in this worker process (a dask cluster,
    # a library) may have left its own SIGINT handler, under which the sweep changes nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    base = mf.build_specs({"name": "i", "workforce": {"opportunity_workers": [
        {"instance_id": "sma_1", "plugin": "test_interrupting_cross", "params": {"fast": 5, "slow": 20}}]}},
        data="sp500_daily")
    specs = [base.with_params("sma_1", {"fast": f}) for f in (5, 7, 9, 11)]
    store = ResultsStore(tmp_path / "store")
    with pytest.raises(KeyboardInterrupt):
        ParallelRunService("sequential", progress=False, store=store).run(specs)
    assert sorted(store.get(s.hash)["status"] for s in specs if store.get(s.hash)) == ["ok", "ok"]
    assert store.get(specs[1].hash)["status"] == "ok" and store.get(specs[2].hash) is None
    # an exception raised from a KeyboardInterrupt is an interrupt too, not a failed run
    chained = base.with_params("sma_1", {"fast": 7, "chained": True})
    with pytest.raises(KeyboardInterrupt):
        parallel_mod.execute_one(0, chained, None, None, False)


@pytest.mark.parametrize("engine", ["general", "batch"])
def test_a_profit_factor_without_losses_is_infinite_in_a_sweep_and_can_win(engine, tmp_path):
    """No losing trade: profit_factor is inf in mf.backtest, and it stays inf in a sweep's
    table, its CSV and its pick (it was NaN there: the all-winning run was ineligible and a
    losing one was reported best)."""
    import engine_helpers as h
    from metaflow_nb.services.optimization import OptimizationService

    close = 100.0 + np.arange(30, dtype=float)
    df = pd.DataFrame({"open": close - 1.0, "high": close + 0.5, "low": close - 1.5, "close": close,
                       "volume": 1.0}, index=pd.date_range("2024-01-01", periods=30, freq="D"))
    bp = h.blueprint(longs=[1, 8, 15], stops={"stop_loss_pct": 0.3, "take_profit_pct": 1.0, "reference": "fill"})
    base = mf.build_specs(bp, h.operation(), data=df)
    combos = [{"stops_1": {"stop_loss_pct": 0.3}}, {"stops_1": {"stop_loss_pct": None}}]
    single = mf.backtest(base.with_params("stops_1", {"stop_loss_pct": None}), data=df)
    assert single.metrics["profit_factor"] == np.inf and single.metrics["win_rate_pct"] == 100.0
    svc = OptimizationService(parallel_mod.ParallelRunService(backend="sequential", progress=False))
    res = svc.sweep(base, ["stops_1.stop_loss_pct"], combos, OptimizationTarget(primary_metric="profit_factor"),
                    data=df, engine=engine)
    frame = res.all_results
    assert frame["profit_factor"].tolist() == [0.0, np.inf]
    assert res.best_index == 1 and res.best_metrics["profit_factor"] == np.inf
    # no trades: no profit factor (NaN), not an infinite one
    none = svc.sweep(base, ["stops_1.stop_loss_pct"], [{"stops_1": {"stop_loss_pct": 0.3}}],
                     OptimizationTarget(primary_metric="profit_factor"), data=df.iloc[:2], engine=engine)
    assert np.isnan(none.all_results["profit_factor"].iloc[0])


def test_a_bare_list_of_values_reads_the_same_in_a_yaml_file_as_in_a_dict(tmp_path):
    """fast: [5, 10] (the README's Python example) was refused in a YAML file with
    "Input should be a valid dictionary or instance of RangeSpec" (hunt13 F8)."""
    import yaml

    body = {"name": "bare", "base_strategy": str(fp.ROOT / "config/runs/sma_cross.yaml"),
            "base_operation": str(fp.ROOT / "config/operations/sp500_daily.yaml"),
            "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10], "slow": [50]}}]}
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump({"optimization_config": body}))
    _, model, _, _ = load_meta_config(path, "optimization_config")
    _, from_dict, _, _ = load_meta_config({"optimization_config": body}, "optimization_config")
    assert model.parameter_space == from_dict.parameter_space
    assert [p.model_dump() for p in model.parameter_space[0].parameters.values()][0] == {"values": [5, 10]}


@pytest.mark.parametrize("value", ["5", "1.5", ".nan", "true", "{a: 1}"])
def test_a_parameter_space_that_is_no_list_is_bad_input(tmp_path, value):
    path = tmp_path / "odd.yaml"
    path.write_text(f"optimization_config:\n  name: x\n  base_strategy: {fp.ROOT}/config/runs/sma_cross.yaml\n"
                    f"  base_operation: {fp.ROOT}/config/operations/sp500_daily.yaml\n  parameter_space: {value}\n")
    with pytest.raises(ConfigError, match=r"odd.yaml: optimization_config.parameter_space: Input should be a valid list"):
        load_meta_config(path, "optimization_config")


def test_best_metrics_counts_are_whole_numbers_beside_a_failed_row():
    # hunt39 F1: a failed combination's NaN made the counts' column float (19.0 trades)
    import metaflow_nb as mf
    cfg = {"optimization_config": {"name": "x", "base_strategy": "config/runs/sma_cross.yaml",
                                   "base_operation": "config/operations/sp500_daily.yaml",
                                   "parameter_space": [{"worker_instance": "sma_1",
                                                        "parameters": {"fast": {"values": [5, 60]}}}]}}
    opt = mf.optimize(cfg, progress=False)
    assert opt.failed_runs == 1
    counts = {k: opt.best_metrics[k] for k in ("total_trades", "opportunities_detected", "opportunities_rejected")}
    assert all(type(v) is int for v in counts.values()), counts
    assert counts["total_trades"] == opt.all_results["total_trades"].max()


@pytest.mark.parametrize("engine", ["general", "batch"])
def test_an_interrupted_sweeps_stored_runs_keep_their_parameters(engine, tmp_path, request, monkeypatch):
    """hunt79 F2: the parameter columns reached ``<out>/store/params`` only when a sweep
    returned, so after Ctrl-C or SIGTERM ``mf.runs(out)`` listed the finished runs with
    no parameters (1,358 runs that could not be matched to their combinations). They are
    written before the runs are, so every run a store holds comes with its values."""
    import signal

    from metaflow_nb.services import batch as batch_mod

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    out = tmp_path / "out"
    if engine == "general":
        bp = fp.write_blueprint(tmp_path, plugin="test_interrupting_cross", params={"interrupt_when_fast": 9})
        space = fp.sma_space([5, 7, 9, 11, 13], [30])
    else:
        bp, space = CROSS, fp.sma_space([5, 7, 9, 11, 13], [30])
        real = batch_mod.run_batch

        def interrupted(base, prepared, outcomes, data, on_done=None, **kw):
            # three runs reach the store, then Ctrl-C
            real(base, prepared[:3], outcomes, data, on_done=on_done, **kw)
            raise KeyboardInterrupt
        monkeypatch.setattr(batch_mod, "run_batch", interrupted)
    cfg = fp.write_optimization(tmp_path, space, bp)
    with pytest.raises(KeyboardInterrupt):
        OptimizationService().run(cfg, out=out, backend="sequential" if engine == "general" else "loky",
                                  engine=engine, progress=False)
    table = mf.runs(out)
    assert len(table) == 3 and sorted(table["sma_1.fast"].tolist()) == [5, 7, 9], table


def test_a_null_in_the_parameter_space_reads_back_as_null(tmp_path):
    """hunt84 F4: ``stop_loss_pct: {values: [null, 2.0]}`` runs, but the results table holds
    the null as NaN, and NaN read back as the parameter value: the best run's specs were
    refused ("expected a finite number"), so DSR and PBO were not computed, best_params
    said nan, and a walk-forward stopped after its first window."""
    strategy = str(fp.ROOT / "config" / "runs" / "sma_cross_long_stops.yaml")
    space = [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 10]}, "slow": {"values": [30, 60]}}},
             {"worker_instance": "stops_1", "parameters": {"stop_loss_pct": {"values": [None, 2.0]}}}]
    cfg = fp.write_optimization(tmp_path, space, strategy, target={"primary_metric": "sharpe_ratio"})
    res = mf.optimize(cfg, backend="sequential", progress=False)
    assert "not computed" not in str(res.statistics.get("note", "")), res.statistics
    best = res.best_params["stops_1"]["stop_loss_pct"]
    assert best is None or best == 2.0
    assert res.best_specs is not None


def test_a_nan_outside_a_sweeps_own_table_is_not_read_as_null():
    """hunt85 F2: in ``mf.runs`` over two sweeps, the rows of a sweep that did not vary
    ``stops_1.stop_loss_pct`` hold NaN there ("not swept"). Read as the grid's null, the
    rebuilt specs silently had no stop. Only a sweep's own table reads NaN so."""
    from metaflow_nb.config.buildspecs import specs_from_row
    from metaflow_nb.errors import ConfigError

    base = mf.build_specs(str(fp.ROOT / "config/runs/sma_cross_long_stops.yaml"), data="sp500_daily")
    row = {"sma_1.fast": 5, "stops_1.stop_loss_pct": float("nan")}
    cols = ["sma_1.fast", "stops_1.stop_loss_pct"]
    with pytest.raises(ConfigError, match="stop_loss_pct"):
        specs_from_row(base, row, cols)
    assert specs_from_row(base, row, cols, grid_nulls=True).params("stops_1")["stop_loss_pct"] is None
