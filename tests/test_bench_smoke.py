"""Smoke run of the benchmarks: every workload at tiny sizes, so ``make test`` exercises
``benchmarks/run.py``'s code paths (job processes, agreement checks, targets, the Markdown
table, the scaling plot). Peers (vectorbt, backtesting.py) run when installed and are
reported as skipped otherwise."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
#: a hang guard, not a speed target (the smoke run takes ~30 s on a quiet 2-core machine;
#: timings belong to `make bench`)
SMOKE_LIMIT_S = 300.0


def _bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        import floor
        from workloads import common
    finally:
        sys.path.remove(str(BENCH))
    return floor, common


@pytest.mark.slow
def test_smoke_run_covers_every_workload(tmp_path):
    t0 = time.perf_counter()
    # on a loaded machine the default budget (120 s) capped W4 to one cell, and a one-cell fit
    # has no exponent; this one leaves W4 room and stays well inside the hang guard
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--smoke", "--out", str(tmp_path),
                           "--budget", "180"],
                          capture_output=True, text=True, cwd=ROOT, timeout=SMOKE_LIMIT_S + 120)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert elapsed < SMOKE_LIMIT_S, f"smoke run took {elapsed:.1f} s"

    doc = json.loads((tmp_path / "latest.json").read_text())
    assert doc["meta"]["smoke"] is True
    assert not doc["failures"]
    workloads = {r["workload"] for r in doc["rows"]}
    assert {"W1", "W2", "W3", "W4", "W5", "W6", "W7 independent", "W7 portfolio", "widget"} <= workloads
    tools = {(r["workload"], r["tool"]) for r in doc["rows"]}
    assert ("W1", "metaflow-nb mf.backtest") in tools and ("W1", "floor") in tools
    assert ("W2", "metaflow-nb mf.optimize") in tools and ("W2", "floor (prange batch)") in tools
    for tool in ("mf.backtest (daily)", "compiled loop alone (daily)", "mf.optimize (daily)"):
        assert ("W6", f"metaflow-nb {tool}") in tools
    # every job imported the package Python finds (PYTHONPATH or the installed copy)
    import metaflow_nb
    pkg = str(Path(metaflow_nb.__file__).resolve().parent)
    assert {j.get("package") for j in doc["jobs"].values()} <= {pkg, None}

    peers = {"vectorbt": importlib.util.find_spec("vectorbt") is not None,
             "backtesting.py": importlib.util.find_spec("backtesting") is not None}
    w1_tools = [r for r in doc["rows"] if r["workload"] == "W1"]
    for peer, installed in peers.items():
        rows = [r for r in w1_tools if r["tool"].startswith(peer)]
        assert rows, peer
        if installed:
            assert all(r["time_s"] for r in rows), rows
        else:
            assert all(r["note"].startswith("skipped") for r in rows), rows

    # every tool that ran agrees with metaflow-nb
    checks = {a["check"]: a for a in doc["agreement"]}
    assert all(a["ok"] for a in doc["agreement"]), doc["agreement"]
    assert "mf.backtest vs floor" in checks and "mf.backtest vs kernel" in checks
    assert "mf.optimize vs floor, all valid combinations" in checks
    if peers["backtesting.py"]:
        assert "mf.backtest vs backtesting.py" in checks
    assert any(c.startswith("sweep vs floor") for c in checks)
    assert "mf.backtest vs its compiled loop" in checks
    assert "mf.optimize on daily bars vs W2 on minute bars (same prices)" in checks
    # W7: the basket sweep equals the floors in every account and combination, both modes
    assert checks["sweep_basket vs floor, every account x combination (trades, final equity)"]["detail"].startswith(
        "1890/1890")
    assert checks["sweep_basket vs floor, every combination's shared account (trades, final equity)"][
        "detail"].startswith("270/270")
    if peers["vectorbt"]:
        assert any(c.startswith("sweep_basket vs vectorbt") for c in checks)

    # W1, W2 and W6 ran in every process state, side by side, with page faults per call
    rows = doc["states"]["rows"]
    assert {r["workload"] for r in rows} == {"W1", "W2", "W6"}
    for r in rows:
        assert set(r["values"]) == {"fresh", "numba", "mmap"} and all(v for v in r["values"].values()), r
        if r["kind"] == "time":
            assert all(f is not None for f in r["faults"].values()), r
    assert doc["states"]["prime"]["numba"]["compile_s"] > 0
    assert doc["states"]["prime"]["mmap"]["env"] == {"MALLOC_MMAP_THRESHOLD_": "67108864"}

    # targets are evaluated (holding or not) and say by how much they miss
    targets = {t["target"]: t for t in doc["targets"]}
    assert any("kernel within 2x of the floor" in t for t in targets)
    worst = [t for t in targets if t.endswith("(worst process state)")]
    assert len(worst) == 6 and all(targets[t]["measured"] for t in worst), worst
    # W2 and W6 are also held against the floor that computes the daily Sharpe they rank by
    assert sum("floor computing the same daily Sharpe" in t for t in worst) == 2, worst
    # ... and, both ratios, timed in turns in one process (noise moves both sides alike)
    turns = [t for t in targets if t.endswith("timed in turns in one process")]
    assert len(turns) == 4 and all(targets[t]["measured"] > 0 for t in turns), turns
    assert any("CLI backtest wall time" in t for t in targets)
    for t in doc["targets"]:
        assert t["status"] == "holds" or t["status"].startswith(("missed by", "below", "above", "not measured"))

    # the W4 fit, the plot and the Markdown table
    assert doc["w4"]["exponent_all"] is not None
    assert (tmp_path / "scaling.png").stat().st_size > 1000
    md = (tmp_path / "latest.md").read_text()
    assert "| Workload | Tool | Version | Time | Throughput | Peak RSS | Ratio | Notes |" in md
    assert "## Targets" in md and "## Agreement between tools" in md and "## Process states" in md
    # the console gets the table at the end
    assert "Targets:" in proc.stdout and "Workload" in proc.stdout


def test_floor_matches_the_engine_exactly():
    """The floor kernel implements sma_cross.yaml's semantics: same trades, same final equity."""
    import metaflow_nb as mf

    floor, common = _bench_modules()
    df = common.loaded(5_000)
    o, h, lo, c = common.arrays(df)
    for stop, whole, fraction in ((None, True, None), (2.0, False, None), (1.0, False, 0.3)):
        bp = common.sma_blueprint(10, 50, stop, whole_units=whole, stops=stop is not None, fraction=fraction)
        res = mf.backtest(bp, common.operation(1e6, 0.001), data=df)
        n, eq = floor.sma_cross_floor(o, h, lo, c, 10, 50, floor.stop_fraction(stop), 1e6, 0.001, whole,
                                      1.0 if fraction is None else fraction)
        assert n == res.metrics["total_trades"] > 20
        assert eq == res.metrics["final_equity"]
    nb, eb = floor.sma_cross_floor_batch(o, h, lo, c, np.array([5, 10]), np.array([20, 50]), np.array([0.0, 0.02]),
                                         1e6, 0.001, False)
    for k, (f, s, st) in enumerate(((5, 20, 0.0), (10, 50, 0.02))):
        assert (nb[k], eb[k]) == floor.sma_cross_floor(o, h, lo, c, f, s, st, 1e6, 0.001, False)


