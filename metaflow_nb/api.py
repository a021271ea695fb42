"""The notebook verbs behind ``import metaflow_nb as mf``.

Each takes YAML paths or in-memory models and returns a result object with a rich HTML
repr, ``.metrics``/``.to_frame()`` and ``.plot()``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import pandas as pd

from .config.buildspecs import BuildSpecs
from .config.translator import ConfigTranslator, DataLike, OperationLike, StrategyLike
from .errors import ConfigError
from .limits import MAX_COMBINATIONS

if TYPE_CHECKING:
    from .config.meta import MetaSource
    from .notebook.explore import BasketExplorer, Explorer
    from .reporting.api import ReportResult
    from .services.data_description import DataDescription
    from .services.optimization import OptimizationResult
    from .services.portfolio import PortfolioResult
    from .services.portfolio_meta import BasketOptimization
    from .services.results import BacktestResult
    from .services.variants import VariantComparison
    from .services.walk_forward import WalkForwardResult


def build_specs(strategy: StrategyLike, operation: OperationLike = None, data: DataLike = None,
                start: Optional[str] = None, end: Optional[str] = None, *,
                timezone: Optional[str] = None, date_column: Optional[str] = None,
                timeframe: Optional[str] = None, intrabar: Optional[str] = None) -> BuildSpecs:
    """Resolve a blueprint (+ operation, data) into immutable :class:`BuildSpecs`.

    ``timezone`` and ``date_column`` replace the operation's ``data.timezone`` (the clock
    of the data's naive timestamps) and ``data.date_column``; ``timeframe`` and
    ``intrabar`` its ``data.timeframe`` and ``data.intrabar`` (README: "Intrabar resolution").

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> len(specs.run_id)
    16
    """
    return ConfigTranslator().translate(strategy, operation, data, start=start, end=end, timezone=timezone,
                                        date_column=date_column, timeframe=timeframe, intrabar=intrabar)


def use_plugins(*modules: str) -> tuple[str, ...]:
    """Declare plugin modules for this session: each is imported now (its workers are
    usable by name, and ``"module:Class"`` references into it resolve) and travels with
    every config built from here on to loky and dask worker processes. Returns the
    modules declared so far. No other module is ever imported for a name in a config.

    >>> import metaflow_nb as mf
    >>> "metaflow_nb.workers.builtin" in mf.use_plugins("metaflow_nb.workers.builtin")
    True
    >>> from metaflow_nb.workers import registry
    >>> registry._SESSION.remove("metaflow_nb.workers.builtin")  # undone: doctests share a process
    """
    from .workers.registry import use_plugins as _use
    return _use(*modules)


def describe_data(source: DataLike, *, timezone: Optional[str] = None, date_column: Optional[str] = None,
                  calendar: Optional[str] = None) -> "DataDescription":
    """How a data file is read (layout, which column became the time and each price, the
    dates' format, the clock) and what its bars look like (spacing, weekdays, the largest
    gap, a year for annualization and the ``data.calendar`` they fit), read exactly as
    :func:`metaflow_nb.load_data` reads it. Returns a
    :class:`~metaflow_nb.services.data_description.DataDescription`: a short report as its
    repr, ``to_dict()`` for JSON. On the command line: ``metaflow-nb data FILE``.

    >>> import metaflow_nb as mf
    >>> d = mf.describe_data("sp500_daily", calendar="exchange")
    >>> d.bars, d.spacing, d.periods_per_year, d.calendar_hint
    (5031, '1d', 252.0, 'exchange looks right: weekday bars only')
    """
    from .services.data_description import describe_data as _describe
    return _describe(source, timezone=timezone, date_column=date_column, calendar=calendar)


def backtest(strategy: StrategyLike, operation: OperationLike = None, data: DataLike = None,
             start: Optional[str] = None, end: Optional[str] = None, *, timezone: Optional[str] = None,
             date_column: Optional[str] = None, timeframe: Optional[str] = None, intrabar: Optional[str] = None,
             **param_overrides: Any) -> "BacktestResult | PortfolioResult":
    """Run one backtest and return a :class:`~metaflow_nb.services.results.BacktestResult`.

    ``strategy`` is a blueprint YAML path, a dict, a StrategyBlueprint or BuildSpecs;
    ``operation`` likewise (default: bundled S&P 500, 10 000 cash, no costs); ``data`` a
    sample name, a file or a DataFrame replacing the operation's data; ``timezone``,
    ``date_column``, ``timeframe`` and ``intrabar`` replace the operation's ``data.*`` keys
    as in :func:`build_specs`. Parameters of worker instances are overridden as
    ``sma_1={"fast": 5}`` or ``sma_1__fast=5``.

    >>> import metaflow_nb as mf
    >>> res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily", sma_1__fast=5)
    >>> res.specs.params("sma_1")["fast"], res.metrics["total_trades"] > 0
    (5, True)

    An operation naming a basket (``instruments:`` or ``universe:``, README "Portfolios")
    runs the strategy over every instrument and returns a
    :class:`~metaflow_nb.services.portfolio.PortfolioResult`.
    """
    from .services.operation import shared_service

    reading = {"timezone": timezone, "date_column": date_column, "timeframe": timeframe, "intrabar": intrabar}
    if _is_portfolio(operation):
        given = [k for k, v in reading.items() if v is not None]
        if given:
            raise ConfigError(f"{given[0]}=: a portfolio operation reads each instrument's data itself (each "
                              f"instrument's own keys, or the operation's data: section); {given[0]}= is for "
                              "single runs")
        return _backtest_portfolio(strategy, operation, data, start, end, param_overrides)
    specs = ConfigTranslator().translate(strategy, operation, data, start=start, end=end, params=param_overrides,
                                         **reading)
    frame = data if isinstance(data, pd.DataFrame) else None
    return shared_service().run(specs, frame)


def _is_portfolio(operation: OperationLike) -> bool:
    if operation is None:
        return False
    from .config.portfolio import is_portfolio_operation
    return is_portfolio_operation(operation)


def _backtest_portfolio(strategy: StrategyLike, operation: Any, data: DataLike, start: Optional[str],
                        end: Optional[str], param_overrides: dict[str, Any]):
    from .services.portfolio import run_portfolio

    if data is not None or start is not None or end is not None:
        raise ConfigError("a portfolio operation names its instruments' data and dates itself (instruments: or "
                          "universe:, data.start, data.end); data=, start= and end= are for single runs")
    return run_portfolio(strategy, operation, **param_overrides)


def optimize(config: "MetaSource", *, strategy: Optional[StrategyLike] = None, operation: OperationLike = None,
             data: DataLike = None, engine: Optional[str] = None, backend: Optional[str] = None,
             workers: Optional[int] = None, out: Optional[str | Path] = None, resume: bool = False,
             progress: bool = True, max_combinations: Optional[int] = None,
             scheduler: Optional[str] = None) -> "OptimizationResult | BasketOptimization":
    """Grid search of an ``optimization_config``; returns an OptimizationResult.

    ``config`` is a YAML path, a dict (``{"optimization_config": {...}}`` or its body; its
    ``base_strategy``/``base_operation`` paths or the blueprint and operation themselves)
    or an OptimizationConfig. ``strategy``/``operation`` replace its base ones and ``data``
    (a sample name, a path or a DataFrame) its data, as in :func:`backtest`. ``engine``
    (``auto``, ``batch``, ``general``) replaces ``parallel.engine``; ``max_combinations``
    the config's limit on the grid's size. ``scheduler`` (``"tcp://host:8786"``) runs the
    sweep on that dask cluster (the ``dask`` backend): named here or by ``--scheduler``,
    never by a config file, since this process unpickles what the cluster sends back.

    >>> import metaflow_nb as mf
    >>> res = mf.optimize("config/optimizations/optimize_fvg_params.yaml", backend="sequential", progress=False)
    >>> res.total_runs, res.successful_runs, res.engine
    (16, 16, 'general')
    >>> space = [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10], "slow": [30]}}]
    >>> res = mf.optimize({"name": "sma", "base_strategy": "config/runs/sma_cross.yaml",
    ...                    "base_operation": "config/operations/sp500_daily.yaml", "parameter_space": space},
    ...                   data=mf.load_data("sp500_daily")[-500:], engine="batch", progress=False)
    >>> res.total_runs, res.engine
    (2, 'batch')
    """
    from .services.optimization import OptimizationService
    _check_keywords(workers=workers, max_combinations=max_combinations, resume=resume, out=out, engine=engine,
                    backend=backend)
    return OptimizationService().run(config, out=out, resume=resume, strategy=strategy, operation=operation,
                                     data=data, max_combinations=max_combinations,
                                     **_runner_kwargs(backend, workers, progress, engine, scheduler))


def compare_variants(config: "MetaSource", *, strategy: Optional[StrategyLike] = None, operation: OperationLike = None,
                     data: DataLike = None, engine: Optional[str] = None, backend: Optional[str] = None,
                     workers: Optional[int] = None, out: Optional[str | Path] = None,
                     progress: bool = True, scheduler: Optional[str] = None) -> "VariantComparison":
    """A/B test of a ``variant_config``; returns a VariantComparison (starred table,
    causal analysis of rejections, equity overlay).

    ``config``, ``strategy``, ``operation``, ``data`` and ``scheduler`` as in
    :func:`optimize`. Every variant is one full backtest, so ``engine`` may be ``auto`` or ``general`` (``batch``,
    which keeps no journal, is refused).

    >>> import metaflow_nb as mf
    >>> cmp = mf.compare_variants("config/variants/exit_strategy_test.yaml", backend="sequential", progress=False)
    >>> list(cmp.table().columns)
    ['liquidity_targets', 'atr_based']
    """
    from .services.variants import VariantTestService
    _check_keywords(workers=workers, engine=engine, backend=backend)
    return VariantTestService().run(config, out=out, strategy=strategy, operation=operation, data=data,
                                    **_runner_kwargs(backend, workers, progress, engine, scheduler))


def walk_forward(config: "MetaSource", *, strategy: Optional[StrategyLike] = None, operation: OperationLike = None,
                 data: DataLike = None, engine: Optional[str] = None, backend: Optional[str] = None,
                 workers: Optional[int] = None, out: Optional[str | Path] = None, resume: bool = False,
                 progress: bool = True, max_combinations: Optional[int] = None,
                 scheduler: Optional[str] = None) -> "WalkForwardResult":
    """Walk-forward validation of a ``walk_forward_config``; returns a WalkForwardResult.

    ``config``, ``strategy``, ``operation``, ``data``, ``engine``, ``max_combinations`` and
    ``scheduler`` as in :func:`optimize` (the engine runs each window's in-sample sweep).

    >>> import metaflow_nb as mf
    >>> wf = mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", backend="sequential", progress=False)
    >>> "is_score" in wf.to_frame().columns
    True
    """
    from .services.walk_forward import WalkForwardService
    _check_keywords(workers=workers, max_combinations=max_combinations, resume=resume, out=out, engine=engine,
                    backend=backend)
    return WalkForwardService().run(config, out=out, resume=resume, strategy=strategy, operation=operation,
                                    data=data, max_combinations=max_combinations,
                                    **_runner_kwargs(backend, workers, progress, engine, scheduler))


def optimize_basket(strategy: StrategyLike, operation: Any, parameter_space: Any, *, target: str = "sharpe_ratio",
                    max_combinations: int = MAX_COMBINATIONS, engine: str = "auto", progress: bool = False,
                    maximize: Optional[bool] = None, constraints: Any = None, store: Any = None,
                    resume: bool = False) -> "BasketOptimization":
    """Grid search over a basket: every combination of ``parameter_space`` is one portfolio
    run of ``operation`` (``instruments:`` or ``universe:``, either mode), ranked by the
    portfolio's ``target``; in ``mode: independent`` also per instrument
    (``.best_per_instrument()``). Deflated Sharpe ratios count every trial. ``engine``:
    ``batch`` (the batch path over the basket), ``general`` (one portfolio run per
    combination) or ``auto`` (batch in mode independent when it can). ``maximize``
    (default: the metric's direction) and ``constraints`` (``{"min_trades": 20, ...}``,
    the optimization target's) rank the runs; ``store`` (a folder) keeps every
    combination's row and ``resume`` reads back those it holds. Returns a
    :class:`~metaflow_nb.services.portfolio_meta.BasketOptimization`.

    >>> import metaflow_nb as mf
    >>> opt = mf.optimize_basket("config/runs/sma_cross.yaml", {"universe": {"path": "us_stocks", "symbols": ["IBM"]}},
    ...                          {"sma_1": {"fast": [5, 10], "slow": [30]}})
    >>> opt.total_runs, sorted(opt.best)
    (2, ['sma_1__fast', 'sma_1__slow'])
    """
    from .services.portfolio_meta import optimize_basket as _optimize
    _check_keywords(max_combinations=max_combinations, engine=engine)
    return _optimize(strategy, operation, parameter_space, target=target, max_combinations=max_combinations,
                     engine=engine, progress=progress, maximize=maximize, constraints=constraints, store=store,
                     resume=resume)


def _check_keywords(*, workers: Any = None, max_combinations: Any = None, resume: bool = False,
                    out: Any = None, engine: Any = None, backend: Any = None) -> None:
    """The meta verbs' keywords checked as their configs and the CLI check them: a
    ConfigError naming the argument (``workers=0`` ran the default, ``"2"`` a TypeError,
    ``engine="single"`` blamed the config file's ``parallel.engine``, ``backend="Loky"``
    its ``parallel.backend``, ``backend=""`` ran the config's).

    >>> _check_keywords(workers=np.int64(2), backend="loky")   # NumPy numbers count as what they hold
    >>> _check_keywords(backend="Loky")
    Traceback (most recent call last):
    metaflow_nb.errors.ConfigError: backend: unknown backend 'Loky'; expected one of loky, threads, sequential, dask
    """
    from .limits import INT64_MAX
    for name, value in (("workers", workers), ("max_combinations", max_combinations)):
        if isinstance(value, np.integer):
            value = int(value)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name}: expected a positive whole number (got {value!r})")
        if value is not None and value > INT64_MAX:
            raise ConfigError(f"{name}: expected a positive whole number of at most {INT64_MAX} (got {value!r})")
    if backend is not None:
        from .services.parallel import BACKENDS
        if backend not in BACKENDS:
            raise ConfigError(f"backend: unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        from .config.meta import engine_backend_problem
        wrong = engine_backend_problem(engine, backend)
        if wrong:
            raise ConfigError(f"engine: {wrong}")
    if resume and out is None:
        raise ConfigError("resume: reads the results store of out; give out= too")
    if out is not None:
        if not isinstance(out, (str, Path)):
            raise ConfigError(f"out: expected a folder path (got {type(out).__name__} {out!r:.60})")
        from .services.names import folder_problem
        problem = folder_problem(out)
        if problem:
            raise ConfigError(f"out {out}: {problem}")
    if engine is not None:
        from .config.meta import engine_problem
        wrong = engine_problem(engine)
        if wrong:
            raise ConfigError(f"engine: {wrong}")


def _runner_kwargs(backend: Optional[str], workers: Optional[int], progress: bool,
                   engine: Optional[str] = None, scheduler: Optional[str] = None) -> dict[str, Any]:
    kw: dict[str, Any] = {"progress": progress}
    if scheduler is not None:
        # its form is checked here, so the message names scheduler= as the caller wrote it
        # (the CLI names --scheduler); whether one answers is known when the sweep connects
        try:
            from .services.parallel import scheduler_problem
            wrong = scheduler_problem(scheduler)
        except ImportError:   # no dask extra: the dask backend says so where it is built
            wrong = None
        named_by = "scheduler="   # a cluster that does not answer is named so too
        if wrong:
            raise ConfigError(f"{named_by}{scheduler!r}: {wrong}")
        if backend not in (None, "dask"):
            raise ConfigError(f"scheduler {scheduler!r}: a dask scheduler's address; backend {backend!r} runs here "
                              f"(expected backend='dask', or no scheduler)")
        kw["scheduler"] = scheduler
        kw["scheduler_named_by"] = named_by
        backend = "dask"
    if backend:
        kw["backend"] = backend
    if workers:
        kw["max_workers"] = int(workers)
    if engine:
        kw["engine"] = engine
    return kw


def explore(strategy: StrategyLike, operation: OperationLike = None, parameter_space: Any = None,
            data: DataLike = None, **options: Any) -> "Explorer | BasketExplorer":
    """Live widget explorer: sliders/toggles generated from a parameter_space (or the
    plugins' suggested ranges), each change re-runs the backtest and redraws metrics and
    equity in place. Returns an Explorer; display it in a notebook.

    >>> import metaflow_nb as mf
    >>> ex = mf.explore("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> [k for k in sorted(ex.controls) if k.startswith("sma_1")]
    ['sma_1.fast', 'sma_1.slow']
    """
    from .notebook.explore import explore as _explore
    return _explore(strategy, operation, parameter_space, data=data, **options)


def report(config: str | Path, out: Optional[str | Path] = None, workers: Optional[int] = None,
           **options: Any) -> "ReportResult":
    """Execute the report notebooks of a variant, optimization or walk-forward config with
    papermill (one process per notebook), export them to offline HTML, write an
    ``index.html`` comparison and a ``manifest.json``. Returns a ReportResult. A config
    whose ``base_operation`` names a basket gets a portfolio page per run (README "Reports").

    >>> import metaflow_nb as mf, tempfile
    >>> rep = mf.report("config/variants/exit_strategy_test.yaml", out=tempfile.mkdtemp())  # doctest: +SKIP
    >>> rep.index.name  # doctest: +SKIP
    'index.html'
    """
    from .reporting.api import report as _report
    return _report(config, out=out, workers=workers, **options)


from typing import Mapping, Sequence  # noqa: E402  (names of the verb below only)

if TYPE_CHECKING:
    from .services.causality import CausalityResult, TargetLike


def check_causality(strategy_or_worker: "TargetLike", data: DataLike = None, operation: OperationLike = None,
                    cuts: int | Sequence[int] = 5, seed: Optional[int] = 0,
                    params: Optional[Mapping[str, Any]] = None, *, timezone: Optional[str] = None,
                    date_column: Optional[str] = None) -> "CausalityResult":
    """Check for look-ahead by prefix replay: run on the full data and on the first ``k``
    bars for a few cuts ``k``, and report every output that changed before ``k``.

    ``strategy_or_worker``: a strategy (YAML path, dict, BuildSpecs: every worker, the
    plans and the whole run's journal) or one worker (an instance, a class, or a plugin
    name with ``params``). ``cuts``: a number of random cuts (``seed``; a strategy is also cut as many times just
    after setups, and short prefixes of 2, 4, 8, ... bars are run too) or bar indices. ``timezone`` and ``date_column`` read the data as
    :func:`backtest` reads it (they replace the operation's ``data.timezone`` and
    ``data.date_column``).
    Returns a CausalityResult: ``.ok``, ``.findings`` (per output, the first bar that
    changed, the cut, the prefix and full values); a finite set of cuts can show
    look-ahead, never prove its absence on other data.

    >>> import metaflow_nb as mf
    >>> res = mf.check_causality("config/runs/sma_cross.yaml", data="sp500_daily", cuts=3)
    >>> res.ok, len(res.cuts), len(res.findings)   # 3 random cuts, 3 just after setups
    (True, 6, 0)
    >>> mf.check_causality("atr", params={"period": 5}, data="sp500_daily", cuts=[2500, 4000]).ok
    True
    """
    from .services.causality import check_causality as _check
    if isinstance(data, (str, Path)) and str(data).lower().endswith((".yaml", ".yml")):
        # backtest takes (strategy, operation, data): say which argument this YAML went to
        raise ConfigError(f"data: {data} is a YAML file; check_causality(strategy, data, operation) takes the "
                          f"data second: pass an operation as operation={str(data)!r}")
    return _check(strategy_or_worker, data=data, operation=operation, cuts=cuts, seed=seed, params=params,
                  timezone=timezone, date_column=date_column)
