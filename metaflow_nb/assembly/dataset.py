"""What never changes for a dataset, computed once per process: its contiguous price
arrays and its calendar (day boundaries, periods per year, span).

Keyed by the data's fingerprint, length and first and last timestamps (a validated
frame from :func:`metaflow_nb.load_data` carries its fingerprint); a frame without one
gets a fresh entry each time. A few datasets are kept, least recently used first out.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import pandas as pd

from ..data import load_data
from ..data.intrabar import FinerBars, map_finer_bars
from ..data.clock import utc_to_local
from ..data.loader import trusted_fingerprint
from ..data.validate import dates_only
from ..engine.metrics import calendar, day_labels
from ..engine.records import Calendar
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config.buildspecs import BuildSpecs

_KEEP = 8
_ENTRIES: "OrderedDict[tuple, dict[str, Any]]" = OrderedDict()
_LOCK = threading.Lock()  # the explorer runs backtests on a background thread


def _key(bars: pd.DataFrame) -> Optional[tuple]:
    # the fingerprint the package took on these bars: a frame derived from them carries
    # their attrs, not their values
    fp = trusted_fingerprint(bars)
    if not fp or len(bars) == 0:
        return None
    index = bars.index
    stamps = index.asi8
    return (fp, len(index), int(stamps[0]), int(stamps[-1]), str(index.dtype))


def dataset_memo(bars: pd.DataFrame) -> dict[str, Any]:
    """The per-process memo of ``bars``' dataset (a dict shared by every run on it).

    >>> import metaflow_nb as mf
    >>> bars = mf.load_data("sp500_daily")
    >>> dataset_memo(bars) is dataset_memo(mf.load_data("sp500_daily"))
    True
    """
    key = _key(bars)
    if key is None:
        return {}
    with _LOCK:
        hit = _ENTRIES.get(key)
        if hit is None:
            hit = _ENTRIES[key] = {}
            while len(_ENTRIES) > _KEEP:
                _ENTRIES.popitem(last=False)
        else:
            _ENTRIES.move_to_end(key)
        return hit


def dataset_calendar(bars: pd.DataFrame, first: int = 0, name: Optional[str] = None) -> Calendar:
    """:func:`metaflow_nb.engine.metrics.calendar` of ``bars.index[first:]`` under calendar
    ``name`` (the operation's ``data.calendar``; None: measured), computed once per
    dataset, first bar and calendar.

    >>> bars = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 0.0},
    ...                     index=pd.date_range("2024-01-01", periods=6, freq="12h"))
    >>> cal = dataset_calendar(bars, 0, "crypto_24x7")
    >>> cal.day_end.tolist(), cal.periods_per_year
    ([False, True, False, True, False, True], 365.0)
    """
    memo = dataset_memo(bars)
    key = ("__calendar__", first, name)
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = Calendar(*calendar(bars.index[first:] if first else bars.index, name))
    return hit


def dataset_day_ends(bars: pd.DataFrame, name: Optional[str] = None) -> np.ndarray:
    """Indices of the bars that close a trading day (of :func:`dataset_calendar` under
    calendar ``name``), once per dataset and calendar.

    >>> bars = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 0.0},
    ...                     index=pd.date_range("2024-01-01", periods=6, freq="12h"))
    >>> dataset_day_ends(bars, "crypto_24x7").tolist()
    [1, 3, 5]
    """
    memo = dataset_memo(bars)
    key = ("__day_ends__", name)
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = np.flatnonzero(dataset_calendar(bars, 0, name).day_end)
    return hit


def dataset_day_labels(bars: pd.DataFrame, name: Optional[str] = None) -> np.ndarray:
    """The daily-return labels of ``bars``' trading days under calendar ``name``
    (:func:`metaflow_nb.engine.metrics.day_labels`, as int64 nanoseconds, read-only),
    once per dataset and calendar: every wave of a sweep hands them out with its runs.

    >>> import metaflow_nb as mf
    >>> bars = mf.load_data("sp500_daily")
    >>> labels = dataset_day_labels(bars)
    >>> len(labels) == int(dataset_calendar(bars).day_end.sum()), labels.flags.writeable
    (True, False)
    """
    memo = dataset_memo(bars)
    key = ("__day_labels__", name)
    hit = memo.get(key)
    if hit is None:
        hit = day_labels(bars.index, dataset_calendar(bars, 0, name).day_end, name).asi8.copy()
        hit.setflags(write=False)
        memo[key] = hit
    return hit


def clear_dataset_memo() -> None:
    """Forget every dataset's memo."""
    with _LOCK:
        _ENTRIES.clear()


