"""Portfolio runs: one strategy over a basket (issue #17), ``mode: independent``.

Each instrument is an ordinary single run on its own bars, through the one run path
(:class:`~metaflow_nb.services.operation.OperationService`): an independent portfolio of N
instruments *is* the N single runs. What this module adds is the basket's view of them:

- the **union calendar**: every timestamp at which any instrument has a bar (UTC). An
  instrument without a bar at a timestamp trades nothing there; its account is *valued*
  at its last equity (before its first bar, at its starting cash). That carry is valuation
  only: no price is forward-filled into a fill, a stop or a signal.
- portfolio **equity** (the sum of the accounts), its **metrics** (the single run's
  metric code on that equity and on every trade, placed on the union calendar),
- a per-instrument **breakdown**, **trades** and **journal** with a ``symbol`` column and
  the **correlation** of the instruments' daily strategy returns.
"""
from __future__ import annotations

import html
import math
import time
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..config.portfolio import PortfolioOperation, instrument_operations, load_portfolio_operation
from ..config.translator import ConfigTranslator, StrategyLike
from ..data.basket import load_instrument
from ..data.loader import rows_between
from ..engine.metrics import daily_returns, metrics_dict, metrics_from_frames
from ..errors import ConfigError, DataError, PluginError
from .basket_specs import LoadedBasket, basket_origin, basket_specs, slice_basket
from .formatting import counted, format_metric, json_safe, metrics_table_html, metrics_table_text, plain
from .operation import OperationService
from .results import BacktestResult, rejection_counts
from .tearsheet import specs_costs_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PortfolioResult", "SharedPortfolioResult", "run_portfolio"]


def _check_clocks(aware: dict[str, Optional[bool]], sources: dict[str, str], clocks: dict[str, Optional[str]],
                  origin: str) -> None:
    """Zone-aware files are converted to UTC by the loader; a naive file next to them has
    no known zone unless its instrument declares one: refused rather than read as UTC."""
    zoned = [s for s, a in aware.items() if a]
    naive = [s for s, a in aware.items() if a is False and clocks.get(s) is None]
    if zoned and naive:
        z, n = zoned[0], naive[0]
        raise DataError(f"{origin}: mixed time zones: instrument {z!r} ({sources[z]}) has timestamps with UTC "
                        f"offsets but {n!r} ({sources[n]}) has naive ones and no timezone; declare the clock of "
                        f"{n!r} (its timezone:, or universe.timezone: for a universe's files, which leaves files with "
                        f"offsets as they are: UTC, Europe/Berlin, ...) so both are read as UTC instants")


def run_portfolio(strategy: StrategyLike, operation: Any, *, service: Optional[OperationService] = None,
                  **param_overrides: Any) -> "PortfolioResult":
    """Run ``strategy`` over the basket of a portfolio ``operation`` (a YAML path, a dict
    or a :class:`~metaflow_nb.config.portfolio.PortfolioOperation`); worker parameters may
    be overridden as in :func:`metaflow_nb.backtest`.

    >>> op = {"name": "two", "universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]},
    ...       "data": {"start": "2010-01-01"}}
    >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
    >>> res.symbols, res.metrics["total_trades"] == sum(len(r.trades) for r in res.results.values())
    (['IBM', 'MSFT'], True)
    """
    from .operation import shared_service

    t0 = time.perf_counter()
    op, items, bars = load_basket(operation)
    t1 = time.perf_counter()
    svc = service or shared_service()
    translator = ConfigTranslator()
    if op.mode == "portfolio":
        from ..assembly.portfolio import run_basket

        symbols = [it["symbol"] for it in items]
        specs = {sym: translator.translate(strategy, it["operation"], data=bars[sym], params=param_overrides or None)
                 for sym, it in zip(symbols, items)}
        caches = svc.basket_caches([f"{specs[sym].dataset_key}|{len(bars[sym])}" for sym in symbols])
        try:
            out = run_basket([specs[s] for s in symbols], [bars[s] for s in symbols], symbols, op.cash,
                             op.max_positions or 0, caches, op.rank, [it.get("delisted_at") for it in items])
        except (ConfigError, PluginError) as exc:
            # what the operation asks of this strategy (rank: score, mode: portfolio): say which operation
            raise named_by_operation(exc, operation) from None
        finally:
            svc.release_caches(caches)
        return SharedPortfolioResult(op, {}, _timings(t0, t1), items=items, specs=specs, bars=bars, basket=out)
    results: dict[str, BacktestResult] = {}
    for it in items:
        sym = it["symbol"]
        specs_i = translator.translate(strategy, it["operation"], data=bars[sym], params=param_overrides or None)
        results[sym] = svc.run(specs_i, bars[sym])
    return PortfolioResult(op, results, _timings(t0, t1), items=items)


