"""The compiled pieces of the basket sweep in mode independent (engine/nb/basket.py), by
hand and against plain references: the carry of an account onto the union calendar, the
stable entry order of the portfolio's trades, and the chunked sweep, whose rows must not
depend on which combinations share a chunk."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from metaflow_nb.engine.nb.basket import CHUNK, _carry, _entry_order, fold_account
from metaflow_nb.engine.records import TRADE_DTYPE
from metaflow_nb.services.basket_sweep import sweep_basket
from metaflow_nb.services.portfolio import load_basket
from portfolio_helpers import write_basket

STRATEGY = "config/runs/sma_cross_long_stops.yaml"


def test_carry_by_hand():
    # union bars 0..7; the account has bars at 2, 3 and 6: cash before bar 2, each equity
    # held up to its next bar, the last one to the end; in a position at its bar 3 only
    total = np.full(8, 1.0)
    held = np.zeros(8, dtype=np.uint8)
    _carry(total, held, np.array([2, 3, 6]), np.array([100.0, 105.0, 90.0]), np.array([0.0, 2.0, 0.0]), 100.0)
    assert total.tolist() == [101.0, 101.0, 101.0, 106.0, 106.0, 106.0, 91.0, 91.0]
    assert held.tolist() == [0, 0, 0, 1, 1, 1, 0, 0]


def _carry_reference(n_union, own_at, equity, position, cash):
    total = np.zeros(n_union)
    held = np.zeros(n_union, dtype=np.uint8)
    k = -1
    for u in range(n_union):
        while k + 1 < len(own_at) and own_at[k + 1] <= u:
            k += 1
        total[u] += cash if k < 0 else equity[k]
        held[u] = 0 if k < 0 else position[k] != 0.0
    return total, held


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), n_union=st.integers(1, 300), share=st.sampled_from([0.05, 0.5, 0.97, 1.0]))
def test_carry_equals_a_bar_by_bar_reference(seed, n_union, share):
    # long runs of consecutive union bars (the vectorized path) and gaps (bar by bar)
    rng = np.random.default_rng(seed)
    own_at = np.flatnonzero(rng.random(n_union) < share).astype(np.int64)
    equity = rng.normal(100.0, 10.0, len(own_at))
    position = np.where(rng.random(len(own_at)) < 0.5, 0.0, rng.normal(0, 3, len(own_at)))
    base = rng.normal(0.0, 1.0, n_union)
    total = base.copy()
    held = np.zeros(n_union, dtype=np.uint8)
    _carry(total, held, own_at, equity, position, 50.0)
    ref_total, ref_held = _carry_reference(n_union, own_at, equity, position, 50.0)
    assert np.array_equal(total, base + ref_total)
    assert np.array_equal(held, ref_held)
    # the single path's fold (float marks) is the same carry
    total2 = base.copy()
    marks = np.zeros(n_union)
    fold_account(total2, marks, own_at, equity, position, 50.0)
    assert np.array_equal(total2, total) and np.array_equal(marks, held.astype(float))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(0, 200), n_union=st.integers(1, 50))
def test_entry_order_is_the_stable_sort_by_entry_bar(seed, n, n_union):
    rng = np.random.default_rng(seed)
    buf = np.zeros(n + 5, dtype=TRADE_DTYPE)
    buf["entry_bar"][:n] = rng.integers(0, n_union, n)
    rows = rng.permutation(n).astype(np.int64)
    order = np.empty(n, dtype=np.int64)
    _entry_order(buf, rows, np.empty(n_union + 1, dtype=np.int64), order)
    expected = rows[np.argsort(buf["entry_bar"][rows], kind="stable")]
    assert np.array_equal(order, expected)


def test_rows_do_not_depend_on_the_chunk(tmp_path):
    # more combinations than two chunks, invalid ones inside a chunk: every combination's
    # portfolio row, every pair's row and the daily returns equal those of a sweep of that
    # combination alone
    write_basket(tmp_path, 7, 3, 80, 0.2, vol=0.03)
    basket = load_basket({"universe": {"path": str(tmp_path)}, "cash": 10_000, "commission": 0.001})
    combos = []
    for j in range(2 * CHUNK + 3):
        fast, slow = 3 + j % 5, 8 + (j * 7) % 17
        if j in (5, CHUNK + 1):
            fast, slow = slow + 2, slow  # invalid: fast >= slow
        combos.append({"sma_1": {"fast": fast, "slow": slow}, "stops_1": {"stop_loss_pct": 0.01 + 0.01 * (j % 4)}})
    whole = sweep_basket(STRATEGY, basket, combos, keep_returns=True)
    assert "failed" in whole.status and whole.status.count("ok") > CHUNK
    for j, combo in enumerate(combos):
        if whole.status[j] != "ok":
            assert combo["sma_1"]["fast"] >= combo["sma_1"]["slow"]
            continue
        alone = sweep_basket(STRATEGY, basket, [combo], keep_returns=True)
        np.testing.assert_array_equal(alone.portfolio[0], whole.portfolio[j])
        np.testing.assert_array_equal(alone.per_instrument[0], whole.per_instrument[j])
        np.testing.assert_array_equal(alone.returns[0], whole.returns[j])


def test_waves_planned_while_the_previous_wave_runs_give_the_same_rows(tmp_path, monkeypatch):
    # several waves: each wave's kernel call runs in a thread while the next is planned
    import metaflow_nb.services.basket_sweep as bs

    write_basket(tmp_path, 11, 3, 70, 0.1, vol=0.03)
    basket = load_basket({"universe": {"path": str(tmp_path)}, "cash": 10_000, "commission": 0.001})
    combos = [{"sma_1": {"fast": 3 + j % 4, "slow": 9 + j}, "stops_1": {"stop_loss_pct": 0.02}} for j in range(11)]
    combos[6]["sma_1"] = {"fast": 30, "slow": 10}  # invalid
    one = sweep_basket(STRATEGY, basket, combos, keep_returns=True)
    monkeypatch.setattr(bs, "WAVE", 3)
    waves = sweep_basket(STRATEGY, basket, combos, keep_returns=True)
    assert waves.status == one.status and one.status.count("failed") == 1
    np.testing.assert_array_equal(waves.portfolio, one.portfolio)
    np.testing.assert_array_equal(waves.per_instrument, one.per_instrument)
    np.testing.assert_array_equal(waves.returns, one.returns)


@given(seed=st.integers(0, 2**16), n_inst=st.integers(1, 6), n_union=st.integers(1, 80))
@settings(max_examples=60, deadline=None)
def test_merge_by_union_bar_is_a_stable_sort_by_bar_then_instrument(seed, n_inst, n_union):
    """The portfolio's merged setups: the order np.argsort(bar * n_inst + instrument,
    kind="stable") gives over the setups concatenated in basket order (several setups of one
    instrument may share a bar: several opportunity workers)."""
    from metaflow_nb.engine.nb.portfolio import merge_by_union_bar

    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 12, n_inst)
    ubar = np.concatenate([np.sort(rng.integers(0, n_union, c)) for c in counts]).astype(np.int64)
    direction = rng.choice([-1, 1], ubar.shape[0]).astype(np.int64)
    off = np.zeros(n_inst + 1, dtype=np.int64)
    off[1:] = np.cumsum(counts)
    inst = np.repeat(np.arange(n_inst), counts)
    local = np.concatenate([np.arange(c) for c in counts]).astype(np.int64)
    order = np.argsort(ubar * n_inst + inst, kind="stable")
    got = merge_by_union_bar(ubar, direction, off, n_union)
    for a, b in zip(got, (ubar[order], direction[order], inst[order], local[order], order)):
        np.testing.assert_array_equal(a, b)
