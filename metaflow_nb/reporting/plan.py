"""A config resolved into the runs of its report and the notebooks that show them.

The workflow runs here once, in-process (it is fast), for the index and the manifest;
each notebook re-runs its own part in its kernel and checks it resolved the same
BuildSpecs (``expected_hash``).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config.buildspecs import BuildSpecs, canonical_json, specs_from_row
from ..config.loading import read_yaml
from ..config.meta import basket_operation, load_meta_config, resolve_base_path
from ..config.overrides import row_params
from ..errors import ConfigError
from ..paths import user_path
from ..services.operation import OperationService
from ..services.optimization import OptimizationService
from ..services.parallel import ParallelRunService
from ..services.variants import VariantTestService
from ..services.walk_forward import WalkForwardService
from .names import file_stems, safe_stem
from .params import json_safe_params, validate_parameters

KINDS = {"variant_config": "variants", "optimization_config": "optimization", "walk_forward_config": "walk_forward"}


def templates_dir() -> Path:
    """The report template notebooks, shipped inside the package (``reporting/templates``)
    so that an installed metaflow-nb, not only a source checkout, can write reports.

    >>> templates_dir().name, (templates_dir() / "variant_report.ipynb").is_file()
    ('templates', True)
    """
    return Path(__file__).resolve().parent / "templates"


@dataclass
class PlannedRun:
    """One backtest the report shows and the manifest records."""

    name: str
    specs: Optional[BuildSpecs]   # None: a combination whose parameters do not validate (then ``base``)
    status: str = "ok"
    error: str = ""
    metrics: Optional[dict[str, Any]] = None
    description: str = ""
    params: Optional[dict[str, Any]] = None
    page: Optional[str] = None   # file stem of the run's own page
    base: Any = None             # the sweep's base specs, which ``params`` did not validate against

    @property
    def recorded(self) -> Any:
        """The specs the manifest records: the run's, or for an invalid combination the
        sweep's base (with ``params`` beside it).

        >>> PlannedRun("run_3", None, "failed", base="the sweep's base specs").recorded
        "the sweep's base specs"
        """
        return self.specs if self.specs is not None else self.base


@dataclass
class PlannedPage:
    """One notebook of the report: the template to execute into ``<stem>.ipynb`` and
    ``.html``, its validated ``parameters``, its ``kind`` and the run it shows, if one."""

    stem: str
    title: str
    template: str
    parameters: dict[str, Any]
    kind: str
    run: Optional[str] = None
    trades: Any = field(default=None, repr=False)   # the run's trades, written as parameters["trades_csv"]

    @property
    def trades_csv(self) -> Optional[str]:
        """The trades CSV the report writes beside this page, or None."""
        name = self.parameters.get("trades_csv")
        return name if self.trades is not None and name else None


@dataclass
class ReportPlan:
    """A config resolved for its report: the workflow's ``result``, the ``runs`` the
    manifest records, the ``pages`` to execute, the result's ``summary`` and where it
    came from (``config_path``, ``config_doc``).

    >>> plan = ReportPlan("variant_config", "Exits", Path("config/variants/exits.yaml"), {}, [], [], None)
    >>> plan.kind, plan.folder_name == f"exits-{plan.hash8}"
    ('variants', True)
    """

    root: str                 # variant_config | optimization_config | walk_forward_config
    name: str
    config_path: Path
    config_doc: dict[str, Any]
    runs: list[PlannedRun]
    pages: list[PlannedPage]
    result: Any = field(repr=False)
    summary: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    basket: bool = False              # every run a portfolio run over a basket (README "Portfolios")
    results_table: Any = field(default=None, repr=False)   # an optimization's every run, as all_results.csv

    @property
    def kind(self) -> str:
        """``variants``, ``optimization`` or ``walk_forward``."""
        return KINDS[self.root]

    def resolved(self) -> dict[str, Any]:
        """The config as resolved: the document plus every run's blueprint, operation and hash.

        >>> ReportPlan("variant_config", "Exits", Path("exits.yaml"), {"a": 1}, [], [], None).resolved()
        {'kind': 'variant_config', 'name': 'Exits', 'config': {'a': 1}, 'runs': []}
        """
        return {"kind": self.root, "name": self.name, "config": self.config_doc,
                "runs": [{"name": r.name, "specs_hash": r.specs.hash if r.specs is not None else None}
                         for r in self.runs]}

    @property
    def hash8(self) -> str:
        """The first 8 hex digits of the sha256 of :meth:`resolved`: a changed config or
        run gives another report folder."""
        return hashlib.sha256(canonical_json(self.resolved()).encode()).hexdigest()[:8]

    @property
    def folder_name(self) -> str:
        """The report's folder: ``<config-file-stem>-<hash8>``."""
        return f"{safe_stem(self.config_path.stem, 'report')}-{self.hash8}"


