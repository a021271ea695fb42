"""Market data: bundled samples, file/DataFrame loading and OHLCV validation.

>>> from metaflow_nb.data import load_data
>>> load_data("eurusd_15m").shape
(24424, 5)
"""
from __future__ import annotations

from metaflow_nb.data.loader import (
    clear_data_cache,
    data_fingerprint,
    file_sha256,
    list_samples,
    load_data,
    sample_path,
)
from metaflow_nb.data.validate import validate_ohlcv

__all__ = [
    "load_data",
    "list_samples",
    "sample_path",
    "data_fingerprint",
    "file_sha256",
    "validate_ohlcv",
    "clear_data_cache",
]
