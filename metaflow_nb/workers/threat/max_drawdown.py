"""``max_drawdown_monitor``: halts new entries while the account is in a deep drawdown."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..base import FeatureContext, Params, ThreatWorker, param, register


class MaxDrawdownParams(Params):
    max_drawdown_pct: float = param(10.0, gt=0, lt=100, suggest=(5, 25, 5),
                                    description="drawdown from the equity peak, in %, at which new setups are rejected")
    cooldown_bars: int = param(0, ge=0, le=1_000_000, suggest=(0, 480, 96),
                               description="0 = stay halted until equity recovers above the limit; "
                                           ">0 = after that many bars re-measure from the then equity")


@register
class MaxDrawdownMonitor(ThreatWorker):
    """Rejects every setup (both directions, reason ``MAX_DRAWDOWN``) while the drawdown of
    the marked-to-market equity from its running peak is at least ``max_drawdown_pct``.

    The rule is path dependent, so it runs inside the compiled bar loop
    (:func:`metaflow_nb.engine.nb.simulate.simulate`, step 4) and this worker only hands
    over ``(max_drawdown_pct, cooldown_bars)`` via :meth:`drawdown_limit`. At the close of
    bar ``i`` the equity ``eq[i]`` is marked, the peak is ``max(peak, eq[i])`` (starting
    at the initial cash) and ``dd = (peak - eq[i]) / peak * 100``; setups stamped on bar
    ``i`` are rejected when:

    * ``cooldown_bars == 0``: ``dd >= max_drawdown_pct``. With no position open the equity
      cannot move, so a flat account stays halted (unless a position still open at the
      breach recovers it): a hard stop for the run;
    * ``cooldown_bars > 0``: from the first breach bar ``b`` the monitor halts through bar
      ``b + cooldown_bars - 1``; on bar ``b + cooldown_bars`` the peak is reset to that
      bar's equity (drawdown 0), the halt ends and the monitor re-arms, measuring the
      next breach from there.

    Everything uses equity known at the close of bar ``i``. An open position is never
    closed by this threat; only new entries are blocked.

    >>> MaxDrawdownMonitor("dd", MaxDrawdownParams(max_drawdown_pct=15.0, cooldown_bars=96)).drawdown_limit()
    (15.0, 96)
    """

    name = "max_drawdown_monitor"
    reasons = ("MAX_DRAWDOWN",)
    reason = "MAX_DRAWDOWN"
    Params = MaxDrawdownParams

    def drawdown_limit(self) -> Optional[tuple[float, int]]:
        return float(self.params.max_drawdown_pct), int(self.params.cooldown_bars)

    def mask(self, ctx: FeatureContext) -> np.ndarray:
        """No static mask: the drawdown is evaluated in the bar loop (all zeros)."""
        return np.zeros(ctx.n, dtype=np.int8)
