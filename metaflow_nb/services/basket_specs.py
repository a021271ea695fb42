"""What identifies one portfolio run, for the reports that record it and ``--verify``
that runs it again: :class:`BasketSpecs`, the basket's counterpart of a
:class:`~metaflow_nb.config.buildspecs.BuildSpecs`.

A portfolio run is its blueprint, its resolved basket (every instrument listed with the
file it reads, :func:`resolved_operation`) and, in a walk-forward, the window of the
union calendar it ran on. Its :attr:`BasketSpecs.hash` joins the instruments' own specs
hashes (each covers the blueprint, the instrument's operation and its data fingerprint)
with what only the basket has (mode, max_positions, rank).
:func:`~metaflow_nb.services.portfolio.rerun_portfolio` runs a record again from those
plain documents; nothing in a record is imported.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pandas as pd

from ..config.buildspecs import canonical_json
from ..config.portfolio import PortfolioOperation
from ..data.loader import slice_validated, trusted_fingerprint


class LoadedBasket(tuple):
    """A loaded basket, ``(operation, items, bars)``
    (:func:`~metaflow_nb.services.portfolio.load_basket`), a 3-tuple to every caller, that
    also knows its ``origin``: the operation's file (``<operation>`` for a dict), which the
    runs and sweeps over it name in their refusals once the file itself is out of sight.

    >>> b = LoadedBasket(("op", [], {}), "ops/basket.yaml")
    >>> op, items, bars = b
    >>> op, b.origin, basket_origin(b), basket_origin(("op", [], {}))
    ('op', 'ops/basket.yaml', 'ops/basket.yaml', '<operation>')
    """

    origin: str

    def __new__(cls, parts: Sequence[Any], origin: str = "<operation>") -> "LoadedBasket":
        self = super().__new__(cls, parts)
        self.origin = origin  # in the instance's __dict__: pickled and copied with it
        return self


class BasketParallelWarning(UserWarning):
    """Parallel options given to a meta verb over a basket, whose runs go in this process
    (README "Portfolios"): they are not used."""


#: the runner's options a basket's meta verbs do not use (``engine`` they do)
_PROCESS_OPTIONS = ("backend", "max_workers", "timeout_per_run", "scheduler")


def warn_unused_parallel(parallel: Any, options: dict[str, Any], origin: str, root: str) -> None:
    """Warn when a basket's meta config (its ``parallel:`` block) or the caller's options
    (``--backend``, ``--workers``, ``--scheduler``) ask for worker processes, which a
    basket's runs do not use: a flag ignored without a word looked like it had worked.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_unused_parallel(None, {"backend": "dask", "progress": True}, "opt.yaml", "optimization_config")
    >>> str(w[0].message)
    "opt.yaml: optimization_config: a basket's runs go in this process (README 'Portfolios'): backend 'dask' not used"
    """
    given = {k: options[k] for k in _PROCESS_OPTIONS if options.get(k) is not None}
    fields = getattr(parallel, "model_fields_set", set())
    given.update({f"parallel.{k}": getattr(parallel, k) for k in _PROCESS_OPTIONS if k in fields and k not in given})
    # runs in this process, one after the other, are what a basket does: no unused request
    given = {k: v for k, v in given.items() if not _in_process(k.rsplit(".", 1)[-1], v)}
    if given:
        what = ", ".join(f"{k} {v!r}" for k, v in given.items())
        warnings.warn(f"{origin}: {root}: a basket's runs go in this process (README 'Portfolios'): {what} not used",
                      BasketParallelWarning, stacklevel=3)


def _in_process(option: str, value: Any) -> bool:
    """Whether ``option`` = ``value`` asks for what a basket's meta verbs do anyway (the
    workers bound their kernels' threads: :func:`basket_threads`).

    >>> _in_process("backend", "sequential"), _in_process("max_workers", 3), _in_process("backend", "loky")
    (True, True, False)
    """
    return (option == "backend" and value == "sequential") or option == "max_workers"


def basket_threads(parallel: Any, options: dict[str, Any]) -> Any:
    """A context in which a basket's kernels use at most the workers asked for
    (``--workers``/``workers=``, else a ``parallel.max_workers`` the config sets): a
    basket's runs go in this process, and ran on every core whatever was asked.

    >>> import numba
    >>> with basket_threads(None, {"max_workers": 1}):
    ...     numba.get_num_threads()
    1
    """
    from .batch import kernel_threads

    n = options.get("max_workers")
    if n is None and "max_workers" in getattr(parallel, "model_fields_set", set()):
        n = parallel.max_workers
    return kernel_threads(n)


def _delisted(op: dict[str, Any]) -> dict[str, Any]:
    """The delisting declaration of an operation's document, for its ids: nothing when
    there is none (the ids of every basket without one stay what they were)."""
    return {} if op.get("delisted") is None else {"delisted": op["delisted"]}


def basket_origin(basket: Any) -> str:
    """Where a loaded basket's operation came from (:class:`LoadedBasket`); ``<operation>``
    for a tuple put together in memory.

    >>> basket_origin(LoadedBasket(("op", [], {}), "ops/basket.yaml")), basket_origin(("op", [], {}))
    ('ops/basket.yaml', '<operation>')
    """
    return getattr(basket, "origin", "<operation>")


def resolved_operation(op: PortfolioOperation, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The portfolio operation ``op`` as a document with every instrument of ``items``
    (:func:`~metaflow_nb.config.portfolio.instrument_operations`) listed under
    ``instruments:`` with the file it reads and its own costs: it runs the same basket
    from any folder (a universe's glob and relative paths are resolved).

    >>> from metaflow_nb.config.portfolio import instrument_operations
    >>> op = PortfolioOperation(universe={"path": "us_stocks", "symbols": ["IBM"]}, commission=0.001)
    >>> doc = resolved_operation(op, instrument_operations(op, "<operation>", None))
    >>> import os
    >>> doc["universe"], [(i["symbol"], os.path.basename(i["source"]), i["commission"]) for i in doc["instruments"]]
    (None, [('IBM', 'IBM.csv.gz', 0.001)])
    """
    doc = op.model_dump(mode="json")
    doc["universe"] = None
    doc["instruments"] = [{"symbol": it["symbol"], "source": it["source"],
                           "pip_size": it["operation"]["instrument"]["pip_size"],
                           "commission": it["operation"]["commission"], "slippage": it["operation"]["slippage"],
                           "timezone": it["read"]["timezone"], "date_column": it["read"]["date_column"],
                           "prices": it["read"]["prices"]} for it in items]
    return doc


