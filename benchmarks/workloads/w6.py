"""W6: daily bars, 100 000 of them, one per calendar day (weekends included).

The same seeded prices as W1/W2 on a daily ``DatetimeIndex`` (``common.synthetic_ohlcv``
with ``freq="D"``): what changes is the calendar. Minute bars put ~1 440 bars in a day;
here every bar closes a day, so whatever a run does per calendar day (the daily equity
and returns behind the metrics) is done per bar.

* ``whole_vs_loop``: the W1 strategy (SMA cross 10/50 with reversal, whole units, 0.1 %
  commission) through ``mf.backtest`` with the trades table built (``len(res.trades)``),
  and, in the same process on the same specs and bars, the compiled loop alone
  (``common.compiled_loop``, inputs prepared once, untimed); the ratio whole / loop is
  the workload's figure;
* the W2 sweep (300 combinations through ``mf.optimize``) on these daily bars is
  ``w2:ours`` with ``freq="D"``; its floor is ``w2:floor`` (the prices, hence the floor's
  work, do not depend on the index).
"""
from __future__ import annotations

from typing import Any

from .common import ROOT, compiled_loop, loaded, operation, timed
from .w1 import CASH, COMMISSION, FAST, SLOW

FREQ = "D"


def whole_vs_loop(bars: int = 100_000, repeat: int = 21, loop_repeat: int = 50, **_: Any) -> dict[str, Any]:
    import metaflow_nb as mf

    df = loaded(bars, freq=FREQ)
    op = operation(CASH, COMMISSION)
    strategy = str(ROOT / "config/runs/sma_cross.yaml")
    overrides = {"sma_1": {"fast": FAST, "slow": SLOW}}

    def whole():
        res = mf.backtest(strategy, op, data=df, **overrides)
        return res, len(res.trades)  # tables are built on first access: the target counts it

    t_whole, (res, n_rows) = timed(whole, repeat)
    run, summary = compiled_loop(res.specs, df)
    t_loop, out = timed(run, loop_repeat)
    trades, final = summary(out)
    return {"time": t_whole, "loop": t_loop, "ratio": t_whole["median_s"] / t_loop["median_s"],
            "trades": int(res.metrics["total_trades"]), "final_equity": float(res.metrics["final_equity"]),
            "trades_rows": int(n_rows), "loop_trades": trades, "loop_final_equity": final,
            "first_day": str(df.index[0].date()), "last_day": str(df.index[-1].date()),
            "timings": {k: round(v * 1e3, 3) for k, v in res.timings.items()}}
