"""Test-only helpers for the engine tests: scripted plugins, tiny OHLC frames, runners.

Imported by ``tests/test_engine_fills.py`` and ``tests/test_engine_invariants.py`` (the
tests directory is on ``sys.path`` under pytest's default import mode).

* ``test_scripted`` (opportunity): emits +1/-1 at given bars, optionally with a zone.
* ``test_mask_threat`` (threat): blocks longs/shorts/both at given bars with a reason.
* ``test_limit_entry`` (entry): a limit order at a zone edge (long: top, short: bottom),
  cancelled when a close goes beyond the far edge, optional expiry; market order where
  the setup has no zone.
* :func:`run` builds a blueprint dict + operation dict and calls ``metaflow_nb.api.backtest``.
* :func:`kernel` calls the compiled loop directly with named arguments and defaults.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from metaflow_nb import api
from metaflow_nb.engine import codes
from metaflow_nb.engine import records as rec
from metaflow_nb.engine.nb import simulate as nbsim
from metaflow_nb.workers import base as wbase
from metaflow_nb.workers.base import (
    EntryPlan, EntryPlanner, ExitPlan, ExitPlanner, OpportunityWorker, Params, Signals, ThreatWorker, param,
)

# ---------------------------------------------------------------- test plugins


def _register(cls):
    """Register once, even if this module is imported under two names."""
    wbase._ensure_builtins()
    existing = wbase._REGISTRY.get(cls.name)
    if existing is not None:
        return existing
    return wbase.register(cls)


class ScriptedParams(Params):
    longs: tuple[int, ...] = ()
    shorts: tuple[int, ...] = ()
    # (bar, top, bottom): the zone attached to the setup on that bar
    zones: tuple[tuple[int, float, float], ...] = ()


class Scripted(OpportunityWorker):
    """Emits exactly the directions it is told to, at the bars it is told to."""

    name = "test_scripted"
    Params = ScriptedParams

    def detect(self, ctx):
        n = ctx.n
        d = np.zeros(n, np.int8)
        d[[i for i in self.params.longs if i < n]] = 1
        d[[i for i in self.params.shorts if i < n]] = -1
        top = np.full(n, np.nan)
        bottom = np.full(n, np.nan)
        for bar, t, b in self.params.zones:
            if bar < n:
                top[bar], bottom[bar] = t, b
        return Signals(d, top, bottom)


Scripted = _register(Scripted)


class LimitEntryParams(Params):
    expiry_bars: int = param(0, ge=0)


class LimitEntry(EntryPlanner):
    """Limit at the zone edge nearest to price: longs buy at ``top``, shorts sell at ``bottom``."""

    name = "test_limit_entry"
    Params = LimitEntryParams

    def plan(self, ctx, opps):
        up = opps.direction > 0
        limit = np.where(up, opps.top, opps.bottom).astype(np.float64)
        cancel = np.where(up, opps.bottom, opps.top).astype(np.float64)
        return EntryPlan(limit=limit, cancel=cancel, expiry_bars=self.params.expiry_bars)


LimitEntry = _register(LimitEntry)


class MaskThreatParams(Params):
    bars: tuple[int, ...] = ()
    block: int = param(3, ge=1, le=3)  # 1 longs, 2 shorts, 3 both
    reason_code: str = "MARKET_RISK"


class MaskThreat(ThreatWorker):
    """Blocks ``block`` at the given bars, with the given reason code."""

    name = "test_mask_threat"
    Params = MaskThreatParams
    # one plugin, several codes: each instance picks one with ``reason_code``
    reasons = ("MARKET_RISK", "VOLATILITY_SPIKE", "SESSION_CLOSED", "MAX_DRAWDOWN")

    @property
    def reason(self) -> str:  # type: ignore[override]
        return self.params.reason_code

    def mask(self, ctx):
        m = np.zeros(ctx.n, np.int8)
        m[[i for i in self.params.bars if i < ctx.n]] = self.params.block
        return m


MaskThreat = _register(MaskThreat)


class ScriptedExitParams(Params):
    longs: tuple[int, ...] = ()    # bars whose close says: leave a long at the next open
    shorts: tuple[int, ...] = ()
    every: int = param(0, ge=0)    # > 0: also every `every`-th bar (bars every-1, 2*every-1, ...), both sides
    peek: int = param(0, ge=0)     # > 0: flag a long's exit where the close `peek` bars later is lower (look-ahead)


class ScriptedExit(ExitPlanner):
    """Exit conditions at the bars it is told to (``ExitPlan.exit_long``/``exit_short``)."""

    name = "test_scripted_exit"
    Params = ScriptedExitParams

    def plan(self, ctx, opps, entry):
        n = ctx.n
        long_, short = np.zeros(n, np.int8), np.zeros(n, np.int8)
        long_[[i for i in self.params.longs if i < n]] = 1
        short[[i for i in self.params.shorts if i < n]] = 1
        if self.params.every:
            long_[self.params.every - 1::self.params.every] = 1
            short[self.params.every - 1::self.params.every] = 1
        k = self.params.peek
        if k:
            long_[:-k] |= (ctx.close[k:] < ctx.close[:-k]).astype(np.int8)
        return ExitPlan(exit_long=long_, exit_short=short)


ScriptedExit = _register(ScriptedExit)

# ---------------------------------------------------------------- data


def make_ohlc(rows: Sequence[Sequence[float]], start: str = "2024-01-01", freq: str = "D") -> pd.DataFrame:
    """A validated-looking OHLCV frame from ``(open, high, low, close)`` rows."""
    idx = pd.date_range(start, periods=len(rows), freq=freq, name="time")
    df = pd.DataFrame([list(map(float, r)) for r in rows], columns=["open", "high", "low", "close"], index=idx)
    df["volume"] = 1000.0
    return df


def flat_bars(prices: Sequence[float], start: str = "2024-01-01", freq: str = "D") -> pd.DataFrame:
    """Bars with open = high = low = close = price (no intrabar movement)."""
    return make_ohlc([(p, p, p, p) for p in prices], start, freq)


# ---------------------------------------------------------------- blueprints and runs


def blueprint(longs: Sequence[int] = (), shorts: Sequence[int] = (), zones: Sequence[tuple] = (),
              direction: str = "long_short", reverse: Optional[bool] = None,
              stops: Optional[dict[str, Any]] = None, sizer: Optional[dict[str, Any]] = None,
              entry: Optional[dict[str, Any]] = None, threats: Sequence[dict[str, Any]] = ()) -> dict:
    """A blueprint dict with the scripted opportunity worker.

    ``reverse``: None = no reverse_on_opposite, False = reverse, True = exclusive orders.
    ``stops``: params of percent_stops; ``sizer``: ``{"plugin": ..., "params": ...}``.
    """
    exits: list[dict[str, Any]] = []
    if stops is not None:
        exits.append({"instance_id": "stops_1", "plugin": "percent_stops", "params": dict(stops)})
    if reverse is not None:
        exits.append({"instance_id": "exit_1", "plugin": "reverse_on_opposite",
                      "params": {"exclusive_orders": bool(reverse)}})
    planning: dict[str, Any] = {"exit_planning": exits}
    if sizer is not None:
        planning["size_planning"] = [{"instance_id": "size_1", **sizer}]
    if entry is not None:
        planning["entry_planning"] = [{"instance_id": "entry_1", **entry}]
    return {
        "name": "scripted",
        "direction": direction,
        "workforce": {
            "opportunity_workers": [{
                "instance_id": "script_1", "plugin": "test_scripted",
                "params": {"longs": list(longs), "shorts": list(shorts), "zones": [list(z) for z in zones]},
            }],
            "threat_workers": list(threats),
            "planning_workers": planning,
        },
    }


def operation(cash: float = 10_000.0, commission: float = 0.0, slippage: float = 0.0,
              finalize: bool = False, leverage: float = 1.0) -> dict:
    return {"name": "test", "cash": cash, "commission": commission, "slippage": slippage,
            "finalize_trades": finalize, "leverage": leverage}


def run(df: pd.DataFrame, *, cash: float = 10_000.0, commission: float = 0.0, slippage: float = 0.0,
        finalize: bool = False, leverage: float = 1.0, **bp: Any):
    """One backtest of the scripted strategy on ``df`` through the public API."""
    return api.backtest(blueprint(**bp), operation(cash, commission, slippage, finalize, leverage), data=df)


def events(res, kind: Optional[str] = None) -> pd.DataFrame:
    j = res.journal
    return j if kind is None else j[j["event"] == kind].reset_index(drop=True)


# ---------------------------------------------------------------- the kernel, by name


def kernel(df: pd.DataFrame, opp_bar: Sequence[int], opp_dir: Sequence[int], *,
           limit=None, cancel=None, stop=None, target=None,
           threat_mask=None, dd_limit=None, dd_cooldown=None, reason=None,
           stop_mode: int = codes.PRICE_NONE, target_mode: int = codes.PRICE_NONE, reverse: int = 0,
           allow_long: bool = True, allow_short: bool = True, expiry_bars: int = 0,
           sizer_kind: int = codes.SIZER_ALL_IN, sizer_param: float = 1.0, whole_units: bool = True,
           time_stop_bars: int = 0, trail_mode: int = codes.TRAIL_NONE, trail_param: float = 0.0,
           breakeven_r: float = 0.0, trail_long=None, trail_short=None, flat_at=None,
           partial=None, partial_mode: int = codes.PRICE_NONE, partial_fraction: float = 0.0,
           cash: float = 10_000.0, commission: float = 0.0, slippage: float = 0.0, leverage: float = 1.0,
           finalize: bool = False, fine: Optional[tuple] = None) -> dict[str, np.ndarray]:
    """Call :func:`metaflow_nb.engine.nb.simulate.simulate` with defaults for what is not given.

    ``fine``: the finer bars inside each bar (intrabar resolution), a
    :class:`~metaflow_nb.data.intrabar.FinerBars`.

    ``threat_mask`` is ``(k, n)`` int8 (or None for no threats); ``dd_limit``/``dd_cooldown``/
    ``reason`` are per threat (NaN limit = mask threat). Returns ``equity, position,
    trades, journal`` (trades/journal cut to their used rows).
    """
    n = len(df)
    bars = np.asarray(opp_bar, np.int64)
    m = bars.shape[0]

    def arr(x):
        return np.full(m, np.nan) if x is None else np.ascontiguousarray(x, np.float64)

    if threat_mask is None:
        threat_mask = np.zeros((0, n), np.int8)
    threat_mask = np.ascontiguousarray(threat_mask, np.int8)
    k = threat_mask.shape[0]
    dd_limit = np.full(k, np.nan) if dd_limit is None else np.asarray(dd_limit, np.float64)
    dd_cooldown = np.zeros(k, np.int64) if dd_cooldown is None else np.asarray(dd_cooldown, np.int64)
    reason = np.full(k, codes.REASON_MARKET_RISK, np.int64) if reason is None else np.asarray(reason, np.int64)
    out = nbsim.simulate(
        rec.bars(df["open"].to_numpy(), df["high"].to_numpy(), df["low"].to_numpy(), df["close"].to_numpy(), fine),
        rec.setups(bars, np.asarray(opp_dir, np.int64), arr(limit), arr(cancel), arr(stop), arr(target), arr(partial)),
        rec.Threats(threat_mask, dd_limit, dd_cooldown, reason),
        rec.rules(stop_mode, target_mode, reverse, allow_long, allow_short, expiry_bars, sizer_kind, sizer_param,
                  whole_units, time_stop_bars, trail_mode, trail_param, breakeven_r, partial_mode, partial_fraction),
        rec.account(cash, commission, slippage, leverage, finalize),
        rec.Exits(per_bar(trail_long, np.nan), per_bar(trail_short, np.nan), per_bar(flat_at, 0.0)))
    return out._asdict()


def per_bar(values, default: float) -> np.ndarray:
    """A per-bar exit input as the kernel takes it: the values, or one default for all bars."""
    return np.full(1, default) if values is None else np.ascontiguousarray(values, np.float64)


def journal_rows(journal: np.ndarray, kind: int) -> np.ndarray:
    """Rows of a raw kernel journal with event type ``kind``."""
    return journal[journal["event"] == kind]


def same_records(a: np.ndarray, b: np.ndarray) -> bool:
    """Structured kernel records equal field by field (NaN equal to NaN)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return all(np.array_equal(a[f], b[f], equal_nan=a.dtype[f].kind == "f") for f in a.dtype.names)


