"""A run id names the plugin code that computed its numbers (hunt89): the code a process
imported, not the file on disk when the id was first asked for; a package's helper
modules count; a worker process that imported other code than the sweep's own process
refuses to run rather than store its numbers under the other code's ids."""
from __future__ import annotations

import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import fault_plugins as fp
import metaflow_nb as mf
from metaflow_nb.workers import registry

WORKERS = """\
from metaflow_nb.workers.base import register
from metaflow_nb.workers.opportunity.sma_cross import SmaCross
from . import helper

@register
class Cross(SmaCross):
    name = "test_{pkg}"
    origin = helper.ORIGIN
"""


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """A plugin package ``<pkg>`` in ``tmp_path/site`` (``workers.py`` beside a ``helper.py``):
    ``(site folder, package name, plugin name)``; importable in this process."""
    name = f"mf_h89_{uuid.uuid4().hex[:10]}"
    site = tmp_path / "site"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text("")
    (site / name / "helper.py").write_text("ORIGIN = 'v1'\n")
    (site / name / "workers.py").write_text(WORKERS.format(pkg=name))
    monkeypatch.syspath_prepend(str(site))
    return site, name, f"test_{name}"


def _fresh_fingerprint(site: Path, module: str, plugin: str) -> str:
    """The fingerprint a new process gives the plugin with the files as they are now."""
    code = (f"import sys; sys.path.insert(0, {str(site)!r})\n"
            "from metaflow_nb.workers import registry\n"
            f"registry.import_plugins([{module!r}])\n"
            f"print(registry.code_fingerprint(registry.get_plugin({plugin!r})))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def test_the_fingerprint_is_of_the_code_imported_not_of_the_file_edited_since(pkg):
    site, name, plugin = pkg
    v1 = _fresh_fingerprint(site, f"{name}.workers", plugin)
    registry.import_plugins([f"{name}.workers"])
    # upgraded in place after the import, before any run asked for the id (hunt89 F1)
    _edit(site / name / "workers.py", "origin = helper.ORIGIN", "origin = helper.ORIGIN + '!'")
    v2 = _fresh_fingerprint(site, f"{name}.workers", plugin)
    here = registry.code_fingerprint(registry.get_plugin(plugin))
    assert v1 != v2 and here == v1


def test_a_helper_module_of_the_package_is_part_of_the_fingerprint(pkg, tmp_path):
    site, name, plugin = pkg
    v1 = _fresh_fingerprint(site, f"{name}.workers", plugin)
    _edit(site / name / "helper.py", "'v1'", "'v2'")
    v2 = _fresh_fingerprint(site, f"{name}.workers", plugin)
    (site / "unrelated.py").write_text("X = 1\n")   # beside the package: not its code
    assert v1 != v2 and _fresh_fingerprint(site, f"{name}.workers", plugin) == v2


def test_a_lone_module_is_fingerprinted_by_its_own_file(tmp_path, monkeypatch):
    folder = tmp_path / "mods"
    folder.mkdir()
    name = f"mf_h89_lone_{uuid.uuid4().hex[:10]}"
    (folder / f"{name}.py").write_text(WORKERS.format(pkg=name).replace("from . import helper\n", "")
                                       .replace("helper.ORIGIN", "'v1'"))
    v1 = _fresh_fingerprint(folder, name, f"test_{name}")
    (folder / "neighbour.py").write_text("X = 1\n")   # the folder is no package: its other files are not the plugin's
    assert _fresh_fingerprint(folder, name, f"test_{name}") == v1


def _run_received(site: Path, pickled: Path) -> str:
    """Unpickle specs in a new process (as a loky or dask worker does) and run them."""
    code = (f"import sys, pickle; sys.path.insert(0, {str(site)!r})\n"
            "import metaflow_nb as mf\n"
            f"specs = pickle.loads(open({str(pickled)!r}, 'rb').read())\n"
            "try:\n"
            "    print('ok', mf.backtest(specs).metrics['total_trades'])\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_a_worker_process_that_imported_other_code_refuses_to_run(pkg, tmp_path):
    site, name, plugin = pkg
    bp = fp.write_blueprint(tmp_path, plugin=plugin, plugins=[f"{name}.workers"])
    specs = mf.build_specs(bp, data="sp500_daily")
    pickled = tmp_path / "specs.pkl"
    pickled.write_bytes(pickle.dumps(specs))
    assert _run_received(site, pickled).startswith("ok ")   # the same code: it runs
    _edit(site / name / "helper.py", "'v1'", "'v2'")       # hunt89 F2: upgraded while the sweep runs
    said = _run_received(site, pickled)
    assert said.startswith(f"PluginError plugin '{plugin}' ({name}.workers): this worker process imported other code "
                           "than the process running the sweep did"), said


def test_a_loky_sweep_after_an_upgrade_in_place_stores_no_other_codes_numbers(pkg, tmp_path):
    site, name, plugin = pkg
    bp = fp.write_blueprint(tmp_path, plugin=plugin, plugins=[f"{name}.workers"])
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10], [40]), bp)
    registry.import_plugins([f"{name}.workers"])
    _edit(site / name / "helper.py", "'v1'", "'v2'")
    res = mf.optimize(cfg, backend="loky", workers=2, engine="general", progress=False)
    frame = res.to_frame()
    assert list(frame["status"]) == ["failed", "failed"]
    assert all("imported other code than the process running the sweep did" in m for m in frame["error"])


