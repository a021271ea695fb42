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
        fraction of the close: a deeper sweep ranks first (``rank: score``)."""
        return (setups.top - setups.bottom) / setups.signal_close
