"""``sma_cross``: the classic moving-average crossover."""
from __future__ import annotations

import numpy as np
from pydantic import model_validator

from ...engine.nb import indicators as nb
from ..base import FeatureContext, Opportunities, OpportunityWorker, Params, Signals, param, register


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

    Crosses are strict, ``fast[t-1] < slow[t-1]`` and ``fast[t] > slow[t]`` (or the
    mirror), stamped on bar ``t``: equal averages are no signal, and a cross passing
    through a bar of equal averages is not signalled at all, as backtesting.py's
    ``crossover`` (on coarse price ticks with short periods, a few crosses in a thousand).

    >>> import pandas as pd
    >>> close = [3.0, 2.0, 1.0, 2.0, 3.0, 2.0]
    >>> bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 0.0})
    >>> SmaCross("cross", SmaCrossParams(fast=1, slow=2)).detect(FeatureContext(bars)).direction.tolist()
    [0, 0, 0, 1, 0, -1]
    """

    name = "sma_cross"
    Params = SmaCrossParams

    def feature_requests(self) -> list[tuple[str, dict[str, int]]]:
        """The context features :meth:`detect` reads, so a sweep can compute those of all
        its groups together (:meth:`FeatureContext.prefetch`).

        >>> SmaCross("cross", SmaCrossParams(fast=5, slow=20)).feature_requests()
        [('sma', {'period': 5}), ('sma', {'period': 20})]
        """
        p = self.params
        return [("sma", {"period": p.fast}), ("sma", {"period": p.slow})]

    def detect(self, ctx: FeatureContext) -> Signals:
        fast, slow = (ctx.feature(plugin, params)["sma"] for plugin, params in self.feature_requests())
        return Signals.from_direction(nb.crosses(fast, slow))

    def score(self, ctx: FeatureContext, setups: Opportunities) -> np.ndarray:
        """How far the fast average is past the slow one at the cross, as a fraction of the
        slow one: a cross with more momentum ranks first (``rank: score``).

        >>> import metaflow_nb as mf
        >>> from metaflow_nb.assembly.group import build_group, setup_scores
        >>> from metaflow_nb.assembly.workforce import Workforce
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> g = build_group(Workforce.from_specs(specs), mf.load_data("sp500_daily"), specs.pip_size)
        >>> bool((setup_scores(g) > 0).all())   # crosses are strict
        True
        """
        fast, slow = (ctx.feature(plugin, params)["sma"][setups.bar] for plugin, params in self.feature_requests())
        return np.abs(fast - slow) / slow
