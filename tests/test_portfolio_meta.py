"""Grid search over a basket (issue #17 part 4, first step): every row is the portfolio run
of its combination, per-instrument rows are the single runs, deflated Sharpe ratios pay
for every trial."""
from __future__ import annotations

import pytest

import metaflow_nb as mf
from metaflow_nb.data.basket import basket_files
from metaflow_nb.errors import ConfigError
from metaflow_nb.services.portfolio import run_portfolio
from metaflow_nb.services.portfolio_meta import optimize_basket
from metaflow_nb.stats.sharpe import psr_from_returns
from metaflow_nb.engine.metrics import daily_returns

STRATEGY = "config/runs/sma_cross.yaml"
OP = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2008-01-01"}}
SPACE = {"sma_1": {"fast": [5, 10, 20], "slow": [40]}}


@pytest.fixture(scope="module")
def opt():
    return optimize_basket(STRATEGY, OP, SPACE)


def test_rows_are_the_runs_of_their_combinations(opt):
    assert opt.total_runs == 3 and len(opt.per_instrument) == 6
    # best first, as pandas orders the table's target
    assert opt.table["sharpe_ratio"].is_monotonic_decreasing
    for _, row in opt.table.iterrows():
        res = run_portfolio(STRATEGY, OP, sma_1__fast=int(row["sma_1.fast"]), sma_1__slow=40)
        assert res.metrics == {k: row[k] for k in res.metrics}
    best = opt.best
    assert best == {"sma_1__fast": int(opt.table["sma_1.fast"].iloc[0]), "sma_1__slow": 40}
    # a symbol's row is that symbol's single run with those parameters
    row = opt.per_instrument[(opt.per_instrument["symbol"] == "MSFT") & (opt.per_instrument["sma_1.fast"] == 10)]
    single = mf.backtest(STRATEGY, {"data": {"source": str(basket_files("us_stocks")["MSFT"]), "start": "2008-01-01"},
                                    "instrument": {"symbol": "MSFT", "pip_size": 0.01}}, sma_1__fast=10, sma_1__slow=40)
    assert row.iloc[0]["total_return_pct"] == single.metrics["total_return_pct"]


def test_deflated_sharpe_pays_for_the_trials(opt):
    picks = opt.best_per_instrument()
    assert list(picks.index) == ["IBM", "MSFT"]
    for sym, pick in picks.iterrows():
        mine = opt.per_instrument[opt.per_instrument["symbol"] == sym]
        assert pick["sharpe_ratio"] == mine["sharpe_ratio"].max()
        res = run_portfolio(STRATEGY, OP, sma_1__fast=int(pick["sma_1.fast"]), sma_1__slow=40).results[sym]
        r = daily_returns(res.equity, 10_000, None)
        plain = psr_from_returns(r.to_numpy())  # P[SR > 0] without any selection
        assert pick["deflated_sharpe"] < plain
    assert 0 <= opt.best_dsr <= 1


def test_bad_input():
    with pytest.raises(ConfigError, match="target: unknown metric 'sharp'"):
        optimize_basket(STRATEGY, OP, SPACE, target="sharp")
    shared = optimize_basket(STRATEGY, {**OP, "mode": "portfolio"}, {"sma_1": {"fast": [5], "slow": [40]}})
    assert shared.per_instrument is None
    with pytest.raises(ConfigError, match="no per-instrument runs"):
        shared.best_per_instrument()


def test_trials_are_the_combinations_that_ran_as_in_a_single_sweep():
    """A combination the strategy refuses (fast == slow) is a failed row, not a trial: the
    deflated Sharpe ratios count the combinations that ran, as a single sweep's do."""
    from metaflow_nb.services.portfolio_meta import _deflated, _dsr
    from metaflow_nb.engine.metrics import periods_per_year

    opt = optimize_basket(STRATEGY, OP, {"sma_1": {"fast": [5, 10, 40], "slow": [40]}})
    assert opt.total_runs == 3 and opt.successful_runs == 2
    assert opt.statistics["n_trials"] == 2
    res = opt.best_result
    cal = res.instrument_specs()[0].data_calendar
    expected = _deflated(daily_returns(res.equity["total"], res.starting_cash, cal),
                         opt.table["sharpe_ratio"].to_numpy(float), 2, periods_per_year(res.index, cal))
    assert opt.best_dsr == expected.dsr
    per = opt.per_instrument
    assert len(per) == 4
    for sym, pick in opt.best_per_instrument().iterrows():
        single = mf.backtest(STRATEGY, {"data": {"source": str(basket_files("us_stocks")[sym]), "start": "2008-01-01"},
                                        "instrument": {"symbol": sym, "pip_size": 0.01}},
                             sma_1__fast=int(pick["sma_1.fast"]), sma_1__slow=40)
        want = _dsr(daily_returns(single.equity, single.specs.cash, single.specs.data_calendar),
                    per["sharpe_ratio"].to_numpy(float), 4, periods_per_year(single.equity.index,
                                                                             single.specs.data_calendar))
        assert pick["deflated_sharpe"] == want


