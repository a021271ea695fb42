"""The plugin registry: plugin classes by name, built-ins registered on first use.

Where workers come from: the built-ins; installed packages, through the entry-point
group :data:`ENTRY_POINT_GROUP` (loaded the first time a name is not found); modules a
config declares (``plugins: [module, ...]`` in a strategy or operation YAML), and modules
declared for the whole session (``mf.use_plugins``, the CLI's ``--plugins``, the
``METAFLOW_NB_PLUGINS`` environment variable). A ``"module:Class"`` reference imports
``module`` only when it is declared or provides an entry point: a config or a manifest
never names code to run.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib
import inspect
import linecache
import operator
import os
import re
import sys
import threading
import types
import warnings
import weakref
from contextlib import contextmanager, redirect_stdout
from typing import Any, Callable, Iterable, Iterator, Optional

from ..engine.codes import release_reasons
from ..errors import ConfigError, PluginError
from .calls import where_raised
from .contracts import ROLES, Params, Worker, declare_reasons

#: the entry-point group an installed package lists its worker modules under, e.g. in
#: pyproject.toml: ``[project.entry-points."metaflow_nb.workers"] rsi = "rsi_workers"``
ENTRY_POINT_GROUP = "metaflow_nb.workers"
#: modules declared for every config of a process (comma-separated), inherited by child
#: processes such as report notebooks
PLUGINS_ENV = "METAFLOW_NB_PLUGINS"

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")

_REGISTRY: dict[str, type[Worker]] = {}

#: the built-in plugins' names, known before they load (tests check it against them)
BUILTIN_NAMES = frozenset({
    "adx", "all_in_sizer", "atr", "atr_based_stops", "break_even", "ema", "fixed_fraction_sizer", "fixed_risk_sizer",
    "fixed_rr_exit", "fvg_detector", "higher_timeframe_bias", "higher_timeframe_bias_filter", "limit_entry_at_fvg",
    "liquidity_levels", "liquidity_sweep_detector", "liquidity_target_exit", "market_entry", "market_risk_monitor",
    "market_structure", "max_drawdown_monitor", "partial_take_profit", "percent_stops", "previous_period_levels",
    "reverse_on_opposite", "session_exit", "session_filter", "session_gate", "sma", "sma_cross", "swing_points",
    "time_stop_exit", "trailing_stop", "volatility_spike_detector"})


def register(cls: type[Worker]) -> type[Worker]:
    """Class decorator adding a plugin to the registry under ``cls.name``; returns ``cls``.

    >>> from metaflow_nb.workers.contracts import ContextWorker
    >>> register(type("Nameless", (ContextWorker,), {}))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: Nameless: a plugin needs a name and one of the roles (...)
    >>> atr = get_plugin("atr")
    >>> register(atr) is atr is get_plugin("atr")   # the same class again replaces itself
    True
    """
    if not cls.name or cls.role not in ROLES:
        raise TypeError(f"{cls.__name__}: a plugin needs a name and one of the roles {ROLES}")
    model = getattr(cls, "Params", None)
    if not (isinstance(model, type) and issubclass(model, Params)):
        # strict and frozen: another model drops a misspelt key silently, or breaks translation
        shown = model.__name__ if isinstance(model, type) else repr(model)
        raise TypeError(f"{cls.__name__}.Params is {shown}; expected a subclass of metaflow_nb.workers.base.Params "
                        "(unknown keys are errors, values frozen)")
    # the built-ins first: a plugin imported before them (plugins:, use_plugins) must meet
    # their names here, not take one and break the built-ins' own registration later
    _ensure_builtins(wait=False)
    have = _REGISTRY.get(cls.name)
    if have is not None and have is not cls and _origin(have) != _origin(cls):
        raise TypeError(f"plugin name {cls.name!r} is already registered by {have.__name__} ({have.__module__}); "
                        f"give {cls.__name__} another name")
    if have is None and cls.name in BUILTIN_NAMES and cls.__module__.split(".")[0] != "metaflow_nb":
        # the built-ins are loading in another thread (a registration does not wait for
        # them): the name is theirs all the same (hunt74 F3: taken, it broke every lookup)
        raise TypeError(f"plugin name {cls.name!r} is a built-in plugin's; give {cls.__name__} another name")
    if cls.role in ("threat", "exit"):
        try:
            declare_reasons(cls)  # its reason codes get their integers now; bad or reserved names fail here
        except TypeError as exc:
            raise TypeError(f"{exc}{_taken_by(cls)}") from None
    elif "reasons" in vars(cls) or "reason" in vars(cls):
        # read by nothing else: say so rather than let a journal show what it did not ask for
        article = "an" if cls.role[:1] in "aeiou" else "a"
        raise TypeError(f"{cls.__name__}: declares reason codes, but it is {article} {cls.role} worker: reason "
                        f"codes name a threat worker's rejections or an exit planner's exits")
    # the same class defined by the same file again (a module imported under two names, a
    # reloaded notebook cell's module) replaces itself
    _REGISTRY[cls.name] = cls
    try:
        code_fingerprint(cls)   # now, while its module is being imported: the code that runs
    except PluginError:   # a module of its package edited since it was imported: said when a run id is asked
        pass
    return cls


def _taken_by(cls: type) -> str:
    """Which registered plugin of the other kind declares a reason code ``cls`` declares
    (hunt58 F2: the refusal named neither), as `` (declared by ...)``; "" when none does."""
    other = "exit" if cls.role == "threat" else "threat"
    for name in cls.declared_reasons():
        for have in list(_REGISTRY.values()):
            if have.role == other and name in have.declared_reasons():
                return f" (declared by {have.name!r}, {have.__name__} in {have.__module__})"
    return ""


@contextmanager
def _all_or_nothing() -> Iterator[None]:
    """The workers of a plugin module whose import failed are not left registered: the
    classes above the failure stayed usable while the module was reported as not loaded
    (hunt58 F3). Python leaves a failed module unimported; the workers of modules that
    stay imported (a package's submodule imported before the failing one, a helper) stay
    too, since a second import would not run them again (hunt63 F2). The reason codes the
    dropped workers took are free again (hunt63 F5)."""
    _ensure_builtins()   # not undone with a failed plugin: they were never its own
    before = set(_REGISTRY)
    try:
        yield
    except BaseException:
        gone = [_REGISTRY[n] for n in set(_REGISTRY) - before if _REGISTRY[n].__module__ not in sys.modules]
        for cls in gone:
            _REGISTRY.pop(cls.name, None)
        kept = {r for c in _REGISTRY.values() if c.role in ("threat", "exit") for r in c.declared_reasons()}
        release_reasons({r for c in gone if c.role in ("threat", "exit") for r in c.declared_reasons()} - kept)
        raise


#: a package with more source files than this is fingerprinted by its plugin's module alone
PACKAGE_FILES_MAX = 2000
#: ... and its folders are walked no further than this many (data, a .git, a venv inside)
PACKAGE_DIRS_MAX = 2000

#: class -> (fingerprint, token, weak reference to the module it was made under): the
#: fingerprint holds while the package's loaded modules are the same module objects with the
#: same specs (``importlib.reload`` makes a new spec) and no module was imported since
#: (``len(sys.modules)``: a package module imported lazily, inside a method, is then
#: counted), and for good once that module is no longer the one under its name
_CODE: "weakref.WeakKeyDictionary[type, tuple[Optional[str], tuple, Callable[[], Any]]]" = \
    weakref.WeakKeyDictionary()
#: (path, id(spec)) -> (weak reference to the spec, sha256 of the file when that loaded
#: module was first seen: at its plugin's registration, or at the first run id after it
#: was imported); an entry leaves with its spec
_LOADED: dict[tuple[str, int], tuple[Any, str, int]] = {}
#: path -> (mtime_ns, size, sha256) of a file as last read
_ON_DISK: dict[str, tuple[int, int, str]] = {}
#: module name -> (fingerprint, token, module): what the classes of that module share
_BY_MODULE: dict[str, tuple[Optional[str], tuple, Any]] = {}
_FP_LOCK = threading.RLock()
#: the digest of a package file that cannot be read (a dangling link, no permission): the
#: file counts by its name, the rest of the package by its content
UNREADABLE = "unreadable"


def code_fingerprint(cls: type) -> Optional[str]:
    """What a run id knows of a plugin's code: 16 hex digits of a sha256 of the source of the
    module defining ``cls`` and, for a module of a package, of every ``.py`` file of its
    top-level package (a helper module holding the computation counts, hunt89 F3), as the
    files are when the id is made. The ids follow the code that runs: made once while the
    package's loaded modules stay the same objects (a file edited in place under a running
    session does not rename the old code's runs, hunt89 F1), made again after a module is
    reloaded or imported. A loaded module of the package whose file was edited after it was
    imported (and not reloaded) runs code no file holds: :class:`PluginError` names it
    rather than name its runs by the edited file (hunt93). None for metaflow-nb's own
    workers (versioned with the package) and for a class whose source cannot be read. A
    class defined in a notebook cell is hashed by its cell's source.

    >>> code_fingerprint(get_plugin("sma_cross")) is None
    True
    """
    if cls.__module__.split(".")[0] == "metaflow_nb":
        return None
    with _FP_LOCK:
        hit = _CODE.get(cls)
        if hit is not None and _left_behind(cls, hit[2]()):
            # the module that defined the class is gone or another now (%run's module once
            # the run is over, a package imported again), or holds another class under its
            # name (reloaded, a cell run again): nothing speaks for this class but what its
            # module said then, and it runs that code (hunt95 F7, hunt98 F4)
            return hit[0]
        if hit is None or not _holds(hit[1]):
            # the classes of one module share theirs (one walk of the package, hunt90 F3)
            hit = _BY_MODULE.get(cls.__module__)
            if hit is None or not hit[1] or not _holds(hit[1]) or sys.modules.get(cls.__module__) is not hit[2]:
                try:
                    digest, token = _fingerprint(cls)
                except OSError:
                    digest, token = None, ()
                hit = _BY_MODULE[cls.__module__] = (digest, token, sys.modules.get(cls.__module__))
            try:
                # the module by a weak reference: a strong one from the value would keep the
                # class (its key) alive through the module's namespace
                _CODE[cls] = (*hit[:2], _module_ref(hit[2]))
            except TypeError:  # pragma: no cover - a class that cannot be weakly referenced
                pass
        return hit[0]


def _left_behind(cls: type, first: Any) -> bool:
    """Whether the module ``cls`` was first fingerprinted under (``first``) no longer stands
    for it: another module now goes by its name, or it holds another object under the
    class's name."""
    module = sys.modules.get(cls.__module__)
    return module is not first or getattr(module, "__dict__", {}).get(cls.__name__, cls) is not cls


def _module_ref(module: Any) -> Callable[[], Any]:
    """A weak reference to ``module`` (a callable giving None for no module)."""
    try:
        return weakref.ref(module)
    except TypeError:   # None, or an object standing in sys.modules that takes no weak reference
        return lambda: module


def _holds(token: tuple) -> bool:
    if not token:
        return True   # a notebook cell's class: its cell's text, read once
    size, modules = token
    return len(sys.modules) == size and all(sys.modules.get(name) is m and getattr(m, "__spec__", None) is spec
                                            and _code_of(m) == code for name, m, spec, code in modules)


def _code_of(module: Any) -> int:
    """A number that changes when the code of ``module``'s functions and classes' methods is
    replaced in place (IPython's ``%autoreload`` patches ``__code__`` without a reload)."""
    h = 0
    for v in list(vars(module).values()):
        if isinstance(v, type) and v.__module__ == module.__name__:
            for f in list(vars(v).values()):
                c = getattr(getattr(f, "__func__", f), "__code__", None)
                if c is not None:
                    h = hash((h, id(c)))
        else:
            c = getattr(v, "__code__", None)
            if c is not None and getattr(v, "__module__", None) == module.__name__:
                h = hash((h, id(c)))
    return h


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _patched_alike(old: Any, new: Any) -> bool:
    """Whether ``old`` (what a module took from another, since reloaded) runs ``new``'s
    code: IPython's autoreload reloads a module, then puts the new code into the old
    functions (code, defaults) and the old classes' entries (hunt95 F2), and keeps an old
    entry equal to the new one. Anything else still runs the old code (hunt96 F1): a
    wrapper's closure, an ``lru_cache``, an enum's members, constants of other values. A
    comparison that cannot be made says no (hunt98 F2).

    >>> def f(): return 1
    >>> def g(): return 2
    >>> _patched_alike(f, g), _patched_alike(f, f)
    (False, True)
    """
    try:
        return _alike(old, new, set())
    except (ValueError, TypeError, RecursionError):   # an array's ambiguous truth, a nesting too deep
        return False


def _alike(old: Any, new: Any, seen: set) -> bool:
    if old is new:
        return True
    if (id(old), id(new)) in seen:
        return True   # a class reached again through its own entries
    seen.add((id(old), id(new)))
    if type(old) is not type(new) and not (isinstance(old, type) and isinstance(new, type)):
        return False   # 1 and True, 2 and 2.0 are other values (hunt98 F5)
    if inspect.isfunction(old):
        cells = (old.__closure__ or (), new.__closure__ or ())
        return _same_code(old.__code__, new.__code__) and _alike(old.__defaults__, new.__defaults__, seen) and \
            _alike(old.__kwdefaults__, new.__kwdefaults__, seen) and _alike(vars(old), vars(new), seen) and \
            len(cells[0]) == len(cells[1]) and all(_alike(_cell(a), _cell(b), seen) for a, b in zip(*cells))
    if isinstance(old, (staticmethod, classmethod)):
        return _alike(old.__func__, new.__func__, seen)
    if isinstance(old, property):
        return all(_alike(getattr(old, k), getattr(new, k), seen) for k in ("fget", "fset", "fdel"))
    py = getattr(old, "py_func", None)
    if py is not None and inspect.isfunction(py):   # a Numba dispatcher: the Python it compiles
        return _alike(py, new.py_func, seen) and _alike(getattr(old, "targetoptions", None),
                                                      getattr(new, "targetoptions", None), seen)
    if isinstance(old, type):
        import enum
        if type(old) is not type(new) and not _alike(type(old), type(new), seen):
            return False   # its metaclass
        if issubclass(new, enum.Enum):
            # the members by attribute, as code reads them (autoreload swaps the member maps,
            # not the members the old class holds)
            names = list(new.__members__)
            if not issubclass(old, enum.Enum) or list(old.__members__) != names or \
                    not _alike([getattr(getattr(old, n), "value", None) for n in names],
                               [new[n].value for n in names], seen):
                return False
        # its bases run their own code (a method calling super() reaches the old base's)
        if len(old.__mro__) != len(new.__mro__) or \
                not all(_alike(a, b, seen) for a, b in zip(old.__mro__[1:], new.__mro__[1:])):
            return False
        before = vars(old)
        for key, value in vars(new).items():
            if key in _CLASS_OWN or (issubclass(new, enum.Enum) and not _is_code(value)):
                continue
            if key not in before or not _alike(before[key], value, seen):
                return False
        return True
    if type(old) in (tuple, list):
        return len(old) == len(new) and all(_alike(a, b, seen) for a, b in zip(old, new))
    if type(old) is dict:   # a dataclass's annotations, an enum's maps, a function's attributes
        return old.keys() == new.keys() and all(_alike(old[k], new[k], seen) for k in new)
    if dataclasses.is_dataclass(old):   # an instance (pydantic's decorator records): its fields
        return _alike({f.name: getattr(old, f.name) for f in dataclasses.fields(old)},
                      {f.name: getattr(new, f.name) for f in dataclasses.fields(new)}, seen)
    if isinstance(old, types.ModuleType):
        return False
    # alike when it compares equal, as autoreload itself decides to keep the old one (a
    # date, a frozen dataclass's instance, hunt98 F3), or when it shows the same state (a
    # pydantic field's definition, an itemgetter: their repr says all of it); an object
    # shown by its address (an lru_cache, a partial of a function) is not known alike
    if (old == new) is True:
        return True
    import numpy as np
    if isinstance(old, np.ndarray):   # == is elementwise, a repr leaves the middle out
        return old.shape == new.shape and old.dtype == new.dtype and bool(np.array_equal(old, new))
    same = getattr(old, "equals", None)   # pandas objects
    if callable(same) and not callable(old):
        return same(new) is True
    if callable(old) and not isinstance(old, _SHOWN_WHOLE):
        return False   # code of its own (a ufunc Numba made, a partial): not known alike
    shown = repr(old)
    return " at 0x" not in shown and "..." not in shown and shown == repr(new)


#: callables whose repr shows all they do
_SHOWN_WHOLE = (operator.itemgetter, operator.attrgetter, operator.methodcaller)


def _same_code(a: Any, b: Any) -> bool:
    """Whether two code objects hold the same code, wherever it sits in its file (a line
    added above a function moves it, hunt98 F3): its bytecode, names and constants."""
    if a is b:
        return True
    if a.co_code != b.co_code or a.co_names != b.co_names or a.co_varnames != b.co_varnames or \
            a.co_freevars != b.co_freevars or a.co_cellvars != b.co_cellvars or a.co_flags != b.co_flags or \
            a.co_argcount != b.co_argcount or a.co_kwonlyargcount != b.co_kwonlyargcount or \
            len(a.co_consts) != len(b.co_consts):
        return False
    for x, y in zip(a.co_consts, b.co_consts):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not _same_code(x, y):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


#: a class's entries each class has its own of (not code, not settable), or that are made of
#: its other entries (a pydantic model's validator and signature are built from its fields
#: and validator functions, compared as such; an ABC's cache)
_CLASS_OWN = frozenset({"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "__signature__",
                        "__pydantic_validator__", "__pydantic_serializer__", "__pydantic_core_schema__",
                        "__pydantic_parent_namespace__", "_abc_impl"})


def _is_code(value: Any) -> bool:
    return inspect.isfunction(value) or isinstance(value, (staticmethod, classmethod, property, type))


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:   # an empty cell
        return None


def _unwraps_to(value: Any, target: Any) -> bool:
    """Whether ``value`` is ``target`` wrapped (``kern = njit(kern)``, ``lru_cache``, a
    ``functools.wraps`` decorator): a wrapper the taking module made of what the other
    module holds now, which is current (hunt98 F1)."""
    for _ in range(64):
        if value is target:
            return True
        inner = getattr(value, "__wrapped__", None)
        if inner is None:
            inner = getattr(value, "py_func", None)
        if inner is None or inner is value:
            return False
        value = inner
    return False


def _fingerprint(cls: type) -> tuple[Optional[str], tuple]:
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if not path:
        return _sha(_class_source(cls).encode())[:16], ()
    path = os.path.abspath(path)
    top, roots = _package_of(cls.__module__, path)
    size = len(sys.modules)
    loaded = _loaded_in(roots, path, cls.__module__, module)
    token = (size, tuple((name, m, getattr(m, "__spec__", None), _code_of(m)) for name, m in loaded))
    # every loaded module of the package runs its file as it is: else no file names its code
    seen = [(name, os.path.abspath(m.__file__), m) for name, m in loaded]
    sights = [(name, file, _disk_digest(file), m) for name, file, m in seen]
    sights = [(name, file, now, _first_sight(file, m, now)) for name, file, now, m in sights if now is not None]
    for name, file, now, first in sights:
        if now != first:
            raise PluginError(f"plugin {cls.name!r} ({cls.__module__}): module {name} ({file}) was edited after it "
                              f"was imported, so the code running is not the code in the file and no run id can "
                              f"name it: importlib.reload({name}), then the modules that import from it, or restart "
                              f"the session")
    # a function or class the plugin's module took from another module of the package (from
    # .helper import f) that the other no longer holds: the other was reloaded, and the old
    # one still runs (the plugin's own module only: another plugin's stale names are its own)
    for name, m in loaded[:1]:
        for held, value in list(vars(m).items()):
            # what `from .helper import f` binds: a function, class or wrapped function under
            # its own name (a closure or an instance a helper made is no import, hunt95 F1)
            if not callable(value) or getattr(value, "__qualname__", None) != held:
                continue
            origin = getattr(value, "__module__", None)
            if origin is None or origin == name or not any(origin == other for other, _ in loaded):
                continue
            now_there = getattr(sys.modules.get(origin), held, value)
            if now_there is not value and getattr(now_there, "__module__", None) == origin and \
                    not _unwraps_to(value, now_there) and not _patched_alike(value, now_there):
                raise PluginError(f"plugin {cls.name!r} ({cls.__module__}): module {name} still holds {held} of the "
                                  f"module {origin} before it was reloaded: importlib.reload({name}) too, or restart "
                                  f"the session")
    own = _disk_digest(path)
    if own is None:
        own = _loader_digest(module)
        if own is None:
            return None, token
    files = _package_files(top, roots) if roots else None
    if not files:
        return own[:16], token
    parts = [b"module\0", own.encode()]
    for rel, p in files:
        parts += [b"\0", rel.encode(), b"\0", (_disk_digest(p) or UNREADABLE).encode()]
    return _sha(b"".join(parts))[:16], token


def _package_of(module: str, path: str) -> tuple[str, list[str]]:
    """The top-level package of ``module`` (file ``path``) and its folders; no folders for a
    module of no package. A module imported under a name of its own from inside a package's
    folder (a notebook next to it) belongs to that package, as under its dotted name
    (hunt90 F2: the two names had two fingerprints)."""
    if "." in module:
        top = module.split(".")[0]
        return top, [os.path.abspath(r) for r in (getattr(sys.modules.get(top), "__path__", None) or ())]
    folder = os.path.dirname(path)
    if not os.path.isfile(os.path.join(folder, "__init__.py")):
        return module, []
    while os.path.isfile(os.path.join(os.path.dirname(folder), "__init__.py")):
        folder = os.path.dirname(folder)
    return os.path.basename(folder), [folder]


def _loaded_in(roots: list[str], path: str, own_name: str, own: Any) -> list[tuple[str, Any]]:
    """The loaded modules (under any name) whose source files lie in the folders ``roots``,
    the class's own module first."""
    out = [(own_name, own)]
    if roots:
        inside = tuple(os.path.join(r, "") for r in roots)
        for name, m in list(sys.modules.items()):
            f = getattr(m, "__file__", None)
            if (m is not own and isinstance(f, str) and f.endswith(".py") and getattr(m, "__spec__", None) is not None
                    and os.path.abspath(f).startswith(inside)):
                out.append((name, m))
    return out


def _first_sight(path: str, module: Any, now: str) -> str:
    """The digest of ``path`` when loaded ``module`` was first seen (``now`` if it is now),
    or last seen with other code in its functions (``%autoreload`` put the file's code in
    place)."""
    spec = getattr(module, "__spec__", None)
    if spec is None:   # a script run as __main__: nothing to tell a reload by
        return now
    key = (path, id(spec))
    code = _code_of(module)
    hit = _LOADED.get(key)
    if hit is None or hit[0]() is not spec or hit[2] != code:
        hit = _LOADED[key] = (weakref.ref(spec, lambda _, k=key: _LOADED.pop(k, None)), now, code)
    return hit[1]


def _disk_digest(path: str) -> Optional[str]:
    """sha256 of the file at ``path`` now (read again only when its size or time changed);
    None when it cannot be read."""
    try:
        st = os.stat(path)
        seen = _ON_DISK.get(path)
        if seen is None or seen[:2] != (st.st_mtime_ns, st.st_size):
            with open(path, "rb") as fh:
                seen = _ON_DISK[path] = (st.st_mtime_ns, st.st_size, _sha(fh.read()))
        return seen[2]
    except OSError:
        return None


def _loader_digest(module: Any) -> Optional[str]:
    """sha256 of a module's source as its loader holds it (a package imported from a zip)."""
    try:
        text = module.__loader__.get_source(module.__name__)
    except Exception:  # noqa: BLE001 - no source to be had: no fingerprint
        return None
    return None if text is None else _sha(text.encode())


def _package_files(top: str, roots: list[str]) -> Optional[list[tuple[str, str]]]:
    """``(name, path)`` of the ``.py`` files under the folders ``roots`` of package ``top``
    (its ``__path__``), by name (``top/sub/x.py``: the same on every machine); linked
    folders followed once, hidden names (an editor's ``.#x.py`` lock) and ``__pycache__``
    left out. None past :data:`PACKAGE_FILES_MAX` files or :data:`PACKAGE_DIRS_MAX` folders."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for root in roots:
        for folder, subdirs, names in os.walk(root, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen:   # a link back up the tree: walked once
                subdirs[:] = []
                continue
            seen.add(real)
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__" and not d.startswith("."))
            rel = os.path.relpath(folder, root).replace(os.sep, "/")
            for f in names:
                if f.endswith(".py") and not f.startswith("."):
                    out.setdefault(f"{top}/{f}" if rel == "." else f"{top}/{rel}/{f}", os.path.join(folder, f))
            if len(out) > PACKAGE_FILES_MAX or len(seen) > PACKAGE_DIRS_MAX:
                return None
    return sorted(out.items())


def _class_source(cls: type) -> str:
    """The source a class whose module has no file is fingerprinted by: the whole text of
    the notebook cell defining it, as a plugin module is hashed whole (a constant or a
    helper beside the class counts: hunt71 F3). ``inspect.getsource`` finds a class by its
    module's file, which ipykernel's ``__main__`` lacks (hunt67 F3); the code of the
    class's own methods names the cell's file, which linecache holds: a file with a
    ``class`` statement of that name (a decorator's wrapper or a method taken from a
    module names another file, hunt74 F2). OSError when none is found."""
    for value in vars(cls).values():
        fn = getattr(value, "__func__", getattr(value, "fget", value))
        try:
            fn = inspect.unwrap(fn)
        except ValueError:   # a cycle of __wrapped__
            continue
        code = getattr(fn, "__code__", None)
        lines = linecache.getlines(code.co_filename) if code is not None else []
        if not lines:
            continue
        text = "".join(lines)
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        # the file that makes the class: its own class statement is in it (a method wrapped by
        # a decorator of the same cell, or assigned from a function of it, starts outside
        # that statement, hunt75 F2; a decorator module's file has no such statement)
        if any(isinstance(node, ast.ClassDef) and node.name == cls.__name__ for node in ast.walk(tree)):
            return text
    try:
        return inspect.getsource(cls)
    except TypeError as exc:
        raise OSError(str(exc)) from None


def _origin(cls: type) -> tuple[str, Optional[str]]:
    """Where a class is defined: its qualified name and the file of its module."""
    module = sys.modules.get(cls.__module__)
    return cls.__qualname__, getattr(module, "__file__", None)


_BUILTINS_LOADED = False
#: held while the built-ins load: another thread's first lookup waits for them (hunt67 F4:
#: it met an empty registry); the loading thread's own @register calls come back in
_BUILTINS_LOCK = threading.RLock()
_builtins_loading = False


def _ensure_builtins(wait: bool = True) -> None:
    """Load the built-in plugins once. ``wait=False`` (a registration) does not wait for
    another thread loading them: it runs inside an import, holding that module's import
    lock, which the loading thread may need (hunt71 F1: both hung for ever)."""
    global _BUILTINS_LOADED, _builtins_loading
    if _BUILTINS_LOADED:  # the import statement alone costs microseconds per lookup
        return
    if not _BUILTINS_LOCK.acquire(blocking=wait):
        return
    try:
        if _BUILTINS_LOADED or _builtins_loading:
            return   # loaded meanwhile, or this thread's own import registering them
        _builtins_loading = True
        try:
            from . import builtin  # noqa: F401  (registers the built-in plugins on import)
            _BUILTINS_LOADED = True
        finally:
            _builtins_loading = False
    finally:
        _BUILTINS_LOCK.release()


def get_plugin(name: str, declared: Optional[Iterable[str]] = None) -> type[Worker]:
    """The plugin class registered under ``name``; KeyError says why there is none.

    ``"package.module:ClassName"`` names a class in a module that is declared (see
    :func:`is_declared`): with ``declared`` (a config's modules, already imported by
    :func:`import_plugins`) those and the session's; without, every module this process
    imported by a declaration. Nothing else is ever imported for a name.

    >>> get_plugin("sma_cross").role
    'opportunity'
    >>> get_plugin("this:Nope", declared=())
    Traceback (most recent call last):
    ...
    KeyError: "'this:Nope': module 'this' is not declared; declare it with plugins: [this] (or --plugins this)"
    """
    _ensure_builtins()
    hit = _REGISTRY.get(name)
    if hit is not None:
        return hit
    if ":" in name:
        return _by_path(name, declared)
    failed = _load_entry_points()
    hit = _REGISTRY.get(name)
    if hit is not None:
        return hit
    why = "".join(f" (entry point {ep} failed to load: {err})" for ep, err in failed.items())
    raise KeyError(f"unknown plugin {_quoted(name)}{why}; known plugins: {', '.join(sorted(_REGISTRY))}; {OWN_PLUGIN_HINT}")


#: the end of an unknown plugin's message: where a plugin of one's own must be named
OWN_PLUGIN_HINT = ("a plugin of your own needs its module declared (plugins: [module] in the strategy, "
                   "--plugins module, or mf.use_plugins)")


def _quoted(name: Any) -> str:
    """A plugin name as a message quotes it: its repr, at most 120 characters (a 100,000
    character name made a 100 KB error line; hunt64 F9).

    >>> _quoted("x" * 200)[-8:], len(_quoted("x" * 200))
    ("xxxx...'", 120)
    """
    text = repr(name)
    return text if len(text) <= 120 else text[:116] + "...'"


def _by_path(name: str, declared: Optional[Iterable[str]]) -> type[Worker]:
    module, _, attr = name.partition(":")
    if not is_module_name(module) or not attr.isidentifier():
        raise KeyError(f"{_quoted(name)}: expected a registered name or 'package.module:ClassName'")
    allowed = _DECLARED if declared is None else {*declared, *session_plugins()}
    if not is_declared(module, allowed):
        raise KeyError(f"{name!r}: module {module!r} is not declared; declare it with plugins: [{module}] "
                       f"(or --plugins {module})")
    try:
        cls = getattr(_import_quietly(module), attr)
    except AttributeError:
        raise KeyError(f"{name!r}: module {module!r} has no {attr!r}") from None
    except Exception as exc:  # noqa: BLE001 - a declared module failing to import is the config's error
        raise KeyError(f"{name!r}: cannot import {module!r}: {_why(exc)}") from None
    if not (isinstance(cls, type) and issubclass(cls, Worker)):
        raise KeyError(f"{name!r} is not a Worker subclass")
    return cls


# ---------------------------------------------------------------- declared modules

#: modules this process imported because something declared them
_DECLARED: set[str] = set()
#: modules declared for every config: use_plugins, --plugins (the CLI's own scope)
_SESSION: list[str] = []


def _why(exc: BaseException) -> str:
    """What a declared module's import raised, in one line: a missing module as Python
    says it, a SyntaxError with the file and line it names, any other exception with the
    file and line of the module's own code that raised it."""
    if isinstance(exc, ModuleNotFoundError):
        return str(exc)
    if isinstance(exc, SyntaxError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}{where_raised(exc)}"


def import_plugins(modules: Iterable[str], where: str = "plugins") -> tuple[str, ...]:
    """Import declared plugin modules (each once per process), so the workers they
    register are usable by name and ``"module:Class"`` references into them resolve.

    ``where`` names the declaration in errors, a :class:`~metaflow_nb.errors.ConfigError`
    in one line: ``strat.yaml: plugins[0]: cannot import 'nope': No module named 'nope'``.

    >>> import_plugins(["metaflow_nb.workers.builtin"])
    ('metaflow_nb.workers.builtin',)
    >>> import_plugins(["../evil"], where="strat.yaml: plugins")
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: strat.yaml: plugins[0]: '../evil' is not a module name (expected package.module)
    """
    out = tuple(modules)
    for i, module in enumerate(out):
        if module in _DECLARED:
            continue
        if not is_module_name(module):
            raise ConfigError(f"{where}[{i}]: {module!r} is not a module name (expected package.module)")
        try:
            _import_quietly(module)
        except Exception as exc:  # noqa: BLE001 - whatever a plugin module raises, the declaration names it
            raise ConfigError(f"{where}[{i}]: cannot import {module!r}: {_why(exc)}{_path_hint(module, exc)}") \
                from None
        _DECLARED.add(module)
    return out


def _import_quietly(module: str) -> Any:
    """``import module`` with whatever it prints sent to stderr: stdout is the program's
    (``--json`` prints one object there; ``plugins: [this]`` printed the Zen of Python)."""
    with redirect_stdout(sys.stderr), _all_or_nothing():
        return importlib.import_module(module)


def _path_hint(module: str, exc: BaseException) -> str:
    """A hint when ``module`` is missing but its file sits in the working folder, which
    Python does not search from a console script such as ``metaflow-nb``."""
    top = module.split(".")[0]
    if not (isinstance(exc, ModuleNotFoundError) and exc.name == top):
        return ""
    here = [p for p in (f"{top}.py", os.path.join(top, "__init__.py")) if os.path.isfile(p)]
    if not here:
        return ""
    return (f" ({here[0]} is in the working folder, which the metaflow-nb command does not search: "
            f"run it with PYTHONPATH=. or install the module)")


def is_module_name(text: Any) -> bool:
    """Whether ``text`` is an absolute dotted module name (no path, no relative import).

    >>> is_module_name("my_workers.rsi"), is_module_name("../evil"), is_module_name(".rsi")
    (True, False, False)
    """
    return isinstance(text, str) and _MODULE_NAME.match(text) is not None


def is_declared(module: str, declared: Iterable[str]) -> bool:
    """Whether ``"module:..."`` may be imported: ``module`` (or a package above it) is in
    ``declared`` or provides an installed entry point of :data:`ENTRY_POINT_GROUP`.

    >>> is_declared("mypkg.workers", ["mypkg"]), is_declared("this", ["mypkg"])
    (True, False)
    """
    mine = set(declared) | entry_point_modules()
    parts = module.split(".")
    return any(".".join(parts[:k]) in mine for k in range(1, len(parts) + 1))


def session_plugins() -> tuple[str, ...]:
    """Modules declared for every config of this process: ``METAFLOW_NB_PLUGINS``, then
    :func:`use_plugins` (and the CLI's ``--plugins``).

    >>> isinstance(session_plugins(), tuple)
    True
    """
    env = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    return tuple(dict.fromkeys([*env, *_SESSION]))


def use_plugins(*modules: str) -> tuple[str, ...]:
    """Declare plugin modules for the rest of the session: import them now (their workers
    are usable by name) and add them to every config translated from here on, so loky
    and dask workers import them too. Returns the session's declared modules.

    >>> "metaflow_nb.workers.builtin" in use_plugins("metaflow_nb.workers.builtin")
    True
    >>> _SESSION.remove("metaflow_nb.workers.builtin")  # undone: doctests share a process
    """
    import_plugins(modules, where="use_plugins")
    _SESSION.extend(m for m in modules if m not in _SESSION)
    return session_plugins()


@contextmanager
def plugins_declared(modules: Iterable[str], where: str = "--plugins") -> Iterator[tuple[str, ...]]:
    """:func:`use_plugins` for a ``with`` block (the CLI declares ``--plugins`` for one
    command, so calling ``main`` twice in a process does not carry them over).

    >>> with plugins_declared(["metaflow_nb.workers.builtin"]) as mods:
    ...     "metaflow_nb.workers.builtin" in session_plugins()
    True
    """
    mods = import_plugins(modules, where=where)
    added = [m for m in dict.fromkeys(mods) if m not in _SESSION]
    _SESSION.extend(added)
    try:
        yield mods
    finally:
        for m in added:
            _SESSION.remove(m)


# ---------------------------------------------------------------- entry points

#: (sys.path when scanned, the group's entry points); scanned again when sys.path changes
_EP_SCAN: tuple[tuple[str, ...], tuple[Any, ...]] = ((), ())
_EP_LOADED: set[tuple[str, str]] = set()
_EP_FAILED: dict[tuple[str, str], str] = {}


def _entry_points() -> tuple[Any, ...]:
    global _EP_SCAN
    key = tuple(sys.path)
    if _EP_SCAN[0] != key or not key:
        from importlib.metadata import entry_points
        eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value))
        _EP_SCAN = (key, tuple(eps))
    return _EP_SCAN[1]