def test_basket_floors_match_the_engine_exactly(tmp_path):
    """W7's floors implement mode independent and mode portfolio (shared cash, max_positions)
    on a basket whose calendars differ: same closed trades, same final equity per account
    and per shared account, with the cash and the position cap binding."""
    from metaflow_nb.services.portfolio import run_portfolio

    floor, _ = _bench_modules()
    sys.path.insert(0, str(BENCH))
    try:
        from workloads import w7
    finally:
        sys.path.remove(str(BENCH))
    frames = w7.basket(9_000, 7)  # one instrument trades weekdays only, one has outages
    assert len({len(df) for df in frames.values()}) == 1 and len(w7.union(frames)) > 9_000
    p = w7.packed(frames)
    args = (p["open"], p["high"], p["low"], p["close"], p["start"])
    for f, s, stop in ((5, 20, 2.0),):
        st = floor.stop_fraction(stop)
        res = run_portfolio(w7.strategy("independent"), w7.write_operation(tmp_path / "i", frames, "independent"),
                            sma_1__fast=f, sma_1__slow=s, stops_1__stop_loss_pct=stop)
        n, eq = floor.sma_cross_basket_floor(*args, np.array([f]), np.array([s]), np.array([st]), w7.CASH,
                                             w7.COMMISSION, False)
        assert [(r.metrics["total_trades"], r.metrics["final_equity"]) for r in res.results.values()] == \
            list(zip(n[:, 0].tolist(), eq[:, 0].tolist()))
        # the floor that also adds up the portfolio: the same accounts, the same Sharpe ratio
        from metaflow_nb.assembly.basket import union_day_calendar
        cal = union_day_calendar(p["index"], None)
        n2, eq2, sharpe = floor.sma_cross_basket_floor_total(*args, p["own_at"], cal.day_end, np.array([f]),
                                                             np.array([s]), np.array([st]), w7.CASH, w7.COMMISSION,
                                                             False, cal.periods_per_year, 2)
        assert np.array_equal(n2, n) and np.array_equal(eq2, eq)
        assert sharpe[0] == res.metrics["sharpe_ratio"]
        res = run_portfolio(w7.strategy("portfolio", fraction=0.4),
                            w7.write_operation(tmp_path / "p", frames, "portfolio", max_positions=3),
                            sma_1__fast=f, sma_1__slow=s, stops_1__stop_loss_pct=stop)
        trades, final, capped, skipped = floor.sma_cross_portfolio_floor(*args, p["has"], f, s, st, w7.CASH,
                                                                         w7.COMMISSION, 0.4, 3)
        assert (trades, final) == (res.metrics["total_trades"], res.metrics["final_equity"])
        reasons = res.journal["reason"].value_counts()
        assert skipped == reasons["MAX_POSITIONS"] > 0 and capped > 0


