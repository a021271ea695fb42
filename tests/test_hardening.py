"""Bad input as a careless or hostile user gives it: a catalogue by class (issue 19).

Every case asserts the exit-2 contract: exit code 2, exactly one line on stderr that
names the file (or option) and the key or column, no traceback. The bomb cases (a huge
grid, a 1e-9 step, a billion-laughs YAML) run the CLI under a 2 GB address-space limit
and must be refused in seconds; the checks of counting and YAML shape run in
milliseconds in-process.

Classes: YAML limits (size, depth, aliases, non-regular files); numbers (finite, int64,
no booleans, NumPy scalars, account bounds); grid size (counted before building,
``max_combinations``, streamed combinations); the command line (dates, ``--out``,
named pipes, warnings, recursion and overflow); the results store (bad records on
resume are recomputed with a warning).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMA = ROOT / "config/runs/sma_cross.yaml"
SP500_OP = ROOT / "config/operations/sp500_daily.yaml"
AS_LIMIT = 2 * 1024 ** 3


def _limit_memory() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def cli(*args: str, cwd: Path = ROOT, timeout: float = 120, bounded: bool = False) -> subprocess.CompletedProcess:
    """Run ``metaflow-nb`` in a subprocess (with ``bounded``: under a 2 GB RLIMIT_AS)."""
    return subprocess.run([sys.executable, "-m", "metaflow_nb.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_limit_memory if bounded else None)


def refused(proc: subprocess.CompletedProcess, *names: str) -> str:
    """Assert the exit-2 contract; returns the one line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("metaflow-nb: error: "), line
    for name in names:
        assert name in line, (name, line)
    return line


def write(folder: Path, name: str, text: str) -> Path:
    p = folder / name
    p.write_text(text)
    return p


def optimization(folder: Path, parameters: str, extra: str = "", name: str = "opt.yaml",
                 strategy: Path = SMA) -> Path:
    """An optimization config on the S&P 500 sample; ``parameters`` is the YAML of
    ``sma_1``'s parameters, indented by 8."""
    return write(folder, name, f"""optimization_config:
  name: hardening
  base_operation: {SP500_OP}
  base_strategy: {strategy}
{extra}  parameter_space:
    - worker_instance: sma_1
      parameters:
{parameters}""")


# ------------------------------------------------------------------ YAML limits

def _laughs(levels: int = 9, width: int = 10) -> str:
    """A parameter's values nested through aliases: width ** levels values from a few hundred bytes."""
    v = "[&a0 [" + ",".join(["1"] * width) + "]"
    for i in range(1, levels):
        v += f", &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]"
    return v + "]"


def test_billion_laughs_in_a_parameter_is_refused_fast_under_2gb(tmp_path):
    cfg = optimization(tmp_path, f"        fast: {{values: {_laughs()}}}\n")
    t0 = time.perf_counter()
    line = refused(cli("optimize", cfg, "--no-progress", bounded=True), str(cfg), "YAML bomb")
    assert time.perf_counter() - t0 < 30
    assert "1,000,000" in line


@pytest.mark.parametrize("doc, expected", [
    ("a: &x [1, 2]\nb: [*x, *x]\n", None),                       # a few aliases: fine
    ("a: &x [*x]\n", "recursive aliases"),                       # a value containing itself
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 64"),   # RecursionError before
    ("a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(100)) + "  " * 101 + "x: 1\n",
     "nested deeper than 64 levels (line 65)"),
])
def test_yaml_shape(tmp_path, doc, expected):
    from metaflow_nb.config.loading import read_yaml
    from metaflow_nb.errors import ConfigError

    p = write(tmp_path, "c.yaml", doc)
    t0 = time.perf_counter()
    if expected is None:
        try:
            read_yaml(p)
        except ConfigError as exc:
            assert str(p) in str(exc) and "alias" in str(exc)
        return
    with pytest.raises(ConfigError) as exc:
        read_yaml(p)
    assert time.perf_counter() - t0 < 2
    assert str(exc.value).startswith(f"{p}: ") and expected in str(exc.value)


def test_yaml_alias_count_capped(tmp_path):
    from metaflow_nb.config.loading import read_yaml
    from metaflow_nb.errors import ConfigError

    p = write(tmp_path, "c.yaml", "x: &x 1\nl: [" + ",".join(["*x"] * 1001) + "]\n")
    with pytest.raises(ConfigError, match="more than 1000 aliases"):
        read_yaml(p)
    p = write(tmp_path, "ok.yaml", "x: &x 1\nl: [" + ",".join(["*x"] * 1000) + "]\n")
    assert len(read_yaml(p)["l"]) == 1000


def test_yaml_size_capped(tmp_path):
    from metaflow_nb.config.loading import read_yaml
    from metaflow_nb.errors import ConfigError

    p = write(tmp_path, "big.yaml", "name: " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match=r"big\.yaml: 1,048,583 bytes; a config file may have at most 1,048,576"):
        read_yaml(p)


def test_deep_yaml_strategy_from_the_cli(tmp_path):
    st = write(tmp_path, "deep.yaml", "name: " + "[" * 3000 + "]" * 3000 + "\n")
    refused(cli("backtest", "--strategy", st, "--data", "sp500_daily"), str(st), "nested")


@pytest.mark.parametrize("kind", ["fifo", "folder", "utf16"])
def test_config_that_is_no_regular_utf8_file(tmp_path, kind):
    p = tmp_path / "strategy.yaml"
    if kind == "fifo":
        os.mkfifo(p)
        expected = "named pipe"
    elif kind == "folder":
        p.mkdir()
        expected = "folder"
    else:
        p.write_text(SMA.read_text(), encoding="utf-16")
        expected = "not UTF-8"
    refused(cli("backtest", "--strategy", p, "--data", "sp500_daily", timeout=60), str(p), expected)


# ------------------------------------------------------------------ numbers

def strategy(folder: Path, fast: str = "10", slow: str = "20", name: str = "strategy.yaml") -> Path:
    return write(folder, name, f"""name: s
workforce:
  opportunity_workers:
    - {{instance_id: sma_1, plugin: sma_cross, params: {{fast: {fast}, slow: {slow}}}}}
  planning_workers:
    exit_planning: [{{instance_id: exit_1, plugin: reverse_on_opposite}}]
    size_planning: [{{instance_id: size_1, plugin: all_in_sizer}}]
""")


def operation(folder: Path, body: str, name: str = "operation.yaml") -> Path:
    return write(folder, name, "name: o\ndata: {source: sp500_daily}\n" + body)


@pytest.mark.parametrize("fast, slow, key, expected", [
    ("true", "20", "params.fast", "not a boolean"),                 # ran as fast=1 before
    ("10", "false", "params.slow", "not a boolean"),
    ("10", "1" + "0" * 30, "params.slow", "within int64"),         # OverflowError in the kernel before
    ("10", str(2 ** 63), "params.slow", "within int64"),
    ("'10'", "20", "params.fast", "expected a number, not text (got '10')"),  # ran as fast=10 before (hunt21 F5)
    ("10", "'2e1'", "params.slow", "expected a number, not text (got '2e1')"),
])
def test_strategy_numbers_from_the_cli(tmp_path, fast, slow, key, expected):
    st = strategy(tmp_path, fast, slow)
    refused(cli("backtest", "--strategy", st, "--data", "sp500_daily"), str(st), key, expected)


@pytest.mark.parametrize("body, key, expected", [
    ("cash: .inf\n", "cash", "finite"),                              # a JSON ValueError before
    ("commission: .nan\n", "commission", "finite"),
    ("cash: 1.0e308\nleverage: 1.0e308\n", "cash", "<= 1000000000000.0"),  # final equity null before
    ("leverage: 5000.0\n", "leverage", "<= 1000.0"),
    ("cash: true\n", "cash", "not a boolean"),
    ("cash: '10000'\n", "cash", "expected a number, not text (got '10000')"),
    ("seed: 100000000000000000000\n", "seed", "within int64"),
    ("instrument: {pip_size: .inf}\n", "instrument.pip_size", "finite"),
])
def test_operation_numbers_from_the_cli(tmp_path, body, key, expected):
    op = operation(tmp_path, body)
    line = refused(cli("backtest", "--strategy", SMA, "--operation", op), str(op), f": {key}: ", expected)
    if "leverage" in body and "cash" in body:
        assert "leverage: must be <= 1000.0" in line  # both problems, one line


