#!/usr/bin/env python
"""metaflow-nb performance benchmarks W1..W5 against backtesting.py, vectorbt and a Numba floor.

    python benchmarks/run.py            # everything; writes benchmarks/results/latest.{json,md}, scaling.png
    python benchmarks/run.py --smoke    # tiny sizes, < 30 s (what the test suite runs)
    python benchmarks/run.py --only W1,W4 --out /tmp/bench

Every (workload, tool) pair runs in a fresh interpreter (``run.py --job module:function``),
so the peak RSS reported is that tool's own (``getrusage`` of the job process and its
children). Timings are medians over repeats after an untimed warm-up (JIT compilation,
kernel cache loads), measured inside the job. Data: seeded synthetic bars
(``benchmarks/workloads/common.py``), identical in every process.

W1  one backtest, SMA cross 10/50 with reversal, 0.1 % commission, 100 000 bars
W2  300-combination grid (fast x slow x stop) on 100 000 bars through ``mf.optimize``
W3  ICT sweeps: optimize_fvg_params.yaml (16 runs) and a 1 000-run grid
W4  scaling: bars {1e4, 1e5, 1e6} x combinations {10, 100, 1 000, 10 000}
W5  start-up: import, CLI wall time, cold compile
W6  daily bars (100 000, one per calendar day): whole ``mf.backtest`` with its trades table vs
    the compiled loop alone, and W2's sweep on those bars vs the floor
W7  a basket: 20 instruments x 100 000 bars on different calendars, W2's grid, mode
    independent and portfolio (shared cash), the batch sweep vs the basket floors and vectorbt
    on a slice (``benchmarks/workloads/w7.py``)
plus the widget latency benchmark (``benchmarks/widget_latency.py``) when it exists and
the peer-parity summary (``benchmarks/results/parity.json``) written by ``make bench``.

Process states: W1, W2 and W6 also run in a process where a large Numba function was
compiled first, and in one started with ``MALLOC_MMAP_THRESHOLD_=67108864``
(``benchmarks/workloads/state.py``); the tables show every state side by side and their
targets are checked in the worst one.

The package under test is the one Python imports: ``PYTHONPATH=/old/tree python
/new/tree/benchmarks/run.py`` times the old code with these benchmarks (the job processes
run in that package's tree, and read its bundled configs).

Targets are checked at the end; a missed target says by how much. The exit code is 0 even
when targets are missed (the report is the product); 1 when a job failed or tools disagree.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

RESULT_TAG = "@@BENCH-RESULT@@ "
RESULTS = HERE / "results"
WIDGET_SCRIPT = HERE / "widget_latency.py"
MB_LIMIT_W2 = 400.0
MB_LIMIT_W4 = 1536.0
TOTAL_LIMIT_S = 15 * 60


# ====================================================================== job processes

def _vectorbt_jobs(rep, plan, run, label: str, job: str, params: dict) -> dict[str, dict]:
    """One job per installed vectorbt engine (only the last one in a smoke run)."""
    if not (plan.peers and have("vectorbt")):
        return {}
    from workloads.common import vbt_engines
    engines = vbt_engines()
    if plan.smoke:
        engines = engines[-1:]
    return {eng: rep.job(f"{label} ({eng})", run(job, {**params, "engine": eng})) for eng in engines}

def _load() -> Optional[float]:
    """1-minute load average: > cores means something else competed for the CPU."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run_job_here(spec: str, kwargs: dict[str, Any], state: str = "fresh", blocks: Optional[int] = None) -> None:
    """Child side: run ``workloads.<module>.<function>(**kwargs)``, print one tagged JSON line.

    ``spec`` may also be ``"@many"`` with ``kwargs = {"jobs": [[spec, kwargs], ...]}``: the
    jobs run one after the other in this process, one tagged line each (smoke runs and the
    process states use it to save interpreter start-ups; peak RSS is then the process's
    high-water mark so far). ``state``: what the process does before the first job
    (``workloads.state.prime``; ``blocks`` sizes the Numba compile).
    """
    import importlib

    from workloads.common import peak_rss_mb
    from workloads.state import COMPILE_BLOCKS, prime

    primed = prime(state, blocks or COMPILE_BLOCKS)
    todo = kwargs["jobs"] if spec == "@many" else [[spec, kwargs]]
    for k, (one, kw) in enumerate(todo):
        module, func = one.split(":")
        t0 = time.perf_counter()
        try:
            out = getattr(importlib.import_module(f"workloads.{module}"), func)(**kw)
            out = {"ok": True, **out}
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which keeps going
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        out["peak_rss_mb"] = peak_rss_mb()
        out["job_wall_s"] = time.perf_counter() - t0
        out["job_index"] = k
        out["load_avg_1m"] = _load()
        out["state"] = primed
        pkg = sys.modules.get("metaflow_nb")
        out["package"] = str(Path(pkg.__file__).resolve().parent) if pkg is not None else None
        sys.stdout.write("\n" + RESULT_TAG + json.dumps(out) + "\n")
        sys.stdout.flush()


def spawn(spec: str, kwargs: dict[str, Any], timeout: float = 1800.0, state: str = "fresh",
          blocks: Optional[int] = None) -> dict[str, Any]:
    """Parent side: run one job in a fresh interpreter and return its result dict."""
    return spawn_many([(spec, kwargs)], timeout, state, blocks)[0]


def spawn_many(jobs: list[tuple[str, dict[str, Any]]], timeout: float = 1800.0, state: str = "fresh",
               blocks: Optional[int] = None) -> list[dict[str, Any]]:
    """Run jobs one after the other in ONE fresh interpreter brought into ``state`` first
    (see ``workloads/state.py``); one result dict per job.

    The interpreter runs in the tree of the package under test (``workloads.common.ROOT``:
    where ``PYTHONPATH`` or the installed copy puts ``metaflow_nb``), so a run of these
    benchmarks against another checkout uses that checkout's code and configs.
    """
    from workloads.common import ROOT as pkg_root
    from workloads.state import env_for

    env = dict(os.environ)
    env["TQDM_DISABLE"] = "1"          # backtesting.py's progress bar
    env.setdefault("PYTHONWARNINGS", "ignore")
    env.update(env_for(state))
    if len(jobs) == 1:
        spec, kw = jobs[0]
    else:
        spec, kw = "@many", {"jobs": [list(j) for j in jobs]}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--job", spec, "--kwargs", json.dumps(kw)]
    if state != "fresh":
        cmd += ["--state", state] + (["--compile-blocks", str(blocks)] if blocks else [])
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=pkg_root, env=env, timeout=timeout)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr, code = f"timed out after {timeout:.0f} s", None
    wall = time.perf_counter() - t0
    results: list[Optional[dict[str, Any]]] = [None] * len(jobs)
    for line in stdout.splitlines():
        if line.startswith(RESULT_TAG):
            out = json.loads(line[len(RESULT_TAG):])
            out["process_wall_s"] = wall if len(jobs) == 1 else out.get("job_wall_s", wall)
            results[out.get("job_index", 0)] = out
    tail = " | ".join((stderr or stdout or "").strip().splitlines()[-8:])
    return [r if r is not None else {"ok": False, "error": f"job exited with code {code}: {tail}",
                                     "process_wall_s": wall} for r in results]


# ====================================================================== plans
@dataclass
class Plan:
    smoke: bool
    peers: bool = True
    w1: dict[str, Any] = field(default_factory=dict)
    w2: dict[str, Any] = field(default_factory=dict)
    w3: dict[str, Any] = field(default_factory=dict)
    w4: dict[str, Any] = field(default_factory=dict)
    w5: dict[str, Any] = field(default_factory=dict)
    w6: dict[str, Any] = field(default_factory=dict)
    w7: dict[str, Any] = field(default_factory=dict)
    #: the extra process states W1, W2 and W6 run in (one process per workload and state)
    states: dict[str, Any] = field(default_factory=dict)


def make_plan(smoke: bool, peers: bool) -> Plan:
    if smoke:
        return Plan(
            smoke=True, peers=peers,
            w1={"bars": 3_000,
                "repeat": {"ours_api": 2, "ours_kernel": 3, "floor": 3, "vectorbt": 2, "backtesting": 1}},
            w2={"bars": 3_000, "repeat": {"ours": 1, "floor": 1, "vectorbt": 1, "paired": 2}, "general": False},
            w3={"fvg16_repeat": 1, "general": False, "grid": "smoke", "grid_repeat": 1, "single_repeat": 3},
            w4={"cells": [(2_000, 10), (4_000, 10), (2_000, 20)], "floor_max_bar_steps": 1e12},
            w5={"import_repeat": 1, "cli_repeat": 1, "compile": False},
            w6={"bars": 3_000, "repeat": {"whole": 2, "loop": 3, "ours": 1, "floor": 1, "paired": 2}},
            w7={"bars": 8_000, "instruments": 7, "vbt_bars": 400, "optimize": False,
                "repeat": {"ours": 1, "floor": 1, "vectorbt": 1}},
            states={"names": ["numba", "mmap"], "compile_blocks": 3,
                    "repeat": {"w1_api": 1, "w1_kernel": 2, "w1_floor": 2, "w2_ours": 1, "w2_floor": 1,
                               "w6_whole": 1, "w6_loop": 2}},
        )
    return Plan(
        smoke=False, peers=peers,
        w1={"bars": 100_000, "repeat": {"ours_api": 21, "ours_kernel": 50, "floor": 50, "vectorbt": 21,
                                        "backtesting": 3}},
        w2={"bars": 100_000, "repeat": {"ours": 7, "floor": 7, "vectorbt": 1, "paired": 15}, "general": True},
        w3={"fvg16_repeat": 3, "general": True, "grid": "full", "grid_repeat": 2, "single_repeat": 20},
        w4={"cells": [(b, c) for b in (10_000, 100_000, 1_000_000) for c in (10, 100, 1_000, 10_000)],
            "floor_max_bar_steps": 1e10},
        w5={"import_repeat": 5, "cli_repeat": 3, "compile": True},
        w6={"bars": 100_000, "repeat": {"whole": 21, "loop": 50, "ours": 7, "floor": 7, "paired": 15}},
        # vectorbt's slice: 1 500 union minutes around the first weekend (5 400 columns; ~2 GB at 2 000)
        w7={"bars": 100_000, "instruments": 20, "vbt_bars": 1_500, "optimize": False,
            "repeat": {"ours": 1, "floor": 1, "vectorbt": 1}},
        states={"names": ["numba", "mmap"], "compile_blocks": None,
                "repeat": {"w1_api": 9, "w1_kernel": 21, "w1_floor": 21, "w2_ours": 3, "w2_floor": 3,
                           "w6_whole": 9, "w6_loop": 21}},
    )


