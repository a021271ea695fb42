"""Everything a plugin author imports, in one place.

The pieces live in their own modules: :mod:`.contracts` (roles, ``Params``, the plan
types), :mod:`.registry` (``register``, ``get_plugin``) and :mod:`.features` (the
``FeatureContext`` and its cache). This module re-exports them so a plugin needs one
import line::

    from metaflow_nb.workers.base import OpportunityWorker, Params, Signals, param, register
"""
from __future__ import annotations

from .contracts import (  # noqa: F401
    ROLES, SECTION_ROLES, ContextWorker, EntryPlan, EntryPlanner, ExitPlan, ExitPlanner, Opportunities,
    OpportunityWorker, Params, Signals, SizePlan, SizePlanner, ThreatWorker, Worker, param, same_for_all,
)
from .features import FeatureContext  # noqa: F401
from .registry import _REGISTRY, _ensure_builtins, get_plugin, known_plugins, register, suggested_space  # noqa: F401
