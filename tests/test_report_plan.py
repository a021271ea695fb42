"""An optimization report's manifest takes each run's metrics from the sweep's row (the
batch path equals the single path bit for bit) instead of running every run again; what
it records is what ``report --verify`` recomputes with a single run."""
from __future__ import annotations

import pytest

import metaflow_nb as mf
from metaflow_nb.errors import ConfigError
from metaflow_nb.reporting import plan as plan_mod
from metaflow_nb.services.formatting import json_safe
from metaflow_nb.services.operation import OperationService


def test_optimization_manifest_metrics_come_from_the_sweep_and_equal_single_runs(monkeypatch):
    taken = []
    real = plan_mod._row_metrics

    def spy(row):
        out = real(row)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(plan_mod, "_row_metrics", spy)
    plan = plan_mod.build_plan("config/optimizations/optimize_fvg_params.yaml", backend="sequential")
    ok = [r for r in plan.runs if r.status == "ok"]
    assert len(ok) == 16 and taken == [True] * 16  # no run was run again for its metrics
    svc = OperationService()
    for r in ok:
        assert json_safe(r.metrics) == json_safe(svc.run(r.specs).metrics), r.name


def test_a_report_of_an_in_memory_config_asks_for_a_file():
    # a report records its config file so that --verify can rerun it: a dict has none
    with pytest.raises(ConfigError, match=r"^report: config must be the path of .* not a dict; write it to a file"):
        mf.report({"optimization_config": {"name": "x"}})
