"""A plugin's own code raising: the run stops naming the worker, the method and the line.

An exception inside a user's ``detect``, ``compute``, ``mask``, ``drawdown_limit``,
``plan`` or ``score`` becomes a ``PluginError`` (exit 2 and one line on the command line)
that names the instance, its role, the method, the exception and the plugin file's line;
the original exception is its ``__cause__``. A sweep keeps it per run. A built-in
worker's exception is metaflow-nb's bug and keeps its own type and traceback; an error
metaflow-nb raises on the plugin's behalf (an unknown feature) passes through as it is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import yaml

import engine_helpers as h
import metaflow_nb as mf
from metaflow_nb.assembly.group import build_group, worker_scores
from metaflow_nb.assembly.workforce import Workforce
from metaflow_nb.cli import main
from metaflow_nb.errors import PluginError
from metaflow_nb.workers import base as wbase
from metaflow_nb.workers.base import (
    ContextWorker, EntryPlan, EntryPlanner, ExitPlan, ExitPlanner, OpportunityWorker, Params, Signals, SizePlan,
    SizePlanner, ThreatWorker,
)
from metaflow_nb.workers.calls import call_worker, is_builtin

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).name
Fault = Literal["none", "raise", "bad_feature", "nested", "exit"]


def _register(cls):
    wbase._ensure_builtins()
    existing = wbase._REGISTRY.get(cls.name)
    return existing if existing is not None else wbase.register(cls)


class FaultParams(Params):
    fault: Fault = "none"


def _maybe_raise(fault: str, ctx=None) -> None:
    if fault == "raise":
        {}["no such key"]  # a KeyError from the plugin's own line
    if fault == "exit":
        raise SystemExit("plugin gave up")   # sys.exit in a plugin's own code
    if fault == "bad_feature":
        ctx.feature("sma", {"period": 0})
    if fault == "nested":
        ctx.feature("test_exc_context", {"fault": "raise"})


class FaultyContext(ContextWorker):
    name = "test_exc_context"
    Params = FaultParams

    def compute(self, ctx):
        _maybe_raise(self.params.fault, ctx)
        return {"zero": np.zeros(ctx.n)}


class FaultyOpportunity(OpportunityWorker):
    name = "test_exc_opportunity"
    Params = FaultParams

    def detect(self, ctx):
        _maybe_raise(self.params.fault, ctx)
        d = np.zeros(ctx.n, np.int8)
        d[[3, 20]] = [1, -1]
        return Signals.from_direction(d)

    def score(self, ctx, setups):
        if self.params.fault == "raise":
            return np.ones(len(setups)) * (1 // 0)
        return np.ones(len(setups))


class FaultyThreat(ThreatWorker):
    name = "test_exc_threat"
    reasons = ("TEST_EXC",)
    Params = FaultParams

    def mask(self, ctx):
        _maybe_raise(self.params.fault, ctx)
        return np.zeros(ctx.n, np.int8)


class FaultyEntry(EntryPlanner):
    name = "test_exc_entry"
    Params = FaultParams

    def plan(self, ctx, opps):
        _maybe_raise(self.params.fault, ctx)
        return EntryPlan(limit=np.full(len(opps), np.nan), cancel=np.full(len(opps), np.nan))


class FaultyExit(ExitPlanner):
    name = "test_exc_exit"
    Params = FaultParams

    def plan(self, ctx, opps, entry):
        _maybe_raise(self.params.fault, ctx)
        return ExitPlan(reverse=True)


class FaultySize(SizePlanner):
    name = "test_exc_size"
    Params = FaultParams

    def plan(self):
        _maybe_raise(self.params.fault)
        return SizePlan()


for _cls in (FaultyContext, FaultyOpportunity, FaultyThreat, FaultyEntry, FaultyExit, FaultySize):
    _register(_cls)


def _blueprint(**faults: str) -> dict:
    def w(key: str, iid: str, plugin: str) -> dict:
        return {"instance_id": iid, "plugin": plugin, "params": {"fault": faults.get(key, "none")}}

    return {"name": "faulty", "workforce": {
        "context_workers": [w("context", "ctx_1", "test_exc_context")],
        "opportunity_workers": [w("opportunity", "opp_1", "test_exc_opportunity")],
        "threat_workers": [w("threat", "guard_1", "test_exc_threat")],
        "planning_workers": {"entry_planning": [w("entry", "entry_1", "test_exc_entry")],
                             "exit_planning": [w("exit", "exit_1", "test_exc_exit")],
                             "size_planning": [w("size", "size_1", "test_exc_size")]}}}


def _run(bp: dict):
    return mf.backtest(bp, h.operation(), data=h.flat_bars([100.0 + 0.1 * i for i in range(40)]))


def _line(fn) -> int:
    """The line of ``fn``'s source that raises the KeyError."""
    import inspect

    lines, first = inspect.getsourcelines(fn)
    return first + next(k for k, text in enumerate(lines) if '{}["no such key"]' in text)


