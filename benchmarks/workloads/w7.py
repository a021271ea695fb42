"""W7: a basket, 20 instruments x 100 000 bars, W2's 300-combination grid, both modes.

Data (:func:`basket`): 20 seeded synthetic instruments (``common.synthetic_ohlcv``, seed
``DATA["seed"] + 1 + k``, volatility ``0.002 + 0.0001 k`` per minute), each with 100 000
bars of its own, on three kinds of calendar so that the union calendar matters:

* ``S00`` .. ``S13``: a bar every minute from 2001-01-01 (24/7, as crypto);
* ``S14`` .. ``S16``: minutes of weekdays only (no Saturday or Sunday bars), so they run
  on for about four weeks after the 24/7 ones end;
* ``S17`` .. ``S19``: 24/7 with 60 seeded outages of 10 to 600 minutes each.

The union calendar is every minute any of them has a bar (about 128 000); an instrument
without a bar at a timestamp does nothing there.

Strategy: W2's SMA cross (long/short reversal, percent stop from the fill price, 0.1 %
commission, fractional units) over W2's grid: fast 5..50 x slow 20..200 x stop {none,
2 %, 5 %}, 300 combinations of which 270 have fast < slow.

* ``independent``: one account per instrument, 1e6 each, all in (W2's sizing);
* ``portfolio``: one shared account of 1e6, each entry 10 % of the portfolio's equity,
  ``max_positions`` 12: twelve positions would want 120 % of the equity, so entries are
  capped by the free cash (and skipped when there is none) and setups beyond twelve open
  positions are skipped: both cash sharing and the position cap bind (the floor counts
  how often; the job reports it).

Tools: metaflow-nb's sweep over the basket (``ours``), the Numba floor (``floor``:
``floor.sma_cross_basket_floor``, and in mode independent also
``floor.sma_cross_basket_floor_total``, which adds up each combination's portfolio and its
daily Sharpe ratio as the sweep must; ``floor.sma_cross_portfolio_floor_batch``) and vectorbt
(``vectorbt``) on a slice (``bars`` union timestamps around the first Saturday midnight,
:func:`window`; a full-size run would need 20 x 270 columns x 132 699 rows per array).
The slice is kept small for the bench's time; vectorbt's throughput per
instrument-bar-combination is flat in its size (4.14 / 4.10 / 3.93 M/s at 1 500 / 3 000 /
6 000 union minutes in mode portfolio, README "Performance"), so it does not flatter us.
"""
from __future__ import annotations

import functools
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from .common import DATA, STARTS, synthetic_ohlcv, timed, timed_vbt, write_yaml
from .w2 import FASTS, SLOWS, STOPS, grid, key

N_INST = 20
BARS = 100_000
CASH = 1_000_000.0
COMMISSION = 0.001
FRACTION = 0.1
MAX_POSITIONS = 12
#: from these twentieths of the basket on, instruments trade on weekdays only, then have
#: outages (20 instruments: 14..16 and 17..19; the rest trade every minute)
WEEKDAYS_FROM, GAPPY_FROM = 14, 17
OUTAGES = 60


def symbols(n_inst: int = N_INST) -> list[str]:
    return [f"S{k:02d}" for k in range(n_inst)]


def kind(k: int, n_inst: int) -> str:
    """Instrument ``k``'s calendar: ``24/7``, ``weekdays`` or ``outages``."""
    if 20 * k >= n_inst * GAPPY_FROM:
        return "outages"
    return "weekdays" if 20 * k >= n_inst * WEEKDAYS_FROM else "24/7"


