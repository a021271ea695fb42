"""``fvg_detector``: three-candle fair value gaps, optionally only after a structure break."""
from __future__ import annotations

from typing import Literal

import numpy as np

from ...engine.nb import structure as nbs
from ..base import FeatureContext, Opportunities, OpportunityWorker, Params, Signals, param, register


class FvgParams(Params):
    min_gap_size: float = param(3.0, ge=0.0, suggest=(3, 10, 1), description="smallest gap kept, in gap_unit")
    gap_unit: Literal["pips", "atr", "price"] = param(
        "pips", description="unit of min_gap_size: pips (pip size), ATR multiples or price")
    require_structure_break: bool = param(
        False, description="keep only gaps following a recent break of structure in their direction")
    structure_lookback: int = param(20, ge=1, le=1000, suggest=(5, 50, 5),
                                    description="bars (including the gap's bar) the break may lie back")


@register
class FvgDetector(OpportunityWorker):
    """Fair value gaps (three-candle imbalances), stamped on the third candle ``i``.

    * bullish (long) when ``high[i-2] < low[i]``: zone ``bottom = high[i-2]``, ``top = low[i]``;
    * bearish (short) when ``low[i-2] > high[i]``: zone ``top = low[i-2]``, ``bottom = high[i]``.

    The gap ``top - bottom`` must be at least ``min_gap_size`` in ``gap_unit``: ``pips``
    (times the instrument's pip size), ``atr`` (times the ``atr`` context's value on bar
    ``i``; no gaps while it warms up) or ``price``. Sizes are compared with a tolerance of
    1e-9 of price so an exact 3-pip gap is not lost to float rounding.

    With ``require_structure_break`` a gap is kept only when a break in its direction
    (bullish break for a bullish gap, either BOS or CHoCH, from the ``market_structure``
    context) happened on one of the last ``structure_lookback`` bars ``i -
    structure_lookback + 1 .. i``. Everything is known at the close of bar ``i``.

    >>> import pandas as pd
    >>> bars = pd.DataFrame({"open": 1.0, "high": [1.0, 1.1, 1.6, 1.7], "low": [0.9, 1.0, 1.4, 1.5],
    ...                      "close": 1.0, "volume": 0.0})
    >>> s = FvgDetector("fvg", FvgParams(min_gap_size=0.2, gap_unit="price")).detect(FeatureContext(bars))
    >>> s.direction.tolist(), s.bottom.tolist(), s.top.tolist()   # bar 2: high[0] 1.0 < low[2] 1.4
    ([0, 0, 1, 1], [nan, nan, 1.0, 1.1], [nan, nan, 1.4, 1.5])
    """

    name = "fvg_detector"
    Params = FvgParams

    def detect(self, ctx: FeatureContext) -> Signals:
        p = self.params
        if p.gap_unit == "pips":
            thr = np.full(ctx.n, p.min_gap_size * ctx.pip_size)
        elif p.gap_unit == "price":
            thr = np.full(ctx.n, float(p.min_gap_size))
        else:
            thr = p.min_gap_size * ctx.context("atr")["atr"]
        d, top, bot = nbs.fvg(ctx.high, ctx.low, np.ascontiguousarray(thr, dtype=np.float64))
        if p.require_structure_break:
            ms = ctx.context("market_structure")
            keep = nbs.structure_filter(d, ms["last_break_bar_bull"], ms["last_break_bar_bear"],
                                        p.structure_lookback)
            d = np.where(keep, d, 0).astype(np.int8)
            top = np.where(keep, top, np.nan)
            bot = np.where(keep, bot, np.nan)
        return Signals(d, top, bot)

    def score(self, ctx: FeatureContext, setups: Opportunities) -> np.ndarray:
        """The gap's size (its zone, ``top - bottom``) as a fraction of the close that
        completes it: a larger imbalance ranks first (``rank: score``).

        >>> setups = Opportunities(np.array([2]), np.array([1]), np.array([0]), np.array([1.5]), np.array([1.0]),
        ...                        np.array([2.0]))
        >>> FvgDetector("fvg", FvgParams()).score(None, setups).tolist()
        [0.25]
        """
        return (setups.top - setups.bottom) / setups.signal_close
