"""Entry planners: how an accepted setup becomes an order."""
from __future__ import annotations

import numpy as np

from ..base import EntryPlan, EntryPlanner, FeatureContext, Opportunities, Params, register, same_for_all


class NoParams(Params):
    pass


@register
class MarketEntry(EntryPlanner):
    """Market order at the next bar's open (plus slippage).

    >>> plan = MarketEntry("entry", NoParams()).plan(None, [0, 0])   # no limit: a market order
    >>> plan.limit.tolist(), plan.cancel.tolist(), plan.expiry_bars
    ([nan, nan], [nan, nan], 0)
    """

    name = "market_entry"
    Params = NoParams

    def plan(self, ctx: FeatureContext, opps: Opportunities) -> EntryPlan:
        nan = same_for_all(np.nan, len(opps))
        return EntryPlan(limit=nan, cancel=nan, expiry_bars=0)