def entry_point_modules() -> frozenset[str]:
    """The modules installed packages list under :data:`ENTRY_POINT_GROUP` (not imported).

    >>> isinstance(entry_point_modules(), frozenset)
    True
    """
    return frozenset(ep.module for ep in _entry_points())


def _load_entry_points() -> dict[str, str]:
    """Import every entry point of the group not imported yet; the errors of the failed
    ones still installed (``"name = value"``: error)."""
    failed: dict[str, str] = {}
    for ep in _entry_points():
        key = (ep.name, ep.value)
        if key not in _EP_LOADED:
            _EP_LOADED.add(key)
            try:
                with redirect_stdout(sys.stderr), _all_or_nothing():  # stdout is the program's (--json)
                    obj = ep.load()
                if isinstance(obj, type) and issubclass(obj, Worker) and _REGISTRY.get(obj.name) is not obj:
                    register(obj)  # an entry point naming a class registers it
            except Exception as exc:  # noqa: BLE001 - one broken package must not hide the others
                _EP_FAILED[key] = f"{type(exc).__name__}: {exc}"
        if key in _EP_FAILED:
            failed[f"{ep.name} = {ep.value}"] = _EP_FAILED[key]
    return failed


def known_plugins(role: Optional[str] = None, warn: bool = True) -> list[str]:
    """Names of the registered plugins, optionally of one role (installed entry points
    are loaded first; ``warn``: with a warning naming each that failed to load).

    >>> "sma_cross" in known_plugins("opportunity")
    True
    """
    _ensure_builtins()
    for ep, err in _load_entry_points().items():
        if warn:
            warnings.warn(f"plugin entry point {ep} failed to load: {err}", stacklevel=2)
    return sorted(n for n, c in _REGISTRY.items() if role is None or c.role == role)


def suggested_space(plugin: str) -> dict[str, dict[str, Any]]:
    """Suggested sweep/widget range per parameter: ``{start, end, step}`` or ``{values}``.

    ``ConfigError`` for a plugin nobody registered (naming the known ones).

    >>> suggested_space("sma_cross")["fast"]
    {'start': 5, 'end': 50, 'step': 5}
    """
    try:
        cls = get_plugin(plugin)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
    schema = cls.Params.model_json_schema()
    out: dict[str, dict[str, Any]] = {}
    for key, prop in schema.get("properties", {}).items():
        if "suggest" in prop:
            a, b, s = prop["suggest"]
            out[key] = {"start": a, "end": b, "step": s}
        elif prop.get("type") == "boolean":
            out[key] = {"values": [True, False]}
        elif "enum" in prop:
            out[key] = {"values": list(prop["enum"])}
    return out
