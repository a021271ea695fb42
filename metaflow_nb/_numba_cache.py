"""Point Numba's on-disk cache at a stable folder before any kernel is compiled.

By default Numba caches next to the source files, which a reinstall wipes. We use
``$METAFLOW_NB_CACHE_DIR``, else ``~/.cache/metaflow-nb/numba``, so a fresh process (or a
reinstall of the same code) does not recompile.

Numba checks a cached kernel only against its own source file, so a kernel that calls
one in another module could keep stale machine code after that module changes. The
cache therefore lives in a sub-folder named by a digest of every kernel source in
``engine/nb``: any change to any kernel starts a fresh cache.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .paths import user_path

_KERNELS = Path(__file__).resolve().parent / "engine" / "nb"


def base_dir() -> Path:
    explicit = os.environ.get("METAFLOW_NB_CACHE_DIR")
    if explicit:
        return user_path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "metaflow-nb" / "numba"


def kernels_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(_KERNELS.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def cache_dir() -> Path:
    """The folder compiled kernels are cached in."""
    return base_dir() / kernels_digest()


def configure() -> None:
    if os.environ.get("NUMBA_CACHE_DIR") and not os.environ.get("METAFLOW_NB_CACHE_DIR"):
        return  # the user manages Numba's cache directly
    path = str(cache_dir())
    os.environ["NUMBA_CACHE_DIR"] = path
    import sys
    if "numba" in sys.modules:  # numba read its config already; set it directly
        from numba.core import config
        config.CACHE_DIR = path
