"""A plugin module that worker processes know only by its declaration
(``plugins: [declared_plugins]``), for tests/test_plugins_discovery.py.

``test_declared_cross`` is ``sma_cross`` under another name, keeping sma_cross's own
``Params`` model: a pickled params model then imports nothing from here in a loky or
dask worker, so the worker finds the plugin only if it imports the specs' declared
modules itself.
"""
from __future__ import annotations

from metaflow_nb.workers.base import register
from metaflow_nb.workers.opportunity.sma_cross import SmaCross


@register
class DeclaredCross(SmaCross):
    """sma_cross, registered from a module that must be declared to be found."""

    name = "test_declared_cross"
