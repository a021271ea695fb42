"""The bundled exit-rule comparison, ``config/variants/exit_rules_eurusd.yaml``: it
translates, each variant's workforce holds the exit planners it is named for, ``make
demo`` reports it, and a short end-to-end comparison on a slice of ``eurusd_15m`` shows
each rule at work (trailing and break-even stops as STOP_LOSS exits at moved stops;
SESSION_EXIT and TIME_STOP exits in the third variant).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import metaflow_nb as mf
from metaflow_nb.reporting import showcase
from metaflow_nb.services.variants import VariantTestService

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "config/variants/exit_rules_eurusd.yaml"
NAMES = ["fixed_2r", "trailing_atr_breakeven", "time_and_session"]
#: three months of 15-minute bars: every rule fires, the whole comparison takes ~1 s
START, END = "2023-03-01", "2023-05-31"
TIME_STOP_BARS = 24
SESSION_AT = (21, 45)


@pytest.fixture(scope="module")
def built():
    model, base, variants = VariantTestService().build(CONFIG)
    return model, base, {name: specs for name, _, specs in variants}


def exit_planners(specs) -> dict[str, tuple[str, dict]]:
    return {e.instance_id: (e.plugin, dict(e.params)) for e in specs.entries() if e.section == "exit_planning"}


# ---------------------------------------------------------------- the config

def test_bundled_config_translates_with_the_three_variants(built):
    model, base, specs = built
    assert model.name == "Exit Rules on EURUSD 15m"
    assert list(specs) == NAMES
    assert base.operation["data"]["source"] == "eurusd_15m"
    for s in specs.values():
        assert s.params("entry_1") == base.params("entry_1")  # same entries, same sizing
        assert s.params("size_1") == base.params("size_1")


def test_variants_hold_the_intended_exit_planners(built):
    _, _, specs = built
    stop = {"atr_multiplier": 2.0, "atr_period": 14}
    fixed = exit_planners(specs["fixed_2r"])
    assert {k: p for k, (p, _) in fixed.items()} == {"exit_1": "atr_based_stops"}
    assert fixed["exit_1"][1] == {**stop, "target_r": 2.0}

    trail = exit_planners(specs["trailing_atr_breakeven"])
    assert {k: p for k, (p, _) in trail.items()} == {
        "exit_1": "atr_based_stops", "trail_1": "trailing_stop", "breakeven_1": "break_even"}
    assert trail["exit_1"][1] == {**stop, "target_r": None}  # the same initial stop, no target
    assert trail["trail_1"][1]["mode"] == "atr" and trail["trail_1"][1]["atr_multiple"] == 3.0
    assert trail["breakeven_1"][1] == {"after_r": 1.0}

    timed = exit_planners(specs["time_and_session"])
    assert {k: p for k, (p, _) in timed.items()} == {
        "exit_1": "atr_based_stops", "time_1": "time_stop_exit", "session_1": "session_exit"}
    assert timed["exit_1"][1] == {**stop, "target_r": 2.0}
    assert timed["time_1"][1] == {"bars": TIME_STOP_BARS}
    assert timed["session_1"][1] == {"at": "21:45", "zone": "UTC", "timezone": "UTC"}


def test_make_demo_reports_the_comparison(monkeypatch):
    assert CONFIG in showcase.CONFIGS
    # its 3 pages start at once on 2 cores (a page waits on its kernel's start a good while)
    monkeypatch.setattr(showcase.os, "cpu_count", lambda: 2)
    assert showcase.workers_for(ROOT / CONFIG) == 3
    assert showcase.workers_for(ROOT / "config/variants/exit_strategy_test.yaml") is None  # 2 pages: the default
    monkeypatch.setattr(showcase.os, "cpu_count", lambda: 8)
    assert showcase.workers_for(ROOT / CONFIG) is None


# ---------------------------------------------------------------- end to end, on a slice

@pytest.fixture(scope="module")
def sliced(tmp_path_factory):
    """The bundled comparison on START..END: its variants as written, its operation with a
    date range (``data.start`` / ``data.end``)."""
    tmp = tmp_path_factory.mktemp("exit_rules")
    op = yaml.safe_load((ROOT / "config/operations/ict_backtest.yaml").read_text())
    op["data"].update(start=START, end=END)
    (tmp / "operation.yaml").write_text(yaml.safe_dump(op))
    doc = yaml.safe_load((ROOT / CONFIG).read_text())
    body = doc["variant_config"]
    body["base_operation"] = str(tmp / "operation.yaml")
    body["base_strategy"] = str(ROOT / body["base_strategy"])
    (tmp / "variants.yaml").write_text(yaml.safe_dump(doc))
    cmp = mf.compare_variants(tmp / "variants.yaml", backend="sequential", progress=False)
    return {v.name: v for v in cmp.variants}


def reasons(run) -> dict[str, int]:
    return run.result.trades["exit_reason"].value_counts().to_dict()


def signs(trades) -> np.ndarray:
    return np.where(trades["direction"].to_numpy() == "long", 1.0, -1.0)


def test_sliced_comparison_runs_every_variant_on_the_slice(sliced):
    assert list(sliced) == NAMES
    for v in sliced.values():
        assert v.ok, v.outcome.error
        res = v.result
        assert str(res.data.index[0].date()) == START and str(res.data.index[-1].date()) == END
        assert len(res.trades) > 10
    # the exit rules change what happens: no two variants end their trades alike
    seen = [tuple(sorted(reasons(v).items())) for v in sliced.values()]
    assert len(set(seen)) == len(seen), seen


def test_fixed_2r_ends_at_its_stop_or_its_target(sliced):
    r = reasons(sliced["fixed_2r"])
    assert r.get("STOP_LOSS", 0) > 0 and r.get("TAKE_PROFIT", 0) > 0
    assert set(r) <= {"STOP_LOSS", "TAKE_PROFIT", "END_OF_DATA"}
    tr = sliced["fixed_2r"].result.trades
    d = signs(tr)
    # the stop never moved: every stop is on the losing side of the entry
    assert (d * (tr["stop_price"].to_numpy() - tr["entry_price"].to_numpy()) < 0).all()


def test_trailing_and_break_even_exits_are_stop_losses_at_moved_stops(sliced):
    tr = sliced["trailing_atr_breakeven"].result.trades
    r = reasons(sliced["trailing_atr_breakeven"])
    assert set(r) <= {"STOP_LOSS", "END_OF_DATA"} and r["STOP_LOSS"] > 0  # no target, no time rules
    assert tr["target_price"].isna().all()
    d = signs(tr)
    gain = d * (tr["stop_price"].to_numpy() - tr["entry_price"].to_numpy())
    sl = (tr["exit_reason"] == "STOP_LOSS").to_numpy()
    # an initial stop is 2 ATRs on the losing side: a stop at or past the entry has moved
    moved = sl & (gain >= 0)
    assert moved.sum() >= 3
    assert (sl & (gain > 0)).sum() >= 1  # trailed past the break-even level
    # filled at the stop, or at a worse open when a bar gaps through it (no slippage here)
    px = tr["exit_price"].to_numpy()[sl]
    assert (d[sl] * (px - tr["stop_price"].to_numpy()[sl]) <= 0).all()


def test_time_and_session_exits_appear_where_they_should(sliced):
    run = sliced["time_and_session"]
    tr, data = run.result.trades, run.result.data
    r = reasons(run)
    assert r.get("SESSION_EXIT", 0) > 0 and r.get("TIME_STOP", 0) > 0
    assert set(r) <= {"STOP_LOSS", "TAKE_PROFIT", "SESSION_EXIT", "TIME_STOP", "END_OF_DATA"}

    session = tr[tr["exit_reason"] == "SESSION_EXIT"]
    bars = session["exit_bar"].to_numpy()
    times = data.index[bars]
    assert all((t.hour, t.minute) >= SESSION_AT for t in times)
    assert np.array_equal(session["exit_price"].to_numpy(), data["close"].to_numpy()[bars])  # at the close
    # at the first bar at or after 21:45 of its day, unless the trade was opened after it
    # (then at its fill bar's close)
    prev = data.index[bars - 1]
    first = [p.date() != t.date() or (p.hour, p.minute) < SESSION_AT for p, t in zip(prev, times)]
    assert all(f or e == x for f, e, x in zip(first, session["entry_bar"], bars))

    timed = tr[tr["exit_reason"] == "TIME_STOP"]
    assert (timed["exit_bar"] - timed["entry_bar"] == TIME_STOP_BARS).all()
    assert np.array_equal(timed["exit_price"].to_numpy(), data["open"].to_numpy()[timed["exit_bar"].to_numpy()])
    # nothing outlives the time stop, nothing is open past the session's end
    assert ((tr["exit_bar"] - tr["entry_bar"]) <= TIME_STOP_BARS).all()


def test_the_api_date_range_gives_the_comparison_s_runs(built, sliced):
    """``mf.backtest(specs, start=, end=)`` on each bundled variant is the sliced
    comparison's run, trade for trade."""
    _, _, specs = built
    for name in NAMES:
        res = mf.backtest(specs[name], start=START, end=END)
        got, want = res.trades, sliced[name].result.trades
        assert got[["entry_bar", "exit_bar", "exit_reason"]].equals(want[["entry_bar", "exit_bar", "exit_reason"]])
        assert np.array_equal(got["exit_price"].to_numpy(), want["exit_price"].to_numpy())
        a, b = res.metrics["sharpe_ratio"], sliced[name].result.metrics["sharpe_ratio"]
        assert a == b or (math.isnan(a) and math.isnan(b))
