"""Models of the meta-workflow configs: optimization, variant test, walk-forward.

The YAML shapes are the source design's (``optimization_config:``, ``variant_config:``),
accepted as written there; ``walk_forward_config:`` follows the same pattern.
"""
from __future__ import annotations

import itertools
import math
import os
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Optional, Sequence, Union, get_args

from typing import Annotated

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from ..engine.metrics import METRIC_DIRECTION, METRIC_NAMES
from ..errors import ConfigError, DataError
from ..limits import MAX_COMBINATIONS, MAX_TIMEOUT_S, NumericPolicy, number_problem, plain_number
from ..paths import user_path
from ..workers.base import get_plugin
from .buildspecs import BuildSpecs, canonical_json
from .loading import article, plain_config, read_yaml, validate_model
from .translator import ConfigTranslator


class _Strict(NumericPolicy):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RangeSpec(_Strict):
    """``start..end`` by ``step``; the end is included when a step lands on it."""

    start: float
    end: float
    step: float = Field(gt=0)

    @field_validator("start", "end", "step", mode="before")
    @classmethod
    def _a_number(cls, v: Any) -> Any:
        # the numbers as written are what a sweep expands and a slider shows: "5" or True is no number
        v = plain_number(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError("expected a number")
        # the fields are floats, so the policy's int64 rule would not see the integer written
        problem = number_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _ordered(self) -> "RangeSpec":
        if self.start > self.end:
            raise ValueError(f"start ({self.start:g}) is after end ({self.end:g}); expected start <= end")
        return self

    def expand(self, raw: dict[str, Any]) -> list[Any]:
        """The values of the range as written in ``raw`` (:func:`spec_values`), end included.

        >>> RangeSpec(start=5, end=15, step=5).expand({"start": 5, "end": 15, "step": 5})
        [5, 10, 15]
        """
        return spec_values(raw)


def spec_values(spec: Mapping[str, Any]) -> list[Any]:
    """The values of one validated parameter spec, ``{values: [...]}`` or ``{start, end, step}``
    with the numbers as written (decimal arithmetic, so 0.1..0.3 by 0.1 is exactly 3 values;
    integers stay integers).

    >>> spec_values({"start": 0.1, "end": 0.3, "step": 0.1}), spec_values({"start": 5, "end": 15, "step": 5})
    ([0.1, 0.2, 0.3], [5, 10, 15])
    >>> spec_values({"values": ["pips", "atr"]})
    ['pips', 'atr']
    """
    if "values" in spec:
        return list(spec["values"])
    start, end, step = (Decimal(str(spec[k])) for k in ("start", "end", "step"))
    n = spec_length(spec)
    values = [start + i * step for i in range(n)]
    integral = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("start", "end", "step"))
    return [int(v) if integral else float(v) for v in values]


def spec_length(spec: Mapping[str, Any]) -> int:
    """How many values a validated parameter spec has, counted without building them
    (a ``{start: 0.0, end: 1.0, step: 1.0e-9}`` range is a billion values, not a list).

    >>> spec_length({"start": 0.0, "end": 1.0, "step": 1.0e-9}), spec_length({"values": [1, 2]})
    (1000000001, 2)
    """
    if "values" in spec:
        return len(spec["values"])
    start, end, step = (Decimal(str(spec[k])) for k in ("start", "end", "step"))
    return int((end - start) / step) + 1


class ValuesSpec(_Strict):
    """An explicit list of values, each once."""

    values: list[Any] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _each_once(cls, v: list[Any]) -> list[Any]:
        # a repeat is the same run again: one more "trial" for the deflated Sharpe ratio that
        # tried nothing new (5 and 5.0 are one value, as they are one run id)
        seen: list[Any] = []
        for x in v:
            if any(type(x) is not bool and type(y) is not bool and x == y or x is y for y in seen):
                raise ValueError(f"{x!r} is listed twice; expected each value once")
            seen.append(x)
        return v


def _spec_kind(v: Any) -> str:
    return "<values>" if isinstance(v, dict) and "values" in v else "<range>"


# a discriminated union, so a bad range is reported as a bad range (not as "values missing");
# the tags start with "<" and are left out of key paths in messages
ParamSpec = Annotated[Union[Annotated[ValuesSpec, Tag("<values>")], Annotated[RangeSpec, Tag("<range>")]],
                      Discriminator(_spec_kind)]


class WorkerSpace(_Strict):
    worker_instance: str
    parameters: dict[str, ParamSpec] = Field(min_length=1)


class Constraints(_Strict):
    """Filters a run must pass to be eligible as the best: ``max_drawdown`` in percent."""

    min_trades: Optional[int] = Field(default=None, ge=0)
    max_drawdown: Optional[float] = Field(default=None, gt=0)
    min_sharpe: Optional[float] = None
    min_win_rate: Optional[float] = Field(default=None, ge=0, le=100)


