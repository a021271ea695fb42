"""Reading YAML files and turning validation failures into one-line, located errors."""
from __future__ import annotations

import copy
import datetime
import os
import re
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from ..limits import (NUMBER_IN_TREE, YAML_MAX_ALIASES, YAML_MAX_BYTES, YAML_MAX_DEPTH, YAML_MAX_NODES, NotPlain,
                      plain_tree)

# libyaml's parser is ~6x faster than the pure-Python one; both build documents with the
# same SafeConstructor, so a document that parses means the same either way
def _timestamp(loader: Any, node: Any) -> Any:
    """YAML's timestamp, or an error with the node's line: ``2015-02-30`` looks like a date
    to the YAML parser, and its own constructor raises a bare ValueError with no line."""
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError as exc:
        raise yaml.constructor.ConstructorError(None, None, f"{node.value!r} is not a date ({exc})",
                                                node.start_mark) from None


def _each_key_once(node: Any) -> None:
    """Refuse a mapping that writes a key twice: YAML's loaders keep the last one silently
    (a second ``commission:`` pasted from another file would replace the first). Keys
    merged in with ``<<`` may be overridden, as YAML means them to be."""
    seen: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, key_node.value)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key_node.value!r} is written twice (first on line {seen[key]}); expected each "
                            f"key once", key_node.start_mark)
        seen[key] = line


class _SafeLoader(yaml.SafeLoader):
    """The safe loader, with dates that cannot exist reported as YAML errors and each key
    of a mapping written once."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        _each_key_once(node)
        return super().construct_mapping(node, deep)


class _CSafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader (when installed), with the same dates and keys."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        _each_key_once(node)
        return super().construct_mapping(node, deep)


#: a number with an exponent but no dot or no sign in it (``1e-4``, ``1.0e308``, ``2E5``):
#: YAML 1.2 reads a float, PyYAML's YAML 1.1 a string, which the numeric policy refuses
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")

#: integers as YAML 1.2 reads them: decimal (``_`` separators allowed) and hex. PyYAML's
#: YAML 1.1 also reads ``010`` as octal 8, ``0b101`` as 5 and ``1:30`` as base 60, 90:
#: ``fast: 010`` ran as 8, ``cash: 010000`` as 4096 and ``leverage: 1:30`` as 90, silently
#: (hunt64 F1); those stay text, which a number refuses naming its key
_INT_1_2 = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F][0-9a-fA-F_]*)$")
#: floats as PyYAML reads them, less its base-60 ones (``1:30.5``)
_FLOAT_1_2 = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X)
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")

for _loader in (_SafeLoader, _CSafeLoader):
    _loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)
    # a copy of the resolvers of its own (add_implicit_resolver makes one), less YAML 1.1's numbers
    _loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))
    _loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in rules if tag not in _NUMBER_TAGS or rx is _FLOAT_1_2]
        for first, rules in _loader.yaml_implicit_resolvers.items()}
    _loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT_1_2, list("-+0123456789"))
    _loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))

_FAST_LOADER: type = _CSafeLoader

#: parsed documents by file text (the text is read every time, so an edited file is
#: never served stale, whatever the resolution of file times); a small LRU
_YAML_CACHE: "OrderedDict[str, dict[str, Any]]" = OrderedDict()
_YAML_CACHE_SIZE = 64
_YAML_CACHE_MAX_CHARS = 256 * 1024  # larger documents are parsed every time, not kept
_YAML_LOCK = threading.Lock()

_SHARED_SCALARS = (str, int, float, bool, type(None), bytes, datetime.date, datetime.datetime)


def _fresh(obj: Any, memo: dict[int, Any]) -> Any:
    """A deep copy of a parsed YAML document (dicts and lists copied, immutable scalars
    shared, anything else through ``copy.deepcopy``); aliases stay aliases, as in
    ``copy.deepcopy``, at a fraction of its cost."""
    t = type(obj)
    if t is dict or t is list:
        hit = memo.get(id(obj))
        if hit is not None:
            return hit
        if t is dict:
            out: Any = {}
            memo[id(obj)] = out
            for k, v in obj.items():
                out[k] = _fresh(v, memo)
        else:
            out = []
            memo[id(obj)] = out
            out.extend(_fresh(v, memo) for v in obj)
        return out
    if t in _SHARED_SCALARS:
        return obj
    return copy.deepcopy(obj)


def _check_shape(text: str, p: Path) -> None:
    """Refuse a document too deep, with too many aliases, or expanding (aliases counted
    at the size of what they repeat) to too many values, before anything is built from
    it: one pass over libyaml's parser events, which never expands an alias."""
    sizes: dict[str, int] = {}  # anchor -> values it stands for
    stack: list[tuple[Optional[str], int]] = []  # open collections: (anchor, total at start)
    total = aliases = 0
    try:
        for ev in yaml.parse(text, Loader=_FAST_LOADER):
            kind = type(ev)
            if kind is yaml.ScalarEvent:
                total += 1
                if ev.anchor:
                    sizes[ev.anchor] = 1
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                total += 1
                stack.append((ev.anchor, total))
                if len(stack) > YAML_MAX_DEPTH:
                    raise ConfigError(f"{p}: nested deeper than {YAML_MAX_DEPTH} levels (line "
                                      f"{ev.start_mark.line + 1}); expected a config, not a data dump")
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                anchor, start = stack.pop()
                if anchor:
                    sizes[anchor] = total - start + 1
            elif kind is yaml.AliasEvent:
                aliases += 1
                if aliases > YAML_MAX_ALIASES:
                    raise ConfigError(f"{p}: more than {YAML_MAX_ALIASES} aliases (*name); expected a config "
                                      f"that repeats itself less")
                if ev.anchor not in sizes and any(a == ev.anchor for a, _ in stack):
                    raise ConfigError(f"{p}: alias *{ev.anchor} (line {ev.start_mark.line + 1}) refers to a "
                                      f"value that contains it; recursive aliases are refused")
                total += sizes.get(ev.anchor, 1)
            if total > YAML_MAX_NODES:
                raise ConfigError(f"{p}: expands to more than {YAML_MAX_NODES:,} values (aliases repeat what "
                                  f"they name; line {ev.start_mark.line + 1}); refused as a YAML bomb")
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):  # libyaml's own limit, met while scanning ahead
            raise ConfigError(f"{p}: nested deeper than {YAML_MAX_DEPTH} levels; expected a config, "
                              f"not a data dump") from None
        return  # malformed: the parse says where