def slice_basket(basket: tuple[PortfolioOperation, list, dict], start: pd.Timestamp, end: pd.Timestamp,
                 trade_start: Optional[pd.Timestamp] = None) -> tuple[PortfolioOperation, list, dict]:
    """A loaded basket (:func:`~metaflow_nb.services.portfolio.load_basket`) cut to the
    bars from ``start`` to ``end`` (both kept): an instrument with no bar there sits it
    out; with ``trade_start`` the bars before it only warm the workers up, and an
    instrument without a bar from ``trade_start`` on (delisted in the warm-up) sits it out
    too: it could not trade, and its cash would dilute the window's return.

    >>> from metaflow_nb.services.portfolio import load_basket
    >>> basket = load_basket({"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}})
    >>> op, items, bars = slice_basket(basket, pd.Timestamp("2012-01-01"), pd.Timestamp("2012-03-30"))
    >>> [it["symbol"] for it in items], len(bars["IBM"])   # FB listed in May 2012: it sits this one out
    (['IBM'], 62)
    """
    op, items, bars = basket
    kept, part = [], {}
    for it in items:
        whole = bars[it["symbol"]]
        b = whole.loc[start:end]
        if not len(b) or (trade_start is not None and b.index[-1] < trade_start):
            continue
        if trusted_fingerprint(whole) is not None:
            # validated bars: the window is fingerprinted once here, and every run of it (a
            # window's sweep, its warm-up check) reads it as validated rather than again
            b = slice_validated(whole, start, end, str(whole.attrs.get("source", it["symbol"])))
        if trade_start is not None:
            single = it["operation"]
            it = {**it, "operation": {**single, "data": {**single["data"], "trade_start": trade_start.isoformat()}}}
        kept.append(it)
        part[it["symbol"]] = b
    return LoadedBasket((op, kept, part), basket_origin(basket))