def test_run_ids_ask_for_the_plugins_without_warning_about_broken_entry_points(tmp_path, monkeypatch, recwarn):
    """hunt89 F4: every run's id asked for the registry's names, and each time warned about
    every broken entry point installed (three times a command)."""
    site = tmp_path / "eps"
    site.mkdir()
    broken = f"mf_h89_broken_{uuid.uuid4().hex[:10]}"
    (site / f"{broken}.py").write_text("raise RuntimeError('half installed')\n")
    info = site / f"{broken}_dist-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {broken}-dist\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nbad = {broken}\n")
    monkeypatch.syspath_prepend(str(site))
    folder = tmp_path / "mods"
    folder.mkdir()
    name = f"mf_h89_ok_{uuid.uuid4().hex[:10]}"
    (folder / f"{name}.py").write_text(WORKERS.format(pkg=name).replace("from . import helper\n", "")
                                       .replace("helper.ORIGIN", "'v1'"))
    monkeypatch.syspath_prepend(str(folder))
    bp = fp.write_blueprint(tmp_path, plugin=f"test_{name}", plugins=[name])
    for _ in range(3):
        mf.build_specs(bp, data="sp500_daily").run_id
    assert not [w for w in recwarn.list if "failed to load" in str(w.message)]
    with pytest.warns(UserWarning, match=rf"plugin entry point bad = {broken} failed to load"):
        mf.known_plugins()   # asked for by the user: said


def test_a_reloaded_module_is_fingerprinted_by_the_code_it_runs(pkg):
    """hunt90 F1, hunt93: after an edit of the helper, reloading the plugin's module alone
    left the old helper running while its edited file named the run; reloading the helper
    alone left the old helper's value in the plugin's class. Either is refused, naming the
    module to reload; reloading both (README) names the new code."""
    import importlib

    from metaflow_nb.errors import PluginError

    site, name, plugin = pkg
    v1 = _fresh_fingerprint(site, f"{name}.workers", plugin)
    registry.import_plugins([f"{name}.workers"])
    assert registry.code_fingerprint(registry.get_plugin(plugin)) == v1
    _edit(site / name / "helper.py", "'v1'", "'v2'")
    v2 = _fresh_fingerprint(site, f"{name}.workers", plugin)
    workers = importlib.reload(sys.modules[f"{name}.workers"])   # the helper loaded stays v1
    assert registry.get_plugin(plugin) is workers.Cross and workers.Cross.origin == "v1"
    with pytest.raises(PluginError, match=rf"module {name}.helper \(.*helper.py\) was edited after it was imported"):
        registry.code_fingerprint(workers.Cross)
    importlib.reload(sys.modules[f"{name}.helper"])               # v2 loaded: the files' code
    assert registry.code_fingerprint(workers.Cross) == v2
    again = importlib.reload(sys.modules[f"{name}.workers"])
    assert again.Cross.origin == "v2" and registry.code_fingerprint(again.Cross) == v2
    # the README's order: the edited module first, then the plugin's
    _edit(site / name / "helper.py", "'v2'", "'v1'")
    importlib.reload(sys.modules[f"{name}.helper"])
    last = importlib.reload(sys.modules[f"{name}.workers"])
    assert last.Cross.origin == "v1" and registry.code_fingerprint(last.Cross) == v1