def _doc(path: Path) -> dict[str, Any]:
    return json.loads(json.dumps(json_safe_params(read_yaml(path)), allow_nan=False))


def _runner(backend: str):
    return ParallelRunService(backend=backend, progress=False)


def _page(stem: str, title: str, template: str, params: dict[str, Any], kind: str,
          run: Optional[str] = None) -> PlannedPage:
    return PlannedPage(stem, title, str(templates_dir() / f"{template}.ipynb"),
                       validate_parameters(template, json_safe_params(params)), kind, run)


def build_plan(config: str | Path, backend: str = "sequential") -> ReportPlan:
    """Load ``config`` (variant, optimization or walk-forward), run it, plan its pages.

    >>> build_plan("no/such.yaml")
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: no/such.yaml: file not found
    """
    if not isinstance(config, (str, os.PathLike)):
        # the manifest names the file, and --verify reruns it: an in-memory config has none
        raise ConfigError(f"report: config must be the path of a variant, optimization or walk-forward YAML "
                          f"file (the report records it so --verify can rerun it), not a "
                          f"{type(config).__name__}; write it to a file first (yaml.safe_dump)")
    path = user_path(config)
    read_yaml(path)   # a missing file, a folder or a pipe named as such, before resolving
    path = path.resolve()
    root, model, raw, folder = load_meta_config(path)
    basket = basket_operation(model, folder, str(path), root) is not None
    t0 = time.perf_counter()
    builder = {"variant_config": _plan_variants,
               "optimization_config": _plan_basket_optimization if basket else _plan_optimization,
               "walk_forward_config": _plan_walk_forward}[root]
    plan = builder(path, model, folder, backend)
    plan.basket = basket
    plan.config_doc = _doc(path)
    plan.timings["workflow_s"] = time.perf_counter() - t0
    for p in plan.pages:
        if not Path(p.template).is_file():
            raise ConfigError(f"report template {p.template} not found")
    return plan


def summary_of(d: dict[str, Any]) -> dict[str, Any]:
    """A result's ``to_dict()`` as the manifest's ``summary`` keeps it: without timings,
    JSON-safe (what ``report --verify`` compares a recomputed one with).

    >>> summary_of({"name": "t", "best": (1, 2), "timings": {"total_s": 3.2}})
    {'name': 't', 'best': [1, 2]}
    """
    d = dict(d)
    d.pop("timings", None)
    return json.loads(json.dumps(json_safe_params(d), allow_nan=False))


