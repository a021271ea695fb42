"""``fixed_risk_sizer``: size so that a stop-out loses a fixed percentage of equity."""
from __future__ import annotations

from ...engine import codes
from ..base import Params, SizePlan, SizePlanner, param, register


class FixedRiskParams(Params):
    risk_pct: float = param(1.0, gt=0, le=100, suggest=(0.25, 2.0, 0.25),
                            description="equity lost, in %, if the stop is hit")
    whole_units: bool = param(False, description="round down to whole units")


@register
class FixedRiskSizer(SizePlanner):
    """Fixed fractional risk: at fill time, with ``equity`` the cash then (flat) and
    ``stop`` the order's stop price as resolved at the fill,

    ``size = min(equity * risk_pct / 100 / |fill - stop|, cap)``

    (rounded down with ``whole_units``), where ``cap`` is what ``all_in_sizer`` buys:
    ``equity * leverage * (1 - 2.2e-16) / (fill * (1 + commission))``, the position the
    operation's leverage allows, kept inside the cash (a cap of exactly 10 units is
    9 whole units). Needs an exit planner that sets a stop; an order whose
    stop is missing (NaN) or equal to the fill is skipped (``NO_STOP``). Slippage and commission are not part of the risk budget.

    >>> plan = FixedRiskSizer("size", FixedRiskParams(risk_pct=0.5)).plan()
    >>> plan.kind == codes.SIZER_FIXED_RISK, plan.param
    (True, 0.5)
    """

    name = "fixed_risk_sizer"
    Params = FixedRiskParams
    needs_stop = True

    def plan(self) -> SizePlan:
        return SizePlan(codes.SIZER_FIXED_RISK, float(self.params.risk_pct), bool(self.params.whole_units))
