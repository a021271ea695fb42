"""The plugin contract where a plugin meets the run path.

* **Reason codes**: a threat declares its own codes; they are allocated at registration,
  checked when a config is translated (a code declared by two plugins of one strategy, an
  instance reason its plugin does not declare) and named in the journal, ``rejections()``
  and a variant comparison's causal analysis, also when a result crosses processes.
* **Checked outputs**: a plugin returning a NaN or 100 direction, a wrong length, an
  inverted or infinite zone, a mask of 7 or an infinite stop stops the run with a
  ``PluginError`` naming the instance, the output and the first offending bar; on the
  command line that is exit 2 and one line; in a sweep it fails the group's runs.

The test plugins are registered under plain names when this module is imported (the
sweeps run in this process: sequential backend, or the batch path of the default one).
"""
from __future__ import annotations

import json
import re
import pickle
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import yaml

import engine_helpers as h
import metaflow_nb as mf
from metaflow_nb.assembly.checks import checked_reason
from metaflow_nb.cli import main
from metaflow_nb.engine import codes
from metaflow_nb.errors import ConfigError, MetaflowError, PluginError
from metaflow_nb.workers import base as wbase
from metaflow_nb.workers.base import (
    EntryPlan, EntryPlanner, ExitPlan, ExitPlanner, OpportunityWorker, Params, Signals, SizePlan, SizePlanner,
    ThreatWorker, param,
)

ROOT = Path(__file__).resolve().parents[1]
SP500_OPERATION = ROOT / "config" / "operations" / "sp500_daily.yaml"


def _register(cls):
    """Register once, even if this module is imported under two names."""
    wbase._ensure_builtins()
    existing = wbase._REGISTRY.get(cls.name)
    return existing if existing is not None else wbase.register(cls)


# ---------------------------------------------------------------- test plugins

class TrendGuardParams(Params):
    lookback: int = param(20, ge=1, le=1000)


class TrendGuard(ThreatWorker):
    """Blocks longs while the close is below the close ``lookback`` bars earlier and shorts
    while it is above: setups against the trend, with a reason code of its own."""

    name = "test_trend_guard"
    reasons = ("AGAINST_TREND",)
    reason = "AGAINST_TREND"
    Params = TrendGuardParams

    def mask(self, ctx):
        k = self.params.lookback
        past = np.full(ctx.n, np.nan)
        past[k:] = ctx.close[:-k]
        m = np.zeros(ctx.n, np.int8)
        m[ctx.close < past] = 1
        m[ctx.close > past] = 2
        return m


TrendGuard = _register(TrendGuard)


class TrendGuardCopy(TrendGuard):
    """Another plugin declaring the same code: fine alone, an error beside ``test_trend_guard``."""

    name = "test_trend_guard_copy"


TrendGuardCopy = _register(TrendGuardCopy)


class BadSignalsParams(Params):
    fault: Literal["none", "nan", "hundred", "short", "inverted", "inf_zone", "half_zone"] = "none"
    bar: int = 17
    longs: tuple[int, ...] = (3, 30)


class BadSignals(OpportunityWorker):
    """Longs at ``longs`` (a float direction array), spoiled at ``bar`` as ``fault`` says."""

    name = "test_bad_signals"
    Params = BadSignalsParams

    def detect(self, ctx):
        p, n = self.params, ctx.n
        d = np.zeros(n)
        d[[i for i in p.longs if i < n]] = 1.0
        top, bottom = np.full(n, np.nan), np.full(n, np.nan)
        if p.fault == "nan":
            d[p.bar] = np.nan
        elif p.fault == "hundred":
            d = d.astype(np.int8)
            d[p.bar] = 100
        elif p.fault == "short":
            d = d[:-1]
        elif p.fault == "inverted":
            d[p.bar], top[p.bar], bottom[p.bar] = 1.0, 99.0, 101.0
        elif p.fault == "inf_zone":
            d[p.bar], top[p.bar], bottom[p.bar] = -1.0, np.inf, 100.0
        elif p.fault == "half_zone":
            d[p.bar], top[p.bar] = 1.0, 101.0
        return Signals(d, top, bottom)