def test_float_param_refuses_booleans_and_infinity():
    import metaflow_nb as mf
    from metaflow_nb.errors import ConfigError

    specs = mf.build_specs(ROOT / "config/runs/sma_cross_long_stops.yaml", data="sp500_daily")
    for bad, expected in ((True, "not a boolean"), (float("inf"), "finite"), (float("nan"), "finite")):
        with pytest.raises(ConfigError, match=f"params.stop_loss_pct: .*{expected}"):
            specs.with_params("stops_1", {"stop_loss_pct": bad})


@pytest.mark.parametrize("spec, key, expected", [
    ("{start: 5, end: .inf, step: 5}", "fast.end", "finite"),      # OverflowError before
    ("{start: -.inf, end: 5, step: 5}", "fast.start", "finite"),
    ("{start: 5, end: 10, step: .nan}", "fast.step", "finite"),
    ("{start: 5, end: 10, step: true}", "fast.step", "expected a number"),
    ("{values: [true]}", "fast.values[0]", "not a boolean"),         # ran as fast=1 before
    ("{values: ['5']}", "fast.values[0]", "not text (got '5')"),      # ran as fast=5 before
    ("{start: '5', end: 10, step: 5}", "fast.start", "expected a number"),
])
def test_range_numbers_from_the_cli(tmp_path, spec, key, expected):
    cfg = optimization(tmp_path, f"        fast: {spec}\n")
    refused(cli("optimize", cfg, "--no-progress", "--backend", "sequential"), str(cfg), key, expected)


@pytest.mark.parametrize("parallel, key, expected", [
    ("{timeout_per_run: 1.0e300}", "parallel.timeout_per_run", "<= 31536000.0"),  # every run failed before
    ("{max_workers: 100000000000000000000}", "parallel.max_workers", "within int64"),
    ("{max_workers: true}", "parallel.max_workers", "not a boolean"),
])
def test_sweep_settings_numbers(tmp_path, parallel, key, expected):
    cfg = optimization(tmp_path, "        fast: {start: 5, end: 15, step: 5}\n", extra=f"  parallel: {parallel}\n")
    refused(cli("optimize", cfg, "--no-progress"), str(cfg), f"optimization_config.{key}: ", expected)


def test_quoted_numbers_are_refused_through_the_api():
    # a quoted number is a templating slip or a typo, as a boolean is (hunt21 F5)
    import metaflow_nb as mf
    from metaflow_nb.errors import ConfigError

    with pytest.raises(ConfigError, match=r"params\.slow: expected a number, not text \(got '30'\)"):
        mf.backtest(SMA, data="sp500_daily", sma_1__slow="30")
    specs = mf.build_specs(ROOT / "config/runs/sma_cross_long_stops.yaml", data="sp500_daily")
    with pytest.raises(ConfigError, match=r"params\.stop_loss_pct: expected a number, not text \(got '2\.0'\)"):
        specs.with_params("stops_1", {"stop_loss_pct": "2.0"})


def test_integers_beyond_int64_through_the_api():
    import metaflow_nb as mf
    from metaflow_nb.errors import ConfigError

    with pytest.raises(ConfigError, match=r"params\.slow: expected an integer within int64"):
        mf.backtest(SMA, data="sp500_daily", sma_1__slow=10 ** 30)  # OverflowError in the kernel before
    with pytest.raises(ConfigError, match=r"params\.fast: expected a number, not a boolean"):
        mf.backtest(SMA, data="sp500_daily", sma_1__fast=True)      # ran as fast=1 before


def test_numpy_scalars_are_the_numbers_they_hold():
    import numpy as np

    import metaflow_nb as mf
    from metaflow_nb.config.meta import parse_parameter_space
    from metaflow_nb.errors import ConfigError

    specs = mf.build_specs(SMA, data="sp500_daily")
    five = specs.with_params("sma_1", {"fast": 5})
    # PydanticSerializationError before
    assert specs.with_params("sma_1", {"fast": np.int64(5)}).run_id == five.run_id
    assert specs.with_param_overrides({"sma_1": {"fast": np.int32(5)}, "sma_1.slow": np.int64(20)}).run_id == five.run_id
    res = mf.backtest(SMA, data="sp500_daily", sma_1={"fast": np.int64(5)})
    assert res.run_id == five.run_id
    with pytest.raises(ConfigError, match="not a boolean"):
        specs.with_params("sma_1", {"fast": np.bool_(True)})
    axes = parse_parameter_space({"sma_1": {"fast": {"start": np.int64(5), "end": np.int64(15), "step": 5},
                                            "slow": np.arange(30, 50, 10)}}, specs)
    assert axes[0][2] == {"start": 5, "end": 15, "step": 5} and type(axes[0][2]["start"]) is int
    assert axes[1][2] == {"values": [30, 40]}


# ------------------------------------------------------------------ grid size

STOPS = ROOT / "config/runs/sma_cross_long_stops.yaml"
GRID_1000_1000_900 = """        fast: {start: 1, end: 1000, step: 1}
        slow: {start: 1, end: 1000, step: 1}
    - worker_instance: stops_1
      parameters:
        stop_loss_pct: {start: 0.1, end: 90.0, step: 0.1}
"""


def test_huge_grid_refused_in_milliseconds(tmp_path):
    from metaflow_nb.config.meta import base_specs, expand_space, load_meta_config
    from metaflow_nb.errors import ConfigError

    cfg = optimization(tmp_path, GRID_1000_1000_900, strategy=STOPS)
    root, model, raw, folder = load_meta_config(cfg)
    base = base_specs(model, folder, str(cfg), root)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as exc:
        expand_space(model.parameter_space, raw["parameter_space"], str(cfg), root, base)
    assert time.perf_counter() - t0 < 0.05
    assert str(exc.value).startswith(f"{cfg}: optimization_config.parameter_space: 900,000,000 combinations "
                                     "(sma_1.fast 1,000 x sma_1.slow 1,000 x stops_1.stop_loss_pct 900) exceed "
                                     "max_combinations = 100,000")


@pytest.mark.parametrize("parameters, count", [
    (GRID_1000_1000_900, "900,000,000"),                                           # MemoryError before
    ("        fast: {start: 0.0, end: 1.0, step: 1.0e-9}\n", "1,000,000,001"),      # a list of 1e9 floats before
    ("        fast: {start: 1, end: 100000000000000000, step: 1}\n", "100,000,000,000,000,000"),
])
def test_huge_grid_from_the_cli_under_2gb(tmp_path, parameters, count):
    cfg = optimization(tmp_path, parameters, strategy=STOPS)
    t0 = time.perf_counter()
    refused(cli("optimize", cfg, "--no-progress", bounded=True), str(cfg), "optimization_config.parameter_space",
            f"{count} combinations", "max_combinations = 100,000")
    assert time.perf_counter() - t0 < 30


def test_walk_forward_grid_is_counted_too(tmp_path):
    src = (ROOT / "config/walk_forward/fvg_walk_forward.yaml").read_text()
    cfg = write(tmp_path, "wf.yaml", src.replace("config/", str(ROOT / "config") + "/"))
    refused(cli("walk-forward", cfg, "--no-progress", "--max-combinations", "3"), str(cfg),
            "walk_forward_config.parameter_space", "exceed max_combinations = 3")


def test_max_combinations_in_the_config_and_on_the_command_line(tmp_path):
    small = "        fast: {start: 5, end: 15, step: 5}\n"
    cfg = optimization(tmp_path, small, extra="  max_combinations: 2\n")
    refused(cli("optimize", cfg, "--no-progress"), str(cfg), "3 combinations (sma_1.fast 3) exceed max_combinations = 2")
    ok = cli("optimize", cfg, "--no-progress", "--backend", "sequential", "--max-combinations", "3", "--json")
    assert ok.returncode == 0, ok.stderr
    bad = optimization(tmp_path, small, extra="  max_combinations: 0\n", name="zero.yaml")
    refused(cli("optimize", bad, "--no-progress"), str(bad), "optimization_config.max_combinations", ">= 1")
    proc = cli("optimize", cfg, "--max-combinations", "-5")
    assert proc.returncode == 2 and "--max-combinations" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_api_max_combinations(tmp_path):
    import metaflow_nb as mf
    from metaflow_nb.errors import ConfigError

    cfg = optimization(tmp_path, "        fast: {start: 5, end: 15, step: 5}\n")
    with pytest.raises(ConfigError, match="3 combinations .* exceed max_combinations = 2"):
        mf.optimize(cfg, backend="sequential", progress=False, max_combinations=2)


