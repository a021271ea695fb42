"""Heatmap colours point the right way per metric: lower-is-better metrics (drawdown)
reversed, signed metrics (Sharpe) on a scale centred on zero, counts as integers on a
neutral scale. Checked on the rendered PNG, not only on the colour map's name.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest


def _fake_sweep(metric: str, values: list[float]) -> SimpleNamespace:
    """A 1 x n sweep of ``metric`` over one parameter (a second, single-valued, gives the grid)."""
    frame = pd.DataFrame({"w.a": list(range(len(values))), "w.b": [1] * len(values), metric: values,
                          "status": "ok"})
    target = SimpleNamespace(primary_metric="sharpe_ratio", maximize=lambda: True)
    return SimpleNamespace(all_results=frame, param_columns=["w.a", "w.b"], target=target, best_row=None,
                           name="fake")


def _cell_rgb(fig, col: int, row: int = 0) -> np.ndarray:
    """The rendered colour near the lower-left corner of a heatmap cell (clear of its label)."""
    import io

    from PIL import Image

    from metaflow_nb.services.plots import figure_png
    png = figure_png(fig)   # lays the figure out, so the transform below is the drawn one
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    ax = fig.axes[0]
    x, y = ax.transData.transform((col - 0.3, row - 0.3))
    h = img.shape[0]
    return img[int(round(h - y)), int(round(x))]


def _redness(rgb: np.ndarray) -> int:
    return int(rgb[0]) - int(rgb[1])


def test_heatmap_colours_drawdown_lower_is_better():
    from metaflow_nb.services.plots import plot_optimization
    fig = plot_optimization(_fake_sweep("max_drawdown_pct", [15.75, 10.0, 7.04]), metric="max_drawdown_pct")
    deepest, shallowest = _cell_rgb(fig, 0), _cell_rgb(fig, 2)
    assert _redness(deepest) > 60, f"15.75 % drawdown must be red, got {deepest}"
    assert _redness(shallowest) < -40, f"7.04 % drawdown must be green, got {shallowest}"
    assert "lower is better" in fig.axes[1].get_ylabel()


def test_heatmap_colours_sharpe_on_a_scale_centred_on_zero():
    from metaflow_nb.services.plots import plot_optimization
    fig = plot_optimization(_fake_sweep("sharpe_ratio", [-0.29, 0.0, 1.5, 3.0]), metric="sharpe_ratio")
    neg, zero, pos = _cell_rgb(fig, 0), _cell_rgb(fig, 1), _cell_rgb(fig, 3)
    assert _redness(neg) > 0, f"a negative Sharpe must not look green, got {neg}"
    assert abs(_redness(zero)) < 40 and min(zero[:2]) > 200, f"a Sharpe of 0 is the neutral middle, got {zero}"
    assert _redness(pos) < -60, f"the best Sharpe must be green, got {pos}"
    norm = fig.axes[0].collections[0].norm
    assert norm(0.0) == pytest.approx(0.5)
    # all negative: the least bad is still not green (a range-scaled map would paint it dark green)
    fig = plot_optimization(_fake_sweep("sharpe_ratio", [-3.0, -1.5, -0.29]), metric="sharpe_ratio")
    assert _redness(_cell_rgb(fig, 2)) > 0 and _redness(_cell_rgb(fig, 0)) > 60


def test_heatmap_counts_are_integers_on_a_neutral_scale():
    from metaflow_nb.services.plots import NEUTRAL_CMAP, plot_optimization
    fig = plot_optimization(_fake_sweep("total_trades", [373.0, 51.0, 120.0]), metric="total_trades")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["373", "51", "120"]
    assert fig.axes[0].collections[0].cmap.name == NEUTRAL_CMAP


def test_user_colour_map_keeps_the_metric_direction():
    from metaflow_nb.services.plots import metric_scale
    assert metric_scale("max_drawdown_pct", np.array([1.0, 2.0]), "viridis")[0] == "viridis_r"
    assert metric_scale("sharpe_ratio", np.array([1.0, 2.0]), "viridis")[0] == "viridis"
    assert metric_scale("max_drawdown_pct", np.array([1.0, 2.0]), "RdYlGn_r")[0] == "RdYlGn"  # reversed again


def test_a_grid_too_dense_to_read_its_labels_is_drawn_without_them():
    """hunt45 F4: one label per cell whatever the grid: a 100 x 200 heatmap drew 20,000
    unreadable labels in 27 s (a report draws several). Labels are drawn while the cells
    can hold them (at most 24 columns and 30 rows); annotate=True still asks for them."""
    from metaflow_nb.services.plots import plot_optimization

    def sweep(nx, ny):
        a, b = np.meshgrid(np.arange(nx), np.arange(ny))
        frame = pd.DataFrame({"w.a": a.ravel(), "w.b": b.ravel(), "sharpe_ratio": np.linspace(-1, 1, nx * ny),
                              "status": "ok"})
        target = SimpleNamespace(primary_metric="sharpe_ratio", maximize=lambda: True)
        return SimpleNamespace(all_results=frame, param_columns=["w.a", "w.b"], target=target, best_row=None,
                               name="grid")

    assert len(plot_optimization(sweep(24, 30)).axes[0].texts) == 24 * 30
    dense = plot_optimization(sweep(60, 40)).axes[0]
    assert len(dense.texts) == 0 and "labels" in dense.get_title()
    assert len(plot_optimization(sweep(25, 2), annotate=True).axes[0].texts) == 50