BadSignals = _register(BadSignals)


class BadMaskParams(Params):
    value: int = 7
    bar: int = 17
    dtype: str = "int8"


class BadMask(ThreatWorker):
    name = "test_bad_mask"
    reasons = ("TEST_BAD_MASK",)
    Params = BadMaskParams

    def mask(self, ctx):
        m = np.zeros(ctx.n, self.params.dtype)
        m[self.params.bar] = self.params.value
        return m


BadMask = _register(BadMask)


class BadStopParams(Params):
    setup: int = 1
    value: str = "inf"  # a number as text: params are canonical JSON, which has no inf


class BadStop(ExitPlanner):
    """Absolute stops, NaN (none) but for one setup."""

    name = "test_bad_stop"
    provides_stop = True
    Params = BadStopParams

    def plan(self, ctx, opps, entry):
        stop = np.full(len(opps), np.nan)
        stop[self.params.setup] = float(self.params.value)
        return ExitPlan(stop_mode=codes.PRICE_ABSOLUTE, stop=stop)


BadStop = _register(BadStop)


class OddExitParams(Params):
    case: str = "levels_without_mode"


class OddExit(ExitPlanner):
    """Exit plans a plugin gets wrong in ways the kernel would misread silently."""

    name = "test_odd_exit"
    Params = OddExitParams

    def plan(self, ctx, opps, entry):
        n = len(opps)
        two = np.full(n, 2.0)
        return {
            "levels_without_mode": lambda: ExitPlan(stop=two),
            "mode_without_levels": lambda: ExitPlan(target_mode=codes.PRICE_FRACTION),
            "negative_distance": lambda: ExitPlan(stop_mode=codes.PRICE_DISTANCE, stop=-two),
            "r_target_without_stop": lambda: ExitPlan(target_mode=codes.PRICE_R_MULTIPLE, target=two),
            "r_partial_without_stop": lambda: ExitPlan(partial_mode=codes.PRICE_R_MULTIPLE, partial=two,
                                                       partial_fraction=0.5),
            "breakeven_without_stop": lambda: ExitPlan(breakeven_r=1.0),
            "unknown_trail": lambda: ExitPlan(trail_mode=7, trail_param=3.0),
            "trail_without_inputs": lambda: ExitPlan(trail_mode=codes.TRAIL_DISTANCE, trail_param=3.0),
            "reverse_per_setup": lambda: ExitPlan(reverse=opps.direction > 0),
            "breakeven_array": lambda: ExitPlan(breakeven_r=np.full(n, 1.0)),
            "time_stop_array": lambda: ExitPlan(time_stop_bars=np.full(ctx.n, 5)),
            "stop": lambda: ExitPlan(stop_mode=codes.PRICE_FRACTION, stop=np.full(n, 0.02)),
            # a partial of the whole position or more; a percent trail of the whole price (hunt21 F3)
            "whole_partial": lambda: ExitPlan(stop_mode=codes.PRICE_FRACTION, stop=np.full(n, 0.02),
                                              partial_mode=codes.PRICE_FRACTION, partial=np.full(n, 0.03),
                                              partial_fraction=1.5),
            "whole_trail": lambda: ExitPlan(trail_mode=codes.TRAIL_PERCENT, trail_param=1.5),
        }[self.params.case]()


OddExit = _register(OddExit)


class OwnRiskSizer(SizePlanner):
    """A fixed-risk size plan from a plugin (its class does not say it needs a stop)."""

    name = "test_own_risk_sizer"

    def plan(self):
        return SizePlan(codes.SIZER_FIXED_RISK, 0.5)


OwnRiskSizer = _register(OwnRiskSizer)


