"""W4: scaling in bars x combinations (SMA cross with stops).

One cell = ``bars`` synthetic bars x ``combos`` combinations of ``(fast, slow)`` pairs and
ten stop-loss levels (0.5 % .. 5 %): ``combos / 10`` pairs, so the feature work grows with
the combinations too. Sizing is a fixed 10 % of equity per trade (fractional units) and the
commission 0.05 %, so equity stays within a few orders of magnitude of the start even over
a million bars; every combination trades the whole series.

Each cell runs in its own process: ``OptimizationService.sweep(..., data=frame)`` (the batch
path) first, its peak RSS read right after, then the floor's ``prange`` batch on the same
combinations, and the two are compared (trade counts and final equity).
"""
from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np

from .common import arrays, loaded, operation, peak_rss_mb, rel_diff, sma_blueprint

CASH = 1_000_000.0
COMMISSION = 0.0005
FRACTION = 0.1
STOPS = [0.5 * k for k in range(1, 11)]
BARS = [10_000, 100_000, 1_000_000]
COMBOS = [10, 100, 1_000, 10_000]


def pair_grid(n_pairs: int) -> tuple[list[int], list[int]]:
    """``(fasts, slows)`` whose product has ``n_pairs`` pairs, all with fast < slow."""
    n_fast = {1: 1, 10: 2, 100: 10, 1000: 25}.get(n_pairs)
    if n_fast is None:
        n_fast = max(1, int(round(n_pairs ** 0.5)))
        while n_pairs % n_fast:
            n_fast -= 1
    n_slow = n_pairs // n_fast
    return [4 + 2 * k for k in range(n_fast)], [60 + 5 * k for k in range(n_slow)]


def combos_for(n: int) -> list[dict[str, dict[str, Any]]]:
    stops = STOPS if n >= len(STOPS) else STOPS[:n]
    fasts, slows = pair_grid(max(1, n // len(stops)))
    return [{"sma_1": {"fast": f, "slow": s}, "stops_1": {"stop_loss_pct": sl}}
            for f in fasts for s in slows for sl in stops]


def cell(bars: int, combos: int, floor: bool = True, warm: bool = True, **_: Any) -> dict[str, Any]:
    """One cell, timed once after a tiny untimed cell has loaded the compiled kernels."""
    import metaflow_nb as mf
    from metaflow_nb.config.meta import OptimizationTarget
    from metaflow_nb.services.optimization import OptimizationService
    from metaflow_nb.services.parallel import ParallelRunService

    if warm:
        cell(2_000, 10, floor=floor, warm=False)
    df = loaded(bars)
    grid = combos_for(combos)
    base = mf.build_specs(sma_blueprint(grid[0]["sma_1"]["fast"], grid[0]["sma_1"]["slow"], 1.0, whole_units=False,
                                        stops=True, fraction=FRACTION), operation(CASH, COMMISSION), data=df)
    target = OptimizationTarget(primary_metric="sharpe_ratio")
    svc = OptimizationService(ParallelRunService(progress=False))
    columns = ["sma_1.fast", "sma_1.slow", "stops_1.stop_loss_pct"]
    gc.collect()
    t0 = time.perf_counter()
    res = svc.sweep(base, columns, grid, target, data=df)
    elapsed = time.perf_counter() - t0
    rss = peak_rss_mb()
    frame = res.all_results
    out: dict[str, Any] = {"time": {"median_s": elapsed, "min_s": elapsed, "runs": 1}, "bars": bars,
                           "combos": len(grid), "ok": res.successful_runs, "engine": res.engine,
                           "peak_rss_mb_ours": rss, "bar_steps": bars * len(grid),
                           "final_equity_x": [float(frame["final_equity"].min() / CASH),
                                              float(frame["final_equity"].median() / CASH),
                                              float(frame["final_equity"].max() / CASH)]}
    if floor:
        import floor as fl
        o, h, lo, c = arrays(df)
        f = np.array([g["sma_1"]["fast"] for g in grid], dtype=np.int64)
        s = np.array([g["sma_1"]["slow"] for g in grid], dtype=np.int64)
        st = np.array([g["stops_1"]["stop_loss_pct"] / 100.0 for g in grid])
        t1 = time.perf_counter()
        n, eq = fl.sma_cross_floor_batch(o, h, lo, c, f, s, st, CASH, COMMISSION, False, FRACTION)
        out["floor_s"] = time.perf_counter() - t1
        trades = frame["total_trades"].to_numpy()
        final = frame["final_equity"].to_numpy()
        out["floor_trade_mismatches"] = int((trades != n).sum())
        out["floor_max_rel_diff"] = float(max((rel_diff(a, b) for a, b in zip(final, eq)), default=0.0))
    return out
