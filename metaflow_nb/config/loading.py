"""Reading YAML files and turning validation failures into one-line, located errors."""
from __future__ import annotations

import copy
import datetime
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError

# libyaml's parser is ~6x faster than the pure-Python one; both build documents with the
# same SafeConstructor, so a document that parses means the same either way
_FAST_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

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


def _parse(text: str, p: Path) -> Any:
    try:
        return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        pass
    try:
        # the pure-Python parser's messages are the documented ones (and libyaml's differ)
        return yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - a safe loader
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
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    text = p.read_text(encoding="utf-8")
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


def clear_yaml_cache() -> None:
    """Forget every parsed YAML document kept by :func:`read_yaml`."""
    with _YAML_LOCK:
        _YAML_CACHE.clear()


def format_loc(loc: Iterable[Any]) -> str:
    """``('workforce', 'opportunity_workers', 0, 'params')`` -> ``workforce.opportunity_workers[0].params``."""
    out = ""
    for part in loc:
        if isinstance(part, str) and part.startswith("<"):
            continue  # a union's tag, not a key the user wrote
        if isinstance(part, int):
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
}


def _describe(err: Mapping[str, Any]) -> str:
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
    if err["type"] not in ("missing",) and "input" in err and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    return msg


def validation_message(exc: ValidationError, origin: str, prefix: Iterable[Any] = ()) -> str:
    """One line per problem, each ``origin: key.path: what was expected``."""
    lines = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        lines.append(f"{origin}: {format_loc(loc)}: {_describe(err)}")
    if len(lines) > 1:
        return f"{lines[0]} (and {len(lines) - 1} more problem{'s' if len(lines) > 2 else ''}: " + \
            "; ".join(line.split(': ', 1)[1] for line in lines[1:]) + ")"
    return lines[0]


def validate_model(model: type[BaseModel], doc: Mapping[str, Any], origin: str,
                   prefix: Iterable[Any] = ()) -> Any:
    """Validate ``doc`` against ``model``; raise :class:`ConfigError` naming origin and key path."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, origin, prefix)) from None
