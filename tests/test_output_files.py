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
