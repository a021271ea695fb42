"""The feature context: one dataset's price arrays and a cache of context features."""
from __future__ import annotations

import json
from typing import Any, Iterable, Optional

import numpy as np

from .calls import call_worker
from .registry import get_plugin

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


def cache_key(plugin: str, params: Optional[dict[str, Any]] = None) -> Any:
    """The key under which a :class:`FeatureContext` caches ``plugin``'s outputs with
    ``params`` (defaults filled in).

    >>> cache_key("atr") == cache_key("atr", {"period": 14})
    True
    >>> cache_key("atr", {"period": 5, "@timeframe": "4h@fx"})[0]
    'atr[4h@fx]{"period":5}'
    """
    if params and TIMEFRAME_KEY in params:
        return _timeframe_key(plugin, {k: v for k, v in params.items() if k != TIMEFRAME_KEY}, params[TIMEFRAME_KEY])
    return _feature_key(get_plugin(plugin), plugin, params)[1]


def _timeframe_key(plugin: str, params: dict[str, Any], spec: str) -> Any:
    """The cache key of ``plugin``'s outputs on the higher timeframe ``spec``, shaped like
    a feature's own key, ``"plugin[4h@utc]{params}"``: check-causality observes it."""
    text, cls_id = cache_key(plugin, params)
    return (f"{plugin}[{spec}]{text[len(plugin):]}", cls_id)


def _feature_key(cls: type, plugin: str, params: Optional[dict[str, Any]]) -> tuple[Any, str]:
    memo = None
    if params is None or all(type(k) is str and type(v) in _PLAIN for k, v in params.items()):
        # plain values by type and value (1, 1.0 and True validate differently)
        memo = (cls, plugin, tuple(sorted((k, type(v), v) for k, v in (params or {}).items())))
        hit = _FEATURE_KEYS.get(memo)
        if hit is not None:
            return hit
    model = cls.Params.model_validate(params or {})
    # the class itself is part of the key: a plugin redefined under the same name (an
    # edited notebook cell) computes its features again
    out = (model, (_key(plugin, model.model_dump(mode="json")), id(cls)))
    if memo is not None:
        if len(_FEATURE_KEYS) >= _FEATURE_KEYS_SIZE:
            _FEATURE_KEYS.clear()
        _FEATURE_KEYS[memo] = out
    return out


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 64