def test_a_module_imported_inside_a_method_counts_once_loaded(pkg):
    """hunt93 F1: a package module first imported inside a worker's method was never checked
    again: edited and reloaded, it kept the id of its first version."""
    import importlib

    from metaflow_nb.errors import PluginError

    site, name, plugin = pkg
    (site / name / "calc.py").write_text("SIGN = 1\n")
    registry.import_plugins([f"{name}.workers"])
    cls = registry.get_plugin(plugin)
    first = registry.code_fingerprint(cls)
    importlib.import_module(f"{name}.calc")   # as a method's `from . import calc` does
    assert registry.code_fingerprint(cls) == first
    _edit(site / name / "calc.py", "SIGN = 1", "SIGN = -1")
    calc = importlib.reload(sys.modules[f"{name}.calc"])
    assert calc.SIGN == -1
    assert registry.code_fingerprint(cls) == _fresh_fingerprint(site, f"{name}.workers", plugin) != first


def test_odd_files_in_a_package_do_not_drop_its_fingerprint(pkg):
    """hunt93 F2/F4: an editor's lock link (.#helper.py, dangling) or a file deleted after
    the listing made the fingerprint None (the run id without the plugin's code); a
    subpackage that is a linked folder was left out."""
    import os

    site, name, plugin = pkg
    (site / name / ".#helper.py").symlink_to(site / name / "no-such-file")
    v1 = _fresh_fingerprint(site, f"{name}.workers", plugin)
    assert v1 != "None"
    shared = site.parent / "shared_calc"
    shared.mkdir()
    (shared / "__init__.py").write_text("")
    (shared / "calc.py").write_text("SIGN = 1\n")
    os.symlink(shared, site / name / "sub")
    with_sub = _fresh_fingerprint(site, f"{name}.workers", plugin)
    _edit(shared / "calc.py", "SIGN = 1", "SIGN = -1")
    assert len({v1, with_sub, _fresh_fingerprint(site, f"{name}.workers", plugin)}) == 3
    os.symlink(site / name, site / name / "loop")   # a link back up: walked once
    assert _fresh_fingerprint(site, f"{name}.workers", plugin) not in ("None", "")


def test_one_file_imported_under_two_names_has_one_fingerprint(pkg):
    """hunt90 F2: a module of a package also imported by its own name (a notebook in the
    package's folder) was fingerprinted without its package: a loky sweep refused every run."""
    import importlib

    site, name, plugin = pkg
    alone = f"alone_{name}"
    (site / name / f"{alone}.py").write_text(WORKERS.format(pkg=alone).replace("from . import helper\n", "")
                                             .replace("helper.ORIGIN", "'v1'"))
    registry.import_plugins([f"{name}.{alone}"])
    dotted = registry.code_fingerprint(registry.get_plugin(f"test_{alone}"))
    sys.path.insert(0, str(site / name))
    try:
        mod = importlib.import_module(alone)
    finally:
        sys.path.remove(str(site / name))
    assert registry.get_plugin(f"test_{alone}") is mod.Cross   # the same file: it replaced itself
    assert registry.code_fingerprint(mod.Cross) == dotted


