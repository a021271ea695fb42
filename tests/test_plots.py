"""Image-level tests of the notebook figures: axes, labels, artists and their data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection, PolyCollection, QuadMesh
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import metaflow_nb as mf
from metaflow_nb.errors import ConfigError
from metaflow_nb.notebook import plots

PNG = b"\x89PNG\r\n\x1a\n"
ICT = ("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml")


@pytest.fixture(scope="module")
def sma():
    return mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily")


@pytest.fixture(scope="module")
def ict():
    return mf.backtest(*ICT)


@pytest.fixture(scope="module")
def fvg_opt():
    return mf.optimize("config/optimizations/optimize_fvg_params.yaml", backend="sequential", progress=False)


@pytest.fixture(scope="module")
def sma_grid():
    return mf.optimize("config/optimizations/sma_grid.yaml", backend="sequential", progress=False)


@pytest.fixture(scope="module")
def cmp():
    return mf.compare_variants("config/variants/exit_strategy_test.yaml", backend="sequential", progress=False)


@pytest.fixture(scope="module")
def wf():
    return mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", backend="sequential", progress=False)


def legend_labels(ax) -> list[str]:
    leg = ax.get_legend()
    return [] if leg is None else [t.get_text() for t in leg.get_texts()]


def assert_png(fig) -> bytes:
    png = plots.figure_png(fig)
    assert png.startswith(PNG) and len(png) > 5000
    return png


# ---------------------------------------------------------------- equity

def test_equity_plot_has_equity_over_drawdown(sma):
    fig = sma.plot()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    ax, axd = fig.axes
    assert ax.get_ylabel() == "Equity" and axd.get_ylabel() == "Drawdown (%)" and axd.get_xlabel() == "Time"
    assert ax.get_title().startswith("sma_cross: equity and drawdown")
    assert ax.get_shared_x_axes().joined(ax, axd)
    # equity line carries every bar; the starting-cash reference is the second line
    assert len(ax.get_lines()) == 2
    eq_line = ax.get_lines()[0]
    np.testing.assert_allclose(eq_line.get_ydata(), sma.equity.to_numpy())
    assert legend_labels(ax) == ["Equity", "Starting cash (10,000)"]
    # drawdown: one filled area and one line, its minimum is the reported max drawdown
    assert len([c for c in axd.collections if isinstance(c, PolyCollection)]) == 1
    dd = axd.get_lines()[0].get_ydata()
    assert dd.max() <= 0
    assert -dd.min() == pytest.approx(sma.metrics["max_drawdown_pct"], rel=1e-9)
    assert any("max" in t.get_text() for t in axd.texts)
    assert_png(fig)


def test_figures_render_in_ipython_without_pyplot(sma):
    fig = sma.plot()
    assert isinstance(fig, plots.ResultFigure)
    assert fig._repr_png_().startswith(PNG)
    import matplotlib.pyplot as plt
    assert all(plt.figure(n) is not fig for n in plt.get_fignums())  # not registered with pyplot


# ---------------------------------------------------------------- trades

def _expected_trades(res, i0, i1):
    t = res.trades
    t = t[(t["entry_bar"] < i1) & (t["exit_bar"] >= i0)]
    ein = t[(t["entry_bar"] >= i0)]
    xin = t[(t["exit_bar"] < i1)]
    return t, ein, xin


def _expected_zones(res, i0, i1):
    j = res.journal
    det = j[(j["event"] == "OPPORTUNITY_DETECTED") & (j["bar"] >= i0) & (j["bar"] < i1)]
    return det[np.isfinite(det["zone_top"]) & np.isfinite(det["zone_bottom"])]


def test_trades_plot_ict_last_500_bars(ict):
    fig = ict.plot("trades")
    assert [a.get_ylabel() for a in fig.axes] == ["Price", "atr_1", "adx_1"]  # context panels under the price
    ax = fig.axes[0]
    n = len(ict.data)
    i0, i1 = n - 500, n
    assert fig.axes[-1].get_xlabel() == "Bar time" and ax.get_ylabel() == "Price"
    assert "500 bars" in ax.get_title()
    close = ax.get_lines()[0]
    assert close.get_label() == "Close"
    np.testing.assert_array_equal(close.get_xdata(), np.arange(i0, i1))
    np.testing.assert_allclose(close.get_ydata(), ict.data["close"].to_numpy()[i0:i1])

    t, ein, xin = _expected_trades(ict, i0, i1)
    assert len(t) > 0, "the last 500 bars of the sample hold trades"
    scat = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in scat) == len(ein) + len(xin)
    by_label = {c.get_label(): c for c in scat}
    for side, label in (("long", "Long entry"), ("short", "Short entry")):
        k = int((ein["direction"] == side).sum())
        assert (label in by_label) == (k > 0)
        if k:
            assert len(by_label[label].get_offsets()) == k
    # hunt104 L6: on a reversal bar the entry is drawn over the previous trade's exit "X"
    entries = [c.get_zorder() for c in scat if c.get_label().endswith("entry")]
    exits = [c.get_zorder() for c in scat if c.get_label().endswith("exit")]
    assert entries and exits and min(entries) > max(exits)
    # stop and target levels: one horizontal segment per trade in the window
    segs = {c.get_label(): c for c in ax.collections if isinstance(c, LineCollection)}
    assert len(segs["Stop"].get_segments()) == int(np.isfinite(t["stop_price"]).sum())
    assert len(segs["Target"].get_segments()) == int(np.isfinite(t["target_price"]).sum())
    for seg in segs["Stop"].get_segments():
        assert seg[0][1] == seg[1][1]  # horizontal

    zones = _expected_zones(ict, i0, i1)
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(rects) == len(zones) > 0
    heights = sorted(round(r.get_height(), 10) for r in rects)
    assert heights == sorted(round(h, 10) for h in (zones["zone_top"] - zones["zone_bottom"]).abs())
    for r in rects:
        assert 0 < r.get_alpha() < 1  # translucent

    labels = legend_labels(ax)
    assert labels[0] == "Close"
    assert {"Stop", "Target"} <= set(labels)
    assert any("zone" in s for s in labels)
    assert len(labels) == len(set(labels))  # one entry per category, not per zone
    assert_png(fig)


def test_trades_plot_window_by_time_and_by_position(ict):
    fig = ict.plot("trades", start="2023-03-01", end="2023-03-03")
    ax = fig.axes[0]
    idx = ict.data.index
    # both bounds as load_data reads them: end "2023-03-03" keeps that whole day
    i0, i1 = idx.searchsorted(pd.Timestamp("2023-03-01")), idx.searchsorted(pd.Timestamp("2023-03-04"))
    x = ax.get_lines()[0].get_xdata()
    assert x[0] == i0 and x[-1] == i1 - 1
    assert len([p for p in ax.patches if isinstance(p, Rectangle)]) == len(_expected_zones(ict, i0, i1))
    fig2 = ict.plot("trades", start=100, end=300, zones=False, levels=False)
    ax2 = fig2.axes[0]
    assert len(ax2.get_lines()[0].get_xdata()) == 200
    assert not ax2.patches and not [c for c in ax2.collections if isinstance(c, LineCollection)
                                    and not c.get_label().startswith("_candle")]
    with pytest.raises(ConfigError, match="window"):
        ict.plot("trades", start="2030-01-01")


def test_trades_plot_without_zones(sma):
    fig = sma.plot("trades", last=300)
    ax = fig.axes[0]
    # a moving-average cross has no setup zones: the one patch is the position it holds at the end
    assert [p.get_label().endswith("position open at the end") for p in ax.patches] == [True]
    n = len(sma.data)
    _, ein, xin = _expected_trades(sma, n - 300, n)
    scat = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in scat) == len(ein) + len(xin) > 0


def test_unknown_kinds(sma, cmp):
    with pytest.raises(ConfigError, match="equity"):
        sma.plot("nope")
    with pytest.raises(ConfigError, match="rejections"):
        cmp.plot("nope")


# ---------------------------------------------------------------- optimization

def _mesh(ax) -> QuadMesh:
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    return meshes[0]


def test_heatmap_two_parameters(fvg_opt):
    fig = fvg_opt.plot()
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # heatmap + colorbar
    assert fig.axes[1].get_ylabel() == "Sharpe ratio: higher is better"  # the colour bar says which end is good
    assert ax.get_xlabel() == "fvg_det_1.min_gap_size" and ax.get_ylabel() == "fvg_det_1.require_structure_break"
    assert "Sharpe ratio" in ax.get_title()
    mesh = _mesh(ax)
    assert mesh.get_array().size == 16
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(v) for v in range(3, 11)]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["False", "True"]
    assert len(ax.texts) == 16  # one annotation per cell
    frame = fvg_opt.all_results
    cells = np.asarray(mesh.get_array()).reshape(2, 8)
    for r, flag in enumerate([False, True]):
        for c, gap in enumerate(range(3, 11)):
            row = frame[(frame["fvg_det_1.min_gap_size"] == gap) & (frame["fvg_det_1.require_structure_break"] == flag)]
            assert cells[r, c] == pytest.approx(float(row["sharpe_ratio"].iloc[0]))
            assert ax.texts[r * 8 + c].get_text() == f"{float(row['sharpe_ratio'].iloc[0]):.2f}"
    best = [p for p in ax.patches if p.get_label() == "best run"]
    assert len(best) == 1
    bp = fvg_opt.best_params["fvg_det_1"]
    assert best[0].get_xy() == (list(range(3, 11)).index(bp["min_gap_size"]) - 0.5,
                                [False, True].index(bp["require_structure_break"]) - 0.5)
    assert legend_labels(ax) == ["best run"]
    assert_png(fig)


def test_heatmap_three_parameters_best_and_mean(sma_grid):
    fig = sma_grid.plot()
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("sma_1.fast", "sma_1.slow")
    stop = sma_grid.best_params["stops_1"]["stop_loss_pct"]
    assert f"stops_1.stop_loss_pct={stop:g}" in ax.get_title()
    frame = sma_grid.all_results
    sub = frame[frame["stops_1.stop_loss_pct"] == stop]
    expect = sub.pivot(index="sma_1.slow", columns="sma_1.fast", values="sharpe_ratio").sort_index().sort_index(axis=1)
    got = np.asarray(_mesh(ax).get_array()).reshape(expect.shape)
    np.testing.assert_allclose(got, expect.to_numpy(), equal_nan=True)

    fig = sma_grid.plot(agg="mean", metric="total_return_pct")
    ax = fig.axes[0]
    assert "mean over stops_1.stop_loss_pct" in ax.get_title() and "Total return" in ax.get_title()
    expect = frame.groupby(["sma_1.slow", "sma_1.fast"])["total_return_pct"].mean().unstack()
    got = np.asarray(_mesh(ax).get_array()).reshape(expect.shape)
    np.testing.assert_allclose(got, expect.to_numpy())

    fig = sma_grid.plot(x="stops_1.stop_loss_pct", y="sma_1.fast", agg="max")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("stops_1.stop_loss_pct", "sma_1.fast")
    assert _mesh(ax).get_array().size == 2 * 5
    with pytest.raises(ValueError, match="not a parameter"):
        sma_grid.plot(x="sma_1.nope")
    with pytest.raises(ValueError, match="agg"):
        sma_grid.plot(agg="sum")


def test_a_heatmap_without_a_best_run_marks_none(sma_grid):
    """hunt116 F1: no run met the constraints, yet the heatmap boxed a 'best run' (the run
    best by the plotted metric, in the target's direction: the deepest drawdown for
    metric='max_drawdown_pct' under a Sharpe target)."""
    from metaflow_nb.services.optimization import OptimizationService
    from metaflow_nb.services.parallel import ParallelRunService

    from metaflow_nb.config.meta import Constraints
    target = sma_grid.target.model_copy(update={"constraints": Constraints(min_trades=100_000)})
    svc = OptimizationService(ParallelRunService(backend="sequential", progress=False))
    combos = [{"sma_1": {"fast": f, "slow": s}} for f in (5, 10) for s in (50, 100)]
    res = svc.sweep(sma_grid.base_specs, ["sma_1.fast", "sma_1.slow"], combos, target, name="none eligible")
    assert res.best_params is None
    for metric in (None, "max_drawdown_pct"):
        ax = res.plot(metric=metric).axes[0]
        assert not [p for p in ax.patches if p.get_label() == "best run"] and ax.get_legend() is None
    # with a third parameter the others are fixed at the run best by the plotted metric, said so
    combos = [{"sma_1": {"fast": f, "slow": s}, "stops_1": {"stop_loss_pct": x}}
              for f in (5, 10) for s in (50, 100) for x in (2.0, 5.0)]
    res = svc.sweep(sma_grid.base_specs, ["sma_1.fast", "sma_1.slow", "stops_1.stop_loss_pct"], combos, target,
                    name="none eligible")
    ok = res.all_results
    shallowest = ok.loc[ok["max_drawdown_pct"].idxmin(), "stops_1.stop_loss_pct"]
    title = res.plot(metric="max_drawdown_pct").axes[0].get_title()
    assert f"stops_1.stop_loss_pct={shallowest:g}" in title and "no best run" in title, title


def test_a_metric_a_heatmap_cannot_colour_and_a_missing_pbo_are_config_errors(sma_grid):
    """hunt116 F5: metric='status' was 'could not convert string to float' (the message of
    an unknown metric listed status among the columns); plot('pbo') of a sweep without a
    PBO a bare ValueError."""
    from metaflow_nb.errors import ConfigError
    from metaflow_nb.services.optimization import OptimizationService
    from metaflow_nb.services.parallel import ParallelRunService

    for metric in ("status", "run_id", "nope"):
        with pytest.raises(ConfigError, match=rf"metric {metric!r}: .*sharpe_ratio") as err:
            sma_grid.plot(metric=metric)
        assert "status" not in str(err.value).split(";", 1)[1], str(err.value)
    svc = OptimizationService(ParallelRunService(backend="sequential", progress=False))
    one = svc.sweep(sma_grid.base_specs, ["sma_1.fast"], [{"sma_1": {"fast": 10}}], sma_grid.target, name="one")
    with pytest.raises(ConfigError, match="no PBO for this sweep"):
        one.plot("pbo")


def test_a_heatmap_cell_of_a_failed_run_says_failed_not_n_a(sma_grid):
    """hunt104: a failed run's cell read 'n/a', as a run whose metric is undefined (no trade)."""
    from metaflow_nb.services.optimization import OptimizationService
    from metaflow_nb.services.parallel import ParallelRunService

    svc = OptimizationService(ParallelRunService(backend="sequential", progress=False))
    # fast 40 >= slow 30 is refused: a failed row; slow 5020 on 5031 bars never trades: no Sharpe
    combos = [{"sma_1": {"fast": f, "slow": s}} for f in (10, 40) for s in (30, 5020)]
    res = svc.sweep(sma_grid.base_specs, ["sma_1.fast", "sma_1.slow"], combos, sma_grid.target, name="cells")
    frame = res.all_results
    assert frame["status"].tolist().count("failed") == 1
    texts = {t.get_position(): t.get_text() for t in res.plot().axes[0].texts}
    # x: fast (10, 40), y: slow (30, 5020)
    assert texts[(1, 0)] == "failed" and texts[(0, 1)] == "n/a" and texts[(1, 1)] == "n/a"


