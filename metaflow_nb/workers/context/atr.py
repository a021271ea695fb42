"""``atr`` context worker: Wilder's average true range."""
from __future__ import annotations

import numpy as np

from ...engine.nb import indicators as nb
from ..base import ContextWorker, FeatureContext, Params, param, register


class AtrParams(Params):
    period: int = param(14, ge=1, le=500, suggest=(5, 50, 1), description="smoothing period in bars")


@register
class Atr(ContextWorker):
    """Average true range, Wilder-smoothed (output ``atr``, in price units).

    True range of bar ``i`` is ``max(high - low, |high - close[i-1]|, |low - close[i-1]|)``
    (bar 0: ``high - low``). The ATR is seeded with the mean true range of bars
    ``0..period-1`` and then ``atr = atr + (tr - atr) / period``. ``atr[i]`` is known at the
    close of bar ``i``; NaN for the first ``period - 1`` bars.

    >>> import pandas as pd
    >>> bars = pd.DataFrame({"open": 10.0, "high": [11.0, 12.0, 13.0], "low": [9.0, 10.0, 10.0],
    ...                      "close": [10.0, 11.0, 12.0], "volume": 0.0})
    >>> Atr("atr", AtrParams(period=2)).compute(FeatureContext(bars))["atr"].tolist()   # true ranges 2, 2, 3
    [nan, 2.0, 2.5]
    """

    name = "atr"
    Params = AtrParams

    def compute(self, ctx: FeatureContext) -> dict[str, np.ndarray]:
        return {"atr": nb.atr(ctx.high, ctx.low, ctx.close, self.params.period)}