def test_the_classes_of_one_module_walk_their_package_once(tmp_path, monkeypatch):
    """hunt90 F3: each registered class walked and read its whole package again (10.5 s
    for 200 classes of a 1,900-file package)."""
    name = f"mf_h89_many_{uuid.uuid4().hex[:10]}"
    site = tmp_path / "site"
    (site / name / "sub").mkdir(parents=True)
    (site / name / "__init__.py").write_text("")
    for i in range(30):
        (site / name / "sub" / f"m{i}.py").write_text(f"X = {i}\n")
    body = ["from metaflow_nb.workers.base import register",
            "from metaflow_nb.workers.opportunity.sma_cross import SmaCross"]
    body += [f"@register\nclass C{i}(SmaCross):\n    name = 'test_{name}_{i}'\n" for i in range(40)]
    (site / name / "workers.py").write_text("\n".join(body))
    monkeypatch.syspath_prepend(str(site))
    walks = []
    real = registry._package_files
    monkeypatch.setattr(registry, "_package_files", lambda top, roots: walks.append(top) or real(top, roots))
    registry.import_plugins([f"{name}.workers"])
    prints = {registry.code_fingerprint(registry.get_plugin(f"test_{name}_{i}")) for i in range(40)}
    assert len(walks) == 1 and len(prints) == 1 and None not in prints


def test_a_package_imported_again_is_fingerprinted_by_the_code_it_runs_now(pkg):
    """hunt92 F1: the package's modules deleted from sys.modules and imported again (the
    usual "reload the whole package") after each edit: the third version, the first's code,
    kept the second's fingerprint, and --resume returned the second's numbers for it."""
    import importlib

    site, name, plugin = pkg
    prints = []
    for origin in ("'v1'", "'v2'", "'v1'", "'v2'"):
        (site / name / "helper.py").write_text(f"ORIGIN = {origin}\n")
        for mod in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[mod]
        importlib.import_module(f"{name}.workers")
        cls = registry.get_plugin(plugin)
        assert cls.origin == origin.strip("'")
        prints.append(registry.code_fingerprint(cls))
    assert prints[0] == prints[2] != prints[1] == prints[3]
    assert prints[1] == _fresh_fingerprint(site, f"{name}.workers", plugin)


def test_reloads_do_not_grow_the_fingerprint_caches(pkg):
    """hunt92 F2: every reload kept a list of the package's files and the old module's spec
    (82 MB after 200 reloads of a 1,500-file package)."""
    import gc
    import importlib

    site, name, plugin = pkg
    registry.import_plugins([f"{name}.workers"])
    for _ in range(30):
        importlib.reload(sys.modules[f"{name}.helper"])
        workers = importlib.reload(sys.modules[f"{name}.workers"])
        registry.code_fingerprint(workers.Cross)
    gc.collect()
    ours = [k for k in registry._LOADED if f"/{name}/" in k[0]]
    assert len(ours) <= 4, len(ours)   # the modules loaded now, not every version seen
    assert len([k for k in registry._ON_DISK if f"/{name}/" in k]) <= 4


def test_a_package_imported_from_a_zip_is_fingerprinted_by_its_source(tmp_path):
    """hunt93 F3: a plugin package on sys.path as a zip (shipped to dask with upload_file)
    had no fingerprint: every edit of it kept the old run ids."""
    import zipfile

    name = f"mf_h93_zip_{uuid.uuid4().hex[:10]}"
    zipped = tmp_path / "plugins.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr(f"{name}/__init__.py", "")
        z.writestr(f"{name}/workers.py", WORKERS.format(pkg=name).replace("from . import helper\n", "")
                   .replace("helper.ORIGIN", "'v1'"))
    one = _fresh_fingerprint(zipped, f"{name}.workers", f"test_{name}")
    assert one not in ("None", "") and one == _fresh_fingerprint(zipped, f"{name}.workers", f"test_{name}")


