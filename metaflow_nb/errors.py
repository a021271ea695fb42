"""Exception types of metaflow-nb.

Every error a user can cause by bad input (data, config, parameters) is a subclass of
:class:`MetaflowError` and carries a message that names the file, the key or column and
what was expected. The CLI turns these into a one-line message and exit code 2.
"""
from __future__ import annotations


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
    """Whether ``exc`` is a KeyboardInterrupt or was raised straight from one: a compiled
    call interrupted by Ctrl-C reports ``SystemError: ... returned a result with an
    exception set``, pydantic's serializer a ``PydanticSerializationError``, with the
    interrupt as their cause or context. Causes (``raise ... from``, a wrapper's) are
    followed; a context only where the causes end, one link, and not when ``raise ...
    from None`` hid it: a plugin's own error raised after it handled an interrupt is
    that error, a failed run, not a Ctrl-C (hunt84 F1).

    >>> def from_interrupt(hide=False):
    ...     try:
    ...         raise KeyboardInterrupt
    ...     except KeyboardInterrupt as exc:
    ...         if hide:
    ...             raise RuntimeError("the plugin's own error") from None
    ...         raise RuntimeError("serializer failed") from exc
    >>> for hide in (False, True):
    ...     try:
    ...         from_interrupt(hide)
    ...     except RuntimeError as err:
    ...         print(caused_by_interrupt(err))
    True
    False
    >>> caused_by_interrupt(RuntimeError("a bug"))
    False
    """
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        if e.__cause__ is None:   # the end of the chain of causes: a context only right there
            return not e.__suppress_context__ and isinstance(e.__context__, KeyboardInterrupt)
        e = e.__cause__   # "raised from": a wrapper's (PluginError from the plugin's error)
    return False
