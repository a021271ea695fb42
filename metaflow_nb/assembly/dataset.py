"""What never changes for a dataset, computed once per process: its contiguous price
arrays and its calendar (day boundaries, periods per year, span).

Keyed by the data's fingerprint, length and first and last timestamps (a validated
frame from :func:`metaflow_nb.load_data` carries its fingerprint); a frame without one
gets a fresh entry each time. A few datasets are kept, least recently used first out.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Optional

import numpy as np
import pandas as pd

from ..engine.metrics import calendar
from ..engine.records import Calendar

_KEEP = 8
_ENTRIES: "OrderedDict[tuple, dict[str, Any]]" = OrderedDict()
_LOCK = threading.Lock()  # the explorer runs backtests on a background thread


def _key(bars: pd.DataFrame) -> Optional[tuple]:
    fp = bars.attrs.get("fingerprint")
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
    dataset, first bar and calendar."""
    memo = dataset_memo(bars)
    key = ("__calendar__", first, name)
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = Calendar(*calendar(bars.index[first:] if first else bars.index, name))
    return hit


def dataset_day_ends(bars: pd.DataFrame, name: Optional[str] = None) -> np.ndarray:
    """Indices of the bars that close a trading day (of :func:`dataset_calendar` under
    calendar ``name``), once per dataset and calendar."""
    memo = dataset_memo(bars)
    key = ("__day_ends__", name)
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = np.flatnonzero(dataset_calendar(bars, 0, name).day_end)
    return hit


def clear_dataset_memo() -> None:
    """Forget every dataset's memo."""
    with _LOCK:
        _ENTRIES.clear()