def _timings(t0: float, t1: float) -> dict[str, float]:
    """A basket run's timings, as a single run's: loading its files, running, in all."""
    t2 = time.perf_counter()
    return {"data_s": t1 - t0, "simulate_s": t2 - t1, "total_s": t2 - t0}


def rerun_portfolio(blueprint: dict[str, Any], operation: dict[str, Any],
                    window: Optional[dict[str, Optional[str]]] = None) -> "PortfolioResult":
    """Run a recorded portfolio run again from its documents (a report's ``--verify``):
    the basket of ``operation``, cut to ``window`` (``start``, ``end``, ``trade_start``)
    when there is one (:class:`~metaflow_nb.services.basket_specs.BasketSpecs`).

    >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
    >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
    >>> again = rerun_portfolio(res.basket_specs.blueprint, res.basket_specs.operation)
    >>> again.basket_specs.hash == res.basket_specs.hash, again.metrics == res.metrics
    (True, True)
    """
    basket = load_basket(operation)
    if window is None:
        return run_portfolio(blueprint, basket)

    def at(key: str) -> Optional[pd.Timestamp]:
        v = window.get(key)
        return None if v is None else pd.Timestamp(v)

    res = run_portfolio(blueprint, slice_basket(basket, at("start"), at("end"), at("trade_start")))
    res.window = window
    return res


def named_by_operation(exc: Exception, operation: Any) -> Exception:
    """``exc`` (a ConfigError or PluginError of a run or sweep over a basket: what the
    operation asks of the strategy, ``mode: portfolio``, ``rank: score``) as a new error of
    its type whose message starts with the operation's file (:class:`LoadedBasket`'s
    origin), unless it names it already.

    >>> str(named_by_operation(ConfigError("mode: portfolio: ..."), "ops/basket.yaml"))
    'ops/basket.yaml: mode: portfolio: ...'
    """
    where = str(operation) if isinstance(operation, (str, Path)) else basket_origin(operation)
    if str(exc).startswith(f"{where}: "):
        return exc
    return type(exc)(f"{where}: {exc}")


class SatOutWarning(UserWarning):
    """Instruments of a basket with no bar between the operation's ``data.start`` and
    ``data.end``: they sit the run out (README "Portfolios")."""


def _outside_dates(it: dict[str, Any]) -> bool:
    """Whether an instrument's whole file, valid, has no bar between the operation's
    start and end (a file that does not load raises its own error here)."""
    read = it["read"]
    if read["start"] is None and read["end"] is None:
        return False
    whole, _ = load_instrument(it["source"], it["symbol"], **{**read, "start": None, "end": None})
    return rows_between(whole, read["start"], read["end"], f"instrument {it['symbol']!r}") == 0


def load_basket(operation: Any) -> tuple[PortfolioOperation, list[dict[str, Any]], dict[str, pd.DataFrame]]:
    """A portfolio operation, its instruments (:func:`~metaflow_nb.config.portfolio.instrument_operations`)
    and their validated bars, clocks checked; what :func:`run_portfolio` runs on (a sweep
    over a basket loads it once). A :class:`LoadedBasket`: it keeps the operation's file
    (``origin``) for the messages of the runs on it.

    >>> basket = load_basket("config/operations/us_stocks_basket.yaml")
    >>> basket.origin, len(basket), basket[0].mode
    ('config/operations/us_stocks_basket.yaml', 3, 'independent')
    """
    if isinstance(operation, tuple) and len(operation) == 3:
        return operation  # already loaded
    op, origin, base_dir = load_portfolio_operation(operation)
    items = instrument_operations(op, origin, base_dir)
    bars: dict[str, pd.DataFrame] = {}
    aware: dict[str, Optional[bool]] = {}
    out: list[dict[str, Any]] = []
    for it in items:
        try:
            try:
                bars[it["symbol"]], aware[it["symbol"]] = load_instrument(it["source"], it["symbol"], **it["read"])
            except DataError:
                if not _outside_dates(it):
                    raise
                out.append(it)
                continue
            if it.get("delisted"):
                # the delisting is the file's last bar, whatever part of it the operation reads
                whole = bars[it["symbol"]] if it["read"]["start"] is None and it["read"]["end"] is None else \
                    load_instrument(it["source"], it["symbol"], **{**it["read"], "start": None, "end": None})[0]
                it["delisted_at"] = whole.index[-1]
        except DataError as exc:
            # the config and the key naming the file, as a single run's data.source says
            raise DataError(f"{origin}: {it['key']}: {exc}") from None
    if out:
        # as a walk-forward window lets it (slice_basket): no bar in the operation's dates, no
        # trade and no cash of its own (a survivorship-free universe over a later period)
        items = [it for it in items if all(it is not o for o in out)]
        lo, hi = out[0]["read"]["start"] or "its first bar", out[0]["read"]["end"] or "its last bar"
        names = ", ".join(it["symbol"] for it in out)
        if not items:
            raise DataError(f"{origin}: no instrument has a bar between {lo} and {hi} ({names}); expected "
                            f"data.start and data.end inside the instruments' data")
        warnings.warn(f"{origin}: {names} {'has' if len(out) == 1 else 'have'} no bar between {lo} and {hi}: "
                      f"{'it sits' if len(out) == 1 else 'they sit'} this run out", SatOutWarning, stacklevel=2)
    _check_clocks(aware, {it["symbol"]: it["source"] for it in items},
                  {it["symbol"]: it["read"]["timezone"] for it in items}, origin)
    if op.mode == "portfolio":
        _check_bar_lengths({it["symbol"]: _measured_length(it, bars[it["symbol"]]) for it in items},
                           {it["symbol"]: it["source"] for it in items}, origin)
    return LoadedBasket((op, items, bars), origin)