def assert_prefix_settled(part, full, t: int) -> None:
    """A run on the first ``t`` bars (``part``) equals the run on all bars (``full``) in
    everything decided and settled before the prefix's last bar: equity and position,
    trades closed before bar ``t - 1``, journal events before it."""
    assert np.array_equal(part.equity.to_numpy()[: t - 1], full.equity.to_numpy()[: t - 1])
    assert np.array_equal(part.position.to_numpy()[: t - 1], full.position.to_numpy()[: t - 1])
    for column, table in (("exit_bar", "trades"), ("bar", "journal")):
        a, b = (getattr(r, table) for r in (part, full))
        a = a[a[column] < t - 1].reset_index(drop=True)
        b = b[b[column] < t - 1].reset_index(drop=True)
        assert len(a) == len(b), (a, b)
        # (an empty trades table has float columns: compare contents only when there are rows)
        assert len(a) == 0 or a.equals(b), (a, b)


def on_full_path(records) -> list:
    """The kernel's records with one more threat, a drawdown monitor that never fires:
    every bar then takes the full path (no quiet-stretch loop), the run must not change."""
    from metaflow_nb.engine.records import Threats

    args = list(records)
    mask, dd_limit, dd_cool, reason = args[2]
    n = mask.shape[1]
    args[2] = Threats(np.ascontiguousarray(np.vstack([mask, np.zeros((1, n), np.int8)])),
                      np.append(dd_limit, np.inf), np.append(dd_cool, 0).astype(np.int64),
                      np.append(reason, reason[0] if len(reason) else 1).astype(np.int64))
    return args


def assert_same_run(a, b) -> None:
    """Two kernel outputs (RunRecords) equal bit for bit."""
    assert np.array_equal(a.equity, b.equity) and np.array_equal(a.position, b.position)
    assert same_records(a.trades, b.trades) and np.array_equal(a.journal, b.journal)


def assert_prefix_replay(df: pd.DataFrame, outputs: Any, key: Any, full_cache: dict, frac: float) -> None:
    """A worker's outputs on the first ``t`` bars (``t`` from ``frac``) equal the first
    ``t`` values of its outputs on all bars: nothing it computes looks ahead.
    ``outputs(df)`` gives the worker's named arrays; the full run is memoized in
    ``full_cache[key]`` across hypothesis examples."""
    if key not in full_cache:
        full_cache[key] = outputs(df)
    full = full_cache[key]
    t = 1 + int(frac * (len(df) - 1))
    part = outputs(df.iloc[:t])
    assert set(part) == set(full)
    for k in full:
        assert part[k].shape == (t,), k
        assert part[k].dtype == full[k].dtype, k
        assert np.array_equal(part[k], full[k][:t], equal_nan=part[k].dtype.kind == "f"), (k, t)
