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
