"""services.overlap: compiled calls in a worker thread, results finished in call order on
the caller's thread, and nothing computed lost when the caller fails."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from metaflow_nb.services import overlap


@pytest.fixture(params=[True, False], ids=["overlapping", "in place"])
def mode(request, monkeypatch):
    monkeypatch.setattr(overlap, "can_overlap", lambda: request.param)
    return request.param


def test_results_are_finished_in_call_order_on_the_callers_thread(mode):
    seen = []
    me = threading.get_ident()
    with overlap.Overlap() as ov:
        for k in range(5):
            ov.run(np.arange, (k,), lambda r: seen.append((len(r), threading.get_ident() == me)))
    assert seen == [(k, True) for k in range(5)]


def test_a_failing_caller_keeps_the_finished_call(mode):
    kept = []
    with pytest.raises(KeyError):
        with overlap.Overlap() as ov:
            ov.run(sum, ([1, 2],), kept.append)
            raise KeyError("planning the next wave failed")
    assert kept == [3]


def test_a_failing_call_raises_on_the_callers_thread(mode):
    kept = []
    with pytest.raises(ZeroDivisionError):
        with overlap.Overlap() as ov:
            ov.run(lambda: 1 / 0, (), kept.append)
            ov.run(sum, ([1],), kept.append)
    assert kept == []