class OptimizationTarget(_Strict):
    primary_metric: str = "sharpe_ratio"
    goal: Literal["maximize", "minimize", "auto"] = "auto"
    constraints: Constraints = Field(default_factory=Constraints)
    per_instrument: bool = Field(default=False, description="over a basket in mode independent: also pick "
                                                            "each symbol's best parameters")

    @field_validator("primary_metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRIC_NAMES:
            raise ValueError(f"unknown metric {v!r}; known metrics: {', '.join(METRIC_NAMES)}")
        return v

    def maximize(self) -> bool:
        """Whether a higher ``primary_metric`` is better: ``goal``, or with ``goal: auto`` the
        metric's own direction (a drawdown is minimized).

        >>> OptimizationTarget().maximize(), OptimizationTarget(primary_metric="max_drawdown_pct").maximize()
        (True, False)
        """
        if self.goal == "auto":
            return METRIC_DIRECTION.get(self.primary_metric, 1) >= 0
        return self.goal == "maximize"


def constraint_checks(target: "OptimizationTarget") -> list[tuple[str, str, str, float]]:
    """``(label, metric, op, bound)`` for every set constraint.

    >>> constraint_checks(OptimizationTarget(constraints={"min_trades": 20}))
    [('min_trades >= 20', 'total_trades', '>=', 20.0)]
    """
    c = target.constraints
    out = []
    if c.min_trades is not None:
        out.append((f"min_trades >= {c.min_trades}", "total_trades", ">=", float(c.min_trades)))
    if c.max_drawdown is not None:
        out.append((f"max_drawdown <= {c.max_drawdown:g} %", "max_drawdown_pct", "<=", float(c.max_drawdown)))
    if c.min_sharpe is not None:
        out.append((f"min_sharpe >= {c.min_sharpe:g}", "sharpe_ratio", ">=", float(c.min_sharpe)))
    if c.min_win_rate is not None:
        out.append((f"min_win_rate >= {c.min_win_rate:g} %", "win_rate_pct", ">=", float(c.min_win_rate)))
    return out


def passes(value: Any, op: str, bound: float) -> bool:
    """Whether a run's metric ``value`` meets a constraint ``op bound`` (NaN never does).

    >>> passes(25, ">=", 20.0), passes(float("nan"), "<=", 5.0)
    (True, False)
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return value >= bound if op == ">=" else value <= bound


def traded(frame: Any) -> Any:
    """Rows of a results table whose run made at least one trade (every row, for a table
    without ``total_trades``): the others are not eligible for a pick, whatever the target
    (a run that never traded has a drawdown and a volatility of 0, which a risk target
    would pick: no risk control; hunt62 F1).

    >>> import pandas as pd
    >>> traded(pd.DataFrame({"total_trades": [3, 0, None]})).tolist()
    [True, False, False]
    """
    import pandas as pd

    if "total_trades" not in frame:
        return pd.Series(True, index=frame.index)
    return pd.to_numeric(frame["total_trades"], errors="coerce").fillna(0) > 0


class ParallelSpec(_Strict):
    backend: Literal["loky", "threads", "sequential", "dask"] = "loky"
    max_workers: Optional[int] = Field(default=None, ge=1)
    timeout_per_run: Optional[float] = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    #: read, never used: a sweep refuses it (services.parallel.runner_for); reports, which
    #: ignore ``parallel:``, and verify still read configs written with it
    scheduler: Optional[str] = None


#: which path runs a sweep: the batch kernel, one full backtest per combination, or the
#: batch kernel when it supports the sweep
Engine = Literal["auto", "batch", "general"]
ENGINES: tuple[str, ...] = get_args(Engine)


def engine_problem(engine: Any) -> Optional[str]:
    """Why ``engine`` is not a sweep engine (one of :data:`ENGINES`), or None.

    >>> engine_problem("batch"), engine_problem("fast")
    (None, "unknown engine 'fast'; expected auto, batch or general")
    """
    if isinstance(engine, str) and engine in ENGINES:
        return None
    return f"unknown engine {engine!r}; expected {', '.join(ENGINES[:-1])} or {ENGINES[-1]}"


def engine_backend_problem(engine: Any, backend: Any) -> Optional[str]:
    """Why ``engine`` cannot run on ``backend``, or None: the batch kernel runs in this
    process, never on a dask cluster. Each caller names the key or flag that asked.

    >>> engine_backend_problem("batch", "loky") is None, engine_backend_problem("batch", "dask")[:33]
    (True, "'batch' runs in this process, not")
    """
    if engine == "batch" and backend == "dask":
        return ("'batch' runs in this process, not on the dask cluster that backend 'dask' asks for; use engine "
                "'general' there")
    return None


class SweepParallelSpec(ParallelSpec):
    """``parallel:`` of a sweep (optimization, walk-forward): also which path runs it."""

    engine: Engine = Field(
        default="auto", description="auto: the batch kernel when it supports the sweep (loky backend, no "
                                    "timeout_per_run), else one full backtest per combination; batch/general: force")


class _Base(_Strict):
    name: str
    # a file path in a YAML file; a dict config from a notebook may hold the blueprint or
    # operation itself, as mf.backtest takes them; left out, the verbs' strategy=/operation=
    # keywords give them (base_sources says so when neither does)
    base_operation: Optional[Union[str, dict[str, Any]]] = None
    base_strategy: Optional[Union[str, dict[str, Any]]] = None
    parallel: ParallelSpec = Field(default_factory=ParallelSpec)

    @field_validator("base_operation", "base_strategy", mode="before")
    @classmethod
    def _path_as_text(cls, v: Any) -> Any:
        # a notebook's pathlib.Path names a file as its text does (mf.backtest takes both)
        return os.fspath(v) if isinstance(v, os.PathLike) else v


#: ``max_combinations:`` of a sweep config: the largest grid it may build
MaxCombinations = Annotated[int, Field(ge=1, description="the largest grid this sweep builds; a larger one is "
                                                         "refused before anything is built")]


class OptimizationConfig(_Base):
    parallel: SweepParallelSpec = Field(default_factory=SweepParallelSpec)
    parameter_space: list[WorkerSpace] = Field(min_length=1)
    optimization_target: OptimizationTarget = Field(default_factory=OptimizationTarget)
    max_combinations: MaxCombinations = MAX_COMBINATIONS


class Variant(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    overrides: dict[str, Any] = Field(default_factory=dict)


class VariantConfig(_Base):
    variants: list[Variant] = Field(min_length=1)
    primary_metric: str = "sharpe_ratio"

    _known_metric = field_validator("primary_metric")(OptimizationTarget._known_metric.__func__)  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _unique(self) -> "VariantConfig":
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variant names must be unique; repeated: {', '.join(dup)}")
        return self


class Windows(_Strict):
    """Walk-forward windows in bars: optimize on ``in_sample_bars``, test on the next
    ``out_of_sample_bars``, move by ``step_bars``; ``anchored`` keeps the start fixed."""

    in_sample_bars: int = Field(gt=0)
    out_of_sample_bars: int = Field(gt=0)
    step_bars: Optional[int] = Field(default=None, gt=0)
    mode: Literal["rolling", "anchored"] = "rolling"
    warmup_bars: int = Field(default=0, ge=0, description="bars before each out-of-sample window used only to "
                                                          "warm indicators up (no trades)")

    @model_validator(mode="after")
    def _no_overlap(self) -> "Windows":
        # overlapping out-of-sample windows would put their common bars twice into the
        # stitched equity (and its trades, returns and metrics)
        if self.step_bars is not None and self.step_bars < self.out_of_sample_bars:
            raise ValueError(f"step_bars {self.step_bars} < out_of_sample_bars {self.out_of_sample_bars}: the "
                             f"out-of-sample windows would overlap and the stitched out-of-sample equity would "
                             f"count their common bars twice; expected step_bars >= out_of_sample_bars (or "
                             f"leave it out: one window's length)")
        return self


class WalkForwardConfig(_Base):
    parallel: SweepParallelSpec = Field(default_factory=SweepParallelSpec)
    parameter_space: list[WorkerSpace] = Field(min_length=1)
    optimization_target: OptimizationTarget = Field(default_factory=OptimizationTarget)
    windows: Windows
    max_combinations: MaxCombinations = MAX_COMBINATIONS


_ROOT_KEYS = {"optimization_config": OptimizationConfig, "variant_config": VariantConfig,
              "walk_forward_config": WalkForwardConfig}
MetaConfig = Union[OptimizationConfig, VariantConfig, WalkForwardConfig]
#: the root keys of the meta configs (and the kinds of a report's manifest)
META_ROOTS = tuple(_ROOT_KEYS)


#: a meta config as the verbs take it: a YAML path, a dict (``{root: body}`` or the body
#: alone) or a validated model
MetaSource = Union[str, Path, Mapping[str, Any], OptimizationConfig, VariantConfig, WalkForwardConfig]


def load_meta_config(source: MetaSource, kind: Optional[str] = None) -> tuple[str, MetaConfig, dict[str, Any], Path]:
    """Read a meta config: ``(kind, model, raw document, folder of the file)``.

    ``source`` is a YAML path, a dict (``{"optimization_config": {...}}``, or the body
    alone when ``kind`` says which it is) or a model. ``kind`` is the root key
    (``optimization_config`` ...); relative ``base_*`` paths are resolved against the
    working directory first, then against the file's folder (a dict's or model's folder
    is the working directory).

    >>> root, model, raw, _ = load_meta_config({"name": "t", "base_strategy": "config/runs/sma_cross.yaml",
    ...     "base_operation": "config/operations/sp500_daily.yaml",
    ...     "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10]}}]},
    ...     "optimization_config")
    >>> root, model.name, raw["parameter_space"][0]["parameters"]["fast"]
    ('optimization_config', 't', {'values': [5, 10]})
    """
    if isinstance(source, (OptimizationConfig, VariantConfig, WalkForwardConfig)):
        root = next(k for k, m in _ROOT_KEYS.items() if type(source) is m)
        if kind is not None and root != kind:
            raise ConfigError(f"{meta_origin(source)}: this verb needs {article(kind)} {kind}, but the model is "
                              f"{article(root)} {root}")
        return root, source, _model_raw(source), Path.cwd()
    if isinstance(source, Mapping):
        doc = dict(source)
        origin = meta_origin(source, kind)
        folder = Path.cwd()
        if not any(k in _ROOT_KEYS for k in doc) and kind is not None:
            doc = {kind: doc}  # the body alone
    elif isinstance(source, (str, os.PathLike)):
        doc = read_yaml(source)
        origin = str(source)
        folder = Path(source).resolve().parent
    else:
        model = _ROOT_KEYS[kind].__name__ if kind in _ROOT_KEYS else "meta config model"
        raise ConfigError(f"config: expected a YAML path, a dict or {article(model)} {model} (got "
                          f"{type(source).__name__} {source!r:.60})")
    keys = [k for k in doc if k in _ROOT_KEYS]
    if len(doc) != 1 or not keys:
        raise ConfigError(f"{origin}: expected one top-level key, one of {', '.join(_ROOT_KEYS)}; "
                          f"found {', '.join(map(str, doc)) or 'none'}")
    root = keys[0]
    if kind is not None and root != kind:
        raise ConfigError(f"{origin}: this command needs {article(kind)} {kind} file, but the file holds {root}")
    body = doc[root]
    if not isinstance(body, dict):
        raise ConfigError(f"{origin}: {root}: expected a mapping")
    body = plain_config(body, origin, (root,)) if isinstance(source, Mapping) else body  # NumPy numbers as Python's
    # the bare-list shorthand of parse_parameter_space (fast: [5, 10] for fast: {values: [5, 10]}),
    # in a dict config and a YAML file alike
    space = body.get("parameter_space")
    for e in space if isinstance(space, list) else ():   # anything else: the model says what is expected
        if isinstance(e, dict) and isinstance(e.get("parameters"), Mapping):
            e["parameters"] = {p: {"values": list(v)} if isinstance(v, (list, tuple)) else v
                               for p, v in e["parameters"].items()}
    model = validate_model(_ROOT_KEYS[root], body, origin, prefix=(root,))
    return root, model, body, folder


def meta_origin(source: MetaSource, kind: Optional[str] = None) -> str:
    """How errors name a meta config: its path, ``<optimization_config dict>`` or the model's class.

    >>> meta_origin("config/variants/exit_strategy_test.yaml"), meta_origin({}, "variant_config")
    ('config/variants/exit_strategy_test.yaml', '<variant_config dict>')
    """
    if isinstance(source, (OptimizationConfig, VariantConfig, WalkForwardConfig)):
        return f"<{type(source).__name__}>"
    if isinstance(source, Mapping):
        return f"<{kind or 'meta config'} dict>"
    return str(source)


def _model_raw(model: MetaConfig) -> dict[str, Any]:
    """The raw document of a model: its ranges' numbers were stored as floats, so a range
    written in whole numbers comes back as integers (what its YAML would have expanded to)."""
    raw = model.model_dump(mode="python")
    for e in raw.get("parameter_space") or ():
        for p, spec in e["parameters"].items():
            if "values" not in spec and all(float(spec[k]).is_integer() for k in ("start", "end", "step")):
                e["parameters"][p] = {k: int(spec[k]) for k in ("start", "end", "step")}
    return raw


def resolve_base_path(value: Any, folder: Path, origin: str, key: str) -> str:
    """The file a ``base_*`` key names: looked up next to the config, in its parent and
    grandparent folders (a project's ``config/optimizations/x.yaml`` naming
    ``config/runs/y.yaml``), then in the working folder; a leading ``~`` is the home
    folder. The config's own project comes first, so the file does not depend on where
    the command runs (hunt70 F1: the working folder's came first).

    >>> p = resolve_base_path("../runs/sma_cross.yaml", Path("config/optimizations"), "opt.yaml", "base_strategy")
    >>> Path(p).relative_to(Path.cwd()).as_posix()
    'config/runs/sma_cross.yaml'
    """
    if not isinstance(value, str):
        raise ConfigError(f"{origin}: {key}: expected a file path here (got a {type(value).__name__})")
    p = user_path(value)
    for cand in (folder / p, folder.parent / p, folder.parent.parent / p, p):
        if cand.is_file():
            return str(cand.resolve())
        if cand.exists():   # it said "not found" of /dev/null and of a folder (hunt64 F5)
            what = "a folder" if cand.is_dir() else "no regular file"
            raise ConfigError(f"{origin}: {key}: {value!r} is {what} ({cand.resolve()}); expected a YAML file")
    raise ConfigError(f"{origin}: {key}: file {value!r} not found (looked next to the config, in its two parent "
                      f"folders and in the working folder)")


def base_specs(model: Any, folder: Path, origin: str, root: str, strategy: Any = None, operation: Any = None,
               data: Any = None) -> BuildSpecs:
    """BuildSpecs of a meta config's ``base_strategy`` on its ``base_operation``.

    ``strategy`` and ``operation`` (a path, a dict, a model; BuildSpecs for the strategy)
    replace the config's; ``data`` (a sample name, a path or a DataFrame) replaces the
    operation's data, as in :func:`metaflow_nb.backtest`.

    >>> root, model, raw, folder = load_meta_config("config/optimizations/sma_grid.yaml", "optimization_config")
    >>> specs = base_specs(model, folder, "sma_grid.yaml", root)
    >>> specs.name, specs.params("stops_1")["stop_loss_pct"]
    ('sma_cross_long_stops', 3.0)
    """
    sources = base_sources(model, folder, origin, root, strategy, operation)
    with inline_bases_named(model, origin, root, strategy, operation):
        return ConfigTranslator().translate(*sources, data)


@contextmanager
def inline_bases_named(model: Any, origin: str, root: str, strategy: Any = None,
                       operation: Any = None) -> Iterator[None]:
    """Errors raised inside the block by a ``base_strategy`` or ``base_operation`` written
    inline in the meta config (a mapping, not a file) name this config and key, not
    ``<strategy>`` (hunt64 F3; hunt113 F4: a basket's runs said it still).

    >>> _, model, _, _ = load_meta_config({"name": "o", "base_strategy": {}, "base_operation": "x.yaml",
    ...     "parameter_space": [{"worker_instance": "a", "parameters": {"b": [1]}}]}, "optimization_config")
    >>> with inline_bases_named(model, "o.yaml", "optimization_config"):
    ...     raise ConfigError("<strategy>: workforce: empty")
    Traceback (most recent call last):
    metaflow_nb.errors.ConfigError: o.yaml: optimization_config.base_strategy.workforce: empty
    """
    inline = {tag: key for tag, key, given, mine in (("<strategy>", "base_strategy", strategy, model.base_strategy),
                                                     ("<operation>", "base_operation", operation,
                                                      model.base_operation))
              if given is None and isinstance(mine, Mapping)}
    try:
        yield
    except (ConfigError, DataError) as exc:
        tag, _, rest = str(exc).partition(": ")
        if tag not in inline:
            raise
        head, sep, tail = rest.partition(": ")
        where = f"{root}.{inline[tag]}"
        said = f"{where}.{head}{sep}{tail}" if sep and " " not in head else f"{where}: {rest}"
        raise type(exc)(f"{origin}: {said}") from None


def base_sources(model: Any, folder: Path, origin: str, root: str, strategy: Any = None,
                 operation: Any = None) -> tuple[Any, Any]:
    """The strategy and operation a meta config runs: ``strategy``/``operation`` when given,
    else its ``base_strategy``/``base_operation`` (file paths resolved as in
    :func:`resolve_base_path`).

    >>> root, model, raw, folder = load_meta_config("config/optimizations/sma_grid.yaml", "optimization_config")
    >>> [Path(p).name for p in base_sources(model, folder, "sma_grid.yaml", root)]
    ['sma_cross_long_stops.yaml', 'sp500_daily.yaml']
    """
    if operation is None:
        operation = model.base_operation
        if isinstance(operation, str):
            operation = resolve_base_path(operation, folder, origin, f"{root}.base_operation")
    if strategy is None:
        strategy = model.base_strategy
        if isinstance(strategy, str):
            strategy = resolve_base_path(strategy, folder, origin, f"{root}.base_strategy")
    for key, value, keyword in (("base_strategy", strategy, "strategy"), ("base_operation", operation, "operation")):
        if value is None:
            raise ConfigError(f"{origin}: {root}.{key}: required key is missing (or give {keyword}=)")
    return strategy, operation


def basket_operation(model: Any, folder: Path, origin: str, root: str, strategy: Any = None,
                     operation: Any = None, data: Any = None) -> Optional[tuple[Any, Any]]:
    """``(strategy, operation)`` when the meta config's operation names a basket
    (``instruments:`` or ``universe:``, README "Portfolios"), else None; ``data`` is refused
    for a basket, whose operation names its instruments' data itself.

    >>> cfg = {"name": "b", "base_strategy": "config/runs/sma_cross.yaml",
    ...        "base_operation": "config/operations/us_stocks_basket.yaml",
    ...        "variants": [{"name": "a"}]}
    >>> _, model, _, folder = load_meta_config(cfg, "variant_config")
    >>> basket_operation(model, folder, "<cfg>", "variant_config")[1].endswith("us_stocks_basket.yaml")
    True
    """
    from .portfolio import is_portfolio_operation

    strategy, operation = base_sources(model, folder, origin, root, strategy, operation)
    if not is_portfolio_operation(operation):
        return None
    if data is not None:
        raise ConfigError(f"{origin}: {root}.base_operation names a basket, whose instruments name their data "
                          "themselves; data= (--data) is for a single-instrument operation")
    return strategy, operation


#: one axis of a parameter space: ``(instance, param, spec)``, ``spec`` being
#: ``{start, end, step}`` (the numbers as written) or ``{values: [...]}``
SpaceEntry = tuple[str, str, dict[str, Any]]


class _SpaceDoc(_Strict):
    parameter_space: list[WorkerSpace] = Field(min_length=1)


def space_axes(space: Sequence[WorkerSpace], raw_space: Sequence[Mapping[str, Any]], origin: str, root: str,
               specs: BuildSpecs) -> list[SpaceEntry]:
    """The axes of a validated parameter_space, checked against the specs' workers (the
    instance exists, its plugin has the parameter, no parameter is listed twice).

    >>> root, model, raw, folder = load_meta_config("config/optimizations/sma_grid.yaml", "optimization_config")
    >>> specs = base_specs(model, folder, "sma_grid.yaml", root)
    >>> [(inst, p) for inst, p, _ in space_axes(model.parameter_space, raw["parameter_space"], "sma_grid.yaml", root, specs)]
    [('sma_1', 'fast'), ('sma_1', 'slow'), ('stops_1', 'stop_loss_pct')]
    """
    instances = {e.instance_id: e.plugin for e in specs.entries()}
    prefix = f"{root}.parameter_space" if root else "parameter_space"
    axes: list[SpaceEntry] = []
    seen: set[tuple[str, str]] = set()
    for i, (ws, raw) in enumerate(zip(space, raw_space)):
        where = f"{prefix}[{i}]"
        if ws.worker_instance not in instances:
            raise ConfigError(f"{origin}: {where}.worker_instance: no worker instance {ws.worker_instance!r} in the "
                              f"strategy; instances: {', '.join(instances)}")
        plugin = get_plugin(instances[ws.worker_instance])
        fields = plugin.Params.model_fields
        for pname, pspec in ws.parameters.items():
            if pname not in fields:
                raise ConfigError(f"{origin}: {where}.parameters.{pname}: {plugin.name!r} has no parameter "
                                  f"{pname!r}; its parameters: {', '.join(fields) or 'none'}")
            if (ws.worker_instance, pname) in seen:
                raise ConfigError(f"{origin}: {where}.parameters.{pname}: {ws.worker_instance}.{pname} is listed twice")
            seen.add((ws.worker_instance, pname))
            raw_p = raw["parameters"][pname]
            spec = ({"values": list(pspec.values)} if isinstance(pspec, ValuesSpec)
                    else {k: raw_p[k] for k in ("start", "end", "step")})
            if "values" in spec:
                _each_value_once(plugin.Params, specs.params(ws.worker_instance), str(pname), spec["values"],
                                 f"{origin}: {where}.parameters.{pname}.values")
            axes.append((ws.worker_instance, str(pname), spec))
    return axes


#: pydantic's own checks of one field (its type, its bounds, its choices), which no other
#: parameter's value can mend; a plugin's validator (value_error, or an error type of its
#: own) may read other fields and is left to the combination (hunt66 F2)
_OWN_TYPES = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of",
                        "finite_number", "literal_error", "enum", "int_from_float", "string_too_short",
                        "string_too_long", "string_pattern_mismatch", "too_short", "too_long"})


def _own_error(err: Mapping[str, Any]) -> bool:
    t = err["type"]
    return t in _OWN_TYPES or t.endswith(("_type", "_parsing"))


def _each_value_once(params_model: Any, base: Mapping[str, Any], pname: str, values: Sequence[Any],
                     where: str) -> None:
    """Refuse two values that the worker's params read as one (``10`` and ``"10"``, a zone
    with an extra space): the same run id twice, one more trial that tried nothing new; and
    a value the parameter refuses whatever the others are (a wrong type, a bound of its
    own: ``"5"`` for an integer, hunt64 F2, ran its combinations as failed rows, exit 0).
    A value refused by a check that reads other parameters (``fast`` below ``slow``, a
    plugin's own validator) is left to its combination (a failed row)."""
    from pydantic import ValidationError

    from .loading import describe_error

    seen: dict[str, Any] = {}
    for k, v in enumerate(values):
        try:
            read = params_model(**{**base, pname: v}).model_dump(mode="json")[pname]
        except ValidationError as exc:
            policy = getattr(params_model, "policy_problem", None)
            said = policy(pname, v) if policy is not None else None
            if said:
                raise ConfigError(f"{where}[{k}]: {said} (got {v!r:.120})") from None
            own = [e for e in exc.errors() if e["loc"] == (pname,) and _own_error(e)]
            if own:
                raise ConfigError(f"{where}[{k}]: {describe_error(own[0])}") from None
            continue   # its combinations fail as rows, naming the problem
        except Exception:  # noqa: BLE001 - its combinations fail as rows, naming the problem
            continue
        key = canonical_json(read)
        if key in seen:
            raise ConfigError(f"{where}: {v!r} is {seen[key]!r} written again (the same run); expected each "
                              "value once")
        seen[key] = v


def parse_parameter_space(space: Any, specs: BuildSpecs, origin: str = "<parameter_space>",
                          root: str = "") -> list[SpaceEntry]:
    """The axes of a parameter_space in any form a notebook hands over, validated like
    the ``parameter_space`` of a meta config and checked against the specs' workers.

    Forms: the configs' list ``[{worker_instance, parameters}]``; a mapping ``{instance:
    {param: spec}}``; a config file holding a ``parameter_space``. A spec is ``{start,
    end, step}``, ``{values: [...]}`` or a bare list of values.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> parse_parameter_space({"sma_1": {"fast": {"start": 5, "end": 15, "step": 5}, "slow": [30, 60]}}, specs)
    [('sma_1', 'fast', {'start': 5, 'end': 15, 'step': 5}), ('sma_1', 'slow', {'values': [30, 60]})]

    ``origin`` and ``root`` place errors: the file and the section the space came from
    (a config's ``optimization_config``); a space read from a file names that file's.
    """
    if isinstance(space, (str, Path)):
        doc = read_yaml(space)
        origin = str(space)
        root = next((k for k, v in doc.items() if isinstance(v, Mapping) and "parameter_space" in v), "")
        if not root and "parameter_space" not in doc:
            raise ConfigError(f"{space}: no parameter_space in this file")
        space = (doc[root] if root else doc)["parameter_space"]
    # NumPy numbers and arrays as Python's
    space = plain_config(dict(space) if isinstance(space, Mapping) else space, origin,
                         ((root,) if root else ()) + ("parameter_space",))
    if isinstance(space, Mapping):
        items: Any = []
        for inst, params in space.items():
            if not isinstance(params, Mapping):
                raise ConfigError(f"{origin}: {inst}: expected a mapping of parameter -> range or values")
            items.append({"worker_instance": str(inst), "parameters": dict(params)})
    elif isinstance(space, (list, tuple)):
        items = [dict(e) if isinstance(e, Mapping) else e for e in space]
    else:
        raise ConfigError(f"{origin}: expected a list of {{worker_instance, parameters}} or a mapping "
                          f"{{instance: {{param: spec}}}} (got {type(space).__name__})")
    for e in items:
        if isinstance(e, dict) and isinstance(e.get("parameters"), Mapping):
            # a bare list is the values form written short
            e["parameters"] = {p: {"values": list(v)} if isinstance(v, (list, tuple)) else v
                               for p, v in e["parameters"].items()}
    prefix = (root,) if root else ()
    model = validate_model(_SpaceDoc, {"parameter_space": items}, origin, prefix=prefix)
    return space_axes(model.parameter_space, items, origin, root, specs)


class Grid(Sequence[dict[str, dict[str, Any]]]):
    """The combinations of some axes ``(instance, param, values)``, made on demand: one
    ``{instance: {param: value}}`` per combination, the first axis slowest and the last
    fastest (:func:`itertools.product`'s order). Only the axes' values are kept, so a
    sweep reads its grid in chunks without ever holding all combinations.

    >>> g = Grid([("a", "x", [1, 2]), ("b", "y", [5, 6, 7])])
    >>> len(g), g[0], g[4], g[-1] == list(g)[-1]
    (6, {'a': {'x': 1}, 'b': {'y': 5}}, {'a': {'x': 2}, 'b': {'y': 6}}, True)
    >>> [c["b"]["y"] for c in g[2:4]]
    [7, 5]
    """

    def __init__(self, axes: Sequence[tuple[str, str, Sequence[Any]]]):
        self.axes = [(inst, p, list(values)) for inst, p, values in axes]
        self._len = math.prod(len(v) for _, _, v in self.axes)

    def __len__(self) -> int:
        return self._len

    def _combo(self, values: Sequence[Any]) -> dict[str, dict[str, Any]]:
        combo: dict[str, dict[str, Any]] = {}
        for (inst, p, _), v in zip(self.axes, values):
            combo.setdefault(inst, {})[p] = v
        return combo

    def __iter__(self) -> Iterator[dict[str, dict[str, Any]]]:
        for values in itertools.product(*(v for _, _, v in self.axes)):
            yield self._combo(values)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._len))]
        if k < 0:
            k += self._len
        if not 0 <= k < self._len:
            raise IndexError(f"combination {k} of {self._len}")
        picked = []
        for _, _, values in reversed(self.axes):
            k, r = divmod(k, len(values))
            picked.append(values[r])
        return self._combo(picked[::-1])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Grid, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"Grid({len(self)} combinations of {', '.join(f'{i}.{p}' for i, p, _ in self.axes)})"


