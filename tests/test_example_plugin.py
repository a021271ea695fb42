"""The example plugin package, ``examples/metaflow-nb-rsi``, as a user meets it.

``pip install -e examples/metaflow-nb-rsi`` (``make install-dev`` does it; the fixture
below does it once if it has not been done), then the example's configs run through
every front door: ``mf.backtest`` and ``metaflow-nb backtest`` in a fresh process,
``optimize`` on loky and on dask worker processes, ``variants`` and ``report``. Nothing
declares a module: the workers are found by the entry point alone, in this process and
in every worker process. The reason code of the example's threat, ``AGAINST_TREND``,
is named in the journal, the variant comparison's causal analysis and the report index.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import site
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from importlib.metadata import distribution, entry_points
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.engine.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "metaflow-nb-rsi"
CONFIGS = EXAMPLE / "configs"
STRATEGY = CONFIGS / "rsi_reversion.yaml"
OPERATION = CONFIGS / "sp500_daily.yaml"
OPTIMIZATION = CONFIGS / "optimize_rsi.yaml"
VARIANTS = CONFIGS / "trend_guard_variants.yaml"
METRICS = list(METRIC_NAMES)


def _installed() -> bool:
    return any(ep.value == "mf_rsi" for ep in entry_points(group="metaflow_nb.workers"))


@pytest.fixture(scope="module", autouse=True)
def example_installed():
    """What a user does first: ``pip install -e examples/metaflow-nb-rsi``.

    ``make test`` has installed it already (``.venv/.installed-dev``); otherwise it is
    installed here once, under a lock (two xdist workers may get here together), and the
    new ``.pth`` is read so this process sees it too.
    """
    if not _installed():
        import fcntl
        with open(Path(tempfile.gettempdir()) / "metaflow-nb-rsi-install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            importlib.invalidate_caches()
            if not _installed():
                done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-e",
                                       str(EXAMPLE)], capture_output=True, text=True)
                if done.returncode != 0:
                    pytest.fail(f"pip install -e {EXAMPLE} failed (run `make install-dev`):\n{done.stderr[-2000:]}")
        importlib.invalidate_caches()
        site.addsitedir(sysconfig.get_paths()["purelib"])  # processes the editable install's .pth
    assert _installed()


@pytest.fixture(scope="module")
def batch_opt():
    """The grid on the default path (the batch kernel, in this process): the reference."""
    res = mf.optimize(str(OPTIMIZATION), progress=False)
    assert res.engine == "batch" and res.successful_runs == res.total_runs == 36
    return res


def _same_results(a, b) -> None:
    pd.testing.assert_frame_equal(a.all_results[METRICS], b.all_results[METRICS], check_exact=True)
    assert a.all_results["run_id"].tolist() == b.all_results["run_id"].tolist()
    assert a.best_params == b.best_params


def _json_main(argv: list[str]) -> dict:
    """``metaflow-nb ARGV --json`` in this process: exit 0 and one JSON line."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(argv)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    assert rc == 0 and len(lines) == 1, buf.getvalue()[-2000:]
    return json.loads(lines[0])


# ------------------------------------------------------------------ installed and found

def test_installed_package_provides_the_entry_point():
    dist = distribution("metaflow-nb-rsi")
    assert [(ep.name, ep.value) for ep in dist.entry_points if ep.group == "metaflow_nb.workers"] == [("rsi", "mf_rsi")]
    assert "rsi_reversion" in mf.known_plugins("opportunity")
    assert "trend_guard" in mf.known_plugins("threat")
    assert mf.suggested_space("rsi_reversion")["oversold"] == {"start": 20, "end": 40, "step": 5}


def test_backtest_in_python_names_the_reason_in_the_journal():
    res = mf.backtest(str(STRATEGY), str(OPERATION))
    assert res.specs.plugins == ()  # found by the entry point: nothing declared
    rej = res.journal[res.journal["event"] == "OPPORTUNITY_REJECTED"]
    assert len(rej) > 0 and set(rej["reason"]) == {"AGAINST_TREND"} and set(rej["threat_id"]) == {"trend_1"}
    assert res.metrics["opportunities_rejected"] == len(rej)
    assert res.metrics["total_trades"] > 0


