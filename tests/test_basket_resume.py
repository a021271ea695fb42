"""Resume of an optimization over a basket from its results store: every combination's row
(portfolio metrics, per-instrument metrics, daily returns for PBO) is stored under a key of
the basket and the combination; a resumed optimization reads what the store holds, runs
the rest, and gives what a fresh one gives, bit for bit."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from metaflow_nb.errors import ConfigError
from metaflow_nb.services.portfolio import load_basket
from metaflow_nb.services.portfolio_meta import BASKET_RECORD, combination_keys, optimize_basket
from metaflow_nb.services.store import ResultsStore

STRATEGY = "config/runs/sma_cross.yaml"
BASKET = {"universe": {"path": "us_stocks"}, "data": {"start": "2010-01-01"}}
SPACE = {"sma_1": {"fast": [5, 10, 40], "slow": [30, 60]}}   # (40, 30) is refused: a failed row
PART = {"sma_1": {"fast": [5, 40], "slow": [30, 60]}}


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.table, b.table)
    if a.per_instrument is None:
        assert b.per_instrument is None
    else:
        pd.testing.assert_frame_equal(a.per_instrument, b.per_instrument)
    pd.testing.assert_frame_equal(a.returns, b.returns)
    assert repr(a.statistics) == repr(b.statistics) and repr(a.best_dsr) == repr(b.best_dsr)
    assert a.best == b.best


@pytest.mark.parametrize("mode, engine", [("independent", "batch"), ("independent", "general"),
                                          ("portfolio", "batch"), ("portfolio", "general")])
def test_a_resumed_optimization_is_the_fresh_one(tmp_path, mode, engine):
    op = {**BASKET, "mode": mode}
    fresh = optimize_basket(STRATEGY, op, SPACE, engine=engine)
    assert (fresh.table["status"] == "failed").sum() == 1 and fresh.returns is not None
    optimize_basket(STRATEGY, op, PART, engine=engine, store=tmp_path / "s")
    stored = ResultsStore(tmp_path / "s")
    assert len(list(stored.keys())) == 4   # the part's combinations, the failed one too
    resumed = optimize_basket(STRATEGY, op, SPACE, engine=engine, store=tmp_path / "s", resume=True)
    _same(fresh, resumed)
    # hunt36 F7: what was read back is said, as a single sweep says it
    assert (fresh.resumed, resumed.resumed) == (0, 4)
    assert resumed.to_dict()["resumed_runs"] == 4 and "4 read from the results store" in repr(resumed)
    assert len(list(ResultsStore(tmp_path / "s").keys())) == 6


def test_held_rows_are_read_not_run(tmp_path):
    op = {**BASKET, "mode": "independent"}
    optimize_basket(STRATEGY, op, PART, store=tmp_path / "s")
    store = ResultsStore(tmp_path / "s")
    key = combination_keys(STRATEGY, load_basket(op), [{"sma_1": {"fast": 5, "slow": 30}}])[0]
    rec = store.get(key)
    assert rec["kind"] == BASKET_RECORD and rec["status"] == "ok"
    assert list(rec["per_instrument"]) == [it["symbol"] for it in load_basket(op)[1]]
    # a stored value comes back as stored: the combination was not run again
    rec["metrics"]["total_trades"] = 12345
    store.put(key, rec)
    store.close()
    res = optimize_basket(STRATEGY, op, PART, store=tmp_path / "s", resume=True)
    row = res.table[(res.table["sma_1.fast"] == 5) & (res.table["sma_1.slow"] == 30)]
    assert row["total_trades"].iloc[0] == 12345
    # without resume everything runs again (and the store gets the true row back)
    res = optimize_basket(STRATEGY, op, PART, store=tmp_path / "s")
    row = res.table[(res.table["sma_1.fast"] == 5) & (res.table["sma_1.slow"] == 30)]
    assert row["total_trades"].iloc[0] != 12345
    assert ResultsStore(tmp_path / "s").get(key)["metrics"]["total_trades"] == row["total_trades"].iloc[0]


def test_keys_name_the_basket_and_the_combination():
    op = {**BASKET, "mode": "portfolio", "max_positions": 2}
    basket = load_basket(op)
    combos = [{"sma_1": {"fast": 5, "slow": 30}}, {"sma_1": {"fast": 10, "slow": 30}}]
    keys = combination_keys(STRATEGY, basket, combos)
    assert len(set(keys)) == 2 and keys == combination_keys(STRATEGY, load_basket(op), combos)
    # the basket's own settings are part of the key
    for other in ({**op, "max_positions": 3}, {**op, "rank": "score"}, {**op, "cash": 20_000},
                  {**op, "data": {"start": "2011-01-01"}}, {**op, "universe": {"path": "us_stocks",
                                                                               "symbols": ["IBM", "MSFT"]}}):
        assert combination_keys(STRATEGY, load_basket(other), combos)[0] != keys[0], other
    # a combination spelled with the blueprint's own value is the blueprint
    assert combination_keys(STRATEGY, basket, [{"sma_1": {"fast": 10}}, {}]) == \
        combination_keys(STRATEGY, basket, [{"sma_1": {"fast": 10, "slow": 20}}, {"sma_1": {"fast": 10}}])


def test_the_cli_resumes_a_basket_optimization(tmp_path, capsys):
    from metaflow_nb.cli import main

    cfg = "config/optimizations/sma_basket.yaml"
    out = tmp_path / "out"
    assert main(["optimize", cfg, "--out", str(out), "--json"]) == 0
    first = (out / "all_results.csv").read_text()
    assert (out / "store").is_dir()
    capsys.readouterr()
    assert main(["optimize", cfg, "--out", str(out), "--resume", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total_runs"] == 6 and doc["resumed_runs"] == 6
    assert (out / "all_results.csv").read_text() == first
    assert main(["optimize", cfg, "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


def test_resume_needs_a_store():
    with pytest.raises(ConfigError, match="resume needs an output folder"):
        from metaflow_nb.services.optimization import OptimizationService
        OptimizationService().run("config/optimizations/sma_basket.yaml", resume=True)


def test_a_walk_forward_over_a_basket_resumes_its_windows_searches(tmp_path, capsys):
    from metaflow_nb.cli import main

    cfg = "config/walk_forward/sma_basket_walk_forward.yaml"
    out = tmp_path / "w"
    assert main(["walk-forward", cfg, "--out", str(out)]) == 0
    first = (out / "windows.csv").read_text()
    keys = set(ResultsStore(out / "store").keys())
    assert len(keys) > 0   # every window's combinations, each window under its own keys
    assert main(["walk-forward", cfg, "--out", str(out), "--resume"]) == 0
    assert (out / "windows.csv").read_text() == first
    assert set(ResultsStore(out / "store").keys()) == keys
    capsys.readouterr()
    assert main(["walk-forward", cfg, "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
