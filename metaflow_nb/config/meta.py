"""Models of the meta-workflow configs: optimization, variant test, walk-forward.

The YAML shapes are the source design's (``optimization_config:``, ``variant_config:``),
accepted as written there; ``walk_forward_config:`` follows the same pattern.
"""
from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Optional, Union

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from ..errors import ConfigError
from .loading import read_yaml, validate_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RangeSpec(_Strict):
    """``start..end`` by ``step``; the end is included when a step lands on it."""

    start: float
    end: float
    step: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "RangeSpec":
        if self.start > self.end:
            raise ValueError(f"start ({self.start:g}) is after end ({self.end:g}); expected start <= end")
        return self

    def expand(self, raw: dict[str, Any]) -> list[Any]:
        # decimal arithmetic on the numbers as written, so 0.1..0.3 by 0.1 is exactly 3 values
        start, end, step = (Decimal(str(raw[k])) for k in ("start", "end", "step"))
        n = int((end - start) / step) + 1
        values = [start + i * step for i in range(n)]
        integral = all(isinstance(raw[k], int) and not isinstance(raw[k], bool) for k in ("start", "end", "step"))
        return [int(v) if integral else float(v) for v in values]


class ValuesSpec(_Strict):
    """An explicit list of values."""

    values: list[Any] = Field(min_length=1)


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

    @field_validator("primary_metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        from ..engine.metrics import METRIC_NAMES
        if v not in METRIC_NAMES:
            raise ValueError(f"unknown metric {v!r}; known metrics: {', '.join(METRIC_NAMES)}")
        return v

    def maximize(self) -> bool:
        from ..engine.metrics import METRIC_DIRECTION
        if self.goal == "auto":
            return METRIC_DIRECTION.get(self.primary_metric, 1) >= 0
        return self.goal == "maximize"


class ParallelSpec(_Strict):
    backend: Literal["loky", "threads", "sequential", "dask"] = "loky"
    max_workers: Optional[int] = Field(default=None, ge=1)
    timeout_per_run: Optional[float] = Field(default=None, gt=0)
    scheduler: Optional[str] = None


class SweepParallelSpec(ParallelSpec):
    """``parallel:`` of a sweep (optimization, walk-forward): also which path runs it."""

    engine: Literal["auto", "batch", "general"] = Field(
        default="auto", description="auto: the batch kernel when it supports the sweep (loky backend, no "
                                    "timeout_per_run), else one full backtest per combination; batch/general: force")


class _Base(_Strict):
    name: str
    base_operation: str
    base_strategy: str
    parallel: ParallelSpec = Field(default_factory=ParallelSpec)


class OptimizationConfig(_Base):
    parallel: SweepParallelSpec = Field(default_factory=SweepParallelSpec)
    parameter_space: list[WorkerSpace] = Field(min_length=1)
    optimization_target: OptimizationTarget = Field(default_factory=OptimizationTarget)


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


class WalkForwardConfig(_Base):
    parallel: SweepParallelSpec = Field(default_factory=SweepParallelSpec)
    parameter_space: list[WorkerSpace] = Field(min_length=1)
    optimization_target: OptimizationTarget = Field(default_factory=OptimizationTarget)
    windows: Windows


_ROOT_KEYS = {"optimization_config": OptimizationConfig, "variant_config": VariantConfig,
              "walk_forward_config": WalkForwardConfig}
MetaConfig = Union[OptimizationConfig, VariantConfig, WalkForwardConfig]


def load_meta_config(path: str | Path, kind: Optional[str] = None) -> tuple[str, MetaConfig, dict[str, Any], Path]:
    """Read a meta config: ``(kind, model, raw document, folder of the file)``.

    ``kind`` is the root key (``optimization_config`` ...); relative ``base_*`` paths are
    resolved against the working directory first, then against the file's folder.
    """
    doc = read_yaml(path)
    keys = [k for k in doc if k in _ROOT_KEYS]
    if len(doc) != 1 or not keys:
        raise ConfigError(f"{path}: expected one top-level key, one of {', '.join(_ROOT_KEYS)}; "
                          f"found {', '.join(map(str, doc)) or 'none'}")
    root = keys[0]
    if kind is not None and root != kind:
        raise ConfigError(f"{path}: this command needs a {kind} file, but the file holds {root}")
    body = doc[root]
    if not isinstance(body, dict):
        raise ConfigError(f"{path}: {root}: expected a mapping")
    model = validate_model(_ROOT_KEYS[root], body, str(path), prefix=(root,))
    return root, model, body, Path(path).resolve().parent


def resolve_base_path(value: str, folder: Path, origin: str, key: str) -> str:
    p = Path(value)
    for cand in (p, folder / p, folder.parent / p, folder.parent.parent / p):
        if cand.is_file():
            return str(cand.resolve())
    raise ConfigError(f"{origin}: {key}: file {value!r} not found (looked in the working directory and "
                      f"next to the config)")


def base_specs(model: Any, folder: Path, origin: str, root: str) -> Any:
    """BuildSpecs of a meta config's ``base_strategy`` on its ``base_operation``."""
    from .translator import ConfigTranslator
    op = resolve_base_path(model.base_operation, folder, origin, f"{root}.base_operation")
    st = resolve_base_path(model.base_strategy, folder, origin, f"{root}.base_strategy")
    return ConfigTranslator().translate(st, op)


def expand_space(space: list[WorkerSpace], raw_space: list[dict[str, Any]], origin: str, root: str,
                 specs: Any) -> tuple[list[str], list[dict[str, dict[str, Any]]]]:
    """All combinations of a parameter_space, validated against the base specs' workers.

    Returns column names (``instance.param``) and one ``{instance: {param: value}}`` per
    combination, in a stable order (the config's order, last parameter fastest).
    """
    from ..workers.base import get_plugin

    instances = {w["instance_id"]: w for w in specs._workers}  # read only
    axes: list[tuple[str, str, list[Any]]] = []
    for i, (ws, raw) in enumerate(zip(space, raw_space)):
        where = f"{root}.parameter_space[{i}]"
        if ws.worker_instance not in instances:
            raise ConfigError(f"{origin}: {where}.worker_instance: no worker instance {ws.worker_instance!r} in the "
                              f"strategy; instances: {', '.join(instances)}")
        plugin = get_plugin(instances[ws.worker_instance]["plugin"])
        fields = plugin.Params.model_fields
        for pname, pspec in ws.parameters.items():
            if pname not in fields:
                raise ConfigError(f"{origin}: {where}.parameters.{pname}: {plugin.name!r} has no parameter "
                                  f"{pname!r}; its parameters: {', '.join(fields) or 'none'}")
            raw_p = raw["parameters"][pname]
            values = pspec.expand(raw_p) if isinstance(pspec, RangeSpec) else list(pspec.values)
            if not values:
                raise ConfigError(f"{origin}: {where}.parameters.{pname}: the range is empty")
            axes.append((ws.worker_instance, pname, values))
    columns = [f"{inst}.{p}" for inst, p, _ in axes]
    combos = []
    for values in itertools.product(*(a[2] for a in axes)):
        combo: dict[str, dict[str, Any]] = {}
        for (inst, p, _), v in zip(axes, values):
            combo.setdefault(inst, {})[p] = v
        combos.append(combo)
    return columns, combos
