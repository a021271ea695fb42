"""W2: a 300-combination grid on 100 000 bars.

fast 5..50 (10 values) x slow 20..200 (10 values) x stop-loss {none, 2 %, 5 %} of the SMA
cross (long/short reversal, all-in fractional units, 0.1 % commission, a percent stop from
the fill price). 30 combinations have fast >= slow: metaflow-nb returns them as failed
rows; every tool is credited with the 270 valid ones only.

* ``ours``: ``mf.optimize`` on a temporary optimization YAML whose operation YAML points
  at a Parquet file of the synthetic bars (default backend: the batch path);
* ``ours_general``: the same sweep forced onto the general path (one process-pool run
  per combination), for comparison;
* ``floor``: ``sma_cross_floor_batch`` (``prange`` over the valid combinations);
* ``vectorbt``: the fastest idiomatic broadcast: the 10 + 10 averages once, the 90 valid
  pairs' crosses as one frame, tiled over the three stops, one ``from_signals`` call with
  ``sl_stop`` per column (per engine).

Agreement: ours and the floor share semantics exactly (all 270 combinations). vectorbt
cannot check a stop on its entry bar ("stop signal cannot be processed at the same bar as
the entry signal"), so only the 90 no-stop combinations are compared with it.
"""
from __future__ import annotations

import gc
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .common import (
    arrays, operation, range_values, sma_blueprint, synthetic_ohlcv, timed, timed_vbt, write_data, write_yaml,
)

CASH = 1_000_000.0
COMMISSION = 0.001
FASTS = list(range(5, 51, 5))
SLOWS = list(range(20, 201, 20))
STOPS: list[Optional[float]] = [None, 2.0, 5.0]


def grid(fasts=FASTS, slows=SLOWS, stops=STOPS) -> list[tuple[int, int, Optional[float]]]:
    """Every combination in the sweep's order (last parameter fastest)."""
    return [(f, s, sl) for f in fasts for s in slows for sl in stops]


def key(f: int, s: int, sl: Optional[float]) -> str:
    return f"{f}/{s}/{'none' if sl is None or (isinstance(sl, float) and np.isnan(sl)) else f'{float(sl):g}'}"


def write_configs(folder: Path, bars: int, fasts=FASTS, slows=SLOWS, stops=STOPS, cash: float = CASH,
                  commission: float = COMMISSION, whole_units: bool = False, freq: str = "min") -> Path:
    """Parquet bars (one a minute, or one a calendar day with ``freq="D"``), operation,
    strategy and optimization YAML in ``folder``; returns the optimization config's path."""
    data = write_data(synthetic_ohlcv(bars, freq=freq), folder)
    op = write_yaml(folder / "operation.yaml", operation(cash, commission, source=str(data)))
    st = write_yaml(folder / "strategy.yaml", sma_blueprint(fasts[0], slows[-1], stops[0], whole_units=whole_units,
                                                            stops=True))
    space = [{"worker_instance": "sma_1", "parameters": {"fast": range_values(fasts), "slow": range_values(slows)}},
             {"worker_instance": "stops_1", "parameters": {"stop_loss_pct": range_values(stops)}}]
    doc = {"optimization_config": {"name": f"bench grid {len(fasts)}x{len(slows)}x{len(stops)}",
                                   "base_operation": str(op), "base_strategy": str(st), "parameter_space": space,
                                   "optimization_target": {"primary_metric": "sharpe_ratio"}}}
    return write_yaml(folder / "optimization.yaml", doc)


def _rows(res) -> dict[str, list]:
    frame = res.all_results
    out = {}
    for _, row in frame.iterrows():
        if row["status"] != "ok":
            continue
        out[key(int(row["sma_1.fast"]), int(row["sma_1.slow"]), row["stops_1.stop_loss_pct"])] = \
            [int(row["total_trades"]), float(row["final_equity"])]
    return out


