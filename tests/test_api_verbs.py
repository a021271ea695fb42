"""One API (#20 part 5): every meta verb takes a path, a dict or a model, data as a sample
name, a path or a DataFrame, and ``engine=``; the explorer refuses values its controls
cannot show. Each input form is checked against the same run made another way (a YAML
file, ``mf.backtest`` on the same bars), not against stored numbers.
"""
from __future__ import annotations

import copy

import pandas as pd
import pytest

import metaflow_nb as mf
from metaflow_nb.errors import ConfigError

ROOT_STRATEGY = "config/runs/sma_cross.yaml"
ROOT_OPERATION = "config/operations/sp500_daily.yaml"
SPACE = [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10], "slow": {"start": 30, "end": 40, "step": 10}}}]
QUIET = {"progress": False}


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return mf.load_data("sp500_daily")[-600:]


@pytest.fixture(scope="module")
def raw_bars(bars) -> pd.DataFrame:
    """The same bars as a user's own frame: capitalised columns, no attributes."""
    frame = pd.DataFrame({c.capitalize(): bars[c].to_numpy() for c in bars.columns}, index=bars.index)
    return frame


def _opt_body(**extra):
    return {"name": "sma grid", "base_strategy": ROOT_STRATEGY, "base_operation": ROOT_OPERATION,
            "parameter_space": copy.deepcopy(SPACE), **extra}


def _metrics(res, fast, slow):
    frame = res.to_frame()
    row = frame[(frame["sma_1.fast"] == fast) & (frame["sma_1.slow"] == slow)].iloc[0]
    return row


@pytest.fixture(scope="module")
def opt_dict_frame(raw_bars):
    return mf.optimize(_opt_body(), data=raw_bars, engine="general", backend="sequential", **QUIET)


def test_optimize_dict_and_dataframe_match_backtests_on_the_same_bars(opt_dict_frame, raw_bars):
    res = opt_dict_frame
    assert res.total_runs == 4 and res.successful_runs == 4 and res.engine == "general"
    assert list(res.to_frame()["sma_1.slow"]) == [30, 40, 30, 40]  # whole numbers stay whole
    one = mf.backtest(ROOT_STRATEGY, ROOT_OPERATION, data=raw_bars, sma_1={"fast": 5, "slow": 40})
    row = _metrics(res, 5, 40)
    assert row["run_id"] == one.run_id
    assert row["total_return_pct"] == pytest.approx(one.metrics["total_return_pct"], abs=0, rel=0)
    assert row["total_trades"] == one.metrics["total_trades"]


def test_optimize_engine_batch_agrees_with_general_and_says_so(opt_dict_frame, bars):
    # the wrapped form {optimization_config: body}, data as an already loaded frame
    res = mf.optimize({"optimization_config": _opt_body()}, data=bars, engine="batch", **QUIET)
    assert res.engine == "batch"
    cols = ["sma_1.fast", "sma_1.slow", "total_return_pct", "sharpe_ratio", "total_trades", "run_id"]
    pd.testing.assert_frame_equal(res.to_frame()[cols], opt_dict_frame.to_frame()[cols])


def test_optimize_model_sample_name_and_bad_engine(tmp_path):
    from metaflow_nb.config.meta import OptimizationConfig
    model = OptimizationConfig.model_validate(_opt_body(parameter_space=[
        {"worker_instance": "sma_1", "parameters": {"fast": {"start": 5, "end": 10, "step": 5}}}]))
    res = mf.optimize(model, data="sp500_daily", engine="batch", **QUIET)
    assert list(res.to_frame()["sma_1.fast"]) == [5, 10]
    yaml_file = tmp_path / "opt.yaml"
    import yaml
    yaml_file.write_text(yaml.safe_dump({"optimization_config": model.model_dump(mode="json")}))
    from_file = mf.optimize(str(yaml_file), engine="batch", **QUIET)
    assert list(from_file.to_frame()["run_id"]) == list(res.to_frame()["run_id"])
    with pytest.raises(ConfigError, match=r"^engine: unknown engine 'fast'"):   # the keyword, not the config
        mf.optimize(_opt_body(), engine="fast", **QUIET)
    with pytest.raises(ConfigError, match=r"optimization_config\.base_strategy"):
        mf.optimize(_opt_body(base_strategy=3), **QUIET)


def test_optimize_inline_blueprint_and_strategy_override(bars):
    import yaml
    blueprint = yaml.safe_load(open(ROOT_STRATEGY))
    inline = mf.optimize(_opt_body(base_strategy=blueprint), data=bars, engine="batch", **QUIET)
    override = mf.optimize(_opt_body(base_strategy="config/runs/does_not_matter.yaml"), strategy=blueprint,
                           data=bars, engine="batch", **QUIET)
    assert list(inline.to_frame()["total_return_pct"]) == list(override.to_frame()["total_return_pct"])


