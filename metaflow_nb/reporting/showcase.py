"""The reports of ``make demo``: the source design's optimization and variant test, the
SMA grid over the bundled us_stocks basket (its best combination on a portfolio page), the
exit rules compared on the EURUSD sample (fixed 2R target, trailing stop with a
break-even move, time stop with a session exit), and 15m FVG entries in the direction of
the 4h (or daily) structure against the single-timeframe strategy; then the tear sheet of
the bundled ICT run (one page and its trades CSV).

Writes ``<root>/reports/<config>-<hash8>/`` for each and prints the path of the last
variant test's ``index.html`` last (the page to open).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

from ..config.loading import read_yaml
from ..errors import MetaflowError
from .api import report

CONFIGS = ("config/optimizations/optimize_fvg_params.yaml", "config/optimizations/sma_basket.yaml",
           "config/variants/exit_strategy_test.yaml",
           "config/variants/exit_rules_eurusd.yaml", "config/variants/htf_bias_eurusd.yaml")


def workers_for(cfg: Path) -> Optional[int]:
    """Notebook processes for a variant test: one per page, up to one more than the CPUs.

    A page spends a good part of its seconds waiting for its kernel to start, so three
    pages on two cores finish sooner at once than in two rounds (15-18 s against 25 s for
    the exit-rule comparison on a loaded 2-core machine). None: the report's default.

    >>> from unittest import mock
    >>> with mock.patch("os.cpu_count", return_value=1):  # two variants on one core
    ...     workers_for(Path("config/variants/exit_strategy_test.yaml"))
    2
    """
    try:
        variants = read_yaml(cfg).get("variant_config", {}).get("variants") or []
    except (MetaflowError, AttributeError):
        return None
    cpus = os.cpu_count() or 1
    return max(1, min(len(variants), cpus + 1)) if len(variants) > cpus else None


#: the bundled run whose tear sheet ``make demo`` writes (one page, about 2 s)
SINGLE_RUN = ("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml")


def _single_run(root: Path) -> int:
    from .api import report_run
    strategy, operation = SINGLE_RUN
    print(f"$ metaflow-nb report {strategy} --operation {operation}", flush=True)
    t0 = time.perf_counter()
    try:
        page, res = report_run(root / strategy, root / operation, out=root / "reports")
    except MetaflowError as exc:
        print(f"metaflow-nb: error: {exc}", file=sys.stderr)
        return 1
    print(f"tear sheet {page} ({res.costs().text()}) in {time.perf_counter() - t0:.1f} s\n", flush=True)
    return 0


def run(root: Path) -> int:
    """Write the reports of ``make demo`` under ``<root>/reports/`` (every config of
    :data:`CONFIGS`, then the tear sheet of :data:`SINGLE_RUN`) and print the index to
    open; returns 0, or 1 when a report or a page failed. Executing every page's notebook
    takes a few minutes."""
    root = Path(root).resolve()
    rc, last = 0, None
    for rel in CONFIGS:
        cfg = root / rel
        print(f"$ metaflow-nb report {rel}", flush=True)
        t0 = time.perf_counter()
        try:
            rep = report(cfg, out=root / "reports", workers=workers_for(cfg), cwd=root,
                         progress=lambda s: print(s, flush=True))
        except MetaflowError as exc:
            print(f"metaflow-nb: error: {exc}", file=sys.stderr)
            rc = 1
            continue
        for p in rep.failed:
            print(f"failed: {p.run or p.name}: {p.error}", file=sys.stderr)
            rc = 1
        print(f"{len(rep.pages)} pages in {time.perf_counter() - t0:.1f} s\n", flush=True)
        last = rep.index
    rc |= _single_run(root)
    if last is not None:
        try:
            shown = last.relative_to(Path.cwd())
        except ValueError:
            shown = last
        print(f"Report: {shown}", flush=True)
    return rc
