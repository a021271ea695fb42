"""Step 1 of the run path: the per-bar arrays of a workforce on one dataset."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import numpy as np

from ..config.buildspecs import canonical_json
from ..engine import codes
from ..errors import ConfigError, PluginError
from ..workers.calls import call_worker
from ..workers.contracts import Opportunities, Worker
from ..workers.features import FeatureContext
from .checks import check_features, check_mask, check_scores, check_signals, checked_reason
from .workforce import Workforce


@dataclass
class Group:
    """Features, merged setups and threat masks of one workforce on one dataset: what
    every sweep combination with the same feature params shares.

    ``masks[k]`` is threat ``k``'s per-bar bitmask (zeros for a drawdown monitor, which
    the kernel evaluates on the path); ``reasons[k]`` its reason code and
    ``reason_names[k]`` that code's name. Codes of plugins' own reasons are allocated per
    process, so a group names them itself: a journal read in another process (a result
    sent back by a loky or dask worker) shows the names this process gave.
    """

    ctx: FeatureContext
    opps: Opportunities
    masks: np.ndarray
    reasons: np.ndarray
    threat_ids: list[str]
    reason_names: tuple[str, ...] = ()
    #: the opportunity workers that made ``opps`` (``opps.worker`` indexes them): they
    #: score its setups when a portfolio ranks simultaneous setups (:func:`setup_scores`)
    opportunity: tuple[Worker, ...] = ()
    _scores: Optional[np.ndarray] = None


def build_group(wf: Workforce, bars: Any, pip_size: float, cache: Optional[dict] = None, first: int = 0,
                key: Optional[str] = None) -> Group:
    """Run the context, opportunity and threat workers of ``wf`` on ``bars``.

    Setups stamped before bar ``first`` (``data.trade_start``: warm-up bars) are dropped.
    ``cache`` is the dataset's feature cache: a group made before with the same workers
    (plugin classes and params), pip size and first bar is returned as it was, and
    features and threat masks computed by another group with the same params are reused.
    ``key`` is :func:`group_key` of ``wf`` when the caller has it already.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> g = build_group(Workforce.from_specs(specs), mf.load_data("sp500_daily"), specs.pip_size)
    >>> len(g.opps) > 0, g.masks.shape[0]
    (True, 0)
    """
    if cache is None:
        # nobody else will look for this group: not memoised, so the group (its context
        # holds the cache) and a cache holding the group make no reference cycle
        return _build(wf, bars, pip_size, {}, first)
    # the group key leaves drawdown monitors out (their params vary per combination); their
    # places among the threats and the plugin classes are part of this key
    memo = ("__group__", key or group_key(wf), tuple((w.instance_id, id(type(w))) for w in wf.threat),
            tuple(id(type(w)) for w in (*wf.context, *wf.opportunity)), float(pip_size), int(first))
    hit = cache.get(memo)
    if hit is not None:
        return hit
    group = cache[memo] = _build(wf, bars, pip_size, cache, first)
    return group


def forget_groups(cache: dict) -> None:
    """Drop the groups memoised in a feature ``cache`` that is being let go. A group holds
    the cache through its feature context, so a cache still holding its groups would make
    a reference cycle and keep its arrays until the collector's next full pass; groups in
    use keep working (their context keeps the features).

    >>> cache = {("__group__", "k"): object(), "__prices__": 1}
    >>> forget_groups(cache); list(cache)
    ['__prices__']
    """
    for key in [k for k in cache if isinstance(k, tuple) and k and k[0] == "__group__"]:
        cache.pop(key, None)


def prefetch_features(workforces: Iterable[Workforce], bars: Any, pip_size: float, cache: dict) -> None:
    """Compute together, into the dataset's feature ``cache``, the context features the
    opportunity workers of ``workforces`` (a sweep's groups) will read, as far as they
    declare them (an optional ``feature_requests()`` returning ``(plugin, params)``
    pairs; see :meth:`FeatureContext.prefetch`). A speed-up only: what is not declared
    or not batched is computed by :func:`build_group` as before.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> bars, cache = mf.load_data("sp500_daily"), {}
    >>> prefetch_features([Workforce.from_specs(specs)], bars, specs.pip_size, cache)
    >>> build_group(Workforce.from_specs(specs), bars, specs.pip_size, cache).ctx.cache is cache
    True
    """
    requests = []
    for wf in workforces:
        for w in wf.opportunity:
            declared = getattr(w, "feature_requests", None)
            if callable(declared):
                try:
                    requests.extend(declared())
                except Exception:  # noqa: BLE001 - the worker's own detect reports its errors
                    continue
    if requests:
        try:
            FeatureContext(bars, pip_size=pip_size, cache=cache).prefetch(requests)
        except PluginError:
            raise  # a compute_many breaking its contract: every group of the sweep would read it
        except Exception:  # noqa: BLE001 - left to build_group, which names the failing worker
            pass


def _build(wf: Workforce, bars: Any, pip_size: float, shared: dict, first: int) -> Group:
    ctx = FeatureContext(bars, pip_size=pip_size, context_params=wf.context_params(), cache=shared)
    for w in wf.context:
        # computed up front so a broken context worker fails here, named, not inside another
        check_features(w, ctx.feature(w.name, wf.feature_params(w), label=w.instance_id), ctx.n)
    opps = merge_signals(ctx, wf.opportunity)
    if first > 0:
        opps = opps.take(opps.bar >= first)
    k = len(wf.threat)
    reasons = np.zeros(k, dtype=np.int64)
    names = tuple(checked_reason(w) for w in wf.threat)
    keys = []
    for j, w in enumerate(wf.threat):
        reasons[j] = codes.allocate_reason(names[j])
        # a mask depends on its plugin (the class: a notebook cell run again makes a new
        # one under the same name, hunt67 F2), its params and the data only: groups share
        # it (a drawdown monitor's row is zeros: the kernel evaluates it on the path)
        keys.append(None if call_worker(w, "drawdown_limit") is not None else (
            "__mask__", w.name, type(w), canonical_json(w.params.model_dump(mode="json")),
            canonical_json(wf.context_params())))
    # groups with the same threats share one array of their masks, so a sweep packs it
    # once per dataset, not once per group (assembly.basket.pack_pairs)
    stacked = ("__masks__", tuple(keys), ctx.n)
    masks = shared.get(stacked)
    if masks is None:
        masks = np.zeros((k, ctx.n), dtype=np.int8)
        for j, (w, key) in enumerate(zip(wf.threat, keys)):
            if key is None:
                continue
            mask = shared.get(key)
            if mask is None:
                # checked before the int8 copy below, which would wrap 256 to 0
                mask = shared[key] = check_mask(w, call_worker(w, "mask", ctx), ctx.n)
            masks[j] = mask
        if k:
            shared[stacked] = masks
    return Group(ctx, opps, masks, reasons, [w.instance_id for w in wf.threat], names, tuple(wf.opportunity))


def setup_scores(group: Group) -> np.ndarray:
    """One score per setup of ``group`` (in ``group.opps`` order), from the ``score(ctx,
    setups)`` method of the opportunity worker that found it: what ``rank: score`` orders
    a portfolio's simultaneous setups by (highest first). Computed once per group.

    A worker without the method is a :class:`~metaflow_nb.errors.ConfigError` (the
    operation asks for something the strategy cannot give); a score that is not one finite
    number per setup, a :class:`~metaflow_nb.errors.PluginError` naming the worker.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> g = build_group(Workforce.from_specs(specs), mf.load_data("sp500_daily"), specs.pip_size)
    >>> s = setup_scores(g)
    >>> s.shape == g.opps.bar.shape, bool((s >= 0).all())
    (True, True)
    """
    if group._scores is not None:
        return group._scores
    out = np.empty(len(group.opps))
    for k, w in enumerate(group.opportunity):
        if not callable(getattr(w, "score", None)):
            raise ConfigError(f"rank: score: opportunity worker {w.instance_id!r} (plugin {w.name!r}) gives no "
                              f"score; define score(ctx, setups) on the plugin or rank: basket")
        sel, values = worker_scores(w, group.ctx, group.opps, k)
        out[sel] = values
    group._scores = out
    return out


def worker_scores(w: Worker, ctx: FeatureContext, opps: Opportunities, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Opportunity worker ``w``'s checked scores of its own setups of ``opps`` (those with
    ``opps.worker == k``): ``(their places in opps, their scores)``. ``w`` must define
    ``score``; :func:`setup_scores` and the causality check read scores through here.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> wf = Workforce.from_specs(specs)
    >>> g = build_group(wf, mf.load_data("sp500_daily"), specs.pip_size)
    >>> sel, values = worker_scores(wf.opportunity[0], g.ctx, g.opps, 0)
    >>> sel.shape == values.shape == g.opps.bar.shape
    True
    """
    sel = np.flatnonzero(np.asarray(opps.worker) == k)
    own = opps.take(sel)
    return sel, check_scores(w, call_worker(w, "score", ctx, own), own)


def group_key(wf: Workforce, canonical: Optional[dict[str, str]] = None) -> str:
    """Identifies the per-bar arrays of a combination: the canonical JSON of
    ``[[instance_id, params], ...]`` of its context, opportunity and mask-type threat
    workers (and ``,"4h@utc"`` after the params of one on a higher timeframe).
    ``canonical`` holds the params' canonical JSON per instance, when known.

    >>> import metaflow_nb as mf
    >>> group_key(Workforce.from_specs(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")))
    '[["sma_1",{"fast":10,"slow":20}]]'
    """
    parts = []
    tfs = wf.timeframes
    for w in (*wf.context, *wf.opportunity, *wf.threat):
        if w.role == "threat" and call_worker(w, "drawdown_limit") is not None:
            continue  # path-dependent: varies per combination inside the kernel
        params = canonical.get(w.instance_id) if canonical is not None else None
        if params is None:
            params = canonical_json(w.params.model_dump(mode="json"))
        tf = tfs.get(w.instance_id) if tfs else None
        parts.append(f"[{canonical_json(w.instance_id)},{params},{canonical_json(tf)}]" if tf
                     else f"[{canonical_json(w.instance_id)},{params}]")
    return "[" + ",".join(parts) + "]"


def merge_signals(ctx: FeatureContext, workers: list[Worker]) -> Opportunities:
    """Run every opportunity worker and merge their setups, sorted by bar then worker.

    >>> import metaflow_nb as mf
    >>> wf = Workforce.from_specs(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"))
    >>> opps = merge_signals(FeatureContext(mf.load_data("sp500_daily")), wf.opportunity)
    >>> len(opps), opps.bar[:3].tolist(), opps.direction[:3].tolist()
    (261, [28, 39, 61], [-1, 1, -1])
    """
    bars, dirs, who, tops, bottoms = [], [], [], [], []
    for k, w in enumerate(workers):
        # the setups' bars, directions and zones, once the signals passed their checks
        idx, d, top, bottom = check_signals(w, call_worker(w, "detect", ctx), ctx.n)
        bars.append(idx)
        dirs.append(d)
        who.append(np.full(idx.shape[0], k, dtype=np.int64))
        tops.append(top)
        bottoms.append(bottom)
    if len(bars) == 1:
        # one worker: its setups are already in bar order (what the sort below gives)
        bar = bars[0].astype(np.int64, copy=False)
        return Opportunities(
            bar=np.ascontiguousarray(bar), direction=np.ascontiguousarray(dirs[0]),
            worker=who[0], top=np.ascontiguousarray(tops[0]), bottom=np.ascontiguousarray(bottoms[0]),
            signal_close=np.ascontiguousarray(ctx.close[bar]),
        )
    bar = np.concatenate(bars) if bars else np.empty(0, np.int64)
    worker = np.concatenate(who) if who else np.empty(0, np.int64)
    order = np.lexsort((worker, bar))
    bar = bar[order].astype(np.int64)
    return Opportunities(
        bar=np.ascontiguousarray(bar),
        direction=np.ascontiguousarray(np.concatenate(dirs)[order] if dirs else np.empty(0, np.int64)),
        worker=np.ascontiguousarray(worker[order]),
        top=np.ascontiguousarray(np.concatenate(tops)[order] if tops else np.empty(0)),
        bottom=np.ascontiguousarray(np.concatenate(bottoms)[order] if bottoms else np.empty(0)),
        signal_close=np.ascontiguousarray(ctx.close[bar]),
    )
