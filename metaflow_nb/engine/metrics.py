"""Run metrics. Formulas are stated in the README ("Metrics"); percent where the name says pct.

Daily returns are the returns of the equity curve sampled at each trading day's last bar
(the first day against the starting cash). Sharpe, Sortino and volatility use them with
risk-free rate 0 and annualise by sqrt(P), P the trading days a year of the data's
calendar (:func:`calendar`): declared in the operation (``data.calendar``: ``fx_24x5``,
``crypto_24x7``, ``exchange``) or, unset, measured from the days the data has bars.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import pandas as pd

from ..data.clock import NS_PER_DAY, NS_PER_HOUR
from ..data.validate import dates_only
from .records import JOURNAL_DTYPE, TRADE_DTYPE, RunRecords

METRIC_NAMES = (
    "total_return_pct", "cagr_pct", "sharpe_ratio", "sortino_ratio", "calmar_ratio", "max_drawdown_pct",
    "volatility_ann_pct", "win_rate_pct", "profit_factor", "expectancy_pct", "total_trades",
    "avg_trade_duration_bars", "exposure_pct", "final_equity", "opportunities_detected",
    "opportunities_rejected", "rejection_rate_pct",
)

#: which way is better, for winners and stars: +1 higher, -1 lower, 0 neither
METRIC_DIRECTION = {
    "total_return_pct": 1, "cagr_pct": 1, "sharpe_ratio": 1, "sortino_ratio": 1, "calmar_ratio": 1,
    "max_drawdown_pct": -1, "volatility_ann_pct": -1, "win_rate_pct": 1, "profit_factor": 1,
    "expectancy_pct": 1, "total_trades": 0, "avg_trade_duration_bars": 0, "exposure_pct": 0,
    "final_equity": 1, "opportunities_detected": 0, "opportunities_rejected": 0, "rejection_rate_pct": 0,
}


#: declared calendars (the operation's ``data.calendar``) -> trading days a year (P)
CALENDARS: dict[str, float] = {"fx_24x5": 260.0, "crypto_24x7": 365.0, "exchange": 252.0}
#: each calendar's trading day, a convention of :data:`metaflow_nb.data.timeframe.TRADING_DAYS`
#: (``fx``: the FX day ending 17:00 New York; ``utc``: the calendar day in UTC); an unset
#: calendar (None) counts UTC days
DAY_CONVENTION: dict[Optional[str], str] = {"fx_24x5": "fx", "crypto_24x7": "utc", "exchange": "utc", None: "utc"}


def calendar_parts(name: Optional[str]) -> tuple[Optional[str], str]:
    """``(calendar, trading day)`` of a calendar name: a declared calendar or None
    (measured), and its day's convention (:func:`metaflow_nb.data.timeframe.trading_day_rule`).
    A name ``"<calendar>@<trading day>"`` (``"@<trading day>"``: measured) is a calendar on
    a market's own day, what an operation with ``data.trading_day`` runs on
    (:attr:`~metaflow_nb.config.buildspecs.BuildSpecs.data_calendar`).

    >>> calendar_parts("fx_24x5"), calendar_parts(None), calendar_parts("exchange@Australia/Sydney")
    (('fx_24x5', 'fx'), (None, 'utc'), ('exchange', 'Australia/Sydney'))
    """
    if name is None or "@" not in name:
        return name, DAY_CONVENTION.get(name, "utc")
    base, _, day = name.partition("@")
    return base or None, day


def check_calendar(name: Optional[str]) -> Optional[str]:
    """``name`` when it is None (measured) or a declared calendar (on a trading day of its
    own: :func:`calendar_parts`), else ValueError.

    >>> check_calendar("fx_24x5"), check_calendar(None), check_calendar("@America/Chicago 17:00")
    ('fx_24x5', None, '@America/Chicago 17:00')
    """
    if name is not None and not isinstance(name, str):
        raise ValueError(f"expected a calendar name (got {type(name).__name__} {name!r:.40}); known: "
                         f"{', '.join(CALENDARS)}")
    base, day = calendar_parts(name)
    if base is not None and base not in CALENDARS:
        raise ValueError(f"unknown calendar {base!r}; known: {', '.join(CALENDARS)} (or leave it unset: "
                         f"measured from the data)")
    if name is not None and "@" in name:
        from ..data.timeframe import check_trading_day

        check_trading_day(day)
    return name


def _ns(index: pd.DatetimeIndex) -> np.ndarray:
    """int64 nanoseconds of a tz-naive index (no conversion when it is in ns already)."""
    return index.asi8 if index.unit == "ns" else index.as_unit("ns").asi8


def _days(index: pd.DatetimeIndex) -> np.ndarray:
    """Whole days since the epoch of each (tz-naive, or local wall-clock) timestamp."""
    if index.tz is not None:
        index = index.tz_localize(None)
    return np.floor_divide(_ns(index), NS_PER_DAY)


def _naive(index: pd.DatetimeIndex, convention: str) -> pd.DatetimeIndex:
    """A tz-naive index: UTC instants for a zoned trading day (``fx``); for UTC days a
    zone-aware index keeps its wall clock, as it always has (data loaded by
    :func:`metaflow_nb.load_data` is naive UTC already)."""
    if index.tz is None:
        return index
    return index.tz_localize(None) if convention == "utc" else index.tz_convert("UTC").tz_localize(None)


def _day_starts(first_ns: int, last_ns: int, convention: str) -> np.ndarray:
    """The UTC instants (int64 ns) at which a trading day of ``convention`` starts, after
    ``first_ns`` and at or before ``last_ns``, sorted: one per day of the span, so their
    cost is the number of days, not bars. A day starts at the convention's day-end hour
    on its zone's wall clock (``fx``: 17:00 New York, 21:00 or 22:00 UTC by daylight
    saving); a wall-clock time repeated when the clocks go back counts from its first
    occurrence, one skipped when they go forward from the first instant after the gap."""
    from ..data.timeframe import trading_day_rule

    zone, end = trading_day_rule(convention)
    end_ns = end * (NS_PER_HOUR // 60)
    if zone == "UTC":
        days = np.arange(first_ns // NS_PER_DAY, last_ns // NS_PER_DAY + 2, dtype=np.int64)
        starts = days * NS_PER_DAY + end_ns
    else:
        # wall-clock day ends from the day before the first bar to the day after the last
        days = np.arange(first_ns // NS_PER_DAY - 1, last_ns // NS_PER_DAY + 2, dtype=np.int64)
        walls = pd.DatetimeIndex((days * NS_PER_DAY + end_ns).view("datetime64[ns]"))
        local = walls.tz_localize(zone, ambiguous=np.ones(days.shape[0], dtype=np.bool_),
                                  nonexistent="shift_forward")
        starts = np.asarray(local.tz_convert("UTC").tz_localize(None).as_unit("ns").asi8, dtype=np.int64)
    return starts[(starts > first_ns) & (starts <= last_ns)]


def _midnights(t: np.ndarray, convention: str) -> bool:
    """Whether bars ``t`` (int64 ns) are a file of dates, when that matters (any trading
    day but UTC's: a zone's would shift the dates)."""
    return convention != "utc" and dates_only(t)


def _day_numbers(t: np.ndarray, convention: str, dates: bool) -> np.ndarray:
    """The trading day of each UTC instant (int64 ns), numbered as days since the epoch:
    the date of the day on the convention's trading clock
    (:func:`metaflow_nb.data.timeframe.trading_clock`; ``fx``: Monday's for a Sunday
    evening open). ``dates``: the bars ``t`` is taken from are all midnights (a file of
    dates, each bar its date's trading day)."""
    if convention == "utc":
        return np.floor_divide(t, NS_PER_DAY)
    from ..data.timeframe import trading_clock

    return np.floor_divide(trading_clock(pd.DatetimeIndex(t.view("datetime64[ns]")), convention, dates), NS_PER_DAY)


def _distinct(days: np.ndarray) -> np.ndarray:
    """The distinct values of int64 ``days``, sorted: ``np.unique``'s result in O(n) for the
    sorted numbers bars give (numpy's hashing unique took ~20 ms on 100,000 daily bars)."""
    days = np.asarray(days, dtype=np.int64)
    if days.size > 1 and not bool(np.all(days[1:] >= days[:-1])):
        days = np.sort(days)
    return days[np.append(True, days[1:] != days[:-1])] if days.size > 1 else days


#: two days with bars more than this many days apart (two weeks or more without bars):
#: :func:`measured_periods_per_year` leaves the gap between them out of the span; longer
#: than any market holiday (a week of Chinese New Year, 9/11's)
GAP_DAYS = 14


def measured_periods_per_year(days: np.ndarray) -> float:
    """Trading days a year measured from the numbers of the days that have bars (days since
    the epoch, any order): per weekday, the share of that weekday's dates in the span
    that have bars; their sum is the trading days a week, times 365.25 / 7. Partial
    first and last weeks count only the weekdays they hold. Two days with bars more than
    :data:`GAP_DAYS` days apart leave the gap between them out of the span. Under a week of data: days
    with bars per calendar day of the span, times 365.25. 252 without days.

    >>> wk = np.arange(19_358, 19_358 + 364)              # 52 weeks from Monday 2023-01-02
    >>> round(measured_periods_per_year(wk[(wk + 3) % 7 < 5]), 2)     # Monday to Friday
    260.89
    >>> round(measured_periods_per_year(wk), 2), round(measured_periods_per_year(wk[:3]), 2)
    (365.25, 365.25)
    """
    days = _distinct(days)
    if days.size == 0:
        return 252.0
    # a step of more than GAP_DAYS (two weeks or more without bars: a halt, an outage) is no part of the
    # market's calendar: the span is the stretches with bars (hunt68 F2: a 3-year hole
    # made 7-day data 97.7 days a year, and its Sharpe ratio shrank)
    cut = np.flatnonzero(np.diff(days) > GAP_DAYS)
    starts, ends = np.r_[days[0], days[cut + 1]], np.r_[days[cut], days[-1]]
    span = int(np.sum(ends - starts)) + starts.size
    if span < 7:
        return days.size / span * 365.25
    occurrences = np.zeros(7, dtype=np.int64)
    for a, b in zip(starts.tolist(), ends.tolist()):
        full, rest = divmod(b - a + 1, 7)
        occurrences += full
        occurrences[(a + 3 + np.arange(rest)) % 7] += 1      # 1970-01-01 was a Thursday
    counts = np.bincount((days + 3) % 7, minlength=7)
    per_week = float(np.sum(counts / np.maximum(occurrences, 1)))   # a weekday no stretch holds has no bars
    return per_week * 365.25 / 7.0


def measured_periods_per_year_coarse(days: np.ndarray) -> float:
    """Periods a year of bars coarser than a day (weekly, monthly) on the sorted trading-day
    numbers ``days``: the steps from one bar to the next per calendar day of the span,
    times 365.25. Each bar closes a period that began after the bar before it, so n bars
    span n - 1 periods from the first bar's date to the last's (counting n over that span
    made a year of monthly bars 13 periods). A step more than three times the usual one
    (and over :data:`GAP_DAYS`) is left out of the span.

    >>> months = pd.date_range("2020-01-31", periods=12, freq="ME").values.astype("datetime64[D]").astype(np.int64)
    >>> round(measured_periods_per_year_coarse(months), 2), measured_periods_per_year_coarse(np.arange(0, 70, 7))
    (11.99, 52.17857142857143)
    """
    days = _distinct(days)
    if days.size < 2:
        return measured_periods_per_year(days)
    steps = np.diff(days)
    # a step far longer than the bars' usual one (a halt, an outage) is no period of the
    # calendar: left out, as measured_periods_per_year leaves out long gaps (hunt71 F5)
    kept = steps[steps <= max(GAP_DAYS, 3 * int(np.median(steps)))]
    if kept.size == 0:
        kept = steps
    # steps a week first: regular weekly bars give exactly 1.0, hence 365.25 / 7 to the bit
    per_week = kept.size * 7.0 / float(kept.sum())
    return per_week * 365.25 / 7.0


def coarser_than_days(days: np.ndarray) -> bool:
    """Whether bars on the sorted trading-day numbers ``days`` (one bar a day at most) are
    coarser than a day: most steps from one bar's day to the next longer than a day, as
    weekly or monthly bars have. Daily bars step a day but over weekends and holidays;
    a halted or sparse stretch does not make daily bars weekly.

    >>> coarser_than_days(np.arange(0, 70, 7)), coarser_than_days(np.array([0, 1, 2, 3, 4, 7, 8, 9]))
    (True, False)
    """
    steps = np.diff(days)
    return steps.size > 0 and 2 * int(np.count_nonzero(steps == 1)) < steps.size


def calendar(index: pd.DatetimeIndex, name: Optional[str] = None) -> tuple[np.ndarray, float, float]:
    """``(day_end, periods_per_year, years)`` of a bar index under calendar ``name``: what
    the metrics need to know about the calendar, computed once per dataset in O(n).

    ``day_end`` is True at the last bar of each trading day: the FX day ending 17:00 New
    York for ``fx_24x5``, else the calendar day in UTC (:data:`DAY_CONVENTION`).
    ``periods_per_year``: the declared calendar's (:data:`CALENDARS`: 260, 365, 252), or,
    with ``name`` None, :func:`measured_periods_per_year` of the days that have bars; the
    measure too when the bars are coarser than a day (:func:`coarser_than_days`): a weekly
    bar's return is a week's, and 252 of them do not make a year.

    >>> idx = pd.date_range("2024-01-07 22:00", "2024-01-12 21:45", freq="15min")   # one FX week, winter
    >>> int(calendar(idx)[0].sum()), int(calendar(idx, "fx_24x5")[0].sum())          # UTC days / FX days
    (6, 5)
    >>> calendar(idx, "fx_24x5")[1], calendar(idx, "crypto_24x7")[1]
    (260.0, 365.0)
    """
    name, convention = calendar_parts(check_calendar(name))
    years = span_years(index)
    index = _naive(index, convention)
    n = len(index)
    if n == 0:
        return np.zeros(0, dtype=np.bool_), CALENDARS.get(name, 252.0), years   # type: ignore[arg-type]
    t = _ns(index)
    first_day, last_day = int(t[0] // NS_PER_DAY), int(t[-1] // NS_PER_DAY)
    dates: Optional[bool] = None   # the bars are a file of dates: one pass over them, when needed
    if 8 * (last_day - first_day) <= n and index.is_monotonic_increasing:
        # many bars a day, sorted: the last bar of a day is the one before the first bar at
        # or after the next day's start; one binary search per day instead of a division
        # (or, for the FX day, a time-zone conversion) per bar. With few bars a day (daily
        # data) the per-bar way is the cheaper O(n) one: a search per day would cost n log n.
        ends = np.append(np.searchsorted(t, _day_starts(int(t[0]), int(t[-1]), convention), side="left") - 1,
                         n - 1)
        day_end = np.zeros(n, dtype=np.bool_)
        day_end[ends] = True
    else:
        dates = _midnights(t, convention)
        d = _day_numbers(t, convention, dates)
        day_end = np.append(d[1:] != d[:-1], True)
    if name is not None and int(day_end.sum()) < n:
        return day_end, CALENDARS[name], years  # intraday bars: the calendar's days
    days = _day_numbers(t[day_end], convention, _midnights(t, convention) if dates is None else dates)
    if int(day_end.sum()) == n and coarser_than_days(days):
        # bars further apart than a day (weekly, monthly) make a week's or a month's
        # returns, so P counts the bars' own periods, not the calendar's days (in time
        # order: steps are between consecutive bars)
        in_order = bool(np.all(days[1:] > days[:-1]))
        return day_end, measured_periods_per_year_coarse(days) if in_order else measured_periods_per_year(days), years
    return day_end, measured_periods_per_year(days) if name is None else CALENDARS[name], years


def day_labels(index: pd.DatetimeIndex, day_end: np.ndarray, name: Optional[str] = None) -> pd.DatetimeIndex:
    """The date of each trading day whose last bar ``day_end`` marks (a boolean mask or
    the indices of those bars), at midnight: the label of its daily return. For
    ``fx_24x5`` the FX day's date (Monday's for the day opening Sunday 17:00 New York).

    >>> idx = pd.DatetimeIndex(["2024-01-07 22:00", "2024-01-08 21:45", "2024-01-08 22:00"])
    >>> day_labels(idx, np.array([1, 2]), "fx_24x5").strftime("%a %d").tolist()
    ['Mon 08', 'Tue 09']
    """
    convention = calendar_parts(check_calendar(name))[1]
    every = _ns(_naive(index, convention))
    t = every[np.asarray(day_end)]
    days = _day_numbers(np.asarray(t, dtype=np.int64), convention, _midnights(every, convention))
    return pd.DatetimeIndex((days * NS_PER_DAY).view("datetime64[ns]"))


def periods_per_year(index: pd.DatetimeIndex, name: Optional[str] = None) -> float:
    """Trading days a year of calendar ``name`` (:data:`CALENDARS`), or measured from the
    days of ``index`` (bar times or daily-return labels) when ``name`` is None.

    >>> periods_per_year(pd.date_range("2024-01-01", periods=3, freq="D"), "exchange")
    252.0
    """
    return calendar(index, name)[1]


def daily_returns(equity: pd.Series, cash: float, calendar_name: Optional[str] = None) -> pd.Series:
    """Returns of the equity at each trading day's last bar (the days of calendar
    ``calendar_name``, the operation's ``data.calendar``), the first day against ``cash``;
    labelled by :func:`day_labels`.

    >>> equity = pd.Series([100.0, 110.0, 99.0], index=pd.date_range("2024-01-01 12:00", periods=3, freq="D"))
    >>> daily_returns(equity, 100.0).round(4).tolist()
    [0.0, 0.1, -0.1]
    """
    from .nb.metrics import daily_returns as nb_daily_returns

    if equity.empty:
        return pd.Series(dtype="float64", name="daily_return")
    ends = calendar(equity.index, calendar_name)[0]
    r = nb_daily_returns(equity.to_numpy(np.float64), 0, ends, float(cash))
    return pd.Series(r, index=day_labels(equity.index, ends, calendar_name), name="daily_return")


def span_years(index: pd.DatetimeIndex) -> float:
    """The time from the first to the last timestamp of ``index``, in years of 365.25 days
    (0.0 for fewer than two).

    >>> round(span_years(pd.DatetimeIndex(["2020-01-01", "2022-01-01"])), 4)
    2.0014
    """
    return (index[-1] - index[0]).total_seconds() / (365.25 * 86400.0) if len(index) > 1 else 0.0


def metrics_dict(vec: np.ndarray) -> dict[str, Any]:
    """Name a metric vector (:data:`METRIC_NAMES` order); counts become ints.

    >>> m = metrics_dict(np.arange(len(METRIC_NAMES), dtype=np.float64))
    >>> m["total_return_pct"], m["total_trades"]
    (0.0, 10)
    """
    out: dict[str, Any] = {}
    for name, v in zip(METRIC_NAMES, vec.tolist()):
        out[name] = int(v) if name in _COUNTS else v
    return out


#: the metrics that count (whole numbers; a results table holding a failed row's NaN makes
#: their column float, and what is read back of it is made whole again: :func:`whole_counts`)
COUNT_METRICS = frozenset({"total_trades", "opportunities_detected", "opportunities_rejected"})
_COUNTS = COUNT_METRICS


def whole_counts(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``values`` with each count metric (its name after ``prefix``) that is a finite float
    as an int: read back from a table column a failed row's NaN made float.

    >>> whole_counts({"total_trades": 19.0, "sharpe_ratio": 1.0}), whole_counts({"oos_total_trades": None}, "oos_")
    ({'total_trades': 19, 'sharpe_ratio': 1.0}, {'oos_total_trades': None})
    """
    return {k: int(v) if isinstance(v, float) and v == v and k[len(prefix):] in COUNT_METRICS
            and k.startswith(prefix) else v for k, v in values.items()}


def metrics_json(vecs: np.ndarray) -> list[dict[str, Any]]:
    """One JSON-ready metrics dict per row of ``vecs``: :func:`metrics_dict` with NaN and
    infinities as None (what ``json_safe(metrics_dict(row))`` gives), in one pass.

    >>> vecs = np.zeros((2, len(METRIC_NAMES)))
    >>> vecs[1, 0] = np.inf
    >>> [row["total_return_pct"] for row in metrics_json(vecs)]
    [0.0, None]
    """
    isfinite = math.isfinite
    is_count = [name in _COUNTS for name in METRIC_NAMES]
    out = []
    for row in vecs.tolist():
        out.append({name: int(v) if count else (v if isfinite(v) else None)
                    for name, count, v in zip(METRIC_NAMES, is_count, row)})
    return out


def compute_metrics(records: RunRecords, first: int, index: pd.DatetimeIndex, cash: float,
                    cal: Optional[tuple[np.ndarray, float, float]] = None,
                    calendar_name: Optional[str] = None) -> dict[str, Any]:
    """All metrics of one run (its :class:`~.records.RunRecords`) measured from bar
    ``first`` of ``index``, as Python numbers (NaN where undefined). The arithmetic lives in
    :func:`metaflow_nb.engine.nb.metrics.run_metrics`. ``cal`` is :func:`calendar` of
    ``index[first:]`` (under ``calendar_name``), when the caller has it cached.

    >>> idx = pd.date_range("2024-01-01 12:00", periods=3, freq="D")
    >>> rec = RunRecords(np.array([100.0, 110.0, 99.0]), np.array([1.0, 1.0, 0.0]), np.zeros(0, TRADE_DTYPE),
    ...                  np.zeros(0, JOURNAL_DTYPE))
    >>> m = compute_metrics(rec, 0, idx, 100.0)
    >>> round(m["total_return_pct"], 6), round(m["max_drawdown_pct"], 6), m["total_trades"]
    (-1.0, 10.0, 0)
    """
    from .nb.metrics import run_metrics

    if cal is None:
        cal = calendar(index[first:], calendar_name)
    day_end = cal[0] if first == 0 else np.concatenate([np.zeros(first, dtype=np.bool_), cal[0]])
    return metrics_dict(run_metrics(records, first, day_end, float(cash), cal[1], cal[2]))


def metrics_from_frames(equity: pd.Series, position: np.ndarray, trades: pd.DataFrame, cash: float,
                        detected: int, rejected: int, calendar_name: Optional[str] = None,
                        periods_per_year: Optional[float] = None, years: Optional[float] = None) -> dict[str, Any]:
    """Metrics of an equity curve assembled from several runs (walk-forward stitching),
    on calendar ``calendar_name`` (the runs' ``data.calendar``); ``periods_per_year``
    replaces the calendar's (a measured one read on the runs' own bars, not on the
    assembled curve's gaps), and ``years`` the curve's span (its CAGR's, the gaps left out).

    >>> equity = pd.Series([100.0, 110.0, 99.0], index=pd.date_range("2024-01-01 12:00", periods=3, freq="D"))
    >>> trades = pd.DataFrame({"entry_bar": [0], "exit_bar": [2], "entry_price": [100.0], "size": [1.0], "pnl": [-1.0]})
    >>> m = metrics_from_frames(equity, np.array([1.0, 1.0, 0.0]), trades, 100.0, detected=1, rejected=0)
    >>> m["final_equity"], m["total_trades"], m["opportunities_detected"]
    (99.0, 1, 1)
    """
    from .codes import EV_OPPORTUNITY_DETECTED, EV_OPPORTUNITY_REJECTED

    tm = np.zeros(len(trades), dtype=TRADE_DTYPE)
    for name in ("entry_bar", "exit_bar", "entry_price", "size", "pnl"):
        tm[name] = trades[name].to_numpy()
    jm = np.zeros(detected + rejected, dtype=JOURNAL_DTYPE)
    jm["event"][:detected] = EV_OPPORTUNITY_DETECTED
    jm["event"][detected:] = EV_OPPORTUNITY_REJECTED
    records = RunRecords(equity.to_numpy(np.float64), np.asarray(position, np.float64), tm, jm)
    cal = calendar(equity.index, calendar_name)
    if periods_per_year is not None:
        cal = (cal[0], float(periods_per_year), cal[2])
    if years is not None:
        cal = (cal[0], cal[1], float(years))
    return compute_metrics(records, 0, equity.index, cash, cal=cal)