class ShortEntry(EntryPlanner):
    """Market orders with one limit too few."""

    name = "test_short_entry"

    def plan(self, ctx, opps):
        return EntryPlan(limit=np.full(len(opps) - 1, np.nan), cancel=np.full(len(opps), np.nan))


ShortEntry = _register(ShortEntry)


class BadSizeParams(Params):
    kind: int = codes.SIZER_FIXED_FRACTION
    value: str = "nan"


class BadSize(SizePlanner):
    name = "test_bad_size"
    Params = BadSizeParams

    def plan(self):
        return SizePlan(self.params.kind, float(self.params.value), True)


BadSize = _register(BadSize)


# ---------------------------------------------------------------- helpers

def _sig_blueprint(fault: str = "none", threats=(), exits=None, entry=None, sizer=None) -> dict:
    planning: dict = {"exit_planning": exits or [{"instance_id": "exit_1", "plugin": "reverse_on_opposite"}]}
    if entry:
        planning["entry_planning"] = [entry]
    if sizer:
        planning["size_planning"] = [sizer]
    return {"name": "contract", "workforce": {
        "opportunity_workers": [{"instance_id": "sig_1", "plugin": "test_bad_signals", "params": {"fault": fault}}],
        "threat_workers": list(threats), "planning_workers": planning}}


def _run(bp: dict, n: int = 40):
    return mf.backtest(bp, h.operation(), data=h.flat_bars([100.0 + 0.1 * i for i in range(n)]))


def _sma_blueprint(threats) -> dict:
    doc = yaml.safe_load((ROOT / "config" / "runs" / "sma_cross.yaml").read_text())
    doc["workforce"]["threat_workers"] = list(threats)
    return doc


def _write(path, doc) -> str:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


GUARD = {"instance_id": "trend_1", "plugin": "test_trend_guard", "params": {"lookback": 20}}


# ====================================================================== reason codes

def test_codes_are_allocated_at_registration_and_built_ins_keep_theirs():
    code = codes.reason_code("AGAINST_TREND")
    assert code >= codes.FIRST_PLUGIN_REASON and codes.REASON_NAMES[code] == "AGAINST_TREND"
    assert codes.allocate_reason("AGAINST_TREND") == code  # a name keeps its code
    # the built-in reasons (and the goldens' journals) keep their integers
    assert [codes.reason_code(r) for r in ("MAX_DRAWDOWN", "VOLATILITY_SPIKE", "MARKET_RISK", "SESSION_CLOSED")] \
        == [1, 2, 3, 4]
    # skip, cancel and exit codes lie below the plugins' range
    assert max(k for k in codes.REASON_NAMES if k < codes.FIRST_PLUGIN_REASON) < codes.FIRST_PLUGIN_REASON
    assert wbase.get_plugin("market_risk_monitor").declared_reasons() == ("MARKET_RISK",)


@pytest.mark.parametrize("reasons, message", [
    (("IN_POSITION",), "'IN_POSITION' is a built-in skip, cancel or exit reason"),
    (("STOP_LOSS",), "'STOP_LOSS' is a built-in skip, cancel or exit reason"),
    (("against_trend",), "'against_trend' is not an upper-case identifier"),
    (("AGAINST TREND",), "is not an upper-case identifier"),
    ((), "a threat worker declares its reason codes"),
    ("AGAINST_TREND", "reasons is a tuple of names"),
    (("DUP_X", "OTHER", "DUP_X"), "'DUP_X' is listed twice; list each reason once"),   # hunt105 F3
])
def test_registration_refuses_bad_or_reserved_reason_names(reasons, message):
    class Bad(ThreatWorker):
        name = "test_bad_reasons"

        def mask(self, ctx):
            return np.zeros(ctx.n, np.int8)

    Bad.reasons = reasons
    with pytest.raises(TypeError, match=message.replace("(", r"\(")):
        wbase.register(Bad)
    assert "test_bad_reasons" not in wbase.known_plugins()