def test_one_parameter_space_gives_a_line(fvg_opt):
    from metaflow_nb.services.optimization import OptimizationService
    from metaflow_nb.services.parallel import ParallelRunService

    svc = OptimizationService(ParallelRunService(backend="sequential", progress=False))
    combos = [{"fvg_det_1": {"min_gap_size": g}} for g in (3, 5, 7, 9)]
    res = svc.sweep(fvg_opt.base_specs, ["fvg_det_1.min_gap_size"], combos, fvg_opt.target, name="gap only")
    fig = res.plot()
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [3, 5, 7, 9])
    np.testing.assert_allclose(line.get_ydata(), res.all_results["sharpe_ratio"].to_numpy())
    assert ax.get_xlabel() == "fvg_det_1.min_gap_size" and ax.get_ylabel() == "Sharpe ratio"
    assert legend_labels(ax) == ["Sharpe ratio", "best run"]


# ---------------------------------------------------------------- variants

def test_variant_equity_overlay(cmp):
    fig = cmp.plot()
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    names = [v.name for v in cmp.variants if v.ok]
    assert len(ax.get_lines()) == len(names) == 2
    for line, name in zip(ax.get_lines(), names):
        np.testing.assert_allclose(line.get_ydata(), cmp.results[name].equity.to_numpy())
    labels = legend_labels(ax)
    assert [s.split(" (")[0] for s in labels] == names
    assert ax.get_ylabel() == "Equity" and ax.get_xlabel() == "Time" and cmp.name in ax.get_title()
    assert_png(fig)