def _sharpes(res) -> dict[str, float]:
    frame = res.all_results
    ok = frame[frame["status"] == "ok"]
    return {key(int(r["sma_1.fast"]), int(r["sma_1.slow"]), r["stops_1.stop_loss_pct"]): float(r["sharpe_ratio"])
            for _, r in ok.iterrows()}


def ours(bars: int = 100_000, repeat: int = 3, general: bool = False, freq: str = "min", **_: Any) -> dict[str, Any]:
    import metaflow_nb as mf
    from metaflow_nb.services.optimization import OptimizationService

    with tempfile.TemporaryDirectory(prefix="mf-bench-w2-") as tmp:
        cfg = write_configs(Path(tmp), bars, freq=freq)
        if general:
            def run():
                return OptimizationService().run(cfg, engine="general", backend="loky", progress=False)
        else:
            def run():
                return mf.optimize(cfg, progress=False)
        t, res = timed(run, repeat)
    return {"time": t, "engine": res.engine, "combos": res.total_runs, "valid": res.successful_runs,
            "failed": res.failed_runs, "per_combo": _rows(res), "sharpe": _sharpes(res), "freq": freq,
            "timings": {k: round(v, 4) for k, v in res.timings.items()}}


def _floor_calls(bars: int, freq: str) -> tuple[list, Callable[[], Any], Callable[[], Any], int]:
    """The valid grid, the floor's prange batch and the batch computing the daily Sharpe
    ratio as calls on ``bars`` synthetic bars of ``freq``, and the number of days."""
    import numba

    import floor as fl
    from metaflow_nb.assembly.dataset import dataset_calendar

    frame = synthetic_ohlcv(bars, freq=freq)
    o, h, lo, c = arrays(frame)
    cal = dataset_calendar(frame, 0)
    day_end = np.ascontiguousarray(cal.day_end, dtype=np.bool_)
    combos = [g for g in grid() if g[0] < g[1]]
    f = np.array([g[0] for g in combos], dtype=np.int64)
    s = np.array([g[1] for g in combos], dtype=np.int64)
    st = np.array([fl.stop_fraction(g[2]) for g in combos])
    blocks = 4 * numba.get_num_threads()
    return (combos, lambda: fl.sma_cross_floor_batch(o, h, lo, c, f, s, st, CASH, COMMISSION, False),
            lambda: fl.sma_cross_floor_batch_daily(o, h, lo, c, f, s, st, CASH, COMMISSION, False, day_end,
                                                   cal.periods_per_year, blocks), int(day_end.sum()))


def floor(bars: int = 100_000, repeat: int = 5, freq: str = "min", **_: Any) -> dict[str, Any]:
    """The floor's prange batch (``time``), and the same batch computing each
    combination's daily Sharpe ratio on the days of a ``freq`` index (``daily``: what a
    sweep ranked by Sharpe needs at least; on daily bars one division a bar)."""
    combos, plain, daily, days = _floor_calls(bars, freq)
    t, (n, eq) = timed(plain, repeat)
    td, (_, _, sharpe) = timed(daily, repeat)
    return {"time": t, "daily": td, "valid": len(combos), "days": days, "freq": freq,
            "per_combo": {key(*g): [int(n[k]), float(eq[k])] for k, g in enumerate(combos)},
            "sharpe": {key(*g): float(sharpe[k]) for k, g in enumerate(combos)}}