def test_own_reason_runs_end_to_end_and_is_named_everywhere():
    # falling prices: every long is against the trend (close below the close 1 bar earlier)
    df = h.flat_bars([100.0 - i for i in range(8)])
    res = h.run(df, longs=[2, 5], threats=[{"instance_id": "trend_1", "plugin": "test_trend_guard",
                                             "params": {"lookback": 1}}])
    rej = h.events(res, "OPPORTUNITY_REJECTED")
    assert list(rej["bar"]) == [2, 5]
    assert list(rej["threat_id"]) == ["trend_1", "trend_1"]
    assert list(rej["reason"]) == ["AGAINST_TREND", "AGAINST_TREND"]
    assert list(rej["active_reasons"]) == ["AGAINST_TREND", "AGAINST_TREND"]
    assert res.rejections().to_dict("index") == {"AGAINST_TREND": {"count": 2, "share_pct": 100.0, "active": 2}}


def test_own_reason_beside_built_in_threats_on_real_data():
    res = mf.backtest(_sma_blueprint([{"instance_id": "risk_1", "plugin": "market_risk_monitor"}, GUARD]),
                      data="sp500_daily")
    rej = res.journal[res.journal["event"] == "OPPORTUNITY_REJECTED"]
    assert set(rej["reason"]) == {"MARKET_RISK", "AGAINST_TREND"}
    assert set(rej.loc[rej["reason"] == "AGAINST_TREND", "threat_id"]) == {"trend_1"}
    assert rej["active_reasons"].str.contains("AGAINST_TREND").any()
    assert (rej["active_reasons"] == "MARKET_RISK|AGAINST_TREND").any()
    assert "AGAINST_TREND" in res.rejections().index
    assert res.trades["exit_reason"].isin(["SIGNAL", ""]).all()


def test_journal_names_come_with_the_result_not_from_the_reading_process(monkeypatch):
    """A result sent back by a loky or dask worker carries the codes that worker allocated;
    the process reading its journal may have given the same integer to another name."""
    res = mf.backtest(_sma_blueprint([GUARD]), data="sp500_daily")
    blob = pickle.dumps(res)
    code = codes.reason_code("AGAINST_TREND")
    monkeypatch.setitem(codes.REASON_NAMES, code, "SOMETHING_ELSE")
    monkeypatch.setitem(codes.THREAT_REASONS, "SOMETHING_ELSE", code)
    monkeypatch.delitem(codes.THREAT_REASONS, "AGAINST_TREND")
    back = pickle.loads(blob)
    rej = back.journal[back.journal["event"] == "OPPORTUNITY_REJECTED"]
    assert len(rej) > 0 and set(rej["reason"]) == {"AGAINST_TREND"}
    assert set(rej["active_reasons"]) == {"AGAINST_TREND"}


def test_variant_comparison_names_own_reason_in_its_causal_analysis(tmp_path):
    strategy = _write(tmp_path / "guarded.yaml", _sma_blueprint([GUARD]))
    cfg = _write(tmp_path / "variants.yaml", {"variant_config": {
        "name": "trend guard", "base_operation": str(SP500_OPERATION), "base_strategy": strategy,
        "variants": [{"name": "guarded"},
                     {"name": "unguarded", "overrides": {"workforce": {"threat_workers": []}}}]}})
    cmp = mf.compare_variants(cfg, backend="sequential", progress=False)
    assert cmp.most_defensive() == "guarded"
    assert list(cmp.reasons("guarded").index) == ["AGAINST_TREND"]
    causal = cmp.to_dict()["causal_analysis"]
    assert list(causal["reasons"]["guarded"]) == ["AGAINST_TREND"] and causal["reasons"]["unguarded"] == {}
    assert "* AGAINST_TREND:" in cmp.render_text()