def _parse(text: str, p: Path) -> Any:
    _check_shape(text, p)
    try:
        return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        pass
    try:
        # the pure-Python parser's messages are the documented ones (and libyaml's differ)
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a safe loader
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to read; expected a config, not a data dump") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: malformed YAML{where}: {problem}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping with a safe loader (libyaml's when installed); errors name the file.

    The file is read on every call; parsed documents are kept per process by their text
    (a small LRU, :func:`clear_yaml_cache` empties it), so a sweep or a notebook that
    reads the same blueprint many times parses it once, and an edited file is parsed
    again. Every call returns a new document: changing it changes no later result.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.yaml")
    >>> _ = open(p, "w").write("name: demo\\n")
    >>> read_yaml(p)
    {'name': 'demo'}
    """
    p = Path(path)
    text = _read_text(p)
    with _YAML_LOCK:
        doc = _YAML_CACHE.get(text)
        if doc is not None:
            _YAML_CACHE.move_to_end(text)
    if doc is None:
        doc = _parse(text, p)
        if doc is None:
            raise ConfigError(f"{p}: the file is empty; expected a YAML mapping")
        if not isinstance(doc, dict):
            raise ConfigError(f"{p}: expected a YAML mapping at the top level, got {type(doc).__name__}")
        if len(text) <= _YAML_CACHE_MAX_CHARS:
            with _YAML_LOCK:
                _YAML_CACHE[text] = doc
                while len(_YAML_CACHE) > _YAML_CACHE_SIZE:
                    _YAML_CACHE.popitem(last=False)
            doc = _fresh(doc, {})  # the cached document itself is never handed out
    else:
        doc = _fresh(doc, {})
    return doc


def _read_text(p: Path) -> str:
    """The text of a config file, at most ``YAML_MAX_BYTES``; a missing, unreadable or
    non-regular file (a folder, a named pipe, a device: checked before opening, so a
    pipe never blocks) is a ConfigError naming it."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "a named pipe" if stat.S_ISFIFO(st.st_mode) else \
            "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file"
        raise ConfigError(f"{p}: is {what}; expected a YAML file")
    if st.st_size > YAML_MAX_BYTES:
        raise ConfigError(f"{p}: {st.st_size:,} bytes; a config file may have at most {YAML_MAX_BYTES:,}")
    try:
        with open(p, "rb") as f:
            data = f.read(YAML_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if len(data) > YAML_MAX_BYTES:
        raise ConfigError(f"{p}: more than {YAML_MAX_BYTES:,} bytes; a config file may have at most that")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}: {exc.reason}); expected a UTF-8 YAML file") \
            from None


