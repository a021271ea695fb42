"""Process states the timed part of a job can start from (``run.py --state``).

* ``fresh``: a new interpreter that imported the package and nothing else (the default);
* ``numba``: a large Numba function was compiled in the process first: LLVM grows and
  fragments the heap, and glibc's malloc then serves large arrays differently (fresh
  ``mmap`` mappings, page faults on first touch) than in a fresh process;
* ``mmap``: the process starts with ``MALLOC_MMAP_THRESHOLD_=67108864`` in its
  environment (set by the parent, since glibc reads it at start-up): a fixed mmap
  threshold, which also switches off glibc's dynamic threshold and trims freed heap
  memory back to the system.

A notebook session that compiled other kernels before its backtest is in a state like
``numba``; the benchmarks time W1, W2 and W6 in each state, and the targets are checked in
the worst one.

Whether a given state makes a run map fresh memory depends on the whole history of the
process's heap (on the old code, W6's backtest took ~1 000 minor page faults per call
after a 16-block compile and none after a 20-block one, or the reverse once W1 had run
first in the process). The jobs therefore report ``minflt_per_run`` next to their times:
code whose timings do not depend on allocator state shows ~0 faults per call in every
state. ``MALLOC_MMAP_THRESHOLD_=131072`` (every array above 128 KB a fresh mapping) is a
deterministic worst case to try by hand.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

#: the states in the order of the tables, with their labels
STATES = {"fresh": "fresh process", "numba": "after a large Numba compile",
          "mmap": "MALLOC_MMAP_THRESHOLD_=67108864"}
MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864"}
#: blocks of the generated function: 20 compile in ~1.5 s (plus Numba's own start-up, ~0.7 s)
#: and leave ~80 MB more resident memory
COMPILE_BLOCKS = 20


def env_for(state: str) -> dict[str, str]:
    """Environment variables a job process in ``state`` starts with."""
    return dict(MMAP_ENV) if state == "mmap" else {}


def _big_source(blocks: int) -> str:
    """A Numba function of ``blocks`` loops with branches, nested loops and math calls:
    nothing clever, just a lot of IR for LLVM to optimize (compile time grows faster than
    linearly in ``blocks``)."""
    lines = ["def big(x, y, k0):", "    acc = 0.0", "    n = x.shape[0]"]
    for b in range(blocks):
        c = b % 7 + 1
        lines += [
            f"    s{b} = 0.0",
            "    for i in range(n):",
            f"        v = x[i] * {c}.0 + k0",
            f"        if v > {b * 0.01:.2f}:",
            f"            s{b} += math.sqrt(abs(v)) * y[i]",
            f"        elif v < -{b * 0.01:.2f}:",
            f"            s{b} -= math.log1p(abs(v)) + y[(i + {b}) % n]",
            "        else:",
            f"            for j in range({c}):",
            f"                s{b} += math.sin(v + j)",
            f"    acc += s{b} if s{b} == s{b} else 0.0",
        ]
    lines.append("    return acc")
    return "\n".join(lines)


def compile_large_numba_function(blocks: int = COMPILE_BLOCKS) -> dict[str, Any]:
    """Compile (never from a cache) and call a generated ``blocks``-block Numba function;
    returns the compile seconds and this process's resident memory before and after."""
    from numba import njit

    from .common import peak_rss_mb, proc_status_mb

    before = proc_status_mb("VmRSS")
    ns: dict[str, Any] = {"math": math}
    exec(compile(_big_source(blocks), f"<benchmark big function, {blocks} blocks>", "exec"), ns)  # noqa: S102
    fn = njit(cache=False)(ns["big"])
    x = np.linspace(-1.0, 1.0, 257)
    t0 = time.perf_counter()
    fn(x, x[::-1].copy(), 0.1)
    return {"state": "numba", "blocks": blocks, "compile_s": time.perf_counter() - t0, "rss_before_mb": before,
            "rss_after_mb": proc_status_mb("VmRSS"), "peak_rss_mb_after": peak_rss_mb()}


def prime(state: str, blocks: int = COMPILE_BLOCKS) -> dict[str, Any]:
    """Bring this process into ``state`` before the timed jobs; what was done, for the report."""
    if state == "numba":
        import metaflow_nb  # noqa: F401 - the package first, as a notebook would, then the compile
        return compile_large_numba_function(blocks)
    if state == "mmap":
        return {"state": "mmap", "env": {k: os.environ.get(k) for k in MMAP_ENV}}
    return {"state": state}
