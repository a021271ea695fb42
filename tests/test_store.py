"""The results store (issue #19, part 5): Parquet segments, exact float64 returns, concurrent
writers, compaction, old stores read and migrated, queryable with mf.runs() or pyarrow."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import fault_plugins as fp
import metaflow_nb as mf
from metaflow_nb.services import optimization as opt
from metaflow_nb.engine.metrics import METRIC_NAMES
from metaflow_nb.engine.codes import ENGINE_REVISION
from metaflow_nb.services.store import ResultsStore, StoreWarning


#: every metric: a finished run's record without one is run again (an older version's)
FULL = dict.fromkeys(METRIC_NAMES, 1.0)


def _rec(key: str, status: str = "ok", **metrics) -> dict:
    return {"run_id": key[:16], "spec_hash": key, "status": status,
            "metrics": {**FULL, **(metrics or {"total_trades": 3})}, "duration_s": 0.5}


def _key(i: int) -> str:
    return f"{i:064x}"


def _segments(root) -> list:
    return sorted((root / "runs").glob("[!.]*.parquet"))


def test_returns_round_trip_bit_for_bit_through_flush_and_compaction(tmp_path):
    rng = np.random.default_rng(7)
    days = pd.date_range("2020-01-01", periods=300, freq="D").asi8
    store = ResultsStore(tmp_path)
    want = {}
    for i in range(40):
        r = rng.normal(0, 0.01, 300) * (rng.random(300) < 0.3)
        r[5] = np.nextafter(0.1, 1.0)  # the last bit counts: DSR and PBO recompute from these
        store.put_array(_key(i), "days", days)
        store.put_array(_key(i), "daily_returns", r)
        store.put(_key(i), _rec(_key(i), sharpe_ratio=float(i)))
        want[_key(i)] = r
        if i % 10 == 9:
            store.flush()
    assert len(_segments(tmp_path)) == 4
    store.close()
    assert len(_segments(tmp_path)) == 1
    again = ResultsStore(tmp_path)
    for k, r in want.items():
        got = again.get_array(k, "daily_returns")
        assert got.dtype == np.float64 and got.tobytes() == r.tobytes()
        assert (again.get_array(k, "days") == days).all()
        assert again.get(k) == _rec(k, sharpe_ratio=float(int(k, 16)))


def test_concurrent_writers_lose_nothing(tmp_path):
    """Two processes write one store at once (overlapping keys), each compacting at the end."""
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from metaflow_nb.engine.metrics import METRIC_NAMES
        from metaflow_nb.services.store import ResultsStore
        full = dict.fromkeys(METRIC_NAMES, 0.0)
        lo = int(sys.argv[1])
        s = ResultsStore({str(tmp_path)!r})
        for i in range(lo, lo + 600):
            k = f"{{i:064x}}"
            s.put_array(k, "days", np.arange(50, dtype=np.int64))
            s.put_array(k, "daily_returns", np.full(50, i / 1000.0))
            s.put(k, {{"run_id": k[:16], "spec_hash": k, "status": "ok", "metrics": {{**full, "x": i}}}})
            if i % 97 == 0:
                s.flush()
        s.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(lo)]) for lo in (0, 400)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = ResultsStore(tmp_path)
    keys = list(store.keys())
    assert keys == [_key(i) for i in range(1000)]
    for i in (0, 399, 400, 599, 600, 999):
        assert store.get(_key(i))["metrics"]["x"] == i
        assert (store.get_array(_key(i), "daily_returns") == i / 1000.0).all()
    assert [p for p in tmp_path.rglob(".tmp*")] == []


def test_a_killed_writer_leaves_whole_segments_and_a_resume_sees_them(tmp_path):
    """SIGKILL in the middle of writing: what was flushed is read back whole, nothing else."""
    script = textwrap.dedent(f"""
        import os, signal
        from metaflow_nb.engine.metrics import METRIC_NAMES
        from metaflow_nb.services.store import ResultsStore
        s = ResultsStore({str(tmp_path)!r})
        for i in range(300):
            k = f"{{i:064x}}"
            s.put(k, {{"run_id": k[:16], "spec_hash": k, "status": "ok", "metrics": dict.fromkeys(METRIC_NAMES, 0.0)}})
            if i == 199:
                s.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # the last 100 are still buffered
    """)
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -9
    assert list(ResultsStore(tmp_path).keys()) == [_key(i) for i in range(200)]


def test_a_truncated_segment_is_a_warning_and_its_runs_are_missing(tmp_path):
    store = ResultsStore(tmp_path)
    for i in range(3):
        store.put(_key(i), _rec(_key(i)))
    store.flush()
    seg = _segments(tmp_path)[0]
    seg.write_bytes(seg.read_bytes()[:100])
    with pytest.warns(StoreWarning, match="not a Parquet segment of run records"):
        assert list(ResultsStore(tmp_path).keys()) == []


def test_a_foreign_parquet_file_in_the_store_is_set_aside_not_a_crash(tmp_path):
    """hunt107 F1: a valid Parquet file that is no segment (no spec_hash column) in
    ``runs/`` crashed every sweep's closing merge (KeyError: 'no spec_hash column', exit 1,
    nothing printed), while reading the store warned and went on. The merge now reads what
    it can: a file it cannot read as a segment is renamed ``<name>.bad`` (kept, and out of
    the next merges' way, hunt107 F4: it was deleted, or crashed the merge) with a warning
    naming it; every run is merged."""
    store = ResultsStore(tmp_path)
    for i in range(4):
        store.put(_key(i), _rec(_key(i)))
        store.flush()
    store.close()
    store = ResultsStore(tmp_path)
    store.put(_key(4), _rec(_key(4)))
    store.flush()
    foreign = tmp_path / "runs" / "my_notes.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(foreign)
    damaged = _segments(tmp_path)[-1]
    with pytest.warns(StoreWarning) as said:
        store.close()
    text = " ".join(str(w.message) for w in said)
    assert "my_notes.parquet" in text and "my_notes.parquet.bad" in text, text
    assert not foreign.exists() and foreign.with_name("my_notes.parquet.bad").is_file()
    assert pd.read_parquet(foreign.with_name("my_notes.parquet.bad"))["a"].tolist() == [1, 2]
    again = ResultsStore(tmp_path)
    assert sorted(again.keys()) == [_key(i) for i in range(5)] and damaged.name


def test_old_stores_are_read_and_moved_into_a_segment(tmp_path):
    """The one-file-per-run layout (before issue #19) is read as it is; close() migrates it.
    A finished run computed under older engine rules (no ``engine`` stamp) is computed
    again: its run id is the same, its numbers may not be."""
    days = pd.date_range("2021-01-01", periods=20, freq="D").asi8
    r = np.linspace(-0.01, 0.01, 20)
    for i in range(4):
        k = _key(i)
        (tmp_path / k[:2]).mkdir(exist_ok=True)
        stamp = {"engine": ENGINE_REVISION} if i < 3 else {}
        (tmp_path / k[:2] / f"{k}.json").write_text(json.dumps({**_rec(k, sharpe_ratio=1.5), **stamp}))
        np.save(tmp_path / k[:2] / f"{k}.days.npy", days)
        np.save(tmp_path / k[:2] / f"{k}.daily_returns.npy", r)
    store = ResultsStore(tmp_path)
    assert list(store.keys()) == [_key(i) for i in range(4)]
    assert store.get(_key(1)) == _rec(_key(1), sharpe_ratio=1.5)
    with pytest.warns(StoreWarning, match=r"engine: computed under revision 1 of the engine's rules; this "
                                          r"version has revision \d+; the run is computed again"):
        assert store.get(_key(3)) is None
    assert store.get_array(_key(2), "daily_returns").tobytes() == r.tobytes()
    store.close()
    assert list(tmp_path.glob("??/*")) == [] and len(_segments(tmp_path)) == 1
    again = ResultsStore(tmp_path)
    assert again.get(_key(1)) == _rec(_key(1), sharpe_ratio=1.5)
    assert again.get_array(_key(2), "daily_returns").tobytes() == r.tobytes()
    assert (again.get_array(_key(2), "days") == days).all()
    assert _key(3) not in again   # not migrated: its run is computed again on resume


def test_drop_forgets_runs(tmp_path):
    store = ResultsStore(tmp_path)
    for i in range(5):
        store.put(_key(i), _rec(_key(i)))
    store.close()
    assert store.drop([_key(1), _key(3), _key(9)]) == 2
    assert list(ResultsStore(tmp_path).keys()) == [_key(i) for i in (0, 2, 4)]


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweeps")
    outs = []
    for name, fast in (("a", [5, 10]), ("b", [15, 20, 25])):
        cfg = fp.write_optimization(tmp / name, fp.sma_space(fast, [40]), fp.ROOT / "config/runs/sma_cross.yaml")
        out = tmp / "outs" / name
        res = opt.OptimizationService().run(cfg, out=out, backend="sequential", progress=False)
        outs.append((out, res))
    return tmp / "outs", outs


def test_runs_is_one_frame_across_sweeps(two_sweeps):
    root, outs = two_sweeps
    frame = mf.runs(root)
    assert len(frame) == 5 and set(frame["status"]) == {"ok"}
    assert sorted(frame["sma_1.fast"]) == [5, 10, 15, 20, 25]
    assert frame["has_daily_returns"].all()
    for out, res in outs:
        one = mf.runs(out).set_index("run_id")
        want = res.all_results.set_index("run_id")
        assert (one.loc[want.index, "metrics.sharpe_ratio"] == want["sharpe_ratio"]).all()


def test_sweeps_into_one_folder_keep_every_runs_parameters(tmp_path):
    """hunt70 F4: a second sweep into the same --out (another grid, or another worker's
    params) replaced all_results.csv, and mf.runs showed the first sweep's runs with NaN
    parameters: the store keeps each sweep's parameters beside its runs."""
    tmp = tmp_path
    a = fp.write_optimization(tmp / "a", fp.sma_space([5, 10], [40]), fp.ROOT / "config/runs/sma_cross.yaml")
    b = fp.write_optimization(tmp / "b", fp.sma_space([15], [30, 50]), fp.ROOT / "config/runs/sma_cross.yaml")
    for cfg in (a, b):
        opt.OptimizationService().run(cfg, out=tmp / "out", backend="sequential", progress=False)
    frame = mf.runs(tmp / "out")
    assert len(frame) == 4
    assert sorted(zip(frame["sma_1.fast"], frame["sma_1.slow"])) == [(5, 40), (10, 40), (15, 30), (15, 50)]
    # the folder's table is the last sweep's, as its result's all_results
    assert len(pd.read_csv(tmp / "out" / "all_results.csv")) == 2


def test_segments_are_plain_parquet(two_sweeps):
    """Queryable without this package: one table per store, a float64 column per metric."""
    import pyarrow.dataset as ds

    root, outs = two_sweeps
    table = ds.dataset(str(outs[1][0] / "store" / "runs"), format="parquet").to_table(
        columns=["run_id", "status", "metrics.sharpe_ratio"])
    assert table.num_rows == 3 and str(table.schema.field("metrics.sharpe_ratio").type) == "double"


def test_sweeps_above_returns_max_runs_store_no_returns_but_the_best(tmp_path, monkeypatch):
    monkeypatch.setattr(opt, "RETURNS_MAX_RUNS", 2)
    cfg = fp.write_optimization(tmp_path, fp.sma_space([5, 10, 15], [40]), fp.ROOT / "config/runs/sma_cross.yaml")
    res = opt.OptimizationService().run(cfg, out=tmp_path / "out", backend="sequential", progress=False)
    frame = mf.runs(tmp_path / "out")
    assert not frame["has_daily_returns"].any()
    st = res.statistics if not callable(getattr(res, "statistics", None)) else res.statistics()
    assert "dsr" in st
    res.store.flush()
    frame = mf.runs(tmp_path / "out").set_index("run_id")
    # the statistics computed the returns they read (the best run's for DSR; here PBO's too,
    # 3 runs being under its max_configs) and stored them: a resume runs nothing again
    assert frame.loc[res.all_results.loc[res.best_index, "run_id"], "has_daily_returns"]


def test_segments_follow_the_umask_as_every_other_output(tmp_path):
    """The atomic write's temporary file is made 0600: renamed into place unchanged, a
    shared store was private to its writer, whatever the umask."""
    import os

    from metaflow_nb.services.files import atomic_write as _atomic_write
    old = os.umask(0o002)
    try:
        _atomic_write(tmp_path / "seg.parquet", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "seg.parquet").stat().st_mode & 0o777 == 0o664


def test_the_last_records_of_a_burst_reach_disk_without_another_put(tmp_path):
    """A flush came only with the next put: a burst's last records waited for the next burst
    (1.5-2.6 s in a sweep) and a SIGKILL meanwhile lost them (hunt16 F1)."""
    import time

    from metaflow_nb.services.store import FLUSH_SECONDS

    store = ResultsStore(tmp_path)
    store.put(_key(1), _rec(_key(1)))
    time.sleep(FLUSH_SECONDS + 0.6)
    assert list(ResultsStore(tmp_path).keys()) == [_key(1)]   # another process's view: on disk
    store.put(_key(2), _rec(_key(2)))
    store.flush()   # a flush by hand takes the pending timer's work: nothing is written twice
    time.sleep(FLUSH_SECONDS + 0.3)
    assert len(_segments(tmp_path)) == 2


def test_a_resume_computes_again_what_other_engine_rules_computed(tmp_path):
    """A run id names the config, the data and a plugin's code, not the engine's fill and
    exit rules: after a change that moves a run's numbers (ENGINE_REVISION) a resumed sweep
    would have mixed another version's numbers into this one's (5282310 moved the ICT
    run's under its old id). Such records are computed again, each with a StoreWarning."""
    cfg = "config/optimizations/sma_grid.yaml"
    first = mf.optimize(cfg, out=tmp_path, backend="sequential", progress=False)
    store = ResultsStore(tmp_path / "store")
    ok = [k for k in sorted(store.keys()) if store.get(k)["status"] == "ok"][:3]
    for k in ok:
        rec = store.get(k)
        store.put(k, {**rec, "engine": ENGINE_REVISION - 1, "metrics": {**rec["metrics"], "sharpe_ratio": 9.0}})
    store.flush()   # (close() would compact, which leaves such records out in silence)
    with pytest.warns(StoreWarning, match="engine: computed under revision") as caught:
        again = mf.optimize(cfg, out=tmp_path, resume=True, backend="sequential", progress=False)
    assert len(ok) == 3 and len([w for w in caught if "engine:" in str(w.message)]) == 3
    assert (again.all_results["sharpe_ratio"] != 9.0).all()
    cols = [c for c in first.all_results.columns if c != "duration_s"]
    pd.testing.assert_frame_equal(again.all_results[cols], first.all_results[cols])


def test_listing_a_store_says_what_it_leaves_out(tmp_path):
    """hunt88 F4: mf.runs over a store of another engine revision warned "the run is
    computed again" for each record and computed nothing; it leaves them out of the table."""
    store = ResultsStore(tmp_path / "store")
    for i in range(2):
        store.put(_key(i), {**_rec(_key(i)), "engine": ENGINE_REVISION - 1})
    store.close()
    with pytest.warns(StoreWarning) as caught:
        frame = mf.runs(tmp_path)
    said = [str(w.message) for w in caught]
    assert len(frame) == 0 and len(said) == 2
    assert all("left out of this table (a sweep's --resume computes it again)" in m for m in said), said


@pytest.mark.parametrize("engine", ["batch", "general"])
def test_a_store_that_cannot_be_written_costs_the_store_not_the_sweep(tmp_path, monkeypatch, engine):
    """hunt31 F1: a full disk (EFBIG/ENOSPC) at the store's first flush stopped the sweep
    with 'metaflow-nb: error: File too large': every run computed was thrown away and the
    line named no file. Now the sweep goes on and returns every row; one StoreWarning
    names the store and says its runs were not written; a later resume computes them."""
    import errno

    cfg = "config/optimizations/sma_grid.yaml"
    whole = mf.optimize(cfg, backend="sequential", progress=False, engine=engine)

    def full_disk(self, rows):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(ResultsStore, "_write_segment", full_disk)
    monkeypatch.setattr("metaflow_nb.services.store.FLUSH_SECONDS", 0.0)   # a flush with every record
    with pytest.warns(StoreWarning) as caught:
        res = mf.optimize(cfg, out=tmp_path, backend="sequential", progress=False, engine=engine)
    said = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    assert len(said) == 2 and str(tmp_path / "store") in said[0] and "File too large" in said[0], said
    assert "not written" in said[0]
    # hunt107 F2: the end says how many runs the store lost (1 of 1,566 kept read as a plain warning)
    n = len(whole.all_results)
    assert said[1].startswith(f"{tmp_path / 'store' / 'runs'}: {n} of this sweep's runs were not written to the "
                              f"results store"), said[1]
    cols = [c for c in whole.all_results.columns if c != "duration_s"]
    pd.testing.assert_frame_equal(res.all_results[cols], whole.all_results[cols])
    monkeypatch.undo()
    again = mf.optimize(cfg, out=tmp_path, resume=True, backend="sequential", progress=False, engine=engine)
    pd.testing.assert_frame_equal(again.all_results[cols], whole.all_results[cols])


def test_a_merge_the_disk_refuses_says_every_run_is_kept(tmp_path, monkeypatch):
    """hunt107 F3: a closing merge the disk refused said 'cannot write the results store ...
    runs not written cannot be resumed', while every run was in its segment and a resume
    read them all back. It says what failed and that the runs are kept."""
    import errno

    store = ResultsStore(tmp_path)
    for i in range(3):
        store.put(_key(i), _rec(_key(i)))
        store.flush()

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ResultsStore, "_write_segment_stream", full)
    with pytest.warns(StoreWarning) as caught:
        store.close()
    said = [str(w.message) for w in caught]
    assert said == [f"{tmp_path / 'runs'}: cannot merge the results store's segments (No space left on device); "
                    f"every run stays in its own segment, and --resume reads them"], said
    monkeypatch.undo()
    assert sorted(ResultsStore(tmp_path).keys()) == [_key(i) for i in range(3)]


def test_a_disk_that_refuses_the_store_is_tried_again_after_a_growing_wait(tmp_path, monkeypatch):
    """hunt87 F5: after a refused segment every flush (each 0.5 s) wrote the whole growing
    buffer again: on a full disk a sweep ran 2-4x slower."""
    import errno

    tries = []

    def full_disk(self, rows):
        tries.append(len(rows))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ResultsStore, "_write_segment", full_disk)
    monkeypatch.setattr("metaflow_nb.services.store.FLUSH_SECONDS", 0.0)   # a flush with every record
    # the puts' timers (0 s now) would try from their own thread once _retry_at is cleared
    # below, before the put this test times (a loaded machine runs them late): puts only
    monkeypatch.setattr(ResultsStore, "_flush_on_time", lambda self: None)
    store = ResultsStore(tmp_path / "store")
    with pytest.warns(StoreWarning):
        for i in range(50):
            store.put(_key(i), _rec(_key(i)))
        assert tries == [1]   # the next try waits at least a second
        store._retry_at = 0.0   # ... as if it had passed
        store.put(_key(50), _rec(_key(50)))
        assert tries == [1, 51] and store._retry_wait == 2.0
        store.close()   # closing always tries
    assert tries == [1, 51, 51]
    monkeypatch.undo()
    again = ResultsStore(tmp_path / "store")
    assert len(again.frame()) == 0   # nothing was written: a resume computes them


