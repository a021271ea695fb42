"""Test-only helpers for the portfolio tests: random baskets written as CSV files.

Imported by ``tests/test_portfolio_mode.py`` and ``tests/test_portfolio_properties.py``
(the tests directory is on ``sys.path`` under pytest's default import mode).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_basket(folder: Path, seed: int, n_inst: int, n_days: int, drop: float, vol: float = 0.02,
                 open_vol: float = 0.005) -> dict[str, pd.Index]:
    """``n_inst`` random daily OHLC files ``S0.csv``.. in ``folder`` on business days,
    each missing a ``drop`` share of its days and listed late (up to a quarter of the
    span); returns each symbol's own dates. ``vol``: daily log-return volatility of the
    closes; ``open_vol``: of the opens around them."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2020-01-01", periods=n_days)
    own = {}
    for k in range(n_inst):
        keep = rng.random(n_days) >= drop
        keep[: rng.integers(0, n_days // 4)] = False  # a late listing
        idx = days[keep]
        close = 50 * np.exp(np.cumsum(rng.normal(0, vol, len(idx))))
        open_ = close * np.exp(rng.normal(0, open_vol, len(idx)))
        high = np.maximum(open_, close) * (1 + rng.random(len(idx)) * 0.01)
        low = np.minimum(open_, close) * (1 - rng.random(len(idx)) * 0.01)
        pd.DataFrame({"date": idx.strftime("%Y-%m-%d"), "open": open_, "high": high, "low": low, "close": close}) \
            .to_csv(folder / f"S{k}.csv", index=False)
        own[f"S{k}"] = idx
    return own
