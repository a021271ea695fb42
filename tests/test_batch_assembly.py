"""The Python side of the batch path, written for speed: run ids from a serialised
template, params validated once per distinct set, metric rows named in one pass,
feature keys memoised. Each must give exactly what the plain
version gives."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metaflow_nb as mf
from metaflow_nb.engine.metrics import METRIC_NAMES, metrics_dict, metrics_json
from metaflow_nb.errors import ConfigError
from metaflow_nb.assembly.group import group_key
from metaflow_nb.services import batch
from metaflow_nb.services.results import json_safe
from metaflow_nb.workers import features as wfeatures
from metaflow_nb.workers.base import FeatureContext


def stops_blueprint() -> dict:
    return {
        "name": "bp",
        "workforce": {
            "context_workers": [{"instance_id": "atr_1", "plugin": "atr", "params": {"period": 14}}],
            "opportunity_workers": [{"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 5, "slow": 30}}],
            "planning_workers": {
                "exit_planning": [
                    {"instance_id": "stops_1", "plugin": "percent_stops",
                     "params": {"stop_loss_pct": 2.0, "reference": "fill"}},
                    {"instance_id": "exit_1", "plugin": "reverse_on_opposite", "params": {}},
                ],
                "size_planning": [{"instance_id": "size_1", "plugin": "fixed_fraction_sizer",
                                   "params": {"fraction": 0.5}}],
            },
        },
    }


BASE = mf.build_specs(stops_blueprint(), data="sp500_daily")

VALUES = {
    ("sma_1", "fast"): st.one_of(st.integers(1, 40), st.sampled_from([5.0, True, 0])),
    ("sma_1", "slow"): st.integers(2, 80),
    ("stops_1", "stop_loss_pct"): st.one_of(st.none(), st.floats(0.1, 20.0, allow_nan=False), st.just(2)),
    ("stops_1", "take_profit_pct"): st.one_of(st.none(), st.floats(0.5, 30.0, allow_nan=False)),
    ("stops_1", "reference"): st.sampled_from(["signal_close", "fill", "nonsense"]),
    ("size_1", "fraction"): st.floats(0.01, 1.5, allow_nan=False),
    ("atr_1", "period"): st.integers(1, 30),
}


@st.composite
def combos(draw):
    keys = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=4, unique=True))
    out = []
    for _ in range(draw(st.integers(1, 6))):
        combo: dict = {}
        for inst, p in keys:
            combo.setdefault(inst, {})[p] = draw(VALUES[(inst, p)])
        out.append(combo)
    return out


def specs_of(combo):
    """The general path's specs of a combination (every override validated at once, in
    workforce order)."""
    return BASE.with_param_overrides(combo)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(combos=combos())
def test_run_ids_and_failures_are_those_of_the_general_path(combos):
    prepared, outcomes = batch.validate_combos(BASE, combos)
    by_index = {p.index: p for p in prepared}
    for i, combo in enumerate(combos):
        try:
            specs = specs_of(combo)
        except ConfigError as exc:
            assert i not in by_index and outcomes[i].status == "failed"
            assert outcomes[i].error_message.rsplit(": ", 1)[-1] == str(exc).rsplit(": ", 1)[-1]
            continue
        p = by_index[i]
        assert (p.spec_hash, p.run_id) == (specs.hash, specs.run_id)
        assert p.group_key == group_key(p.workforce)  # the key from cached JSON is the plain one
        for w in (*p.workforce.context, *p.workforce.opportunity, p.workforce.entry, *p.workforce.exits,
                  p.workforce.size):
            assert w.params.model_dump(mode="json") == specs.params(w.instance_id)


def test_the_hash_template_falls_back_when_the_params_cannot_be_placed(monkeypatch):
    combos = [{"sma_1": {"fast": f}, "stops_1": {"stop_loss_pct": s}} for f in (3, 4) for s in (1.0, None)]
    from metaflow_nb.config import buildspecs
    monkeypatch.setattr(buildspecs, "canonical_json", lambda obj, real=buildspecs.canonical_json: (
        real(obj).replace("metaflow-nb:params", "moved") if isinstance(obj, dict) and "v" in obj else real(obj)))
    assert batch._HashTemplate(BASE, ("sma_1", "stops_1")).parts is None
    prepared, _ = batch.validate_combos(BASE, combos)
    assert [p.spec_hash for p in prepared] == [specs_of(c).hash for c in combos]
    monkeypatch.undo()
    assert batch._HashTemplate(BASE, ("sma_1", "stops_1")).parts is not None


def test_params_that_compare_equal_but_validate_differently_are_kept_apart():
    keys = {batch._param_key("sma_1", {"fast": v}) for v in (1, 1.0, True)}
    assert len(keys) == 3
    assert batch._param_key("x", {"a": [1, 2]}) == batch._param_key("x", {"a": [1, 2]})  # unhashable: by JSON


def test_metric_rows_are_named_as_json_safe_metrics_dict():
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(40, len(METRIC_NAMES))) * 100
    vecs[rng.random(vecs.shape) < 0.2] = np.nan
    vecs[rng.random(vecs.shape) < 0.1] = np.inf
    vecs[rng.random(vecs.shape) < 0.1] = -np.inf
    for name in ("total_trades", "opportunities_detected", "opportunities_rejected"):
        vecs[:, METRIC_NAMES.index(name)] = rng.integers(0, 500, len(vecs))
    rows = metrics_json(vecs)
    assert len(rows) == len(vecs)
    for got, vec in zip(rows, vecs):
        want = json_safe(metrics_dict(vec))
        assert list(got) == list(want)
        for k in want:
            assert type(got[k]) is type(want[k]) and (got[k] == want[k] or
                                                       (got[k] is None and want[k] is None)), k


def test_feature_keys_are_memoised_per_plugin_class_and_typed_value(sp500, monkeypatch):
    monkeypatch.setattr(wfeatures, "_FEATURE_KEYS", {})
    ctx = FeatureContext(sp500)
    a = ctx.feature("sma", {"period": 10})
    assert ctx.feature("sma", {"period": 10}) is a
    assert len(wfeatures._FEATURE_KEYS) == 1
    # a different context, the same dataset: same key, the shared cache returns the same arrays
    ctx2 = FeatureContext(sp500, cache=ctx.cache)
    assert ctx2.feature("sma", {"period": 10}) is a
    b = ctx.feature("sma", {"period": 10.0})  # 10.0 is a valid int too: the same feature
    assert b is a
    assert len(wfeatures._FEATURE_KEYS) == 2
    for _ in range(2):  # invalid params raise every time, they are not remembered
        with pytest.raises(Exception, match="period"):
            ctx.feature("sma", {"period": 0})
    assert len(wfeatures._FEATURE_KEYS) == 2
    assert ctx.feature("sma") is ctx.feature("sma", {"period": 20})  # the defaults filled in


def test_feature_key_memo_is_bounded(sp500, monkeypatch):
    monkeypatch.setattr(wfeatures, "_FEATURE_KEYS", {})
    monkeypatch.setattr(wfeatures, "_FEATURE_KEYS_SIZE", 5)
    ctx = FeatureContext(sp500.iloc[:300])
    for p in range(1, 30):
        ctx.feature("sma", {"period": p})
        assert len(wfeatures._FEATURE_KEYS) <= 5
    assert math.isnan(ctx.feature("sma", {"period": 29})["sma"][0])