def test_grid_is_lazy_and_in_order():
    from metaflow_nb.config.meta import Grid

    g = Grid([("a", "x", range(1000)), ("b", "y", range(1000)), ("c", "z", range(900))])
    assert len(g) == 900_000_000
    assert g[0] == {"a": {"x": 0}, "b": {"y": 0}, "c": {"z": 0}}
    assert g[900 * 1000 + 7] == {"a": {"x": 1}, "b": {"y": 0}, "c": {"z": 7}}
    assert g[-1] == {"a": {"x": 999}, "b": {"y": 999}, "c": {"z": 899}}
    small = Grid([("a", "x", [1, 2, 3]), ("b", "y", ["p", "q"])])
    assert list(small) == [small[i] for i in range(len(small))] == small[0:6]
    with pytest.raises(IndexError):
        small[6]


@pytest.mark.parametrize("engine", ["batch", "general"])
def test_sweep_in_chunks_is_the_sweep_in_one(tmp_path, monkeypatch, engine):
    """Results, run ids and the store do not depend on the chunk size; a resume after
    a chunked sweep runs nothing again."""
    import metaflow_nb as mf
    from metaflow_nb.services import optimization as opt

    cfg = optimization(tmp_path, "        fast: {start: 5, end: 25, step: 5}\n        slow: {values: [20, 30, 60]}\n")
    backend = "loky" if engine == "batch" else "sequential"

    def run(out, resume=False):
        svc = opt.OptimizationService()
        res = svc.run(cfg, out=out, resume=resume, backend=backend, engine=engine, progress=False, max_workers=1)
        assert res.engine == engine
        return res.all_results.drop(columns=["duration_s"])

    whole = run(tmp_path / "whole")
    calls = []
    real = opt.batch.validate_combos if engine == "batch" else opt.ParallelRunService.run
    if engine == "batch":
        monkeypatch.setattr(opt.batch, "validate_combos", lambda b, c, **kw: calls.append(len(c)) or real(b, c, **kw))
    else:
        monkeypatch.setattr(opt.ParallelRunService, "run",
                            lambda self, specs, **kw: calls.append(len(specs)) or real(self, specs, **kw))
    monkeypatch.setattr(opt, "SWEEP_CHUNK", 4)
    chunked = run(tmp_path / "chunked")
    # 15 combinations in chunks of 4; on the general path only the valid ones run (2 have fast >= slow)
    assert calls == ([4, 4, 4, 3] if engine == "batch" else [4, 4, 3, 2])
    assert whole.drop(columns=["error"]).equals(chunked.drop(columns=["error"]))
    assert (whole["error"] == chunked["error"]).all()
    import fault_plugins as fp
    assert len(fp.store_records(tmp_path / "chunked")) == 13
    calls.clear()
    resumed = run(tmp_path / "chunked", resume=True)
    assert resumed.equals(chunked)


# ------------------------------------------------------------------ the command line

@pytest.mark.parametrize("args, names", [
    (("--end", "now"), ("--end 'now'", "a moving time, not a date")),         # TypeError traceback before
    (("--start", "today"), ("--start 'today'", "not a date")),
    (("--end", "2015-13-01"), ("--end '2015-13-01'", "not a date")),
    (("--start", "-1"), ("--start '-1'", "not a date")),
    # hunt35 F7: it blamed "<default operation>: data.timeframe", a key the user never wrote
    (("--timeframe", "7m"), ("--timeframe '7m'", "must divide 24 hours")),
    (("--timeframe", "fortnight"), ("--timeframe 'fortnight'", "expected a number and a unit")),
])
def test_dates_on_the_command_line(args, names):
    refused(cli("backtest", "--strategy", SMA, "--data", "sp500_daily", *args), *names)


@pytest.mark.parametrize("data, key", [("{source: sp500_daily, end: now}", "data.end"),
                                       ("{source: sp500_daily, trade_start: yesterday}", "data.trade_start")])
def test_dates_in_an_operation(tmp_path, data, key):
    op = write(tmp_path, "op.yaml", f"name: o\ndata: {data}\n")
    refused(cli("backtest", "--strategy", SMA, "--operation", op), str(op), f"{key}: ", "not a date")


def test_dates_through_the_api_and_the_loader():
    import metaflow_nb as mf
    from metaflow_nb.data import load_data
    from metaflow_nb.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match=r"data\.end: a moving time, not a date; .* \(got 'now'\)"):
        mf.backtest(SMA, data="sp500_daily", end="now")
    with pytest.raises(DataError, match=r"sp500_daily: start='today', end=None: expected dates"):
        load_data("sp500_daily", start="today")  # the loader's own guard, for any caller


@pytest.mark.parametrize("command", ["backtest", "optimize", "trades-csv"])
def test_out_below_a_regular_file(tmp_path, command):
    blocker = write(tmp_path, "results", "keep me\n")
    target = blocker / "x"
    if command == "optimize":
        cfg = optimization(tmp_path, "        fast: {start: 5, end: 15, step: 5}\n")
        proc = cli("optimize", cfg, "--no-progress", "--out", target)
        names = ("--out", str(blocker), "is a file")
    elif command == "backtest":
        proc = cli("backtest", "--strategy", SMA, "--data", "sp500_daily", "--out", target)
        names = ("--out", str(blocker), "is a file")
    else:
        proc = cli("backtest", "--strategy", SMA, "--data", "sp500_daily", "--trades-csv", target / "t.csv")
        names = ("--trades-csv", str(blocker), "is a file")
    refused(proc, *names)
    assert blocker.read_text() == "keep me\n"


@pytest.mark.parametrize("clash", ["--data", "data.source", "--strategy", "--operation", "instrument"])
def test_trades_csv_never_writes_over_the_runs_own_input(tmp_path, clash):
    """hunt70 F2: --trades-csv naming the run's data file (or its strategy YAML) wrote the
    trades over it, exit 0: the only copy of an exported dataset gone."""
    import shutil

    from metaflow_nb.data.loader import load_data

    data = tmp_path / "bars.csv"
    load_data("sp500_daily", end="2003-12-31").to_csv(data)
    strategy = tmp_path / "s.yaml"
    shutil.copy(SMA, strategy)
    if clash == "instrument":
        op = write(tmp_path, "op.yaml", f"instruments: [{{symbol: A, source: {data}}}]\n")
    else:
        op = write(tmp_path, "op.yaml", f"name: o\ndata: {{source: {data}}}\n")
    target = {"--data": data, "data.source": data, "instrument": data, "--strategy": strategy,
              "--operation": op}[clash]
    before = {p: p.read_bytes() for p in (data, strategy, op)}
    extra = ["--data", data] if clash == "--data" else []
    line = refused(cli("backtest", "--strategy", strategy, "--operation", op, *extra, "--trades-csv", target),
                   "--trades-csv", str(target), "expected a new file")
    assert {"--data": "--data", "data.source": "data.source", "instrument": "instruments[0].source",
            "--strategy": "--strategy", "--operation": "--operation"}[clash] in line
    assert {p: p.read_bytes() for p in (data, strategy, op)} == before


def test_trades_csv_never_writes_over_a_bundled_sample(tmp_path, monkeypatch):
    """hunt71 F4: --data sp500_daily --trades-csv <the sample's own file> replaced the
    bundled sample with the trades (a name is no path, so it was not compared)."""
    import argparse

    from metaflow_nb.cli import _refuse_overwriting_inputs
    from metaflow_nb.data.loader import sample_path
    from metaflow_nb.errors import ConfigError

    args = argparse.Namespace(trades_csv=str(sample_path("sp500_daily")))
    with pytest.raises(ConfigError, match=r"is the run's --data .*sp500_daily"):
        _refuse_overwriting_inputs(args, {"--data": "sp500_daily"})
    _refuse_overwriting_inputs(argparse.Namespace(trades_csv=str(tmp_path / "t.csv")), {"--data": "sp500_daily"})


