"""mf_rsi: an example plugin package for metaflow-nb.

Importing it registers three workers (the ``@register`` decorators in :mod:`.workers`):

* ``rsi_reversion`` (opportunity): long when Wilder's RSI crosses back up through
  ``oversold``, short when it crosses down through ``overbought``;
* ``trend_guard`` (threat, reason code ``AGAINST_TREND``): no longs below a falling EMA,
  no shorts above a rising one;
* ``rsi_exit`` (exit planner, its exits named ``RSI_BACK``): leaves a trade once the RSI
  is back through ``level``.

metaflow-nb imports this module through the entry point in ``pyproject.toml``
(group ``metaflow_nb.workers``) the first time a config names one of them, so a
strategy YAML just says ``plugin: rsi_reversion``.
"""
from __future__ import annotations

from .indicators import level_crosses, wilder_rsi
from .workers import RsiExit, RsiExitParams, RsiReversion, RsiReversionParams, TrendGuard, TrendGuardParams

__all__ = ["RsiExit", "RsiExitParams", "RsiReversion", "RsiReversionParams", "TrendGuard", "TrendGuardParams",
           "level_crosses", "wilder_rsi"]
__version__ = "0.1.0"
