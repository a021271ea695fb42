"""Issue: statistics reach the outputs (CLI JSON, notebook reprs, plots) of sweeps and variant tests."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import metaflow_nb as mf
from metaflow_nb.services.results import json_safe


@pytest.fixture(scope="module")
def sweep():
    return mf.optimize("config/optimizations/optimize_fvg_params.yaml", progress=False)


@pytest.fixture(scope="module")
def comparison():
    return mf.compare_variants("config/variants/exit_strategy_test.yaml", backend="sequential", progress=False)


def test_sweep_carries_deflated_sharpe_and_pbo(sweep):
    st = sweep.statistics
    assert st["n_trials"] == sweep.successful_runs == 16
    assert 0.0 <= st["dsr"] <= 1.0 and 0.0 <= st["psr"] <= 1.0
    # deflating by 16 trials can only lower the probability that the best Sharpe is > 0
    assert st["dsr"] <= st["psr"]
    assert st["expected_max_sharpe_annualized"] > 0
    assert st["pbo_combinations"] == 12870 and 0.0 <= st["pbo"] <= 1.0
    text = repr(sweep)
    assert "deflated Sharpe ratio" in text and "probability of backtest overfitting" in text
    assert "deflated Sharpe ratio" in sweep._repr_html_()
    doc = sweep.to_dict()
    json.dumps(doc)  # JSON-safe
    assert doc["statistics"]["dsr"] == pytest.approx(st["dsr"])


def test_pbo_plot_is_a_logit_histogram(sweep):
    import matplotlib.pyplot as plt
    open_before = len(plt.get_fignums())
    fig = sweep.plot("pbo")
    ax = fig.axes[0]
    assert len(ax.patches) > 0  # histogram bars
    # a detached figure that shows itself in a notebook, as every result figure (hunt19 F7)
    assert len(plt.get_fignums()) == open_before and fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    alone = sweep.statistics["_pbo_result"].plot_logits()
    assert len(plt.get_fignums()) == open_before and len(alone.axes[0].patches) > 0


def test_variant_stars_come_with_p_values(comparison):
    sig = comparison.significance
    assert sig["summary"] == "no significant winner" or sig["summary"].startswith("significant winners:")
    table = comparison.table()
    for metric, t in sig["metrics"].items():
        assert 0.0 < t["p_value"] <= 1.0
        winner_cells = " ".join(table[t["winner"]])
        assert t["label"] in winner_cells
    # a star only where the test is significant
    starred = sum("\u2605" in c for col in table.columns for c in table[col])
    assert starred == sum(t["significant"] for t in sig["metrics"].values())
    assert sig["summary"] in comparison.render_text()
    json.dumps(comparison.to_dict())


def test_identical_variants_have_no_significant_winner(tmp_path):
    # two variants that differ only by name: every difference is exactly zero
    cfg = tmp_path / "same.yaml"
    cfg.write_text(
        "variant_config:\n  name: same\n"
        "  base_operation: config/operations/sp500_daily.yaml\n"
        "  base_strategy: config/runs/sma_cross.yaml\n"
        "  variants:\n    - name: a\n    - name: b\n")
    cmp = mf.compare_variants(str(cfg), backend="sequential", progress=False)
    assert cmp.significance["summary"] == "no significant winner"
    assert not any("\u2605" in c for col in cmp.table().columns for c in cmp.table()[col])


def test_bootstrap_plot(comparison):
    """hunt104 F4: each panel's title fits its panel (~550 px over 333 px panels overlapped
    the next one's), the dashed lines have a legend, and a metric in % says its unit."""
    from metaflow_nb.services.formatting import METRIC_LABELS

    fig = comparison.plot("bootstrap")
    metrics = list(comparison.significance["metrics"])
    assert len(fig.axes) == len(metrics)
    for metric, ax in zip(metrics, fig.axes):
        unit = " (percentage points)" if "%" in METRIC_LABELS[metric][1] else ""
        assert ax.get_xlabel() == f"bootstrap difference{unit}" and len(ax.patches) > 0
        assert max(len(line) for line in ax.get_title().splitlines()) <= 44, ax.get_title()
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["no difference", "95 % interval"]


def test_cli_json_carries_the_statistics(tmp_path):
    cli = [sys.executable, "-m", "metaflow_nb.cli"]
    out = subprocess.run(cli + ["optimize", "config/optimizations/optimize_fvg_params.yaml", "--json"],
                         capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert {"dsr", "pbo", "dsr_significant"} <= set(doc["statistics"])
    out = subprocess.run(cli + ["variants", "config/variants/exit_strategy_test.yaml", "--json",
                                "--backend", "sequential"], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert "summary" in doc["significance"] and doc["significance"]["metrics"]


def test_walk_forward_carries_efficiency_and_spread():
    wf = mf.walk_forward("config/walk_forward/fvg_walk_forward.yaml", progress=False)
    doc = wf.to_dict()
    assert math.isfinite(doc["walk_forward_efficiency"])
    assert doc["oos_spread"]["n"] == int((wf.windows["status"] == "ok").sum())
    assert "walk-forward efficiency" in repr(wf)
