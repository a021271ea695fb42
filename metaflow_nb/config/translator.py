"""ConfigTranslator: YAML -> pydantic models -> BuildSpecs.

Every plugin's params are validated by the plugin's own model here, so an error names
the file and the full key path, e.g.
``sma.yaml: workforce.opportunity_workers[0].params.fast: must be > 0 (got 0)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Union

import pandas as pd
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from .buildspecs import BuildSpecs, canonical_json
from .loading import read_yaml, validate_model, validation_message
from .models import Operation, StrategyBlueprint, iter_section_workers, section_path

StrategyLike = Union[str, Path, Mapping[str, Any], StrategyBlueprint, BuildSpecs]
OperationLike = Union[str, Path, Mapping[str, Any], Operation, None]
DataLike = Union[str, Path, pd.DataFrame, None]


def _section_entries(blueprint: Mapping[str, Any]):
    """Yield ``(key_path, section, worker_dict)`` in workforce order."""
    for section, i, w in iter_section_workers(blueprint.get("workforce", {})):
        yield ("workforce", *section_path(section), i), section, w


class ConfigTranslator:
    """Turns blueprint and operation sources (paths, dicts or models) into BuildSpecs.

    >>> t = ConfigTranslator()
    >>> specs = t.translate("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> specs.params("sma_1")
    {'fast': 10, 'slow': 20}
    """

    # ------------------------------------------------------------ sources
    def load_blueprint(self, source: StrategyLike) -> tuple[dict[str, Any], str]:
        """Validated blueprint as a plain dict (defaults filled in) and where it came from."""
        if isinstance(source, BuildSpecs):
            return source.blueprint, source.origin
        if isinstance(source, StrategyBlueprint):
            return source.model_dump(mode="json"), "<StrategyBlueprint>"
        if isinstance(source, Mapping):
            origin = "<strategy>"
            doc = dict(source)
        else:
            origin = str(source)
            doc = read_yaml(source)
        model = validate_model(StrategyBlueprint, doc, origin)
        return model.model_dump(mode="json"), origin

    def load_operation(self, source: OperationLike) -> tuple[dict[str, Any], str]:
        """Validated operation as a plain dict, with a data path resolved against the file."""
        if source is None:
            return Operation().model_dump(mode="json"), "<default operation>"
        if isinstance(source, Operation):
            return source.model_dump(mode="json"), "<Operation>"
        base_dir: Optional[Path] = None
        if isinstance(source, Mapping):
            origin, doc = "<operation>", dict(source)
        else:
            origin, doc = str(source), read_yaml(source)
            base_dir = Path(source).resolve().parent
        op = validate_model(Operation, doc, origin).model_dump(mode="json")
        op["data"]["source"] = self._resolve_source(op["data"]["source"], base_dir)
        return op, origin

    @staticmethod
    def _resolve_source(src: str, base_dir: Optional[Path]) -> str:
        from ..data import list_samples
        if src in list_samples():
            return src
        p = Path(src).expanduser()
        if not p.exists() and not p.suffix and len(p.parts) == 1 and not (base_dir and (base_dir / p).exists()):
            return src  # looks like a sample name: let the loader say which samples exist
        if not p.is_absolute():
            # relative to the operation file first, then to the working directory
            if base_dir is not None and (base_dir / p).exists():
                p = base_dir / p
            else:
                p = Path.cwd() / p
        return str(p.resolve())

    # ------------------------------------------------------------ translate
    def translate(self, strategy: StrategyLike, operation: OperationLike = None, data: DataLike = None,
                  start: Optional[str] = None, end: Optional[str] = None) -> BuildSpecs:
        """Resolve a blueprint and an operation into BuildSpecs.

        ``data`` (a sample name, a path or a DataFrame) replaces the operation's data
        source; ``start``/``end`` its date range.
        """
        from ..data import data_fingerprint, load_data

        if isinstance(strategy, BuildSpecs) and operation is None and data is None and start is None and end is None:
            return strategy
        bp, bp_origin = self.load_blueprint(strategy)
        if operation is None and isinstance(strategy, BuildSpecs):
            op, _ = strategy.operation, strategy.origin
        else:
            op, _ = self.load_operation(operation)
        if isinstance(data, pd.DataFrame):
            op["data"]["source"] = "<DataFrame>"
            fingerprint = data.attrs.get("fingerprint") or data_fingerprint(load_data(data))
        else:
            if data is not None:
                op["data"]["source"] = self._resolve_source(str(data), None)
            fingerprint = load_data(op["data"]["source"]).attrs["fingerprint"]
        if start is not None:
            op["data"]["start"] = str(start)
        if end is not None:
            op["data"]["end"] = str(end)
        return self.resolve(bp, op, fingerprint, origin=bp_origin)

    def resolve(self, blueprint: Mapping[str, Any], operation: Mapping[str, Any], fingerprint: str,
                origin: str = "<strategy>") -> BuildSpecs:
        """Validate every worker against its plugin and freeze the result."""
        from ..workers.base import SECTION_ROLES, get_plugin

        bp = validate_model(StrategyBlueprint, dict(blueprint), origin).model_dump(mode="json")
        op = validate_model(Operation, dict(operation), origin + " (operation)").model_dump(mode="json")
        models: dict[str, BaseModel] = {}
        stop_providers: list[str] = []
        target_providers: list[str] = []
        for loc, section, w in _section_entries(bp):
            where = ".".join(f"[{p}]" if isinstance(p, int) else p for p in loc).replace(".[", "[")
            try:
                cls = get_plugin(w["plugin"])
            except KeyError as exc:
                raise ConfigError(f"{origin}: {where}.plugin: {exc.args[0]}") from None
            want = SECTION_ROLES[section]
            if cls.role != want:
                names = ", ".join(self._known(want))
                raise ConfigError(f"{origin}: {where}.plugin: {w['plugin']!r} is {'an' if cls.role[0] in 'aeiou' else 'a'} {cls.role} worker and cannot "
                                  f"be used in {section}; {want} workers: {names}")
            try:
                model: BaseModel = cls.Params.model_validate(w["params"])
            except ValidationError as exc:
                raise ConfigError(validation_message(exc, origin, (*loc, "params"))) from None
            w["params"] = model.model_dump(mode="json")
            models[w["instance_id"]] = model
            if section == "exit_planning":
                if getattr(cls, "provides_stop", False) and self._gives(cls, model, "stop"):
                    stop_providers.append(w["instance_id"])
                if getattr(cls, "provides_target", False) and self._gives(cls, model, "target"):
                    target_providers.append(w["instance_id"])

        wf = bp["workforce"]
        pw = wf["planning_workers"]
        if not wf["opportunity_workers"]:
            raise ConfigError(f"{origin}: workforce.opportunity_workers: at least one opportunity worker is "
                              f"needed; known: {', '.join(self._known('opportunity'))}")
        for section, default in (("entry_planning", "market_entry"), ("size_planning", "all_in_sizer")):
            if len(pw[section]) > 1:
                raise ConfigError(f"{origin}: workforce.planning_workers.{section}: at most one worker, "
                                  f"got {len(pw[section])}")
            if not pw[section]:
                # the obvious default keeps small blueprints small
                model = get_plugin(default).Params()
                pw[section] = [{"instance_id": f"{section.split('_')[0]}_default", "plugin": default,
                                "params": model.model_dump(mode="json")}]
                models[pw[section][0]["instance_id"]] = model
        for kind, providers in (("stop", stop_providers), ("target", target_providers)):
            if len(providers) > 1:
                raise ConfigError(f"{origin}: workforce.planning_workers.exit_planning: {', '.join(providers)} "
                                  f"all set a {kind}; keep one {kind} provider")
        sizer = get_plugin(pw["size_planning"][0]["plugin"])
        if getattr(sizer, "needs_stop", False) and not stop_providers:
            raise ConfigError(f"{origin}: workforce.planning_workers.size_planning[0].plugin: "
                              f"{sizer.name!r} sizes by the stop distance, but no exit planner sets a stop")
        if len(wf["threat_workers"]) > 62:
            raise ConfigError(f"{origin}: workforce.threat_workers: at most 62 threat workers")
        return BuildSpecs(canonical_json(bp), canonical_json(op), fingerprint, origin=origin, _models=models)

    @staticmethod
    def _gives(cls: type, model: BaseModel, kind: str) -> bool:
        check = getattr(cls, f"gives_{kind}", None)
        return bool(check(model)) if check else True

    @staticmethod
    def _known(role: str) -> list[str]:
        from ..workers.base import known_plugins
        return known_plugins(role)
