"""``sma`` and ``ema`` context workers: moving averages of closes."""
from __future__ import annotations

import numpy as np

from ...engine.nb import indicators as nb
from ..base import ContextWorker, FeatureContext, Params, param, register


class PeriodParams(Params):
    period: int = param(20, gt=0, suggest=(5, 200, 5), description="period in bars")


@register
class Sma(ContextWorker):
    """Simple moving average of closes (output ``sma``)."""

    name = "sma"
    Params = PeriodParams

    def compute(self, ctx: FeatureContext) -> dict[str, np.ndarray]:
        return {"sma": nb.sma(ctx.close, self.params.period)}
