"""``liquidity_sweep_detector``: stop runs through resting liquidity that close back inside."""
from __future__ import annotations

import numpy as np

from ...engine.nb import structure as nbs
from ..base import FeatureContext, Opportunities, OpportunityWorker, Params, Signals, param, register


class LiquiditySweepParams(Params):
    min_wick_pips: float = param(0.0, ge=0.0, suggest=(0, 5, 1),
                                 description="how far (pips) the wick must reach beyond the level")


@register
class LiquiditySweepDetector(OpportunityWorker):
    """Sweeps of the nearest liquidity level that close back inside it.

    Uses the ``liquidity_levels`` context as known at the previous bar's close:

    * short at bar ``i`` when ``L = nearest_buy_side[i-1]`` exists, ``high[i] > L`` and
      ``close[i] < L`` (buy-side liquidity taken, rejected): zone ``top = high[i]``,
      ``bottom = L``;
    * long when ``L = nearest_sell_side[i-1]`` exists, ``low[i] < L`` and ``close[i] > L``:
      zone ``top = L``, ``bottom = low[i]``.

    The wick beyond the level (``high[i] - L`` / ``L - low[i]``) must be at least
    ``min_wick_pips`` pips. A bar sweeping both sides is no signal. Known at the close of
    bar ``i``.

    >>> import pandas as pd
    >>> bars = pd.DataFrame({"open": 1.0, "high": [1.0, 3.0, 2.0, 1.0, 2.0, 3.5], "low": [0.0, 2.0, 1.0, 0.0, 1.0, 2.0],
    ...                      "close": [1.0, 2.5, 1.5, 0.5, 1.5, 2.5], "volume": 0.0})
    >>> ctx = FeatureContext(bars, context_params={"liquidity_levels": {"left": 1, "right": 1}})
    >>> s = LiquiditySweepDetector("sweep", LiquiditySweepParams()).detect(ctx)   # bar 5 takes 3.0, closes below
    >>> s.direction.tolist(), float(s.top[5]), float(s.bottom[5])
    ([0, 0, 0, 0, 0, -1], 3.5, 3.0)
    """

    name = "liquidity_sweep_detector"
    Params = LiquiditySweepParams

    def detect(self, ctx: FeatureContext) -> Signals:
        liq = ctx.context("liquidity_levels")
        d, top, bot = nbs.liquidity_sweeps(ctx.high, ctx.low, ctx.close, liq["nearest_buy_side"],
                                           liq["nearest_sell_side"], self.params.min_wick_pips * ctx.pip_size)
        return Signals(d, top, bot)

    def score(self, ctx: FeatureContext, setups: Opportunities) -> np.ndarray:
        """How far the wick reached beyond the level (the zone, ``top - bottom``) as a
        fraction of the close: a deeper sweep ranks first (``rank: score``).

        >>> setups = Opportunities(np.array([5]), np.array([-1]), np.array([0]), np.array([3.5]), np.array([3.0]),
        ...                        np.array([2.5]))
        >>> LiquiditySweepDetector("sweep", LiquiditySweepParams()).score(None, setups).tolist()
        [0.2]
        """
        return (setups.top - setups.bottom) / setups.signal_close