def dataset_finer_bars(bars: pd.DataFrame, specs: "BuildSpecs") -> Optional[FinerBars]:
    """The finer bars inside each bar of ``bars`` that ``specs`` declare
    (``data.intrabar``), mapped once per dataset and source; None without any.

    ``intrabar: source`` reads the operation's own source (the run's ``bars`` were
    resampled from it, ``data.timeframe``); a file is read on the data's clock.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> dataset_finer_bars(mf.load_data("sp500_daily"), specs) is None
    True
    """
    src = specs.data_intrabar
    if src is None or len(bars) == 0:
        return None
    if src == "source":
        src = specs.data_source
        if src == "<DataFrame>":
            raise ConfigError("data.intrabar: 'source' reads the operation's data file, but the data is a "
                              "DataFrame: pass its finer bars as a file (data.intrabar: path)")
    options = specs.data_read_options
    key = ("finer", src, specs.data_intrabar_fingerprint, tuple(sorted(options.items())))
    memo = dataset_memo(bars)
    hit = memo.get(key)
    if hit is None:
        fine = load_data(src, **options)
        clock = options.get("timezone")
        # the run's bars are a file's dates (a clock leaves them on their dates), the finer
        # bars instants (resampled bars are instants' bins: they map by instants)
        dated = specs.data_timeframe is None and dates_only(bars.index.asi8) and not dates_only(fine.index.asi8)
        if dated and clock:
            # each finer bar belongs to the bar of its date on that clock
            fine = fine.set_axis(pd.DatetimeIndex(utc_to_local(fine.index.asi8, clock).view("datetime64[ns]")))
        made_of = specs.data_intrabar == "source"
        # resampled bars (data.timeframe): each ends with its bin, finer bars of a file too
        ends = _bin_ends(bars, fine, specs) if specs.data_timeframe else None
        hit = memo[key] = map_finer_bars(bars, fine, label=str(src), made_of=made_of, ends=ends, dated=dated)
    return hit


def _bin_ends(bars: pd.DataFrame, fine: pd.DataFrame, specs: "BuildSpecs") -> np.ndarray:
    """When each resampled bar's bin ends (ns, exclusive): where the first finer bar of a
    later bin opens (the largest int64 for none). A bar's spacing does not say it: bins
    differ in length (the DST change's two-hour hour, 25-hour days, 31-day months; hunt60
    F1 lost their last source bars), and a bar is labelled by its first source bar, which
    may lie inside its bin (the FX week opens Monday 00:00 inside the 21:00-01:00 4h bin),
    so its label plus a bar's length reaches into the next bin, which a ``data.end`` may
    have cut away (hunt53 F1)."""
    from ..data.timeframe import period_ids

    ns = fine.index.as_unit("ns").asi8
    dates = fine.attrs.get("dates_only")
    dates = dates_only(ns) if dates is None else dates
    fine_ids = period_ids(fine.index, specs.data_timeframe, specs.data_trading_day, dates)
    bar_ids = period_ids(bars.index, specs.data_timeframe, specs.data_trading_day, dates)
    after = np.searchsorted(fine_ids, bar_ids, side="right")
    out = np.full(len(bars), np.iinfo(np.int64).max, dtype=np.int64)
    inside = after < ns.shape[0]
    out[inside] = ns[after[inside]]
    return out
