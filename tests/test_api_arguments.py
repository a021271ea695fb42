"""The Python verbs refuse bad keyword values as their config file and CLI do: a
ConfigError (or DataError) naming the argument, before anything runs (hunt19)."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

import metaflow_nb as mf
from metaflow_nb.errors import ConfigError, DataError

SMA_GRID = "config/optimizations/sma_grid.yaml"
WF = "config/walk_forward/fvg_walk_forward.yaml"


@pytest.fixture()
def no_runs(monkeypatch):
    """Fail the test if any backtest starts: refusals come before anything runs."""
    import metaflow_nb.services.parallel as parallel

    def boom(*a, **k):
        raise AssertionError("a run started")
    monkeypatch.setattr(parallel.ParallelRunService, "run", boom)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_combinations": 0}, "max_combinations: expected a positive whole number (got 0)"),
    ({"max_combinations": -5}, "max_combinations: expected a positive whole number (got -5)"),
    ({"max_combinations": 2.5}, "max_combinations: expected a positive whole number (got 2.5)"),
    ({"workers": 0}, "workers: expected a positive whole number (got 0)"),
    ({"workers": -1}, "workers: expected a positive whole number (got -1)"),
    ({"workers": "2"}, "workers: expected a positive whole number (got '2')"),
    ({"workers": True}, "workers: expected a positive whole number (got True)"),
    ({"resume": True}, "resume: reads the results store of out; give out= too"),
    # hunt24 L4: blamed "sma_grid.yaml: optimization_config.parallel.engine"
    ({"engine": "single"}, "engine: unknown engine 'single'; expected auto, batch or general"),
    # hunt35 F3: a TypeError and a NotADirectoryError from deep inside
    ({"out": 5}, "out: expected a folder path (got int 5)"),
    ({"out": "/dev/null"}, "out /dev/null: /dev/null is a file; expected a folder (or a path to create one)"),
])
def test_optimize_refuses_bad_keywords_naming_them(kwargs, message, no_runs):
    with pytest.raises(ConfigError) as err:
        mf.optimize(SMA_GRID, progress=False, **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("verb", ["compare_variants", "walk_forward"])
def test_the_other_meta_verbs_refuse_bad_workers(verb, no_runs):
    config = {"compare_variants": "config/variants/exit_strategy_test.yaml", "walk_forward": WF}[verb]
    with pytest.raises(ConfigError, match=r"^workers: expected a positive whole number \(got 0\)$"):
        getattr(mf, verb)(config, workers=0, progress=False)


def test_walk_forward_refuses_max_combinations_zero(no_runs):
    with pytest.raises(ConfigError, match=r"^max_combinations: expected a positive whole number \(got 0\)$"):
        mf.walk_forward(WF, max_combinations=0, progress=False)


def test_optimize_basket_has_the_documented_grid_limit_and_names_each_axis():
    from metaflow_nb.limits import MAX_COMBINATIONS
    op = {"universe": {"path": "us_stocks", "symbols": ["IBM"]}}
    space = {"sma_1": {"fast": list(range(1, 41)), "slow": list(range(50, 80))}}   # 1,200 combinations
    with pytest.raises(ConfigError) as err:
        mf.optimize_basket("config/runs/sma_cross.yaml", op, space, max_combinations=1199)
    assert "1,200 combinations (sma_1.fast 40 x sma_1.slow 30) exceed max_combinations = 1,199" in str(err.value)
    import inspect
    assert inspect.signature(mf.optimize_basket).parameters["max_combinations"].default == MAX_COMBINATIONS
    with pytest.raises(ConfigError, match=r"^max_combinations: expected a positive whole number \(got 0\)$"):
        mf.optimize_basket("config/runs/sma_cross.yaml", op, space, max_combinations=0)


def test_runs_of_a_folder_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such folder \(expected an output folder"):
        mf.runs(tmp_path / "nope")
    assert mf.runs(tmp_path).empty   # an existing folder without runs: an empty table


def test_an_optimization_over_a_basket_has_the_single_sweeps_surface():
    # README: opt.best_params, opt.best_metrics, opt.to_frame() whatever the config's operation
    opt = mf.optimize("config/optimizations/sma_basket.yaml", progress=False)
    flat = opt.best
    assert opt.best_params == {"sma_1": {"fast": flat["sma_1__fast"], "slow": flat["sma_1__slow"]}}
    assert opt.best_metrics == opt.best_result.metrics
    frame = opt.to_frame()
    assert frame.equals(opt.table) and frame is not opt.table
    single = mf.optimize("config/optimizations/sma_grid.yaml", progress=False, max_combinations=100)
    assert set(type(single).__dict__) >= {"best_params", "best_metrics", "to_frame"}


@pytest.mark.parametrize("call, message", [
    (lambda: mf.backtest(123, data="sp500_daily"), r"^strategy: expected a YAML path, a dict or a StrategyBlueprint"),
    (lambda: mf.backtest("config/runs/sma_cross.yaml", 123), r"^operation: expected a YAML path, a dict or an Operation"),
])
def test_a_strategy_or_operation_of_the_wrong_type_is_named(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_check_causality_says_when_an_operation_went_where_its_data_goes():
    with pytest.raises(ConfigError, match=r"^data: config/operations/sp500_daily.yaml is a YAML file; "
                                          r"check_causality\(strategy, data, operation\) takes the data second"):
        mf.check_causality("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")


def test_backtest_takes_the_data_keywords_build_specs_takes():
    # hunt19 F5: timeframe= was read as a worker parameter override
    res = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml", timeframe="1h",
                      intrabar="source")
    ref = mf.build_specs("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml", timeframe="1h",
                         intrabar="source")
    assert res.specs.hash == ref.hash and res.specs.data_timeframe == "1h"
    with pytest.raises(ConfigError, match=r"^timeframe=: a portfolio operation reads each instrument's data itself"):
        mf.backtest("config/runs/sma_cross.yaml", {"universe": {"path": "us_stocks", "symbols": ["IBM"]}},
                    timeframe="1w")


def test_every_verb_states_what_it_returns():
    import inspect
    for name in ("backtest", "optimize", "compare_variants", "walk_forward", "optimize_basket", "explore", "report",
                 "describe_data", "build_specs", "check_causality"):
        assert inspect.signature(getattr(mf, name)).return_annotation is not inspect.Signature.empty, name


def test_optimize_basket_on_one_instruments_operation_says_it_is_not_a_basket():
    # hunt19 F12: it read "data.source: unknown key (and 1 more problem: instrument: unknown key)"
    with pytest.raises(ConfigError, match=r"^config/operations/sp500_daily.yaml: not a basket: it lists no "
                                          r"instruments: or universe:"):
        mf.optimize_basket("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml", {"sma_1": {"fast": [5]}})


@pytest.mark.parametrize("verb", [mf.optimize, mf.compare_variants, mf.walk_forward])
def test_a_config_of_the_wrong_type_is_a_config_error_naming_it(verb):
    # hunt19 F8: TypeError from os.fspath, naming nothing
    with pytest.raises(ConfigError, match=r"^config: expected a YAML path, a dict or an? (Optimization|Variant|WalkForward)Config "
                                          r"\(got int 123\)$"):
        verb(123)


def test_unknown_plugins_plot_kinds_and_pages_are_config_errors():
    # hunt19 F8: KeyError (its message in quotes) and ValueError, outside the package's errors
    with pytest.raises(ConfigError, match=r"^unknown plugin 'nope'; known plugins: "):
        mf.suggested_space("nope")
    res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    with pytest.raises(ConfigError, match=r"^unknown plot kind 'nope'; kinds: 'equity', 'trades'$"):
        res.plot("nope")
    with pytest.raises(ConfigError, match=r"^page 9999: this run has \d+ page\(s\) of 10 trades"):
        res.plot("trades", page=9999)


def test_a_report_path_that_cannot_be_written_is_a_config_error_naming_it(tmp_path):
    # hunt19 F8: FileNotFoundError from deep inside
    res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=rf"^report: cannot write {blocker}.*: (Not a directory|File exists)"):
        res.report(blocker / "x.html")


BASKET_OP = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2012-01-01"}}
SPACE = {"sma_1": {"fast": [5, 10], "slow": [30]}}


@pytest.mark.parametrize("kwargs, message", [
    # hunt35 F2 (high): a word read as true, so "no" maximized the drawdown
    ({"maximize": "no"}, "maximize: expected True, False or None (the metric's own direction), got 'no'"),
    ({"maximize": "false"}, "maximize: expected True, False or None (the metric's own direction), got 'false'"),
    ({"maximize": 0}, "maximize: expected True, False or None (the metric's own direction), got 0"),
    # hunt35 F5: ignored without a word
    ({"resume": True}, "resume: reads the results store; give store= too"),
    # hunt35 F3: a pydantic ValidationError of several lines, a FileExistsError
    ({"constraints": {"min_trade": 5}}, "optimize_basket: constraints.min_trade: unknown key"),
    ({"store": "/etc/passwd"}, "store /etc/passwd: /etc/passwd is a file; expected a folder (or a path to create one)"),
])
def test_optimize_basket_refuses_bad_keywords_naming_them(kwargs, message):
    with pytest.raises(ConfigError) as err:
        mf.optimize_basket("config/runs/sma_cross.yaml", BASKET_OP, SPACE, **kwargs)
    assert str(err.value).split("\n")[0].startswith(message) and "\n" not in str(err.value)


def test_optimize_basket_takes_numpy_booleans_for_maximize():
    import numpy as np
    up = mf.optimize_basket("config/runs/sma_cross.yaml", BASKET_OP, SPACE, target="max_drawdown_pct",
                            maximize=np.True_)
    down = mf.optimize_basket("config/runs/sma_cross.yaml", BASKET_OP, SPACE, target="max_drawdown_pct",
                              maximize=False)
    assert up.maximize is True and down.maximize is False and up.best != down.best


def test_optimize_basket_without_an_operation_says_so():
    with pytest.raises(ConfigError, match=r"^operation: expected a basket operation"):
        mf.optimize_basket("config/runs/sma_cross.yaml", None, SPACE)


@pytest.mark.parametrize("kwargs, message", [
    # hunt35 F3: an OSError "File name too long" (the Series str()-ed into a path), a pandas
    # "truth value of a DataFrame is ambiguous", a PydanticSerializationError
    ({"data": mf.load_data("sp500_daily")["close"]}, "data: expected a sample name, a path or a pandas DataFrame "
                                                     "(got Series)"),
    ({"data": mf.load_data("sp500_daily").to_numpy()}, "data: expected a sample name, a path or a pandas DataFrame "
                                                       "(got ndarray)"),
    ({"data": "sp500_daily", "intrabar": mf.load_data("sp500_daily")},
     "intrabar: expected a finer data file (a path or a sample name) or 'source' (got DataFrame)"),
    ({"data": "sp500_daily", "sma_1__fast": object()},
     "workforce.opportunity_workers[0].params.fast: expected a number, text, true/false, null, a list or a mapping "
     "(got object)"),
    # hunt35 F7: pydantic dumped them as text, and the message said "not text (got '5')"
    ({"data": "sp500_daily", "sma_1__fast": Decimal("5")},
     "workforce.opportunity_workers[0].params.fast: expected an int or a float, not a Decimal (got Decimal('5'))"),
    ({"data": "sp500_daily", "sma_1__fast": Fraction(5, 1)},
     "workforce.opportunity_workers[0].params.fast: expected an int or a float, not a Fraction (got Fraction(5, 1))"),
    ({"data": "sp500_daily", "sma_1__fast": 5 + 0j},
     "workforce.opportunity_workers[0].params.fast: expected an int or a float, not a complex (got (5+0j))"),
])
def test_backtest_names_a_keyword_of_the_wrong_type(kwargs, message):
    with pytest.raises(ConfigError) as err:
        mf.backtest("config/runs/sma_cross.yaml", **kwargs)
    assert str(err.value).endswith(message) and "\n" not in str(err.value)


def test_data_helpers_name_a_keyword_of_the_wrong_type():
    """hunt35 F3: a TypeError from pandas and from the calendar check."""
    with pytest.raises(DataError, match=r"^sp500_daily: calendar: expected a calendar name \(got int 5\)"):
        mf.describe_data("sp500_daily", calendar=5)
    with pytest.raises(DataError, match=r"^sp500_daily: date_column: expected a column name \(got list \['x'\]\)$"):
        mf.load_data("sp500_daily", date_column=["x"])


def test_a_decimal_in_a_parameter_space_is_named_where_it_is():
    space = {"sma_1": {"fast": [Decimal("5")]}}
    with pytest.raises(ConfigError, match=r"^<parameter_space>: parameter_space\.sma_1\.fast\[0\]: expected an int "
                                          r"or a float, not a Decimal"):
        mf.optimize_basket("config/runs/sma_cross.yaml", "config/operations/us_stocks_basket.yaml", space)
    cfg = {"optimization_config": {"name": "x", "base_strategy": "config/runs/sma_cross.yaml",
                                   "base_operation": "config/operations/sp500_daily.yaml",
                                   "parameter_space": [{"worker_instance": "sma_1",
                                                        "parameters": {"fast": {"values": [Fraction(5)]}}}]}}
    with pytest.raises(ConfigError, match=r"optimization_config\.parameter_space\[0\]\.parameters\.fast\.values\[0\]: "
                                          r"expected an int or a float, not a Fraction"):
        mf.optimize(cfg, progress=False)


def test_one_param_spelled_twice_with_two_values_is_refused():
    """hunt50 F3: sma_1={"fast": 5} beside sma_1__fast=7 ran fast=7 (the kwargs' order
    decided); a sweep's parameter space refuses a param listed twice."""
    from metaflow_nb.config.overrides import parse_param_overrides
    for given in ({"sma_1": {"fast": 5}, "sma_1__fast": 7}, {"sma_1.fast": 5, "sma_1__fast": 7},
                  {"sma_1__fast": 5, "sma_1": {"fast": 7}}):
        with pytest.raises(ConfigError, match=r"sma_1\.fast is given twice \(5 and 7\)"):
            parse_param_overrides(given)
    with pytest.raises(ConfigError, match="given twice"):
        mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily", sma_1={"fast": 5}, sma_1__fast=7)
    # the same value twice says one thing
    assert parse_param_overrides({"sma_1": {"fast": 5}, "sma_1.fast": 5, "sma_1__slow": 30}) == \
        {"sma_1": {"fast": 5, "slow": 30}}