def check_grid_size(axes: Sequence[SpaceEntry], origin: str, root: str, limit: int = MAX_COMBINATIONS) -> int:
    """The number of combinations of ``axes``, counted from their lengths before anything
    is built; more than ``limit`` is a ConfigError naming the file, the count and each axis.

    >>> axes = [("sma_1", "fast", {"start": 5, "end": 25, "step": 5}), ("sma_1", "slow", {"values": [50, 100]})]
    >>> check_grid_size(axes, "opt.yaml", "optimization_config")
    10
    >>> check_grid_size(axes, "opt.yaml", "optimization_config", limit=8)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    metaflow_nb.errors.ConfigError: opt.yaml: optimization_config.parameter_space: 10 combinations (sma_1.fast 5 x sma_1.slow 2) exceed max_combinations = 8; ...
    """
    sizes = [spec_length(spec) for _, _, spec in axes]
    total = math.prod(sizes)
    if total > limit:
        where = f"{root}.parameter_space" if root else "parameter_space"
        shape = " x ".join(f"{inst}.{p} {n:,}" for (inst, p, _), n in zip(axes, sizes))
        raise ConfigError(f"{origin}: {where}: {total:,} combinations ({shape}) exceed max_combinations = "
                          f"{limit:,}; narrow the ranges, coarsen their steps, or raise max_combinations "
                          f"(max_combinations: in the config, --max-combinations on the command line)")
    return total