def clear_yaml_cache() -> None:
    """Forget every parsed YAML document kept by :func:`read_yaml`.

    >>> clear_yaml_cache()
    >>> read_yaml("config/runs/sma_cross.yaml")["name"]   # parsed again
    'sma_cross'
    """
    with _YAML_LOCK:
        _YAML_CACHE.clear()


def plain_config(obj: Any, origin: str, loc: tuple = ()) -> Any:
    """:func:`~metaflow_nb.limits.plain_tree` of a config read from ``origin``; a number it
    cannot hold (a ``Decimal`` ...) is a ConfigError naming the file and the key path under ``loc``.

    >>> from decimal import Decimal
    >>> plain_config({"params": {"fast": Decimal("5")}}, "s.yaml", ("workforce",))
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: s.yaml: workforce.params.fast: expected an int or a float, not a Decimal (got Decimal('5'))
    """
    try:
        return plain_tree(obj)
    except NotPlain as exc:
        raise ConfigError(f"{origin}: {format_loc((*loc, *exc.where()))}: {exc}") from None


#: how pydantic names the members of a union in an error's location
_UNION_TAG = re.compile(r"(?:str|int|float|bool|none|bytes|(?:dict|list|tuple|set|frozenset|nullable|union|chain|"
                        r"function-(?:after|before|wrap|plain)|json-or-python|lax-or-strict|tagged-union)\[.*\])")


class AtKey(ValueError):
    """A model validator's refusal of one key (``loc``, below the model): a check across
    keys runs on the whole model, whose errors pydantic places at the model itself, and
    the message then names the key the user has to change.

    >>> from pydantic import BaseModel, model_validator
    >>> class Op(BaseModel):
    ...     mode: str = "independent"
    ...     max_positions: int = 0
    ...     @model_validator(mode="after")
    ...     def _shared(self):
    ...         if self.max_positions and self.mode != "portfolio":
    ...             raise AtKey(("max_positions",), "caps a shared account: set mode: portfolio")
    ...         return self
    >>> validate_model(Op, {"max_positions": 2}, "op.yaml")
    Traceback (most recent call last):
    metaflow_nb.errors.ConfigError: op.yaml: max_positions: caps a shared account: set mode: portfolio
    """

    def __init__(self, loc: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)


def format_loc(loc: Iterable[Any]) -> str:
    """``('workforce', 'opportunity_workers', 0, 'params')`` -> ``workforce.opportunity_workers[0].params``.

    >>> format_loc(("workforce", "opportunity_workers", 0, "params")), format_loc(())
    ('workforce.opportunity_workers[0].params', '<root>')
    >>> format_loc(("base_strategy", "dict[str,any]", True))   # a union's member; a key 'yes:' YAML made True
    'base_strategy.True'
    >>> format_loc(("params", "fast[0]"))   # a key the user wrote that looks like an index
    'params.fast[0]'
    """
    out = ""
    for part in loc:
        if isinstance(part, str) and (part.startswith("<") or _UNION_TAG.fullmatch(part)):
            continue  # a union's tag (pydantic's name of a member type), not a key the user wrote
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "finite_number": "expected a finite number",
    # pydantic's own words were left here (hunt113 F4): "Dictionary should have at least 1
    # item after validation, not 0"; "Unable to parse input string as an integer, exceeded
    # maximum size" of the number 1e+300
    "too_short": "{actual_length} given; expected at least {min_length}",
    "int_parsing_size": "expected a whole number of at most 19 digits",
}


def describe_error(err: Mapping[str, Any]) -> str:
    """What one pydantic error (an item of ``ValidationError.errors()``) expected, in the
    words of every config message, with the value given.

    >>> describe_error({"type": "greater_than", "msg": "Input should be greater than 0", "ctx": {"gt": 0},
    ...                 "input": -1, "loc": ("fast",)})
    'must be > 0 (got -1)'
    """
    ctx = err.get("ctx") or {}
    template = _MESSAGES.get(err["type"])
    if template:
        try:
            msg = template.format(**ctx)
        except (KeyError, IndexError):
            msg = err["msg"]
    else:
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
    got = f" (got {_given(err['input'])})" if "input" in err else ""
    if err["type"] not in ("missing",) and got and not isinstance(err["input"], (dict, list)) \
            and not msg.endswith(got):   # a validator may have said it already
        msg += got
    return msg


#: what a refused null is told where its key has a default (hunt83 F3: null is "unset"
#: for data.start, refused for slippage, and the refusal said only "got None")
NULL_HINT = "; null is no value here: leave the key out for its default"


