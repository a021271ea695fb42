"""``ema`` context worker: exponential moving average of closes."""
from __future__ import annotations

import numpy as np

from ...engine.nb import indicators as nb
from ..base import ContextWorker, FeatureContext, Params, param, register


class EmaParams(Params):
    period: int = param(50, ge=1, le=1000, suggest=(10, 200, 10), description="period in bars")


@register
class Ema(ContextWorker):
    """Exponential moving average of closes (output ``ema``).

    ``alpha = 2 / (period + 1)``, seeded with the simple mean of the first ``period``
    closes (known at bar ``period - 1``), then ``ema = alpha * close + (1 - alpha) * ema``.
    ``ema[i]`` is known at the close of bar ``i``; NaN for the first ``period - 1`` bars.

    >>> import pandas as pd
    >>> bars = pd.DataFrame({"open": 1.0, "high": 4.0, "low": 1.0, "close": [1.0, 2.0, 3.0, 4.0], "volume": 0.0})
    >>> Ema("ema", EmaParams(period=2)).compute(FeatureContext(bars))["ema"].tolist()
    [nan, 1.5, 2.5, 3.5]
    """

    name = "ema"
    Params = EmaParams

    def compute(self, ctx: FeatureContext) -> dict[str, np.ndarray]:
        return {"ema": nb.ema(ctx.close, self.params.period)}
