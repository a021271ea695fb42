"""The batch path of mode portfolio (issue #17 part 4, acceptance 2: batch == single path
bit for bit): assembly.portfolio.sweep_shared runs many combinations over one basket in
one prange kernel call; each row must equal SharedPortfolioResult.metrics of that
combination's run_portfolio (==, or both NaN)."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaflow_nb.assembly.basket import union_calendar
from metaflow_nb.assembly.portfolio import SharedSweep, sweep_shared, union_prices
from metaflow_nb.assembly.run import prepare
from metaflow_nb.config.translator import ConfigTranslator
from metaflow_nb.engine.metrics import METRIC_NAMES, daily_returns, metrics_from_frames
from metaflow_nb.errors import ConfigError
from metaflow_nb.services.portfolio import load_basket, run_portfolio
from portfolio_helpers import write_basket

ROOT = Path(__file__).resolve().parents[1]


def _strategy(long_only: bool, reference: str = "signal_close", drawdown: bool = False, sizer: str = "fraction"):
    doc = yaml.safe_load((ROOT / "config/runs/sma_cross_long_stops.yaml").read_text())
    doc["direction"] = "long_only" if long_only else "long_short"
    doc["workforce"]["planning_workers"]["exit_planning"][0]["params"]["reference"] = reference
    if sizer == "fraction":
        doc["workforce"]["planning_workers"]["size_planning"][0] = {
            "instance_id": "size_1", "plugin": "fixed_fraction_sizer", "params": {"fraction": 0.4}}
    threats = [{"instance_id": "vol_1", "plugin": "volatility_spike_detector",
                "params": {"lookback": 20, "percentile": 80, "atr_period": 5}}]
    if drawdown:
        threats.append({"instance_id": "dd_1", "plugin": "max_drawdown_monitor",
                        "params": {"max_drawdown_pct": 5, "cooldown_bars": 3}})
    doc["workforce"]["threat_workers"] = threats
    return doc


def _sweep(strategy, basket, combos, **kw) -> tuple[np.ndarray, list[str]]:
    """sweep_shared over ``combos`` (one params dict each, as run_portfolio takes them),
    each instrument's features cached across combinations as a sweep caches them."""
    op, items, bars = basket
    symbols = [it["symbol"] for it in items]
    caches: dict[str, dict] = {s: {} for s in symbols}
    tr = ConfigTranslator()
    specs = [[tr.translate(strategy, it["operation"], data=bars[it["symbol"]], params=params) for it in items]
             for params in combos]
    runs = [[prepare(sp, bars[s], caches[s]) for sp, s in zip(row, symbols)] for row in specs]
    vecs = sweep_shared(runs, [bars[s] for s in symbols], float(op.cash), int(op.max_positions or 0),
                        specs[0][0].data_calendar, symbols=symbols, **kw)
    return vecs, symbols


def _assert_rows_are_the_single_runs(vecs, strategy, basket, combos):
    for row, params in zip(vecs, combos):
        single = run_portfolio(strategy, basket, **params).metrics
        for name, v in zip(METRIC_NAMES, row.tolist()):
            w = single[name]
            assert v == w or (math.isnan(v) and math.isnan(w)), (params, name, v, w)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), n_inst=st.integers(2, 4), n_days=st.integers(60, 120),
       drop=st.sampled_from([0.0, 0.1, 0.3]), max_positions=st.sampled_from([None, 1, 2, 3]), long_only=st.booleans(),
       reference=st.sampled_from(["signal_close", "fill"]), drawdown=st.booleans(),
       # 20x leverage ruins most of these accounts: the rest of the bars fold a zero equity
       account=st.sampled_from([{}, {"finalize_trades": True}, {"leverage": 3.0, "slippage": 0.001},
                                {"leverage": 20.0}]),
       sizer=st.sampled_from(["fraction", "all_in"]))
