"""Parameters of the template notebooks, validated with pydantic.

papermill writes parameters into the notebook as Python literals and into its metadata as
JSON, so they must be JSON-safe: ``str``, ``int``, ``float`` (finite), ``bool``, ``None``
and lists / string-keyed dicts of those. Tuples, numpy scalars, dates and ``Path`` objects
are rejected by the models; :func:`json_safe_params` converts them beforehand.

>>> p = VariantReportParams(config="config/variants/exit_strategy_test.yaml", variant="atr_based")
>>> p.to_parameters()["variant"]
'atr_based'
>>> from pathlib import Path
>>> try:
...     VariantReportParams(config=Path("x.yaml"), variant="a")
... except ValueError as exc:
...     print(one_line(exc))
config: pathlib.PosixPath is not JSON-safe; convert it to str before passing it to a notebook
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import re
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ..errors import ConfigError

_JSON_SCALARS = (str, bool, int, float, type(None))


def json_problems(value: Any, where: str = "") -> list[str]:
    """Why ``value`` is not JSON-safe (empty list when it is). Exact types only: a numpy
    ``float64`` (a float subclass) or a ``str`` enum is refused as well.

    >>> json_problems({"top": 20, "metrics": ["sharpe_ratio"]})
    []
    >>> json_problems({"rr": [2.0, float("nan")], 1: "x"})
    ['rr[1]: nan is not a finite number', 'value: key 1 (int) is not a string']
    """
    here = where or "value"
    t = type(value)
    if t in _JSON_SCALARS:
        if t is float and not math.isfinite(value):
            return [f"{here}: {value!r} is not a finite number"]
        return []
    if t is list:
        out: list[str] = []
        for i, v in enumerate(value):
            out += json_problems(v, f"{where}[{i}]")
        return out
    if t is dict:
        out = []
        for k, v in value.items():
            if type(k) is not str:
                out.append(f"{here}: key {k!r} ({type(k).__name__}) is not a string")
            else:
                out += json_problems(v, f"{where}.{k}" if where else k)
        return out
    name = t.__name__ if t.__module__ in ("builtins", "datetime") else f"{t.__module__.split('.')[0]}.{t.__name__}"
    return [f"{here}: {name} is not JSON-safe; convert it to {_hint(value)} before passing it to a notebook"]


def _hint(value: Any) -> str:
    if isinstance(value, (_dt.date, _dt.time)) or hasattr(value, "isoformat") or "datetime64" in type(value).__name__:
        return "an ISO string"
    try:
        return type(json_safe_params(value)).__name__
    except TypeError:
        return "str, int, float, bool, None, list or dict"


def json_safe_params(value: Any) -> Any:
    """Convert ``value`` to JSON-safe types: paths to ``str``, tuples and sets to lists,
    numpy scalars and arrays to Python numbers and lists, dates to ISO strings, non-finite
    floats to ``None``. Anything else unknown raises ``TypeError``.

    >>> import numpy as np, datetime as dt
    >>> from pathlib import Path
    >>> json_safe_params({"a": (np.int64(1), np.float64(0.5)), "p": Path("/x"), "d": dt.date(2020, 1, 2)})
    {'a': [1, 0.5], 'p': '/x', 'd': '2020-01-02'}
    """
    if type(value) in _JSON_SCALARS:
        return None if type(value) is float and not math.isfinite(value) else value
    if isinstance(value, Mapping):
        return {str(k): json_safe_params(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe_params(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe_params(v) for v in value), key=repr)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None  # type: ignore[assignment]
    if np is not None:
        if isinstance(value, np.ndarray):
            return json_safe_params(value.tolist())
        if isinstance(value, np.generic):
            if isinstance(value, np.datetime64):
                import pandas as pd
                return pd.Timestamp(value).isoformat()
            return json_safe_params(value.item())
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    for base in (bool, int, float, str):  # subclasses (enums, numpy float64 caught above)
        if isinstance(value, base):
            return json_safe_params(base(value))
    raise TypeError(f"{type(value).__name__} cannot be passed to a notebook as a parameter")


_HASH = re.compile(r"^[0-9a-f]{64}$")
_HREF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.html$")
_CSV = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.csv$")


class ReportParams(BaseModel):
    """Shared fields and the JSON-safety check of every template's parameters."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    title: str = ""
    expected_hash: Optional[str] = Field(default=None, description="BuildSpecs.hash the run must have")
    trade_rows: int = Field(default=25, ge=0, le=5000)
    journal_rows: int = Field(default=30, ge=0, le=5000)
    trades_csv: Optional[str] = Field(default=None, description="file name of the run's trades CSV beside the page")

    @model_validator(mode="before")
    @classmethod
    def _json_safe(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            problems = []
            for k, v in data.items():
                problems += json_problems(v, str(k))
            if problems:
                raise ValueError("; ".join(problems))
        return data

    @field_validator("expected_hash")
    @classmethod
    def _hash(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _HASH.match(v):
            raise ValueError("expected a sha256 hex digest (64 lowercase hex digits)")
        return v

    @field_validator("trades_csv")
    @classmethod
    def _csv_name(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _CSV.match(v):
            raise ValueError(f"{v!r}: expected a file name in the report folder ending in .csv")
        return v

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> "ReportParams":
        """The model of the notebook's parameter variables (``globals()``); extra names are ignored.

        >>> p = BacktestReportParams.from_namespace({"strategy": "config/runs/sma_cross.yaml", "pd": None})
        >>> p.strategy, p.trade_rows
        ('config/runs/sma_cross.yaml', 25)
        """
        return cls.model_validate({k: namespace[k] for k in cls.model_fields if k in namespace})

    def to_parameters(self) -> dict[str, Any]:
        """The papermill ``parameters`` dict (JSON-safe by construction).

        >>> WalkForwardReportParams(config="config/walk_forward/fvg_walk_forward.yaml").to_parameters()["config"]
        'config/walk_forward/fvg_walk_forward.yaml'
        """
        return self.model_dump(mode="json")


Scalar = Any  # str | int | float | bool | None, checked by ReportParams._json_safe


class BacktestReportParams(ReportParams):
    """``backtest_report.ipynb``: one strategy on one operation, params overridden per
    worker instance (``{"fvg_det_1": {"min_gap_size": 3}}``)."""

    strategy: str = Field(min_length=1)
    operation: Optional[str] = None
    data: Optional[str] = None
    overrides: dict[str, dict[str, Scalar]] = Field(default_factory=dict)
    selection: Optional[dict[str, Any]] = Field(
        default=None, description="statistics of the optimization that picked this run (the honesty banner)")


class VariantReportParams(ReportParams):
    """``variant_report.ipynb``: one variant of a variant config (``config`` + ``variant``),
    or a plain strategy/operation pair."""

    config: Optional[str] = None
    variant: Optional[str] = None
    strategy: Optional[str] = None
    operation: Optional[str] = None
    description: str = ""
    significance: Optional[dict[str, Any]] = Field(
        default=None, description="the comparison's bootstrap tests (VariantComparison.significance)")

    @model_validator(mode="after")
    def _which_run(self) -> "VariantReportParams":
        if self.config is not None and self.variant is None:
            raise ValueError("config given without variant: name the variant to report")
        if self.config is None and self.strategy is None:
            raise ValueError("give config and variant, or strategy (and operation)")
        if self.config is not None and self.strategy is not None:
            raise ValueError("give config and variant, or strategy and operation, not both")
        return self


class OptimizationReportParams(ReportParams):
    """``optimization_report.ipynb``: an optimization config's results, heatmaps and best run."""

    config: str = Field(min_length=1)
    top: int = Field(default=20, ge=1, le=10000)
    heatmap_metrics: list[str] = Field(default_factory=lambda: ["sharpe_ratio", "total_return_pct",
                                                                "max_drawdown_pct", "total_trades"])
    best_page: Optional[str] = Field(default=None, description="relative href of the best run's page")
    selection: Optional[dict[str, Any]] = Field(
        default=None, description="OptimizationResult.statistics as the report computed them (None: computed here)")
    results_csv: Optional[str] = Field(default=None, description="file name of every run's CSV beside the page")

    @field_validator("results_csv")
    @classmethod
    def _results_csv_name(cls, v: Optional[str]) -> Optional[str]:
        return ReportParams._csv_name.__func__(cls, v)  # type: ignore[attr-defined]

    @field_validator("best_page")
    @classmethod
    def _relative(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _HREF.match(v):
            raise ValueError(f"{v!r}: expected a file name in the report folder ending in .html")
        return v


class PortfolioReportParams(ReportParams):
    """``portfolio_report.ipynb``: one portfolio run over a basket: a variant of a basket
    variant config (``config`` + ``variant``), or a strategy over a basket operation with
    params overridden per worker instance (an optimization's best run)."""

    config: Optional[str] = None
    variant: Optional[str] = None
    strategy: Optional[str] = None
    operation: Optional[str] = None
    overrides: dict[str, dict[str, Scalar]] = Field(default_factory=dict)
    description: str = ""
    selection: Optional[dict[str, Any]] = Field(
        default=None, description="statistics of the optimization that picked this run (the honesty banner)")
    significance: Optional[dict[str, Any]] = Field(
        default=None, description="the comparison's bootstrap tests (VariantComparison.significance)")
    top: int = Field(default=50, ge=1, le=5000, description="trades shown, by absolute pnl")

    @model_validator(mode="after")
    def _which_run(self) -> "PortfolioReportParams":
        if self.config is not None:
            if self.variant is None:
                raise ValueError("config given without variant: name the variant to report")
            if self.strategy is not None or self.operation is not None or self.overrides:
                raise ValueError("give config and variant, or strategy, operation and overrides, not both")
        elif self.strategy is None or self.operation is None:
            raise ValueError("give config and variant, or strategy and a basket operation")
        return self


class WalkForwardReportParams(ReportParams):
    """``walk_forward_report.ipynb``: per-window table and stitched out-of-sample equity."""

    config: str = Field(min_length=1)


TEMPLATES: dict[str, type[ReportParams]] = {
    "backtest_report": BacktestReportParams,
    "variant_report": VariantReportParams,
    "optimization_report": OptimizationReportParams,
    "walk_forward_report": WalkForwardReportParams,
    "portfolio_report": PortfolioReportParams,
    "basket_optimization_report": OptimizationReportParams,
}


def validate_parameters(template: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``parameters`` for a template; return the JSON-safe dict, or raise
    :class:`~metaflow_nb.errors.ConfigError` with a one-line message.

    >>> validate_parameters("optimization_report", {"config": "opt.yaml", "top": 5})["top"]
    5
    >>> validate_parameters("optimization_report", {"config": "opt.yaml", "top": 0})
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: optimization_report parameters: top: Input should be greater than or equal to 1
    """
    model = TEMPLATES[template]
    try:
        return model.model_validate(dict(parameters)).to_parameters()
    except ValidationError as exc:
        raise ConfigError(f"{template} parameters: {one_line(exc)}") from None


def one_line(exc: ValidationError) -> str:
    """A pydantic ValidationError as one line: ``field: message`` per error, ``; ``-joined.

    >>> try:
    ...     WalkForwardReportParams(config="", trade_rows=-1)
    ... except ValidationError as exc:
    ...     print(one_line(exc))
    trade_rows: Input should be greater than or equal to 0; config: String should have at least 1 character
    """
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
