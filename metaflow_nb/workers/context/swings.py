"""``swing_points`` context worker: fractal swing highs and lows, confirmed causally."""
from __future__ import annotations

import numpy as np

from ...engine.nb import structure as nbs
from ..base import ContextWorker, FeatureContext, Params, param, register


class SwingParams(Params):
    left: int = param(2, ge=1, le=50, suggest=(1, 10, 1), description="bars before the swing it must top")
    right: int = param(2, ge=1, le=50, suggest=(1, 10, 1),
                       description="bars after the swing it must top; also the confirmation delay")


@register
class SwingPoints(ContextWorker):
    """Swing highs and lows, stamped on the bar that confirms them.

    Bar ``j`` is a swing high when ``high[j] >= high[j-k]`` for ``k = 1..left`` and
    ``high[j] > high[j+k]`` for ``k = 1..right``: ties are allowed with the bars before it
    but not with the bars after, so a flat top of equal highs gives one swing, its last
    bar. Swing lows mirror this on ``low`` (``<=`` left, ``<`` right). ``j`` needs ``left``
    bars before it.

    A swing is only known once its ``right`` bars have closed, so it is written on the
    confirmation bar ``c = j + right``, never on ``j``:

    * ``swing_high`` / ``swing_low``: the swing price on bar ``c``, NaN elsewhere;
    * ``swing_high_bar`` / ``swing_low_bar`` (int64): the swing bar ``j`` on bar ``c``,
      -1 elsewhere;
    * ``last_swing_high`` / ``last_swing_low``: the price of the latest swing confirmed at
      or before each bar (forward-filled from ``c``), NaN before the first.

    >>> import pandas as pd
    >>> bars = pd.DataFrame({"open": 1.0, "high": [1.0, 3.0, 2.0, 1.0, 2.0], "low": [0.0, 2.0, 1.0, 0.0, 1.0],
    ...                      "close": 1.0, "volume": 0.0})
    >>> out = SwingPoints("swings", SwingParams(left=1, right=1)).compute(FeatureContext(bars))
    >>> out["swing_high"].tolist(), out["swing_high_bar"].tolist()   # bar 1's high, known at bar 2
    ([nan, nan, 3.0, nan, nan], [-1, -1, 1, -1, -1])
    """

    name = "swing_points"
    Params = SwingParams

    def compute(self, ctx: FeatureContext) -> dict[str, np.ndarray]:
        p = self.params
        sh, shb, sl, slb, lsh, lsl = nbs.swing_points(ctx.high, ctx.low, p.left, p.right)
        return {"swing_high": sh, "swing_high_bar": shb, "swing_low": sl, "swing_low_bar": slb,
                "last_swing_high": lsh, "last_swing_low": lsl}
