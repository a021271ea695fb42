"""Entry planners: how an accepted setup becomes an order."""
from __future__ import annotations

import numpy as np

from ..base import EntryPlan, EntryPlanner, FeatureContext, Opportunities, Params, register


class NoParams(Params):
    pass


@register
class MarketEntry(EntryPlanner):
    """Market order at the next bar's open (plus slippage)."""

    name = "market_entry"
    Params = NoParams

    def plan(self, ctx: FeatureContext, opps: Opportunities) -> EntryPlan:
        nan = np.full(len(opps), np.nan)
        return EntryPlan(limit=nan, cancel=nan.copy(), expiry_bars=0)
