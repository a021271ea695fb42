"""The meta verbs over a basket (issue #17 part 4): mf.optimize, mf.compare_variants and
mf.walk_forward with a base_operation naming a basket run portfolio runs; each is checked
against run_portfolio / optimize_basket called directly on the same dates."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import metaflow_nb as mf
from metaflow_nb.cli import main
from metaflow_nb.engine.metrics import daily_returns
from metaflow_nb.services.portfolio import run_portfolio
from metaflow_nb.services.portfolio_meta import BasketOptimization, optimize_basket
from metaflow_nb.stats import pbo_cscv

STRATEGY = "config/runs/sma_cross.yaml"
OP = {"universe": {"path": "us_stocks", "symbols": ["IBM", "MSFT"]},
      "data": {"start": "2010-01-01", "end": "2012-12-31"}}
SPACE = [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 10]}, "slow": {"values": [30]}}}]
DRAWDOWN = {"workforce": {"threat_workers": [{"instance_id": "dd_1", "plugin": "max_drawdown_monitor",
                                              "params": {"max_drawdown_pct": 5, "cooldown_bars": 10}}]}}


def _opt_config(**target):
    return {"name": "basket", "base_strategy": STRATEGY, "base_operation": OP, "parameter_space": SPACE,
            "optimization_target": {"primary_metric": "sharpe_ratio", **target}}


@pytest.fixture(scope="module")
def opt():
    return mf.optimize(_opt_config(per_instrument=True, constraints={"min_trades": 60}), progress=False)


def test_optimize_verb_runs_the_basket_sweep(opt, tmp_path):
    assert isinstance(opt, BasketOptimization) and opt.show_per_instrument
    direct = optimize_basket(STRATEGY, OP, {"sma_1": {"fast": [5, 10], "slow": [30]}})
    by_combo = direct.table.set_index("combination")
    for _, row in opt.table.iterrows():
        assert row["sharpe_ratio"] == by_combo.loc[row["combination"], "sharpe_ratio"]
        # the constraint: eligible exactly when the portfolio made >= 60 trades
        assert row["eligible"] == (row["total_trades"] >= 60)
    assert list(opt.table["eligible"]) == sorted(opt.table["eligible"], reverse=True)
    # PBO over the portfolio's daily returns of every combination the sweep could pick,
    # rebuilt here from the runs: without constraints, both
    cols = {k: daily_returns(run_portfolio(STRATEGY, OP, sma_1__fast=f, sma_1__slow=30).equity["total"], 20_000.0,
                             None) for k, f in enumerate([5, 10])}
    expected = pbo_cscv(pd.DataFrame(cols).dropna().to_numpy(), s=16).pbo
    assert direct.statistics["pbo"] == expected and direct.statistics["pbo_runs"] == 2
    # with them one combination is left: no PBO, and the note says why
    assert int(opt.table["eligible"].sum()) == 1 and "pbo" not in opt.statistics
    assert opt.statistics["pbo_note"] == "PBO needs at least 2 combinations that meet the constraints"
    assert list(opt.best_per_instrument().index) == ["IBM", "MSFT"]



def test_a_basket_optimization_reads_as_a_single_sweep_in_a_notebook(opt):
    """hunt116 F2: all_results, failed_runs, best_specs and statistics_text were missing,
    and plot('pbo') refused though the PBO was computed."""
    from metaflow_nb.errors import ConfigError

    assert opt.all_results is opt.table and opt.failed_runs == 0 == opt.total_runs - opt.successful_runs
    assert opt.best_specs.run_id == opt.best_result.basket_specs.run_id
    assert opt.statistics_text().splitlines()[0].startswith("deflated Sharpe ratio ")
    assert "PBO needs at least 2 combinations" in opt.statistics_text()
    with pytest.raises(ConfigError, match="no PBO for this basket optimization"):
        opt.plot("pbo")
    direct = optimize_basket(STRATEGY, OP, {"sma_1": {"fast": [5, 10], "slow": [30]}})
    ax = direct.plot("pbo").axes[0]
    assert ax.get_title() or ax.get_xlabel()
    with pytest.raises(ConfigError, match="unknown plot kind 'bars'"):
        direct.plot("bars")


def test_the_per_instrument_deflation_says_its_trials_and_a_failed_row_its_error_once():
    """hunt106 F3: each symbol's deflated Sharpe counts every (symbol, combination) that
    ran, but only the portfolio's count (combinations) was shown: a reader took the
    per-symbol figures as deflated by fewer trials. The count is in the statistics and the
    text. A failed combination's ~200-character error was a column of the printed table,
    pushing the metrics off screen on every row: it is said once below it."""
    space = {"sma_1": {"fast": [5, 10, 30], "slow": [30]}}
    opt = optimize_basket(STRATEGY, OP, space)
    opt.show_per_instrument = True   # optimization_target.per_instrument, as mf.optimize sets it
    assert opt.statistics["per_instrument_trials"] == 4   # 2 symbols x 2 combinations that ran
    text = repr(opt)
    assert "best per instrument (deflated Sharpe counting 4 trials: every symbol x combination that ran):" in text
    table = text[:text.index("best per instrument")]
    assert "error" not in table.splitlines()[2 if opt.message else 1], text
    failed = [line for line in text.splitlines() if line.startswith("1 failed: ")]
    assert len(failed) == 1 and "sma_1.fast=30" in failed[0] and "fast" in failed[0].split(": ", 2)[2], text
    assert "per_instrument_trials" not in optimize_basket(STRATEGY, {**OP, "mode": "portfolio"}, space).statistics


def test_optimize_cli_json_and_bad_input(tmp_path, capsys):
    path = tmp_path / "opt.yaml"
    path.write_text(json.dumps({"optimization_config": _opt_config()}))
    assert main(["optimize", str(path), "--json", "--out", str(tmp_path / "o")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["basket"] and out["total_runs"] == 2 and out["instruments"] == ["IBM", "MSFT"]
    assert (tmp_path / "o" / "all_results.csv").exists() and (tmp_path / "o" / "per_instrument.csv").exists()
    bad = {
        "per_instrument": ({**_opt_config(per_instrument=True), "base_operation": "config/operations/sp500_daily.yaml"},
                           [], "optimization_target.per_instrument: needs a base_operation that names a basket"),
        "shared": ({**_opt_config(per_instrument=True), "base_operation": {**OP, "mode": "portfolio"}}, [],
                   "per_instrument: a shared account"),
    }
    for name, (cfg, extra, words) in bad.items():
        p = tmp_path / f"{name}.yaml"
        p.write_text(json.dumps({"optimization_config": cfg}))
        assert main(["optimize", str(p), *extra]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(p) in err and words in err, err


def test_variants_over_a_basket(tmp_path, capsys):
    cfg = {"name": "dd", "base_strategy": STRATEGY, "base_operation": OP,
           "variants": [{"name": "plain"}, {"name": "halt", "overrides": DRAWDOWN}]}
    cmp = mf.compare_variants(cfg, progress=False)
    strategy = mf.build_specs(STRATEGY, data="sp500_daily").with_overrides(DRAWDOWN).blueprint
    for v, strat in zip(cmp.variants, [STRATEGY, strategy]):
        res = run_portfolio(strat, OP)
        assert v.result.metrics == res.metrics
        assert v.result.equity.equals(res.equity["total"])
        assert v.specs.cash == 20_000.0
        rej = res.journal[res.journal["event"] == "OPPORTUNITY_REJECTED"]
        assert cmp.causal().loc[v.name, "rejected"] == len(rej)
    halt = cmp.results["halt"].portfolio
    per = halt.rejections(by_symbol=True)
    assert per["count"].sum() == cmp.causal().loc["halt", "rejected"] > 0
    assert set(per.index.get_level_values("symbol")) <= {"IBM", "MSFT"}
    assert cmp.most_defensive() == "halt" and "sharpe_ratio" in cmp.significance["metrics"]
    # hunt116 F3: a variant's run is drawn and shown as its portfolio
    view = cmp.results["halt"]
    assert view.to_dict() == halt.to_dict() and view._repr_html_() == halt._repr_html_()
    assert [a.get_ylabel() for a in view.plot().axes] == [a.get_ylabel() for a in halt.plot().axes]
    # hunt106 F2: the causal analysis names the instruments, in --json and in the text
    counts = per.groupby(level="symbol", sort=False)["count"].sum()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], halt.symbols.index(kv[0])))
    by_symbol = cmp.to_dict()["causal_analysis"]["rejected_by_symbol"]
    assert by_symbol == {"plain": {}, "halt": {s: int(n) for s, n in ranked}}, by_symbol
    said = ", ".join(f"{s} {n}" for s, n in ranked)
    assert any(line.strip("│ ") == f"by symbol: {said}" for line in cmp.render_text().splitlines())
    single = mf.compare_variants("config/variants/exit_strategy_test.yaml", backend="sequential", progress=False)
    assert "rejected_by_symbol" not in single.to_dict()["causal_analysis"]   # one instrument: no such key
    assert "by symbol:" not in single.render_text()
    # View Details by reason (hunt47 F1): each instrument numbers its opportunities from 0, so a
    # trade comes from a rejected setup only when symbol and opportunity both match
    from metaflow_nb.notebook import show_comparison
    trades, journal = show_comparison(cmp, runs_dir=tmp_path / "runs").filtered("halt", "MAX_DRAWDOWN")
    assert len(journal) > 0 and set(journal["reason"]) == {"MAX_DRAWDOWN"}
    every = cmp.results["halt"].trades
    pairs = set(zip(journal["symbol"], journal["opportunity_id"]))
    own = [(s, o) in pairs or r == "MAX_DRAWDOWN" for s, o, r in zip(every["symbol"], every["opportunity_id"],
                                                                     every["exit_reason"])]
    assert trades.equals(every[own])
    assert len(every[every["opportunity_id"].isin(journal["opportunity_id"])]) > len(trades)  # what it matched
    bad = {**cfg, "variants": [{"name": "a", "overrides": {"operation": {"cash": 5}}}]}
    p = tmp_path / "v.yaml"
    p.write_text(json.dumps({"variant_config": bad}))
    assert main(["variants", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "variants[0].overrides.operation" in err


def test_walk_forward_over_a_basket(tmp_path, capsys):
    cfg = {"name": "wf", "base_strategy": STRATEGY, "base_operation": OP, "parameter_space": SPACE,
           "windows": {"in_sample_bars": 250, "out_of_sample_bars": 125}}
    wf = mf.walk_forward(cfg, progress=False)
    union = run_portfolio(STRATEGY, OP).index
    assert len(wf.windows) == (len(union) - 250) // 125 and (wf.windows["status"] == "ok").all()
    level, parts = 20_000.0, []
    for _, w in wf.windows.iterrows():
        dates = lambda a, b: {**OP, "data": {"start": a.isoformat(), "end": b.isoformat()}}  # noqa: E731
        ins = optimize_basket(STRATEGY, dates(w["is_start"], w["is_end"]), {"sma_1": {"fast": [5, 10], "slow": [30]}})
        assert w["sma_1.fast"] == ins.best["sma_1__fast"] and w["is_score"] == ins.table["sharpe_ratio"].iloc[0]
        oos = run_portfolio(STRATEGY, dates(w["oos_start"], w["oos_end"]), **ins.best)
        assert w["oos_sharpe_ratio"] == oos.metrics["sharpe_ratio"]
        parts.append(oos.equity["total"] / 20_000.0 * level)
        level = float(parts[-1].iloc[-1])
    np.testing.assert_allclose(wf.oos_equity.to_numpy(), pd.concat(parts).to_numpy(), rtol=1e-12)
    assert wf.oos_metrics["total_trades"] == wf.windows["oos_total_trades"].sum()
    for windows, words in (({"in_sample_bars": 900, "out_of_sample_bars": 100}, "union calendar"),):
        p = tmp_path / "wf.yaml"
        p.write_text(json.dumps({"walk_forward_config": {**cfg, "windows": windows}}))
        assert main(["walk-forward", str(p)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and str(p) in err
    p.write_text(json.dumps({"walk_forward_config": {**cfg, "base_operation": {**OP, "mode": "portfolio"},
                                                     "windows": {**cfg["windows"], "warmup_bars": 10}}}))
    assert main(["walk-forward", str(p)]) == 2
    assert "warmup_bars: a shared account" in capsys.readouterr().err


@pytest.mark.parametrize("path", ["config/optimizations/sma_basket.yaml", "config/variants/sma_basket_variants.yaml",
                                  "config/walk_forward/sma_basket_walk_forward.yaml"])
def test_bundled_basket_configs_name_a_basket(path):
    from pathlib import Path

    from metaflow_nb.config.meta import basket_operation, load_meta_config

    root, model, _, folder = load_meta_config(path)
    strategy, operation = basket_operation(model, folder, path, root)
    assert Path(operation).name == "us_stocks_basket.yaml" and Path(strategy).name == "sma_cross.yaml"


def test_each_symbols_pick_meets_the_constraints_when_one_of_its_combinations_does():
    # AAPL's best Sharpe (5/100) has 23 trades: under min_trades 30 its pick is the best eligible one
    from metaflow_nb.services.portfolio_meta import optimize_basket
    op = {"universe": {"path": "us_stocks", "symbols": ["AAPL", "IBM"]},
          "data": {"start": "2006-01-01", "end": "2013-03-01", "calendar": "exchange"}, "commission": 0.001}
    space = [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 10, 20]}, "slow": {"values": [50, 100]}}}]
    opt = optimize_basket("config/runs/sma_cross.yaml", op, space, constraints={"min_trades": 30})
    per, picks = opt.per_instrument, opt.best_per_instrument()
    for sym, pick in picks.iterrows():
        mine = per[per["symbol"] == sym]
        eligible = mine[mine["eligible"]]
        assert pick["eligible"] and pick["sharpe_ratio"] == eligible["sharpe_ratio"].max()
        assert pick["total_trades"] >= 30
    aapl = per[per["symbol"] == "AAPL"]
    assert not aapl.loc[aapl["sharpe_ratio"].idxmax(), "eligible"]   # the case the rule is for
    assert np.isfinite(picks.loc["AAPL", "deflated_sharpe"])          # the pick's DSR, not the ineligible one's


def test_a_basket_walk_forward_whose_window_makes_no_trade_runs(tmp_path):
    # slow 200 without warm-up bars: some out-of-sample windows trade nothing (it raised a TypeError)
    import json

    import metaflow_nb as mf
    cfg = tmp_path / "wf.yaml"
    cfg.write_text(json.dumps({"walk_forward_config": {
        "name": "no trades in a window", "base_operation": "config/operations/us_stocks_basket.yaml",
        "base_strategy": "config/runs/sma_cross.yaml",
        "parameter_space": [{"worker_instance": "sma_1",
                             "parameters": {"fast": {"values": [5, 20]}, "slow": {"values": [100, 200]}}}],
        "optimization_target": {"primary_metric": "sharpe_ratio"},
        "windows": {"in_sample_bars": 504, "out_of_sample_bars": 252, "step_bars": 252, "mode": "rolling",
                    "warmup_bars": 0}}}))
    wf = mf.walk_forward(str(cfg), progress=False)
    ok = wf.windows[wf.windows["status"] == "ok"]
    assert len(ok) == len(wf.oos_results) > 0 and (ok["oos_total_trades"] == 0).any()
    assert wf.oos_metrics["total_trades"] == ok["oos_total_trades"].sum()


def test_per_instrument_with_an_unreadable_operation_names_the_operation(tmp_path, capsys):
    # it said "this one is a single instrument": the operation's own error is the one that helps
    op = tmp_path / "op.yaml"
    op.write_text("name: broken\ninstruments:\n  - {symbol: IBM, source: us_stocks\n  - {symbol: MSFT, source: us_stocks}\n")
    cfg = tmp_path / "opt.yaml"
    cfg.write_text((Path("config/optimizations/sma_basket.yaml").read_text()
                    .replace("config/operations/us_stocks_basket.yaml", str(op))))
    assert main(["optimize", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"metaflow-nb: error: {op}: malformed YAML"), err


@pytest.mark.parametrize("command,root", [("optimize", "optimization_config"), ("walk-forward", "walk_forward_config")])
@pytest.mark.parametrize("engine", ["batch", "general"])
def test_a_basket_space_the_strategy_refuses_names_the_config_and_its_section(tmp_path, capsys, command, root,
                                                                              engine):
    # they said "<parameter_space>: optimization_config.parameter_space: ..." with no file, or the
    # section twice, and a walk-forward's said optimization_config
    src = Path("config/optimizations/sma_basket.yaml" if command == "optimize"
               else "config/walk_forward/sma_basket_walk_forward.yaml").read_text()
    engine_line = f"  parallel: {{engine: {engine}}}\n"
    cases = {
        "invalid": (src.replace("fast: {values: [5, 10, 20]}", "fast: {values: [200, 300]}"),
                    f"{root}.parameter_space: combination {{'sma_1': {{'fast': 200, 'slow': 50}}}}: "),
        "unknown": (src.replace('worker_instance: "sma_1"', 'worker_instance: "sma_9"'),
                    f"{root}.parameter_space[0].worker_instance: no worker instance 'sma_9' in the strategy"),
    }
    for name, (text, words) in cases.items():
        assert text != src, name
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(text.rstrip("\n") + "\n" + engine_line)
        assert main([command, str(cfg)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"metaflow-nb: error: {cfg}: {words}"), err
        # the general path adds the strategy file and key the params came to
        assert name == "unknown" or err.endswith("fast (200) must be smaller than slow (50)"), err


def test_a_walk_forward_with_per_instrument_picks_is_refused(tmp_path, capsys):
    # it was silently ignored: a walk-forward's windows pick one parameter set for the basket
    cfg = tmp_path / "wf.yaml"
    cfg.write_text(Path("config/walk_forward/sma_basket_walk_forward.yaml").read_text().replace(
        'primary_metric: "sharpe_ratio"', 'primary_metric: "sharpe_ratio"\n    per_instrument: true'))
    assert main(["walk-forward", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(
        f"metaflow-nb: error: {cfg}: walk_forward_config.optimization_target.per_instrument: "), err


def test_a_basket_walk_forward_says_whether_each_windows_warm_up_was_long_enough():
    """A basket window's out-of-sample portfolio starts warmup_bars (of the union calendar)
    before its first bar, as a single instrument's does; too few for slow 50 and the
    window trades otherwise than the same parameters on every earlier bar. The oracle is
    that run: the same basket from its first bar, trading from the same bar."""
    from metaflow_nb.services.basket_specs import slice_basket
    from metaflow_nb.services.portfolio import load_basket
    from metaflow_nb.services.walk_forward import WarmupWarning

    space = [{"worker_instance": "sma_1", "parameters": {"fast": {"values": [5, 10]}, "slow": {"values": [50]}}}]
    cfg = {"name": "wf", "base_strategy": STRATEGY, "base_operation": OP, "parameter_space": space,
           "windows": {"in_sample_bars": 250, "out_of_sample_bars": 125, "warmup_bars": 20}}
    with pytest.warns(WarmupWarning, match=r"warm-up: 20 bars too short in \d+ of \d+ windows"):
        wf = mf.walk_forward(cfg, progress=False)
    basket = load_basket(OP)
    cols = ["symbol", "entry_time", "exit_time", "direction", "entry_price", "exit_price", "size", "exit_reason"]
    expected = []
    for (_, w), view in zip(wf.windows.iterrows(), wf.oos_results):
        best = {"sma_1__fast": int(w["sma_1.fast"]), "sma_1__slow": int(w["sma_1.slow"])}
        full = run_portfolio(STRATEGY, slice_basket(basket, basket_first(basket), w["oos_end"], w["oos_start"]),
                             **best)
        a, b = view.trades[cols].reset_index(drop=True), full.trades[cols].reset_index(drop=True)
        same = a.equals(b)
        expected.append("ok" if same else "short")
        if not same:
            # the note names the instrument of the first trade that differs, so a reader finds it (hunt100 F4)
            n = min(len(a), len(b))
            k = int(np.argmax(~(a.iloc[:n] == b.iloc[:n]).all(axis=1).to_numpy())) if not a.iloc[:n].equals(
                b.iloc[:n]) else n
            first = min((t for t in (a, b) if len(t) > k), key=lambda t: t["entry_time"].iloc[k])
            assert w["note"] == ("out-of-sample trades differ from the same parameters on every earlier bar from "
                                 f"{first['entry_time'].iloc[k]} (first on {first['symbol'].iloc[k]})"), w["note"]
    assert wf.windows["warmup"].tolist() == expected and "short" in expected
    # long enough: every window agrees, and nothing is said
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", WarmupWarning)
        long = mf.walk_forward({**cfg, "windows": {**cfg["windows"], "warmup_bars": 60}}, progress=False)
    assert set(long.windows["warmup"]) == {"ok"} and long.warmup_text() == ""


def basket_first(basket) -> pd.Timestamp:
    return min(b.index[0] for b in basket[2].values())


def test_a_basket_walk_forward_window_runs_no_picks_nor_best_run_and_shows_progress(monkeypatch, capsys):
    # hunt37 F4: each window ran every instrument alone for per-symbol picks and the best
    # combination's portfolio once more, none of which a walk-forward reads; no progress showed
    import metaflow_nb.services.portfolio_meta as pm

    def refused(*a, **k):
        raise AssertionError("a window computed per-instrument picks")

    monkeypatch.setattr(pm, "per_instrument_table", refused)
    monkeypatch.setattr(pm, "_single_run", refused)
    cfg = {"name": "wf progress", "base_strategy": STRATEGY, "base_operation": OP, "parameter_space": SPACE,
           "windows": {"in_sample_bars": 250, "out_of_sample_bars": 125}}
    wf = mf.walk_forward(cfg, progress=True)
    err = capsys.readouterr().err
    assert (wf.windows["status"] == "ok").all() and len(wf.windows) >= 2
    assert "wf progress" in err and f"0/{len(wf.windows)}" in err and "window/s" in err
    mf.walk_forward(cfg, progress=False)
    assert "wf progress" not in capsys.readouterr().err


@pytest.mark.parametrize("command, config, flags, named", [
    ("optimize", "config/optimizations/sma_basket.yaml", ["--backend", "loky"], "backend 'loky'"),
    ("variants", "config/variants/sma_basket_variants.yaml", ["--backend", "threads"], "backend 'threads'"),
])
def test_parallel_flags_a_basket_does_not_use_are_named(command, config, flags, named, capsys):
    # hunt35 F7: a basket's meta verbs ran in this process and ignored --backend without a word
    assert main([command, config, "--json", *flags]) == 0
    err = capsys.readouterr().err
    assert f"BasketParallelWarning: {config}: " in err and f"{named} not used" in err
    assert main([command, config, "--json"]) == 0
    assert "BasketParallelWarning" not in capsys.readouterr().err
    # what a basket does anyway is no unused request (hunt47 F2: the report templates ask for
    # sequential runs, and every bundled basket page opened with this warning)
    assert main([command, config, "--json", "--backend", "sequential", "--workers", "1"]) == 0
    assert "BasketParallelWarning" not in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["optimize", "compare_variants", "walk_forward"])
def test_workers_bound_a_baskets_kernel_threads(verb, monkeypatch, recwarn):
    """A basket's meta verbs ran their kernels on every core whatever --workers said (and
    warned that it was not used): on a shared machine --workers 1 is how a researcher keeps
    a core free. The workers bound the kernels' threads, as on the batch path."""
    import numba

    from metaflow_nb.services import portfolio as pf

    seen = []
    real = pf.run_portfolio

    def spy(*a, **k):
        seen.append(numba.get_num_threads())
        return real(*a, **k)

    monkeypatch.setattr(pf, "run_portfolio", spy)
    from metaflow_nb.services import portfolio_meta as pm
    real_opt = pm.optimize_basket

    def spy_opt(*a, **k):
        seen.append(numba.get_num_threads())
        return real_opt(*a, **k)

    monkeypatch.setattr(pm, "optimize_basket", spy_opt)
    before = numba.get_num_threads()
    cfg = {"name": "t", "base_strategy": STRATEGY, "base_operation": OP}
    if verb == "compare_variants":
        cfg["variants"] = [{"name": "a"}, {"name": "b"}]
    else:
        cfg["parameter_space"] = SPACE
    if verb == "walk_forward":
        cfg["windows"] = {"in_sample_bars": 250, "out_of_sample_bars": 125}
    getattr(mf, verb)(cfg, workers=1, progress=False)
    assert seen and set(seen) == {1}, seen
    assert numba.get_num_threads() == before
    assert not [w for w in recwarn if "not used" in str(w.message)]
