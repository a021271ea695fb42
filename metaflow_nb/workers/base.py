"""Worker plugin base classes, the plugin registry and the feature context.

A plugin is a class with a ``name``, a ``role`` and a pydantic ``Params`` model. It is
registered with :func:`register` and instantiated per blueprint entry with validated
params. Workers do vectorised work on whole arrays; only the path-dependent part of a
strategy runs in the compiled bar loop.

Roles and what they return:

=============  =================================================================
context        ``compute(ctx) -> dict[str, ndarray]``: per-bar features
opportunity    ``detect(ctx) -> Signals``: direction and zone per bar
threat         ``mask(ctx) -> int8 ndarray`` (bit 0 blocks longs, bit 1 shorts)
               or, for path-dependent threats, ``drawdown_limit()``
entry          ``plan(ctx, opps) -> EntryPlan``
exit           ``plan(ctx, opps, entry) -> ExitPlan``
size           ``plan() -> SizePlan``
=============  =================================================================
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..engine import codes

ROLES = ("context", "opportunity", "threat", "entry", "exit", "size")

# which blueprint section may hold which role
SECTION_ROLES = {
    "context_workers": "context",
    "opportunity_workers": "opportunity",
    "threat_workers": "threat",
    "entry_planning": "entry",
    "exit_planning": "exit",
    "size_planning": "size",
}


class Params(BaseModel):
    """Base of every plugin's params model: strict, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def param(default: Any, *, suggest: Optional[tuple] = None, description: str = "", **bounds: Any) -> Any:
    """A plugin parameter with bounds and a suggested range for widgets and sweeps.

    ``suggest`` is ``(start, end, step)`` for numbers; booleans and literals suggest their
    values on their own.

    >>> class P(Params):
    ...     fast: int = param(10, ge=1, suggest=(5, 50, 5), description="fast period")
    >>> P().fast
    10
    """
    extra = {"suggest": list(suggest)} if suggest is not None else None
    return Field(default, description=description, json_schema_extra=extra, **bounds)


class Worker:
    """Base class of all plugins. Subclasses set ``name``, ``role`` and ``Params``."""

    name: ClassVar[str] = ""
    role: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    #: params that change the feature arrays (indicator periods, thresholds); every other
    #: param only changes the path (stops, sizing, limits) and can share precomputed features
    feature_params: ClassVar[frozenset[str]] = frozenset()
    description: ClassVar[str] = ""

    def __init__(self, instance_id: str, params: Params):
        self.instance_id = instance_id
        self.params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.instance_id!r}, {self.params!r})"


@dataclass(frozen=True)
class Signals:
    """What an opportunity worker emits: one candidate setup at most per bar.

    ``direction[i]`` is +1 (long), -1 (short) or 0; ``top``/``bottom`` bound the setup's
    zone (NaN where it has none), e.g. a fair value gap.
    """

    direction: np.ndarray
    top: np.ndarray
    bottom: np.ndarray

    @classmethod
    def from_direction(cls, direction: np.ndarray) -> "Signals":
        """Setups without zones: ``top`` and ``bottom`` are all NaN (one read-only array)."""
        nan = same_for_all(np.nan, int(direction.shape[0]))
        return cls(direction.astype(np.int8), nan, nan)


@dataclass(frozen=True)
class Opportunities:
    """All workers' setups merged into one stream sorted by bar, then workforce order."""

    bar: np.ndarray        # int64
    direction: np.ndarray  # int64, +1 / -1
    worker: np.ndarray     # int64, index into the opportunity workers
    top: np.ndarray
    bottom: np.ndarray
    signal_close: np.ndarray  # close of the bar the setup was stamped on

    def __len__(self) -> int:
        return int(self.bar.shape[0])


@dataclass(frozen=True)
class EntryPlan:
    limit: np.ndarray      # limit price per opportunity, NaN = market order
    cancel: np.ndarray     # a close beyond this cancels an unfilled limit, NaN = never
    expiry_bars: int = 0   # 0 = good till cancelled


def same_for_all(value: float, n: int) -> np.ndarray:
    """A read-only per-opportunity array of ``n`` copies of ``value`` that takes no memory
    per opportunity (a stride-0 view); a sweep passes it to the kernel as one number.

    >>> a = same_for_all(0.02, 3)
    >>> a.tolist(), a.strides, a.flags.writeable
    ([0.02, 0.02, 0.02], (0,), False)
    """
    # a slice of one long stride-0 view per value: ~20x cheaper than np.broadcast_to,
    # and a sweep plans thousands of combinations with a handful of stop values
    return _endless(float(value).hex())[:n]


@functools.lru_cache(maxsize=256)
def _endless(key: str) -> np.ndarray:
    """A read-only stride-0 view of 2**40 copies of the float ``float.fromhex(key)``
    (keyed by the exact bits' text: one key for every NaN, 0.0 apart from -0.0)."""
    one = np.array([float.fromhex(key)], dtype=np.float64)
    view = np.ndarray((2 ** 40,), dtype=np.float64, buffer=one, strides=(0,))
    view.flags.writeable = False
    return view


@dataclass(frozen=True)
class ExitPlan:
    stop_mode: int = codes.PRICE_NONE
    stop: Optional[np.ndarray] = None
    target_mode: int = codes.PRICE_NONE
    target: Optional[np.ndarray] = None
    reverse: bool = False   # exit (and possibly reverse) on an opposite opportunity
    exclusive: bool = False  # any accepted setup closes the open position first


@dataclass(frozen=True)
class SizePlan:
    kind: int = codes.SIZER_ALL_IN
    param: float = 1.0
    whole_units: bool = True


