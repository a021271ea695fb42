"""``market_risk_monitor``: rejects setups against a strong trend and after abnormal gaps."""
from __future__ import annotations

import numpy as np

from ...engine.nb import threats as nbt
from ..base import FeatureContext, Params, ThreatWorker, param, register


class MarketRiskParams(Params):
    adx_threshold: float = param(25.0, ge=0, le=101, suggest=(15, 40, 5),
                                 description="ADX at or above which the trend counts as strong "
                                             "(ADX is at most 100: above 100 switches the trend rule off)")
    ema_period: int = param(50, ge=1, le=1000, suggest=(20, 200, 10),
                            description="period of the EMA whose slope gives the trend direction")
    slope_bars: int = param(5, ge=1, le=500, suggest=(1, 20, 1),
                            description="the EMA slope is ema[i] - ema[i - slope_bars]")
    gap_atr_multiple: float = param(2.0, gt=0, le=100, suggest=(1.0, 5.0, 0.5),
                                    description="an open this many ATRs away from the previous close is a gap")
    gap_cooldown_bars: int = param(4, ge=0, le=10_000, suggest=(0, 16, 2),
                                   description="bars after the gap bar that stay blocked")


@register
class MarketRiskMonitor(ThreatWorker):
    """Market regime risk (reason ``MARKET_RISK``), the union of two rules:

    (a) **strong trend against the setup**: on bar ``i`` with ``adx[i] >= adx_threshold``
        (the blueprint's ``adx`` context), a falling EMA, ``ema[i] < ema[i - slope_bars]``
        (``ema`` context with ``period = ema_period``), blocks longs (bit 1); a rising EMA
        blocks shorts (bit 2). Setups with the trend pass. Known at the close of ``i``.
    (b) **abnormal gap**: ``|open[i] - close[i-1]| >= gap_atr_multiple * atr[i-1]`` (the
        ``atr`` context of the previous bar) blocks both directions (3) on bar ``i`` and
        the next ``gap_cooldown_bars`` bars. Known at the open of ``i``.

    NaN inputs (indicator warm-up) block nothing. An ``adx_threshold`` above 100 switches
    rule (a) off (ADX never exceeds 100).

    >>> import pandas as pd
    >>> close = np.arange(1.0, 9.0)
    >>> open_ = np.where(np.arange(8) == 6, 10.0, close)   # bar 6 opens far above bar 5's close
    >>> bars = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + 0.5,
    ...                      "low": np.minimum(open_, close) - 0.5, "close": close, "volume": 0.0})
    >>> ctx = FeatureContext(bars, context_params={"adx": {"period": 2}, "atr": {"period": 2}})
    >>> MarketRiskMonitor("risk", MarketRiskParams(ema_period=2, slope_bars=1, gap_cooldown_bars=1)).mask(ctx).tolist()
    [0, 0, 0, 2, 2, 2, 3, 3]
    """

    name = "market_risk_monitor"
    reasons = ("MARKET_RISK",)
    reason = "MARKET_RISK"
    Params = MarketRiskParams

    def trend_mask(self, ctx: FeatureContext) -> np.ndarray:
        """Rule (a) alone: per bar, 1 where a strong falling trend blocks longs, 2 where a
        strong rising one blocks shorts, else 0.

        >>> import pandas as pd
        >>> up = np.arange(1.0, 7.0)
        >>> bars = pd.DataFrame({"open": up, "high": up + 0.5, "low": up - 0.5, "close": up, "volume": 0.0})
        >>> ctx = FeatureContext(bars, context_params={"adx": {"period": 2}})
        >>> MarketRiskMonitor("risk", MarketRiskParams(ema_period=2, slope_bars=1)).trend_mask(ctx).tolist()
        [0, 0, 0, 2, 2, 2]
        """
        p = self.params
        adx = np.ascontiguousarray(ctx.context("adx")["adx"], dtype=np.float64)
        ema = np.ascontiguousarray(ctx.context("ema", period=int(p.ema_period))["ema"], dtype=np.float64)
        return nbt.trend_against_mask(adx, ema, float(p.adx_threshold), int(p.slope_bars))

    def gap_mask(self, ctx: FeatureContext) -> np.ndarray:
        """Rule (b) alone: per bar, 3 on an abnormal gap's bar and its cooldown bars, else 0.

        >>> import pandas as pd
        >>> price = np.array([1.0, 1.0, 1.0, 4.0, 4.0, 4.0])   # bar 3 opens 3 ATRs above bar 2's close
        >>> ctx = FeatureContext(pd.DataFrame({"open": price, "high": price + 0.5, "low": price - 0.5, "close": price,
        ...                                    "volume": 0.0}), context_params={"atr": {"period": 1}})
        >>> MarketRiskMonitor("risk", MarketRiskParams(gap_cooldown_bars=1)).gap_mask(ctx).tolist()
        [0, 0, 0, 3, 3, 0]
        """
        p = self.params
        atr = np.ascontiguousarray(ctx.context("atr")["atr"], dtype=np.float64)
        return nbt.gap_mask(ctx.open, ctx.close, atr, float(p.gap_atr_multiple), int(p.gap_cooldown_bars))

    def mask(self, ctx: FeatureContext) -> np.ndarray:
        return (self.trend_mask(ctx) | self.gap_mask(ctx)).astype(np.int8)
