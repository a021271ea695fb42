"""The plugin registry: a name belongs to one class; the same class re-imported keeps it."""
from __future__ import annotations

import importlib.util
import sys

import pytest

from metaflow_nb.workers.base import OpportunityWorker, get_plugin, register


def test_another_class_cannot_take_a_registered_name():
    get_plugin("sma_cross")  # built-ins register on first use
    with pytest.raises(TypeError, match="'sma_cross' is already registered by SmaCross"):
        @register
        class Impostor(OpportunityWorker):
            name = "sma_cross"


def test_the_same_file_imported_under_two_names_registers_once(tmp_path):
    src = tmp_path / "twice_plugin.py"
    src.write_text(
        "from metaflow_nb.workers.base import OpportunityWorker, register\n"
        "@register\n"
        "class Twice(OpportunityWorker):\n"
        "    name = 'test_registry_twice'\n")
    classes = []
    for module_name in ("twice_plugin", "pkg_alias.twice_plugin"):
        spec = importlib.util.spec_from_file_location(module_name, src)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            classes.append(module.Twice)
    assert classes[0] is not classes[1]
    assert get_plugin("test_registry_twice") is classes[1]
    for name in ("twice_plugin", "pkg_alias.twice_plugin"):
        sys.modules.pop(name, None)


CLASH = '''
import numpy as np
from metaflow_nb.workers.base import ContextWorker, Params, register


@register
class MyAtr(ContextWorker):
    name = "atr"
    Params = Params

    def compute(self, ctx):
        return {"atr": np.ones(ctx.n)}
'''


