"""``session_gate``: setups only while a chosen session or killzone is open."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import field_validator

from ..base import FeatureContext, Params, ThreatWorker, param, register
from ..context.sessions import KILLZONES, SESSIONS

WindowName = Literal["asia", "london", "new_york", "london_killzone", "new_york_killzone"]
_ORDER = (*SESSIONS, *KILLZONES)


class SessionGateParams(Params):
    windows: tuple[WindowName, ...] = param(
        ("london_killzone", "new_york_killzone"),
        description="sessions or killzones of session_filter in which setups are allowed (any of them)")

    @field_validator("windows")
    @classmethod
    def _canonical(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("select at least one session or killzone")
        return tuple(w for w in _ORDER if w in v)   # de-duplicated, canonical order: one group key


@register
class SessionGate(ThreatWorker):
    """Blocks both directions (mask 3, reason ``SESSION_CLOSED``) on a bar that starts
    outside every one of ``windows``: trade the ICT killzones, or the London session only.

    The windows are ``session_filter``'s (each in its own market's zone, daylight saving
    included: London 08:00-17:00 Europe/London, its killzone 07:00-10:00, New York's
    killzone 07:00-10:00 America/New_York, ...), read through ``ctx.context``, so a
    blueprint's ``session_filter`` instance (its ``timezone`` for data without a clock)
    applies. A setup is stamped on the bar whose close decides it; the gate looks at that
    bar's start time, known before the bar, so the mask is causal.

    >>> import pandas as pd
    >>> bars = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 0.0},
    ...                     index=pd.to_datetime(["2024-01-15 07:00", "2024-01-15 11:00", "2024-01-15 12:30",
    ...                                           "2024-07-15 06:00"]))
    >>> SessionGate("gate_1", SessionGateParams()).mask(FeatureContext(bars)).tolist()  # UTC bars
    [0, 3, 0, 0]
    """

    name = "session_gate"
    reasons = ("SESSION_CLOSED",)
    reason = "SESSION_CLOSED"
    Params = SessionGateParams

    def mask(self, ctx: FeatureContext) -> np.ndarray:
        flags = ctx.context("session_filter")
        inside = np.zeros(ctx.n, dtype=bool)
        for w in self.params.windows:
            inside |= np.asarray(flags[w], dtype=bool)
        return np.where(inside, 0, 3).astype(np.int8)
