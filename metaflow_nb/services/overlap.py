"""Compiled calls beside Python planning: a sweep's next wave is planned while the
current wave's kernel runs.

A sweep alternates Python work (features, plans, packing: one core) with compiled
``prange`` calls (every core). :class:`Overlap` runs each compiled call in one worker
thread and hands its result back on the caller's thread, so the caller plans the next
wave meanwhile. The kernels it runs are compiled ``nogil``; at most one call is in flight,
so results are stored in the order the calls were made.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

_POOL: Optional[ThreadPoolExecutor] = None
_POOL_LOCK = threading.Lock()


def _worker() -> ThreadPoolExecutor:
    """The process's one worker thread for compiled calls. It lives as long as the
    process: the first parallel kernel call from a new thread starts a new team of
    threads (OpenMP), 1.7-3.9 ms against 0.1 ms for the next call (2 cores), every sweep."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(1, thread_name_prefix="metaflow-kernel")
        return _POOL


def can_overlap() -> bool:
    """True when Numba's threading layer is known to be thread-safe (OpenMP or TBB): a
    compiled parallel call may then run in another thread while this one works. Unknown
    (no parallel call has run in this process yet) or the workqueue layer: False.

    >>> isinstance(can_overlap(), bool)
    True
    """
    import numba

    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:
        return False


class Overlap:
    """One compiled call at a time in a worker thread; each result goes to its ``finish``
    on the caller's thread before the next call starts.

    Where calls cannot overlap (:func:`can_overlap` is False, e.g. the first parallel call
    of a process), :meth:`run` calls in place. Leaving the ``with`` block waits for the
    call in flight and finishes it, an exception included (what was computed is kept).

    >>> out = []
    >>> with Overlap() as ov:
    ...     ov.run(sum, ([1, 2],), out.append)
    ...     ov.run(max, ([1, 5],), out.append)
    >>> out
    [3, 5]
    """

    def __init__(self) -> None:
        self._pending: Optional[tuple[Future, Callable[[Any], None]]] = None

    def run(self, fn: Callable[..., Any], args: tuple, finish: Callable[[Any], None]) -> None:
        """Finish the call in flight, then start ``fn(*args)`` (in the worker thread when
        calls can overlap, else here) and hand its result to ``finish``.

        >>> out = []
        >>> ov = Overlap(); ov.run(sorted, ([3, 1, 2],), out.append); ov.wait()
        >>> out
        [[1, 2, 3]]
        """
        self.wait()
        if can_overlap():
            self._pending = (_worker().submit(fn, *args), finish)
        else:
            finish(fn(*args))

    def wait(self) -> None:
        """Wait for the call in flight, if any, and finish it.

        >>> out = []
        >>> ov = Overlap(); ov.run(len, ("abc",), out.append)
        >>> ov.wait(); ov.wait(); out   # finished once; a second wait has nothing to do
        [3]
        """
        if self._pending is not None:
            future, finish = self._pending
            self._pending = None
            finish(future.result())

    def __enter__(self) -> "Overlap":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.wait()
        elif self._pending is not None:
            # the caller is unwinding: keep the finished call's rows if it finished well,
            # and never let its outcome hide the exception being raised
            try:
                self.wait()
            except Exception:  # noqa: BLE001
                pass
