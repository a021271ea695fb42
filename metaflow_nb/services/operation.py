"""OperationService: runs ONE BuildSpecs on ONE dataset. The engine the meta workflows drive."""
from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from typing import Any, Optional, Sequence

import pandas as pd

from ..config.buildspecs import BuildSpecs
from ..assembly.group import forget_groups
from ..assembly.run import run_one, trade_start_bar
from ..assembly.dataset import dataset_calendar
from ..engine.metrics import compute_metrics, metrics_dict
from ..data.loader import fingerprint_attrs, trusted_fingerprint
from ..errors import ConfigError, DataError
from ..workers.features import FeatureCache
from .results import BacktestResult

_DATA_CACHE: "OrderedDict[tuple, pd.DataFrame]" = OrderedDict()
_DATA_CACHE_SIZE = 8
_DATA_LOCK = threading.Lock()  # the explorer runs backtests on a background thread


def resolve_data(specs: BuildSpecs, data: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """The validated bars a run uses: ``data`` (or the operation's source, read on its
    ``data.timezone`` clock with its ``data.date_column``) cut to its date range, and
    resampled to ``data.timeframe`` when the operation sets one. With a timeframe the
    source is resampled first and ``data.start`` / ``data.end`` then pick whole bars of
    that timeframe by their open time, as they would on a file of those bars: a cut
    source would leave the first and last coarse bars only a part of their bars.

    Loaded sources are kept per process (a few entries) so a sweep reads its file once.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> len(resolve_data(specs)), len(resolve_data(specs.with_overrides({"operation": {"data": {"start": "2010-01-01",
    ...                                                                                      "end": "2010-12-31"}}})))
    (5031, 252)
    """
    from ..data import load_data

    start, end = specs.data_start, specs.data_end
    coarse = specs.data_timeframe is not None
    if data is not None:
        # a frame of the user's own holds its times as written: read on the clock the
        # operation declared (the specs keep it), as the translator read it (hunt56 F1)
        data = meta_frame(data, specs.data_clock)
        if start is None and end is None:
            return _on_timeframe(specs, data)  # already through load_data: sweeps pass the same frame many times
        if not coarse:
            return load_data(data, start=start, end=end)
        return _coarse_slice(specs, _on_timeframe(specs, data))
    options = specs.data_read_options  # the data's clock and date column
    key = (specs.data_source, start, end, specs.data_fingerprint, tuple(sorted(options.items())),
           specs.data_timeframe, specs.data_trading_day if coarse else None)
    if not coarse:
        return _cached(key, lambda: load_data(specs.data_source, start=start, end=end, **options))
    whole = (key[0], None, None, *key[3:])
    return _cached(key, lambda: _coarse_slice(specs, _cached(
        whole, lambda: _on_timeframe(specs, load_data(specs.data_source, **options)))))


def _cached(key: tuple, make: Any) -> pd.DataFrame:
    """``make()``, kept in the process's few-entry data cache under ``key``."""
    with _DATA_LOCK:
        hit = _DATA_CACHE.get(key)
        if hit is not None:
            _DATA_CACHE.move_to_end(key)
            return hit
    hit = make()
    with _DATA_LOCK:
        _DATA_CACHE[key] = hit
        while len(_DATA_CACHE) > _DATA_CACHE_SIZE:
            _DATA_CACHE.popitem(last=False)
    return hit


def _coarse_slice(specs: BuildSpecs, bars: pd.DataFrame) -> pd.DataFrame:
    """The resampled ``bars`` from ``data.start`` to ``data.end`` (whole coarse bars)."""
    start, end = specs.data_start, specs.data_end
    if start is None and end is None:
        return bars
    from ..data.loader import positions_between, slice_validated

    label = str(bars.attrs.get("source", specs.data_source))
    by_label = positions_between(bars.index, start, end, label)
    by_bin = _whole_bins(specs, bars, start, end, label, by_label)
    if by_bin == by_label:
        out = slice_validated(bars, start, end, label)
    else:   # a copy: slicing without bounds would hand back (and relabel) the cached frame itself
        out = slice_validated(bars.iloc[by_bin[0]:by_bin[1]].copy(), None, None, label)
    out.attrs = {**out.attrs, "timeframe": bars.attrs["timeframe"]}
    return out


def _whole_bins(specs: BuildSpecs, bars: pd.DataFrame, start: Any, end: Any, label: str,
                by_label: tuple[int, int]) -> tuple[int, int]:
    """The positions ``i0, i1`` of the resampled ``bars`` whose bins ``data.start`` and
    ``data.end`` pick: a bar is labelled by its bin's first source bar, which may open
    after the bin (a missing first bar: the 15:00 hour labelled 15:15), so the labels alone
    dropped the bin an end inside it names and kept the bin a start inside it leaves out
    (hunt60 F2). A bin is kept when it opens at or after the start and at or before the end."""
    from ..data.loader import _bound, dates_only
    from ..data.timeframe import period_ids

    i0, i1 = by_label
    if i0 >= i1:
        return by_label   # no bar at all: the loader's own message says where the data lies
    tf, day = specs.data_timeframe, specs.data_trading_day
    dates = dates_only(bars.index.asi8)

    def bin_of(t: pd.Timestamp) -> int:
        return int(period_ids(pd.DatetimeIndex([t]), tf, day, dates)[0])

    if end is not None and i1 < len(bars):
        # the bin the end's first instant falls in: kept whole
        if bin_of(bars.index[i1]) == bin_of(pd.Timestamp(_bound(end, "end", label))):
            i1 += 1
    if start is not None and i0 < i1:
        s = pd.Timestamp(_bound(start, "start", label))
        first = bin_of(bars.index[i0])
        if first == bin_of(s) and bin_of(s - pd.Timedelta(1, "ns")) == first:
            i0 += 1   # its bin opened before the start
    if i0 >= i1:
        raise DataError(f"{label}: no whole {tf} bar between start={start} and end={end}; a bar is kept when its "
                        "bin opens at or after the start")
    return i0, i1


def _on_timeframe(specs: BuildSpecs, bars: pd.DataFrame) -> pd.DataFrame:
    """``bars`` resampled to the operation's ``data.timeframe`` (unchanged without one);
    the frame is fingerprinted as its source at that timeframe."""
    tf = specs.data_timeframe
    if tf is None or "timeframe" in bars.attrs:
        return bars
    from ..data.timeframe import resample

    try:
        out = resample(bars, tf, specs.data_trading_day).frame
    except ConfigError as exc:   # the data's own spacing: name the data and the key that asked
        raise ConfigError(f"{bars.attrs.get('source', specs.data_source)}: data.timeframe: {exc}") from None
    out.index.name = bars.index.name
    out.attrs = {**bars.attrs, "timeframe": tf,
                 **fingerprint_attrs(out, f"{bars.attrs.get('fingerprint', '')}@{tf}/{specs.data_trading_day}")}
    return out


def meta_frame(data: Any, clock: Optional[str] = None) -> Optional[pd.DataFrame]:
    """The bars of a DataFrame handed to a meta verb, validated once (so every run of the
    sweep reads the same frame and its fingerprint); None for a sample name, a path or None.
    A frame of the user's own is read on ``clock``, the base operation's
    (:attr:`BuildSpecs.data_clock`), as the base specs read it.

    >>> import metaflow_nb as mf
    >>> meta_frame("sp500_daily") is None, "fingerprint" in meta_frame(mf.load_data("sp500_daily")[:50]).attrs
    (True, True)
    """
    if not isinstance(data, pd.DataFrame):
        return None
    if list(data.columns) == ["open", "high", "low", "close", "volume"] and trusted_fingerprint(data):
        return data
    from ..data import load_data
    return load_data(data, timezone=clock)


def rebase_on(specs: BuildSpecs, data: pd.DataFrame) -> BuildSpecs:
    """The same specs, identified by the fingerprint of ``data`` instead of their own source.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> cut = rebase_on(specs, mf.load_data("sp500_daily")[-500:])
    >>> cut.params("sma_1") == specs.params("sma_1"), cut.data_fingerprint == specs.data_fingerprint
    (True, False)
    """
    from ..config.translator import ConfigTranslator
    return ConfigTranslator().translate(specs, data=data)


#: bytes of features the last basket's caches keep after its run (:meth:`OperationService.basket_caches`)
BASKET_CACHE_BYTES = 512 * 1024 * 1024


class OperationService:
    """Pure executor: BuildSpecs (+ optional data) in, :class:`BacktestResult` out.

    A service keeps a feature cache per dataset, so runs that share indicators (a sweep
    over stops, say) compute them once.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> res = OperationService().run(specs)
    >>> res.metrics["total_trades"] > 0
    True
    """

    def __init__(self, feature_cache_size: int = 4):
        self._caches: "OrderedDict[str, dict]" = OrderedDict()
        self._cache_size = feature_cache_size
        self._basket: dict[str, FeatureCache] = {}  # the last basket's caches (basket_caches)

    def _cache_for(self, key: str) -> dict:
        cache = self._caches.get(key)
        if cache is None:
            cache = FeatureCache()
            self._caches[key] = cache
            while len(self._caches) > self._cache_size:
                forget_groups(self._caches.popitem(last=False)[1])
        return cache

    def basket_caches(self, keys: Sequence[str]) -> list[FeatureCache]:
        """A feature cache per instrument of a basket run (``keys``: each instrument's
        dataset key), apart from the single runs' caches (at most ``feature_cache_size``,
        fewer than a basket has instruments). The last basket's caches are kept after its
        run (:meth:`release_caches`), so the next run on the same instruments, a notebook
        sweeping again or the portfolio explorer's next change, finds their indicators.

        >>> svc = OperationService()
        >>> a = svc.basket_caches(["IBM", "MSFT"]); a[0]["sma20"] = (1.0, 2.0); svc.release_caches(a)
        >>> b = svc.basket_caches(["IBM", "AAPL"])
        >>> b[0] is a[0], "sma20" in b[0], len(b[1])
        (True, True, 0)
        """
        caches = [self._basket.get(k) or FeatureCache() for k in keys]
        self._basket = dict(zip(keys, caches))
        return caches

    def release_caches(self, caches: Sequence[dict]) -> None:
        """After a basket ran on ``caches`` (from :meth:`basket_caches`): keep the features
        of the last basket's caches as far as :data:`BASKET_CACHE_BYTES` holds them (in
        basket order), and forget every group memoised in them: a group holds its cache
        (a kept one would keep its masks and setups, which the budget does not count; let
        go, it would stay until the collector's next full pass).

        >>> svc = OperationService()
        >>> a = svc.basket_caches(["IBM"]); a[0]["sma20"] = (1.0, 2.0); svc.release_caches(a)
        >>> "sma20" in svc.basket_caches(["IBM"])[0]   # the next basket on IBM finds it
        True
        """
        for c in caches:
            forget_groups(c)
        kept: dict[str, FeatureCache] = {}
        total = 0
        for k, c in self._basket.items():  # the caches just released
            total += getattr(c, "used", 0)
            if total > BASKET_CACHE_BYTES:
                break
            kept[k] = c
        self._basket = kept

    def run(self, specs: BuildSpecs, data: Optional[pd.DataFrame] = None) -> BacktestResult:
        """Run one backtest of ``specs`` (on ``data`` when given, else the operation's source).

        >>> import metaflow_nb as mf
        >>> res = OperationService().run(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"))
        >>> res.name, res.metrics["total_trades"], len(res.equity)
        ('sma_cross', 260, 5031)
        """
        t0 = time.perf_counter()
        bars = resolve_data(specs, data)
        cache = self._cache_for(f"{specs.dataset_key}|{len(bars)}")
        t1 = time.perf_counter()
        first = trade_start_bar(specs, bars.index)
        if first >= len(bars):   # as an end before the first bar is: nothing of the run would be measured
            raise DataError(f"{bars.attrs.get('source', specs.data_source)}: data.trade_start {specs.trade_start} is "
                            f"after the last bar ({bars.index[-1]}); expected a time within the data")
        if first == 0:
            # trades, journal and metrics in one pass; equity and position on first access
            out = run_one(specs, bars, cache, streamed=True)
            metrics = metrics_dict(out.metric_vector)
        else:
            # warm-up bars before data.trade_start are not part of the run being measured
            out = run_one(specs, bars, cache)
            metrics = compute_metrics(out.records, first, bars.index, specs.cash,
                                      dataset_calendar(bars, first, specs.data_calendar))
        t2 = time.perf_counter()
        worker_ids = [e.instance_id for e in specs.entries() if e.section == "opportunity_workers"]
        timings = {"data_s": t1 - t0, "simulate_s": t2 - t1, "total_s": t2 - t0}
        return BacktestResult(specs=specs, metrics=metrics, timings=timings, data=bars, context=out.group.ctx,
                              records=(out, worker_ids), first_bar=first)

    def run_metrics(self, specs: BuildSpecs, data: Optional[pd.DataFrame] = None) -> dict[str, Any]:
        """Only the metrics of a run (what sweeps keep).

        >>> import metaflow_nb as mf
        >>> OperationService().run_metrics(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"))["total_trades"]
        260
        """
        return self.run(specs, data).metrics


@functools.lru_cache(maxsize=1)
def shared_service() -> OperationService:
    """The process's service for single backtests (``mf.backtest``, the CLI): repeated
    runs on the same data reuse its indicators, as a sweep's runs do.

    >>> shared_service() is shared_service()
    True
    """
    return OperationService()
