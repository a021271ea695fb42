"""``mf.check_causality`` and ``metaflow-nb check-causality``: prefix replay finds look-ahead.

A deliberately repainting context worker (a centred rolling maximum, which reads ``w``
bars past the bar it stamps) and an opportunity worker built on it are flagged at the
bar where they must first change: for a cut ``k`` the first bar whose centred window
reaches past the cut is ``k - w``, and on rising prices the value there does change.
On real data the expected bars come from a plain-Python reference of the definition.
Every bundled strategy and every built-in worker passes; end-of-data effects of a prefix
run (no order on its last bar, ``finalize_trades``) are not findings.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.data import load_data
from metaflow_nb.errors import ConfigError
from metaflow_nb.services.causality import CausalityResult, check_causality, choose_cuts
from metaflow_nb.workers.base import (
    ContextWorker, ExitPlan, ExitPlanner, OpportunityWorker, Params, Signals, known_plugins, param, register,
)
from metaflow_nb.engine import codes

W = 5  # the repainting window: bars on each side


class PeakParams(Params):
    window: int = param(W, ge=1, description="bars on each side of the centred window")


@register
class CentredPeak(ContextWorker):
    """``peak[i] = max(close[i-w : i+w+1])``: reads ``w`` bars into the future (repaints)."""

    name = "centred_peak"
    Params = PeakParams

    def compute(self, ctx):
        w, c = self.params.window, ctx.close
        return {"peak": np.array([c[max(0, i - w): i + w + 1].max() for i in range(ctx.n)])}


@register
class AtCentredPeak(OpportunityWorker):
    """Short where the close is the centred peak: a 'swing high' that repaints."""

    name = "at_centred_peak"
    Params = PeakParams

    def detect(self, ctx):
        peak = ctx.feature("centred_peak", {"window": self.params.window})["peak"]
        return Signals.from_direction(np.where(ctx.close >= peak, -1, 0).astype(np.int8))


@register
class NextLowStop(ExitPlanner):
    """A stop at the low of the bar after the signal bar: known only one bar later."""

    name = "next_low_stop"
    provides_stop = True

    def plan(self, ctx, opps, entry):
        nxt = np.minimum(opps.bar + 1, ctx.n - 1)
        return ExitPlan(stop_mode=codes.PRICE_ABSOLUTE, stop=ctx.low[nxt].astype(np.float64))


@register
class NoisyFeature(ContextWorker):
    """Random numbers: different on every run, whatever the data."""

    name = "noisy_feature"

    def compute(self, ctx):
        return {"noise": np.random.default_rng().normal(size=ctx.n)}


def strategy(opportunity: str = "at_centred_peak", window: int = W) -> dict:
    return {"name": "repainting_peak", "workforce": {
        "context_workers": [{"instance_id": "peak_1", "plugin": "centred_peak", "params": {"window": window}}],
        "opportunity_workers": [{"instance_id": "at_peak_1", "plugin": opportunity, "params": {"window": window}}],
        "planning_workers": {
            "entry_planning": [{"instance_id": "entry_1", "plugin": "market_entry"}],
            "exit_planning": [{"instance_id": "exit_1", "plugin": "reverse_on_opposite"}],
            "size_planning": [{"instance_id": "size_1", "plugin": "all_in_sizer"}]}}}


def rising(n: int = 600) -> pd.DataFrame:
    """Strictly rising closes: every centred window that reaches past a cut loses its maximum."""
    close = 100.0 + 0.5 * np.arange(n)
    idx = pd.date_range("2020-01-01", periods=n, freq="D", name="time")
    df = pd.DataFrame({"open": close - 0.2, "high": close + 0.3, "low": close - 0.5, "close": close,
                       "volume": np.full(n, 1000.0)}, index=idx)
    return load_data(df)


def reference_first_changes(close: np.ndarray, cuts: list[int], w: int) -> dict[str, tuple[int, int]]:
    """Plain-Python reference: per output, (first changed bar over all cuts, the cut)."""
    n = len(close)
    full = [max(close[max(0, i - w): i + w + 1]) for i in range(n)]
    out: dict[str, tuple[int, int]] = {}
    for k in cuts:
        part = [max(close[max(0, i - w): min(k, i + w + 1)]) for i in range(k)]
        for name, changed in (("peak", [part[i] != full[i] for i in range(k)]),
                              ("direction", [(close[i] >= part[i]) != (close[i] >= full[i]) for i in range(k)])):
            if any(changed):
                bar = changed.index(True)
                if name not in out or bar < out[name][0]:
                    out[name] = (bar, k)
    return out


# ---------------------------------------------------------------- flagged at the right bar

def test_repainting_worker_is_flagged_at_the_cut_minus_its_window():
    cuts = [300, 420, 555]
    res = mf.check_causality(strategy(), data=rising(), cuts=cuts)
    assert isinstance(res, CausalityResult) and not res.ok
    f = res.findings.set_index(["worker", "output"])
    # the first bar whose centred window reaches past the earliest cut
    assert f.loc[("peak_1", "peak"), "first_bar"] == 300 - W
    assert f.loc[("peak_1", "peak"), "cut"] == 300
    assert f.loc[("peak_1", "peak"), "cuts_flagged"] == "3/3"
    # on the prefix the window stops at bar 299; on the full data it reaches bar 300
    assert f.loc[("peak_1", "peak"), "prefix"] == 100.0 + 0.5 * 299
    assert f.loc[("peak_1", "peak"), "full"] == 100.0 + 0.5 * 300
    # rising prices: the close is the peak only on the prefix's last bar
    assert f.loc[("at_peak_1", "direction"), "first_bar"] == 299
    assert (f.loc[("at_peak_1", "direction"), "prefix"], f.loc[("at_peak_1", "direction"), "full"]) == (-1, 0)
    assert set(res.findings["kind"]) == {"look-ahead"}
    # the root cause comes first
    assert res.findings.iloc[0]["worker"] == "peak_1"
    assert "peak_1.peak: first changed at bar 295 (2020-10-22), cut 300 (3/3 cuts): prefix 249.5, full 250.0" \
        in repr(res)


def test_repainting_worker_on_real_data_matches_a_reference():
    bars = load_data("sp500_daily")
    cuts = [2600, 3050, 4571]
    res = mf.check_causality(strategy(), data=bars, cuts=cuts)
    want = reference_first_changes(bars["close"].to_numpy(), cuts, W)
    f = res.findings.set_index(["worker", "output"])
    assert (f.loc[("peak_1", "peak"), "first_bar"], f.loc[("peak_1", "peak"), "cut"]) == want["peak"]
    assert (f.loc[("at_peak_1", "direction"), "first_bar"],
            f.loc[("at_peak_1", "direction"), "cut"]) == want["direction"]
    # a changed signal changes the run: the journal is flagged, not before the signal
    assert f.loc[("run", "journal"), "first_bar"] >= want["direction"][0]
    assert res.findings["first_bar"].is_monotonic_increasing


def test_cli_flags_the_repainting_strategy(tmp_path, capsys):
    import yaml

    cfg = tmp_path / "repainting.yaml"
    cfg.write_text(yaml.safe_dump(strategy()))
    assert main(["check-causality", str(cfg), "--data", "sp500_daily", "--cuts", "3050,4000"]) == 1
    out = capsys.readouterr().out
    bar = reference_first_changes(load_data("sp500_daily")["close"].to_numpy(), [3050, 4000], W)["peak"][0]
    assert f"peak_1.peak: first changed at bar {bar} " in out
    assert "LOOK-AHEAD" in out

    assert main(["check-causality", str(cfg), "--data", "sp500_daily", "--cuts", "2", "--seed", "3",
                 "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    # 2 random cuts, and 2 more just after setups (a strategy)
    assert doc["ok"] is False and len(doc["cuts"]) == 4 and doc["seed"] == 3
    assert {"peak_1", "at_peak_1"} <= {r["worker"] for r in doc["findings"]}


# ---------------------------------------------------------------- one worker

def test_single_worker_by_plugin_name():
    bad = mf.check_causality("centred_peak", params={"window": 3}, data=rising(), cuts=[400])
    assert not bad.ok
    assert bad.findings[["worker", "output", "first_bar", "cut"]].values.tolist() == [
        ["centred_peak", "peak", 397, 400]]
    good = mf.check_causality("ema", params={"period": 10}, data=rising(), cuts=[400])
    assert good.ok and good.compared == [("ema", "ema")]


def test_single_worker_as_instance_class_and_cli(capsys):
    inst = CentredPeak("my_peak", CentredPeak.Params(window=2))
    res = mf.check_causality(inst, data=rising(), cuts=[100, 200])
    assert res.findings.loc[0, ["worker", "first_bar"]].tolist() == ["my_peak", 98]
    assert not mf.check_causality(CentredPeak, data=rising(), cuts=[100]).ok
    # an opportunity worker alone: the feature it requests is compared too
    res = mf.check_causality("at_centred_peak", data=rising(), cuts=[100])
    flagged = set(zip(res.findings.worker, res.findings.output))
    assert ("ctx.feature('centred_peak', {'window': 5})", "peak") in flagged
    assert ("at_centred_peak", "direction") in flagged
    assert main(["check-causality", "centred_peak", "--params", '{"window": 4}', "--data", "sp500_daily",
                 "--cuts", "3"]) == 1
    assert main(["check-causality", "atr", "--params", '{"period": 5}', "--data", "sp500_daily",
                 "--cuts", "3"]) == 0
    capsys.readouterr()


def test_planner_alone_plans_a_setup_on_every_bar():
    res = mf.check_causality("next_low_stop", data=rising(), cuts=[250])
    f = res.findings.set_index(["worker", "output"])
    # the setup stamped on the prefix's last bar has no next bar there
    assert f.loc[("next_low_stop", "stop"), "first_bar"] == 249
    assert (f.loc[("next_low_stop", "stop"), "prefix"], f.loc[("next_low_stop", "stop"), "full"]) == \
        (100.0 + 0.5 * 249 - 0.5, 100.0 + 0.5 * 250 - 0.5)


def test_random_worker_is_not_reproducible_rather_than_look_ahead():
    res = mf.check_causality("noisy_feature", data=rising(200), cuts=2)
    assert res.findings[["output", "kind", "first_bar"]].values.tolist() == [["noise", "not reproducible", 0]]
    assert "not reproducible" in repr(res)


# ---------------------------------------------------------------- causal things pass

BUNDLED = {
    "config/runs/ict_smc_strategy.yaml": "config/operations/ict_backtest.yaml",
    "config/runs/ict_htf_bias_strategy.yaml": "config/operations/ict_backtest.yaml",
    "config/runs/sma_cross.yaml": "config/operations/sp500_daily.yaml",
    "config/runs/sma_cross_long_stops.yaml": "config/operations/sp500_daily.yaml",
}


def test_every_bundled_config_is_listed():
    from pathlib import Path
    assert {str(p) for p in Path("config/runs").glob("*.yaml")} == set(BUNDLED)


@pytest.mark.parametrize("config", sorted(BUNDLED))
def test_bundled_strategies_pass(config):
    res = mf.check_causality(config, operation=BUNDLED[config], cuts=2, seed=1)
    assert res.ok, repr(res)
    outputs = set(res.compared)
    assert {("run", "journal"), ("run", "trades")} <= outputs
    assert any(o == "direction" for _, o in outputs)


def _builtin_plugins() -> list[str]:
    from metaflow_nb.workers.base import get_plugin
    return [p for p in known_plugins() if get_plugin(p).__module__.startswith("metaflow_nb.")]


@pytest.mark.parametrize("plugin", _builtin_plugins())
def test_every_builtin_worker_passes_alone(plugin, eurusd):
    res = mf.check_causality(plugin, data=eurusd.iloc[:3000], operation="config/operations/ict_backtest.yaml",
                             cuts=2)
    assert res.ok, repr(res)


def test_end_of_data_effects_are_not_findings(sp500):
    """Cut right after setups (the prefix's last bar would place an order the full run
    places) with finalize_trades (the prefix closes its position on its last bar)."""
    op = {"data": {"source": "sp500_daily"}, "instrument": {"pip_size": 0.01}, "finalize_trades": True}
    run = mf.backtest("config/runs/sma_cross.yaml", op)
    detected = run.journal[run.journal.event == "OPPORTUNITY_DETECTED"].bar.to_numpy()
    placed = set(run.journal[run.journal.event == "ORDER_PLACED"].bar)
    cuts = [int(b) + 1 for b in detected[detected > 2500][:4] if b in placed]
    assert len(cuts) == 4
    res = mf.check_causality("config/runs/sma_cross.yaml", operation=op, cuts=cuts)
    assert res.ok, repr(res)


# ---------------------------------------------------------------- cuts and bad input

def test_random_cuts_are_seeded_spread_and_leave_a_bar_out():
    a = choose_cuts(1000, 6, seed=5)
    assert a == choose_cuts(1000, 6, seed=5) != choose_cuts(1000, 6, seed=6)
    assert a == sorted(set(a)) and len(a) == 6 and 500 <= a[0] and a[-1] <= 999
    # one per sixth of the second half
    assert [(k - 500) * 6 // 500 for k in a] == list(range(6))
    assert choose_cuts(1000, 3, first=900) >= [901] and choose_cuts(1000, 3, first=900)[-1] <= 999
    assert choose_cuts(10, 50) == list(range(5, 10))  # no more cuts than bars to cut at


@pytest.mark.parametrize("cuts", [[0], [1000], [-1001], [], ["x"], 0])
def test_bad_cuts_are_config_errors(cuts):
    with pytest.raises(ConfigError, match="cuts"):
        choose_cuts(1000, cuts)


def test_bad_input_exits_2(capsys):
    assert main(["check-causality", "config/runs/no_such_strategy.yaml"]) == 2
    assert "no_such_strategy.yaml" in capsys.readouterr().err
    assert main(["check-causality", "config/runs/sma_cross.yaml", "--cuts", "many"]) == 2
    assert main(["check-causality", "config/runs/sma_cross.yaml", "--cuts", "10,999999"]) == 2
    assert main(["check-causality", "atr", "--params", '{"period": 0}']) == 2
    assert main(["check-causality", "atr", "--params", "[1]"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 4 and "Traceback" not in err
    with pytest.raises(ConfigError, match="params"):
        mf.check_causality("config/runs/sma_cross.yaml", params={"fast": 3})


def test_result_reads_well():
    res = mf.check_causality("config/runs/sma_cross.yaml", data="sp500_daily", cuts=[3000, 4000])
    assert repr(res).splitlines() == [
        "causality check of config/runs/sma_cross.yaml on sp500_daily (5031 bars), 2 cuts at 3000, 4000",
        f"ok: none of {len(res.compared)} outputs changed before a cut"]
    assert "ok" in res._repr_html_()
    bad = mf.check_causality(strategy(), data=rising(), cuts=[300])
    html = bad._repr_html_()
    assert "look-ahead" in html and "<table" in html and "peak_1" in html
    doc = bad.to_dict()
    assert doc["ok"] is False and doc["findings"][0]["time"].startswith("2020-10-22")
    json.dumps(doc)


def test_a_name_that_is_neither_a_file_nor_a_plugin_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^'atrr': neither a file nor a known plugin: unknown plugin 'atrr'; "
                                          r"known plugins: .*\batr\b.*; a plugin of your own needs its module "
                                          r"declared \(plugins: \[module\] in the strategy, --plugins module, or "
                                          r"mf.use_plugins\)$"):
        mf.check_causality("atrr", data="sp500_daily", cuts=[100])
    assert main(["check-causality", "atrr", "--data", "sp500_daily", "--cuts", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "neither a file nor a known plugin" in err and "file not found" not in err
    # a YAML path that does not exist is still a missing file
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        mf.check_causality("nope.yaml", data="sp500_daily", cuts=[100])


def test_a_declared_module_class_reference_is_a_worker(tmp_path, monkeypatch):
    (tmp_path / "causal_ref_workers.py").write_text(
        "from metaflow_nb.workers.base import ContextWorker, Params\n"
        "import numpy as np\n"
        "class Ones(ContextWorker):\n"
        "    name = 'ones_unregistered'\n"
        "    Params = Params\n"
        "    def compute(self, ctx):\n"
        "        return {'one': np.ones(ctx.n)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check-causality", "causal_ref_workers:Ones", "--plugins", "causal_ref_workers", "--data",
                 "sp500_daily", "--cuts", "3"]) == 0


def test_a_context_instance_on_a_higher_timeframe_is_named_by_its_instance_id():
    strategy = {"name": "htf", "direction": "long_short", "workforce": {
        "context_workers": [{"instance_id": "peak_1w", "plugin": "centred_peak", "params": {"window": 2},
                             "timeframe": "1w"}],
        "opportunity_workers": [{"instance_id": "sma_1", "plugin": "sma_cross"}],
        "planning_workers": {"exit_planning": [{"instance_id": "r", "plugin": "reverse_on_opposite"}]}}}
    res = mf.check_causality(strategy, data=rising(), cuts=[300, 450])
    assert not res.ok
    assert set(res.findings["worker"]) == {"peak_1w"}, res.findings[["worker", "output"]]


def test_an_unconfigured_higher_timeframe_feature_is_named_by_the_call_that_asks_for_it():
    from metaflow_nb.services.causality import _cached_features, _Observed
    from metaflow_nb.workers.features import FeatureContext

    ctx = FeatureContext(mf.load_data("eurusd_15m").iloc[:2000])
    ctx.feature("atr", {"period": 5, "@timeframe": "4h@fx"})
    obs = _Observed(n=ctx.n)
    _cached_features(obs, ctx, {})
    assert "ctx.feature('atr', {'period': 5, '@timeframe': '4h@fx'})" in {w for w, _ in obs.per_bar}


def test_many_cuts_are_shown_by_their_range():
    res = mf.check_causality("atr", data=rising(200), cuts=list(range(100, 150)))
    head = repr(res).splitlines()[0]
    assert head.endswith("(200 bars), 50 cuts at 100, 101, 102, 103, 104, ..., 148, 149")
    assert res.cuts == list(range(100, 150))


def test_more_random_cuts_than_bars_says_it_cut_at_every_bar():
    """``--cuts 999999`` ran every bar of the second half and the result did not say that
    fewer cuts than asked were made (hunt14)."""
    res = mf.check_causality("ema", params={"period": 3}, data=rising(40), cuts=50)
    assert res.cuts == list(range(20, 40)) and res.asked == 50
    assert repr(res).splitlines()[0].endswith("seed 0 (50 asked: a cut at every bar from 20); 4 early cuts at 2, 4, "
                                              "8, 16")
    assert res.to_dict()["asked"] == 50
    assert mf.check_causality("ema", params={"period": 3}, data=rising(40), cuts=5).asked is None


def test_the_header_names_the_timeframe_its_cuts_are_bars_of():
    # hunt22 F3: "eurusd_15m (6107 bars)" where eurusd_15m has 24,424 bars: the cuts are 1h bars
    res = mf.check_causality("config/runs/sma_cross.yaml", operation="config/operations/ict_1h.yaml", cuts=[3000])
    assert repr(res).splitlines()[0] == ("causality check of config/runs/sma_cross.yaml on eurusd_15m resampled to "
                                         "1h (6107 bars), 1 cut at 3000")


@pytest.mark.parametrize("worker, params", [("previous_period_levels", {"trading_day": "fx"}),
                                            ("previous_period_levels", {"trading_day": "America/New_York"}),
                                            ("higher_timeframe_bias", {"timeframe": "1d", "trading_day": "fx"})])
def test_a_prefix_of_midnights_reads_the_bars_as_the_whole_file_does(worker, params):
    """Whether bars are a file of dates (all at midnight) was decided on whatever bars a
    worker saw: a prefix of a file's midnight bars read as dates, the whole file (with
    intraday bars later) as times, and the first trading day moved (hunt23 F2). It is a
    property of the file, decided once when it is loaded, and prefixes keep it."""
    idx = pd.DatetimeIndex(["2024-01-02 00:00", "2024-01-03 00:00", "2024-01-04 00:00", "2024-01-05 00:00",
                            "2024-01-05 12:00", "2024-01-08 00:00", "2024-01-08 12:00"] +
                           [f"2024-01-{d:02d} {h:02d}:00" for d in range(9, 20) for h in (0, 12)], name="time")
    n = len(idx)
    high = 2.0 + np.arange(n)
    df = pd.DataFrame({"open": 1.0, "high": high, "low": 0.5, "close": 1.0, "volume": 1.0}, index=idx)
    res = mf.check_causality(worker, data=df, cuts=[3, 4, 5], params=params)
    assert res.ok, res.findings.to_string()
    assert mf.load_data(df).attrs["dates_only"] is False and mf.load_data(df.iloc[:4]).attrs["dates_only"] is True


@register
class NextCloseSeries(ContextWorker):
    """The next bar's close, handed back as a pandas Series (``.to_numpy()`` forgotten)."""

    name = "next_close_series"
    Params = Params

    def compute(self, ctx):
        return {"next_close": pd.Series(ctx.close).shift(-1)}


