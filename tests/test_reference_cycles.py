"""A sweep or a run leaves no reference cycles behind: what it computed is freed when its
result is dropped, not at the collector's next full pass (a W2 sweep left ~17 MB a sweep
in cycles: the sweep's feature cache held its groups, whose feature context held the
cache, and a refused combination's error held the validating frames)."""
from __future__ import annotations

import gc

import metaflow_nb as mf
from metaflow_nb.assembly.run import run_one

import test_batch_path as tb


def _cycles_left_by(fn) -> list:
    fn()  # compiles, loads and caches what a first call does once
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        fn()
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_a_batch_sweep_with_a_refused_combination_leaves_no_cycles():
    base = mf.build_specs(tb.sma_blueprint(), tb.operation(0.001), data=tb.BARS)
    combos = [{"sma_1": {"fast": f, "slow": s}} for f in (5, 20, 30) for s in (20, 25)]  # 3 refused

    def sweep():
        res = tb.service().sweep(base, ["sma_1.fast", "sma_1.slow"], combos, tb.TARGET, data=tb.BARS,
                                 engine="batch")
        assert res.engine == "batch" and res.failed_runs == 3

    garbage = _cycles_left_by(sweep)
    assert garbage == [], sorted({type(o).__name__ for o in garbage})


def test_a_run_without_a_cache_leaves_no_cycles():
    specs = mf.build_specs(tb.sma_blueprint(), tb.operation(0.001), data=tb.BARS)
    garbage = _cycles_left_by(lambda: run_one(specs, tb.BARS).trades)
    assert garbage == [], sorted({type(o).__name__ for o in garbage})


BASKET = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT", "AAPL"]}, "data": {"start": "2012-01-01"}}


def test_a_basket_with_more_instruments_than_kept_caches_leaves_no_cycles(monkeypatch):
    """Three instruments, one feature cache kept: the first two caches are let go while the
    basket still fills them; a portfolio run and a sweep over the basket, both modes."""
    from metaflow_nb.services.basket_sweep import sweep_basket
    from metaflow_nb.services.operation import OperationService, shared_service
    from metaflow_nb.services.portfolio import run_portfolio

    svc = OperationService(feature_cache_size=1)
    monkeypatch.setattr(shared_service(), "_cache_size", 1)
    strategy = "config/runs/sma_cross.yaml"
    for mode in ("portfolio", "independent"):
        op = {**BASKET, "mode": mode, **({"max_positions": 2} if mode == "portfolio" else {})}
        garbage = _cycles_left_by(lambda: run_portfolio(strategy, op, service=svc).metrics)
        assert garbage == [], (mode, sorted({type(o).__name__ for o in garbage}))
        garbage = _cycles_left_by(lambda: sweep_basket(strategy, op, [{"sma_1": {"fast": 5}}, {"sma_1": {"fast": 8}}]))
        assert garbage == [], (mode, sorted({type(o).__name__ for o in garbage}))
