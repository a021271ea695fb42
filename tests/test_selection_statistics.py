"""The selection statistics describe the sweep's own selection.

PBO's CSCV ranks the runs as the sweep does (its primary metric and goal, among the runs
that meet its constraints); a metric that daily returns cannot give falls back to the
Sharpe ratio and says so. The deflated Sharpe ratio counts distinct configurations; a
value listed twice in a parameter space is refused.
"""
from __future__ import annotations

import numpy as np
import pytest

import fault_plugins as fp
import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.errors import ConfigError
from metaflow_nb.services.significance import pbo_ranking
from metaflow_nb.services.significance import selection_verdict
from metaflow_nb.stats import pbo_cscv

SPACE = fp.sma_space([5, 10, 20], [50, 100, 150])


@pytest.mark.parametrize("metric, maximize, words", [
    ("sharpe_ratio", True, "ranked by Sharpe ratio, as the sweep selects"),
    ("total_return_pct", True, "ranked by highest total return, as the sweep selects"),
    ("cagr_pct", True, "ranked by highest CAGR, as the sweep selects"),
    ("max_drawdown_pct", False, "ranked by lowest max drawdown, as the sweep selects"),
    ("volatility_ann_pct", False, "ranked by lowest volatility (ann.), as the sweep selects"),
    ("sharpe_ratio", False, "ranked by lowest Sharpe ratio, as the sweep selects"),
    ("win_rate_pct", True, "ranked by Sharpe ratio: the sweep selects by highest win rate, which daily returns "
                           "do not give"),
])
def test_pbo_ranking_words(metric, maximize, words):
    assert pbo_ranking(metric, maximize)[1] == words


def test_pbo_rankings_order_columns_as_the_metric_does():
    """Hand-made columns: a steady gain, a deep dip that recovers, a loss."""
    m = np.array([[0.01, -0.30, -0.01], [0.01, 0.45, -0.01], [0.01, 0.0, -0.01]])
    total = pbo_ranking("total_return_pct", True)[0](m)
    assert list(np.argsort(-total)) == [0, 1, 2]  # +3.0 %, +1.5 %, -3.0 %
    assert total[0] == pytest.approx(1.01 ** 3 - 1) and total[1] == pytest.approx(0.7 * 1.45 - 1)
    dd = -pbo_ranking("max_drawdown_pct", False)[0](m)   # negated back: the drawdowns
    assert dd.tolist() == pytest.approx([0.0, 0.30, 1 - 0.99 ** 3])
    vol = -pbo_ranking("volatility_ann_pct", False)[0](m)
    assert vol[0] == pytest.approx(0.0) and vol[1] > vol[2] >= 0.0


def _sweep(tmp_path, target: dict):
    bp = fp.write_blueprint(tmp_path)
    cfg = fp.write_optimization(tmp_path, SPACE, bp, target=target)
    return mf.optimize(cfg, backend="sequential", progress=False)


def _matrix(res, rows):
    """The daily returns of ``rows`` of a sweep, as the statistics read them."""
    import pandas as pd
    from metaflow_nb.services.significance import _returns
    from metaflow_nb.services.operation import OperationService
    from metaflow_nb.config.buildspecs import specs_from_row

    svc = OperationService()
    cols = {r["run_id"]: _returns(svc.run(specs_from_row(res.base_specs, r, res.param_columns)))
            for _, r in rows.iterrows()}
    return pd.DataFrame(cols).dropna().to_numpy()


def test_pbo_of_a_drawdown_sweep_ranks_by_lowest_drawdown(tmp_path):
    res = _sweep(tmp_path, {"primary_metric": "max_drawdown_pct"})
    st = res.statistics
    assert st["pbo_ranking"] == "ranked by lowest max drawdown, as the sweep selects"
    matrix = _matrix(res, res.all_results)
    def neg_dd(m):
        path = np.cumprod(1 + m, axis=0)
        return -np.max(1 - path / np.maximum.accumulate(np.maximum(path, 1.0), axis=0), axis=0)
    assert st["pbo"] == pbo_cscv(matrix, s=16, metric=neg_dd).pbo
    assert st["pbo"] != pbo_cscv(matrix, s=16).pbo  # what ranking by Sharpe said (this data)
    assert "ranked by lowest max drawdown" in res.statistics_text()