def test_a_resume_says_how_many_runs_it_read_back(tmp_path):
    """hunt31 F3: a resumed sweep looked exactly like a fresh one in text and --json."""
    cfg = "config/optimizations/sma_grid.yaml"
    first = mf.optimize(cfg, out=tmp_path, backend="sequential", progress=False)
    assert first.resumed == 0 and "read from" not in repr(first) and first.to_dict()["resumed_runs"] == 0
    again = mf.optimize(cfg, out=tmp_path, resume=True, backend="sequential", progress=False)
    assert again.resumed == 40 and "40 runs (40 read from the results store)" in repr(again)
    assert again.to_dict()["resumed_runs"] == 40


def test_a_store_whose_segment_folder_is_a_file_is_refused_before_anything_runs(tmp_path, capsys):
    """hunt31 F7: 'store/runs' being a file read 'File exists', once the sweep had run."""
    from metaflow_nb.cli import main
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "runs").write_text("not a folder")
    assert main(["optimize", "config/optimizations/sma_grid.yaml", "--out", str(tmp_path), "--no-progress",
                 "--backend", "sequential"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "store" / "runs") in err and "is a file" in err, err


def test_an_output_path_that_is_a_link_a_pipe_or_a_private_file_is_written_as_before(tmp_path):
    """hunt63 F3: the atomic write renamed its temporary file over whatever was there: a
    symbolic link was replaced by a file (its target kept the old text), a named pipe's
    reader got nothing, and a file of mode 0600 became 0644. A link is written through,
    a file that is no regular file is written in place, a file keeps its mode."""
    import os
    import stat
    import threading

    import pandas as pd

    from metaflow_nb.services.files import write_csv

    frame = pd.DataFrame({"a": [1, 2]})
    (tmp_path / "target").mkdir()
    real = tmp_path / "target" / "trades.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    write_csv(frame, link, index=False)
    assert link.is_symlink() and real.read_text() == "a\n1\n2\n"

    private = tmp_path / "private.csv"
    private.write_text("old\n")
    private.chmod(0o600)
    write_csv(frame, private, index=False)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == "a\n1\n2\n"

    pipe = tmp_path / "pipe.csv"
    os.mkfifo(pipe)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_bytes()))
    reader.start()
    write_csv(frame, pipe, index=False)
    reader.join(10)
    assert got == [b"a\n1\n2\n"] and stat.S_ISFIFO(pipe.stat().st_mode)


