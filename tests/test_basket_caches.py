"""A basket's feature caches outlive its run (services.operation.OperationService.basket_caches):
the next run on the same instruments (a notebook sweeping again, the portfolio explorer's
next change) finds their indicators, within BASKET_CACHE_BYTES; the results are the same."""
from __future__ import annotations

import numpy as np

import metaflow_nb.engine.nb.indicators as ind
import metaflow_nb.services.operation as operation
from metaflow_nb.services.basket_sweep import sweep_basket
from metaflow_nb.services.operation import OperationService
from metaflow_nb.services.portfolio import run_portfolio

OP = {"mode": "portfolio", "max_positions": 2, "universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT", "AAPL"]},
      "data": {"start": "2012-01-01"}}
STRATEGY = "config/runs/sma_cross.yaml"
COMBOS = [{"sma_1": {"fast": 5}}, {"sma_1": {"fast": 8}}]


def _count_averages(monkeypatch) -> list[str]:
    calls: list[str] = []
    for name in ("sma", "sma_many", "sma_many_parallel"):
        fn = getattr(ind, name)
        monkeypatch.setattr(ind, name, lambda *a, fn=fn, name=name: calls.append(name) or fn(*a))
    return calls


def test_a_sweep_over_the_same_basket_again_reads_its_averages(monkeypatch):
    calls = _count_averages(monkeypatch)
    first = sweep_basket(STRATEGY, OP, COMBOS)
    calls.clear()
    again = sweep_basket(STRATEGY, OP, COMBOS)
    assert calls == []
    np.testing.assert_array_equal(again.portfolio, first.portfolio)
    # past the budget nothing is kept: the next sweep computes them again, the same rows
    monkeypatch.setattr(operation, "BASKET_CACHE_BYTES", 0)
    sweep_basket(STRATEGY, OP, COMBOS)
    calls.clear()
    third = sweep_basket(STRATEGY, OP, COMBOS)
    assert calls
    np.testing.assert_array_equal(third.portfolio, first.portfolio)


def test_a_portfolio_run_keeps_the_last_baskets_caches_only(monkeypatch):
    calls = _count_averages(monkeypatch)
    svc = OperationService(feature_cache_size=1)
    first = run_portfolio(STRATEGY, OP, service=svc).metrics
    calls.clear()
    assert run_portfolio(STRATEGY, OP, service=svc, sma_1__fast=5).metrics != first
    assert set(calls) <= {"sma"} and len(calls) == 3  # fast 5 is new on each instrument, slow 20 is kept
    other = {**OP, "universe": {"path": "us_stocks", "symbols": ["IBM", "GOOG"]}}
    run_portfolio(STRATEGY, other, service=svc)
    calls.clear()
    assert run_portfolio(STRATEGY, OP, service=svc).metrics == first
    assert len(calls) == 4  # MSFT and AAPL, two averages each: only the last basket's caches are kept


def test_each_wave_finds_no_group_of_the_waves_before(monkeypatch):
    """A wave's groups go once it is packed, so the next wave reuses their memory (W7: ~230
    MB of setups kept to the end of the sweep before); the rows are the same."""
    import metaflow_nb.services.basket_sweep as bs

    seen = []
    plan = bs._plan_wave
    monkeypatch.setattr(bs, "WAVE", 4)  # waves of 1, then 4 combinations

    def counted(wave, specs, bars, caches, *rest):
        seen.append(sum(isinstance(k, tuple) and k[:1] == ("__group__",) for c in caches for k in c))
        return plan(wave, specs, bars, caches, *rest)

    monkeypatch.setattr(bs, "_plan_wave", counted)
    combos = [{"sma_1": {"fast": f, "slow": s}} for f in (5, 8) for s in (30, 40, 50)]
    for mode in ("portfolio", "independent"):
        op = {k: v for k, v in OP.items() if k != "max_positions"} if mode == "independent" else OP
        seen.clear()
        sw = sweep_basket(STRATEGY, op, combos)
        assert seen == [0, 0, 0]
        # each row as a sweep of that combination alone gives it (a group built once more
        # where it straddles two waves is the same group)
        for c, combo in enumerate(combos):
            np.testing.assert_array_equal(sw.portfolio[c], sweep_basket(STRATEGY, op, [combo]).portfolio[0])
