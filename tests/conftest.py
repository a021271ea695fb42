"""Shared fixtures. Tests run from the project root so config paths in docs resolve."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.chdir(ROOT)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def sp500():
    from metaflow_nb.data import load_data
    return load_data("sp500_daily")


@pytest.fixture(scope="session")
def eurusd():
    from metaflow_nb.data import load_data
    return load_data("eurusd_15m")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots and other files tests leave for people to look at."""
    p = ROOT / "test-output"
    p.mkdir(exist_ok=True)
    return p


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """Compile the engine's kernels into Numba's disk cache once, before any test (and,
    under pytest-xdist, before the workers start): on a fresh machine every test process
    and every CLI, loky or notebook subprocess would otherwise compile them on its own,
    about 50 s each, several at a time (a clean CI run took 10.5 min, a warm one 3)."""
    if hasattr(session.config, "workerinput") or os.environ.get("METAFLOW_NB_TEST_NO_WARMUP"):
        return
    import time

    t0 = time.perf_counter()
    import metaflow_nb as mf

    sma = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily", end="2001-12-31")
    sma.equity  # the loop that keeps equity and position per bar
    ict = mf.backtest("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml",
                      end="2022-11-30")
    ict.metrics
    mf.optimize("config/optimizations/optimize_fvg_params.yaml", backend="sequential", progress=False)
    # the basket kernels (both modes' batch sweeps, the shared-account loop of the best's run)
    for mode in ("independent", "portfolio"):
        mf.optimize_basket("config/runs/sma_cross.yaml",
                           {"mode": mode, "universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]},
                            "data": {"start": "2012-01-01"}}, {"sma_1": {"fast": [5], "slow": [20]}},
                           engine="batch")
    print(f"\nkernels compiled or loaded from Numba's cache in {time.perf_counter() - t0:.1f} s")
