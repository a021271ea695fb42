"""Portfolio operations: one strategy over a basket of instruments (issue #17).

A portfolio operation is an operation (``config/operations/*.yaml``) that names an
``instruments:`` list or a ``universe:`` instead of one ``data.source``. Each instrument
becomes an ordinary single-instrument operation (:func:`instrument_operations`), so every
instrument runs through the one run path; ``services.portfolio`` aggregates them.

``mode: independent``: one account per instrument, each starting with ``cash``; the
portfolio's equity is the sum of the accounts'. ``mode: portfolio``: one account with
``cash`` shared by every instrument, sized on the portfolio's equity, ``max_positions``
at once (:mod:`metaflow_nb.engine.nb.portfolio` says the rules).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import Field, field_validator, model_serializer, model_validator

from ..data.basket import SYMBOL_PATTERN, symbol_twin
from ..errors import ConfigError
from ..limits import MAX_CASH, MAX_LEVERAGE
from ..paths import user_path
from .loading import AtKey, read_yaml, validate_model
from .models import ClockName, DataSource, PluginModules, TradingDayName, _Strict, canonical_bounds

_SYMBOL = SYMBOL_PATTERN  # one rule for listed symbols and a universe's file names
PORTFOLIO_KEYS = ("instruments", "universe")


class InstrumentEntry(_Strict):
    """One instrument of an ``instruments:`` list: where its bars are, its symbol and pip
    size, and optionally its own costs, clock and price mode."""

    symbol: str = Field(min_length=1, pattern=_SYMBOL)
    source: str = Field(min_length=1, description="a bundled sample name, a bundled basket (its file of this "
                                                  "symbol) or a CSV/Parquet path")
    pip_size: float = Field(default=0.01, gt=0)
    commission: Optional[float] = Field(default=None, ge=0, lt=1)
    slippage: Optional[float] = Field(default=None, ge=0, lt=1)
    timezone: ClockName = None
    date_column: Optional[str] = Field(default=None, min_length=1)
    prices: Literal["ohlc", "close_only"] = "ohlc"


class Universe(_Strict):
    """A folder, a glob or a bundled basket of one file per symbol, all read alike."""

    path: str = Field(min_length=1, description="a bundled basket (us_stocks, sp500_20_close), a folder or a glob")
    symbols: Optional[list[str]] = Field(default=None, description="only these symbols of the universe")
    pip_size: float = Field(default=0.01, gt=0)
    timezone: ClockName = None
    date_column: Optional[str] = Field(default=None, min_length=1)
    prices: Literal["ohlc", "close_only"] = "ohlc"

    @field_validator("symbols")
    @classmethod
    def _some_symbols(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is not None and not v:
            raise ValueError("is empty; list at least one symbol, or leave it out for every file of the universe")
        return v


class BasketData(_Strict):
    """The data keys every instrument shares: date range, trading calendar and trading day."""

    start: Optional[str] = None
    end: Optional[str] = None
    calendar: Optional[str] = None
    trading_day: TradingDayName = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _dates_as_text(cls, v: Any) -> Any:
        return None if v is None else str(v)

    @model_validator(mode="after")
    def _checked(self) -> "BasketData":
        # the single operation's own rules for dates and calendars
        DataSource(start=self.start, end=self.end, calendar=self.calendar)
        return self

    @model_serializer(mode="wrap")
    def _canonical(self, handler: Any) -> dict[str, Any]:
        return canonical_bounds(handler(self))


class PortfolioOperation(_Strict):
    """An operation over a basket (``instruments:`` or ``universe:``)."""

    name: str = "portfolio"
    mode: Literal["independent", "portfolio"] = Field(
        default="independent", description="independent: one account per instrument, each with `cash`; "
                                            "portfolio: one account with `cash`, shared by every instrument")
    max_positions: Optional[int] = Field(
        default=None, ge=1, description="mode portfolio: at most this many open positions and waiting entry "
                                        "orders at once; a setup beyond them is skipped (MAX_POSITIONS)")
    rank: Literal["basket", "score"] = Field(
        default="basket", description="mode portfolio: the order of setups stamped at the same time (and of the "
                                      "entries waiting at a bar): basket, the instruments' order; score, the "
                                      "opportunity workers' scores, highest first, ties in basket order")
    data: BasketData = Field(default_factory=BasketData)
    instruments: Optional[list[InstrumentEntry]] = None
    universe: Optional[Universe] = None
    cash: float = Field(default=10_000.0, gt=0, le=MAX_CASH,
                        description="independent: each account's starting cash; portfolio: the shared account's")
    commission: float = Field(default=0.0, ge=0, lt=1)
    slippage: float = Field(default=0.0, ge=0, lt=1)
    leverage: float = Field(default=1.0, gt=0, le=MAX_LEVERAGE)
    finalize_trades: bool = False
    delisted: Optional[Union[Literal["all"], list[str]]] = Field(
        default=None, exclude_if=lambda v: v is None,   # unset, it names no part of a run (ids as before)
        description="mode portfolio: the symbols whose data end is a delisting (all: every one of the basket): "
                    "at its last bar, before the basket's last, what it holds closes at the close (DELISTED) and "
                    "its slot and cash are free")
    seed: int = Field(default=42, ge=0, description="seed of the random numbers (bootstrap, random cuts): >= 0")
    plugins: PluginModules = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_basket(self) -> "PortfolioOperation":
        if self.delisted is not None and self.mode != "portfolio":
            raise AtKey(("delisted",), "delisted frees what a delisted instrument holds in a shared account: set "
                        "mode: portfolio (an independent account is marked at its last close, and frees nothing)")
        if isinstance(self.delisted, list) and not self.delisted:
            raise AtKey(("delisted",), "is empty; list the delisted symbols, write all, or leave it out")
        if isinstance(self.delisted, list):
            twice = next((sym for k, sym in enumerate(self.delisted) if sym in self.delisted[:k]), None)
            if twice is not None:
                raise AtKey(("delisted",), f"symbol {twice!r} is listed twice; list each once")
        if self.max_positions is not None and self.mode != "portfolio":
            raise AtKey(("max_positions",), "max_positions caps the positions of a shared account: set mode: "
                        "portfolio")
        if self.rank != "basket" and self.mode != "portfolio":
            raise AtKey(("rank",), "rank orders the setups competing for a shared account: set mode: portfolio")
        if (self.instruments is None) == (self.universe is None):
            raise ValueError("name the basket with either instruments: (a list) or universe: (a folder, glob "
                             "or bundled basket), not both and not neither")
        if self.instruments is not None:
            if not self.instruments:
                raise AtKey(("instruments",), "is empty; list at least one instrument")
            symbols = [inst.symbol for inst in self.instruments]
            twin = symbol_twin(symbols)
            if twin is not None:
                # the second of the two: the entry to change
                at = ("instruments", next(k for k, sym in enumerate(symbols)
                                          if k > symbols.index(twin[0]) and sym == twin[1]), "symbol")
                if twin[0] == twin[1]:
                    raise AtKey(at, f"symbol {twin[0]!r} is listed twice; symbols must be unique")
                # AAPL and aapl: one instrument read twice
                raise AtKey(at, f"symbols {twin[0]!r} and {twin[1]!r} differ only in case; symbols must be "
                                f"unique ignoring case")
        return self


def is_portfolio_operation(source: Any) -> bool:
    """Whether an operation source (a path, a dict or a model) names a basket.

    >>> is_portfolio_operation({"universe": {"path": "us_stocks"}}), is_portfolio_operation(None)
    (True, False)
    >>> is_portfolio_operation("config/operations/sp500_daily.yaml")
    False
    """
    if isinstance(source, PortfolioOperation):
        return True
    if isinstance(source, Mapping):
        return any(k in source for k in PORTFOLIO_KEYS)
    if isinstance(source, (str, Path)) and str(source).lower().endswith((".yaml", ".yml")):
        try:
            st = os.stat(source)
        except OSError:
            return False  # the single path says what is wrong with the file
        # every mf.backtest with an operation file asks: a stat, not a parse, while it is unchanged
        # ctime too: an edit whose modification time is put back (os.utime) still changes it
        key = (os.fspath(source), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        hit = _KIND_MEMO.get(key)
        if hit is None:
            try:
                doc = read_yaml(source)
            except Exception:  # the single path reports unreadable files with its own message
                return False
            hit = isinstance(doc, Mapping) and any(k in doc for k in PORTFOLIO_KEYS)
            if len(_KIND_MEMO) > 256:
                _KIND_MEMO.clear()
            _KIND_MEMO[key] = hit
        return hit
    return False


_KIND_MEMO: dict[tuple, bool] = {}


def load_portfolio_operation(source: Any) -> tuple[PortfolioOperation, str, Optional[Path]]:
    """The validated portfolio operation, where it came from and the folder relative
    paths resolve against (the file's; None for a dict or a model).

    >>> op, origin, folder = load_portfolio_operation({"universe": {"path": "us_stocks"}})
    >>> op.mode, op.cash, origin, folder
    ('independent', 10000.0, '<operation>', None)
    """
    if isinstance(source, PortfolioOperation):
        return source, "<PortfolioOperation>", None
    if isinstance(source, Mapping):
        origin, doc, base = "<operation>", dict(source), None
    else:
        origin, doc, base = str(source), read_yaml(source), Path(source).resolve().parent
    if isinstance(doc, Mapping) and not any(k in doc for k in PORTFOLIO_KEYS):
        # one instrument's operation read as a basket would list its keys as unknown ones
        raise ConfigError(f"{origin}: not a basket: it lists no instruments: or universe: (README \"Portfolios\"); "
                          "a basket's runs need one")
    return validate_model(PortfolioOperation, doc, origin), origin, base


def instrument_operations(op: PortfolioOperation, origin: str, base_dir: Optional[Path]) -> list[dict[str, Any]]:
    """One entry per instrument, in symbol order for a universe and list order for
    ``instruments:``: ``symbol``, ``source`` (a sample name or an absolute path),
    ``read`` (keyword arguments of :func:`metaflow_nb.data.basket.load_instrument`),
    ``operation`` (the single-instrument operation dict the run path takes) and ``key``
    (the operation key naming its file, for messages).

    >>> ops = instrument_operations(PortfolioOperation(universe={"path": "us_stocks", "symbols": ["IBM"]},
    ...                                                commission=0.001), "<operation>", None)
    >>> [(o["symbol"], o["operation"]["instrument"], o["operation"]["commission"]) for o in ops]
    [('IBM', {'symbol': 'IBM', 'pip_size': 0.01}, 0.001)]
    """
    from ..data.basket import basket_files, list_baskets
    from ..data.loader import list_samples, missing_file_problem
    from ..errors import DataError

    entries: list[dict[str, Any]] = []
    if op.universe is not None:
        u = op.universe
        try:
            files = basket_files(u.path, base_dir)
        except DataError as exc:
            raise ConfigError(f"{origin}: universe.path: {exc}") from None
        if u.symbols is not None:
            unknown = [s for s in u.symbols if s not in files]
            if unknown:
                raise ConfigError(f"{origin}: universe.symbols: {', '.join(map(repr, unknown))} not in "
                                  f"{u.path!r}; it has {', '.join(files)}")
            twice = next((sym for k, sym in enumerate(u.symbols) if sym in u.symbols[:k]), None)
            if twice is not None:
                raise ConfigError(f"{origin}: universe.symbols: symbol {twice!r} is listed twice; symbols must "
                                  f"be unique")
            files = {s: files[s] for s in u.symbols}
        for sym, path in files.items():
            entries.append({"symbol": sym, "source": str(path), "pip_size": u.pip_size, "commission": None,
                            "slippage": None, "timezone": u.timezone, "date_column": u.date_column,
                            "prices": u.prices, "key": "universe.path"})
    else:
        samples = set(list_samples())
        for k, inst in enumerate(op.instruments or []):
            src = inst.source
            if src in list_baskets():  # a bundled basket: its file of this symbol
                files = basket_files(src)
                if inst.symbol not in files:
                    raise ConfigError(f"{origin}: instruments: {inst.symbol!r}: not in the bundled basket {src!r}; "
                                      f"it has {', '.join(files)}")
                src = str(files[inst.symbol])
            elif src not in samples:
                problem = missing_file_problem(src, base_dir, f"instruments[{k}].source: instrument {inst.symbol!r}")
                if problem:
                    raise DataError(f"{origin}: {problem}")
                p = user_path(src)
                if not p.is_absolute():
                    p = (base_dir / p) if base_dir is not None and (base_dir / p).exists() else Path.cwd() / p
                src = str(p.resolve())
            entries.append({**inst.model_dump(), "source": src, "key": f"instruments[{k}].source"})
    symbols = [e["symbol"] for e in entries]
    unknown = [s for s in (op.delisted if isinstance(op.delisted, list) else ()) if s not in symbols]
    if unknown:
        raise ConfigError(f"{origin}: delisted: {', '.join(map(repr, unknown))} not in the basket; it has "
                          f"{', '.join(symbols)}")
    gone = delisted_flags(op, symbols)
    out = []
    for e, delisted in zip(entries, gone):
        single = {
            "name": op.name,
            # the instrument's clock too: its single run reads the file on it (and its workers'
            # own zone params are checked against it)
            "data": {k: v for k, v in (("source", e["source"]), ("start", op.data.start), ("end", op.data.end),
                                       ("timezone", e["timezone"]), ("calendar", op.data.calendar),
                                       ("trading_day", op.data.trading_day))
                     if v is not None},
            "instrument": {"symbol": e["symbol"], "pip_size": e["pip_size"]},
            "cash": op.cash,
            "commission": op.commission if e["commission"] is None else e["commission"],
            "slippage": op.slippage if e["slippage"] is None else e["slippage"],
            "leverage": op.leverage,
            "finalize_trades": op.finalize_trades,
            "seed": op.seed,
            "plugins": list(op.plugins),
        }
        read = {"prices": e["prices"], "start": op.data.start, "end": op.data.end, "timezone": e["timezone"],
                "date_column": e["date_column"]}
        out.append({"symbol": e["symbol"], "source": e["source"], "read": read, "operation": single,
                    "delisted": delisted, "key": e["key"]})
    return out


def delisted_flags(op: PortfolioOperation, symbols: list[str]) -> list[bool]:
    """Per symbol, whether ``op`` declares its data end a delisting (``delisted:``).

    >>> op = PortfolioOperation(mode="portfolio", universe={"path": "us_stocks"}, delisted=["FB"])
    >>> delisted_flags(op, ["FB", "IBM"]), delisted_flags(op.model_copy(update={"delisted": "all"}), ["FB", "IBM"])
    ([True, False], [True, True])
    """
    if op.delisted is None:
        return [False] * len(symbols)
    return [op.delisted == "all" or sym in op.delisted for sym in symbols]