def test_modules_of_a_package_imported_by_their_own_names_count(pkg):
    """hunt93 F6: a notebook in the package's folder imports ``workers`` and ``helper`` by
    their own names; the helper was looked for only as ``<pkg>.helper``: reloaded after an
    edit, its new code ran under the old id."""
    import importlib

    from metaflow_nb.errors import PluginError

    site, name, _ = pkg
    own = f"w_{name}"
    (site / name / f"h_{name}.py").write_text("ORIGIN = 'v1'\n")
    (site / name / f"{own}.py").write_text(WORKERS.format(pkg=own).replace("from . import helper\n",
                                                                         f"import h_{name} as helper\n"))
    sys.path.insert(0, str(site / name))
    try:
        workers = importlib.import_module(own)
        first = registry.code_fingerprint(workers.Cross)
        _edit(site / name / f"h_{name}.py", "'v1'", "'v2'")
        _edit(site / name / f"h_{name}.py", "ORIGIN = 'v2'", "ORIGIN = 'v2'\n\ndef sign():\n    return 1\n")
        importlib.reload(sys.modules[f"h_{name}"])
        assert registry.code_fingerprint(workers.Cross) != first   # seen under its own name
        again = importlib.reload(workers)
        assert again.Cross.origin == "v2" and registry.code_fingerprint(again.Cross) not in (None, first)
    finally:
        sys.path.remove(str(site / name))


def test_a_function_taken_from_a_reloaded_module_is_refused_until_its_taker_is_reloaded(pkg):
    """hunt94 F5: reloading one module refused every plugin of the package, also those that
    took nothing from it. A module that took a function from it (``from .calc import f``)
    still runs the old one: refused, naming it, until that module is reloaded too."""
    import importlib

    from metaflow_nb.errors import PluginError

    site, name, plugin = pkg
    (site / name / "calc.py").write_text("def sign():\n    return 1\n")
    (site / name / "taker.py").write_text(WORKERS.format(pkg=f"{name}_taker").replace(
        "from . import helper\n", "from . import helper\nfrom .calc import sign\n"))
    (site / name / "other.py").write_text(WORKERS.format(pkg=f"{name}_other"))
    registry.import_plugins([f"{name}.taker", f"{name}.other"])
    _edit(site / name / "calc.py", "return 1", "return -1")
    importlib.reload(sys.modules[f"{name}.calc"])
    assert registry.code_fingerprint(registry.get_plugin(f"test_{name}_other")) is not None   # took nothing
    with pytest.raises(PluginError, match=rf"module {name}.taker still holds sign of the module {name}.calc"):
        registry.code_fingerprint(registry.get_plugin(f"test_{name}_taker"))
    taker = importlib.reload(sys.modules[f"{name}.taker"])
    assert registry.code_fingerprint(taker.Cross) == _fresh_fingerprint(site, f"{name}.taker", f"test_{name}_taker")


def test_code_patched_in_place_is_seen(pkg):
    """hunt94 F3: IPython's %autoreload patches functions' code in place (no reload, the
    same module and spec): the id stayed the first code's while the new code ran."""
    site, name, plugin = pkg
    (site / name / "calc.py").write_text("def sign():\n    return 1\n")
    registry.import_plugins([f"{name}.workers", f"{name}.calc"])
    cls = registry.get_plugin(plugin)
    first = registry.code_fingerprint(cls)
    _edit(site / name / "calc.py", "return 1", "return -1")
    calc = sys.modules[f"{name}.calc"]
    calc.sign.__code__ = compile("def sign():\n    return -1\n", str(site / name / "calc.py"), "exec").co_consts[0]
    assert calc.sign() == -1
    assert registry.code_fingerprint(cls) == _fresh_fingerprint(site, f"{name}.workers", plugin) != first


def test_a_script_run_twice_with_run_registers_again(tmp_path):
    """hunt94 F2: IPython's %run reuses its module and clears it: no __spec__, and the
    second run of a script registering a plugin raised AttributeError."""
    import types

    name = f"mf_h94_run_{uuid.uuid4().hex[:10]}"
    path = tmp_path / "my_workers.py"
    path.write_text(WORKERS.format(pkg=name).replace("from . import helper\n", "").replace("helper.ORIGIN", "'v1'"))
    mod = types.ModuleType("__main__")   # as %run makes it: a __file__, no __spec__
    for _ in range(2):
        mod.__dict__.clear()
        mod.__dict__.update({"__name__": "__main__", "__file__": str(path)})
        saved = sys.modules.get("__main__")
        sys.modules["__main__"] = mod
        try:
            exec(compile(path.read_text(), str(path), "exec"), mod.__dict__)
            assert registry.code_fingerprint(mod.Cross) is not None
        finally:
            sys.modules["__main__"] = saved


