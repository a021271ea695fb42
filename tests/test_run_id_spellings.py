"""One run, one run id: the resolved config spells a date range and a clock one way, so
the run id (the hash of the resolved config) does not follow how they were written
(hunt83 F1): a notebook's ``pd.Timestamp``, a CLI string and a YAML date name the same run,
``--resume`` finds it, and the store does not list it twice."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metaflow_nb as mf
from metaflow_nb.config.models import canonical_bound
from metaflow_nb.errors import ConfigError
from metaflow_nb.data.loader import _between

ROOT = Path(__file__).resolve().parents[1]
SMA = str(ROOT / "config/runs/sma_cross.yaml")


def specs(**kw):
    return mf.build_specs(SMA, data="sp500_daily", **kw)


@pytest.mark.parametrize("start", ["2005-1-3", "2005-01-03T00:00:00", "2005-01-03 00:00", pd.Timestamp("2005-01-03"),
                                   dt.date(2005, 1, 3), "2005-01-03T00:00:00Z", "2005-01-03T09:00:00+09:00",
                                   " 2005-01-03 "])
def test_spellings_of_one_start_name_one_run(start):
    one = specs(start="2005-01-03", end="2006-12-31")
    other = specs(start=start, end="2006-12-31")
    assert other.hash == one.hash and other.data_start == "2005-01-03"


@pytest.mark.parametrize("a, b", [
    ("2006-12-31T16:00", "2006-12-31 16:00"),
    ("2006-12-31T18:00:00+02:00", "2006-12-31T16:00:00Z"),
    ("2006-12-31", "31.12.2006"),
    ("2006-12", "2006-12"),
])
def test_spellings_of_one_end_name_one_run(a, b):
    assert specs(start="2005-01-03", end=a).hash == specs(start="2005-01-03", end=b).hash


@pytest.mark.parametrize("a, b", [
    # an end keeps its period: on intraday bars these select different bars
    ("2006-12-31", "2006-12-31 00:00"),
    ("2006-12-31 00:00", "2006-12-31 00:00:00"),
    ("2006-12-31", "2006-12-31T00:00:00Z"),
    ("2006-12", "2006-12-31"),
])
def test_ends_of_different_periods_stay_different_runs(a, b):
    assert specs(start="2005-01-03", end=a).hash != specs(start="2005-01-03", end=b).hash


def test_a_bound_pandas_reads_differently_is_kept_as_written():
    # a quarter is no spelling of its own; unknown text never reaches here (date_problem)
    assert canonical_bound("2006Q4", "end") == "2006Q4"
    assert canonical_bound("2006Q4", "start") == "2006-10-01"


@pytest.mark.parametrize("zone", ["Etc/UTC", "Zulu", "GMT", "Etc/Universal"])
def test_names_of_utc_name_one_run(zone, tmp_path):
    op = {"data": {"source": "sp500_daily", "timezone": zone}}
    utc = mf.build_specs(SMA, {"data": {"source": "sp500_daily", "timezone": "UTC"}})
    other = mf.build_specs(SMA, op)
    assert other.hash == utc.hash and other.data_read_options.get("timezone") == "UTC"


def test_a_date_range_over_a_basket_is_one_run_however_spelled():
    from metaflow_nb.services.portfolio import run_portfolio

    op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}}
    a = run_portfolio(SMA, {**op, "data": {"start": "2013-01-02", "end": "2014-06-30"}}).basket_specs
    b = run_portfolio(SMA, {**op, "data": {"start": "2013-1-2T00:00:00", "end": "2014-06-30"}}).basket_specs
    assert a.run_id == b.run_id and a.hash == b.hash


def test_the_error_names_the_bounds_as_written(tmp_path):
    op = tmp_path / "op.yaml"
    op.write_text("name: o\ndata:\n  source: sp500_daily\n  start: 2009-12-31T03:00+02:00\n  end: 2009-12-30 23:30\n")
    with pytest.raises(ConfigError, match=r"start 2009-12-31T03:00\+02:00 is after end 2009-12-30 23:30"):
        mf.build_specs(SMA, str(op))


def test_the_cli_gives_one_run_id_for_spellings_of_one_start():
    ids = set()
    for start in ("2005-01-03", "2005-1-3", "2005-01-03T00:00:00Z"):
        out = subprocess.run([sys.executable, "-m", "metaflow_nb.cli", "backtest", "--strategy", SMA, "--data",
                              "sp500_daily", "--start", start, "--end", "2006-12-31", "--json"],
                             capture_output=True, text=True, cwd=ROOT, check=True)
        ids.add(json.loads(out.stdout)["run_id"])
    assert len(ids) == 1


# -- the canonical spelling selects exactly the bars the written one does ---------------

_UNITS = ["D", "h", "min", "s", "ms", "us", "ns"]
_FORMATS = {"D": ["%Y-%m-%d", "%Y-%-m-%-d", "%d.%m.%Y", "%Y%m%d"], "h": ["%Y-%m-%dT%H", "%Y-%m-%d %H"],
            "min": ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"], "s": ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]}


def _written(stamp: pd.Timestamp, unit: str, aware: int) -> str:
    if aware:   # an instant with an offset
        local = stamp.tz_localize("UTC").tz_convert(dt.timezone(dt.timedelta(hours=aware)))
        return local.isoformat()
    if unit in _FORMATS:
        return stamp.strftime(_FORMATS[unit][stamp.value % len(_FORMATS[unit])])
    digits = {"ms": 3, "us": 6, "ns": 9}[unit]
    ns = stamp.microsecond * 1000 + stamp.nanosecond
    return stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{ns:09d}"[:digits]


@settings(max_examples=300, deadline=None)
@given(day=st.integers(0, 3000), offset_ns=st.integers(0, 86_400 * 10**9 - 1), unit=st.sampled_from(_UNITS),
       aware=st.sampled_from([0, 0, 0, 2, -5]), side=st.sampled_from(["start", "end"]))
def test_the_canonical_bound_selects_the_bars_the_written_one_does(day, offset_ns, unit, aware, side):
    stamp = (pd.Timestamp("2001-01-01") + pd.Timedelta(days=day) + pd.Timedelta(offset_ns, "ns")).floor(
        {"D": "D", "h": "h", "min": "min", "s": "s", "ms": "ms", "us": "us", "ns": "ns"}[unit])
    text = _written(stamp, unit, aware)
    canon = canonical_bound(text, side)
    # bars at every unit's boundary around the instant, one nanosecond either side
    steps = [pd.Timedelta(1, u) for u in _UNITS] + [pd.Timedelta(0)]
    times = sorted({stamp + sign * s + e for s in steps for sign in (-1, 1)
                    for e in (pd.Timedelta(0), pd.Timedelta(1, "ns"), -pd.Timedelta(1, "ns"))})
    df = pd.DataFrame({"x": np.arange(len(times))}, index=pd.DatetimeIndex(times))
    bounds = (lambda b: (b, None)) if side == "start" else (lambda b: (None, b))
    assert _between(df, *bounds(text), "t").index.equals(_between(df, *bounds(canon), "t").index), (text, canon)
    assert canonical_bound(canon, side) == canon   # settled


def test_an_intrabar_file_is_one_run_wherever_it_sits(tmp_path):
    """hunt118 F1: two copies of one folder (an operation, its data and intrabar files) gave
    two run ids: data.intrabar's absolute path was hashed beside its content fingerprint
    (data.source's is left out: a moved file keeps its run ids)."""
    import shutil

    from metaflow_nb.data.loader import sample_path

    ids = []
    for name in ("a", "b"):
        d = tmp_path / name / "deeper"
        d.mkdir(parents=True)
        shutil.copy(sample_path("eurusd_15m"), d / "e15.csv.gz")
        hourly = mf.load_data("eurusd_15m").resample("1h").agg(
            {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}).dropna()
        hourly.to_csv(d / "h1.csv")
        op = {"name": "ib", "data": {"source": str(d / "h1.csv"), "intrabar": str(d / "e15.csv.gz")}}
        specs = mf.build_specs("config/runs/sma_cross.yaml", op)
        assert specs.data_intrabar_fingerprint
        ids.append((specs.run_id, specs.hash))
    assert ids[0] == ids[1]
    # another intrabar file's content is another run
    other = tmp_path / "a" / "deeper" / "e15_cut.csv"
    mf.load_data("eurusd_15m").iloc[:-200].to_csv(other)
    op["data"]["intrabar"] = str(other)
    assert mf.build_specs("config/runs/sma_cross.yaml", op).run_id != ids[0][0]