def test_a_leading_tilde_in_a_path_flag_is_the_home_folder(tmp_path):
    """hunt70 F3: the shell leaves ~ after '=' alone: --strategy=~/s.yaml was 'file not found'
    and --out=~/o made a folder named '~' in the working folder."""
    import shutil

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    shutil.copy(SMA, home / "s.yaml")
    proc = subprocess.run([sys.executable, "-m", "metaflow_nb.cli", "backtest", "--strategy=~/s.yaml",
                           "--data", "sp500_daily", "--end", "2003-12-31", "--out=~/o", "--trades-csv=~/t.csv"],
                          cwd=work, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    assert (home / "t.csv").is_file() and len(list((home / "o").glob("*/trades.csv"))) == 1
    assert not (work / "~").exists()
    (home / "rep").mkdir()   # report --verify=~/rep: the home's folder, not './~/rep' (hunt71 F7)
    proc = subprocess.run([sys.executable, "-m", "metaflow_nb.cli", "report", "--verify=~/rep"], cwd=work,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(home)})
    assert proc.returncode == 2 and str(home / "rep") in proc.stderr, proc.stderr


def test_any_os_error_on_an_output_path(tmp_path):
    """Not checked before the run (a name too long for the file system): still one line."""
    long = tmp_path / ("n" * 300)
    refused(cli("backtest", "--strategy", SMA, "--data", "sp500_daily", "--trades-csv", long / "t.csv"),
            "File name too long", "nnnn")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_data_file_that_is_no_regular_file(tmp_path, kind):
    if kind == "fifo":
        data = tmp_path / "bars.csv"
        os.mkfifo(data)                              # blocked forever before
    else:
        data = Path("/dev/zero")                     # read forever before
    t0 = time.perf_counter()
    refused(cli("backtest", "--strategy", SMA, "--data", data, timeout=60), str(data), "not a regular file")
    assert time.perf_counter() - t0 < 30


def test_pandas_warning_does_not_leak_before_the_error(tmp_path):
    # rows longer than the header: pandas warns that it drops data (a semicolon file did, before
    # the layout was sniffed)
    data = write(tmp_path, "semi.csv", "time,open,high,low\n2020-01-01,1,2,1,2\n2020-01-02,1,2,1,2\n")
    line = refused(cli("backtest", "--strategy", SMA, "--data", data), str(data),
                   "row 2 has 5 fields but the header names 4 columns")   # (hunt26 F1: before, the cut rows)
    assert "ParserWarning" not in line


def _main_with(monkeypatch, capsys, effect):
    import warnings

    from metaflow_nb import cli as cli_mod

    def command(args):
        warnings.warn("a third-party warning", UserWarning)
        return effect()

    monkeypatch.setattr(cli_mod, "_cmd_backtest", command)
    with warnings.catch_warnings(record=True) as shown:  # what main() lets through
        warnings.simplefilter("always")
        code = cli_mod.main(["backtest", "--strategy", str(SMA)])
    return code, capsys.readouterr(), [str(w.message) for w in shown]


@pytest.mark.parametrize("exc", [RecursionError("maximum recursion depth exceeded"),
                                 OverflowError("int too big to convert"), MemoryError(),
                                 NotADirectoryError(20, "Not a directory", "a/b")])
def test_backstop_errors_are_one_line(monkeypatch, capsys, exc):
    def boom():
        raise exc
    code, out, shown = _main_with(monkeypatch, capsys, boom)
    assert code == 2 and shown == []
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metaflow-nb: error: "), out.err
    assert type(exc).__name__ in lines[0] or "a/b: Not a directory" in lines[0]


def test_warnings_of_a_command_that_works_are_shown_after_it(monkeypatch, capsys):
    code, out, shown = _main_with(monkeypatch, capsys, lambda: print("result") or 0)
    assert code == 0 and out.out == "result\n" and shown == ["a third-party warning"]


def test_recursion_in_an_option():
    refused(cli("check-causality", "atr", "--data", "sp500_daily", "--params", "[" * 100_000),
            "RecursionError")


# ------------------------------------------------------------------ the results store

@pytest.fixture()
def stored_sweep(tmp_path):
    """A finished 3-run sweep with its store, run in-process on the general path."""
    import metaflow_nb as mf

    cfg = optimization(tmp_path, "        fast: {start: 5, end: 15, step: 5}\n")
    out = tmp_path / "out"
    res = mf.optimize(cfg, backend="sequential", out=out, progress=False)
    return cfg, out, res.all_results.drop(columns=["duration_s"])


BAD_RECORDS = {
    "a list": b"[1, 2]",                                          # AttributeError before
    "no run_id": b'{"status": "ok"}',                             # KeyError before
    "metrics not an object": b'{"run_id": "x", "spec_hash": "KEY", "status": "ok", "metrics": [1]}',
    "a boolean metric": b'{"run_id": "x", "spec_hash": "KEY", "status": "ok", "metrics": {"total_trades": true}}',
    "another key": b'{"run_id": "x", "spec_hash": "00", "status": "ok", "metrics": {}}',
    "not UTF-8": b"\xff\xfe\x00garbage",
    "nested without end": b"[" * 100_000,
}


@pytest.mark.parametrize("engine", ["batch", "general"])
def test_bad_records_are_computed_again_on_resume(stored_sweep, engine):
    from metaflow_nb.services.optimization import OptimizationService
    from metaflow_nb.services.store import StoreWarning

    cfg, out, first = stored_sweep
    import fault_plugins as fp
    records = fp.store_records(out)
    assert len(records) == 3
    kinds = list(BAD_RECORDS)
    kinds = kinds[:3] if engine == "batch" else kinds[3:6]
    for key, kind in zip(records, kinds):  # "not UTF-8" goes in a file of the earlier layout
        fp.put_raw_record(out, key, BAD_RECORDS[kind].replace(b"KEY", key.encode()))
    with pytest.warns(StoreWarning) as caught:
        res = OptimizationService().run(cfg, out=out, resume=True, engine=engine, progress=False,
                                        backend="loky" if engine == "batch" else "sequential")
    assert len(caught) == 3 and all("computed again" in str(w.message) for w in caught)
    assert res.all_results.drop(columns=["duration_s"]).equals(first)
    again = OptimizationService().run(cfg, out=out, resume=True, backend="sequential", progress=False)
    assert again.all_results.drop(columns=["duration_s"]).equals(first)  # rewritten, valid


STALE_RECORDS = {   # each read back before: rows of NaN, or a run id that was not its own (hunt16 F3)
    "a metric missing": b'{"run_id": "RID", "spec_hash": "KEY", "status": "ok", "metrics": {"total_trades": 3}}',
    "no metrics": b'{"run_id": "RID", "spec_hash": "KEY", "status": "ok", "metrics": {}}',
    "another run id": None,   # the stored record with run_id 0000000000000000
}


@pytest.mark.parametrize("engine", ["batch", "general"])
def test_stale_or_foreign_records_are_computed_again_on_resume(stored_sweep, engine):
    import json

    import fault_plugins as fp

    from metaflow_nb.services.optimization import OptimizationService
    from metaflow_nb.services.store import ResultsStore, StoreWarning

    cfg, out, first = stored_sweep
    records = fp.store_records(out)
    held = ResultsStore(out / "store")
    for key, (kind, raw) in zip(records, STALE_RECORDS.items()):
        if raw is None:
            raw = json.dumps({**held.get(key), "run_id": "0" * 16}).encode()
        fp.put_raw_record(out, key, raw.replace(b"KEY", key.encode()).replace(b"RID", key[:16].encode()))
    with pytest.warns(StoreWarning) as caught:
        res = OptimizationService().run(cfg, out=out, resume=True, engine=engine, progress=False,
                                        backend="sequential")
    assert len(caught) == 3 and all("computed again" in str(w.message) for w in caught)
    assert res.all_results.drop(columns=["duration_s"]).equals(first)


