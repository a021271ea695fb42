"""``market_structure`` context worker: trend, break of structure and change of character."""
from __future__ import annotations

import numpy as np

from ...engine.nb import structure as nbs
from ..base import ContextWorker, FeatureContext, register
from .swings import SwingParams


class MarketStructureParams(SwingParams):
    """Swing parameters, passed to ``swing_points``."""


@register
class MarketStructure(ContextWorker):
    """Market structure from closes breaking confirmed swings (``swing_points(left, right)``).

    At each bar, a swing confirmed on that bar becomes the live level of its side (the
    latest confirmed swing high / low, replacing the previous one). A close strictly above
    the live swing-high level is a bullish break, a close strictly below the live swing-low
    level a bearish break; each level can be broken once. A break in the trend's direction
    is a break of structure (BOS); a break against the trend, or the first break (no
    trend yet), is a change of character (CHoCH) and flips the trend to the break's side.
    Everything on bar ``i`` is known at its close (a swing is confirmed ``right`` bars
    after it formed, so breaks never use unconfirmed swings).

    Outputs (per bar):

    * ``trend`` (int8): +1 / -1 after the latest CHoCH, 0 before the first break;
    * ``bos`` / ``choch`` (int8): +1 / -1 on the bar of such a break, else 0;
    * ``break_dir`` (int8): direction of any break (BOS or CHoCH) on the bar, else 0;
    * ``last_break_bar_bull`` / ``last_break_bar_bear`` (int64): index of the latest
      bullish / bearish break at or before the bar, -1 before the first.

    >>> import numpy as np, pandas as pd
    >>> close = np.array([1.0, 3.0, 2.0, 2.5, 3.5, 3.0])   # bar 4 closes above bar 1's swing high
    >>> bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 0.0})
    >>> out = MarketStructure("ms", MarketStructureParams(left=1, right=1)).compute(FeatureContext(bars))
    >>> out["choch"].tolist(), out["trend"].tolist()
    ([0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 1])
    """

    name = "market_structure"
    Params = MarketStructureParams

    def compute(self, ctx: FeatureContext) -> dict[str, np.ndarray]:
        p = self.params
        sw = ctx.feature("swing_points", {"left": p.left, "right": p.right})
        trend, bos, choch, brk, lb, ls = nbs.market_structure(ctx.close, sw["swing_high"], sw["swing_low"])
        return {"trend": trend, "bos": bos, "choch": choch, "break_dir": brk,
                "last_break_bar_bull": lb, "last_break_bar_bear": ls}
