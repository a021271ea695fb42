"""Pydantic models of the YAML files: operations and strategy blueprints.

Shapes follow the source design (``../shared/seed``). Unknown keys are errors
(``extra="forbid"``) so a typo never silently falls back to a default. Worker ``params``
stay a plain mapping here; each plugin's own params model validates them in
:mod:`metaflow_nb.config.translator`, where the plugin is known.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerSpec(_Strict):
    """One worker instance in a workforce: ``{instance_id, plugin, params}``."""

    instance_id: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    plugin: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class PlanningWorkers(_Strict):
    """The planning chain: entry -> exit -> size."""

    entry_planning: list[WorkerSpec] = Field(default_factory=list)
    exit_planning: list[WorkerSpec] = Field(default_factory=list)
    size_planning: list[WorkerSpec] = Field(default_factory=list)


class Workforce(_Strict):
    """Worker instances grouped by role, in the order they are consulted."""

    context_workers: list[WorkerSpec] = Field(default_factory=list)
    opportunity_workers: list[WorkerSpec] = Field(default_factory=list)
    threat_workers: list[WorkerSpec] = Field(default_factory=list)
    planning_workers: PlanningWorkers = Field(default_factory=PlanningWorkers)

    @model_validator(mode="after")
    def _unique_ids(self) -> "Workforce":
        seen: set[str] = set()
        for w in self.all_workers():
            if w.instance_id in seen:
                raise ValueError(f"instance_id {w.instance_id!r} is used twice; instance ids must be unique")
            seen.add(w.instance_id)
        return self

    def all_workers(self) -> list[WorkerSpec]:
        p = self.planning_workers
        return [*self.context_workers, *self.opportunity_workers, *self.threat_workers,
                *p.entry_planning, *p.exit_planning, *p.size_planning]


class StrategyBlueprint(_Strict):
    """A strategy: its name, trading direction and workforce (``config/runs/*.yaml``)."""

    name: str = "strategy"
    description: str = ""
    direction: Literal["long_short", "long_only", "short_only"] = "long_short"
    workforce: Workforce = Field(default_factory=Workforce)


class DataSource(_Strict):
    """What to run on: a bundled sample name or a CSV/Parquet path, and a date range."""

    source: str = "sp500_daily"
    start: Optional[str] = None
    end: Optional[str] = None
    trade_start: Optional[str] = Field(
        default=None, description="bars before this time only warm indicators up: no setup is acted on "
                                  "and metrics start here (walk-forward out-of-sample windows use it)")

    @field_validator("start", "end", "trade_start", mode="before")
    @classmethod
    def _dates_as_text(cls, v: Any) -> Any:
        # YAML turns 2020-01-01 into a date; keep the text form so hashes are stable
        return None if v is None else str(v)


class Instrument(_Strict):
    symbol: str = ""
    pip_size: float = Field(default=0.0001, gt=0)


class Operation(_Strict):
    """How to run a blueprint (``config/operations/*.yaml``)."""

    name: str = "operation"
    data: DataSource = Field(default_factory=DataSource)
    instrument: Instrument = Field(default_factory=Instrument)
    cash: float = Field(default=10_000.0, gt=0)
    commission: float = Field(default=0.0, ge=0, lt=1, description="fraction of traded value, each side")
    slippage: float = Field(default=0.0, ge=0, lt=1, description="fraction of price, market and stop fills")
    leverage: float = Field(default=1.0, gt=0)
    finalize_trades: bool = False
    seed: int = 42
