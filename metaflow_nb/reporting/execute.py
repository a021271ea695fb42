"""papermill execution: every notebook in a SEPARATE PROCESS, ``workers`` at a time.

papermill (and the kernel client under it) is not thread-safe, so each notebook gets a
fresh ``python -m metaflow_nb.reporting.execute JOB RESULT`` process with its own kernel
(``python3`` from this environment's ipykernel). Threads here only wait on those
processes. Each process executes the template with absolute paths, the working directory
the report was asked from, a per-notebook timeout, and exports the result to offline HTML.
A failed cell does not lose the notebook: papermill saves after every cell, so the
partially executed notebook (with the error) is kept and exported too.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence
from .export import notebook_to_html

KERNEL = "python3"
#: seconds a notebook process gets on top of the cell timeout (kernel start, export)
GRACE_S = 90.0


@dataclass
class NotebookJob:
    """One template notebook to execute into ``folder/<name>.ipynb`` and ``.html``."""

    name: str
    template: str
    parameters: dict[str, Any]
    folder: str
    cwd: str
    title: str = ""
    timeout: float = 600.0
    kernel: str = KERNEL

    @property
    def notebook(self) -> Path:
        """The executed notebook this job writes: ``folder/<name>.ipynb``.

        >>> NotebookJob("atr", "variant_report.ipynb", {}, "r", ".").notebook.as_posix()
        'r/atr.ipynb'
        """
        return Path(self.folder) / f"{self.name}.ipynb"

    @property
    def html(self) -> Path:
        """The offline HTML page this job writes: ``folder/<name>.html``."""
        return Path(self.folder) / f"{self.name}.html"


@dataclass
class NotebookOutcome:
    """How one job went: ``ok`` or the one-line ``error``, the notebook and HTML files
    written (None when not), and ``timings`` in seconds."""

    name: str
    ok: bool
    error: str = ""
    notebook: Optional[str] = None
    html: Optional[str] = None
    timings: dict[str, float] = field(default_factory=dict)


def default_workers(n_jobs: int) -> int:
    """Notebook processes to run at once: one per job, at most one per CPU, at least one.

    >>> default_workers(0), default_workers(1)
    (1, 1)
    """
    return max(1, min(n_jobs, os.cpu_count() or 1))


def child_env() -> dict[str, str]:
    """The environment of a notebook process (inherited by its kernel): this package
    first on ``PYTHONPATH``, a fixed hash seed, no progress bars, the inline backend.

    >>> env = child_env()
    >>> env["PYTHONHASHSEED"], env["PYTHONSAFEPATH"], "MPLBACKEND" in env
    ('0', '1', False)
    """
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p)
    env["JUPYTER_PREFER_ENV_PATH"] = "1"     # this environment's python3 kernel before a user-level one
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env["PYTHONHASHSEED"] = "0"
    # python -m and IPython kernels put the working folder first on sys.path: a numba.py
    # there would run. The command itself does not search it; an explicit PYTHONPATH counts
    env["PYTHONSAFEPATH"] = "1"
    env["TQDM_DISABLE"] = "1"
    env.pop("MPLBACKEND", None)              # the kernel's inline backend draws the PNGs
    from ..workers.registry import PLUGINS_ENV, session_plugins
    declared = session_plugins()             # --plugins / use_plugins: the notebooks re-resolve the configs
    if declared:
        env[PLUGINS_ENV] = ",".join(declared)
    return env


def run_notebooks(jobs: Sequence[NotebookJob], workers: Optional[int] = None,
                  on_done: Optional[Callable[[NotebookOutcome], None]] = None) -> list[NotebookOutcome]:
    """Execute ``jobs`` (at most ``workers`` processes at once); outcomes in job order.
    ``on_done`` is called with each outcome as its notebook finishes.

    >>> run_notebooks([])  # no jobs: no process is started
    []
    """
    if not jobs:
        return []
    n = workers or default_workers(len(jobs))
    with tempfile.TemporaryDirectory(prefix="mf-report-") as tmp:
        def one(job: NotebookJob) -> NotebookOutcome:
            out = run_one(job, Path(tmp))
            if on_done is not None:
                on_done(out)
            return out

        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="mf-notebook") as pool:
            return list(pool.map(one, jobs))


def run_one(job: NotebookJob, tmp: Path) -> NotebookOutcome:
    """Execute one job in its own process (killed with its kernel on timeout), its job and
    result files and log in ``tmp``. A process that died or timed out gives a failed
    outcome with the reason, and a placeholder notebook when it wrote none."""
    t0 = time.perf_counter()
    job_file, result_file, log_file = (tmp / f"{job.name}.{ext}" for ext in ("job.json", "result.json", "log"))
    job_file.write_text(json.dumps(asdict(job)), encoding="utf-8")
    for stale in (job.notebook, job.html):
        stale.unlink(missing_ok=True)
    with open(log_file, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "metaflow_nb.reporting.execute", str(job_file),
                                 str(result_file)], cwd=job.cwd, env=child_env(), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=job.timeout + GRACE_S)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            timed_out = True
    wall = time.perf_counter() - t0
    if result_file.exists():
        res = NotebookOutcome(**json.loads(result_file.read_text(encoding="utf-8")))
    else:
        tail = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()][-1:] or [""]
        why = (f"timed out after {job.timeout + GRACE_S:g} s" if timed_out
               else f"notebook process exited with code {proc.returncode}: {tail[0][:300]}")
        res = NotebookOutcome(job.name, False, why)
        if not job.notebook.exists():
            _write_placeholder(job, why)
        res.notebook = str(job.notebook)
        if res.html is None:
            try:
                res.html = str(notebook_to_html(job.notebook, job.html, job.title or job.name))
            except Exception:  # noqa: BLE001 - the index still links the notebook
                pass
    res.timings["wall_s"] = wall
    return res


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # the process and the kernel it started
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _write_placeholder(job: NotebookJob, why: str) -> None:
    import nbformat
    from nbformat.v4 import new_markdown_cell, new_notebook
    nb = new_notebook(cells=[new_markdown_cell(f"**This notebook did not run:** {why}")])
    nbformat.write(nb, str(job.notebook))


# ---------------------------------------------------------------- inside the notebook process

def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


#: kernel start-up failures worth one more try (a busy machine, a crashed launch)
_STARTUP_ERRORS = ("before replying to kernel_info", "didn't respond", "Kernel died before", "kernel_info_reply")


def _kernel_manager(kernel: str, runtime: Path) -> Any:
    """A kernel over IPC sockets in a private folder: no TCP ports to race for when many
    kernels start at once, nothing listening on the network."""
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    key = uuid.uuid4().hex[:12]
    return AsyncKernelManager(kernel_name=kernel, transport="ipc", ip=str(runtime / f"k{key}"),
                              connection_file=str(runtime / f"k{key}.json"))


def execute_job(job: NotebookJob, attempts: int = 2) -> NotebookOutcome:
    """Run papermill on ``job`` in this process, then export the notebook (also when it failed).

    A kernel that fails to start is tried again (``attempts`` in all); an error in a cell,
    a timeout or a dead kernel is returned in the outcome, never raised. This is what the
    notebook process of :func:`run_one` runs."""
    import shutil

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    t0 = time.perf_counter()
    ok, error = True, ""
    runtime = Path(tempfile.mkdtemp(prefix="mfk-"))
    try:
        for attempt in range(attempts):
            ok, error = True, ""
            try:
                pm.execute_notebook(job.template, str(job.notebook), parameters=job.parameters,
                                    kernel_name=job.kernel, cwd=job.cwd, execution_timeout=job.timeout,
                                    progress_bar=False, log_output=False, start_timeout=120,
                                    km=_kernel_manager(job.kernel, runtime))
            except PapermillExecutionError as exc:
                ok, error = False, _one_line(f"{exc.ename}: {exc.evalue} (cell {exc.exec_count})")
            except Exception as exc:  # noqa: BLE001 - kernel death, cell timeout: recorded, not raised
                ok, error = False, _one_line(f"{type(exc).__name__}: {exc}")
                if any(s in str(exc) for s in _STARTUP_ERRORS) and attempt + 1 < attempts:
                    print(f"{job.name}: kernel start failed ({error}); retrying", file=sys.stderr, flush=True)
                    continue
            break
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    t1 = time.perf_counter()
    out = NotebookOutcome(job.name, ok, error)
    if job.notebook.exists():
        out.notebook = str(job.notebook)
        try:
            out.html = str(notebook_to_html(job.notebook, job.html, job.title or job.name))
        except Exception as exc:  # noqa: BLE001
            if out.ok:
                out.ok, out.error = False, _one_line(f"HTML export failed: {type(exc).__name__}: {exc}")
    out.timings = {"execute_s": t1 - t0, "export_s": time.perf_counter() - t1}
    return out


def end_with_parent(parent: int, interval: float = 0.5) -> None:
    """In the notebook process: once ``parent`` (the report's process, which started it in
    a session of its own) is gone, end this process and its process group: a report killed
    with SIGKILL could not stop them, and they ran their notebook to the end for no one
    (hunt87 F6). Its kernel watches this process and ends with it."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        try:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        finally:
            os._exit(1)

    threading.Thread(target=watch, name="mf-parent-watch", daemon=True).start()


def main(argv: Sequence[str]) -> int:
    """The notebook process: ``argv`` is ``[JOB_JSON, RESULT_JSON]``; executes the job read
    from the first file, writes its outcome to the second; returns 0, or 1 when it failed."""
    job_file, result_file = argv
    job = NotebookJob(**json.loads(Path(job_file).read_text(encoding="utf-8")))
    out = execute_job(job)
    Path(result_file).write_text(json.dumps(asdict(out)), encoding="utf-8")
    return 0 if out.ok else 1


if __name__ == "__main__":
    end_with_parent(os.getppid())
    sys.exit(main(sys.argv[1:]))
