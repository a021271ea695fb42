"""The plugin contract: what a worker is, what each role returns, and the plan types.

A plugin is a class with a ``name``, a ``role`` and a pydantic ``Params`` model. It is
registered with :func:`register` and instantiated per blueprint entry with validated
params. Workers do vectorised work on whole arrays; only the path-dependent part of a
strategy runs in the compiled bar loop.

Roles and what they return:

=============  =================================================================
context        ``compute(ctx) -> dict[str, ndarray]``: per-bar features
opportunity    ``detect(ctx) -> Signals``: direction and zone per bar; optionally
               ``score(ctx, setups) -> float ndarray``, one per setup, what a
               portfolio with ``rank: score`` orders simultaneous setups by
threat         ``mask(ctx) -> int8 ndarray`` (bit 0 blocks longs, bit 1 shorts)
               or, for path-dependent threats, ``drawdown_limit()``
entry          ``plan(ctx, opps) -> EntryPlan``
exit           ``plan(ctx, opps, entry) -> ExitPlan``
size           ``plan() -> SizePlan``
=============  =================================================================
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import numpy as np
from pydantic import ConfigDict, Field

from ..engine import codes
from ..limits import NumericPolicy

if TYPE_CHECKING:  # annotations only: features import the registry, which imports this
    from .features import FeatureContext

ROLES = ("context", "opportunity", "threat", "entry", "exit", "size")

# which blueprint section may hold which role
SECTION_ROLES = {
    "context_workers": "context",
    "opportunity_workers": "opportunity",
    "threat_workers": "threat",
    "entry_planning": "entry",
    "exit_planning": "exit",
    "size_planning": "size",
}


class Params(NumericPolicy):
    """Base of every plugin's params model: strict, immutable; floats finite, integers
    within int64, no boolean taken for a number (:class:`metaflow_nb.limits.NumericPolicy`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def param(default: Any, *, suggest: Optional[tuple] = None, description: str = "", **bounds: Any) -> Any:
    """A plugin parameter with bounds and a suggested range for widgets and sweeps.

    ``suggest`` is ``(start, end, step)`` for numbers; booleans and literals suggest their
    values on their own.

    >>> class P(Params):
    ...     fast: int = param(10, ge=1, suggest=(5, 50, 5), description="fast period")
    >>> P().fast
    10
    """
    extra = {"suggest": list(suggest)} if suggest is not None else None
    return Field(default, description=description, json_schema_extra=extra, **bounds)


class Worker:
    """Base class of all plugins. Subclasses set ``name``, ``role`` and ``Params``."""

    name: ClassVar[str] = ""
    role: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    description: ClassVar[str] = ""

    def __init__(self, instance_id: str, params: Params):
        self.instance_id = instance_id
        self.params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.instance_id!r}, {self.params!r})"


@dataclass(frozen=True)
class Signals:
    """What an opportunity worker emits: one candidate setup at most per bar.

    ``direction[i]`` is +1 (long), -1 (short) or 0; ``top``/``bottom`` bound the setup's
    zone (NaN where it has none), e.g. a fair value gap.
    """

    direction: np.ndarray
    top: np.ndarray
    bottom: np.ndarray

    @classmethod
    def from_direction(cls, direction: np.ndarray) -> "Signals":
        """Setups without zones: ``top`` and ``bottom`` are all NaN (one read-only array).
        An int8 ``direction`` (``indicators.crosses``') is kept as it is, not copied: the
        checks read it, nothing writes to it.

        >>> Signals.from_direction([0, 1, -1]).direction.tolist()
        [0, 1, -1]
        """
        direction = np.asarray(direction)
        nan = same_for_all(np.nan, int(direction.shape[0]) if direction.ndim else 0)
        # integers as int8 (an eighth of int64 to scan) when they fit; floats stay floats:
        # a cast would turn a NaN or 0.5 into 0, and wrap 300 to 44, before the checks name them
        kind = direction.dtype.kind
        if direction.dtype != np.int8 and (kind == "b" or (kind in "iu" and (
                direction.size == 0 or (int(direction.min()) >= -128 and int(direction.max()) <= 127)))):
            direction = direction.astype(np.int8)
        return cls(direction, nan, nan)