def test_an_output_path_that_is_a_stream_of_this_process_is_written_to_it(tmp_path):
    """hunt66 F1: '--trades-csv /dev/stdout | head' failed (the link resolved to
    'pipe:[N]', a file that does not exist, and a temporary file was made beside it), and
    with stdout redirected to a file the file was replaced, losing what was printed. A
    stream of this process is written to, in place (a /proc/self/fd path here: /dev/stdout
    is the same kind of link, and a test must not risk replacing it)."""
    import os
    import threading

    import pandas as pd

    from metaflow_nb.services.files import write_csv

    r, w = os.pipe()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(os.read(r, 1 << 16)))
    reader.start()
    write_csv(pd.DataFrame({"a": [1, 2]}), f"/proc/self/fd/{w}", index=False)
    reader.join(10)
    os.close(w)
    os.close(r)
    assert got == [b"a\n1\n2\n"]
    # a stream redirected to a file is appended to: what was there stays
    out = tmp_path / "log.txt"
    with open(out, "w") as f:
        f.write("printed before\n")
        f.flush()
        write_csv(pd.DataFrame({"a": [1]}), f"/proc/self/fd/{f.fileno()}", index=False)
    assert out.read_text() == "printed before\na\n1\n"


def test_a_basket_sweeps_store_has_its_parameters(tmp_path):
    """hunt72 F2: mf.runs on a basket optimization's store showed metrics without the
    parameters they belong to (the basket table numbers combinations, no run ids)."""
    from metaflow_nb.services.portfolio_meta import optimize_basket

    op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
    opt_ = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}},
                           store=tmp_path / "store")
    frame = mf.runs(tmp_path / "store").sort_values("sma_1.fast")
    assert frame["sma_1.fast"].tolist() == [5, 10] and frame["sma_1.slow"].tolist() == [30, 30]
    table = opt_.table.set_index("sma_1.fast")
    assert frame["metrics.sharpe_ratio"].tolist() == table.loc[[5, 10], "sharpe_ratio"].tolist()


