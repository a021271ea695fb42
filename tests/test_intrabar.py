"""Intrabar resolution (issue #18, part 4): finer bars decide the bars where the stop and a
take-profit level are both touched; without them the stop comes first (pessimistic).

Hand-built bars for each case the finer bars reverse, the journal's ``fill_rule``, identical
trades when no bar is ambiguous, prefix replay, batch == single path, the config, bad data.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import engine_helpers as h
import metaflow_nb as mf
from metaflow_nb.data.intrabar import FinerBars, map_finer_bars
from metaflow_nb.engine import codes
from metaflow_nb.errors import ConfigError, DataError

ABS = codes.PRICE_ABSOLUTE


def _bars(rows):
    """A frame of bars from (open, high, low, close) rows."""
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"], dtype=float)


def _fine(df, paths):
    """Finer bars: bar ``i`` holds ``paths[i]`` (rows of open, high, low), or one finer bar
    equal to the bar when ``i`` has no path."""
    start, end, o, hi, lo = [], [], [], [], []
    for i in range(len(df)):
        rows = paths.get(i, [(df.open[i], df.high[i], df.low[i])])
        start.append(len(o))
        for a, b, c in rows:
            o.append(a), hi.append(b), lo.append(c)
        end.append(len(o))
    return FinerBars(np.array(start, np.int64), np.array(end, np.int64), np.array(o, float),
                     np.array(hi, float), np.array(lo, float))


def _closes(out):
    j = h.journal_rows(out["journal"], codes.EV_TRADE_CLOSED)
    return list(zip(out["trades"]["exit_reason"].tolist(), out["trades"]["exit_price"].tolist(),
                    j["rule"].tolist()))


# a long entered at bar 1's open (100), stop 95, target 105; bar 2 touches both
BOTH = _bars([(100, 101, 99, 100), (100, 101, 99, 100), (100, 106, 94, 100), (100, 101, 99, 100)])
TARGET_FIRST = {2: [(100, 101, 99.5), (101, 106, 100.5), (105, 105, 94), (95, 100, 95)]}
STOP_FIRST = {2: [(100, 101, 94), (95, 106, 95), (105, 105, 100), (100, 100, 100)]}
LONG = dict(stop=[95.0], target=[105.0], stop_mode=ABS, target_mode=ABS)


@pytest.mark.parametrize("paths, expected", [
    (None, [(codes.EXIT_STOP_LOSS, 95.0, codes.FILL_RULE_PESSIMISTIC)]),
    (TARGET_FIRST, [(codes.EXIT_TAKE_PROFIT, 105.0, codes.FILL_RULE_FINER)]),
    (STOP_FIRST, [(codes.EXIT_STOP_LOSS, 95.0, codes.FILL_RULE_FINER)]),
], ids=["no finer bars: stop first", "finer bars: target first", "finer bars: stop first"])
def test_stop_and_target_on_one_bar(paths, expected):
    out = h.kernel(BOTH, [0], [1], fine=None if paths is None else _fine(BOTH, paths), **LONG)
    assert _closes(out) == expected


def test_a_short_is_mirrored():
    df = _bars([(100, 101, 99, 100), (100, 101, 99, 100), (100, 106, 94, 100), (100, 101, 99, 100)])
    down_first = {2: [(100, 100.5, 94), (95, 100, 95), (100, 106, 100), (104, 104, 100)]}
    short = dict(stop=[105.0], target=[95.0], stop_mode=ABS, target_mode=ABS)
    assert _closes(h.kernel(df, [0], [-1], **short)) == [(codes.EXIT_STOP_LOSS, 105.0, codes.FILL_RULE_PESSIMISTIC)]
    assert _closes(h.kernel(df, [0], [-1], fine=_fine(df, down_first), **short)) == \
        [(codes.EXIT_TAKE_PROFIT, 95.0, codes.FILL_RULE_FINER)]


def test_a_finer_bar_gapping_through_the_target_fills_at_its_better_open():
    paths = {2: [(100, 101, 99.5), (107, 107, 100), (101, 101, 94)]}  # gap up through 105 at 107
    out = h.kernel(BOTH, [0], [1], fine=_fine(BOTH, paths), **LONG)
    assert _closes(out) == [(codes.EXIT_TAKE_PROFIT, 107.0, codes.FILL_RULE_FINER)]


def test_a_finer_bar_opening_beyond_the_target_fills_it_there_even_if_it_then_trades_through_the_stop():
    # its open is its first price: the target (a limit) filled there, before any low
    paths = {2: [(100, 101, 99.5), (107, 107, 94)]}
    out = h.kernel(BOTH, [0], [1], fine=_fine(BOTH, paths), **LONG)
    assert _closes(out) == [(codes.EXIT_TAKE_PROFIT, 107.0, codes.FILL_RULE_FINER)]
    # the bar itself opening beyond the target: its first finer bar opens there too; without
    # finer bars the stop still wins (the bar rule, as backtesting.py books it)
    gap = _bars([(100, 101, 99, 100), (100, 101, 99, 100), (107, 107, 94, 100), (100, 101, 99, 100)])
    assert _closes(h.kernel(gap, [0], [1], fine=_fine(gap, {2: [(107, 107, 94)]}), **LONG)) == \
        [(codes.EXIT_TAKE_PROFIT, 107.0, codes.FILL_RULE_FINER)]
    assert _closes(h.kernel(gap, [0], [1], **LONG)) == [(codes.EXIT_STOP_LOSS, 95.0, codes.FILL_RULE_PESSIMISTIC)]
    # a short, mirrored; and a partial take-profit beyond the open fills there first
    short = dict(stop=[105.0], target=[95.0], stop_mode=ABS, target_mode=ABS)
    down = _bars([(100, 101, 99, 100), (100, 101, 99, 100), (100, 106, 94, 100), (100, 101, 99, 100)])
    assert _closes(h.kernel(down, [0], [-1], fine=_fine(down, {2: [(100, 100.5, 99.5), (93, 106, 93)]}), **short)) \
        == [(codes.EXIT_TAKE_PROFIT, 93.0, codes.FILL_RULE_FINER)]


def test_a_finer_bar_touching_both_is_still_pessimistic():
    paths = {2: [(100, 106, 94)]}  # one finer bar that is the bar itself: nothing learnt
    out = h.kernel(BOTH, [0], [1], fine=_fine(BOTH, paths), **LONG)
    assert _closes(out) == [(codes.EXIT_STOP_LOSS, 95.0, codes.FILL_RULE_FINER)]


def test_finer_bars_that_touch_no_level_leave_the_pessimistic_outcome():
    paths = {2: [(100, 101, 99)]}  # data that disagree with the bar: keep the stop, say so
    out = h.kernel(BOTH, [0], [1], fine=_fine(BOTH, paths), **LONG)
    assert _closes(out) == [(codes.EXIT_STOP_LOSS, 95.0, codes.FILL_RULE_PESSIMISTIC)]


def test_a_bar_without_finer_bars_stays_pessimistic():
    fine = _fine(BOTH, TARGET_FIRST)
    empty = FinerBars(fine.start, fine.start.copy(), fine.open, fine.high, fine.low)  # no bar covered
    assert _closes(h.kernel(BOTH, [0], [1], fine=empty, **LONG)) == \
        [(codes.EXIT_STOP_LOSS, 95.0, codes.FILL_RULE_PESSIMISTIC)]


def test_market_entry_bar_with_both_touched():
    # the market order fills at bar 1's open; bar 1 itself touches both levels
    df = _bars([(100, 101, 99, 100), (100, 106, 94, 100), (100, 101, 99, 100)])
    paths = {1: [(100, 106, 99), (105, 105, 94)]}
    assert _closes(h.kernel(df, [0], [1], **LONG))[0][:2] == (codes.EXIT_STOP_LOSS, 95.0)
    assert _closes(h.kernel(df, [0], [1], fine=_fine(df, paths), **LONG)) == \
        [(codes.EXIT_TAKE_PROFIT, 105.0, codes.FILL_RULE_FINER)]


def test_limit_fill_bar_whose_target_came_after_the_fill():
    # long limit at 99 (zone top), stop 95, target 103. Bar 1 dips to 98, then rallies to 104.
    df = _bars([(100, 101, 99.5, 100), (100, 104, 98, 102), (102, 102.8, 101, 102), (102, 102.8, 101, 102)])
    kw = dict(limit=[99.0], stop=[95.0], target=[103.0], stop_mode=ABS, target_mode=ABS, finalize=True)
    base = h.kernel(df, [0], [1], **kw)  # pessimistic: the target is not checked on a limit's fill bar
    assert base["trades"]["exit_bar"].tolist() == [3] and base["trades"]["exit_reason"].tolist() == [
        codes.EXIT_END_OF_DATA]
    after = {1: [(100, 100.5, 98), (99, 104, 99)]}     # filled in the first finer bar, target in the second
    out = h.kernel(df, [0], [1], fine=_fine(df, after), **kw)
    assert out["trades"]["entry_price"].tolist() == [99.0]
    assert _closes(out) == [(codes.EXIT_TAKE_PROFIT, 103.0, codes.FILL_RULE_FINER)]
    before = {1: [(100, 104, 100), (103, 103, 98)]}  # the high came before the fill: no exit
    assert _closes(h.kernel(df, [0], [1], fine=_fine(df, before), **kw)) == _closes(base)


def test_partial_take_profit_before_the_stop():
    # partial at 102 (half), target 105, stop 95; bar 2: up to 102.5 first, then down to 94
    df = _bars([(100, 101, 99, 100), (100, 101, 99, 100), (100, 102.5, 94, 96), (96, 97, 95.5, 96)])
    kw = dict(stop=[95.0], target=[105.0], partial=[102.0], stop_mode=ABS, target_mode=ABS, partial_mode=ABS,
              partial_fraction=0.5, whole_units=False)
    assert _closes(h.kernel(df, [0], [1], **kw)) == [(codes.EXIT_STOP_LOSS, 95.0, codes.FILL_RULE_PESSIMISTIC)]
    paths = {2: [(100, 102.5, 99.8), (101, 101, 94)]}
    out = h.kernel(df, [0], [1], fine=_fine(df, paths), **kw)
    assert _closes(out) == [(codes.EXIT_PARTIAL, 102.0, codes.FILL_RULE_FINER),
                            (codes.EXIT_STOP_LOSS, 95.0, codes.FILL_RULE_FINER)]
    assert out["trades"]["size"][0] == pytest.approx(out["trades"]["size"][1])


def test_a_stop_the_fill_gapped_past_closes_at_the_open_with_or_without_finer_bars():
    """hunt41 F1 (high): a long whose stop (from the signal close) sits above its gap-down
    fill, with a partial take-profit at 0.5 R. The bar rule stops it at the open; finer
    bars filled a take-profit 0.5 R *below* the fill first (R was signed), then stopped
    the rest: another trade count and, with slippage, other money. Finer bars decide
    ambiguous bars only, and a bar opening beyond the stop is not one."""
    df = _bars([(102, 102.2, 101, 101.5), (101.5, 103.4, 101.5, 103.05), (100.35, 102.06, 99.59, 101.69),
                (101.69, 102.85, 100.87, 101.85)])
    kw = dict(stop=[100.99], stop_mode=ABS, partial=[0.5], partial_mode=codes.PRICE_R_MULTIPLE,
              partial_fraction=0.75, slippage=0.001)
    path = {2: [(100.35, 100.59, 99.77), (100.21, 100.38, 99.59), (99.75, 101.53, 99.73), (101.17, 102.06, 100.36)]}
    plain = h.kernel(df, [1], [1], **kw)
    finer = h.kernel(df, [1], [1], fine=_fine(df, path), **kw)
    stopped = [(codes.EXIT_STOP_LOSS, 100.35 * (1 - 0.001), codes.FILL_RULE_BAR)]
    assert _closes(plain) == _closes(finer) == stopped
    np.testing.assert_array_equal(plain["equity"], finer["equity"])


def test_an_r_multiple_level_lies_beyond_the_fill_whichever_side_the_stop_is():
    """README: R is the distance from the fill to the stop. A stop the fill gapped past
    (above a long's fill) put a 1 R target below the fill."""
    df = _bars([(100, 101, 99, 100), (100, 101, 99, 100), (99, 103, 98.5, 102), (102, 103, 101, 102)])
    kw = dict(stop=[99.5], target=[1.0], stop_mode=ABS, target_mode=codes.PRICE_R_MULTIPLE, finalize=True)
    out = h.kernel(df, [0], [1], **kw)    # fill at bar 1's open (100): stop 99.5 below, target 100.5
    assert out["trades"]["target"].tolist() == [100.5]
    wrong = h.kernel(df, [1], [1], **kw)  # fill at bar 2's open (99), below the stop: target 99.5 + ... beyond
    assert wrong["trades"]["target"].tolist() == [99.0 + 0.5]
    assert wrong["trades"]["exit_reason"].tolist() == [codes.EXIT_STOP_LOSS]


# ------------------------------------------------------------------ properties

def _random_case(seed: int, n: int, k: int, limit: bool):
    """Random finer bars (``k`` per bar), the bars made of them, and setups with
    absolute stops and targets a few finer ranges away."""
    rng = np.random.default_rng(seed)
    m = n * k
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.004, m)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.001, m))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.002, m)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.002, m)))
    starts = np.arange(0, m, k, dtype=np.int64)
    df = _bars({"open": open_[starts], "high": np.maximum.reduceat(high, starts),
                "low": np.minimum.reduceat(low, starts), "close": close[starts + k - 1]})
    fine = FinerBars(starts, starts + k, open_, high, low)
    bars_ = np.sort(rng.choice(np.arange(n - 2), size=max(1, n // 6), replace=False)).astype(np.int64)
    d = rng.choice([-1, 1], size=bars_.size)
    c = df.close.to_numpy()[bars_]
    width = rng.uniform(0.003, 0.012, bars_.size) * c
    kw = dict(stop=c - d * width, target=c + d * width * rng.uniform(0.5, 2.0, bars_.size),
              stop_mode=ABS, target_mode=ABS, whole_units=False)
    if limit:
        kw["limit"] = c - d * width * 0.3
    return df, fine, bars_, d, kw


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(0, 10_000), st.booleans())
def test_finer_bars_change_nothing_before_the_first_ambiguous_bar(seed, limit):
    df, fine, bars_, d, kw = _random_case(seed, 120, 4, limit)
    base = h.kernel(df, bars_, d, **kw)
    out = h.kernel(df, bars_, d, fine=fine, **kw)
    j = base["journal"]
    decided = j[((j["event"] == codes.EV_TRADE_OPENED) | (j["event"] == codes.EV_TRADE_CLOSED))
                & (j["rule"] != codes.FILL_RULE_BAR)]
    if decided.size == 0:  # no ambiguous bar: the finer bars change nothing at all
        assert np.array_equal(base["trades"], out["trades"]) and np.array_equal(base["equity"], out["equity"])
        return
    first = decided[0]
    assert first["rule"] == codes.FILL_RULE_PESSIMISTIC
    k = first["trade"]  # every trade before the first ambiguous bar's trade is the same
    assert np.array_equal(base["trades"][:k], out["trades"][:k])
    assert np.array_equal(base["equity"][:first["bar"]], out["equity"][:first["bar"]])
    jo = out["journal"]
    same = jo[(jo["bar"] == first["bar"]) & (jo["event"] == first["event"])]
    assert same.size and same["rule"][0] == codes.FILL_RULE_FINER  # decided by the finer bars there


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(0, 10_000), st.booleans(), st.floats(0.2, 0.95))
def test_prefix_replay_with_finer_bars(seed, limit, frac):
    df, fine, bars_, d, kw = _random_case(seed, 100, 3, limit)
    full = h.kernel(df, bars_, d, fine=fine, **kw)
    t = 2 + int(frac * (len(df) - 3))
    keep = bars_ < t
    cut = {k: (np.asarray(v)[keep] if isinstance(v, np.ndarray) and v.shape == bars_.shape else v)
           for k, v in kw.items()}
    part_fine = FinerBars(fine.start[:t], fine.end[:t], fine.open, fine.high, fine.low)
    part = h.kernel(df.iloc[:t].reset_index(drop=True), bars_[keep], d[keep], fine=part_fine, **cut)
    settled = part["trades"]["exit_bar"] < t - 1
    assert np.array_equal(part["trades"][settled], full["trades"][:settled.sum()])
    assert np.array_equal(part["equity"][:t - 1], full["equity"][:t - 1])


# ------------------------------------------------------------------ config and data

ICT_1H = {"data": {"source": "eurusd_15m", "timezone": "Europe/Athens", "calendar": "fx_24x5",
                   "timeframe": "1h"},
          "instrument": {"symbol": "EURUSD", "pip_size": 0.0001}, "cash": 10000, "commission": 2e-05,
          "leverage": 30}


def _op(**data):
    op = {**ICT_1H, "data": {**ICT_1H["data"], **data}}
    return op


@pytest.fixture(scope="module")
def ict_runs():
    pessimistic = mf.backtest("config/runs/ict_smc_strategy.yaml", _op())
    finer = mf.backtest("config/runs/ict_smc_strategy.yaml", _op(intrabar="source"))
    return pessimistic, finer


def test_bundled_ict_on_1h_bars_resolved_with_the_15m_bars(ict_runs):
    pessimistic, finer = ict_runs
    assert len(pessimistic.data) < 7000 and pessimistic.data.index[1] - pessimistic.data.index[0] == pd.Timedelta("1h")
    rule_p = pessimistic.journal.fill_rule.value_counts()
    rule_f = finer.journal.fill_rule.value_counts()
    assert rule_p.get("pessimistic", 0) > 0 and "finer_bars" not in rule_p
    # the 15m source covers every 1h bar: no ambiguous bar is left to the pessimistic rule
    assert rule_f.get("finer_bars", 0) > 0 and "pessimistic" not in rule_f
    assert finer.specs.hash != pessimistic.specs.hash
    t_p, t_f = pessimistic.trades, finer.trades
    first = pessimistic.journal.query("fill_rule == 'pessimistic'").time.min()  # opening or closing
    assert t_p[t_p.exit_time < first].equals(t_f[t_f.exit_time < first])


def test_an_intrabar_file_gives_what_the_resampled_source_gives(tmp_path, ict_runs):
    _, finer = ict_runs
    src = mf.load_data("eurusd_15m", timezone="Europe/Athens")
    path = tmp_path / "eurusd_15m_utc.csv"
    src.to_csv(path)  # UTC timestamps, pandas' own layout
    op = _op(intrabar=str(path))
    op["data"].pop("timezone")  # the run's bars: the sample read on its clock; the file: UTC
    op["data"]["source"] = str(path)
    res = mf.backtest("config/runs/ict_smc_strategy.yaml", op)
    assert res.specs.data_intrabar_fingerprint
    assert res.trades.drop(columns=[]).equals(finer.trades)


def test_batch_path_equals_single_runs_with_finer_bars(tmp_path):
    op = _op(intrabar="source", start="2023-04-15", end="2023-05-31")  # holds an ambiguous bar
    (tmp_path / "op.yaml").write_text(__import__("yaml").safe_dump(op))
    cfg = {"optimization_config": {
        "name": "intrabar", "base_operation": str(tmp_path / "op.yaml"),
        "base_strategy": "config/runs/ict_smc_strategy.yaml",
        "parameter_space": [{"worker_instance": "fvg_det_1", "parameters": {"min_gap_size": {"values": [1, 3]}}}],
        "optimization_target": {"primary_metric": "sharpe_ratio"}, "parallel": {"engine": "batch"}}}
    (tmp_path / "opt.yaml").write_text(__import__("yaml").safe_dump(cfg))
    res = mf.optimize(tmp_path / "opt.yaml", backend="sequential", progress=False)
    assert res.successful_runs == 2
    assert res.engine == "batch"
    for _, row in res.all_results.iterrows():
        single = mf.backtest("config/runs/ict_smc_strategy.yaml", tmp_path / "op.yaml",
                             fvg_det_1__min_gap_size=row["fvg_det_1.min_gap_size"])
        keys = [k for k in single.metrics if k in row.index]
        assert len(keys) >= 15
        for key in keys:  # every metric, bit for bit (NaN where both are undefined)
            a, b = row[key], single.metrics[key]
            assert a == b or (a != a and (b is None or b != b)), key


def test_intrabar_source_needs_a_timeframe():
    with pytest.raises(ConfigError, match="intrabar.*data.timeframe"):
        mf.backtest("config/runs/sma_cross.yaml", {"data": {"source": "sp500_daily", "intrabar": "source"}})


def test_finer_bars_must_be_finer_and_inside_their_bars():
    idx = pd.date_range("2024-01-02", periods=8, freq="1h")
    base = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 1.0, "close": 1.0}, index=idx[::2])
    with pytest.raises(DataError, match="expected finer bars"):
        map_finer_bars(base.iloc[:2], base, label="f.csv")
    fine = pd.DataFrame({"open": 1.0, "high": [2, 2, 2, 2.5, 2, 2, 2, 2], "low": 1.0, "close": 1.0}, index=idx)
    with pytest.raises(DataError, match=r"f.csv: at 2024-01-02 02:00:00.*outside the bar's low..high.*\(1 bar so\)"):
        map_finer_bars(base, fine, label="f.csv")
    later = fine.set_axis(idx + pd.Timedelta("30D"))
    with pytest.raises(DataError, match="no intrabar bar falls inside"):
        map_finer_bars(base, later, label="f.csv")


