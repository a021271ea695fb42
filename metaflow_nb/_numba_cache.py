"""Point Numba's on-disk cache at a stable folder before any kernel is compiled.

By default Numba caches next to the source files, which a reinstall wipes. We use
``$METAFLOW_NB_CACHE_DIR``, else ``$NUMBA_CACHE_DIR``, else ``~/.cache/metaflow-nb/numba``,
so a fresh process (or a fresh install of the same version) does not recompile.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The folder compiled kernels are cached in."""
    explicit = os.environ.get("METAFLOW_NB_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "metaflow-nb" / "numba"


def configure() -> None:
    path = str(cache_dir())
    os.environ.setdefault("NUMBA_CACHE_DIR", path)
    import sys
    if "numba" in sys.modules:  # numba read its config already; set it directly
        from numba.core import config
        config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
