"""Where workers come from: entry points, declared modules (``plugins:`` in a strategy or
operation YAML, ``--plugins``, ``mf.use_plugins``), in the main process and in loky and
dask workers; and the rule: a ``"module:Class"`` name imports nothing unless ``module`` is
declared, a manifest never causes an import."""
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
import yaml

import fault_plugins as fp
import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.errors import ConfigError
from metaflow_nb.reporting.manifest import content_sha256
from metaflow_nb.services.formatting import json_safe
from metaflow_nb.services.operation import OperationService
from metaflow_nb.services.optimization import OptimizationService
from metaflow_nb.services.parallel import ParallelRunService
from metaflow_nb.workers import registry


@pytest.fixture(autouse=True)
def _own_session(monkeypatch):
    # declarations for the session are process-wide: each test starts and ends without any
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    monkeypatch.setattr(registry, "_SESSION", [])


def _unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def loud(tmp_path, monkeypatch):
    """An importable module that prints and creates a file when imported: ``(name, marker)``."""
    name, marker = _unique("mf_loud"), tmp_path / "imported.txt"
    (tmp_path / f"{name}.py").write_text(
        f"print('{name} WAS IMPORTED')\nopen({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, marker


def _plugin_module(folder: Path, stem: str = "mf_plug") -> str:
    """A module in ``folder`` registering ``test_<module>`` (sma_cross renamed) as class ``Cross``."""
    name = _unique(stem)
    (folder / f"{name}.py").write_text(
        "from metaflow_nb.workers.base import register\n"
        "from metaflow_nb.workers.opportunity.sma_cross import SmaCross\n"
        "@register\n"
        "class Cross(SmaCross):\n"
        f"    name = 'test_{name}'\n")
    return name


@pytest.fixture
def plug(tmp_path, monkeypatch):
    folder = tmp_path / "plugmods"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return _plugin_module(folder)


def _one_line_error(cap) -> str:
    assert cap.out == "", cap.out
    lines = cap.err.splitlines()
    assert len(lines) == 1, cap.err
    return lines[0]


# ------------------------------------------------------------------ entry points

def _dist_info(site: Path, dist: str, entry_points: str) -> None:
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{entry_points}\n")


def test_entry_point_workers_load_lazily_are_listed_and_run(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    module = _plugin_module(site, "mf_ep")
    _dist_info(site, _unique("mf_ep_dist"), f"demo = {module}")
    monkeypatch.syspath_prepend(str(site))

    mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    assert module not in sys.modules, "a name that is found loads no entry point"
    assert f"test_{module}" in mf.known_plugins("opportunity")
    assert module in sys.modules

    # by name, and by module path without any declaration: the module provides an entry point
    for plugin in (f"test_{module}", f"{module}:Cross"):
        res = mf.backtest(fp.write_blueprint(tmp_path, plugin=plugin), data="sp500_daily")
        assert res.metrics["total_trades"] > 0
        assert res.specs.plugins == ()


def test_entry_point_found_when_a_name_is_missing(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    module = _plugin_module(site, "mf_ep_miss")
    _dist_info(site, _unique("mf_ep_miss_dist"), f"demo = {module}:Cross")
    monkeypatch.syspath_prepend(str(site))
    assert registry.get_plugin(f"test_{module}").__module__ == module


def test_a_broken_entry_point_is_named_and_hides_no_other(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    good = _plugin_module(site, "mf_ep_good")
    broken = _unique("mf_ep_broken")
    (site / f"{broken}.py").write_text("raise RuntimeError('half installed')\n")
    _dist_info(site, _unique("mf_ep_two"), f"a_broken = {broken}\nb_good = {good}")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(KeyError, match=rf"entry point a_broken = {broken} failed to load: RuntimeError: "
                                       r"half installed\); known plugins: "):
        registry.get_plugin("no_such_worker_anywhere")
    assert registry.get_plugin(f"test_{good}").name == f"test_{good}"


# ------------------------------------------------------------------ declarations

def test_strategy_yaml_declares_a_module(tmp_path, plug):
    assert plug not in sys.modules
    bp = fp.write_blueprint(tmp_path, plugin=f"{plug}:Cross", plugins=[plug])
    specs = mf.build_specs(bp, data="sp500_daily")
    assert plug in sys.modules and specs.plugins == (plug,)
    assert specs.entries()[0].plugin == f"{plug}:Cross"
    # by registered name too, and derived specs keep the declaration
    by_name = mf.build_specs(fp.write_blueprint(tmp_path, plugin=f"test_{plug}", plugins=[plug]), data="sp500_daily")
    assert by_name.with_params("sma_1", {"fast": 5}).plugins == (plug,)
    assert mf.backtest(specs).metrics == mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily").metrics


def test_declarations_stay_out_of_the_run_id(tmp_path):
    bundled = mf.build_specs("config/runs/sma_cross.yaml", fp.SP500_OPERATION)
    op = yaml.safe_load(fp.SP500_OPERATION.read_text())
    op_file = fp.write_yaml(tmp_path / "op.yaml", {**op, "plugins": ["declared_plugins"]})
    declared = mf.build_specs(fp.write_blueprint(tmp_path, plugins=["declared_plugins"]), op_file)
    assert declared.plugins == ("declared_plugins",)
    assert declared.run_id == bundled.run_id and declared == bundled
    assert "plugins" not in declared.blueprint and "plugins" not in declared.operation


def test_operation_yaml_declares_a_module(tmp_path, plug):
    op = yaml.safe_load(fp.SP500_OPERATION.read_text())
    op_file = fp.write_yaml(tmp_path / "op.yaml", {**op, "plugins": [plug]})
    specs = mf.build_specs(fp.write_blueprint(tmp_path, plugin=f"{plug}:Cross"), op_file)
    assert specs.plugins == (plug,)
    bad = fp.write_yaml(tmp_path / "bad_op.yaml", {**op, "plugins": ["mf_no_such_module_x"]})
    with pytest.raises(ConfigError) as exc:
        mf.build_specs("config/runs/sma_cross.yaml", bad)
    assert str(exc.value) == f"{bad}: plugins[0]: cannot import 'mf_no_such_module_x': No module named " \
                              f"'mf_no_such_module_x'"


def test_a_declaration_must_be_a_module_name(tmp_path):
    bp = fp.write_blueprint(tmp_path, plugins=["../evil"])
    with pytest.raises(ConfigError) as exc:
        mf.build_specs(bp, data="sp500_daily")
    assert str(exc.value) == (f"{bp}: plugins[0]: not a module name (expected package.module, e.g. "
                              f"my_workers.rsi) (got '../evil')")


def test_a_variant_override_adds_a_declaration(tmp_path, plug):
    base = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    over = {"plugins": [plug], "workforce": {"opportunity_workers": [
        {"instance_id": "sma_1", "plugin": f"{plug}:Cross", "params": {"fast": 10, "slow": 20}}]}}
    v = base.with_overrides(over)
    assert v.plugins == (plug,) and v.entries()[0].plugin == f"{plug}:Cross"
    with pytest.raises(ConfigError, match=rf"module '{plug}' is not declared"):
        base.with_overrides({"workforce": over["workforce"]})


def test_cli_plugins_flag_declares_for_one_command(tmp_path, plug, capsys):
    bp = fp.write_blueprint(tmp_path, plugin=f"{plug}:Cross")
    assert main(["backtest", "--strategy", str(bp), "--data", "sp500_daily", "--plugins", plug, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trades"] > 0
    # the flag declared it for that command only
    assert main(["backtest", "--strategy", str(bp), "--data", "sp500_daily"]) == 2
    assert _one_line_error(capsys.readouterr()) == (
        f"metaflow-nb: error: {bp}: workforce.opportunity_workers[0].plugin: '{plug}:Cross': module '{plug}' "
        f"is not declared; declare it with plugins: [{plug}] (or --plugins {plug})")
    assert main(["backtest", "--strategy", str(bp), "--data", "sp500_daily", "--plugins", "mf_no_such_mod"]) == 2
    assert _one_line_error(capsys.readouterr()) == (
        "metaflow-nb: error: --plugins[0]: cannot import 'mf_no_such_mod': No module named 'mf_no_such_mod'")


def test_a_plugin_printing_on_import_leaves_json_output_alone(tmp_path, monkeypatch, capsys):
    """hunt35 F6: a declared module printing when imported (plugins: [this] prints the Zen
    of Python) broke --json's one JSON object on stdout; its prints go to stderr."""
    name = _unique("mf_chatty")
    folder = tmp_path / "chatty"
    folder.mkdir()
    (folder / f"{name}.py").write_text(
        "print('hello from the plugin')\n"
        "from metaflow_nb.workers.base import register\n"
        "from metaflow_nb.workers.opportunity.sma_cross import SmaCross\n"
        "@register\n"
        "class Cross(SmaCross):\n"
        f"    name = 'test_{name}'\n")
    monkeypatch.syspath_prepend(str(folder))
    bp = fp.write_blueprint(tmp_path, plugin=f"{name}:Cross")
    assert main(["backtest", "--strategy", str(bp), "--data", "sp500_daily", "--plugins", name, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["trades"] > 0 and "hello from the plugin" in err


@pytest.mark.parametrize("command", ["optimize", "variants", "walk-forward", "report", "check-causality"])
def test_every_config_command_takes_plugins(command):
    from metaflow_nb.cli import build_parser
    args = build_parser().parse_args([command, "x.yaml", "--plugins", "a,b.c"])
    assert args.plugins == "a,b.c"


def test_use_plugins_declares_for_the_session(tmp_path, plug):
    bp = fp.write_blueprint(tmp_path, plugin=f"{plug}:Cross")
    with pytest.raises(ConfigError, match="is not declared"):
        mf.build_specs(bp, data="sp500_daily")
    assert mf.use_plugins(plug) == (plug,)
    specs = mf.build_specs(bp, data="sp500_daily")
    assert specs.plugins == (plug,)
    assert mf.backtest(bp, data="sp500_daily").metrics["total_trades"] > 0
    with pytest.raises(ConfigError, match=r"^use_plugins\[0\]: cannot import 'mf_nope_mod': No module named"):
        mf.use_plugins("mf_nope_mod")


def test_a_module_raising_on_import_names_its_file_and_line(tmp_path, monkeypatch):
    """hunt33 F5: a SyntaxError said where; a NameError at import time did not."""
    folder = tmp_path / "raising"
    folder.mkdir()
    (folder / "mf_raises_on_import.py").write_text("import numpy\n\nx = undefined_name + 1\n")
    monkeypatch.syspath_prepend(str(folder))
    with pytest.raises(ConfigError) as exc:
        mf.use_plugins("mf_raises_on_import")
    message = str(exc.value)
    assert message.startswith("use_plugins[0]: cannot import 'mf_raises_on_import': NameError: name "
                              "'undefined_name' is not defined (")
    assert message.endswith("mf_raises_on_import.py:3 in <module>)") and "\n" not in message


# ------------------------------------------------------------------ worker processes

def test_loky_workers_import_the_declared_modules(tmp_path, capsys):
    import declared_plugins  # noqa: F401  (registered here; a fresh worker process knows nothing of it)

    # without the declaration the name resolves here, but not in a worker process
    undeclared = mf.build_specs(fp.write_blueprint(tmp_path, plugin="test_declared_cross"), fp.SP500_OPERATION)
    specs = [undeclared.with_params("sma_1", {"fast": f, "slow": 30}) for f in (5, 7)]
    outs = ParallelRunService(backend="loky", max_workers=2, progress=False).run(specs)
    assert {o.status for o in outs} == {"failed"}
    assert "unknown plugin 'test_declared_cross'" in outs[0].error_message

    # a sweep on loky (general engine: every run in a worker process), declared by --plugins
    bp = fp.write_blueprint(tmp_path, plugin="test_declared_cross")
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 7, 9], [30]), bp)
    assert main(["optimize", str(cfg), "--backend", "loky", "--workers", "2", "--engine", "general",
                 "--plugins", "declared_plugins", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["successful_runs"] == 3, doc
    # and by the strategy YAML, with a module path
    bp = fp.write_blueprint(tmp_path, plugin="declared_plugins:DeclaredCross", plugins=["declared_plugins"],
                            name="declared.yaml")
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 7, 9], [30]), bp, name="opt2.yaml")
    res = OptimizationService().run(cfg, backend="loky", max_workers=2, engine="general", progress=False)
    assert res.successful_runs == 3, res.all_results["error"].tolist()
    seq = OptimizationService().run(cfg, backend="sequential", progress=False)
    assert res.all_results["sharpe_ratio"].tolist() == seq.all_results["sharpe_ratio"].tolist()


@pytest.mark.slow
def test_dask_workers_import_the_declared_modules(tmp_path):
    distributed = pytest.importorskip("distributed")
    bp = fp.write_blueprint(tmp_path, plugin="declared_plugins:DeclaredCross", plugins=["declared_plugins"])
    base = mf.build_specs(bp, fp.SP500_OPERATION)
    specs = [base.with_params("sma_1", {"fast": f, "slow": 30}) for f in (5, 7)]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        outs = ParallelRunService(backend="dask", scheduler=cluster.scheduler_address, progress=False).run(specs)
    assert [o.status for o in outs] == ["ok", "ok"], [o.error_message for o in outs]
    assert [o.metrics for o in outs] == [o.metrics for o in ParallelRunService(backend="sequential",
                                                                               progress=False).run(specs)]


# ------------------------------------------------------------------ the rule

@pytest.mark.parametrize("which", ["this", "loud"])
def test_an_undeclared_module_path_exits_2_and_imports_nothing(tmp_path, loud, capsys, which):
    module = "this" if which == "this" else loud[0]
    was_loaded = module in sys.modules
    bp = fp.write_blueprint(tmp_path, plugin=f"{module}:Nope")
    assert main(["backtest", "--strategy", str(bp), "--data", "sp500_daily"]) == 2
    assert _one_line_error(capsys.readouterr()) == (
        f"metaflow-nb: error: {bp}: workforce.opportunity_workers[0].plugin: '{module}:Nope': module '{module}' "
        f"is not declared; declare it with plugins: [{module}] (or --plugins {module})")
    assert (module in sys.modules) == was_loaded
    assert not loud[1].exists()
    # the same in a meta config, before any run
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 7]), bp)
    assert main(["optimize", str(cfg), "--backend", "sequential"]) == 2
    assert "is not declared" in _one_line_error(capsys.readouterr())
    assert (module in sys.modules) == was_loaded and not loud[1].exists()


# ------------------------------------------------------------------ report --verify

def _manifest(folder: Path, specs, claimed: list[str]) -> Path:
    """A report folder whose manifest records one run of ``specs`` (and claims ``claimed``)."""
    metrics = json_safe(OperationService().run(specs).metrics)
    bp, op = specs.blueprint, specs.operation
    if claimed:
        bp["plugins"] = op["plugins"] = list(claimed)
    run = {"name": "r", "specs_hash": specs.hash, "data_fingerprint": specs.data_fingerprint, "status": "ok",
           "blueprint": bp, "operation": op, **({"plugins": claimed} if claimed else {})}
    content = {"runs": [run], "results": {"r": {"status": "ok", "metrics": metrics}}, "data": []}
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"content": content, "content_sha256": content_sha256(content)}))
    return folder