def test_same_code_from_two_plugins_is_a_config_error_naming_both(tmp_path):
    copy = {"instance_id": "trend_2", "plugin": "test_trend_guard_copy"}
    path = _write(tmp_path / "two.yaml", _sma_blueprint([GUARD, copy]))
    with pytest.raises(ConfigError) as err:
        mf.build_specs(path, data="sp500_daily")
    msg = str(err.value)
    assert msg.startswith(f"{path}: workforce.threat_workers: reason code 'AGAINST_TREND' is declared by two plugins")
    assert "'test_trend_guard' (workforce.threat_workers[0])" in msg
    assert "'test_trend_guard_copy' (workforce.threat_workers[1])" in msg
    # relabelling a rejection with a built-in's code beside that built-in is the same mistake
    with pytest.raises(ConfigError, match="'MARKET_RISK' is declared by two plugins, 'market_risk_monitor'"):
        mf.build_specs(_sma_blueprint([{"instance_id": "risk_1", "plugin": "market_risk_monitor"},
                                       {"instance_id": "mask_1", "plugin": "test_mask_threat"}]), data="sp500_daily")
    # two instances of one plugin share its codes
    mf.build_specs(_sma_blueprint([GUARD, {**GUARD, "instance_id": "trend_2"}]), data="sp500_daily")


def test_undeclared_instance_reason_is_a_config_error_naming_file_and_key(tmp_path):
    threat = {"instance_id": "mask_1", "plugin": "test_mask_threat", "params": {"reason_code": "AGAINST_TREND"}}
    path = _write(tmp_path / "undeclared.yaml", _sma_blueprint([threat]))
    with pytest.raises(ConfigError) as err:
        mf.build_specs(path, data="sp500_daily")
    assert str(err.value) == (
        f"{path}: workforce.threat_workers[0].params.reason_code: reason 'AGAINST_TREND' is not one of the "
        f"reason codes 'test_mask_threat' declares (MARKET_RISK, VOLATILITY_SPIKE, SESSION_CLOSED, MAX_DRAWDOWN)")
    # a sweep can set that param past the translator: the run path checks it again
    cls = wbase.get_plugin("test_mask_threat")
    with pytest.raises(ConfigError, match="mask_1: reason 'AGAINST_TREND' is not one of the reason codes"):
        checked_reason(cls("mask_1", cls.Params(reason_code="AGAINST_TREND")))


# ====================================================================== checked outputs

BAD_OUTPUTS = {
    "nan direction": (_sig_blueprint("nan"), "sig_1 (opportunity): direction at bar 17 is nan; expected -1, 0 or 1"),
    "direction 100": (_sig_blueprint("hundred"),
                      "sig_1 (opportunity): direction at bar 17 is 100; expected -1, 0 or 1"),
    "wrong length": (_sig_blueprint("short"), "sig_1 (opportunity): direction has 39 values; expected 40 (one per bar)"),
    "top < bottom": (_sig_blueprint("inverted"),
                     "sig_1 (opportunity): zone at bar 17 has top 99.0 < bottom 101.0; expected top >= bottom"),
    "infinite zone": (_sig_blueprint("inf_zone"),
                      "sig_1 (opportunity): zone at bar 17 is top inf, bottom 100.0; expected finite edges or NaN (no zone)"),
    "top without bottom": (_sig_blueprint("half_zone"),
                           "sig_1 (opportunity): zone at bar 17 is top 101.0, bottom nan; expected both edges, or "
                           "neither (NaN: no zone)"),
    "mask 7": (_sig_blueprint(threats=[{"instance_id": "guard_1", "plugin": "test_bad_mask"}]),
               "guard_1 (threat): mask at bar 17 is 7; expected 0, 1, 2 or 3"),
    "negative mask": (_sig_blueprint(threats=[{"instance_id": "guard_1", "plugin": "test_bad_mask",
                                               "params": {"value": -1, "bar": 9, "dtype": "int64"}}]),
                      "guard_1 (threat): mask at bar 9 is -1; expected 0, 1, 2 or 3"),
    "float mask": (_sig_blueprint(threats=[{"instance_id": "guard_1", "plugin": "test_bad_mask",
                                            "params": {"value": 1, "dtype": "float64"}}]),
                   "guard_1 (threat): mask has dtype float64; expected an integer array"),
    "inf stop": (_sig_blueprint(exits=[{"instance_id": "stops_1", "plugin": "test_bad_stop"}]),
                 "stops_1 (exit): stop of the setup at bar 30 is inf; expected a finite value or NaN (no stop)"),
    "short entry plan": (_sig_blueprint(entry={"instance_id": "entry_1", "plugin": "test_short_entry"}),
                         "entry_1 (entry): limit has 1 value; expected 2 (one per setup)"),
    "NaN size": (_sig_blueprint(sizer={"instance_id": "size_1", "plugin": "test_bad_size"}),
                 "size_1 (size): param is nan; expected a finite number > 0"),
}


