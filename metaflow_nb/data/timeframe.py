"""Higher timeframes: resampling base bars into coarser bars and aligning the coarser bars'
values back onto the base bars causally, in a trading-day convention.

Bars are labelled by their open time (the data's convention, see :mod:`.validate`); the
index holds UTC instants (naive timestamps are read as UTC, zone-aware ones converted).

**Periods.** Every base bar belongs to one higher-timeframe period, decided from its own
timestamp alone:

* intraday timeframes (``"30m"``, ``"1h"``, ``"4h"``, ...; the length must divide 24 h)
  cut each trading day into bins counted from the trading day's start;
* ``"1d"``: the trading day; ``"1w"``: the trading week (the ISO week, Monday to Sunday,
  of the trading day's date); ``"1M"``: the calendar month of the trading day's date.

**Trading-day conventions** (:func:`trading_day_rule`): ``"utc"`` (the default), the
calendar day in UTC; ``"fx"``, the FX day that ends at 17:00 America/New_York (DST-aware:
21:00 UTC in summer, 22:00 in winter); a Sunday-evening open belongs to Monday's trading
day. Any market's own day: an IANA zone, ``"Australia/Sydney"`` (the local calendar day:
a session from 10:00 to 16:00 Sydney, 23:00 to 05:00 UTC, stays one day), or a zone and
the local time the day ends, ``"America/Chicago 17:00"`` (CME's Globex day; the evening
open belongs to the next date). A wall-clock hour repeated when DST ends stays in the
later period (period numbers never decrease).

**Causal alignment.** A higher bar's values reach the base bars only from the first base
bar whose open time is at or after the higher bar's close time, that is, from the first
base bar of a later period: on base bar ``i`` a higher-timeframe value is the value of
the latest *closed* higher bar (the period before bar ``i``'s own). The period bar ``i``
is in is still forming and is never used, nor is a partial last higher bar. So output
``i`` reads base bars ``0..i-1`` only, and prefix replay holds for any worker that is
causal on the higher bars. When the data starts inside a period (a month that began
before the first bar), that first, partial higher bar is not shown either: a "previous
month high" of half a month would be wrong. It still feeds the worker on the higher
bars, as any first bars warm an indicator up.

A naive alignment, ``df.resample("4h").last().reindex(df.index, method="ffill")``,
labels each 4h bar by its open time and so hands the 4h close to the base bar that opens
the 4h period: a look-ahead of up to four hours (``tests/test_timeframe.py`` shows it).

>>> import pandas as pd
>>> idx = pd.date_range("2024-01-02 00:00", periods=10, freq="1h")
>>> df = pd.DataFrame({"open": range(10), "high": range(10), "low": range(10),
...                    "close": [float(c) for c in range(10)], "volume": 1.0}, index=idx)
>>> htf = resample(df, "4h")
>>> htf.frame["close"].tolist(), htf.group.tolist()
([3.0, 7.0, 9.0], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
>>> align(htf.frame["close"].to_numpy(), htf.group).tolist()   # 03:00's close from 04:00 on
[nan, nan, nan, nan, 3.0, 3.0, 3.0, 3.0, 7.0, 7.0]
"""
from __future__ import annotations

import re
from typing import Any, NamedTuple, Optional

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .clock import NS_PER_DAY, is_market_zone
from .validate import dates_only

#: named trading-day conventions -> (IANA zone, minute of that zone's wall clock the day ends at)
TRADING_DAYS: dict[str, tuple[str, int]] = {
    "utc": ("UTC", 0),
    "fx": ("America/New_York", 17 * 60),
}
_ZONE_AND_TIME = re.compile(r"^\s*(\S+)(?:\s+([01]\d|2[0-3]):([0-5]\d))?\s*$")

_MINUTE_NS = 60 * 10**9
_PATTERN = re.compile(r"^\s*(\d+)?\s*(m|min|h|d|w|M|mo)\s*$")