def test_variant_rejection_bars_without_a_rejection_say_so():
    """hunt103 F2: no variant rejecting anything drew empty axes around 0 and a legend of
    its variants in one colour, a chart that looked broken on the report's index."""
    from types import SimpleNamespace
    none = pd.DataFrame({"count": [0]}, index=["MAX_DRAWDOWN"])
    cmp = SimpleNamespace(name="quiet", results={"a": SimpleNamespace(rejections=lambda: none),
                                                 "b": SimpleNamespace(rejections=lambda: none)})
    from metaflow_nb.services.plots import plot_variants
    ax = plot_variants(cmp, "rejections").axes[0]
    assert not ax.axison and ax.get_legend() is None and not ax.patches
    assert [t.get_text() for t in ax.texts] == ["no opportunity was rejected"]


def test_variant_rejection_bars(cmp):
    fig = cmp.plot("rejections")
    ax = fig.axes[0]
    names = list(cmp.results)
    per = {n: cmp.results[n].rejections()["count"] for n in names}
    reasons = [t.get_text() for t in ax.get_xticklabels()]
    assert set(reasons) == set().union(*(set(c.index) for c in per.values()))
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == len(reasons) * len(names)
    for k, n in enumerate(names):
        heights = [b.get_height() for b in bars[k * len(reasons):(k + 1) * len(reasons)]]
        assert heights == [float(per[n].get(r, 0)) for r in reasons]
    assert legend_labels(ax) == names
    assert ax.get_ylabel() == "Rejected opportunities" and ax.get_xlabel() == "Reason code"
    assert "rejection reasons" in ax.get_title()
    assert len(ax.texts) == len(bars)  # counts written on the bars


