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