def test_pbo_runs_over_the_runs_the_constraints_leave(tmp_path):
    res = _sweep(tmp_path, {"primary_metric": "sharpe_ratio", "constraints": {"min_trades": 60}})
    frame = res.all_results
    eligible = frame[frame["eligible"]]
    assert 2 <= len(eligible) < len(frame)
    st = res.statistics
    assert st["n_trials"] == len(frame)              # every configuration tried is a trial
    assert st["pbo_runs"] == len(eligible)           # only those the sweep could pick are ranked
    assert st["pbo"] == pbo_cscv(_matrix(res, eligible), s=16).pbo


def test_a_value_listed_twice_is_refused(tmp_path, capsys):
    bp = fp.write_blueprint(tmp_path)
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10, 5.0], [50]), bp)
    assert main(["optimize", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "parameter_space[0].parameters.fast.values: 5.0 is listed twice; expected each value once" in err


def test_a_configuration_that_never_traded_is_a_trial(tmp_path):
    """slow 5020 on 5031 bars makes no trade (no Sharpe ratio): still tried, so N counts it;
    the variance of the trials' Sharpe ratios reads the finite ones."""
    from metaflow_nb.stats import deflated_sharpe_ratio

    bp = fp.write_blueprint(tmp_path)
    res = mf.optimize(fp.write_optimization(tmp_path, fp.sma_space([5, 10], [50, 5020]), bp),
                      backend="sequential", progress=False)
    frame = res.all_results
    assert frame["sharpe_ratio"].isna().sum() == 2 and (frame["status"] == "ok").all()
    st = res.statistics
    assert st["n_trials"] == 4
    best = _matrix(res, frame.iloc[[res.best_index]])[:, 0]
    finite = frame["sharpe_ratio"].dropna().to_numpy()
    want = deflated_sharpe_ratio(best, finite, n_trials=4, periods_per_year=252.0)
    assert st["dsr"] == pytest.approx(want.dsr, rel=1e-12)
    assert st["dsr"] < deflated_sharpe_ratio(best, finite, periods_per_year=252.0).dsr  # N = 2 would flatter it


def _never_trading_sweep(tmp_path, target: dict):
    """fast 5/10 x slow 50/5020: slow 5020 on 5031 bars never trades (return and
    drawdown 0, no Sharpe ratio)."""
    bp = fp.write_blueprint(tmp_path)
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10], [50, 5020]), bp, target=target)
    return mf.optimize(cfg, backend="sequential", progress=False)


def test_pbo_ranks_every_run_the_sweep_could_pick(tmp_path):
    """Ranked by total return, a run that never traded (0 %) is no pick (hunt62 F1: a
    drawdown of 0 won a risk target), so PBO's CSCV ranks the runs that traded."""
    res = _never_trading_sweep(tmp_path, {"primary_metric": "total_return_pct"})
    frame = res.all_results
    assert (frame["eligible"] == (frame["total_trades"] > 0)).all() and frame["eligible"].sum() == 2
    st = res.statistics
    assert st["pbo_runs"] == 2
    ranking = pbo_ranking("total_return_pct", True)[0]
    assert st["pbo"] == pbo_cscv(_matrix(res, frame[frame["eligible"]]), s=16, metric=ranking).pbo


def test_minimizing_drawdown_does_not_pick_a_run_that_never_traded(tmp_path):
    """hunt62 F1: minimizing drawdown picked a run that never traded (a drawdown of 0 is no
    risk control); the pick is the best run that traded, with its deflated Sharpe ratio
    counting every run tried (those that never traded too) and PBO over the pickable ones."""
    res = _never_trading_sweep(tmp_path, {"primary_metric": "max_drawdown_pct"})
    frame = res.all_results
    assert frame.loc[res.best_index, "total_trades"] > 0
    traded = frame[frame["total_trades"] > 0]
    assert frame.loc[res.best_index, "max_drawdown_pct"] == traded["max_drawdown_pct"].min()
    st = res.statistics
    assert st["n_trials"] == 4 and st["dsr"] == st["dsr"]
    ranking = pbo_ranking("max_drawdown_pct", False)[0]
    assert st["pbo_runs"] == 2 and st["pbo"] == pbo_cscv(_matrix(res, traded), s=16, metric=ranking).pbo


