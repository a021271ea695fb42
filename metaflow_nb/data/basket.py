"""Baskets: one file per instrument, bundled or the user's, and how each is read.

A basket is a folder (or a glob) of one file per symbol, the symbol being the file name
without its suffix (``AAPL.csv.gz`` -> ``AAPL``). Two are bundled (samples README):
``us_stocks`` (daily OHLCV: AAPL, FB, GOOG, IBM, MSFT, NASDAQ) and ``sp500_20_close``
(daily adjusted closes of 20 S&P 500 constituents, close only).

A close-only file has no highs and lows to fill stops and targets on. It is read only
when asked for with ``prices="close_only"``: every price of a bar is then its close
(open = high = low = close), so market orders fill at a close, and stops and targets are
checked against closes and fill at the close that crossed them. That is a fill mode, said
in the config, not a guess at the bar's range; an OHLC file read that way is refused, as
is a close-only file read as OHLC.
"""
from __future__ import annotations

import glob as _glob
import os
import re
from pathlib import Path
from typing import Iterable, Literal, Optional

import pandas as pd

from metaflow_nb.data.loader import (SAMPLES_DIR, _read_file, _resolve, cached_read, fingerprint_attrs, load_data,
                                     slice_validated)
from metaflow_nb.data.validate import column_key, date_values, is_epoch, validate_ohlcv
from metaflow_nb.errors import DataError

__all__ = ["list_baskets", "basket_files", "load_instrument", "PriceMode"]

PriceMode = Literal["ohlc", "close_only"]
_BASKETS = ("sp500_20_close", "us_stocks")
_SUFFIXES = (".csv.gz", ".csv", ".parquet", ".pq")


def list_baskets() -> list[str]:
    """Names of the bundled baskets.

    >>> list_baskets()
    ['sp500_20_close', 'us_stocks']
    """
    return list(_BASKETS)


#: what a symbol may be: letters, digits and ``_ . - ^ =``, from a letter or digit (or ``^``
#: then one: index tickers such as ``^GSPC``)
SYMBOL_PATTERN = r"^\^?[A-Za-z0-9][A-Za-z0-9_.\-^=]*$"


def symbol_twin(symbols: Iterable[str]) -> Optional[tuple[str, str]]:
    """The first two of ``symbols`` that are one symbol ignoring case (tickers are
    case-blind, and so are some file systems), equal ones included; None when there are
    none.

    >>> symbol_twin(["IBM", "MSFT", "ibm"]), symbol_twin(["A", "B", "A"]), symbol_twin(["A", "B"])
    (('IBM', 'ibm'), ('A', 'A'), None)
    """
    seen: dict[str, str] = {}
    for symbol in symbols:
        key = symbol.casefold()
        if key in seen:
            return seen[key], symbol
        seen[key] = symbol
    return None


def _symbol_of(path: Path) -> Optional[str]:
    name = path.name
    if name.startswith("."):
        return None  # hidden: ``.csv``, macOS's ``._IBM.csv``
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def basket_files(universe: str, base_dir: Optional[Path] = None) -> dict[str, Path]:
    """``{symbol: file}`` of a universe: a bundled basket name, a folder or a glob, in
    symbol order. Files other than data files (a licence, a README) are skipped; two files
    of one symbol (``A.csv`` and ``A.parquet``) are refused.

    >>> sorted(basket_files("us_stocks"))
    ['AAPL', 'FB', 'GOOG', 'IBM', 'MSFT', 'NASDAQ']
    """
    if universe in _BASKETS:
        paths = sorted((SAMPLES_DIR / universe).iterdir())
    else:
        text = os.path.expanduser(universe)
        if base_dir is not None and not os.path.isabs(text):
            text = str(base_dir / text)
        if _glob.has_magic(text):
            paths = sorted(Path(p) for p in _glob.glob(text))
        elif os.path.isdir(text):
            paths = sorted(Path(text).iterdir())
        else:
            raise DataError(f"universe {universe!r}: not a bundled basket ({', '.join(_BASKETS)}), "
                            f"a folder nor a glob matching files")
    out: dict[str, Path] = {}
    for p in paths:
        symbol = _symbol_of(p)
        if symbol is None or not p.is_file():
            continue
        if re.match(SYMBOL_PATTERN, symbol) is None:
            raise DataError(f"universe {universe!r}: {p.name}: the file name {symbol!r} is not a symbol (letters, "
                            f"digits and _ . - ^ =, from a letter, a digit or ^); rename the file")
        if symbol in out:
            raise DataError(f"universe {universe!r}: symbol {symbol!r} has two files: {out[symbol]} and {p}")
        out[symbol] = p.resolve()
    if not out:
        raise DataError(f"universe {universe!r}: no .csv, .csv.gz or .parquet files found")
    twin = symbol_twin(out)  # AAPL.csv and aapl.csv
    if twin is not None:
        a, b = twin
        raise DataError(f"universe {universe!r}: symbols {a!r} and {b!r} differ only in case ({out[a]} and "
                        f"{out[b]}); symbols must be unique ignoring case")
    return dict(sorted(out.items()))


def _zone_aware(raw: pd.DataFrame, date_column: Optional[str]) -> Optional[bool]:
    """Whether the file's timestamps carry a UTC offset or are epoch numbers (None: cannot
    tell). The timestamps are the ones validation reads (:func:`date_values`)."""
    try:
        values = date_values(raw, date_column)
    except DataError:
        return None  # ambiguous columns: validation says so, naming the file
    if values is None:
        return None
    col = pd.Series(values).dropna()
    if col.empty:
        return None
    if isinstance(col.dtype, pd.DatetimeTZDtype) or is_epoch(col.iloc[0]):
        return True
    try:
        return pd.Timestamp(str(col.iloc[0])).tzinfo is not None
    except (ValueError, TypeError):
        return None


