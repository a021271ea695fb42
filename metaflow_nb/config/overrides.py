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

    def put(inst: str, name: str, value: Any) -> None:
        params = per_instance.setdefault(inst, {})
        value = plain(value)
        if name in params and not _same(params[name], value):
            # two spellings of one param: the keywords' order would decide silently
            raise ConfigError(f"parameter override {inst}.{name} is given twice ({params[name]!r} and {value!r}); "
                              f"expected one value")
        params[name] = value

    for key, value in overrides.items():
        if isinstance(value, Mapping):
            per_instance.setdefault(key, {})
            for name, v in value.items():
                put(key, name, v)
        elif "." in key or "__" in key:
            # "." first: an instance id may hold "__" but never "."
            inst, name = key.split("." if "." in key else "__", 1)
            put(inst, name, value)
        else:
            raise ConfigError(f"parameter override {key}={value!r}: use instance_id={{'param': value}}, "
                              f"instance_id__param=value or 'instance_id.param': value")
    return per_instance


def _same(a: Any, b: Any) -> bool:
    """One value written twice (5 and 5, not 5 and 5.0 or True: they validate apart)."""
    return type(a) is type(b) and a == b


def row_params(row: Mapping[str, Any], columns: Iterable[str], grid_nulls: bool = False) -> dict[str, dict[str, Any]]:
    """``{instance_id: {param: value}}`` of a results row's ``instance.param`` columns
    (a ``pandas.Series`` row or a dict), numpy scalars as Python values. ``grid_nulls``:
    the row is of a sweep's own table, whose NaN is the grid's null (``stop_loss_pct:
    [null, 2.0]``) and reads as None; elsewhere (``mf.runs`` over several sweeps, where
    NaN is "not swept") a NaN is kept, and refused when the specs are built.

    >>> import numpy as np
    >>> row_params({"sma_1.fast": np.int64(5), "sma_1.slow": 20, "sharpe_ratio": 1.2}, ["sma_1.fast", "sma_1.slow"])
    {'sma_1': {'fast': 5, 'slow': 20}}
    >>> row_params({"stops_1.stop_loss_pct": np.nan}, ["stops_1.stop_loss_pct"], grid_nulls=True)
    {'stops_1': {'stop_loss_pct': None}}
    """
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        inst, name = col.split(".", 1)
        value = plain(row[col])
        if grid_nulls and isinstance(value, float) and value != value:
            # no parameter holds NaN (non-finite numbers are refused): a sweep's table
            # holds the grid's null as NaN (hunt84 F4; hunt85 F2: not in mf.runs frames)
            value = None
        out.setdefault(inst, {})[name] = value
    return out