def bar_length(index: pd.DatetimeIndex, gaps: bool = True) -> Optional[int]:
    """The length of an instrument's bars, in nanoseconds: the shortest distance between
    two bars that recurs (at least one step in five). Bars do not overlap, so no bar is
    longer than it; weekends, holidays, halts and missing days only add longer steps (a
    sparse daily file can step 3 days more often than 1), and a rarer shorter step is not
    the bar: a stray stamp, a DST day, or the half hour from a 09:30 open to the first
    bar on the clock hour of hourly stock bars (one step in seven). None under two bars.

    >>> bar_length(pd.DatetimeIndex(["2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10"])) == 86_400 * 10**9
    True
    >>> bar_length(pd.bdate_range("2024-01-01", periods=30)[::2]) == 86_400 * 10**9   # every other day: daily
    True

    Bars at one time of day (within two hours: a close on a daylight-saving clock) stepping
    two to four days, most of them less than a week, and not on all seven days of the week, are
    daily bars with gaps (``gaps=False``: the shortest recurring step as it is).
    """
    if len(index) < 2:
        return None
    times = index.as_unit("ns").asi8
    diffs = np.diff(times)
    steps, counts = np.unique(diffs, return_counts=True)
    recurring = steps[counts >= max(1, math.ceil(counts.sum() / 5))]
    length = int(recurring[0] if len(recurring) else steps[np.argmax(counts)])
    if gaps and _DAY_NS < length <= 4 * _DAY_NS and np.median(diffs) < 7 * _DAY_NS and _one_time_of_day(times) \
            and len(np.unique((times // _DAY_NS + 3) % 7)) < 7:
        # bars stamped at one time of day, a few days apart: an illiquid instrument's daily
        # file (traded every other day), not 2-day bars (hunt91 F7); weekly bars stay weekly,
        # a holiday week's 6-day step (hunt94 F7) or a short week's 3-day one among a few
        # weeks (hunt95 F3) included: most of their steps are a week; candles of a market
        # that never closes fall on every day of the week (2-day crypto bars, hunt96 F2),
        # a daily file's gaps skip the days its market is shut
        return _DAY_NS
    return length


def _one_time_of_day(times: np.ndarray) -> bool:
    """Whether bars are stamped at one time of day, give or take a clock change: a close
    stamped on a daylight-saving clock has two UTC times of day an hour apart (hunt95 F4).
    The times of day lie within two hours of one another, around midnight too."""
    tod = np.unique(times % _DAY_NS)
    if len(tod) == 1:
        return True
    gaps = np.diff(np.append(tod, tod[0] + _DAY_NS))   # between neighbours on the clock's circle
    return _DAY_NS - int(gaps.max()) <= 2 * 3_600 * 10**9


_DAY_NS = 86_400 * 10**9


def _length_text(ns: int) -> str:
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1)):
        if ns % (size * 10**9) == 0:
            return f"{ns // (size * 10**9)}-{unit}"
    return f"{ns / 1e9:g}-second"


#: fewer bars than this in the operation's dates: the bar length is read from the whole file
_MEASURED_BARS = 8


#: what a refusal of bars of 2 to 7 days adds: the file may be daily with days missing
_SPARSE_HINT = " (a daily file with most days missing reads as longer bars; mode: independent runs it)"


def _measured_length(it: dict[str, Any], bars: pd.DataFrame) -> Optional[int]:
    """An instrument's bar length (:func:`bar_length`) in the operation's dates, or of its
    whole file when they hold fewer than :data:`_MEASURED_BARS` bars (one bar has no
    length, hunt95 F6; two or three weekly bars with a short week read as daily, hunt96
    F4), unless those few bars are intraday: then the file's other bars say nothing of them
    (a daily history, then hourly bars, hunt98 F6)."""
    read = it["read"]
    if len(bars) >= _MEASURED_BARS or (read["start"] is None and read["end"] is None):
        return bar_length(bars.index)
    raw = bar_length(bars.index, gaps=False)
    if raw is not None and raw < _DAY_NS:
        return raw
    return bar_length(load_instrument(it["source"], it["symbol"], **{**read, "start": None, "end": None})[0].index)


def _check_bar_lengths(measured: dict[str, Optional[int]], sources: dict[str, str], origin: str) -> None:
    """A shared account marks every instrument's close at its bar's stamp (the open) on the
    union calendar: beside shorter bars a longer one's close would be seen before it
    prints (a daily close at the hourly bars of its morning). Refused; bars of one length
    with other gaps (weekdays beside every day, halts) are one basket."""
    lengths = {sym: n for sym, n in measured.items() if n is not None}
    if not lengths:
        return
    short = min(lengths, key=lengths.__getitem__)
    long_ = max(lengths, key=lengths.__getitem__)
    if lengths[long_] >= 2 * lengths[short]:   # months of 30 and 31 days are one length
        raise DataError(f"{origin}: mode: portfolio: instrument {long_!r} ({sources[long_]}) has "
                        f"{_length_text(lengths[long_])} bars but {short!r} ({sources[short]}) has "
                        f"{_length_text(lengths[short])} bars; a shared account marks each bar's close at its "
                        f"open time on the union calendar, so the shorter bars would see a longer bar's close "
                        f"before it prints: use files of one bar length, or mode: independent"
                        f"{_SPARSE_HINT if _DAY_NS < lengths[long_] <= 7 * _DAY_NS else ''}")


@dataclass
class PortfolioResult:
    """The outcome of a portfolio run: ``results`` (one :class:`BacktestResult` per
    symbol), ``equity`` (per account and ``total``, on the union calendar), ``metrics``
    (of the total), ``trades`` and ``journal`` (with ``symbol``), :meth:`breakdown` and
    :meth:`correlation`.

    >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2012-01-01"}}
    >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
    >>> res.mode, res.symbols, list(res.equity.columns), sorted(set(res.trades["symbol"]))
    ('independent', ['IBM', 'MSFT'], ['IBM', 'MSFT', 'total'], ['IBM', 'MSFT'])
    """

    operation: PortfolioOperation
    results: dict[str, BacktestResult]
    timings: dict[str, float] = field(default_factory=dict)
    #: the instruments as they ran (``config.portfolio.instrument_operations``): what the record reads
    items: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: a walk-forward window's cut of the basket (``basket_specs.window_doc``), None for the whole basket
    window: Optional[dict[str, Optional[str]]] = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The basket operation's name."""
        return self.operation.name

    @property
    def mode(self) -> str:
        """``"independent"`` (one account per instrument) or ``"portfolio"`` (one shared account)."""
        return self.operation.mode

    @property
    def symbols(self) -> list[str]:
        """The instruments that ran, in basket order."""
        return list(self.results)

    @property
    def starting_cash(self) -> float:
        """The portfolio's starting equity: every account's cash.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> res.operation.cash, res.starting_cash
        (10000.0, 20000.0)
        """
        return self.operation.cash * len(self.results)

    @cached_property
    def index(self) -> pd.DatetimeIndex:
        """The union calendar: every timestamp at which some instrument has a bar."""
        idx = pd.DatetimeIndex([], name="time")
        for r in self.results.values():
            idx = idx.union(r.equity.index)
        idx.name = "time"
        return idx

    @cached_property
    def equity(self) -> pd.DataFrame:
        """Each account's equity on the union calendar (its last value where it has no bar,
        its cash before its first) and ``total``, their sum."""
        cash = self.operation.cash
        cols = {s: r.equity.reindex(self.index).ffill().fillna(cash) for s, r in self.results.items()}
        eq = pd.DataFrame(cols, index=self.index)
        eq["total"] = self._combined[0]  # the accounts added in basket order, as the metrics see them
        return eq

    @cached_property
    def _combined(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Total equity, union bars in the market and the metric vector, made by
        :func:`~metaflow_nb.assembly.basket.combine_runs`: the compiled functions the batch
        sweep over a basket calls too, so its rows equal these metrics bit for bit."""
        from ..assembly.basket import combine_runs

        runs = [(r.equity, r.position, r.trades, int(r.metrics["opportunities_detected"]),
                 int(r.metrics["opportunities_rejected"])) for r in self.results.values()]
        calendar = next(iter(self.results.values())).specs.data_calendar
        return combine_runs(self.index, runs, self.operation.cash, calendar)

    @cached_property
    def trades(self) -> pd.DataFrame:
        """Every instrument's trades, ``symbol`` first, by entry time (then symbol order);
        ``entry_bar``/``exit_bar`` stay the bars of the instrument's own data."""
        frames = [r.trades.assign(symbol=s) for s, r in self.results.items()]
        out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        out = out[["symbol"] + [c for c in out.columns if c != "symbol"]]
        return out.sort_values(["entry_time"], kind="stable").reset_index(drop=True)

    @cached_property
    def journal(self) -> pd.DataFrame:
        """Every instrument's journal, ``symbol`` first, by time (then symbol order)."""
        frames = [r.journal.assign(symbol=s) for s, r in self.results.items()]
        out = pd.concat(frames, ignore_index=True)
        out = out[["symbol"] + [c for c in out.columns if c != "symbol"]]
        return out.sort_values(["time"], kind="stable").reset_index(drop=True)

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """The single run's metrics, computed on the total equity, all trades (placed on the
        union calendar, by entry time then basket order) and the summed detections;
        ``exposure_pct`` is the share of union bars with a position in any instrument."""
        return metrics_dict(self._combined[2])

    def in_market(self) -> np.ndarray:
        """1.0 at the union bars where some instrument holds a position, else 0.0 (a position
        held at an instrument's bar is still held at other instruments' bars after it).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> len(res.in_market()) == len(res.index), round(float(res.in_market().mean()) * 100, 1)
        (True, 75.6)
        """
        return self._combined[1].copy()

    def rejections(self, by_symbol: bool = False) -> pd.DataFrame:
        """Rejected opportunities of the basket's journal per reason (count and share of all
        rejections in %), as a single run's :meth:`BacktestResult.rejections`; with
        ``by_symbol`` per (symbol, reason).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> rej = run_portfolio("config/runs/sma_cross.yaml", op).rejections(by_symbol=True)
        >>> list(rej.index.names), list(rej.columns)
        (['symbol', 'reason'], ['count', 'share_pct', 'active'])
        """
        return rejection_counts(self.journal, by_symbol)

    def breakdown(self) -> pd.DataFrame:
        """One row per symbol: bars, first/last bar, trades, pnl (final equity - cash),
        return on its account, contribution to the portfolio's return (pnl / the
        portfolio's starting equity, in %: they add up to its total return), exposure,
        max drawdown and Sharpe of its account.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> b = run_portfolio("config/runs/sma_cross.yaml", op).breakdown()
        >>> list(b.index), int(b.loc["FB", "bars"])
        (['FB', 'IBM'], 196)
        """
        rows = []
        total_cash = self.starting_cash
        for s, r in self.results.items():
            m = r.metrics
            pnl = float(r.equity.iloc[-1]) - self.operation.cash
            rows.append({"symbol": s, "bars": len(r.equity), "first": r.equity.index[0], "last": r.equity.index[-1],
                         "trades": int(m["total_trades"]), "pnl": pnl, "return_pct": m["total_return_pct"],
                         "contribution_pct": pnl / total_cash * 100.0, "exposure_pct": m["exposure_pct"],
                         "max_drawdown_pct": m["max_drawdown_pct"], "sharpe_ratio": m["sharpe_ratio"]})
        return pd.DataFrame(rows).set_index("symbol")

    def daily_returns(self) -> pd.DataFrame:
        """Each account's daily strategy returns on its own trading days (NaN on days it has
        no bar: nothing is carried into a return).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> str(res.daily_returns()["FB"].first_valid_index())   # FB listed in May 2012
        '2012-05-18 00:00:00'
        """
        cols = {s: daily_returns(r.equity, self.operation.cash, r.specs.data_calendar)
                for s, r in self.results.items()}
        return pd.DataFrame(cols)

    def correlation(self) -> pd.DataFrame:
        """Pearson correlation of the instruments' daily strategy returns, over the days both
        have bars (pairwise).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> res.correlation().round(3).to_dict()
        {'FB': {'FB': 1.0, 'IBM': 0.001}, 'IBM': {'FB': 0.001, 'IBM': 1.0}}
        """
        return self.daily_returns().corr()

    def plot(self, kind: str = "equity", *, figsize: Optional[Sequence[float]] = None, dpi: float = 100,
             title: Optional[str] = None) -> "Figure":
        """Matplotlib figure (returned, not shown): ``"equity"`` (each account's equity,
        the portfolio's total and its drawdown (%) underneath, on the union calendar) or
        ``"contributions"`` (each instrument's contribution to the portfolio's return, in %).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> [ax.get_ylabel() for ax in res.plot().axes], res.plot("contributions").axes[0].get_ylabel()
        (['Equity per account', 'Portfolio equity', 'Drawdown (%)'], 'Contribution to return (%)')
        """
        from .plots import EQUITY_COLOR, _new_figure, draw_drawdown  # matplotlib only when drawn
        from .portfolio_page import contributions_figure, draw_curves

        if kind == "contributions":
            # the page's figure (a 500-instrument basket drew a PNG 25,200 pixels wide)
            return contributions_figure(
                self, title or f"{plain(self.name)}: total {self.metrics['total_return_pct']:.2f} %",
                figsize=figsize, dpi=dpi)
        if kind != "equity":
            raise ConfigError(f"unknown plot kind {kind!r}; kinds: 'equity', 'contributions'")
        fig = _new_figure(figsize or (10, 7), dpi)
        top, middle, bottom = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1, 1]})
        curves, label = self._curves()
        draw_curves(top, curves, self.symbols, ncol=5)
        top.set_ylabel(label)
        top.set_title(title or f"{plain(self.name)}: {counted(len(self.symbols), 'instrument')}, {self.mode}")
        total = self.equity["total"]
        middle.plot(total.index, total, color=EQUITY_COLOR, lw=1.2)
        middle.set_ylabel("Portfolio equity")
        middle.grid(alpha=0.3)
        draw_drawdown(bottom, total)
        return fig

    def _curves(self) -> tuple[pd.DataFrame, str]:
        return self.equity[self.symbols], "Equity per account"

    def report(self, path: Optional[str | Path] = None, *, title: Optional[str] = None, top: int = 50) -> Path:
        """Write the portfolio page (equity, metrics and costs, per-instrument breakdown,
        contributions, correlation heatmap, the ``top`` trades) as one offline HTML file and
        every trade as ``<page>_trades.csv`` beside it; returns the page's path. ``path``: an
        ``.html`` file or a folder (default ``reports/``).

        >>> import tempfile
        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> page = run_portfolio("config/runs/sma_cross.yaml", op).report(tempfile.mkdtemp())
        >>> page.suffix, page.with_name(page.stem + "_trades.csv").is_file()
        ('.html', True)
        """
        if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 0:
            # checked before anything is written (a negative top listed all trades but that many)
            raise ConfigError(f"report: top={top!r}; expected a whole number >= 0 (the trades listed on the page)")
        from .portfolio_page import write_page  # matplotlib, only when a page is written
        return write_page(self, path, title=title, top=int(top))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: mode, symbols, portfolio metrics, per-symbol breakdown.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> d = res.to_dict()
        >>> d["mode"], d["symbols"], d["bars"], d["trades"], d["instruments"]["FB"]["first"]
        ('independent', ['FB', 'IBM'], 291, 20, '2012-05-18T00:00:00')
        """
        b = self.breakdown()
        per = {s: {k: (v.isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in row.items()}
               for s, row in b.to_dict(orient="index").items()}
        # run_id: the basket's (its max_positions, rank, delisted in it); run_ids: each
        # instrument's single run
        return json_safe({"run_id": self.basket_specs.run_id, "name": self.name, "mode": self.mode,
                          "symbols": self.symbols, "starting_cash": self.starting_cash, "bars": len(self.index),
                          "metrics": self.metrics, "trades": int(len(self.trades)), "instruments": per,
                          "run_ids": self._run_ids()})

    def _run_ids(self) -> dict[str, str]:
        return {s: r.run_id for s, r in self.results.items()}

    def instrument_specs(self) -> list[Any]:
        """Each instrument's resolved :class:`~metaflow_nb.config.buildspecs.BuildSpecs`, in
        basket order.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> [(s.symbol, s.params("sma_1")) for s in res.instrument_specs()]
        [('FB', {'fast': 10, 'slow': 20}), ('IBM', {'fast': 10, 'slow': 20})]
        """
        return [self.results[s].specs for s in self.symbols]

    @property
    def basket_specs(self) -> Any:
        """What identifies this run (:class:`~metaflow_nb.services.basket_specs.BasketSpecs`):
        its blueprint, resolved basket, window and the instruments' specs hashes; reports
        record it and ``--verify`` runs it again.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> bs = run_portfolio("config/runs/sma_cross.yaml", op).basket_specs
        >>> [i["symbol"] for i in bs.instruments], len(bs.hash), bs.cash
        (['FB', 'IBM'], 64, 20000.0)
        """
        return basket_specs(self.operation, self.items, self.instrument_specs(), self.starting_cash, self.window)

    def costs_text(self) -> str:
        """The costs line: the rates (one entry per symbol when they differ) and the
        commission paid by all trades; said out loud when zero, as every summary does.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> run_portfolio("config/runs/sma_cross.yaml", op).costs_text()
        'costs: none (commission 0, slippage 0)'
        """
        specs = self.specs if self.mode == "portfolio" else {s: r.specs for s, r in self.results.items()}
        line = specs_costs_text(specs)
        paid = float(self.trades["commission"].sum()) if len(self.trades) else 0.0
        if paid:
            line += f"; commission paid {format_metric('commission_paid', paid)}"
            held = self.open_at_end()
            if held:   # their entry commission is in the equity, not in the trades the sum reads
                line += f" by closed trades ({held} position{'' if held == 1 else 's'} open at the end)"
        return line

    def open_at_end(self) -> int:
        """How many instruments still hold a position after their last bar (closed only
        with ``finalize_trades``).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> res.open_at_end()   # always in the market: both hold one
        2
        """
        return int(sum(len(r.position) > 0 and r.position.iloc[-1] != 0.0 for r in self.results.values()))

    def __repr__(self) -> str:
        b = self.breakdown()[["bars", "trades", "pnl", "contribution_pct", "exposure_pct"]]
        return (f"PortfolioResult({self.name!r}, mode={self.mode}, {counted(len(self.symbols), 'instrument')}, "
                f"{len(self.index)} bars {self.index[0]:%Y-%m-%d} -> {self.index[-1]:%Y-%m-%d}, "
                f"starting equity {self.starting_cash:,.0f})\n" + metrics_table_text(self.metrics) + "\n"
                + self.costs_text() + "\n" + b.round(2).to_string())

    def _repr_html_(self) -> str:
        b = self.breakdown()
        b = b[[c for c in ("bars", "trades", "pnl", "contribution_pct", "exposure_pct", "max_drawdown_pct")
               if c in b.columns]]
        return (f"<div class='mf-result'><b>{html.escape(self.name)}</b> &middot; {self.mode} &middot; "
                f"{counted(len(self.symbols), 'instrument')} &middot; {len(self.index)} bars "
                f"{self.index[0]:%Y-%m-%d} &rarr; {self.index[-1]:%Y-%m-%d} &middot; starting equity "
                f"{self.starting_cash:,.0f}" + metrics_table_html(self.metrics, "portfolio")
                + f"<p class='mf-costs'>{html.escape(self.costs_text())}</p>"
                + "<p><b>per instrument</b></p>" + b.round(2).to_html(classes="mf-table") + "</div>")


@dataclass(repr=False)  # the portfolio's own repr, not the fields'
class SharedPortfolioResult(PortfolioResult):
    """A ``mode: portfolio`` run: one account shared by every instrument (module
    :mod:`metaflow_nb.engine.nb.portfolio` states the rules). ``equity`` has the account's
    ``total`` and ``free_cash`` (cash less the open positions' margin); :meth:`pnl` each
    instrument's pnl to date (they add up to the total less the starting cash); there is
    no per-instrument account, so ``results`` is empty.

    >>> op = {"mode": "portfolio", "max_positions": 1, "universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]},
    ...       "data": {"start": "2012-01-01"}}
    >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
    >>> res.mode, "MAX_POSITIONS" in set(res.journal["reason"])
    ('portfolio', True)
    """

    specs: dict[str, Any] = field(default_factory=dict)
    bars: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    basket: Any = field(default=None, repr=False)

    @property
    def symbols(self) -> list[str]:
        """The instruments of the basket, in basket order."""
        return list(self.specs)

    @property
    def starting_cash(self) -> float:
        """The shared account's cash (the operation's ``cash``, not one per instrument)."""
        return self.operation.cash

    @cached_property
    def index(self) -> pd.DatetimeIndex:
        return self.basket.index

    @cached_property
    def equity(self) -> pd.DataFrame:
        rec = self.basket.records
        return pd.DataFrame({"total": rec.equity, "free_cash": rec.free_cash}, index=self.index)

    def pnl(self) -> pd.DataFrame:
        """Each instrument's pnl to date on the union calendar (net of commissions; an
        open position at its instrument's last close).

        >>> op = {"mode": "portfolio", "max_positions": 1, "universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]},
        ...       "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> res.pnl().iloc[-1].round(2).to_dict()
        {'FB': 0.0, 'IBM': -1767.58}
        """
        return pd.DataFrame(self.basket.records.pnl.T, index=self.index, columns=self.symbols)

    def _curves(self) -> tuple[pd.DataFrame, str]:
        return self.pnl(), "P&L per instrument"

    def _frames(self, kind: str) -> list[pd.DataFrame]:
        from ..assembly.frames import journal_frame, trades_frame

        out = []
        for sym, o in zip(self.symbols, self.basket.outputs):
            if kind == "trades":
                out.append(trades_frame(o).assign(symbol=sym))
            else:
                ids = [e.instance_id for e in self.specs[sym].entries() if e.section == "opportunity_workers"]
                out.append(journal_frame(o, ids).assign(symbol=sym))
        return out

    @cached_property
    def trades(self) -> pd.DataFrame:
        out = pd.concat(self._frames("trades"), ignore_index=True)
        out = out[["symbol"] + [c for c in out.columns if c != "symbol"]]
        return out.sort_values(["entry_time"], kind="stable").reset_index(drop=True)

    @cached_property
    def journal(self) -> pd.DataFrame:
        out = pd.concat(self._frames("journal"), ignore_index=True)
        out = out[["symbol"] + [c for c in out.columns if c != "symbol"]]
        return out.sort_values(["time"], kind="stable").reset_index(drop=True)

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """The single run's metrics of the shared account: its equity, every trade (placed on
        the union calendar), detections and rejections; exposure is the share of union bars
        with a position in any instrument (``assembly.portfolio.basket_metrics``: the batch
        path, ``sweep_shared``, makes its rows with the same compiled function)."""
        from ..assembly.portfolio import basket_metrics

        calendar = next(iter(self.specs.values())).data_calendar
        return metrics_dict(basket_metrics(self.basket, self.starting_cash, calendar))

    def in_market(self) -> np.ndarray:
        """1.0 at the union bars where the account holds a position in some instrument, else 0.0."""
        return (self.basket.records.position != 0.0).any(axis=0).astype(float)

    def open_at_end(self) -> int:
        """How many instruments still hold a position after their last bar.

        >>> op = {"mode": "portfolio", "max_positions": 1, "universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]},
        ...       "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> res.open_at_end()   # max_positions 1: only one of them at a time
        1
        """
        rec = self.basket.records
        return int(sum(len(at) > 0 and rec.position[s][at[-1]] != 0.0 for s, at in enumerate(self.basket.own_at)))

    def breakdown(self) -> pd.DataFrame:
        """One row per symbol: bars, first/last bar, trades, pnl, contribution to the
        portfolio's return (pnl / starting cash, in %: they add up to its total return),
        exposure (share of the instrument's own bars with a position), setups skipped for
        ``max_positions`` and for cash.

        >>> op = {"mode": "portfolio", "max_positions": 1, "universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]},
        ...       "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> res.breakdown()[["bars", "trades", "skipped_max_positions"]].to_dict(orient="index")
        {'FB': {'bars': 196, 'trades': 0, 'skipped_max_positions': 8}, 'IBM': {'bars': 291, 'trades': 13, \
'skipped_max_positions': 0}}
        """
        from ..engine import codes

        rec = self.basket.records
        pnl = rec.pnl
        n = len(self.symbols)
        # counted on the kernel's records (instrument and reason codes), not on the trades and
        # journal tables: the explorer shows this table after every change (~57 ms -> ~4 ms)
        trades = np.bincount(rec.trades["inst"], minlength=n)
        j = rec.journal
        skipped = {code: np.bincount(j["inst"][j["reason"] == code], minlength=n)
                   for code in (codes.REASON_MAX_POSITIONS, codes.REASON_INSUFFICIENT_CASH)}
        rows = []
        for s, sym in enumerate(self.symbols):
            at = self.basket.own_at[s]
            held = rec.position[s][at] != 0.0
            rows.append({"symbol": sym, "bars": len(at), "first": self.index[at[0]], "last": self.index[at[-1]],
                         "trades": int(trades[s]), "pnl": float(pnl[s, -1]),
                         "contribution_pct": float(pnl[s, -1]) / self.starting_cash * 100.0,
                         "exposure_pct": float(held.mean() * 100.0) if len(at) else 0.0,
                         "skipped_max_positions": int(skipped[codes.REASON_MAX_POSITIONS][s]),
                         "skipped_cash": int(skipped[codes.REASON_INSUFFICIENT_CASH][s])})
        return pd.DataFrame(rows).set_index("symbol")

    def daily_returns(self) -> pd.DataFrame:
        """Each instrument's daily pnl change over the starting cash, on the days it has
        bars (NaN on the others): they add up to its pnl over the starting cash.

        >>> op = {"mode": "portfolio", "max_positions": 1, "universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]},
        ...       "data": {"start": "2012-01-01"}}
        >>> res = run_portfolio("config/runs/sma_cross.yaml", op)
        >>> round(float(res.daily_returns()["IBM"].sum()) * res.starting_cash, 2)
        -1767.58
        """
        from ..engine.metrics import calendar, day_labels

        cal = next(iter(self.specs.values())).data_calendar
        cols = {}
        for s, sym in enumerate(self.symbols):
            own = self.index[self.basket.own_at[s]]
            pnl = self.basket.records.pnl[s][self.basket.own_at[s]]
            if len(pnl):
                # what changes after its own last bar (finalize_trades' exit cost at the basket's
                # end, hunt112 F1) belongs to its last day: it has no later one
                pnl = pnl.copy()
                pnl[-1] = self.basket.records.pnl[s][-1]
            p = pd.Series(pnl, index=own)
            ends = calendar(own, cal)[0]
            day = p[ends]
            r = day.diff()
            r.iloc[0] = day.iloc[0]
            cols[sym] = pd.Series((r / self.starting_cash).to_numpy(), index=day_labels(own, ends, cal))
        return pd.DataFrame(cols)

    def _run_ids(self) -> dict[str, str]:
        return {s: sp.run_id for s, sp in self.specs.items()}

    def instrument_specs(self) -> list[Any]:
        """Each instrument's resolved BuildSpecs, in basket order."""
        return [self.specs[s] for s in self.symbols]
