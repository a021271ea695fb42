"""``liquidity_levels`` context worker: unswept swing highs / lows as resting liquidity."""
from __future__ import annotations

import numpy as np

from ...engine.nb import structure as nbs
from ..base import ContextWorker, FeatureContext, param, register
from .swings import SwingParams


class LiquidityParams(SwingParams):
    equal_tolerance_atr: float = param(0.1, ge=0.0, le=5.0, suggest=(0.0, 0.5, 0.05),
                                       description="swings within this many ATRs pool as equal highs/lows")
    atr_period: int = param(14, ge=1, le=500, suggest=(5, 50, 1), description="ATR period for the tolerance")
    max_levels: int = param(20, ge=1, le=1000, suggest=(5, 50, 5),
                            description="live pools kept per side; the oldest is dropped beyond it")


@register
class LiquidityLevels(ContextWorker):
    """Buy-side liquidity (unswept confirmed swing highs) and sell-side (unswept swing lows).

    Swings come from ``swing_points(left, right)`` and join the book on their confirmation
    bar. At each bar ``i``, in order: (1) every buy-side level strictly below ``high[i]`` is
    swept and removed, every sell-side level strictly above ``low[i]`` likewise; (2) a swing
    confirmed on ``i`` is added, pooling with an existing level of its side within
    ``equal_tolerance_atr * ATR(atr_period)[i]`` (equal highs / lows; while the ATR is
    still warming up only identical prices pool); a pool's level is its outermost member
    (highest of equal highs, lowest of equal lows) and it is swept as one; at most
    ``max_levels`` pools are kept per side, the oldest-opened is dropped first;
    (3) the book is reported. All outputs of bar ``i`` are known at its close:

    * ``nearest_buy_side``: lowest live buy-side level above ``close[i]``, NaN if none;
    * ``nearest_sell_side``: highest live sell-side level below ``close[i]``, NaN if none;
    * ``buy_side_eq_count`` / ``sell_side_eq_count`` (int64): number of swings pooled in
      that nearest level (1 = a single swing, 2+ = equal highs / lows; 0 if none);
    * ``eq_count`` (int64): the larger of the two (the nearest pool of equals on either side);
    * ``buy_side_count`` / ``sell_side_count`` (int64): number of live pools per side;
    * ``swept_buy_side``: the highest buy-side level swept on bar ``i``, NaN if none;
    * ``swept_sell_side``: the lowest sell-side level swept on bar ``i``, NaN if none.

    >>> import pandas as pd
    >>> bars = pd.DataFrame({"open": 1.0, "high": [1.0, 3.0, 2.0, 1.0, 2.0, 4.0],
    ...                      "low": [0.0, 2.0, 1.0, 0.0, 1.0, 1.0], "close": 1.0, "volume": 0.0})
    >>> out = LiquidityLevels("liq", LiquidityParams(left=1, right=1)).compute(FeatureContext(bars))
    >>> out["nearest_buy_side"].tolist(), out["swept_buy_side"].tolist()   # bar 5's high takes the 3.0
    ([nan, nan, 3.0, 3.0, 3.0, nan], [nan, nan, nan, nan, nan, 3.0])
    """

    name = "liquidity_levels"
    Params = LiquidityParams

    def compute(self, ctx: FeatureContext) -> dict[str, np.ndarray]:
        p = self.params
        sw = ctx.feature("swing_points", {"left": p.left, "right": p.right})
        atr = ctx.feature("atr", {"period": p.atr_period})["atr"]
        nb_, ns_, beq, seq, bc, sc, swb, sws = nbs.liquidity_levels(
            ctx.high, ctx.low, ctx.close, sw["swing_high"], sw["swing_low"], atr,
            float(p.equal_tolerance_atr), int(p.max_levels))
        return {"nearest_buy_side": nb_, "nearest_sell_side": ns_,
                "buy_side_eq_count": beq, "sell_side_eq_count": seq,
                "eq_count": np.maximum(beq, seq),
                "buy_side_count": bc, "sell_side_count": sc,
                "swept_buy_side": swb, "swept_sell_side": sws}
