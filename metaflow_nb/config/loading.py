"""Reading YAML files and turning validation failures into one-line, located errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping with ``yaml.safe_load``; errors name the file.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.yaml")
    >>> _ = open(p, "w").write("name: demo\\n")
    >>> read_yaml(p)
    {'name': 'demo'}
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: malformed YAML{where}: {problem}") from None
    if doc is None:
        raise ConfigError(f"{p}: the file is empty; expected a YAML mapping")
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: expected a YAML mapping at the top level, got {type(doc).__name__}")
    return doc


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
