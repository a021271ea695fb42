"""Context workers on a higher timeframe: ``higher_timeframe_bias`` (market structure on
coarser bars) and ``previous_period_levels`` (previous day, week and month high and low)."""
from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import AfterValidator, field_validator

from ...data.timeframe import align, check_trading_day, parse_timeframe
from ..base import ContextWorker, FeatureContext, Params, param, register
from ..timeframes import TIMEFRAME_KEY, coarser, timeframe_spec
from .swings import SwingParams


#: a trading-day convention: utc, fx, an IANA zone or a zone and the time its day ends
#: (:func:`metaflow_nb.data.timeframe.trading_day_rule`), in its canonical spelling
TradingDay = Annotated[str, AfterValidator(check_trading_day)]
_DAY_HELP = ("utc (calendar day in UTC), fx (the day ending 17:00 America/New_York), a market's zone "
             "(Australia/Sydney: its local day) or a zone and the local time its day ends (America/Chicago 17:00)")


class HigherTimeframeBiasParams(SwingParams):
    timeframe: str = param("4h", description="the higher timeframe: 30m, 1h, 4h, 1d, 1w or 1M")
    trading_day: TradingDay = param("utc", description="day boundary of daily and longer bars and of intraday "
                                                      "bins: " + _DAY_HELP)

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, v: str) -> str:
        return parse_timeframe(v).label


@register
class HigherTimeframeBias(ContextWorker):
    """The market-structure trend of a higher timeframe, as known on each base bar.

    The base bars are resampled to ``timeframe`` bars in the ``trading_day`` convention
    (:mod:`metaflow_nb.data.timeframe`); ``market_structure(left, right)`` runs on them
    (swings confirmed ``right`` higher bars later, breaks on higher closes). Base bar ``i``
    sees the latest *closed* higher bar only: a 4h bar's values appear from the first base
    bar opening at or after its close, never on the bars inside it.

    Outputs (per base bar):

    * ``bias`` (int8): the higher timeframe's trend, +1 / -1, 0 before its first break;
    * ``break_dir`` (int8): direction of a break (BOS or CHoCH) on the latest closed higher
      bar, else 0 (so it holds for the whole next higher period);
    * ``swing_high`` / ``swing_low``: the latest confirmed higher-timeframe swing levels, NaN
      before the first.

    >>> import numpy as np, pandas as pd
    >>> close = np.r_[np.linspace(1.0, 1.1, 48), np.linspace(1.1, 1.05, 24), np.linspace(1.05, 1.2, 48)]
    >>> df = pd.DataFrame({"open": close, "high": close + 0.001, "low": close - 0.001, "close": close,
    ...                    "volume": 1.0}, index=pd.date_range("2024-01-01", periods=120, freq="1h"))
    >>> out = FeatureContext(df).feature("higher_timeframe_bias", {"timeframe": "4h", "left": 1, "right": 1})
    >>> int(out["bias"][-1]), int(np.flatnonzero(out["bias"])[0]) % 4   # changes only at 4h opens
    (1, 0)
    """

    name = "higher_timeframe_bias"
    Params = HigherTimeframeBiasParams

    def compute(self, ctx: FeatureContext) -> dict[str, np.ndarray]:
        p = self.params
        spec = timeframe_spec(p.timeframe, p.trading_day)
        ms = ctx.feature("market_structure", {"left": p.left, "right": p.right, TIMEFRAME_KEY: spec})
        sw = ctx.feature("swing_points", {"left": p.left, "right": p.right, TIMEFRAME_KEY: spec})
        return {"bias": ms["trend"], "break_dir": ms["break_dir"],
                "swing_high": sw["last_swing_high"], "swing_low": sw["last_swing_low"]}


class PreviousPeriodLevelsParams(Params):
    trading_day: TradingDay = param("utc", description="day boundary: " + _DAY_HELP
                                    + "; weeks and months follow the trading day's date")


@register
class PreviousPeriodLevels(ContextWorker):
    """The previous trading day's, week's and month's high and low.

    Days follow the ``trading_day`` convention (``utc``: the calendar day in UTC; ``fx``:
    the FX day ending 17:00 America/New_York, DST-aware, a Sunday-evening open belonging to
    Monday; a market's zone, ``Australia/Sydney``, for a session crossing midnight UTC); a week is the ISO week (Monday to Sunday) of the trading day's date, a month
    its calendar month. "Previous" is the latest period that has closed and had bars: on
    Monday the previous day is Friday. A period's levels appear from the first bar of the
    next period on, never inside the period itself, and a period the data starts inside
    (partial) is never shown. On FX data use ``fx``: with ``utc``
    the hours of Sunday evening (UTC) that open the FX week are a day of their own, and
    Monday's previous day is that stub, not Friday.

    Outputs (float, NaN until a first period has closed): ``prev_day_high``,
    ``prev_day_low``, ``prev_week_high``, ``prev_week_low``, ``prev_month_high``,
    ``prev_month_low``.

    >>> import pandas as pd
    >>> idx = pd.date_range("2024-01-04 00:00", periods=4, freq="12h")   # Thu 00:00 .. Fri 12:00
    >>> df = pd.DataFrame({"open": 1.0, "high": [2.0, 3.0, 5.0, 4.0], "low": [1.0, 0.5, 0.9, 0.8],
    ...                    "close": 1.0, "volume": 1.0}, index=idx)
    >>> out = FeatureContext(df).feature("previous_period_levels")
    >>> out["prev_day_high"].tolist(), out["prev_day_low"].tolist()
    ([nan, nan, 3.0, 3.0], [nan, nan, 0.5, 0.5])
    """

    name = "previous_period_levels"
    Params = PreviousPeriodLevelsParams

    def compute(self, ctx: FeatureContext) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for label, tf in (("day", "1d"), ("week", "1w"), ("month", "1M")):
            resampled = coarser(ctx, timeframe_spec(tf, self.params.trading_day))[1]
            hide = not resampled.first_complete   # the data starts inside the period: partial
            out[f"prev_{label}_high"] = align(resampled.frame["high"].to_numpy(np.float64), resampled.group,
                                              hide_first=hide)
            out[f"prev_{label}_low"] = align(resampled.frame["low"].to_numpy(np.float64), resampled.group,
                                             hide_first=hide)
        return out