def _calendar(k: int, bars: int, n_inst: int) -> pd.DatetimeIndex:
    """Instrument ``k``'s own timestamps: ``bars`` of them (module docstring)."""
    start = pd.Timestamp(STARTS["min"])
    cal = kind(k, n_inst)
    if cal == "weekdays":
        # 7/5 of the minutes are enough to hold `bars` weekday minutes (plus a week)
        cand = pd.date_range(start, periods=bars * 7 // 5 + 7 * 1440, freq="min")
        cand = cand[cand.day_of_week < 5]
    elif cal == "outages":
        rng = np.random.default_rng(DATA["seed"] + 100 + k)
        lens = rng.integers(10, 601, OUTAGES)
        span = bars + int(lens.sum())
        keep = np.ones(span, dtype=bool)
        for a, n in zip(np.sort(rng.integers(1_000, span - 1_000, OUTAGES)), lens):
            keep[a:a + n] = False
        cand = pd.date_range(start, periods=span, freq="min")[keep]
        if len(cand) < bars:  # overlapping outages removed less than planned: pad at the end
            cand = cand.append(pd.date_range(cand[-1] + pd.Timedelta(minutes=1), periods=bars - len(cand),
                                             freq="min"))
    else:
        return pd.date_range(start, periods=bars, freq="min", name="time")
    return pd.DatetimeIndex(cand[:bars], name="time")


def sigma(k: int) -> float:
    return 0.002 + 0.0001 * k


@functools.lru_cache(maxsize=4)
def basket(bars: int = BARS, n_inst: int = N_INST) -> dict[str, pd.DataFrame]:
    """``{symbol: OHLCV frame}`` of the basket (a fraction of a second to generate)."""
    out = {}
    for k, sym in enumerate(symbols(n_inst)):
        df = synthetic_ohlcv(bars, seed=DATA["seed"] + 1 + k, sigma=sigma(k))
        df.index = _calendar(k, bars, n_inst)
        out[sym] = df
    return out


def sliced(frames: dict[str, pd.DataFrame], union_bars: Optional[int]) -> dict[str, pd.DataFrame]:
    """The bars of the first ``union_bars`` timestamps of the union calendar (None: all)."""
    if union_bars is None:
        return frames
    idx = union(frames)
    if union_bars >= len(idx):
        return frames
    last = idx[union_bars - 1]
    return {s: df.loc[:last] for s, df in frames.items()}


def window(frames: dict[str, pd.DataFrame], union_bars: int) -> dict[str, pd.DataFrame]:
    """vectorbt's slice: ``union_bars`` consecutive timestamps of the union calendar around
    its first Saturday midnight (the weekday-only instruments stop halfway through it), or
    the first ones when the calendar is too short; each instrument keeps its bars in it
    (every tool starts its averages afresh there)."""
    idx = union(frames)
    if union_bars >= len(idx):
        return frames
    sat = np.flatnonzero((idx.day_of_week == 5) & (idx.hour == 0) & (idx.minute == 0))
    first = 0
    if sat.size and sat[0] + union_bars // 2 <= len(idx):
        first = max(0, int(sat[0]) - union_bars // 2)
    lo, hi = idx[first], idx[min(first + union_bars, len(idx)) - 1]
    return {s: df.loc[lo:hi] for s, df in frames.items()}


def union(frames: dict[str, pd.DataFrame]) -> pd.DatetimeIndex:
    idx = frames[next(iter(frames))].index
    for df in list(frames.values())[1:]:
        idx = idx.union(df.index)
    return idx


def packed(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """The floor's inputs: each price column concatenated over the instruments (instrument
    ``s`` owns rows ``start[s]:start[s + 1]``), ``has`` (union bars x instruments) and
    ``own_at`` (each own bar's place on the union calendar)."""
    idx = union(frames)
    cols = {c: np.ascontiguousarray(np.concatenate([df[c].to_numpy(np.float64) for df in frames.values()]))
            for c in ("open", "high", "low", "close")}
    start = np.zeros(len(frames) + 1, dtype=np.int64)
    start[1:] = np.cumsum([len(df) for df in frames.values()])
    has = np.zeros((len(idx), len(frames)), dtype=np.bool_)
    own_at = np.empty(start[-1], dtype=np.int64)
    for s, df in enumerate(frames.values()):
        at = idx.get_indexer(df.index)
        has[at, s] = True
        own_at[start[s]:start[s + 1]] = at
    return {**cols, "start": start, "has": has, "own_at": own_at, "index": idx}


def valid_grid() -> list[tuple[int, int, Optional[float]]]:
    return [g for g in grid() if g[0] < g[1]]


# ------------------------------------------------------------------ metaflow-nb
def write_operation(folder: Path, frames: dict[str, pd.DataFrame], mode: str,
                    max_positions: int = MAX_POSITIONS) -> Path:
    """A Parquet file per instrument and the portfolio operation YAML naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    instruments = []
    for sym, df in frames.items():
        path = folder / f"{sym}.parquet"
        df.to_parquet(path)
        instruments.append({"symbol": sym, "source": str(path), "pip_size": 0.01})
    op: dict[str, Any] = {"name": f"bench basket {mode}", "mode": mode, "instruments": instruments, "cash": CASH,
                          "commission": COMMISSION, "slippage": 0.0, "seed": 42}
    if mode == "portfolio":
        op["max_positions"] = max_positions
    return write_yaml(folder / f"operation_{mode}.yaml", op)


def strategy(mode: str, fraction: float = FRACTION) -> dict[str, Any]:
    """W2's blueprint (all in, fractional units, a percent stop from the fill); in mode
    portfolio ``fraction`` of the portfolio's equity per entry."""
    from .common import sma_blueprint
    return sma_blueprint(FASTS[0], SLOWS[-1], STOPS[0], whole_units=False, stops=True,
                         fraction=fraction if mode == "portfolio" else None)


def space() -> dict[str, Any]:
    return {"sma_1": {"fast": FASTS, "slow": SLOWS}, "stops_1": {"stop_loss_pct": STOPS}}


def combos() -> list[dict[str, dict[str, Any]]]:
    """W2's 300 combinations in its order, as ``sweep_basket`` takes them."""
    return [{"sma_1": {"fast": f, "slow": s}, "stops_1": {"stop_loss_pct": st}} for f, s, st in grid()]


def _sweep_rows(sw: Any, mode: str) -> dict[str, list]:
    """``{key: [closed trades, final equity]}`` of a ``BasketSweep``: per
    ``SYMBOL|fast/slow/stop`` in mode independent (each account), per ``fast/slow/stop``
    in mode portfolio (the shared account); failed combinations (fast >= slow) left out."""
    from metaflow_nb.engine.metrics import METRIC_NAMES

    nt, fe = METRIC_NAMES.index("total_trades"), METRIC_NAMES.index("final_equity")
    out: dict[str, list] = {}
    for k, g in enumerate(grid()):
        if sw.status[k] != "ok":
            continue
        if mode == "independent":
            for i, sym in enumerate(sw.symbols):
                m = sw.per_instrument[k, i]
                out[f"{sym}|{key(*g)}"] = [int(m[nt]), float(m[fe])]
        else:
            out[key(*g)] = [int(sw.portfolio[k, nt]), float(sw.portfolio[k, fe])]
    return out


def _portfolio_sharpe(sw: Any) -> dict[str, float]:
    """Each valid combination's portfolio Sharpe ratio, per ``fast/slow/stop``."""
    from metaflow_nb.engine.metrics import METRIC_NAMES

    j = METRIC_NAMES.index("sharpe_ratio")
    return {key(*g): float(sw.portfolio[k, j]) for k, g in enumerate(grid()) if sw.status[k] == "ok"}


def ours(mode: str = "independent", bars: int = BARS, n_inst: int = N_INST, repeat: int = 1,
         slice_bars: Optional[int] = None, optimize: bool = True, **_: Any) -> dict[str, Any]:
    """``services.basket_sweep.sweep_basket`` (the batch path over the basket) on the loaded
    basket, timed; loading the Parquet files once (``load_basket``) is ``load_s``.

    The warm-up (kernels compiled or loaded from Numba's cache) is a sweep over the first
    300 union bars, or over vectorbt's slice when ``slice_bars`` asks for the agreement
    rows: the first timed call on the full basket computes its indicators as a first
    sweep over new data does (as the floor does), and each repeat after it finds them in
    the run path's feature cache. Then, with ``optimize``, one
    ``mf.optimize_basket(..., engine="batch")`` (the sweep, the ranking, the best
    combination's run and its deflated Sharpe; a failure is reported, not raised)."""
    from metaflow_nb.services.basket_sweep import sweep_basket
    from metaflow_nb.services.portfolio import load_basket

    frames = basket(bars, n_inst)
    st = strategy(mode)
    todo = combos()
    with tempfile.TemporaryDirectory(prefix="mf-bench-w7-") as tmp:
        op = write_operation(Path(tmp) / "full", frames, mode)
        t0 = time.perf_counter()
        loaded = load_basket(op)
        load_s = time.perf_counter() - t0
        part = window(frames, slice_bars) if slice_bars else sliced(frames, 300)
        small = load_basket(write_operation(Path(tmp) / "slice", part, mode))
        warm = sweep_basket(st, small, todo)
        t, sw = timed(lambda: sweep_basket(st, loaded, todo), repeat, warmup=0)
        out: dict[str, Any] = {
            "time": t, "engine": sw.engine, "load_s": load_s, "combos": len(todo), "valid": int(sw.ok.sum()),
            "failed": int((~sw.ok).sum()), "instruments": n_inst,
            "instrument_bars": int(sum(len(df) for df in frames.values())), "union_bars": int(len(union(frames))),
            "per_combo": _sweep_rows(sw, mode), "sharpe": _portfolio_sharpe(sw), "mode": mode,
            "timings": {k: round(v, 4) for k, v in getattr(sw, "timings", {}).items()}}
        if optimize:
            from metaflow_nb.services.portfolio_meta import optimize_basket
            try:
                t1, _ = timed(lambda: optimize_basket(st, loaded, space(), engine="batch", max_combinations=1000),
                              1, warmup=0)
                out["optimize_basket_s"] = t1["median_s"]
            except Exception as exc:  # noqa: BLE001 - a row note, the sweep above is the measure
                out["optimize_basket_error"] = f"{type(exc).__name__}: {exc}"[:300]
        if slice_bars:
            out["per_combo_slice"] = _sweep_rows(warm, mode)
    return out


# ------------------------------------------------------------------ the floor
def floor(mode: str = "independent", bars: int = BARS, n_inst: int = N_INST, repeat: int = 3,
          **_: Any) -> dict[str, Any]:
    """``floor.sma_cross_basket_floor`` (independent) or ``sma_cross_portfolio_floor_batch``
    (portfolio) on the packed basket; the packing is untimed (``pack_s``), the warm-up (the
    kernel loaded from Numba's cache) runs on the first 300 union bars."""
    import floor as fl

    frames = basket(bars, n_inst)
    t0 = time.perf_counter()
    p = packed(frames)
    pack_s = time.perf_counter() - t0
    combos = valid_grid()
    f = np.array([g[0] for g in combos], dtype=np.int64)
    s = np.array([g[1] for g in combos], dtype=np.int64)
    st = np.array([fl.stop_fraction(g[2]) for g in combos])
    args = (p["open"], p["high"], p["low"], p["close"], p["start"])
    w = packed(sliced(frames, 300))
    wargs = (w["open"], w["high"], w["low"], w["close"], w["start"])
    if mode == "independent":
        fl.sma_cross_basket_floor(*wargs, f, s, st, CASH, COMMISSION, False)
    else:
        fl.sma_cross_portfolio_floor_batch(*wargs, w["has"], f, s, st, CASH, COMMISSION, FRACTION, MAX_POSITIONS)
    syms = list(frames)
    out: dict[str, Any] = {"valid": len(combos), "instruments": n_inst, "pack_s": pack_s,
                           "instrument_bars": int(p["start"][-1]), "union_bars": int(p["has"].shape[0]), "mode": mode}
    if mode == "independent":
        t, (n, eq) = timed(lambda: fl.sma_cross_basket_floor(*args, f, s, st, CASH, COMMISSION, False), repeat,
                           warmup=0)
        out["per_combo"] = {f"{sym}|{key(*g)}": [int(n[i, k]), float(eq[i, k])]
                            for i, sym in enumerate(syms) for k, g in enumerate(combos)}
        # the same accounts and the portfolio a sweep ranked on it needs: the total on the
        # union calendar and its daily Sharpe ratio, on the calendar the sweep measures
        import numba

        from metaflow_nb.assembly.basket import union_day_calendar
        cal = union_day_calendar(p["index"], None)
        wcal = union_day_calendar(w["index"], None)
        blocks = numba.get_num_threads()
        fl.sma_cross_basket_floor_total(*wargs, w["own_at"], wcal.day_end, f, s, st, CASH, COMMISSION, False,
                                        wcal.periods_per_year, blocks)
        tt, (_, _, sharpe) = timed(lambda: fl.sma_cross_basket_floor_total(
            *args, p["own_at"], cal.day_end, f, s, st, CASH, COMMISSION, False, cal.periods_per_year, blocks),
            repeat, warmup=0)
        out["total"] = tt
        out["sharpe"] = {key(*g): float(sharpe[k]) for k, g in enumerate(combos)}
    else:
        t, (n, eq, capped, skipped) = timed(
            lambda: fl.sma_cross_portfolio_floor_batch(*args, p["has"], f, s, st, CASH, COMMISSION, FRACTION,
                                                       MAX_POSITIONS), repeat, warmup=0)
        out["per_combo"] = {key(*g): [int(n[k]), float(eq[k])] for k, g in enumerate(combos)}
        # how much the shared account binds, over every combination
        out["binding"] = {"entries_capped_by_cash": int(capped.sum()), "setups_skipped_max_positions":
                          int(skipped.sum()), "trades": int(n.sum()),
                          "combos_capped": int((capped > 0).sum()), "combos_skipped": int((skipped > 0).sum())}
    out["time"] = t
    return out


# ------------------------------------------------------------------ vectorbt
def _vbt_basket(frames: dict[str, pd.DataFrame], mode: str, engine: str):
    """``(signals, portfolio, combos)`` closures over the basket on its union calendar.

    Signals are each instrument's own: the 10 + 10 averages of its closes on its own bars,
    the 90 valid pairs' crosses, shifted by one of its own bars (decided at the close,
    filled at its next open), then placed on the union calendar (no signal where it has no
    bar) and tiled over the three stops; columns are combination-major, instrument-minor.
    Prices are the instruments' own, NaN where they have no bar (vectorbt values a column
    at its last close there and fills nothing), tiled over the combinations
    (``.vbt.tile``). ``independent``: a column per account, all in. ``portfolio``: a group
    of 20 columns per combination with ``cash_sharing=True``; vectorbt's ``from_signals``
    sizes by amount, value or percent of cash (target sizes are refused, percent refuses
    reversals), so each entry buys a fixed 10 % of the starting cash, capped by the
    group's cash, and there is no ``max_positions``: not metaflow-nb's rules (the report
    says so; ``benchmarks/portfolio_parity.py`` checks the shared-cash semantics).
    """
    import vectorbt as vbt

    syms = list(frames)
    idx = union(frames)
    pairs = [(f, s) for f in FASTS for s in SLOWS if f < s]
    fi = np.array([FASTS.index(f) for f, _ in pairs])
    si = np.array([SLOWS.index(s) for _, s in pairs])
    combos = [(f, s, x) for x in STOPS for f, s in pairs]
    n_c, n_i = len(combos), len(syms)
    names = pd.Index([key(*c) for c in combos], name="combination")
    prices = {c: pd.DataFrame({s: frames[s][c] for s in syms}).reindex(idx) for c in ("open", "high", "low", "close")}
    sl = np.repeat([np.nan if x is None else x / 100.0 for x in STOPS], len(pairs) * n_i)
    rows = {s: idx.get_indexer(frames[s].index) for s in syms}
    groups = np.repeat(np.arange(n_c), n_i)

    def signals():
        up = np.zeros((len(idx), n_c * n_i), dtype=np.bool_)
        down = np.zeros_like(up)
        for k, sym in enumerate(syms):
            close = frames[sym]["close"]
            fast = vbt.MA.run(close, FASTS, short_name="fast").ma.to_numpy()
            slow = vbt.MA.run(close, SLOWS, short_name="slow").ma.to_numpy()
            fa = pd.DataFrame(fast[:, fi], index=close.index)
            sa = pd.DataFrame(slow[:, si], index=close.index)
            u = fa.vbt.crossed_above(sa).to_numpy()
            d = fa.vbt.crossed_below(sa).to_numpy()
            r = rows[sym][1:]  # the next own bar
            for j in range(len(STOPS)):
                cols = (j * len(pairs) + np.arange(len(pairs))) * n_i + k
                up[np.ix_(r, cols)] = u[:-1]
                down[np.ix_(r, cols)] = d[:-1]
        return up, down

    tiled = {c: p.vbt.tile(n_c, keys=names) for c, p in prices.items()}

    def portfolio(up, down):
        kw: dict[str, Any] = {}
        if mode == "portfolio":
            kw = {"group_by": groups, "cash_sharing": True, "size": CASH * FRACTION, "size_type": "value"}
        return vbt.Portfolio.from_signals(tiled["close"], up, down, price=tiled["open"], open=tiled["open"],
                                          high=tiled["high"], low=tiled["low"], sl_stop=sl[None, :],
                                          stop_entry_price="fillprice", direction="both", fees=COMMISSION,
                                          init_cash=CASH, engine=engine, **kw)

    return signals, portfolio, combos, syms


def vectorbt(mode: str = "independent", bars: int = 4_000, basket_bars: int = BARS, n_inst: int = N_INST,
             repeat: int = 1, engine: str = "numba", **_: Any) -> dict[str, Any]:
    """Signals + one ``from_signals`` over every instrument x combination + final values, on
    ``bars`` union timestamps of the basket (:func:`window`), after a warm-up on the first
    300 (which compiles vectorbt's kernels for these argument types)."""
    warnings.simplefilter("ignore")
    full = basket(basket_bars, n_inst)
    signals, portfolio, _, _ = _vbt_basket(sliced(full, 300), mode, engine)
    portfolio(*signals()).final_value()
    frames = window(full, bars)
    signals, portfolio, combos, syms = _vbt_basket(frames, mode, engine)
    t, pf_median, pf, final = timed_vbt(signals, portfolio, repeat)
    final = final.to_numpy()
    trades = pf.trades.closed.count().to_numpy()
    if mode == "independent":
        n_i = len(syms)
        per = {f"{sym}|{key(*c)}": [int(trades[k * n_i + i]), float(final[k * n_i + i])]
               for k, c in enumerate(combos) for i, sym in enumerate(syms)}
    else:
        per = {key(*c): [int(trades[k]), float(final[k])] for k, c in enumerate(combos)}
    return {"time": t, "valid": len(combos), "from_signals_median_s": pf_median,
            "per_combo": per, "engine": engine, "mode": mode, "union_bars": int(len(union(frames))),
            "instrument_bars": int(sum(len(df) for df in frames.values())), "instruments": len(syms),
            "columns": len(combos) * len(syms)}
