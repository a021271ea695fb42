"""Exit planners: stops, targets and exits on opposite signals."""
from __future__ import annotations

from typing import Literal, Optional

import numpy as np

from ...engine import codes
from ..base import (
    EntryPlan, ExitPlan, ExitPlanner, FeatureContext, Opportunities, Params, param, register, same_for_all,
)


class ReverseParams(Params):
    exclusive_orders: bool = param(
        False, description="a new setup in the SAME direction also closes the position and re-enters "
                           "(backtesting.py's exclusive_orders=True); otherwise it is skipped as IN_POSITION")


@register
class ReverseOnOpposite(ExitPlanner):
    """Exit at the next open when an opposite setup appears; with shorts allowed, the
    opposite setup then opens the reverse position at the same open.

    The exit happens even if a threat rejects the new setup: leaving is never blocked.
    With ``exclusive_orders`` every accepted setup closes the open trade and opens anew.
    """

    name = "reverse_on_opposite"
    Params = ReverseParams

    def plan(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
        return ExitPlan(reverse=True, exclusive=self.params.exclusive_orders)


class PercentStopsParams(Params):
    stop_loss_pct: Optional[float] = param(2.0, gt=0, lt=100, suggest=(0.5, 10.0, 0.5),
                                           description="stop distance in % (None = no stop)")
    take_profit_pct: Optional[float] = param(None, gt=0, suggest=(1.0, 20.0, 1.0),
                                             description="target distance in % (None = no target)")
    reference: Literal["signal_close", "fill"] = param(
        "signal_close", description="price the percentages apply to: the signal bar's close or the fill price")


@register
class PercentStops(ExitPlanner):
    """Stop-loss and take-profit at fixed percentages from the signal close or the fill.

    From the signal close (backtesting.py's ``buy(sl=close * 0.97)`` idiom) the levels are
    fixed at decision time; from the fill they are set when the order fills.
    """

    name = "percent_stops"
    Params = PercentStopsParams
    provides_stop = True
    provides_target = True

    @staticmethod
    def gives_stop(p: PercentStopsParams) -> bool:
        return p.stop_loss_pct is not None

    @staticmethod
    def gives_target(p: PercentStopsParams) -> bool:
        return p.take_profit_pct is not None

    def plan(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
        p = self.params

        def levels(pct: Optional[float], sign: float) -> tuple[int, Optional[np.ndarray]]:
            if pct is None:
                return codes.PRICE_NONE, None
            frac = pct / 100.0
            if p.reference == "fill":
                return codes.PRICE_FRACTION, same_for_all(frac, len(opps))
            d = opps.direction.astype(np.float64)
            return codes.PRICE_ABSOLUTE, opps.signal_close * (1.0 + sign * d * frac)

        sm, stop = levels(p.stop_loss_pct, -1.0)
        tm, target = levels(p.take_profit_pct, 1.0)
        return ExitPlan(stop_mode=sm, stop=stop, target_mode=tm, target=target)
