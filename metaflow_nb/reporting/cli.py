"""``metaflow-nb report CONFIG [--out DIR] [--workers N] [--json]`` and
``metaflow-nb report --verify DIR``.

Exit codes: 0 report written (some pages may have failed: they are marked in the index)
or verified; 1 every page failed, or ``--verify`` found differences; 2 bad input (raised
as :class:`~metaflow_nb.errors.MetaflowError`, printed by the main CLI in one line).
"""
from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..services.formatting import json_line

    as_json = bool(getattr(args, "json", False))
    verify_dir = getattr(args, "verify", None)
    if verify_dir:
        if getattr(args, "config", None):
            raise ConfigError("report: give a CONFIG to make a report or --verify DIR, not both")
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
        raise ConfigError("report: missing CONFIG (a variant, optimization or walk-forward YAML) or --verify DIR")
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        raise ConfigError(f"report: --workers must be at least 1 (got {workers})")
    from .api import report
    rep = report(args.config, out=getattr(args, "out", None), workers=workers, progress=not as_json)
    if as_json:
        print(json_line(rep.to_dict()))
    else:
        for p in rep.failed:
            print(f"failed: {p.run or p.name}: {p.error} (notebook: {p.notebook})", file=sys.stderr)
        print(rep.index)
    return 1 if rep.pages and len(rep.failed) == len(rep.pages) else 0