def paired(bars: int = 100_000, rounds: int = 15, freq: str = "min", **_: Any) -> dict[str, Any]:
    """``mf.optimize``, the floor's prange batch and the floor computing the daily Sharpe
    ratio timed in turn in one process, ``rounds`` times (after one untimed call each):
    ours over each floor per round, and the medians of those ratios. Timed apart, in
    separate processes, a noisy moment of a shared machine moves one side of a ratio and
    not the other; in turns, both sides see the same moments."""
    import statistics

    import metaflow_nb as mf

    _, plain, daily, _ = _floor_calls(bars, freq)
    with tempfile.TemporaryDirectory(prefix="mf-bench-w2p-") as tmp:
        cfg = write_configs(Path(tmp), bars, freq=freq)
        sides = {"ours": lambda: mf.optimize(cfg, progress=False), "floor": plain, "daily": daily}
        times: dict[str, list[float]] = {k: [] for k in sides}
        for fn in sides.values():
            fn()
        gc.collect()
        gc.disable()   # as common.timed times
        try:
            for _ in range(max(1, rounds)):
                for k, fn in sides.items():
                    t0 = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t0)
        finally:
            gc.enable()
    ratio = [a / b for a, b in zip(times["ours"], times["floor"])]
    ratio_daily = [a / b for a, b in zip(times["ours"], times["daily"])]
    return {"time": {"median_s": statistics.median(times["ours"]), "min_s": min(times["ours"]), "runs": rounds},
            "floor_median_s": statistics.median(times["floor"]), "daily_median_s": statistics.median(times["daily"]),
            "ratio": statistics.median(ratio), "ratio_daily": statistics.median(ratio_daily),
            "ratio_range": [min(ratio), max(ratio)], "ratio_daily_range": [min(ratio_daily), max(ratio_daily)],
            "rounds": rounds, "freq": freq}


def _vbt_grid(df, engine: str):
    """``(signals, portfolio)`` closures of the broadcast grid on ``df``."""
    import pandas as pd
    import vectorbt as vbt

    close, open_, high, low = df["close"], df["open"], df["high"], df["low"]
    pairs = [(f, s) for f in FASTS for s in SLOWS if f < s]
    fi = np.array([FASTS.index(f) for f, _ in pairs])
    si = np.array([SLOWS.index(s) for _, s in pairs])
    n_stops = len(STOPS)
    sl = np.repeat([np.nan if x is None else x / 100.0 for x in STOPS], len(pairs))
    columns = pd.Index([key(f, s, x) for x in STOPS for f, s in pairs], name="fast/slow/stop")

    def signals():
        fast = vbt.MA.run(close, FASTS, short_name="fast").ma.to_numpy()
        slow = vbt.MA.run(close, SLOWS, short_name="slow").ma.to_numpy()
        fa = pd.DataFrame(fast[:, fi], index=df.index)
        sa = pd.DataFrame(slow[:, si], index=df.index)
        up = fa.vbt.crossed_above(sa).to_numpy()
        down = fa.vbt.crossed_below(sa).to_numpy()
        # decided at the close, filled at the next open
        up = np.vstack([np.zeros((1, up.shape[1]), bool), up[:-1]])
        down = np.vstack([np.zeros((1, down.shape[1]), bool), down[:-1]])
        en = pd.DataFrame(np.tile(up, n_stops), index=df.index, columns=columns)
        ex = pd.DataFrame(np.tile(down, n_stops), index=df.index, columns=columns)
        return en, ex

    def portfolio(en, ex):
        return vbt.Portfolio.from_signals(close, en, ex, price=open_, open=open_, high=high, low=low,
                                          sl_stop=sl[None, :], stop_entry_price="fillprice", direction="both",
                                          fees=COMMISSION, init_cash=CASH, engine=engine)

    return signals, portfolio, columns


def vectorbt(bars: int = 100_000, repeat: int = 1, engine: str = "numba", **_: Any) -> dict[str, Any]:
    """Signals + one broadcast ``from_signals`` + final values, after a warm-up on 2 000 bars
    (which compiles vectorbt's Numba kernels for these argument types)."""
    warnings.simplefilter("ignore")
    signals, portfolio, _ = _vbt_grid(synthetic_ohlcv(2_000), engine)
    portfolio(*signals()).final_value()
    signals, portfolio, columns = _vbt_grid(synthetic_ohlcv(bars), engine)
    t, pf_median, pf, final = timed_vbt(signals, portfolio, repeat)
    trades = pf.trades.closed.count()
    per = {c: [int(trades[c]), float(final[c])] for c in columns}
    return {"time": t, "valid": len(columns), "from_signals_median_s": pf_median,
            "per_combo": per, "engine": engine}


def smoke_kwargs() -> dict[str, Any]:
    return {"bars": 3_000, "repeat": 1}
