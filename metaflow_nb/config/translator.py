"""ConfigTranslator: YAML -> pydantic models -> BuildSpecs.

Sources (files, dicts, models, a data override) are read here; every plugin's params are
then validated by the plugin's own model in
:func:`~metaflow_nb.config.buildspecs.resolve_specs`, so an error names the file and the
full key path, e.g.
``sma.yaml: workforce.opportunity_workers[0].params.fast: must be > 0 (got 0)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import pandas as pd

from ..data import list_samples, load_data
from ..data.loader import missing_file_problem, resolve_source, trusted_fingerprint
from ..errors import ConfigError, DataError
from .buildspecs import BuildSpecs, merge_param_overrides, read_options, resolve_specs
from .loading import format_loc, read_yaml, validate_model
from .models import Operation, StrategyBlueprint

StrategyLike = Union[str, Path, Mapping[str, Any], StrategyBlueprint, BuildSpecs]
OperationLike = Union[str, Path, Mapping[str, Any], Operation, None]
DataLike = Union[str, Path, pd.DataFrame, None]


def _a_path(source: Any, what: str, models: str) -> None:
    """``source`` is a file path, else a ConfigError naming ``what`` (a number gave
    Python's own "expected str, bytes or os.PathLike object")."""
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(f"{what}: expected a YAML path, a dict or {models} (got {type(source).__name__} "
                          f"{source!r:.60})")


class ConfigTranslator:
    """Turns blueprint and operation sources (paths, dicts or models) into BuildSpecs.

    >>> t = ConfigTranslator()
    >>> specs = t.translate("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> specs.params("sma_1")
    {'fast': 10, 'slow': 20}
    """

    # ------------------------------------------------------------ sources
    def load_blueprint(self, source: StrategyLike) -> tuple[dict[str, Any], str]:
        """Validated blueprint as a plain dict (defaults filled in) and where it came from.

        >>> bp, origin = ConfigTranslator().load_blueprint("config/runs/sma_cross.yaml")
        >>> origin, bp["name"], [w["instance_id"] for w in bp["workforce"]["opportunity_workers"]]
        ('config/runs/sma_cross.yaml', 'sma_cross', ['sma_1'])
        """
        if isinstance(source, BuildSpecs):
            return source.blueprint, source.origin
        if isinstance(source, StrategyBlueprint):
            return source.model_dump(mode="json"), "<StrategyBlueprint>"
        if isinstance(source, Mapping):
            origin = "<strategy>"
            doc = dict(source)
        else:
            _a_path(source, "strategy", "a StrategyBlueprint, BuildSpecs")
            origin = str(source)
            doc = read_yaml(source)
        _not_the_other_kind(doc, origin, "strategy")
        model = validate_model(StrategyBlueprint, doc, origin)
        return model.model_dump(mode="json"), origin

    def load_operation(self, source: OperationLike, data_given: bool = False) -> tuple[dict[str, Any], str]:
        """Validated operation as a plain dict, with a data path resolved against the file.

        An operation file or mapping names its data (``data.source``) unless ``data_given``
        (a data override replaces it); only the default operation (``None``) runs on a
        bundled sample unasked.

        >>> op, origin = ConfigTranslator().load_operation("config/operations/sp500_daily.yaml")
        >>> origin, op["data"]["source"], op["commission"], op["data"]["calendar"]
        ('config/operations/sp500_daily.yaml', 'sp500_daily', 0.002, 'exchange')
        """
        if source is None:
            return Operation().model_dump(mode="json"), "<default operation>"
        if isinstance(source, Operation):
            return source.model_dump(mode="json"), "<Operation>"
        base_dir: Optional[Path] = None
        if isinstance(source, Mapping):
            origin, doc = "<operation>", dict(source)
        else:
            _a_path(source, "operation", "an Operation")
            origin, doc = str(source), read_yaml(source)
            base_dir = Path(source).resolve().parent
        _not_the_other_kind(doc, origin, "operation")
        basket = [k for k in ("mode", "max_positions", "rank") if k in doc]
        if basket:
            # a basket that lost its list reads as one instrument's operation: say so, not "unknown key"
            raise ConfigError(f"{origin}: {basket[0]}: a basket's key, but the operation lists no instruments: or "
                              "universe:; expected one of them (README \"Portfolios\"), or no "
                              f"{', '.join(basket)} for one instrument")
        op = validate_model(Operation, doc, origin).model_dump(mode="json")
        declared = doc.get("data")
        if not data_given and not (isinstance(declared, Mapping) and "source" in declared):
            raise ConfigError(f"{origin}: data.source: required key is missing; expected a bundled sample "
                              f"({', '.join(list_samples())}) or a CSV/Parquet path, or a data override "
                              "(--data, data=)")
        written = op["data"]["source"]
        op["data"]["source"] = resolve_source(written, base_dir)
        _check_source_exists(written, op["data"]["source"], base_dir, origin, data_given)
        if op["data"].get("intrabar") not in (None, "source"):
            written = op["data"]["intrabar"]
            op["data"]["intrabar"] = resolve_source(written, base_dir)
            _check_source_exists(written, op["data"]["intrabar"], base_dir, origin, False, "data.intrabar")
        return op, origin

    def _resolve_intrabar(self, op: dict[str, Any], origin: Optional[str]) -> None:
        """An intrabar file (``data.intrabar`` other than ``source``): its resolved path and
        content hash in the operation, so the run id follows the file's content."""
        data = op["data"]
        src = data.get("intrabar")
        data.pop("intrabar_fingerprint", None)
        if src is None or src == "source":
            return
        path = resolve_source(str(src), None)  # already against the operation's folder
        try:
            data["intrabar_fingerprint"] = load_data(path, **read_options(data)).attrs["fingerprint"]
        except DataError as exc:
            raise DataError(f"{origin or '<operation>'}: data.intrabar: {exc}") from None

    # ------------------------------------------------------------ translate
    def translate(self, strategy: StrategyLike, operation: OperationLike = None, data: DataLike = None,
                  start: Optional[str] = None, end: Optional[str] = None, *,
                  timezone: Optional[str] = None, date_column: Optional[str] = None,
                  timeframe: Optional[str] = None, intrabar: Optional[str] = None,
                  params: Optional[Mapping[str, Any]] = None) -> BuildSpecs:
        """Resolve a blueprint and an operation into BuildSpecs.

        ``data`` (a sample name, a path or a DataFrame) replaces the operation's data
        source; ``start``/``end`` its date range; ``timezone`` and ``date_column`` how its
        timestamps are read (``data.timezone``, ``data.date_column``). A replacing sample
        name or path keeps the operation's ``timezone`` and ``date_column`` unless given
        here; a DataFrame drops them (it is read as it is: naive times are UTC).
        ``timeframe`` and ``intrabar`` replace ``data.timeframe`` (run on the source
        resampled) and ``data.intrabar`` (``"source"`` or a finer file: intrabar resolution).
        ``params`` overrides worker params (``{"sma_1__fast": 5}``, see
        :meth:`BuildSpecs.with_param_overrides`), validated with the rest.

        >>> specs = ConfigTranslator().translate("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml",
        ...                                      start="2010-01-01", params={"sma_1__fast": 5})
        >>> specs.data_start, specs.params("sma_1"), specs.commission
        ('2010-01-01', {'fast': 5, 'slow': 20}, 0.002)
        """
        if isinstance(strategy, BuildSpecs) and operation is None and data is None and start is None \
                and end is None and timezone is None and date_column is None and timeframe is None \
                and intrabar is None:
            return strategy.with_param_overrides(params) if params else strategy
        bp, bp_origin = self.load_blueprint(strategy)
        if params:  # merged before the one validation below, not validated twice
            merge_param_overrides(bp, params)
        op_origin: Optional[str] = None
        if operation is None and isinstance(strategy, BuildSpecs):
            op = strategy.operation
        else:
            op, op_origin = self.load_operation(operation, data_given=data is not None)
        if data is not None and not isinstance(data, (str, os.PathLike, pd.DataFrame)):
            # str() of a Series made a path of its printout ("File name too long")
            raise ConfigError(f"data: expected a sample name, a path or a pandas DataFrame (got {type(data).__name__})")
        if intrabar is not None and not isinstance(intrabar, (str, os.PathLike)):
            raise ConfigError(f"intrabar: expected a finer data file (a path or a sample name) or 'source' (got "
                              f"{type(intrabar).__name__})")
        if intrabar is not None and intrabar != "source":
            intrabar = resolve_source(str(intrabar), None)
        for key, value in (("timezone", timezone), ("date_column", date_column), ("timeframe", timeframe),
                           ("intrabar", intrabar)):
            if value is not None:
                op["data"][key] = value
        clock = None
        if isinstance(data, pd.DataFrame):
            op["data"]["source"] = "<DataFrame>"
            # the bars go on in UTC; the clock they were read on (a basket's instrument names
            # its own) still tells the workers' checks that the times were local
            clock = op["data"].pop("timezone", None)
            op["data"].pop("date_column", None)
            if trusted_fingerprint(data):
                read_on = data.attrs.get("clock", clock)   # no record: a frame of this package's own
                if clock is not None and read_on != clock:
                    # reading its UTC times on the clock again would shift them twice (hunt56 F1)
                    raise ConfigError(f"{op_origin or '<operation>'}: data.timezone {clock!r}: the DataFrame was "
                                      f"read on {'UTC' if read_on is None else repr(read_on)} (mf.load_data); read "
                                      f"it with mf.load_data(..., timezone={clock!r}), or leave data.timezone out")
                bars = data
                clock = clock or read_on
            else:
                # a frame of the user's own holds the times as written: read on the declared clock,
                # as load_data(frame, timezone=...) reads it (it ran as UTC whatever was declared)
                bars = load_data(data, timezone=clock)
            fingerprint = bars.attrs["fingerprint"]
        else:
            if data is not None:
                op["data"]["source"] = resolve_source(str(data), None)
            if op["data"].get("timezone") is not None:
                self._check_timezone(op["data"]["timezone"], op_origin)
            try:
                bars = load_data(op["data"]["source"], **read_options(op["data"]))
                fingerprint = bars.attrs["fingerprint"]
            except DataError as exc:
                if data is None and op_origin and not str(exc).startswith(f"{op['data']['source']}"):
                    # a source that names no file (an unknown sample): the operation's key is the place to fix
                    raise DataError(f"{op_origin}: data.source: {exc}") from None
                raise
        self._resolve_intrabar(op, op_origin)
        if start is not None:
            op["data"]["start"] = str(start)
        if end is not None:
            op["data"]["end"] = str(end)
        plugins = strategy.plugins if isinstance(strategy, BuildSpecs) else ()
        specs = self.resolve(bp, op, fingerprint, origin=bp_origin, plugins=plugins, op_origin=op_origin,
                             data_clock=clock)
        named = data.attrs.get("source") if isinstance(data, pd.DataFrame) else specs.data_source
        # a basket instrument's bars name their file (a frame of the user's own has none)
        _check_worker_timeframes(specs, bars, named if named and named != "<DataFrame>" else "a DataFrame")
        return specs

    @staticmethod
    def _check_timezone(name: str, origin: Optional[str]) -> None:
        from ..data.clock import get_clock
        try:
            get_clock(name)
        except ValueError as exc:
            raise ConfigError(f"{origin or '<operation>'}: data.timezone: {exc}") from None

    def resolve(self, blueprint: Mapping[str, Any], operation: Mapping[str, Any], fingerprint: str,
                origin: str = "<strategy>", plugins: Sequence[str] = (),
                op_origin: Optional[str] = None, data_clock: Optional[str] = None) -> BuildSpecs:
        """Import the declared plugin modules, validate every worker against its plugin and
        freeze the result (:func:`~metaflow_nb.config.buildspecs.resolve_specs`;
        ``data_clock``: the clock bars handed as a DataFrame were read on).

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> ConfigTranslator().resolve(specs.blueprint, specs.operation, specs.data_fingerprint).hash == specs.hash
        True
        """
        return resolve_specs(blueprint, operation, fingerprint, origin, plugins=plugins, op_origin=op_origin,
                             data_clock=data_clock)


#: top-level keys only an operation has, and only a strategy blueprint has
_OPERATION_KEYS = frozenset({"data", "cash", "commission", "slippage", "leverage", "instrument", "instruments",
                             "universe", "mode", "max_positions", "finalize_trades"})
_STRATEGY_KEYS = frozenset({"workforce"})


def _not_the_other_kind(doc: Mapping[str, Any], origin: str, expected: str) -> None:
    """A strategy given where an operation goes, or the reverse: said in one line instead of
    listing each of its keys as unknown.

    >>> _not_the_other_kind({"data": {}, "cash": 1}, "op.yaml", "strategy")
    Traceback (most recent call last):
    metaflow_nb.errors.ConfigError: op.yaml: is an operation (keys cash, data), not a strategy blueprint (workforce: ...); pass it as the operation (--operation, the second argument)
    """
    keys = set(doc)
    if expected == "strategy" and not keys & _STRATEGY_KEYS and keys & _OPERATION_KEYS:
        raise ConfigError(f"{origin}: is an operation (keys {', '.join(sorted(keys & _OPERATION_KEYS))}), not a "
                          f"strategy blueprint (workforce: ...); pass it as the operation (--operation, the second "
                          f"argument)")
    if expected == "operation" and keys & _STRATEGY_KEYS and not keys & _OPERATION_KEYS:
        raise ConfigError(f"{origin}: is a strategy blueprint (workforce: ...), not an operation (data:, cash:, "
                          f"...); pass it as the strategy (--strategy, the first argument)")


def _check_worker_timeframes(specs: BuildSpecs, bars: pd.DataFrame, name: str) -> None:
    """A worker's higher timeframe (its ``timeframe:``, or a ``timeframe`` param such as
    ``higher_timeframe_bias``'s) finer than the run's bars (``bars``, the data ``name``,
    before any ``data.timeframe``) is refused here, naming the strategy file, the key and
    the data; at run time the resampler could name none of them."""
    from ..data.timeframe import finer_problem, median_spacing, parse_timeframe
    from .buildspecs import section_entries

    wanted = []
    for loc, _, w in section_entries(specs.blueprint):
        for key, value in (((*loc, "timeframe"), w.get("timeframe")),
                           ((*loc, "params", "timeframe"), (w.get("params") or {}).get("timeframe"))):
            if isinstance(value, str):
                try:
                    tf = parse_timeframe(value.partition("@")[0])
                except ConfigError:
                    continue  # a param of that name that is not a timeframe: its plugin's business
                if tf.unit == "min":
                    wanted.append((key, tf))
    if not wanted:
        return
    if specs.data_timeframe is not None:   # the run's bars are the data resampled to it
        base = parse_timeframe(specs.data_timeframe)
        if base.unit != "min" and base.unit != "D":
            return
        spacing = (base.n if base.unit == "min" else 1440) * 60_000_000_000
    else:
        spacing = median_spacing(bars.index.as_unit("ns").asi8)
    for key, tf in wanted:
        problem = finer_problem(tf, spacing, str(name))
        if problem:
            raise ConfigError(f"{specs.origin or '<strategy>'}: {format_loc(key)}: {problem}")


def _check_source_exists(written: str, resolved: str, folder: Optional[Path], origin: str, data_given: bool,
                         key: str = "data.source") -> None:
    """Refuse an operation's ``data.source`` path found neither beside the operation nor in
    the working folder, naming the operation, the key and both places looked (hunt64 F4:
    the message named the working folder's guess alone, '/tmp/data/missing.csv: file not
    found', and no config or key). A sample name, a file that exists, or a source a data
    override replaces pass."""
    if data_given or resolved == written and not Path(written).suffix and len(Path(written).parts) == 1:
        return   # replaced, or a sample name (an unknown one is said with the samples listed)
    if Path(resolved).is_dir():
        # named with its operation and key, as an instrument's and data.intrabar's (hunt113 F4)
        raise DataError(f"{origin}: {key}: {resolved}: is a directory; expected a .csv, .csv.gz or .parquet file")
    if Path(resolved).exists():
        return
    problem = missing_file_problem(written, folder, key)
    if problem:
        raise DataError(f"{origin}: {problem}")