def test_batch_rows_equal_the_single_path_bit_for_bit(seed, n_inst, n_days, drop, max_positions, long_only, reference,
                                                     drawdown, account, sizer):
    strategy = _strategy(long_only, reference, drawdown, sizer)
    # two feature groups (fast 3 and 4) and, within them, other stops and drawdown limits
    combos = [{"sma_1__fast": 3, "sma_1__slow": 8, "stops_1__stop_loss_pct": 2.0},
              {"sma_1__fast": 4, "sma_1__slow": 8, "stops_1__stop_loss_pct": 4.0},
              {"sma_1__fast": 3, "sma_1__slow": 8, "stops_1__stop_loss_pct": 4.0, "stops_1__take_profit_pct": 3.0}]
    if drawdown:
        combos[2]["dd_1__max_drawdown_pct"] = 2.0
    with tempfile.TemporaryDirectory() as tmp:
        write_basket(Path(tmp), seed, n_inst, n_days, drop, vol=0.03, open_vol=0.01)
        cap = {} if max_positions is None else {"max_positions": max_positions}
        basket = load_basket({"mode": "portfolio", "universe": {"path": tmp}, "cash": 1_000, "commission": 0.001,
                              **cap, **account})
    vecs, _ = _sweep(strategy, basket, combos)
    assert vecs.shape == (3, len(METRIC_NAMES))
    _assert_rows_are_the_single_runs(vecs, strategy, basket, combos)


def test_us_stocks_basket_rows_chunks_and_the_single_metrics_as_before():
    strategy = _strategy(long_only=False, sizer="all_in")
    op = {**yaml.safe_load((ROOT / "config/operations/us_stocks_basket.yaml").read_text()), "mode": "portfolio",
          "max_positions": 3, "data": {"start": "2010-01-01", "end": "2013-03-01", "calendar": "exchange"}}
    basket = load_basket(op)
    # feature groups interleaved: rows come back in the order asked for
    combos = [{"sma_1__fast": f, "sma_1__slow": 30, "stops_1__stop_loss_pct": sl} for sl in (2.0, 5.0) for f in (5, 10)]
    vecs, symbols = _sweep(strategy, basket, combos)
    assert (vecs[:, METRIC_NAMES.index("total_trades")] > 50).all()
    _assert_rows_are_the_single_runs(vecs, strategy, basket, combos)
    # one combination per kernel call (every chunk repacks its groups): the same rows; the
    # daily returns kept are those of each run's total equity
    returns = np.empty((len(combos), len(daily_returns(run_portfolio(strategy, basket).equity["total"], 1.0,
                                                                     "exchange"))))
    np.testing.assert_array_equal(_sweep(strategy, basket, combos, chunk_bytes=1, returns=returns)[0], vecs)
    for row, params in zip(returns, combos):
        res = run_portfolio(strategy, basket, **params)
        np.testing.assert_array_equal(row, daily_returns(res.equity["total"], res.starting_cash, "exchange").to_numpy())
    # the single path's metrics are what they were before the batch path (the metrics of the
    # trades table, the total equity and the union exposure, through metrics_from_frames)
    res = run_portfolio(strategy, basket, **combos[0])
    trades = res.trades
    placed = trades.assign(entry_bar=res.index.get_indexer(trades["entry_time"]),
                           exit_bar=res.index.get_indexer(trades["exit_time"]))
    events = res.journal["event"]
    before = metrics_from_frames(res.equity["total"], res.in_market(), placed, res.starting_cash,
                                 int((events == "OPPORTUNITY_DETECTED").sum()),
                                 int((events == "OPPORTUNITY_REJECTED").sum()), "exchange")
    assert before.keys() == res.metrics.keys()
    for name, v in before.items():
        assert v == res.metrics[name] or (math.isnan(v) and math.isnan(res.metrics[name])), name


