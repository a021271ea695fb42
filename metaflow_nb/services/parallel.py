"""ParallelRunService: runs many BuildSpecs; a failed run is kept as a result, never dropped.

Backends (joblib): ``loky`` processes (default), ``threads`` (the kernels release no GIL
during Python glue, but the compiled loop does), ``sequential`` for debugging, and
``dask`` as futures of a ``distributed`` client (a given scheduler address, or a local
cluster). Results come back in input order whatever the backend. A run whose worker
process dies (a crash, an out-of-memory kill) is a failed ``WorkerDied`` row; the others
go on.

Processes are bounded (:func:`worker_budget`): never more workers than the CPUs this
process may use, nor than the memory available holds at ``WORKER_MB`` each (a warning
says when a request is lowered). Loky and local dask workers watch their parent and exit
within a second of its death (a SIGKILL-ed CLI leaves no workers behind).
"""
from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
import traceback
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd

from ..config.buildspecs import BuildSpecs
from ..config.translator import ConfigTranslator
from ..data.loader import received, shipped
from ..engine.metrics import daily_returns
from ..errors import ConfigError, RunTimeout, caused_by_interrupt
from .formatting import json_safe
from .operation import OperationService
from .store import ResultsStore

BACKENDS = ("loky", "threads", "sequential", "dask")

#: resident memory one loky worker needs for a sweep on bundled-size data (measured: a
#: worker that has imported the engine and run sp500_daily sweeps peaks at 250-280 MB,
#: 11,466-run general-path sweeps included)
WORKER_MB = 300


class WorkerWarning(UserWarning):
    """A requested worker count was lowered to what the machine can run, runs went on
    threads, or a timeout cannot be enforced on the backend."""


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one).

    >>> 1 <= usable_cpus() <= (os.cpu_count() or 1)
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def available_mb() -> Optional[float]:
    """MemAvailable from /proc/meminfo in MB (None where there is no /proc).

    >>> mb = available_mb()
    >>> mb is None or mb > 0
    True
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def worker_budget(requested: Optional[int], what: str = "workers") -> int:
    """The worker count to use: ``requested`` (default: every usable CPU) capped at the
    usable CPUs and at the available memory divided by ``WORKER_MB``, with a
    :class:`WorkerWarning` when a request is lowered.

    >>> worker_budget(1)
    1
    """
    cpus = usable_cpus()
    n = requested or cpus
    limit, why = cpus, f"{cpus} usable CPU{'s' if cpus != 1 else ''}"
    mb = available_mb()
    if mb is not None and int(mb // WORKER_MB) < limit:
        limit, why = max(1, int(mb // WORKER_MB)), f"{mb:.0f} MB available at {WORKER_MB} MB per worker"
    if n > limit:
        if requested:
            warnings.warn(f"{what}={requested} lowered to {limit} ({why})", WorkerWarning, stacklevel=3)
        n = limit
    return max(1, n)


_WATCHING: list[int] = []


def watch_parent(parent_pid: int, interval: float = 0.25) -> None:
    """In a worker process started by ``parent_pid``: exit as soon as that parent is gone
    (the worker is then re-parented, so ``os.getppid()`` changes). Used as the loky
    workers' initializer; a no-op in the parent itself, when already watching, or in a
    process that ``parent_pid`` did not start (a remote dask worker).

    >>> watch_parent(os.getpid())  # in the parent itself: nothing happens
    """
    if os.getpid() == parent_pid or _WATCHING:
        return
    if os.getppid() != parent_pid:
        # The parent may have died while this worker was still importing (a cold start
        # under load takes seconds), before this initializer ran: the worker was then
        # re-parented and must end now, not run tasks no one will read.
        if not process_alive(parent_pid):
            os._exit(1)
        return
    _WATCHING.append(parent_pid)

    def _watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)  # the parent died: no one reads our results any more

    threading.Thread(target=_watch, name="mf-parent-watch", daemon=True).start()


def ignore_interrupts() -> None:
    """In a local dask cluster's worker process: Ctrl-C is the sweep's, not the worker's.
    A terminal sends SIGINT to the whole foreground group, and each worker printed a
    KeyboardInterrupt traceback of ~30 lines (hunt108 F3) while the sweep already stops,
    cancels its runs and closes the cluster. Called on the workers' main thread
    (``Client.run``); a no-op elsewhere.

    >>> import threading
    >>> threading.Thread(target=ignore_interrupts).start()   # not a main thread: nothing happens
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:  # no /proc (macOS): the signal test above is all we have
        return True