VARIANTS = {"name": "fast vs slow", "base_strategy": ROOT_STRATEGY, "base_operation": ROOT_OPERATION,
            "variants": [{"name": "fast", "overrides": {"workforce": {"opportunity_workers": [
                              {"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 5, "slow": 20}}]}}},
                         {"name": "slow", "overrides": {"workforce": {"opportunity_workers": [
                              {"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 20, "slow": 50}}]}}}]}


def test_compare_variants_dict_and_dataframe(raw_bars):
    cmp = mf.compare_variants(VARIANTS, data=raw_bars, engine="general", backend="sequential", **QUIET)
    assert [v.name for v in cmp.variants] == ["fast", "slow"] and all(v.ok for v in cmp.variants)
    assert cmp.config_path is None  # no file: Export Report has nothing to run
    one = mf.backtest(ROOT_STRATEGY, ROOT_OPERATION, data=raw_bars, sma_1={"fast": 20, "slow": 50})
    slow = cmp.results["slow"]
    assert slow.run_id == one.run_id and len(slow.equity) == len(raw_bars)
    assert slow.metrics["total_return_pct"] == one.metrics["total_return_pct"]
    with pytest.raises(ConfigError, match=r"engine 'batch'.*expected auto or general"):
        mf.compare_variants(VARIANTS, data=raw_bars, engine="batch", **QUIET)


def test_walk_forward_dict_dataframe_and_engine(bars):
    body = {"name": "sma wf", "base_strategy": ROOT_STRATEGY, "base_operation": ROOT_OPERATION,
            "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10]}}],
            "windows": {"in_sample_bars": 300, "out_of_sample_bars": 150}}
    batch = mf.walk_forward(body, data=bars, engine="batch", **QUIET)
    general = mf.walk_forward({"walk_forward_config": body}, data=bars, engine="general", backend="sequential",
                              **QUIET)
    assert len(batch.windows) == 2 and list(batch.windows["status"]) == ["ok", "ok"]
    cols = ["window", "sma_1.fast", "is_score", "oos_total_return_pct", "oos_run_id"]
    pd.testing.assert_frame_equal(batch.windows[cols], general.windows[cols])
    # the first window's chosen parameters, run by hand on its in-sample bars, score what it says
    w = batch.windows.iloc[0]
    is_run = mf.backtest(ROOT_STRATEGY, ROOT_OPERATION, data=bars.iloc[:300], sma_1__fast=int(w["sma_1.fast"]))
    assert w["is_score"] == pytest.approx(is_run.metrics["sharpe_ratio"], rel=1e-12)
    with pytest.raises(ConfigError, match="dask"):
        mf.walk_forward(body, data=bars, engine="batch", backend="dask", **QUIET)


def test_explorer_refuses_values_its_controls_cannot_show():
    ex = mf.explore(ROOT_STRATEGY, data="sp500_daily",
                    parameter_space={"sma_1": {"fast": {"start": 5, "end": 15, "step": 5}, "slow": [20, 40]}})
    try:
        before = ex.current_params()
        with pytest.raises(ConfigError, match=r"sma_1\.fast: 55 is outside the control's range 5\.\.15 \(step 5\)"):
            ex.set_params({"sma_1.fast": 55, "sma_1.slow": 40})
        with pytest.raises(ConfigError, match=r"sma_1\.slow: 30 is not one of the control's options \(20, 40\)"):
            ex.set_params({"sma_1.slow": 30})
        with pytest.raises(ConfigError, match=r"sma_1\.fast: expected a whole number"):
            ex.set_params(sma_1__fast=7.5)
        assert ex.current_params() == before  # nothing moved, not even the valid one
    finally:
        ex.close()


def test_explorer_float_values_off_the_slider_grid_are_refused_not_rounded():
    """The run shown is the run asked for: a value between a FloatSlider's steps was held by
    the control but run rounded (another run id than ``mf.backtest`` with the same value)."""
    space = {"size_1": {"risk_pct": {"start": 0.25, "end": 2.0, "step": 0.25}}}
    ex = mf.explore("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml",
                    parameter_space=space, background=False, run=False)
    try:
        with pytest.raises(ConfigError, match=r"size_1\.risk_pct: 0\.3333333 is between the control's steps "
                                              r"0\.25\.\.2 \(step 0\.25\); nearest 0\.25 or 0\.5"):
            ex.set_params({"size_1.risk_pct": 0.3333333})
        ex.set_params({"size_1.risk_pct": 0.7 - 0.2})  # 0.49999999999999994: on the grid but for float noise
        assert ex.last_params == {"size_1.risk_pct": 0.5}
        ref = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml",
                          size_1__risk_pct=0.5)
        assert ex.last_result.run_id == ref.run_id
    finally:
        ex.close()


def test_a_slice_of_loaded_bars_is_named_by_its_own_bars(bars):
    # pandas carries attrs into slices: before, bars[-600:] ran under the whole sample's run id
    whole = mf.backtest(ROOT_STRATEGY, ROOT_OPERATION, data=mf.load_data("sp500_daily"))
    part = mf.backtest(ROOT_STRATEGY, ROOT_OPERATION, data=bars)
    fresh = bars.copy()
    fresh.attrs = {}
    assert part.run_id != whole.run_id
    assert part.run_id == mf.backtest(ROOT_STRATEGY, ROOT_OPERATION, data=fresh).run_id


def test_explorer_reset_restores_a_start_off_the_slider_grid_and_takes_numpy_numbers():
    """A float start the grid does not hold (the blueprint's 0.75 on 0.1, 0.35, 0.6 ...) or
    a range end that is no step: reset goes back to it (it refused it before, and the
    button did nothing); set_params takes the NumPy numbers an optimization table holds."""
    import numpy as np

    ict = ("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml")
    for spec, start in (({"start": 0.1, "end": 2.0, "step": 0.25}, 0.75), ({"start": 0.1, "end": 0.5, "step": 0.25}, 0.5)):
        ex = mf.explore(*ict, parameter_space={"size_1": {"risk_pct": spec}}, background=False, run=False)
        try:
            assert ex.current_params() == {"size_1.risk_pct": start}
            ex.set_params({"size_1.risk_pct": 0.35})
            ex.reset()
            assert ex.current_params() == {"size_1.risk_pct": start} and ex.last_params == {"size_1.risk_pct": start}
            ex.set_params({"size_1.risk_pct": start})  # the start, set by hand: held as reset holds it
            if spec["end"] == 0.5:
                with pytest.raises(ConfigError, match=r"0\.45 is between the control's steps .*; nearest 0\.35 or 0\.5$"):
                    ex.set_params({"size_1.risk_pct": 0.45})   # the end is the slider's last position
        finally:
            ex.close()
    ex = mf.explore(ROOT_STRATEGY, data="sp500_daily", parameter_space={"sma_1": {"fast": {"start": 5, "end": 15, "step": 5}}},
                    background=False)
    try:
        ex.set_params({"sma_1.fast": np.int64(10)})
        assert ex.last_params == {"sma_1.fast": 10} and type(ex.controls["sma_1.fast"].value) is int
        ex.set_params({"sma_1.fast": np.float64(15.0)})
        assert ex.last_params == {"sma_1.fast": 15}
    finally:
        ex.close()


def test_explorer_labels_tell_close_values_apart():
    from metaflow_nb.notebook.explore import make_control
    ctl = make_control("risk_pct", {"values": [0.5, 0.75, 1.0000001, 1.0000004, 2.0]}, 0.5)
    assert [label for label, _ in ctl.options] == ["0.5", "0.75", "1.0000001", "1.0000004", "2"]
    ctl = make_control("x", {"values": [0.0012345671, 0.0012345674]}, None)
    assert [label for label, _ in ctl.options] == ["0.0012345671", "0.0012345674"]


@pytest.mark.parametrize("verb, body", [
    (mf.optimize, {"parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10]}}]}),
    (mf.walk_forward, {"parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10]}}],
                       "windows": {"in_sample_bars": 1000, "out_of_sample_bars": 500}}),
    (mf.compare_variants, {"variants": [{"name": "a"}, {"name": "b", "overrides": {"direction": "long_only"}}]}),
])
def test_the_keywords_stand_in_for_the_base_strategy_and_operation(verb, body):
    # hunt24 L8: the docstrings say strategy=/operation= replace the config's base ones, but
    # a dict without base_strategy/base_operation was refused before they were read
    res = verb({"name": "kw", **body}, strategy="config/runs/sma_cross.yaml",
               operation="config/operations/sp500_daily.yaml", **QUIET)
    assert res is not None
    with pytest.raises(ConfigError, match=r"\.base_strategy: required key is missing \(or give strategy=\)"):
        verb({"name": "kw", **body}, operation="config/operations/sp500_daily.yaml", **QUIET)
    with pytest.raises(ConfigError, match=r"\.base_operation: required key is missing \(or give operation=\)"):
        verb({"name": "kw", **body}, strategy="config/runs/sma_cross.yaml", **QUIET)