def _odd(case: str, sizer=None, also=()) -> dict:
    return _sig_blueprint(exits=[*also, {"instance_id": "x_1", "plugin": "test_odd_exit", "params": {"case": case}}],
                          sizer=sizer)


BAD_EXITS = {
    "levels without mode": (_odd("levels_without_mode"),
                            "x_1 (exit): stop is set but stop_mode is 0 (none); expected a stop_mode"),
    "mode without levels": (_odd("mode_without_levels"),
                            "x_1 (exit): target_mode is 3 (fraction) but target is None; expected one value per setup "
                            "(NaN: no target)"),
    "negative distance": (_odd("negative_distance"),
                          "x_1 (exit): stop of the setup at bar 3 is -2.0; expected a distance >= 0 or NaN (no stop)"),
    "R target without a stop": (_odd("r_target_without_stop"),
                                "x_1 (exit): target_mode is 4 (R multiple), but no exit planner sets a stop"),
    "R partial take-profit without a stop": (_odd("r_partial_without_stop"),
                                             "x_1 (exit): partial_mode is 4 (R multiple), but no exit planner sets "
                                             "a stop"),
    "break-even without a stop": (_odd("breakeven_without_stop"),
                                  "x_1 (exit): breakeven_r is 1.0 (R multiple), but no exit planner sets a stop"),
    "unknown trail mode": (_odd("unknown_trail"),
                           "x_1 (exit): trail_mode is 7; expected one of 0 (none), 1 (percent), 2 (distance), 3 (level)"),
    "trail without inputs": (_odd("trail_without_inputs"),
                             "x_1 (exit): trail_mode is 2 (distance) but trail_long and trail_short are None; "
                             "expected per-bar values for longs, shorts or both"),
    "reverse per setup": (_odd("reverse_per_setup"),
                          "x_1 (exit): reverse is an ndarray of 2 values; expected True or False"),
    "breakeven as an array": (_odd("breakeven_array"),
                              "x_1 (exit): breakeven_r is an ndarray of 2 values; expected a finite number >= 0"),
    "time stop as an array": (_odd("time_stop_array"),
                              "x_1 (exit): time_stop_bars is an ndarray of 40 values; expected a whole number >= 0"),
    "partial of the whole position": (_odd("whole_partial"),
                                      "x_1 (exit): partial_fraction is 1.5; expected a fraction of the position in "
                                      "(0, 1) (0: no partial take-profit)"),
    "percent trail of the whole price": (_odd("whole_trail"),
                                         "x_1 (exit): trail_param is 1.5; a percent trailing stop's distance is a "
                                         "fraction of the price in (0, 1)"),
    # the exit planners set none (reverse_on_opposite only)
    "fixed risk without a stop": (_sig_blueprint(sizer={"instance_id": "size_1", "plugin": "test_own_risk_sizer"}),
                                  "size_1 (size): a fixed-risk size plan sizes by the stop distance, but no exit "
                                  "planner sets a stop"),
    "two stops": (_odd("stop", also=[{"instance_id": "stops_1", "plugin": "test_bad_stop", "params": {"value": "50"}}]),
                  "x_1 (exit): sets a stop, as stops_1 does; one exit planner sets the stop (a plugin that sets one "
                  "declares provides_stop = True, and the config is refused before any run)"),
}


