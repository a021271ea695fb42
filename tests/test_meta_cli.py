"""The meta workflows from the command line: ``metaflow-nb optimize|variants|walk-forward``.

End to end on the bundled data (the source design's configs), bad configs (exit code 2,
one line on stderr, nothing run), and a sweep killed with SIGKILL halfway then resumed.
Most checks call ``metaflow_nb.cli.main`` in-process (the same code the console script
runs); the acceptance-level ones run the installed ``metaflow-nb`` in a subprocess.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import fault_plugins as fp
from metaflow_nb.cli import main
from metaflow_nb.engine.metrics import METRIC_NAMES

ROOT = fp.ROOT
FVG_OPT = "config/optimizations/optimize_fvg_params.yaml"
EXIT_VARIANTS = "config/variants/exit_strategy_test.yaml"
FVG_WF = "config/walk_forward/fvg_walk_forward.yaml"
REASONS = ("MAX_DRAWDOWN", "VOLATILITY_SPIKE", "MARKET_RISK")


def _exe() -> str:
    exe = Path(sys.executable).parent / "metaflow-nb"
    assert exe.exists(), f"console script not installed next to {sys.executable}"
    return str(exe)


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([_exe(), *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if c.startswith("duration")]).reset_index(drop=True)


# ------------------------------------------------------------------ end to end (source design)

@pytest.fixture(scope="module")
def fvg_opt_inprocess():
    import metaflow_nb as mf
    return mf.optimize(FVG_OPT, backend="sequential", progress=False)


@pytest.fixture(scope="module")
def exit_variants_inprocess():
    import metaflow_nb as mf
    return mf.compare_variants(EXIT_VARIANTS, backend="sequential", progress=False)


def test_cli_optimize_fvg_params_end_to_end(tmp_path, fvg_opt_inprocess, monkeypatch, capsys):
    out = tmp_path / "opt"
    r = cli("optimize", FVG_OPT, "--workers", "2", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, "--json prints exactly one JSON object"
    doc = json.loads(lines[0])
    assert doc["total_runs"] == 16 and doc["successful_runs"] == 16 and doc["failed_runs"] == 0
    assert doc["primary_metric"] == "sharpe_ratio"
    # loky in the CLI agrees with the sequential notebook call
    assert doc["best_params"] == fvg_opt_inprocess.best_params
    assert doc["best_metrics"]["sharpe_ratio"] == fvg_opt_inprocess.best_metrics["sharpe_ratio"]
    frame = pd.read_csv(out / "all_results.csv")
    assert len(frame) == 16
    assert sorted(frame["fvg_det_1.min_gap_size"].unique()) == list(range(3, 11))
    assert frame.groupby("fvg_det_1.min_gap_size").size().eq(2).all()
    assert set(frame["fvg_det_1.require_structure_break"]) == {True, False}
    assert (frame["status"] == "ok").all()
    assert len(fp.store_records(out)) == 16
    # constraints of the source design: min_trades 10, max_drawdown 15 %
    elig = (frame["total_trades"] >= 10) & (frame["max_drawdown_pct"] <= 15.0)
    assert frame["eligible"].tolist() == elig.tolist()
    best = frame[elig]["sharpe_ratio"].idxmax()
    assert frame.loc[best, "run_id"] == doc["best_run_id"]

    # resuming a finished sweep runs nothing and gives the same table
    import metaflow_nb.services.parallel as par

    def _no_run(*a, **k):
        raise AssertionError("a run executed although every record is in the store")

    monkeypatch.setattr(par, "execute_one", _no_run)
    before = pd.read_csv(out / "all_results.csv")
    rc = main(["optimize", FVG_OPT, "--backend", "sequential", "--out", str(out), "--resume", "--json"])
    assert rc == 0
    again = json.loads(capsys.readouterr().out)
    assert again["best_params"] == doc["best_params"] and again["total_runs"] == 16
    pd.testing.assert_frame_equal(_comparable(pd.read_csv(out / "all_results.csv")), _comparable(before))


def _reason_counts(result) -> dict[str, int]:
    return {str(k): int(v) for k, v in result.rejections()["count"].items()}


def test_cli_variants_text_shows_stars_and_causal_analysis(exit_variants_inprocess, tmp_path):
    cmp_ = exit_variants_inprocess
    out = tmp_path / "var"
    r = cli("variants", EXIT_VARIANTS, "--backend", "sequential", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "\u2605" in text
    for label in ("Sharpe ratio", "Total return", "Max drawdown", "Win rate", "Total trades"):
        assert label in text
    assert "liquidity_targets" in text and "atr_based" in text
    assert "Causal analysis" in text and "Opportunities rejected" in text
    defensive = cmp_.most_defensive()
    assert f"Top rejection reasons ({defensive})" in text
    counts = _reason_counts(cmp_.results[defensive])
    assert set(REASONS) <= set(counts) and all(counts[k] > 0 for k in REASONS)
    active = cmp_.results[defensive].rejections()["active"]
    for reason in REASONS:
        assert f"* {reason}: {counts[reason]} (" in text
        # the rejections it was active in, deciding or not
        assert re.search(rf"\* {reason}: {counts[reason]} \([0-9.]+ %\), active in {int(active[reason])}\b", text)
    for v in cmp_.variants:
        m = v.result.metrics
        assert f"{v.name}: {m['opportunities_rejected']} of {m['opportunities_detected']}" in text
    # the same box is written to the output folder, next to the JSON
    assert (out / "comparison.txt").read_text().strip() == text.strip()
    assert json.loads((out / "comparison.json").read_text())["name"] == cmp_.name


def test_cli_variants_json_has_real_reason_counts(exit_variants_inprocess):
    cmp_ = exit_variants_inprocess
    r = cli("variants", EXIT_VARIANTS, "--backend", "threads", "--workers", "2", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [v["name"] for v in doc["variants"]] == ["liquidity_targets", "atr_based"]
    assert all(v["status"] == "ok" for v in doc["variants"])
    ca = doc["causal_analysis"]
    assert ca["most_defensive"] == cmp_.most_defensive()
    for v in cmp_.variants:
        res = v.result
        reasons = ca["reasons"][v.name]
        assert {k: d["count"] for k, d in reasons.items()} == _reason_counts(res)
        assert set(REASONS) <= set(reasons)
        # counts are read from the journal: they add up to the rejected opportunities
        assert sum(d["count"] for d in reasons.values()) == res.metrics["opportunities_rejected"] > 0
        journal = res.journal
        rej = journal[journal["event"] == "OPPORTUNITY_REJECTED"]
        assert len(rej) == res.metrics["opportunities_rejected"]
        row = next(x for x in ca["rejected"] if x["variant"] == v.name)
        assert row["rejected"] == res.metrics["opportunities_rejected"]
        assert row["detected"] == res.metrics["opportunities_detected"]
    assert doc["winners"] == cmp_.winners()


def test_cli_walk_forward_fvg_end_to_end(tmp_path):
    from metaflow_nb.config.meta import load_meta_config
    from metaflow_nb.data import load_data
    from metaflow_nb.services.walk_forward import make_windows

    out = tmp_path / "wf"
    r = cli("walk-forward", FVG_WF, "--backend", "sequential", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    _, model, _, _ = load_meta_config(FVG_WF)
    expected = make_windows(len(load_data("eurusd_15m")), model.windows)
    assert doc["n_windows"] == len(expected) > 0
    assert [w["window"] for w in doc["windows"]] == list(range(len(expected)))
    for w in doc["windows"]:
        if w["status"] == "ok":
            assert w["fvg_det_1.min_gap_size"] in (3, 6, 9)
            assert isinstance(w["fvg_det_1.require_structure_break"], bool)
    assert (out / "windows.csv").is_file() and (out / "oos_equity.csv").is_file()
    assert json.loads((out / "walk_forward.json").read_text())["n_windows"] == doc["n_windows"]
    # the stitched record's test and the costs, as the text output and the pages give them
    st = doc["statistics"]
    assert st["kind"] == "walk_forward" and st["windows"] == doc["n_windows"] and 0.0 <= st["dsr"] <= 1.0
    assert "not computed for a walk-forward" in st["pbo_note"]
    assert doc["costs"].startswith("costs: commission ")


# ------------------------------------------------------------------ bad configs

OP = str(fp.SP500_OPERATION)
ST = str(ROOT / "config" / "runs" / "sma_cross.yaml")


def _opt(space=None, target=None, **body):
    space = space if space is not None else fp.sma_space([5, 10])
    b = {"parameter_space": space, **body}
    if target is not None:
        b["optimization_target"] = target
    return "optimize", fp.meta_doc("optimization_config", ST, **b)


def _var(variants, **body):
    return "variants", fp.meta_doc("variant_config", ST, variants=variants, **body)


def _wf(windows=None, space=None):
    return "walk-forward", fp.meta_doc(
        "walk_forward_config", ST, parameter_space=space if space is not None else fp.sma_space([5, 10]),
        windows=windows or {"in_sample_bars": 1000, "out_of_sample_bars": 500})


def _range(**r):
    return [{"worker_instance": "sma_1", "parameters": {"fast": r}}]


_SWAP_EXIT = {"workforce": {"planning_workers": {"exit_planning": [
    {"instance_id": "exit_1", "plugin": "reverse_on_opposite", "params": {"exclusive_orders": False}}]}}}

BAD_CONFIGS = {
    "unknown_worker_instance": (
        _opt([{"worker_instance": "nope", "parameters": {"fast": {"values": [5]}}}]),
        ["optimization_config.parameter_space[0].worker_instance", "'nope'", "sma_1"]),
    "unknown_parameter": (
        _opt([{"worker_instance": "sma_1", "parameters": {"bogus": {"values": [5]}}}]),
        ["optimization_config.parameter_space[0].parameters.bogus", "no parameter 'bogus'"]),
    "empty_values": (_opt(_range(values=[])), ["parameter_space[0].parameters.fast", "0 given; expected at least 1"]),
    "step_zero": (_opt(_range(start=5, end=10, step=0)), ["parameter_space[0].parameters.fast", "step",
                                                          "must be > 0"]),
    "step_negative": (_opt(_range(start=5, end=10, step=-1)), ["parameter_space[0].parameters.fast", "step",
                                                               "must be > 0"]),
    "start_after_end": (_opt(_range(start=10, end=5, step=1)), ["parameter_space[0].parameters.fast",
                                                                "start (10) is after end (5)"]),
    "unknown_primary_metric": (_opt(target={"primary_metric": "sharpe"}),
                               ["optimization_config.optimization_target.primary_metric", "unknown metric 'sharpe'"]),
    "unknown_top_level_key": (_opt(foo=1), ["optimization_config.foo", "unknown key"]),
    "unknown_backend": (_opt(parallel={"backend": "spark"}), ["optimization_config.parallel.backend", "spark"]),
    "missing_base_strategy": (
        ("optimize", {"optimization_config": {"name": "t", "base_operation": OP,
                                              "base_strategy": "config/runs/does_not_exist.yaml",
                                              "parameter_space": fp.sma_space([5])}}),
        ["optimization_config.base_strategy", "does_not_exist.yaml", "not found"]),
    "missing_base_operation": (
        ("optimize", {"optimization_config": {"name": "t", "base_operation": "config/operations/nope.yaml",
                                              "base_strategy": ST, "parameter_space": fp.sma_space([5])}}),
        ["optimization_config.base_operation", "nope.yaml", "not found"]),
    "wrong_root_key": (("optimize", {"optimisation_config": {"name": "t"}}),
                       ["optimisation_config", "optimization_config"]),
    "variant_file_given_to_optimize": (("optimize", _var([{"name": "a"}])[1]),
                                       ["optimization_config", "variant_config"]),
    "variant_override_path_missing": (
        _var([{"name": "a", "overrides": {"workforce": {"planning_workers": {"exit_plan": []}}}}]),
        ["variant_config.variants[0].overrides.workforce.planning_workers.exit_plan", "no such key",
         "exit_planning"]),
    "variant_override_top_level_typo": (
        _var([{"name": "a", "overrides": _SWAP_EXIT}, {"name": "b", "overrides": {"directions": "long_only"}}]),
        ["variant_config.variants[1].overrides.directions", "no such key"]),
    "variant_operation_override_typo": (   # hunt50 F6: said "no such key in the blueprint"
        _var([{"name": "a"}, {"name": "b", "overrides": {"operation": {"cahs": 5}}}]),
        ["variant_config.variants[1].overrides.operation.cahs: no such key in the operation", "cash"]),
    "variant_operation_override_bad_value": (
        _var([{"name": "a"}, {"name": "b", "overrides": {"operation": {"cash": -5}}}]),
        ["variant_config.variants[1].overrides.operation.cash:", "must be > 0"]),
    "variant_operation_override_bad_data_key": (   # hunt48 F3: named overrides.data
        _var([{"name": "a"}, {"name": "b", "overrides": {"operation": {"data": {"intrabar": "source"}}}}]),
        ["variant_config.variants[1].overrides.operation.data:", "set data.timeframe"]),
    "duplicate_variant_names": (_var([{"name": "a"}, {"name": "b"}, {"name": "a"}]),
                                ["variant_config", "unique", "repeated: a"]),
    "variant_bad_plugin_param": (
        _var([{"name": "a"}, {"name": "b", "overrides": {"workforce": {"opportunity_workers": [
            {"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 0}}]}}}]),
        ["variant_config.variants[1].overrides.workforce.opportunity_workers[0].params.fast", "must be > 0"]),
    "variant_unknown_plugin": (
        _var([{"name": "a", "overrides": {"workforce": {"opportunity_workers": [
            {"instance_id": "sma_1", "plugin": "nope"}]}}}]),
        ["variant_config.variants[0].overrides.workforce.opportunity_workers[0].plugin", "unknown plugin 'nope'"]),
    "walk_forward_windows_exceed_data": (
        _wf({"in_sample_bars": 5000, "out_of_sample_bars": 500}),
        ["walk_forward_config.windows", "exceeds", "5031 bars"]),
    "walk_forward_unknown_mode": (
        _wf({"in_sample_bars": 1000, "out_of_sample_bars": 500, "mode": "expanding"}),
        ["walk_forward_config.windows.mode", "expanding"]),
    "walk_forward_unknown_worker_instance": (
        _wf(space=[{"worker_instance": "sma_9", "parameters": {"fast": {"values": [5]}}}]),
        ["walk_forward_config.parameter_space[0].worker_instance", "'sma_9'"]),
}


@pytest.fixture
def no_runs(monkeypatch):
    """Fail loudly if any run starts (bad configs must be refused before)."""
    from metaflow_nb.services.operation import OperationService
    from metaflow_nb.services.parallel import ParallelRunService

    def _boom(*a, **k):
        raise AssertionError("a run started although the config is invalid")

    monkeypatch.setattr(ParallelRunService, "run", _boom)
    monkeypatch.setattr(OperationService, "run", _boom)
    monkeypatch.setattr("metaflow_nb.services.batch.run_batch", _boom)


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_refused_before_any_run(case, tmp_path, capsys, no_runs):
    (command, doc), needles = BAD_CONFIGS[case]
    cfg = fp.write_yaml(tmp_path / f"{case}.yaml", doc)
    out = tmp_path / "out"
    # default backend: what a user gets (a loky sweep may take the in-process batch path)
    rc = main([command, str(cfg), "--out", str(out), "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 2
    err_lines = cap.err.strip().splitlines()
    assert len(err_lines) == 1, cap.err
    msg = err_lines[0]
    assert msg.startswith("metaflow-nb: error: ")
    assert str(cfg) in msg, "the message names the file"
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert "Traceback" not in cap.err and cap.out == ""
    assert fp.store_records(out) == [], "no record may be written for a refused config"


@pytest.mark.parametrize("backend", [
    "sequential",
    None,
])
def test_grid_where_every_combination_is_invalid_is_a_config_error(backend, tmp_path, capsys, no_runs):
    cfg = fp.write_yaml(tmp_path / "allbad.yaml", _opt(fp.sma_space([25, 30]))[1])
    out = tmp_path / "out"
    argv = ["optimize", str(cfg), "--out", str(out), "--no-progress"] + (["--backend", backend] if backend else [])
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and str(cfg) in err[0]
    assert "optimization_config.parameter_space" in err[0] and "fast (25) must be smaller than slow (20)" in err[0]
    assert fp.store_records(out) == []


@pytest.mark.parametrize("spec,cause", [({"start": 5, "end": 10, "step": 0}, "step: must be > 0"),
                                        ({"start": 10, "end": 5, "step": 1}, "start (10) is after end (5)")])
def test_bad_range_message_leads_with_the_real_problem(spec, cause, tmp_path, capsys, no_runs):
    cfg = fp.write_yaml(tmp_path / "bad.yaml", _opt(_range(**spec))[1])
    assert main(["optimize", str(cfg)]) == 2
    msg = capsys.readouterr().err.strip()
    head = msg.split(" (and ")[0]
    assert cause in head, msg
    assert "ValuesSpec" not in msg and "function-after" not in msg


def test_variant_unknown_primary_metric_is_refused(tmp_path, capsys, no_runs):
    cfg = fp.write_yaml(tmp_path / "v.yaml", _var([{"name": "a"}], primary_metric="sharpe")[1])
    rc = main(["variants", str(cfg), "--backend", "sequential"])
    assert rc == 2
    assert "variant_config.primary_metric" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["wrong_root_key", "duplicate_variant_names"])
def test_console_script_bad_config_exit_code_2_one_line(case, tmp_path):
    (command, doc), needles = BAD_CONFIGS[case]
    cfg = fp.write_yaml(tmp_path / f"{case}.yaml", doc)
    out = tmp_path / "out"
    r = cli(command, str(cfg), "--out", str(out), "--json")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(cfg) in lines[0]
    assert all(n in lines[0] for n in needles)
    assert r.stdout == ""
    assert fp.store_records(out) == []


def test_resume_without_out_is_a_usage_error(capsys):
    assert main(["optimize", "config/optimizations/sma_grid.yaml", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume needs --out" in err[0]


# ------------------------------------------------------------------ outcomes on the command line

def test_no_run_satisfies_constraints_exits_0_and_says_so(tmp_path, capsys):
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10], [30]), ST,
                                target={"primary_metric": "sharpe_ratio", "constraints": {"min_trades": 100000}})
    rc = main(["optimize", str(cfg), "--backend", "sequential", "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "no run satisfies the constraints" in cap.out
    assert "min_trades >= 100000: 0 of 2 successful runs pass" in cap.out
    rc = main(["optimize", str(cfg), "--backend", "sequential", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["best_params"] is None and doc["best_metrics"] is None
    assert doc["successful_runs"] == 2 and "no run satisfies the constraints" in doc["message"]


def test_every_run_failing_exits_1_with_the_first_error(tmp_path, capsys):
    bp = fp.write_blueprint(tmp_path, plugin="test_faulty_cross", params={"fail_when_fast": 7})
    cfg = fp.write_optimization(tmp_path, fp.sma_space([7], [30, 40]), bp)
    rc = main(["optimize", str(cfg), "--backend", "sequential", "--json"])
    cap = capsys.readouterr()
    assert rc == 1
    doc = json.loads(cap.out)
    assert doc["total_runs"] == 2 and doc["failed_runs"] == 2 and doc["best_params"] is None
    assert f"every run failed; first error: PluginError: {fp.refused(7)}" in cap.err


def test_a_walk_forward_whose_every_run_fails_exits_1_with_the_first_error(tmp_path, capsys):
    """As optimize and variants: exit 1 naming the first error, which each window's note
    carries (it pointed at an error column the windows table does not have)."""
    bp = fp.write_blueprint(tmp_path, plugin="test_faulty_cross", params={"fail_when_fast": 7})
    windows = {"in_sample_bars": 1000, "out_of_sample_bars": 500, "mode": "rolling"}
    cfg = fp.write_yaml(tmp_path / "wf.yaml", fp.meta_doc("walk_forward_config", bp,
                                                          parameter_space=fp.sma_space([7], [30, 40]),
                                                          windows=windows))
    rc = main(["walk-forward", str(cfg), "--backend", "sequential", "--json"])
    cap = capsys.readouterr()
    assert rc == 1, cap.err
    doc = json.loads(cap.out)
    note = f"every in-sample run failed (2); first error: PluginError: {fp.refused(7)}"
    assert {w["status"] for w in doc["windows"]} == {"failed"} and doc["windows"][0]["note"] == note
    assert cap.err.strip().splitlines()[-1] == f"metaflow-nb: every run failed; first error: window 0: PluginError: {fp.refused(7)}"


def test_every_variant_failing_exits_1_with_the_first_error(tmp_path, capsys):
    bp = fp.write_blueprint(tmp_path, plugin="test_faulty_cross", params={"fast": 7, "slow": 30, "fail_when_fast": 7})
    variants = [{"name": "a", "overrides": {}},
                {"name": "b", "overrides": {"workforce": {"opportunity_workers": [
                    {"instance_id": "sma_1", "plugin": "test_faulty_cross", "params": {"fast": 7, "slow": 40}}]}}}]
    cfg = fp.write_yaml(tmp_path / "variants.yaml", fp.meta_doc("variant_config", bp, variants=variants))
    rc = main(["variants", str(cfg), "--backend", "sequential", "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 1, cap.err
    assert cap.err.strip().splitlines()[-1].startswith(
        f"metaflow-nb: every variant failed; first error: a: PluginError: {fp.refused(7)}")
    # one variant running is a comparison with a failed row: exit 0
    variants[1]["overrides"]["workforce"]["opportunity_workers"][0]["params"]["fail_when_fast"] = 99
    cfg = fp.write_yaml(tmp_path / "variants.yaml", fp.meta_doc("variant_config", bp, variants=variants))
    assert main(["variants", str(cfg), "--backend", "sequential", "--no-progress"]) == 0
    capsys.readouterr()


# ------------------------------------------------------------------ kill and resume

@pytest.mark.slow
def test_sweep_killed_with_sigkill_resumes_only_missing_runs(tmp_path, monkeypatch):
    """SIGKILL the CLI halfway through a parallel sweep of a slow worker, resume with
    --resume: only the missing runs execute and all_results matches an uninterrupted sweep.

    Threads keep the test quick (no worker processes to start twice); the per-run timeout
    keeps the sweep on the general path, which writes one record per finished run.
    """
    # 16 runs of 0.2 s on 2 threads: the store flushes finished runs every 0.5 s, so the
    # kill lands after some flushes and before the last
    n_runs, delay = 16, 0.2
    bp = fp.write_blueprint(tmp_path, plugin="fault_plugins:SlowCross",
                            params={"fast": 10, "slow": 40, "delay": delay}, plugins=["fault_plugins"])
    cfg = fp.write_optimization(tmp_path, fp.sma_space(list(range(3, 35, 2)), [40]), bp,
                                parallel={"timeout_per_run": 60})
    out = tmp_path / "out"
    log1, log2 = tmp_path / "exec1.log", tmp_path / "exec2.log"
    args = [_exe(), "optimize", str(cfg), "--backend", "threads", "--workers", "2", "--out", str(out), "--json"]

    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=fp.child_env(**{fp.EXEC_LOG_ENV: str(log1)}))
    try:
        deadline = time.monotonic() + 90
        while len(fp.store_records(out)) < n_runs // 2:
            assert proc.poll() is None, f"the sweep ended before it was killed: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no progress in the store"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:  # anything the killed CLI left behind shares its process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = len(fp.store_records(out))
    assert 0 < done < n_runs, f"{done} records after the kill"
    assert not (out / "all_results.csv").exists()
    assert log1.read_text().count("\n") >= done

    resume = subprocess.run(args + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=fp.child_env(**{fp.EXEC_LOG_ENV: str(log2)}))
    assert resume.returncode == 0, resume.stderr
    # every stored run keeps its daily returns, so the DSR/PBO statistics run nothing again:
    # every execution counts (one missing run executes in the main thread)
    executed = log2.read_text().splitlines()
    assert len(executed) == n_runs - done, "resume must compute exactly the missing runs"
    missing = sorted(int(ln.split()[1]) for ln in executed)
    assert len(set(missing)) == len(missing), "no run computed twice"
    assert len(fp.store_records(out)) == n_runs
    resumed = json.loads(resume.stdout)
    assert resumed["total_runs"] == n_runs and resumed["successful_runs"] == n_runs

    # the uninterrupted sweep (in-process, no sleeping) gives the same table
    from metaflow_nb.services.optimization import OptimizationService
    monkeypatch.setattr(fp, "_sleep", lambda s: None)
    monkeypatch.delenv(fp.EXEC_LOG_ENV, raising=False)
    ref_out = tmp_path / "ref"
    ref = OptimizationService().run(cfg, out=ref_out, backend="sequential", progress=False)
    got = _comparable(pd.read_csv(out / "all_results.csv"))
    want = _comparable(pd.read_csv(ref_out / "all_results.csv"))
    pd.testing.assert_frame_equal(got, want)
    assert resumed["best_params"] == ref.best_params
    assert list(got["sma_1.fast"]) == list(range(3, 35, 2))
    assert set(METRIC_NAMES) <= set(got.columns)



def test_fully_resumed_sweep_executes_nothing(tmp_path, monkeypatch, capsys):
    bp = fp.write_blueprint(tmp_path, plugin="test_slow_cross", params={"fast": 10, "slow": 40})
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10, 15], [40]), bp)
    out = tmp_path / "out"
    assert main(["optimize", str(cfg), "--backend", "sequential", "--out", str(out), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    log = tmp_path / "exec.log"
    monkeypatch.setenv(fp.EXEC_LOG_ENV, str(log))
    assert main(["optimize", str(cfg), "--backend", "sequential", "--out", str(out), "--resume", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["best_params"] == first["best_params"]
    executed = log.read_text().splitlines() if log.exists() else []
    assert executed == [], f"{len(executed)} runs executed on a complete resume"


def test_resume_of_a_sweep_that_was_never_printed_executes_nothing(tmp_path, monkeypatch, capsys):
    from metaflow_nb.services.optimization import OptimizationService

    bp = fp.write_blueprint(tmp_path, plugin="test_slow_cross", params={"fast": 10, "slow": 40})
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10, 15], [40]), bp)
    out = tmp_path / "out"
    OptimizationService().run(cfg, out=out, backend="sequential", progress=False)  # like a killed CLI
    assert len(fp.store_records(out)) == 3
    log = tmp_path / "exec.log"
    monkeypatch.setenv(fp.EXEC_LOG_ENV, str(log))
    assert main(["optimize", str(cfg), "--backend", "sequential", "--out", str(out), "--resume", "--json"]) == 0
    json.loads(capsys.readouterr().out)
    executed = log.read_text().splitlines() if log.exists() else []
    assert executed == [], f"{len(executed)} runs executed on a complete resume"


def test_cli_engine_flag_picks_the_path(capsys):
    assert main(["optimize", FVG_OPT, "--engine", "general", "--json", "--no-progress"]) == 0
    general = json.loads(capsys.readouterr().out)
    assert main(["optimize", FVG_OPT, "--engine", "batch", "--json", "--no-progress"]) == 0
    batch = json.loads(capsys.readouterr().out)
    assert (general["engine"], batch["engine"]) == ("general", "batch")
    assert general["best_params"] == batch["best_params"]
    # variants have no batch path: the flag does not exist there
    assert main(["variants", "config/variants/exit_strategy_test.yaml", "--engine", "batch"]) == 2
    assert "--engine" in capsys.readouterr().err


@pytest.mark.parametrize("verb, config", [("optimize", "config/optimizations/sma_grid.yaml"),
                                          ("variants", "config/variants/exit_strategy_test.yaml")])
@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_workers_must_be_a_positive_whole_number(verb, config, workers, capsys):
    """The config refuses max_workers 0 (ge=1); the option says so before anything runs."""
    from metaflow_nb.cli import main
    assert main([verb, str(ROOT / config), "--workers", workers]) == 2
    assert capsys.readouterr().err == (f"metaflow-nb {verb}: argument --workers: '{workers}' is not a positive "
                                       f"whole number\n")


def test_json_keeps_the_progress_bar_on_a_terminal_only(monkeypatch):
    """--json turned the bar off: a 66 s walk-forward printed nothing (hunt15 F3). The JSON
    goes to stdout; the bar stays on stderr when that is a terminal, never in a log."""
    import argparse
    import sys

    from metaflow_nb.meta_cli import _runner_options

    args = argparse.Namespace(json=True, no_progress=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert _runner_options(args)["progress"] is True
    assert _runner_options(argparse.Namespace(json=True, no_progress=True))["progress"] is False
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert _runner_options(args)["progress"] is False
    # nor in text mode: a bar redrawn with carriage returns is noise in a log or a pipe (hunt19 F6)
    assert _runner_options(argparse.Namespace(json=False, no_progress=False))["progress"] is False
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert _runner_options(argparse.Namespace(json=False, no_progress=False))["progress"] is True


def test_ctrl_c_while_the_cli_starts_is_an_interruption_not_a_traceback():
    """hunt49 F1: the console script's module imported the services package (pandas, half
    a second) before main() could catch Ctrl-C, so an early Ctrl-C printed a traceback and
    the process died of the signal. Importing the CLI now loads no pandas, and an
    interruption during a command's own imports is main()'s: one line, status 130."""
    probe = "import sys, metaflow_nb.cli; print(sorted(m for m in ('pandas', 'numpy', 'numba') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    driver = ("import signal, sys, metaflow_nb.cli as cli\n"
              "import metaflow_nb.api\n"
              "def interrupt(*a):\n    raise KeyboardInterrupt\n"
              "cli._cmd_backtest = lambda args: interrupt()\n"
              "sys.exit(cli.main(['backtest', '--strategy', 'config/runs/sma_cross.yaml', '--data', 'sp500_daily']))\n")
    run = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 130 and run.stderr.strip() == "metaflow-nb: interrupted", run.stderr


@pytest.mark.parametrize("sig, code, said", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_sigterm_keeps_the_finished_runs_as_ctrl_c_does(tmp_path, sig, code, said):
    """hunt61 F1: SIGTERM (kill, docker stop, a batch scheduler's time limit) ended the
    process at once: the runs buffered for the results store were lost (1 kept where
    Ctrl-C kept hundreds). It stops the sweep as Ctrl-C does: the run going on finishes,
    every finished run reaches the store, one line, status 128 + 15."""
    bp = fp.write_blueprint(tmp_path, plugin="test_interrupting_cross",
                            params={"signal_name": sig, "interrupt_when_fast": 9})
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 7, 9, 11, 13], [30]), bp)
    out = tmp_path / "out"
    run = subprocess.run([_exe(), "optimize", str(cfg), "--engine", "general", "--backend", "sequential",
                          "--out", str(out), "--plugins", "fault_plugins"], cwd=ROOT, capture_output=True,
                         text=True, env=fp.child_env(), timeout=180)
    assert run.returncode == code and run.stderr.strip().splitlines()[-1] == f"metaflow-nb: {said}", run.stderr
    assert len(fp.store_records(out)) == 3   # fast 5, 7 and 9 (the run the signal came in)


@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_an_interrupted_console_script_leaves_without_the_interpreters_teardown(tmp_path, sig, code):
    """CI saw the SIGTERM test above print ``metaflow-nb: terminated`` and then abort in
    the interpreter's teardown (``terminate called without an active exception``, status
    -6 where 143 is expected): native thread pools torn down after an interruption. Once
    interrupted, the console script runs the exit handlers (the results stores' last
    flush among them), flushes its streams and leaves as the signal's default action
    would: no teardown, and no wait for a thread a plugin left running."""
    driver = (
        "import atexit, os, signal, sys, threading, time\n"
        "import metaflow_nb.cli as cli\n"
        "threading.Thread(target=time.sleep, args=(40,)).start()   # not a daemon: exit would wait\n"
        "atexit.register(lambda: print('exit handlers ran', flush=True))\n"
        f"cli._cmd_backtest = lambda args: (os.kill(os.getpid(), signal.{sig}), time.sleep(5))\n"
        "sys.argv = ['metaflow-nb', 'backtest', '--strategy', 'config/runs/sma_cross.yaml', '--data', 'sp500_daily']\n"
        "cli.console()\n")
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == code, (run.returncode, run.stderr)
    assert run.stdout.strip() == "exit handlers ran", run.stdout
    assert time.monotonic() - t0 < 30
    # the console script installed is this entry point
    script = (Path(sys.executable).parent / "metaflow-nb").read_text()
    assert "import console" in script, script


def test_an_interrupt_reported_as_another_exception_is_still_an_interruption(capsys, monkeypatch):
    """Ctrl-C inside pydantic's serializer (a config being resolved) surfaces as
    ``PydanticSerializationError`` with the KeyboardInterrupt as its cause, and inside a
    compiled call as a ``SystemError``: the CLI printed a traceback. Any exception caused
    by an interrupt is one: one line, status 130."""
    import metaflow_nb.cli as cli

    def interrupted(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling function `_unset_left_out`: KeyboardInterrupt: ") from exc

    monkeypatch.setattr(cli, "_cmd_backtest", interrupted)
    assert cli.main(["backtest", "--strategy", "config/runs/sma_cross.yaml", "--data", "sp500_daily"]) == 130
    assert capsys.readouterr().err.strip() == "metaflow-nb: interrupted"

    def in_a_plugin(args):   # a plugin's compiled call interrupted: PluginError from it, not bad input
        from metaflow_nb.errors import PluginError
        try:
            interrupted(args)
        except RuntimeError as exc:
            raise PluginError("sma_1 (opportunity): detect raised RuntimeError") from exc

    monkeypatch.setattr(cli, "_cmd_backtest", in_a_plugin)
    assert cli.main(["backtest", "--strategy", "config/runs/sma_cross.yaml", "--data", "sp500_daily"]) == 130
    assert capsys.readouterr().err.strip() == "metaflow-nb: interrupted"

    def broken(args):
        try:   # hunt84 F1: an interrupt the plugin handled, then its own error
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise OSError("while stopping")
        except OSError:
            raise RuntimeError("a plugin's own bug")

    monkeypatch.setattr(cli, "_cmd_backtest", broken)
    with pytest.raises(RuntimeError, match="own bug"):   # any other error is not hidden
        cli.main(["backtest", "--strategy", "config/runs/sma_cross.yaml", "--data", "sp500_daily"])


def test_the_console_script_skips_the_collectors_teardown_but_not_a_finalizer(tmp_path):
    """W5: after a command, the interpreter's teardown of numba's and pandas' objects took
    ~0.4 s of a ~2 s CLI backtest (the garbage collector walking every object as modules
    are cleared). The console script collects once, then freezes what is left, so the
    teardown skips it. A finalizer of garbage in a reference cycle (an unflushed file a
    plugin dropped) still runs: nothing written is lost."""
    out = tmp_path / "written.txt"
    driver = (
        "import gc, sys\n"
        "import metaflow_nb.cli as cli\n"
        "class Cycle:\n"
        "    def __init__(self, path):\n"
        "        self.me, self.f = self, open(path, 'w')\n"
        "        self.f.write('kept')\n"
        "    def __del__(self):\n"
        "        self.f.close()\n"
        "def backtest(args):\n"
        f"    Cycle({str(out)!r})\n"
        "    print('ran', flush=True)\n"
        "    return 0\n"
        "cli._cmd_backtest = backtest\n"
        "import atexit\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 10000, flush=True))\n"
        "sys.argv = ['metaflow-nb', 'backtest', '--strategy', 'config/runs/sma_cross.yaml', '--data', 'sp500_daily']\n"
        "cli.console()\n")
    run = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ran", "frozen", "True"], run.stdout
    assert out.read_text() == "kept"