def load_instrument(source: str | os.PathLike[str], symbol: str, *, prices: PriceMode = "ohlc",
                    start: Optional[str] = None, end: Optional[str] = None, timezone: Optional[str] = None,
                    date_column: Optional[str] = None) -> tuple[pd.DataFrame, Optional[bool]]:
    """The validated bars of one instrument and whether its file's timestamps were
    zone-aware (None when unknown). Errors name the instrument and the file.

    ``prices="close_only"`` reads a file with a close column and no open, high or low:
    every price of a bar becomes its close (module docstring).

    >>> bars, aware = load_instrument(basket_files("sp500_20_close")["KO"], "KO", prices="close_only")
    >>> bool((bars["high"] == bars["close"]).all()), aware
    (True, False)
    """
    where = f"instrument {symbol!r}"
    try:
        if isinstance(source, str) and source in _sample_names():
            if prices == "close_only":
                # as for a file with ranges: close_only would throw the bundled highs and lows away
                raise DataError(f"{source}: a bundled sample with open/high/low columns; prices: close_only is for "
                                f"files with a close only (leave prices unset to use the bars' ranges)")
            return load_data(source, start, end, timezone=timezone, date_column=date_column), False
        path = _resolve(source)
        if prices == "close_only":
            frame, aware = cached_read(path, f"close_only|{path}|{timezone}|{date_column}",
                                       lambda: _read_close_only(path, timezone, date_column))
            # validated when read: load_data(frame, start, end) without validating it again
            df = slice_validated(frame, start, end, "<DataFrame>")
            df.attrs["prices"] = "close_only"
            return df, aware
        # what the file's raw columns say (read once while the file is unchanged); its
        # validated bars come from load_data's own cache
        _, (aware, has_range, has_close) = cached_read(path, f"columns|{path}|{date_column}",
                                                       lambda: _raw_facts(path, date_column))
        if not has_range and has_close:
            raise DataError(f"{path}: has a close column but no open, high or low; set prices: close_only "
                            f"to fill every order at the close (README 'Portfolios')")
        return load_data(path, start, end, timezone=timezone, date_column=date_column), aware
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def _raw_facts(path: Path, date_column: Optional[str]) -> tuple[pd.DataFrame, tuple[Optional[bool], bool, bool]]:
    """An empty frame and ``(zone-aware timestamps, has open/high/low, has close)`` of a
    file's raw columns (:func:`~metaflow_nb.data.loader.cached_read` keeps them)."""
    # the names and the first timestamp are in the first lines: the whole file is read (and
    # cached) once, by load_data; it was parsed twice, ~20 % of a cold basket's load
    raw = _read_file(path, date_column, nrows=_HEAD_ROWS)
    aware = _zone_aware(raw, date_column)
    if aware is None and len(raw) == _HEAD_ROWS:
        raw = _read_file(path, date_column)  # no timestamp in the first lines: look further
        aware = _zone_aware(raw, date_column)
    keys = {column_key(c) for c in raw.columns}
    return raw.iloc[:0], (aware, any(k in keys for k in ("open", "high", "low")), "close" in keys)


#: lines :func:`_raw_facts` reads of a CSV
_HEAD_ROWS = 64


def close_only_prices(raw: pd.DataFrame) -> Optional[tuple[pd.DataFrame, str]]:
    """``raw`` with every price its close, and the close column's name, when it has a
    close column (or adj close, standing in as for any file) and no open, high or low;
    None otherwise. What ``prices: close_only`` reads, and how ``metaflow-nb data``
    describes such a file.

    >>> raw = pd.DataFrame({"Date": ["2024-01-02"], "Close": [3.0]})
    >>> frame, name = close_only_prices(raw)
    >>> name, frame[["open", "high", "low", "close"]].iloc[0].tolist()
    ('Close', [3.0, 3.0, 3.0, 3.0])
    >>> close_only_prices(raw.assign(Open=2.0)) is None
    True
    """
    keys = {column_key(c): c for c in raw.columns}
    name = keys.get("close", keys.get("adj close"))
    if name is None or any(k in keys for k in ("open", "high", "low")):
        return None
    close = raw[name]
    return raw.drop(columns=[name]).assign(open=close, high=close, low=close, close=close), name


def _read_close_only(path: Path, timezone: Optional[str], date_column: Optional[str]) -> tuple[pd.DataFrame, Optional[bool]]:
    """A close-only file's validated bars, every price its close, and whether its
    timestamps were zone-aware."""
    raw = _read_file(path, date_column)
    found = close_only_prices(raw)
    if found is None:
        if any(column_key(c) in ("open", "high", "low") for c in raw.columns):
            raise DataError(f"{path}: has open/high/low columns; prices: close_only is for files with a "
                            f"close only (leave prices unset to use the bars' ranges)")
        raise DataError(f"{path}: no close column; expected a date column and close (or adj close)")
    frame, name = found
    try:
        df = validate_ohlcv(frame, str(path), timezone=timezone, date_column=date_column)
    except DataError as exc:
        # open, high and low are the close here: a fault found in them is the file's close column's
        raise DataError(re.sub(r"column '(open|high|low|close)'", f"column {str(name)!r}", str(exc))) from None
    df.attrs = {"source": str(path), "prices": "close_only", **fingerprint_attrs(df)}
    return df, _zone_aware(raw, date_column)


def _sample_names() -> list[str]:
    from metaflow_nb.data.loader import list_samples
    return list_samples()
