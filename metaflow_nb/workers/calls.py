"""Calling a plugin's own code: an exception it raises is named, not a traceback through ours.

A worker from a declared module, an entry point or a notebook cell is user code. When its
``detect``, ``compute``, ``mask``, ``plan``, ``score`` or ``drawdown_limit`` raises, the
user needs to know which worker instance, which method and which line of their file: the
run stops with a :class:`~metaflow_nb.errors.PluginError` saying so (the CLI's one line,
exit 2), chained to the original exception, whose traceback a notebook still shows in
full. That includes what metaflow-nb raised inside the method on the plugin's behalf (a
feature asked for with bad params). A sweep keeps it per run, like any failure. Built-in
workers are not wrapped: an exception there is metaflow-nb's bug and keeps its
traceback. A ``PluginError`` passes as it is: it names its worker already (a context
plugin's ``compute`` that failed inside another worker's ``ctx.feature`` call).
"""
from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from typing import Any

from ..errors import PluginError, RunTimeout

__all__ = ["call_worker", "raise_own_error", "is_builtin"]

_PACKAGE = __name__.split(".")[0] + "."
_OURS = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
#: where Python and the installed libraries live: not the plugin's own code
_LIBS = tuple(sorted({os.path.abspath(p) + os.sep for k, p in sysconfig.get_paths().items()
                     if k in ("stdlib", "platstdlib", "purelib", "platlib")}))


def is_builtin(cls: type) -> bool:
    """Whether plugin class ``cls`` ships with metaflow-nb.

    >>> from metaflow_nb.workers.base import get_plugin
    >>> is_builtin(get_plugin("sma_cross")), is_builtin(dict)
    (True, False)
    """
    return cls.__module__.startswith(_PACKAGE)


def _where(cls: type, exc: BaseException) -> str:
    """``file:line in function`` of the plugin's own frame nearest to the error: the last
    one in the plugin's module file, else the last one outside metaflow-nb and the
    libraries (a helper of the plugin's package); empty when there is none."""
    module = sys.modules.get(cls.__module__)
    return where_raised(exc, getattr(module, "__file__", None))


def where_raised(exc: BaseException, own_file: Any = None) -> str:
    """`` (file:line in function)`` of the user's frame nearest to where ``exc`` was
    raised: the last one in ``own_file`` if given, else the last one outside metaflow-nb,
    the libraries and Python's frozen import machinery; empty when there is none.

    >>> try:
    ...     exec(compile("1 / 0", "my_module.py", "exec"))
    ... except ZeroDivisionError as exc:
    ...     where_raised(exc)
    ' (my_module.py:1 in <module>)'
    """
    frames = traceback.extract_tb(exc.__traceback__)
    own = os.path.abspath(own_file or "\0")
    pick = next((f for f in reversed(frames) if os.path.abspath(f.filename) == own), None)
    if pick is None:
        pick = next((f for f in reversed(frames) if not f.filename.startswith("<")
                     and not os.path.abspath(f.filename).startswith((_OURS, *_LIBS))), None)
    if pick is None:
        return ""
    path = os.path.abspath(pick.filename)
    try:
        rel = os.path.relpath(path)
        path = rel if not rel.startswith("..") else path
    except ValueError:  # another drive (Windows)
        pass
    return f" ({path}:{pick.lineno} in {pick.name})"


def raise_own_error(w: Any, method: str, exc: BaseException) -> None:
    """Raise the :class:`PluginError` for ``exc``, raised by worker ``w``'s own
    ``method``; return when ``exc`` is to propagate as it is (``w`` is built in, or ``exc``
    is a ``PluginError`` already, a run's timeout or neither an ``Exception`` nor a
    ``SystemExit``). Use it in an ``except`` block
    followed by a bare ``raise``.

    >>> class Mine:
    ...     __module__ = "my_workers"  # a user's module (a file's frames add its line)
    ...     instance_id, role = "mine_1", "opportunity"
    ...     def detect(self, ctx):
    ...         return 1 / 0
    >>> call_worker(Mine(), "detect", None)
    Traceback (most recent call last):
    metaflow_nb.errors.PluginError: mine_1 (opportunity): detect raised ZeroDivisionError: division by zero
    """
    # SystemExit is no Exception, but sys.exit() in a plugin's own code is its failure, not
    # the end of the process: a sweep would stop (under dask, with exit status 0 and nothing
    # written); KeyboardInterrupt and the rest propagate
    if not isinstance(exc, (Exception, SystemExit)) or isinstance(exc, (PluginError, RunTimeout)) \
            or is_builtin(type(w)):
        return
    raise PluginError(f"{w.instance_id} ({w.role}): {method} raised {exception_said(exc)}{_where(type(w), exc)}") from exc


def exception_said(exc: BaseException) -> str:
    """The exception's type and message on one line (its lines joined by `` / ``, at most
    :data:`SAID_MAX` characters); a Numba compile error by what failed, without the
    pipeline header it begins with; a pydantic validation error (params of a feature
    the plugin asked for) by its model and first field's complaint.

    >>> exception_said(KeyError("no such key")), exception_said(RuntimeError())
    ("KeyError: 'no such key'", 'RuntimeError')
    >>> exception_said(ValueError("Failed in nopython mode pipeline (step: nopython frontend)\\n"
    ...                           "NameError: name 'k' is not defined\\nDuring: Pass nopython_type_inference"))
    "ValueError: NameError: name 'k' is not defined"
    """
    errors = getattr(exc, "errors", None)
    if callable(errors) and hasattr(exc, "title"):
        try:
            first = errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "params"
            return f"{type(exc).__name__} for {exc.title}: {where}: {first['msg']}"
        except (TypeError, IndexError, KeyError):
            pass
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Failed in ") and "pipeline" in lines[0]:
        # Numba: the header names the compiler's step; the next line says what failed, the
        # signature it looked for follows it, then candidates and notes nobody reads in one line
        said = lines[1]
        if said.endswith(":") and len(lines) > 2 and lines[2].startswith(">>>"):
            said = f"{said} {lines[2][3:].strip()}"
        lines = [said]
    if not lines:
        return type(exc).__name__
    text = " / ".join(lines)
    if len(text) > SAID_MAX:
        text = text[:SAID_MAX - 3].rstrip() + "..."
    return f"{type(exc).__name__}: {text}"


#: characters of an exception's message a one-line error keeps
SAID_MAX = 300


def call_worker(w: Any, method: str, *args: Any) -> Any:
    """``w.<method>(*args)``; an exception of a plugin's own code as :func:`raise_own_error`
    says.

    >>> from metaflow_nb.workers.base import get_plugin
    >>> size = get_plugin("all_in_sizer")("size_1", get_plugin("all_in_sizer").Params())
    >>> call_worker(size, "plan").kind == size.plan().kind
    True
    """
    try:
        return getattr(w, method)(*args)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - only re-raised, named when it is the plugin's own
        raise_own_error(w, method, exc)
        raise
