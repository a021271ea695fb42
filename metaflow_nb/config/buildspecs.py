"""BuildSpecs: the immutable, fully resolved description of one run.

A BuildSpecs holds the resolved blueprint (every plugin's params with defaults filled
in), the resolved operation and the fingerprint of the data. Its content hash is the run
id used by the results store and report manifests. Meta workflows derive new specs with
:meth:`BuildSpecs.with_params` / :meth:`BuildSpecs.with_overrides`; the base is never
changed.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from ..data import load_data
from ..data.clock import UTC_NAMES
from ..data.loader import resolve_source
from ..errors import ConfigError, DataError, PluginError, caused_by_interrupt
from ..limits import unserializable
from ..workers.base import SECTION_ROLES, get_plugin, known_plugins
from ..workers.contracts import declare_reasons
from ..workers.registry import PLUGINS_ENV, code_fingerprint, import_plugins, session_plugins
from .loading import article, format_loc, plain_config, validate_model, validation_message
from .models import (  # noqa: F401  (the section lists are re-exported: BuildSpecs readers use them)
    OPTIONAL_DATA_KEYS, PLANNING_SECTIONS, WORKFORCE_SECTIONS, Operation, StrategyBlueprint, iter_section_workers,
    section_path, section_workers,
)
from .overrides import parse_param_overrides, row_params

#: bump when the meaning of a resolved config changes, so old stored results are not reused
SPEC_VERSION = 1
#: the operation's ``data`` keys that decide which bars are read, hence the data fingerprint
_READ_KEYS = ("source", "timezone", "date_column")


def read_options(data: Mapping[str, Any]) -> dict[str, str]:
    """The keyword arguments of :func:`~metaflow_nb.data.load_data` an operation's ``data``
    mapping sets: how its file is read (``timezone``, ``date_column``; unset ones left out).

    >>> read_options({"source": "a.csv", "timezone": "Europe/Berlin", "date_column": None})
    {'timezone': 'Europe/Berlin'}
    """
    return {k: data[k] for k in ("timezone", "date_column") if data.get(k) is not None}


def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON: the form hashes are taken of.

    >>> canonical_json({"b": 1, "a": [1.5, None]})
    '{"a":[1.5,null],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)




def deep_merge(base: Any, override: Any, path: str = "", strict: bool = True) -> Any:
    """Merge ``override`` into a copy of ``base``: mappings merge, everything else replaces.

    With ``strict`` every key of ``override`` must already exist in ``base`` (a typo in a
    variant must not silently add a key nobody reads).

    >>> deep_merge({"a": {"x": 1, "y": 2}, "b": [1, 2]}, {"a": {"y": 3}, "b": [9]})
    {'a': {'x': 1, 'y': 3}, 'b': [9]}
    """
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for key, value in override.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in base:
                if strict:
                    known = ", ".join(sorted(map(str, base))) or "none"
                    what = "operation" if where.startswith("operation.") else "blueprint"
                    raise ConfigError(f"{where}: no such key in the {what} (keys here: {known})")
                out[key] = copy.deepcopy(value)
            else:
                out[key] = deep_merge(base[key], value, where, strict)
        return out
    return copy.deepcopy(override)


def spec_hash(blueprint: Mapping[str, Any], operation: Mapping[str, Any], fingerprint: str,
              code: Optional[Mapping[str, str]] = None) -> str:
    """Content hash of a resolved blueprint + operation + data fingerprint (+ the source
    fingerprints of plugins that are not metaflow-nb's own).

    The data source's spelling (sample name or path) is left out: the fingerprint already
    identifies the data, so a moved file keeps its run ids.

    >>> a = spec_hash({"name": "x"}, {"data": {"source": "a.csv"}}, "f" * 64)
    >>> len(a), a == spec_hash({"name": "x"}, {"data": {"source": "moved/a.csv"}}, "f" * 64)
    (64, True)
    """
    return hashlib.sha256(spec_payload(blueprint, operation, fingerprint, code).encode()).hexdigest()


def spec_payload(blueprint: Mapping[str, Any], operation: Mapping[str, Any], fingerprint: str,
                 code: Optional[Mapping[str, str]] = None) -> str:
    """The canonical JSON text :func:`spec_hash` hashes. ``code`` maps the plugins that are
    not metaflow-nb's own to the fingerprint of their source
    (:func:`~metaflow_nb.workers.registry.code_fingerprint`): edited code is another run.

    >>> spec_payload({"name": "x"}, {"data": {"source": "a.csv", "start": None}}, "f00")
    '{"blueprint":{"name":"x"},"data":"f00","operation":{"data":{"start":null}},"v":1}'
    >>> spec_payload({"name": "x"}, {"data": {}}, "f00", {"mine": "ab12"})
    '{"blueprint":{"name":"x"},"code":{"mine":"ab12"},"data":"f00","operation":{"data":{}},"v":1}'
    """
    op = dict(operation)
    # where a file sits is not the run: data.source's content is ``fingerprint``, and an
    # intrabar file's is its own fingerprint (hunt118 F1: its path made two copies of one
    # folder two runs); ``intrabar: source`` has none and stays
    where = {"source", "intrabar"} if op["data"].get("intrabar_fingerprint") else {"source"}
    op["data"] = {k: v for k, v in op["data"].items() if k not in where}
    doc = {"v": SPEC_VERSION, "blueprint": blueprint, "operation": op, "data": fingerprint}
    if code:  # absent for metaflow-nb's own workers: their run ids stay as they were
        doc["code"] = dict(code)
    return canonical_json(doc)


class WorkerEntry(NamedTuple):
    """One worker instance of resolved specs, as :meth:`BuildSpecs.entries` hands it out.

    ``params`` is a read-only view of the resolved params; ``model`` is the plugin's
    validated ``Params`` instance (immutable), validated once per specs. ``timeframe``
    is a context worker's higher timeframe, ``"4h@utc"`` (None: the data's bars).
    """

    instance_id: str
    plugin: str
    section: str
    params: Mapping[str, Any]
    model: BaseModel
    timeframe: Optional[str] = None


@dataclass(frozen=True)
class BuildSpecs:
    """Frozen, hashable, fully resolved run description.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> faster = specs.with_params("sma_1", {"fast": 5})
    >>> specs.params("sma_1")["fast"], faster.params("sma_1")["fast"]
    (10, 5)
    >>> specs.hash != faster.hash
    True
    """

    blueprint_json: str
    operation_json: str
    data_fingerprint: str
    origin: str = field(default="", compare=False)
    #: declared plugin modules (the config's ``plugins:`` lists, ``--plugins``,
    #: ``use_plugins``), imported before any worker is looked up, here and in the worker
    #: processes the specs are sent to. Not part of the run id: the plugin names and params
    #: already say what runs, and the same run declared in YAML or by ``--plugins`` is the
    #: same run (a resumed sweep finds it)
    plugins: tuple[str, ...] = field(default=(), compare=False)
    #: validated params model per instance id, as the translator made them; derived
    #: state, so it takes no part in equality, hash or run id
    _models: Optional[Mapping[str, BaseModel]] = field(default=None, compare=False, repr=False, hash=False)
    #: the clock bars handed as a DataFrame were read on (a basket's instrument names its
    #: own): its operation has no ``data.timezone`` left, the bars being UTC already, but
    #: a worker's own zone param would still read the times twice (:func:`data_zone_problem`).
    #: Not part of the run id: the fingerprint is of those UTC bars
    data_clock: Optional[str] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # the plugins' code as it is now: the run id of a result must not follow a class
        # redefined later under the same name (a notebook cell run again, hunt67 F2)
        try:
            self._code
        except Exception:  # noqa: BLE001 - a plugin this process cannot load: named when used
            pass

    def __getstate__(self) -> dict[str, Any]:
        # only the fields (and the hash, costly to recompute): cached views hold
        # read-only proxies, which do not pickle, and are cheap to rebuild
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        # sent with the specs: a worker process names the run as this process does, by the
        # plugin code this process read (code_fingerprint), and checks it runs that code
        state["hash"] = self.hash
        state["_code"] = self._code
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__["_received"] = True

    # ------------------------------------------------------------ views
    @property
    def blueprint(self) -> dict[str, Any]:
        """The resolved blueprint as a fresh dict (changing it changes nothing here)."""
        return json.loads(self.blueprint_json)

    @property
    def operation(self) -> dict[str, Any]:
        """The resolved operation as a fresh dict."""
        return json.loads(self.operation_json)

    @cached_property
    def _blueprint(self) -> dict[str, Any]:
        return json.loads(self.blueprint_json)

    @cached_property
    def _operation(self) -> dict[str, Any]:
        return json.loads(self.operation_json)

    @cached_property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the resolved config plus the data fingerprint (and
        the source fingerprints of plugins that are not metaflow-nb's own)."""
        return spec_hash(self._blueprint, self._operation, self.data_fingerprint, self._code)

    @cached_property
    def _code(self) -> dict[str, str]:
        """The source fingerprint of each plugin these specs use that is not metaflow-nb's
        own: a run id changes with the plugin's code, so a resumed sweep does not reuse what
        the code before an edit computed."""
        out: dict[str, str] = {}
        for e in self._entries:
            if e.plugin not in out:
                try:
                    cls = get_plugin(e.plugin)
                except KeyError:  # a process that does not know it: the run fails, naming it
                    continue
                digest = code_fingerprint(cls)
                if digest is not None:
                    out[e.plugin] = digest
        if out:
            # plugin code may reach any plugin of the declared modules by name (ctx.feature),
            # which the workforce does not list (hunt33 F1: an edited feature kept its run id);
            # metaflow-nb's own workers request only its own features, so a workforce of them
            # leaves declarations out of the run id
            # (no warning about a broken entry point: every run asks, hunt89 F4; a worker it
            # would have provided is named with it where it is looked up)
            for name in known_plugins(warn=False):
                if name in out:
                    continue
                cls = get_plugin(name)
                mod = cls.__module__
                if any(mod == m or mod.startswith(m + ".") for m in self.plugins):
                    digest = code_fingerprint(cls)
                    if digest is not None:
                        out[name] = digest
        return out

    @property
    def run_id(self) -> str:
        """The first 16 hex digits of :attr:`hash`."""
        return self.hash[:16]

    def __hash__(self) -> int:
        return int(self.hash[:15], 16)

    def _with_params_replaced(self, params: Mapping[str, Any]) -> dict[str, Any]:
        bp = self.blueprint
        for _, _, w in iter_section_workers(bp["workforce"]):
            if w["instance_id"] in params:
                w["params"] = params[w["instance_id"]]
        return bp

    def hash_with_params(self, params: Mapping[str, Mapping[str, Any]]) -> str:
        """The :attr:`hash` these specs would have with some instances' params replaced
        by ``params`` (resolved params, as validation leaves them; nothing is validated
        here): how a sweep names a combination without building its specs.

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> specs.hash_with_params({"sma_1": {"fast": 5, "slow": 20}}) == specs.with_params("sma_1", {"fast": 5}).hash
        True
        """
        return spec_hash(self._with_params_replaced(params), self._operation, self.data_fingerprint, self._code)

    def hash_template(self, instances: Sequence[str]) -> Optional[tuple[str, ...]]:
        """The payload :func:`spec_hash` hashes, cut around the params of ``instances``:
        ``parts[0] + canonical_json(params of instances[0]) + parts[1] + ...`` is the
        payload of these specs with those params, so a sweep hashes a combination by
        joining strings. None when a cut is not unambiguous (then use
        :meth:`hash_with_params`).

        >>> import hashlib, metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> head, tail = specs.hash_template(["sma_1"])
        >>> text = head + canonical_json({"fast": 5, "slow": 20}) + tail
        >>> hashlib.sha256(text.encode()).hexdigest() == specs.with_params("sma_1", {"fast": 5}).hash
        True
        """
        marks = {inst: f"\x00metaflow-nb:params:{k}\x00" for k, inst in enumerate(instances)}
        text = spec_payload(self._with_params_replaced(marks), self._operation, self.data_fingerprint, self._code)
        parts: list[str] = []
        for inst in instances:
            mark = canonical_json(marks[inst])
            if text.count(mark) != 1:
                return None
            head, text = text.split(mark)
            parts.append(head)
        parts.append(text)
        return tuple(parts)

    # ------------------------------------------------------------ typed accessors
    @property
    def name(self) -> str:
        """The blueprint's name."""
        return self._blueprint.get("name", "strategy")

    @property
    def direction(self) -> str:
        """``long_short``, ``long_only`` or ``short_only``."""
        return self._blueprint["direction"]

    @property
    def cash(self) -> float:
        """Starting cash of the account."""
        return float(self._operation["cash"])

    @property
    def commission(self) -> float:
        """Commission as a fraction of traded value, each side."""
        return float(self._operation["commission"])

    @property
    def slippage(self) -> float:
        """Slippage as a fraction of price, on market and stop fills."""
        return float(self._operation["slippage"])

    @property
    def leverage(self) -> float:
        """The operation's leverage (1.0: no margin)."""
        return float(self._operation["leverage"])

    @property
    def finalize_trades(self) -> bool:
        """Whether a trade still open at the last bar is closed there."""
        return bool(self._operation["finalize_trades"])

    @property
    def pip_size(self) -> float:
        """The instrument's pip size (price units of one pip)."""
        return float(self._operation["instrument"]["pip_size"])

    @property
    def symbol(self) -> str:
        """The instrument's symbol.

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
        >>> specs.symbol, specs.pip_size, specs.leverage, specs.seed
        ('SPX', 0.01, 1.0, 42)
        """
        return self._operation["instrument"]["symbol"]

    @property
    def data_source(self) -> str:
        """The data's sample name or resolved path (``<DataFrame>`` for a frame)."""
        return self._operation["data"]["source"]

    @property
    def data_start(self) -> Optional[str]:
        """The operation's ``data.start`` (None: from the first bar)."""
        return self._operation["data"]["start"]

    @property
    def data_end(self) -> Optional[str]:
        """The operation's ``data.end`` (None: to the last bar)."""
        return self._operation["data"]["end"]

    @property
    def dataset_key(self) -> str:
        """What decides the bars a run reads: its data's fingerprint and every ``data.*``
        key but ``trade_start`` (dates, clock, timeframe, trading day, calendar, intrabar).
        Runs with one key read the same bars and may share computed features; the file's
        fingerprint alone does not say so (daily bars cut on UTC and on London days are
        other bars of the same count)."""
        data = {k: v for k, v in self._operation["data"].items() if k != "trade_start"}
        return f"{self.data_fingerprint}|{canonical_json(data)}"

    @property
    def data_timezone(self) -> Optional[str]:
        """The data's clock (``data.timezone``): the zone its naive timestamps are written
        in, an IANA zone or a convention of :mod:`metaflow_nb.data.clock`; None: UTC."""
        return self._operation["data"].get("timezone")

    @property
    def read_clock(self) -> Optional[str]:
        """The clock the bars' times were read on: ``data.timezone``, or the one bars handed
        as a DataFrame were read on (:attr:`data_clock`); None: none was declared.

        >>> import metaflow_nb as mf
        >>> mf.build_specs("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml").read_clock
        'Europe/Athens'
        """
        return self.data_timezone or self.data_clock

    @property
    def data_date_column(self) -> Optional[str]:
        """The timestamp column named by ``data.date_column`` (None: found by name)."""
        return self._operation["data"].get("date_column")

    @property
    def data_calendar(self) -> Optional[str]:
        """The market's trading calendar (``data.calendar``: ``fx_24x5``, ``crypto_24x7``,
        ``exchange``): what daily returns are grouped by and Sharpe, Sortino, volatility,
        PSR and DSR annualised with; None: measured from the data
        (:func:`metaflow_nb.engine.metrics.calendar`). With ``data.trading_day`` the name
        is ``"<calendar>@<trading day>"`` (``"@<trading day>"`` when measured): the
        calendar on the market's own day (:func:`~metaflow_nb.engine.metrics.calendar_parts`)."""
        data = self._operation["data"]
        day = data.get("trading_day")
        return data.get("calendar") if day is None else f"{data.get('calendar') or ''}@{day}"

    @property
    def data_timeframe(self) -> Optional[str]:
        """``data.timeframe``: the run's bars are the source resampled to it (None: as read)."""
        return self._operation["data"].get("timeframe")

    @property
    def data_intrabar(self) -> Optional[str]:
        """``data.intrabar``: ``"source"`` or the sample or resolved path of the finer bars
        that decide ambiguous bars (:mod:`metaflow_nb.data.intrabar`); None: the stop first."""
        return self._operation["data"].get("intrabar")

    @property
    def data_intrabar_fingerprint(self) -> Optional[str]:
        """The content hash of the intrabar file (set on resolving; None for ``source``)."""
        return self._operation["data"].get("intrabar_fingerprint")

    @property
    def data_trading_day(self) -> str:
        """The trading-day convention resampled bars are cut in: ``data.trading_day``,
        else ``"fx"`` for the ``fx_24x5`` calendar and ``"utc"`` for the others
        (:mod:`metaflow_nb.data.timeframe`)."""
        data = self._operation["data"]
        return data.get("trading_day") or ("fx" if data.get("calendar") == "fx_24x5" else "utc")

    @property
    def data_read_options(self) -> dict[str, str]:
        """The keyword arguments of :func:`~metaflow_nb.data.load_data` the operation sets
        (``timezone``, ``date_column``; empty when it sets neither)."""
        return read_options(self._operation["data"])

    @property
    def trade_start(self) -> Optional[str]:
        """Bars before this time only warm indicators up (walk-forward test windows)."""
        return self._operation["data"]["trade_start"]

    @property
    def seed(self) -> int:
        """The operation's random seed."""
        return int(self._operation["seed"])

    # ------------------------------------------------------------ workers
    @cached_property
    def _workers(self) -> tuple[dict[str, Any], ...]:
        # shared by the readers in this module; never changed, never handed out
        return tuple({**w, "section": section}
                     for section, _, w in iter_section_workers(self._blueprint["workforce"]))

    @cached_property
    def _entries(self) -> tuple[WorkerEntry, ...]:
        # in a worker process (loky, dask) this is where the declared modules are imported
        import_plugins(self.plugins, where=f"{self.origin or '<BuildSpecs>'}: plugins")
        models = self._models
        out = []
        for w in self._workers:
            if models is not None and w["instance_id"] in models:
                model = models[w["instance_id"]]
            else:  # specs built by hand: validate here, once per specs
                model = get_plugin(w["plugin"]).Params.model_validate(w["params"])
            tf = w.get("timeframe")
            out.append(WorkerEntry(w["instance_id"], w["plugin"], w["section"],
                                   MappingProxyType(copy.deepcopy(w["params"])), model,
                                   f"{tf}@{w.get('trading_day') or 'utc'}" if tf else None))
        if self.__dict__.get("_received"):
            self._check_code()
        return tuple(out)

    def _check_code(self) -> None:
        """In a process these specs were sent to (loky, dask): refuse to run plugin code
        other than the code that named the run in the process that sent them. A module
        edited or upgraded in place after that process imported it is imported anew here,
        and its numbers would be stored under the old code's run id beside that code's own
        (hunt89 F2)."""
        for name, digest in self._code.items():
            try:
                cls = get_plugin(name)
            except KeyError:   # the run names it when it looks it up
                continue
            if code_fingerprint(cls) != digest:
                raise PluginError(
                    f"plugin {name!r} ({cls.__module__}): this worker process imported other code than the process "
                    f"running the sweep did (its module was edited or upgraded after that process imported it); "
                    f"restart that process (the Jupyter kernel, the script) so that every process runs one version")

    def entries(self) -> tuple[WorkerEntry, ...]:
        """Every worker instance in workforce order, with its validated params model.

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> e = specs.entries()[0]
        >>> e.instance_id, e.section, e.params["fast"], e.model.fast
        ('sma_1', 'opportunity_workers', 10, 10)
        """
        return self._entries

    def workers(self) -> list[dict[str, Any]]:
        """Every worker entry ``{instance_id, plugin, params, section}`` in workforce order
        (fresh dicts: changing them changes nothing here).

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
        >>> [(w["instance_id"], w["section"]) for w in specs.workers()][:2]
        [('sma_1', 'opportunity_workers'), ('entry_1', 'entry_planning')]
        """
        return copy.deepcopy(list(self._workers))

    def params(self, instance_id: str) -> dict[str, Any]:
        """Resolved params of one worker instance (defaults filled in).

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
        >>> specs.params("exit_1")
        {'exclusive_orders': True}
        """
        for w in self._workers:
            if w["instance_id"] == instance_id:
                return copy.deepcopy(w["params"])
        raise ConfigError(f"no worker instance {instance_id!r}; instances: "
                          f"{', '.join(w['instance_id'] for w in self._workers)}")

    # ------------------------------------------------------------ derivation
    def with_params(self, instance_id: str, params: Mapping[str, Any]) -> "BuildSpecs":
        """New specs with some params of one worker instance changed (and re-validated).

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
        >>> fast = specs.with_params("sma_1", {"fast": 5})
        >>> fast.params("sma_1"), fast.run_id != specs.run_id
        ({'fast': 5, 'slow': 20}, True)
        """
        bp = self.blueprint
        for _, _, w in iter_section_workers(bp["workforce"]):
            if w["instance_id"] == instance_id:
                w["params"] = {**w["params"], **dict(params)}
                return self._rebuild(bp, self.operation)
        self.params(instance_id)  # raises with the list of instances
        raise AssertionError("unreachable")

    def with_param_overrides(self, overrides: Mapping[str, Any]) -> "BuildSpecs":
        """New specs with params of several instances changed, in any spelling of
        :func:`~metaflow_nb.config.overrides.parse_param_overrides` (re-validated once).

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> a = specs.with_param_overrides({"sma_1__fast": 5})
        >>> b = specs.with_param_overrides({"sma_1": {"fast": 5}})
        >>> c = specs.with_param_overrides({"sma_1.fast": 5})
        >>> a.params("sma_1"), a == b == c
        ({'fast': 5, 'slow': 20}, True)
        """
        if not overrides:
            return self
        return self._rebuild(merge_param_overrides(self.blueprint, overrides), self.operation)

    def with_overrides(self, overrides: Mapping[str, Any], folder: Optional[Path] = None) -> "BuildSpecs":
        """New specs with a deep override of the blueprint (mappings merge, lists replace).

        A top-level ``operation`` key overrides the operation the same way. An override
        of how the data is read (``data.source``, ``data.timezone``, ``data.date_column``)
        reads it again: the specs carry that data's fingerprint, so its run id is that
        data's. A relative ``data.source`` is read from ``folder`` (the overriding config's),
        else from the working directory.

        >>> import metaflow_nb as mf
        >>> spx = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> fx = spx.with_overrides({"operation": {"data": {"source": "eurusd_15m"}}})
        >>> fx.run_id == mf.build_specs("config/runs/sma_cross.yaml", data="eurusd_15m").run_id != spx.run_id
        True
        """
        overrides = dict(overrides)
        op_over = dict(overrides.pop("operation", None) or {})
        data_over = op_over.get("data")
        if isinstance(data_over, Mapping) and isinstance(data_over.get("source"), str):
            op_over["data"] = {**data_over, "source": resolve_source(data_over["source"], folder)}
        # a declaration adds modules (it is not a list a variant replaces): validated,
        # imported and kept out of the blueprint by resolve_specs
        bp = deep_merge(self.blueprint, {k: v for k, v in overrides.items() if k != "plugins"})
        ib = (op_over.get("data") or {}).get("intrabar") if isinstance(op_over.get("data"), Mapping) else None
        if ib not in (None, "source") and ib != self.operation["data"].get("intrabar"):
            raise ConfigError(f"operation.data.intrabar: an override may set 'source' (or the base's own file), "
                              f"not {ib!r}: name a finer file in the base operation")
        # the data keys left out of a resolved operation when unset may still be set here (an
        # intrabar *file* is resolved and hashed only when a config is translated: refused above)
        base_op = dict(self.operation)
        base_op["data"] = {**{k: None for k in OPTIONAL_DATA_KEYS}, **base_op["data"]}
        op = deep_merge(base_op, {k: v for k, v in op_over.items() if k != "plugins"}, "operation")
        op["data"] = {k: v for k, v in op["data"].items() if not (k in OPTIONAL_DATA_KEYS and v is None)}
        if "plugins" in overrides:
            bp["plugins"] = overrides["plugins"]
        if "plugins" in op_over:
            op["plugins"] = op_over["plugins"]
        return self._rebuild(bp, op, self._fingerprint_of(op["data"]))

    def _fingerprint_of(self, data: Mapping[str, Any]) -> str:
        """The fingerprint of the data ``data`` (an operation's ``data`` mapping) reads: the
        specs' own unless it reads another file, or the same on another clock or column."""
        changed = [k for k in _READ_KEYS if data.get(k) != self.operation["data"].get(k)]
        if not changed:
            return self.data_fingerprint
        if self.data_source == "<DataFrame>":
            raise ConfigError(f"operation.data.{changed[0]}: the base runs on a DataFrame, read once on the base's clock; "
                              "expected no override of data.source, data.timezone or data.date_column")
        try:
            return load_data(data["source"], **read_options(data)).attrs["fingerprint"]
        except DataError as exc:
            raise DataError(f"operation.data.{changed[0]}: {exc}") from None

    def _rebuild(self, blueprint: dict[str, Any], operation: dict[str, Any],
                 fingerprint: Optional[str] = None) -> "BuildSpecs":
        return resolve_specs(blueprint, operation, fingerprint or self.data_fingerprint,
                             origin=self.origin or "<BuildSpecs>", plugins=self.plugins, data_clock=self.data_clock)

    def describe(self) -> str:
        """A one-line summary: the blueprint's name and the run id (also the repr).

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml")
        >>> specs.describe() == f"BuildSpecs('sma_cross', run_id={specs.run_id})"
        True
        """
        return f"BuildSpecs({self.name!r}, run_id={self.run_id})"

    __repr__ = describe

    def _repr_html_(self) -> str:
        """A notebook's view: the run's identity, its data and each worker's params."""
        import html

        data = self._operation["data"]
        rows = [("strategy", self.name), ("run id", self.run_id), ("data", str(data.get("source"))),
                ("calendar", self.data_calendar or "measured from the data"),
                ("cash / leverage", f"{self.cash:,.2f} / {self.leverage:g}"),
                ("commission / slippage", f"{self.commission:g} / {self.slippage:g} per side")]
        rows += [(f"{w['section']}: {w['instance_id']}", f"{w['plugin']} {dict(w['params'])}") for w in self.workers()]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<div class='mf-specs'><b>BuildSpecs</b><table>{body}</table></div>"