class FeatureCache(dict):
    """A dataset's cache of features and masks that keeps at most ``budget`` bytes of
    arrays: past it, the oldest entries go first (a long session of explorer runs or
    backtests with many indicator periods does not grow without bound).

    >>> c = FeatureCache(budget=16 * 100)
    >>> for k in range(3):
    ...     c[k] = np.zeros(100)
    >>> list(c)
    [1, 2]
    """

    def __init__(self, budget: int = 256 * 1024 * 1024) -> None:
        super().__init__()
        self.budget = budget
        self.used = 0
        self._sizes: dict[Any, int] = {}

    def __setitem__(self, key: Any, value: Any) -> None:
        if key in self:
            self.pop(key)
        size = _nbytes(value)
        super().__setitem__(key, value)
        self._sizes[key] = size
        self.used += size
        while self.used > self.budget and len(self) > 1:
            oldest = next(iter(self))
            self.pop(oldest)

    def pop(self, key: Any, *default: Any) -> Any:
        """``dict.pop``, the entry's bytes leaving the count too.

        >>> c = FeatureCache()
        >>> c["a"] = np.zeros(10)
        >>> c.used, c.pop("a").shape, c.used
        (80, (10,), 0)
        """
        self.used -= self._sizes.pop(key, 0)
        return super().pop(key, *default)

    def __reduce__(self) -> tuple:
        # rebuilt through __init__ and __setitem__, so the byte count travels too
        return (type(self), (self.budget,), None, None, iter(list(self.items())))


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
        #: whether the bars are a file of dates (the loaded file's ``attrs``; None: unknown,
        #: decided on these bars where needed): a prefix of a file keeps the file's
        self.dates_only: Optional[bool] = getattr(data, "attrs", {}).get("dates_only")
        self.cache = cache if cache is not None else {}
        # the cache belongs to one dataset: its contiguous price arrays are made once
        prices = self.cache.get("__prices__")
        if prices is None:
            prices = self.cache["__prices__"] = _price_arrays(data)
        self.open, self.high, self.low, self.close, self.volume = prices
        self.n = int(self.close.shape[0])
        self.pip_size = float(pip_size)
        self.context_params = dict(context_params or {})

    def feature(self, plugin: str, params: Optional[dict[str, Any]] = None, *,
                label: Optional[str] = None) -> dict[str, np.ndarray]:
        """Outputs of context plugin ``plugin`` with ``params`` (defaults filled in), cached.

        ``params`` holding ``"@timeframe": "4h@utc"`` asks for the outputs on that higher
        timeframe, aligned causally to these bars (:mod:`metaflow_nb.workers.timeframes`).
        ``label``: the instance id an error in ``compute`` names (the workforce computing
        its own context instance); by default the plugin's name. Outputs are cached by
        plugin and params alone, whoever asks.

        >>> import pandas as pd
        >>> bars = pd.DataFrame({"open": 1.0, "high": 4.0, "low": 1.0, "close": [1.0, 2.0, 3.0, 4.0], "volume": 0.0})
        >>> FeatureContext(bars).feature("sma", {"period": 2})["sma"].tolist()
        [nan, 1.5, 2.5, 3.5]
        """
        if params and TIMEFRAME_KEY in params:
            rest = {k: v for k, v in params.items() if k != TIMEFRAME_KEY}
            return timeframe_feature(self, plugin, rest, params[TIMEFRAME_KEY], label)
        cls = get_plugin(plugin)
        model, key = _feature_key(cls, plugin, params)  # params models are immutable: shared
        hit = self.cache.get(key)
        if hit is None:
            hit = call_worker(cls(label or plugin, model), "compute", self)
            self.cache[key] = hit
        return hit

    def prefetch(self, requests: Iterable[tuple[str, Optional[dict[str, Any]]]]) -> None:
        """Compute and cache the outputs of several ``(plugin, params)`` that
        :meth:`feature` will be asked for, each plugin's together: a context plugin with a
        ``compute_many(ctx, models)`` classmethod (one output dict per params model, each
        what ``compute`` gives) computes them in one call, e.g. the ``sma`` of every period
        a sweep's groups read in one pass over the closes. Others are left to
        :meth:`feature`, as is anything on a higher timeframe or already cached.

        >>> ctx = FeatureContext(__import__("metaflow_nb").load_data("sp500_daily"))
        >>> ctx.prefetch([("sma", {"period": 5}), ("sma", {"period": 20})])
        >>> bool(np.array_equal(ctx.feature("sma", {"period": 20})["sma"],
        ...                     get_plugin("sma")("s", get_plugin("sma").Params(period=20)).compute(ctx)["sma"],
        ...                     equal_nan=True))
        True
        """
        pending: dict[str, dict[Any, Any]] = {}
        for plugin, params in requests:
            if params and TIMEFRAME_KEY in params:
                continue
            cls = get_plugin(plugin)
            if getattr(cls, "compute_many", None) is None:
                continue
            model, key = _feature_key(cls, plugin, params)
            if key not in self.cache:
                pending.setdefault(plugin, {})[key] = model
        for plugin, models in pending.items():
            if len(models) < 2:
                continue  # nothing to share: feature() computes it when asked
            cls = get_plugin(plugin)
            outs = _checked_many(cls, plugin, self, list(models.values()), cls.compute_many(self, list(models.values())))
            for key, out in zip(models, outs):
                self.cache[key] = out

    def context(self, plugin: str, **overrides: Any) -> dict[str, np.ndarray]:
        """The outputs of the blueprint's configuration of context plugin ``plugin`` (or of
        its defaults), with ``overrides`` replacing params of it.

        >>> import pandas as pd
        >>> bars = pd.DataFrame({"open": 1.0, "high": 4.0, "low": 1.0, "close": [1.0, 2.0, 3.0, 4.0], "volume": 0.0})
        >>> ctx = FeatureContext(bars, context_params={"sma": {"period": 3}})
        >>> ctx.context("sma")["sma"].tolist(), ctx.context("sma", period=2)["sma"].tolist()
        ([nan, nan, 2.0, 3.0], [nan, 1.5, 2.5, 3.5])
        """
        params = {**self.context_params.get(plugin, {}), **overrides}
        return self.feature(plugin, params)


