"""The one run path: workers -> per-bar arrays -> plans -> kernel records.

A single backtest is a sweep of one combination. Both go through the same three steps:

1. :func:`.group.build_group` runs the context, opportunity and threat workers of a
   workforce on the bars: features, the merged setups and the threat masks. Sweep
   combinations that differ only in planning params share one group.
2. :func:`.plan.plan_combination` runs the planners (entry, exit, size) and reads the
   drawdown limits of one combination.
3. :mod:`.pack` turns a group and its plans into the kernel's named records
   (:mod:`metaflow_nb.engine.records`): one run's, or a whole sweep call's.

:mod:`.run` calls the kernels; :mod:`.frames` names what comes back (trades, journal).
"""