@register
class NanDirection(OpportunityWorker):
    """A direction with a NaN in it: neither long, short nor none."""

    name = "nan_direction"
    Params = Params

    def detect(self, ctx):
        d = np.zeros(ctx.n)
        d[5] = np.nan
        return Signals.from_direction(d)


@register
class NanExit(ExitPlanner):
    """An exit flag that is NaN on one bar."""

    name = "nan_exit"
    Params = Params

    def plan(self, ctx, opps, entry):
        flags = np.zeros(ctx.n)
        flags[7] = np.nan
        return ExitPlan(exit_long=flags)


@pytest.mark.parametrize("plugin, says", [
    ("next_close_series", "next_close is a Series; expected a numpy array"),
    ("nan_direction", "direction at bar 5 is nan"),
    ("nan_exit", "exit_long at bar 7 is nan"),
])
def test_a_worker_checked_alone_has_its_outputs_checked_as_a_run_would(plugin, says, capsys):
    """hunt30 F1: a worker checked alone was never validated: an output that is not one
    array value per bar went "not compared", and a Series of next closes (shift(-1))
    passed with "ok: none of 0 outputs changed", exit 0. Now the run path's checks refuse
    it (PluginError, exit 2), as a strategy using it is refused."""
    from metaflow_nb.errors import PluginError
    with pytest.raises(PluginError, match=says):
        mf.check_causality(plugin, data="sp500_daily", cuts=[3000])
    assert main(["check-causality", plugin, "--data", "sp500_daily", "--cuts", "3000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err


def test_a_trade_finding_is_dated_where_the_trades_first_differ():
    """hunt30 F4: a trade that differed only in its exit was dated by its entry, hundreds of
    bars before the cut, which reads as a look-ahead that long. The trades' finding is the
    first bar where the closed trades differ: the earlier exit of a trade both runs opened
    alike, the exit of one only one run closed, the entry of one entered otherwise."""
    from metaflow_nb.engine.records import JOURNAL_DTYPE, TRADE_DTYPE
    from metaflow_nb.services.causality import _compare, _Observed

    def obs(*trades):
        o = _Observed(n=400)
        o.journal = np.zeros(0, dtype=JOURNAL_DTYPE)
        t = np.zeros(len(trades), dtype=TRADE_DTYPE)
        for row, (entry, exit_, price) in zip(t, trades):
            row["entry_bar"], row["exit_bar"], row["entry_price"], row["exit_price"] = entry, exit_, 10.0, price
            row["direction"], row["size"] = 1, 1.0
        o.trades = t
        return o

    def bar(full, part):
        [f] = [f for f in _compare(full, part, 300) if f["output"] == "trades"]
        return f["first_bar"]

    assert bar(obs((10, 250, 11.0)), obs((10, 280, 12.0))) == 250     # the same entry, other exits
    assert bar(obs((10, 250, 11.0)), obs()) == 250                     # still open in the prefix
    assert bar(obs((10, 250, 11.0)), obs((12, 250, 11.0))) == 10       # entered otherwise


@register
class StopFromLaterLows(ExitPlanner):
    """A stop at the lowest low of the 5 bars after the setup: every level looks ahead."""

    name = "stop_from_later_lows"
    provides_stop = True
    Params = Params

    def plan(self, ctx, opps, entry):
        lows = np.array([ctx.low[b + 1: b + 6].min() if b + 1 < ctx.n else ctx.low[b] for b in opps.bar])
        return ExitPlan(stop_mode=codes.PRICE_ABSOLUTE, stop=lows * 0.99)


def test_a_level_read_from_later_bars_is_found_with_the_default_cuts():
    """hunt30 F2: a per-setup level is compared only for setups shortly before a cut, and
    5 random cuts met one in 20-70 % of seeds. A strategy is also cut just after as many
    setups (setup_cuts): every seed finds it."""
    from metaflow_nb.services.causality import setup_cuts
    bp = {"name": "later_lows", "direction": "long_only", "workforce": {
        "opportunity_workers": [{"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 10, "slow": 30}}],
        "planning_workers": {"exit_planning": [{"instance_id": "stop_1", "plugin": "stop_from_later_lows"}]}}}
    for seed in range(4):
        res = mf.check_causality(bp, data="sp500_daily", seed=seed)
        assert ("stop_1", "stop") in set(zip(res.findings.worker, res.findings.output)), seed
        assert len(res.cuts) == 10
    # the cuts after setups are one bar after a setup, seeded, within the random cuts' range
    bars = np.array([5, 600, 601, 700, 950])
    assert setup_cuts(bars, 1000, 3, seed=1) == setup_cuts(bars, 1000, 3, seed=1)
    assert set(setup_cuts(bars, 1000, 9, seed=1)) == {601, 602, 701, 951}


@register
class CrossWithPeekingScore(OpportunityWorker):
    """SMA crosses scored by the next bar's close: the score reads one bar ahead."""

    name = "cross_with_peeking_score"
    Params = Params

    def detect(self, ctx):
        c = pd.Series(ctx.close)
        f, s = c.rolling(10).mean().to_numpy(), c.rolling(30).mean().to_numpy()
        up = (f > s) & (np.r_[np.nan, f[:-1]] <= np.r_[np.nan, s[:-1]])
        return Signals.from_direction(up.astype(np.int8))

    def score(self, ctx, setups):
        nxt = np.minimum(setups.bar + 1, ctx.n - 1)
        return ctx.close[nxt] / setups.signal_close


def test_an_opportunity_worker_alone_is_also_cut_just_after_its_setups():
    """hunt33 F2: a score reading the next bar passed check-causality of the worker alone
    with 3 of 4 seeds (5 random cuts met no setup); a strategy was already cut just after
    setups. An opportunity worker alone is too; a planner alone (a setup on every bar) is not."""
    for seed in range(4):
        res = mf.check_causality("cross_with_peeking_score", data="sp500_daily", seed=seed)
        assert ("cross_with_peeking_score", "score") in set(zip(res.findings.worker, res.findings.output)), seed
        assert len(res.cuts) == 10
    assert len(mf.check_causality("atr_based_stops", data="sp500_daily").cuts) == 5


@pytest.mark.parametrize("data, said", [(None, "give one instrument's data (--data FILE, data=)"),
                                        ("sp500_daily", "drop the basket operation: --data (data=) names")])
def test_a_basket_operation_is_refused_saying_what_to_do(data, said):
    # hunt49 F11: with --data given, the message still asked for --data
    with pytest.raises(ConfigError, match=r"a basket operation \(instruments: or universe:\)") as exc:
        mf.check_causality("config/runs/sma_cross.yaml", operation="config/operations/us_stocks_basket.yaml",
                           data=data)
    assert said in str(exc.value)


def test_the_data_clock_reaches_the_replay(tmp_path, capsys):
    """check-causality reads the data on a declared clock, as backtest does (it had no
    --timezone / --date-column, and timezone= was not a keyword): the findings name the
    bars' times in UTC, and a worker zone param on declared-clock data is refused."""
    wall = rising(600)
    wall.index = pd.date_range("2020-10-01 09:00", periods=600, freq="h")   # times, not dates: a clock reads them
    raw = wall.rename_axis("Zeit").reset_index().rename(columns=str.title)   # a user's file, local times
    path = tmp_path / "local.csv"
    raw.to_csv(path, index=False)
    res = mf.check_causality(strategy(), data=str(path), cuts=[300], timezone="Europe/Berlin",
                             date_column="Zeit")
    first = res.findings.set_index(["worker", "output"]).loc[("peak_1", "peak")]
    # bar 295 is 2020-10-13 16:00 in Berlin (09:00 + 295 h; UTC+2 in October): 14:00 UTC
    assert str(first["time"]) == "2020-10-13 14:00:00", first["time"]
    assert main(["check-causality", "session_filter", "--params", '{"timezone": "Europe/Berlin"}',
                 "--data", str(path), "--timezone", "Europe/Berlin", "--date-column", "Zeit"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "params.timezone" in err and "Europe/Berlin" in err, err
    assert main(["check-causality", "config/runs/sma_cross.yaml", "--data", str(path),
                 "--timezone", "Europe/Berlin", "--date-column", "Zeit", "--cuts", "400"]) == 0


@register
class BackfilledMean(ContextWorker):
    """A trailing mean whose warm-up is filled backwards (``.bfill()``, the usual way to
    get rid of the NaNs): bars 0..w-2 read bar w-1."""

    name = "backfilled_mean"
    Params = PeakParams

    def compute(self, ctx):
        return {"m": pd.Series(ctx.close).rolling(self.params.window).mean().bfill().to_numpy()}


@register
class CalibratedClose(ContextWorker):
    """The close over the mean of the first 1,000 closes: a scale from a leading window."""

    name = "calibrated_close"

    def compute(self, ctx):
        return {"r": ctx.close / ctx.close[:1000].mean()}


@pytest.mark.parametrize("plugin, first", [("backfilled_mean", 0), ("calibrated_close", 0)])
def test_look_ahead_on_the_first_bars_is_found_by_the_default_cuts(plugin, first):
    """hunt58 F1: random cuts fall in the second half of the data, so a look-ahead on the
    first bars alone (a back-filled warm-up, a scale from a leading window) passed every
    seed. The default cuts add short prefixes, doubling from 2 bars up to the random ones."""
    res = mf.check_causality(plugin, data="sp500_daily")
    assert not res.ok, repr(res)
    assert res.findings.iloc[0]["first_bar"] == first
    assert res.early_cuts == [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    assert "11 early cuts at 2, 4, 8" in repr(res).splitlines()[0]
    assert res.to_dict()["early_cuts"] == res.early_cuts
    clean = mf.check_causality("ema", params={"period": 20}, data="sp500_daily")
    assert clean.ok and clean.early_cuts == res.early_cuts
    # cuts given by hand are the cuts: no others are added
    assert mf.check_causality(plugin, data="sp500_daily", cuts=[3000]).early_cuts == []


@register
class NeedsHundredBars(ContextWorker):
    """Refuses fewer than 100 bars, as a worker needing a long history may."""

    name = "needs_hundred_bars"

    def compute(self, ctx):
        if ctx.n < 100:
            raise ValueError(f"{ctx.n} bars; needs 100")
        return {"c": ctx.close.copy()}


def test_an_early_cut_too_short_for_a_worker_is_noted_not_an_error(capsys):
    res = mf.check_causality("needs_hundred_bars", data=rising(600))
    assert res.ok and [k for k, _ in res.early_failed] == [2, 4, 8, 16, 32, 64]
    last = repr(res).splitlines()[-1]
    assert last.startswith("early cuts not run: 2, 4, 8, 16, 32, 64 (the run on the first 64 bars raised "), last
    assert "ValueError: 64 bars; needs 100" in last
    k, why = res.to_dict()["early_failed"][0]
    assert k == 2 and "ValueError: 2 bars; needs 100" in why
    assert res.findings.empty


class VetoParams(Params):
    lookback: int = param(20, ge=2, le=500, description="channel bars")


@register
class VetoedBreakout(OpportunityWorker):
    """A channel breakout "with failed breakouts filtered": a breakout whose next bar
    closes back beyond the breakout bar's open is dropped (hunt82 F1)."""

    name = "test_vetoed_breakout"
    Params = VetoParams

    def detect(self, ctx: FeatureContext) -> Signals:
        k = self.params.lookback
        d = np.zeros(ctx.n, dtype=np.int8)
        if ctx.n > k:
            top = np.lib.stride_tricks.sliding_window_view(ctx.high, k).max(axis=1)[:-1]
            bottom = np.lib.stride_tricks.sliding_window_view(ctx.low, k).min(axis=1)[:-1]
            c = ctx.close[k:]
            d[k:] = np.where(c > top, 1, np.where(c < bottom, -1, 0))
        after = np.r_[ctx.close[1:], np.nan]
        d[((d == 1) & (after < ctx.open)) | ((d == -1) & (after > ctx.open))] = 0
        return Signals.from_direction(d)


@pytest.mark.parametrize("data", ["sp500_daily", "eurusd_15m"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_setup_dropped_by_the_next_bar_is_look_ahead(data, seed):
    """hunt82 F1: dropping the breakouts the next bar proves false (the most profitable
    look-ahead: sp500 Sharpe 0.02 -> 0.12) leaves no setup in the full run for the cuts
    after setups, and 5 random cuts met one of the 61 dropped bars 2.4 % of the time:
    ok with every seed. A window of consecutive cuts meets them."""
    res = check_causality("test_vetoed_breakout", data=data, seed=seed)
    assert not res.ok and res.findings["output"].tolist() == ["direction"], res
    row = res.findings.iloc[0]
    assert row["cut"] == row["first_bar"] + 1 and res.dense is not None
    assert res.dense[1] <= row["cut"] <= res.dense[2]
    assert check_causality("test_vetoed_breakout", data=data, seed=seed, params={"lookback": 20}).dense == res.dense


class NeedsBarsParams(Params):
    bars: int = param(500, ge=1, description="fewest bars it computes on")


@register
class NeedsManyBars(ContextWorker):
    """A feature that refuses fewer than ``bars`` bars (a long calibration)."""

    name = "test_needs_many_bars"
    Params = NeedsBarsParams

    def compute(self, ctx: FeatureContext) -> dict:
        if ctx.n < self.params.bars:
            raise ValueError(f"{ctx.n} bars; needs {self.params.bars}")
        return {"level": np.asarray(ctx.close, dtype=float)}


def test_the_window_of_cuts_runs_for_a_worker_that_needs_more_bars_than_its_lead():
    """hunt84 F2: a worker needing 500 bars made the window's runs (400 bars of lead) fail,
    the window was dropped, and the vetoed breakout beside it passed as ok again, with a
    note calling it an early cut on "the first 4828 bars". The lead now doubles until
    the window's runs work, and the journal findings of the window say where its bars
    are counted from (F3)."""
    bp = {"name": "veto_with_calibration", "workforce": {
        "context_workers": [{"instance_id": "need_1", "plugin": "test_needs_many_bars", "params": {"bars": 500}}],
        "opportunity_workers": [{"instance_id": "vb_1", "plugin": "test_vetoed_breakout"}],
        "planning_workers": {"entry_planning": [{"instance_id": "entry", "plugin": "market_entry"}],
                             "exit_planning": [{"instance_id": "exit", "plugin": "reverse_on_opposite"}],
                             "size_planning": [{"instance_id": "size", "plugin": "all_in_sizer"}]}}}
    res = check_causality(bp, data="sp500_daily", seed=0)
    assert res.dense is not None and res.dense[1] - res.dense[0] >= 500 and res.dense_failed is None, repr(res)
    assert "vb_1" in res.findings["worker"].tolist(), repr(res)
    for _, row in res.findings[res.findings["worker"] == "run"].iterrows():
        in_window = res.dense[1] <= row["cut"] <= res.dense[2]
        assert ("counted from there" in str(row["full"])) == in_window, row


def test_a_slow_window_of_cuts_keeps_to_its_time_budget(monkeypatch):
    """A lead grown to a long calibration (a worker needing 200,000 bars of 1,000,000)
    would make each of up to 160 cuts a run that long: minutes. The window keeps to
    about DENSE_BUDGET_S, down to DENSE_FEWEST cuts, and says so."""
    from metaflow_nb.services import causality

    monkeypatch.setattr(causality, "DENSE_BUDGET_S", 1e-9)
    res = check_causality("test_vetoed_breakout", data="sp500_daily", seed=0)
    assert res.dense is not None and res.dense[2] - res.dense[1] + 1 == causality.DENSE_FEWEST
    assert res.dense_failed.startswith(f"{causality.DENSE_FEWEST} of ") and "keeps to" in res.dense_failed
    assert "window of cuts not run whole: " in repr(res)
