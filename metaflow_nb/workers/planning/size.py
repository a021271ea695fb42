"""Size planners: how many units an order buys, decided at fill time."""
from __future__ import annotations

from ...engine import codes
from ..base import Params, SizePlan, SizePlanner, param, register


class AllInParams(Params):
    whole_units: bool = param(True, description="round down to whole units")


@register
class AllInSizer(SizePlanner):
    """All available equity (times the operation's leverage), net of the entry commission.

    Whole units are ``floor(equity * leverage * (1 - eps) / (price * (1 + commission)))``,
    the way backtesting.py sizes ``buy()`` without a size.

    >>> plan = AllInSizer("size", AllInParams()).plan()
    >>> plan.kind == codes.SIZER_ALL_IN, plan.whole_units
    (True, True)
    """

    name = "all_in_sizer"
    Params = AllInParams

    def plan(self) -> SizePlan:
        return SizePlan(codes.SIZER_ALL_IN, 1.0, self.params.whole_units)


class FixedFractionParams(Params):
    fraction: float = param(0.5, gt=0, le=1, suggest=(0.1, 1.0, 0.1), description="fraction of equity per trade")
    whole_units: bool = param(False, description="round down to whole units")


@register
class FixedFractionSizer(SizePlanner):
    """A fixed fraction of current equity per trade: ``fraction × equity / (price × (1 +
    commission))`` units (the entry commission comes out of the fraction), capped by what
    leverage allows; leverage does not scale the fraction.

    >>> plan = FixedFractionSizer("size", FixedFractionParams(fraction=0.25)).plan()
    >>> plan.kind == codes.SIZER_FIXED_FRACTION, plan.param, plan.whole_units
    (True, 0.25, False)
    """

    name = "fixed_fraction_sizer"
    Params = FixedFractionParams

    def plan(self) -> SizePlan:
        return SizePlan(codes.SIZER_FIXED_FRACTION, self.params.fraction, self.params.whole_units)
