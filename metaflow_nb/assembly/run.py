"""The kernel calls of the run path: one run with its records, or one batch of a sweep."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd

from ..config.buildspecs import BuildSpecs
from ..engine.records import Account, Bars, Calendar, Rules, RunRecords, Setups, Threats
from .group import Group, build_group
from .pack import account_of, run_records, sweep_records
from .plan import CombinationPlan, plan_combination
from .workforce import Workforce


@dataclass
class SimulationOutput:
    """One run's kernel records plus what is needed to name them (its group and plan)."""

    group: Group
    plan: CombinationPlan
    index: pd.DatetimeIndex
    records: RunRecords

    @property
    def equity(self) -> np.ndarray:
        return self.records.equity

    @property
    def position(self) -> np.ndarray:
        return self.records.position

    @property
    def trades(self) -> np.ndarray:
        return self.records.trades

    @property
    def journal(self) -> np.ndarray:
        return self.records.journal


def trade_start_bar(specs: BuildSpecs, index: pd.DatetimeIndex) -> int:
    """Index of the first bar setups may be acted on (``data.trade_start``), 0 without one."""
    ts = specs.trade_start
    if not ts:
        return 0
    return int(index.searchsorted(pd.Timestamp(ts), side="left"))


class Prepared(NamedTuple):
    """A run up to the kernel call: its group, its plan and the kernel's five records."""

    group: Group
    plan: CombinationPlan
    records: tuple[Bars, Setups, Threats, Rules, Account]


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
    return Prepared(group, plan, run_records(specs, group, plan))


def run_one(specs: BuildSpecs, data: pd.DataFrame, cache: Optional[dict] = None,
            workforce: Optional[Workforce] = None) -> SimulationOutput:
    """One backtest through the run path: group, plan, pack, simulate with full records.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> out = run_one(specs, mf.load_data("sp500_daily"))
    >>> out.equity.shape == out.position.shape, out.trades.dtype.names[:3]
    (True, ('opp', 'direction', 'entry_bar'))
    """
    from ..engine.nb.simulate import simulate

    p = prepare(specs, data, cache, workforce)
    return SimulationOutput(p.group, p.plan, data.index, simulate(*p.records))


def run_sweep_call(specs: BuildSpecs, bars: Bars, calendar: Calendar, rules: Rules,
                   items: Sequence[tuple[str, CombinationPlan, Any]], groups: dict[str, Group],
                   keep_returns: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Metric vectors (and, with ``keep_returns``, daily returns) of combinations that
    share ``rules`` (:func:`.pack.shared_rules`), in one batch kernel call."""
    from ..engine.nb.batch import sweep

    sweep_groups, combos = sweep_records([(gk, plan, r) for gk, plan, r, *_ in items], groups)
    n_days = int(calendar.day_end.sum())
    returns_out = np.empty((len(items), n_days) if keep_returns else (0, 0))
    vecs = sweep(bars, calendar, sweep_groups, combos, rules, account_of(specs), returns_out)
    return vecs, returns_out
