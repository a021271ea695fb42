"""What one input may cost, and the one numeric policy of every config and params model.

A small file must not be able to ask for unbounded memory or time, and a number that
cannot mean what it says must be refused rather than run:

* **Combinations**: a sweep's grid is counted from its range lengths before anything is
  built and refused above :data:`MAX_COMBINATIONS` (``max_combinations:`` in the config,
  ``--max-combinations`` on the command line raise it).
* **YAML**: a config file is at most :data:`YAML_MAX_BYTES`, nests at most
  :data:`YAML_MAX_DEPTH` levels, holds at most :data:`YAML_MAX_ALIASES` aliases and
  expands (aliases counted at the size of what they repeat) to at most
  :data:`YAML_MAX_NODES` values (:func:`metaflow_nb.config.loading.read_yaml`).
* **Numbers** (:class:`NumericPolicy`, the base of plugin params and of the config
  models): floats are finite, integers fit in int64, a boolean or a text is never a
  number, and NumPy scalars count as the Python numbers they hold.
"""
from __future__ import annotations

import types
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar, Optional, Union, get_args, get_origin

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

#: the largest grid a sweep builds unless its config or the command line allows more
MAX_COMBINATIONS = 100_000

#: YAML config files: bytes, nesting levels, aliases, values after expanding aliases
YAML_MAX_BYTES = 1 << 20
YAML_MAX_DEPTH = 64
YAML_MAX_ALIASES = 1_000
YAML_MAX_NODES = 1_000_000

#: bounds of the account where float64 money stays exact to the cent and positions finite
MAX_CASH = 1e12
MAX_LEVERAGE = 1_000.0

#: the longest ``timeout_per_run`` (a year of seconds: the timer of larger ones overflows)
MAX_TIMEOUT_S = 365 * 86_400.0

#: the error type of a bad number inside a field's value (its ``ctx``: ``path``, ``problem``)
NUMBER_IN_TREE = "number_in_tree"

INT64_MIN = -(2 ** 63)
INT64_MAX = 2 ** 63 - 1

_CONTAINERS = (list, tuple, set, frozenset)


def is_bool(value: Any) -> bool:
    """A Python or NumPy boolean (neither is ever a number here).

    >>> import numpy as np
    >>> is_bool(True), is_bool(np.bool_(False)), is_bool(1)
    (True, True, False)
    """
    return isinstance(value, (bool, np.bool_))


