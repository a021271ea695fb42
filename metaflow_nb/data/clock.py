"""Data clocks: the zone a file's naive timestamps are written in, and how they become UTC.

Inside metaflow-nb every bar's timestamp is a tz-naive UTC instant (the canonical frame of
:func:`~metaflow_nb.data.validate.validate_ohlcv`). A file whose naive timestamps are not
UTC declares its clock: ``load_data(..., timezone=...)``, ``data.timezone`` in an operation
YAML or ``--timezone`` on the command line. A clock is

* an IANA time zone (``"Europe/Berlin"``, ``"America/New_York"``, ``"UTC"``): the
  timestamps are wall-clock times there, daylight saving included; or
* a named convention of :data:`CONVENTIONS`, for clocks that are no place's wall clock:
  ``"broker_ny+7"`` is New York time plus 7 hours (UTC+2 in the US winter, UTC+3 in the US
  summer, switching on the US dates): the FX "New York close" server clock, on which
  each trading day starts at 17:00 New York and the week runs Monday 00:00 to Friday 23:59.

Daylight-saving switches (the rule, applied row by row in file order):

* a wall-clock time that occurs twice (the hour repeated when the clock goes back) is read
  as its first occurrence (daylight saving time) until a row goes back to a wall-clock time
  an earlier row already reached (the clock went back): from that row to the end of the
  repeated hour, the second occurrence (standard time), also a time the first pass never
  reached (its last bars missing). A repeated hour that appears only once is read as the
  daylight-saving one.
* a wall-clock time that does not exist (skipped when the clock goes forward) cannot be
  resolved: :class:`~metaflow_nb.errors.DataError` names the row, the time and the zone.
* a time that appears a third time, or a clock that goes back anywhere else, shows up as a
  duplicate or backwards UTC timestamp and is refused by the validator like any other.

>>> import numpy as np, pandas as pd
>>> wall = pd.DatetimeIndex(["2022-10-30 01:30", "2022-10-30 02:30", "2022-10-30 02:30",
...                          "2022-10-30 03:30"]).as_unit("ns").asi8
>>> [str(t) for t in pd.DatetimeIndex(local_to_utc(wall, "Europe/Berlin"))]
['2022-10-29 23:30:00', '2022-10-30 00:30:00', '2022-10-30 01:30:00', '2022-10-30 02:30:00']
>>> str(pd.Timestamp(local_to_utc(pd.DatetimeIndex(["2023-01-09 00:00"]).as_unit("ns").asi8, "broker_ny+7")[0]))
'2023-01-08 22:00:00'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from metaflow_nb.errors import DataError

__all__ = ["Clock", "CONVENTIONS", "get_clock", "check_clock", "local_to_utc", "known_clocks", "NS_PER_HOUR",
           "NS_PER_DAY", "UTC_NAMES"]

#: Nanoseconds in an hour and in a (UTC) day: timestamps travel as int64 ns.
NS_PER_HOUR = 3_600 * 10**9
NS_PER_DAY = 24 * NS_PER_HOUR

#: the tz database's names of UTC (links to one zone, at offset 0 on every date)
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu",
                       "GMT", "Etc/GMT", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0", "GMT0", "GMT+0", "GMT-0",
                       "Etc/Greenwich", "Greenwich"})


@dataclass(frozen=True)
class Clock:
    """How naive timestamps map to UTC: wall time in ``zone`` after subtracting ``shift_hours``.

    >>> get_clock("broker_ny+7")
    Clock(name='broker_ny+7', zone='America/New_York', shift_hours=7, description='New York time + 7 h (UTC+2 / UTC+3 on the US daylight-saving dates)')
    """

    name: str
    zone: str
    shift_hours: int = 0
    description: str = ""

    @property
    def is_utc(self) -> bool:
        """True when the timestamps are UTC already (nothing to convert).

        >>> get_clock("UTC").is_utc, get_clock("broker_ny+7").is_utc
        (True, False)
        """
        return self.shift_hours == 0 and self.zone in UTC_NAMES


#: Named clocks that are not an IANA zone's wall clock.
CONVENTIONS: dict[str, Clock] = {
    "broker_ny+7": Clock("broker_ny+7", "America/New_York", 7,
                         "New York time + 7 h (UTC+2 / UTC+3 on the US daylight-saving dates)"),
}


def known_clocks() -> list[str]:
    """The named conventions (any IANA zone is accepted too).

    >>> known_clocks()
    ['broker_ny+7']
    """
    return sorted(CONVENTIONS)


def get_clock(name: str) -> Clock:
    """The :class:`Clock` named ``name`` (a convention or an IANA zone); ValueError if unknown.

    >>> get_clock("Europe/London").zone
    'Europe/London'
    >>> get_clock("CET+7")
    Traceback (most recent call last):
    ...
    ValueError: unknown timezone 'CET+7': expected an IANA time zone (e.g. 'UTC', 'Europe/London', 'America/New_York') or one of broker_ny+7
    """
    if not isinstance(name, str):
        raise ValueError(f"timezone must be a string, got {type(name).__name__}")
    if name in CONVENTIONS:
        return CONVENTIONS[name]
    if not is_market_zone(name):
        raise ValueError(
            f"unknown timezone {name!r}: expected an IANA time zone (e.g. 'UTC', 'Europe/London', "
            f"'America/New_York') or one of {', '.join(known_clocks())}") from None
    return Clock(name, name)


#: tz database files that are no market's zone: the machine's own zone (the same config
#: would read differently on another machine) and the database's internals
_NOT_MARKET_ZONES = frozenset({"localtime", "posixrules", "Factory"})


def is_market_zone(name: str) -> bool:
    """Whether ``name`` is an IANA zone a market keeps, the same on every machine: not
    ``localtime`` (the machine's own zone), ``posixrules``, ``Factory`` or the ``posix/``
    and ``right/`` copies (``right/`` counts leap seconds).

    >>> is_market_zone("Australia/Sydney"), is_market_zone("localtime"), is_market_zone("right/UTC")
    (True, False, False)
    """
    if not isinstance(name, str) or name in _NOT_MARKET_ZONES or name.startswith(("posix/", "right/")):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


def check_clock(name: Optional[str]) -> Optional[str]:
    """``name`` when it names a clock, ``"UTC"`` for each of UTC's other names (one
    spelling, so the run id does not follow it); ``None`` passes; else ValueError.

    A pydantic validator for ``data.timezone``.

    >>> check_clock("broker_ny+7"), check_clock("Etc/UTC"), check_clock(None)
    ('broker_ny+7', 'UTC', None)
    """
    if name is not None:
        get_clock(name)
        if name in UTC_NAMES:
            return "UTC"
    return name


def _row(pos: int) -> str:
    return f"row {pos + 1}"


def local_to_utc(times_ns: np.ndarray, clock: str | Clock,
                 row: Callable[[int], str] = _row, origin: str = "") -> np.ndarray:
    """UTC instants (int64 ns, naive) of naive timestamps written on ``clock``.

    ``times_ns`` are int64 nanoseconds of the naive timestamps in file order; the
    daylight-saving rule of this module decides repeated wall-clock times. A time that
    does not exist on the clock raises :class:`~metaflow_nb.errors.DataError` naming the
    row (``row(pos)`` renders it) and prefixed by ``origin``.

    >>> spring = pd.DatetimeIndex(["2022-03-27 01:45", "2022-03-27 02:15"]).as_unit("ns").asi8
    >>> local_to_utc(spring, "Europe/Berlin", origin="prices.csv")
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.DataError: prices.csv: row 2: 2022-03-27 02:15:00 does not exist in Europe/Berlin (the clock skips from 02:00 to 03:00 when daylight saving starts); check the file's timezone
    """
    ck = clock if isinstance(clock, Clock) else get_clock(clock)
    times = np.asarray(times_ns, dtype=np.int64)
    if ck.is_utc or times.size == 0:
        return times.copy()
    wall = times - ck.shift_hours * NS_PER_HOUR
    index = pd.DatetimeIndex(wall.view("datetime64[ns]"))
    ones = np.ones(len(index), dtype=bool)
    first = index.tz_localize(ck.zone, ambiguous=ones, nonexistent="NaT")
    second = index.tz_localize(ck.zone, ambiguous=~ones, nonexistent="NaT")
    missing = np.asarray(first.isna())
    if missing.any():
        pos = int(np.flatnonzero(missing)[0])
        stamp = pd.Timestamp(int(times[pos]))
        gap = _gap_text(index[pos], ck)
        prefix = f"{origin}: " if origin else ""
        raise DataError(f"{prefix}{row(pos)}: {stamp} does not exist in {_clock_text(ck)} {gap}; "
                        "check the file's timezone")
    early = first.tz_convert("UTC").tz_localize(None).as_unit("ns").asi8
    late = second.tz_convert("UTC").tz_localize(None).as_unit("ns").asi8
    stepped_back = np.zeros(len(wall), dtype=np.int64)
    stepped_back[1:] = np.maximum.accumulate(wall)[:-1] >= wall[1:]
    # once the clock went back, the rest of that repeated hour is its second pass, also a
    # time the first pass never reached (its last bars missing: read as the first pass, it
    # went backwards from the bar before; hunt102 F2). A run of rows in a repeated hour is
    # one change; a row outside any starts the next run afresh.
    run = np.cumsum(early == late) * 2   # rising: a later run's values exceed any earlier's
    went_back = np.maximum.accumulate(run + stepped_back) > run
    return np.where(went_back, late, early)


def utc_to_local(times_ns: np.ndarray, clock: str | Clock) -> np.ndarray:
    """The wall times on ``clock`` (int64 ns, naive) of UTC instants: the inverse of
    :func:`local_to_utc`.

    >>> t = pd.DatetimeIndex(["2023-01-09 22:00", "2023-07-09 21:00"]).as_unit("ns").asi8
    >>> pd.DatetimeIndex(utc_to_local(t, "Europe/Athens")).strftime("%m-%d %H:%M").tolist()
    ['01-10 00:00', '07-10 00:00']
    """
    ck = clock if isinstance(clock, Clock) else get_clock(clock)
    times = np.asarray(times_ns, dtype=np.int64)
    if ck.is_utc or times.size == 0:
        return times.copy()
    wall = pd.DatetimeIndex(times.view("datetime64[ns]")).tz_localize("UTC").tz_convert(ck.zone).tz_localize(None)
    return wall.as_unit("ns").asi8 + ck.shift_hours * NS_PER_HOUR


def _clock_text(ck: Clock) -> str:
    return ck.zone if not ck.shift_hours else f"{ck.name} ({ck.description})"


def _gap_text(wall: pd.Timestamp, ck: Clock) -> str:
    """'(the clock skips from 02:00 to 03:00 when daylight saving starts)' for the gap at ``wall``."""
    end = pd.Timestamp(wall).tz_localize(ck.zone, nonexistent="shift_forward")
    one = pd.Timedelta(1, "ns")
    start_wall = (end - one).tz_convert(ck.zone).tz_localize(None) + one
    shift = pd.Timedelta(hours=ck.shift_hours)
    lo = (start_wall + shift).strftime("%H:%M")
    hi = (end.tz_localize(None) + shift).strftime("%H:%M")
    return f"(the clock skips from {lo} to {hi} when daylight saving starts)"
