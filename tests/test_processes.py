"""Processes (issue #19, part 4): worker counts capped at the usable CPUs and the memory
available, with a warning; loky workers end when their parent dies (SIGKILL included)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fault_plugins as fp
from metaflow_nb.services import parallel as par
from metaflow_nb.services.parallel import ParallelRunService, WorkerWarning, worker_budget


def test_worker_count_is_capped_at_the_usable_cpus(monkeypatch):
    monkeypatch.setattr(par, "usable_cpus", lambda: 2)
    monkeypatch.setattr(par, "available_mb", lambda: 64_000.0)
    with pytest.warns(WorkerWarning, match=r"max_workers=12 lowered to 2 \(2 usable CPUs\)"):
        assert ParallelRunService(max_workers=12, progress=False).max_workers == 2
    assert worker_budget(None) == 2 and worker_budget(1) == 1  # no request: no warning


def test_worker_count_is_capped_by_the_memory_available(monkeypatch):
    monkeypatch.setattr(par, "usable_cpus", lambda: 8)
    monkeypatch.setattr(par, "available_mb", lambda: 2.5 * par.WORKER_MB)
    with pytest.warns(WorkerWarning, match="lowered to 2 .* MB available"):
        assert worker_budget(8) == 2
    monkeypatch.setattr(par, "available_mb", lambda: 10.0)
    assert worker_budget(None) == 1  # never fewer than one


def test_a_remote_dask_scheduler_is_not_capped():
    svc = ParallelRunService(backend="dask", scheduler="tcp://127.0.0.1:1", max_workers=64, progress=False)
    assert svc.max_workers == 64


def test_usable_cpus_follows_the_affinity_mask():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity mask on this OS")
    assert par.usable_cpus() == len(os.sched_getaffinity(0))


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_loky_workers_end_when_the_cli_is_killed(tmp_path):
    """SIGKILL the CLI during a loky sweep: its workers are gone within a few seconds."""
    bp = fp.write_blueprint(tmp_path, plugin="fault_plugins:SlowCross",
                            params={"fast": 10, "slow": 40, "delay": 0.5}, plugins=["fault_plugins"])
    cfg = fp.write_optimization(tmp_path, fp.sma_space(list(range(3, 23)), [40]), bp,
                                parallel={"timeout_per_run": 60})
    exe = str(Path(sys.executable).parent / "metaflow-nb")
    proc = subprocess.Popen([exe, "optimize", str(cfg), "--backend", "loky", "--workers", "2",
                             "--engine", "general", "--json"], cwd=fp.ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=fp.child_env())
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while True:  # loky's workers (python processes started by the CLI), not its resource tracker
            workers = [c for c in _children(proc.pid)
                       if "loky" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")
                       and "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")]
            if len(workers) >= 2:
                break
            assert proc.poll() is None, "the sweep ended before it was killed"
            assert time.monotonic() < deadline, "no loky workers started"
            time.sleep(0.1)
        time.sleep(1.5)  # the workers are running runs
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        t0 = time.monotonic()
        while any(_alive(w) for w in workers) and time.monotonic() - t0 < 10:
            time.sleep(0.1)
        gone_after = time.monotonic() - t0
        assert not any(_alive(w) for w in workers), f"workers {workers} still alive 10 s after the CLI's SIGKILL"
        assert gone_after < 5, f"workers took {gone_after:.1f} s to end"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_worker_whose_parent_died_before_its_initializer_ran_exits_at_once(tmp_path):
    """The race behind a CI failure: a loky worker still importing (a cold start under load)
    when the CLI is killed runs ``watch_parent`` only after being re-parented. It must end
    then, not keep running tasks. Here a parent starts a child and exits at once; the child
    calls ``watch_parent`` afterwards."""
    pid_file = tmp_path / "child.pid"
    child = (f"import os, time, pathlib; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
             "time.sleep(0.5); from metaflow_nb.services.parallel import watch_parent; "
             "watch_parent(int(os.environ['MF_PARENT'])); time.sleep(30)")
    parent = (f"import os, subprocess, sys; os.environ['MF_PARENT'] = str(os.getpid()); "
              f"subprocess.Popen([sys.executable, '-c', {child!r}]); os._exit(0)")
    subprocess.run([sys.executable, "-c", parent], check=True, timeout=30)
    deadline = time.monotonic() + 20
    # the file exists before the child's write lands in it: wait for its number
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the orphaned worker kept running after watch_parent"


def test_watch_parent_is_a_no_op_for_a_live_process_that_is_not_the_parent():
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # a remote dask worker's case: the given pid lives but did not start us
        par.watch_parent(other.pid)
        assert par._WATCHING == []
    finally:
        other.kill()
        other.wait()