def test_objects_made_by_a_helper_are_no_stale_imports(pkg):
    """hunt95 F1: a plugin module holding a closure or an instance made by a helper module
    (``rule = make_rule(1)``), under a name the helper also uses for another object, was
    refused as 'still holds rule of the module ... before it was reloaded' with no reload
    at all: only what ``from .helper import f`` binds (a function or class under its own
    name) can be a stale import."""
    site, name, plugin = pkg
    (site / name / "calc.py").write_text(
        "class Scaler:\n    def __init__(self, k):\n        self.k = k\n    def __call__(self, x):\n"
        "        return self.k * x\n\nscale = Scaler(1)\n\n"
        "def make_rule(n):\n    def rule(x):\n        return x > n\n    return rule\n\nrule = make_rule(0)\n")
    (site / name / "maker.py").write_text(WORKERS.format(pkg=f"{name}_maker").replace(
        "from . import helper\n", "from . import helper\nfrom .calc import Scaler, make_rule\n\n"
        "scale = Scaler(2)\nrule = make_rule(1)\n"))
    registry.import_plugins([f"{name}.maker"])
    assert registry.code_fingerprint(registry.get_plugin(f"test_{name}_maker")) == \
        _fresh_fingerprint(site, f"{name}.maker", f"test_{name}_maker")


def test_autoreload_reloading_a_helper_counts_as_the_new_code(pkg):
    """hunt95 F2: IPython's autoreload (``%autoreload 3``, or 2 when the edit adds an
    import) reloads the edited module and then patches the old functions' and classes'
    code in place, so ``from .calc import sign`` runs the new code; it was refused as a
    stale import. The id is the new code's."""
    superreload = pytest.importorskip("IPython.extensions.autoreload").superreload
    site, name, plugin = pkg
    (site / name / "calc.py").write_text("def sign():\n    return 1\n\nclass Rule:\n    def on(self):\n"
                                         "        return 1\n")
    (site / name / "taker.py").write_text(WORKERS.format(pkg=f"{name}_taker").replace(
        "from . import helper\n", "from . import helper\nfrom .calc import Rule, sign\n"))
    registry.import_plugins([f"{name}.taker"])
    cls = registry.get_plugin(f"test_{name}_taker")
    first = registry.code_fingerprint(cls)
    _edit(site / name / "calc.py", "return 1", "return -1")
    superreload(sys.modules[f"{name}.calc"])
    taker = sys.modules[f"{name}.taker"]
    assert taker.sign() == -1 and taker.Rule().on() == -1   # the new code runs
    assert registry.code_fingerprint(cls) == _fresh_fingerprint(site, f"{name}.taker", f"test_{name}_taker") != first


def test_a_script_class_keeps_its_id_after_run_ends(tmp_path):
    """hunt95 F7: a plugin class of a script run with %run was named by the script's file
    while %run ran, and by the class's own source once the shell's namespace was __main__
    again: the same code and data had two run ids (--resume found nothing). A class its
    module no longer holds keeps the id it was given."""
    import types

    name = f"mf_h95_run_{uuid.uuid4().hex[:10]}"
    path = tmp_path / "my_workers.py"
    path.write_text(WORKERS.format(pkg=name).replace("from . import helper\n", "").replace("helper.ORIGIN", "'v1'"))
    mod = types.ModuleType("__main__")   # as %run makes it: a __file__, no __spec__
    mod.__dict__.update({"__name__": "__main__", "__file__": str(path)})
    shell = types.ModuleType("__main__")   # the shell's namespace: no __file__
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = mod
    try:
        exec(compile(path.read_text(), str(path), "exec"), mod.__dict__)
        inside = registry.code_fingerprint(mod.Cross)
        shell.__dict__.update({"__name__": "__main__", "Cross": mod.Cross})   # %run copies the names over
        sys.modules["__main__"] = shell
        sys.modules[f"{name}_other"] = types.ModuleType(f"{name}_other")   # any import after it
        try:
            assert registry.code_fingerprint(mod.Cross) == inside
        finally:
            del sys.modules[f"{name}_other"]
    finally:
        sys.modules["__main__"] = saved


