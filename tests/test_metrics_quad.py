"""The batch sweep folds the daily statistics of four runs side by side
(``engine.nb.metrics.stream_metrics_quad``): each run's metric vector must be the one
``stream_metrics`` gives it alone, to the last bit, and so must each run's daily returns."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaflow_nb.engine.nb import metrics as nbm
from metaflow_nb.engine.records import ACC_DAYS, ACC_FINAL, N_ACC

CASH = 100.0
PPY = 252.0
YEARS = 1.0


def _acc(day_eq: np.ndarray) -> np.ndarray:
    acc = np.zeros(N_ACC)
    acc[ACC_DAYS] = day_eq.shape[0]
    acc[ACC_FINAL] = day_eq[-1] if day_eq.shape[0] else CASH
    return acc


def _alone_and_together(eqs: list[np.ndarray], n_bars: int = 50) -> tuple[list, list, np.ndarray, list]:
    """``(vectors alone, returns alone, vectors together, returns together)``."""
    trades = np.array([3, 0, 7, 1], dtype=np.int64)
    accs = np.stack([_acc(e) for e in eqs])
    alone, r_alone = [], []
    for q, e in enumerate(eqs):
        buf = e.copy()
        alone.append(nbm.stream_metrics(accs[q], buf, trades[q], n_bars, CASH, PPY, YEARS))
        r_alone.append(buf)
    bufs = [e.copy() for e in eqs]
    together = nbm.stream_metrics_quad(accs, *bufs, trades, n_bars, CASH, PPY, YEARS)
    return alone, r_alone, together, bufs


def _assert_bitwise(alone, r_alone, together, r_together) -> None:
    for q in range(4):
        assert np.array_equal(alone[q], together[q], equal_nan=True), (q, alone[q], together[q])
        assert np.array_equal(r_alone[q], r_together[q], equal_nan=True), q


def test_four_runs_by_hand():
    """Day-end equities 100 -> 110 -> 99 (returns 0, +10 %, -10 %) and three more runs,
    one ruined (its equity 0, then the non-finite returns count as 0)."""
    eqs = [np.array([100.0, 110.0, 99.0]), np.array([100.0, 100.0, 100.0]),
           np.array([50.0, 0.0, 0.0]), np.array([101.0, 102.0, 104.04])]
    alone, r_alone, together, r_together = _alone_and_together(eqs)
    _assert_bitwise(alone, r_alone, together, r_together)
    assert r_together[0].tolist() == [0.0, 110.0 / 100.0 - 1.0, 99.0 / 110.0 - 1.0]
    r = r_together[0]
    mean = r.sum() / 3
    sd = math.sqrt(((r - mean) ** 2).sum() / 2)
    assert together[0][2] == pytest.approx(mean / sd * math.sqrt(PPY), rel=1e-15)
    assert r_together[2].tolist() == [-0.5, -1.0, 0.0]  # 0 / 0 - 1 is NaN: counted as 0
    assert math.isnan(together[1][2])  # no spread: no Sharpe ratio


def test_runs_of_unequal_days_or_too_few_go_one_by_one():
    base = np.array([100.0, 101.0, 99.5, 102.0])
    for eqs in ([base, base[:3], base, base], [base[:1]] * 4, [base[:0]] * 4):
        _assert_bitwise(*_alone_and_together([e * (1 + 0.01 * q) for q, e in enumerate(eqs)]))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 300), st.integers(0, 2**32 - 1), st.floats(0.0, 0.05), st.booleans())
def test_together_equals_alone_bit_for_bit(n, seed, vol, ruin):
    rng = np.random.default_rng(seed)
    eqs = [CASH * np.cumprod(1.0 + rng.normal(0.0, vol, n)) for _ in range(4)]
    if ruin:
        eqs[int(rng.integers(4))][int(rng.integers(n)):] = 0.0
    _assert_bitwise(*_alone_and_together(eqs))


def test_sweep_blocks_of_quads_equal_the_general_path(monkeypatch):
    """With one block per call every combination but the last few is folded in a quad;
    the batch path still equals the general path (on every metric, bit for bit)."""
    import numba

    import test_batch_path as tb
    from metaflow_nb.assembly import run as arun
    from metaflow_nb.services import batch

    real = arun.day_work
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)

    def one_block(n_days, keep_returns):
        w = real(n_days, keep_returns)
        return w._replace(day_eq=w.day_eq[:1])

    monkeypatch.setattr(batch, "day_work", one_block)
    import metaflow_nb as mf

    base = mf.build_specs(tb.sma_blueprint(), tb.operation(0.001), data=tb.BARS)
    combos = [{"sma_1": {"fast": f, "slow": s}} for f in (3, 5, 8) for s in (12, 20, 30)]
    b, g = tb.both_paths(base, ["sma_1.fast", "sma_1.slow"], combos)
    tb.assert_bit_for_bit(b, g)


def test_returns_that_differ_by_rounding_alone_have_no_sharpe():
    """hunt57 F2: equity growing by the same factor every day has daily returns whose
    spread is rounding (std ~1e-16): the ratio read 1e14, where metaflow_nb.stats.sharpe
    says undefined (NaN). Undefined here too, as a division by zero is."""
    growth = CASH * 1.001 ** np.arange(1, 61)
    decline = CASH * 0.999 ** np.arange(1, 61)
    # the last one starts with a jump: its returns do spread
    eqs = [growth, decline, np.array([100.0, 110.0, 99.0] * 20), growth * 2.0]
    alone, r_alone, together, r_together = _alone_and_together(eqs)
    _assert_bitwise(alone, r_alone, together, r_together)
    sd = np.std(r_together[0], ddof=1)
    assert 0.0 < sd < 1e-14   # the spread is there, and it is rounding
    assert math.isnan(together[0][2]) and math.isnan(together[1][2])
    assert together[0][6] == 0.0 and together[1][6] == 0.0   # no volatility either
    assert together[1][3] < 0   # every day a loss: the Sortino ratio is defined
    assert not math.isnan(together[2][2]) and not math.isnan(together[3][2])
