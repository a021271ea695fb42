"""The per-process caches behind the public API: parsed YAML documents
(``config.loading.read_yaml``) and loaded data files (``data.load_data``).

Each cache must (1) never serve stale content after a file changes, in the same process
and within the same clock tick, (2) never hand out shared mutable state, (3) stay
bounded, and (4) leave error messages as they were.
"""
from __future__ import annotations

import os
import textwrap
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import metaflow_nb as mf
from metaflow_nb.config import loading
from metaflow_nb.data import loader
from metaflow_nb.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]

STRATEGY = textwrap.dedent("""\
    name: demo
    workforce:
      opportunity_workers:
        - instance_id: sma_1
          plugin: sma_cross
          params: {fast: 10, slow: 20}
      planning_workers:
        exit_planning:
          - instance_id: exit_1
            plugin: reverse_on_opposite
    """)


# ====================================================================== YAML documents


@pytest.fixture
def fresh_yaml_cache():
    loading.clear_yaml_cache()
    yield
    loading.clear_yaml_cache()


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "config").rglob("*.yaml")))
def test_read_yaml_matches_the_pure_python_safe_loader(path, fresh_yaml_cache):
    expected = yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))
    assert loading.read_yaml(ROOT / path) == expected  # parsed
    assert loading.read_yaml(ROOT / path) == expected  # cached


def test_an_edited_yaml_file_is_read_again_in_the_same_process(tmp_path, fresh_yaml_cache):
    p = tmp_path / "s.yaml"
    p.write_text(STRATEGY)
    assert loading.read_yaml(p)["workforce"]["opportunity_workers"][0]["params"] == {"fast": 10, "slow": 20}
    st = p.stat()
    # same size, and the modification time put back: only the content differs
    p.write_text(STRATEGY.replace("fast: 10", "fast: 12"))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert loading.read_yaml(p)["workforce"]["opportunity_workers"][0]["params"] == {"fast": 12, "slow": 20}
    # and through the public API
    specs = mf.build_specs(p, data="sp500_daily")
    assert specs.params("sma_1") == {"fast": 12, "slow": 20}
    p.write_text(STRATEGY.replace("fast: 10", "fast: 14"))
    assert mf.build_specs(p, data="sp500_daily").params("sma_1") == {"fast": 14, "slow": 20}


def test_read_yaml_returns_a_new_document_every_time(tmp_path, fresh_yaml_cache):
    p = tmp_path / "s.yaml"
    p.write_text(STRATEGY)
    a = loading.read_yaml(p)
    a["name"] = "changed"
    a["workforce"]["opportunity_workers"][0]["params"]["fast"] = 99
    a["workforce"]["opportunity_workers"].append({"instance_id": "x"})
    b = loading.read_yaml(p)
    assert b == yaml.safe_load(STRATEGY)
    c = loading.read_yaml(p)
    assert b is not c and b["workforce"] is not c["workforce"]
    assert b["workforce"]["opportunity_workers"][0]["params"] is not c["workforce"]["opportunity_workers"][0]["params"]


def test_read_yaml_keeps_aliases_and_scalar_types(tmp_path, fresh_yaml_cache):
    p = tmp_path / "a.yaml"
    p.write_text("base: &b {fast: 5, when: 2020-01-02, at: 2020-01-02 10:00:00, tags: !!set {x: null}}\n"
                 "copy: *b\nraw: !!binary aGVsbG8=\n")
    for _ in range(2):  # parsed, then cached
        doc = loading.read_yaml(p)
        assert doc == yaml.safe_load(p.read_text())
        assert doc["copy"] is doc["base"]  # as safe_load builds it
        doc["base"]["tags"].add("y")
    assert loading.read_yaml(p)["base"]["tags"] == {"x"}


def test_yaml_cache_is_bounded(tmp_path, fresh_yaml_cache, monkeypatch):
    monkeypatch.setattr(loading, "_YAML_CACHE_SIZE", 3)
    for i in range(10):
        p = tmp_path / f"{i}.yaml"
        p.write_text(f"name: n{i}\n")
        assert loading.read_yaml(p) == {"name": f"n{i}"}
    assert len(loading._YAML_CACHE) == 3
    big = tmp_path / "big.yaml"
    big.write_text("name: " + "x" * (loading._YAML_CACHE_MAX_CHARS + 1) + "\n")
    assert len(loading.read_yaml(big)["name"]) == loading._YAML_CACHE_MAX_CHARS + 1
    assert all(len(k) <= loading._YAML_CACHE_MAX_CHARS for k in loading._YAML_CACHE)