# ---------------------------------------------------------------- walk-forward

def test_walk_forward_plot(wf):
    fig = wf.plot()
    assert len(fig.axes) == 2
    ax, axe = fig.axes
    n = len(wf.windows)
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 2 * n
    np.testing.assert_allclose([b.get_height() for b in bars[:n]], wf.windows["is_score"].to_numpy(float))
    np.testing.assert_allclose([b.get_height() for b in bars[n:]], wf.windows["oos_sharpe_ratio"].to_numpy(float))
    assert legend_labels(ax) == ["In-sample (best of grid)", "Out-of-sample"]
    assert ax.get_ylabel() == "Sharpe ratio" and "efficiency" in ax.get_title()
    assert len(ax.get_xticklabels()) == n
    # hunt116 F7: the year of each window's start, and n/a as the text says, not nan
    first = pd.Timestamp(wf.windows["oos_start"].iloc[0])
    assert ax.get_xticklabels()[0].get_text() == f"W0\n{first:%Y-%m-%d}"
    eq_lines = [ln for ln in axe.get_lines() if len(ln.get_xdata()) > 2]
    assert len(eq_lines) == 1
    np.testing.assert_allclose(eq_lines[0].get_ydata(), wf.oos_equity.to_numpy())
    assert len(axe.get_lines()) == 1 + n  # the curve and one marker per window start
    assert axe.get_ylabel() == "Equity" and axe.get_xlabel() == "Time" and axe.get_title()
    assert_png(fig)