# ====================================================================== helpers
def have(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def med(job: dict[str, Any]) -> Optional[float]:
    return job["time"]["median_s"] if job.get("ok") and "time" in job else None


def rel_diff(a: float, b: float) -> float:
    a, b = float(a), float(b)
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def inside(tm: dict[str, float]) -> str:
    """Where a backtest's time went, from the result's own ``timings`` (ms in the job)."""
    return f"inside: data {tm.get('data_s', 0):.1f} ms, simulate {tm.get('simulate_s', 0):.1f} ms"


def fmt_s(s: Optional[float]) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt_rate(x: Optional[float], unit: str) -> str:
    if x is None:
        return "-"
    for scale, pre in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.2f} {pre}{unit}"
    return f"{x:.1f} {unit}"


def git_rev() -> str:
    """Commit of the package under test's tree (not necessarily this script's)."""
    from workloads.common import ROOT as pkg_root
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=pkg_root,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=pkg_root, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


class Report:
    """Rows, targets and agreement checks, filled by the workloads."""

    def __init__(self, versions: dict[str, Optional[str]], rev: str):
        self.versions = versions
        self.rev = rev
        self.rows: list[dict[str, Any]] = []
        self.targets: list[dict[str, Any]] = []
        self.agreement: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.jobs: dict[str, Any] = {}
        self.sections: dict[str, Any] = {}
        self.failures: list[str] = []

    # ------------------------------------------------------------ versions
    def version(self, tool: str, engine: Optional[str] = None) -> str:
        v = self.versions
        if tool.startswith("metaflow-nb"):
            return f"{v.get('metaflow-nb')} ({self.rev})"
        if tool.startswith("floor"):
            return f"numba {v.get('numba')}"
        if tool == "backtesting.py":
            return str(v.get("backtesting"))
        if tool.startswith("vectorbt"):
            if engine == "rust":
                return f"{v.get('vectorbt')} + vectorbt-rust {v.get('vectorbt-rust')}"
            return f"{v.get('vectorbt')} (numba {v.get('numba')})"
        return "-"

    # ------------------------------------------------------------ records
    def job(self, name: str, job: dict[str, Any]) -> dict[str, Any]:
        slim = {k: v for k, v in job.items() if k not in ("per_combo", "per_run")}
        self.jobs[name] = slim
        if not job.get("ok"):
            self.failures.append(f"{name}: {job.get('error')}")
            print(f"  ! {name} failed: {job.get('error')}", flush=True)
            if job.get("traceback"):
                print("    " + job["traceback"].strip().replace("\n", "\n    "), flush=True)
        else:
            t = med(job)
            print(f"  {name}: {fmt_s(t)} (peak RSS {job.get('peak_rss_mb', 0):.0f} MB, "
                  f"process {job.get('process_wall_s', 0):.1f} s, load {job.get('load_avg_1m')})", flush=True)
        return job

    def row(self, workload: str, tool: str, job: Optional[dict[str, Any]], throughput: str, ref: Optional[float],
            note: str = "", engine: Optional[str] = None, time_s: Optional[float] = None,
            rss: Optional[float] = None) -> None:
        t = time_s if time_s is not None else (med(job) if job else None)
        ratio = f"{t / ref:.3g}" if (t is not None and ref) else "-"
        if job is not None and not job.get("ok"):
            note = (note + "; " if note else "") + "FAILED: " + str(job.get("error"))[:120]
        self.rows.append({"workload": workload, "tool": tool, "version": self.version(tool, engine),
                          "time_s": t, "time": fmt_s(t), "throughput": throughput,
                          "peak_rss_mb": rss if rss is not None else (job.get("peak_rss_mb") if job else None),
                          "ratio_vs_ours": ratio, "note": note})

    def skipped(self, workload: str, tool: str, why: str) -> None:
        self.rows.append({"workload": workload, "tool": tool, "version": "-", "time_s": None, "time": "-",
                          "throughput": "-", "peak_rss_mb": None, "ratio_vs_ours": "-", "note": f"skipped: {why}"})

    def target(self, workload: str, name: str, measured: Optional[float], op: str, bound: float,
               unit: str = "x", detail: str = "") -> None:
        if measured is None or (isinstance(measured, float) and math.isnan(measured)):
            self.targets.append({"workload": workload, "target": name, "measured": None, "bound": bound, "op": op,
                                 "ok": None, "status": "not measured", "detail": detail})
            return
        ok = measured >= bound if op == ">=" else measured <= bound
        if ok:
            status = "holds"
        elif op == ">=":
            status = f"missed by {bound / measured:.2f}x" if measured > 0 else "missed"
        else:
            status = f"missed by {measured / bound:.2f}x"
        self.targets.append({"workload": workload, "target": name, "measured": measured, "bound": bound, "op": op,
                             "unit": unit, "ok": ok, "status": status, "detail": detail})

    def target_range(self, workload: str, name: str, measured: Optional[float], low: float, high: float,
                     detail: str = "") -> None:
        if measured is None:
            self.target(workload, name, None, "<=", high, unit="", detail=detail)
            return
        ok = low <= measured <= high
        status = "holds" if ok else (f"above {high:g} by {measured - high:.3f}" if measured > high
                                     else f"below {low:g} by {low - measured:.3f}")
        self.targets.append({"workload": workload, "target": name, "measured": measured, "bound": [low, high],
                             "op": "in", "unit": "", "ok": ok, "status": status, "detail": detail})

    def agree(self, workload: str, what: str, ok: bool, detail: str) -> None:
        self.agreement.append({"workload": workload, "check": what, "ok": bool(ok), "detail": detail})
        if not ok:
            self.failures.append(f"{workload} agreement: {what}: {detail}")


def compare_pair(a: dict[str, Any], b: dict[str, Any], tol: float) -> tuple[bool, str]:
    ta, tb = a.get("trades"), b.get("trades")
    ea, eb = a.get("final_equity"), b.get("final_equity")
    if ta is None or tb is None:
        return False, "missing result"
    d = rel_diff(ea, eb)
    ok = ta == tb and d <= tol
    return ok, f"trades {ta} vs {tb}, final equity {ea:.6f} vs {eb:.6f} (rel diff {d:.1e}, tol {tol:g})"


def compare_combos(a: dict[str, list], b: dict[str, list], keys: list[str], tol: float) -> tuple[int, int, str]:
    bad = []
    worst = 0.0
    for k in keys:
        if k not in a or k not in b:
            bad.append(k)
            continue
        d = rel_diff(a[k][1], b[k][1])
        worst = max(worst, d)
        if a[k][0] != b[k][0] or d > tol:
            bad.append(k)
    first = ""
    if bad:
        k = bad[0]
        first = f"; first: {k}: {a.get(k)} vs {b.get(k)}"
    return len(keys) - len(bad), len(keys), f"max rel diff {worst:.1e}{first}"


