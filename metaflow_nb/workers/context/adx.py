"""``adx`` context worker: Wilder's average directional index with +DI / -DI."""
from __future__ import annotations

import numpy as np

from ...engine.nb import structure as nbs
from ..base import ContextWorker, FeatureContext, Params, param, register


class AdxParams(Params):
    period: int = param(14, ge=1, le=500, suggest=(7, 42, 7), description="smoothing period in bars")


@register
class Adx(ContextWorker):
    """Wilder's ADX, +DI and -DI (outputs ``adx``, ``plus_di``, ``minus_di``, 0..100).

    From bar 1 on: ``up = high - prev high``, ``down = prev low - low``; ``+DM = up`` when
    ``up > down and up > 0`` (else 0), ``-DM = down`` when ``down > up and down > 0`` (else
    0). True range, +DM and -DM of bars ``1..`` are Wilder-smoothed (seeded with the mean of
    their first ``period`` values); ``+DI = 100 * sm(+DM) / sm(TR)``, ``-DI`` likewise (0
    when ``sm(TR)`` is 0), known from bar ``period``. ``DX = 100 * |+DI - -DI| / (+DI +
    -DI)`` (0 when both are 0) and ``adx`` is Wilder-smoothed DX, known from bar
    ``2 * period - 1``. Every value of bar ``i`` is known at its close; NaN before.

    >>> import numpy as np, pandas as pd
    >>> up = np.arange(1.0, 7.0)   # higher highs and lows: all directional movement is up
    >>> out = Adx("adx", AdxParams(period=2)).compute(FeatureContext(pd.DataFrame(
    ...     {"open": up, "high": up + 0.5, "low": up - 0.5, "close": up, "volume": 0.0})))
    >>> out["adx"].tolist(), out["minus_di"].tolist()
    ([nan, nan, nan, 100.0, 100.0, 100.0], [nan, nan, 0.0, 0.0, 0.0, 0.0])
    """

    name = "adx"
    Params = AdxParams

    def compute(self, ctx: FeatureContext) -> dict[str, np.ndarray]:
        a, p, m = nbs.adx(ctx.high, ctx.low, ctx.close, self.params.period)
        return {"adx": a, "plus_di": p, "minus_di": m}
