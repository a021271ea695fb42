"""ICT exit planners: liquidity targets, ATR stops and fixed risk-reward exits.

All levels are fixed at the close of the setup's signal bar ``s`` from data up to ``s``
(or, for distance / R-multiple modes, resolved against the fill price by the kernel).
"""
from __future__ import annotations

from typing import Literal, Optional

import numpy as np

from ...engine import codes
from ..base import (
    EntryPlan, ExitPlan, ExitPlanner, FeatureContext, Opportunities, Params, param, register, same_for_all,
)


def planned_entry(opps: Opportunities, entry: EntryPlan) -> np.ndarray:
    """The price an order is expected to fill at, known at the signal bar: its limit where
    it has one, else the signal bar's close (market orders fill at the next open)."""
    limit = np.asarray(entry.limit, dtype=np.float64)
    return np.where(np.isfinite(limit), limit, np.asarray(opps.signal_close, dtype=np.float64))


def _zone_stop(opps: Opportunities, buffer: float) -> np.ndarray:
    """Beyond the zone's far edge: ``bottom - buffer`` for longs, ``top + buffer`` for shorts."""
    long_ = opps.direction > 0
    return np.where(long_, opps.bottom - buffer, opps.top + buffer)


def _valid_stop(stop: np.ndarray, entry: np.ndarray, d: np.ndarray) -> np.ndarray:
    """A stop is usable when finite and strictly on the losing side of the planned entry."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(stop) & (d * (entry - stop) > 0)


class LiquidityTargetParams(Params):
    target_opposite_liquidity: bool = param(
        True, description="target the nearest unswept opposite liquidity (buy-side above for longs, "
                          "sell-side below for shorts); otherwise always fallback_rr x R")
    stop_placement: Literal["zone", "swing"] = param(
        "swing", description="stop beyond the last confirmed opposite swing (default: gaps on 15-minute "
                             "bars are a few pips deep, so a stop beyond the zone is hit by noise), or beyond the "
                             "zone's far edge; the swings are the blueprint's swing_points context worker's "
                             "(left/right 2/2 when it has none: market_structure's own left/right do not "
                             "move them)")
    stop_buffer_pips: float = param(2.0, ge=0, le=10_000, suggest=(0, 10, 1),
                                    description="extra distance beyond the stop reference, in pips")
    fallback_rr: float = param(2.0, gt=0, le=100, suggest=(1.0, 5.0, 0.5),
                               description="target in R (entry-to-stop distances) when no liquidity target applies")
    min_target_rr: float = param(0.0, ge=0, le=100, suggest=(0.0, 3.0, 0.5),
                                 description="a liquidity target closer than this many R falls back to fallback_rr")


@register
class LiquidityTargetExit(ExitPlanner):
    """Absolute stop and absolute target per setup, fixed at the signal bar ``s``.

    Planned entry ``E``: the entry plan's limit where it has one, else the signal close
    (a market order; the real fill is the next open, so R is then approximate).
    ``d`` = +1 long / -1 short, ``buf = stop_buffer_pips * pip_size``.

    **Stop** (``PRICE_ABSOLUTE``): with ``stop_placement="zone"`` beyond the zone's far
    edge, ``bottom - buf`` (long) / ``top + buf`` (short); with ``"swing"`` beyond the last
    confirmed opposite swing as known at ``s`` (the blueprint's ``swing_points`` context
    worker, or ``swing_points`` with its defaults, left/right 2/2, when the blueprint has
    none: the ``left``/``right`` of ``market_structure`` or ``liquidity_levels`` do not
    move these stops; stamped on its confirmation bar): ``last_swing_low[s] - buf`` (long) /
    ``last_swing_high[s] + buf`` (short). A stop that is NaN (no zone / no swing yet) or not strictly on the losing side
    of ``E`` is replaced by the other placement; when neither is usable the setup has no
    stop (NaN; a fixed-risk sizer then cannot size it and skips it).

    **Target** (``PRICE_ABSOLUTE``), ``R = |E - stop|``: with
    ``target_opposite_liquidity`` the nearest unswept opposite liquidity at ``s``
    (``liquidity_levels`` context): ``nearest_buy_side[s]`` for longs,
    ``nearest_sell_side[s]`` for shorts, used when it lies strictly beyond ``E`` in the
    trade's direction and at least ``min_target_rr * R`` away. Otherwise (no level, wrong
    side, too close, or ``target_opposite_liquidity=false``) the fallback
    ``E + d * fallback_rr * R``, converted to an absolute price with the planned entry so
    the plan has one target mode. No stop means no fallback target.
    """

    name = "liquidity_target_exit"
    Params = LiquidityTargetParams
    provides_stop = True
    provides_target = True

    def levels(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> dict[str, np.ndarray]:
        """Planned entry, stop, target and which target was used (1 liquidity, 0 fallback)."""
        p = self.params
        bar = opps.bar
        d = opps.direction.astype(np.float64)
        long_ = d > 0
        e = planned_entry(opps, entry)
        buf = float(p.stop_buffer_pips) * ctx.pip_size
        zone = _zone_stop(opps, buf)
        if len(opps):
            sw = ctx.context("swing_points")
            swing = np.where(long_, sw["last_swing_low"][bar] - buf, sw["last_swing_high"][bar] + buf)
        else:
            swing = np.empty(0)
        first, second = (zone, swing) if p.stop_placement == "zone" else (swing, zone)
        stop = np.where(_valid_stop(first, e, d), first, np.where(_valid_stop(second, e, d), second, np.nan))
        risk = np.abs(e - stop)
        fallback = e + d * float(p.fallback_rr) * risk
        use_liq = np.zeros(len(opps), dtype=bool)
        target = fallback
        if p.target_opposite_liquidity and len(opps):
            liq = ctx.context("liquidity_levels")
            lv = np.where(long_, liq["nearest_buy_side"][bar], liq["nearest_sell_side"][bar])
            with np.errstate(invalid="ignore"):
                dist = d * (lv - e)
                use_liq = np.isfinite(lv) & (dist > 0) & ~(dist < float(p.min_target_rr) * risk)
            target = np.where(use_liq, lv, fallback)
        return {"entry": e, "stop": stop, "target": target, "liquidity_target": use_liq}

    def plan(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
        lv = self.levels(ctx, opps, entry)
        return ExitPlan(stop_mode=codes.PRICE_ABSOLUTE, stop=np.ascontiguousarray(lv["stop"]),
                        target_mode=codes.PRICE_ABSOLUTE, target=np.ascontiguousarray(lv["target"]))


class AtrStopsParams(Params):
    atr_multiplier: float = param(2.0, gt=0, le=100, suggest=(1.0, 4.0, 0.5),
                                  description="stop distance from the fill in ATRs of the signal bar")
    atr_period: int = param(14, ge=1, le=500, suggest=(5, 50, 1), description="ATR period")
    target_r: Optional[float] = param(2.0, gt=0, le=100, suggest=(1.0, 5.0, 0.5),
                                      description="target as a multiple of the stop distance; None = no target")


@register
class AtrBasedStops(ExitPlanner):
    """Stop ``atr_multiplier * ATR(atr_period)[s]`` away from the fill (``PRICE_DISTANCE``:
    the kernel sets ``fill - distance`` for longs, ``fill + distance`` for shorts when the
    order fills); the distance is fixed at the close of the signal bar ``s``. With
    ``target_r`` the target is ``target_r`` times the entry-to-stop distance beyond the fill
    (``PRICE_R_MULTIPLE``), else no target. A setup on a bar whose ATR is still warming up
    (NaN) has no stop.
    """

    name = "atr_based_stops"
    Params = AtrStopsParams
    provides_stop = True
    provides_target = True

    @staticmethod
    def gives_target(p: AtrStopsParams) -> bool:
        """Whether params ``p`` set a take-profit (``target_r``; the translator allows one
        target provider).

        >>> AtrBasedStops.gives_target(AtrStopsParams()), AtrBasedStops.gives_target(AtrStopsParams(target_r=None))
        (True, False)
        """
        return p.target_r is not None

    def plan(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
        p = self.params
        atr = ctx.feature("atr", {"period": int(p.atr_period)})["atr"]
        dist = float(p.atr_multiplier) * atr[opps.bar] if len(opps) else np.empty(0)
        if p.target_r is None:
            return ExitPlan(stop_mode=codes.PRICE_DISTANCE, stop=np.ascontiguousarray(dist, dtype=np.float64))
        return ExitPlan(stop_mode=codes.PRICE_DISTANCE, stop=np.ascontiguousarray(dist, dtype=np.float64),
                        target_mode=codes.PRICE_R_MULTIPLE, target=same_for_all(float(p.target_r), len(opps)))


class FixedRRParams(Params):
    rr: float = param(2.0, gt=0, le=100, suggest=(1.0, 5.0, 0.5),
                      description="target as a multiple of the entry-to-stop distance")
    stop_buffer_pips: float = param(2.0, ge=0, le=10_000, suggest=(0, 10, 1),
                                    description="distance beyond the zone's far edge, in pips")
    stop_pct: float = param(1.0, gt=0, lt=100, suggest=(0.25, 5.0, 0.25),
                            description="stop distance in % of the signal close for setups without a zone")


@register
class FixedRRExit(ExitPlanner):
    """Fixed risk-reward: absolute stop, target ``rr`` R from the fill.

    Stop (``PRICE_ABSOLUTE``, fixed at the signal bar ``s``): beyond the zone's far edge,
    ``bottom - stop_buffer_pips * pip_size`` for longs, ``top + ...`` for shorts; a setup
    without a zone gets ``close[s] * (1 -/+ stop_pct / 100)``. Target
    (``PRICE_R_MULTIPLE``): ``fill + rr * (fill - stop)``, set when the order fills.
    """

    name = "fixed_rr_exit"
    Params = FixedRRParams
    provides_stop = True
    provides_target = True

    def plan(self, ctx: FeatureContext, opps: Opportunities, entry: EntryPlan) -> ExitPlan:
        p = self.params
        d = opps.direction.astype(np.float64)
        zone = _zone_stop(opps, float(p.stop_buffer_pips) * ctx.pip_size)
        pct = opps.signal_close * (1.0 - d * float(p.stop_pct) / 100.0)
        stop = np.where(np.isfinite(zone), zone, pct)
        return ExitPlan(stop_mode=codes.PRICE_ABSOLUTE, stop=np.ascontiguousarray(stop, dtype=np.float64),
                        target_mode=codes.PRICE_R_MULTIPLE, target=same_for_all(float(p.rr), len(opps)))
