"""Content-addressed results store: one JSON record per BuildSpecs hash, written atomically.

Records live at ``<root>/<hash[:2]>/<hash>.json``. A record is written to a temporary
file in the same folder and renamed into place, so a sweep killed at any moment leaves
either a whole record or none, and ``--resume`` recomputes only what is missing.

Records and arrays are validated when read: one of the wrong shape (hand-edited,
truncated, another program's file) counts as missing, so its run is computed again,
with a :class:`StoreWarning`; it never stops a resume.
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

if TYPE_CHECKING:
    import numpy as np


class ResultsStore:
    """A folder of run records keyed by the run's BuildSpecs hash.

    >>> import tempfile
    >>> store = ResultsStore(tempfile.mkdtemp())
    >>> record = {"run_id": "abab", "spec_hash": "ab" * 32, "status": "ok", "metrics": {"sharpe_ratio": 1.0}}
    >>> store.put("ab" * 32, record)
    >>> store.get("ab" * 32)["metrics"]
    {'sharpe_ratio': 1.0}
    >>> ("cd" * 32) in store
    False
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._warned = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> Optional[dict[str, Any]]:
        """The record stored under ``key``, or None when there is none or it is not a
        valid run record (then with a :class:`StoreWarning`: the run is computed again)."""
        p = self._path(key)
        data = _read_regular(p)
        if data is None:
            return None
        try:
            rec = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested without end
            return self._bad(p, "not a JSON run record")
        problem = record_problem(key, rec)
        return self._bad(p, problem) if problem else rec

    def _bad(self, p: Path, why: str) -> None:
        # cannot happen with atomic writes, but a hand-edited file must not break a resume
        self._warned += 1
        if self._warned <= _MAX_WARNINGS:
            warnings.warn(f"{p}: {why}; the run is computed again"
                          + (f" (further bad records under {self.root} are not named)"
                             if self._warned == _MAX_WARNINGS else ""), StoreWarning, stacklevel=3)
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
        if _read_regular(p, probe=True) is None:
            return None
        try:
            values = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            return self._bad(p, f"not a {name} array")
        if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype.kind not in "iuf":
            return self._bad(p, f"{name}: expected a 1-D numeric array")
        return values

    def keys(self) -> Iterator[str]:
        for p in sorted(self.root.glob("??/[!.]*.json")):
            yield p.stem

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())


class StoreWarning(UserWarning):
    """A stored record or array was not valid and its run is computed again."""


_MAX_WARNINGS = 10
_STATUSES = ("ok", "failed", "timeout")


def _read_regular(p: Path, probe: bool = False) -> Optional[bytes]:
    """The bytes of a regular file (``b""`` with ``probe``), None when there is none; a
    named pipe or a device in the store is never opened (it could block)."""
    try:
        if not stat.S_ISREG(os.stat(p).st_mode):
            return None
        return b"" if probe else p.read_bytes()
    except OSError:
        return None


def record_problem(key: str, rec: Any) -> Optional[str]:
    """Why ``rec`` is not a run record stored under ``key``, or None.

    >>> record_problem("ab", {"run_id": "a", "spec_hash": "ab", "status": "ok", "metrics": {"total_trades": 3}})
    >>> record_problem("ab", [1, 2]), record_problem("ab", {"run_id": "a", "spec_hash": "ab", "status": "ok"})
    ('expected a JSON object, got list', 'metrics: expected an object of numbers')
    """
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    for k in ("run_id", "spec_hash", "status"):
        if not isinstance(rec.get(k), str):
            return f"{k}: expected a string"
    if rec["spec_hash"] != key:
        return "spec_hash: not the key it is stored under"
    if rec["status"] not in _STATUSES:
        return f"status: expected one of {', '.join(_STATUSES)}"
    metrics = rec.get("metrics")
    if metrics is not None or rec["status"] == "ok":
        if not isinstance(metrics, dict):
            return "metrics: expected an object of numbers"
        for name, v in metrics.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                return f"metrics.{name}: expected a number or null"
    for k in ("error_type", "error_message", "traceback"):
        if not isinstance(rec.get(k, ""), str):
            return f"{k}: expected a string"
    d = rec.get("duration_s", 0.0)
    if isinstance(d, bool) or not isinstance(d, (int, float)):
        return "duration_s: expected a number"
    return None


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
