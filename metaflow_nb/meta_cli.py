"""CLI glue of the meta workflows: ``optimize``, ``variants``, ``walk-forward``
(``report`` is :mod:`metaflow_nb.reporting.cli`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _runner_options(args: argparse.Namespace) -> dict[str, Any]:
    # the bar stays on a terminal's stderr (with --json stdout holds the JSON): a bar redrawn
    # with carriage returns is noise in a log or a pipe
    opts: dict[str, Any] = {"progress": not getattr(args, "no_progress", False) and sys.stderr.isatty()}
    if getattr(args, "backend", None):
        opts["backend"] = args.backend
    if getattr(args, "workers", None):
        opts["max_workers"] = args.workers
    if getattr(args, "engine", None):
        opts["engine"] = args.engine
        from .config.meta import engine_backend_problem
        wrong = engine_backend_problem(args.engine, getattr(args, "backend", None))
        if wrong:
            from .errors import ConfigError   # named by the flags, not the config's parallel.engine
            raise ConfigError(f"--engine {args.engine} with --backend {args.backend}: {wrong}")
    if getattr(args, "max_combinations", None):
        opts["max_combinations"] = args.max_combinations
    if getattr(args, "scheduler", None):
        if opts.get("backend", "dask") != "dask":
            from .errors import ConfigError
            raise ConfigError(f"--scheduler {args.scheduler}: a dask scheduler's address; --backend "
                              f"{opts['backend']} runs here (expected --backend dask, or no --scheduler)")
        opts["scheduler"] = args.scheduler
        opts.setdefault("backend", "dask")
    return opts


def run(command: str, args: argparse.Namespace) -> int:
    """Run the meta operation ``command`` (``optimize``, ``variants`` or, else,
    walk-forward) of the config ``args.config`` with the CLI's options and print its
    summary (a JSON line with ``--json``). Returns the exit status: 1 when every run
    failed, else 0."""
    from .services.formatting import json_line

    opts = _runner_options(args)
    out = Path(args.out) if args.out else None
    if args.resume and command == "variants":
        from .errors import ConfigError
        raise ConfigError("--resume: variants run again (a variant keeps its whole result, journal and equity, "
                          "not a record a store reads back); --resume reads back optimize and walk-forward runs")
    if args.resume and out is None:
        from .errors import ConfigError
        raise ConfigError("--resume needs --out: the results store lives in the output folder")
    if command == "optimize":
        from .services.optimization import OptimizationService
        res = OptimizationService().run(args.config, out=out, resume=args.resume, **opts)
    elif command == "variants":
        from .services.variants import VariantTestService
        res = VariantTestService().run(args.config, out=out, resume=args.resume, **opts)
    else:
        from .services.walk_forward import WalkForwardService
        res = WalkForwardService().run(args.config, out=out, resume=args.resume, **opts)
    if args.json:
        print(json_line(res.to_dict()))
    else:
        print(res.render_text() if hasattr(res, "render_text") else repr(res))
    if command == "optimize" and res.successful_runs == 0:
        print(f"metaflow-nb: every run failed; first error: {res.all_results['error'].iloc[0]}", file=sys.stderr)
        return 1
    if command == "walk-forward" and len(res.windows) and (res.windows["status"] == "failed").all():
        first = res.windows.iloc[0]
        print(f"metaflow-nb: every run failed; first error: window {int(first['window'])}: "
              f"{first['note'].split('first error: ', 1)[-1]}", file=sys.stderr)
        return 1
    if command == "variants" and res.variants and not any(v.ok for v in res.variants):
        first = res.variants[0].outcome
        print(f"metaflow-nb: every variant failed; first error: {res.variants[0].name}: {first.error_type}: "
              f"{first.error_message}", file=sys.stderr)
        return 1
    return 0