@dataclass(frozen=True)
class Opportunities:
    """All workers' setups merged into one stream sorted by bar, then workforce order."""

    bar: np.ndarray        # int64
    direction: np.ndarray  # int64, +1 / -1
    worker: np.ndarray     # int64, index into the opportunity workers
    top: np.ndarray
    bottom: np.ndarray
    signal_close: np.ndarray  # close of the bar the setup was stamped on

    def __len__(self) -> int:
        return int(self.bar.shape[0])

    def take(self, rows: np.ndarray) -> "Opportunities":
        """The setups ``rows`` (indices or a boolean mask), every field a contiguous copy.

        >>> o = Opportunities(np.array([3, 5, 8]), np.array([1, -1, 1]), np.array([0, 1, 0]), *(np.zeros(3),) * 3)
        >>> o.take(o.worker == 0).bar.tolist()
        [3, 8]
        """
        return Opportunities(*(np.ascontiguousarray(getattr(self, f)[rows]) for f in
                               ("bar", "direction", "worker", "top", "bottom", "signal_close")))


@dataclass(frozen=True)
class EntryPlan:
    limit: np.ndarray      # limit price per opportunity, NaN = market order
    cancel: np.ndarray     # a close beyond this cancels an unfilled limit, NaN = never
    expiry_bars: int = 0   # 0 = good till cancelled


def same_for_all(value: float, n: int) -> np.ndarray:
    """A read-only per-opportunity array of ``n`` copies of ``value`` that takes no memory
    per opportunity (a stride-0 view); a sweep passes it to the kernel as one number.

    >>> a = same_for_all(0.02, 3)
    >>> a.tolist(), a.strides, a.flags.writeable
    ([0.02, 0.02, 0.02], (0,), False)
    """
    # a slice of one long stride-0 view per value: ~20x cheaper than np.broadcast_to,
    # and a sweep plans thousands of combinations with a handful of stop values
    return _endless(float(value).hex())[:n]


@functools.lru_cache(maxsize=256)
def _endless(key: str) -> np.ndarray:
    """A read-only stride-0 view of 2**40 copies of the float ``float.fromhex(key)``
    (keyed by the exact bits' text: one key for every NaN, 0.0 apart from -0.0)."""
    one = np.array([float.fromhex(key)], dtype=np.float64)
    view = np.ndarray((2 ** 40,), dtype=np.float64, buffer=one, strides=(0,))
    view.flags.writeable = False
    return view


@dataclass(frozen=True)
class ExitPlan:
    stop_mode: int = codes.PRICE_NONE
    stop: Optional[np.ndarray] = None
    target_mode: int = codes.PRICE_NONE
    target: Optional[np.ndarray] = None
    reverse: bool = False   # exit (and possibly reverse) on an opposite opportunity
    exclusive: bool = False  # any accepted setup closes the open position first
    time_stop_bars: int = 0  # exit at the open of the bar this many bars after the entry (0 = never)
    #: the trailing stop (codes.TRAIL_*), its parameter and its per-bar inputs for longs and
    #: shorts (distances or levels, one per bar; see engine.records.Exits)
    trail_mode: int = codes.TRAIL_NONE
    trail_param: float = 0.0
    trail_long: Optional[np.ndarray] = None
    trail_short: Optional[np.ndarray] = None
    breakeven_r: float = 0.0  # move the stop to the entry after +this many R (0 = never)
    flat_at: Optional[np.ndarray] = None  # per bar, nonzero: close the position at that bar's close
    #: the partial take-profit: ``partial_fraction`` of the position closes at the level of
    #: ``partial`` (per setup, read by ``partial_mode`` as a target is); the rest goes on
    partial_mode: int = codes.PRICE_NONE
    partial: Optional[np.ndarray] = None
    partial_fraction: float = 0.0
    #: exit conditions of the planner's own, per bar: nonzero at bar ``i`` closes an open long
    #: (``exit_long``) or short (``exit_short``) at the open of bar ``i + 1``, as an opposite
    #: signal at ``i``'s close does, with exit reason ``EXIT_CONDITION`` or the planner's own
    #: (:class:`ExitPlanner`); known at ``i``'s close
    exit_long: Optional[np.ndarray] = None
    exit_short: Optional[np.ndarray] = None


@dataclass(frozen=True)
class SizePlan:
    kind: int = codes.SIZER_ALL_IN
    param: float = 1.0
    whole_units: bool = True


class ContextWorker(Worker):
    role = "context"

    def compute(self, ctx: "FeatureContext") -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        """The worker's features of ``ctx``'s bars: output name -> one value per bar
        (``ctx.n``), the value of bar ``i`` known at its close.

        >>> import pandas as pd
        >>> from metaflow_nb.workers.features import FeatureContext
        >>> class Mid(ContextWorker):
        ...     def compute(self, ctx):
        ...         return {"mid": (ctx.high + ctx.low) / 2}
        >>> bars = pd.DataFrame({"open": 1.0, "high": [2.0, 4.0], "low": [1.0, 2.0], "close": 1.0, "volume": 0.0})
        >>> Mid("mid_1", Params()).compute(FeatureContext(bars))["mid"].tolist()
        [1.5, 3.0]
        """
        raise NotImplementedError


