"""Config layer: pydantic models of the YAML files, ConfigTranslator and BuildSpecs."""
from .buildspecs import BuildSpecs, WorkerEntry, canonical_json, deep_merge, specs_from_row  # noqa: F401
from .overrides import parse_param_overrides, row_params  # noqa: F401
from .loading import read_yaml  # noqa: F401
from .models import PLANNING_SECTIONS, WORKFORCE_SECTIONS, DataSource, Instrument, Operation, PlanningWorkers, StrategyBlueprint, WorkerSpec, Workforce  # noqa: F401
from .translator import ConfigTranslator  # noqa: F401