def plain_number(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds; anything else unchanged.

    >>> import numpy as np
    >>> type(plain_number(np.int64(3))).__name__, plain_number("x")
    ('int', 'x')
    """
    return value.item() if isinstance(value, np.generic) else value


class NotPlain(ValueError):
    """A number a config cannot hold as one (a ``Decimal``, ``Fraction`` or ``complex``),
    found by :func:`plain_tree` at key path :attr:`path` (pydantic would have turned it
    into text, and the message blamed "text")."""

    def __init__(self, value: Any):
        self.value = value
        self.path: list = []
        super().__init__(f"expected an int or a float, not a {type(value).__name__} (got {value!r:.40})")

    def where(self) -> tuple:
        return tuple(self.path)


_NOT_PLAIN = frozenset({Decimal, Fraction, complex})


def plain_tree(obj: Any) -> Any:
    """``obj`` with every NumPy scalar or array inside mappings and lists replaced by the
    Python values it holds (what a YAML file would have given); other values unchanged,
    but a ``Decimal``, ``Fraction`` or ``complex`` is a :class:`NotPlain` naming its key path.

    >>> import numpy as np
    >>> plain_tree({"a": {"fast": np.int64(5)}, "b": [np.float64(0.5)], "c": np.arange(2)})
    {'a': {'fast': 5}, 'b': [0.5], 'c': [0, 1]}
    >>> try:
    ...     plain_tree({"params": {"fast": Decimal("5")}})
    ... except NotPlain as exc:
    ...     print(exc.where(), exc)
    ('params', 'fast') expected an int or a float, not a Decimal (got Decimal('5'))
    """
    key: Any = None
    try:
        if isinstance(obj, dict):
            out = {}
            for key, v in obj.items():
                out[key] = plain_tree(v)
            return out
        if isinstance(obj, (list, tuple)):
            items = []
            for key, v in enumerate(obj):
                items.append(plain_tree(v))
            return items if isinstance(obj, list) else tuple(items)
    except NotPlain as exc:
        exc.path.insert(0, key)
        raise
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    if type(obj) in _NOT_PLAIN:
        raise NotPlain(obj)
    return obj


def unserializable(obj: Any, path: tuple = ()) -> tuple[tuple, Any] | None:
    """The key path and value of the first value inside mappings and lists of ``obj`` that
    a config cannot hold (not a number, text, a boolean, None, a date or time), or None.

    >>> unserializable({"params": {"fast": 5, "slow": [object()]}})[0]
    ('params', 'slow', 0)
    """
    import datetime as dt

    if isinstance(obj, dict):
        items: Any = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return None if isinstance(obj, (str, int, float, bool, type(None), dt.date, dt.time)) else (path, obj)
    for key, value in items:
        hit = unserializable(value, (*path, key))
        if hit is not None:
            return hit
    return None


def number_problem(value: Any) -> str | None:
    """Why ``value`` (a validated field value) breaks the numeric policy, or None.

    >>> number_problem(2 ** 63), number_problem(float("inf")), number_problem(3)
    ('expected an integer within int64 (-2**63 .. 2**63-1)', 'expected a finite number', None)
    """
    t = type(value)
    if t is int and not INT64_MIN <= value <= INT64_MAX:
        return "expected an integer within int64 (-2**63 .. 2**63-1)"
    if t is float and (value != value or value in (float("inf"), float("-inf"))):
        return "expected a finite number"
    return None


def tree_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first number inside mappings and lists that breaks the policy, as
    ``(key path, why)`` (a free-form mapping such as a worker's ``params`` would
    otherwise carry an infinity into JSON as null, i.e. as "not set").

    >>> tree_problem({"a": [1, {"b": float("inf")}]}), tree_problem({"a": True})
    (('a[1].b', 'expected a finite number'), None)
    """
    problem = number_problem(value)
    if problem:
        return path, problem
    if isinstance(value, dict):
        for k, v in value.items():
            found = tree_problem(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(value, _CONTAINERS):
        for i, v in enumerate(value):
            found = tree_problem(v, f"{path}[{i}]")
            if found:
                return found
    return None


def _numeric(annotation: Any) -> bool:
    """Whether a field annotation asks for numbers only (int, float, their Optional or Union)."""
    if annotation is int or annotation is float:
        return True
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(_numeric(a) for a in args)
    return False


_NUMBER = 1    # int, float or their Optional/Union
_NUMBERS = 2   # a list/tuple/set of them
_BOOL = 3      # bool or Optional[bool]


def _boolean(annotation: Any) -> bool:
    """Whether a field annotation asks for a boolean (``bool`` or its Optional)."""
    if annotation is bool:
        return True
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args == [bool]
    return False


def _kind(annotation: Any) -> int:
    if _boolean(annotation):
        return _BOOL
    return _NUMBER if _numeric(annotation) else _NUMBERS if _numeric_items(annotation) else 0


def _kind_of(cls: Any, name: Any) -> int:
    """A field's kind when the class-level table lacks it (a model rebuilt later)."""
    field = cls.model_fields.get(name) if name else None
    return _kind(field.annotation) if field is not None else 0


def _numeric_items(annotation: Any) -> bool:
    """Whether a field annotation is a list/tuple/set of numbers (or its Optional)."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _numeric_items(args[0])
    if origin in _CONTAINERS:
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return bool(args) and all(_numeric(a) for a in args)
    return False


class NumericPolicy(BaseModel):
    """Base of every params and config model: floats finite, integers within int64, no
    boolean where a number is asked for nor a number or a word where a boolean is, NumPy
    scalars taken as Python values, no text where a number is asked for (pydantic would read
    ``"10"`` as 10). A violation names the field, as any validation error does.

    >>> class P(NumericPolicy):
    ...     period: int = 14
    ...     mult: float = 2.0
    ...     wicks: bool = False
    >>> from pydantic import ValidationError
    >>> for bad in ({"period": True}, {"period": 2 ** 70}, {"mult": float("nan")}, {"wicks": 1}, {"period": "14"}):
    ...     try:
    ...         P(**bad)
    ...     except ValidationError as exc:
    ...         print(exc.errors()[0]["msg"])
    Value error, expected a number, not a boolean
    Value error, expected an integer within int64 (-2**63 .. 2**63-1)
    Input should be a finite number
    Value error, expected true or false (got 1)
    Value error, expected a number, not text
    """

    model_config = ConfigDict(allow_inf_nan=False)

    #: field name -> what its annotation asks for (_NUMBER, _NUMBERS or 0), per class:
    #: reading ``model_fields`` and the annotations at every validation cost ~10 us a field
    _numeric_kinds: ClassVar[dict[str, int]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._numeric_kinds = {name: _kind(f.annotation) for name, f in cls.model_fields.items()}

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return cls._policy(info.field_name, value)

    @classmethod
    def policy_problem(cls, name: str, value: Any) -> Optional[str]:
        """What this policy says of ``value`` for field ``name`` alone (a wrong type, a
        number not finite or beyond int64), else None: no other field can mend it.

        >>> class P(NumericPolicy):
        ...     period: int = 14
        >>> P.policy_problem("period", "14"), P.policy_problem("period", 14)
        ('expected a number, not text', None)
        """
        try:
            value = cls._policy(name, value)
        except ValueError as exc:
            return str(exc)
        return number_problem(value)

    @classmethod
    def _policy(cls, name: Any, value: Any) -> Any:
        if isinstance(value, np.generic):
            value = value.item()
        kinds = cls._numeric_kinds
        kind = kinds.get(name) if name in kinds else _kind_of(cls, name)
        if not kind:
            return value
        if kind == _BOOL:
            # pydantic would take 1, 0.0 and the words "no", "off", "t" as booleans
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"expected true or false (got {value!r})")
            return value
        if kind == _NUMBER and is_bool(value):
            raise ValueError("expected a number, not a boolean")
        if kind == _NUMBER and isinstance(value, str):
            # pydantic would read "10" as 10: a quoted number is a typo or a templating slip
            raise ValueError("expected a number, not text")
        if kind == _NUMBERS and isinstance(value, _CONTAINERS):
            items = [plain_number(v) for v in value]
            if any(is_bool(v) for v in items):
                raise ValueError("expected numbers, not booleans")
            text = next((v for v in items if isinstance(v, str)), None)
            if text is not None:
                raise ValueError(f"expected numbers, not text (got {text!r})")
            return type(value)(items) if not isinstance(value, list) else items
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _numbers_in_range(cls, value: Any) -> Any:
        problem = number_problem(value)
        if problem:
            raise ValueError(problem)
        if isinstance(value, (dict, *_CONTAINERS)):
            found = tree_problem(value)
            if found:
                # the key path inside the value: config.loading's messages append it to the field's
                raise PydanticCustomError(NUMBER_IN_TREE, "{path}: {problem}", {"path": found[0], "problem": found[1]})
        return value
