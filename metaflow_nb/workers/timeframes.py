"""Context features computed on a higher timeframe and aligned causally to the base bars.

A context worker instance with ``timeframe: 4h`` (and optionally ``trading_day: fx``) in
its blueprint runs on the base bars resampled to 4h bars (:func:`metaflow_nb.data.timeframe.resample`);
its outputs reach base bar ``i`` only from the first base bar after the 4h bar closed
(:func:`metaflow_nb.data.timeframe.align_outputs`). Other workers read it as usual:
``ctx.context("market_structure")`` returns the 4h values when the blueprint's (first)
``market_structure`` instance has that timeframe, and ``ctx.feature(plugin, {...,
TIMEFRAME_KEY: "4h@utc"})`` asks for any plugin on any timeframe.

The resampled bars and the higher bars' own feature cache are kept in the dataset's
feature cache, once per timeframe and trading day, so a sweep resamples once.

>>> import pandas as pd
>>> from metaflow_nb.workers.features import FeatureContext
>>> idx = pd.date_range("2024-01-02", periods=8, freq="1h")
>>> df = pd.DataFrame({"open": 1.0, "high": [1.0 + k for k in range(8)], "low": 0.5, "close": 1.0,
...                    "volume": 1.0}, index=idx)
>>> ctx = FeatureContext(df)
>>> ctx.feature("atr", {"period": 1, TIMEFRAME_KEY: timeframe_spec("4h")})["atr"].tolist()
[nan, nan, nan, nan, 3.5, 3.5, 3.5, 3.5]
"""
from __future__ import annotations

from typing import Optional

from ..data.timeframe import check_trading_day, parse_timeframe
from .features import TIMEFRAME_KEY, coarser, timeframe_feature

__all__ = ["TIMEFRAME_KEY", "coarser", "timeframe_feature", "timeframe_spec"]


def timeframe_spec(timeframe: str, trading_day: Optional[str] = None) -> str:
    """The canonical ``"<timeframe>@<trading day>"`` text of a higher timeframe.

    >>> timeframe_spec("240m"), timeframe_spec("1d", "fx")
    ('4h@utc', '1d@fx')
    """
    return f"{parse_timeframe(timeframe).label}@{check_trading_day(trading_day or 'utc')}"
