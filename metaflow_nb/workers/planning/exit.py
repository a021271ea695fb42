"""Exit planners: stops, targets, exits on opposite signals, time stops, trailing stops,
break-even moves and exits at a time of day."""
from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
from pydantic import field_validator, model_validator

from ...engine import codes
from ..base import (
    EntryPlan, ExitPlan, ExitPlanner, FeatureContext, Opportunities, Params, param, register, same_for_all,
)
from ..context.sessions import known_zone, utc_index


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

    >>> plan = ReverseOnOpposite("reverse", ReverseParams()).plan(None, None, None)
    >>> plan.reverse, plan.exclusive, plan.stop is None
    (True, False, True)
    """

    name = "reverse_on_opposite"
    Params = ReverseParams

    def plan(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
        return ExitPlan(reverse=True, exclusive=self.params.exclusive_orders)


class PercentStopsParams(Params):
    stop_loss_pct: Optional[float] = param(2.0, gt=0, lt=100, suggest=(0.5, 10.0, 0.5),
                                           description="stop distance in % (None = no stop)")
    take_profit_pct: Optional[float] = param(None, gt=0, le=1_000_000, suggest=(1.0, 20.0, 1.0),
                                             description="target distance in % (None = no target)")
    reference: Literal["signal_close", "fill"] = param(
        "signal_close", description="price the percentages apply to: the signal bar's close or the fill price")


@register
class PercentStops(ExitPlanner):
    """Stop-loss and take-profit at fixed percentages from the signal close or the fill.

    From the signal close (backtesting.py's ``buy(sl=close * 0.97)`` idiom) the levels are
    fixed at decision time; from the fill they are set when the order fills.

    >>> opps = Opportunities(np.array([3, 7]), np.array([1, -1]), np.array([0, 0]), *(np.full(2, np.nan),) * 2,
    ...                      np.array([100.0, 100.0]))
    >>> plan = PercentStops("stops", PercentStopsParams(stop_loss_pct=2.0, take_profit_pct=4.0)).plan(None, opps, None)
    >>> plan.stop.tolist(), plan.target.tolist()   # a long's, then a short's
    ([98.0, 102.0], [104.0, 96.0])
    """

    name = "percent_stops"
    Params = PercentStopsParams
    provides_stop = True
    provides_target = True

    @staticmethod
    def gives_stop(p: PercentStopsParams) -> bool:
        """Whether params ``p`` set a stop-loss (the translator allows one stop provider).

        >>> PercentStops.gives_stop(PercentStopsParams()), PercentStops.gives_stop(
        ...     PercentStopsParams(stop_loss_pct=None))
        (True, False)
        """
        return p.stop_loss_pct is not None

    @staticmethod
    def gives_target(p: PercentStopsParams) -> bool:
        """Whether params ``p`` set a take-profit (the translator allows one target provider).

        >>> PercentStops.gives_target(PercentStopsParams()), PercentStops.gives_target(
        ...     PercentStopsParams(take_profit_pct=3))
        (False, True)
        """
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


class TimeStopParams(Params):
    bars: int = param(10, ge=1, suggest=(5, 50, 5),
                      description="close the trade at the open of the bar this many bars after its entry bar")


@register
class TimeStopExit(ExitPlanner):
    """Close a trade after ``bars`` bars in the market: a market exit at the open of bar
    ``entry_bar + bars`` (plus slippage), reason ``TIME_STOP``.

    It sets no stop and no target, so it composes with a stop planner (``percent_stops``,
    ``atr_based_stops``, ...) and with ``reverse_on_opposite`` in one ``exit_planning``
    list; with two time stops the shortest applies. Within a bar the time stop comes
    right after a pending signal exit and before the stop and target.

    >>> plan = TimeStopExit("time_1", TimeStopParams(bars=5)).plan(None, None, None)
    >>> plan.time_stop_bars, plan.stop is None, plan.target is None, plan.reverse
    (5, True, True, False)
    """

    name = "time_stop_exit"
    Params = TimeStopParams

    def plan(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
        return ExitPlan(time_stop_bars=self.params.bars)


class TrailingParams(Params):
    mode: Literal["percent", "atr", "swing"] = param(
        "atr", description="percent: a fraction from the best close since the entry; atr: a multiple of the "
                           "ATR from the close; swing: the last confirmed swing low (longs) / high (shorts)")
    percent: float = param(2.0, gt=0, lt=100, suggest=(0.5, 10.0, 0.5), description="mode percent: distance in %")
    atr_multiple: float = param(3.0, gt=0, suggest=(1.0, 6.0, 0.5), description="mode atr: distance in ATRs")
    atr_period: int = param(14, ge=1, suggest=(5, 50, 5), description="mode atr: ATR period (bars)")


@register
class TrailingStop(ExitPlanner):
    """A stop that follows the trade: at each close it moves to the candidate of its
    ``mode`` when that is better for the trade than the stop in force, never back.

    The new stop is live from the next bar on (a bar that opens beyond it exits at its
    open). It composes with a fixed stop (``percent_stops``, ``atr_based_stops``: that is
    the initial stop, the trailing one takes over once it is tighter), targets, time stops
    and ``break_even``. ``swing`` reads the blueprint's ``swing_points`` context worker
    (its defaults when there is none).

    >>> import metaflow_nb as mf
    >>> ctx = FeatureContext(mf.load_data("sp500_daily"))
    >>> plan = TrailingStop("trail_1", TrailingParams(mode="atr", atr_multiple=2.0)).plan(ctx, None, None)
    >>> plan.trail_mode == codes.TRAIL_DISTANCE, plan.trail_param, plan.trail_long.shape == (ctx.n,)
    (True, 2.0, True)
    """

    name = "trailing_stop"
    Params = TrailingParams

    def plan(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
        p = self.params
        if p.mode == "percent":
            return ExitPlan(trail_mode=codes.TRAIL_PERCENT, trail_param=p.percent / 100.0)
        if p.mode == "atr":
            atr = ctx.feature("atr", {"period": p.atr_period})["atr"]
            return ExitPlan(trail_mode=codes.TRAIL_DISTANCE, trail_param=p.atr_multiple, trail_long=atr,
                            trail_short=atr)
        swings = ctx.context("swing_points")
        return ExitPlan(trail_mode=codes.TRAIL_LEVEL, trail_long=swings["last_swing_low"],
                        trail_short=swings["last_swing_high"])


class BreakEvenParams(Params):
    after_r: float = param(1.0, gt=0, suggest=(0.5, 3.0, 0.5),
                           description="move the stop to the entry price once a bar reaches +after_r R")


@register
class BreakEven(ExitPlanner):
    """Move the stop to the entry price once a bar has reached ``after_r`` times the
    initial risk (entry-to-stop distance at the fill) in the trade's favour; from the next
    bar on the trade can no longer lose (but for gaps, slippage and commission).

    It needs a stop to measure R: a strategy with no stop planner is refused with its
    config; a setup whose stop is NaN (none) is not moved. With two break-even planners
    the smaller ``after_r`` applies.

    >>> BreakEven("be_1", BreakEvenParams(after_r=1.5)).plan(None, None, None).breakeven_r
    1.5
    """

    name = "break_even"
    Params = BreakEvenParams
    needs_stop = True

    @staticmethod
    def needs_stop_for(p: BreakEvenParams) -> Optional[str]:
        """The param measured in R, so a strategy without a stop is refused: always ``after_r``.

        >>> BreakEven.needs_stop_for(BreakEvenParams())
        'after_r'
        """
        return "after_r"

    def plan(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
        return ExitPlan(breakeven_r=self.params.after_r)


class SessionExitParams(Params):
    at: str = param("21:45", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                    description="time of day (HH:MM, in `zone`): a bar starting at or after it closes the "
                                "position at its close, until the day ends")
    zone: str = param("UTC", description="time zone of `at`, e.g. America/New_York (follows its DST)")
    timezone: str = param("UTC", description="time zone the data's naive timestamps are in, for data "
                                             "without a declared clock; leave it UTC when the operation "
                                             "sets data.timezone")

    @field_validator("zone", "timezone")
    @classmethod
    def _known(cls, v: str) -> str:
        return known_zone(v)

    @field_validator("at", mode="before")
    @classmethod
    def _quoted(cls, v: Any) -> Any:
        if type(v) is int and 0 <= v < 24 * 60:
            # a YAML 1.1 reader (not ours: config.loading) reads an unquoted 21:45 as 1305
            hhmm = f"{v // 60}:{v % 60:02d}"
            raise ValueError(f"an unquoted {hhmm} is read as the number {v} by YAML; quote it: at: \"{hhmm}\"")
        return v


@register
class SessionExit(ExitPlanner):
    """Be flat by a time of day: the first bar that starts at or after ``at`` (local time
    in ``zone``) closes the open position at its close (plus slippage), reason
    ``SESSION_EXIT``; so does every later bar of that day (a trade opened then is closed at
    its fill bar's close). Use a session filter threat to stop new entries as well.

    >>> import metaflow_nb as mf
    >>> ctx = FeatureContext(mf.load_data("eurusd_15m"))
    >>> flat = SessionExit("eod", SessionExitParams(at="21:45")).plan(ctx, None, None).flat_at
    >>> str(ctx.index[int(np.flatnonzero(flat)[0])].time())
    '21:45:00'
    """

    name = "session_exit"
    Params = SessionExitParams
    #: the param that reads naive timestamps in a zone (must stay UTC under a data clock)
    data_zone_param = "timezone"

    def plan(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
        p = self.params
        local = utc_index(ctx.index, p.timezone).tz_convert(p.zone)
        hour, minute = (int(x) for x in p.at.split(":"))
        minutes = np.asarray(local.hour, dtype=np.int64) * 60 + np.asarray(local.minute, dtype=np.int64)
        return ExitPlan(flat_at=(minutes >= hour * 60 + minute).astype(np.float64))


class PartialParams(Params):
    fraction: float = param(0.5, gt=0, lt=1, suggest=(0.25, 0.75, 0.25),
                            description="fraction of the position closed at the first take-profit")
    at_r: Optional[float] = param(1.0, gt=0, suggest=(0.5, 3.0, 0.5),
                                  description="first take-profit at this many R from the fill (needs a stop)")
    at_pct: Optional[float] = param(None, gt=0, lt=100, suggest=(0.5, 10.0, 0.5),
                                    description="or: at this % from the fill")

    @model_validator(mode="after")
    def _one_level(self) -> "PartialParams":
        if (self.at_r is None) == (self.at_pct is None):
            raise ValueError("set exactly one of at_r and at_pct (at_r: null to use at_pct)")
        return self


@register
class PartialTakeProfit(ExitPlanner):
    """Close ``fraction`` of the position at a first take-profit (TP1, ``at_r`` R or
    ``at_pct`` % from the fill, a limit order) and let the rest run to the target of the
    stop planner (TP2), a trailing stop, a time stop or a signal exit.

    The partial close is a row of its own in the trades table (reason
    ``PARTIAL_TAKE_PROFIT``, the same ``opportunity_id``, its share of the entry
    commission); with whole-unit sizing the fraction is rounded down (a position too small
    to split closes nothing at TP1). Within a bar the stop comes first, then TP1, then TP2:
    a bar that reaches both closes the two parts at their levels.

    >>> plan = PartialTakeProfit("tp1", PartialParams(fraction=0.5, at_r=1.0)).plan(None, [1, 2, 3], None)
    >>> plan.partial_mode == codes.PRICE_R_MULTIPLE, plan.partial.tolist(), plan.partial_fraction
    (True, [1.0, 1.0, 1.0], 0.5)
    """

    name = "partial_take_profit"
    Params = PartialParams
    needs_stop = True

    @staticmethod
    def needs_stop_for(p: PartialParams) -> Optional[str]:
        """The param measured in R (``at_r``, needing a stop), or None for a level in percent.

        >>> PartialTakeProfit.needs_stop_for(PartialParams()), PartialTakeProfit.needs_stop_for(
        ...     PartialParams(at_r=None, at_pct=2.0))
        ('at_r', None)
        """
        return "at_r" if p.at_r is not None else None

    def plan(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
        p = self.params
        if p.at_r is not None:
            mode, value = codes.PRICE_R_MULTIPLE, p.at_r
        else:
            mode, value = codes.PRICE_FRACTION, p.at_pct / 100.0
        return ExitPlan(partial_mode=mode, partial=same_for_all(value, len(opps)), partial_fraction=p.fraction)
