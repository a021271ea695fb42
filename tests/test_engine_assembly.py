"""The Python assembly around the kernel, written for speed: each fast path must give
exactly what the plain version gives (the calendar, the trades table, merged signals,
price arrays), and no result may share mutable state with another."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine_helpers as h
import metaflow_nb as mf
from metaflow_nb.engine import metrics as em
from metaflow_nb.assembly import frames as sim
from metaflow_nb.assembly.group import merge_signals
from metaflow_nb.assembly.workforce import Workforce
from metaflow_nb.workers.base import FeatureContext, Opportunities, OpportunityWorker, Signals
from metaflow_nb.workers.features import _price_arrays

NS_PER_DAY = 86_400 * 10**9


# ====================================================================== calendar


def calendar_by_division(index: pd.DatetimeIndex):
    """The calendar as defined: integer day of every bar, a day ends where it changes."""
    years = em.span_years(index)
    if index.tz is not None:
        index = index.tz_localize(None)
    d = np.floor_divide(index.as_unit("ns").asi8, NS_PER_DAY)
    if len(d) == 0:
        return np.zeros(0, dtype=np.bool_), 252.0, years
    day_end = np.append(d[1:] != d[:-1], True)
    if day_end.all() and em.coarser_than_days(d) and np.all(d[1:] > d[:-1]):
        # bars further apart than a day count their own steps
        return day_end, em.measured_periods_per_year_coarse(d), years
    return day_end, em.measured_periods_per_year(d[day_end]), years


def assert_same_calendar(index):
    got, want = em.calendar(index), calendar_by_division(index)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[0].dtype == np.bool_
    assert got[1:] == want[1:]


@pytest.mark.parametrize("index", [
    pd.DatetimeIndex([]),
    pd.DatetimeIndex(["2020-01-04"]),
    pd.date_range("1969-12-25", periods=500, freq="7h"),
    pd.date_range("2001-01-01", periods=20_000, freq="min"),
    pd.date_range("2001-01-01", periods=400, freq="D").as_unit("s"),
    pd.date_range("2020-03-25", periods=2000, freq="17min", tz="Europe/Berlin"),  # DST: wall clock repeats
    pd.date_range("2020-10-30", periods=2000, freq="13min", tz="America/New_York"),
    pd.DatetimeIndex(np.repeat(pd.date_range("2001-01-01", periods=40, freq="5h").values, 3)),
    pd.DatetimeIndex(["2020-01-03", "2020-01-01", "2020-01-02 12:00", "2020-01-02"]),  # unsorted
    pd.DatetimeIndex(["1900-01-01", "2200-01-01"]),  # sparse: more days than bars
])
def test_calendar_equals_the_per_bar_day_numbers(index):
    assert_same_calendar(index)


@given(start=st.integers(-2 * 10**18, 2 * 10**18),
       steps=st.lists(st.sampled_from([0, 1, 59, 3600, 86_399, 86_400, 86_401, 3 * 86_400, 7 * 86_400]),
                      min_size=0, max_size=300),
       shuffle=st.booleans())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_calendar_equals_the_per_bar_day_numbers_on_random_indexes(start, steps, shuffle):
    t = start + np.cumsum(np.asarray([0, *steps], dtype=np.int64) * 10**9)
    if shuffle:
        t = np.random.default_rng(len(steps)).permutation(t)
    assert_same_calendar(pd.DatetimeIndex(t.astype("datetime64[ns]")))


# ====================================================================== trades table


def trades_by_constructor(out) -> pd.DataFrame:
    t = out.trades
    from metaflow_nb.engine.nb import simulate as nbsim
    entry_bar = t["entry_bar"].astype(np.int64)
    exit_bar = t["exit_bar"].astype(np.int64)
    size, entry_price, pnl = t["size"], t["entry_price"], t["pnl"]
    text = lambda v: pd.Series(v, dtype=object)  # noqa: E731
    return pd.DataFrame({
        "trade_id": np.arange(len(t), dtype=np.int64),
        "opportunity_id": t["opp"].astype(np.int64),
        "direction": text(np.where(t["direction"] > 0, "long", "short")),
        "entry_bar": entry_bar, "exit_bar": exit_bar,
        "entry_time": out.index[entry_bar], "exit_time": out.index[exit_bar],
        "entry_price": entry_price, "exit_price": t["exit_price"], "size": size, "pnl": pnl,
        "return_pct": pnl / (entry_price * size) * 100.0, "commission": t["commission"],
        "exit_reason": text(sim._REASON_TABLE[t["exit_reason"].astype(np.int64)]),
        "stop_price": t["stop"], "target_price": t["target"],
        "duration_bars": exit_bar - entry_bar,
    })


@pytest.fixture(scope="module")
def runs():
    return [
        mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily"),
        mf.backtest("config/runs/sma_cross_long_stops.yaml", data="eurusd_15m"),
        mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml"),
    ]


def test_trades_table_equals_the_constructed_one(runs, monkeypatch):
    for res in runs:
        out = res.records[0]
        assert len(out.trades) > 0
        fast = sim.trades_frame(out)
        pd.testing.assert_frame_equal(fast, trades_by_constructor(out), check_exact=True)
        assert list(fast.dtypes) == list(trades_by_constructor(out).dtypes)
        monkeypatch.setattr(sim, "_from_blocks", None)  # the general path gives the same frame
        pd.testing.assert_frame_equal(sim.trades_frame(out), fast, check_exact=True)
        monkeypatch.undo()


def test_trades_tables_are_independent(runs):
    out = runs[0].records[0]
    a, b = sim.trades_frame(out), sim.trades_frame(out)
    a.iloc[0, 0] = 99
    a.loc[0, "direction"] = "sideways"
    a["pnl"] *= 2
    pd.testing.assert_frame_equal(b, trades_by_constructor(out), check_exact=True)
    pd.testing.assert_frame_equal(sim.trades_frame(out), b, check_exact=True)


@pytest.mark.parametrize("convert", [lambda i: i.tz_localize("UTC"), lambda i: i.as_unit("us")])
def test_trades_table_of_other_index_types_uses_the_general_path(runs, convert):
    import dataclasses
    out = dataclasses.replace(runs[0].records[0], index=convert(runs[0].records[0].index))
    frame = sim.trades_frame(out)
    pd.testing.assert_frame_equal(frame, trades_by_constructor(out), check_exact=True)
    assert frame["entry_time"].dtype == out.index.dtype


# ====================================================================== merged signals


def merge_by_sorting(ctx, workers) -> Opportunities:
    """Every worker's setups concatenated and sorted by bar, then workforce order."""
    bars, dirs, who, tops, bottoms = [], [], [], [], []
    for k, w in enumerate(workers):
        sig = w.detect(ctx)
        idx = np.flatnonzero(sig.direction)
        bars.append(idx)
        dirs.append(sig.direction[idx].astype(np.int64))
        who.append(np.full(idx.shape[0], k, dtype=np.int64))
        tops.append(sig.top[idx])
        bottoms.append(sig.bottom[idx])
    order = np.lexsort((np.concatenate(who), np.concatenate(bars)))
    bar = np.concatenate(bars)[order].astype(np.int64)
    return Opportunities(bar, np.concatenate(dirs)[order], np.concatenate(who)[order],
                         np.concatenate(tops)[order], np.concatenate(bottoms)[order], ctx.close[bar])