@pytest.mark.parametrize("strategy, inst, param, values, same", [
    ("ict_htf_bias_strategy", "htf_bias_1", "trading_day", ["fx", "America/Chicago 17:00", " America/Chicago  17:00"],
     "' America/Chicago  17:00' is 'America/Chicago 17:00'"),
])
def test_one_value_spelled_twice_is_refused(strategy, inst, param, values, same):
    """Two spellings of one trading day made two rows with one run id: "10 runs" for 8
    trials and duplicate columns in PBO's matrix (hunt13 F7). ``utc`` and ``UTC`` (a
    keyword and an IANA zone) are one rule and one value too (hunt22 F2: the same numbers
    under two run ids). A quoted number is no spelling of it: the worker refuses it, a
    failed row (``tests/test_hardening.py``)."""
    from metaflow_nb.config.meta import parse_parameter_space

    specs = mf.build_specs(f"config/runs/{strategy}.yaml", data="eurusd_15m")
    with pytest.raises(ConfigError) as info:
        parse_parameter_space({inst: {param: values}}, specs, origin="opt.yaml")
    assert str(info.value) == (f"opt.yaml: parameter_space[0].parameters.{param}.values: {same} written "
                               "again (the same run); expected each value once")
    with pytest.raises(ConfigError, match="'UTC' is 'utc' written again"):
        parse_parameter_space({"htf_bias_1": {"trading_day": ["utc", "UTC"]}},
                              mf.build_specs("config/runs/ict_htf_bias_strategy.yaml", data="eurusd_15m"))
    # a value the worker refuses is left to its combination, a failed row
    parse_parameter_space({inst: {param: [values[0], "Mars/Olympus"]}}, specs)


def test_returns_the_statistics_compute_reach_the_store(tmp_path, monkeypatch):
    """Above RETURNS_MAX_RUNS a sweep keeps no returns; those the statistics computed after it
    were buffered in a store closed already and never written, so every --resume ran
    them again (hunt16 F5)."""
    from metaflow_nb.services import optimization as opt_mod
    from metaflow_nb.services.operation import OperationService
    from metaflow_nb.services.store import ResultsStore

    monkeypatch.setattr(opt_mod, "RETURNS_MAX_RUNS", 2)
    bp = fp.write_blueprint(tmp_path)
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10, 15, 20], [50]), bp)
    res = mf.optimize(cfg, out=tmp_path / "o", backend="sequential", progress=False)
    first = res.statistics
    store = ResultsStore(tmp_path / "o" / "store")
    kept = [k for k in store.keys() if store.get_array(k, "daily_returns") is not None]
    assert len(kept) == first["pbo_runs"] == 4
    calls = []
    real = OperationService.run
    monkeypatch.setattr(OperationService, "run", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    again = mf.optimize(cfg, out=tmp_path / "o", resume=True, backend="sequential", progress=False)
    assert again.statistics["pbo"] == first["pbo"] and calls == []


@pytest.mark.parametrize("metric, maximize", [("max_drawdown_pct", False), ("calmar_ratio", True),
                                              ("total_return_pct", True), ("cagr_pct", True),
                                              ("final_equity", True)])
def test_path_rankings_over_every_split_are_computed_in_one_pass(metric, maximize):
    """hunt45 F2: a ranking by drawdown (or Calmar, or the compounded return) called its
    numpy function on a copy of every split's half (12,870 of them): 122 s for 300 runs of
    2,520 days, paid by repr(opt), the CLI and every report. One compiled pass over every
    split's rows in time order gives the same numbers, bit for bit, as that per-split path."""
    from metaflow_nb.stats import pbo_cscv
    rng = np.random.default_rng(7)
    m = rng.normal(0.0003, 0.01, size=(1008, 60))
    m[:, 3] -= 0.002
    ranked = pbo_ranking(metric, maximize)[0]
    assert callable(getattr(ranked, "splits", None))
    fast = pbo_cscv(m, metric=ranked)
    slow = pbo_cscv(m, metric=lambda x: ranked(x))   # no .splits: the per-split path
    for field in ("pbo", "prob_oos_loss"):
        assert getattr(fast, field) == getattr(slow, field)
    for field in ("logits", "is_perf", "oos_perf", "best_index", "oos_rank"):
        np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field))