@pytest.mark.parametrize("case", list(BAD_EXITS))
def test_exit_plans_the_kernel_would_misread_are_refused(case):
    bp, message = BAD_EXITS[case]
    with pytest.raises(PluginError) as err:
        _run(bp)
    assert str(err.value) == message


@pytest.mark.parametrize("case", list(BAD_OUTPUTS))
def test_bad_output_raises_plugin_error_naming_instance_output_and_bar(case):
    bp, message = BAD_OUTPUTS[case]
    with pytest.raises(PluginError) as err:
        _run(bp)
    assert str(err.value) == message
    assert isinstance(err.value, MetaflowError)  # the family the CLI exits 2 on


def test_good_outputs_pass_float_directions_and_nan_levels():
    res = _run(_sig_blueprint(exits=[{"instance_id": "stops_1", "plugin": "test_bad_stop",
                                      "params": {"value": "50"}}]))
    assert res.metrics["opportunities_detected"] == 2
    assert list(h.events(res, "TRADE_OPENED")["bar"]) == [4]


def test_cli_backtest_with_a_bad_plugin_exits_2_with_one_line(tmp_path, capsys):
    bp = _write(tmp_path / "bad.yaml", _sig_blueprint("hundred"))
    rc = main(["backtest", "--strategy", bp, "--data", "sp500_daily", "--json"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == ""
    assert cap.err == "metaflow-nb: error: sig_1 (opportunity): direction at bar 17 is 100; expected -1, 0 or 1\n"
    bp = _write(tmp_path / "mask.yaml", _sig_blueprint(threats=[{"instance_id": "guard_1", "plugin": "test_bad_mask"}]))
    rc = main(["backtest", "--strategy", bp, "--data", "sp500_daily", "--json"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == ""
    assert cap.err == "metaflow-nb: error: guard_1 (threat): mask at bar 17 is 7; expected 0, 1, 2 or 3\n"


def test_cli_same_code_from_two_plugins_exits_2_with_one_line(tmp_path, capsys):
    bp = _write(tmp_path / "two.yaml", _sma_blueprint([GUARD, {"instance_id": "trend_2",
                                                               "plugin": "test_trend_guard_copy"}]))
    rc = main(["backtest", "--strategy", bp, "--data", "sp500_daily", "--json"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == "" and cap.err.count("\n") == 1
    assert "'test_trend_guard' (workforce.threat_workers[0]) and 'test_trend_guard_copy'" in cap.err


def test_sweep_fails_the_bad_groups_runs_with_the_message(tmp_path):
    strategy = _write(tmp_path / "sweep.yaml", _sig_blueprint())
    cfg = _write(tmp_path / "opt.yaml", {"optimization_config": {
        "name": "faults", "base_operation": str(SP500_OPERATION), "base_strategy": strategy,
        "parameter_space": [{"worker_instance": "sig_1", "parameters": {
            "fault": {"values": ["none", "hundred", "nan"]}}}],
        "optimization_target": {"primary_metric": "total_return_pct"}}})
    res = mf.optimize(cfg, progress=False)  # loky: the batch path, in this process
    assert res.engine == "batch"
    frame = res.all_results.set_index("sig_1.fault")
    assert frame.loc["none", "status"] == "ok"
    assert frame.loc["hundred", "status"] == "failed" and frame.loc["nan", "status"] == "failed"
    assert frame.loc["hundred", "error"] == \
        "PluginError: sig_1 (opportunity): direction at bar 17 is 100; expected -1, 0 or 1"
    assert frame.loc["nan", "error"] == "PluginError: sig_1 (opportunity): direction at bar 17 is nan; expected -1, 0 or 1"
    # the general path reports the same failures
    general = mf.optimize(cfg, backend="sequential", progress=False)
    assert general.all_results.set_index("sig_1.fault")["error"].to_dict() == frame["error"].to_dict()


@pytest.mark.parametrize("direction, message", [
    ([0, 1, -1, 0, 0], None),
    (np.array([0, 1, np.nan, 0, 0]), "direction at bar 2 is nan; expected -1, 0 or 1"),
    (np.array([0, 0.5, 0, 0, 0]), "direction at bar 1 is 0.5; expected -1, 0 or 1"),
    (np.array([0, 1, 300, 0, 0]), "direction at bar 2 is 300; expected -1, 0 or 1"),
])
def test_signals_from_direction_keep_what_the_checks_must_see(direction, message):
    """A list is taken; floats are not cast to int8 first (NaN and 0.5 would become 0 or
    garbage before the checks could name them); an int beyond int8 is not wrapped."""
    from metaflow_nb.assembly.checks import check_signals
    from metaflow_nb.errors import PluginError
    from metaflow_nb.workers.base import Signals, get_plugin

    sma = get_plugin("sma_cross")("sma_1", get_plugin("sma_cross").Params())
    sig = Signals.from_direction(direction)
    if message is None:
        assert check_signals(sma, sig, 5)[0].tolist() == [1, 2]
    else:
        with pytest.raises(PluginError, match=re.escape(f"sma_1 (opportunity): {message}")):
            check_signals(sma, sig, 5)


def test_a_plugins_multi_line_error_keeps_what_went_wrong_in_its_one_line():
    """hunt105 F1: the one line kept an exception's first line only. A Numba error's first
    line is its pipeline header ('Failed in nopython mode pipeline (step: nopython
    frontend)'), so a plugin's own compiled kernel that did not type said nothing of why,
    and an own ValueError('a\\nb') lost 'b'."""
    import numba

    from metaflow_nb.workers.calls import exception_said

    @numba.njit
    def kernel(a):
        return a + "x"

    try:
        kernel(np.zeros(3, np.int8))
    except Exception as exc:   # noqa: BLE001 - numba's TypingError
        said = exception_said(exc)
    assert said.startswith("TypingError: No implementation of function Function(<built-in function add>) found for "
                           "signature: add(array(int8, 1d, C), Literal[str](x))"), said
    assert "Failed in" not in said and "\n" not in said
    assert exception_said(ValueError("first\n\n  second  \nthird")) == "ValueError: first / second / third"
    long = exception_said(ValueError("\n".join(["x" * 100] * 9)))
    assert len(long) <= 320 and long.endswith("...") and "\n" not in long


def test_a_stop_the_planner_does_not_declare_is_named_in_the_sizers_refusal():
    """hunt105 F2: an exit planner that sets a stop without ``provides_stop = True`` beside
    ``fixed_risk_sizer`` was refused as 'no exit planner sets a stop', while one did: the
    refusal now says which planner sets levels without the flag and what to declare."""
    bp = _sig_blueprint(exits=[{"instance_id": "x_1", "plugin": "test_odd_exit", "params": {"case": "stop"}}],
                        sizer={"instance_id": "size_1", "plugin": "fixed_risk_sizer"})
    with pytest.raises(ConfigError) as info:
        mf.build_specs(bp, h.operation(), data=h.flat_bars([100.0 + 0.1 * i for i in range(40)]))
    assert str(info.value).endswith(
        "'fixed_risk_sizer' sizes by the stop distance, but no exit planner declares a stop (a planner that sets "
        "one declares provides_stop = True; x_1 (test_odd_exit) does not)"), str(info.value)