# ---------------------------------------------------------------- helpers and the live chart

def test_decimate_keeps_extremes_and_ends():
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(size=50_000))
    x = np.arange(y.size, dtype=float)
    dx, dy = plots.decimate_minmax(x, y, 2000)
    assert len(dx) <= 2002
    assert dy.min() == y.min() and dy.max() == y.max()
    assert dx[0] == 0 and dx[-1] == y.size - 1
    assert np.all(np.diff(dx) > 0)
    short_x, short_y = plots.decimate_minmax(x[:100], y[:100], 2000)
    assert len(short_x) == 100 and np.array_equal(short_y, y[:100])


def test_drawdown_pct():
    np.testing.assert_allclose(plots.drawdown_pct(np.array([100.0, 110, 99, 121, 110])),
                               [0, 0, -10, 0, -100 * 11 / 121])


def test_live_chart_reuses_its_figure(ict, sma):
    chart = plots.LiveEquityChart()
    png1 = chart.update(ict.equity, "first", baseline=ict.equity)
    fig, line = chart.fig, chart.line
    png2 = chart.update(sma.equity, "second", baseline=ict.equity)
    assert png1.startswith(PNG) and png2.startswith(PNG) and png1 != png2
    assert chart.fig is fig and chart.line is line
    assert len(chart.axd.collections) == 1  # the old drawdown fill was replaced, not stacked
    assert len(line.get_xdata()) <= chart.max_points + 2
    assert chart.ax.get_title() == "second"
    assert legend_labels(chart.ax) == ["First run", "Equity"]