@dataclass
class RunOutcome:
    """One run's outcome: metrics when it worked, the error when it did not."""

    index: int
    run_id: str
    spec_hash: str
    status: str                      # "ok" | "failed" | "timeout"
    metrics: Optional[dict[str, Any]] = None
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    duration_s: float = 0.0
    cached: bool = False
    result: Any = field(default=None, repr=False)   # the BacktestResult when asked to keep it

    @property
    def ok(self) -> bool:
        """True when the run finished (``status`` ok; not failed, not timed out)."""
        return self.status == "ok"

    def record(self) -> dict[str, Any]:
        """The outcome as the results store keeps it (plain JSON; no index, no result).

        >>> RunOutcome(0, "ab12", "ab12cd", "failed", error_type="ConfigError", error_message="fast >= slow").record()
        {'run_id': 'ab12', 'spec_hash': 'ab12cd', 'status': 'failed', 'metrics': None, 'error_type': 'ConfigError', \
'error_message': 'fast >= slow', 'traceback': '', 'duration_s': 0.0}
        """
        return {"run_id": self.run_id, "spec_hash": self.spec_hash, "status": self.status,
                "metrics": self.metrics, "error_type": self.error_type, "error_message": self.error_message,
                "traceback": self.traceback, "duration_s": self.duration_s}

    @classmethod
    def from_record(cls, index: int, rec: dict[str, Any]) -> "RunOutcome":
        """The outcome of a stored :meth:`record`, at grid place ``index``, marked ``cached``.

        >>> o = RunOutcome.from_record(5, RunOutcome(0, "ab12", "ab12cd", "ok", metrics={"total_trades": 3}).record())
        >>> o.index, o.ok, o.cached, o.metrics
        (5, True, True, {'total_trades': 3})
        """
        return cls(index=index, run_id=rec["run_id"], spec_hash=rec["spec_hash"], status=rec["status"],
                   metrics=rec.get("metrics"), error_type=rec.get("error_type", ""),
                   error_message=rec.get("error_message", ""), traceback=rec.get("traceback", ""),
                   duration_s=rec.get("duration_s", 0.0), cached=True)


@contextmanager
def _alarm(seconds: Optional[float]) -> Iterator[None]:
    """Interrupt Python code after ``seconds`` where signals can be used (a process's main
    thread); elsewhere the caller checks the duration afterwards."""
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise RunTimeout(f"run exceeded timeout_per_run={seconds:g}s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))  # type: ignore[arg-type]
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, old)


_SERVICE = None


def _service():
    # one OperationService per worker process/thread pool, so feature caches are shared
    global _SERVICE
    if _SERVICE is None:
        _SERVICE = OperationService()
    return _SERVICE