def test_verify_never_imports_what_a_manifest_names(tmp_path, loud, capsys):
    module, marker = loud
    specs = mf.build_specs("config/runs/sma_cross.yaml", fp.SP500_OPERATION)
    folder = _manifest(tmp_path / "rep", specs, [module])
    assert main(["report", "--verify", str(folder)]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("verify: ok: 1 runs") and "WAS IMPORTED" not in cap.out + cap.err
    assert module not in sys.modules and not marker.exists()


def test_verify_of_an_undeclared_module_path_exits_2(tmp_path, loud, capsys):
    module, marker = loud
    import declared_plugins  # noqa: F401  (the run below is made here, where the module is known)
    specs = mf.build_specs(fp.write_blueprint(tmp_path, plugin="declared_plugins:DeclaredCross",
                                              plugins=["declared_plugins"]), fp.SP500_OPERATION)
    folder = _manifest(tmp_path / "rep", specs, [module, "declared_plugins"])
    assert main(["report", "--verify", str(folder)]) == 2
    assert _one_line_error(capsys.readouterr()) == (
        f"metaflow-nb: error: {folder / 'manifest.json'}: content.runs[0].blueprint.workforce.opportunity_workers[0]"
        f".plugin: 'declared_plugins:DeclaredCross': module 'declared_plugins' is not declared; declare it with "
        f"--plugins declared_plugins; the report declared plugins: {module}, declared_plugins (verify with "
        f"--plugins {module},declared_plugins if you trust them)")
    assert module not in sys.modules and not marker.exists()
    # the verifier's own declaration resolves it; the manifest's other module stays unimported
    assert main(["report", "--verify", str(folder), "--plugins", "declared_plugins"]) == 0
    assert capsys.readouterr().out.startswith("verify: ok: 1 runs")
    assert module not in sys.modules and not marker.exists()


@pytest.mark.parametrize("flag", ["", ",,", " , "])
def test_a_plugins_flag_that_names_no_module_is_refused(flag, capsys):
    """hunt35 F6: a typo that emptied the list declared nothing and said nothing."""
    assert main(["backtest", "--strategy", "config/runs/sma_cross.yaml", "--data", "sp500_daily",
                 "--plugins", flag]) == 2
    assert _one_line_error(capsys.readouterr()) == (
        f"metaflow-nb: error: --plugins {flag!r}: names no module; expected MOD[,MOD...]")
