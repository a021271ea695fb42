"""Reports: papermill-executed template notebooks, offline HTML, an index and a manifest.

One small module per responsibility:

- :mod:`.params`    pydantic models of the template notebooks' parameters (JSON-safe only)
- :mod:`.names`     file names from run names (sanitized, deduplicated)
- :mod:`.plan`      a config resolved into the runs and the notebooks of its report
- :mod:`.execute`   papermill, one separate process per notebook, N at a time
- :mod:`.export`    nbconvert HTML without code cells, self-contained and offline
- :mod:`.figures`   figures of the pages and the index (``result.plot()`` when available)
- :mod:`.pages`     helpers the template notebooks call
- :mod:`.index`     ``index.html``: the runs side by side
- :mod:`.manifest`  ``manifest.json``: content (hashed) apart from timings
- :mod:`.verify`    ``--verify DIR``: re-run and compare to the manifest
- :mod:`.api`       :func:`report` and :class:`ReportResult`
- :mod:`.cli`       ``metaflow-nb report``
- :mod:`.showcase`  the reports ``make demo`` writes
"""
from __future__ import annotations

__all__ = ["report", "ReportResult"]


def __getattr__(name: str):
    if name in __all__:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'metaflow_nb.reporting' has no attribute {name!r}")
