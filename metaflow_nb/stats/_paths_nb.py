"""The compiled pass behind :func:`metaflow_nb.stats.pbo.split_paths`, apart so that
importing :mod:`metaflow_nb.stats` does not import numba (which imports scipy)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def split_paths_nb(m, block, mask):
    """``(growth, drawdown)`` of every column over the rows of every combination
    of ``mask`` (``block`` rows a block), in time order."""
    n_comb, s = mask.shape
    n = m.shape[1]
    growth = np.empty((n_comb, n))
    dd = np.empty((n_comb, n))
    for i in prange(n_comb):
        path = np.ones(n)
        peak = np.ones(n)
        worst = np.zeros(n)
        for b in range(s):
            if not mask[i, b]:
                continue
            for r in range(b * block, (b + 1) * block):
                for j in range(n):
                    x = path[j] * (1.0 + m[r, j])
                    path[j] = x
                    if x > peak[j]:
                        peak[j] = x
                    d = (peak[j] - x) / peak[j]
                    if d > worst[j]:
                        worst[j] = d
        growth[i] = path
        dd[i] = worst
    return growth, dd