@pytest.mark.parametrize("config", ["config/optimizations/sma_grid.yaml", "config/optimizations/optimize_fvg_params.yaml"])
def test_a_batch_sweeps_statistics_take_every_runs_returns_from_one_batch_call(config, monkeypatch):
    """hunt45 F3: the statistics re-ran every run the sweep could pick one at a time, as a
    whole backtest with trades and journal (10.4 s after a 1.2 s sweep of 1,976
    combinations). A batch sweep's runs give their daily returns from one batch call, the
    same numbers as the single runs (the statistics equal, value for value)."""
    from metaflow_nb.services import significance
    from metaflow_nb.services.operation import OperationService

    res = mf.optimize(config, engine="batch", progress=False)
    assert res.engine == "batch"
    calls = []
    real = OperationService.run
    monkeypatch.setattr(OperationService, "run", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    fast = significance.optimization_statistics(res)
    assert calls == []   # not one run by itself
    monkeypatch.setattr(significance, "_swept_returns", lambda result, rows: {})   # the per-run path
    slow = significance.optimization_statistics(res)
    assert len(calls) >= slow["pbo_runs"] > 2   # every run alone (the best one twice)
    for key in ("n_trials", "dsr", "psr", "pbo", "pbo_prob_oos_loss", "pbo_runs", "days", "skew", "kurtosis"):
        a, b = fast[key], slow[key]
        assert a == b or (a != a and b != b), (key, a, b)
    np.testing.assert_array_equal(fast["_pbo_result"].logits, slow["_pbo_result"].logits)


@pytest.mark.parametrize("values, said", [
    (["5", 10, 20], "values[0]: expected a number, not text (got '5')"),
    ([5, 10, 2.5], "values[2]: "),
    ([5, 0, 20], "values[1]: must be > 0"),
    ([True, 10], "values[0]: expected a number, not a boolean"),
])
def test_a_value_the_parameter_refuses_whatever_the_others_are_is_a_config_error(values, said):
    """hunt64 F2: '"5"' in a values list (for an integer) ran its combinations as failed
    rows, exit 0, the best picked from the rest. A value of the wrong type, or outside the
    parameter's own bounds, is refused before anything runs, naming its place; one that only
    a check of several parameters refuses (fast below slow) stays a failed row."""
    from metaflow_nb.config.meta import parse_parameter_space

    specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    with pytest.raises(ConfigError) as info:
        parse_parameter_space({"sma_1": {"fast": values}}, specs, origin="opt.yaml")
    assert str(info.value).startswith(f"opt.yaml: parameter_space[0].parameters.fast.{said}"), str(info.value)
    parse_parameter_space({"sma_1": {"fast": [5, 30]}}, specs)   # fast 30 >= slow 20: a failed row, not refused


def test_a_value_a_plugins_own_validator_refuses_with_the_base_is_left_to_its_combination():
    """hunt66 F2: a plugin whose validator of 'slow' reads 'fast' refused a grid value up
    front for the base's fast, which the grid replaces: every combination was valid."""
    from pydantic import ValidationInfo, field_validator

    from metaflow_nb.config.meta import parse_parameter_space
    from metaflow_nb.workers.base import OpportunityWorker, Params, Signals, param, register

    class PairParams(Params):
        fast: int = param(30, gt=0)
        slow: int = param(40, gt=0)

        @field_validator("slow")
        @classmethod
        def _above_fast(cls, v: int, info: ValidationInfo) -> int:
            if v <= info.data.get("fast", 0):
                raise ValueError(f"expected a number above fast ({info.data['fast']})")
            return v

    @register
    class PairCross(OpportunityWorker):
        name = "h66_pair_cross"
        Params = PairParams

        def detect(self, ctx):
            return Signals.from_direction(np.zeros(ctx.n, np.int8))

    bp = {"name": "p", "workforce": {"opportunity_workers": [
        {"instance_id": "p_1", "plugin": "h66_pair_cross", "params": {"fast": 30, "slow": 40}}]}}
    specs = mf.build_specs(bp, data="sp500_daily")
    axes = parse_parameter_space({"p_1": {"fast": [5, 10], "slow": [20, 25]}}, specs)
    assert [a[:2] for a in axes] == [("p_1", "fast"), ("p_1", "slow")]
    with pytest.raises(ConfigError, match=r"slow\.values\[0\]: must be > 0"):
        parse_parameter_space({"p_1": {"slow": [0, 50]}}, specs)


def test_identical_runs_are_one_configuration_for_pbo(tmp_path):
    """hunt73 F1: two stops that never fire make two identical runs; CSCV ranked the tie at
    the median every time and called it overfit (PBO 1.00, a verdict). Runs with the same
    daily returns are one configuration: with one left, no PBO; else it ranks the distinct."""
    import yaml

    def sweep(stops, fast=(5,)):
        space = [{"worker_instance": "sma_1", "parameters": {"fast": list(fast), "slow": [30]}},
                 {"worker_instance": "stops_1", "parameters": {"stop_loss_pct": list(stops)}}]
        cfg = tmp_path / "opt.yaml"
        cfg.write_text(yaml.safe_dump({"optimization_config": {
            "name": "o", "base_strategy": str(fp.ROOT / "config/runs/sma_cross_long_stops.yaml"),
            "base_operation": str(fp.ROOT / "config/operations/sp500_daily.yaml"), "parameter_space": space}}))
        return mf.optimize(cfg, backend="sequential", progress=False)

    st = sweep([80.0, 90.0]).statistics
    assert "pbo" not in st
    assert st["pbo_note"] == "PBO skipped: the 2 runs it could rank have the same daily returns (one configuration; it needs 2 that differ)"
    res = sweep([80.0, 90.0], fast=(5, 10))
    st = res.statistics
    assert st["pbo_runs"] == 2 and st["pbo_identical_runs"] == 2
    distinct = res.all_results[res.all_results["stops_1.stop_loss_pct"] == 80.0]
    assert st["pbo"] == pbo_cscv(_matrix(res, distinct), s=16).pbo
    assert "2 runs with another's daily returns counted once" in res.statistics_text()
    rows = dict(selection_verdict(st)["rows"])   # the report pages' words (hunt74 F5)
    assert "2 runs with another's daily returns counted once" in rows["Probability of backtest overfitting"]


def test_runs_that_differ_by_rounding_alone_are_one_configuration():
    """hunt74 F4: two runs alike but for 1 ulp on one day were two configurations, and
    CSCV's arbitrary pick between them read PBO 0.996."""
    from metaflow_nb.stats import distinct_columns

    rng = np.random.default_rng(4)
    a = rng.normal(0, 0.01, 2000)
    b = a.copy()
    b[700] = np.nextafter(b[700], 1.0)
    assert distinct_columns(np.c_[a, b]).tolist() == [0]
    assert distinct_columns(np.c_[a, a + 1e-6]).tolist() == [0, 1]
    # alike is relative: tiny returns (a small position on a large account) that differ are two runs
    assert distinct_columns(np.c_[a * 1e-13, a * 1.001e-13]).tolist() == [0, 1]
    # hunt75 F3: a flat day's 0.0 against 1e-16 (an ulp of equity the day before), and twins
    # drifting by a few ulps every day, are one run too
    flat = a.copy()
    flat[::3] = 0.0
    noisy = flat.copy()
    noisy[3] = -1.1e-16
    drift = a * (1 + rng.integers(-4, 5, a.size) * 2.2e-16)
    assert distinct_columns(np.c_[flat, noisy]).tolist() == [0]
    assert distinct_columns(np.c_[a, drift, flat]).tolist() == [0, 2]


def test_statistics_say_why_there_is_no_deflated_sharpe_ratio(tmp_path):
    """hunt114 F2: four successful runs none of which met the constraints, and a sweep of one
    configuration, both said "needs a best run and at least 2 successful runs"; the one run's
    Probabilistic Sharpe Ratio (any run has one) was left out."""
    from metaflow_nb.engine.metrics import daily_returns
    from metaflow_nb.stats import psr_from_returns

    bp = fp.write_blueprint(tmp_path)
    none = mf.optimize(fp.write_optimization(tmp_path, fp.sma_space([5, 10], [50, 60]), bp,
                                             target={"primary_metric": "sharpe_ratio",
                                                     "constraints": {"min_trades": 100_000}}),
                       backend="sequential", progress=False)
    assert none.best_index is None and none.statistics["n_trials"] == 4
    assert none.statistics["note"] == "no deflated Sharpe ratio: no run met the target's constraints (no best run)"
    one = mf.optimize(fp.write_optimization(tmp_path, fp.sma_space([10], [50]), bp), backend="sequential",
                      progress=False)
    st = one.statistics
    assert st["note"] == "no deflated Sharpe ratio: one configuration was tried (it needs at least 2)"
    run = mf.backtest(bp, fp.SP500_OPERATION, sma_1__fast=10, sma_1__slow=50)
    assert st["psr"] == psr_from_returns(daily_returns(run.equity, run.specs.cash, "exchange").to_numpy())
