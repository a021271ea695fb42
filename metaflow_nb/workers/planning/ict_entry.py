"""ICT entry planner: a limit order inside the setup's fair value gap."""
from __future__ import annotations

from typing import Literal

import numpy as np

from ..base import EntryPlan, EntryPlanner, FeatureContext, Opportunities, Params, param, register


class LimitEntryAtFvgParams(Params):
    price: Literal["midpoint", "edge"] = param(
        "midpoint", description="limit at the zone's midpoint or at its near edge (top for longs, bottom for shorts)")
    expiry_bars: int = param(16, ge=0, le=100_000, suggest=(4, 48, 4),
                             description="bars an unfilled limit stays live after the signal bar; 0 = until cancelled")
    cancel_on_far_edge: bool = param(True, description="cancel an unfilled limit when a bar opens (or closes "
                                                       "unfilled) beyond the zone's far edge (below the bottom for "
                                                       "longs, above the top for shorts)")


@register
class LimitEntryAtFvg(EntryPlanner):
    """A limit order waiting for price to return into the setup's zone (fair value gap).

    For a setup stamped on bar ``s`` with zone ``[bottom, top]`` (both fixed at ``s``):

    * limit = ``(top + bottom) / 2`` with ``price="midpoint"``; with ``price="edge"`` the
      near edge, ``top`` for longs and ``bottom`` for shorts (the first price a retrace
      reaches);
    * cancel level (``cancel_on_far_edge``) = the far edge: ``bottom`` for longs, ``top``
      for shorts. The kernel cancels the unfilled order (``ORDER_CANCELLED``,
      ``ZONE_INVALIDATED``) on the first bar after ``s`` that opens strictly beyond it (a
      gap through the whole zone: invalidated before the limit could fill at its level), or
      that closes strictly beyond it without having filled it (a limit inside the zone is
      always reached first on such a bar; a plugin's limit outside it may not be);
    * ``expiry_bars``: the order expires (``ORDER_EXPIRED``) at the close of bar
      ``s + expiry_bars`` if still unfilled, so it can fill on bars ``s+1 .. s+expiry_bars``.

    The order is live from bar ``s + 1``: a long fills on the first bar whose low reaches
    the limit, at the limit, or at the open when the bar opens below it (a gap through the
    limit that stops short of the far edge, or any gap without ``cancel_on_far_edge``). A
    setup without a zone (``top``/``bottom`` NaN) falls back to a market order at the next
    open (limit NaN, no cancel level). Everything is known at the close of ``s``.

    >>> opps = Opportunities(np.array([4, 9]), np.array([1, -1]), np.array([0, 0]), np.array([1.2, np.nan]),
    ...                      np.array([1.0, np.nan]), np.array([1.3, 1.1]))   # a long's gap; a zoneless short
    >>> plan = LimitEntryAtFvg("fvg_entry", LimitEntryAtFvgParams()).plan(None, opps)
    >>> plan.limit.tolist(), plan.cancel.tolist(), plan.expiry_bars
    ([1.1, nan], [1.0, nan], 16)
    """

    name = "limit_entry_at_fvg"
    Params = LimitEntryAtFvgParams

    def plan(self, ctx: FeatureContext, opps: Opportunities) -> EntryPlan:
        p = self.params
        top = np.asarray(opps.top, dtype=np.float64)
        bot = np.asarray(opps.bottom, dtype=np.float64)
        long_ = np.asarray(opps.direction) > 0
        if p.price == "midpoint":
            limit = (top + bot) / 2.0
        else:
            limit = np.where(long_, top, bot)
        if p.cancel_on_far_edge:
            cancel = np.where(long_, bot, top)
        else:
            cancel = np.full(len(opps), np.nan)
        zoneless = ~(np.isfinite(top) & np.isfinite(bot))
        limit = np.where(zoneless, np.nan, limit)
        cancel = np.where(zoneless, np.nan, cancel)
        return EntryPlan(limit=np.ascontiguousarray(limit, dtype=np.float64),
                         cancel=np.ascontiguousarray(cancel, dtype=np.float64),
                         expiry_bars=int(p.expiry_bars))
