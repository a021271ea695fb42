"""The example's workers: ``rsi_reversion`` (opportunity), ``trend_guard`` (threat) and
``rsi_exit`` (an exit planner with exit conditions of its own).

Both compute whole arrays once per dataset, before the compiled bar loop runs: a worker
says *where* a setup is and *which* setups to refuse; fills, stops, sizing and the
journal are the engine's.
"""
from __future__ import annotations

import numpy as np

from metaflow_nb.workers.base import (
    ExitPlan, ExitPlanner, FeatureContext, OpportunityWorker, Params, Signals, ThreatWorker, param, register,
)

from .indicators import level_crosses, wilder_rsi


class RsiReversionParams(Params):
    # bounds are checked when a config is translated (an error names the file and key);
    # `suggest` is the range mf.explore's sliders and mf.suggested_space offer
    period: int = param(14, ge=2, le=500, suggest=(7, 28, 7), description="RSI period (bars, Wilder smoothing)")
    oversold: float = param(30.0, gt=0, lt=50, suggest=(20, 40, 5),
                            description="long when the RSI crosses up through this level")
    overbought: float = param(70.0, gt=50, lt=100, suggest=(60, 80, 5),
                              description="short when the RSI crosses down through this level")


@register
class RsiReversion(OpportunityWorker):
    """RSI mean reversion: long on the bar whose close lifts Wilder's RSI from below
    ``oversold`` to at or above it, short on the bar whose close drops it from above
    ``overbought`` to at or below it. No zone (``top``/``bottom`` are NaN).

    The setup is stamped on the bar whose close completes the cross; the engine fills it
    from the next bar on.

    >>> import metaflow_nb as mf
    >>> ctx = FeatureContext(mf.load_data("sp500_daily"))
    >>> sig = RsiReversion("rsi_1", RsiReversionParams(period=14)).detect(ctx)
    >>> sorted(set(sig.direction.tolist())), sig.direction.shape == (ctx.n,)
    ([-1, 0, 1], True)
    """

    name = "rsi_reversion"
    Params = RsiReversionParams
    description = "RSI(period) crosses back up through oversold (long) or down through overbought (short)"

    def detect(self, ctx: FeatureContext) -> Signals:
        p = self.params
        rsi = wilder_rsi(ctx.close, p.period)
        return Signals.from_direction(level_crosses(rsi, p.oversold, p.overbought))


class TrendGuardParams(Params):
    ema_period: int = param(200, ge=2, le=1000, suggest=(50, 250, 50),
                            description="period of the EMA of closes that gives the trend")
    slope_bars: int = param(5, ge=1, le=250, suggest=(1, 20, 1),
                            description="the EMA falls when ema[i] < ema[i - slope_bars], rises when >")


@register
class TrendGuard(ThreatWorker):
    """Refuse setups against the trend, with a reason code of its own, ``AGAINST_TREND``:
    on bar ``i`` a long is refused (mask bit 0, value 1) when ``close[i] < ema[i]`` and
    the EMA is falling (``ema[i] < ema[i - slope_bars]``); a short (bit 1, value 2) when
    ``close[i] > ema[i]`` and the EMA is rising. NaN (the EMA's warm-up) refuses nothing.
    Known at the close of bar ``i``, when the setup stamped there is checked.

    >>> import pandas as pd
    >>> import metaflow_nb as mf
    >>> closes = [10.0, 9.0, 8.0, 7.0, 7.5, 7.4, 9.0, 10.0]
    >>> bars = mf.load_data(pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes},
    ...                                  index=pd.date_range("2024-01-01", periods=8, name="time")))
    >>> TrendGuard("trend_1", TrendGuardParams(ema_period=2, slope_bars=1)).mask(FeatureContext(bars)).tolist()
    [0, 0, 1, 1, 0, 1, 2, 2]
    """

    name = "trend_guard"
    reasons = ("AGAINST_TREND",)  # declared: gets its integer code when the class is registered
    reason = "AGAINST_TREND"      # the code this worker's rejections carry in the journal
    Params = TrendGuardParams
    description = "no longs below a falling EMA, no shorts above a rising one"

    def mask(self, ctx: FeatureContext) -> np.ndarray:
        p = self.params
        # the built-in `ema` context worker, cached per dataset and params: a sweep over
        # other workers' params computes it once
        ema = ctx.feature("ema", {"period": p.ema_period})["ema"]
        k = p.slope_bars
        before = np.full(ctx.n, np.nan)
        if k < ctx.n:
            before[k:] = ema[:-k]
        falling, rising = ema < before, ema > before  # False wherever either side is NaN
        out = np.zeros(ctx.n, dtype=np.int8)
        out[(ctx.close < ema) & falling] |= 1
        out[(ctx.close > ema) & rising] |= 2
        return out


class RsiExitParams(Params):
    period: int = param(14, ge=2, le=500, suggest=(7, 28, 7), description="RSI period (bars, Wilder smoothing)")
    level: float = param(50.0, gt=0, lt=100, suggest=(40, 60, 5),
                         description="a long leaves when the RSI closes above it, a short when below")


@register
class RsiExit(ExitPlanner):
    """Leave a reversion trade once the RSI is back through ``level``: a long at the open
    after the first close with the RSI above ``level``, a short after one below it. An
    exit condition of the worker's own (``ExitPlan.exit_long`` / ``exit_short``, one flag
    per bar): the engine closes the position like an opposite signal, so the rule needs
    no change to the compiled loop. Its exits carry a name of their own, ``RSI_BACK``
    (without ``reasons`` they would read ``EXIT_CONDITION``).

    >>> import pandas as pd
    >>> import metaflow_nb as mf
    >>> closes = [10.0, 9.0, 8.0, 9.0, 10.0, 11.0]   # RSI(2): NaN, NaN, 0, 50, 75, 87.5
    >>> bars = mf.load_data(pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes},
    ...                                  index=pd.date_range("2024-01-01", periods=6, name="time")))
    >>> plan = RsiExit("x_1", RsiExitParams(period=2, level=50)).plan(FeatureContext(bars), None, None)
    >>> plan.exit_long.tolist(), plan.exit_short.tolist()
    ([0, 0, 0, 0, 1, 1], [0, 0, 1, 0, 0, 0])
    """

    name = "rsi_exit"
    Params = RsiExitParams
    reasons = ("RSI_BACK",)  # declared: the trades and the journal name its exits RSI_BACK
    description = "exit longs when the RSI closes above a level, shorts when below"

    def plan(self, ctx: FeatureContext, opps, entry) -> ExitPlan:
        rsi = wilder_rsi(ctx.close, self.params.period)
        # NaN (the warm-up) compares False: no exit there
        return ExitPlan(exit_long=(rsi > self.params.level).astype(np.int8),
                        exit_short=(rsi < self.params.level).astype(np.int8))
