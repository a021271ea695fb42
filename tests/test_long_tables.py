"""Long tables (#20 part 3): an optimization index lists the top runs, not every run
(a 1,176-run sweep was 33,000 px tall), and links the CSV that holds them all."""
from __future__ import annotations

import re
from types import SimpleNamespace

import metaflow_nb as mf


def test_optimization_index_shows_the_top_runs_and_links_every_run():
    from metaflow_nb.reporting.index import TOP_RUNS, optimization_body
    space = [{"worker_instance": "sma_1", "parameters": {"fast": {"start": 2, "end": 13, "step": 1},
                                                         "slow": {"start": 20, "end": 70, "step": 10}}}]
    opt = mf.optimize({"name": "sma 72", "base_strategy": "config/runs/sma_cross.yaml",
                       "base_operation": "config/operations/sp500_daily.yaml", "parameter_space": space},
                      data=mf.load_data("sp500_daily")[-400:], engine="batch", progress=False)
    assert opt.total_runs == 72 > TOP_RUNS
    body = optimization_body(SimpleNamespace(result=opt), pages=[])
    results = body[body.index("<h2>Results</h2>"):]
    rows = re.findall(r"<tr>\s*<td>", results)
    assert len(rows) == TOP_RUNS
    assert f"top {TOP_RUNS} of 72 runs sorted by sharpe_ratio" in results
    assert "href='all_results.csv'" in results
    # the rows shown are the best ones, in order
    best = opt.to_frame().sort_values("sharpe_ratio", ascending=False).head(TOP_RUNS)
    shown_fast = [int(x) for x in re.findall(r"<tr>\s*<td>(\d+)</td>", results)]
    assert shown_fast == list(best["sma_1.fast"])


def test_result_tables_in_a_notebook_scroll_and_keep_timestamps_on_one_line():
    bars = mf.load_data("eurusd_15m")[:1200]
    body = {"name": "sma wf", "base_strategy": "config/runs/sma_cross.yaml",
            "base_operation": "config/operations/sp500_daily.yaml",
            "parameter_space": [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10]}}],
            "windows": {"in_sample_bars": 600, "out_of_sample_bars": 300}}
    wf = mf.walk_forward(body, data=bars, engine="batch", progress=False)
    page = wf._repr_html_()
    assert "overflow-x:auto" in page
    first_oos = wf.windows["oos_start"].iloc[0]
    assert f"white-space:nowrap'>{first_oos:%Y-%m-%d %H:%M}</td>" in page
    assert f"{first_oos:%Y-%m-%d %H:%M}:00" not in page   # no seconds
    day = mf.walk_forward(body, data=mf.load_data("sp500_daily")[-1000:], engine="batch", progress=False)
    first = day.windows["oos_start"].iloc[0]
    assert f">{first:%Y-%m-%d}</td>" in day._repr_html_()   # daily bars: the date alone