def test_a_combination_that_never_traded_is_not_picked():
    """hunt62 F1: minimising the drawdown (or volatility) picked a combination that never
    traded: its drawdown of 0 is no risk control, as a variant without trades wins no
    drawdown row. It is not eligible, on one instrument and on a basket."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(5)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.005, 300)))
    o = np.r_[100.0, c[:-1]]
    bars = mf.load_data(pd.DataFrame({"open": o, "high": np.maximum(o, c) * 1.001, "low": np.minimum(o, c) * 0.999,
                                      "close": c, "volume": 1.0},
                                     index=pd.bdate_range("2020-01-01", periods=300, name="time")))
    space = [{"worker_instance": "sma_1", "parameters": {"fast": [5], "slow": [20, 30, 400]}}]
    for metric in ("max_drawdown_pct", "volatility_ann_pct"):
        opt = mf.optimize({"name": "o", "base_strategy": STRATEGY, "parameter_space": space,
                           "base_operation": {"name": "syn", "cash": 10000, "commission": 0.001,
                                              "data": {"calendar": "exchange"}},
                           "optimization_target": {"primary_metric": metric}}, data=bars, progress=False)
        frame = opt.all_results.set_index("sma_1.slow")
        assert frame.loc[400, "total_trades"] == 0 and not frame.loc[400, "eligible"]
        assert opt.best_params["sma_1"]["slow"] != 400 and opt.best_metrics["total_trades"] > 0
        assert opt.message == "2 of 3 runs eligible"
    never = mf.optimize({"name": "o", "base_strategy": STRATEGY, "parameter_space": [
        {"worker_instance": "sma_1", "parameters": {"fast": [5], "slow": [400, 500]}}],
        "base_operation": {"name": "syn", "cash": 10000, "data": {"calendar": "exchange"}},
        "optimization_target": {"primary_metric": "max_drawdown_pct"}}, data=bars, progress=False)
    assert never.best_params is None   # hunt63 F6: it said no run 'has a max_drawdown_pct', which all had
    assert never.message == "no successful run traded (2 runs, no trade in any): a run without trades is no pick"
    basket = optimize_basket(STRATEGY, {**OP, "data": {"start": "2012-06-01", "end": "2013-03-01"}},
                             {"sma_1": {"fast": [5], "slow": [20, 400]}}, target="max_drawdown_pct")
    assert basket.best_params == {"sma_1": {"fast": 5, "slow": 20}}
    assert basket.table.set_index("sma_1.slow").loc[400, "eligible"] == False  # noqa: E712


def test_a_basket_without_an_eligible_combination_has_no_best_and_no_verdict():
    """hunt62 F2: a basket sweep where no combination met the constraints still gave a best
    (--json, optimization.json), its metrics, a deflated Sharpe ratio 'significant' and the
    verdict 'Survives selection' on the report; one instrument gives none of them."""
    from metaflow_nb.services.significance import selection_verdict

    opt = optimize_basket(STRATEGY, OP, SPACE, constraints={"min_trades": 100000})
    d, st = opt.to_dict(), opt.statistics
    assert opt.best_params is None and d["best_params"] is None and d["best_metrics"] is None
    assert "dsr_significant" not in st and st["dsr"] != st["dsr"]   # NaN
    assert "no combination" in st["note"]
    assert not selection_verdict(st)["headline"].startswith("Survives")
    assert "deflated Sharpe" not in repr(opt).splitlines()[0] and "best None" in repr(opt).splitlines()[0]


def test_a_basket_walk_forward_without_a_pick_counts_only_the_combinations_that_ran():
    """hunt62 F3: with no window picking, the trials per window counted the refused
    combinations too (2 instead of 1), unlike one instrument and the README."""
    cfg = {"name": "t", "base_strategy": STRATEGY, "base_operation": OP,
           "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": [5, 60], "slow": [50]}}],
           "optimization_target": {"primary_metric": "sharpe_ratio", "constraints": {"min_trades": 100000}},
           "windows": {"in_sample_bars": 504, "out_of_sample_bars": 252}}
    wf = mf.walk_forward(cfg, progress=False)
    assert (wf.windows["status"] != "ok").all()
    assert wf.trials_per_window == 1


def test_a_basket_sweep_that_never_traded_says_so():
    """hunt66 F3: 'no combination satisfies the constraints (or has a max_drawdown_pct)',
    with no constraint given and every drawdown 0: nothing traded."""
    opt = optimize_basket(STRATEGY, {**OP, "data": {"start": "2012-06-01", "end": "2013-03-01"}},
                          {"sma_1": {"fast": [5], "slow": [400, 500]}}, target="max_drawdown_pct")
    assert opt.message.startswith("no combination traded (2 combinations, no trade in any)")
    assert opt.best_params is None
