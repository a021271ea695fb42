"""W3: sweeps of the ICT strategy on the bundled EURUSD 15-minute sample.

* ``fvg16``: ``config/optimizations/optimize_fvg_params.yaml`` (16 runs) through
  ``mf.optimize`` (batch path), and the same forced onto the general path;
* ``grid1000``: 1 000 runs of ``config/runs/ict_smc_strategy.yaml``: fvg ``min_gap_size`` (5)
  x ATR period (2) x exit ``stop_buffer_pips`` (5) x ``fallback_rr`` (2) x sizer ``risk_pct``
  (2) x drawdown-monitor ``max_drawdown_pct`` (5); 10 feature groups;
* ``single``: one run's compiled loop alone (``common.compiled_loop``: the kernel on
  inputs prepared once) and one whole ``mf.backtest``, the yardsticks for the sweeps: the ideal sweep
  time is ``kernel time x runs / cores``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .common import CORES, ROOT, compiled_loop, range_values, timed, write_yaml

FVG16 = ROOT / "config/optimizations/optimize_fvg_params.yaml"
STRATEGY = ROOT / "config/runs/ict_smc_strategy.yaml"
OPERATION = ROOT / "config/operations/ict_backtest.yaml"

GRID = [
    ("fvg_det_1", "min_gap_size", [3, 4, 5, 6, 8]),
    ("atr_1", "period", [14, 21]),
    ("exit_1", "stop_buffer_pips", [0.0, 1.0, 2.0, 3.0, 5.0]),
    ("exit_1", "fallback_rr", [1.5, 2.5]),
    ("size_1", "risk_pct", [0.5, 1.0]),
    ("drawdown_1", "max_drawdown_pct", [4.0, 6.0, 8.0, 10.0, 15.0]),
]


def grid_size(grid=GRID) -> int:
    n = 1
    for *_, values in grid:
        n *= len(values)
    return n


def write_grid(folder: Path, grid=GRID) -> Path:
    space: dict[str, dict[str, Any]] = {}
    for inst, p, values in grid:
        space.setdefault(inst, {})[p] = range_values(values)
    doc = {"optimization_config": {
        "name": f"ICT grid {grid_size(grid)}", "base_operation": str(OPERATION), "base_strategy": str(STRATEGY),
        "parameter_space": [{"worker_instance": inst, "parameters": ps} for inst, ps in space.items()],
        "optimization_target": {"primary_metric": "sharpe_ratio", "constraints": {"min_trades": 10}}}}
    return write_yaml(folder / "ict_grid.yaml", doc)


def _summary(res) -> dict[str, Any]:
    frame = res.all_results
    ok = frame[frame["status"] == "ok"]
    return {"engine": res.engine, "runs": res.total_runs, "ok": res.successful_runs, "failed": res.failed_runs,
            "trades_sum": int(ok["total_trades"].sum()), "final_equity_sum": float(ok["final_equity"].sum()),
            "per_run": [[int(t), float(e)] for t, e in zip(frame["total_trades"].fillna(-1),
                                                           frame["final_equity"].fillna(-1.0))]}


def fvg16(repeat: int = 3, engine: str = "batch", **_: Any) -> dict[str, Any]:
    from metaflow_nb.services.optimization import OptimizationService

    def run():
        return OptimizationService().run(FVG16, engine=engine, backend="loky", progress=False)

    t, res = timed(run, repeat)
    return {"time": t, **_summary(res)}


def grid1000(repeat: int = 2, grid=None, **_: Any) -> dict[str, Any]:
    import metaflow_nb as mf

    grid = grid or GRID
    with tempfile.TemporaryDirectory(prefix="mf-bench-w3-") as tmp:
        cfg = write_grid(Path(tmp), grid)
        t, res = timed(lambda: mf.optimize(cfg, progress=False), repeat)
    out = {"time": t, **_summary(res)}
    out.pop("per_run")
    return out


def single(repeat: int = 20, **_: Any) -> dict[str, Any]:
    import metaflow_nb as mf
    from metaflow_nb.services.operation import resolve_data

    specs = mf.build_specs(str(STRATEGY), str(OPERATION))
    bars = resolve_data(specs)
    run, summary = compiled_loop(specs, bars)
    t_kernel, out = timed(run, repeat)
    # preparing the kernel's inputs (what compiled_loop does before the loop)
    t_prepare, _ = timed(lambda: compiled_loop(specs, bars), max(3, repeat // 4))
    t_run, res = timed(lambda: mf.backtest(str(STRATEGY), str(OPERATION)), max(3, repeat // 4))
    return {"time": t_kernel, "prepare": t_prepare, "backtest": t_run, "bars": int(len(bars)),
            "trades": summary(out)[0], "cores": CORES, "backtest_trades": int(res.metrics["total_trades"])}


OPERATION_1H = ROOT / "config/operations/ict_1h.yaml"
OPERATION_1H_INTRABAR = ROOT / "config/operations/ict_1h_intrabar.yaml"


def intrabar(repeat: int = 20, **_: Any) -> dict[str, Any]:
    """The ICT run on 1h bars resampled from the 15m sample, without and with intrabar
    resolution (``data.intrabar: source``): the compiled loop alone and the whole
    ``mf.backtest`` of each, in one process. Only ambiguous bars are replayed on their
    finer bars, so the loop's time should barely move."""
    import metaflow_nb as mf
    from metaflow_nb.services.operation import resolve_data

    out: dict[str, Any] = {}
    for key, op in (("pessimistic", OPERATION_1H), ("intrabar", OPERATION_1H_INTRABAR)):
        if not op.exists():  # trees before intrabar resolution
            return {"time": None, "skipped": "no config/operations/ict_1h*.yaml in this tree"}
        specs = mf.build_specs(str(STRATEGY), str(op))
        bars = resolve_data(specs)
        run, summary = compiled_loop(specs, bars)
        t_kernel, res_k = timed(run, repeat)
        t_run, res = timed(lambda: mf.backtest(str(STRATEGY), str(op)), max(3, repeat // 4))
        rules = res.journal["fill_rule"].value_counts().to_dict() if "fill_rule" in res.journal else {}
        out[key] = {"time": t_kernel, "backtest": t_run, "bars": int(len(bars)), "trades": summary(res_k)[0],
                    "fill_rules": {k: int(v) for k, v in rules.items() if k}}
    out["time"] = out["intrabar"]["time"]
    out["ratio"] = out["intrabar"]["time"]["median_s"] / out["pessimistic"]["time"]["median_s"]
    return out


def smoke_grid() -> list:
    return [("fvg_det_1", "min_gap_size", [3, 5]), ("size_1", "risk_pct", [0.5, 1.0])]
