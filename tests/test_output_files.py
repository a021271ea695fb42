"""Output files on a full disk or a read-only folder (hunt87): the results computed are not
lost with the error (printed by the command, returned in Python, with a warning naming the
file), the command's status says it failed, and an error names the file it was writing."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pandas as pd
import pytest

import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.services import files
from metaflow_nb.services.files import OutputWarning, atomic_write
from metaflow_nb.services.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"optimize": "config/optimizations/sma_grid.yaml", "walk-forward": "config/walk_forward/fvg_walk_forward.yaml",
           "variants": "config/variants/exit_strategy_test.yaml"}


def _disk_full_for(monkeypatch, name: str) -> None:
    """Every whole-or-nothing write of a file called ``name`` fails as on a full disk."""
    real = files.atomic_write

    def full(path, write):
        if Path(path).name == name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write)

    monkeypatch.setattr(files, "atomic_write", full)


@pytest.mark.parametrize("verb, name", [("optimize", "all_results.csv"), ("walk-forward", "windows.csv"),
                                        ("variants", "comparison.json")])
def test_a_full_disk_at_the_end_of_a_sweep_keeps_its_results_printed_and_says_so(tmp_path, monkeypatch, capsys,
                                                                                 verb, name):
    """hunt87 F1: exit 2 with one line, stdout empty: the summary and the store warning
    that said which runs were not kept were dropped with the error."""
    _disk_full_for(monkeypatch, name)
    out = tmp_path / "out"
    code = main([verb, str(ROOT / CONFIGS[verb]), "--out", str(out), "--backend", "sequential", "--json"])
    cap = capsys.readouterr()
    assert code == 2
    assert json.loads(cap.out)["name"]   # the results, printed
    lines = [ln for ln in cap.err.splitlines() if "OutputWarning" in ln]
    assert len(lines) == 1 and f"{out / name}: No space left on device" in lines[0], cap.err
    assert "were not written (the results are kept" in lines[0]


def test_a_full_disk_for_the_store_and_the_tables_says_both(tmp_path, monkeypatch, capsys):
    def full_disk(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ResultsStore, "_write_segment", full_disk)
    _disk_full_for(monkeypatch, "all_results.csv")
    code = main(["optimize", str(ROOT / CONFIGS["optimize"]), "--out", str(tmp_path), "--backend", "sequential"])
    cap = capsys.readouterr()
    assert code == 2 and "best" in cap.out.lower()
    assert "StoreWarning" in cap.err and "OutputWarning" in cap.err, cap.err


def test_the_api_returns_the_results_it_could_not_write(tmp_path, monkeypatch):
    whole = mf.optimize(CONFIGS["optimize"], backend="sequential", progress=False)
    _disk_full_for(monkeypatch, "all_results.csv")
    with pytest.warns(OutputWarning, match="all_results.csv: No space left on device"):
        res = mf.optimize(CONFIGS["optimize"], out=tmp_path, backend="sequential", progress=False)
    cols = [c for c in whole.all_results.columns if c != "duration_s"]
    pd.testing.assert_frame_equal(res.all_results[cols], whole.all_results[cols])
    assert not (tmp_path / "all_results.csv").exists()


def test_a_read_only_folder_is_named_by_the_file_not_by_a_temporary_name(tmp_path, monkeypatch):
    """hunt87 F4: the temporary file could not be made, and the error named it (a
    ``.tmp-...`` file that never existed) instead of the file being written."""
    def read_only(dir, prefix, suffix):
        raise OSError(errno.EROFS, "Read-only file system", str(Path(dir) / f"{prefix}hxeiksl5{suffix}"))

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as exc:
        atomic_write(tmp_path / "all_results.csv", lambda f: f.write(b"x"))
    assert exc.value.filename == str(tmp_path / "all_results.csv") and exc.value.errno == errno.EROFS


# -- report files (hunt87 F2, F3, F6) ------------------------------------------------------

def _half_written_to_csv(monkeypatch) -> None:
    """``DataFrame.to_csv`` writes half its text, then the disk is full (no file name in the
    error, as a full disk's write says)."""
    real = pd.DataFrame.to_csv

    def half(self, target=None, **kw):
        text = real(self, None, **kw)
        data = text[: len(text) // 2].encode()
        if isinstance(target, (str, Path)):
            Path(target).write_bytes(data)
        else:
            target.write(data)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half)


def test_a_run_page_on_a_full_disk_leaves_no_trades_cut_mid_row_and_names_that_file(tmp_path, monkeypatch):
    from metaflow_nb.errors import ConfigError
    from metaflow_nb.services.tearsheet_page import write_page_files

    trades = pd.DataFrame({"pnl": [1.5, -2.25] * 50})
    _half_written_to_csv(monkeypatch)
    with pytest.raises(ConfigError) as exc:
        write_page_files(trades, tmp_path, "run.html", lambda csv: "<p>page</p>")
    assert str(exc.value) == f"report: cannot write {tmp_path / 'run_trades.csv'}: No space left on device"
    assert not (tmp_path / "run_trades.csv").exists() and not (tmp_path / "run.html").exists()


@pytest.mark.parametrize("writer", ["manifest", "index"])
def test_a_report_folders_own_files_name_themselves_on_a_full_disk(tmp_path, monkeypatch, writer):
    from metaflow_nb.reporting import index, manifest

    _disk_full_for(monkeypatch, "manifest.json" if writer == "manifest" else "index.html")
    if writer == "manifest":
        call, name = (lambda: manifest.write_manifest({"content": {}}, tmp_path)), "manifest.json"
    else:
        monkeypatch.setattr(index, "render_index", lambda plan, pages, man: "<p>index</p>")
        call, name = (lambda: index.write_index(None, [], {}, tmp_path)), "index.html"
    with pytest.raises(OSError) as exc:
        call()
    assert exc.value.filename == str(tmp_path / name)


def test_an_archive_that_cannot_be_finished_leaves_the_previous_one(tmp_path, monkeypatch):
    """hunt87 F3: --zip on a full disk left a broken zip under the name of the file to send."""
    import zipfile

    from metaflow_nb.reporting.api import archive_folder

    rep = tmp_path / "rep"
    rep.mkdir()
    for i in range(3):
        (rep / f"page{i}.html").write_text("<p>x</p>" * 100)
    first = archive_folder(rep)
    before = first.read_bytes()
    calls = []
    real = zipfile.ZipFile.writestr   # the archive writes each file's bytes, in name order

    def full(self, *a, **kw):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", full)
    (rep / "page0.html").write_text("<p>new</p>")
    with pytest.raises(OSError) as exc:
        archive_folder(rep)
    assert exc.value.filename == str(first) and first.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep", "rep.zip"]   # nothing partial left


def test_an_archive_behind_a_link_is_written_through_it(tmp_path):
    """hunt92 F3: a ``<report>.zip`` linked into a shared folder was replaced by a file, and
    the shared target kept the previous archive."""
    import os
    import zipfile

    from metaflow_nb.reporting.api import archive_folder

    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "index.html").write_text("<p>new</p>")
    share = tmp_path / "share"
    share.mkdir()
    (share / "rep.zip").write_bytes(b"the previous archive")
    (tmp_path / "rep.zip").symlink_to(share / "rep.zip")
    archive_folder(rep)
    assert (tmp_path / "rep.zip").is_symlink() and zipfile.is_zipfile(share / "rep.zip")
    assert zipfile.ZipFile(share / "rep.zip").namelist() == ["rep/", "rep/index.html"]
    assert not [p for p in share.iterdir() if p.name != "rep.zip"] and os.listdir(tmp_path).count("rep.zip") == 1


