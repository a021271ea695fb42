"""Exception types of metaflow-nb.

Every error a user can cause by bad input (data, config, parameters) is a subclass of
:class:`MetaflowError` and carries a message that names the file, the key or column and
what was expected. The CLI turns these into a one-line message and exit code 2.
"""
from __future__ import annotations

from typing import Optional


class MetaflowError(Exception):
    """Base class of all user-facing errors."""


class DataError(MetaflowError, ValueError):
    """Market data is missing, malformed or inconsistent.

    The message names the file (or ``<DataFrame>``), the row/timestamp and the column.
    """


class ConfigError(MetaflowError, ValueError):
    """A YAML config, blueprint or parameter set is invalid.

    The message names the file and the key path, e.g.
    ``strategy.yaml: workforce.opportunity_workers[0].params.fast: must be > 0``.
    """


class RunError(MetaflowError, RuntimeError):
    """A run failed for a reason other than bad input (kept, with its traceback, by the services)."""


class RunTimeout(Exception):
    """A run went past its ``timeout_per_run`` (raised inside it by the timer of
    :mod:`metaflow_nb.services.parallel`): the run's status is ``timeout``, whatever code it
    interrupted, a plugin's own included."""


class PluginError(MetaflowError, ValueError):
    """A worker returned an output its role's contract does not allow.

    Raised where the output enters the run path (``metaflow_nb.assembly``). The message
    names the worker instance, its role, the output and the first offending bar, e.g.
    ``rsi_1 (opportunity): direction at bar 17 is 100; expected -1, 0 or 1``.
    """


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, a KeyboardInterrupt: a compiled call
    interrupted by Ctrl-C reports ``SystemError: ... returned a result with an exception
    set``, pydantic's serializer a ``PydanticSerializationError``, with the interrupt as
    their cause or context.

    >>> try:
    ...     try:
    ...         raise KeyboardInterrupt
    ...     except KeyboardInterrupt as exc:
    ...         raise RuntimeError("serializer failed") from exc
    ... except RuntimeError as err:
    ...     caused_by_interrupt(err), caused_by_interrupt(RuntimeError("a bug"))
    (True, False)
    """
    seen = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False
