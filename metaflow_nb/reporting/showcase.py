"""The reports of ``make demo``: the source design's optimization and variant test.

Writes ``<root>/reports/<config>-<hash8>/`` for each and prints the path of the variant
test's ``index.html`` last (the page to open).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from ..errors import MetaflowError
from .api import report

CONFIGS = ("config/optimizations/optimize_fvg_params.yaml", "config/variants/exit_strategy_test.yaml")


def run(root: Path) -> int:
    root = Path(root).resolve()
    rc, last = 0, None
    for rel in CONFIGS:
        cfg = root / rel
        print(f"$ metaflow-nb report {rel}", flush=True)
        t0 = time.perf_counter()
        try:
            rep = report(cfg, out=root / "reports", cwd=root, progress=lambda s: print(s, flush=True))
        except MetaflowError as exc:
            print(f"metaflow-nb: error: {exc}", file=sys.stderr)
            rc = 1
            continue
        for p in rep.failed:
            print(f"failed: {p.run or p.name}: {p.error}", file=sys.stderr)
            rc = 1
        print(f"{len(rep.pages)} pages in {time.perf_counter() - t0:.1f} s\n", flush=True)
        last = rep.index
    if last is not None:
        try:
            shown = last.relative_to(Path.cwd())
        except ValueError:
            shown = last
        print(f"Report: {shown}", flush=True)
    return rc
