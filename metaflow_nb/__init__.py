"""metaflow-nb: a Jupyter-first research toolkit for rule-based trading strategies.

>>> import metaflow_nb as mf
>>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")
>>> sorted(res.metrics)[:3]
['avg_trade_duration_bars', 'cagr_pct', 'calmar_ratio']

Heavy dependencies (matplotlib, ipywidgets, papermill, dask) are imported only by the
verbs that need them, so ``import metaflow_nb`` stays fast.
"""
from __future__ import annotations

from ._numba_cache import configure as _configure_numba

_configure_numba()

__version__ = "0.1.0"

_LAZY = {
    "load_data": ("metaflow_nb.data", "load_data"),
    "list_samples": ("metaflow_nb.data", "list_samples"),
    "list_baskets": ("metaflow_nb.data.basket", "list_baskets"),
    "describe_data": ("metaflow_nb.api", "describe_data"),
    "build_specs": ("metaflow_nb.api", "build_specs"),
    "backtest": ("metaflow_nb.api", "backtest"),
    "optimize": ("metaflow_nb.api", "optimize"),
    "compare_variants": ("metaflow_nb.api", "compare_variants"),
    "walk_forward": ("metaflow_nb.api", "walk_forward"),
    "optimize_basket": ("metaflow_nb.api", "optimize_basket"),
    "check_causality": ("metaflow_nb.api", "check_causality"),
    "explore": ("metaflow_nb.api", "explore"),
    "report": ("metaflow_nb.api", "report"),
    "use_plugins": ("metaflow_nb.api", "use_plugins"),
    "runs": ("metaflow_nb.services.store", "runs"),
    "BuildSpecs": ("metaflow_nb.config.buildspecs", "BuildSpecs"),
    "ConfigTranslator": ("metaflow_nb.config.translator", "ConfigTranslator"),
    "OperationService": ("metaflow_nb.services.operation", "OperationService"),
    "known_plugins": ("metaflow_nb.workers.base", "known_plugins"),
    "suggested_space": ("metaflow_nb.workers.base", "suggested_space"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'metaflow_nb' has no attribute {name!r}") from None
    import importlib
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
