"""``session_filter`` context worker: trading-session and killzone membership, DST-aware.

Each session and killzone is defined in its own market's zone (London in Europe/London,
New York in America/New_York, Asia in Asia/Tokyo), so its UTC hours follow that place's
daylight-saving dates: in the weeks when the US has switched and Europe has not (2-3 weeks
in March, 1 in October/November) London and New York are an hour closer together in UTC.

Bar timestamps reach workers in UTC when the data declares its clock (``data.timezone``,
``load_data(timezone=...)``; see :mod:`metaflow_nb.data.clock`). The worker's own
``timezone`` param predates data clocks: it reads naive timestamps in a zone for data loaded
without a clock, and is kept so old configs run as before. With a declared clock it must
stay ``UTC`` (resolving a config refuses anything else: the times would be shifted twice).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import field_validator

from ...data.clock import is_market_zone
from ..base import ContextWorker, FeatureContext, Params, param, register

SessionName = Literal["asia", "london", "new_york"]

#: session -> (time zone, start minute, end minute) in local exchange time, start inclusive,
#: end exclusive
SESSIONS: dict[str, tuple[str, int, int]] = {
    "asia": ("Asia/Tokyo", 0 * 60, 9 * 60),
    "london": ("Europe/London", 8 * 60, 17 * 60),
    "new_york": ("America/New_York", 8 * 60, 17 * 60),
}
#: ICT killzones (the opening hours of London and New York), same layout as SESSIONS
KILLZONES: dict[str, tuple[str, int, int]] = {
    "london_killzone": ("Europe/London", 7 * 60, 10 * 60),
    "new_york_killzone": ("America/New_York", 7 * 60, 10 * 60),
}


class SessionParams(Params):
    sessions: tuple[SessionName, ...] = param(
        ("asia", "london", "new_york"), description="sessions that count for in_session")
    timezone: str = param("UTC", description="time zone the data's naive timestamps are in, for data "
                                             "without a declared clock; leave it UTC when the operation "
                                             "sets data.timezone")

    @field_validator("sessions")
    @classmethod
    def _canonical(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("select at least one session")
        return tuple(s for s in SESSIONS if s in v)   # de-duplicated, canonical order

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        return known_zone(v)


def known_zone(name: str) -> str:
    """``name`` when it is an IANA time zone a market keeps, else ValueError (a params
    validator; ``localtime`` is the machine's own zone: refused,
    :func:`metaflow_nb.data.clock.is_market_zone`).

    >>> known_zone("Europe/London")
    'Europe/London'
    """
    if not is_market_zone(name):
        raise ValueError(f"unknown time zone {name!r}")
    return name


def utc_index(index: pd.Index, timezone: str) -> pd.DatetimeIndex:
    """The bar start times as UTC instants, decided bar by bar (causally).

    Naive timestamps are read in ``timezone``. A wall-clock time that occurs twice (the
    hour repeated when DST ends) is read as the first, DST occurrence unless an earlier bar
    already reached that wall-clock time or later (the clock went back), then as the
    second; a time skipped by the DST start is shifted forward to the first valid instant.
    Tz-aware indexes are only converted.

    >>> utc = utc_index(pd.DatetimeIndex(["2024-01-15 09:00", "2024-07-15 09:00"]), "Europe/London")
    >>> utc.strftime("%H:%M").tolist()   # London's 09:00 in winter, then in summer (BST)
    ['09:00', '08:00']
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError("session_filter needs a DatetimeIndex of bar start times")
    if index.tz is not None:
        return index.tz_convert("UTC")
    if timezone == "UTC":
        return index.tz_localize("UTC")
    naive = index.asi8
    prev_max = np.maximum.accumulate(naive)
    repeated = np.zeros(len(naive), dtype=bool)
    repeated[1:] = prev_max[:-1] >= naive[1:]
    return index.tz_localize(timezone, ambiguous=~repeated, nonexistent="shift_forward").tz_convert("UTC")


@register
class SessionFilter(ContextWorker):
    """Whether each bar starts inside the Asia, London or New York trading session, and
    inside the London or New York killzone.

    Session windows, in local exchange time (start inclusive, end exclusive), converted
    with ``zoneinfo`` so they follow each place's daylight-saving changes:

    * ``asia``: 00:00-09:00 Asia/Tokyo (no DST: 15:00-24:00 UTC);
    * ``london``: 08:00-17:00 Europe/London (07:00-16:00 UTC in summer, 08:00-17:00 in winter);
    * ``new_york``: 08:00-17:00 America/New_York (12:00-21:00 UTC in summer, 13:00-22:00 in winter).

    Killzones: ``london_killzone`` 07:00-10:00 Europe/London, ``new_york_killzone``
    07:00-10:00 America/New_York.

    The index holds bar *start* times, UTC when the data has a declared clock. Without
    one, naive timestamps are read in ``timezone`` (a time repeated when DST ends is the
    first occurrence unless the clock already went back, a skipped time shifts forward).
    Outputs (bool arrays, known from the bar's own timestamp alone): ``asia``, ``london``,
    ``new_york`` (always all three), ``in_session``: the bar starts inside any of the
    selected ``sessions``, and ``london_killzone``, ``new_york_killzone``.

    >>> import metaflow_nb as mf
    >>> bars = mf.load_data("eurusd_15m", start="2022-11-01", end="2022-11-01", timezone="Europe/Athens")
    >>> out = SessionFilter("s", SessionParams()).compute(FeatureContext(bars))
    >>> ny = bars.index[out["new_york"]]  # 2022-11-01: New York still on EDT, London on GMT
    >>> str(ny[0].time()), str(ny[-1].time())
    ('12:00:00', '20:45:00')
    """

    name = "session_filter"
    Params = SessionParams
    #: the param that reads naive timestamps in a zone (must stay UTC under a data clock)
    data_zone_param = "timezone"

    def compute(self, ctx: FeatureContext) -> dict[str, np.ndarray]:
        utc = utc_index(ctx.index, self.params.timezone)
        out: dict[str, np.ndarray] = {}
        any_ = np.zeros(len(utc), dtype=bool)
        for name, (zone, start, end) in SESSIONS.items():
            local = utc.tz_convert(zone)
            minute = np.asarray(local.hour * 60 + local.minute, dtype=np.int64)
            inside = (minute >= start) & (minute < end)
            out[name] = inside
            if name in self.params.sessions:
                any_ |= inside
        out["in_session"] = any_
        for name, (zone, start, end) in KILLZONES.items():
            local = utc.tz_convert(zone)
            minute = np.asarray(local.hour * 60 + local.minute, dtype=np.int64)
            out[name] = (minute >= start) & (minute < end)
        return out
