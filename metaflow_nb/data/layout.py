"""The layout of a CSV file: its separator, its decimal mark and whether it has a header.

Exports from trading platforms and data vendors are CSV in name only: MetaTrader 5 writes
tab-separated columns ``<DATE> <TIME> <OPEN> ...``, MetaTrader 4's history centre writes no header
(``2024.01.02,00:15,1.1037,...``), nor do Binance's kline files (``1704067200000,42283.58,...``),
European spreadsheets write ``;`` with a decimal comma.
:func:`sniff_csv` reads the first two lines and says how to read the rest; it never
guesses beyond these rules:

* the **separator** is the one of ``,`` ``;`` tab ``|`` that occurs most often in the
  first line (outside double quotes); a tie goes to the comma, unless the line split on
  ``;`` holds a number with a decimal comma (``02.01.2024;1,1037;1,1040;1,1030;1,1035``:
  four of each);
* the **decimal mark** is a comma when the separator is not one and a field of one of the
  first 100 data lines is written ``1,0975`` or ``16.751,64``; a point then groups
  thousands (``1.200,5``). It is a point when a field is written ``1.10000``, ``185.00``
  or ``16,751.64`` (a point followed by other than three digits groups no thousands); a
  comma then groups thousands (``3,285``, also quoted in a comma-separated file). Fields
  of both kinds, or a comma that groups nothing beside decimal points (``3,28``), are
  refused: no reading is right for all of them. A file whose numbers are all written
  ``16.751`` cannot tell whole thousands from three decimals: it is read with decimal
  points, and :meth:`CsvLayout.describe` says so (``metaflow-nb data``);
* there is **no header** when the first line is data: a date or epoch number, then (after
  a time of day, if there is one) numbers only. Its columns are then named by their
  count: ``date, close`` (two), ``date, open, high, low, close[, volume]``, or ``date,
  time, open, high, low, close[, volume]`` when the second field is a time of day; or
  :data:`BINANCE_KLINES` for Binance's 12 columns (data.binance.vision, spot and futures),
  told by their first and seventh fields: the open and close times, epoch numbers of the
  same 13 (milliseconds) or 16 (microseconds) digits, the close after the open. Any other
  count is refused: without names, columns would be assigned by guesswork. A header row of
  Binance's own names (futures files of some periods) is named as the platform too.

The **encoding** is UTF-8 (a byte order mark is skipped) unless the file starts with
UTF-16's byte order mark, or, without one, its first line has a NUL byte beside each ASCII
character: MetaTrader 5's exports and Excel's "Unicode text" are UTF-16.
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Optional

from metaflow_nb.errors import DataError

__all__ = ["BINANCE_KLINES", "CsvLayout", "sniff_csv", "text_encoding", "TIME_OF_DAY"]

_SEPARATORS = (",", ";", "\t", "|")
_QUOTED = re.compile(r'"[^"]*"')
#: a time of day as platforms write it next to a date column: 00:15, 00:15:00, 00:15:00.000
TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?$")
_DATE_LIKE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}|\d{8,19})(?:[ T].*)?$")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?$")
#: a number with a decimal comma: 1,0975, or with points grouping thousands: 16.751,64
_DECIMAL_COMMA = re.compile(r"^[+-]?(?:\d*|\d{1,3}(?:\.\d{3})+),\d+$")
#: a number written with digits, points and commas only (its marks are judged by _decimal_evidence)
_MARKED = re.compile(r"^[+-]?[\d.,]*\d[\d.,]*$")
#: a number that points could group into thousands: 16.751, 1.200.000
_GROUPED = re.compile(r"^[+-]?\d{1,3}(?:\.\d{3})+$")
#: data lines read to find a decimal comma (a first line of whole numbers has none)
_DECIMAL_LINES = 100
_NAMES = {2: ("date", "close"),
          5: ("date", "open", "high", "low", "close"),
          6: ("date", "open", "high", "low", "close", "volume")}
_NAMES_WITH_TIME = {6: ("date", "time", "open", "high", "low", "close"),
                    7: ("date", "time", "open", "high", "low", "close", "volume")}
#: Binance's kline columns (data.binance.vision, spot and futures), the names of the futures
#: files that have a header row; ``open_time`` is a date column name of the validator, so it
#: is the bar's time, and the columns after ``volume`` are dropped as any extra column is
BINANCE_KLINES: tuple[str, ...] = ("open_time", "open", "high", "low", "close", "volume", "close_time",
                                   "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore")
#: Binance's open and close times: epoch milliseconds, or microseconds (spot files since 2025)
_BINANCE_TIME = re.compile(r"^(?:\d{13}|\d{16})$")
_BINANCE = "Binance klines"


@dataclass(frozen=True)
class CsvLayout:
    """How to read a CSV file: ``sep``, ``decimal`` and, for a file without a header row,
    the column ``names`` (None: the first line names them); ``platform`` names the export
    when its layout is one platform's own (``"Binance klines"``), else None; ``encoding``
    is Python's name of the text encoding (UTF-8 and its byte order mark: ``utf-8-sig``)."""

    sep: str = ","
    decimal: str = "."
    names: Optional[tuple[str, ...]] = None
    platform: Optional[str] = None
    encoding: str = "utf-8-sig"
    #: a number such as 16.751 read with a decimal point, in a file that has no decimal
    #: comma to tell whole thousands from three decimals (one of them, as written)
    points_read_as_decimals: Optional[str] = None
    #: the mark grouping thousands beside a decimal point (``3,285``), else None
    thousands: Optional[str] = None
    #: rows above the data that ``names`` replace (yfinance's Price, Ticker and Date rows)
    skip: int = 0
    #: ``(151.234, 1,234)``: a number read with a point grouping thousands beside one read
    #: with a decimal comma, in a file where both could be read the other way round
    points_read_as_thousands: Optional[tuple[str, str]] = None

    def describe(self) -> str:
        """A few words for messages and ``metaflow-nb data``.

        >>> CsvLayout().describe(), CsvLayout("\\t", ",", ("date", "open")).describe()
        ('comma-separated, a header row', 'tab-separated, decimal comma, no header: date, open')
        >>> CsvLayout(platform="Binance klines").describe()
        'comma-separated, a header row: Binance klines'
        >>> CsvLayout("\\t", encoding="utf-16").describe()
        'UTF-16, tab-separated, a header row'
        >>> CsvLayout(";", names=("date", "close"), points_read_as_decimals="16.751").describe().split("; ")[-1]
        '16.751 read as a decimal point (not 16751, whole)'
        """
        parts = [] if self.encoding == "utf-8-sig" else ["UTF-16"]
        parts.append({",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}[self.sep] + "-separated")
        if self.decimal != ".":
            parts.append("decimal comma")
        elif self.thousands == ",":
            parts.append("commas group thousands")
        if self.names is None:
            parts.append("a header row" + (f": {self.platform}" if self.platform else ""))
        elif self.skip:
            parts.append(f"{self.skip} header rows: {self.platform} ({', '.join(self.names)})")
        else:
            names = ", ".join(self.names)
            parts.append("no header: " + (f"{self.platform} ({names})" if self.platform else names))
        out = ", ".join(parts)
        if self.points_read_as_decimals:
            whole = self.points_read_as_decimals.replace(".", "")
            out += f"; {self.points_read_as_decimals} read as a decimal point (not {whole}, whole)"
        if self.points_read_as_thousands:
            point, comma = self.points_read_as_thousands
            out += (f"; {point} read as {point.replace('.', '')} (a point grouping thousands beside a decimal "
                    f"comma, as in {comma}), not as a decimal point: nothing in the file tells which")
        return out


def _opener(path: Path):
    return gzip.open if path.name.lower().endswith(".gz") else open


def text_encoding(path: str | Path) -> str:
    """Python's name of the encoding of the text file at ``path`` (``.gz`` read through):
    ``utf-16`` after UTF-16's byte order mark, ``utf-16-le`` or ``utf-16-be`` when the
    first bytes are ASCII characters each beside a NUL byte, else ``utf-8-sig``.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.csv")
    >>> _ = open(p, "wb").write("date,close\\n".encode("utf-16-le"))
    >>> text_encoding(p)
    'utf-16-le'
    """
    path = Path(path)
    try:
        with _opener(path)(path, "rb") as fh:
            head = fh.read(64)
    except (OSError, EOFError):
        return "utf-8-sig"  # pandas' reader says what is wrong with the file
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    pairs = len(head) // 2
    if pairs >= 2:
        even, odd = head[0:2 * pairs:2], head[1:2 * pairs:2]
        if not odd.strip(b"\x00") and even.isascii() and b"\x00" not in even:
            return "utf-16-le"
        if not even.strip(b"\x00") and odd.isascii() and b"\x00" not in odd:
            return "utf-16-be"
    return "utf-8-sig"


def open_text(path: str | Path, encoding: str = "utf-8-sig") -> IO[str]:
    """A text handle on the file at ``path`` (``.gz`` read through), bytes that do not
    decode replaced, line ends as written.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.csv")
    >>> _ = open(p, "w").write("date,close\\n2024-01-02,1.5\\n")
    >>> with open_text(p) as fh:
    ...     fh.readlines()
    ['date,close\\n', '2024-01-02,1.5\\n']
    """
    path = Path(path)
    return _opener(path)(path, "rt", encoding=encoding, errors="replace", newline="")


def _first_lines(path: Path, count: int = 2, encoding: str = "utf-8-sig") -> list[str]:
    lines: list[str] = []
    try:
        with open_text(path, encoding) as fh:
            for line in fh:
                line = line.rstrip("\r\n")
                if line.strip():
                    lines.append(line)
                    if len(lines) == count:
                        break
    except (OSError, EOFError):
        return []  # pandas' reader says what is wrong with the file
    return lines


def _split(line: str, sep: str) -> list[str]:
    return [f.strip().strip('"').strip() for f in line.split(sep)]


def _binance_klines(fields: list[str]) -> bool:
    """Whether a data line is one of Binance's klines: 12 fields, the first (open time) and
    the seventh (close time) epoch numbers of the same digits (13: milliseconds, 16:
    microseconds), the close after the open. Both times, not the count alone: 12 columns
    of another layout are not read as Binance's."""
    return (len(fields) == len(BINANCE_KLINES) and _BINANCE_TIME.match(fields[0]) is not None
            and _BINANCE_TIME.match(fields[6]) is not None and len(fields[0]) == len(fields[6])
            and int(fields[6]) > int(fields[0]))


def sniff_csv(path: str | Path) -> CsvLayout:
    """The layout of the CSV (or ``.csv.gz``) file at ``path`` (module docstring).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "mt4.csv")
    >>> _ = open(p, "w").write("2024.01.02,00:15,1.1037,1.1040,1.1030,1.1035,120\\n")
    >>> sniff_csv(p)
    CsvLayout(sep=',', decimal='.', names=('date', 'time', 'open', 'high', 'low', 'close', 'volume'), platform=None, encoding='utf-8-sig', points_read_as_decimals=None, thousands=None, skip=0, points_read_as_thousands=None)
    >>> _ = open(p, "w").write("Datum;Eröffnung;Hoch;Tief;Schluss\\n02.01.2024;1,1037;1,104;1,103;1,1035\\n")
    >>> sniff_csv(p)
    CsvLayout(sep=';', decimal=',', names=None, platform=None, encoding='utf-8-sig', points_read_as_decimals=None, thousands=None, skip=0, points_read_as_thousands=None)
    >>> _ = open(p, "w").write("1704067200000,42283.58,42298.62,42283.58,42298.61,35.93,1704067259999,"
    ...                        "1519603.42,1327,23.28,984796.01,0\\n")
    >>> layout = sniff_csv(p)
    >>> layout.platform, layout.names[:2], len(layout.names)
    ('Binance klines', ('open_time', 'open'), 12)
    """
    path = Path(path)
    encoding = text_encoding(path)
    lines = _first_lines(path, count=2 + _DECIMAL_LINES, encoding=encoding)
    if len(lines) > 1 and _BANNER.match(lines[0].strip()):
        # CryptoDataDownload's files open with their site's address above the header
        layout = _sniff_lines(path, lines[1:], encoding)
        return replace(layout, skip=layout.skip + 1,
                       platform=layout.platform or f"a first line {lines[0].strip()!r} above the header")
    return _sniff_lines(path, lines[:1 + _DECIMAL_LINES], encoding)


#: a first line that is a web address alone (CryptoDataDownload's), not a header
_BANNER = re.compile(r"^(?:https?://|www\.)[^\s,;|\t]+[,;|\t]*$", re.IGNORECASE)


def _sniff_lines(path: Path, lines: list[str], encoding: str) -> CsvLayout:
    if not lines:
        return CsvLayout(encoding=encoding)
    bare = _QUOTED.sub("", lines[0])
    counts = [bare.count(s) for s in _SEPARATORS]
    sep = _SEPARATORS[max(range(len(_SEPARATORS)), key=lambda k: (counts[k], -k))]
    yf = _yfinance(path, lines, sep)
    if yf is not None:
        names, skip, ticker = yf
        return CsvLayout(sep, ".", names, f"yfinance (ticker {ticker})", encoding, skip=skip)
    if sep == "," and counts[1] == counts[0] and any(_DECIMAL_COMMA.match(f) for f in _split(lines[0], ";")):
        sep = ";"  # each number's decimal comma makes as many commas as there are semicolons
    first = _split(lines[0], sep)
    trailing = 0   # empty fields after the last (lines that end in the separator)
    while len(first) > 2 and first[-1] == "":
        first.pop()
        trailing += 1
    rest = first[2:] if len(first) > 1 and TIME_OF_DAY.match(first[1]) else first[1:]
    headerless = (len(first) >= 2 and _DATE_LIKE.match(first[0]) is not None and len(rest) > 0
                  and all(_NUMBER.match(f) for f in rest))
    rows = [_split(line, sep)[1:] for line in (lines if headerless else lines[1:])]
    fields = [f for row in rows for f in row]
    if sep == ",":
        # a comma-separated file's commas inside numbers are quoted ("16,751.64")
        fields += [q.strip('"').strip() for line in lines[0 if headerless else 1:] for q in _QUOTED.findall(line)]
    comma, point = _decimal_evidence(fields)
    if comma is not None and point is not None:
        raise DataError(f"{path}: numbers written both {comma!r} (a decimal comma) and {point!r} (a decimal point) "
                        f"in its first {_DECIMAL_LINES} data lines; expected one decimal mark in the file")
    thousands = None
    either = None
    pointed = [f for f in fields if "." in f]
    if point is not None:
        decimal = "."
        if any("," in f for f in fields if _MARKED.match(f)):
            thousands = ","  # beside a decimal point a comma groups thousands (3,285; "16,751.64")
    else:
        commas = [f for f in fields if _DECIMAL_COMMA.match(f)]
        decimal = "," if sep != "," and commas else "."
        if decimal == "," and pointed and all(_GROUPED.match(f) for f in pointed):
            # 151.234 beside 1,234: each reads either way; a ';' file's usual reading, said
            either = (pointed[0], commas[0])
    grouped = None   # 16.751: whole thousands or three decimals? (no comma anywhere to tell)
    if sep != "," and decimal == "." and fields:
        if pointed and all(_GROUPED.match(f) for f in pointed):
            grouped = pointed[0]
    names = None
    platform = None
    if headerless:
        table = _NAMES_WITH_TIME if TIME_OF_DAY.match(first[1]) else _NAMES
        names = table.get(len(first))
        if names is None and _binance_klines(first):
            names, platform = BINANCE_KLINES, _BINANCE
        if names is not None and trailing:   # the empty fields get names of their own, then go unread
            names = (*names, *(f"unnamed_{len(names) + k}" for k in range(trailing)))
        if names is None:
            known = ("date, open, high, low, close[, volume], date, time, open, high, low, close[, volume] or "
                     "date, close; or Binance's 12 kline columns, open and close times in epoch milliseconds or "
                     "microseconds")
            raise DataError(f"{path}: no header row, and its {len(first)} columns match no layout read without "
                            f"one ({known}); add a header row naming the columns (date, open, high, low, close, "
                            f"volume)")
    elif [f.lower() for f in first] == list(BINANCE_KLINES):
        platform = _BINANCE  # read by its names as any header row; named for `metaflow-nb data`
    return CsvLayout(sep, decimal, names, platform, encoding, grouped, thousands, points_read_as_thousands=either)


def _yfinance(path: Path, lines: list[str], sep: str) -> Optional[tuple[tuple[str, ...], int, str]]:
    """yfinance's ``download(...).to_csv()`` (since 0.2.51): a ``Price`` row naming the
    columns and a ``Ticker`` row (either first: ``group_by="ticker"`` swaps them), then a
    ``Date`` row with no values, above the data: ``(names, rows to skip, ticker)``, or None
    for any other file. A download of several tickers is refused: one file is one
    instrument (a basket is a folder of them)."""
    if len(lines) < 3:
        return None
    a, b = _split(lines[0], sep), _split(lines[1], sep)
    heads = (a[0].lower(), b[0].lower())
    if heads == ("price", "ticker"):
        prices, tickers = a, b
    elif heads == ("ticker", "price"):
        prices, tickers = b, a
    else:
        return None
    if len(prices) != len(tickers) or len(prices) < 2:
        return None
    symbols = list(dict.fromkeys(t for t in tickers[1:] if t))
    if len(symbols) > 1:
        raise DataError(f"{path}: a yfinance download of {len(symbols)} tickers ({', '.join(symbols)}); expected one "
                        f"ticker per file: save each one's columns (df.xs({symbols[0]!r}, axis=1, level='Ticker')"
                        f".to_csv(...)), or a folder of them as a universe")
    third = _split(lines[2], sep)
    skip = 3 if third[0].lower() in ("date", "datetime") and not any(third[1:]) else 2
    return ("date", *prices[1:]), skip, symbols[0] if symbols else "?"


def _decimal_evidence(fields: list[str]) -> tuple[Optional[str], Optional[str]]:
    """The first of ``fields`` that can only be read with a decimal comma (``1,0975``,
    ``16.751,64``, ``1.200.000``) and the first that can only be read with a decimal point
    (``1.10000``, ``16,751.64``, ``1,200,000``), or None. A mark followed by other than
    three digits is a decimal mark (``3,28`` a comma's); ``16.751`` and ``3,285`` can be
    either: they are no evidence.

    >>> _decimal_evidence(["1,0975", "3,285", "16.751"]), _decimal_evidence(["1.10000", "3,285"])
    (('1,0975', None), (None, '1.10000'))
    """
    comma = point = None
    for f in fields:
        kind = _mark_kind(f.lstrip("+-")) if _MARKED.match(f) else None
        if kind == "," and comma is None:
            comma = f
        elif kind == "." and point is None:
            point = f
    return comma, point


def _mark_kind(body: str) -> Optional[str]:
    """The decimal mark a number written ``body`` (digits, points, commas) must have, or
    None when it has no mark, could have either, or is no number."""
    if "," in body and "." in body:
        last = "," if body.rfind(",") > body.rfind(".") else "."
        other = "." if last == "," else ","
        whole, _, frac = body.rpartition(last)
        groups = whole.split(other)
        grouped = (frac.isdigit() and 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])
                   and all(g.isdigit() for g in groups))
        return last if grouped else None
    for mark in (",", "."):
        if mark not in body:
            continue
        parts = body.split(mark)
        if len(parts) > 2:
            # a mark seen twice groups thousands: the other mark is the decimal one
            grouped = 1 <= len(parts[0]) <= 3 and all(len(g) == 3 for g in parts[1:])
            return ("." if mark == "," else ",") if grouped else None
        lead, tail = parts
        if not tail:
            return None
        if len(tail) == 3 and 1 <= len(lead) <= 3 and lead[0] != "0":
            return None  # 16.751, 3,285: three decimals or whole thousands
        return mark
    return None