RAISE_LINE = _line(_maybe_raise)


@pytest.mark.parametrize("role, iid, method", [
    ("context", "ctx_1", "compute"), ("opportunity", "opp_1", "detect"), ("threat", "guard_1", "mask"),
    ("entry", "entry_1", "plan"), ("exit", "exit_1", "plan"), ("size", "size_1", "plan"),
])
def test_an_exception_in_own_code_names_instance_method_and_line(role, iid, method):
    assert _run(_blueprint()).metrics["total_trades"] == 1  # the healthy strategy runs
    with pytest.raises(PluginError) as err:
        _run(_blueprint(**{role: "raise"}))
    # a context instance is named as every other role's is (hunt33 F5: it was named by its
    # plugin, the feature cache's key, which a newcomer's config does not spell)
    message = str(err.value)
    assert message.startswith(f"{iid} ({role}): {method} raised KeyError: 'no such key' (")
    assert message.endswith(f"{THIS}:{RAISE_LINE} in _maybe_raise)")
    assert isinstance(err.value.__cause__, KeyError)  # the original, with its traceback, for a notebook


def test_score_exception_is_named_too():
    bp = _blueprint(opportunity="none")
    specs = mf.build_specs(bp, data=h.flat_bars([100.0 + 0.1 * i for i in range(40)]))
    wf = Workforce.from_specs(specs)
    group = build_group(wf, h.flat_bars([100.0 + 0.1 * i for i in range(40)]), specs.pip_size)
    bad = FaultyOpportunity("opp_1", FaultParams(fault="raise"))
    with pytest.raises(PluginError, match=r"^opp_1 \(opportunity\): score raised ZeroDivisionError: "):
        worker_scores(bad, group.ctx, group.opps, 0)


def test_a_feature_asked_for_with_bad_params_names_the_asker():
    with pytest.raises(PluginError) as err:
        _run(_blueprint(opportunity="bad_feature"))
    assert str(err.value).startswith("opp_1 (opportunity): detect raised ValidationError for PeriodParams: period: "
                                     "Input should be greater than 0 (")


def test_a_plugin_error_from_a_nested_feature_names_its_own_worker():
    with pytest.raises(PluginError) as err:
        _run(_blueprint(opportunity="nested"))
    assert str(err.value).startswith("test_exc_context (context): compute raised KeyError: 'no such key' (")


def test_a_built_in_workers_exception_keeps_its_type(monkeypatch):
    """A built-in raising is metaflow-nb's bug: its traceback is what the report needs."""
    cls = wbase.get_plugin("sma_cross")
    assert is_builtin(cls) and not is_builtin(FaultyOpportunity)

    def broken(self, ctx):
        raise RuntimeError("internal")

    monkeypatch.setattr(cls, "detect", broken)
    # bars of this test's own, so no cached group of an earlier test spares the call
    bars = h.flat_bars([100.0 + 0.37 * i for i in range(61)])
    with pytest.raises(RuntimeError, match="internal"):
        mf.backtest(str(ROOT / "config/runs/sma_cross.yaml"), h.operation(), data=bars)