def test_an_equity_line_of_millions_of_bars_is_drawn_from_its_envelope():
    """The report's equity chart drew every bar: 10-18 s for 5M one-minute bars (hunt15 F2).
    Above PLOT_POINTS a line keeps each stretch's highest and lowest point, in order."""
    import numpy as np
    import pandas as pd

    from metaflow_nb.services.plots import PLOT_POINTS, envelope

    x = pd.date_range("2020-01-01", periods=1_000_000, freq="min")
    y = np.cumsum(np.random.default_rng(3).normal(0, 1, x.size)) + 1e4
    xs, ys = envelope(x, y)
    assert len(xs) <= PLOT_POINTS // 5 + 2 and xs.is_monotonic_increasing
    assert ys.max() == y.max() and ys.min() == y.min() and xs[0] == x[0] and xs[-1] == x[-1]
    assert set(ys) <= set(y)                        # points of the line, not averages
    small = y[:PLOT_POINTS]
    assert envelope(x[:PLOT_POINTS], small)[1] is not None and len(envelope(x[:PLOT_POINTS], small)[0]) == PLOT_POINTS


def test_trades_plot_window_reads_bounds_as_load_data_and_names_bad_ones(sma):
    """hunt50 F2: end="2018-06" stopped at June 1st (load_data keeps all of June); an
    offset raised pandas' TypeError, "foo" its DateParseError; last=-5/0/True read
    "the window None .. None"; last with start was dropped; trades_per_page=0 passed."""
    idx = sma.data.index
    fig = sma.plot("trades", start="2018-05", end="2018-06")
    x = fig.axes[0].get_lines()[0].get_xdata()
    assert idx[x[0]] == idx[idx >= "2018-05-01"][0] and idx[x[-1]] == idx[idx < "2018-07-01"][-1]
    fig = sma.plot("trades", start="2018-06-01T00:00Z", end=len(idx))
    assert idx[fig.axes[0].get_lines()[0].get_xdata()[0]] == idx[idx >= "2018-06-01"][0]
    for kwargs, words in (({"start": "foo"}, "start='foo'"), ({"end": "now"}, "end='now'"),
                          ({"last": -5}, "last"), ({"last": 0}, "last"), ({"last": True}, "last"),
                          ({"last": 2.7}, "last"), ({"last": "20"}, "last"),
                          ({"start": "2018-01", "last": 20}, "last"),
                          ({"trades_per_page": 0}, "trades_per_page"), ({"trades_per_page": 2.5}, "trades_per_page")):
        with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
            sma.plot("trades", **kwargs)