class Timeframe(NamedTuple):
    """A parsed timeframe: ``unit`` is ``"min"``, ``"D"``, ``"W"`` or ``"M"``; ``n`` counts
    minutes for ``"min"`` and is 1 otherwise."""

    unit: str
    n: int

    @property
    def label(self) -> str:
        """The timeframe as written in configs and reports (``15m``, ``4h``, ``1d``).

        >>> parse_timeframe("60m").label, Timeframe("min", 90).label, parse_timeframe("1w").label
        ('1h', '90m', '1w')
        """
        if self.unit != "min":
            return {"D": "1d", "W": "1w", "M": "1M"}[self.unit]
        return f"{self.n // 60}h" if self.n % 60 == 0 else f"{self.n}m"


def parse_timeframe(text: str) -> Timeframe:
    """``"15m"``, ``"4h"``, ``"1d"``, ``"1w"``, ``"1M"`` (month) as a :class:`Timeframe`;
    ValueError says what is accepted.

    >>> parse_timeframe("4h"), parse_timeframe("1d").label, parse_timeframe("90min").label
    (Timeframe(unit='min', n=240), '1d', '90m')
    >>> parse_timeframe("7m")
    Traceback (most recent call last):
    ...
    ValueError: timeframe '7m': an intraday timeframe must divide 24 hours (e.g. 15m, 30m, 1h, 4h)
    """
    m = _PATTERN.match(str(text))
    if not m:
        raise ValueError(f"timeframe {text!r}: expected a number and a unit: 15m, 1h, 4h, 1d, 1w or 1M (month)")
    n = int(m.group(1) or 1)
    unit = m.group(2)
    if n < 1:
        raise ValueError(f"timeframe {text!r}: the count must be at least 1")
    if unit in ("m", "min", "h"):
        minutes = n * (60 if unit == "h" else 1)
        if 1440 % minutes:
            raise ValueError(f"timeframe {text!r}: an intraday timeframe must divide 24 hours "
                             f"(e.g. 15m, 30m, 1h, 4h)")
        return Timeframe("min", minutes) if minutes < 1440 else Timeframe("D", 1)
    if n != 1:
        raise ValueError(f"timeframe {text!r}: days, weeks and months come one at a time (1d, 1w, 1M)")
    return Timeframe({"d": "D", "w": "W", "M": "M", "mo": "M"}[unit], 1)


def trading_day_rule(name: str) -> tuple[str, int]:
    """``(zone, end)`` of a trading-day convention: the IANA zone of its wall clock and the
    minute of that clock's day the trading day ends (and the next one starts) at. ``name``
    is ``utc``, ``fx``, a zone (the local calendar day) or a zone and ``HH:MM``; anything
    else is a ValueError naming the forms.

    >>> trading_day_rule("fx"), trading_day_rule("Australia/Sydney"), trading_day_rule("America/Chicago 17:00")
    (('America/New_York', 1020), ('Australia/Sydney', 0), ('America/Chicago', 1020))
    """
    known = TRADING_DAYS.get(name) if isinstance(name, str) else None
    if known is not None:
        return known
    m = _ZONE_AND_TIME.match(name) if isinstance(name, str) else None
    zone = m.group(1) if m else None
    if zone is not None and not is_market_zone(zone):
        zone = None
    if zone is None:
        raise ValueError(f"unknown trading day {name!r}; expected utc, fx (the FX day ending 17:00 New York), an "
                         "IANA zone (Australia/Sydney: its local calendar day) or a zone and the local time the "
                         "day ends (America/Chicago 17:00)")
    return zone, (int(m.group(2)) * 60 + int(m.group(3))) if m.group(2) else 0


def check_trading_day(name: str) -> str:
    """``name`` when it is a trading-day convention (:func:`trading_day_rule`), else
    ValueError; its canonical spelling: a named convention's name for its rule (``fx`` for
    ``America/New_York 17:00``, ``utc`` for ``UTC``), else one space before the time. One
    rule, one spelling: one run id, and a sweep listing it twice is refused.

    >>> check_trading_day("fx"), check_trading_day(" America/Chicago  17:00"), check_trading_day("UTC")
    ('fx', 'America/Chicago 17:00', 'utc')
    """
    if name in TRADING_DAYS:
        return name
    zone, end = trading_day_rule(name)
    for named, rule in TRADING_DAYS.items():
        if rule == (zone, end):
            return named
    return f"{zone} {end // 60:02d}:{end % 60:02d}" if end else zone


