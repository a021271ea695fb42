"""The plugin registry: plugin classes by name, built-ins registered on first use."""
from __future__ import annotations

import sys
from typing import Any, Optional

from .contracts import ROLES, Worker

_REGISTRY: dict[str, type[Worker]] = {}


def register(cls: type[Worker]) -> type[Worker]:
    """Class decorator adding a plugin to the registry under ``cls.name``."""
    if not cls.name or cls.role not in ROLES:
        raise TypeError(f"{cls.__name__}: a plugin needs a name and one of the roles {ROLES}")
    have = _REGISTRY.get(cls.name)
    if have is not None and have is not cls and _origin(have) != _origin(cls):
        raise TypeError(f"plugin name {cls.name!r} is already registered by {have.__name__}")
    # the same class defined by the same file again (a module imported under two names, a
    # reloaded notebook cell's module) replaces itself
    _REGISTRY[cls.name] = cls
    return cls


def _origin(cls: type) -> tuple[str, Optional[str]]:
    """Where a class is defined: its qualified name and the file of its module."""
    module = sys.modules.get(cls.__module__)
    return cls.__qualname__, getattr(module, "__file__", None)


_BUILTINS_LOADED = False


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:  # the import statement alone costs microseconds per lookup
        from . import builtin  # noqa: F401  (registers the built-in plugins on import)
        _BUILTINS_LOADED = True


def get_plugin(name: str) -> type[Worker]:
    """The plugin class registered under ``name``; KeyError lists the known names.

    ``"package.module:ClassName"`` imports the module first, so third-party plugins work
    in worker processes (loky, dask) that never imported them.
    """
    _ensure_builtins()
    hit = _REGISTRY.get(name)
    if hit is not None:
        return hit
    if ":" in name:
        import importlib
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise KeyError(f"cannot import plugin {name!r}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Worker)):
            raise KeyError(f"{name!r} is not a Worker subclass")
        _REGISTRY[name] = cls
        return cls
    raise KeyError(f"unknown plugin {name!r}; known plugins: {', '.join(sorted(_REGISTRY))}")


def known_plugins(role: Optional[str] = None) -> list[str]:
    """Names of the registered plugins, optionally of one role.

    >>> "sma_cross" in known_plugins("opportunity")
    True
    """
    _ensure_builtins()
    return sorted(n for n, c in _REGISTRY.items() if role is None or c.role == role)


def suggested_space(plugin: str) -> dict[str, dict[str, Any]]:
    """Suggested sweep/widget range per parameter: ``{start, end, step}`` or ``{values}``.

    >>> suggested_space("sma_cross")["fast"]
    {'start': 5, 'end': 50, 'step': 5}
    """
    cls = get_plugin(plugin)
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