def test_names_with_dollar_signs_are_drawn_as_written():
    """hunt59 F1: a variant named with a pair of '$' was read as matplotlib math: bad math
    failed the drawing (every figure of the report's index was lost), good math was drawn
    as math ('gain $5 or $_{x' in italics)."""
    from metaflow_nb.services.plots import figure_png

    names = [r"fee $\frac{ and $", "gain $5 or $_{x", "plain"]
    cfg = {"variant_config": {"name": "costs in $ and $\\alpha$", "base_strategy": "config/runs/sma_cross.yaml",
                              "base_operation": "config/operations/sp500_daily.yaml",
                              "variants": [{"name": n} for n in names]}}
    cmp = mf.compare_variants(cfg, data=mf.load_data("sp500_daily", start="2015-01-01", end="2016-12-31"),
                              backend="sequential", progress=False)
    for kind in ("equity", "rejections", "bootstrap"):
        fig = cmp.plot(kind)
        assert figure_png(fig, dpi=30)[:4] == b"\x89PNG", kind
    labels = legend_labels(cmp.plot("equity").axes[0])
    assert [lab.split(" (")[0].replace("\\$", "$") for lab in labels] == names


def test_math_the_figures_draw_stays_math():
    """hunt63 F1: turning math off in every text of a figure showed a log axis's ticks as
    '$\\mathdefault{10^{4}}$'. Only a text that is no valid math is drawn as written."""
    from matplotlib.text import Text

    from metaflow_nb.services.plots import ResultFigure, figure_png

    fig = ResultFigure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.plot([1, 10, 100], [10, 1000, 100000])
    ax.set_yscale("log")
    ax.set_title(r"$\sigma$ of x")
    bad = ax.text(0.5, 0.5, r"fee $\frac{ and $")
    assert figure_png(fig, dpi=30)[:4] == b"\x89PNG"
    ticks = [t for t in ax.get_yticklabels() if "mathdefault" in t.get_text()]
    assert ticks and all(t.get_parse_math() for t in ticks)
    assert ax.title.get_parse_math() and not bad.get_parse_math()
    assert isinstance(bad, Text)


def test_more_variants_than_colours_are_told_apart():
    """hunt59 F2: past matplotlib's 10 colours the 11th variant's line looked like the 1st's."""
    from metaflow_nb.services.plots import figure_png

    cfg = {"variant_config": {"name": "many", "base_strategy": "config/runs/sma_cross.yaml",
                              "base_operation": "config/operations/sp500_daily.yaml",
                              "variants": [{"name": f"v{k:02d}"} for k in range(22)]}}
    cmp = mf.compare_variants(cfg, data=mf.load_data("sp500_daily", start="2016-01-01", end="2016-12-31"),
                              backend="sequential", progress=False)
    fig = cmp.plot("equity")
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("v")]
    styles = [(ln.get_color(), ln.get_linestyle()) for ln in lines]
    assert len(lines) == 22 and len(set(styles)) == 22
    assert figure_png(fig, dpi=30)[:4] == b"\x89PNG"


def test_a_position_open_at_the_end_is_drawn_on_the_trades_chart():
    """hunt104 F5: a run whose only position was still open at its end drew nothing of it
    (the chart draws closed trades), and page=0 said 'this run has no trades'."""
    res = mf.backtest("config/runs/sma_cross.yaml", data="sp500_daily", start="2018-03-01", end="2018-05-30",
                      sma_1__fast=10, sma_1__slow=40)
    assert len(res.trades) == 0 and res.position.iloc[-1] > 0
    opened = int(res.journal.loc[res.journal["event"] == "TRADE_OPENED", "bar"].iloc[-1])
    ax = res.plot("trades").axes[0]
    spans = [p for p in ax.patches if p.get_label() == "Long position open at the end"]
    assert len(spans) == 1 and spans[0].get_x() == opened - 0.5
    assert "Long position open at the end" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ConfigError, match=r"^page: this run has no closed trades \(a long position opened "
                                          r"2018-05-11 is open at its end\)"):
        res.plot("trades", page=0)


def test_a_walk_forward_without_an_efficiency_says_n_a_in_its_title(wf):
    from types import SimpleNamespace
    from metaflow_nb.services.plots import plot_walk_forward

    undefined = SimpleNamespace(**{k: getattr(wf, k) for k in ("windows", "primary_metric", "name", "oos_equity")},
                                efficiency=float("nan"))
    title = plot_walk_forward(undefined).axes[0].get_title()
    assert "walk-forward efficiency n/a" in title and "nan" not in title