class ContextWorker(Worker):
    role = "context"

    def compute(self, ctx: "FeatureContext") -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError


class OpportunityWorker(Worker):
    role = "opportunity"

    def detect(self, ctx: "FeatureContext") -> Signals:  # pragma: no cover - abstract
        raise NotImplementedError


class ThreatWorker(Worker):
    role = "threat"
    reason: ClassVar[str] = ""

    def mask(self, ctx: "FeatureContext") -> np.ndarray:
        """Per-bar int8 bitmask: 1 blocks longs, 2 blocks shorts, 3 blocks both."""
        raise NotImplementedError  # pragma: no cover - abstract

    def drawdown_limit(self) -> Optional[tuple[float, int]]:
        """``(limit_pct, cooldown_bars)`` for a path-dependent drawdown threat, else None."""
        return None


class EntryPlanner(Worker):
    role = "entry"

    def plan(self, ctx: "FeatureContext", opps: Opportunities) -> EntryPlan:  # pragma: no cover
        raise NotImplementedError


class ExitPlanner(Worker):
    role = "exit"
    #: what this planner contributes, so the translator can refuse two stop providers
    provides_stop: ClassVar[bool] = False
    provides_target: ClassVar[bool] = False

    def plan(self, ctx: "FeatureContext", opps: Opportunities, entry: EntryPlan) -> ExitPlan:  # pragma: no cover
        raise NotImplementedError


class SizePlanner(Worker):
    role = "size"
    needs_stop: ClassVar[bool] = False

    def plan(self) -> SizePlan:  # pragma: no cover
        raise NotImplementedError


# ---------------------------------------------------------------- registry

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
    import sys
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


# ---------------------------------------------------------------- feature context

_PRICE_COLUMNS = ("open", "high", "low", "close", "volume")


def _price_arrays(data: Any) -> tuple[np.ndarray, ...]:
    """Contiguous float64 ``open, high, low, close, volume`` arrays of a bars frame."""
    if list(data.columns) == list(_PRICE_COLUMNS):
        # a frame from load_data holds the five columns as one float64 block: the rows of
        # its transpose are the columns themselves, without a copy or a Series per column
        block = data.to_numpy(dtype=np.float64, copy=False).T
        if block.flags.c_contiguous and not block.flags.owndata:
            return tuple(block[j] for j in range(len(_PRICE_COLUMNS)))
    return tuple(np.ascontiguousarray(data[c].to_numpy(np.float64)) for c in _PRICE_COLUMNS)


def _key(plugin: str, params: dict[str, Any]) -> str:
    return plugin + json.dumps(params, sort_keys=True, separators=(",", ":"))


#: validated params model and cache key per (plugin class, name, given params), so the
#: workers of a sweep do not validate and serialise the same feature params per group
_FEATURE_KEYS: dict[Any, tuple[Any, str]] = {}
_FEATURE_KEYS_SIZE = 1024
_PLAIN = frozenset({int, float, str, bool, type(None)})


def _feature_key(cls: type, plugin: str, params: Optional[dict[str, Any]]) -> tuple[Any, str]:
    memo = None
    if params is None or all(type(k) is str and type(v) in _PLAIN for k, v in params.items()):
        # plain values by type and value (1, 1.0 and True validate differently)
        memo = (cls, plugin, tuple(sorted((k, type(v), v) for k, v in (params or {}).items())))
        hit = _FEATURE_KEYS.get(memo)
        if hit is not None:
            return hit
    model = cls.Params.model_validate(params or {})
    out = (model, _key(plugin, model.model_dump(mode="json")))
    if memo is not None:
        if len(_FEATURE_KEYS) >= _FEATURE_KEYS_SIZE:
            _FEATURE_KEYS.clear()
        _FEATURE_KEYS[memo] = out
    return out


class FeatureContext:
    """Arrays of one dataset plus a cache of context features, shared by a run's workers.

    ``ctx.context("atr")`` returns the outputs of the blueprint's own ``atr`` context
    worker (its params), or of an ``atr`` with default params if the blueprint has none.
    Results are cached by plugin and params, so a sweep that keeps the same data reuses
    them across runs.
    """

    def __init__(self, data: Any, pip_size: float = 0.0001,
                 context_params: Optional[dict[str, dict[str, Any]]] = None,
                 cache: Optional[dict[str, dict[str, np.ndarray]]] = None):
        self.index = data.index
        self.cache = cache if cache is not None else {}
        # the cache belongs to one dataset: its contiguous price arrays are made once
        prices = self.cache.get("__prices__")
        if prices is None:
            prices = self.cache["__prices__"] = _price_arrays(data)
        self.open, self.high, self.low, self.close, self.volume = prices
        self.n = int(self.close.shape[0])
        self.pip_size = float(pip_size)
        self.context_params = dict(context_params or {})

    def feature(self, plugin: str, params: Optional[dict[str, Any]] = None) -> dict[str, np.ndarray]:
        """Outputs of context plugin ``plugin`` with ``params`` (defaults filled in), cached."""
        cls = get_plugin(plugin)
        model, key = _feature_key(cls, plugin, params)  # params models are immutable: shared
        hit = self.cache.get(key)
        if hit is None:
            hit = cls(plugin, model).compute(self)
            self.cache[key] = hit
        return hit

    def context(self, plugin: str, **overrides: Any) -> dict[str, np.ndarray]:
        """The blueprint's configuration of context plugin ``plugin`` (or its defaults)."""
        params = {**self.context_params.get(plugin, {}), **overrides}
        return self.feature(plugin, params)