def expand_space(space: list[WorkerSpace], raw_space: list[dict[str, Any]], origin: str, root: str,
                 specs: BuildSpecs, max_combinations: int = MAX_COMBINATIONS) -> tuple[list[str], Grid]:
    """All combinations of a parameter_space, validated against the base specs' workers.

    Returns column names (``instance.param``) and the :class:`Grid` of combinations
    (``{instance: {param: value}}`` each, made on demand) in a stable order (the config's
    order, last parameter fastest). The grid is counted from its ranges' lengths first and
    refused above ``max_combinations``, before any value list is built.

    >>> root, model, raw, folder = load_meta_config("config/optimizations/sma_grid.yaml", "optimization_config")
    >>> specs = base_specs(model, folder, "sma_grid.yaml", root)
    >>> columns, grid = expand_space(model.parameter_space, raw["parameter_space"], "sma_grid.yaml", root, specs)
    >>> columns, len(grid), grid[1]
    (['sma_1.fast', 'sma_1.slow', 'stops_1.stop_loss_pct'], 40, {'sma_1': {'fast': 5, 'slow': 30}, 'stops_1': {'stop_loss_pct': 5.0}})
    """
    entries = space_axes(space, raw_space, origin, root, specs)
    check_grid_size(entries, origin, root, max_combinations)
    # never empty: a range has start <= end and a step > 0, a values list at least one item
    axes = [(inst, p, spec_values(spec)) for inst, p, spec in entries]
    return [f"{inst}.{p}" for inst, p, _ in axes], Grid(axes)