def assert_same_opportunities(a: Opportunities, b: Opportunities):
    for f in ("bar", "direction", "worker", "top", "bottom", "signal_close"):
        x, y = getattr(a, f), getattr(b, f)
        np.testing.assert_array_equal(x, y, err_msg=f)
        assert x.dtype == y.dtype and x.flags.c_contiguous, f


@pytest.mark.parametrize("specs", [
    ("config/runs/sma_cross.yaml", None, "sp500_daily"),
    ("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml", None),
    (h.blueprint(longs=[1, 5, 9], shorts=[3, 7], zones=[(5, 110.0, 100.0)]), None, "sp500_daily"),
])
def test_merged_signals_equal_the_sorted_concatenation(specs):
    specs = mf.build_specs(*specs)
    bars = mf.load_data(specs.operation["data"]["source"])
    wf = Workforce.from_specs(specs)
    ctx = FeatureContext(bars, context_params=wf.context_params())
    one = wf.opportunity[:1]
    assert_same_opportunities(merge_signals(ctx, one), merge_by_sorting(ctx, one))
    several = [*wf.opportunity, *wf.opportunity[:1], *wf.opportunity]
    assert_same_opportunities(merge_signals(ctx, several), merge_by_sorting(ctx, several))


def test_signals_without_zones_share_one_read_only_nan_array():
    d = np.array([0, 1, 0, -1, 0], dtype=np.int64)
    s = Signals.from_direction(d)
    assert s.direction.dtype == np.int8 and not np.shares_memory(s.direction, d)
    assert np.isnan(s.top).all() and np.isnan(s.bottom).all() and s.top.shape == (5,)
    with pytest.raises(ValueError):
        s.top[0] = 1.0


def test_signals_of_a_float_direction_are_found_too():
    class FloatDirections(OpportunityWorker):
        name = "test_float_directions"

        def detect(self, ctx):
            d = np.zeros(ctx.n)
            d[[2, 4]] = [1.0, -1.0]
            return Signals(d, np.full(ctx.n, np.nan), np.full(ctx.n, np.nan))

    ctx = FeatureContext(h.flat_bars([100.0] * 8))
    opps = merge_signals(ctx, [FloatDirections("f", FloatDirections.Params())])
    assert opps.bar.tolist() == [2, 4] and opps.direction.tolist() == [1, -1]
    assert opps.bar.dtype == np.int64 and opps.direction.dtype == np.int64


# ====================================================================== prices, specs, results


def test_price_arrays_equal_the_columns(sp500):
    cols = ["open", "high", "low", "close", "volume"]
    split = sp500.copy()
    split["close"] = split["close"] * 1.0  # a second block
    reordered = sp500[["close", "open", "high", "low", "volume"]]
    ints = sp500.astype({"volume": np.int64})
    for frame in (sp500, split, reordered, ints):
        arrays = _price_arrays(frame)
        for a, c in zip(arrays, cols):
            np.testing.assert_array_equal(a, frame[c].to_numpy(np.float64))
            assert a.dtype == np.float64 and a.flags.c_contiguous


def test_specs_hand_out_fresh_worker_dicts():
    specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    ws = specs.workers()
    ws[0]["params"]["fast"] = 99
    ws.pop()
    p = specs.params("sma_1")
    p["slow"] = 98
    assert specs.params("sma_1") == {"fast": 10, "slow": 20}
    assert len(specs.workers()) == len(ws) + 1
    assert specs.workers()[0]["params"] == {"fast": 10, "slow": 20}


def test_results_do_not_share_their_series(sp500):
    a = mf.backtest("config/runs/sma_cross.yaml", data=sp500)
    b = mf.backtest("config/runs/sma_cross.yaml", data=sp500)
    equity, position = b.equity.copy(), b.position.copy()
    a.equity.iloc[:10] = -1.0
    a.position.iloc[:10] = 7.0
    pd.testing.assert_series_equal(b.equity, equity)
    pd.testing.assert_series_equal(b.position, position)
    assert a.equity.index.equals(sp500.index) and a.metrics == b.metrics