def test_call_worker_passes_results_and_base_exceptions():
    size = FaultySize("size_1", FaultParams())
    assert call_worker(size, "plan") == SizePlan()

    class Interrupting(FaultySize):
        def plan(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_worker(Interrupting("size_1", FaultParams()), "plan")


def test_cli_exits_2_with_one_line(tmp_path, capsys):
    bp = tmp_path / "faulty.yaml"
    bp.write_text(yaml.safe_dump(_blueprint(opportunity="raise"), sort_keys=False))
    rc = main(["backtest", "--strategy", str(bp), "--data", "sp500_daily", "--json"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == "" and cap.err.count("\n") == 1
    assert cap.err.startswith("metaflow-nb: error: opp_1 (opportunity): detect raised KeyError: 'no such key' (")
    assert f"{THIS}:{RAISE_LINE} in _maybe_raise)" in cap.err


def test_check_causality_names_the_raising_worker(capsys):
    rc = main(["check-causality", "test_exc_threat", "--params", '{"fault": "raise"}', "--data", "sp500_daily"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.err.count("\n") == 1, cap.err
    assert cap.err.startswith("metaflow-nb: error: test_exc_threat (threat): mask raised KeyError: 'no such key' (")


def test_a_sweep_keeps_the_failure_per_run(tmp_path):
    strategy = tmp_path / "s.yaml"
    strategy.write_text(yaml.safe_dump(_blueprint(), sort_keys=False))
    cfg = tmp_path / "opt.yaml"
    cfg.write_text(yaml.safe_dump({"optimization_config": {
        "name": "faults", "base_operation": str(ROOT / "config/operations/sp500_daily.yaml"),
        "base_strategy": str(strategy),
        "parameter_space": [{"worker_instance": "exit_1", "parameters": {"fault": {"values": ["none", "raise"]}}}],
        "optimization_target": {"primary_metric": "total_return_pct"}}}))
    res = mf.optimize(str(cfg), progress=False)
    frame = res.all_results.set_index("exit_1.fault")
    assert frame.loc["none", "status"] == "ok" and frame.loc["raise", "status"] == "failed"
    assert frame.loc["raise", "error"].startswith("PluginError: exit_1 (exit): plan raised KeyError: 'no such key' (")


@pytest.mark.parametrize("engine, backend", [("batch", "loky"), ("general", "sequential"), ("general", "threads")])
def test_sys_exit_in_a_plugin_is_a_failed_run_not_the_end_of_the_sweep(tmp_path, engine, backend):
    """hunt51 F3: SystemExit is no Exception: it ended the sweep (exit 1 with the bare
    message, SIGABRT under threads, exit 0 and no results under dask); it is the plugin's
    failure like any other."""
    strategy = tmp_path / "s.yaml"
    strategy.write_text(yaml.safe_dump(_blueprint(), sort_keys=False))
    cfg = {"name": "exits", "base_operation": str(ROOT / "config/operations/sp500_daily.yaml"),
           "base_strategy": str(strategy),
           "parameter_space": [{"worker_instance": "exit_1", "parameters": {"fault": {"values": ["none", "exit"]}}}],
           "optimization_target": {"primary_metric": "total_return_pct"}}
    res = mf.optimize(cfg, engine=engine, backend=backend, workers=2, progress=False)
    frame = res.all_results.set_index("exit_1.fault")
    assert frame.loc["none", "status"] == "ok" and frame.loc["exit", "status"] == "failed"
    assert frame.loc["exit", "error"].startswith("PluginError: exit_1 (exit): plan raised SystemExit: plugin gave up")


def test_sys_exit_in_a_plugin_is_exit_2_with_one_line(tmp_path, capsys):
    bp = tmp_path / "faulty.yaml"
    bp.write_text(yaml.safe_dump(_blueprint(opportunity="exit"), sort_keys=False))
    rc = main(["backtest", "--strategy", str(bp), "--data", "sp500_daily"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.err.count("\n") == 1, cap.err
    assert cap.err.startswith("metaflow-nb: error: opp_1 (opportunity): detect raised SystemExit: plugin gave up")