def test_meta_keywords_backend_and_workers_are_named():
    """hunt51 F6, F7: backend='Loky' blamed the config's parallel.backend, backend='' ran the
    config's backend, workers=np.int64(2) was refused (NumPy numbers count as what they
    hold) and workers=10**30 was taken."""
    import numpy as np
    cfg = "config/optimizations/sma_grid.yaml"
    for backend in ("Loky", ""):
        with pytest.raises(ConfigError, match=rf"^backend: unknown backend {backend!r}"):
            mf.optimize(cfg, backend=backend, progress=False)
    with pytest.raises(ConfigError, match=r"^workers: expected a positive whole number"):
        mf.optimize(cfg, workers=10**30, progress=False)
    with pytest.raises(ConfigError, match=r"^engine: 'batch' runs in this process"):
        mf.optimize(cfg, backend="dask", engine="batch", progress=False)
    assert mf.optimize(cfg, workers=np.int64(1), backend="sequential", engine="general", progress=False).successful_runs


def test_workers_bound_the_batch_kernels_threads(monkeypatch):
    """hunt51 F7: the batch path ran on every core whatever workers= asked (and warned of
    lowering a request it then ignored)."""
    import numba
    from metaflow_nb.services import batch
    seen = []
    real = batch.run_batch
    monkeypatch.setattr(batch, "run_batch", lambda *a, **k: (seen.append(numba.get_num_threads()), real(*a, **k))[1])
    before = numba.get_num_threads()
    mf.optimize("config/optimizations/sma_grid.yaml", workers=1, engine="batch", progress=False)
    assert seen and set(seen) == {1} and numba.get_num_threads() == before