def merge_param_overrides(blueprint: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``blueprint`` (a plain dict, changed in place and returned) with the params of its
    worker instances overridden, in any spelling of
    :func:`~metaflow_nb.config.overrides.parse_param_overrides`; not validated here.

    >>> bp = {"workforce": {"opportunity_workers": [{"instance_id": "sma_1", "params": {"fast": 10}}]}}
    >>> merge_param_overrides(bp, {"sma_1__fast": 5})["workforce"]["opportunity_workers"][0]["params"]
    {'fast': 5}
    """
    per_instance = parse_param_overrides(overrides)
    if not per_instance:
        return blueprint
    found = {w["instance_id"]: w for _, _, w in iter_section_workers(blueprint.get("workforce") or {})}
    for inst, params in per_instance.items():
        if inst not in found:
            raise ConfigError(f"no worker instance {inst!r}; instances: {', '.join(found)}")
        found[inst]["params"] = {**(found[inst].get("params") or {}), **params}
    return blueprint


def specs_from_row(base: BuildSpecs, row: Mapping[str, Any], columns: Iterable[str],
                   grid_nulls: bool = False) -> BuildSpecs:
    """The specs a results row was run with: ``base`` with the row's ``instance.param``
    columns applied (the one way every service and report rebuilds a stored run);
    ``grid_nulls`` as in :func:`~metaflow_nb.config.overrides.row_params`.

    >>> import metaflow_nb as mf
    >>> base = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> specs_from_row(base, {"sma_1.fast": 5, "sharpe_ratio": 0.4}, ["sma_1.fast"]).params("sma_1")
    {'fast': 5, 'slow': 20}
    """
    return base.with_param_overrides(row_params(row, columns, grid_nulls))


# ---------------------------------------------------------------- resolving
# Here, beside the class, because derived specs (with_params, with_overrides) are
# resolved the same way as translated ones.

def section_entries(blueprint: Mapping[str, Any]) -> "Iterable[tuple[tuple[Any, ...], str, dict[str, Any]]]":
    """Yield ``(key_path, section, worker_dict)`` in workforce order.

    >>> [loc for loc, _, _ in section_entries({"workforce": {"opportunity_workers": [{"instance_id": "a"}]}})]
    [('workforce', 'opportunity_workers', 0)]
    """
    for section, i, w in iter_section_workers(blueprint.get("workforce", {})):
        yield ("workforce", *section_path(section), i), section, w


def data_zone_problem(cls: type, model: BaseModel, clock: Optional[str]) -> Optional[tuple[str, str]]:
    """What is wrong with a worker's own "zone the naive timestamps are in" param
    (``data_zone_param``, e.g. ``session_filter.timezone``) on data read on ``clock``, as
    ``(key, message)``, else None: it must stay UTC once the data's clock is declared (the
    timestamps reach workers in UTC then, and reading them in a zone again shifts them
    twice). The translator, the batch path's validation and a basket's instruments (each on
    its own clock) ask here.

    >>> from metaflow_nb.workers.base import get_plugin
    >>> cls = get_plugin("session_filter")
    >>> data_zone_problem(cls, cls.Params(timezone="Europe/Berlin"), "Europe/Berlin")[0]
    '.params.timezone'
    >>> data_zone_problem(cls, cls.Params(timezone="Europe/Berlin"), None) is None
    True
    """
    param = getattr(cls, "data_zone_param", None)
    if not param or clock is None:
        return None
    value = getattr(model, param, "UTC")
    if value in UTC_NAMES:
        return None
    return f".params.{param}", (f"{value!r} would read the timestamps again, but the operation's data.timezone "
                                f"{clock!r} already turned them into UTC; leave {param} out (it is for data "
                                f"without a declared clock)")


def _check_data_zone(cls: type, model: BaseModel, clock: Optional[str], where: str) -> None:
    wrong = data_zone_problem(cls, model, clock)
    if wrong:
        raise ConfigError(f"{where}{wrong[0]}: {wrong[1]}")


def resolve_specs(blueprint: Mapping[str, Any], operation: Mapping[str, Any], fingerprint: str,
                  origin: str = "<strategy>", plugins: Iterable[str] = (),
                  op_origin: Optional[str] = None, data_clock: Optional[str] = None) -> BuildSpecs:
    """Validate a blueprint and an operation, every worker against its plugin, and
    freeze the result; the validated params models travel with the specs.

    The declared plugin modules (the blueprint's and the operation's ``plugins:``,
    ``plugins`` and the session's) are imported first; a ``"module:Class"`` worker
    resolves only in one of them (or in an installed entry point's module).

    >>> import metaflow_nb as mf
    >>> base = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> resolve_specs(base.blueprint, base.operation, base.data_fingerprint) == base
    True
    """
    op_origin = op_origin or origin + " (operation)"
    # NumPy scalars (a notebook's np.int64(5)) count as the numbers they hold, as in YAML
    tree = plain_config(dict(blueprint), origin)
    try:
        bp = validate_model(StrategyBlueprint, tree, origin).model_dump(mode="json")
    except PydanticSerializationError as exc:
        if caused_by_interrupt(exc):   # Ctrl-C in the serializer: a notebook shows it as one
            raise KeyboardInterrupt from None
        # params are free-form mappings: a Python object got through to the dump (looked
        # for only then: a walk of every run's blueprint costs ~20 µs)
        bad = unserializable(tree)
        if bad is None:
            raise
        raise ConfigError(f"{origin}: {format_loc(bad[0])}: expected a number, text, true/false, null, a list or a "
                          f"mapping (got {type(bad[1]).__name__})") from None
    op = validate_model(Operation, plain_config(dict(operation), op_origin), op_origin).model_dump(mode="json")
    # out of the resolved JSON: declarations name no part of the run (run ids stay as they were)
    declared = (*import_plugins(bp.pop("plugins"), where=f"{origin}: plugins"),
                *import_plugins(op.pop("plugins"), where=f"{op_origin}: plugins"),
                *import_plugins(plugins, where=f"{origin}: declared plugins"),
                *import_plugins(session_plugins(), where=PLUGINS_ENV))
    declared = tuple(dict.fromkeys(declared))
    models: dict[str, BaseModel] = {}
    exits: list[tuple[str, type, BaseModel, str]] = []
    named: dict[str, list[tuple[str, type, BaseModel, dict[str, Any]]]] = {}
    for loc, section, w in section_entries(bp):
        where = ".".join(f"[{p}]" if isinstance(p, int) else p for p in loc).replace(".[", "[")
        try:
            cls = get_plugin(w["plugin"], declared)
        except KeyError as exc:
            raise ConfigError(f"{origin}: {where}.plugin: {exc.args[0]}") from None
        want = SECTION_ROLES[section]
        if w.get("timeframe") and section != "context_workers":
            raise ConfigError(f"{origin}: {where}.timeframe: only context workers run on a higher timeframe")
        if cls.role != want:
            names = ", ".join(_known(want))
            raise ConfigError(f"{origin}: {where}.plugin: {w['plugin']!r} is {article(cls.role)} {cls.role} worker and "
                              f"cannot be used in {section}; {want} workers: {names}")
        try:
            model: BaseModel = cls.Params.model_validate(w["params"])
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, origin, (*loc, "params"), cls.Params)) from None
        w["params"] = model.model_dump(mode="json")
        models[w["instance_id"]] = model
        # the data's clock: the operation's, or the one a DataFrame was read on (data_clock)
        _check_data_zone(cls, model, op["data"].get("timezone") or data_clock, f"{origin}: {where}")
        if section == "exit_planning":
            exits.append((where, cls, model, w["instance_id"]))
        if section in ("threat_workers", "exit_planning"):
            named.setdefault(section, []).append((where, cls, model, w))

    wf = bp["workforce"]
    pw = wf["planning_workers"]
    if not wf["opportunity_workers"]:
        raise ConfigError(f"{origin}: workforce.opportunity_workers: at least one opportunity worker is "
                          f"needed; known: {', '.join(_known('opportunity'))}")
    for section, default in (("entry_planning", "market_entry"), ("size_planning", "all_in_sizer")):
        if len(pw[section]) > 1:
            raise ConfigError(f"{origin}: workforce.planning_workers.{section}: at most one worker, "
                              f"got {len(pw[section])}")
        if not pw[section]:
            # the obvious default keeps small blueprints small
            model = get_plugin(default).Params()
            pw[section] = [{"instance_id": f"{section.split('_')[0]}_default", "plugin": default,
                            "params": model.model_dump(mode="json")}]
            models[pw[section][0]["instance_id"]] = model
    wrong = stop_and_target_problem(exits, get_plugin(pw["size_planning"][0]["plugin"]))
    if wrong:
        raise ConfigError(f"{origin}: {wrong}")
    if len(wf["threat_workers"]) > 62:
        raise ConfigError(f"{origin}: workforce.threat_workers: at most 62 threat workers")
    for section, workers in named.items():
        _check_reasons(origin, workers, section)
    return BuildSpecs(canonical_json(bp), canonical_json(op), fingerprint, origin=origin, plugins=declared,
                      _models=models, data_clock=None if op["data"].get("timezone") else data_clock)


def _check_reasons(origin: str, workers: list[tuple[str, type, BaseModel, dict[str, Any]]], section: str) -> None:
    """Each threat's (exit planner's) reason is one its plugin declares, and no reason code
    is declared by two different plugins of the strategy (the journal and the causal
    analysis could not tell their rejections, or exits, apart)."""
    owner: dict[str, tuple[str, type, str]] = {}
    for where, cls, model, w in workers:
        try:
            declare_reasons(cls)  # a plugin resolved without register() gets its codes here
        except TypeError as exc:
            raise ConfigError(f"{origin}: {where}.plugin: {exc}") from None
        declared = cls.declared_reasons()
        wrong = reason_problem(cls(w["instance_id"], model), w["params"])
        if wrong:
            raise ConfigError(f"{origin}: {where}{wrong[0]}: {wrong[1]}")
        for name in declared:
            first = owner.setdefault(name, (w["plugin"], cls, where))
            if first[1] is not cls:
                what = "rejections" if section == "threat_workers" else "exits"
                key = "workforce.threat_workers" if section == "threat_workers" else \
                    "workforce.planning_workers.exit_planning"
                raise ConfigError(f"{origin}: {key}: reason code {name!r} is declared by two "
                                  f"plugins, {first[0]!r} ({first[2]}) and {w['plugin']!r} ({where}); "
                                  f"{what} must name the plugin that made them: give one its own code")


def reason_problem(worker: Any, params: Optional[Mapping[str, Any]] = None) -> Optional[tuple[str, str]]:
    """What is wrong with the reason code a threat (exit planner) instance uses, as
    ``(key, message)``: ``key`` is ``.params.<name>`` of the param in ``params`` (the
    instance's, as JSON) that picked it, else ""; None when the plugin declares it (or, an
    exit planner, names none).

    >>> from metaflow_nb.workers.base import get_plugin
    >>> cls = get_plugin("market_risk_monitor")
    >>> reason_problem(cls("risk_1", cls.Params()), {}) is None
    True
    """
    declared = type(worker).declared_reasons()
    reason = worker.instance_reason()
    if reason in declared or not (declared or reason):
        return None
    if not reason:
        return "", (f"{worker.name!r} declares several reason codes ({', '.join(declared)}); set reason (a class "
                    f"attribute, or a property reading a param) to the one an instance uses")
    key = next((f".params.{k}" for k, v in (params or {}).items() if v == reason and isinstance(v, str)), "")
    return key, (f"reason {reason!r} is not one of the reason codes {worker.name!r} declares "
                 f"({', '.join(declared) or 'none'})")


def _gives(cls: type, model: BaseModel, kind: str) -> bool:
    check = getattr(cls, f"gives_{kind}", None)
    return bool(check(model)) if check else True


def stop_and_target_problem(exits: Sequence[tuple[str, type, BaseModel, str]], sizer: type) -> Optional[str]:
    """What is wrong between the exit planners ``exits`` (``(key, class, params,
    instance_id)`` each, in their order) and the ``sizer`` class about the stop and the
    target, as ``"key: what"``; None when nothing is. One planner sets the stop and one
    the target; the rules measured in R and a sizer sizing by the stop distance need a
    stop. The translator and a sweep's combinations ask the same question.

    >>> from metaflow_nb.workers.registry import get_plugin
    >>> be = get_plugin("break_even")
    >>> stop_and_target_problem([("exit_planning[0]", be, be.Params(), "be_1")], get_plugin("all_in_sizer"))
    "exit_planning[0].params.after_r: 'break_even' measures after_r in R (the entry-to-stop distance at the fill), but no exit planner sets a stop; every trade would go without it"
    """
    stops, targets, in_r = [], [], []
    for key, cls, model, inst in exits:
        if getattr(cls, "provides_stop", False) and _gives(cls, model, "stop"):
            stops.append(inst)
        if getattr(cls, "provides_target", False) and _gives(cls, model, "target"):
            targets.append(inst)
        param = _measured_in_r(cls, model)
        if param is not None:
            in_r.append((f"{key}.params.{param}" if param else f"{key}.plugin", cls.name, param))
    for kind, providers in (("stop", stops), ("target", targets)):
        if len(providers) > 1:
            return (f"workforce.planning_workers.exit_planning: {', '.join(providers)} all set a {kind}; keep one "
                    f"{kind} provider")
    if in_r and not stops:
        key, name, param = in_r[0]
        what = f"measures {param} in R" if param else "measures its levels in R"
        return (f"{key}: {name!r} {what} (the entry-to-stop distance at the fill), but no exit planner sets a stop; "
                "every trade would go without it")
    if getattr(sizer, "needs_stop", False) and not stops:
        from ..workers.calls import is_builtin
        # a plugin's planner may set stops without saying so: the flag is what is checked
        silent = [f"{inst} ({cls.name})" for _, cls, _, inst in exits
                  if not getattr(cls, "provides_stop", False) and not is_builtin(cls)]
        if silent:
            return (f"workforce.planning_workers.size_planning[0].plugin: {sizer.name!r} sizes by the stop distance, "
                    f"but no exit planner declares a stop (a planner that sets one declares provides_stop = True; "
                    f"{', '.join(silent)} does not)")
        return (f"workforce.planning_workers.size_planning[0].plugin: {sizer.name!r} sizes by the stop distance, "
                "but no exit planner sets a stop")
    return None


def _measured_in_r(cls: type, model: BaseModel) -> Optional[str]:
    """The param of an exit planner that these params measure in R ("" when the class
    needs a stop but does not say which param), or None."""
    if not getattr(cls, "needs_stop", False):
        return None
    which = getattr(cls, "needs_stop_for", None)
    return (which(model) or None) if which else ""


def _known(role: str) -> list[str]:
    return known_plugins(role)