class OpportunityWorker(Worker):
    """Finds setups: ``detect(ctx)`` returns :class:`Signals`, one candidate per bar at most.

    A worker may also define ``score(ctx, setups) -> ndarray``: one finite number per
    setup of ``setups`` (an :class:`Opportunities` of its own setups), larger meaning
    better. A portfolio operation with ``rank: score`` decides the setups stamped at the
    same time in that order, highest first, and fills the entries waiting at a bar so too
    (ties in basket order). Like everything a worker computes, a setup's score may only
    read bars up to the setup's own (``metaflow-nb check-causality`` replays prefixes).
    """

    role = "opportunity"

    def detect(self, ctx: "FeatureContext") -> Signals:  # pragma: no cover - abstract
        """The setups found in ``ctx``'s bars: at most one per bar, stamped on the bar whose
        close completes it.

        >>> import pandas as pd
        >>> from metaflow_nb.workers.features import FeatureContext
        >>> class UpClose(OpportunityWorker):
        ...     def detect(self, ctx):
        ...         return Signals.from_direction((ctx.close > ctx.open).astype(int))
        >>> bars = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": [0.9, 1.5], "volume": 0.0})
        >>> UpClose("up_1", Params()).detect(FeatureContext(bars)).direction.tolist()
        [0, 1]
        """
        raise NotImplementedError


class NamedReasons:
    """Reason codes a plugin names its outcomes with: a threat's rejections, an exit
    planner's exits (its exit conditions).

    ``reasons`` declares the codes the plugin may use (upper-case names such as
    ``"AGAINST_TREND"``; integer codes are allocated when the plugin is registered, see
    :func:`declare_reasons`); ``reason`` is the one an instance uses: a class attribute,
    or a property reading a param when one plugin serves several of its codes. A plugin
    with one code may set only ``reason`` (or only ``reasons``).
    """

    reasons: ClassVar[tuple[str, ...]] = ()
    reason: ClassVar[str] = ""

    @classmethod
    def declared_reasons(cls) -> tuple[str, ...]:
        """The reason codes the plugin declares: ``reasons``, else its class-level ``reason``.

        >>> class Trend(ThreatWorker):
        ...     reason = "AGAINST_TREND"
        >>> Trend.declared_reasons()
        ('AGAINST_TREND',)
        """
        if cls.reasons:
            return tuple(cls.reasons)
        own = getattr(cls, "reason", "")  # a property (a reason chosen by params) is no declaration
        return (own,) if isinstance(own, str) and own else ()

    def instance_reason(self) -> str:
        """This instance's reason code: ``reason``, or the only declared one when unset.

        >>> class Trend(ThreatWorker):
        ...     reasons = ("AGAINST_TREND",)
        >>> Trend("trend_1", Params()).instance_reason()
        'AGAINST_TREND'
        """
        own = self.reason
        if not own:
            declared = self.declared_reasons()
            return declared[0] if len(declared) == 1 else ""
        return own


