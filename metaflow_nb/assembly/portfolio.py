"""The run path of a shared-cash portfolio: each instrument's group and plan as a single
run makes them (:func:`.run.prepare`), packed side by side on the union calendar into the
records of :func:`metaflow_nb.engine.nb.portfolio.simulate_portfolio`, and its outputs
split back into per-instrument trades and journals on the instruments' own bars.

The batch path: ``sweep_shared(runs, bars, cash, max_positions, calendar) -> np.ndarray``
gives the metric vectors (combinations x ``N_METRICS``, ``engine.metrics.METRIC_NAMES``
order) of many combinations of one basket, ``runs[c][s]`` instrument ``s``'s
:class:`~.run.Prepared` for combination ``c``, in one ``prange`` kernel call per chunk
(:func:`metaflow_nb.engine.nb.portfolio.sweep_portfolio`); each row equals
``SharedPortfolioResult.metrics`` of :func:`run_basket` on that combination bit for bit
(:func:`basket_metrics`: both end in the same compiled function)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd

from ..config.buildspecs import BuildSpecs
from ..engine import codes
from ..engine.records import (
    JOURNAL_DTYPE, TRADE_DTYPE, Account, Basket, BasketCombos, BasketGroups, Calendar, PortfolioRecords, Rules,
    RunRecords, Setups, Threats, account, frozen,
)
from ..errors import ConfigError, PluginError
from .basket import union_calendar
from .group import setup_scores
from .pack import CHUNK_BYTES
from .run import Prepared, SimulationOutput, prepare

#: the per-setup levels of the Setups record the portfolio loop reads
_LEVELS = ("limit", "cancel", "stop", "target")


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
    bar_exits = np.asarray(exits.flat_at).astype(np.int64)
    if bool(np.any(bar_exits & codes.BAR_FLAT)):
        return "a session or time-of-day exit"
    if bool(np.any(bar_exits)):
        return "an exit condition (exit_long / exit_short)"
    if p.plan.exit.flat_at is not None:
        # a planner gave per-bar exits that flag no bar of these data (a session exit at 21:00
        # on daily bars): refused all the same, so whether a strategy runs depends on what it
        # asks for, not on the dates of a window (hunt99 F1)
        return "a session or time-of-day exit, or an exit condition (exit_long / exit_short)"
    if bars.fine_start.shape[0] > 0:
        return "intrabar resolution (data.intrabar)"
    return None


def _per_setup(levels: np.ndarray, m: int) -> np.ndarray:
    a = np.asarray(levels, dtype=np.float64)
    return np.full(m, a[0]) if a.shape[0] == 1 and m != 1 else a[:m]


def run_basket(specs: Sequence[BuildSpecs], bars: Sequence[pd.DataFrame], symbols: Sequence[str], cash: float,
               max_positions: int = 0, caches: Optional[Sequence[Optional[dict]]] = None,
               rank: str = "basket", delisted: Sequence[Optional[pd.Timestamp]] = ()) -> BasketOutput:
    """One shared-cash run of ``specs[s]`` on ``bars[s]`` for every instrument ``s``, in
    lock-step on the union calendar; ``cash`` is the shared account's, ``max_positions``
    (0: none) caps open positions plus waiting entry orders; ``rank`` orders simultaneous
    setups and fills: ``"basket"`` (the instruments' order) or ``"score"`` (the opportunity
    workers' scores, highest first, ties in basket order: :func:`.group.setup_scores`).
    ``delisted[s]``: the last bar of instrument ``s``'s file when its end is a declared
    delisting, else None (README "Portfolios"; :func:`delist_bars`).

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
    rules = _shared_rules(preps, symbols)
    prices = _union_prices(preps, bars)
    union, own_at = prices.index, prices.own_at
    n = len(union)
    merged = _merged_setups(preps, own_at, _ranked(rank), symbols)
    bar_u, direction, inst, local, order, score = merged
    limit, cancel, stop, target = (_merged_levels(preps, order, f) for f in _LEVELS)
    setups = Setups(frozen(bar_u, np.int64), frozen(direction, np.int64), frozen(limit), frozen(cancel),
                    frozen(stop), frozen(target), frozen(np.full(max(bar_u.shape[0], 1), np.nan)))
    mask = np.zeros((n_inst, _n_threats(preps, symbols), n), dtype=np.int8)
    _fill_mask(mask, preps, own_at)
    th0 = preps[0].records[2]
    threats = Threats(frozen(mask, np.int8), th0.dd_limit, th0.dd_cooldown, th0.reason)
    basket = _basket(preps, prices, inst, score, max_positions, delisted)
    rec = simulate_portfolio(basket, setups, threats, rules, _account(preps, cash))
    return BasketOutput(union, rec, _split(rec, preps, bars, own_at, inst, local, n), own_at)


def basket_metrics(out: BasketOutput, cash: float, calendar: Optional[str] = None) -> np.ndarray:
    """The metric vector (``engine.metrics.METRIC_NAMES`` order) of a shared-cash run of
    :func:`run_basket`, on the union calendar under calendar ``calendar`` (the operation's
    ``data.calendar``): its equity, its positions (exposure: some instrument holds one),
    its closed trades by entry bar then basket order (the order of the trades table), its
    detections and rejections. :func:`sweep_shared` ends in the same compiled function.

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.data.basket import basket_files, load_instrument
    >>> b = [load_instrument(basket_files("us_stocks")[s], s, start="2012-01-01")[0] for s in ("FB", "IBM")]
    >>> specs = [mf.build_specs("config/runs/sma_cross.yaml", data=x) for x in b]
    >>> out = run_basket(specs, b, ["FB", "IBM"], 10_000.0, max_positions=1)
    >>> int(basket_metrics(out, 10_000.0)[10]) == len(out.records.trades)   # total_trades
    True
    """
    from ..engine.nb.portfolio import portfolio_metrics

    cal = _calendar(out.index, calendar)
    day_ends = np.flatnonzero(cal.day_end)
    tr = out.records.trades
    order = np.lexsort((tr["inst"], tr["entry_bar"])).astype(np.int64)
    return portfolio_metrics(out.records, order, day_ends, np.empty(day_ends.shape[0]), float(cash),
                             cal.periods_per_year, cal.years)


def sweep_shared(runs: Sequence[Sequence[Prepared]], bars: Sequence[pd.DataFrame], cash: float, max_positions: int,
                 calendar: Optional[str], *, symbols: Optional[Sequence[str]] = None,
                 chunk_bytes: Optional[int] = None, returns: Optional[np.ndarray] = None,
                 rank: str = "basket", delisted: Sequence[Optional[pd.Timestamp]] = ()) -> np.ndarray:
    """Metric vectors of many shared-cash runs of one basket: ``runs[c][s]`` is instrument
    ``s``'s :class:`~.run.Prepared` for combination ``c`` (every combination on the same
    ``bars[s]``), ``cash``/``max_positions`` the shared account's, ``calendar`` the
    operation's ``data.calendar``. Returns (combinations x ``N_METRICS``), each row equal
    to :func:`basket_metrics` of :func:`run_basket` on that combination, bit for bit.

    The prices are packed once; combinations with the same features on every instrument
    (the same :class:`~.group.Group` objects, as a feature cache gives them) share their
    merged setups and threat masks; one kernel call per chunk of at most ``chunk_bytes``
    (default :data:`.pack.CHUNK_BYTES`) of masks, setups, levels and returns. ``symbols``
    name the instruments in error messages. ``returns`` (combinations x trading days of the
    union calendar, float64), when given, receives each combination's daily portfolio
    returns: ``engine.metrics.daily_returns`` of its total equity, bit for bit. What the
    portfolio loop does not apply, or a cost that differs between combinations, is a
    :class:`~metaflow_nb.errors.ConfigError`. ``rank`` and ``delisted`` are :func:`run_basket`'s.

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.data.basket import basket_files, load_instrument
    >>> b = [load_instrument(basket_files("us_stocks")[s], s, start="2012-01-01")[0] for s in ("FB", "IBM")]
    >>> specs = [[mf.build_specs("config/runs/sma_cross.yaml", data=x).with_params("sma_1", {"fast": f})
    ...           for x in b] for f in (5, 10)]
    >>> vecs = sweep_shared([[prepare(sp, x) for sp, x in zip(c, b)] for c in specs], b, 10_000.0, 1, None)
    >>> one = basket_metrics(run_basket(specs[1], b, ["FB", "IBM"], 10_000.0, 1), 10_000.0)
    >>> vecs.shape, np.array_equal(vecs[1], one, equal_nan=True)
    ((2, 17), True)
    """
    from ..engine.nb.metrics import N_METRICS

    n_c = len(runs)
    out = np.empty((n_c, N_METRICS))
    if n_c == 0:
        return out
    shared = SharedSweep(runs[0], bars, cash, max_positions, calendar, symbols=symbols, rank=rank, delisted=delisted)
    if returns is not None and (returns.shape != (n_c, shared.n_days) or returns.dtype != np.float64):
        raise ValueError(f"returns: expected a float64 array of shape ({n_c}, {shared.n_days}), got "
                         f"{returns.dtype} {returns.shape}")
    for chunk, fn, args, rets in shared.calls(runs, chunk_bytes=chunk_bytes, returns=returns is not None):
        out[chunk] = fn(*args)
        if returns is not None:
            returns[chunk] = rets
    return out


class SharedSweep:
    """What every kernel call of one portfolio sweep shares, packed once: the union
    calendar, the prices side by side (:class:`~metaflow_nb.engine.records.Basket`), the
    shared account, the trading calendar and the threats, from ``first`` (a combination's
    :class:`~.run.Prepared` per instrument, the one the others are checked against).
    :meth:`calls` packs any number of combinations into kernel calls; a sweep of several
    waves packs its prices once instead of once a wave (0.6 s a sweep on W7's basket).

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.data.basket import basket_files, load_instrument
    >>> b = [load_instrument(basket_files("us_stocks")[s], s, start="2012-01-01")[0] for s in ("FB", "IBM")]
    >>> runs = [[prepare(mf.build_specs("config/runs/sma_cross.yaml", data=x), x) for x in b]]
    >>> shared = SharedSweep(runs[0], b, 10_000.0, 1, None)
    >>> [(chunk, fn(*args).shape) for chunk, fn, args, _ in shared.calls(runs)]
    [([0], (1, 17))]
    """

    def __init__(self, first: Sequence[Prepared], bars: Sequence[pd.DataFrame], cash: float, max_positions: int,
                 calendar: Optional[str], *, symbols: Optional[Sequence[str]] = None, rank: str = "basket",
                 prices: Optional["UnionPrices"] = None, day_calendar: Optional[Calendar] = None,
                 delisted: Sequence[Optional[pd.Timestamp]] = ()):
        n_inst = len(bars)
        self.names = list(symbols) if symbols is not None else [f"#{s}" for s in range(n_inst)]
        self.first = first
        self.ranked = _ranked(rank)
        _check_combination(0, first, first, self.names)  # refused before the prices are packed
        if prices is None:
            prices = _union_prices(first, bars)
        elif not all(_same(a, b) for p, src in zip(first, prices.sources) for a, b in zip(p.records[0][:4], src)):
            raise ValueError("prices: packed from other price arrays than the runs' bars")
        self.own_at = prices.own_at
        self.n = len(prices.index)
        self.k = _n_threats(self.first, self.names)
        self.reason = self.first[0].records[2].reason
        self.basket = _basket(self.first, prices, np.zeros(0, dtype=np.int64), np.zeros(0), max_positions, delisted)
        self.account = _account(self.first, cash)
        cal = day_calendar if day_calendar is not None else _calendar(prices.index, calendar)
        # read-only, as every other array the kernel gets (one compiled version)
        self.calendar = Calendar(frozen(cal.day_end, np.bool_), cal.periods_per_year, cal.years)
        self.n_days = int(self.calendar.day_end.sum())

    def calls(self, runs: Sequence[Sequence[Prepared]], *, chunk_bytes: Optional[int] = None, returns: bool = False
              ) -> Iterator[tuple[list[int], Callable[..., np.ndarray], tuple, np.ndarray]]:
        """The kernel calls of combinations ``runs``, one per chunk: ``(the chunk's places
        in runs, the kernel, its arguments, the chunk's returns array)``; ``fn(*args)``
        gives the chunk's metric rows and fills the returns (combinations x days, when
        ``returns``). Each is packed when the caller asks for it, so a caller may pack the
        next while the last one runs (the kernel is ``nogil``)."""
        import numba

        from ..engine.nb.portfolio import sweep_portfolio

        rules = [_check_combination(c, preps, self.first, self.names) for c, preps in enumerate(runs)]
        for c, preps in enumerate(runs):
            if _n_threats(preps, self.names) != self.k or not np.array_equal(preps[0].records[2].reason, self.reason):
                raise ConfigError(f"mode: portfolio sweep: combination {c} has other threats than combination 0; a "
                                  f"sweep varies parameters, not the workforce")
        template = self.first[0].records[3]
        day_bytes = 8 * self.n_days if returns else 0
        # combinations with the same features on every instrument share setups and masks
        keys: dict[tuple, int] = {}
        group_of = np.array([keys.setdefault(tuple(id(p.group) for p in preps), len(keys)) for preps in runs])
        for chunk in _chunks(runs, group_of, len(self.own_at) * self.k * self.n, 256 + day_bytes + 16 * self.k,
                             CHUNK_BYTES if chunk_bytes is None else chunk_bytes):
            groups, combos = _sweep_records([runs[j] for j in chunk], group_of[chunk], self.own_at, self.n, self.k,
                                            self.reason, [rules[j] for j in chunk], self.ranked)
            rets = np.empty((len(chunk), self.n_days) if returns else (0, 0))
            yield chunk, sweep_portfolio, (self.basket, self.calendar, groups, combos, template, self.account, rets,
                                           4 * numba.get_num_threads()), rets


def _chunks(runs: Sequence[Sequence[Prepared]], group_of: np.ndarray, mask_bytes: int, combo_bytes: int,
            limit: int) -> list[list[int]]:
    """The combinations in kernel calls of at most ``limit`` bytes of inputs (one at least):
    per group its masks (``mask_bytes``) and merged setups, per combination ``combo_bytes``
    and its levels. A group's combinations go together, in their order, so a group is
    packed once, or once more when it straddles a chunk's end."""
    out: list[list[int]] = []
    chunk: list[int] = []
    seen: set[int] = set()
    size = 0
    for c in np.argsort(group_of, kind="stable").tolist():
        g = int(group_of[c])
        own = combo_bytes + 8 * sum(getattr(p.records[1], f).shape[0] for p in runs[c] for f in _LEVELS)
        shared = mask_bytes + 24 * sum(p.records[1].bar.shape[0] for p in runs[c])
        if chunk and size + own + (0 if g in seen else shared) > limit:
            out.append(chunk)
            chunk, seen, size = [], set(), 0
        size += own + (0 if g in seen else shared)
        chunk.append(c)
        seen.add(g)
    return out + [chunk] if chunk else out


def _sweep_records(runs: list[Sequence[Prepared]], group_of: np.ndarray, own_at: list[np.ndarray], n: int, k: int,
                   reason: np.ndarray, rules_list: list[Rules], ranked: bool = False
                   ) -> tuple[BasketGroups, BasketCombos]:
    """The group and combination records of one kernel call over combinations ``runs``
    (``group_of``: each one's group number, any numbering)."""
    n_c, n_inst = len(runs), len(own_at)
    gpos: dict[int, int] = {}
    firsts = []
    for j, g in enumerate(group_of.tolist()):
        if g not in gpos:
            gpos[g] = len(firsts)
            firsts.append(j)
    mask = np.zeros((len(firsts), n_inst, k, n), dtype=np.int8)
    merged = []
    for gi, j in enumerate(firsts):
        merged.append(_merged_setups(runs[j], own_at, ranked))
        _fill_mask(mask[gi], runs[j], own_at)
    opp_off = np.zeros(len(firsts) + 1, dtype=np.int64)
    opp_off[1:] = np.cumsum([mg[0].shape[0] for mg in merged])
    bar, direction, inst = (frozen(np.concatenate([mg[j] for mg in merged]), np.int64) for j in range(3))
    score = frozen(np.concatenate([mg[5] for mg in merged]) if ranked else np.zeros(0))
    groups = BasketGroups(frozen(opp_off, np.int64), bar, direction, inst, score, frozen(mask, np.int8),
                          frozen(reason, np.int64))
    parts: dict[str, list[np.ndarray]] = {f: [] for f in _LEVELS}
    sizes = dict.fromkeys(_LEVELS, 0)
    seen: dict[tuple, tuple[int, int]] = {}
    levels_at = np.empty((n_c, 8), dtype=np.int64)
    combo_group = np.empty(n_c, dtype=np.int64)
    for j, preps in enumerate(runs):
        gi = gpos[int(group_of[j])]
        combo_group[j] = gi
        for q, f in enumerate(_LEVELS):
            arrays = [getattr(p.records[1], f) for p in preps]
            key = _constant_key(arrays)
            if key is None:
                key = (gi, tuple(id(a) for a in arrays))
            span = seen.get((f, key))
            if span is None:
                values = _merged_levels(preps, merged[gi][4], f) if key[0] != "constant" else \
                    np.asarray(arrays[0][:1], dtype=np.float64)
                span = seen[(f, key)] = (sizes[f], sizes[f] + values.shape[0])
                parts[f].append(values)
                sizes[f] += values.shape[0]
            levels_at[j, 2 * q:2 * q + 2] = span
    flat = {f: frozen(np.concatenate(parts[f]) if parts[f] else np.zeros(0)) for f in _LEVELS}
    th = [preps[0].records[2] for preps in runs]
    # the fields of Rules each combination brings, as BasketCombos orders them
    ruled = [frozen(np.array([getattr(r, f) for r in rules_list]), dt) for f, dt in (
        ("stop_mode", np.int64), ("target_mode", np.int64), ("reverse", np.int64), ("allow_long", np.bool_),
        ("allow_short", np.bool_), ("expiry_bars", np.int64), ("sizer_kind", np.int64), ("sizer_param", np.float64),
        ("whole_units", np.bool_), ("time_stop_bars", np.int64))]
    combos = BasketCombos(
        frozen(combo_group, np.int64), frozen(levels_at, np.int64), flat["limit"], flat["cancel"], flat["stop"],
        flat["target"], frozen(np.array([t.dd_limit for t in th], dtype=np.float64).reshape(n_c, k)),
        frozen(np.array([t.dd_cooldown for t in th], dtype=np.int64).reshape(n_c, k), np.int64), *ruled)
    return groups, combos


def _constant_key(arrays: list[np.ndarray]) -> Optional[tuple]:
    """``("constant", bits)`` when every instrument's levels are one and the same value
    (the kernel then reads that one number for every setup), else None."""
    if any(a.shape[0] != 1 for a in arrays):
        return None
    v = float(arrays[0][0])
    if any(float(a[0]).hex() != v.hex() for a in arrays[1:]):
        return None
    return ("constant", v.hex())


def _check_combination(c: int, preps: Sequence[Prepared], first: Sequence[Prepared], symbols: list[str]) -> Rules:
    """A combination's rules, once what the portfolio loop does not apply is refused (as
    :func:`run_basket` refuses it) and its bars and costs are the first combination's."""
    if len(preps) != len(symbols):
        raise ConfigError(f"mode: portfolio sweep: combination {c} has {len(preps)} instruments, the basket "
                          f"{len(symbols)}")
    rules = _shared_rules(preps, symbols)
    if preps is first:
        return rules
    for p, p0, sym in zip(preps, first, symbols):
        if not all(_same(getattr(p.records[0], f), getattr(p0.records[0], f)) for f in ("open", "high", "low",
                                                                                        "close")):
            raise ConfigError(f"mode: portfolio sweep: combination {c}, instrument {sym!r}: other bars than "
                              f"combination 0's; a sweep runs every combination on the same data")
        a, a0 = p.records[4], p0.records[4]
        if (a.commission, a.slippage, a.leverage, a.finalize) != (a0.commission, a0.slippage, a0.leverage,
                                                                  a0.finalize):
            raise ConfigError(f"mode: portfolio sweep: combination {c}, instrument {sym!r}: commission, slippage, "
                              f"leverage or finalize_trades differ from combination 0's; the batch shares one "
                              f"account")
    return rules


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two price arrays hold the same values (the same memory, without a look)."""
    if a is b or (a.shape == b.shape and a.strides == b.strides
                  and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]):
        return True
    return bool(np.array_equal(a, b))


def _shared_rules(preps: Sequence[Prepared], symbols: Sequence[str]) -> Rules:
    """The one set of rules of a shared-cash run, once every instrument's plan was checked
    for what the portfolio loop does not apply."""
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
    return rules


def _calendar(index: pd.DatetimeIndex, name: Optional[str]) -> Calendar:
    from ..engine.metrics import calendar

    day_end, ppy, years = calendar(index, name)
    return Calendar(frozen(day_end, np.bool_), float(ppy), float(years))


class UnionPrices(NamedTuple):
    """The instruments' prices side by side on the union calendar ``index``:
    ``open``/``high``/``low``/``close`` (instruments x union bars, NaN where one has no
    bar) and ``has`` (where it has one), in column order, so that the loop reads every
    instrument of one bar from one or two cache lines; ``own_at[s]`` places instrument
    ``s``'s bars on ``index``; ``sources[s]`` are the price arrays it was packed from."""

    index: pd.DatetimeIndex
    own_at: list[np.ndarray]
    sources: list[tuple[np.ndarray, ...]]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    has: np.ndarray


def union_prices(prices: Sequence[Sequence[np.ndarray]], index: pd.DatetimeIndex, own_at: list[np.ndarray]
                 ) -> UnionPrices:
    """:class:`UnionPrices` of instruments whose ``(open, high, low, close)`` are
    ``prices[s]``, with ``index, own_at`` from :func:`.basket.union_calendar`. The copying
    is compiled and releases the GIL: a sweep packs its prices beside its first planning.

    >>> idx = pd.DatetimeIndex(["2024-01-02", "2024-01-03", "2024-01-04"])
    >>> up = union_prices([(np.array([1.0, 2.0]),) * 4, (np.array([5.0]),) * 4], idx,
    ...                   [np.array([0, 2]), np.array([1])])
    >>> up.close.tolist(), up.has.tolist()
    ([[1.0, nan, 2.0], [nan, 5.0, nan]], [[True, False, True], [False, True, False]])
    >>> union_prices([(np.array([5.0]),) * 4], idx, [np.array([3])])
    Traceback (most recent call last):
    ValueError: union_prices: every instrument needs one place on the union calendar per bar
    """
    from ..engine.nb.portfolio import place_instrument

    n_inst, n = len(prices), len(index)
    # the compiled scatter does not check its indices
    if n_inst != len(own_at) or any(any(a.shape[0] != len(at) for a in src[:4]) or (len(at) and not 0 <= at.min()
                                    <= at.max() < n) for src, at in zip(prices, own_at)):
        raise ValueError("union_prices: every instrument needs one place on the union calendar per bar")
    cols = [np.full((n_inst, n), np.nan, order="F") for _ in range(4)]
    has = np.zeros((n_inst, n), dtype=np.bool_, order="F")
    sources = []
    for s, (src, at) in enumerate(zip(prices, own_at)):
        src = tuple(src[:4])
        place_instrument(*cols, has, s, np.ascontiguousarray(at, dtype=np.int64),
                         *(np.ascontiguousarray(a, dtype=np.float64) for a in src))
        sources.append(src)
    for a in (*cols, has):
        a.flags.writeable = False
    return UnionPrices(index, list(own_at), sources, *cols, has)


def _union_prices(preps: Sequence[Prepared], bars: Sequence[pd.DataFrame]) -> UnionPrices:
    """:func:`union_prices` of the runs' own price arrays on the union of ``bars``' calendars."""
    return union_prices([p.records[0][:4] for p in preps], *union_calendar([b.index for b in bars]))


def _basket(preps: Sequence[Prepared], prices: UnionPrices, inst: np.ndarray, score: np.ndarray,
            max_positions: int, delisted: Sequence[Optional[pd.Timestamp]] = ()) -> Basket:
    """The :class:`~metaflow_nb.engine.records.Basket` of ``prices``: with the
    instruments' costs, the setups' instruments ``inst`` and scores ``score`` (empty:
    basket order), the cap on positions and :func:`delist_bars` of ``delisted``."""
    return Basket(prices.open, prices.high, prices.low, prices.close, prices.has, frozen(inst, np.int64),
                  frozen(score), frozen([p.records[4].commission for p in preps]),
                  frozen([p.records[4].slippage for p in preps]), int(max_positions),
                  frozen(delist_bars(prices.index, prices.has, delisted), np.int64))


def delist_bars(index: pd.DatetimeIndex, has: np.ndarray, delisted: Sequence[Optional[pd.Timestamp]]) -> np.ndarray:
    """Per instrument of ``has`` (instruments x bars), the union bar of its declared
    delisting: ``delisted[s]`` is the last bar of its file (None, or no entry: not
    declared), a bar of these bars only when the data reach it and the basket goes on
    after it (-1 otherwise). Anchored on the file, not on these bars: a cut of the data, a
    window, that ends inside a halt is no delisting.

    >>> idx = pd.date_range("2024-01-01", periods=4, freq="D")
    >>> has = np.array([[True, True, False, False], [True, True, True, True]])
    >>> delist_bars(idx, has, [idx[1], None]).tolist(), delist_bars(idx, has, [idx[3]]).tolist()
    ([1, -1], [-1, -1])
    """
    n = len(index)
    out = np.full(has.shape[0], -1, dtype=np.int64)
    for s, ts in enumerate(delisted):
        if ts is None:
            continue
        at = int(index.searchsorted(ts))
        if at < n - 1 and index[at] == ts and has[s, at]:
            out[s] = at
    return out


def _account(preps: Sequence[Prepared], cash: float) -> Account:
    """The shared account: ``cash``, the first instrument's leverage and finalize (costs
    are per instrument, in the :class:`Basket`)."""
    acc = preps[0].records[4]
    return account(cash, 0.0, 0.0, acc.leverage, acc.finalize)


def _merged_setups(preps: Sequence[Prepared], own_at: list[np.ndarray], ranked: bool = False,
                   symbols: Optional[Sequence[str]] = None) -> tuple[np.ndarray, ...]:
    """Every instrument's setups by union bar, then basket order (then the instrument's
    own order): ``(union bar, direction, instrument, own setup number, order, score)``,
    ``order`` the permutation of the instruments' setups concatenated in basket order.
    ``ranked``: by union bar, then score (highest first), then basket order, and ``score``
    the setups' scores (:func:`.group.setup_scores`); else ``score`` is empty."""
    if not ranked:
        # a counting sort over the union bars, compiled: a sweep merges every group of every
        # wave (a stable argsort of the concatenated keys made ~13 temporaries a group)
        from ..engine.nb.portfolio import merge_by_union_bar

        setups = [p.records[1] for p in preps]
        off = np.zeros(len(preps) + 1, dtype=np.int64)
        off[1:] = np.cumsum([st.bar.shape[0] for st in setups])
        ubar = np.concatenate([at[st.bar] for st, at in zip(setups, own_at)]) if setups else np.zeros(0, np.int64)
        direction = np.concatenate([st.direction for st in setups]) if setups else np.zeros(0, np.int64)
        n = max((int(at[-1]) + 1 for at in own_at if at.shape[0]), default=0)
        return (*merge_by_union_bar(ubar.astype(np.int64, copy=False), direction.astype(np.int64, copy=False), off,
                                    n), np.zeros(0))
    parts = []
    for s, (p, at) in enumerate(zip(preps, own_at)):
        st = p.records[1]
        m = st.bar.shape[0]
        parts.append((at[st.bar], st.direction, np.full(m, s, dtype=np.int64), np.arange(m, dtype=np.int64)))
    cols = [np.concatenate([pt[j] for pt in parts]) for j in range(4)]
    score = np.concatenate([_scores(p, s, symbols) for s, p in enumerate(preps)])
    # -score: a stable sort ascending puts the highest first (finite scores: checked)
    order = np.lexsort((cols[3], cols[2], -score, cols[0]))
    return (*(c[order] for c in cols), order, score[order])


def _scores(p: Prepared, s: int, symbols: Optional[Sequence[str]]) -> np.ndarray:
    """Instrument ``s``'s setup scores; a plugin's bad score names the instrument (its bar
    numbers are that instrument's own)."""
    try:
        return setup_scores(p.group)
    except PluginError as exc:
        if symbols is None:
            raise
        # from exc: its chain tells a Ctrl-C inside the score from the plugin's own error
        raise PluginError(f"instrument {symbols[s]!r}: {exc}") from exc


def _ranked(rank: str) -> bool:
    """Whether ``rank`` (an operation's ``rank:``) orders simultaneous setups by score."""
    if rank not in ("basket", "score"):
        raise ConfigError(f"rank: {rank!r}; expected 'basket' (the instruments' order) or 'score' (the "
                          f"opportunity workers' scores)")
    return rank == "score"


def _merged_levels(preps: Sequence[Prepared], order: np.ndarray, field: str) -> np.ndarray:
    """One level of every setup (``field`` of :class:`Setups`) in the merged order."""
    return np.concatenate([_per_setup(getattr(p.records[1], field), p.records[1].bar.shape[0])
                           for p in preps])[order]


def _n_threats(preps: Sequence[Prepared], symbols: Sequence[str]) -> int:
    k = preps[0].records[2].mask.shape[0]
    for p, sym in zip(preps, symbols):
        if p.records[2].mask.shape[0] != k:
            raise ConfigError(f"mode: portfolio: instrument {sym!r} has {p.records[2].mask.shape[0]} threats, "
                              f"{symbols[0]!r} {k}")
    return k


def _fill_mask(mask: np.ndarray, preps: Sequence[Prepared], own_at: list[np.ndarray]) -> None:
    """Write each instrument's threat masks onto its bars of ``mask`` (instruments x
    threats x union bars, zeros elsewhere)."""
    if mask.shape[1] == 0:
        return  # no mask-type threat (a fancy index over every bar would still cost ~70 us)
    for s, (p, at) in enumerate(zip(preps, own_at)):
        tm = p.records[2].mask
        if tm.shape[1] == at.shape[0]:
            mask[s][:, at] = tm


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
        # the kernel's exit bar is the union entry plus the own bars held
        tr["exit_bar"] = own_of[tr["entry_bar"]] + (tr["exit_bar"] - tr["entry_bar"])
        tr["entry_bar"] = own_of[tr["entry_bar"]]
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
