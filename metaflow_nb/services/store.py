"""Content-addressed results store: one JSON record per BuildSpecs hash, written atomically.

Records live at ``<root>/<hash[:2]>/<hash>.json``. A record is written to a temporary
file in the same folder and renamed into place, so a sweep killed at any moment leaves
either a whole record or none, and ``--resume`` recomputes only what is missing.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

if TYPE_CHECKING:
    import numpy as np


class ResultsStore:
    """A folder of run records keyed by the run's BuildSpecs hash.

    >>> import tempfile
    >>> store = ResultsStore(tempfile.mkdtemp())
    >>> store.put("ab" * 32, {"status": "ok", "metrics": {"sharpe_ratio": 1.0}})
    >>> store.get("ab" * 32)["metrics"]
    {'sharpe_ratio': 1.0}
    >>> ("cd" * 32) in store
    False
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> Optional[dict[str, Any]]:
        p = self._path(key)
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            # cannot happen with atomic writes, but a hand-edited file must not break a resume
            return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Write a run record atomically."""
        _atomic_write(self._path(key), lambda f: f.write(json.dumps(record, sort_keys=True).encode()))

    def put_array(self, key: str, name: str, values: "np.ndarray") -> None:
        """Store an array beside a record (e.g. a run's daily returns), atomically."""
        import numpy as np
        _atomic_write(self.root / key[:2] / f"{key}.{name}.npy", lambda f: np.save(f, np.asarray(values)))

    def get_array(self, key: str, name: str) -> "Optional[np.ndarray]":
        import numpy as np
        p = self.root / key[:2] / f"{key}.{name}.npy"
        try:
            return np.load(p, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError):
            return None

    def keys(self) -> Iterator[str]:
        for p in sorted(self.root.glob("??/[!.]*.json")):
            yield p.stem

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    """Write through a temporary file in the same folder, fsync, then rename into place:
    a reader (or a resumed sweep) sees the whole file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
