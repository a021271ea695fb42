"""Notebook layer: matplotlib figures, the live widget explorer and the variant comparison view.

Nothing heavy is imported here: ``metaflow_nb.notebook.plots`` pulls in matplotlib,
``explore``/``variant_view`` pull in ipywidgets, each only when used.

>>> import metaflow_nb.notebook as nb
>>> sorted(nb.__all__)
['Explorer', 'VariantView', 'explore', 'plot_backtest', 'plot_optimization', 'plot_variants', 'plot_walk_forward', 'show_comparison']
"""
from __future__ import annotations

_LAZY = {
    "plot_backtest": "plots",
    "plot_optimization": "plots",
    "plot_variants": "plots",
    "plot_walk_forward": "plots",
    "explore": "explore",
    "Explorer": "explore",
    "VariantView": "variant_view",
    "show_comparison": "variant_view",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'metaflow_nb.notebook' has no attribute {name!r}") from None
    import importlib
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
