"""``metaflow-nb report CONFIG [--out DIR] [--workers N] [--json]``,
``metaflow-nb report STRATEGY [--operation OP] [--data SAMPLE] [--out DIR] [--json]`` (one
run's tear sheet page) and ``metaflow-nb report --verify DIR``.

Exit codes: 0 report written (some pages may have failed: they are marked in the index,
and a last line on stderr counts them) or verified; 1 every page failed, or ``--verify`` found differences; 2 bad input (raised
as :class:`~metaflow_nb.errors.MetaflowError`, printed by the main CLI in one line).
"""
from __future__ import annotations

import argparse
import sys


def _given(args: argparse.Namespace, *keys: str) -> str:
    """The first of ``keys`` given on the command line, as its flag ("" when none)."""
    return next((f"--{k}" for k in keys if getattr(args, k, None) not in (None, False)), "")


def run(args: argparse.Namespace) -> int:
    """Run ``metaflow-nb report`` with parsed ``args``: write a report (or one run's tear
    sheet) or verify a report folder; returns the exit code (see the module docstring).

    >>> run(argparse.Namespace(config=None, verify=None))
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: report: missing CONFIG (a variant, optimization, walk-forward or strategy YAML) or --verify DIR
    """
    from ..errors import ConfigError
    from ..services.formatting import counted, json_line

    as_json = bool(getattr(args, "json", False))
    verify_dir = getattr(args, "verify", None)
    if verify_dir:
        if getattr(args, "config", None):
            raise ConfigError("report: give a CONFIG to make a report or --verify DIR, not both")
        unused = _given(args, "out", "zip", "workers", "operation", "data")
        if unused:
            raise ConfigError(f"{unused}: report --verify reads a report (it writes none and runs its own "
                              f"records); expected --verify DIR [--json]")
        from .verify import verify
        res = verify(verify_dir)
        if as_json:
            print(json_line(res.to_dict()))
        if res.ok:
            if not as_json:
                print(res.summary())
            return 0
        print(res.summary(), file=sys.stderr)
        return 1
    if not getattr(args, "config", None):
        raise ConfigError("report: missing CONFIG (a variant, optimization, walk-forward or strategy YAML) "
                          "or --verify DIR")
    from .api import is_meta_config
    operation, data = getattr(args, "operation", None), getattr(args, "data", None)
    if not is_meta_config(args.config):
        unused = _given(args, "zip", "workers")
        if unused:
            raise ConfigError(f"{unused}: a strategy's page is one file made in this process; {unused} is for a "
                              f"variant, optimization or walk-forward report")
        return _single_run(args, operation, data, as_json)
    if operation or data:
        raise ConfigError(f"{args.config}: --operation and --data belong to a strategy YAML's single run; "
                          f"a variant, optimization or walk-forward config names its own")
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        raise ConfigError(f"report: --workers must be at least 1 (got {workers})")
    from .api import report
    # the bar on a terminal's stderr only, as the meta commands (stdout holds --json's line)
    rep = report(args.config, out=getattr(args, "out", None), workers=workers, progress=sys.stderr.isatty(),
                 archive=bool(getattr(args, "zip", False)))
    if as_json:
        print(json_line(rep.to_dict()))
    else:
        for p in rep.failed:
            print(f"failed: {p.run or p.name}: {p.error} (notebook: {p.notebook})", file=sys.stderr)
        if rep.failed:   # the status stays 0 while a page was written: the log says it is partial
            n = len(rep.failed)
            print(f"report: {n} of {counted(len(rep.pages), 'page')} failed; the index marks "
                  f"{'it' if n == 1 else 'them'}", file=sys.stderr)
        print(rep.index)
    return 1 if rep.pages and len(rep.failed) == len(rep.pages) else 0


def _single_run(args: argparse.Namespace, operation: "str | None", data: "str | None", as_json: bool) -> int:
    """``metaflow-nb report STRATEGY [--operation OP] [--data SAMPLE]``: one run's tear sheet."""
    from ..services.formatting import json_line
    from .api import report_run
    page, res = report_run(args.config, operation, data, out=getattr(args, "out", None))
    if hasattr(res, "breakdown"):   # a basket's portfolio page
        if as_json:
            print(json_line({"page": str(page), "trades_csv": str(page.with_name(page.stem + "_trades.csv")),
                             **res.to_dict()}))
        else:
            print(res.costs_text(), file=sys.stderr)
            print(page)
        return 0
    if as_json:
        c = res.costs()
        print(json_line({"page": str(page), "trades_csv": str(page.with_name(page.stem + "_trades.csv")),
                         "run_id": res.run_id, "name": res.name, "metrics": res.metrics,
                         "costs": {"commission": c.commission_rate, "slippage": c.slippage_rate,
                                   "commission_paid": c.commission_paid, "slippage_paid": c.slippage_paid,
                                   "open_at_end": c.open_at_end}}))
    else:
        print(res.costs().text(), file=sys.stderr)
        print(page)
    return 0
