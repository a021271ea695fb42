"""A context plugin's optional ``compute_many(ctx, models)`` (a sweep's speed-up: one output
dict per params model, in their order, each what ``compute`` gives) is checked where it
enters the feature cache: a wrong count, a malformed output or outputs that are not
``compute``'s (the usual mistake: another order) are a ``PluginError`` naming the plugin,
never a sweep whose rows belong to other parameter values."""
from __future__ import annotations

import numpy as np
import pytest

import engine_helpers as h
import metaflow_nb as mf
from metaflow_nb.errors import PluginError
from metaflow_nb.workers.base import ContextWorker, OpportunityWorker, Params, Signals, param
from metaflow_nb.workers.features import FeatureContext


class MomParams(Params):
    period: int = param(10, ge=1, le=500, description="bars")


def momentum_plugin(name: str, many):
    class Mom(ContextWorker):
        Params = MomParams

        def compute(self, ctx):
            k = self.params.period
            out = np.full(ctx.n, np.nan)
            out[k:] = ctx.close[k:] - ctx.close[:-k]
            return {"mom": out}

        @classmethod
        def compute_many(cls, ctx, models):
            return many(cls, ctx, models)

    Mom.name = name
    return h._register(Mom)


def requests(name, periods):
    return [(name, {"period": p}) for p in periods]


def test_outputs_in_the_models_order_are_cached():
    name = momentum_plugin("test_mom_ok", lambda cls, ctx, models: [cls("m", m).compute(ctx) for m in models]).name
    ctx = FeatureContext(mf.load_data("sp500_daily"))
    ctx.prefetch(requests(name, [5, 10, 20]))
    assert np.array_equal(ctx.feature(name, {"period": 20})["mom"][20:],
                          (ctx.close[20:] - ctx.close[:-20]))


@pytest.mark.parametrize("k, many, message", [
    (0, lambda cls, ctx, models: [cls("m", m).compute(ctx) for m in models][::-1],
     r"test_mom_bad_0 \(context\): compute_many's output 0 \(params \{'period': 5\}\) is not what compute gives "
     r"\(mom differs\); expected one output per params model, in their order"),
    (1, lambda cls, ctx, models: [cls("m", m).compute(ctx) for m in models][:-1],
     r"test_mom_bad_1 \(context\): compute_many returned 2 outputs for 3 params models; expected one per model"),
    (2, lambda cls, ctx, models: [{"mom": np.zeros(3)} for _ in models],
     r"test_mom_bad_2 \(context\): compute_many's output 0: mom has 3 values; expected \d+ \(one per bar\)"),
    (3, lambda cls, ctx, models: None,
     r"test_mom_bad_3 \(context\): compute_many returned a NoneType; expected a list of output dicts"),
])
def test_a_wrong_compute_many_is_refused_naming_the_plugin(k, many, message):
    name = momentum_plugin(f"test_mom_bad_{k}", many).name
    ctx = FeatureContext(mf.load_data("sp500_daily"))
    with pytest.raises(PluginError, match="^" + message):
        ctx.prefetch(requests(name, [5, 10, 20]))


def _middle_swapped(cls, ctx, models):
    outs = [cls("m", m).compute(ctx) for m in models]
    outs[1], outs[2] = outs[2], outs[1]
    return outs


def test_a_swap_of_two_middle_outputs_is_caught_the_first_time():
    """Every output is compared with compute the first time a plugin's compute_many runs in
    a process (first and last only, later): a swap of two middle models passed the check
    of the first and the last."""
    name = momentum_plugin("test_mom_middle", _middle_swapped).name
    ctx = FeatureContext(mf.load_data("sp500_daily"))
    with pytest.raises(PluginError, match=r"^test_mom_middle \(context\): compute_many's output 1 \(params "
                                          r"\{'period': 10\}\) is not what compute gives"):
        ctx.prefetch(requests(name, [5, 10, 20, 40]))


def test_a_sweep_with_a_reordering_compute_many_fails_in_one_line_not_with_other_rows():
    name = momentum_plugin("test_mom_sweep", lambda cls, ctx, models: [cls("m", m).compute(ctx)
                                                                        for m in models][::-1]).name

    class MomCross(OpportunityWorker):
        name = "test_momcross_sweep"
        Params = MomParams

        def feature_requests(self):
            return [(name, {"period": self.params.period})]

        def detect(self, ctx):
            m = ctx.feature(name, {"period": self.params.period})["mom"]
            d = np.zeros(ctx.n, dtype=np.int8)
            d[1:] = np.where((m[:-1] <= 0) & (m[1:] > 0), 1, np.where((m[:-1] >= 0) & (m[1:] < 0), -1, 0))
            return Signals.from_direction(d)

    h._register(MomCross)
    strategy = {"name": "m", "direction": "long_short", "workforce": {
        "opportunity_workers": [{"instance_id": "m_1", "plugin": MomCross.name, "params": {"period": 10}}],
        "planning_workers": {"exit_planning": [{"instance_id": "r", "plugin": "reverse_on_opposite"}]}}}
    cfg = {"optimization_config": {"name": "m", "base_strategy": strategy,
                                   "base_operation": "config/operations/sp500_daily.yaml",
                                   "parameter_space": [{"worker_instance": "m_1",
                                                        "parameters": {"period": {"values": [5, 10, 20, 40]}}}]}}
    with pytest.raises(PluginError, match=r"^test_mom_sweep \(context\): compute_many's output 0 "):
        mf.optimize(cfg, engine="batch", progress=False)
