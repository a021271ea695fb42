"""The batch path over a basket (issue #17 part 4): many parameter combinations of one
strategy over every instrument of a basket, in compiled ``prange`` calls.

Entry point (stable; the benchmark calls it on in-memory data)::

    sweep_basket(strategy, basket, combos, *, keep_returns=False, progress=False,
                 origin="<parameter_space>", root="optimization_config") -> BasketSweep

``basket`` is anything :func:`~metaflow_nb.services.portfolio.load_basket` takes: an
operation YAML path, a dict, or an already loaded ``(operation, items, bars)`` tuple whose
``bars`` are in-memory DataFrames per symbol. ``combos`` are ``{instance: {param:
value}}`` dicts. :func:`~metaflow_nb.services.portfolio_meta.optimize_basket` with
``engine="batch"`` (or ``"auto"``) is the verb on top of it.

Steps, all the run path's own: the combinations' params are validated once
(:func:`.batch.validate_combos`: an invalid one, fast >= slow, is a failed row); per wave
of combinations and per instrument, each feature group is built once
(:func:`~metaflow_nb.assembly.group.build_group`, with the instrument's feature cache) and
each (instrument, combination) is planned (:func:`~metaflow_nb.assembly.plan.plan_combination`).
``mode: independent``: the pairs are packed (:mod:`metaflow_nb.assembly.basket`) and run
in one :func:`~metaflow_nb.engine.nb.basket.sweep_accounts` call per wave: each pair's
metrics are its single run's, each combination's those of ``PortfolioResult.metrics``.
``mode: portfolio``: each pair is packed as a single run (``run_records``) and the wave goes
to ``assembly.portfolio.sweep_shared`` (the shared-account kernel). With ``keep_returns``
both modes keep each combination's daily portfolio returns (PBO reads them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..assembly.group import Group, build_group, forget_groups, prefetch_features
from ..assembly.pack import rules_of
from ..assembly.plan import plan_combination, plan_entry
from ..config.translator import ConfigTranslator, StrategyLike
from ..engine.metrics import METRIC_NAMES
from ..errors import ConfigError, PluginError
from .overlap import Overlap

__all__ = ["BasketSweep", "batch_unsupported", "sweep_basket"]

#: combinations per wave: each wave is one kernel call; waves pace the progress bar and
#: bound the per-wave records (plans, levels, the returns of the wave)
WAVE = 64


@dataclass
class BasketSweep:
    """What :func:`sweep_basket` returns: ``portfolio`` (combinations x metrics, in
    ``engine.metrics.METRIC_NAMES`` order; NaN rows for failed combinations),
    ``per_instrument`` (combinations x instruments x metrics, mode independent; None in
    mode portfolio), ``status`` (``"ok"``/``"failed"``) and ``errors`` per combination,
    and with ``keep_returns`` each combination's daily portfolio ``returns``
    (combinations x days of the union calendar, labelled by ``days``)."""

    mode: str
    symbols: list[str]
    combos: list[dict[str, dict[str, Any]]]
    portfolio: np.ndarray
    per_instrument: Optional[np.ndarray]
    status: list[str]
    errors: list[str]
    returns: Optional[np.ndarray] = None
    days: Optional[pd.DatetimeIndex] = None
    engine: str = "batch"
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> np.ndarray:
        """True for each combination that ran (its ``status`` is ``"ok"``), in grid order.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
        >>> sw = sweep_basket("config/runs/sma_cross.yaml", op, [{"sma_1": {"fast": 5}}, {"sma_1": {"fast": 99}}])
        >>> sw.ok.tolist()   # fast 99 >= slow 20: refused
        [True, False]
        """
        return np.array([s == "ok" for s in self.status], dtype=bool)


def batch_unsupported(specs: Sequence[Any]) -> Optional[str]:
    """Why the basket batch path cannot run these instruments' specs, or None.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> batch_unsupported([specs]), batch_unsupported([specs.with_overrides({"operation": {"data": {"trade_start": "2010-01-04"}}})])
    (None, 'data.trade_start is set (warm-up slices run on the general path)')
    """
    from .batch import unsupported_reason

    for sp in specs:
        why = unsupported_reason(sp)   # what keeps one instrument's sweep off the batch path
        if why:
            return why
        if sp.data_intrabar is not None:
            return "data.intrabar is set (intrabar resolution runs on the general path)"
    return None


def sweep_basket(strategy: StrategyLike, basket: Any, combos: Sequence[dict[str, dict[str, Any]]], *,
                 keep_returns: bool = False, progress: bool = False, origin: str = "<parameter_space>",
                 root: str = "optimization_config", desc: str = "basket sweep") -> BasketSweep:
    """Every combination of ``combos`` over the basket, on the batch path (module docstring).

    >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
    >>> sw = sweep_basket("config/runs/sma_cross.yaml", op, [{"sma_1": {"fast": 5}}, {"sma_1": {"fast": 99}}])
    >>> sw.status, sw.portfolio.shape, sw.per_instrument.shape
    (['ok', 'failed'], (2, 17), (2, 2, 17))
    """
    import time

    from .batch import validate_combos
    from .operation import shared_service
    from .portfolio import load_basket, named_by_operation

    t0 = time.perf_counter()
    basket = load_basket(basket)
    op, items, bars_by = basket
    symbols = [it["symbol"] for it in items]
    bars = [bars_by[s] for s in symbols]
    translator = ConfigTranslator()
    specs = [translator.translate(strategy, it["operation"], data=b) for it, b in zip(items, bars)]
    why = batch_unsupported(specs)
    if why:
        raise ConfigError(f"{origin}: {root}.parallel.engine: 'batch' cannot run this sweep over a basket: {why}")
    combos = list(combos)
    n_c, n_i = len(combos), len(symbols)
    # a worker's own zone param is checked against any instrument's clock: one clock
    # is enough for it to read that instrument's times twice
    clock = next((sp.read_clock for sp in specs if sp.read_clock), None)
    prepared, outcomes = validate_combos(specs[0], combos, origin=origin, root=root, clock=clock)
    status = ["failed" if o is not None else "ok" for o in outcomes]
    errors = [f"{o.error_type}: {o.error_message}" if o is not None else "" for o in outcomes]
    if n_c and not prepared:
        raise ConfigError(outcomes[0].error_message)  # type: ignore[union-attr]
    independent = op.mode == "independent"
    portfolio = np.full((n_c, len(METRIC_NAMES)), np.nan)
    per_inst = np.full((n_c, n_i, len(METRIC_NAMES)), np.nan) if independent else None
    svc = shared_service()
    caches = svc.basket_caches([f"{sp.dataset_key}|{len(b)}" for sp, b in zip(specs, bars)])
    from ..assembly.basket import pack_accounts, union_calendar, union_day_calendar

    union, own_at = union_calendar([b.index for b in bars])
    cal_name = specs[0].data_calendar
    ucal = union_day_calendar(union, cal_name)
    accounts = pack_accounts(specs, bars, own_at) if independent else None
    scratch = None
    if independent:
        import numba

        from ..engine.nb.basket import sweep_work

        # the kernel's work arrays, one block per thread, made once for every wave
        scratch = sweep_work(accounts, len(union), numba.get_num_threads())
    n_days = int(ucal.day_end.sum())
    returns = np.full((n_c, n_days), np.nan) if keep_returns else None
    t1 = time.perf_counter()
    # waves of whole feature groups, in grid order within each
    order = sorted(prepared, key=lambda p: p.group_key)
    bar = _progress(progress, len(prepared), desc)
    # a wave's kernel call (it releases the GIL) runs in a thread while this one plans the
    # next wave, so the Python planning hides behind compiled work
    shared: list = []   # mode portfolio: the prices and account every wave shares, packed once
    try:
        with Overlap() as ov:
            if not independent:
                # the prices side by side, packed in the kernel's thread beside the first
                # wave's planning (both sides of the union calendar are known already)
                from ..assembly.portfolio import union_prices
                from ..workers.features import FeatureContext

                sources = [(c.open, c.high, c.low, c.close) for c in (FeatureContext(b, cache=cache)
                                                                      for b, cache in zip(bars, caches))]
                ov.run(union_prices, (sources, union, own_at), shared.append)
            for lo, hi in _waves(len(order)):
                wave = order[lo:hi]
                planned = _plan_wave(wave, specs, bars, caches, status, errors, symbols)
                live = [(p, plans) for p, plans in planned if status[p.index] == "ok"]
                if bar is not None and len(wave) > len(live):
                    bar.update(len(wave) - len(live))  # the failed ones: done
                if live and independent:
                    call, scratch = _pack_independent(live, accounts, ucal, returns is not None, scratch)
                    idx = np.array([p.index for p, _ in live], dtype=np.int64)
                    ov.run(call[0], call[1:], lambda result, idx=idx: _store_independent(
                        idx, result, portfolio, per_inst, returns, n_i, bar))
                elif live:
                    try:
                        _run_shared(ov, shared, live, specs, bars, symbols, op, cal_name, ucal, portfolio, returns,
                                    bar, [it.get("delisted_at") for it in items])
                    except (ConfigError, PluginError) as exc:
                        # what mode: portfolio (or rank: score) refuses of the strategy: the basket's
                        # own refusal, so it names the operation file, as a single portfolio run does
                        raise named_by_operation(exc, basket) from None
                # the wave is packed: its groups go before the next wave is planned, so that one
                # reuses their memory (W7: 1,800 groups, ~230 MB of setups, kept to the end
                # before); waves follow the group keys, so a group is built again only when
                # it straddles two waves
                del planned, live
                for cache in caches:
                    forget_groups(cache)
    finally:
        svc.release_caches(caches)
        if bar is not None:
            bar.close()
    days = None
    if keep_returns:
        from ..engine.metrics import day_labels
        days = day_labels(union, ucal.day_end, cal_name)
    return BasketSweep(op.mode, symbols, combos, portfolio, per_inst, status, errors, returns, days,
                       timings={"setup_s": t1 - t0, "runs_s": time.perf_counter() - t1})


def _progress(progress: bool, total: int, desc: str) -> Any:
    if not progress or total < 2:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="combination", leave=False)


def _plan_wave(wave: list, specs: Sequence[Any], bars: Sequence[pd.DataFrame], caches: Sequence[dict],
               status: list[str], errors: list[str], symbols: list[str]) -> list[tuple[Any, list]]:
    """Per combination of the wave, each instrument's ``(group key, group, plan, rules)``;
    a combination whose group or plan fails on some instrument is failed (its error named
    with the instrument)."""
    groups: dict[tuple[int, str], Any] = {}
    entries: dict[tuple, Any] = {}
    plans_memo: dict[tuple, Any] = {}  # exit and size plans per worker and group (plan_combination)
    out = []
    # instrument by instrument, each group of the wave (built by its first combination's
    # workforce), after the features its groups declare, computed together (the
    # single-instrument sweep's batching: e.g. every sma period in one pass): one
    # instrument's features are still in the caches when its groups read them
    by_key: dict[str, Any] = {}
    for p in wave:
        by_key.setdefault(p.group_key, p.workforce)
    workforces = list(by_key.values())
    for s, (sp, b, cache) in enumerate(zip(specs, bars, caches)):
        prefetch_features(workforces, b, sp.pip_size, cache)
        for key, wf in by_key.items():
            try:
                groups[(s, key)] = build_group(wf, b, sp.pip_size, cache, key=key)
            except Exception as exc:  # noqa: BLE001 - its combinations fail, named below
                groups[(s, key)] = exc
    for p in wave:
        plans = []
        for s, sp in enumerate(specs):
            gk = (s, p.group_key)
            try:
                g = groups[gk]
                if isinstance(g, BaseException):
                    raise g
                ekey = (gk, id(p.workforce.entry))
                entry = entries.get(ekey)
                if entry is None:
                    entry = entries[ekey] = plan_entry(p.workforce, g)
                plan = plan_combination(p.workforce, g, entry, plans_memo)
                plans.append((gk, g, plan, rules_of(sp, plan)))
            except Exception as exc:  # noqa: BLE001
                status[p.index] = "failed"
                errors[p.index] = f"{type(exc).__name__}: instrument {symbols[s]!r}: {exc}"
                break
        out.append((p, plans))
    return out


def _waves(n: int) -> list[tuple[int, int]]:
    """Bounds of the waves over ``n`` combinations: :data:`WAVE` each, the first a quarter
    of that, as only its planning runs alone (the next waves' beside the kernel)."""
    bounds = []
    lo = 0
    while lo < n:
        hi = min(n, lo + (max(1, WAVE // 4) if lo == 0 else WAVE))
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _pack_independent(live: list, accounts: Any, ucal: Any, keep_returns: bool, scratch: Any) -> tuple[tuple, Any]:
    """A wave's kernel call in mode independent, packed: ``(function, *arguments)``, and
    the sweep's work arrays (their trade rows grown when this wave needs more)."""
    from ..assembly.basket import pack_pairs, run_accounts_call
    from ..engine.nb.basket import chunk_trade_rows

    groups: dict[tuple[int, str], Group] = {}
    pairs = []
    for _, plans in live:
        for gk, g, plan, r in plans:
            groups[gk] = g
            pairs.append((gk, plan, r))
    k = int(live[0][1][0][1].masks.shape[0])
    records = pack_pairs(pairs, groups, k)
    need = chunk_trade_rows(records[0], records[1], len(live[0][1]))
    if need > scratch.trades.shape[1]:
        # made before the previous wave's call returns: that call keeps the old arrays
        scratch = scratch._replace(trades=np.zeros((scratch.trades.shape[0], need + need // 4),
                                                   dtype=scratch.trades.dtype))
    return (run_accounts_call, accounts, ucal, records, np.ones(len(live), dtype=bool), keep_returns, scratch), scratch


def _store_independent(idx: np.ndarray, result: tuple[np.ndarray, np.ndarray, np.ndarray], portfolio: np.ndarray,
                       per_inst: np.ndarray, returns: Optional[np.ndarray], n_i: int, bar: Any) -> None:
    """A wave's rows (combinations ``idx`` of the sweep), from its kernel call's result."""
    per_pair, per_combo, rets = result
    portfolio[idx] = per_combo
    per_inst[idx] = per_pair.reshape(len(idx), n_i, -1)
    if returns is not None:
        returns[idx] = rets
    if bar is not None:
        bar.update(len(idx))


def _run_shared(ov: Overlap, shared: list, live: list, specs: Sequence[Any], bars: Sequence[pd.DataFrame],
                symbols: list[str], op: Any, cal_name: Optional[str], ucal: Any, portfolio: np.ndarray,
                returns: Optional[np.ndarray], bar: Any, delisted: Sequence[Any] = ()) -> None:
    """Mode portfolio: each pair packed as a single run (``run_records``), the wave's
    combinations in the kernel calls of :class:`~metaflow_nb.assembly.portfolio.SharedSweep`
    (``shared`` holds the sweep's one, made by its first wave from the
    :class:`~metaflow_nb.assembly.portfolio.UnionPrices` the kernel's thread packed), each
    call beside the packing of the next (``ov``); with ``returns`` each combination's
    daily portfolio returns too. ``ucal``: the union calendar's record; ``delisted``: each
    instrument's declared delisting (its file's last bar, or None)."""
    from ..assembly.pack import run_records
    from ..assembly.portfolio import SharedSweep
    from ..assembly.run import Prepared

    idx = np.array([p.index for p, _ in live], dtype=np.int64)
    runs = [[Prepared(g, plan, run_records(sp, g, plan, None)) for (_, g, plan, _), sp in zip(plans, specs)]
            for _, plans in live]
    if not (shared and isinstance(shared[0], SharedSweep)):
        ov.wait()  # the prices, packed in the kernel's thread
        shared.append(SharedSweep(runs[0], list(bars), float(op.cash), int(op.max_positions or 0), cal_name,
                                  symbols=symbols, rank=op.rank, prices=shared.pop(), day_calendar=ucal,
                                  delisted=delisted))
    for chunk, fn, args, rets in shared[0].calls(runs, returns=returns is not None):
        ov.run(fn, args, lambda out, at=idx[chunk], rets=rets: _store_shared(out, at, rets, portfolio, returns, bar))


def _store_shared(out: np.ndarray, at: np.ndarray, rets: np.ndarray, portfolio: np.ndarray,
                  returns: Optional[np.ndarray], bar: Any) -> None:
    """A mode portfolio kernel call's rows (combinations ``at`` of the sweep)."""
    portfolio[at] = out
    if returns is not None:
        returns[at] = rets
    if bar is not None:
        bar.update(len(at))