def test_yaml_errors_are_not_cached_and_keep_their_wording(tmp_path, fresh_yaml_cache):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nworkforce: [unclosed\n  foo: 1\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"malformed YAML \(line 3, column 6\): expected ',' or ']'"):
            loading.read_yaml(p)
    p.write_text("- a\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping at the top level, got list"):
        loading.read_yaml(p)
    p.write_text(STRATEGY)
    assert loading.read_yaml(p)["name"] == "demo"
    p.unlink()
    with pytest.raises(ConfigError, match="file not found"):
        loading.read_yaml(p)


# ====================================================================== data files


def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.001,
                         "low": np.minimum(open_, close) * 0.999, "close": close, "volume": 1000.0},
                        index=pd.date_range("2021-01-01", periods=n, freq="h", name="time"))


@pytest.fixture
def fresh_data_cache():
    loader.clear_data_cache()
    yield
    loader.clear_data_cache()


@pytest.fixture
def reads(monkeypatch):
    """Counts the file parses behind load_data."""
    calls: list[Path] = []
    real = loader._read_file

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(loader, "_read_file", counting)
    return calls


def _write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, float_format="%.6f")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_file_is_read_once_while_unchanged(tmp_path, fresh_data_cache, reads, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    p = _write(_frame(), tmp_path / f"bars{suffix}")
    a = mf.load_data(p)
    b = mf.load_data(p)
    assert len(reads) == 1
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs == b.attrs == {"source": str(p), "fingerprint": mf.data.data_fingerprint(a),
                                  "fingerprint_span": (len(a), a.index.asi8[0], a.index.asi8[-1]),
                                  "dates_only": False, "clock": None}
    uncached = mf.load_data(p, cache=False)
    assert len(reads) == 2
    pd.testing.assert_frame_equal(uncached, a)
    assert uncached.attrs == a.attrs
    sliced = mf.load_data(p, start="2021-01-02", end="2021-01-03")
    assert len(reads) == 2 and len(sliced) == 48
    assert sliced.attrs["fingerprint"] == mf.data.data_fingerprint(sliced)


def test_a_rewritten_file_is_read_again(tmp_path, fresh_data_cache, reads):
    p = _write(_frame(seed=1), tmp_path / "bars.csv")
    first = mf.load_data(p)
    _write(_frame(seed=2), p)
    second = mf.load_data(p)
    assert len(reads) == 2
    assert first.attrs["fingerprint"] != second.attrs["fingerprint"]
    pd.testing.assert_frame_equal(second, mf.load_data(p, cache=False))


def test_a_same_size_rewrite_in_the_same_clock_tick_is_caught(tmp_path, fresh_data_cache, reads, monkeypatch):
    # a file system whose clock does not move between two writes: the signature (here:
    # the size alone) stays the same, so only the checksum of the bytes shows the change
    monkeypatch.setattr(loader, "_signature", lambda st: (st.st_size,))
    p = tmp_path / "bars.csv"
    text = _frame().to_csv(float_format="%.6f")
    p.write_text(text)
    before = mf.load_data(p)
    changed = text.replace("1000.000000", "2000.000000", 1)
    assert len(changed) == len(text)
    p.write_text(changed)
    after = mf.load_data(p)
    assert len(reads) == 2
    assert after["volume"].iloc[0] == 2000.0 and before["volume"].iloc[0] == 1000.0
    assert mf.load_data(p)["volume"].iloc[0] == 2000.0
    assert len(reads) == 2  # unchanged bytes: served from the cache


def test_an_entry_is_trusted_on_its_signature_once_the_file_is_old_enough(tmp_path, fresh_data_cache, reads,
                                                                          monkeypatch):
    monkeypatch.setattr(loader, "_RACY_FINE_NS", loader._RACY_NS)  # a slow test machine stays racy
    p = _write(_frame(), tmp_path / "bars.csv")
    crcs = []
    real_crc = loader._file_crc
    monkeypatch.setattr(loader, "_file_crc", lambda path: crcs.append(path) or real_crc(path))
    mf.load_data(p)  # just written: racy, so the next hit checks the bytes
    mf.load_data(p)
    assert len(reads) == 1 and len(crcs) == 2
    monkeypatch.setattr(loader, "_RACY_NS", 0)  # as if the file had been written long ago
    monkeypatch.setattr(loader, "_RACY_FINE_NS", 0)
    mf.load_data(p)  # checks once more, then trusts the signature
    mf.load_data(p)
    mf.load_data(p)
    assert len(reads) == 1 and len(crcs) == 3


@pytest.mark.parametrize("mtime_ns, ctime_ns, age_ns, racy", [
    (10**18 + 123, 10**18 + 456, 50_000_000, True),       # fine clock, written 50 ms ago
    (10**18 + 123, 10**18 + 456, 150_000_000, False),     # fine clock, 150 ms ago
    (10**18, 10**18 + 456, 150_000_000, True),            # whole-second mtime: maybe a coarse clock
    (10**18, 10**18, 1_900_000_000, True),
    (10**18, 10**18, 2_100_000_000, False),
    (10**18 - 5 * 10**9, 10**18 + 7, 50_000_000, True),   # ctime (any change) counts, not only mtime
])
def test_the_racy_window_follows_the_file_clock(mtime_ns, ctime_ns, age_ns, racy):
    st = types.SimpleNamespace(st_mtime_ns=mtime_ns, st_ctime_ns=ctime_ns)
    assert loader._racy(st, max(mtime_ns, ctime_ns) + age_ns) is racy


def test_loaded_frames_share_no_mutable_state(tmp_path, fresh_data_cache):
    p = _write(_frame(), tmp_path / "bars.csv")
    a = mf.load_data(p)
    reference = a.copy()
    a.iloc[0, 0] = -1.0
    a.loc[a.index[1], "close"] = -2.0
    a["close"] *= 3
    a["extra"] = 1.0
    a.attrs["source"] = "changed"
    a.attrs["fingerprint"] = "x"
    b = mf.load_data(p)
    pd.testing.assert_frame_equal(b, reference)
    assert b.attrs == {"source": str(p), "fingerprint": mf.data.data_fingerprint(reference),
                       "fingerprint_span": (len(b), b.index.asi8[0], b.index.asi8[-1]), "dates_only": False,
                       "clock": None}
    arrays = [b[c].to_numpy() for c in b.columns]
    if all(not x.flags.writeable for x in arrays):
        return  # copy-on-write: arrays taken from a frame cannot be written to
    arrays[0][0] = -5.0  # pragma: no cover - pandas without copy-on-write: a deep copy
    pd.testing.assert_frame_equal(mf.load_data(p), reference)  # pragma: no cover


def test_samples_share_no_mutable_state():
    a = mf.load_data("sp500_daily")
    a["close"] *= 2
    a.iloc[0, 0] = -1.0
    b = mf.load_data("sp500_daily")
    assert b.iloc[0, 0] == 1229.22998 and b["close"].iloc[0] != a["close"].iloc[0]


def test_data_cache_is_bounded(tmp_path, fresh_data_cache, monkeypatch):
    paths = [_write(_frame(seed=i), tmp_path / f"b{i}.csv") for i in range(loader._FILE_CACHE_ENTRIES + 3)]
    for p in paths:
        mf.load_data(p)
    assert len(loader._file_cache) == loader._FILE_CACHE_ENTRIES
    assert list(loader._file_cache) == [str(p) for p in paths[-loader._FILE_CACHE_ENTRIES:]]
    one = loader._file_cache[str(paths[-1])].nbytes
    monkeypatch.setattr(loader, "_FILE_CACHE_BYTES", 2 * one)
    loader.clear_data_cache()
    for p in paths:
        mf.load_data(p)
    assert len(loader._file_cache) == 2
    monkeypatch.setattr(loader, "_FILE_CACHE_BYTES", one - 1)
    loader.clear_data_cache()
    mf.load_data(paths[0])
    assert len(loader._file_cache) == 0  # too large to keep at all


def test_bad_files_are_not_cached_and_keep_their_messages(tmp_path, fresh_data_cache):
    p = tmp_path / "bars.csv"
    good = _frame().to_csv(float_format="%.6f")
    lines = good.splitlines()
    lines[3] = lines[3].split(",", 1)[0] + ",,1,1,1,1"
    p.write_text("\n".join(lines) + "\n")
    for _ in range(2):
        with pytest.raises(DataError, match=rf"^{p}: row 3 \(.*\): column 'open' is missing"):
            mf.load_data(p)
    assert len(loader._file_cache) == 0
    p.write_text(good)
    assert len(mf.load_data(p)) == 300
    p.unlink()
    with pytest.raises(DataError, match="file not found"):
        mf.load_data(p)


def test_runs_see_a_changed_data_file(tmp_path, fresh_data_cache):
    bars = _write(_frame(600, seed=3), tmp_path / "bars.csv")
    op = tmp_path / "op.yaml"
    op.write_text(f"data: {{source: {bars.name}}}\ncash: 10000\n")
    strategy = ROOT / "config" / "runs" / "sma_cross.yaml"
    first = mf.backtest(strategy, op)
    assert first.specs.data_fingerprint == mf.load_data(bars, cache=False).attrs["fingerprint"]
    _write(_frame(600, seed=4), bars)
    second = mf.backtest(strategy, op)
    assert second.specs.data_fingerprint == mf.load_data(bars, cache=False).attrs["fingerprint"]
    assert second.run_id != first.run_id
    assert second.metrics != first.metrics


@pytest.fixture
def basket_reads(monkeypatch):
    """Counts every file parse behind load_instrument (its own reads and load_data's)."""
    from metaflow_nb.data import basket

    calls: list[Path] = []
    real = loader._read_file

    def counting(path, *args, **kwargs):
        calls.append((path, kwargs.get("nrows")))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loader, "_read_file", counting)
    monkeypatch.setattr(basket, "_read_file", counting)
    return calls


