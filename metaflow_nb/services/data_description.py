"""How a data file is read: ``mf.describe_data`` and ``metaflow-nb data``.

Before a backtest on a file of their own, users want to see that it was understood: its
layout (separator, decimal mark, header), which column became the time and each price,
the dates' format, the clock, the bars' spacing and gaps, the weekdays it trades and what
a year of it is for annualization. :func:`describe_data` reads the file exactly as
``mf.load_data`` does (the same reader and validator, so a file it describes loads the
same way, and a file it refuses is refused with the same one-line message).
"""
from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from ..data.basket import close_only_prices
from ..data.clock import NS_PER_DAY, get_clock, known_clocks
from ..data.loader import Source, data_fingerprint, read_raw
from ..data.validate import TICK_VOLUME_NAMES, column_key, dates_only, inspect_ohlcv
from ..engine.metrics import calendar as day_calendar
from ..engine.metrics import check_calendar, coarser_than_days, periods_per_year
from ..errors import DataError

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _spacing(step: pd.Timedelta) -> str:
    """A bar spacing as a timeframe reads: 15min, 4h, 1d; anything else as pandas writes it."""
    seconds = step.total_seconds()
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return str(step)


@dataclass
class DataDescription:
    """What :func:`describe_data` found; ``repr`` is a short report, ``to_dict()`` its JSON."""

    source: str
    kind: str
    layout: str
    time_column: str
    date_format: str
    columns: dict[str, str]
    clock: str
    bars: int
    first: pd.Timestamp
    last: pd.Timestamp
    spacing: str
    weekdays: dict[str, int]
    largest_gap: Optional[pd.Timedelta]
    largest_gap_after: Optional[pd.Timestamp]
    periods_per_year: float
    calendar: Optional[str]
    calendar_hint: str
    fingerprint: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Every fact as plain JSON (timestamps as ISO strings, the largest gap as text).

        >>> import metaflow_nb as mf
        >>> d = mf.describe_data("sp500_daily", calendar="exchange").to_dict()
        >>> d["bars"], d["first"], d["largest_gap"], d["periods_per_year"]
        (5031, '1999-01-04T00:00:00', '7 days 00:00:00', 252.0)
        """
        d = asdict(self)
        for k in ("first", "last", "largest_gap_after"):
            d[k] = None if d[k] is None else d[k].isoformat()
        d["largest_gap"] = None if self.largest_gap is None else str(self.largest_gap)
        return d

    def _lines(self) -> list[tuple[str, str]]:
        cols = ", ".join(f"{k} <- {v}" if v else f"{k}: the close" if k in ("open", "high", "low")
                         else f"{k}: none (zeros)" for k, v in self.columns.items())
        when = "UTC" if self.first.tzinfo is None else ""
        rows = [("read as", f"{self.kind}" + (f": {self.layout}" if self.layout else "")),
                ("time", f"{self.time_column} ({self.date_format})"),
                ("columns", cols),
                ("clock", self.clock),
                ("bars", f"{self.bars:,} from {self.first} to {self.last} {when}, every {self.spacing} (median)"),
                ("weekdays", "  ".join(f"{d} {n:,}" for d, n in self.weekdays.items()))]
        if self.largest_gap is not None:
            rows.append(("largest gap", f"{self.largest_gap} after {self.largest_gap_after}"))
        else:
            rows.append(("largest gap", "none: evenly spaced"))
        declared = f"data.calendar {self.calendar}" if self.calendar else "measured (data.calendar unset)"
        unit = "bars" if self.calendar_hint.startswith(COARSER_HINT) else "trading days"
        rows.append(("a year", f"{self.periods_per_year:.1f} {unit}, {declared}"))
        rows.append(("calendar", self.calendar_hint))
        rows.append(("fingerprint", self.fingerprint[:16]))
        rows.extend(("note", n) for n in self.notes)
        return rows

    def __repr__(self) -> str:
        return "\n".join([self.source, *(f"  {k:<12} {v}" for k, v in self._lines())])

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                       f"{html.escape(v)}</td></tr>" for k, v in self._lines())
        return f"<div class='mf-result'><b>{html.escape(self.source)}</b><table>{body}</table></div>"


COARSER_HINT = "bars coarser than a day"


def _calendar_hint(index: pd.DatetimeIndex, counts: dict[str, int], intraday: bool) -> str:
    """The ``data.calendar`` the bars look like (README "Annualization"), and why."""
    n = len(index)
    weekend = counts["Sat"] + counts["Sun"]
    hours = len(np.unique(index.hour)) if intraday else 0
    if not intraday and coarser_than_days(index.asi8 // NS_PER_DAY):
        return f"{COARSER_HINT}: under any data.calendar a year is their own count ({periods_per_year(index):.1f})"
    if counts["Sat"] > 0.05 * n / 7 and counts["Sun"] > 0.05 * n / 7:
        return "crypto_24x7 looks right: bars on every day of the week"
    if intraday and hours >= 20 and counts["Sat"] <= 0.01 * n:
        return ("fx_24x5 looks right: intraday bars around the clock from Sunday evening (UTC) or Monday to Friday, "
                "an FX week; its trading day ends 17:00 New York")
    if not weekend:
        return ("exchange looks right: weekday bars only" + (f", in {hours} hour{'s' if hours != 1 else ''} of the day" if intraday else ""))
    return "none of the named calendars fits; left unset, a year is measured from the bars"


def _week_starts(index: pd.DatetimeIndex) -> Optional[str]:
    """A note when the bars' weeks start at Monday 00:00: FX data on a broker's server
    clock (UTC+2/+3) does; in UTC an FX week starts on Sunday evening."""
    t = index.asi8
    if len(t) < 2:
        return None
    after_gap = np.flatnonzero(np.diff(t) >= NS_PER_DAY) + 1   # the first bar after a day or more
    if after_gap.size < 2:
        return None
    starts = index[after_gap]
    monday_midnight = (starts.day_of_week == 0) & (starts.hour == 0) & (starts.minute == 0)
    if monday_midnight.mean() < 0.8:
        return None
    return ("its weeks start at Monday 00:00: FX data on a broker's server clock (UTC+2, +3 in summer) does, while in "
            "UTC an FX week starts on Sunday evening; if so, declare its clock: timezone: broker_ny+7 (switching on "
            "the US dates) or Europe/Athens (the EU dates)")


def _trading_dates(index: pd.DatetimeIndex, day: str) -> dict[str, int]:
    """Bars per weekday of their trading day's date (``day``: a trading-day convention)."""
    from ..data.timeframe import trading_clock

    weekdays = (np.floor_divide(trading_clock(index, day), NS_PER_DAY) + 3) % 7   # 1970-01-01: a Thursday
    return {d: int((weekdays == k).sum()) for k, d in enumerate(_WEEKDAYS)}