@dataclass(frozen=True)
class BasketSpecs:
    """One portfolio run as a report records it: ``blueprint``, the resolved basket
    ``operation`` (:func:`resolved_operation`), ``window`` (``start``, ``end``,
    ``trade_start`` as ISO strings, or None for the whole basket) and each instrument's
    ``symbol``, ``specs_hash``, ``run_id`` and ``data_fingerprint``. ``cash`` (the
    portfolio's starting equity), ``commission``, ``slippage`` and ``data_calendar`` are
    what the variant and walk-forward tables read of a run's specs."""

    blueprint: dict[str, Any]
    operation: dict[str, Any]
    instruments: tuple[dict[str, str], ...]
    window: Optional[dict[str, Optional[str]]]
    cash: float
    commission: float
    slippage: float
    data_calendar: Optional[str]

    @property
    def hash(self) -> str:
        """sha256 of the instruments' specs hashes and the basket's own rules.

        >>> from metaflow_nb.services.portfolio import run_portfolio
        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> bs = run_portfolio("config/runs/sma_cross.yaml", op).basket_specs
        >>> len(bs.hash), bs.hash == run_portfolio("config/runs/sma_cross.yaml", op).basket_specs.hash
        (64, True)
        """
        op = self.operation
        return hashlib.sha256(canonical_json({
            "mode": op["mode"], "max_positions": op["max_positions"], "rank": op["rank"], **_delisted(op),
            "instruments": [[i["symbol"], i["specs_hash"]] for i in self.instruments]}).encode()).hexdigest()

    @property
    def run_id(self) -> str:
        """The id the variant and walk-forward tables give the run: the first 16 hex digits
        of the sha256 of its instruments' run ids and, for one shared account, of the rules
        that decide which of their setups trade (``mode``, ``max_positions``, ``rank``).

        >>> from metaflow_nb.services.portfolio import run_portfolio
        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> bs = run_portfolio("config/runs/sma_cross.yaml", op).basket_specs
        >>> len(bs.run_id), bs.run_id == bs.hash[:16]   # not the hash: a run id reads run ids only
        (16, False)
        >>> shared = run_portfolio("config/runs/sma_cross.yaml", {**op, "mode": "portfolio", "max_positions": 1})
        >>> shared.basket_specs.run_id != bs.run_id
        True
        """
        text = "|".join(i["run_id"] for i in self.instruments)
        op = self.operation
        if op["mode"] != "independent":
            # independent accounts are their instruments' runs; a shared one is not
            text += "|" + canonical_json({"mode": op["mode"], "max_positions": op["max_positions"], "rank": op["rank"],
                                          **_delisted(op)})
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def data_fingerprint(self) -> str:
        """sha256 of the instruments' data fingerprints (same files, same bars: same fingerprint)."""
        return hashlib.sha256("|".join(i["data_fingerprint"] for i in self.instruments).encode()).hexdigest()

    @property
    def data_sources(self) -> list[str]:
        """The data source (a sample name or a file) of every instrument that ran.

        >>> from metaflow_nb.services.portfolio import run_portfolio
        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> bs = run_portfolio("config/runs/sma_cross.yaml", op).basket_specs
        >>> import os
        >>> [os.path.basename(s) for s in bs.data_sources]
        ['FB.csv.gz', 'IBM.csv.gz']
        """
        ran = {i["symbol"] for i in self.instruments}
        return [i["source"] for i in self.operation["instruments"] if i["symbol"] in ran]

    @property
    def plugins(self) -> tuple[str, ...]:
        """The plugin modules the operation loads (its ``plugins:``), empty for none."""
        return tuple(self.operation.get("plugins") or ())

    @property
    def seed(self) -> int:
        """The operation's random seed."""
        return int(self.operation["seed"])

    @property
    def name(self) -> str:
        """The blueprint's name ("" when it has none)."""
        return str(self.blueprint.get("name", ""))

    def instrument_costs(self) -> dict[str, Any]:
        """Each instrument's ``commission`` and ``slippage`` (attributes), by symbol: what a
        costs line of runs over this basket states (rates per symbol when they differ).

        >>> from metaflow_nb.services.portfolio import run_portfolio
        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> bs = run_portfolio("config/runs/sma_cross.yaml", op).basket_specs
        >>> {s: (c.commission, c.slippage) for s, c in bs.instrument_costs().items()}
        {'FB': (0.0, 0.0), 'IBM': (0.0, 0.0)}
        """
        from types import SimpleNamespace
        ran = {i["symbol"] for i in self.instruments}
        return {i["symbol"]: SimpleNamespace(commission=i["commission"], slippage=i["slippage"])
                for i in self.operation["instruments"] if i["symbol"] in ran}

    def record(self) -> dict[str, Any]:
        """The manifest's ``basket`` entry of the run (plain JSON).

        >>> from metaflow_nb.services.portfolio import run_portfolio
        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> bs = run_portfolio("config/runs/sma_cross.yaml", op).basket_specs
        >>> rec = bs.record()
        >>> rec["window"], list(rec["instruments"][0])
        (None, ['symbol', 'specs_hash', 'run_id', 'data_fingerprint'])
        """
        return {"window": self.window, "instruments": [dict(i) for i in self.instruments]}


