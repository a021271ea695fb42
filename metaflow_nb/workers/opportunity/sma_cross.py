"""``sma_cross``: the classic moving-average crossover."""
from __future__ import annotations

from pydantic import model_validator

from ...engine.nb import indicators as nb
from ..base import FeatureContext, OpportunityWorker, Params, Signals, param, register


class SmaCrossParams(Params):
    fast: int = param(10, gt=0, suggest=(5, 50, 5), description="fast SMA period (bars)")
    slow: int = param(20, gt=0, suggest=(20, 200, 20), description="slow SMA period (bars)")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> "SmaCrossParams":
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self


@register
class SmaCross(OpportunityWorker):
    """Long when the fast SMA of closes crosses above the slow one, short when below.

    Crosses are strict (equal averages are no signal) and stamped on the bar whose close
    completes them.
    """

    name = "sma_cross"
    Params = SmaCrossParams

    def detect(self, ctx: FeatureContext) -> Signals:
        p = self.params
        fast = ctx.feature("sma", {"period": p.fast})["sma"]
        slow = ctx.feature("sma", {"period": p.slow})["sma"]
        return Signals.from_direction(nb.crosses(fast, slow))