@pytest.mark.parametrize("prices", ["ohlc", "close_only"])
def test_an_instrument_file_is_read_once_while_unchanged(tmp_path, fresh_data_cache, basket_reads, prices):
    """A basket run again (the explorer, a second backtest) reads none of its files again;
    a rewritten file is read again, and a slice is the same as from a fresh read."""
    from metaflow_nb.data.basket import load_instrument

    df = _frame(seed=3)
    p = _write(df[["close"]] if prices == "close_only" else df, tmp_path / "X.csv")
    a, aware = load_instrument(p, "X", prices=prices)
    n = len(basket_reads)
    b, _ = load_instrument(p, "X", prices=prices)
    c, _ = load_instrument(p, "X", prices=prices, start="2021-01-02", end="2021-01-03")
    assert len(basket_reads) == n and aware is False
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs == b.attrs and len(c) == 48
    assert c.attrs["fingerprint"] == mf.data.data_fingerprint(c)
    # the whole file was parsed once (hunt37 F3: its columns' facts parsed it a second time)
    assert sum(1 for _, nrows in basket_reads if nrows is None) == 1
    b.iloc[0, 0] = -1.0  # a frame of its own
    assert load_instrument(p, "X", prices=prices)[0].iloc[0, 0] == a.iloc[0, 0]
    if prices == "close_only":
        assert a.attrs["prices"] == "close_only" and (a["high"] == a["close"]).all()
    _write(_frame(seed=4)[["close"]] if prices == "close_only" else _frame(seed=4), p)
    d, _ = load_instrument(p, "X", prices=prices)
    assert len(basket_reads) > n and d.attrs["fingerprint"] != a.attrs["fingerprint"]