def test_bars_stored_as_float32_match_their_float64_finer_bars():
    """float32 Parquet rounds prices by up to 6e-8 of their value: the same prices, not
    another source (hunt68 F1: refused, with two ranges that printed alike)."""
    rng = np.random.default_rng(7)
    idx = pd.date_range("2024-01-02", periods=400, freq="15min")
    close = 0.97 + rng.normal(0, 2e-4, 400).cumsum()
    opens = np.r_[close[0], close[:-1]]
    fine = pd.DataFrame({"open": opens, "high": np.maximum(opens, close) + 1e-4,
                         "low": np.minimum(opens, close) - 1e-4, "close": close}, index=idx)
    hourly = fine.resample("1h").agg({"open": "first", "high": "max", "low": "min", "close": "last"})
    as32 = hourly.astype(np.float32).astype(np.float64)
    assert (as32["high"] != hourly["high"]).any()
    got = map_finer_bars(as32, fine, label="f.parquet")
    assert (got.end - got.start == 4).all()
    # another source is refused as before, and the message tells the two ranges apart
    other = fine.assign(high=fine["high"] + 3e-5 * (np.arange(400) % 4 == 1))
    with pytest.raises(DataError, match=r"reach 0\.\d{5,}\.\.0\.\d{5,} outside the bar's low\.\.high "
                                        r"0\.\d{5,}\.\.0\.\d{5,}, above its high by 3e-05"):
        map_finer_bars(hourly, other, label="f.parquet")


