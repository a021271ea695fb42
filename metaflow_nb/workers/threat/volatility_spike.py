"""``volatility_spike_detector``: no new setups while the ATR spikes above its own history."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...engine.nb import threats as nbt
from ..base import FeatureContext, Params, ThreatWorker, param, register


class VolatilitySpikeParams(Params):
    percentile: float = param(95.0, gt=0, le=100, suggest=(80, 99, 1),
                              description="ATR above this percentile of its lookback window is a spike")
    lookback: int = param(500, ge=2, le=100_000, suggest=(100, 1000, 100),
                          description="bars of ATR history (ending at the current bar) the percentile covers")
    atr_period: Optional[int] = param(None, ge=1, le=500, suggest=(5, 50, 1),
                                      description="ATR period; None = the blueprint's atr context (default 14)")


@register
class VolatilitySpikeDetector(ThreatWorker):
    """Blocks both directions (mask 3, reason ``VOLATILITY_SPIKE``) on bar ``i`` when

    ``atr[i] > percentile(atr[i - lookback + 1 .. i], percentile)``

    i.e. the current ATR is strictly above the ``percentile``-th percentile (linear
    interpolation, as ``np.percentile``) of the last ``lookback`` ATR values, the current
    one included. The ATR is the blueprint's ``atr`` context (``ctx.context("atr")``) or,
    with ``atr_period`` set, Wilder's ATR of that period. Both are known at the close of
    bar ``i``, so the mask of bar ``i`` is too. No block until the window holds
    ``lookback`` finite ATR values (ATR warm-up plus ``lookback - 1`` bars). The rolling
    percentile is a Numba kernel keeping the window sorted
    (:func:`metaflow_nb.engine.nb.threats.rolling_percentile`).
    """

    name = "volatility_spike_detector"
    reasons = ("VOLATILITY_SPIKE",)
    reason = "VOLATILITY_SPIKE"
    Params = VolatilitySpikeParams

    def atr(self, ctx: FeatureContext) -> np.ndarray:
        if self.params.atr_period is None:
            return ctx.context("atr")["atr"]
        return ctx.feature("atr", {"period": int(self.params.atr_period)})["atr"]

    def threshold(self, ctx: FeatureContext) -> np.ndarray:
        """The rolling percentile of the ATR per bar (NaN while the window fills)."""
        atr = np.ascontiguousarray(self.atr(ctx), dtype=np.float64)
        return nbt.rolling_percentile(atr, int(self.params.lookback), float(self.params.percentile))

    def mask(self, ctx: FeatureContext) -> np.ndarray:
        atr = np.ascontiguousarray(self.atr(ctx), dtype=np.float64)
        return nbt.spike_mask(atr, self.threshold(ctx))
