"""Parameter overrides: the one parser of the ways a caller names worker params.

Three spellings name the same thing, and every layer accepts all three:

* ``{"sma_1": {"fast": 5}}``: per instance (YAML, ``best_params``);
* ``{"sma_1__fast": 5}``: a Python keyword argument (``mf.backtest(..., sma_1__fast=5)``);
* ``{"sma_1.fast": 5}``: a results column (sweep tables, explorer controls).

:meth:`BuildSpecs.with_param_overrides <metaflow_nb.config.buildspecs.BuildSpecs.with_param_overrides>`
applies them; :func:`~metaflow_nb.config.buildspecs.specs_from_row` rebuilds the specs of
a stored results row.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..errors import ConfigError


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (results rows hold numpy scalars,
    the specs' canonical JSON holds Python values).

    >>> import numpy as np
    >>> type(plain(np.int64(3))).__name__, plain("x")
    ('int', 'x')
    """
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def parse_param_overrides(overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{instance_id: {param: value}}`` from any mix of the three spellings.

    >>> parse_param_overrides({"sma_1__fast": 5, "sma_1.slow": 30, "exit_1": {"atr_mult": 2.0}})
    {'sma_1': {'fast': 5, 'slow': 30}, 'exit_1': {'atr_mult': 2.0}}
    """
    per_instance: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            per_instance.setdefault(key, {}).update({k: plain(v) for k, v in value.items()})
        elif "." in key or "__" in key:
            # "." first: an instance id may hold "__" but never "."
            inst, name = key.split("." if "." in key else "__", 1)
            per_instance.setdefault(inst, {})[name] = plain(value)
        else:
            raise ConfigError(f"parameter override {key}={value!r}: use instance_id={{'param': value}}, "
                              f"instance_id__param=value or 'instance_id.param': value")
    return per_instance


def row_params(row: Mapping[str, Any], columns: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{instance_id: {param: value}}`` of a results row's ``instance.param`` columns
    (a ``pandas.Series`` row or a dict), numpy scalars as Python values.

    >>> import numpy as np
    >>> row_params({"sma_1.fast": np.int64(5), "sma_1.slow": 20, "sharpe_ratio": 1.2}, ["sma_1.fast", "sma_1.slow"])
    {'sma_1': {'fast': 5, 'slow': 20}}
    """
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        inst, name = col.split(".", 1)
        out.setdefault(inst, {})[name] = plain(row[col])
    return out