def test_synthetic_data_is_seeded_and_sane():
    _, common = _bench_modules()
    a = common.synthetic_ohlcv(20_000)
    b = common.synthetic_ohlcv(20_000)
    assert a.equals(b)
    assert (a["high"] >= a[["open", "close"]].max(axis=1)).all()
    assert (a["low"] <= a[["open", "close"]].min(axis=1)).all()
    assert (a["open"].to_numpy()[1:] == a["close"].to_numpy()[:-1]).all()
    assert 10 < a["close"].min() and a["close"].max() < 1000


def test_daily_bars_are_one_per_calendar_day_with_the_minute_prices():
    _, common = _bench_modules()
    d = common.synthetic_ohlcv(1_000, freq="D")
    m = common.synthetic_ohlcv(1_000)
    assert (d.index[1:] - d.index[:-1] == np.timedelta64(1, "D")).all()
    assert d.index[0].day_of_week != d.index[5].day_of_week  # weekends included
    assert np.array_equal(d.to_numpy(), m.to_numpy())


def test_job_processes_report_their_own_peak_rss():
    """ru_maxrss survives fork/exec on Linux; the job's RSS must not include its parent's."""
    sys.path.insert(0, str(BENCH))
    try:
        import run as bench_run
    finally:
        sys.path.remove(str(BENCH))
    ballast = np.ones(400 * 1024 * 1024 // 8)  # 400 MB in this (parent) process
    out = bench_run.spawn("w5:import_time", {"repeat": 1})
    assert out["ok"], out
    assert out["peak_rss_mb"] < 350, out["peak_rss_mb"]
    del ballast
