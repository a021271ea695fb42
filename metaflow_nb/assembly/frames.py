"""Names for what the kernel returns: the trades and journal tables users read."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..engine import codes
from .run import SimulationOutput


_TRADE_COLUMNS = ["trade_id", "opportunity_id", "direction", "entry_bar", "exit_bar", "entry_time", "exit_time",
                  "entry_price", "exit_price", "size", "pnl", "return_pct", "commission", "exit_reason",
                  "stop_price", "target_price", "duration_bars"]


def trades_frame(out: SimulationOutput) -> pd.DataFrame:
    """One row per closed trade, linked to its opportunity by ``opportunity_id``.

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.run import run_one
    >>> out = run_one(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"), mf.load_data("sp500_daily"))
    >>> first = trades_frame(out).iloc[0]
    >>> first["direction"], int(first["entry_bar"]), int(first["duration_bars"]), first["exit_reason"]
    ('short', 29, 11, 'SIGNAL')
    """
    t = out.trades
    n = t.shape[0]
    # no trade: the same columns and dtypes as with trades (they were all float64, and a
    # basket's table, concatenated with them, lost its ids' ints and its times)
    if n > 0 and _from_blocks is not None and out.index.dtype == _NS:
        return _trades_from_blocks(t, out.index, out)
    entry_bar = t["entry_bar"].copy()
    exit_bar = t["exit_bar"].copy()
    size = t["size"].copy()
    entry_price = t["entry_price"].copy()
    pnl = t["pnl"].copy()
    reasons = _exit_table(out)[t["exit_reason"]]
    return pd.DataFrame({
        "trade_id": np.arange(n, dtype=np.int64),
        "opportunity_id": t["opp"].copy(),
        "direction": _text(_DIRECTION_TABLE[(t["direction"] > 0).view(np.int8)]),
        "entry_bar": entry_bar,
        "exit_bar": exit_bar,
        "entry_time": out.index[entry_bar],
        "exit_time": out.index[exit_bar],
        "entry_price": entry_price,
        "exit_price": t["exit_price"].copy(),
        "size": size,
        "pnl": pnl,
        "return_pct": pnl / (entry_price * size) * 100.0,
        "commission": t["commission"].copy(),
        "exit_reason": _text(reasons),
        "stop_price": t["stop"].copy(),
        "target_price": t["target"].copy(),
        "duration_bars": exit_bar - entry_bar,
    })


def _trades_from_blocks(t: np.ndarray, index: pd.DatetimeIndex, out: SimulationOutput) -> pd.DataFrame:
    """:func:`trades_frame` built as its four dtype blocks directly: the same frame (values,
    dtypes, columns, index) without the constructor's per-column inference and copies."""
    n = t.shape[0]
    ints = np.empty((5, n), dtype=np.int64)  # trade_id, opportunity_id, entry_bar, exit_bar, duration_bars
    ints[0] = np.arange(n, dtype=np.int64)
    ints[1] = t["opp"]
    ints[2] = t["entry_bar"]
    ints[3] = t["exit_bar"]
    np.subtract(ints[3], ints[2], out=ints[4])
    floats = np.empty((8, n), dtype=np.float64)
    for row, col in enumerate(("entry_price", "exit_price", "size", "pnl")):
        floats[row] = t[col]
    floats[4] = floats[3] / (floats[0] * floats[2]) * 100.0  # return_pct
    floats[5] = t["commission"]
    floats[6] = t["stop"]
    floats[7] = t["target"]
    times = np.empty((2, n), dtype=_NS)
    stamps = index.asi8
    times.view(np.int64)[0] = stamps[ints[2]]
    times.view(np.int64)[1] = stamps[ints[3]]
    text = np.empty((2, n), dtype=object)
    text[0] = _DIRECTION_TABLE[(t["direction"] > 0).view(np.int8)]
    text[1] = _exit_table(out)[t["exit_reason"]]
    return _from_blocks([(ints, _TRADE_INT_AT), (floats, _TRADE_FLOAT_AT), (times, _TRADE_TIME_AT),
                         (text, _TRADE_TEXT_AT)], pd.RangeIndex(n), _TRADE_COLUMN_INDEX)


def journal_frame(out: SimulationOutput, worker_ids: list[str]) -> pd.DataFrame:
    """The run's event log: every detection, rejection (with threat and reason), order and trade.

    ``opportunity_id`` links events of one setup; ``trade_id`` (nullable: ``<NA>`` on events
    before a trade opens) links TRADE_OPENED/CLOSED to the trades table; ``threat_id``
    names the first threat (workforce order) that rejected a setup, ``reason`` its reason
    code and ``active_reasons`` all threats active then.
    ``fill_rule`` says, on TRADE_OPENED and TRADE_CLOSED events, what decided the exits
    on that bar: ``bar`` (one outcome possible), ``pessimistic`` (the bar touched the stop
    and a take-profit level, or a limit's fill bar a take-profit level, and no finer data
    said which came first: the stop first, no take-profit on the fill bar) or
    ``finer_bars`` (the finer bars of ``data.intrabar`` decided).

    >>> import metaflow_nb as mf
    >>> from metaflow_nb.assembly.run import run_one
    >>> out = run_one(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"), mf.load_data("sp500_daily"))
    >>> journal_frame(out, ["sma_1", "entry_1", "exit_1", "size_1"])["event"].head(3).tolist()
    ['OPPORTUNITY_DETECTED', 'ORDER_PLACED', 'TRADE_OPENED']
    """
    j = out.journal
    opps = out.group.opps
    threat_ids = out.group.threat_ids
    n = j.shape[0]
    bar = j["bar"].copy()
    opp = j["opp"].copy()
    threat = j["threat"]
    active = j["active"]
    has_opp = opp >= 0
    safe_opp = np.where(has_opp, opp, 0) if len(opps) else np.zeros(n, dtype=np.int64)
    # names by lookup tables indexed with the integer codes: no Python loop per event
    reason_of, reason_table = _threat_names(out.group)
    reason_table = _with_codes(reason_table, out.plan.exit_names)
    active_names = np.full(n, "", dtype=object)
    for a in np.unique(active[active != 0]):
        a = int(a)
        active_names[active == a] = "|".join(reason_of[t] for t in range(len(threat_ids)) if a >> t & 1)
    source = np.asarray([*worker_ids, ""], dtype=object)
    src_idx = np.where(has_opp, opps.worker[safe_opp], len(worker_ids)) if len(opps) else \
        np.full(n, len(worker_ids), dtype=np.int64)
    threat_names = np.asarray([*threat_ids, ""], dtype=object)
    return pd.DataFrame({
        "event_id": np.arange(n, dtype=np.int64),
        "bar": bar,
        "time": out.index[bar] if n else out.index[:0],
        "event": _text(_EVENT_TABLE[j["event"]]),
        "opportunity_id": opp,
        # events before a trade exists have none: <NA> (nullable), not a -1 to be mistaken for an id
        "trade_id": pd.arrays.IntegerArray(j["trade"].astype(np.int64), j["trade"] < 0),
        "direction": _text(_DIRECTION_TABLE[(j["direction"] > 0).view(np.int8)]),
        "source_id": _text(source[src_idx]),
        "threat_id": _text(threat_names[np.where(threat >= 0, threat, len(threat_ids))]),
        "reason": _text(reason_table[j["reason"]]),
        "active_reasons": _text(active_names),
        "zone_top": np.where(has_opp, opps.top[safe_opp], np.nan) if len(opps) else np.full(n, np.nan),
        "zone_bottom": np.where(has_opp, opps.bottom[safe_opp], np.nan) if len(opps) else np.full(n, np.nan),
        "fill_rule": _text(np.where((j["event"] == codes.EV_TRADE_CLOSED) | (j["event"] == codes.EV_TRADE_OPENED),
                                    _FILL_RULE_TABLE[j["rule"]], "")),
    })


def _threat_names(group) -> tuple[list[str], np.ndarray]:
    """The reason name of each threat of ``group`` and the table naming the journal's codes.

    A plugin's own reason codes are allocated per process (in registration order), so they
    are named by the group that used them (which may come from another process, as a
    pickled result of a loky or dask worker), never by this process's table.
    """
    names = list(group.reason_names) or [codes.REASON_NAMES[int(r)] for r in group.reasons]
    own = [(int(c), name) for c, name in zip(group.reasons, names) if c >= codes.FIRST_PLUGIN_REASON]
    return names, _with_codes(_REASON_TABLE, own)


def _exit_table(out: SimulationOutput) -> np.ndarray:
    """The table naming the trades' exit reasons: the built-in ones and the exit planners'
    own (named by the plan, for the same reason as :func:`_threat_names`)."""
    return _with_codes(_REASON_TABLE, out.plan.exit_names)


def _with_codes(table: np.ndarray, own) -> np.ndarray:
    """``table`` with plugins' ``(code, name)`` pairs ``own`` added (itself when none)."""
    if not own:
        return table
    grown = np.full(max(len(table), max(c for c, _ in own) + 1), "", dtype=object)
    grown[:len(table)] = table
    for c, name in own:
        grown[c] = name
    return grown


def _text(values: np.ndarray) -> pd.Series:
    # plain object columns: pandas 3 would otherwise convert every string to Arrow, which
    # costs more than the whole simulation of a 100k-bar run
    return pd.Series(values, dtype=object, copy=False)


def _table(names: dict[int, str]) -> np.ndarray:
    t = np.full(max(names) + 1, "", dtype=object)
    for k, v in names.items():
        t[k] = v
    return t


_EVENT_TABLE = _table(codes.EVENT_NAMES)
_FILL_RULE_TABLE = _table(codes.FILL_RULE_NAMES)
# the built-in codes only: they are the same in every process
_REASON_TABLE = _table({k: v for k, v in codes.REASON_NAMES.items() if k < codes.FIRST_PLUGIN_REASON})
_DIRECTION_TABLE = np.array(["short", "long"], dtype=object)  # indexed by direction > 0

try:  # pandas >= 3: a frame from ready-made blocks (public, "advanced" API)
    from pandas.api.internals import create_dataframe_from_blocks as _from_blocks
except ImportError:  # pragma: no cover - pandas 2: the constructor path above
    _from_blocks = None
_NS = np.dtype("datetime64[ns]")
_TRADE_COLUMN_INDEX = pd.Index(_TRADE_COLUMNS)
_TRADE_INT_AT, _TRADE_FLOAT_AT, _TRADE_TIME_AT, _TRADE_TEXT_AT = (
    np.array([_TRADE_COLUMNS.index(c) for c in cols], dtype=np.intp) for cols in (
        ("trade_id", "opportunity_id", "entry_bar", "exit_bar", "duration_bars"),
        ("entry_price", "exit_price", "size", "pnl", "return_pct", "commission", "stop_price", "target_price"),
        ("entry_time", "exit_time"),
        ("direction", "exit_reason")))