_TAKEN = {   # helper source before and after an edit, what the plugin takes, a probe of what runs
    "function": ("def f():\n    return 1\n", "from .calc import f", "f()"),
    "class of properties": ("class C:\n    @property\n    def p(self):\n        return 1\n    @staticmethod\n"
                            "    def s():\n        return 1\n    @classmethod\n    def c(cls):\n        return 1\n",
                            "from .calc import C", "(C().p, C.s(), C.c())"),
    "class of constants": ("class P:\n    fast = 1\n", "from .calc import P", "P.fast"),
    "int enum": ("import enum\n\nclass Side(enum.IntEnum):\n    LONG = 1\n", "from .calc import Side", "int(Side.LONG)"),
    "enum with a method": ("import enum\n\nclass Side(enum.Enum):\n    LONG = 2\n\n    def sign(self):\n"
                           "        return 1\n", "from .calc import Side", "Side.LONG.sign()"),
    "wrapped function": ("import functools\n\ndef deco(fn):\n    @functools.wraps(fn)\n    def wrapper():\n"
                         "        return fn()\n    return wrapper\n\n@deco\ndef f():\n    return 1\n",
                         "from .calc import f", "f()"),
    "lru_cache": ("import functools\n\n@functools.lru_cache(maxsize=None)\ndef f():\n    return 1\n",
                  "from .calc import f", "f()"),
    "njit": ("from numba import njit\n\n@njit(cache=False)\ndef f():\n    return 1\n", "from .calc import f", "f()"),
    "class whose base changed": ("class Base:\n    def m(self):\n        return 1\n\n\nclass C(Base):\n"
                                 "    def n(self):\n        return super().m()\n", "from .calc import C", "C().n()"),
    "dataclass": ("from dataclasses import dataclass\n\n@dataclass\nclass D:\n    a: int = 1\n\n    def m(self):\n"
                  "        return self.a\n", "from .calc import D", "D().m()"),
}


@pytest.mark.parametrize("how", ["reload", "autoreload"])
@pytest.mark.parametrize("kind", sorted(_TAKEN))
def test_a_taken_object_still_running_the_old_code_is_refused(pkg, kind, how):
    """hunt96 F1: after hunt95's fix, an @njit, lru_cache or wrapped function, a class of
    properties or of constants or an enum taken with ``from .calc import X`` from a helper
    reloaded since still ran the old code under the new code's run id. Whatever still runs
    the old code is refused; what autoreload put the new code into is current."""
    from metaflow_nb.errors import PluginError

    site, name, plugin = pkg
    source, imports, probe = _TAKEN[kind]
    (site / name / "calc.py").write_text(source)
    (site / name / "taker.py").write_text(WORKERS.format(pkg=f"{name}_taker").replace(
        "from . import helper\n", f"from . import helper\n{imports}\n"))
    registry.import_plugins([f"{name}.taker"])
    cls = registry.get_plugin(f"test_{name}_taker")
    registry.code_fingerprint(cls)
    (site / name / "calc.py").write_text(source.replace("1", "3"))
    if how == "reload":
        import importlib
        importlib.reload(sys.modules[f"{name}.calc"])
    else:
        pytest.importorskip("IPython.extensions.autoreload").superreload(sys.modules[f"{name}.calc"])
    runs = eval(probe, vars(sys.modules[f"{name}.taker"]))
    new = eval(probe, vars(sys.modules[f"{name}.calc"]))
    if runs != new:   # the old code runs
        with pytest.raises(PluginError, match="still holds"):
            registry.code_fingerprint(cls)
    else:
        assert registry.code_fingerprint(cls) == _fresh_fingerprint(site, f"{name}.taker", f"test_{name}_taker")


@pytest.mark.parametrize("wrap", ["from numba import njit\nkern = njit(kern)",
                                  "import functools\nkern = functools.lru_cache(kern)"])
