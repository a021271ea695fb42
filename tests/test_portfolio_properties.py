"""Properties of independent portfolios on random baskets with gaps (issue #17, acceptance 2
as far as mode independent goes): the accounts' pnl adds up to the portfolio's, no fill at
a timestamp where the instrument has no bar, equity never below zero without leverage,
and a prefix of the data replays the portfolio's equity up to its end."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaflow_nb.services.portfolio import run_portfolio
from portfolio_helpers import write_basket

STRATEGY = "config/runs/sma_cross.yaml"
FAST = {"sma_1__fast": 3, "sma_1__slow": 8}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), n_inst=st.integers(2, 3), n_days=st.integers(60, 120),
       drop=st.sampled_from([0.0, 0.1, 0.3]), cut=st.floats(0.4, 0.9))
def test_independent_portfolio_properties(seed, n_inst, n_days, drop, cut):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        own = write_basket(folder, seed, n_inst, n_days, drop)
        op = {"name": "p", "universe": {"path": str(folder)}, "cash": 1_000, "commission": 0.001}
        res = run_portfolio(STRATEGY, op, **FAST)
        eq = res.equity
        # the accounts' pnl adds up to the portfolio's
        pnl = res.breakdown()["pnl"]
        assert abs(pnl.sum() - (eq["total"].iloc[-1] - res.starting_cash)) <= 1e-9 * res.starting_cash
        assert len(res.trades) > 0  # sma 3/8 on 40+ bars always crosses
        # no fill where the instrument has no bar
        for sym, idx in own.items():
            t = res.trades[res.trades["symbol"] == sym]
            assert t["entry_time"].isin(idx).all() and t["exit_time"].isin(idx).all()
            j = res.journal[(res.journal["symbol"] == sym) & res.journal["event"].isin(["TRADE_OPENED",
                                                                                        "TRADE_CLOSED"])]
            assert j["time"].isin(idx).all()
        assert (eq[res.symbols] > 0).all().all()
        # prefix replay: the data up to a cut gives the same portfolio equity up to it
        end = res.index[int(len(res.index) * cut)]
        part = run_portfolio(STRATEGY, {**op, "data": {"end": str(end.date())}}, **FAST)
        pd.testing.assert_series_equal(part.equity["total"], eq["total"].loc[:end], check_freq=False)