class ThreatWorker(NamedReasons, Worker):
    """A threat rejects setups, each rejection with a reason code the journal names
    (declared as :class:`NamedReasons` says; a threat declares at least one)."""

    role = "threat"

    def mask(self, ctx: "FeatureContext") -> np.ndarray:
        """Per-bar int8 bitmask: 1 blocks longs, 2 blocks shorts, 3 blocks both.

        >>> import pandas as pd
        >>> from metaflow_nb.workers.features import FeatureContext
        >>> class NoShortsOnDownBars(ThreatWorker):
        ...     reason = "DOWN_BAR"
        ...     def mask(self, ctx):
        ...         return np.where(ctx.close < ctx.open, 2, 0).astype(np.int8)
        >>> bars = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": [0.9, 1.5], "volume": 0.0})
        >>> NoShortsOnDownBars("t_1", Params()).mask(FeatureContext(bars)).tolist()
        [2, 0]
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def drawdown_limit(self) -> Optional[tuple[float, int]]:
        """``(limit_pct, cooldown_bars)`` for a path-dependent drawdown threat, else None.

        >>> ThreatWorker("t_1", Params()).drawdown_limit() is None   # a mask threat
        True
        """
        return None


def declare_reasons(cls: type) -> tuple[int, ...]:
    """Allocate the integer codes of the reasons a threat or exit plugin declares (in
    :mod:`metaflow_nb.engine.codes`; a name already known keeps its code).

    A threat must declare at least one; an exit planner may declare none (its exit
    conditions then read ``EXIT_CONDITION``). ``TypeError`` (the registry's error for a
    malformed plugin) for a name that is not an upper-case identifier, is a built-in skip,
    cancel or exit reason (``IN_POSITION``, ``STOP_LOSS`` ...), or names the other kind
    (a threat's reason as an exit's, or the reverse).

    >>> class Trend(ThreatWorker):
    ...     name, reasons = "trend_guard", ("AGAINST_TREND",)
    >>> declare_reasons(Trend)[0] >= codes.FIRST_PLUGIN_REASON
    True
    >>> class Back(ExitPlanner):
    ...     name, reasons = "back_inside", ("BACK_INSIDE",)
    >>> declare_reasons(Back)[0] == codes.EXIT_REASONS["BACK_INSIDE"]
    True
    """
    threat = isinstance(cls, type) and issubclass(cls, ThreatWorker)
    if not (threat or isinstance(cls, type) and issubclass(cls, ExitPlanner)):
        raise TypeError(f"{getattr(cls, '__name__', cls)}: reason codes are declared by a ThreatWorker or an "
                        f"ExitPlanner")
    if isinstance(cls.reasons, str):  # tuple("AB") would declare "A" and "B"
        raise TypeError(f"{cls.__name__}: reasons is a tuple of names, e.g. reasons = ({cls.reasons!r},)")
    declared = cls.declared_reasons()
    twice = next((r for k, r in enumerate(declared) if r in declared[:k]), None)
    if twice is not None:   # refused here, at import, as every other fault of reasons is
        raise TypeError(f"{cls.__name__}: reason {twice!r} is listed twice; list each reason once")
    if threat and not declared:
        raise TypeError(f"{cls.__name__}: a threat worker declares its reason codes, e.g. "
                        f"reasons = ('AGAINST_TREND',)")
    allocate = codes.allocate_reason if threat else codes.allocate_exit_reason
    try:
        return tuple(allocate(r) for r in declared)
    except ValueError as exc:
        raise TypeError(f"{cls.__name__}: {exc}") from None


class EntryPlanner(Worker):
    role = "entry"

    def plan(self, ctx: "FeatureContext", opps: Opportunities) -> EntryPlan:  # pragma: no cover
        """The order of each setup of ``opps`` (in their order): its limit price (NaN: a
        market order at the next open), its cancel level and how long it stays live.

        >>> class AtSignalClose(EntryPlanner):
        ...     def plan(self, ctx, opps):
        ...         return EntryPlan(limit=opps.signal_close, cancel=np.full(len(opps), np.nan), expiry_bars=3)
        >>> nan = np.array([np.nan])
        >>> opps = Opportunities(np.array([4]), np.array([1]), np.array([0]), nan, nan, np.array([9.5]))
        >>> AtSignalClose("e_1", Params()).plan(None, opps).limit.tolist()
        [9.5]
        """
        raise NotImplementedError


class ExitPlanner(NamedReasons, Worker):
    """An exit planner sets the exits of a trade (stops, targets, the rules that act on
    its path) and may close it on conditions of its own (``ExitPlan.exit_long`` /
    ``exit_short``). Those exits read ``EXIT_CONDITION``, or the planner's own name for
    them, declared as :class:`NamedReasons` says (e.g. ``reasons = ("RSI_BACK",)``)."""

    role = "exit"
    #: what this planner contributes, so the translator can refuse two stop providers
    provides_stop: ClassVar[bool] = False
    provides_target: ClassVar[bool] = False
    #: its levels are in R (the entry-to-stop distance at the fill), so the translator
    #: refuses it when no planner sets a stop; a ``needs_stop_for(params)`` staticmethod,
    #: when the class has one, names the param measured in R (None: these params need no stop)
    needs_stop: ClassVar[bool] = False

    def plan(self, ctx: "FeatureContext", opps: Opportunities, entry: EntryPlan) -> ExitPlan:  # pragma: no cover
        """The exits this planner sets for the setups of ``opps`` entered by ``entry``: the
        :class:`ExitPlan` fields it fills, the others left at their defaults (the run
        combines the plans of all its exit planners).

        >>> class TenBars(ExitPlanner):
        ...     def plan(self, ctx, opps, entry):
        ...         return ExitPlan(time_stop_bars=10)
        >>> TenBars("x_1", Params()).plan(None, None, None).time_stop_bars
        10
        """
        raise NotImplementedError


class SizePlanner(Worker):
    role = "size"
    needs_stop: ClassVar[bool] = False

    def plan(self) -> SizePlan:  # pragma: no cover
        """How every order is sized: the sizer kind (``codes.SIZER_*``), its parameter and
        whether sizes are rounded down to whole units.

        >>> class Quarter(SizePlanner):
        ...     def plan(self):
        ...         return SizePlan(codes.SIZER_FIXED_FRACTION, 0.25, whole_units=False)
        >>> Quarter("s_1", Params()).plan().param
        0.25
        """
        raise NotImplementedError