def test_what_the_batch_does_not_run_is_refused():
    op = {"mode": "portfolio", "universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]},
          "data": {"start": "2012-01-01"}, "cash": 10_000}
    basket = load_basket(op)
    trailing = _strategy(long_only=True)
    trailing["workforce"]["planning_workers"]["exit_planning"].append(
        {"instance_id": "trail_1", "plugin": "trailing_stop", "params": {"mode": "percent", "percent": 5.0}})
    with pytest.raises(ConfigError, match=r"^mode: portfolio: instrument 'IBM': the strategy uses a trailing stop"):
        _sweep(trailing, basket, [{}])
    # every combination shares the first one's bars and account
    _, items, bars = basket
    tr = ConfigTranslator()
    strategy = _strategy(long_only=True)

    def runs_of(operation_override, cut=0):
        return [prepare(tr.translate(strategy, {**it["operation"], **operation_override},
                                     data=bars[it["symbol"]].iloc[cut:]), bars[it["symbol"]].iloc[cut:])
                for it in items]
    frames = [bars[it["symbol"]] for it in items]
    with pytest.raises(ConfigError, match=r"combination 1, instrument 'IBM': commission.*one account$"):
        sweep_shared([runs_of({}), runs_of({"commission": 0.01})], frames, 10_000.0, 0, None, symbols=["IBM", "MSFT"])
    with pytest.raises(ConfigError, match=r"combination 1, instrument 'IBM': other bars"):
        sweep_shared([runs_of({}), runs_of({}, cut=1)], frames, 10_000.0, 0, None, symbols=["IBM", "MSFT"])
    # prices packed ahead (as sweep_basket packs them beside its first planning) must be
    # the runs' own: the same rows then, else a refusal, never a sweep on other prices
    runs = [runs_of({})]
    index, own_at = union_calendar([f.index for f in frames])
    ahead = union_prices([p.records[0][:4] for p in runs[0]], index, own_at)
    fresh = SharedSweep(runs[0], frames, 10_000.0, 0, None)
    packed = SharedSweep(runs[0], frames, 10_000.0, 0, None, prices=ahead)
    for f in ("open", "high", "low", "close", "has"):
        np.testing.assert_array_equal(getattr(packed.basket, f), getattr(fresh.basket, f))
    [(_, fn, args, _)] = list(packed.calls(runs))
    [(_, fn0, args0, _)] = list(fresh.calls(runs))
    np.testing.assert_array_equal(fn(*args), fn0(*args0))
    other = union_prices([tuple(a * 2.0 for a in p.records[0][:4]) for p in runs[0]], index, own_at)
    with pytest.raises(ValueError, match="other price arrays"):
        SharedSweep(runs[0], frames, 10_000.0, 0, None, prices=other)


def test_limit_entries_expiries_and_threats_of_the_ict_strategy():
    """The ICT strategy (limit entries at the gap, cancels, expiries, three threats, 30x
    leverage, risk sizing) on two FX instruments that share most timestamps: EURUSD 15m and
    a copy scaled by 1.1 missing a tenth of its bars, one position at a time."""
    import metaflow_nb as mf

    part = mf.load_data("eurusd_15m").iloc[:6000]
    rng = np.random.default_rng(3)
    other = part[rng.random(len(part)) > 0.1].copy()
    other[["open", "high", "low", "close"]] *= 1.1
    strategy = ROOT / "config/runs/ict_smc_strategy.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        for sym, df in (("EURUSD", part), ("EURXYZ", other)):
            df.rename_axis("date").reset_index().to_csv(Path(tmp) / f"{sym}.csv", index=False)
        basket = load_basket({"mode": "portfolio", "max_positions": 1, "data": {"calendar": "fx_24x5"},
                              "universe": {"path": tmp, "pip_size": 0.0001}, "cash": 10_000,
                              "commission": 0.00002, "leverage": 30})
    combos = [{"fvg_det_1__min_gap_size": g, "entry_1__expiry_bars": e, "drawdown_1__max_drawdown_pct": d}
              for g, e, d in ((3, 16, 6), (5, 8, 6), (3, 8, 2))]
    vecs, _ = _sweep(strategy, basket, combos)
    assert (vecs[:, METRIC_NAMES.index("total_trades")] > 50).all()
    assert (vecs[:, METRIC_NAMES.index("opportunities_rejected")] > 100).all()
    _assert_rows_are_the_single_runs(vecs, strategy, basket, combos)