def _utc_ns(index: Any) -> np.ndarray:
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError("a higher timeframe needs a DatetimeIndex of bar open times")
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return np.asarray(index.as_unit("ns").asi8, dtype=np.int64)


def trading_clock(index: Any, trading_day: str = "utc", dates: Optional[bool] = None) -> np.ndarray:
    """Each bar's time on the trading clock, int64 nanoseconds: the wall-clock time in the
    convention's zone, shifted so that each trading day starts at midnight (``fx``: New
    York time + 7 h). ``trading_clock(...) // 86_400e9`` numbers the trading days. Bars
    that are all midnights (a file of dates) are their dates' trading days, unshifted;
    ``dates`` says whether they are, when ``index`` is part of the bars (None: ``index``
    is all of them).

    >>> t = pd.DatetimeIndex(["2024-07-01 20:59", "2024-07-01 21:00", "2024-12-02 21:00", "2024-12-02 22:00"])
    >>> pd.DatetimeIndex(trading_clock(t, "fx").view("datetime64[ns]")).strftime("%a %H:%M").tolist()
    ['Mon 23:59', 'Tue 00:00', 'Mon 23:00', 'Tue 00:00']
    """
    zone, end = trading_day_rule(trading_day)
    ns = _utc_ns(index)
    if (zone != "UTC" or end) and (dates_only(ns) if dates is None else dates):
        # a file of dates: each bar is its date's trading day already (a clock leaves dates
        # on their dates; New York's day would put 00:00 UTC on the evening before)
        return ns
    if zone != "UTC":
        local = pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC").tz_convert(zone).tz_localize(None)
        ns = np.asarray(local.as_unit("ns").asi8, dtype=np.int64)
    if end:
        ns = ns + (1440 - end) * _MINUTE_NS
    return ns