# ====================================================================== process states
def state_jobs(plan: Plan, workload: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(measure, job spec, kwargs)`` of what ``workload`` runs in each extra process state
    (fewer repeats than the fresh-process jobs: the states are a check, not the headline)."""
    r = plan.states.get("repeat", {})
    if workload == "W1":
        b = plan.w1["bars"]
        return [("mf.backtest", "w1:ours_api", {"bars": b, "repeat": r["w1_api"]}),
                ("kernel", "w1:ours_kernel", {"bars": b, "repeat": r["w1_kernel"]}),
                ("floor", "w1:floor", {"bars": b, "repeat": r["w1_floor"]})]
    if workload == "W2":
        b = plan.w2["bars"]
        return [("mf.optimize", "w2:ours", {"bars": b, "repeat": r["w2_ours"]}),
                ("floor", "w2:floor", {"bars": b, "repeat": r["w2_floor"]})]
    if workload == "W6":
        b = plan.w6["bars"]
        return [("whole_vs_loop", "w6:whole_vs_loop", {"bars": b, "repeat": r["w6_whole"],
                                                       "loop_repeat": r["w6_loop"]}),
                ("mf.optimize", "w2:ours", {"bars": b, "repeat": r["w2_ours"], "freq": "D"}),
                ("floor", "w2:floor", {"bars": b, "repeat": r["w2_floor"], "freq": "D"})]
    return []


def run_states(plan: Plan, rep: Report, run_many: Callable, workload: str) -> dict[str, dict[str, dict]]:
    """``{state: {measure: job}}``: the workload's state jobs, one process per extra state."""
    from workloads.state import STATES

    jobs = state_jobs(plan, workload)
    out: dict[str, dict[str, dict]] = {}
    for st in plan.states.get("names", []):
        results = run_many([(spec, kw) for _, spec, kw in jobs], st)
        out[st] = {m: rep.job(f"{workload} {m} [{STATES[st]}]", j) for (m, _, _), j in zip(jobs, results)}
        primed = next((j["state"] for j in results if j.get("ok") and j.get("state")), None)
        if primed:
            rep.sections.setdefault("states", {"rows": []}).setdefault("prime", {}).setdefault(st, primed)
    return out


def _faults(job: Optional[dict[str, Any]], key: str = "time") -> Optional[float]:
    if not job or not job.get("ok") or not isinstance(job.get(key), dict):
        return None
    return job[key].get("minflt_per_run")


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if (a and b) else None


def state_row(rep: Report, workload: str, measure: str, values: dict[str, Optional[float]],
              faults: Optional[dict[str, Optional[float]]] = None, kind: str = "time") -> dict[str, Any]:
    """One line of the process-state table: ``values`` per state (seconds, or a ratio with
    ``kind="ratio"``), and the minor page faults per timed call where measured."""
    sec = rep.sections.setdefault("states", {"rows": []})
    known = {k: v for k, v in values.items() if v is not None}
    worst = max(known, key=known.get) if known else None
    row = {"workload": workload, "measure": measure, "kind": kind, "values": values, "faults": faults or {},
           "worst_state": worst, "worst": known.get(worst) if worst else None,
           "worst_over_fresh": _ratio(known.get(worst), values.get("fresh")) if worst else None}
    sec["rows"].append(row)
    return row


def worst_target(rep: Report, workload: str, name: str, row: dict[str, Any], bound: float) -> None:
    """A ratio target checked in the row's worst process state; the detail lists every state."""
    from workloads.state import STATES

    detail = ", ".join(f"{STATES.get(k, k)} {v:.3g}x" for k, v in row["values"].items() if v is not None)
    if row["worst_state"]:
        detail = f"worst: {STATES.get(row['worst_state'], row['worst_state'])}; " + detail
    rep.target(workload, name, row["worst"], "<=", bound, detail=detail)


def _state_times(fresh: Optional[dict[str, Any]], states: dict[str, dict[str, dict]], measure: str,
                 key: Optional[str] = None) -> tuple[dict[str, Optional[float]], dict[str, Optional[float]]]:
    """Median seconds and faults per call of ``measure`` in every state (``key``: a timing
    block other than ``time`` in the job's result, e.g. W6's ``loop``)."""
    def t(j):
        if not j or not j.get("ok"):
            return None
        return j[key]["median_s"] if key else med(j)
    jobs = {"fresh": fresh, **{st: m.get(measure) for st, m in states.items()}}
    return ({st: t(j) for st, j in jobs.items()}, {st: _faults(j, key or "time") for st, j in jobs.items()})


# ====================================================================== workloads
def workload_w1(plan: Plan, rep: Report, run: Callable, run_many: Optional[Callable] = None) -> None:
    bars = plan.w1["bars"]
    r = plan.w1["repeat"]
    print(f"W1 one backtest, SMA 10/50 reversal, {bars:,} bars", flush=True)
    jobs = {
        "ours_api": rep.job("W1 metaflow-nb mf.backtest", run("w1:ours_api", {"bars": bars, "repeat": r["ours_api"]})),
        "ours_kernel": rep.job("W1 metaflow-nb kernel", run("w1:ours_kernel", {"bars": bars,
                                                                             "repeat": r["ours_kernel"]})),
        "floor": rep.job("W1 floor", run("w1:floor", {"bars": bars, "repeat": r["floor"]})),
    }
    vbt = _vectorbt_jobs(rep, plan, run, "W1 vectorbt from_signals", "w1:vectorbt", {"bars": bars, "repeat": r["vectorbt"]})
    bt = None
    if plan.peers and have("backtesting"):
        bt = rep.job("W1 backtesting.py", run("w1:backtesting", {"bars": bars, "repeat": r["backtesting"]}))
    rep.sections["w1"] = {"bars": bars, "jobs": jobs, "vectorbt": vbt, "backtesting": bt}

    ours = med(jobs["ours_api"])
    tp = (lambda t: fmt_rate(bars / t, "bars/s") if t else "-")
    o = jobs["ours_api"]
    api_note = ""
    if o.get("ok"):
        tm = o.get("timings", {})
        api_note = f"{inside(tm)}; raw (unvalidated) frame {fmt_s(o.get('raw_frame_median_s'))}"
    rep.row("W1", "metaflow-nb mf.backtest", o, tp(ours), ours, api_note)
    rep.row("W1", "metaflow-nb kernel alone", jobs["ours_kernel"], tp(med(jobs["ours_kernel"])), ours,
            "the compiled loop on inputs prepared once (workloads.common.compiled_loop)")
    rep.row("W1", "floor", jobs["floor"], tp(med(jobs["floor"])), ours, "benchmarks/floor.py, SMAs included")
    for eng, j in vbt.items():
        note = f"from_signals alone; whole pipeline (MA, crosses, portfolio) {fmt_s(j.get('pipeline_median_s'))}"
        rep.row("W1", f"vectorbt ({eng})", j, tp(med(j)), ours, note, engine=eng)
    if not vbt:
        rep.skipped("W1", "vectorbt", "not installed" if not have("vectorbt") else "peers disabled")
    if bt is not None:
        rep.row("W1", "backtesting.py", bt, tp(med(bt)), ours, "Backtest(...).run(), exclusive_orders=True")
    else:
        rep.skipped("W1", "backtesting.py", "not installed" if not have("backtesting") else "peers disabled")

    # agreement: every tool runs the same trades
    ref = jobs["ours_api"]
    if ref.get("ok"):
        for name, j, tol in (("kernel", jobs["ours_kernel"], 0.0), ("floor", jobs["floor"], 1e-12),
                             ("backtesting.py", bt, 1e-9), *((f"vectorbt ({e})", j, 1e-9) for e, j in vbt.items())):
            if j is not None and j.get("ok"):
                ok, detail = compare_pair(ref, j, tol)
                rep.agree("W1", f"mf.backtest vs {name}", ok, detail)

    # targets
    if bt is not None:
        rep.target("W1", "mf.backtest >= 250x faster than backtesting.py",
                   (med(bt) / ours) if ours and med(bt) else None, ">=", 250.0)
    vbt_best = min((med(j) for j in vbt.values() if med(j)), default=None)
    if vbt:
        best_eng = min((e for e in vbt if med(vbt[e])), key=lambda e: med(vbt[e]), default="?")
        rep.target("W1", "mf.backtest >= 5x faster than vectorbt from_signals alone",
                   (vbt_best / ours) if ours and vbt_best else None, ">=", 5.0,
                   detail=f"fastest vectorbt engine: {best_eng}")
    states = run_states(plan, rep, run_many, "W1") if run_many else {}
    rep.sections["w1"]["states"] = states
    api_t, api_f = _state_times(jobs["ours_api"], states, "mf.backtest")
    k_t, k_f = _state_times(jobs["ours_kernel"], states, "kernel")
    f_t, f_f = _state_times(jobs["floor"], states, "floor")
    state_row(rep, "W1", "mf.backtest", api_t, api_f)
    state_row(rep, "W1", "kernel alone", k_t, k_f)
    state_row(rep, "W1", "floor", f_t, f_f)
    kf = state_row(rep, "W1", "kernel / floor", {st: _ratio(k_t[st], f_t.get(st)) for st in k_t}, kind="ratio")
    worst_target(rep, "W1", "engine kernel within 2x of the floor (worst process state)", kf, 2.0)


def _w2_ok_keys(per: dict[str, list]) -> list[str]:
    return sorted(per)


def workload_w2(plan: Plan, rep: Report, run: Callable, run_many: Optional[Callable] = None) -> None:
    bars = plan.w2["bars"]
    r = plan.w2["repeat"]
    print(f"W2 300-combination grid on {bars:,} bars", flush=True)
    ours = rep.job("W2 metaflow-nb mf.optimize", run("w2:ours", {"bars": bars, "repeat": r["ours"]}))
    general = None
    if plan.w2.get("general"):
        general = rep.job("W2 metaflow-nb general path", run("w2:ours", {"bars": bars, "repeat": 1, "general": True}))
    floor = rep.job("W2 floor batch", run("w2:floor", {"bars": bars, "repeat": r["floor"]}))
    vbt = _vectorbt_jobs(rep, plan, run, "W2 vectorbt broadcast", "w2:vectorbt", {"bars": bars, "repeat": r["vectorbt"]})
    rep.sections["w2"] = {"bars": bars, "ours": ours}

    valid = ours.get("valid") if ours.get("ok") else None
    t_ours = med(ours)
    cps = (lambda t, n: fmt_rate(n / t, "combos/s") if t and n else "-")
    rep.row("W2", "metaflow-nb mf.optimize", ours, cps(t_ours, valid), t_ours,
            f"engine {ours.get('engine')}, {ours.get('combos')} combos: {ours.get('valid')} valid, "
            f"{ours.get('failed')} failed (fast >= slow)" if ours.get("ok") else "")
    if general is not None:
        rep.row("W2", "metaflow-nb general path", general, cps(med(general), general.get("valid")), t_ours,
                "engine=general, loky process pool, one run per combination")
    rep.row("W2", "floor (prange batch)", floor, cps(med(floor), floor.get("valid")), t_ours)
    _daily_floor_row(rep, "W2", floor, t_ours)
    for eng, j in vbt.items():
        rep.row("W2", f"vectorbt ({eng})", j, cps(med(j), j.get("valid")), t_ours,
                f"MA + crosses + one broadcast from_signals + final_value; from_signals alone "
                f"{fmt_s(j.get('from_signals_median_s'))}", engine=eng)
    if not vbt:
        rep.skipped("W2", "vectorbt", "not installed" if not have("vectorbt") else "peers disabled")

    if ours.get("ok") and floor.get("ok"):
        keys = _w2_ok_keys(floor["per_combo"])
        good, n, detail = compare_combos(ours["per_combo"], floor["per_combo"], keys, 1e-9)
        rep.agree("W2", "mf.optimize vs floor, all valid combinations", good == n and len(ours["per_combo"]) == n,
                  f"{good}/{n} agree; {detail}")
    if ours.get("ok") and general is not None and general.get("ok"):
        keys = sorted(ours["per_combo"])
        good, n, detail = compare_combos(ours["per_combo"], general["per_combo"], keys, 0.0)
        rep.agree("W2", "batch path vs general path", good == n, f"{good}/{n} identical; {detail}")
    for eng, j in vbt.items():
        if ours.get("ok") and j.get("ok"):
            nostop = [k for k in j["per_combo"] if k.endswith("/none")]
            good, n, detail = compare_combos(ours["per_combo"], j["per_combo"], nostop, 1e-9)
            rep.agree("W2", f"mf.optimize vs vectorbt ({eng}), no-stop combinations", good == n,
                      f"{good}/{n} agree; {detail}")
            stops = [k for k in j["per_combo"] if not k.endswith("/none")]
            g2, n2, _ = compare_combos(ours["per_combo"], j["per_combo"], stops, 1e-9)
            rep.notes.append(f"W2 vectorbt ({eng}) with stops: {g2}/{n2} combinations agree; vectorbt cannot "
                             f"fill a stop on the entry bar, metaflow-nb and the floor do, so these are not compared.")

    vbt_best = max(((j["valid"] / med(j)) for j in vbt.values() if med(j)), default=None)
    ours_cps = (valid / t_ours) if (valid and t_ours) else None
    if vbt:
        rep.target("W2", ">= 100x vectorbt's broadcast run (combinations/s)",
                   (ours_cps / vbt_best) if ours_cps and vbt_best else None, ">=", 100.0)
    states = run_states(plan, rep, run_many, "W2") if run_many else {}
    o_t, o_f = _state_times(ours, states, "mf.optimize")
    f_t, f_f = _state_times(floor, states, "floor")
    state_row(rep, "W2", "mf.optimize", o_t, o_f)
    state_row(rep, "W2", "floor", f_t, f_f)
    of = state_row(rep, "W2", "mf.optimize / floor", {st: _ratio(o_t[st], f_t.get(st)) for st in o_t}, kind="ratio")
    worst_target(rep, "W2", "within 1.5x of the floor's prange batch (worst process state)", of, 1.5)
    _daily_floor_target(rep, "W2", ours, floor, states, o_t)
    _paired_targets(rep, "W2", run("w2:paired", {"bars": bars, "rounds": r["paired"]}))
    rep.target("W2", f"peak RSS < {MB_LIMIT_W2:.0f} MB", ours.get("peak_rss_mb") if ours.get("ok") else None,
               "<=", MB_LIMIT_W2, unit="MB")


def workload_w3(plan: Plan, rep: Report, run: Callable) -> None:
    print("W3 ICT sweeps on eurusd_15m", flush=True)
    cfg = plan.w3
    single = rep.job("W3 single run", run("w3:single", {"repeat": cfg["single_repeat"]}))
    fvg = rep.job("W3 optimize_fvg_params (batch)", run("w3:fvg16", {"repeat": cfg["fvg16_repeat"]}))
    gen = None
    if cfg.get("general"):
        gen = rep.job("W3 optimize_fvg_params (general)", run("w3:fvg16", {"repeat": 1, "engine": "general"}))
    kw: dict[str, Any] = {"repeat": cfg["grid_repeat"]}
    if cfg["grid"] == "smoke":
        from workloads import w3
        kw["grid"] = w3.smoke_grid()
    grid = rep.job("W3 ICT grid", run("w3:grid1000", kw))

    k = med(single)
    cores = single.get("cores", os.cpu_count() or 1) if single.get("ok") else (os.cpu_count() or 1)
    bt = single.get("backtest", {}).get("median_s") if single.get("ok") else None
    prep = single.get("prepare", {}).get("median_s") if single.get("ok") else None
    rps = (lambda t, n: fmt_rate(n / t, "runs/s") if t and n else "-")
    rep.row("W3", "metaflow-nb single run: kernel", single, fmt_rate(1 / k, "runs/s") if k else "-", None,
            f"{single.get('bars')} bars, {single.get('trades')} trades; prepare {fmt_s(prep)}, "
            f"whole mf.backtest {fmt_s(bt)}" if single.get("ok") else "")
    sec: dict[str, Any] = {"kernel_s": k, "cores": cores, "backtest_s": bt, "prepare_s": prep}
    for label, j in (("optimize_fvg_params (16, batch)", fvg), ("optimize_fvg_params (16, general)", gen),
                     (f"ICT grid ({grid.get('runs', '?')}, batch)", grid)):
        if j is None:
            continue
        n = j.get("runs")
        t = med(j)
        ideal = (k * n / cores) if (k and n) else None
        eff = (ideal / t) if (ideal and t) else None
        note = ""
        if j.get("ok"):
            note = f"engine {j.get('engine')}, {n} runs ({j.get('failed')} failed)"
            if eff:
                note += f"; ideal (kernel x runs / cores) {fmt_s(ideal)}, reached {eff * 100:.1f} %"
            if bt and n:
                note += f"; whole single mf.backtest x runs / cores {fmt_s(bt * n / cores)}"
        rep.row("W3", f"metaflow-nb {label}", j, rps(t, n), None, note)
        sec[label] = {"time_s": t, "runs": n, "ideal_s": ideal, "efficiency": eff}
    ib = rep.job("W3 intrabar resolution", run("w3:intrabar", {"repeat": cfg["single_repeat"]}))
    if ib.get("ok") and ib.get("ratio"):
        p, q = ib["pessimistic"], ib["intrabar"]
        rep.row("W3", "metaflow-nb 1h ICT loop, intrabar: source", ib, fmt_rate(1 / med(ib), "runs/s"), None,
                f"{q['bars']} 1h bars, {q['trades']} trades, fill rules {q['fill_rules']}; without finer bars "
                f"{fmt_s(p['time']['median_s'])} ({p['trades']} trades, {p['fill_rules']}); whole mf.backtest "
                f"{fmt_s(q['backtest']['median_s'])} vs {fmt_s(p['backtest']['median_s'])}")
        rep.target("W3", "intrabar resolution: loop within 1.2x of the same run without finer bars",
                   ib["ratio"], "<=", 1.2)
        sec["intrabar_ratio"] = ib["ratio"]
    rep.sections["w3"] = sec
    if fvg.get("ok") and gen is not None and gen.get("ok"):
        same = fvg["per_run"] == gen["per_run"]
        rep.agree("W3", "optimize_fvg_params batch vs general", same,
                  f"{fvg['runs']} runs, trades and final equity " + ("identical" if same else "differ"))


def _fit(points: list[tuple[float, float]]) -> Optional[float]:
    import numpy as np
    if len({x for x, _ in points}) < 2:
        return None
    x = np.log([p[0] for p in points])
    y = np.log([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def _affine(cells: list[dict[str, Any]]) -> Optional[dict[str, float]]:
    """Least-squares fit (relative errors) of ``time = fixed + per_combo * combos +
    per_bar * bars + per_step * bar_steps`` over the W4 cells: what a sweep costs once,
    per combination (Python planning, result rows), per bar of data (checks, calendar,
    features) and per bar-step (the kernel)."""
    import numpy as np
    if len(cells) < 5:
        return None
    t = np.array([med(j) for j in cells])
    a = np.array([[1.0, j["combos"], j["bars"], j["bar_steps"]] for j in cells])
    coef, *_ = np.linalg.lstsq(a / t[:, None], np.ones_like(t), rcond=None)
    resid = np.abs(a @ coef / t - 1.0)
    return {"fixed_s": float(coef[0]), "per_combo_s": float(coef[1]), "per_bar_s": float(coef[2]),
            "per_bar_step_s": float(coef[3]),
            "max_rel_residual": float(resid.max())}


def workload_w4(plan: Plan, rep: Report, run: Callable, deadline: float, out_dir: Path) -> None:
    cells = sorted(plan.w4["cells"], key=lambda bc: bc[0] * bc[1])
    print(f"W4 scaling, {len(cells)} cells", flush=True)
    done: list[dict[str, Any]] = []
    capped: list[str] = []
    rate = None  # seconds per bar-step (ours + floor), from the largest finished cell
    for bars, combos in cells:
        steps = bars * combos
        with_floor = steps <= plan.w4["floor_max_bar_steps"]
        if rate is not None:
            predicted = rate * steps * 1.25 + 8.0
            left = deadline - time.monotonic()
            if predicted > left:
                capped.append(f"{bars:g} bars x {combos:,} combos (predicted {predicted:.0f} s, {left:.0f} s left)")
                print(f"  capped: {capped[-1]}", flush=True)
                continue
        j = rep.job(f"W4 {bars:,} x {combos:,}", run("w4:cell", {"bars": bars, "combos": combos,
                                                                "floor": with_floor}))
        if j.get("ok"):
            rate = (med(j) + (j.get("floor_s") or 0.0)) / steps  # cells run in order of size
            done.append(j)
            if j.get("floor_trade_mismatches") is not None:
                ok = j["floor_trade_mismatches"] == 0 and j["floor_max_rel_diff"] <= 1e-9
                rep.agree("W4", f"sweep vs floor, {bars:,} x {combos:,}", ok,
                          f"{j['floor_trade_mismatches']} trade-count mismatches, max rel diff "
                          f"{j['floor_max_rel_diff']:.1e}")
    pts = [(j["bar_steps"], med(j)) for j in done]
    big = [(s, t) for s, t in pts if s >= 1e7]
    exp_all = _fit(pts)
    exp_big = _fit(big)
    # per bar count: how time grows with the combinations alone
    exp_rows = {b: _fit([(j["combos"], med(j)) for j in done if j["bars"] == b])
                for b in sorted({j["bars"] for j in done})}
    largest = max(done, key=lambda j: j["bar_steps"]) if done else None
    for j in done:
        t = med(j)
        fl = j.get("floor_s")
        rep.row("W4", f"metaflow-nb {j['bars']:,} bars x {j['combos']:,}", j,
                fmt_rate(j["bar_steps"] / t, "bar-steps/s"), None,
                (f"floor {fmt_s(fl)} (ours/floor {t / fl:.2f}); " if fl else "floor not run; ")
                + "final equity x start min/median/max "
                + "/".join(f"{v:.3g}" for v in j.get("final_equity_x", [])),
                rss=j.get("peak_rss_mb_ours"))
    rep.sections["w4"] = {"cells": [{k: j.get(k) for k in ("bars", "combos", "bar_steps", "time", "floor_s",
                                                             "peak_rss_mb_ours", "final_equity_x")} for j in done],
                          "exponent_all": exp_all, "exponent_ge_1e7": exp_big,
                          "exponent_in_combos_by_bars": exp_rows, "capped": capped}
    if capped:
        rep.notes.append("W4 capped to stay within the time budget: " + "; ".join(capped))
    rows_txt = ", ".join(f"{b:,} bars: {e:.3f}" for b, e in exp_rows.items() if e is not None)
    aff = _affine(done)
    rep.sections["w4"]["affine_fit"] = aff
    detail = [f"fit on the cells >= 1e7 bar-steps: k = {exp_big:.3f}" if exp_big is not None else "",
              f"exponent in combinations at fixed bars: {rows_txt}" if rows_txt else "",
              (f"time = {aff['fixed_s'] * 1e3:.1f} ms + {aff['per_combo_s'] * 1e6:.1f} us x combos + "
               f"{aff['per_bar_s'] * 1e9:.0f} ns x bars + {aff['per_bar_step_s'] * 1e9:.2f} ns x bar-steps "
               "fits every cell within "
               f"{aff['max_rel_residual'] * 100:.0f} %: linear in bar-steps, plus fixed and per-combination "
               "Python costs that flatten a pure power law on the small cells") if aff else ""]
    rep.target_range("W4", "time ~ (bars x combos)^k with k in 0.9..1.1 (fit on all cells run)", exp_all, 0.9, 1.1,
                     detail="; ".join(d for d in detail if d))
    if largest is not None:
        rep.target("W4", f"peak RSS <= 1.5 GB at the largest cell run ({largest['bars']:,} x {largest['combos']:,})",
                   largest.get("peak_rss_mb_ours"), "<=", MB_LIMIT_W4, unit="MB")
        fl = largest.get("floor_s")
        rep.target("W4", f"within 1.5x of the floor at the largest cell run ({largest['bars']:,} x "
                   f"{largest['combos']:,})", med(largest) / fl if fl else None, "<=", 1.5)
    plot_scaling(done, out_dir / "scaling.png", exp_all)


def plot_scaling(cells: list[dict[str, Any]], path: Path, exponent: Optional[float]) -> None:
    if not cells:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for bars in sorted({c["bars"] for c in cells}):
        row = sorted((c for c in cells if c["bars"] == bars), key=lambda c: c["bar_steps"])
        x = [c["bar_steps"] for c in row]
        ax.plot(x, [med(c) for c in row], "o-", label=f"metaflow-nb, {bars:,} bars")
        fl = [(c["bar_steps"], c["floor_s"]) for c in row if c.get("floor_s")]
        if fl:
            ax.plot([p[0] for p in fl], [p[1] for p in fl], "x--", alpha=0.6, label=f"floor, {bars:,} bars")
    xs = np.array(sorted(c["bar_steps"] for c in cells), dtype=float)
    t_ref = max(cells, key=lambda c: c["bar_steps"])
    ax.plot(xs, med(t_ref) * xs / t_ref["bar_steps"], ":", color="grey", label="linear through the largest cell")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bars x combinations (bar-steps)")
    ax.set_ylabel("wall time (s)")
    title = "W4 scaling: SMA cross with stops, batch sweep"
    if exponent is not None:
        title += f" (fitted exponent {exponent:.2f})"
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def workload_w5(plan: Plan, rep: Report, run: Callable) -> None:
    print("W5 start-up", flush=True)
    imp = rep.job("W5 import metaflow_nb", run("w5:import_time", {"repeat": plan.w5["import_repeat"]}))
    cli = rep.job("W5 CLI backtest", run("w5:cli", {"repeat": plan.w5["cli_repeat"]}))
    comp = None
    if plan.w5.get("compile"):
        comp = rep.job("W5 cold compile", run("w5:compile_time", {}))
    rep.row("W5", "metaflow-nb import", imp, "-", None,
            f"median of {plan.w5['import_repeat']} fresh processes; process wall "
            f"{fmt_s(imp.get('process_wall_median_s'))}" if imp.get("ok") else "")
    shell = cli.get("shell") or {}
    rep.row("W5", "metaflow-nb CLI backtest sma_cross sp500_daily", cli, "-", None,
            "warm Numba cache and bytecode, process wall time" + (
                f"; in this shell's state ({'PYTHONDONTWRITEBYTECODE set, ' if shell.get('dont_write_bytecode') else ''}"
                f"timed in turns) {fmt_s(shell.get('median_s'))}" if shell.get("median_s") else ""))
    if comp is not None:
        note = ""
        if comp.get("ok"):
            c, w = comp["cold"], comp["warm"]
            note = (f"cold cache: import {c['import_s']:.2f} s, first backtest {c['backtest_s']:.2f} s, first sweep "
                    f"{c['sweep_s']:.2f} s, first ICT backtest {c['ict_s']:.2f} s; same with the cache filled: "
                    f"{w['total_s']:.2f} s")
        rep.row("W5", "metaflow-nb compile, cold Numba cache", comp, "-", None, note)
    else:
        rep.skipped("W5", "metaflow-nb compile, cold Numba cache", "smoke run")
    rep.target("W5", "CLI backtest wall time < 2 s", med(cli), "<=", 2.0, unit="s")
    rep.sections["w5"] = {"import": imp, "cli": cli, "compile": comp}


def _daily_floor_row(rep: Report, workload: str, floor: dict[str, Any], t_ours: Optional[float]) -> None:
    """The floor that also computes each combination's daily Sharpe ratio (what the sweep
    ranks by): its row."""
    if floor.get("ok") and floor.get("daily"):
        t = floor["daily"]["median_s"]
        rep.row(workload, "floor + daily Sharpe (prange batch)", floor,
                fmt_rate(floor["valid"] / t, "combos/s"), t_ours,
                f"the floor keeping each day's closing equity and computing the Sharpe ratio of its "
                f"{floor['days']:,} daily returns (benchmarks/floor.py sma_cross_floor_batch_daily)", time_s=t)


def _daily_floor_target(rep: Report, workload: str, ours: dict[str, Any], floor: dict[str, Any],
                        states: dict[str, dict[str, dict]], o_t: dict[str, Optional[float]]) -> None:
    """Agreement of every combination's Sharpe ratio with the floor's, the state rows of the
    floor computing it, and the ratio target against that floor."""
    if not (floor.get("ok") and floor.get("daily")):
        return
    if ours.get("ok"):
        keys = sorted(floor["sharpe"])
        same = sum(1 for k in keys if k in ours["sharpe"] and (ours["sharpe"][k] == floor["sharpe"][k] or
                                                               (ours["sharpe"][k] != ours["sharpe"][k] and
                                                                floor["sharpe"][k] != floor["sharpe"][k])))
        rep.agree(workload, "mf.optimize's Sharpe ratio vs the floor's, all valid combinations", same == len(keys),
                  f"{same}/{len(keys)} identical to the last bit")
    d_t, d_f = _state_times(floor, states, "floor", key="daily")
    state_row(rep, workload, "floor + daily Sharpe", d_t, d_f)
    od = state_row(rep, workload, "mf.optimize / (floor + daily Sharpe)",
                   {st: _ratio(o_t[st], d_t.get(st)) for st in o_t}, kind="ratio")
    bars = "daily bars: " if workload == "W6" else "minute bars: "
    worst_target(rep, workload, bars + "mf.optimize within 1.5x of the floor computing the same daily Sharpe "
                 "(worst process state)", od, 1.5)


def workload_w6(plan: Plan, rep: Report, run: Callable, run_many: Optional[Callable] = None) -> None:
    bars = plan.w6["bars"]
    r = plan.w6["repeat"]
    print(f"W6 daily bars: {bars:,}, one per calendar day", flush=True)
    wl = rep.job("W6 metaflow-nb mf.backtest vs its compiled loop",
                 run("w6:whole_vs_loop", {"bars": bars, "repeat": r["whole"], "loop_repeat": r["loop"]}))
    ours = rep.job("W6 metaflow-nb mf.optimize", run("w2:ours", {"bars": bars, "repeat": r["ours"], "freq": "D"}))
    # the plain floor's work does not depend on the index (W2's job); its daily-Sharpe
    # version makes one return a bar here
    floor = rep.job("W6 floor batch", run("w2:floor", {"bars": bars, "repeat": r["floor"], "freq": "D"}))
    states = run_states(plan, rep, run_many, "W6") if run_many else {}
    rep.sections["w6"] = {"bars": bars, "states": states}

    t_whole = med(wl)
    t_loop = wl["loop"]["median_s"] if wl.get("ok") else None
    tp = (lambda t: fmt_rate(bars / t, "bars/s") if t else "-")
    note = ""
    if wl.get("ok"):
        tm = wl.get("timings", {})
        note = (f"W1's strategy, {wl['trades']} trades, days {wl['first_day']} .. {wl['last_day']}; {inside(tm)}; "
                f"trades table included (len(res.trades))")
    rep.row("W6", "metaflow-nb mf.backtest (daily)", wl, tp(t_whole), t_whole, note)
    rep.row("W6", "metaflow-nb compiled loop alone (daily)", wl, tp(t_loop), t_whole,
            "common.compiled_loop on the same specs and bars, same process" if wl.get("ok") else "",
            time_s=t_loop)
    valid = ours.get("valid") if ours.get("ok") else None
    t_ours = med(ours)
    cps = (lambda t, n: fmt_rate(n / t, "combos/s") if t and n else "-")
    rep.row("W6", "metaflow-nb mf.optimize (daily)", ours, cps(t_ours, valid), t_ours,
            f"W2's grid: engine {ours.get('engine')}, {ours.get('combos')} combos, {valid} valid"
            if ours.get("ok") else "")
    rep.row("W6", "floor (prange batch)", floor, cps(med(floor), floor.get("valid")), t_ours,
            "the same work as W2's floor (same prices)")
    _daily_floor_row(rep, "W6", floor, t_ours)

    if wl.get("ok"):
        ok, detail = compare_pair(wl, {"trades": wl["loop_trades"], "final_equity": wl["loop_final_equity"]}, 0.0)
        rep.agree("W6", "mf.backtest vs its compiled loop", ok, detail)
    if ours.get("ok") and floor.get("ok"):
        keys = _w2_ok_keys(floor["per_combo"])
        good, n, detail = compare_combos(ours["per_combo"], floor["per_combo"], keys, 1e-9)
        rep.agree("W6", "mf.optimize vs floor, all valid combinations", good == n and len(ours["per_combo"]) == n,
                  f"{good}/{n} agree; {detail}")
    w2 = rep.sections.get("w2", {}).get("ours")
    if ours.get("ok") and w2 and w2.get("ok") and rep.sections["w2"]["bars"] == bars:
        keys = sorted(set(ours["per_combo"]) | set(w2["per_combo"]))
        good, n, detail = compare_combos(ours["per_combo"], w2["per_combo"], keys, 0.0)
        rep.agree("W6", "mf.optimize on daily bars vs W2 on minute bars (same prices)", good == n,
                  f"{good}/{n} identical; {detail}")

    w_t, w_f = _state_times(wl, states, "whole_vs_loop")
    l_t, l_f = _state_times(wl, states, "whole_vs_loop", key="loop")
    o_t, o_f = _state_times(ours, states, "mf.optimize")
    f_t, f_f = _state_times(floor, states, "floor")
    state_row(rep, "W6", "mf.backtest + trades", w_t, w_f)
    state_row(rep, "W6", "compiled loop alone", l_t, l_f)
    wr = state_row(rep, "W6", "mf.backtest / loop", {st: _ratio(w_t[st], l_t.get(st)) for st in w_t}, kind="ratio")
    state_row(rep, "W6", "mf.optimize", o_t, o_f)
    state_row(rep, "W6", "floor", f_t, f_f)
    of = state_row(rep, "W6", "mf.optimize / floor", {st: _ratio(o_t[st], f_t.get(st)) for st in o_t}, kind="ratio")
    worst_target(rep, "W6", "daily bars: whole mf.backtest with trades <= 3x its compiled loop (worst process state)",
                 wr, 3.0)
    worst_target(rep, "W6", "daily bars: mf.optimize within 1.5x of the floor's prange batch (worst process state)",
                 of, 1.5)
    _daily_floor_target(rep, "W6", ours, floor, states, o_t)
    _paired_targets(rep, "W6", run("w2:paired", {"bars": bars, "rounds": r["paired"], "freq": "D"}))


def _paired_targets(rep: Report, workload: str, job: dict[str, Any]) -> None:
    """The ratio targets again, timed in turns in one process (``w2.paired``): both sides of
    a ratio see the same moments of the machine, so its noise does not flip a target."""
    job = rep.job(f"{workload} paired in one process", job)
    ok = job.get("ok")
    n = job.get("rounds")
    bars = "daily bars: " if workload == "W6" else "minute bars: "
    for key, floor, label in (("ratio", "floor_median_s", "the floor's prange batch"),
                              ("ratio_daily", "daily_median_s", "the floor computing the same daily Sharpe")):
        lo, hi = job.get(f"{key}_range", [None, None]) if ok else (None, None)
        note = (f"median of {n} rounds, each mf.optimize then the floors; range {lo:.2f}-{hi:.2f}x; medians "
                f"{fmt_s(job['time']['median_s'])} vs {fmt_s(job[floor])}" if ok else "")
        rep.target(workload, f"{bars}mf.optimize within 1.5x of {label}, timed in turns in one process",
                   job.get(key) if ok else None, "<=", 1.5, detail=note)


def w7_jobs(plan: Plan, vbt_engines: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """W7's jobs in the order they run: per mode ours, the floor, vectorbt per engine."""
    c = plan.w7
    r = c["repeat"]
    size = {"bars": c["bars"], "n_inst": c["instruments"]}
    jobs: list[tuple[str, dict[str, Any]]] = []
    for mode in ("independent", "portfolio"):
        jobs.append(("w7:ours", {"mode": mode, **size, "repeat": r["ours"], "optimize": c["optimize"],
                                 "slice_bars": c["vbt_bars"] if (mode == "independent" and vbt_engines) else None}))
        jobs.append(("w7:floor", {"mode": mode, **size, "repeat": r["floor"]}))
        jobs += [("w7:vectorbt", {"mode": mode, "basket_bars": c["bars"], "n_inst": c["instruments"],
                                  "bars": c["vbt_bars"], "repeat": r["vectorbt"], "engine": e}) for e in vbt_engines]
    return jobs


def workload_w7(plan: Plan, rep: Report, run: Callable) -> None:
    """The basket: rows, agreement and targets per mode (``benchmarks/workloads/w7.py``)."""
    from workloads.common import vbt_engines

    c = plan.w7
    engines = (vbt_engines()[-1:] if plan.smoke else vbt_engines()) if (plan.peers and have("vectorbt")) else []
    print(f"W7 basket: {c['instruments']} instruments x {c['bars']:,} bars, W2's grid, both modes", flush=True)
    done = {}
    for spec, kw in w7_jobs(plan, engines):
        label = {"w7:ours": "metaflow-nb sweep_basket", "w7:floor": "floor",
                 "w7:vectorbt": f"vectorbt ({kw.get('engine')})"}[spec]
        done[(spec, kw["mode"], kw.get("engine"))] = rep.job(f"W7 {kw['mode']} {label}", run(spec, kw))
    sec: dict[str, Any] = {}
    for mode in ("independent", "portfolio"):
        ours, floor = done[("w7:ours", mode, None)], done[("w7:floor", mode, None)]
        vbt = {e: done[("w7:vectorbt", mode, e)] for e in engines}
        sec[mode] = _w7_mode(rep, mode, ours, floor, vbt)
    if not engines:
        rep.skipped("W7", "vectorbt", "not installed" if not have("vectorbt") else "peers disabled")
    rep.sections["w7"] = sec


def _ibc(job: dict[str, Any]) -> Optional[float]:
    """Instrument-bar-combinations per second of a W7 job (each instrument's own bars)."""
    t = med(job)
    return job["instrument_bars"] * job["valid"] / t if (t and job.get("instrument_bars")) else None


def _w7_mode(rep: Report, mode: str, ours: dict, floor: dict, vbt: dict[str, dict]) -> dict[str, Any]:
    w = f"W7 {mode}"
    t_ours = med(ours)

    def tp(j: dict) -> str:
        t = med(j)
        if not t or not j.get("valid"):
            return "-"
        return f"{fmt_rate(j['valid'] / t, 'combos/s')}, {fmt_rate(_ibc(j), 'inst-bar-combos/s')}"

    note = ""
    if ours.get("ok"):
        note = (f"batch sweep on the loaded basket (engine {ours.get('engine')}): {ours['instruments']} instruments, "
                f"{ours['instrument_bars']:,} own bars, union calendar {ours['union_bars']:,}, {ours['combos']} "
                f"combos ({ours['valid']} valid); loading the Parquet files {fmt_s(ours.get('load_s'))} not timed")
        if ours.get("optimize_basket_s"):
            note += f"; whole optimize_basket(engine='batch') {fmt_s(ours['optimize_basket_s'])}"
        elif ours.get("optimize_basket_error"):
            note += f"; optimize_basket(engine='batch') failed: {ours['optimize_basket_error'][:160]}"
    rep.row(w, "metaflow-nb sweep_basket", ours, tp(ours), t_ours, note)
    fnote = ("prange over instrument x combination of sma_cross_floor, each on its own bars" if mode == "independent"
             else "sma_cross_portfolio_floor_batch: prange over combinations, instruments in lock-step")
    b = floor.get("binding") if floor.get("ok") else None
    if b:
        fnote += (f"; the shared cash binds: entries capped by free cash in {b['combos_capped']} of {floor['valid']} "
                  f"combinations ({b['entries_capped_by_cash']:,} entries), setups skipped for max_positions in "
                  f"{b['combos_skipped']} ({b['setups_skipped_max_positions']:,})")
    rep.row(w, "floor", floor, tp(floor), t_ours, fnote)
    t_total = floor["total"]["median_s"] if floor.get("ok") and floor.get("total") else None
    if t_total:
        rep.row(w, "floor + portfolio total and daily Sharpe", floor,
                f"{fmt_rate(floor['valid'] / t_total, 'combos/s')}, "
                f"{fmt_rate(floor['instrument_bars'] * floor['valid'] / t_total, 'inst-bar-combos/s')}", t_ours,
                "sma_cross_basket_floor_total: the same accounts, each combination's portfolio added up on the union "
                "calendar in basket order and its daily Sharpe ratio (what a sweep ranked on the portfolio computes "
                "at least)", time_s=t_total)
    for eng, j in vbt.items():
        vnote = ""
        if j.get("ok"):
            vnote = (f"slice: {j['union_bars']:,} union bars around the first Saturday ({j['instrument_bars']:,} own "
                     f"bars), {j['columns']:,} columns; MA + crosses + one from_signals + final_value; from_signals alone "
                     f"{fmt_s(j.get('from_signals_median_s'))}"
                     + (", cash_sharing=True, a group per combination" if mode == "portfolio" else ""))
        rep.row(w, f"vectorbt ({eng})", j, tp(j), None, vnote, engine=eng)

    # agreement before speed
    if ours.get("ok") and floor.get("ok"):
        keys = sorted(floor["per_combo"])
        good, n, detail = compare_combos(ours["per_combo"], floor["per_combo"], keys, 1e-9)
        what = ("every account x combination (trades, final equity)" if mode == "independent"
                else "every combination's shared account (trades, final equity)")
        rep.agree(w, f"sweep_basket vs floor, {what}", good == n and len(ours["per_combo"]) == n,
                  f"{good}/{n} agree; {detail}")
        if floor.get("sharpe") and ours.get("sharpe"):
            same = sum(1 for k, v in floor["sharpe"].items()
                       if k in ours["sharpe"] and (v == ours["sharpe"][k] or (math.isnan(v) and math.isnan(ours["sharpe"][k]))))
            rep.agree(w, "sweep_basket's portfolio Sharpe ratio vs the floor's, every combination",
                      same == len(floor["sharpe"]) == len(ours["sharpe"]),
                      f"{same}/{len(floor['sharpe'])} identical to the last bit")
    for eng, j in vbt.items():
        if not j.get("ok"):
            continue
        if mode == "independent" and ours.get("per_combo_slice"):
            nostop = [k for k in j["per_combo"] if k.endswith("/none")]
            good, n, detail = compare_combos(ours["per_combo_slice"], j["per_combo"], nostop, 1e-9)
            rep.agree(w, f"sweep_basket vs vectorbt ({eng}) on its slice, no-stop account x combinations", good == n,
                      f"{good}/{n} agree; {detail}")
            stops = [k for k in j["per_combo"] if not k.endswith("/none")]
            g2, n2, _ = compare_combos(ours["per_combo_slice"], j["per_combo"], stops, 1e-9)
            rep.notes.append(f"W7 independent vectorbt ({eng}) with stops: {g2}/{n2} account x combinations agree; "
                             "not compared (vectorbt cannot fill a stop on the entry bar, as in W2).")
    if mode == "portfolio" and vbt:
        rep.notes.append("W7 portfolio: vectorbt is timed, not compared: its from_signals sizes an entry by amount, "
                         "value or percent of cash (target sizes refused, percent refuses reversals), so each entry "
                         "buys a fixed 10 % of the starting cash (ours: 10 % of the current equity, sized at the fill "
                         "price), there is no max_positions, a reversal is one order, and fills in a group follow "
                         "column order (ours: every exit first, then entries in basket order). The shared-cash "
                         "semantics are cross-checked by benchmarks/portfolio_parity.py.")

    # targets, per instrument-bar-combination (vectorbt ran on a slice)
    best = max((_ibc(j) for j in vbt.values() if _ibc(j)), default=None)
    best_eng = max((e for e in vbt if _ibc(vbt[e])), key=lambda e: _ibc(vbt[e]), default="?")
    mine = _ibc(ours) if ours.get("ok") else None
    if vbt:
        rep.target(w, ">= 50x vectorbt (instrument-bar-combinations/s, fastest engine, whole pipeline)",
                   mine / best if (mine and best) else None, ">=", 50.0, detail=f"fastest vectorbt engine: {best_eng}")
    rep.target(w, "sweep within 2x of the floor", _ratio(t_ours, med(floor)), "<=", 2.0)
    if t_total:
        rep.target(w, "sweep within 2x of the floor computing the same portfolio total and daily Sharpe",
                   _ratio(t_ours, t_total), "<=", 2.0)
    rep.target(w, "peak RSS < 2 GB", ours.get("peak_rss_mb") if ours.get("ok") else None, "<=", 2048.0, unit="MB")
    return {"ours_s": t_ours, "floor_s": med(floor), "floor_total_s": t_total, "ours_ibc_per_s": mine, "vbt_best_ibc_per_s": best,
            "binding": b, "vectorbt": {e: med(j) for e, j in vbt.items()}}


def widget_latency(rep: Report, out_dir: Path, smoke: bool) -> None:
    """Hook for ``benchmarks/widget_latency.py --json PATH`` (another developer's script)."""
    if not WIDGET_SCRIPT.exists():
        rep.skipped("widget", "metaflow-nb explorer widget latency",
                    "benchmarks/widget_latency.py not present yet (hook: run.py calls it with --json PATH)")
        return
    print("widget latency", flush=True)
    path = out_dir / "widget_latency.json"
    cmd = [sys.executable, str(WIDGET_SCRIPT), "--json", str(path)]
    if smoke and "--changes" in WIDGET_SCRIPT.read_text():
        cmd += ["--changes", "4", "--warmup", "1"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600,
                              env={**os.environ, "TQDM_DISABLE": "1"})
    except subprocess.TimeoutExpired:
        rep.row("widget", "metaflow-nb explorer widget latency", {"ok": False, "error": "timed out"}, "-", None)
        return
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not path.exists():
        tail = " | ".join((proc.stderr or "").strip().splitlines()[-3:])
        rep.row("widget", "metaflow-nb explorer widget latency",
                {"ok": False, "error": f"exit {proc.returncode}: {tail}"}, "-", None)
        return
    doc = json.loads(path.read_text())
    found: dict[str, float] = {}

    def walk(node: Any, prefix: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            low = prefix.lower()
            if "median" in low or "p50" in low or "p95" in low:
                found[prefix] = float(node)

    walk(doc)
    # prefer the headline latency block ({"latency": {"median_ms", "p95_ms"}}), else any median/p95
    med_keys = sorted((k for k in found if "median" in k.lower() or "p50" in k.lower()),
                      key=lambda k: (not k.startswith("latency"), k))
    p95_keys = sorted((k for k in found if "p95" in k.lower()), key=lambda k: (not k.startswith("latency"), k))
    note = ", ".join(f"{k} = {found[k]:.4g}" for k in (med_keys[:3] + p95_keys[:1])) or "no median/p95 in its JSON"
    rep.sections["widget"] = {"json": {k: v for k, v in doc.items() if k != "samples_ms"}, "wall_s": wall}
    unit = " ms" if med_keys and med_keys[0].endswith("_ms") else ""
    rep.rows.append({"workload": "widget", "tool": "metaflow-nb explorer widget latency",
                     "version": rep.version("metaflow-nb"),
                     "time_s": found[med_keys[0]] / 1e3 if med_keys and unit else None,
                     "time": f"{found[med_keys[0]]:.4g}{unit} median" if med_keys else "-",
                     "throughput": f"p95 {found[p95_keys[0]]:.4g}{unit}" if p95_keys else "-", "peak_rss_mb": None,
                     "ratio_vs_ours": "-", "note": note + " (benchmarks/widget_latency.py)"})
    if med_keys and isinstance(doc.get("target_ms"), (int, float)) and unit:
        rep.target("widget", f"explorer change -> chart median < {doc['target_ms']:g} ms", found[med_keys[0]], "<=",
                   float(doc["target_ms"]), unit="ms")


def parity_summary(rep: Report) -> None:
    p = RESULTS / "parity.json"
    if not p.exists():
        return
    try:
        doc = json.loads(p.read_text())
        cases = doc.get("cases", [])
        ok = sum(1 for c in cases if c.get("ok"))
        age_h = (time.time() - p.stat().st_mtime) / 3600.0
        rep.notes.append(f"peer parity ({doc.get('peer')}, benchmarks/results/parity.json, {age_h:.1f} h old): "
                         f"{ok}/{len(cases)} cases trade-by-trade identical")
        rep.sections["parity"] = {"ok": ok, "cases": len(cases)}
    except (OSError, ValueError) as exc:
        rep.notes.append(f"parity.json unreadable: {exc}")


# ====================================================================== output
def markdown(rep: Report, meta: dict[str, Any]) -> str:
    lines = [f"# metaflow-nb benchmarks ({'smoke' if meta['smoke'] else 'full'} run)", "",
             f"{meta['date']} · {meta['machine']} · {meta['cores']} cores · Python {meta['python']} · "
             f"run.py wall time {meta['total_s']:.0f} s · 1-min load average {meta['load_avg_1m_start']} at the "
             f"start, up to {meta['load_avg_1m_max_in_jobs']} during jobs", "",
             "Ratio = the tool's time / metaflow-nb's time in the same workload (W1: `mf.backtest`; "
             "W2: `mf.optimize`); > 1 means metaflow-nb is faster. Peak RSS: the job process's own.", "",
             "| Workload | Tool | Version | Time | Throughput | Peak RSS | Ratio | Notes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rep.rows:
        rss = f"{r['peak_rss_mb']:.0f} MB" if r.get("peak_rss_mb") else "-"
        note = str(r.get("note", "")).replace("|", "/")
        lines.append(f"| {r['workload']} | {r['tool']} | {r['version']} | {r['time']} | {r['throughput']} | {rss} | "
                     f"{r['ratio_vs_ours']} | {note} |")
    lines += state_table_md(rep)
    lines += ["", "## Targets", "", "| Workload | Target | Measured | Status | Detail |", "|---|---|---|---|---|"]
    for t in rep.targets:
        m = t["measured"]
        unit = t.get("unit", "")
        ms = "-" if m is None else (f"{m:.3g}{unit}" if unit in ("x", "") else f"{m:.3g} {unit}")
        flag = {True: "✅ ", False: "❌ ", None: ""}[t["ok"]]
        lines.append(f"| {t['workload']} | {t['target']} | {ms} | {flag}{t['status']} | {t.get('detail', '')} |")
    lines += ["", "## Agreement between tools", "", "| Workload | Check | OK | Detail |", "|---|---|---|---|"]
    for a in rep.agreement:
        lines.append(f"| {a['workload']} | {a['check']} | {'yes' if a['ok'] else 'NO'} | {a['detail']} |")
    w4 = rep.sections.get("w4")
    if w4 and w4["cells"]:
        lines += ["", "## W4 scaling (metaflow-nb batch sweep; floor in parentheses)", ""]
        bars = sorted({c["bars"] for c in w4["cells"]})
        combos = sorted({c["combos"] for c in w4["cells"]})
        lines.append("| bars \\ combos | " + " | ".join(f"{c:,}" for c in combos) + " |")
        lines.append("|---|" + "---|" * len(combos))
        for b in bars:
            cells = []
            for c in combos:
                hit = next((x for x in w4["cells"] if x["bars"] == b and x["combos"] == c), None)
                if hit is None:
                    cells.append("capped")
                else:
                    fl = f" ({fmt_s(hit['floor_s'])})" if hit.get("floor_s") else ""
                    cells.append(f"{fmt_s(hit['time']['median_s'])}{fl}, {hit['peak_rss_mb_ours']:.0f} MB")
            lines.append(f"| {b:,} | " + " | ".join(cells) + " |")
        ea, eb = w4.get("exponent_all"), w4.get("exponent_ge_1e7")
        fit = "Fitted exponent of time vs bars x combos: " + (f"{ea:.3f} (all cells)" if ea is not None else "-")
        if eb is not None:
            fit += f", {eb:.3f} (cells >= 1e7 bar-steps)"
        rows = w4.get("exponent_in_combos_by_bars") or {}
        if rows:
            fit += "; in combinations at fixed bars: " + ", ".join(f"{b:,} bars {e:.3f}" for b, e in rows.items()
                                                                   if e is not None)
        lines += ["", fit + ". Plot: `scaling.png`."]
        if w4.get("capped"):
            lines += ["", "Capped to fit the time budget: " + "; ".join(w4["capped"]) + "."]
    lines += ["", "## Data and settings", "",
              f"Synthetic bars: {json.dumps(meta['data'])} (benchmarks/workloads/common.py). "
              "W1: all-in whole units, cash 1e6, commission 0.1 %. W2: all-in fractional units, 0.1 %, stop "
              "from the fill price. W4: 10 % of equity per trade, 0.05 %, ten stop levels.", ""]
    if rep.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in rep.notes] + [""]
    if rep.failures:
        lines += ["## Failures", ""] + [f"- {f}" for f in rep.failures] + [""]
    return "\n".join(lines) + "\n"


def _state_cell(row: dict[str, Any], st: str) -> str:
    v = row["values"].get(st)
    if v is None:
        return "-"
    if row["kind"] == "ratio":
        return f"{v:.3g}x"
    f = row["faults"].get(st)
    return fmt_s(v) + (f" ({f:,.0f} pf)" if f is not None else "")


def state_table_md(rep: Report) -> list[str]:
    """The process-state table: every state's median side by side, minor page faults per
    timed call in parentheses, and the worst state over the fresh process."""
    from workloads.state import STATES

    sec = rep.sections.get("states")
    if not sec or not sec["rows"]:
        return []
    names = [st for st in STATES if any(st in r["values"] for r in sec["rows"])]
    lines = ["", "## Process states", "",
             "The same jobs in a fresh process, after a large Numba compile in the process, and with "
             "`MALLOC_MMAP_THRESHOLD_=67108864` (`benchmarks/workloads/state.py`); medians, with the minor page "
             "faults per timed call (pf: memory the allocator mapped afresh; unlike times, not affected by other "
             "load on the machine). Ratio targets are checked in the worst state.", ""]
    prime = sec.get("prime") or {}
    if prime.get("numba"):
        p = prime["numba"]
        lines += [f"Numba state: a generated {p.get('blocks')}-block function compiled in "
                  f"{p.get('compile_s', 0):.1f} s, resident memory {p.get('rss_before_mb', 0):.0f} -> "
                  f"{p.get('rss_after_mb', 0):.0f} MB.", ""]
    lines += ["| Workload | Measure | " + " | ".join(STATES[st] for st in names) + " | worst / fresh |",
              "|---|---|" + "---|" * (len(names) + 1)]
    for r in sec["rows"]:
        wf = r.get("worst_over_fresh")
        worst = "-" if wf is None else f"{wf:.2f} ({r['worst_state']})"
        lines.append(f"| {r['workload']} | {r['measure']} | " + " | ".join(_state_cell(r, st) for st in names)
                     + f" | {worst} |")
    return lines


def console_table(rep: Report) -> str:
    head = ["Workload", "Tool", "Version", "Time", "Throughput", "Peak RSS", "Ratio"]
    body = [[r["workload"], r["tool"], r["version"], r["time"], r["throughput"],
             f"{r['peak_rss_mb']:.0f} MB" if r.get("peak_rss_mb") else "-", r["ratio_vs_ours"]] for r in rep.rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*map(str, b)) for b in body]
    out += state_table_md(rep)
    out += ["", "Targets:"]
    for t in rep.targets:
        m = t["measured"]
        out.append(f"  [{ {True: 'ok', False: 'MISS', None: '--'}[t['ok']] :>4}] {t['workload']} {t['target']}: "
                   f"{'-' if m is None else f'{m:.3g}'} -> {t['status']}" + (f" ({t['detail']})" if t.get("detail")
                                                                             else ""))
    out += ["", "Agreement:"]
    for a in rep.agreement:
        out.append(f"  [{'ok' if a['ok'] else 'FAIL':>4}] {a['workload']} {a['check']}: {a['detail']}")
    for n in rep.notes:
        out.append(f"  note: {n}")
    return "\n".join(out)


# ====================================================================== main
def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, every code path, < 30 s")
    ap.add_argument("--only", default="W1,W2,W3,W4,W5,W6,W7,widget", help="comma-separated workloads")
    ap.add_argument("--no-peers", action="store_true", help="skip vectorbt and backtesting.py")
    ap.add_argument("--out", help="folder for latest.json, latest.md, scaling.png "
                                  "(default benchmarks/results, or benchmarks/results/smoke with --smoke)")
    ap.add_argument("--json", help="JSON path (default <out>/latest.json)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds this script may take (default 780: make bench also runs parity.py, and the "
                         "whole must stay under 15 min); W4's largest cells are capped to fit")
    ap.add_argument("--jobs", type=int, default=None, help="jobs run at once (default 1; 2 with --smoke)")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--state", default="fresh", help=argparse.SUPPRESS)
    ap.add_argument("--compile-blocks", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.job:
        run_job_here(args.job, json.loads(args.kwargs), args.state, args.compile_blocks)
        return 0

    t_start = time.monotonic()
    load_start = _load()
    budget = args.budget if args.budget is not None else (120.0 if args.smoke else 780.0)
    deadline = t_start + budget
    out_dir = Path(args.out) if args.out else (RESULTS / "smoke" if args.smoke else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    only = {w.strip().upper() for w in args.only.split(",") if w.strip()}
    plan = make_plan(args.smoke, peers=not args.no_peers)
    blocks = plan.states.get("compile_blocks")

    from workloads.common import DATA, versions
    rep = Report(versions(), git_rev())
    parallel = args.jobs if args.jobs else (2 if args.smoke else 1)
    print(f"metaflow-nb benchmarks ({'smoke' if args.smoke else 'full'}), {os.cpu_count()} cores, "
          f"budget {budget:.0f} s, results in {out_dir}", flush=True)

    if args.smoke:
        # smoke runs: each workload's jobs share one interpreter, two workloads at a time
        # (the code paths are the point, not the timings)
        pool = ThreadPoolExecutor(max_workers=parallel)
        futures: dict[tuple, Any] = {}
        for state, group in _smoke_groups(plan, only):
            fut = pool.submit(spawn_many, group, 1800.0, state, blocks)
            for k, (spec, kw) in enumerate(group):
                futures[(spec, json.dumps(kw, sort_keys=True), state)] = (fut, k)

        def run(spec: str, kw: dict[str, Any], state: str = "fresh") -> dict[str, Any]:
            hit = futures.get((spec, json.dumps(kw, sort_keys=True), state))
            if hit is None:  # not planned ahead: its own process
                print(f"  (unplanned smoke job {spec} {kw} {state})", flush=True)
                return spawn(spec, kw, state=state, blocks=blocks)
            return hit[0].result()[hit[1]]

        def run_many(jobs: list[tuple[str, dict[str, Any]]], state: str) -> list[dict[str, Any]]:
            return [run(spec, kw, state) for spec, kw in jobs]
    else:
        pool = None
        memo: dict[tuple, dict[str, Any]] = {}

        def run(spec: str, kw: dict[str, Any]) -> dict[str, Any]:
            # a job asked for twice with the same arguments (W6's floor is W2's) runs once
            key = (spec, json.dumps(kw, sort_keys=True))
            if key not in memo:
                memo[key] = spawn(spec, kw)
            return memo[key]

        def run_many(jobs: list[tuple[str, dict[str, Any]]], state: str) -> list[dict[str, Any]]:
            return spawn_many(jobs, state=state, blocks=blocks)

    try:
        if "W1" in only:
            workload_w1(plan, rep, run, run_many)
        if "W2" in only:
            workload_w2(plan, rep, run, run_many)
        if "W6" in only:
            workload_w6(plan, rep, run, run_many)
        if "W3" in only:
            workload_w3(plan, rep, run)
        if "W5" in only:
            workload_w5(plan, rep, run)
        if "W7" in only:
            workload_w7(plan, rep, run)
        if "W4" in only:
            workload_w4(plan, rep, run, deadline - (0 if args.smoke else 20.0), out_dir)
        if "WIDGET" in only:
            widget_latency(rep, out_dir, args.smoke)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    parity_summary(rep)

    total = time.monotonic() - t_start
    rep.target("all", "run.py within its budget (make bench < 15 min with parity.py)", total, "<=", budget, unit="s")
    loads = [j.get("load_avg_1m") for j in rep.jobs.values() if j.get("load_avg_1m") is not None]
    meta = {"smoke": args.smoke, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(),
            "cores": os.cpu_count(), "python": platform.python_version(), "total_s": total, "budget_s": budget,
            "data": DATA, "load_avg_1m_start": load_start, "load_avg_1m_max_in_jobs": max(loads, default=None)}
    if loads and max(loads) > (os.cpu_count() or 1) + 0.5:
        rep.notes.append(f"the 1-minute load average reached {max(loads):.1f} on {os.cpu_count()} cores during the "
                         f"jobs (it was {load_start} at the start): other processes competed for the CPU, so timings "
                         f"may be pessimistic; see load_avg_1m per job in latest.json")
    doc = {"meta": meta, "versions": rep.versions, "git": rep.rev, "rows": rep.rows, "targets": rep.targets,
           "agreement": rep.agreement, "notes": rep.notes, "failures": rep.failures,
           "w3": rep.sections.get("w3"), "w4": rep.sections.get("w4"), "w7": rep.sections.get("w7"),
           "states": rep.sections.get("states"),
           "jobs": rep.jobs}
    json_path = Path(args.json) if args.json else out_dir / "latest.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=2, default=str))
    (out_dir / "latest.md").write_text(markdown(rep, meta))
    print("\n" + console_table(rep))
    print(f"\nrun.py took {total:.0f} s; wrote {json_path}, {out_dir / 'latest.md'}"
          + (f", {out_dir / 'scaling.png'}" if (out_dir / "scaling.png").exists() else ""))
    return 1 if rep.failures else 0


def _smoke_groups(plan: Plan, only: set[str]) -> list[tuple[str, list[tuple[str, dict]]]]:
    """``(state, jobs)``: the jobs a smoke run asks for, grouped by workload (fresh state) and
    by process state (W1, W2 and W6 together), so each group runs in one process."""
    from workloads.common import vbt_engines

    groups: list[list[tuple[str, dict]]] = []
    peers = plan.peers
    vbt_eng = vbt_engines()[-1:] if (peers and have("vectorbt")) else []
    if "W1" in only:
        b, r = plan.w1["bars"], plan.w1["repeat"]
        g = [("w1:ours_api", {"bars": b, "repeat": r["ours_api"]}),
             ("w1:ours_kernel", {"bars": b, "repeat": r["ours_kernel"]}),
             ("w1:floor", {"bars": b, "repeat": r["floor"]})]
        g += [("w1:vectorbt", {"bars": b, "repeat": r["vectorbt"], "engine": e}) for e in vbt_eng]
        if peers and have("backtesting"):
            g.append(("w1:backtesting", {"bars": b, "repeat": r["backtesting"]}))
        groups.append(g)
    if "W2" in only:
        b, r = plan.w2["bars"], plan.w2["repeat"]
        groups.append([("w2:ours", {"bars": b, "repeat": r["ours"]}), ("w2:floor", {"bars": b, "repeat": r["floor"]})]
                      + [("w2:vectorbt", {"bars": b, "repeat": r["vectorbt"], "engine": e}) for e in vbt_eng])
    if "W3" in only:
        from workloads import w3
        groups.append([("w3:single", {"repeat": plan.w3["single_repeat"]}),
                       ("w3:fvg16", {"repeat": plan.w3["fvg16_repeat"]}),
                       ("w3:grid1000", {"repeat": plan.w3["grid_repeat"], "grid": w3.smoke_grid()})])
    if "W5" in only:
        groups.append([("w5:import_time", {"repeat": plan.w5["import_repeat"]}),
                       ("w5:cli", {"repeat": plan.w5["cli_repeat"]})])
    if "W4" in only:
        groups.append([("w4:cell", {"bars": b, "combos": c, "floor": b * c <= plan.w4["floor_max_bar_steps"]})
                       for b, c in sorted(plan.w4["cells"], key=lambda bc: bc[0] * bc[1])])
    planned = {(spec, json.dumps(kw, sort_keys=True)) for g in groups for spec, kw in g}
    if "W6" in only:
        b, r = plan.w6["bars"], plan.w6["repeat"]
        g = [("w6:whole_vs_loop", {"bars": b, "repeat": r["whole"], "loop_repeat": r["loop"]}),
             ("w2:ours", {"bars": b, "repeat": r["ours"], "freq": "D"}),
             ("w2:floor", {"bars": b, "repeat": r["floor"]})]
        g = [j for j in g if (j[0], json.dumps(j[1], sort_keys=True)) not in planned]
        w2_group = next((grp for grp in groups if grp[0][0].startswith("w2:")), None)
        if w2_group is not None:
            w2_group.extend(g)  # one interpreter start fewer
        else:
            groups.append(g)
    if "W7" in only:
        groups += [[(spec, kw) for spec, kw in w7_jobs(plan, vbt_eng)]]
    order = {"w1": 0, "w2": 1, "w3": 2, "w4": 3, "w5": 4, "w6": 5, "w7": 6}
    out = [("fresh", g) for g in sorted(groups, key=lambda g: order.get(g[0][0].split(":")[0], 9))]
    # one process per extra state, with the state jobs of W1, W2 and W6; these are among
    # the longest groups (a Numba compile, three workloads), so they start early: after
    # W1's and after W2's group, and the two workers finish together
    for k, st in enumerate(plan.states.get("names", [])):
        g = [(spec, kw) for w in ("W1", "W2", "W6") if w in only for _, spec, kw in state_jobs(plan, w)]
        g = [j for i, j in enumerate(g) if j not in g[:i]]  # W6's floor is W2's
        if g:
            out.insert(min(2 * k + 1, len(out)), (st, g))
    return out


if __name__ == "__main__":
    sys.exit(main())
