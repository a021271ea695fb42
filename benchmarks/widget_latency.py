"""Latency of the live explorer: control change -> backtest -> metrics and chart updated.

Builds ``mf.explore`` on the ICT/SMC strategy over the EURUSD 15-minute sample
(config/runs/ict_smc_strategy.yaml + config/operations/ict_backtest.yaml), warms it up
(Numba compilation is cached on disk, the first changes fill the feature cache), then
makes ``--changes`` control changes that alternate between feature parameters (the FVG
minimum gap: new features) and path-only parameters (risk, reward multiple: cached
features) and reports the explorer's own change -> chart-updated latency.

    .venv/bin/python benchmarks/widget_latency.py --json benchmarks/results/widget_latency.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 300.0

SPACE = [
    {"worker_instance": "fvg_det_1", "parameters": {"min_gap_size": {"start": 3, "end": 10, "step": 1},
                                                    "require_structure_break": {"values": [True, False]}}},
    {"worker_instance": "exit_1", "parameters": {"fallback_rr": {"start": 1.0, "end": 4.0, "step": 0.5}}},
    {"worker_instance": "size_1", "parameters": {"risk_pct": {"start": 0.25, "end": 2.0, "step": 0.25}}},
]

#: the change sequence (cycled): control key, value
CHANGES = [("fvg_det_1.min_gap_size", 6), ("size_1.risk_pct", 0.5), ("exit_1.fallback_rr", 3.0),
           ("fvg_det_1.min_gap_size", 4), ("size_1.risk_pct", 1.0), ("fvg_det_1.require_structure_break", False),
           ("exit_1.fallback_rr", 2.0), ("fvg_det_1.min_gap_size", 7), ("size_1.risk_pct", 0.75),
           ("fvg_det_1.require_structure_break", True)]


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=20, help="measured changes after warm-up (default 20)")
    ap.add_argument("--warmup", type=int, default=4, help="unmeasured changes first (default 4)")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    os.chdir(ROOT)

    import metaflow_nb as mf

    t0 = time.perf_counter()
    ex = mf.explore("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml",
                    parameter_space=SPACE, background=False)
    first_s = time.perf_counter() - t0
    seq = [CHANGES[i % len(CHANGES)] for i in range(args.warmup + args.changes)]
    lat, kinds, wall, bt, chart = [], [], [], [], []
    for i, (key, value) in enumerate(seq):
        ctl = ex.controls[key]
        if ctl.value == value:  # make sure it is a real change
            value = ex._base_values[key] if ex._base_values[key] != value else ctl.options[0][1]
        before = ex.run_count
        t = time.perf_counter()
        ctl.value = value  # exactly what a widget message from the front end does
        w = (time.perf_counter() - t) * 1000.0
        assert ex.run_count == before + 1 and ex.last_error is None, ex.last_error
        if i >= args.warmup:
            lat.append(ex.last_latency_ms)
            bt.append(ex.last_timings["backtest_ms"])
            chart.append(ex.last_timings["chart_ms"])
            wall.append(w)
            kinds.append("feature" if key.startswith("fvg_det_1") else "path")
    ex.close()

    def summary(xs: list[float]) -> dict[str, float]:
        return {"median_ms": statistics.median(xs), "p95_ms": percentile(xs, 0.95), "max_ms": max(xs),
                "min_ms": min(xs), "n": len(xs)}

    out = {
        "benchmark": "explorer change -> chart updated",
        "strategy": "config/runs/ict_smc_strategy.yaml", "operation": "config/operations/ict_backtest.yaml",
        "data": "eurusd_15m", "bars": int(len(ex.last_result.data)),
        "first_run_s": first_s, "warmup_changes": args.warmup,
        "latency": summary(lat), "wall_setter": summary(wall),
        "backtest": summary(bt), "chart": summary(chart),
        "feature_changes": summary([x for x, k in zip(lat, kinds) if k == "feature"]),
        "path_changes": summary([x for x, k in zip(lat, kinds) if k == "path"]),
        "target_ms": TARGET_MS,
        "meets_target": statistics.median(lat) < TARGET_MS,
        "samples_ms": lat,
        "python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    print(f"explorer latency over {len(lat)} changes on {out['bars']} bars (ICT, eurusd_15m), after "
          f"{args.warmup} warm-up changes")
    print(f"  median {out['latency']['median_ms']:.0f} ms, p95 {out['latency']['p95_ms']:.0f} ms, "
          f"max {out['latency']['max_ms']:.0f} ms (target < {TARGET_MS:.0f} ms: "
          f"{'met' if out['meets_target'] else 'MISSED'})")
    print(f"  of which backtest median {out['backtest']['median_ms']:.0f} ms, metrics + chart redraw median "
          f"{out['chart']['median_ms']:.0f} ms")
    print(f"  feature-parameter changes: median {out['feature_changes']['median_ms']:.0f} ms; "
          f"path-only changes: median {out['path_changes']['median_ms']:.0f} ms")
    print(f"  first explorer build + run: {first_s:.2f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
