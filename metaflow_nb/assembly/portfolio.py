"""The run path of a shared-cash portfolio: each instrument's group and plan as a single
run makes them (:func:`.run.prepare`), packed side by side on the union calendar into the
records of :func:`metaflow_nb.engine.nb.portfolio.simulate_portfolio`, and its outputs
split back into per-instrument trades and journals on the instruments' own bars."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..config.buildspecs import BuildSpecs
from ..engine import codes
from ..engine.records import (
    JOURNAL_DTYPE, TRADE_DTYPE, Basket, PortfolioRecords, RunRecords, Setups, Threats, account, frozen,
)
from ..errors import ConfigError
from .run import Prepared, SimulationOutput, prepare


@dataclass
class BasketOutput:
    """A portfolio run's kernel outputs: the union calendar, the records, and per
    instrument a :class:`SimulationOutput` (trades and journal on its own bars) and the
    union position of each of its own bars."""

    index: pd.DatetimeIndex
    records: PortfolioRecords
    outputs: list[SimulationOutput]
    own_at: list[np.ndarray]


def _unsupported(p: Prepared, symbol: str) -> Optional[str]:
    bars, _setups, _threats, rules, _account, exits = p.records
    if rules.trail_mode != codes.TRAIL_NONE:
        return "a trailing stop"
    if rules.breakeven_r > 0.0:
        return "a break-even move"
    if rules.partial_fraction > 0.0:
        return "a partial take-profit"
    if bool(np.any(np.asarray(exits.flat_at) != 0.0)):
        return "a session or time-of-day exit"
    if bars.fine_start.shape[0] > 0:
        return "intrabar resolution (data.intrabar)"
    return None


def _per_setup(levels: np.ndarray, m: int) -> np.ndarray:
    a = np.asarray(levels, dtype=np.float64)
    return np.full(m, a[0]) if a.shape[0] == 1 and m != 1 else a[:m]


def run_basket(specs: Sequence[BuildSpecs], bars: Sequence[pd.DataFrame], symbols: Sequence[str], cash: float,
               max_positions: int = 0, caches: Optional[Sequence[Optional[dict]]] = None) -> BasketOutput:
    """One shared-cash run of ``specs[s]`` on ``bars[s]`` for every instrument ``s``, in
    lock-step on the union calendar; ``cash`` is the shared account's, ``max_positions``
    (0: none) caps open positions plus waiting entry orders.

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.data.basket import basket_files, load_instrument
    >>> b = [load_instrument(basket_files("us_stocks")[s], s, start="2012-01-01")[0] for s in ("FB", "IBM")]
    >>> specs = [mf.build_specs("config/runs/sma_cross.yaml", data=x) for x in b]
    >>> out = run_basket(specs, b, ["FB", "IBM"], 10_000.0, max_positions=1)
    >>> len(out.index), [len(o.index) for o in out.outputs]
    (291, [196, 291])
    """
    from ..engine.nb.portfolio import simulate_portfolio

    n_inst = len(specs)
    preps = [prepare(sp, b, (caches or [None] * n_inst)[s]) for s, (sp, b) in enumerate(zip(specs, bars))]
    for p, sym in zip(preps, symbols):
        what = _unsupported(p, sym)
        if what is not None:
            raise ConfigError(f"mode: portfolio: instrument {sym!r}: the strategy uses {what}, which the "
                              f"portfolio loop does not apply yet; run it with mode: independent")
    rules = preps[0].records[3]
    for p, sym in zip(preps[1:], symbols[1:]):
        if p.records[3] != rules:
            raise ConfigError(f"mode: portfolio: instrument {sym!r} plans other exit or sizing rules than "
                              f"{symbols[0]!r}; the portfolio loop takes one set of rules")
    union = pd.DatetimeIndex([], name="time")
    for b in bars:
        union = union.union(b.index)
    n = len(union)
    own_at = [union.get_indexer(b.index).astype(np.int64) for b in bars]
    prices = {c: np.full((n_inst, n), np.nan) for c in ("open", "high", "low", "close")}
    has = np.zeros((n_inst, n), dtype=np.bool_)
    for s, (p, at) in enumerate(zip(preps, own_at)):
        bar_rec = p.records[0]
        for c in prices:
            prices[c][s, at] = getattr(bar_rec, c)
        has[s, at] = True

    # setups of every instrument, by union bar and then basket order
    parts = []
    for s, (p, at) in enumerate(zip(preps, own_at)):
        st = p.records[1]
        m = st.bar.shape[0]
        parts.append((at[st.bar], st.direction, *(_per_setup(getattr(st, f), m)
                                                   for f in ("limit", "cancel", "stop", "target")),
                      np.full(m, s, dtype=np.int64), np.arange(m, dtype=np.int64)))
    cols = [np.concatenate([pt[j] for pt in parts]) for j in range(8)]
    order = np.lexsort((cols[7], cols[6], cols[0]))
    bar_u, direction, limit, cancel, stop, target, inst, local = (c[order] for c in cols)
    m_all = bar_u.shape[0]
    setups = Setups(frozen(bar_u, np.int64), frozen(direction, np.int64), frozen(limit), frozen(cancel),
                    frozen(stop), frozen(target), frozen(np.full(max(m_all, 1), np.nan)))

    k = preps[0].records[2].mask.shape[0]
    mask = np.zeros((n_inst, k, n), dtype=np.int8)
    for s, (p, at) in enumerate(zip(preps, own_at)):
        tm = p.records[2].mask
        if tm.shape[0] != k:
            raise ConfigError(f"mode: portfolio: instrument {symbols[s]!r} has {tm.shape[0]} threats, "
                              f"{symbols[0]!r} {k}")
        if tm.shape[1] == at.shape[0]:
            mask[s][:, at] = tm
    th0 = preps[0].records[2]
    threats = Threats(frozen(mask, np.int8), th0.dd_limit, th0.dd_cooldown, th0.reason)
    acc = preps[0].records[4]
    basket = Basket(frozen(prices["open"]), frozen(prices["high"]), frozen(prices["low"]), frozen(prices["close"]),
                    frozen(has, np.bool_), frozen(inst, np.int64),
                    frozen([p.records[4].commission for p in preps]), frozen([p.records[4].slippage for p in preps]),
                    int(max_positions))
    rec = simulate_portfolio(basket, setups, threats, rules, account(cash, 0.0, 0.0, acc.leverage, acc.finalize))
    return BasketOutput(union, rec, _split(rec, preps, bars, own_at, inst, local, n), own_at)


def _split(rec: PortfolioRecords, preps: list[Prepared], bars: Sequence[pd.DataFrame], own_at: list[np.ndarray],
           inst: np.ndarray, local: np.ndarray, n: int) -> list[SimulationOutput]:
    """Each instrument's trades and journal as its single run would name them: its own
    bars, its own setup and trade numbers."""
    t_all, j_all = rec.trades, rec.journal
    trade_local = np.full(t_all.shape[0], -1, dtype=np.int64)
    outs = []
    for s, (p, b, at) in enumerate(zip(preps, bars, own_at)):
        own_of = np.full(n, -1, dtype=np.int64)
        own_of[at] = np.arange(at.shape[0])
        sel = np.flatnonzero(t_all["inst"] == s)
        trade_local[sel] = np.arange(sel.shape[0])
        tr = np.zeros(sel.shape[0], dtype=TRADE_DTYPE)
        for f in TRADE_DTYPE.names:
            tr[f] = t_all[f][sel]
        tr["opp"] = local[tr["opp"]]
        tr["entry_bar"] = own_of[tr["entry_bar"]]
        tr["exit_bar"] = own_of[tr["exit_bar"]]
        jsel = j_all[j_all["inst"] == s]
        jr = np.zeros(jsel.shape[0], dtype=JOURNAL_DTYPE)
        for f in JOURNAL_DTYPE.names:
            jr[f] = jsel[f]
        jr["bar"] = own_of[jr["bar"]]
        # -1 (none) indexes the -1 appended: arrays may be empty (no setup, no trade yet)
        jr["opp"] = np.append(local, -1)[np.where(jr["opp"] >= 0, jr["opp"], local.shape[0])]
        jr["trade"] = np.append(trade_local, -1)[np.where(jr["trade"] >= 0, jr["trade"], trade_local.shape[0])]
        # a trade still open at the end has the number it would close under, as in a single run
        still_open = (jr["event"] == codes.EV_TRADE_OPENED) & (jr["trade"] < 0)
        jr["trade"][still_open] = sel.shape[0]
        position = rec.position[s][at]
        full = RunRecords(np.full(at.shape[0], np.nan), position, tr, jr)
        outs.append(SimulationOutput(p.group, p.plan, b.index, p.records, tr, jr, None, full))
    return outs