@functools.lru_cache(maxsize=None)
def _warm_engine() -> None:
    """Load the engine's compiled kernels in this process (once), with a 12-bar backtest.

    A fresh worker process spends about a second loading them from Numba's disk cache on
    its first run; ``timeout_per_run`` is meant for the run, not for that.
    """
    try:
        close = 100.0 + np.sin(np.arange(12.0))
        bars = pd.DataFrame({"open": close, "high": close + 1.0, "low": close - 1.0, "close": close,
                             "volume": 1.0}, index=pd.date_range("2024-01-01", periods=12, freq="D"))
        blueprint = {"name": "warm-up", "workforce": {
            "opportunity_workers": [{"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 2, "slow": 3}}],
            "planning_workers": {"exit_planning": [{"instance_id": "exit_1", "plugin": "reverse_on_opposite"}]}}}
        specs = ConfigTranslator().translate(blueprint, {"name": "warm-up", "cash": 1000.0}, data=bars)
        OperationService().run(specs, bars).trades
    except Exception:  # noqa: BLE001 - only a head start: the real run reports real errors
        pass


def execute_one(index: int, specs: BuildSpecs, data: Optional[pd.DataFrame], timeout: Optional[float],
                keep_result: bool, keep_returns: bool = False) -> RunOutcome:
    """Run one BuildSpecs and capture everything, failures included (runs in the worker).

    With ``keep_returns`` (and not ``keep_result``) the outcome carries the run's daily
    returns as ``(days as int64 ns, returns)`` for the results store. A timed run first
    loads the compiled kernels (once per process), so the clock measures the run itself.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> out = execute_one(0, specs, None, None, keep_result=False)
    >>> out.status, out.run_id == specs.run_id, out.metrics["total_trades"]
    ('ok', True, 260)
    """
    if timeout is not None:
        _warm_engine()
    data = received(data)
    t0 = time.perf_counter()
    try:
        with _alarm(timeout):
            res = _service().run(specs, data)
        dt = time.perf_counter() - t0
        if timeout is not None and dt > timeout:
            raise RunTimeout(f"run exceeded timeout_per_run={timeout:g}s (took {dt:.2f}s)")
        kept: Any = res if keep_result else None
        if keep_returns and not keep_result:
            r = daily_returns(res.equity, specs.cash, specs.data_calendar)
            kept = (r.index.asi8, r.to_numpy())
        return RunOutcome(index, specs.run_id, specs.hash, "ok", metrics=json_safe(res.metrics), duration_s=dt,
                          result=kept)
    except RunTimeout as exc:
        return RunOutcome(index, specs.run_id, specs.hash, "timeout", error_type="TimeoutError",
                          error_message=str(exc), duration_s=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - a failed run is a result, whatever failed
        if caused_by_interrupt(exc):  # Ctrl-C reported as another exception: still Ctrl-C
            raise KeyboardInterrupt from exc
        return RunOutcome(index, specs.run_id, specs.hash, "failed", error_type=type(exc).__name__,
                          error_message=str(exc), traceback=traceback.format_exc(),
                          duration_s=time.perf_counter() - t0)


def process_local_plugins(specs_list: Iterable[BuildSpecs]) -> list[str]:
    """The plugins of these specs whose class lives in ``__main__`` (a notebook cell, a
    script): known in this process only, so a worker process would fail every run with
    "unknown plugin" (hunt51 F4).

    >>> import metaflow_nb as mf
    >>> process_local_plugins([mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")])
    []
    """
    import re

    from ..workers.registry import get_plugin

    found: dict[str, None] = {}
    seen: set[str] = set()
    for specs in specs_list:
        # the names from the canonical JSON (a sweep's thousands of specs are not parsed)
        for name in re.findall(r'"plugin":\s*"([^"]+)"', specs.blueprint_json):
            if name in seen:
                continue
            seen.add(name)
            try:
                cls = get_plugin(name, specs.plugins)
            except (KeyError, ValueError, ImportError):
                continue   # the run says it
            if cls.__module__ in ("__main__", "__mp_main__"):
                found[name] = None
    return list(found)


#: seconds a dask sweep waits with no worker alive before its runs are failed rows
NO_WORKER_S = 60

#: the error type of a run whose worker process died with it
WORKER_DIED = "WorkerDied"


#: seconds a dask sweep waits for a finished run's result to come back from its worker
#: before it counts the run as pending again (its worker may have died holding it)
RESULT_WAIT_S = 5.0


def _died(i: int, specs: BuildSpecs, exc: BaseException) -> RunOutcome:
    from ..workers.calls import exception_said

    return RunOutcome(i, specs.run_id, specs.hash, "failed", error_type=WORKER_DIED,
                      error_message=f"the worker process running it died and left no result ({exception_said(exc)}): "
                                    f"a crash or os._exit in native or plugin code, or the memory running out; the "
                                    f"other runs went on")


@contextmanager
def interrupt_between_runs() -> Iterator[Any]:
    """Hold Ctrl-C while a run of an in-process sweep computes; yields ``check()``, which
    raises the KeyboardInterrupt held, to be called between runs. The run that was going
    on finishes and is kept; a second Ctrl-C interrupts at once. Interrupted inside a
    compiled kernel, a run could crash the process or come back as an ordinary error the
    sweep recorded as a failed run and went on. Outside the main thread, or under a
    SIGINT handler of someone else's, nothing changes (``check`` does nothing).

    >>> with interrupt_between_runs() as check:
    ...     check()   # no Ctrl-C: nothing raised
    """
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield lambda: None
        return
    held: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if held:
            raise KeyboardInterrupt  # the second Ctrl-C: now
        held.append(signum)

    def check() -> None:
        if held:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, hold)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


#: seconds a dask scheduler has to answer (--scheduler)
SCHEDULER_TIMEOUT_S = 30.0
#: how messages name a scheduler address by default: the CLI's flag (the Python verbs say scheduler=)
SCHEDULER_FLAG = "--scheduler "


def scheduler_problem(address: Any) -> Optional[str]:
    """What is wrong with the form of a dask scheduler address, or None (whether a
    scheduler answers there is :func:`connect_scheduler`'s to find out).

    >>> scheduler_problem("tcp://127.0.0.1:8786") is None, scheduler_problem(8786)
    (True, 'expected a dask scheduler address, tcp://HOST:PORT (got int)')
    """
    from distributed.comm import get_address_host_port, parse_address

    if not isinstance(address, str):
        return f"expected a dask scheduler address, tcp://HOST:PORT (got {type(address).__name__})"
    if not address:
        return "empty; expected a dask scheduler address, tcp://HOST:PORT (or none: a local cluster)"
    if address != address.strip():
        return "blanks around the address; expected a dask scheduler address, tcp://HOST:PORT"
    try:
        scheme, _ = parse_address(address)
        if scheme != "inproc":
            get_address_host_port(address)
    except ValueError as exc:
        return f"{exc}; expected a dask scheduler address, tcp://HOST:PORT"
    return None


def connect_scheduler(address: str, timeout: Optional[float] = None, named_by: str = SCHEDULER_FLAG) -> Any:
    """A dask ``Client`` of the scheduler at ``address``, or a ConfigError naming it as
    ``named_by`` does (the CLI's ``--scheduler``, the Python verbs' ``scheduler=``) when the
    address is malformed, nothing answers within ``timeout`` seconds
    (:data:`SCHEDULER_TIMEOUT_S`) or what answers is no dask scheduler. dask's
    own connect timeout does not cover a peer that accepts the connection and never
    speaks, and an HTTP reply read as a frame length was a MemoryError of 3 EiB.

    >>> connect_scheduler("bogus")
    Traceback (most recent call last):
    metaflow_nb.errors.ConfigError: --scheduler 'bogus': missing port number in address 'bogus'; expected a dask scheduler address, tcp://HOST:PORT
    """
    from distributed import Client

    where = f"{named_by}{address!r}"
    wrong = scheduler_problem(address)
    if wrong:
        raise ConfigError(f"{where}: {wrong}")
    limit = SCHEDULER_TIMEOUT_S if timeout is None else timeout
    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            box["client"] = Client(address, timeout=limit)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the caller's thread
            box["error"] = exc

    # a daemon thread: one stuck in a silent peer's handshake does not keep the process alive
    t = threading.Thread(target=connect, name="metaflow-nb dask connect", daemon=True)
    t.start()
    t.join(limit + 5.0)
    if "client" in box:
        return box["client"]
    if t.is_alive():
        raise ConfigError(f"{where}: no dask scheduler answered within {limit:g} s (something accepted the "
                          "connection and said nothing); expected a running dask scheduler there")
    exc = box.get("error")
    if isinstance(exc, MemoryError):
        # its reply read as a dask frame's length: 3 EiB (hunt113 F4 read as a memory problem)
        raise ConfigError(f"{where}: what answers there speaks no dask protocol (its reply read as a frame of "
                          f"impossible length); expected a running dask scheduler there") from None
    raise ConfigError(f"{where}: cannot connect to a dask scheduler there ({type(exc).__name__}: "
                      f"{' '.join(str(exc).split())[:200]})") from None


class ParallelRunService:
    """Run a list of BuildSpecs on one of the joblib backends.

    >>> import metaflow_nb as mf
    >>> base = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> specs = [base.with_params("sma_1", {"fast": f}) for f in (5, 10, 15)]
    >>> outs = ParallelRunService(backend="sequential", progress=False).run(specs)
    >>> [o.status for o in outs]
    ['ok', 'ok', 'ok']
    """

    def __init__(self, backend: str = "loky", max_workers: Optional[int] = None,
                 timeout_per_run: Optional[float] = None, scheduler: Optional[str] = None,
                 progress: bool = True, store: Optional[ResultsStore] = None, resume: bool = False,
                 scheduler_named_by: str = SCHEDULER_FLAG):
        if backend not in BACKENDS:
            raise ConfigError(f"parallel.backend: unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        self.backend = backend
        # a remote dask cluster sizes itself, sequential runs one at a time (no lowering to warn
        # of); everything else runs on this machine
        self.max_workers = (max_workers or 1) if (backend == "dask" and scheduler) or backend == "sequential" else \
            worker_budget(max_workers, "max_workers")
        self.timeout = timeout_per_run
        self.scheduler = scheduler
        self.scheduler_named_by = scheduler_named_by   # how messages name it: --scheduler or scheduler=
        self.progress = progress
        self.store = store
        self.resume = resume
        #: store each run's daily returns beside its record (a sweep turns it off above
        #: RETURNS_MAX_RUNS runs, where no statistic reads them)
        self.keep_returns = True
        self._held: Optional[ExitStack] = None   # kept_open's: it closes the cluster entered on it
        self._held_client: Any = None

    def run(self, specs_list: Sequence[BuildSpecs], data: Optional[pd.DataFrame] = None,
            keep_results: bool = False, desc: str = "runs") -> list[RunOutcome]:
        """Run all specs; outcomes come back in input order, failures included.

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> outs = ParallelRunService(backend="sequential", progress=False).run([specs, specs.with_params("sma_1", {"fast": 5})])
        >>> [(o.index, o.status, o.metrics["total_trades"]) for o in outs]
        [(0, 'ok', 260), (1, 'ok', 310)]
        """
        outcomes: list[Optional[RunOutcome]] = [None] * len(specs_list)
        todo: list[int] = []
        for i, specs in enumerate(specs_list):
            rec = self.store.get(specs.hash) if (self.store is not None and self.resume and not keep_results) else None
            if rec is not None and rec.get("status") == "ok":
                outcomes[i] = RunOutcome.from_record(i, rec)
            else:
                todo.append(i)
        bar = self._progress_bar(len(specs_list), len(specs_list) - len(todo), desc)
        backend = self.backend
        if backend in ("loky", "dask") and todo:
            local = process_local_plugins(specs_list[i] for i in todo)
            if local:
                lost = (f"; timeout_per_run ({self.timeout:g} s) cannot stop a run there" if self.timeout
                        else "")
                warnings.warn(f"{', '.join(local)}: a plugin class defined in __main__ (a notebook or a script), "
                              f"which {backend} worker processes cannot import: these runs go on threads in this "
                              f"process{lost} (move the class into a module and declare it to run them in "
                              f"processes)", WorkerWarning, stacklevel=2)
                backend = "threads"
        if self.timeout and backend in ("threads", "dask") and todo:
            # a signal interrupts only a process's main thread: these backends run in threads
            warnings.warn(f"timeout_per_run ({self.timeout:g} s) cannot stop a run on the {backend} backend: a run "
                          f"longer than it is marked a timeout when it ends, and a run that hangs holds its worker "
                          f"(backend loky or sequential stops it)", WorkerWarning, stacklevel=2)
        try:
            for out in self._dispatch([(i, specs_list[i]) for i in todo], data, keep_results, backend):
                outcomes[out.index] = out
                if self.store is not None:
                    store_outcome(self.store, out)
                if bar is not None:
                    bar.update(1)
                    if not out.ok:
                        bar.set_postfix_str(f"{sum(1 for o in outcomes if o and not o.ok)} failed")
        finally:
            if bar is not None:
                bar.close()
            if self.store is not None:
                self.store.flush()  # finished runs reach the disk, Ctrl-C included
        return [o for o in outcomes if o is not None]

    # ------------------------------------------------------------------ backends
    def _dispatch(self, items: list[tuple[int, BuildSpecs]], data: Optional[pd.DataFrame],
                  keep: bool, backend: str) -> Iterator[RunOutcome]:
        if not items:
            return
        if backend == "sequential" or (self.max_workers == 1 and backend != "dask") or len(items) == 1:
            with interrupt_between_runs() as check:
                for i, s in items:
                    out = execute_one(i, s, data, self.timeout, keep, self.store is not None and self.keep_returns)
                    yield out     # the run that was going on when Ctrl-C came is kept ...
                    check()       # ... and the sweep stops before the next
            return
        from joblib import Parallel, delayed

        returns = self.store is not None and self.keep_returns
        sent = shipped(data)   # vouched for in the workers too: not fingerprinted again per run
        if backend == "dask":
            with self._dask_client() as client:
                yield from self._dask(client, items, sent, keep, returns)
            return
        if backend == "threads":
            tasks = (delayed(execute_one)(i, s, sent, self.timeout, keep, returns) for i, s in items)
            yield from Parallel(n_jobs=min(self.max_workers, len(items)), backend="threading",
                                return_as="generator", batch_size="auto")(tasks)
            return
        yield from self._loky(items, sent, keep, returns)

    def _loky(self, items: list[tuple[int, BuildSpecs]], sent: Any, keep: bool, returns: bool) -> Iterator[RunOutcome]:
        """The runs in loky worker processes, each outcome as soon as it is back (so the
        store holds every finished run, whatever happens next). A worker process that dies
        (a crash, ``os._exit`` in native code, the memory running out) breaks the pool with
        the runs it held: those left are then tried one at a time in a process of their own
        until the one that ends it is found (a failed ``WorkerDied`` row); the rest go on in
        parallel (hunt51 F1: joblib's TerminatedWorkerError ended the sweep, runs lost)."""
        from joblib import Parallel, delayed, parallel_config
        from joblib.externals.loky.process_executor import BrokenProcessPool

        left = list(items)
        while left:
            if len(left) == 1:
                # joblib runs a single task in this process: one that kills its process would
                # end the sweep (hunt55 F1: the run left after a death did)
                yield self._alone(*left[0], sent, keep, returns)
                return
            pending = dict(left)
            tasks = (delayed(execute_one)(i, s, sent, self.timeout, keep, returns) for i, s in left)
            try:
                # each loky worker watches this process and exits when it dies (SIGKILL included)
                with parallel_config(backend="loky", initializer=watch_parent, initargs=(os.getpid(),)):
                    for out in Parallel(n_jobs=min(self.max_workers, len(left)), return_as="generator_unordered",
                                        batch_size="auto")(tasks):
                        pending.pop(out.index, None)
                        yield out
                return
            except BrokenProcessPool:
                left = list(pending.items())
            while left:
                i, s = left.pop(0)
                out = self._alone(i, s, sent, keep, returns)
                yield out
                if out.error_type == WORKER_DIED:
                    break

    def _alone(self, i: int, s: BuildSpecs, sent: Any, keep: bool, returns: bool) -> RunOutcome:
        """One run in a loky process of its own: its outcome, or ``WorkerDied`` if the
        process died with it."""
        from joblib.executor import get_memmapping_executor
        from joblib.externals.loky.process_executor import BrokenProcessPool

        # joblib's own kind of pool: loky keeps one shared pool per process, and joblib's next
        # sweep may take back the one made here (CI of ed100aa: a plain loky pool there failed
        # joblib's temp-folder clean-up, AttributeError '_temp_folder_manager')
        ex = get_memmapping_executor(1, initializer=watch_parent, initargs=(os.getpid(),))
        try:
            return ex.submit(execute_one, i, s, sent, self.timeout, keep, returns).result()
        except BrokenProcessPool as exc:
            return _died(i, s, exc)

    def _dask(self, client: Any, items: list[tuple[int, BuildSpecs]], sent: Any, keep: bool,
              returns: bool) -> Iterator[RunOutcome]:
        """The runs as futures of ``client``, each outcome as soon as it is done. A task whose
        worker died on each try (``KilledWorker``) is a failed ``WorkerDied`` row (hunt51 F2:
        through joblib's dask backend the error never came back and the sweep hung)."""
        from distributed import wait
        from distributed.scheduler import KilledWorker

        data = client.scatter(sent, broadcast=True) if sent is not None else None
        futures = {client.submit(execute_one, i, s, data, self.timeout, keep, returns, pure=False): (i, s)
                   for i, s in items}
        pending = set(futures)
        alone_since: Optional[float] = None   # since when no worker is alive
        try:
            while pending:
                try:
                    done, pending = wait(pending, timeout=2, return_when="FIRST_COMPLETED")
                except TimeoutError:   # nothing finished in those 2 s
                    done = set()
                delivered = False
                for fut in done:
                    i, s = futures[fut]
                    if fut.status == "error":
                        exc = fut.exception()
                        if not isinstance(exc, KilledWorker):
                            raise exc
                        yield _died(i, s, exc)
                    else:
                        try:
                            out = fut.result(timeout=RESULT_WAIT_S)
                        except TimeoutError:
                            # done, but the worker holding the result died with it (hunt108 F1:
                            # waited for ever, no worker left to compute it again): pending again,
                            # under the no-worker check below
                            pending.add(fut)
                            continue
                        yield out
                    delivered = True
                if delivered or client.scheduler_info().get("workers"):
                    alone_since = None
                    continue
                # every worker died and none came back (a cluster whose nannies gave up): the
                # runs would wait for ever (hunt55 F2); each is the failed row of a death
                alone_since = alone_since or time.monotonic()
                if time.monotonic() - alone_since > NO_WORKER_S:
                    gone = RuntimeError(f"no dask worker alive for {NO_WORKER_S} s")
                    for fut in sorted(pending, key=lambda f: futures[f][0]):
                        yield _died(*futures[fut], gone)
                    return
        finally:
            client.cancel(list(futures))   # Ctrl-C or an error: nothing left running

    @contextmanager
    def kept_open(self) -> Iterator["ParallelRunService"]:
        """Inside the block, every ``run`` of a dask backend with no scheduler given uses one
        local cluster, started at its first run and closed at the end of the block (a
        walk-forward's windows: hunt108 F5, each window started a cluster of its own, seconds
        of worker start-up and kernel loading each). Other backends are unchanged.

        >>> svc = ParallelRunService(backend="sequential", progress=False)
        >>> with svc.kept_open() as same:
        ...     same is svc
        True
        """
        if self.backend != "dask" or self.scheduler or self._held is not None:
            yield self
            return
        with ExitStack() as self._held:
            try:
                yield self
            finally:
                self._held = self._held_client = None

    @contextmanager
    def _dask_client(self) -> Iterator[Any]:
        if self._held is not None:
            if self._held_client is None:
                self._held_client = self._held.enter_context(self._new_dask_client())
            yield self._held_client
            return
        with self._new_dask_client() as client:
            yield client

    @contextmanager
    def _new_dask_client(self) -> Iterator[Any]:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("backend 'dask' needs the dask extra: pip install 'metaflow-nb[dask]'") from exc
        if self.scheduler:
            client = connect_scheduler(self.scheduler, named_by=self.scheduler_named_by)
            try:
                yield client
            finally:
                client.close()
            return
        # the cluster's own logs (a restarted worker's pages of warnings) stay quiet: what
        # happened to a run is its outcome. One task at a time on a worker: a task waiting on
        # a worker that dies counts as suspect as the one that killed it, and after the retries
        # a healthy run came back as KilledWorker too
        import dask

        with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
            # the scheduler's small HTTP server (health checks) on a free port: a second sweep
            # at once warned that 8787 was taken
            cluster = LocalCluster(n_workers=self.max_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, host="127.0.0.1", silence_logs=logging.CRITICAL,
                                   scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
        client = Client(cluster)
        client.run(watch_parent, os.getpid())  # a local cluster's workers end with this process
        client.run(ignore_interrupts)
        try:
            yield client
        finally:
            from distributed.utils import silence_logging_cmgr

            # closing while workers still report (Ctrl-C: the runs were cancelled) has the
            # scheduler log CRITICAL "Closed comm ... while trying to write" with tracebacks
            # (hunt108 F3): the teardown of a cluster this sweep made says nothing
            with silence_logging_cmgr(logging.CRITICAL + 1):
                client.close()
                cluster.close()

    def _progress_bar(self, total: int, done: int, desc: str):
        if not self.progress or total - done < 2:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=total, initial=done, desc=desc, unit="run", leave=False)


def store_outcome(store: ResultsStore, out: RunOutcome) -> None:
    """Write an outcome's record, and its daily returns when it carries them (they feed the
    overfitting statistics, so a resumed sweep never has to run again to print them).

    >>> import metaflow_nb as mf, tempfile
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> out = execute_one(0, specs, None, None, keep_result=False, keep_returns=True)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     store = ResultsStore(tmp); store_outcome(store, out)
    ...     store.get(specs.hash)["status"], store.get_array(specs.hash, "daily_returns").shape, out.result
    ...     store.close()
    ('ok', (5031,), None)
    """
    if not out.spec_hash:
        return
    if isinstance(out.result, tuple):
        days, returns = out.result
        store.put_array(out.spec_hash, "days", days)
        store.put_array(out.spec_hash, "daily_returns", returns)
        out.result = None
    store.put(out.spec_hash, out.record())


def runner_for(parallel: Any, options: dict[str, Any], out: Optional[Any] = None, resume: bool = False,
               default: Optional[ParallelRunService] = None, where: str = "") -> ParallelRunService:
    """The runner of a meta config: its ``parallel:`` block, overridden by CLI/API options,
    with a results store under ``out``. ``default`` (a service's injected runner) serves
    when nothing asks for anything else.

    >>> from metaflow_nb.config.meta import load_meta_config
    >>> model = load_meta_config("config/optimizations/sma_grid.yaml", "optimization_config")[1]
    >>> runner_for(model.parallel, {}).backend, runner_for(model.parallel, {"backend": "sequential"}).backend
    ('loky', 'sequential')
    """
    if default is not None and not options and out is None:
        return default   # a report's runner: the config's parallel: block is not read
    scheduler = getattr(parallel, "scheduler", None)
    if scheduler:
        # a dask client unpickles what the cluster's workers send back: a mailed config
        # naming a cluster would run that cluster's code in this process (hunt76 F1)
        raise ConfigError(f"{where}parallel.scheduler: a dask scheduler is named by the user, with --scheduler "
                          f"(scheduler= in Python), not in a config file: the cluster's workers send back objects "
                          f"this process unpickles (got {scheduler!r})")
    from pathlib import Path
    return ParallelRunService(
        backend=options.get("backend") or parallel.backend,
        max_workers=options.get("max_workers") or parallel.max_workers,
        timeout_per_run=options.get("timeout_per_run") or parallel.timeout_per_run,
        scheduler=options.get("scheduler"),   # never from a config file (above)
        scheduler_named_by=options.get("scheduler_named_by", SCHEDULER_FLAG),
        progress=options.get("progress", True),
        store=ResultsStore(Path(out) / "store") if out is not None else None, resume=resume)
