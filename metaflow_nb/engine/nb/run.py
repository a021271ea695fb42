"""One backtest in one compiled call: the bar loop keeping trades and journal, then the
metric vector of what it folded.

The general path's single run (``assembly.run.run_one``) calls :func:`run_events` once:
no second dispatch for the metrics, so a run's compiled work is one call whatever the bar
frequency (on daily bars the metrics' passes over the days are as long as the loop's).
"""
from __future__ import annotations

from numba import njit

from .metrics import stream_metrics
from .simulate import simulate_events


@njit(cache=True)
def run_events(bars, setups, threats, rules, account, exits, day_ends, day_eq, calendar):
    """:func:`.simulate.simulate_events` and :func:`.metrics.stream_metrics` of its result.

    ``day_ends``/``day_eq`` as for ``simulate_events`` (``day_eq`` ends up holding the
    daily returns); ``calendar`` is the dataset's
    :class:`~metaflow_nb.engine.records.Calendar`. Returns ``(metric vector, trades,
    journal)``: the vector in ``engine.metrics.METRIC_NAMES`` order.

    >>> import numpy as np
    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.dataset import dataset_calendar, dataset_day_ends
    >>> from metaflow_nb.assembly.run import prepare
    >>> data = mf.load_data("sp500_daily")
    >>> p = prepare(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"), data)
    >>> ends = dataset_day_ends(data)
    >>> vec, trades, journal = run_events(*p.records, ends, np.empty(len(ends)), dataset_calendar(data))
    >>> int(vec[10]) == len(trades) > 0    # total_trades
    True
    """
    acc, trades, journal = simulate_events(bars, setups, threats, rules, account, exits, day_ends, day_eq)
    vec = stream_metrics(acc, day_eq, trades.shape[0], bars.close.shape[0], account.cash,
                         calendar.periods_per_year, calendar.years)
    return vec, trades, journal