def has_default(model: Any, loc: Sequence[Any]) -> bool:
    """Whether the key at ``loc`` (an error's location in ``model``) is a field of a model
    that has a default; False for list items, mapping values and required fields (hunt85
    F1: "leave the key out" sent them to a second error).

    >>> from metaflow_nb.config.models import Operation, WorkerSpec
    >>> has_default(Operation, ("slippage",)), has_default(Operation, ("data", "timezone"))
    (True, True)
    >>> has_default(WorkerSpec, ("instance_id",)), has_default(Operation, ())
    (False, False)
    """
    import types
    import typing

    t = model
    for i, part in enumerate(loc):
        fields = getattr(t, "model_fields", None) if isinstance(t, type) else None
        if not isinstance(part, str) or not isinstance(fields, dict) or part not in fields:
            return False
        f = fields[part]
        if i == len(loc) - 1:
            return not f.is_required()
        t = f.annotation
        for _ in range(3):   # Optional[M], Annotated[M, ...]: the model inside
            args = [a for a in typing.get_args(t) if a is not type(None)]
            if typing.get_origin(t) in (typing.Union, types.UnionType, typing.Annotated) and args:
                t = args[0]
    return False


def _given(value: Any) -> str:
    """A value as a message quotes it: a plain value's repr (at most 120 characters), an
    object's kind (a DataFrame's repr is 15 lines; the message is one)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        text = repr(value)
        return text if len(text) <= 120 else text[:117] + "..."
    name = type(value).__name__
    return f"{article(name)} {name}"


def article(word: str) -> str:
    """'an' before a vowel, else 'a' (an optimization_config, a DataFrame).

    >>> article("optimization_config"), article("variant_config")
    ('an', 'a')
    """
    return "an" if word[:1].lower() in "aeiou" else "a"


def validation_message(exc: ValidationError, origin: str, prefix: Iterable[Any] = (), model: Any = None) -> str:
    """One line per problem, each ``origin: key.path: what was expected``.

    >>> from metaflow_nb.config.meta import OptimizationTarget
    >>> try:
    ...     OptimizationTarget(goal="up")
    ... except ValidationError as exc:
    ...     print(validation_message(exc, "opt.yaml", ("optimization_target",)))
    opt.yaml: optimization_target.goal: Input should be 'maximize', 'minimize' or 'auto' (got 'up')
    """
    lines = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        if isinstance((err.get("ctx") or {}).get("error"), AtKey):
            loc = (*loc, *err["ctx"]["error"].loc)
        if loc and loc[-1] == "[key]":   # pydantic's mark of an error in a mapping's key
            loc = loc[:-1]
            if isinstance(err.get("input"), bool) and loc and type(loc[-1]) is int and loc[-1] == err["input"]:
                # a key YAML read as a boolean ('yes:'), which pydantic places as the number 1
                loc = (*loc[:-1], err["input"])
        if err["type"] == NUMBER_IN_TREE:  # a number deep inside a free-form value: name its key
            ctx = err["ctx"]
            lines.append(f"{origin}: {format_loc(loc)}{'' if ctx['path'].startswith('[') else '.'}{ctx['path']}: "
                         f"{ctx['problem']}")
            continue
        hint = NULL_HINT if err.get("input", 0) is None and err["type"] != "missing" and model is not None \
            and has_default(model, err["loc"]) else ""
        lines.append(f"{origin}: {format_loc(loc)}: {describe_error(err)}{hint}")
    if len(lines) > 1:
        return f"{lines[0]} (and {len(lines) - 1} more problem{'s' if len(lines) > 2 else ''}: " + \
            "; ".join(line.split(': ', 1)[1] for line in lines[1:]) + ")"
    return lines[0]


def validate_model(model: type[BaseModel], doc: Mapping[str, Any], origin: str,
                   prefix: Iterable[Any] = ()) -> Any:
    """Validate ``doc`` against ``model``; raise :class:`ConfigError` naming origin and key path.

    >>> from metaflow_nb.config.meta import OptimizationTarget
    >>> validate_model(OptimizationTarget, {"goal": "minimize"}, "opt.yaml").maximize()
    False
    >>> validate_model(OptimizationTarget, {"goal": "up"}, "opt.yaml", ("optimization_target",))
    Traceback (most recent call last):
    metaflow_nb.errors.ConfigError: opt.yaml: optimization_target.goal: Input should be 'maximize', 'minimize' or 'auto' (got 'up')
    """
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, origin, prefix, model)) from None
