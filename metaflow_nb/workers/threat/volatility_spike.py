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

    >>> import pandas as pd
    >>> tr = np.array([1.0, 1.0, 1.0, 1.0, 3.0, 1.0])   # bar 4's range triples
    >>> bars = pd.DataFrame({"open": 10.0, "high": 10.0 + tr / 2, "low": 10.0 - tr / 2, "close": 10.0, "volume": 0.0})
    >>> ctx = FeatureContext(bars, context_params={"atr": {"period": 1}})
    >>> VolatilitySpikeDetector("spike", VolatilitySpikeParams(lookback=3, percentile=50)).mask(ctx).tolist()
    [0, 0, 0, 0, 3, 0]
    """

    name = "volatility_spike_detector"
    reasons = ("VOLATILITY_SPIKE",)
    reason = "VOLATILITY_SPIKE"
    Params = VolatilitySpikeParams

    def atr(self, ctx: FeatureContext) -> np.ndarray:
        """The ATR per bar the spikes are measured on: the blueprint's ``atr`` context, or
        Wilder's ATR of ``atr_period`` when set.

        >>> import pandas as pd
        >>> bars = pd.DataFrame({"open": 10.0, "high": [11.0, 11.0, 12.0], "low": [9.0, 9.0, 8.0], "close": 10.0,
        ...                      "volume": 0.0})
        >>> VolatilitySpikeDetector("spike", VolatilitySpikeParams(atr_period=2)).atr(FeatureContext(bars)).tolist()
        [nan, 2.0, 3.0]
        """
        if self.params.atr_period is None:
            return ctx.context("atr")["atr"]
        return ctx.feature("atr", {"period": int(self.params.atr_period)})["atr"]

    def threshold(self, ctx: FeatureContext) -> np.ndarray:
        """The rolling percentile of the ATR per bar (NaN while the window fills).

        >>> import pandas as pd
        >>> bars = pd.DataFrame({"open": 10.0, "high": [10.5, 11.0, 11.5, 12.0], "low": 9.5, "close": 10.0,
        ...                      "volume": 0.0})
        >>> ctx = FeatureContext(bars, context_params={"atr": {"period": 1}})   # ATRs 1, 1.5, 2, 2.5
        >>> VolatilitySpikeDetector("spike", VolatilitySpikeParams(lookback=2, percentile=50)).threshold(ctx).tolist()
        [nan, 1.25, 1.75, 2.25]
        """
        atr = np.ascontiguousarray(self.atr(ctx), dtype=np.float64)
        return nbt.rolling_percentile(atr, int(self.params.lookback), float(self.params.percentile))

    def mask(self, ctx: FeatureContext) -> np.ndarray:
        atr = np.ascontiguousarray(self.atr(ctx), dtype=np.float64)
        return nbt.spike_mask(atr, self.threshold(ctx))