def test_a_bad_intrabar_file_exits_2_naming_it(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    op = tmp_path / "op.yaml"
    op.write_text("data:\n  source: sp500_daily\n  intrabar: missing_5m.csv\n")
    exe = str(Path(sys.executable).parent / "metaflow-nb")
    p = subprocess.run([exe, "backtest", "--strategy", "config/runs/sma_cross.yaml", "--operation", str(op)],
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "intrabar" in lines[0] and "missing_5m.csv" in lines[0]


def test_a_variant_may_set_data_keys_its_base_left_unset():
    base = mf.build_specs("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
    assert base.with_overrides({}).run_id == base.run_id  # nothing set: the run id stays
    weekly = base.with_overrides({"operation": {"data": {"timeframe": "1w", "calendar": "exchange"}}})
    assert (weekly.data_timeframe, weekly.data_calendar) == ("1w", "exchange") and weekly.run_id != base.run_id
    with pytest.raises(ConfigError, match="no such key"):
        base.with_overrides({"operation": {"data": {"timeframes": "1w"}}})  # a typo is still refused
    with pytest.raises(ConfigError, match="operation.data.intrabar: an override may set 'source'"):
        base.with_overrides({"operation": {"data": {"intrabar": "prices_5m.csv"}}})
    res = mf.backtest(weekly)
    assert res.data.index[1] - res.data.index[0] == pd.Timedelta("7D")


def test_cli_backtest_takes_timeframe_and_intrabar(capsys, ict_runs):
    import json
    from metaflow_nb.cli import main
    _, finer = ict_runs
    rc = main(["backtest", "--strategy", "config/runs/ict_smc_strategy.yaml", "--operation",
               "config/operations/ict_backtest.yaml", "--timeframe", "1h", "--intrabar", "source", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trades"] == len(finer.trades)  # same bars and rules: the same trades (the op's name differs)
    assert out["metrics"]["total_return_pct"] == finer.metrics["total_return_pct"]
    rc = main(["backtest", "--strategy", "config/runs/sma_cross.yaml", "--intrabar", "source"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "data.timeframe" in err[0], err


def test_start_and_end_pick_whole_bars_of_the_timeframe(ict_runs):
    """``data.start``/``data.end`` with ``data.timeframe`` cut the resampled bars: the last
    (and first) 1h bar is the whole hour, not the 15m bars before the cut (a walk-forward
    window's end is such a cut)."""
    whole = ict_runs[0].data
    first, last = whole.index[100], whole.index[400]
    # start a quarter past: the first bar is the next whole hour
    cut = mf.backtest("config/runs/sma_cross.yaml",
                      _op(start=str(first + pd.Timedelta("15min")), end=str(last))).data
    assert cut.index[0] == whole.index[101] and cut.index[-1] == last
    pd.testing.assert_frame_equal(cut, whole.loc[whole.index[101]:last], check_freq=False)
    # a DataFrame handed in with the same operation is cut the same way
    src = mf.load_data("eurusd_15m", timezone="Europe/Athens")
    op = _op(start=str(first), end=str(last))
    op["data"].pop("timezone")
    from_frame = mf.backtest("config/runs/sma_cross.yaml", op, data=src).data
    pd.testing.assert_frame_equal(from_frame, whole.loc[first:last], check_freq=False)
    with pytest.raises(DataError, match="no rows between"):
        mf.backtest("config/runs/sma_cross.yaml", _op(start="2031-01-01"))


def test_a_daily_file_of_dates_and_its_hourly_file_on_one_clock_line_up(tmp_path):
    """A broker's D1 and H1 exports on its server clock (Athens): the daily file's dates
    stay dates, the hourly times are converted to UTC; each hour belongs to the daily bar
    of its own date on that clock (it went by UTC instants: Athens 02:00 .. 01:00 of the
    next day, and a file whose next day's first hours left the range was refused)."""
    hours = pd.date_range("2023-01-09 00:00", "2023-01-13 23:00", freq="h")
    rng = np.random.default_rng(3)
    close = 1.07 + np.cumsum(rng.normal(0, 0.001, len(hours)))
    h1 = pd.DataFrame({"open": np.r_[close[0], close[:-1]], "close": close}, index=hours)
    h1["high"] = h1[["open", "close"]].max(axis=1) + 0.0002
    h1["low"] = h1[["open", "close"]].min(axis=1) - 0.0002
    d1 = h1.resample("1D").agg({"open": "first", "high": "max", "low": "min", "close": "last"})
    h1.rename_axis("date").to_csv(tmp_path / "H1.csv", date_format="%Y-%m-%d %H:%M:%S")
    d1.rename_axis("date").to_csv(tmp_path / "D1.csv", date_format="%Y-%m-%d")
    from metaflow_nb.assembly.dataset import dataset_finer_bars
    specs = mf.build_specs("config/runs/sma_cross.yaml", {"data": {
        "source": str(tmp_path / "D1.csv"), "timezone": "Europe/Athens", "intrabar": str(tmp_path / "H1.csv")}})
    bars = mf.load_data(tmp_path / "D1.csv", timezone="Europe/Athens")
    fb = dataset_finer_bars(bars, specs)
    assert fb.start.tolist() == [0, 24, 48, 72, 96] and fb.end.tolist() == [24, 48, 72, 96, 120]


@pytest.mark.parametrize("clock", [None, "America/New_York"])
def test_a_daily_file_of_dates_keeps_the_finer_bars_of_a_session_that_opens_after_midnight(tmp_path, clock):
    """A stock's D1 (dates) and H1 (09:30 .. 15:30 New York): a date has no time of day to
    start at, so its first finer bar, opening at its open, starts it. The finer bars had to
    start at the bar's 00:00, which no session opening later does: no day kept them, and
    every both-touched bar fell to the stop-first rule, with or without a clock (hunt102 F1)."""
    days = pd.bdate_range("2024-01-08", periods=5)
    stamps = [d + pd.Timedelta(hours=9, minutes=30) + pd.Timedelta(hours=q) for d in days for q in range(7)]
    close = 100 + np.cumsum(np.random.default_rng(5).normal(0, 0.5, len(stamps)))
    h1 = pd.DataFrame({"open": np.r_[100.0, close[:-1]], "close": close}, index=pd.DatetimeIndex(stamps))
    h1["high"] = h1[["open", "close"]].max(axis=1) + 0.1
    h1["low"] = h1[["open", "close"]].min(axis=1) - 0.1
    d1 = h1.groupby(h1.index.normalize()).agg({"open": "first", "high": "max", "low": "min", "close": "last"})
    h1.rename_axis("date").to_csv(tmp_path / "H1.csv", date_format="%Y-%m-%d %H:%M:%S")
    d1.rename_axis("date").to_csv(tmp_path / "D1.csv", date_format="%Y-%m-%d")
    from metaflow_nb.assembly.dataset import dataset_finer_bars
    data = {"source": str(tmp_path / "D1.csv"), "intrabar": str(tmp_path / "H1.csv"),
            **({"timezone": clock} if clock else {})}
    specs = mf.build_specs("config/runs/sma_cross.yaml", {"data": data})
    fb = dataset_finer_bars(mf.load_data(tmp_path / "D1.csv", timezone=clock), specs)
    assert fb.covered == 5
    assert fb.start.tolist() == [0, 7, 14, 21, 28] and fb.end.tolist() == [7, 14, 21, 28, 35]
    # a day whose first hour is missing has no start to show: the stop-first rule decides it
    (tmp_path / "H1.csv").write_text("\n".join(ln for k, ln in enumerate((tmp_path / "H1.csv").read_text()
                                                                         .splitlines()) if k != 8) + "\n")
    specs = mf.build_specs("config/runs/sma_cross.yaml", {"data": data})
    assert dataset_finer_bars(mf.load_data(tmp_path / "D1.csv", timezone=clock), specs).covered == 4


def test_finer_bars_that_miss_part_of_their_bar_leave_it_to_the_pessimistic_rule():
    """A finer file missing some of a bar's finer bars cannot say which level came first:
    a bar is decided by its finer bars only when they open at its open and reach its high
    and low; otherwise it keeps the stop-first rule (it took the target at 102, a 4-point
    swing per unit, when two of four 15m bars were missing)."""
    idx = pd.date_range("2024-01-02 00:00", periods=8, freq="15min")
    # 1h bar 1 (01:00) touches the stop 98 (low 97) and the target 102 (high 103); its finer
    # bars 01:00 and 01:15 are there, 01:30 (the low 97) and 01:45 are missing
    fine = pd.DataFrame({"open": [100, 100, 100, 100, 100, 101.0, 100, 100],
                         "high": [100.5, 100.5, 100.5, 100.5, 101, 103, 100.5, 100.5],
                         "low": [99.5, 99.5, 99.5, 99.5, 99.5, 99.0, 97, 99.5],
                         "close": 100.0}, index=idx)
    base = pd.DataFrame({"open": [100.0, 100.0], "high": [100.5, 103.0], "low": [99.5, 97.0], "close": 100.0},
                        index=idx[::4])
    whole = map_finer_bars(base, fine, label="f.csv")
    assert (whole.start.tolist(), whole.end.tolist()) == ([0, 4], [4, 8])
    gappy = map_finer_bars(base, fine.drop(idx[6:]), label="f.csv")
    assert gappy.end[1] == gappy.start[1]          # bar 1 is not decided by its two finer bars
    late = fine.drop(idx[4])                       # the bar's first 15 minutes are missing
    assert map_finer_bars(base, late, label="f.csv").covered == 1
    # hunt38 F1: missing too when the next finer bar happens to open at the bar's open
    # price (the first 15 minutes may have hit the stop and come back)
    same_open = fine.copy()
    same_open.loc[idx[5], "open"] = 100.0
    assert map_finer_bars(base, same_open, label="f.csv").covered == 2
    assert map_finer_bars(base, same_open.drop(idx[4]), label="f.csv").covered == 1
    # the run's bars made of these finer bars (intrabar: source) are complete by construction
    assert map_finer_bars(base, fine.drop(idx[6:]), label="f.csv", made_of=True).covered == 2


def test_a_gappy_intrabar_file_keeps_the_stop_first_rule_end_to_end(tmp_path):
    idx = pd.date_range("2024-01-02 00:00", periods=12, freq="15min")
    fine = pd.DataFrame({"open": 100.0, "high": 100.5, "low": 99.5, "close": 100.0, "volume": 1.0}, index=idx)
    # bar 2 (02:00 .. 02:45): 02:00 rallies to 103 (the target), 02:30 drops to 97 (the stop)
    fine.loc[idx[8], ["high"]] = 103.0
    fine.loc[idx[10], ["low"]] = 97.0
    hourly = fine.resample("1h").agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    hourly.to_csv(tmp_path / "h1.csv")
    stops = {"stop_loss_pct": 2.0, "take_profit_pct": 2.0, "reference": "fill"}
    bp = h.blueprint(longs=[0], stops=stops)

    def run(finer):
        finer.to_csv(tmp_path / "m15.csv")
        op = {**h.operation(), "data": {"source": str(tmp_path / "h1.csv"), "intrabar": str(tmp_path / "m15.csv")}}
        t = mf.backtest(bp, op).trades
        return t["exit_reason"].tolist(), t["exit_price"].tolist()

    assert run(fine) == (["TAKE_PROFIT"], [102.0])          # the whole hour: the target came first
    assert run(fine.drop(idx[10])) == (["STOP_LOSS"], [98.0])  # the 02:30 low is missing: stop first


def test_a_finer_bar_missing_inside_its_bar_leaves_it_to_the_pessimistic_rule(tmp_path):
    """hunt111 F1: a row missing between a bar's first finer bar and its last passed the
    whole-path check (the first at the bar's open, the high and low reached) and the bar was
    replayed with a hole: 02:15 dipped to the stop, 02:30 rallied to the target; without
    02:15 the target was booked (+198 where the stop is -198), said decided by finer bars."""
    idx = pd.date_range("2024-01-02 00:00", periods=12, freq="15min")
    fine = pd.DataFrame({"open": 100.0, "high": 100.5, "low": 99.5, "close": 100.0, "volume": 1.0}, index=idx)
    fine.loc[idx[9], "low"] = 97.5    # 02:15: the stop 98
    fine.loc[idx[10], "high"] = 103.0  # 02:30: the target 102
    fine.loc[idx[11], "low"] = 97.0    # 02:45: the bar's low
    hourly = fine.resample("1h").agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    holed = fine.drop(idx[9])
    mapped = map_finer_bars(hourly, holed, label="m15.csv")
    assert mapped.covered == 2 and mapped.end[2] == mapped.start[2]
    # the mirror: the missing row held the target touch, the stop would be booked
    mirror = fine.copy()
    mirror.loc[idx[9], ["low", "high"]] = [99.5, 103.0]
    mirror.loc[idx[10], ["low", "high"]] = [97.5, 100.5]
    assert map_finer_bars(hourly, mirror.drop(idx[9]), label="m15.csv").covered == 2
    # the bar's last row missing, its high and low reached before: nothing after them can
    # change which level came first, the bar keeps its finer bars
    tail = fine.copy()
    tail.loc[idx[9], "low"] = 97.0
    tail.loc[idx[11], "low"] = 99.5
    tail_hourly = tail.resample("1h").agg({"open": "first", "high": "max", "low": "min", "close": "last"})
    assert map_finer_bars(tail_hourly, tail.drop(idx[11]), label="m15.csv").covered == 3
    hourly.to_csv(tmp_path / "h1.csv")
    bp = h.blueprint(longs=[0], stops={"stop_loss_pct": 2.0, "take_profit_pct": 2.0, "reference": "fill"})

    def run(finer):
        finer.to_csv(tmp_path / "m15.csv")
        op = {**h.operation(), "data": {"source": str(tmp_path / "h1.csv"), "intrabar": str(tmp_path / "m15.csv")}}
        res = mf.backtest(bp, op)
        closed = res.journal[res.journal["event"] == "TRADE_CLOSED"]
        return res.trades["exit_reason"].tolist(), res.trades["exit_price"].tolist(), closed["fill_rule"].tolist()

    assert run(fine) == (["STOP_LOSS"], [98.0], ["finer_bars"])
    assert run(holed) == (["STOP_LOSS"], [98.0], ["pessimistic"])


def test_fill_changes_counts_bars_not_fill_events():
    # hunt19 F10: 7 finer-bar fills fall on 5 bars (a trade opened and stopped on one bar is two events)
    import metaflow_nb as mf
    from metaflow_nb.services.fills import fill_changes
    a = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_1h.yaml")
    b = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_1h_intrabar.yaml")
    c = fill_changes(a, b)
    finer = b.journal[b.journal["fill_rule"] == "finer_bars"]
    assert c["decided_by_finer_bars"] == len(set(finer["bar"])) == 5 < len(finer) == 7
    pess = a.journal[a.journal["fill_rule"] == "pessimistic"]
    assert c["ambiguous"] == len(set(pess["bar"])) == 5


def test_a_cut_after_a_bar_labelled_inside_its_bin_keeps_its_finer_bars_to_the_bins_end():
    """hunt53 F1: a resampled bar is labelled by its first source bar; the FX week opens
    Monday 00:00 inside the 21:00-01:00 4h bin, and a data.end cutting after that bar gave
    it the source bars to 00:00 + 4h, the next bin's 01:00-03:45 among them: the run (and
    check-causality's cut there) was refused as finer bars outside their bar."""
    strat = {"name": "s", "workforce": {"opportunity_workers": [
        {"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 5, "slow": 20}}]}}
    op = {"name": "o", "data": {"source": "eurusd_15m", "end": "2022-11-30", "timeframe": "4h",
                                "calendar": "fx_24x5", "intrabar": "source"},
          "instrument": {"symbol": "EURUSD", "pip_size": 0.0001}, "cash": 10000}
    whole = mf.backtest(strat, op)
    cut_op = {**op, "data": {**op["data"], "end": "2022-10-17 00:00"}}
    cut = mf.backtest(strat, cut_op)
    assert cut.data.index[-1] == pd.Timestamp("2022-10-17 00:00") and len(cut.data) == 32
    pd.testing.assert_frame_equal(cut.data, whole.data.iloc[:32], check_freq=False)
    k = int(np.searchsorted(whole.data.index, pd.Timestamp("2022-10-17"))) + 1
    assert mf.check_causality(strat, operation=op, cuts=[k]).ok


@pytest.mark.parametrize("timeframe, trading_day, freq", [
    ("1h", "America/New_York", "15min"),   # the 01:00 bin of the November change holds two hours
    ("4h", "fx", "15min"),                 # ... and the 4h@fx bin five
    ("1d", "America/New_York", "15min"),   # a 25-hour day
    ("1M", "utc", "D"),                    # months of 31 days from daily bars
])
def test_intrabar_source_gives_each_bar_every_source_bar_of_its_bin(tmp_path, timeframe, trading_day, freq):
    """hunt60 F1: a bar ended at its label plus the median bar length, so a bin longer than
    the median (the DST change's two-hour hour, a 31-day month) lost its last source bars
    and a bar they decided fell to the pessimistic rule. Each bar holds its bin's bars, as
    the resampling grouped them."""
    from metaflow_nb.assembly.dataset import dataset_finer_bars
    from metaflow_nb.data.timeframe import resample
    from metaflow_nb.services.operation import resolve_data

    start, end = ("2023-01-01", "2023-12-31") if freq == "D" else ("2023-11-02", "2023-11-08")
    idx = pd.date_range(start, end, freq=freq)
    idx = idx[idx.day_of_week < 5] if freq == "D" else idx
    rng = np.random.default_rng(7)
    c = 100 + np.cumsum(rng.normal(0, 0.1, len(idx)))
    o = np.r_[100.0, c[:-1]]
    frame = pd.DataFrame({"time": idx.strftime("%Y-%m-%d %H:%M:%S"), "open": o, "high": np.maximum(o, c) + 0.05,
                          "low": np.minimum(o, c) - 0.05, "close": c, "volume": 1.0})
    path = tmp_path / "src.csv"
    frame.to_csv(path, index=False)
    op = {"name": "o", "data": {"source": str(path), "timeframe": timeframe, "trading_day": trading_day,
                                "calendar": "crypto_24x7", "intrabar": "source"},
          "instrument": {"symbol": "X", "pip_size": 0.01}}
    specs = mf.build_specs("config/runs/sma_cross.yaml", op)
    bars = resolve_data(specs)
    fb = dataset_finer_bars(bars, specs)
    groups = resample(mf.load_data(path), timeframe, trading_day)
    assert fb.start.tolist() == groups.starts.tolist()
    assert fb.end.tolist() == [*groups.starts[1:].tolist(), len(idx)]


@pytest.mark.parametrize("start, end, hours", [
    (None, "2023-04-03 15:00", ["12:00", "13:00", "14:00", "15:15"]),   # the 15:00 hour kept whole
    ("2023-04-03 15:00", None, ["15:15", "16:00", "17:00", "18:00"]),
    ("2023-04-03 14:15", None, ["15:15", "16:00", "17:00", "18:00"]),   # a quarter past: the next hour
    ("2023-04-03 15:10", None, ["16:00", "17:00", "18:00"]),            # inside the 15:00 hour: the next
    (None, "2023-04-03", ["12:00", "13:00", "14:00", "15:15", "16:00", "17:00", "18:00"]),
])
def test_start_and_end_pick_whole_bins_when_a_bins_first_bar_is_missing(tmp_path, start, end, hours):
    """hunt60 F2: a resampled bar is labelled by its first source bar; with the 15:00 bar
    missing the 15:00 hour is labelled 15:15, and 'end: 15:00' dropped that whole hour,
    'start: 15:10' kept it. Start and end pick bars by the bins they open, as the README says."""
    from metaflow_nb.services.operation import resolve_data

    idx = pd.date_range("2023-04-03 12:00", "2023-04-03 18:45", freq="15min")
    idx = idx[idx != pd.Timestamp("2023-04-03 15:00")]
    o = np.arange(len(idx)) + 100.0
    path = tmp_path / "gap.csv"
    pd.DataFrame({"time": idx.strftime("%Y-%m-%d %H:%M:%S"), "open": o, "high": o + 1, "low": o - 1,
                  "close": o + 0.5, "volume": 1.0}).to_csv(path, index=False)
    data = {"source": str(path), "timeframe": "1h", **({"start": start} if start else {}), **({"end": end} if end else {})}
    specs = mf.build_specs("config/runs/sma_cross.yaml", {"name": "o", "data": data,
                                                          "instrument": {"symbol": "X", "pip_size": 0.01}})
    assert [t.strftime("%H:%M") for t in resolve_data(specs).index] == hours