def test_a_close_only_file_with_ranges_is_refused_every_time(tmp_path, fresh_data_cache):
    from metaflow_nb.data.basket import load_instrument
    from metaflow_nb.errors import DataError

    p = _write(_frame(), tmp_path / "X.csv")
    for _ in range(2):  # errors are not cached away
        with pytest.raises(DataError, match="instrument 'X': .*has open/high/low columns"):
            load_instrument(p, "X", prices="close_only")
    q = _write(_frame()[["close"]], tmp_path / "Y.csv")
    for _ in range(2):
        with pytest.raises(DataError, match="instrument 'Y': .*set prices: close_only"):
            load_instrument(q, "Y")


def test_runs_on_other_bars_of_the_same_file_and_length_never_share_a_cache():
    """hunt22 F1: the feature cache was keyed by the file's fingerprint, start, end and bar
    count; daily bars cut on UTC days and on London days are other bars of the same count,
    and the second run filled at the first run's prices under its own run id."""
    import numpy as np
    import yaml

    import metaflow_nb as mf
    from metaflow_nb.services.operation import OperationService
    base = yaml.safe_load(open("config/operations/ict_backtest.yaml"))

    def op(day):
        return {**base, "data": {**base["data"], "timeframe": "1d", "trading_day": day}}

    svc = OperationService()
    a = svc.run(mf.build_specs("config/runs/sma_cross.yaml", op("utc")))
    b = svc.run(mf.build_specs("config/runs/sma_cross.yaml", op("Europe/London")))
    fresh = OperationService().run(b.specs)
    assert len(a.data) == len(b.data) and not a.data.equals(b.data)
    assert b.metrics == fresh.metrics
    # a market entry fills at the open of its own bar
    np.testing.assert_array_equal(b.trades["entry_price"].to_numpy(),
                                  b.data["open"].reindex(b.trades["entry_time"]).to_numpy())


def test_a_universe_of_hundreds_of_files_stays_cached_between_runs(tmp_path, fresh_data_cache, reads):
    """hunt37 F2: the cache held 128 entries and a universe file takes two (its columns'
    facts and its frame): from 65 instruments on every run read every file again (0.66 s
    -> 3.3 s a repeat run). Memory is bounded by bytes; entries no longer evict first."""
    files = [_write(_frame(60, seed=k), tmp_path / f"S{k:03d}.parquet") for k in range(300)]
    for p in files:
        mf.load_data(p)
    assert len(reads) == 300
    for p in files:
        mf.load_data(p)
    assert len(reads) == 300