def period_ids(index: Any, timeframe: str | Timeframe, trading_day: str = "utc",
               dates: Optional[bool] = None) -> np.ndarray:
    """A non-decreasing int64 period number per bar (equal numbers: one higher bar);
    ``dates`` as in :func:`trading_clock`.

    >>> idx = pd.DatetimeIndex(["2024-01-05 20:00", "2024-01-05 22:00", "2024-01-07 22:00", "2024-01-08 10:00"])
    >>> # trading days: Fri, Sat (Friday 17:00 New York and later), Mon (from Sunday 17:00), Mon
    >>> period_ids(idx, "1d", "fx").tolist() == [19727, 19728, 19730, 19730]
    True
    """
    tf = timeframe if isinstance(timeframe, Timeframe) else parse_timeframe(timeframe)
    clock = trading_clock(index, trading_day, dates)
    day = np.floor_divide(clock, NS_PER_DAY)
    if tf.unit == "min":
        ids = day * (1440 // tf.n) + np.floor_divide(clock - day * NS_PER_DAY, tf.n * _MINUTE_NS)
    elif tf.unit == "D":
        ids = day
    elif tf.unit == "W":
        ids = np.floor_divide(day + 3, 7)   # 1970-01-01 was a Thursday: weeks start on Monday
    else:
        ids = day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    # a wall-clock hour repeated when DST ends could step back a bin: it stays in the later one
    return np.maximum.accumulate(ids) if ids.size else ids


class Resampled(NamedTuple):
    """Higher bars and how the base bars map onto them.

    ``frame``: OHLCV of the higher bars (open of the first base bar, highest high, lowest
    low, close of the last, summed volume), indexed by the open time of each period's
    first base bar; the last one may be partial. ``group[i]``: the higher bar base bar
    ``i`` belongs to. ``starts[j]``: the first base bar of higher bar ``j``.
    ``first_complete``: the first base bar opens at its period's start, or as far into it
    as the second period's first bar does (a session opening at 09:30); False: the data
    starts inside the period, so the first higher bar saw only part of it.
    """

    frame: pd.DataFrame
    group: np.ndarray
    starts: np.ndarray
    first_complete: bool = True


def _into_period(clock: int, tf: Timeframe) -> int:
    """How far (ns) a trading-clock time is past the start of its ``tf`` period."""
    day = clock // NS_PER_DAY
    within = clock - day * NS_PER_DAY
    if tf.unit == "min":
        return within % (tf.n * _MINUTE_NS)
    if tf.unit == "D":
        return within
    if tf.unit == "W":
        return ((day + 3) % 7) * NS_PER_DAY + within          # from Monday 00:00
    return (int(np.datetime64(int(day), "D").astype(object).day) - 1) * NS_PER_DAY + within


def _first_complete(clock: np.ndarray, tf: Timeframe) -> bool:
    """Whether the first period holds all of its bars: its first bar opens at the period's
    start, or as far into it as the second period's first bar does (a session opening at
    09:30 every day: the data starts with a whole session). A week or a month must begin
    on its first day, only the time of day may match: a later first day matched by the
    next period's (a Monday holiday, a month whose 1st is a Sunday) may be a cut one
    (hunt71 F2). Decided by bars of the first two periods only, so the bars it shows
    values to (from the second period on) all see what decided it. ``clock``: the trading
    clock of the first bar of the first period and, when there is one, of the second."""
    first = _into_period(int(clock[0]), tf)
    if first == 0:
        return True
    if tf.unit in ("W", "M") and first >= NS_PER_DAY:
        return False
    return clock.shape[0] > 1 and first == _into_period(int(clock[1]), tf)


def median_spacing(stamps_ns: np.ndarray) -> Optional[int]:
    """The usual distance between bars at ``stamps_ns`` (nanoseconds): the median step, so
    weekends and holidays do not count; None with fewer than two bars.

    >>> median_spacing(np.array([0, 60, 120, 600]) * 1_000_000_000) // 1_000_000_000, median_spacing(np.zeros(1))
    (60, None)
    """
    return int(np.median(np.diff(stamps_ns))) if stamps_ns.size > 1 else None


def finer_problem(timeframe: "Timeframe | str", spacing_ns: Optional[int], name: str = "") -> Optional[str]:
    """Why bars ``spacing_ns`` apart (:func:`median_spacing`; None: too few to tell) cannot
    be resampled to the coarser ``timeframe``: they are further apart than it; None when
    they can (``name``: the data's, for the message).

    >>> finer_problem("1h", 86_400_000_000_000, "sp500_daily"), finer_problem("1w", 86_400_000_000_000)
    ("timeframe 1h is finer than the data's bars (sp500_daily, 1440 minutes apart): a higher timeframe must be coarser than the data", None)
    """
    tf = timeframe if isinstance(timeframe, Timeframe) else parse_timeframe(timeframe)
    if tf.unit != "min" or spacing_ns is None or spacing_ns <= tf.n * _MINUTE_NS:
        return None
    what = f"{name}, " if name else ""
    return (f"timeframe {tf.label} is finer than the data's bars ({what}{spacing_ns // _MINUTE_NS} minutes apart): a "
            f"higher timeframe must be coarser than the data")


def resample(bars: pd.DataFrame, timeframe: str | Timeframe, trading_day: str = "utc") -> Resampled:
    """Resample base bars (a frame with ``open, high, low, close`` and optionally
    ``volume``) into ``timeframe`` bars in the ``trading_day`` convention.

    :class:`~metaflow_nb.errors.ConfigError` (a ValueError) when the base bars are not
    finer than an intraday ``timeframe`` (their median spacing is longer).

    >>> idx = pd.date_range("2024-01-02", periods=8, freq="15min")
    >>> bars = pd.DataFrame({"open": np.arange(8.0), "high": np.arange(8.0) + 1, "low": np.arange(8.0) - 1,
    ...                      "close": np.arange(8.0) + 0.5, "volume": 1.0}, index=idx)
    >>> r = resample(bars, "1h")
    >>> r.frame[["open", "high", "low", "close", "volume"]].values.tolist(), r.group.tolist()
    ([[0.0, 4.0, -1.0, 3.5, 4.0], [4.0, 8.0, 3.0, 7.5, 4.0]], [0, 0, 0, 0, 1, 1, 1, 1])
    """
    tf = timeframe if isinstance(timeframe, Timeframe) else parse_timeframe(timeframe)
    ns = _utc_ns(bars.index)
    problem = finer_problem(tf, median_spacing(ns))
    if problem:
        raise ConfigError(problem)
    # a file of dates or of times: the file's (its attrs), not these bars' (a prefix of a
    # file's midnights would read as dates, hunt23 F2)
    dates = bars.attrs.get("dates_only")
    if dates is None:
        dates = dates_only(_utc_ns(bars.index))
    ids = period_ids(bars.index, tf, trading_day, dates)
    n = ids.shape[0]
    new = np.empty(n, dtype=bool)
    if n:
        new[0] = True
        new[1:] = ids[1:] != ids[:-1]
    starts = np.flatnonzero(new).astype(np.int64)
    group = np.cumsum(new, dtype=np.int64) - 1
    ends = np.r_[starts[1:], n] - 1 if n else starts

    def col(name: str) -> np.ndarray:
        return np.ascontiguousarray(bars[name].to_numpy(np.float64))

    data = {"open": col("open")[starts], "high": np.maximum.reduceat(col("high"), starts) if n else col("high"),
            "low": np.minimum.reduceat(col("low"), starts) if n else col("low"), "close": col("close")[ends]}
    vol = col("volume") if "volume" in bars.columns else np.zeros(n)
    data["volume"] = np.add.reduceat(vol, starts) if n else vol
    frame = pd.DataFrame(data, index=bars.index[starts])
    complete = bool(n == 0 or _first_complete(trading_clock(bars.index[starts[:2]], trading_day, dates), tf))
    return Resampled(frame, group, starts, complete)


def _fill(dtype: np.dtype, name: str) -> Any:
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "b":
        return False
    return -1 if is_bar_index(name, dtype) else 0


def is_bar_index(name: str, dtype: np.dtype) -> bool:
    """Whether an output holds bar indices (an integer array named ``*_bar``,
    ``*_bar_*`` or ``bar_*``): aligned, they become base-bar indices.

    >>> is_bar_index("last_break_bar_bull", np.dtype("int64")), is_bar_index("trend", np.dtype("int8"))
    (True, False)
    """
    return dtype.kind in "iu" and re.search(r"(^|_)bar(_|$)", name) is not None


def align(values: np.ndarray, group: np.ndarray, fill: Any = None, hide_first: bool = False) -> np.ndarray:
    """Per base bar, the value of the latest closed higher bar: ``values[group[i] - 1]``,
    and ``fill`` (NaN, False, 0 by dtype when None) on the bars of the first period, and
    with ``hide_first`` (a partial first higher bar) on those of the second too.

    >>> align(np.array([3.5, 7.5]), np.array([0, 0, 1, 1])).tolist()   # no hour closed yet, then the first
    [nan, nan, 3.5, 3.5]
    """
    values = np.asarray(values)
    prev = group - 1
    out = values[np.maximum(prev, 0)] if values.shape[0] else np.empty(group.shape[0], values.dtype)
    if fill is None:
        fill = _fill(values.dtype, "")
    if group.shape[0]:
        out[prev < (1 if hide_first else 0)] = fill
    return np.ascontiguousarray(out)


def align_outputs(outputs: dict[str, np.ndarray], resampled: Resampled) -> dict[str, np.ndarray]:
    """:func:`align` every output of a worker run on the higher bars (a partial first
    higher bar's own values are never shown, as a partial last one). Bar-index outputs
    (:func:`is_bar_index`) are translated: higher bar ``j`` becomes the first base bar on
    which it is known, ``starts[j + 1]`` (-1 stays -1).

    >>> idx = pd.date_range("2024-01-02", periods=6, freq="2h")
    >>> df = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}, index=idx)
    >>> r = resample(df, "4h")
    >>> align_outputs({"x_bar": np.array([-1, 0, 1])}, r)["x_bar"].tolist()
    [-1, -1, -1, -1, 2, 2]
    """
    group, starts = resampled.group, resampled.starts
    known = np.r_[starts[1:], -1].astype(np.int64)   # the base bar each higher bar is known from
    out: dict[str, np.ndarray] = {}
    for name, v in outputs.items():
        v = np.asarray(v)
        if is_bar_index(name, v.dtype):
            v = np.where(v >= 0, known[np.clip(v, 0, None)], -1).astype(v.dtype)
        out[name] = align(v, group, _fill(v.dtype, name), hide_first=not resampled.first_complete)
    return out