def test_a_plugin_module_taking_a_built_in_name_is_refused_and_the_built_ins_keep_working(tmp_path):
    """In a fresh process the built-ins are registered lazily: a declared module imported
    first must still meet them, fail in one line (exit 2), and leave them intact."""
    import os
    import subprocess
    import textwrap

    (tmp_path / "clash_name.py").write_text(CLASH)
    strategy = tmp_path / "s.yaml"
    strategy.write_text(textwrap.dedent("""\
        name: t
        direction: long_short
        plugins: [clash_name]
        workforce:
          opportunity_workers:
            - {instance_id: sma_1, plugin: sma_cross, params: {fast: 10, slow: 20}}
        """))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    cli = subprocess.run([sys.executable, "-m", "metaflow_nb.cli", "backtest", "--strategy", str(strategy),
                          "--data", "sp500_daily"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert cli.returncode == 2, cli.stderr
    line = cli.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"metaflow-nb: error: {strategy}: plugins[0]: cannot import 'clash_name'")
    assert "plugin name 'atr' is already registered by Atr (metaflow_nb.workers.context.atr)" in line
    script = textwrap.dedent("""\
        import metaflow_nb as mf
        from metaflow_nb.errors import ConfigError
        try:
            mf.use_plugins("clash_name")
        except ConfigError as exc:
            print("refused:", exc)
        print(mf.build_specs({"name": "t", "workforce": {
            "context_workers": [{"instance_id": "atr_1", "plugin": "atr"}],
            "opportunity_workers": [{"instance_id": "sma_1", "plugin": "sma_cross"}]}},
            data="sp500_daily").workers()[0]["plugin"])
        from metaflow_nb.workers.base import get_plugin
        print(get_plugin("atr").__module__)
        """)
    nb = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert nb.returncode == 0, nb.stderr
    out = nb.stdout.splitlines()
    assert out[0].startswith("refused: ") and "already registered by Atr" in out[0]
    assert out[1:] == ["atr", "metaflow_nb.workers.context.atr"]


def test_a_module_in_the_working_folder_gets_a_path_hint(tmp_path, monkeypatch):
    import os
    import subprocess
    import textwrap

    (tmp_path / "my_cwd_workers.py").write_text("X = 1\n")
    (tmp_path / "s.yaml").write_text(textwrap.dedent("""\
        name: t
        plugins: [my_cwd_workers]
        workforce:
          opportunity_workers:
            - {instance_id: sma_1, plugin: sma_cross}
        """))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cli = subprocess.run([os.path.join(os.path.dirname(sys.executable), "metaflow-nb"), "backtest", "--strategy",
                          "s.yaml", "--data", "sp500_daily"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert cli.returncode == 2, cli.stderr
    assert cli.stderr.strip() == (
        "metaflow-nb: error: s.yaml: plugins[0]: cannot import 'my_cwd_workers': No module named 'my_cwd_workers' "
        "(my_cwd_workers.py is in the working folder, which the metaflow-nb command does not search: run it "
        "with PYTHONPATH=. or install the module)")
    env["PYTHONPATH"] = "."
    ok = subprocess.run([os.path.join(os.path.dirname(sys.executable), "metaflow-nb"), "backtest", "--strategy",
                         "s.yaml", "--data", "sp500_daily"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_a_params_model_that_is_not_a_metaflow_params_is_refused_at_registration():
    """Params models are strict (unknown keys are errors) and frozen: a dataclass crashed
    the translation, a plain pydantic model dropped a misspelt key silently."""
    import dataclasses

    import pydantic

    @dataclasses.dataclass
    class DataParams:
        lookback: int = 20

    class LooseParams(pydantic.BaseModel):
        lookback: int = 20

    for model in (DataParams, LooseParams):
        cls = type("Loose", (OpportunityWorker,), {"name": f"test_loose_{model.__name__}", "Params": model,
                                                   "detect": lambda self, ctx: None})
        with pytest.raises(TypeError, match=rf"Loose\.Params is {model.__name__}; expected a subclass of "
                                            r"metaflow_nb\.workers\.base\.Params"):
            register(cls)


def test_a_reason_taken_by_the_other_kind_names_who_took_it(tmp_path, monkeypatch):
    """hunt58 F2: a threat's reason code that a declared exit planner took first failed the
    threat's module with "is an exit planner's exit reason", naming neither that planner
    nor its module: the author of the threat could not tell where the name was taken."""
    from metaflow_nb.workers.registry import import_plugins
    from metaflow_nb.errors import ConfigError

    (tmp_path / "h58_exit_mod.py").write_text(
        "from metaflow_nb.workers.base import ExitPlanner, register\n"
        "@register\n"
        "class TakesIt(ExitPlanner):\n"
        "    name = 'h58_takes_it'\n"
        "    reasons = ('H58_HIGH_VOL',)\n"
        "    def plan(self, ctx, opps, entry):\n"
        "        raise NotImplementedError\n")
    (tmp_path / "h58_threat_mod.py").write_text(
        "import numpy as np\n"
        "from metaflow_nb.workers.base import ContextWorker, ThreatWorker, register\n"
        "@register\n"
        "class Before(ContextWorker):\n"
        "    name = 'h58_before'\n"
        "    def compute(self, ctx):\n"
        "        return {'x': ctx.close.copy()}\n"
        "@register\n"
        "class Wants(ThreatWorker):\n"
        "    name = 'h58_wants'\n"
        "    reasons = ('H58_HIGH_VOL',)\n"
        "    def mask(self, ctx):\n"
        "        return np.zeros(ctx.n, np.int8)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import_plugins(["h58_exit_mod"])
    with pytest.raises(ConfigError) as err:
        import_plugins(["h58_threat_mod"], where="s.yaml: plugins")
    msg = str(err.value)
    assert "\n" not in msg and "is an exit planner's exit reason" in msg
    assert "h58_takes_it" in msg and "h58_exit_mod" in msg, msg
    # hunt58 F3: the module failed to load, so none of its workers is registered
    with pytest.raises(KeyError):
        get_plugin("h58_before")


def test_a_fixed_package_registers_what_its_modules_that_stayed_imported_hold(tmp_path, monkeypatch):
    """hunt63 F2: the all-or-nothing rollback of a failed plugin import (hunt58 F3) also
    dropped the workers of modules that stayed imported (a package's submodule imported
    before the failing one, a helper module): they were lost for good once the file was
    fixed, since Python does not import a module twice. Only the workers of modules the
    failure left unimported go; and the reason codes they took are free again (F5)."""
    import importlib

    from metaflow_nb.errors import ConfigError
    from metaflow_nb.workers.registry import import_plugins

    pkg = tmp_path / "h63pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import good\nfrom . import bad\n")
    (pkg / "good.py").write_text(
        "from metaflow_nb.workers.base import ContextWorker, register\n"
        "@register\n"
        "class Good(ContextWorker):\n"
        "    name = 'h63_good'\n"
        "    def compute(self, ctx):\n"
        "        return {'x': ctx.close.copy()}\n")
    (pkg / "bad.py").write_text(
        "import numpy as np\n"
        "from metaflow_nb.workers.base import ThreatWorker, register\n"
        "@register\n"
        "class Gate(ThreatWorker):\n"
        "    name = 'h63_gate'\n"
        "    reasons = ('H63_BACK_INSIDE',)\n"
        "    def mask(self, ctx):\n"
        "        return np.zeros(ctx.n, np.int8)\n"
        "raise RuntimeError('typo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="typo"):
        import_plugins(["h63pkg"])
    with pytest.raises(KeyError):
        get_plugin("h63_gate")   # its module failed: none of its workers stays
    # fixed: the threat is an exit planner now, under the name the failed import had taken
    (pkg / "bad.py").write_text(
        "from metaflow_nb.workers.base import ExitPlanner, register\n"
        "@register\n"
        "class Back(ExitPlanner):\n"
        "    name = 'h63_back'\n"
        "    reasons = ('H63_BACK_INSIDE',)\n"
        "    def plan(self, ctx, opps, entry):\n"
        "        raise NotImplementedError\n")
    importlib.invalidate_caches()
    assert import_plugins(["h63pkg"]) == ("h63pkg",)
    assert get_plugin("h63_good").name == "h63_good" and get_plugin("h63_back").name == "h63_back"


def test_an_endless_plugin_name_is_quoted_short():
    """hunt64 F9: a 100,000-character plugin: name made a 100 KB error line."""
    with pytest.raises(KeyError) as info:
        get_plugin("x" * 100_000)
    assert "x" * 120 not in str(info.value) and "'xxxx" in str(info.value)   # the name quoted short


NOTEBOOK_THREAT = '''
import numpy as np
from metaflow_nb.workers.base import Params, ThreatWorker, register


@register
class CellFilter(ThreatWorker):
    name = "t_cell_filter"
    reasons = ("T_CELL",)
    Params = Params

    def mask(self, ctx):
        return np.full(ctx.n, {value}, dtype=np.int8)
'''


def _cell(source: str, number: int) -> type:
    """Run ``source`` as ipykernel runs a cell: in a ``__main__`` with no ``__file__``, its
    code named after a cell file that only linecache holds."""
    import linecache
    import types

    name = f"/tmp/ipykernel_0/{number}.py"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    module = types.ModuleType("t_notebook_main")
    sys.modules["t_notebook_main"] = module
    exec(compile(source, name, "exec"), module.__dict__)
    return module.CellFilter


def test_a_class_redefined_in_a_notebook_cell_is_a_new_plugin():
    """hunt67 F2, F3: a threat edited in a notebook cell kept its old masks (cached by name
    and params) and its run id (no code fingerprint: ipykernel's __main__ has no file)."""
    import metaflow_nb as mf
    from metaflow_nb.workers.registry import code_fingerprint

    strategy = {"name": "nb", "workforce": {
        "opportunity_workers": [{"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 10, "slow": 30}}],
        "threat_workers": [{"instance_id": "cell_1", "plugin": "t_cell_filter"}],
        "planning_workers": {"exit_planning": [{"instance_id": "exit_1", "plugin": "reverse_on_opposite"}]}}}
    first = _cell(NOTEBOOK_THREAT.format(value=0), 1)
    fp = code_fingerprint(first)
    assert fp is not None and fp == code_fingerprint(_cell(NOTEBOOK_THREAT.format(value=0), 2))  # same source
    before = mf.backtest(strategy, data="sp500_daily", start="2005", end="2012")
    assert before.metrics["total_trades"] > 0
    edited = _cell(NOTEBOOK_THREAT.format(value=3), 3)    # now every setup is rejected
    assert code_fingerprint(edited) not in (None, fp)
    after = mf.backtest(strategy, data="sp500_daily", start="2005", end="2012")
    assert after.metrics["total_trades"] == 0 and after.run_id != before.run_id
    # the cell is the class's source, as a plugin's module file is: a constant beside it
    # that the class reads counts (hunt71 F3)
    beside = NOTEBOOK_THREAT.replace("{value}", "BLOCK") + "\nBLOCK = {value}\n"
    one, other = _cell(beside.format(value=0), 4), _cell(beside.format(value=3), 5)
    assert code_fingerprint(one) != code_fingerprint(other)


#: a process whose built-in plugins take half a second to start loading: a race made certain
SLOW_BUILTINS = """
import sys, threading, time

class Slow:
    def find_spec(self, name, path=None, target=None):
        if name == "metaflow_nb.workers.builtin":
            time.sleep(0.5)
        return None

sys.meta_path.insert(0, Slow())
"""


def _with_slow_builtins(body: str) -> list[str]:
    """``body`` run after :data:`SLOW_BUILTINS` in a new process: its printed lines."""
    import subprocess
    import textwrap

    out = subprocess.run([sys.executable, "-c", SLOW_BUILTINS + textwrap.dedent(body)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_threads_making_the_first_calls_at_once_all_find_the_built_ins():
    """hunt67 F4: the built-ins were marked loaded before their import had finished, so a
    second thread's first call met an empty registry ("unknown plugin 'sma_cross'; known
    plugins: "). A slow import makes the race certain."""
    assert _with_slow_builtins('''
        from metaflow_nb.workers.registry import get_plugin
        errors = []

        def first_call():
            try:
                get_plugin("sma_cross")
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=first_call) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join()
        print(errors)
    ''') == ["[]"]


def test_a_first_lookup_and_an_import_of_a_built_in_module_at_once_do_not_deadlock(tmp_path):
    """hunt71 F1: the lock of the built-ins' loading was held while they imported, so a
    thread importing a plugin built on a built-in module (holding that module's import
    lock, its @register waiting for the built-ins) and a thread loading them (waiting for
    that module) hung forever. A registration does not wait for the built-ins."""
    (tmp_path / "my_ema.py").write_text("from metaflow_nb.workers.context.ema import *  # noqa\n")
    assert _with_slow_builtins(f'''
        sys.path.insert(0, {str(tmp_path)!r})
        from metaflow_nb.workers.registry import get_plugin
        done = []
        a = threading.Thread(target=lambda: done.append(get_plugin("sma_cross").name), daemon=True)
        b = threading.Thread(target=lambda: (__import__("my_ema"), done.append("my_ema")), daemon=True)
        a.start(); time.sleep(0.1); b.start()
        a.join(30); b.join(30)
        print(sorted(done), get_plugin("ema").name)
    ''') == ["['my_ema', 'sma_cross'] ema"]


@pytest.mark.parametrize("how", ["decorated", "assigned"])
def test_a_cells_class_whose_methods_start_outside_it_is_fingerprinted_by_its_cell(how):
    """hunt75 F2: a method wrapped by a decorator defined in the same cell (without
    functools.wraps), or assigned from a function of the cell, starts outside the class
    statement: the cell was passed over and the class had no fingerprint at all."""
    from metaflow_nb.workers.registry import code_fingerprint

    if how == "decorated":
        cell = ("def timed(f):\n    def inner(*a, **k):\n        return f(*a, **k)\n    return inner\n"
                + NOTEBOOK_THREAT.replace("    def mask(self, ctx):", "    @timed\n    def mask(self, ctx):"))
    else:
        cell = ("import numpy as np\n\ndef _mask(self, ctx):\n    return np.full(ctx.n, {value}, dtype=np.int8)\n"
                + NOTEBOOK_THREAT.split("    def mask(self, ctx):")[0] + "    mask = _mask\n")
    a, b = _cell(cell.format(value=0), 8), _cell(cell.format(value=3), 9)
    assert code_fingerprint(a) is not None and code_fingerprint(a) != code_fingerprint(b)


@pytest.mark.parametrize("wraps", [True, False])
def test_a_cells_class_with_a_decorated_first_method_is_fingerprinted_by_its_cell(tmp_path, monkeypatch, wraps):
    """hunt74 F2: a first method wrapped by a decorator from a module named that module's
    file: every version of the cell had the decorator module's fingerprint."""
    from metaflow_nb.workers.registry import code_fingerprint

    (tmp_path / "t_deco_mod.py").write_text("import functools\n\ndef timed(f):\n"
                                            + ("    @functools.wraps(f)\n" if wraps else "")
                                            + "    def inner(*a, **k):\n        return f(*a, **k)\n    return inner\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cell = NOTEBOOK_THREAT.replace("    def mask(self, ctx):", "    @timed\n    def helper(self):\n"
                                   "        return 1\n\n    def mask(self, ctx):")
    cell = "from t_deco_mod import timed\n" + cell
    a, b = _cell(cell.format(value=0), 6), _cell(cell.format(value=3), 7)
    assert code_fingerprint(a) is not None and code_fingerprint(a) != code_fingerprint(b)


def test_a_built_in_name_is_refused_while_the_built_ins_load_in_another_thread():
    """hunt74 F3: a registration does not wait for the built-ins loading in another thread;
    a class named 'atr' registered then took the name, the built-ins' own registration
    failed, and every later lookup raised. BUILTIN_NAMES knows their names before."""
    from metaflow_nb.workers.registry import _REGISTRY, BUILTIN_NAMES, get_plugin

    get_plugin("sma_cross")
    assert BUILTIN_NAMES == {n for n, c in _REGISTRY.items() if c.__module__.startswith("metaflow_nb.")}
    assert _with_slow_builtins('''
        from metaflow_nb.workers.base import ContextWorker, Params, register
        from metaflow_nb.workers.registry import get_plugin
        t = threading.Thread(target=lambda: get_plugin("sma_cross")); t.start(); time.sleep(0.1)
        try:
            @register
            class MyAtr(ContextWorker):
                name = "atr"
                Params = Params
        except TypeError as exc:
            print(exc)
        t.join()
        print(get_plugin("atr").__module__, get_plugin("market_entry").name)
    ''') == ["plugin name 'atr' is a built-in plugin's; give MyAtr another name",
              "metaflow_nb.workers.context.atr market_entry"]