def basket_specs(op: PortfolioOperation, items: Sequence[dict[str, Any]], specs: Sequence[Any],
                 starting_cash: float, window: Optional[dict[str, Optional[str]]] = None) -> BasketSpecs:
    """The :class:`BasketSpecs` of a basket whose instruments ``items`` resolved to the
    single-instrument ``specs`` (in basket order).

    >>> from metaflow_nb.services.portfolio import run_portfolio
    >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
    >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
    >>> basket_specs(res.operation, res.items, res.instrument_specs(), res.starting_cash).hash == res.basket_specs.hash
    True
    """
    if not specs:
        raise ValueError("a basket run has at least one instrument")
    return BasketSpecs(
        blueprint=specs[0].blueprint, operation=resolved_operation(op, items),
        instruments=tuple({"symbol": it["symbol"], "specs_hash": s.hash, "run_id": s.run_id,
                           "data_fingerprint": s.data_fingerprint} for it, s in zip(items, specs)),
        window=window, cash=float(starting_cash), commission=float(op.commission), slippage=float(op.slippage),
        data_calendar=specs[0].data_calendar)


class BasketPlanner:
    """The :class:`BasketSpecs` of a loaded basket's runs with some parameters overridden,
    without running them (a report records every combination of a basket optimization):
    each instrument is resolved once, each combination only replaces params.

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.services.portfolio import load_basket, run_portfolio
    >>> basket = load_basket({"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}})
    >>> planned = BasketPlanner("config/runs/sma_cross.yaml", basket).specs({"sma_1": {"fast": 5}})
    >>> planned.hash == run_portfolio("config/runs/sma_cross.yaml", basket, sma_1__fast=5).basket_specs.hash
    True
    """

    def __init__(self, strategy: Any, basket: tuple[PortfolioOperation, list, dict]) -> None:
        from ..config.translator import ConfigTranslator
        self.op, self.items, bars = basket
        translator = ConfigTranslator()
        self.base = [translator.translate(strategy, it["operation"], data=bars[it["symbol"]]) for it in self.items]
        n = len(self.items) if self.op.mode == "independent" else 1
        self.cash = float(self.op.cash) * n

    def specs(self, params: dict[str, dict[str, Any]]) -> BasketSpecs:
        """The run's record with ``params`` (``{instance: {param: value}}``) replaced.

        >>> from metaflow_nb.services.portfolio import load_basket
        >>> basket = load_basket({"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}})
        >>> planned = BasketPlanner("config/runs/sma_cross.yaml", basket).specs({"sma_1": {"fast": 5}})
        >>> planned.blueprint["workforce"]["opportunity_workers"][0]["params"]
        {'fast': 5, 'slow': 20}
        """
        return basket_specs(self.op, self.items, [b.with_param_overrides(params) for b in self.base], self.cash)


def window_doc(start: pd.Timestamp, end: pd.Timestamp, trade_start: Optional[pd.Timestamp]) -> dict[str, Optional[str]]:
    """A walk-forward window as :attr:`BasketSpecs.window` records it.

    >>> window_doc(pd.Timestamp("2012-01-03"), pd.Timestamp("2012-12-31"), None)
    {'start': '2012-01-03T00:00:00', 'end': '2012-12-31T00:00:00', 'trade_start': None}
    """
    return {"start": start.isoformat(), "end": end.isoformat(),
            "trade_start": None if trade_start is None else trade_start.isoformat()}