def market_day(index: pd.DatetimeIndex, zone: str) -> Optional[tuple[str, int, int]]:
    """``(trading day, its days, UTC days)`` when intraday bars on the clock ``zone`` (an
    IANA zone) make fewer days on a market's own day than in UTC: sessions crossing
    midnight UTC (Sydney's 10:00-16:00) are cut in two by UTC days, the daily returns' and
    resampled bars' default. The day is the zone's calendar day when that keeps each
    session whole, else the zone and the local time most sessions open at after their
    daily break (CME's ``America/Chicago 17:00``); None when UTC days do as well.

    >>> local = pd.date_range("2024-01-08 10:00", periods=7, freq="h", tz="Australia/Sydney")
    >>> idx = local.append(local + pd.Timedelta("1D")).tz_convert("UTC").tz_localize(None)
    >>> market_day(idx, "Australia/Sydney")
    ('Australia/Sydney', 2, 3)
    """
    if zone in known_clocks() or len(index) < 2:
        return None   # a broker's convention: its day is not the market's
    utc = int(day_calendar(index)[0].sum())
    best = (zone, int(day_calendar(index, f"@{zone}")[0].sum()))
    t = index.asi8
    steps = np.diff(t)
    step = int(np.median(steps))
    opens = np.flatnonzero((steps >= max(2 * step, NS_PER_DAY // 24)) & (steps < 4 * NS_PER_DAY)) + 1
    if opens.size:
        # the local time most sessions open at after their daily break
        wall = index[opens].tz_localize("UTC").tz_convert(zone)
        minutes = pd.Series(wall.hour * 60 + wall.minute).mode()
        at = int(minutes.iloc[0]) if len(minutes) else 0
        if at:
            day = f"{zone} {at // 60:02d}:{at % 60:02d}"
            days = int(day_calendar(index, f"@{day}")[0].sum())
            if days < best[1]:
                best = (day, days)
    return (best[0], best[1], utc) if best[1] < utc else None


def _slashed_either_way(frame: pd.DataFrame, facts: Any) -> str:
    """A note when slashed dates read month-first could all be read day-first too (no
    second field above 12): the file cannot say which it means (hunt46 F2), as 16.751
    cannot say whether it is whole thousands.

    >>> f = pd.DataFrame({"Date": ["01/02/2024", "03/01/2024"]})
    >>> _slashed_either_way(f, type("F", (), {"date_format": "%m/%d/%Y", "date_column": "Date"})()).split(";")[0]
    'slashed dates read month-first (01/02/2024 is 2 January 2024)'
    """
    if not facts.date_format.startswith("%m/%d/%Y") or facts.date_column not in frame.columns:
        return ""
    text = frame[facts.date_column].astype(str)
    second = pd.to_numeric(text.str.extract(r"^\s*\d{1,2}/(\d{1,2})/", expand=False), errors="coerce")
    if second.isna().all() or (second > 12).any():
        return ""
    first = text.iloc[0].strip().split()[0]
    month_first = pd.to_datetime(first, format="%m/%d/%Y")
    return (f"slashed dates read month-first ({first} is {month_first.day} {month_first.month_name()} "
            f"{month_first.year}); no date's day is above 12, so a day-first file would load as well, on other "
            f"dates: write ISO dates (2024-01-02) if its days come first")


def describe_data(source: Source, *, timezone: Optional[str] = None, date_column: Optional[str] = None,
                  calendar: Optional[str] = None) -> DataDescription:
    """How ``source`` (a sample name, a CSV/Parquet path or a DataFrame) is read and what
    its bars look like, read exactly as :func:`metaflow_nb.load_data` reads it (with
    ``timezone`` and ``date_column``); ``calendar`` (a ``data.calendar`` name) gives the
    year used for annualization, else it is measured.

    >>> import metaflow_nb as mf
    >>> d = mf.describe_data("eurusd_15m")
    >>> d.spacing, d.columns["volume"], d.calendar_hint.split()[0]
    ('15min', 'Tickvol', 'fx_24x5')
    """
    raw = read_raw(source, date_column)
    try:
        calendar = check_calendar(calendar)
    except ValueError as exc:
        raise DataError(f"{raw.origin}: calendar: {exc}") from None
    # a clock that is not a clock is its DataError, naming the file
    close_only = close_only_prices(raw.frame)   # read as a basket's prices: close_only reads it
    frame, facts = inspect_ohlcv(close_only[0] if close_only else raw.frame, raw.origin, timezone=timezone,
                                 date_column=date_column)
    if close_only:
        facts.columns.update({"open": None, "high": None, "low": None, "close": str(close_only[1])})
    on_utc = timezone is None or get_clock(timezone).is_utc
    index = frame.index
    steps = np.diff(index.asi8)
    # the lower median: a step the bars really take (an even count's mean of two may be none)
    step = pd.Timedelta(int(np.sort(steps)[(steps.size - 1) // 2])) if steps.size else pd.Timedelta(0)
    days = index.day_of_week.to_numpy()
    counts = {d: int((days == k).sum()) for k, d in enumerate(_WEEKDAYS)}
    gap = gap_after = None
    if steps.size:
        k = int(np.argmax(steps))
        gap, gap_after = pd.Timedelta(int(steps[k])), index[k]
    if facts.aware:
        why = "epoch numbers" if facts.date_format.startswith("epoch") else "UTC offsets or a zone"
        clock = f"instants ({why}): read as UTC" + (f"; timezone {timezone} does not apply" if timezone else "")
    elif not on_utc and dates_only(index.asi8):
        clock = f"{timezone}: dates without a time of day stay on their dates (trading days)"
    elif not on_utc:
        clock = f"{timezone}: naive times converted to UTC"
    else:
        clock = "UTC: naive times read as UTC (no timezone declared)"
    notes = []
    if close_only:
        notes.append("closes only: a basket operation reads this file with prices: close_only (every price its "
                     "close, README 'Portfolios'); a single run needs each bar's open, high and low")
    intraday = bool(steps.size) and step < pd.Timedelta(days=1)
    if intraday and not facts.aware and on_utc:
        week = _week_starts(index)
        if week:
            notes.append(week)
    own = market_day(index, timezone) if intraday and not facts.aware and not on_utc else None
    hint = _calendar_hint(index, _trading_dates(index, own[0]) if own else counts, intraday)
    if own is not None and calendar != "fx_24x5":
        # an FX week's calendar ends its day at 17:00 New York itself (set, nothing to add):
        # offered first where it is the calendar the bars look like (the README's advice for
        # FX), not contradicted by the zone's own day (hunt99 F8)
        fx = "data.calendar: fx_24x5 (its day ends 17:00 New York) or " if hint.startswith("fx_24x5") else ""
        notes.append(f"its sessions cross midnight UTC: {own[2]} UTC days hold {own[1]} days on its clock; "
                     f"{fx}data.trading_day: {own[0]} keeps each session one day for the daily returns, the year "
                     f"and resampled bars (weekdays then count by its dates)")
    either = _slashed_either_way(raw.frame, facts)
    if either:
        notes.append(either)
    if not facts.columns["volume"]:
        notes.append("no volume column: volume is 0 on every bar")
    elif column_key(facts.columns["volume"]) in TICK_VOLUME_NAMES:
        notes.append(f"volume is the tick volume ({facts.columns['volume']})")
    if gap is not None and gap <= step:
        gap = gap_after = None   # evenly spaced: no gap to show
    return DataDescription(
        source=raw.origin, kind=raw.kind, layout=raw.layout.describe() if raw.layout else "",
        time_column=facts.date_column, date_format=facts.date_format, columns=facts.columns, clock=clock,
        bars=len(frame), first=index[0], last=index[-1], spacing=_spacing(step) if steps.size else "-",
        weekdays=counts, largest_gap=gap, largest_gap_after=gap_after,
        periods_per_year=float(periods_per_year(index, calendar)), calendar=calendar,
        calendar_hint=hint,
        fingerprint=data_fingerprint(frame), notes=notes)