def test_a_function_the_plugin_wrapped_itself_is_current(pkg, wrap):
    """hunt98 F1: ``kern = njit(kern)`` after ``from .calc import kern`` (ordinary Numba
    code) was refused as a stale import with nothing reloaded, for good: the wrapper
    carries the helper's name and module, and wraps what the helper holds now."""
    site, name, plugin = pkg
    (site / name / "calc.py").write_text("def kern(x):\n    return x * 1\n")
    (site / name / "taker.py").write_text(WORKERS.format(pkg=f"{name}_taker").replace(
        "from . import helper\n", f"from . import helper\nfrom .calc import kern\n{wrap}\n"))
    registry.import_plugins([f"{name}.taker"])
    assert registry.code_fingerprint(registry.get_plugin(f"test_{name}_taker")) is not None


def test_a_numpy_default_is_compared_by_its_values(pkg):
    """hunt98 F2: a helper function with a numpy default, the helper reloaded: a raw
    ValueError (an array's ambiguous truth) escaped instead of the stale-import error. An
    edit elsewhere leaves the function current; another default is refused."""
    import importlib

    from metaflow_nb.errors import PluginError

    site, name, plugin = pkg
    (site / name / "calc.py").write_text("import numpy as np\n\ndef weigh(x, w=np.ones(3)):\n    return x\n")
    (site / name / "taker.py").write_text(WORKERS.format(pkg=f"{name}_taker").replace(
        "from . import helper\n", "from . import helper\nfrom .calc import weigh\n"))
    registry.import_plugins([f"{name}.taker"])
    cls = registry.get_plugin(f"test_{name}_taker")
    registry.code_fingerprint(cls)
    (site / name / "calc.py").write_text("import numpy as np\n\n\ndef weigh(x, w=np.ones(3)):\n    return x\n")
    importlib.reload(sys.modules[f"{name}.calc"])
    assert registry.code_fingerprint(cls) is not None   # the same code and default, a line lower
    (site / name / "calc.py").write_text("import numpy as np\n\ndef weigh(x, w=np.zeros(3)):\n    return x\n")
    importlib.reload(sys.modules[f"{name}.calc"])
    with pytest.raises(PluginError, match="still holds weigh"):
        registry.code_fingerprint(cls)


def test_autoreload_of_an_unrelated_edit_keeps_a_params_class_current(pkg):
    """hunt98 F3: %autoreload 3 of a module holding a pydantic Params class (README's
    layout), after an edit elsewhere in it, refused the unchanged class: pydantic's own
    entries (a frozen model's hash closure, the signature) are new objects alike the old."""
    superreload = pytest.importorskip("IPython.extensions.autoreload").superreload
    site, name, plugin = pkg
    (site / name / "calc.py").write_text(
        "from metaflow_nb.workers.base import Params, param\n\n\nclass BreakoutParams(Params):\n"
        "    fast: int = param(10, ge=2, le=500)\n\n\ndef describe():\n    return 'v1'\n")
    (site / name / "taker.py").write_text(WORKERS.format(pkg=f"{name}_taker").replace(
        "from . import helper\n", "from . import helper\nfrom .calc import BreakoutParams\n"))
    registry.import_plugins([f"{name}.taker"])
    cls = registry.get_plugin(f"test_{name}_taker")
    registry.code_fingerprint(cls)
    _edit(site / name / "calc.py", "'v1'", "'v2'")
    superreload(sys.modules[f"{name}.calc"])
    assert registry.code_fingerprint(cls) == _fresh_fingerprint(site, f"{name}.taker", f"test_{name}_taker")


def test_a_class_left_behind_by_a_reload_keeps_its_id(pkg):
    """hunt98 F4: after importlib.reload of the plugin's module, the old class (still in
    use through an instance a notebook kept) got the new code's run id."""
    import importlib

    site, name, plugin = pkg
    registry.import_plugins([f"{name}.workers"])
    old = registry.get_plugin(plugin)
    first = registry.code_fingerprint(old)
    _edit(site / name / "workers.py", 'name = "', 'speed = 2\n    name = "')
    new = importlib.reload(sys.modules[f"{name}.workers"]).Cross
    assert registry.code_fingerprint(new) != first
    assert registry.code_fingerprint(old) == first