def test_bad_store_files_on_resume_from_the_cli(stored_sweep):
    cfg, out, first = stored_sweep
    import json

    import fault_plugins as fp
    import pyarrow as pa
    import pyarrow.parquet as pq

    from metaflow_nb.engine.codes import ENGINE_REVISION
    from metaflow_nb.services.store import ResultsStore

    records = fp.store_records(out)
    fp.put_raw_record(out, records[0], BAD_RECORDS["nested without end"])
    store = ResultsStore(out / "store")
    store.drop([records[1]])
    os.mkfifo(out / "store" / "runs" / "0-pipe.parquet")  # a pipe among the segments: never opened
    good = json.dumps({**store.get(records[2]), "engine": ENGINE_REVISION})  # as put() stamps it
    bad = pa.table({"spec_hash": [records[2]], "record": [good], "has_returns": [True], "days_ref": ["d"],
                    "days": pa.array([[1, 2]], pa.list_(pa.int64())),
                    "daily_returns": pa.array([["a", "b"]], pa.list_(pa.string()))})  # the wrong type
    pq.write_table(bad, out / "store" / "runs" / "99999999999999999999-0-bad.parquet")
    proc = cli("optimize", cfg, "--no-progress", "--backend", "sequential", "--out", out, "--resume", "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("StoreWarning") == 2, proc.stderr
    assert "not a JSON run record" in proc.stderr and "expected a 1-D numeric array" in proc.stderr
    # each one line, once, without a source line of the library (hunt31 F4)
    said = [line for line in proc.stderr.splitlines() if "StoreWarning" in line]
    assert len(said) == 2 and all(line.startswith("metaflow-nb: StoreWarning: ") for line in said), proc.stderr
    assert not any(line.startswith("  ") for line in proc.stderr.splitlines()), proc.stderr
    import json
    assert json.loads(proc.stdout)["successful_runs"] == 3


def test_a_reader_that_goes_away_is_no_bad_input():
    """| head or a pager quitting early closed stdout: it printed 'metaflow-nb: error:
    Broken pipe' and exited 2, the bad-input code. Now: no error line, a SIGPIPE status."""
    import subprocess
    import sys as _sys

    p = subprocess.Popen([_sys.executable, "-m", "metaflow_nb.cli", "data", "sp500_daily"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()            # the reader goes away before the first line
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == "", err


@pytest.mark.parametrize("source, expected", [
    ("abc", "data.source: unknown sample 'abc': not a bundled sample nor an existing file"),
    ("", "data.source: String should have at least 1 character"),
])
def test_an_operations_bad_source_names_the_operation_and_the_key(tmp_path, capsys, source, expected):
    """An unknown sample named neither the operation file nor data.source, and an empty
    source was reported as 'is a directory' (hunt14 F6)."""
    from metaflow_nb.cli import main as cli_main

    op = tmp_path / "op.yaml"
    op.write_text(f"name: x\ndata: {{source: '{source}'}}\n")
    assert cli_main(["backtest", "--strategy", "config/runs/sma_cross.yaml", "--operation", str(op)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"metaflow-nb: error: {op}: {expected}"), err


def test_a_basket_operation_without_its_instruments_says_so(tmp_path, capsys):
    """mode / max_positions / rank without instruments: or universe: read as unknown keys
    of one instrument's operation (hunt14 F8)."""
    from metaflow_nb.cli import main as cli_main

    op = tmp_path / "op.yaml"
    op.write_text("name: x\nmode: portfolio\nmax_positions: 5\ndata: {source: sp500_daily}\n")
    assert cli_main(["backtest", "--strategy", "config/runs/sma_cross.yaml", "--operation", str(op)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"metaflow-nb: error: {op}: mode: a basket's key, but the operation lists no instruments: or universe:"), err


@pytest.mark.parametrize("body", ["name: x\ndata: {calendar: fx_24x5}\ncash: 1000\n", "name: x\ncash: 1000\n"])
def test_an_operation_without_its_data_source_is_refused(tmp_path, capsys, body):
    """An operation file without data.source (or without data:) ran on the bundled S&P 500
    sample, silently, under its own clock and calendar (hunt14 F3). A data override
    (``--data``, ``data=``) is its source; the default operation keeps its sample."""
    import metaflow_nb as mf
    from metaflow_nb.cli import main as cli_main

    op = tmp_path / "op.yaml"
    op.write_text(body)
    assert cli_main(["backtest", "--strategy", "config/runs/sma_cross.yaml", "--operation", str(op)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"metaflow-nb: error: {op}: data.source: required key is missing; expected a bundled sample"), err
    assert len(mf.backtest(SMA, op, data="sp500_daily").equity) == 5031
    assert len(mf.backtest(SMA).equity) == 5031


@pytest.mark.parametrize("where, value", [("strategy", "1"), ("strategy", "0.0"), ("strategy", "'no'"),
                                          ("operation", "'yes'"), ("operation", "1")])
def test_a_number_or_a_word_is_no_boolean(tmp_path, capsys, where, value):
    """A boolean is never a number, nor the reverse: ``require_structure_break: 1`` and a
    quoted ``"no"`` ran as true and false, and a sweep's best params showed 1 where the
    blueprint means true (hunt14 F7)."""
    import yaml
    from metaflow_nb.cli import main as cli_main

    st, op = ROOT / "config/runs/ict_smc_strategy.yaml", ROOT / "config/operations/ict_backtest.yaml"
    if where == "strategy":
        doc = yaml.safe_load(st.read_text())
        doc["workforce"]["opportunity_workers"][0]["params"]["require_structure_break"] = yaml.safe_load(value)
        st = tmp_path / "st.yaml"
        st.write_text(yaml.safe_dump(doc))
        key = "workforce.opportunity_workers[0].params.require_structure_break"
    else:
        doc = yaml.safe_load(op.read_text())
        doc["finalize_trades"] = yaml.safe_load(value)
        doc["data"]["source"] = "eurusd_15m"
        op = tmp_path / "op.yaml"
        op.write_text(yaml.safe_dump(doc))
        key = "finalize_trades"
    assert cli_main(["backtest", "--strategy", str(st), "--operation", str(op)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    bad = st if where == "strategy" else op
    assert len(err) == 1 and err[0].startswith(f"metaflow-nb: error: {bad}: {key}: expected true or false"), err
    assert err[0].count("(got ") == 1, err   # said once (hunt21 F4: "(got 'yes') (got 'yes')")


def _listener(reply: bytes = b""):
    """A local TCP service that accepts and sends ``reply`` (nothing: it stays silent)."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    held = []

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            held.append(c)
            if reply:
                c.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return srv, f"tcp://127.0.0.1:{srv.getsockname()[1]}"


def test_a_scheduler_address_that_is_no_dask_scheduler_is_bad_input(capsys, monkeypatch):
    """--scheduler 'bogus' was a 64-line traceback, an HTTP service a MemoryError of 3 EiB,
    and a service that accepts and stays silent hung the CLI (hunt16 F4)."""
    pytest.importorskip("distributed")
    import time

    from metaflow_nb.cli import main as cli_main
    from metaflow_nb.services import parallel

    monkeypatch.setattr(parallel, "SCHEDULER_TIMEOUT_S", 2.0)
    silent, silent_at = _listener()
    http, http_at = _listener(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    try:
        for address, expected in (("bogus", "missing port number"), ("notaproto://x:1", "unknown address scheme"),
                                   (silent_at, "no dask scheduler answered within 2 s"),
                                   (http_at, "speaks no dask protocol")):   # hunt113 F4: not a MemoryError
            t0 = time.monotonic()
            assert cli_main(["optimize", "config/optimizations/sma_grid.yaml", "--backend", "dask",
                             "--scheduler", address, "--no-progress"]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith(f"metaflow-nb: error: --scheduler {address!r}: ") \
                and expected in err[0], err
            assert time.monotonic() - t0 < 30
    finally:
        silent.close()
        http.close()


def test_a_silent_scheduler_named_in_python_is_named_as_written(monkeypatch):
    """hunt96 F5: a cluster named by ``scheduler=`` that did not answer was reported as
    ``--scheduler ...``, a flag the notebook never used."""
    pytest.importorskip("distributed")
    import metaflow_nb as mf
    from metaflow_nb.errors import ConfigError
    from metaflow_nb.services import parallel

    monkeypatch.setattr(parallel, "SCHEDULER_TIMEOUT_S", 1.0)
    silent, silent_at = _listener()
    try:
        with pytest.raises(ConfigError, match=f"^scheduler={silent_at!r}: no dask scheduler answered within 1 s"):
            mf.optimize(str(ROOT / "config/optimizations/sma_grid.yaml"), scheduler=silent_at, progress=False)
    finally:
        silent.close()


def test_exponents_in_yaml_are_numbers(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-4 and 1.0e308 as text, which the numeric policy refuses now
    # that a quoted number is no number; YAML 1.2 and every reader of these files take floats
    import metaflow_nb as mf
    from metaflow_nb.config.loading import read_yaml

    doc = read_yaml(write(tmp_path, "n.yaml", "a: 1e-4\nb: 2E5\nc: -3.5e+2\nd: .5e1\ne: '1e-4'\nf: 1e\n"))
    assert doc == {"a": 0.0001, "b": 200000.0, "c": -350.0, "d": 5.0, "e": "1e-4", "f": "1e"}
    specs = mf.build_specs(SMA, operation(tmp_path, "commission: 1e-4\ncash: 1e5\n"))
    assert (specs.commission, specs.cash) == (0.0001, 100000.0)


def test_a_trade_start_after_the_last_bar_is_refused_like_an_end_before_the_first(tmp_path):
    # hunt26 F4: 0 trades, exit 0 (the same mistake in end gets "no rows between ...")
    op = write(tmp_path, "op.yaml", "name: o\ndata: {source: sp500_daily, trade_start: '2030-01-01'}\n")
    refused(cli("backtest", "--strategy", SMA, "--operation", op), "sp500_daily",
            "data.trade_start 2030-01-01 is after the last bar (2018-12-31")


@pytest.mark.parametrize("args, names", [
    # hunt49 F3: '' was read as no value (backtest wrote nothing, report wrote into the working folder)
    (("--out", ""), ("--out: empty", "expected a value")),
    (("--trades-csv", " "), ("--trades-csv: empty",)),
    (("--timezone", ""), ("--timezone: empty",)),
    # hunt49 F5: errors of flags blamed '<default operation>: data.timezone', a key the user never wrote
    (("--timezone", "Mars/Base"), ("--timezone 'Mars/Base'", "unknown timezone")),
    (("--start", "2010-01-01", "--end", "2005-01-01"), ("--start 2010-01-01 is after --end 2005-01-01",)),
    (("--intrabar", "/no/such/finer.csv"), ("--intrabar /no/such/finer.csv", "no such file")),
])
def test_flag_values_are_checked_as_flags(args, names):
    refused(cli("backtest", "--strategy", SMA, "--data", "sp500_daily", *args), *names)


def test_an_empty_report_out_is_refused_not_the_working_folder(tmp_path):
    r = cli("report", SMA, "--data", "sp500_daily", "--out", "", cwd=tmp_path)
    refused(r, "--out: empty")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, names", [
    # hunt49 F4: flags that do not apply were accepted and ignored without a word
    (("report", "--verify", "reports/none", "--zip"), ("--zip", "report --verify reads a report")),
    (("report", "--verify", "reports/none", "--operation", "x.yaml"), ("--operation", "report --verify reads a report")),
    (("report", SMA, "--data", "sp500_daily", "--zip"), ("--zip", "a strategy's page")),
    (("report", SMA, "--data", "sp500_daily", "--workers", "3"), ("--workers", "a strategy's page")),
    (("optimize", "config/optimizations/sma_grid.yaml", "--scheduler", "tcp://127.0.0.1:1", "--backend", "loky"),
     ("--scheduler", "--backend loky")),
    # hunt51 F6: blamed 'optimization_config.parallel.engine', a key the config does not set
    (("optimize", "config/optimizations/sma_grid.yaml", "--backend", "dask", "--engine", "batch"),
     ("--engine batch", "--backend dask")),
    # variants ran again on --resume without a word (a variant keeps its whole result, not a record)
    (("variants", "config/variants/exit_strategy_test.yaml", "--out", "/tmp/never-written", "--resume"),
     ("--resume", "variants run again")),
])
def test_flags_that_do_not_apply_are_named(args, names):
    refused(cli(*args), *names)


@pytest.mark.parametrize("args, names", [
    # hunt49 F8: a repeated flag kept its last value without a word (--data eurusd_15m ran sp500_daily)
    (("backtest", "--strategy", SMA, "--data", "eurusd_15m", "--data", "sp500_daily"),
     ("--data given twice", "'eurusd_15m'", "'sp500_daily'")),
    (("backtest", "--strategy", SMA, "--strategy", SMA, "--data", "sp500_daily"), ("--strategy given twice",)),
    (("optimize", "config/optimizations/sma_grid.yaml", "--workers", "1", "--workers=2"), ("--workers given twice",)),
    # ... and a key written twice in --params JSON (a YAML config refuses it)
    (("check-causality", "atr", "--params", '{"period": 5, "period": 6}'), ("--params", "'period' written twice")),
    # hunt49 F10: numeric flags fit in int64, as config numbers do
    (("optimize", "config/optimizations/sma_grid.yaml", "--max-combinations", "99999999999999999999999"),
     ("--max-combinations", "99999999999999999999999")),
    (("check-causality", "atr", "--seed", "99999999999999999999999"), ("--seed", "99999999999999999999999")),
    (("check-causality", "atr", "--cuts", "99999999999999999999"), ("--cuts", "99999999999999999999")),
    # hunt49 F7: an --out that cannot be made was named without the flag, and after the run
    (("backtest", "--strategy", SMA, "--data", "sp500_daily", "--out", "/proc/forbidden"),
     ("--out /proc/forbidden", "cannot be made")),
    (("optimize", "config/optimizations/sma_grid.yaml", "--out", "/proc/forbidden/deeper"),
     ("--out /proc/forbidden/deeper", "cannot be made")),
])
def test_flags_repeated_oversized_or_unwritable_are_refused(args, names):
    proc = cli(*args)
    # argparse's own errors read "metaflow-nb <verb>: ...", the checks' "metaflow-nb: error: ..."
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metaflow-nb"), proc.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])


def test_a_command_for_another_config_kind_reads_well():
    # hunt49 F11: "needs a optimization_config file"
    line = refused(cli("optimize", "config/variants/exit_strategy_test.yaml"), "needs an optimization_config file")
    assert " a optimization" not in line


@pytest.mark.parametrize("env, said", [({"NUMBA_NUM_THREADS": "0"}, "NUMBA_NUM_THREADS='0'"),
                                       ({"NUMBA_THREADING_LAYER": "nope"}, "NUMBA_THREADING_LAYER='nope'")])
def test_a_bad_numba_thread_setting_is_exit_2_with_one_line(env, said):
    """hunt51 F5: numba's 40-line traceback and exit 1 (the status of "every run failed")."""
    proc = subprocess.run([sys.executable, "-m", "metaflow_nb.cli", "backtest", "--strategy", SMA, "--data",
                           "sp500_daily"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    refused(proc, said, "numba cannot start its threads")


def test_an_out_that_is_a_dangling_link_says_so(tmp_path):
    """A --out that is a symbolic link to nothing said 'File exists' (the folder could not be
    made where the link is): it names the link and where it points."""
    from metaflow_nb.services.names import folder_problem

    link = tmp_path / "latest"
    link.symlink_to(tmp_path / "gone")
    for value in (link, link / "deeper"):
        why = folder_problem(value)
        assert why == (f"{link} is a symbolic link to {tmp_path / 'gone'}, which does not exist; expected a "
                       "folder (or a path to create one)"), why
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    assert folder_problem(loop) == f"{loop} is a loop of symbolic links; expected a folder (or a path to create one)"


def test_a_full_disk_leaves_no_cut_results_file_and_names_the_file(tmp_path):
    """hunt61 F3: a full disk (here a file-size limit) while writing all_results.csv left
    the file cut mid-row (a whole one from before replaced by it) and said 'File too large'
    naming no file. Output files are written whole or not at all, and the error names one."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "all_results.csv").write_text("the whole table of an earlier run\n")
    limit = 4096
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
            "from metaflow_nb.cli import main\n"
            f"sys.exit(main(['optimize', 'config/optimizations/sma_grid.yaml', '--out', {str(out)!r}, '--json']))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    # the results are printed all the same, and the file is named (hunt87 F1: they were lost)
    assert json.loads(proc.stdout)["total_runs"] == 40
    line = [ln for ln in proc.stderr.strip().splitlines() if "OutputWarning" in ln][-1]
    assert line.startswith(f"metaflow-nb: OutputWarning: {out / 'all_results.csv'}: File too large"), line
    assert (out / "all_results.csv").read_text() == "the whole table of an earlier run\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_a_store_path_that_is_a_file_is_named(tmp_path):
    """hunt61 F4: --out DIR whose DIR/store is a file said 'File exists'."""
    out = tmp_path / "d"
    out.mkdir()
    (out / "store").write_text("hi")
    line = refused(cli("optimize", "config/optimizations/sma_grid.yaml", "--out", str(out), "--resume"))
    assert f"{out / 'store'}: is a file; expected the results store's folder" in line, line


def test_a_take_profit_beyond_any_price_is_a_config_error():
    """hunt64 F6: take_profit_pct 1e308 passed validation and failed the run mid-way
    ('target of the setup at bar 28 is -inf'), naming no file or key."""
    import metaflow_nb as mf
    from metaflow_nb.errors import ConfigError

    specs = mf.build_specs(ROOT / "config/runs/sma_cross_long_stops.yaml", data="sp500_daily")
    with pytest.raises(ConfigError, match=r"exit_planning\[0\]\.params\.take_profit_pct: must be <= 1000000"):
        specs.with_params("stops_1", {"take_profit_pct": 1e308})
    assert specs.with_params("stops_1", {"take_profit_pct": 5000.0}).params("stops_1")["take_profit_pct"] == 5000.0


@pytest.mark.parametrize("verb, base", [("optimize", "config/optimizations/sma_grid.yaml"),
                                        ("walk-forward", "config/walk_forward/fvg_walk_forward.yaml"),
                                        ("variants", "config/variants/exit_rules_eurusd.yaml")])
def test_a_config_file_cannot_name_a_dask_scheduler(tmp_path, capsys, monkeypatch, verb, base):
    """hunt76 F1: ``parallel: {backend: dask, scheduler: tcp://...}`` in a mailed config made
    the researcher's process connect to that cluster and unpickle what its workers sent
    back: code the user never declared ran in their process (and their data went there).
    A cluster is named by the user: ``--scheduler`` or ``scheduler=`` in Python; a config
    file naming one is exit 2 naming the key, before any connection."""
    import yaml

    import metaflow_nb as mf
    from metaflow_nb.cli import main as cli_main
    from metaflow_nb.errors import ConfigError
    from metaflow_nb.services import parallel

    calls = []
    monkeypatch.setattr(parallel, "connect_scheduler", lambda address, timeout=None: calls.append(address))
    doc = yaml.safe_load((ROOT / base).read_text())
    root = next(iter(doc))
    for key in ("base_strategy", "base_operation"):
        if key in doc[root]:
            doc[root][key] = str(ROOT / doc[root][key])
    doc[root]["parallel"] = {"backend": "dask", "scheduler": "tcp://127.0.0.1:8799"}
    cfg = tmp_path / "mailed.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    assert cli_main([verb, str(cfg), "--no-progress", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{root}.parallel.scheduler" in err[0] and "--scheduler" in err[0], err
    assert calls == [] and not (tmp_path / "out").exists()
    api = {"optimize": mf.optimize, "walk-forward": mf.walk_forward, "variants": mf.compare_variants}[verb]
    with pytest.raises(ConfigError, match="parallel.scheduler"):
        api(cfg, progress=False)
    assert calls == []


def test_the_python_verbs_take_a_scheduler_as_the_cli_does():
    """With ``parallel.scheduler`` refused in files (hunt76 F1), ``scheduler=`` is how a
    notebook names its cluster: it selects the dask backend and is refused beside another."""
    pytest.importorskip("distributed")
    import metaflow_nb as mf
    from metaflow_nb.errors import ConfigError

    for verb, cfg in ((mf.optimize, "config/optimizations/sma_grid.yaml"),
                      (mf.walk_forward, "config/walk_forward/fvg_walk_forward.yaml"),
                      (mf.compare_variants, "config/variants/exit_rules_eurusd.yaml")):
        # named as the caller wrote it (hunt81 F3: the API's caller was told about --scheduler)
        with pytest.raises(ConfigError, match="^scheduler='bogus': missing port number"):
            verb(str(ROOT / cfg), scheduler="bogus", progress=False)
        with pytest.raises(ConfigError, match="^scheduler=8786: expected a dask scheduler address"):
            verb(str(ROOT / cfg), scheduler=8786, progress=False)
        # hunt96 F5: an empty address, one with blanks around it
        with pytest.raises(ConfigError, match="^scheduler='': empty; expected a dask scheduler address"):
            verb(str(ROOT / cfg), scheduler="", progress=False)
        with pytest.raises(ConfigError, match="^scheduler='tcp://127.0.0.1:8786 ': blanks around the address"):
            verb(str(ROOT / cfg), scheduler="tcp://127.0.0.1:8786 ", progress=False)
        with pytest.raises(ConfigError, match="backend 'loky' runs here"):
            verb(str(ROOT / cfg), scheduler="tcp://127.0.0.1:1", backend="loky", progress=False)


@pytest.mark.parametrize("key, spec", [("end", {"start": 5, "end": 10 ** 23, "step": 10 ** 23 - 10}),
                                       ("step", {"start": 5, "end": 50, "step": 10 ** 23}),
                                       ("start", {"start": -(10 ** 23), "end": 50, "step": 5})])
def test_a_range_bound_beyond_int64_is_bad_input(tmp_path, capsys, key, spec):
    """hunt76 F3: a range's bounds were kept as floats, so ``end: 99999999999999999999999``
    passed the int64 rule that ``values: [...]`` obeys and came back as a failed row (or a
    step that large as a silent grid of one value). Exit 2 naming the key, as for values."""
    import yaml

    from metaflow_nb.cli import main as cli_main

    doc = {"optimization_config": {"name": "big", "base_strategy": str(ROOT / "config/runs/sma_cross.yaml"),
                                   "base_operation": str(ROOT / "config/operations/sp500_daily.yaml"),
                                   "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": spec}}]}}
    cfg = tmp_path / "big.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    assert cli_main(["optimize", str(cfg), "--no-progress", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"parameter_space[0].parameters.fast.{key}: " in err \
        and "int64" in err, err


def test_ctrl_c_while_a_config_is_resolved_is_a_keyboard_interrupt(monkeypatch):
    """Ctrl-C inside pydantic's serializer of a blueprint reached a notebook as a
    ``PydanticSerializationError`` ("Error calling function ...: KeyboardInterrupt");
    it is the KeyboardInterrupt it was."""
    from pydantic_core import PydanticSerializationError

    import metaflow_nb as mf
    from metaflow_nb.config import buildspecs

    class Dumps:
        def model_dump(self, **kw):
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as exc:
                raise PydanticSerializationError("Error calling function `_unset_left_out`: KeyboardInterrupt: ") \
                    from exc

    real = buildspecs.validate_model
    monkeypatch.setattr(buildspecs, "validate_model",
                        lambda model, tree, origin, *a: Dumps() if model is buildspecs.StrategyBlueprint
                        else real(model, tree, origin, *a))
    with pytest.raises(KeyboardInterrupt):
        mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")


def test_sweeps_starting_together_into_one_new_out_folder_are_not_refused(tmp_path):
    """hunt79 F1: the pre-flight check of ``--out``/``out=`` makes the missing folders, tries
    a file in them and removes them again. Started together (a job array, a notebook's
    thread pool), one caller's ``mkdir`` met the folder another had just made ("File
    exists"), or its cleanup removed a folder the other was about to use ("the file system
    makes no folder there"): sweeps were refused with exit 2 and a false reason."""
    import threading

    from metaflow_nb.services.names import folder_problem

    problems: list = []
    for round_ in range(30):
        target = tmp_path / f"r{round_}" / "a" / "b"
        gate = threading.Barrier(6)

        def check() -> None:
            gate.wait()
            why = folder_problem(target)
            if why:
                problems.append(why)

        threads = [threading.Thread(target=check) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert problems == []
    assert folder_problem("/proc/no/such/folder").endswith("(the file system makes no folder there); expected a "
                                                           "folder to write into")


def test_null_for_a_key_with_a_default_says_to_leave_it_out(tmp_path, capsys):
    """hunt83 F3: ``null`` is "unset" for some keys (data.start) and refused by others
    (slippage, seed, a worker's params): the refusal said only "expected a number (got
    None)". It now says how to get the default."""
    from metaflow_nb.cli import main as cli_main

    op = tmp_path / "op.yaml"
    op.write_text("data:\n  source: sp500_daily\ncash: 100000\nslippage: null\n")
    assert cli_main(["backtest", "--strategy", "config/runs/sma_cross.yaml", "--operation", str(op)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "slippage: " in err and "leave the key out for its default" in err, err


def test_a_null_without_a_default_is_not_told_to_leave_the_key_out(tmp_path, capsys):
    """hunt85 F1: the hint went to every refused null, so a required key (instance_id) or a
    list item (values: [null, 5] for an int) was told to leave the key out, which only
    traded the error for another. It goes where the key has a default."""
    import yaml

    from metaflow_nb.cli import main as cli_main

    doc = yaml.safe_load((ROOT / "config/runs/sma_cross.yaml").read_text())
    doc["workforce"]["opportunity_workers"][0]["instance_id"] = None
    st = tmp_path / "st.yaml"
    st.write_text(yaml.safe_dump(doc))
    assert cli_main(["backtest", "--strategy", str(st), "--data", "sp500_daily"]) == 2
    err = capsys.readouterr().err.strip()
    assert "instance_id: " in err and "leave the key out" not in err, err
    doc = yaml.safe_load((ROOT / "config/runs/sma_cross.yaml").read_text())
    doc["workforce"]["opportunity_workers"][0]["params"]["fast"] = None
    st.write_text(yaml.safe_dump(doc))
    assert cli_main(["backtest", "--strategy", str(st), "--data", "sp500_daily"]) == 2
    err = capsys.readouterr().err.strip()
    assert "params.fast: " in err and "leave the key out for its default" in err, err


@pytest.mark.parametrize("how", ["direct", "link"])
def test_a_data_source_in_proc_is_refused_at_once(tmp_path, how):
    """hunt86 F1: ``data.source: /proc/self/pagemap`` (or an ``x.csv`` link to it) passed as
    a regular file of size 0 and was read to its end (~256 GiB) before parsing: every
    command, ``report --verify`` of a mailed manifest included, ran for minutes at full
    CPU. A file that reads on past the size it states is refused at once."""
    from metaflow_nb.errors import DataError

    source = Path("/proc/self/pagemap")
    if how == "link":
        (tmp_path / "x.csv").symlink_to(source)
        source = tmp_path / "x.csv"
    t0 = time.monotonic()
    with pytest.raises(DataError, match="reads on past its size"):
        mf_load(source)
    assert time.monotonic() - t0 < 5
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError) as err:
        mf_load(empty)
    assert "reads on past" not in str(err.value)


def mf_load(source):
    import metaflow_nb as mf
    return mf.load_data(str(source))


# ------------------------------------------------------------------ paths a user cannot have meant

def _one_line(capsys, argv: list[str], *names: str) -> str:
    from metaflow_nb.cli import main
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for name in names:
        assert name in err, (name, err)
    return err


@pytest.mark.parametrize("key,value", [("source", "~nosuchuser_mf/prices.csv"), ("source", "/tmp/a\0b.csv"),
                                       ("intrabar", "~nosuchuser_mf/m15.csv"), ("intrabar", "/tmp/a\0b.csv")])
def test_a_path_of_an_unknown_user_or_with_a_nul_is_a_file_not_found(tmp_path, capsys, key, value):
    """hunt113 F1, F2: '~nosuchuser/...' (pathlib's expanduser raises RuntimeError) and a NUL
    in a path (ValueError: embedded null byte) crashed with exit 1 and a traceback."""
    import yaml
    import metaflow_nb as mf
    from metaflow_nb.errors import MetaflowError

    data = {"source": "sp500_daily", key: value} if key == "intrabar" else {key: value}
    if key == "intrabar":
        data["timeframe"] = "1w"
    op = tmp_path / "op.yaml"
    op.write_text(yaml.safe_dump({"name": "t", "data": data}))
    _one_line(capsys, ["backtest", "--strategy", SMA, "--operation", op], str(op), f"data.{key}")
    with pytest.raises(MetaflowError, match=f"data.{key}"):
        mf.backtest(str(SMA), {"name": "t", "data": data})


def test_flags_and_meta_configs_with_a_path_of_an_unknown_user(tmp_path, capsys):
    import yaml

    _one_line(capsys, ["backtest", "--strategy", SMA, "--data", "~nosuchuser_mf/d.csv"], "~nosuchuser_mf/d.csv")
    _one_line(capsys, ["data", "~nosuchuser_mf/d.csv"], "~nosuchuser_mf/d.csv")
    _one_line(capsys, ["backtest", "--strategy", SMA, "--operation", SP500_OP, "--trades-csv",
                       "~nosuchuser_mf/t.csv"], "--trades-csv")
    cfg = tmp_path / "opt.yaml"
    cfg.write_text(yaml.safe_dump({"optimization_config": {
        "name": "o", "base_strategy": "~nosuchuser_mf/s.yaml", "base_operation": str(SP500_OP),
        "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10]}}]}}))
    _one_line(capsys, ["optimize", cfg], str(cfg), "base_strategy")
    _one_line(capsys, ["report", cfg, "--out", tmp_path / "r"], "base_strategy")


@pytest.mark.parametrize("flag,value", [("--end", "9999-12-31"), ("--start", "0001-01-01")])
def test_a_date_no_run_can_hold_names_its_flag_or_key(tmp_path, capsys, flag, value):
    """hunt113 F3: 9999-12-31 (a common 'no end') passed the date check and failed in the
    loader, naming the sample and asking for a date where one was given."""
    import yaml

    err = _one_line(capsys, ["backtest", "--strategy", SMA, "--operation", SP500_OP, flag, value], flag, value,
                    "1677-09-22 .. 2262-04-11")
    assert "sp500_daily" not in err
    op = tmp_path / "op.yaml"
    op.write_text(yaml.safe_dump({"name": "t", "data": {"source": "sp500_daily", "end": value}}))
    _one_line(capsys, ["backtest", "--strategy", SMA, "--operation", op], str(op), "data.end",
              "1677-09-22 .. 2262-04-11")


def test_a_path_too_long_for_the_system_is_said_in_a_line_of_reasonable_length(tmp_path, capsys):
    """hunt113 F4: a 5,000-character data.source printed all of it ('File name too long')."""
    import yaml

    op = tmp_path / "op.yaml"
    op.write_text(yaml.safe_dump({"name": "t", "data": {"source": "/tmp/" + "x" * 5000 + ".csv"}}))
    err = _one_line(capsys, ["backtest", "--strategy", SMA, "--operation", op], "File name too long", "(5,009 characters)")
    assert len(err) < 400


@pytest.mark.parametrize("key", ["source", "intrabar"])
def test_a_folder_as_a_data_file_names_the_operation_and_its_key(tmp_path, capsys, key):
    """hunt113 F4: data.source: /tmp said '/tmp: is a directory' without the operation or the
    key (a basket's instrument said both)."""
    import yaml

    data = {"source": "sp500_daily", "timeframe": "1w", key: str(tmp_path)} if key == "intrabar" else \
        {key: str(tmp_path)}
    op = tmp_path / "op.yaml"
    op.write_text(yaml.safe_dump({"name": "t", "data": data}))
    _one_line(capsys, ["backtest", "--strategy", SMA, "--operation", op], f"{op}: data.{key}: ", "is a directory")


@pytest.mark.parametrize("verb,root,extra", [
    ("variants", "variant_config", {"variants": [{"name": "a"}, {"name": "b"}]}),
    ("optimize", "optimization_config",
     {"parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10]}}]}),
    ("walk-forward", "walk_forward_config",
     {"parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10]}}],
      "windows": {"in_sample_bars": 300, "out_of_sample_bars": 100}})])
def test_an_inline_base_strategy_of_a_basket_config_is_named_by_its_key(tmp_path, capsys, verb, root, extra):
    """hunt113 F4: a basket variant config's inline base_strategy was said as '<strategy>'."""
    import yaml

    cfg = tmp_path / "meta.yaml"
    cfg.write_text(yaml.safe_dump({root: {"name": "m", "base_strategy": {},
                                          "base_operation": str(ROOT / "config/operations/us_stocks_basket.yaml"),
                                          **extra}}))
    err = _one_line(capsys, [verb, cfg], f"{cfg}: {root}.base_strategy.workforce.opportunity_workers: ")
    assert "<strategy>" not in err
