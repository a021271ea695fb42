"""W5: start-up. Each measurement spawns fresh interpreters itself.

* ``import_time``: ``import metaflow_nb`` in a fresh process, median of 5 (the import alone,
  timed inside the process, and the whole process's wall time);
* ``cli``: ``metaflow-nb backtest --strategy config/runs/sma_cross.yaml --data sp500_daily``
  wall time with a warm Numba cache and written bytecode (one untimed run first), median
  of 3; the shell's own bytecode state is timed in turns and reported beside;
* ``compile``: first backtest, first batch sweep and first ICT backtest in a process whose
  Numba cache folder is empty (a temporary ``METAFLOW_NB_CACHE_DIR``/``NUMBA_CACHE_DIR``),
  then the same in a second process on the now-filled cache.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from .common import ROOT

_IMPORT = ("import time; t = time.perf_counter(); import metaflow_nb; "
           "print(time.perf_counter() - t)")

_COMPILE = r'''
import json, time
t0 = time.perf_counter()
import metaflow_nb as mf
from metaflow_nb.services.optimization import OptimizationService
t1 = time.perf_counter()
mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
t2 = time.perf_counter()
OptimizationService().run("config/optimizations/sma_grid.yaml", progress=False)
t3 = time.perf_counter()
mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml")
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "backtest_s": t2 - t1, "sweep_s": t3 - t2, "ict_s": t4 - t3,
                  "total_s": t4 - t0}))
'''


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TQDM_DISABLE", "1")
    env.update(extra)
    return env


def import_time(repeat: int = 5, **_: Any) -> dict[str, Any]:
    inner, wall = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _IMPORT], capture_output=True, text=True, cwd=ROOT, env=_env(),
                             check=True)
        wall.append(time.perf_counter() - t0)
        inner.append(float(out.stdout.strip().splitlines()[-1]))
    return {"time": {"median_s": statistics.median(inner), "min_s": min(inner), "runs": repeat},
            "process_wall_median_s": statistics.median(wall)}


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("metaflow-nb")
    if script.exists():
        return [str(script)]
    found: Optional[str] = shutil.which("metaflow-nb")
    return [found] if found else [sys.executable, "-m", "metaflow_nb.cli"]


def cli(repeat: int = 3, **_: Any) -> dict[str, Any]:
    cmd = cli_command() + ["backtest", "--strategy", "config/runs/sma_cross.yaml", "--data", "sp500_daily"]
    # The target's state is a user's after one run: Numba's cache and Python's bytecode
    # written. A sandbox that sets PYTHONDONTWRITEBYTECODE never writes the package's
    # bytecode (an editable install is not compiled by pip), so the bytecode goes to a
    # folder of this run's own; the shell's own state is timed too and reported beside.
    with tempfile.TemporaryDirectory(prefix="mf-bench-pyc-") as folder:
        written = _env(PYTHONPYCACHEPREFIX=folder)
        written.pop("PYTHONDONTWRITEBYTECODE", None)
        states = {"bytecode": written, "shell": _env()}
        for env in states.values():
            subprocess.run(cmd, capture_output=True, cwd=ROOT, env=env, check=True)  # warm both caches
        wall: dict[str, list[float]] = {name: [] for name in states}
        for _ in range(repeat):   # in turns, so a slow minute of the machine hits both states
            for name, env in states.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, capture_output=True, cwd=ROOT, env=env, check=True)
                wall[name].append(time.perf_counter() - t0)
    shell = wall["shell"]
    return {"time": {"median_s": statistics.median(wall["bytecode"]), "min_s": min(wall["bytecode"]),
                     "runs": repeat},
            "shell": {"median_s": statistics.median(shell), "min_s": min(shell), "runs": repeat,
                      "dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))},
            "command": " ".join(["metaflow-nb"] + cmd[-5:])}


def compile_time(**_: Any) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="mf-bench-numba-")
    try:
        env = _env(METAFLOW_NB_CACHE_DIR=folder, NUMBA_CACHE_DIR=folder)
        runs = []
        for _ in range(2):  # cold, then warm on the cache the cold run filled
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", _COMPILE], capture_output=True, text=True, cwd=ROOT, env=env,
                                 check=True)
            doc = json.loads(out.stdout.strip().splitlines()[-1])
            doc["process_wall_s"] = time.perf_counter() - t0
            runs.append(doc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    cold, warm = runs
    return {"time": {"median_s": cold["total_s"], "min_s": cold["total_s"], "runs": 1}, "cold": cold, "warm": warm}