def test_a_killed_reports_staging_folder_is_removed_by_the_next_report(tmp_path):
    """hunt87 F6: a report killed with SIGKILL left its hidden .partial folder beside the
    report for good; one of a report still running is left alone."""
    import os
    import subprocess
    import sys

    from metaflow_nb.reporting.api import _stage

    folder = tmp_path / "sma_grid-f0da8874"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f".{folder.name}.{dead}-abc123.partial"
    gone_zip = tmp_path / f".{folder.name}.{dead}-def456.zip-partial"
    running = tmp_path / f".{folder.name}.{os.getppid()}-xyz789.partial"   # a process that is alive
    other = tmp_path / f".other-report.{dead}-abc.partial"                  # another report's: not ours
    for p in (stale, gone_zip, running, other):
        p.mkdir()
    stage = _stage(folder)
    assert stage.name.startswith(f".{folder.name}.{os.getpid()}-") and stage.name.endswith(".partial")
    assert not stale.exists() and not gone_zip.exists() and running.exists() and other.exists()


def test_the_notebook_process_ends_when_the_report_is_killed(tmp_path):
    """hunt87 F6: the notebook process (its own session) ran its notebook to the end after
    the report's process was killed with SIGKILL."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "child.pid"
    child = ("import os, sys, time\n"
             "from metaflow_nb.reporting.execute import end_with_parent\n"
             "end_with_parent(os.getppid(), interval=0.05)\n"
             f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
             "time.sleep(60)\n")
    parent = ("import subprocess, sys, time\n"
              f"subprocess.Popen([sys.executable, '-c', {child!r}], start_new_session=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", parent])
    t0 = time.monotonic()
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() - t0 < 30, "the child did not start"
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    from metaflow_nb.services.parallel import process_alive
    t0 = time.monotonic()
    while process_alive(pid) and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert not process_alive(pid), "the notebook process outlived the report's"