def _public(d: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """Statistics as a notebook parameter: without the private objects (``_pbo_result``,
    ``_distributions``), JSON-safe."""
    if d is None:
        return None
    return json_safe_params({k: v for k, v in d.items() if not str(k).startswith("_")})


def _plan_variants(path: Path, model: Any, folder: Path, backend: str) -> ReportPlan:
    cmp = VariantTestService(_runner(backend)).run(path)
    basket = basket_operation(model, folder, str(path), "variant_config") is not None   # a page per portfolio run
    significance = _public(cmp.significance)
    stems = file_stems([v.name for v in cmp.variants])
    runs, pages = [], []
    for v, stem in zip(cmp.variants, stems):
        err = "" if v.ok else f"{v.outcome.error_type}: {v.outcome.error_message}"
        runs.append(PlannedRun(v.name, v.specs, v.outcome.status if not v.ok else "ok", err,
                               v.result.metrics if v.ok else None, v.description, page=stem))
        pages.append(_page(stem, f"{model.name}: {v.name}", "portfolio_report" if basket else "variant_report",
                           {"config": str(path), "variant": v.name, "description": v.description,
                            "title": f"{model.name}: {v.name}", "expected_hash": v.specs.hash,
                            "significance": significance, "trades_csv": f"{stem}_trades.csv"},
                           "variant", v.name))
        pages[-1].trades = v.result.trades if v.ok else None
    return ReportPlan("variant_config", model.name, path, {}, runs, pages, cmp, summary_of(cmp.to_dict()))


def _base_paths(model: Any, folder: Path, path: Path, root: str) -> tuple[str, str]:
    return (resolve_base_path(model.base_strategy, folder, str(path), f"{root}.base_strategy"),
            resolve_base_path(model.base_operation, folder, str(path), f"{root}.base_operation"))


def _plan_optimization(path: Path, model: Any, folder: Path, backend: str) -> ReportPlan:
    opt = OptimizationService(_runner(backend)).run(path)
    svc = OperationService()   # the manifest records single-run metrics, as --verify recomputes them
    runs = []
    width = len(str(max(0, opt.total_runs - 1)))
    for k, row in opt.all_results.iterrows():
        params = row_params(row, opt.param_columns, grid_nulls=True)
        ok = row["status"] == "ok"
        specs = _combination_specs(lambda: specs_from_row(opt.base_specs, row, opt.param_columns, grid_nulls=True), ok)
        if specs is None:   # the sweep refused these parameters: a failed row without specs of its own
            runs.append(PlannedRun(f"run_{int(k):0{width}d}", None, str(row["status"]), str(row["error"] or ""),
                                   params=json_safe_params(params), base=opt.base_specs))
            continue
        if specs.run_id != row["run_id"]:  # pragma: no cover - the service derives specs the same way
            raise RuntimeError(f"run {k}: rebuilt specs {specs.run_id} differ from the sweep's {row['run_id']}")
        metrics = (_row_metrics(row) or svc.run(specs).metrics) if ok else None
        runs.append(PlannedRun(f"run_{int(k):0{width}d}", specs, str(row["status"]), str(row["error"] or ""),
                               metrics, params=json_safe_params(params)))
    strategy, operation = _base_paths(model, folder, path, "optimization_config")
    best = opt.best_index
    stems = file_stems(["optimization", "best_run"])
    selection = _public(opt.statistics)   # computed once here; the pages show these numbers
    pages = [_page(stems[0], opt.name, "optimization_report",
                   {"config": str(path), "title": opt.name, "selection": selection, "results_csv": "all_results.csv",
                    "best_page": f"{stems[1]}.html" if best is not None else None}, "optimization")]
    if best is not None:
        runs[best].page = stems[1]
        pages.append(_page(stems[1], f"{opt.name}: best run", "backtest_report",
                           {"strategy": strategy, "operation": operation, "overrides": opt.best_params,
                            "title": f"{opt.name}: best run ({runs[best].name})", "selection": selection,
                            "expected_hash": runs[best].specs.hash, "trades_csv": f"{stems[1]}_trades.csv"},
                           "best_run", runs[best].name))
        pages[-1].trades = svc.run(runs[best].specs).trades
    return ReportPlan("optimization_config", model.name, path, {}, runs, pages, opt, summary_of(opt.to_dict()),
                      results_table=opt.all_results)


def _plan_basket_optimization(path: Path, model: Any, folder: Path, backend: str) -> ReportPlan:
    """An optimization over a basket: every combination one portfolio run, recorded by its
    :class:`~metaflow_nb.services.basket_specs.BasketSpecs` (planned, not run again: the
    table's metrics are the portfolio run's, batch == single path)."""
    from ..services.basket_specs import BasketPlanner
    from ..services.portfolio import load_basket
    opt = OptimizationService(_runner(backend)).run(path)
    strategy, operation = _base_paths(model, folder, path, "optimization_config")
    planner = BasketPlanner(strategy, load_basket(operation))
    table = opt.table.sort_values("combination", kind="stable")
    width = len(str(max(0, len(table) - 1)))
    runs, best = [], None
    base = planner.specs({})
    for k, row in table.iterrows():
        params = row_params(row, opt.param_columns, grid_nulls=True)
        ok = row["status"] == "ok"
        runs.append(PlannedRun(f"combination_{int(row['combination']):0{width}d}",
                               _combination_specs(lambda: planner.specs(params), ok),
                               str(row["status"]), str(row["error"] or ""), _row_metrics(row) if ok else None,
                               params=json_safe_params(params), base=base))
        if opt.best_row is not None and k == opt.best_row.name:
            best = len(runs) - 1
    stems = file_stems(["optimization", "best_run"])
    selection = _public(opt.statistics)
    pages = [_page(stems[0], opt.name, "basket_optimization_report",
                   {"config": str(path), "title": opt.name, "selection": selection, "results_csv": "all_results.csv",
                    "best_page": f"{stems[1]}.html" if best is not None else None}, "optimization")]
    if best is not None:
        runs[best].page = stems[1]
        if runs[best].specs.hash != opt.best_result.basket_specs.hash:  # pragma: no cover - one resolution
            raise RuntimeError(f"{path}: the planned best combination differs from the run the optimization kept")
        pages.append(_page(stems[1], f"{opt.name}: best combination", "portfolio_report",
                           {"strategy": strategy, "operation": operation, "overrides": runs[best].params,
                            "title": f"{opt.name}: best combination ({runs[best].name})", "selection": selection,
                            "expected_hash": runs[best].specs.hash, "trades_csv": f"{stems[1]}_trades.csv"},
                           "best_run", runs[best].name))
        pages[-1].trades = opt.best_result.trades
    return ReportPlan("optimization_config", model.name, path, {}, runs, pages, opt, summary_of(opt.to_dict()),
                      results_table=table)


def _combination_specs(resolve: Any, ok: bool) -> Any:
    """``resolve()``: a combination's specs; None when its parameters do not validate and
    the sweep failed it for that (a grid may hold ``fast >= slow``), so that the report
    records it as a failed row instead of refusing the whole config."""
    try:
        return resolve()
    except ConfigError:
        if ok:
            raise
        return None


def _row_metrics(row: Any) -> Optional[dict[str, Any]]:
    """A sweep row's metrics as a single run gives them (the batch path is the single path
    bit for bit: tests/test_batch_path.py), instead of running the run again; None when
    the row lacks one (then the caller runs it)."""
    from ..engine.metrics import METRIC_NAMES, metrics_dict
    if any(name not in row.index for name in METRIC_NAMES):
        return None
    values = [row[name] for name in METRIC_NAMES]
    if any(v is None for v in values):
        values = [float("nan") if v is None else v for v in values]
    return metrics_dict(np.asarray(values, dtype=np.float64))


def _plan_walk_forward(path: Path, model: Any, folder: Path, backend: str) -> ReportPlan:
    wf = WalkForwardService(_runner(backend)).run(path)
    ok_rows = wf.windows[wf.windows["status"] == "ok"] if len(wf.windows) else wf.windows
    runs = []
    for (_, row), res in zip(ok_rows.iterrows(), wf.oos_results):
        params = {c: row[c] for c in wf.param_columns}
        runs.append(PlannedRun(f"window_{int(row['window'])}", res.specs, "ok", "", res.metrics,
                               description=f"out-of-sample {row['oos_start']} .. {row['oos_end']}",
                               params=json_safe_params(params)))
    stems = file_stems(["walk_forward"])
    pages = [_page(stems[0], wf.name, "walk_forward_report", {"config": str(path), "title": wf.name},
                   "walk_forward")]
    return ReportPlan("walk_forward_config", model.name, path, {}, runs, pages, wf, summary_of(wf.to_dict()))
