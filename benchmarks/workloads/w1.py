"""W1: one backtest, SMA cross 10/50 with reversal, 0.1 % commission, 100 000 bars.

Every job runs in its own process (see ``benchmarks/run.py``) and returns its timing,
the trade count and the final equity, so the runner can check that the tools agree.

* ``ours_api``: ``mf.backtest`` on ``config/runs/sma_cross.yaml`` (periods overridden) with
  a frame validated once by ``mf.load_data``, trades, journal and metrics included;
* ``ours_kernel``: the compiled loop alone (``common.compiled_loop``: the loop
  ``mf.backtest`` runs, on inputs prepared once; until the run path it was ``simulate``
  with equity and position per bar, now ``simulate_events``, which folds the metrics);
* ``floor``: the hand-written kernel of ``benchmarks/floor.py``;
* ``vectorbt``: ``Portfolio.from_signals`` alone on precomputed signals (shifted one bar,
  filled at the open, whole units), per engine; the whole vectorbt pipeline (MA, crosses,
  portfolio) is reported too;
* ``backtesting``: backtesting.py's ``SmaCross`` with ``exclusive_orders=True``, as in
  ``benchmarks/parity.py``.
"""
from __future__ import annotations

import warnings
from typing import Any

from .common import ROOT, arrays, compiled_loop, loaded, operation, sma_blueprint, synthetic_ohlcv, timed

FAST, SLOW = 10, 50
CASH = 1_000_000.0
COMMISSION = 0.001


def ours_api(bars: int = 100_000, repeat: int = 7, **_: Any) -> dict[str, Any]:
    import metaflow_nb as mf

    df = loaded(bars)
    op = operation(CASH, COMMISSION)
    strategy = str(ROOT / "config/runs/sma_cross.yaml")

    def run():
        res = mf.backtest(strategy, op, data=df, sma_1={"fast": FAST, "slow": SLOW})
        res.trades  # the target counts trades assembly: tables are built on first access
        return res

    t, res = timed(run, repeat)
    raw = synthetic_ohlcv(bars)  # an unvalidated frame: load_data runs inside every call
    t_raw, _ = timed(lambda: mf.backtest(strategy, op, data=raw, sma_1={"fast": FAST, "slow": SLOW}),
                     max(2, repeat // 2))
    return {"time": t, "trades": int(res.metrics["total_trades"]), "final_equity": float(res.metrics["final_equity"]),
            "timings": {k: round(v * 1e3, 3) for k, v in res.timings.items()},
            "raw_frame_median_s": t_raw["median_s"]}


def ours_kernel(bars: int = 100_000, repeat: int = 50, **_: Any) -> dict[str, Any]:
    import metaflow_nb as mf

    df = loaded(bars)
    specs = mf.build_specs(sma_blueprint(FAST, SLOW), operation(CASH, COMMISSION), data=df)
    run, summary = compiled_loop(specs, df)
    t, out = timed(run, repeat)
    n_trades, final_equity = summary(out)
    return {"time": t, "trades": n_trades, "final_equity": final_equity}


def floor(bars: int = 100_000, repeat: int = 50, **_: Any) -> dict[str, Any]:
    import floor as fl  # benchmarks/ is on sys.path in a job process

    o, h, lo, c = arrays(synthetic_ohlcv(bars))
    t, (n, eq) = timed(lambda: fl.sma_cross_floor(o, h, lo, c, FAST, SLOW, 0.0, CASH, COMMISSION, True), repeat)
    return {"time": t, "trades": int(n), "final_equity": float(eq)}


def _vbt_signals(df):
    import vectorbt as vbt

    close = df["close"]
    fast = vbt.MA.run(close, FAST)
    slow = vbt.MA.run(close, SLOW)
    entries = fast.ma_crossed_above(slow)
    exits = fast.ma_crossed_below(slow)
    # decided at the close, filled at the next open (as backtesting.py and metaflow-nb do)
    return entries.shift(1, fill_value=False), exits.shift(1, fill_value=False)


def vectorbt(bars: int = 100_000, repeat: int = 7, engine: str = "numba", **_: Any) -> dict[str, Any]:
    import vectorbt as vbt

    warnings.simplefilter("ignore")
    df = synthetic_ohlcv(bars)
    entries, exits = _vbt_signals(df)

    def portfolio():
        return vbt.Portfolio.from_signals(df["close"], entries, exits, price=df["open"], direction="both",
                                          fees=COMMISSION, init_cash=CASH, size_granularity=1, engine=engine)

    t, pf = timed(portfolio, repeat)

    def pipeline():
        en, ex = _vbt_signals(df)
        p = vbt.Portfolio.from_signals(df["close"], en, ex, price=df["open"], direction="both", fees=COMMISSION,
                                       init_cash=CASH, size_granularity=1, engine=engine)
        return p.final_value()

    t_all, _ = timed(pipeline, max(3, repeat // 2))
    return {"time": t, "trades": int(pf.trades.closed.count()), "final_equity": float(pf.final_value()),
            "pipeline_median_s": t_all["median_s"], "engine": engine}


def backtesting(bars: int = 100_000, repeat: int = 3, **_: Any) -> dict[str, Any]:
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    warnings.simplefilter("ignore")

    def SMA(values, n):
        return pd.Series(values).rolling(n).mean()

    class SmaCross(Strategy):
        def init(self):
            self.sma1 = self.I(SMA, self.data.Close, FAST)
            self.sma2 = self.I(SMA, self.data.Close, SLOW)

        def next(self):
            if crossover(self.sma1, self.sma2):
                self.buy()
            elif crossover(self.sma2, self.sma1):
                self.sell()

    def runner(df):
        def run():
            return Backtest(df, SmaCross, cash=CASH, commission=COMMISSION, exclusive_orders=True).run()
        return run

    runner(synthetic_ohlcv(2_000).rename(columns=str.capitalize))()  # warm-up: imports, first-call costs
    t, stats = timed(runner(synthetic_ohlcv(bars).rename(columns=str.capitalize)), repeat, warmup=0)
    return {"time": t, "trades": int(len(stats["_trades"])), "final_equity": float(stats["Equity Final [$]"])}


def smoke_kwargs() -> dict[str, Any]:
    return {"bars": 3_000, "repeat": 2}