def _checked_many(cls: Any, plugin: str, ctx: FeatureContext, models: list, outs: Any) -> list:
    """``compute_many``'s outputs once they are one dict of per-bar arrays per model and
    the first and last are what ``compute`` gives (the usual mistake is another order: a
    sweep's rows would silently belong to other params). Else a PluginError naming the
    plugin. Two ``compute`` calls per plugin and sweep are the price (a plugin's own; the
    built-ins are held to it by their tests)."""
    from ..errors import PluginError

    def fail(message: str) -> PluginError:
        return PluginError(f"{plugin} (context): {message}")

    if not isinstance(outs, (list, tuple)):
        raise fail(f"compute_many returned a {type(outs).__name__}; expected a list of output dicts, one per "
                   "params model")
    if len(outs) != len(models):
        raise fail(f"compute_many returned {len(outs)} outputs for {len(models)} params models; expected one per "
                   "model, in their order")
    for k, out in enumerate(outs):
        if not isinstance(out, dict):
            raise fail(f"compute_many's output {k} is a {type(out).__name__}; expected a dict of per-bar arrays")
        for name, values in out.items():
            size = np.shape(values)[0] if np.ndim(values) == 1 else None
            if size != ctx.n:
                raise fail(f"compute_many's output {k}: {name} has {size if size is not None else np.shape(values)} "
                           f"values; expected {ctx.n} (one per bar)")
    if cls.__module__.startswith("metaflow_nb."):
        return list(outs)  # the built-ins' compute_many equal their compute bit for bit (their tests)
    # every output the first time this plugin's compute_many runs in the process (a wrong
    # order is a systematic bug: it shows there), the first and the last afterwards
    checked = range(len(models)) if cls not in _MANY_VERIFIED else sorted({0, len(models) - 1})
    for k in checked:
        one = cls(plugin, models[k]).compute(ctx)
        differs = sorted(set(one) ^ set(outs[k])) or [name for name in one if not np.array_equal(
            np.asarray(one[name]), np.asarray(outs[k][name]), equal_nan=np.asarray(one[name]).dtype.kind in "fc")]
        if differs:
            raise fail(f"compute_many's output {k} (params {models[k].model_dump(mode='json')}) is not what compute "
                       f"gives ({', '.join(map(str, differs))} differs); expected one output per params model, in "
                       "their order, each what compute gives")
    if len(models) > 2:   # a call where a model sat between the first and the last
        _MANY_VERIFIED.add(cls)
    return list(outs)


#: plugin classes whose compute_many output was compared with compute for every model
_MANY_VERIFIED: set = set()


# ---------------------------------------------------------------- higher timeframes

#: the key of a params mapping that asks :meth:`FeatureContext.feature` for the plugin's
#: outputs on a higher timeframe, ``"4h@utc"`` (never a plugin param: removed before
#: validation). See :mod:`metaflow_nb.workers.timeframes`.
TIMEFRAME_KEY = "@timeframe"


def coarser(ctx: FeatureContext, spec: str) -> tuple[FeatureContext, Any]:
    """The feature context of the higher bars of ``spec`` (``"4h@fx"``) and the
    :class:`~metaflow_nb.data.timeframe.Resampled` mapping of ``ctx``'s bars onto them;
    resampled once per dataset and spec (kept in ``ctx``'s cache, with the higher bars'
    own feature cache).

    >>> import pandas as pd
    >>> close = np.arange(1.0, 9.0)
    >>> ctx = FeatureContext(pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0},
    ...                                   index=pd.date_range("2024-01-01", periods=8, freq="1h")))
    >>> coarser(ctx, "4h@utc")[0].close.tolist()   # two 4h bars
    [4.0, 8.0]
    """
    key = ("__timeframe__", spec)
    hit = ctx.cache.get(key)
    if hit is None:
        import pandas as pd

        from ..data.timeframe import resample
        tf, _, day = str(spec).partition("@")
        base = pd.DataFrame({"open": ctx.open, "high": ctx.high, "low": ctx.low, "close": ctx.close,
                             "volume": ctx.volume}, index=ctx.index)
        if ctx.dates_only is not None:
            base.attrs["dates_only"] = ctx.dates_only
        hit = ctx.cache[key] = (resample(base, tf, day or "utc"), FeatureCache())
    resampled, cache = hit
    # the blueprint's params without the timeframe ones (relative to the base bars)
    params = {k: p for k, p in ctx.context_params.items() if TIMEFRAME_KEY not in p}
    return FeatureContext(resampled.frame, pip_size=ctx.pip_size, context_params=params, cache=cache), resampled


def timeframe_feature(ctx: FeatureContext, plugin: str, params: dict[str, Any], spec: str,
                      label: Optional[str] = None) -> dict[str, np.ndarray]:
    """``plugin``'s outputs with ``params`` computed on the higher bars of ``spec`` and
    aligned causally to ``ctx``'s bars (cached in ``ctx``'s cache; ``label`` as in
    :meth:`FeatureContext.feature`).

    >>> import pandas as pd
    >>> close = np.arange(1.0, 9.0)
    >>> ctx = FeatureContext(pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0},
    ...                                   index=pd.date_range("2024-01-01", periods=8, freq="1h")))
    >>> timeframe_feature(ctx, "sma", {"period": 1}, "4h@utc")["sma"].tolist()   # a 4h bar's close once it closed
    [nan, nan, nan, nan, 4.0, 4.0, 4.0, 4.0]
    """
    key = _timeframe_key(plugin, params, spec)
    hit = ctx.cache.get(key)
    if hit is None:
        from ..data.timeframe import align_outputs
        higher, resampled = coarser(ctx, spec)
        hit = ctx.cache[key] = align_outputs(higher.feature(plugin, params, label=label), resampled)
    return hit
