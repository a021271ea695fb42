"""``higher_timeframe_bias_filter``: no setups against the higher timeframe's structure."""
from __future__ import annotations

import numpy as np

from ..base import FeatureContext, Params, ThreatWorker, param, register


class BiasFilterParams(Params):
    block_neutral: bool = param(False, description="also refuse both directions while the higher "
                                                   "timeframe has no trend yet (bias 0)")


@register
class HigherTimeframeBiasFilter(ThreatWorker):
    """Refuse setups against the higher timeframe's market structure (reason
    ``AGAINST_BIAS``), read from the blueprint's ``higher_timeframe_bias`` context
    (``ctx.context("higher_timeframe_bias")``, its timeframe and swing params): on bar
    ``i`` a bearish bias (-1) refuses longs (mask 1), a bullish one (+1) refuses shorts
    (mask 2); with ``block_neutral`` no bias yet (0) refuses both (3). The bias on bar
    ``i`` is that of the latest closed higher bar, so the mask is known at bar ``i``'s open.

    >>> import numpy as np, pandas as pd
    >>> close = np.r_[np.linspace(1.0, 1.1, 48), np.linspace(1.1, 1.05, 24), np.linspace(1.05, 1.2, 48)]
    >>> df = pd.DataFrame({"open": close, "high": close + 0.001, "low": close - 0.001, "close": close,
    ...                    "volume": 1.0}, index=pd.date_range("2024-01-01", periods=120, freq="1h"))
    >>> ctx = FeatureContext(df, context_params={"higher_timeframe_bias": {"timeframe": "4h", "left": 1, "right": 1}})
    >>> mask = HigherTimeframeBiasFilter("bias_1", BiasFilterParams()).mask(ctx)
    >>> sorted(set(mask.tolist()))   # 0: no bias yet, 2: shorts refused in the up-trend
    [0, 2]
    """

    name = "higher_timeframe_bias_filter"
    reasons = ("AGAINST_BIAS",)
    reason = "AGAINST_BIAS"
    Params = BiasFilterParams
    description = "no longs while the higher timeframe is bearish, no shorts while it is bullish"

    def mask(self, ctx: FeatureContext) -> np.ndarray:
        bias = ctx.context("higher_timeframe_bias")["bias"]
        out = np.zeros(ctx.n, dtype=np.int8)
        out[bias < 0] = 1
        out[bias > 0] = 2
        if self.params.block_neutral:
            out[bias == 0] = 3
        return out
