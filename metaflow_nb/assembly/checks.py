"""Checks of what workers return, where their outputs enter the run path.

A plugin is user code: an output the kernel would misread (a NaN or 100 as a direction,
a mask of 7, an array one bar short, an infinite stop) must stop the run with a
:class:`~metaflow_nb.errors.PluginError` naming the worker instance, the output and the
first offending bar, not give plausible wrong numbers. Every check is vectorised over
whole arrays and runs once per output (a group's features, signals and masks once per
group, a plan once per combination), and where an output only matters on the setups'
bars only those are read: a few microseconds per run.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..config.buildspecs import reason_problem
from ..engine import codes
from ..errors import ConfigError, PluginError
from ..workers.contracts import EntryPlan, ExitPlan, Opportunities, Signals, SizePlan, Worker

_NUMERIC = frozenset("biuf")  # bool, signed and unsigned integers, floats
# concrete types, not numbers.Real: an isinstance against an ABC costs a microsecond a call
_INTEGERS = (int, np.integer)
_NUMBERS = (int, float, np.integer, np.floating)
_STOP_MODES = {codes.PRICE_NONE: "none", codes.PRICE_ABSOLUTE: "absolute", codes.PRICE_DISTANCE: "distance",
               codes.PRICE_FRACTION: "fraction"}
_TARGET_MODES = {**_STOP_MODES, codes.PRICE_R_MULTIPLE: "R multiple"}
_TRAIL_MODES = {codes.TRAIL_NONE: "none", codes.TRAIL_PERCENT: "percent", codes.TRAIL_DISTANCE: "distance",
                codes.TRAIL_LEVEL: "level"}
#: the level modes that read a level as a distance from the fill (or a multiple of it): >= 0
_DISTANCES = frozenset({codes.PRICE_DISTANCE, codes.PRICE_FRACTION, codes.PRICE_R_MULTIPLE})
_SIZERS = {codes.SIZER_ALL_IN: "all in", codes.SIZER_FIXED_FRACTION: "fixed fraction",
           codes.SIZER_FIXED_RISK: "fixed risk"}
# the exit rules' per-bar inputs (trailing distances or levels, bars to close at) and
# scalars, read by name so a plan type without them passes
_PER_BAR_EXITS = ("trail_long", "trail_short", "flat_at", "exit_long", "exit_short")
_SCALAR_EXITS = ("trail_param", "breakeven_r", "partial_fraction")
#: the per-bar exits that are flags (nonzero = exit), not levels (NaN = none)
_FLAGS = frozenset({"flat_at", "exit_long", "exit_short"})


def plugin_error(w: Worker, message: str) -> PluginError:
    """A :class:`~metaflow_nb.errors.PluginError` saying ``message`` of worker ``w``,
    named by its instance id and role.

    >>> from metaflow_nb.workers.planning.size import AllInParams, AllInSizer
    >>> str(plugin_error(AllInSizer("size_1", AllInParams()), "no stop to size by"))
    'size_1 (size): no stop to size by'
    """
    return PluginError(f"{w.instance_id} ({w.role}): {message}")


def _array(w: Worker, what: str, values: Any, n: int, per: str, kinds: frozenset = _NUMERIC) -> np.ndarray:
    """``values`` as a 1-D array of ``n`` numbers, or the PluginError saying what it is."""
    if not isinstance(values, np.ndarray):
        raise plugin_error(w, f"{what} is a {type(values).__name__}; expected a numpy array, one value per {per}")
    if values.dtype.kind not in kinds:
        want = "an integer" if kinds == frozenset("iu") else "a numeric"
        raise plugin_error(w, f"{what} has dtype {values.dtype}; expected {want} array")
    if values.ndim != 1 or values.shape[0] != n:
        k = values.shape[0]
        shape = f"{k} value{'' if k == 1 else 's'}" if values.ndim == 1 else f"shape {values.shape}"
        raise plugin_error(w, f"{what} has {shape}; expected {n} (one per {per})")
    return values


def _levels(w: Worker, what: str, values: Any, opps: Opportunities, none: str) -> None:
    """Per-setup levels: one number per setup, NaN (``none``) allowed, infinity not."""
    v = _array(w, what, values, len(opps), "setup")
    k = _first_inf(v)
    if k is not None:
        raise plugin_error(w, f"{what} of the setup at bar {int(opps.bar[k])} is {v[k]}; "
                              f"expected a finite value or NaN ({none})")


def _first_where(v: np.ndarray, bad: Callable[[Any], Any], bad_one: Callable[[Any], Any]) -> Any:
    """The index of the first value of a 1-D array for which ``bad`` (elementwise) holds, or
    None; ``bad_one`` is the same test of one number (a twentieth of a ufunc's cost)."""
    if v.shape[0] == 0:
        return None
    if v.strides[0] == 0:
        # one value for all (same_for_all, how sweeps plan constant levels): one look
        return 0 if bad_one(v[0]) else None
    found = bad(v)
    # count_nonzero is the cheapest test of a boolean array (a third of .any()'s cost)
    return int(np.argmax(found)) if np.count_nonzero(found) else None


def _first_inf(v: np.ndarray) -> Any:
    """The index of the first infinite value of a 1-D array, or None."""
    return _first_where(v, np.isinf, math.isinf) if v.dtype.kind == "f" else None  # integers are always finite


def _first_nan(v: np.ndarray) -> Any:
    """The index of the first NaN of a 1-D array, or None."""
    return _first_where(v, np.isnan, math.isnan) if v.dtype.kind in "fc" else None  # integers, booleans: never NaN


def _first_negative(v: np.ndarray) -> Any:
    """The index of the first value below 0 of a 1-D numeric array (NaN is not), or None."""
    return _first_where(v, _negative, _negative)


def _negative(x: Any) -> Any:
    return x < 0


def _shown(value: Any) -> str:
    """A value as a one-line message shows it: an array by its length, not its repr."""
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return f"an ndarray of {value.size} value{'' if value.size == 1 else 's'}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _mode(w: Worker, what: str, value: Any, modes: dict[int, str]) -> None:
    """A mode code: an integer (not a bool, not a name) that ``modes`` knows."""
    if type(value) is bool or not isinstance(value, _INTEGERS) or value not in modes:
        raise plugin_error(w, f"{what} is {_shown(value)}; expected one of "
                              + ", ".join(f"{k} ({v})" for k, v in modes.items()))


def _count(w: Worker, what: str, value: Any) -> None:
    if type(value) is bool or not isinstance(value, _INTEGERS) or value < 0:
        raise plugin_error(w, f"{what} is {_shown(value)}; expected a whole number >= 0")


def _finite(w: Worker, what: str, value: Any, low: float = 0.0) -> None:
    if type(value) is bool or not isinstance(value, _NUMBERS) or not math.isfinite(value) or value < low:
        raise plugin_error(w, f"{what} is {_shown(value)}; expected a finite number >= {low:g}")


# ---------------------------------------------------------------- context, opportunity, threat

def check_features(w: Worker, out: Any, n: int) -> None:
    """A context worker's ``compute`` output: a dict of 1-D numeric (or boolean) arrays
    of one value per bar. Values are not read (NaN and inf may be legitimate features).

    >>> from metaflow_nb.workers.base import get_plugin
    >>> atr = get_plugin("atr")("atr_1", get_plugin("atr").Params())
    >>> check_features(atr, {"atr": np.zeros(5)}, 4)
    Traceback (most recent call last):
    metaflow_nb.errors.PluginError: atr_1 (context): atr has 5 values; expected 4 (one per bar)
    """
    if not isinstance(out, dict):
        raise plugin_error(w, f"compute returned a {type(out).__name__}; expected a dict of per-bar arrays")
    for key, values in out.items():
        _array(w, str(key), values, n, "bar")


def check_signals(w: Worker, sig: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An opportunity worker's ``Signals``: per-bar arrays, a direction of -1, 0 or 1 and,
    on the setups' bars, zones without infinities, with both edges or neither, and
    ``top >= bottom``. Returns the setups' ``(bars, directions as int64, tops, bottoms)``.

    >>> from metaflow_nb.workers.base import get_plugin
    >>> sma = get_plugin("sma_cross")("sma_1", get_plugin("sma_cross").Params())
    >>> check_signals(sma, Signals.from_direction(np.array([0, 1, 100])), 3)
    Traceback (most recent call last):
    metaflow_nb.errors.PluginError: sma_1 (opportunity): direction at bar 2 is 100; expected -1, 0 or 1
    """
    if not isinstance(sig, Signals):
        raise plugin_error(w, f"detect returned a {type(sig).__name__}; expected Signals")
    direction = _array(w, "direction", sig.direction, n, "bar")
    top = _array(w, "top", sig.top, n, "bar")
    bottom = _array(w, "bottom", sig.bottom, n, "bar")
    # NaN != 0 too: every value that is not 0 is a setup or a mistake, so reading the
    # setups alone finds NaN, 100 and 0.5 (nonzero of a boolean mask is several times
    # faster than of the int8 directions)
    idx = np.flatnonzero(direction != 0)
    d = direction[idx]
    bad = (d != 1) & (d != -1)
    if np.count_nonzero(bad):
        k = int(np.argmax(bad))
        shown = d[k].item()
        raise plugin_error(w, f"direction at bar {int(idx[k])} is {shown!r}; expected -1, 0 or 1")
    t, b = top[idx], bottom[idx]
    bad = t < b  # a comparison with NaN is False: setups without a zone pass
    t_nan = np.isnan(t) if t.dtype.kind == "f" else np.zeros(t.shape, bool)
    b_nan = np.isnan(b) if b.dtype.kind == "f" else np.zeros(b.shape, bool)
    # one edge alone is no zone to the planners (they fall back to a market order and no
    # zone stop): a mistake, not a choice, so it is named rather than read as "no zone"
    half = t_nan != b_nan
    bad |= half
    if t.dtype.kind == "f":
        bad |= np.isinf(t)
    if b.dtype.kind == "f":
        bad |= np.isinf(b)
    if np.count_nonzero(bad):
        k = int(np.argmax(bad))
        if np.isinf(t[k]) or np.isinf(b[k]):
            raise plugin_error(w, f"zone at bar {int(idx[k])} is top {t[k]}, bottom {b[k]}; "
                                  f"expected finite edges or NaN (no zone)")
        if half[k]:
            raise plugin_error(w, f"zone at bar {int(idx[k])} is top {t[k]}, bottom {b[k]}; expected both edges, or "
                                  f"neither (NaN: no zone)")
        raise plugin_error(w, f"zone at bar {int(idx[k])} has top {t[k]} < bottom {b[k]}; expected top >= bottom")
    return idx, d.astype(np.int64), t, b


def check_scores(w: Worker, scores: Any, opps: Opportunities) -> np.ndarray:
    """An opportunity worker's ``score(ctx, setups)``: one finite number per setup (the
    ranking of a portfolio's simultaneous setups cannot place NaN or infinity).

    >>> from metaflow_nb.workers.base import get_plugin
    >>> sma = get_plugin("sma_cross")("sma_1", get_plugin("sma_cross").Params())
    >>> opps = Opportunities(np.array([4, 9]), np.ones(2, np.int64), np.zeros(2, np.int64), *(np.zeros(2),) * 3)
    >>> check_scores(sma, np.array([0.5, np.nan]), opps)
    Traceback (most recent call last):
    metaflow_nb.errors.PluginError: sma_1 (opportunity): score of the setup at bar 9 is nan; expected a finite number
    """
    v = _array(w, "score", scores, len(opps), "setup")
    bad = ~np.isfinite(v)
    if np.count_nonzero(bad):
        k = int(np.argmax(bad))
        raise plugin_error(w, f"score of the setup at bar {int(opps.bar[k])} is {v[k]}; expected a finite number")
    return v.astype(np.float64, copy=False)


def check_mask(w: Worker, mask: Any, n: int) -> np.ndarray:
    """A threat's per-bar mask: integers 0 (nothing blocked), 1 (longs), 2 (shorts) or 3.

    >>> from metaflow_nb.workers.base import get_plugin
    >>> vol = get_plugin("volatility_spike_detector")("vol_1", get_plugin("volatility_spike_detector").Params())
    >>> check_mask(vol, np.array([0, 3, 7], dtype=np.int8), 3)
    Traceback (most recent call last):
    metaflow_nb.errors.PluginError: vol_1 (threat): mask at bar 2 is 7; expected 0, 1, 2 or 3
    """
    m = _array(w, "mask", mask, n, "bar", frozenset("iu"))
    # as unsigned, a negative value is a large one: one comparison finds both
    bad = m.view(np.dtype(f"u{m.dtype.itemsize}")) > 3
    if np.count_nonzero(bad):
        k = int(np.argmax(bad))
        raise plugin_error(w, f"mask at bar {k} is {int(m[k])}; expected 0, 1, 2 or 3")
    return m


def check_drawdown(w: Worker, limit: Any) -> None:
    """A drawdown threat's ``drawdown_limit()``: ``(percent in (0, 100), cooldown bars >= 0)``;
    returns None, else raises a PluginError naming ``w``.

    >>> from metaflow_nb.workers.threat.max_drawdown import MaxDrawdownMonitor, MaxDrawdownParams
    >>> dd = MaxDrawdownMonitor("dd_1", MaxDrawdownParams())
    >>> check_drawdown(dd, (10.0, 5)) is None
    True
    >>> check_drawdown(dd, (150.0, 0))
    Traceback (most recent call last):
    metaflow_nb.errors.PluginError: dd_1 (threat): drawdown limit is 150.0; expected a percentage between 0 and 100
    """
    if not (isinstance(limit, tuple) and len(limit) == 2):
        raise plugin_error(w, f"drawdown_limit returned {limit!r}; expected (limit_pct, cooldown_bars) or None")
    pct, cooldown = limit
    if type(pct) is bool or not isinstance(pct, _NUMBERS) or not 0.0 < pct < 100.0:
        raise plugin_error(w, f"drawdown limit is {pct!r}; expected a percentage between 0 and 100")
    _count(w, "drawdown cooldown", cooldown)


# ---------------------------------------------------------------- plans

def check_entry(w: Worker, plan: Any, opps: Opportunities) -> None:
    """An entry plan: one limit (NaN = market) and one cancel level (NaN = never) per
    setup, never infinite, and ``expiry_bars >= 0``.

    >>> from metaflow_nb.workers.base import get_plugin
    >>> e = get_plugin("market_entry")("entry_1", get_plugin("market_entry").Params())
    >>> opps = Opportunities(*(np.zeros(2, np.int64),) * 3, *(np.zeros(2),) * 3)
    >>> check_entry(e, EntryPlan(np.array([np.nan, np.inf]), np.full(2, np.nan)), opps)
    Traceback (most recent call last):
    metaflow_nb.errors.PluginError: entry_1 (entry): limit of the setup at bar 0 is inf; expected a finite value or NaN (market order)
    """
    if not isinstance(plan, EntryPlan):
        raise plugin_error(w, f"plan returned a {type(plan).__name__}; expected EntryPlan")
    _levels(w, "limit", plan.limit, opps, "market order")
    _levels(w, "cancel", plan.cancel, opps, "never cancelled")
    _count(w, "expiry_bars", plan.expiry_bars)


def check_exit(w: Worker, plan: Any, opps: Opportunities, n: int) -> None:
    """An exit plan: known stop and target modes; per-setup stops and targets (NaN =
    none, never infinite); per-bar trailing and flat-at arrays of ``n`` values; whole
    numbers of bars.

    >>> from metaflow_nb.workers.base import get_plugin
    >>> x = get_plugin("percent_stops")("stops_1", get_plugin("percent_stops").Params())
    >>> opps = Opportunities(np.array([4]), np.ones(1, np.int64), np.zeros(1, np.int64), *(np.zeros(1),) * 3)
    >>> check_exit(x, ExitPlan(codes.PRICE_FRACTION, np.array([np.inf])), opps, 10)
    Traceback (most recent call last):
    metaflow_nb.errors.PluginError: stops_1 (exit): stop of the setup at bar 4 is inf; expected a finite value or NaN (no stop)
    """
    if not isinstance(plan, ExitPlan):
        raise plugin_error(w, f"plan returned a {type(plan).__name__}; expected ExitPlan")
    for what, mode, levels, modes in (("stop", plan.stop_mode, plan.stop, _STOP_MODES),
                                      ("target", plan.target_mode, plan.target, _TARGET_MODES),
                                      ("partial", plan.partial_mode, plan.partial, _TARGET_MODES)):
        _mode(w, f"{what}_mode", mode, modes)
        # a mode without levels or levels without a mode: read as no stop (target) at all
        if levels is not None and mode == codes.PRICE_NONE:
            raise plugin_error(w, f"{what} is set but {what}_mode is 0 (none); expected a {what}_mode")
        if levels is None and mode != codes.PRICE_NONE:
            raise plugin_error(w, f"{what}_mode is {mode} ({modes[mode]}) but {what} is None; expected one value per "
                                  f"setup (NaN: no {what})")
        if levels is not None:
            _levels(w, what, levels, opps, f"no {what}")
            k = _first_negative(levels) if mode in _DISTANCES else None
            if k is not None:
                # a sign slip puts it on the other side of the fill: every trade ends where it began
                raise plugin_error(w, f"{what} of the setup at bar {int(opps.bar[k])} is {levels[k]}; expected a "
                                      f"{'multiple of R' if mode == codes.PRICE_R_MULTIPLE else modes[mode]} >= 0 or "
                                      f"NaN (no {what})")
    trail = getattr(plan, "trail_mode", codes.TRAIL_NONE)
    _mode(w, "trail_mode", trail, _TRAIL_MODES)
    if trail in (codes.TRAIL_DISTANCE, codes.TRAIL_LEVEL) and plan.trail_long is None and plan.trail_short is None:
        raise plugin_error(w, f"trail_mode is {trail} ({_TRAIL_MODES[trail]}) but trail_long and trail_short are None; "
                              "expected per-bar values for longs, shorts or both")
    for what in ("reverse", "exclusive"):
        if not isinstance(getattr(plan, what, False), (bool, np.bool_)):
            raise plugin_error(w, f"{what} is {_shown(getattr(plan, what))}; expected True or False")
    _count(w, "time_stop_bars", plan.time_stop_bars)
    for what in _PER_BAR_EXITS:
        values = getattr(plan, what, None)
        if values is not None:
            v = _array(w, what, values, n, "bar")
            if what in _FLAGS:
                # a flag of NaN is neither set nor unset (a float array's warm-up): refused,
                # not read as an exit on every bar of it
                k = _first_nan(v)
                if k is not None:
                    raise plugin_error(w, f"{what} at bar {k} is nan; expected 0 (no exit) or nonzero (exit)")
                continue
            k = _first_inf(v)
            if k is not None:
                raise plugin_error(w, f"{what} at bar {k} is {v[k]}; expected a finite value or NaN")
    for what in _SCALAR_EXITS:
        value = getattr(plan, what, 0.0)
        if not (type(value) in (int, float) and value == 0):  # 0 (the default: the rule is off) needs no look
            _finite(w, what, value)
    # fractions of the position or of the price: 1 or more would close it all as a partial, or
    # trail a stop at or below zero (the built-in partial_take_profit refuses them as well)
    fraction = getattr(plan, "partial_fraction", 0.0)
    if fraction >= 1.0:
        raise plugin_error(w, f"partial_fraction is {_shown(fraction)}; expected a fraction of the position in "
                              "(0, 1) (0: no partial take-profit)")
    trail = getattr(plan, "trail_param", 0.0)
    if getattr(plan, "trail_mode", codes.TRAIL_NONE) == codes.TRAIL_PERCENT and trail >= 1.0:
        raise plugin_error(w, f"trail_param is {_shown(trail)}; a percent trailing stop's distance is a "
                              "fraction of the price in (0, 1)")


def check_size(w: Worker, plan: Any) -> None:
    """A size plan: a known sizer, a finite positive parameter (a risk of at most 100 %)
    and a boolean ``whole_units``.

    >>> from metaflow_nb.workers.base import get_plugin
    >>> s = get_plugin("all_in_sizer")("size_1", get_plugin("all_in_sizer").Params())
    >>> check_size(s, SizePlan(codes.SIZER_FIXED_FRACTION, float("nan")))
    Traceback (most recent call last):
    metaflow_nb.errors.PluginError: size_1 (size): param is nan; expected a finite number > 0
    """
    if not isinstance(plan, SizePlan):
        raise plugin_error(w, f"plan returned a {type(plan).__name__}; expected SizePlan")
    if plan.kind not in _SIZERS:
        raise plugin_error(w, f"kind is {plan.kind!r}; expected one of " + ", ".join(f"{k} ({v})" for k, v in _SIZERS.items()))
    p = plan.param
    if type(p) is bool or not isinstance(p, _NUMBERS) or not math.isfinite(p) or p <= 0:
        raise plugin_error(w, f"param is {p!r}; expected a finite number > 0")
    if plan.kind == codes.SIZER_FIXED_RISK and p > 100:
        raise plugin_error(w, f"param is {p!r}; a fixed risk is a percentage of equity, at most 100")
    if not isinstance(plan.whole_units, (bool, np.bool_)):
        raise plugin_error(w, f"whole_units is {plan.whole_units!r}; expected True or False")


def checked_reason(w: Worker) -> str:
    """The reason code a threat instance rejects setups with (an exit planner names its
    exit conditions with: "" for one naming none), checked against the codes its plugin
    declares: a sweep may set the param that picks it, which the translator's check of
    the config has not seen.

    >>> from metaflow_nb.workers.base import get_plugin
    >>> cls = get_plugin("market_risk_monitor")
    >>> checked_reason(cls("risk_1", cls.Params()))
    'MARKET_RISK'
    """
    wrong = reason_problem(w)   # the translator's check, on this instance's params
    if wrong:
        raise ConfigError(f"{w.instance_id}: {wrong[1]}")
    return w.instance_reason()  # type: ignore[attr-defined]