def test_backtest_command_in_a_fresh_process(tmp_path):
    """The README's commands, from the example folder: the new process knows the workers
    only through the installed entry point."""
    cmd = [sys.executable, "-m", "metaflow_nb.cli", "backtest", "--strategy", "configs/rsi_reversion.yaml",
           "--operation", "configs/sp500_daily.yaml", "--json", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    here = mf.backtest(str(STRATEGY), str(OPERATION))
    assert doc["run_id"] == here.run_id and doc["trades"] == len(here.trades)
    assert doc["metrics"]["final_equity"] == here.metrics["final_equity"]
    journal = pd.read_csv(doc["outputs"]["journal"])
    assert set(journal.loc[journal["event"] == "OPPORTUNITY_REJECTED", "reason"]) == {"AGAINST_TREND"}


def test_check_causality_command_passes_on_the_example():
    assert main(["check-causality", str(STRATEGY), "--operation", str(OPERATION), "--cuts", "2"]) == 0


# ------------------------------------------------------------------ sweeps in worker processes

def test_optimize_on_loky_workers_matches_the_batch_path(tmp_path, batch_opt):
    # engine general: one run per combination in loky worker processes, which import the
    # example through its entry point
    doc = _json_main(["optimize", str(OPTIMIZATION), "--backend", "loky", "--engine", "general", "--workers", "2",
                      "--out", str(tmp_path), "--json"])
    assert doc["engine"] == "general" and doc["successful_runs"] == 36 and doc["failed_runs"] == 0
    assert doc["best_params"] == batch_opt.best_params
    got = pd.read_csv(tmp_path / "all_results.csv")
    assert got["run_id"].tolist() == batch_opt.all_results["run_id"].tolist()
    pd.testing.assert_frame_equal(got[METRICS], batch_opt.all_results[METRICS], check_exact=False, rtol=1e-15)


@pytest.mark.slow
def test_optimize_on_dask_workers_matches_the_batch_path(batch_opt):
    pytest.importorskip("distributed")
    from metaflow_nb.services.optimization import OptimizationService
    # the service starts a local cluster of worker processes
    res = OptimizationService().run(str(OPTIMIZATION), backend="dask", max_workers=2, progress=False)
    assert res.engine == "general" and res.successful_runs == 36
    _same_results(res, batch_opt)


# ------------------------------------------------------------------ variants and report

def test_variants_causal_analysis_names_the_reason():
    # in this process: worker processes are the optimize tests' part
    doc = _json_main(["variants", str(VARIANTS), "--backend", "sequential", "--json"])
    causal = doc["causal_analysis"]
    assert causal["most_defensive"] == "with_trend_guard"
    rejected = {r["variant"]: r["rejected"] for r in causal["rejected"]}
    assert rejected["with_trend_guard"] > 0 and rejected["without_trend_guard"] == 0
    n = rejected["with_trend_guard"]   # the only threat: it decides every rejection it is active in
    assert causal["reasons"]["with_trend_guard"] == {"AGAINST_TREND": {"count": n, "share_pct": 100.0, "active": n}}
    assert causal["reasons"]["without_trend_guard"] == {}


@pytest.mark.slow
def test_report_index_names_the_reason(tmp_path):
    from metaflow_nb.reporting import report
    rep = report(VARIANTS, out=tmp_path, workers=2)
    assert rep.failed == []
    index = rep.index.read_text()
    assert "Top rejection reasons: with_trend_guard" in index
    assert "<td class='l'>AGAINST_TREND</td>" in index
    assert "AGAINST_TREND" in (rep.folder / "with_trend_guard.html").read_text()
    assert [r["status"] for r in rep.manifest["content"]["runs"]] == ["ok", "ok"]


# ------------------------------------------------------------------ the README's workers

def _readme_workers() -> str:
    """The Python blocks of the README's "Writing a worker", in order, as one module text."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Writing a worker"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 3, "the section shows an opportunity and a threat worker and an exit planner"
    return "\n\n".join(blocks)


def test_readme_workers_run_and_pass_the_causality_check(tmp_path, monkeypatch):
    module = f"readme_workers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(_readme_workers())
    monkeypatch.syspath_prepend(str(tmp_path))
    strategy = {"name": "readme_breakout", "plugins": [module], "workforce": {
        "opportunity_workers": [{"instance_id": "breakout_1", "plugin": "channel_breakout",
                                 "params": {"lookback": 20}}],
        "threat_workers": [{"instance_id": "wide_1", "plugin": "wide_bar_filter", "params": {"atr_multiple": 2.0}}],
        "planning_workers": {"exit_planning": [{"instance_id": "stops_1", "plugin": "percent_stops",
                                                "params": {"stop_loss_pct": 2.0, "take_profit_pct": 4.0}}]}}}
    res = mf.backtest(strategy, data="sp500_daily")
    assert res.metrics["total_trades"] > 0 and list(res.rejections().index) == ["WIDE_BAR"]
    # hand bars: a 2-bar channel on closes 10, 11, 12, 11, 13, 9
    from metaflow_nb.workers.base import FeatureContext, get_plugin
    c = [10.0, 11.0, 12.0, 11.0, 13.0, 9.0]
    bars = mf.load_data(pd.DataFrame({"open": c, "high": c, "low": c, "close": c},
                                     index=pd.date_range("2024-01-01", periods=6, name="time")))
    cls = get_plugin("channel_breakout")
    assert cls("b", cls.Params(lookback=2)).detect(FeatureContext(bars)).direction.tolist() == [0, 0, 1, 0, 1, -1]
    # its score: the channel's width over the close, at the breakouts of bars 2, 4 and 5
    from metaflow_nb.workers.contracts import Opportunities
    at = np.array([2, 4, 5])
    setups = Opportunities(at, np.array([1, 1, -1]), np.zeros(3, np.int64), *(np.full(3, np.nan),) * 2,
                           np.array(c)[at])
    assert cls("b", cls.Params(lookback=2)).score(FeatureContext(bars), setups).tolist() == [1 / 12, 1 / 13, 2 / 9]
    check = mf.check_causality(strategy, data="sp500_daily", cuts=3)
    assert check.ok, repr(check)
    assert ("breakout_1", "score") in check.compared
    # the exit planner: a 2-bar channel of the closes before each bar (10, 11, 12, 11, 13, 9)
    cls = get_plugin("channel_exit")
    plan = cls("x", cls.Params(lookback=2)).plan(FeatureContext(bars), None, None)
    assert plan.exit_long.tolist() == [0, 0, 0, 0, 0, 1] and plan.exit_short.tolist() == [0, 0, 1, 0, 1, 0]
    exiting = {**strategy, "workforce": {**strategy["workforce"], "planning_workers": {"exit_planning": [
        *strategy["workforce"]["planning_workers"]["exit_planning"],
        {"instance_id": "channel_1", "plugin": "channel_exit", "params": {"lookback": 5}}]}}}
    res = mf.backtest(exiting, data="sp500_daily")
    assert {"CHANNEL_EXIT", "STOP_LOSS"} <= set(res.trades["exit_reason"])
    assert "EXIT_CONDITION" not in set(res.trades["exit_reason"])
    check = mf.check_causality(exiting, data="sp500_daily", cuts=3)
    assert check.ok and ("channel_1", "exit_long") in check.compared, repr(check)
    # and a shared account ranks the basket's simultaneous breakouts by it
    ranked = mf.backtest(strategy, {"mode": "portfolio", "max_positions": 2, "rank": "score",
                                    "universe": {"path": "us_stocks"}, "data": {"start": "2012-01-01"}})
    assert ranked.metrics["total_trades"] > 0


# ------------------------------------------------------------------ the example's own tests

@pytest.mark.slow
def test_the_example_packages_own_tests_pass():
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE)],
                          cwd=EXAMPLE, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