def test_a_basket_sweeps_notebook_view_says_its_pbo():
    """hunt75 F4: the text repr of a basket optimization gave PBO (or why none), the
    notebook view did not."""
    from metaflow_nb.services.portfolio_meta import optimize_basket

    op = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]}, "data": {"start": "2010-01-01"}}
    opt_ = optimize_basket("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10], "slow": [30]}})
    words = opt_._pbo_text()
    assert words and words.split(" (")[0] in opt_._repr_html_()


def test_stores_compacting_together_write_each_run_once(tmp_path):
    """hunt79 F3: two sweeps ending together each merged the other's segments too, so the
    store held every run twice (two 14 MB segments for 3,540 runs): ``mf.runs`` hid it,
    DuckDB or pyarrow over ``store/runs/*.parquet`` did not. One merge at a time."""
    import threading

    import pyarrow.parquet as pq

    for round_ in range(6):
        root = tmp_path / f"r{round_}"
        writer = ResultsStore(root)
        for i in range(300):
            writer.put(_key(i), _rec(_key(i)))
            if i % 20 == 19:
                writer.flush()
        writer.flush()
        stores = [ResultsStore(root) for _ in range(3)]
        gate = threading.Barrier(len(stores))

        def merge(s: ResultsStore) -> None:
            gate.wait()
            s.compact()

        threads = [threading.Thread(target=merge, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in _segments(root))
        assert rows == 300, (round_, rows, [p.name for p in _segments(root)])
        assert list(ResultsStore(root).keys()) == [_key(i) for i in range(300)]


def test_a_variant_tests_store_ends_as_one_segment(tmp_path):
    """hunt79 F3: a variant test left its store in as many segments as flushes; a sweep
    merges its own into one when it ends, and so does a variant test."""
    out = tmp_path / "out"
    mf.compare_variants(str(fp.ROOT / "config/variants/exit_strategy_test.yaml"), backend="loky", out=out,
                        progress=False)
    assert len(_segments(out / "store")) == 1
