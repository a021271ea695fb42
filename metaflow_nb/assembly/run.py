"""The kernel calls of the run path: one run with its records, or one batch of a sweep."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd

from ..config.buildspecs import BuildSpecs
from ..engine.records import Account, Bars, Calendar, Exits, Rules, RunRecords, Setups, Threats
from .dataset import dataset_calendar, dataset_day_ends, dataset_finer_bars
from .group import Group, build_group
from .pack import account_of, run_records, sweep_records
from .plan import CombinationPlan, plan_combination
from .workforce import Workforce


@dataclass
class SimulationOutput:
    """One run's kernel outputs plus what is needed to name them (its group and plan).

    A run made with a calendar (:func:`run_one`) keeps its trades, journal and metric
    vector only; ``equity`` and ``position`` (one value per bar) are simulated again on
    first access, from the same records: the kernel is deterministic, so they are the
    arrays the run had, bit for bit.
    """

    group: Group
    plan: CombinationPlan
    index: pd.DatetimeIndex
    inputs: tuple[Bars, Setups, Threats, Rules, Account, Exits]
    trades: np.ndarray
    journal: np.ndarray
    metric_vector: Optional[np.ndarray] = None
    _full: Optional[RunRecords] = None

    @property
    def records(self) -> RunRecords:
        """Equity, position, trades and journal (simulated again once, when not kept).

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> out = run_one(specs, mf.load_data("sp500_daily"), streamed=True)   # kept no per-bar arrays
        >>> len(out.records.equity) == len(out.index), len(out.records.trades) == len(out.trades)
        (True, True)
        """
        if self._full is None:
            from ..engine.nb.simulate import simulate
            self._full = simulate(*self.inputs)
        return self._full

    @property
    def equity(self) -> np.ndarray:
        """The equity at each bar's close (of :attr:`records`).

        >>> import metaflow_nb as mf
        >>> out = run_one(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"), mf.load_data("sp500_daily"))
        >>> float(out.equity[0]), round(float(out.equity[-1]), 2)
        (10000.0, 5137.12)
        """
        return self.records.equity

    @property
    def position(self) -> np.ndarray:
        """The signed position size held at each bar's close (of :attr:`records`).

        >>> import metaflow_nb as mf
        >>> out = run_one(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"), mf.load_data("sp500_daily"))
        >>> out.position[28:31].tolist()   # the first setup, a short, fills at bar 29's open
        [0.0, -8.0, -8.0]
        """
        return self.records.position


def trade_start_bar(specs: BuildSpecs, index: pd.DatetimeIndex) -> int:
    """Index of the first bar setups may be acted on (``data.trade_start``), 0 without one.

    >>> import metaflow_nb as mf
    >>> operation = {"data": {"source": "sp500_daily", "trade_start": "2000-01-03"}}
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", operation)
    >>> trade_start_bar(specs, mf.load_data("sp500_daily").index)   # 1999 has 252 bars
    252
    """
    ts = specs.trade_start
    if not ts:
        return 0
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is not None:   # an instant with its offset: that instant in UTC, as the bars
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return int(index.searchsorted(stamp, side="left"))


class Prepared(NamedTuple):
    """A run up to the kernel call: its group, its plan and the kernel's six records."""

    group: Group
    plan: CombinationPlan
    records: tuple[Bars, Setups, Threats, Rules, Account, Exits]


def prepare(specs: BuildSpecs, data: pd.DataFrame, cache: Optional[dict] = None,
            workforce: Optional[Workforce] = None) -> Prepared:
    """Group, plan and pack one run (everything but the simulation).

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.engine.nb.simulate import simulate
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> p = prepare(specs, mf.load_data("sp500_daily"))
    >>> len(simulate(*p.records).trades) > 0
    True
    """
    wf = workforce or Workforce.from_specs(specs)
    group = build_group(wf, data, specs.pip_size, cache, trade_start_bar(specs, data.index))
    plan = plan_combination(wf, group)
    return Prepared(group, plan, run_records(specs, group, plan, dataset_finer_bars(data, specs)))


def run_one(specs: BuildSpecs, data: pd.DataFrame, cache: Optional[dict] = None,
            workforce: Optional[Workforce] = None, streamed: bool = False) -> SimulationOutput:
    """One backtest through the run path: group, plan, pack, simulate.

    ``streamed``: the kernel keeps trades and journal and folds the metrics of the whole
    of ``data`` as it goes (``metric_vector``): no array per bar is made; otherwise
    equity and position per bar are kept too.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> out = run_one(specs, mf.load_data("sp500_daily"))
    >>> out.equity.shape == out.position.shape, out.trades.dtype.names[:3]
    (True, ('opp', 'direction', 'entry_bar'))
    """
    from ..engine.nb.run import run_events
    from ..engine.nb.simulate import simulate

    p = prepare(specs, data, cache, workforce)
    if not streamed:
        full = simulate(*p.records)
        return SimulationOutput(p.group, p.plan, data.index, p.records, full.trades, full.journal, None, full)
    calendar = dataset_calendar(data, 0, specs.data_calendar)
    day_ends = dataset_day_ends(data, specs.data_calendar)
    day_eq = _scratch(day_ends.shape[0])
    vec, trades, journal = run_events(*p.records, day_ends, day_eq, calendar)
    return SimulationOutput(p.group, p.plan, data.index, p.records, trades, journal, vec)


_SCRATCH = threading.local()


def _scratch(n: int) -> np.ndarray:
    """A float64 work array of ``n`` values, reused by this thread's next run (the day-end
    equities exist only until the metrics are made of them): a run allocates no array
    per bar, so its time does not depend on how the allocator hands out large blocks."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.shape[0] < n:
        buf = _SCRATCH.buf = np.empty(max(n, 1024))
    return buf[:n]


class DayWork(NamedTuple):
    """Work arrays of a sweep's kernel calls, made once per sweep (one call runs at a
    time): per block of combinations, the day-end equities of the four runs whose daily
    statistics it folds together; empty when the runs' daily returns are kept (they are
    written into the call's own rows)."""

    day_eq: np.ndarray
    n_days: int
    keep_returns: bool


def day_work(n_days: int, keep_returns: bool) -> DayWork:
    """:class:`DayWork` for runs of ``n_days`` calendar days, a few blocks per thread.

    >>> day_work(70, False).day_eq.shape[1:], day_work(70, True).day_eq.shape[1:]
    ((4, 70), (4, 0))
    """
    import numba

    from ..engine.nb.batch import QUAD

    shape = (4 * numba.get_num_threads(), QUAD, 0 if keep_returns else n_days)
    return DayWork(np.empty(shape), n_days, keep_returns)


def run_sweep_call(specs: BuildSpecs, bars: Bars, calendar: Calendar, rules: Rules,
                   items: Sequence[tuple[str, CombinationPlan, Any]], groups: dict[str, Group],
                   work: DayWork) -> tuple[np.ndarray, np.ndarray]:
    """Metric vectors (and, when ``work`` keeps them, daily returns) of combinations that
    share ``rules`` (:func:`.pack.shared_rules`), in one batch kernel call.

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.pack import bars_of, rules_of, shared_rules
    >>> specs, data = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"), mf.load_data("sp500_daily")
    >>> p, cal = prepare(specs, data), dataset_calendar(data, 0, specs.data_calendar)
    >>> r = rules_of(specs, p.plan)
    >>> vecs, _ = run_sweep_call(specs, bars_of(p.group), cal, shared_rules(r), [("g", p.plan, r)], {"g": p.group},
    ...                          day_work(int(cal.day_end.sum()), False))
    >>> round(float(vecs[0, 0]), 4)   # total_return_pct, as the single run's
    -48.6288
    """
    from ..engine.nb.batch import sweep

    sweep_groups, combos = sweep_records([(gk, plan, r) for gk, plan, r, *_ in items], groups)
    returns_out = np.empty((len(items), work.n_days) if work.keep_returns else (0, 0))
    vecs = sweep(bars, calendar, sweep_groups, combos, rules, account_of(specs), returns_out, work.day_eq)
    return vecs, returns_out
