"""Worker plugins and their registry. See :mod:`metaflow_nb.workers.base`."""
from .base import (  # noqa: F401
    ContextWorker, EntryPlan, EntryPlanner, ExitPlan, ExitPlanner, FeatureContext, Opportunities,
    OpportunityWorker, Params, Signals, SizePlan, SizePlanner, ThreatWorker, Worker, get_plugin,
    known_plugins, param, register, suggested_space,
)
