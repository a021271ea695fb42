"""Pydantic models of the YAML files: operations and strategy blueprints.

Shapes follow the source design (``../shared/seed``). Unknown keys are errors
(``extra="forbid"``) so a typo never silently falls back to a default. Worker ``params``
stay a plain mapping here; each plugin's own params model validates them in
:mod:`metaflow_nb.config.translator`, where the plugin is known.
"""
from __future__ import annotations

from typing import Annotated, Any, Iterator, Literal, Mapping, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from ..limits import MAX_CASH, MAX_LEVERAGE, NumericPolicy
from ..workers.base import SECTION_ROLES
from ..workers.registry import is_module_name

#: the six workforce sections in workforce order (the order workers are consulted in);
#: the plugin contract owns the section -> role table, this is its one spelling in config
WORKFORCE_SECTIONS: tuple[str, ...] = tuple(SECTION_ROLES)
#: the sections nested under ``workforce.planning_workers``: entry -> exit -> size
PLANNING_SECTIONS: tuple[str, ...] = tuple(s for s in WORKFORCE_SECTIONS if s.endswith("_planning"))


def section_path(section: str) -> tuple[str, ...]:
    """Where a section's worker list sits in a blueprint's ``workforce`` mapping.

    >>> section_path("threat_workers"), section_path("exit_planning")
    (('threat_workers',), ('planning_workers', 'exit_planning'))
    """
    if section not in SECTION_ROLES:
        raise KeyError(f"no workforce section {section!r}; sections: {', '.join(WORKFORCE_SECTIONS)}")
    return ("planning_workers", section) if section in PLANNING_SECTIONS else (section,)


def section_workers(workforce: Mapping[str, Any], section: str) -> list[Any]:
    """The worker list of one section of a blueprint's ``workforce`` mapping (the list
    itself, so a caller may change it in place; ``[]`` when the section is absent).

    >>> wf = {"opportunity_workers": [{"instance_id": "a"}], "planning_workers": {}}
    >>> section_workers(wf, "opportunity_workers"), section_workers(wf, "size_planning")
    ([{'instance_id': 'a'}], [])
    """
    node: Any = workforce
    for key in section_path(section):
        node = node.get(key) if isinstance(node, Mapping) else None
        if node is None:
            return []
    return node


def iter_section_workers(workforce: Mapping[str, Any]) -> Iterator[tuple[str, int, Any]]:
    """``(section, index, worker)`` for every worker of a ``workforce`` mapping, in
    workforce order.

    >>> wf = {"opportunity_workers": [{"instance_id": "a"}],
    ...       "planning_workers": {"exit_planning": [{"instance_id": "x"}]}}
    >>> [(s, i, w["instance_id"]) for s, i, w in iter_section_workers(wf)]
    [('opportunity_workers', 0, 'a'), ('exit_planning', 0, 'x')]
    """
    for section in WORKFORCE_SECTIONS:
        for i, w in enumerate(section_workers(workforce, section)):
            yield section, i, w


class _Strict(NumericPolicy):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _module_name(v: str) -> str:
    if not is_module_name(v):
        raise ValueError("not a module name (expected package.module, e.g. my_workers.rsi)")
    return v


#: ``plugins: [module, ...]``: modules whose workers a config uses (imported when the
#: config is translated, and in every worker process of a sweep)
PluginModules = list[Annotated[str, AfterValidator(_module_name)]]


def _known_clock(v: Optional[str]) -> Optional[str]:
    from ..data.clock import check_clock
    return check_clock(v)


#: a ``timezone:`` key (of ``data:``, an instrument, a universe): a clock
#: :mod:`metaflow_nb.data.clock` knows, or None
ClockName = Annotated[Optional[str], AfterValidator(_known_clock)]


def _known_trading_day(v: Optional[str]) -> Optional[str]:
    if v is None:
        return v
    from ..data.timeframe import check_trading_day  # pandas only when a trading day is set
    return check_trading_day(v)


#: a ``trading_day:`` key (of ``data:``, a basket's ``data:``, a context worker): a
#: convention :func:`metaflow_nb.data.timeframe.trading_day_rule` reads, in its canonical
#: spelling, or None
TradingDayName = Annotated[Optional[str], AfterValidator(_known_trading_day)]


class WorkerSpec(_Strict):
    """One worker instance in a workforce: ``{instance_id, plugin, params}``, and for a
    context worker optionally ``timeframe`` (``4h``, ``1d`` ...: it runs on coarser bars,
    see :mod:`metaflow_nb.workers.timeframes`) and that timeframe's ``trading_day``
    (``utc`` or ``fx``). Both are left out of the resolved JSON when unset."""

    instance_id: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    plugin: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    timeframe: Optional[str] = None
    trading_day: TradingDayName = None

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, v: Optional[str]) -> Optional[str]:
        from ..data.timeframe import parse_timeframe  # pandas only when a timeframe is set
        return None if v is None else parse_timeframe(v).label

    @model_validator(mode="after")
    def _day_needs_timeframe(self) -> "WorkerSpec":
        if self.trading_day is not None and self.timeframe is None:
            raise ValueError("trading_day is set but timeframe is not")
        return self

    @model_serializer(mode="wrap")
    def _unset_left_out(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        for key in ("timeframe", "trading_day"):
            if out.get(key) is None:
                out.pop(key, None)
        return out


class PlanningWorkers(_Strict):
    """The planning chain: entry -> exit -> size."""

    entry_planning: list[WorkerSpec] = Field(default_factory=list)
    exit_planning: list[WorkerSpec] = Field(default_factory=list)
    size_planning: list[WorkerSpec] = Field(default_factory=list)


class Workforce(_Strict):
    """Worker instances grouped by role, in the order they are consulted."""

    context_workers: list[WorkerSpec] = Field(default_factory=list)
    opportunity_workers: list[WorkerSpec] = Field(default_factory=list)
    threat_workers: list[WorkerSpec] = Field(default_factory=list)
    planning_workers: PlanningWorkers = Field(default_factory=PlanningWorkers)

    @model_validator(mode="after")
    def _unique_ids(self) -> "Workforce":
        seen: set[str] = set()
        for w in self.all_workers():
            if w.instance_id in seen:
                raise ValueError(f"instance_id {w.instance_id!r} is used twice; instance ids must be unique")
            seen.add(w.instance_id)
        return self

    def all_workers(self) -> list[WorkerSpec]:
        """Every worker instance, section by section in the order they are consulted.

        >>> wf = Workforce(opportunity_workers=[{"instance_id": "sma_1", "plugin": "sma_cross"}],
        ...                context_workers=[{"instance_id": "atr_1", "plugin": "atr"}])
        >>> [w.instance_id for w in wf.all_workers()]
        ['atr_1', 'sma_1']
        """
        return [w for section in WORKFORCE_SECTIONS
                for w in getattr(self.planning_workers if section in PLANNING_SECTIONS else self, section)]


class StrategyBlueprint(_Strict):
    """A strategy: its name, trading direction, the plugin modules it declares and its
    workforce (``config/runs/*.yaml``)."""

    name: str = "strategy"
    description: str = ""
    direction: Literal["long_short", "long_only", "short_only"] = "long_short"
    plugins: PluginModules = Field(default_factory=list)
    workforce: Workforce = Field(default_factory=Workforce)


#: ``data`` keys left out of a resolved operation when unset (run ids of operations
#: without them stay as they were); an override may set them (BuildSpecs.with_overrides)
OPTIONAL_DATA_KEYS = ("timezone", "date_column", "calendar", "trading_day", "timeframe", "intrabar")


class DataSource(_Strict):
    """What to run on: a bundled sample name or a CSV/Parquet path, a date range, how
    to read the file's timestamps (``timezone``: its clock; ``date_column``) and the
    market's trading calendar (``calendar``)."""

    source: str = Field(default="sp500_daily", min_length=1)
    start: Optional[str] = None
    end: Optional[str] = None
    trade_start: Optional[str] = Field(
        default=None, description="bars before this time only warm indicators up: no setup is acted on "
                                  "and metrics start here (walk-forward out-of-sample windows use it)")

    timezone: ClockName = Field(
        default=None, description="the data's clock: the zone its naive timestamps are written in, an IANA "
                                  "zone (Europe/Berlin) or a convention (broker_ny+7); unset: UTC. "
                                  "See metaflow_nb.data.clock")
    date_column: Optional[str] = Field(
        default=None, min_length=1, description="the timestamp column, when it is not named date, time, "
                                                "datetime or timestamp (nor the unnamed first column)")
    calendar: Optional[str] = Field(
        default=None, description="the market's trading calendar, for annualization and daily returns: "
                                  "fx_24x5 (260 days a year; days end 17:00 New York), crypto_24x7 (365) "
                                  "or exchange (252); unset: trading days a year measured from the data, "
                                  "days in UTC. See metaflow_nb.engine.metrics.calendar")
    trading_day: TradingDayName = Field(
        default=None, description="the market's own trading day, for daily returns and resampled bars, when "
                                  "its sessions cross midnight UTC: an IANA zone (Australia/Sydney: its local "
                                  "calendar day) or a zone and the local time the day ends (America/Chicago "
                                  "17:00); unset: the calendar's (the FX day for fx_24x5, else UTC). See "
                                  "metaflow_nb.data.timeframe")

    timeframe: Optional[str] = Field(
        default=None, description="run on the source resampled to this coarser timeframe (15m, 1h, 4h, 1d); "
                                  "bars are labelled by their open time, intraday bins counted from the "
                                  "trading day's start (the FX day with calendar fx_24x5, else UTC)")
    intrabar: Optional[str] = Field(
        default=None, min_length=1,
        description="finer bars that decide bars touching both the stop and a take-profit level (the first "
                    "touched wins; without them the stop is assumed first): 'source' (the source's own "
                    "bars, with data.timeframe) or a sample name or path at a finer timeframe, read on "
                    "the data's clock. See metaflow_nb.data.intrabar")
    intrabar_fingerprint: Optional[str] = Field(
        default=None, description="set when the config is resolved: the intrabar file's content hash "
                                  "(part of the run id)")

    @field_validator("start", "end", "trade_start", mode="before")
    @classmethod
    def _dates_as_text(cls, v: Any) -> Any:
        # YAML turns 2020-01-01 into a date; keep the text form so hashes are stable
        return None if v is None else str(v)

    @field_validator("start", "end", "trade_start")
    @classmethod
    def _a_date(cls, v: Optional[str]) -> Optional[str]:
        problem = None if v is None else date_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("timeframe")
    @classmethod
    def _a_timeframe(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        from ..data.timeframe import parse_timeframe
        return parse_timeframe(v).label

    @model_validator(mode="after")
    def _start_before_end(self) -> "DataSource":
        if self.start is not None and self.end is not None:
            import pandas as pd

            def utc(t: "pd.Timestamp") -> "pd.Timestamp":
                # a bound with an offset is that instant; naive bounds are UTC (as the loader reads them)
                return t.tz_convert("UTC").tz_localize(None) if t.tzinfo else t

            try:   # the end as a period: end "2018-12" runs to the last instant of December
                lo = utc(pd.Timestamp(self.start.strip()))
                end = pd.Timestamp(self.end.strip())
                hi = utc(end) if end.tzinfo else pd.Period(self.end.strip()).end_time
                after = lo > hi
            except (ValueError, TypeError, OverflowError):
                return self   # anything else: the loader's slice says if nothing is left
            if after:
                raise ValueError(f"start {self.start} is after end {self.end}; expected start <= end")
        return self

    @model_validator(mode="after")
    def _intrabar_source_needs_a_timeframe(self) -> "DataSource":
        if self.intrabar == "source" and self.timeframe is None:
            raise ValueError("intrabar 'source' reads the source's own bars inside coarser ones: set "
                             "data.timeframe (e.g. 1h) to run on coarser bars, or name a finer file")
        return self

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        if "@" in v:
            raise ValueError(f"unknown calendar {v!r}: set the market's day apart, in data.trading_day")
        from ..engine.metrics import check_calendar  # numpy and pandas only when a calendar is set
        return check_calendar(v)

    @model_serializer(mode="wrap")
    def _unset_left_out(self, handler: Any) -> dict[str, Any]:
        # left out when unset: run ids of operations without a clock or calendar stay as they were
        out = canonical_bounds(handler(self))
        for key in (*OPTIONAL_DATA_KEYS, "intrabar_fingerprint"):
            if out.get(key) is None:
                out.pop(key, None)
        return out


#: how a range bound of each pandas resolution is spelled (:func:`canonical_bound`)
_BOUND_SPELLING = {"Y-DEC": "%Y", "M": "%Y-%m", "D": "%Y-%m-%d", "h": "%Y-%m-%d %H", "min": "%Y-%m-%d %H:%M",
                   "s": "%Y-%m-%d %H:%M:%S"}
_FRACTION_DIGITS = {"ms": 3, "us": 6, "ns": 9}


def canonical_bound(text: str, side: str) -> str:
    """The one spelling of a range bound (``data.start``, ``data.end``, ``data.trade_start``)
    that selects the same bars as ``text`` on any data, so that spellings of one range name
    one run (the run id hashes the resolved text).

    A start selects from the first instant of the period it names (``2018-12``: from
    December 1st), so it is spelled by that instant, as briefly as it allows. An end keeps
    its period (``2018-12`` runs to the last instant of December, ``2018-12-31 16:00`` to
    the end of that minute): it is spelled at its own resolution. A bound with an offset
    (``...Z``, ``+02:00``) is that instant in UTC, as the loader reads it. Text pandas reads
    otherwise than these spellings say is kept as written.

    >>> canonical_bound("2005-1-3", "start"), canonical_bound("2005-01-03T00:00:00", "start")
    ('2005-01-03', '2005-01-03')
    >>> canonical_bound("2005-01-03T09:00:00+09:00", "start"), canonical_bound("2018-12", "end")
    ('2005-01-03', '2018-12')
    >>> canonical_bound("2018-12-31T16:00", "end"), canonical_bound("2018-12-31T16:00:00Z", "end")
    ('2018-12-31 16:00', '2018-12-31 16:00:00.000000000')
    """
    import warnings

    import pandas as pd

    written = text.strip()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # pandas' deprecation of some spellings (2018Q4): kept as written
            stamp = pd.Timestamp(written)
            if stamp.tzinfo is not None:
                stamp, freq = stamp.tz_convert("UTC").tz_localize(None), "ns"   # an exact instant
            else:
                period = pd.Period(written)
                if period.start_time != stamp:
                    return written
                freq = period.freqstr
            spelled = _briefest(stamp) if side == "start" else _spelled(stamp, freq)
            if spelled is None:
                return written
            # the spelling must read back as the same period: else keep the text
            back = pd.Period(spelled)
            if back.start_time != stamp or (side != "start" and back.freqstr != freq):
                return written
    except (ValueError, TypeError, OverflowError):
        return written
    return spelled


def canonical_bounds(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a ``data:`` section as resolved) with its range bounds spelled by
    :func:`canonical_bound`: the resolved config, hence the run id, does not follow how a
    date was written (hunt83 F1). The models keep the text as written, for messages.

    >>> canonical_bounds({"start": "2005-1-3", "end": None, "trade_start": "2005-06-01T00:00:00"})
    {'start': '2005-01-03', 'end': None, 'trade_start': '2005-06-01'}
    """
    for key in ("start", "end", "trade_start"):
        if isinstance(data.get(key), str):
            data[key] = canonical_bound(data[key], "end" if key == "end" else "start")
    return data


def _briefest(stamp: Any) -> str:
    """The shortest spelling of instant ``stamp`` (whose period starts at it)."""
    if stamp == stamp.normalize():
        return stamp.strftime("%Y-%m-%d")
    if stamp.second == 0 and stamp.microsecond == 0 and stamp.nanosecond == 0:
        return stamp.strftime("%Y-%m-%d %H:%M")
    if stamp.microsecond == 0 and stamp.nanosecond == 0:
        return stamp.strftime("%Y-%m-%d %H:%M:%S")
    return _spelled(stamp, "ns")


def _spelled(stamp: Any, freq: str) -> Optional[str]:
    """``stamp`` spelled at pandas resolution ``freq`` (None: a resolution without one)."""
    if freq in _BOUND_SPELLING:
        return stamp.strftime(_BOUND_SPELLING[freq])
    if freq in _FRACTION_DIGITS:
        ns = stamp.microsecond * 1000 + stamp.nanosecond
        return stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{ns:09d}"[:_FRACTION_DIGITS[freq]]
    return None


def date_problem(text: str) -> Optional[str]:
    """Why ``text`` is no date a run's range can start or end at, or None.

    >>> date_problem("2018-12"), date_problem("now")
    (None, 'a moving time, not a date; expected a date such as 2018-12-31 or 2018-12-31 16:00')
    >>> date_problem("9999-12-31")
    'outside the dates a run can hold (1677-09-22 .. 2262-04-11); expected a date inside, or none for no limit'
    """
    import pandas as pd  # only when a date is set

    expected = "expected a date such as 2018-12-31 or 2018-12-31 16:00"
    if text.strip().lower() in ("now", "today"):
        return f"a moving time, not a date; {expected}"
    try:
        stamp = pd.Timestamp(text.strip())
    except (ValueError, TypeError, OverflowError):
        return f"not a date; {expected}"
    if stamp is pd.NaT or stamp.year < 1:
        return f"not a date; {expected}"
    try:
        stamp.as_unit("ns")   # what the data's index holds (9999-12-31 is read, then no bar can be compared)
    except (ValueError, OverflowError):   # pandas' OutOfBoundsDatetime is a ValueError
        return "outside the dates a run can hold (1677-09-22 .. 2262-04-11); expected a date inside, or none for no limit"
    return None


class Instrument(_Strict):
    symbol: str = ""
    pip_size: float = Field(default=0.0001, gt=0)


class Operation(_Strict):
    """How to run a blueprint (``config/operations/*.yaml``)."""

    name: str = "operation"
    data: DataSource = Field(default_factory=DataSource)
    instrument: Instrument = Field(default_factory=Instrument)
    cash: float = Field(default=10_000.0, gt=0, le=MAX_CASH)
    commission: float = Field(default=0.0, ge=0, lt=1, description="fraction of traded value, each side")
    slippage: float = Field(default=0.0, ge=0, lt=1, description="fraction of price, market and stop fills")
    leverage: float = Field(default=1.0, gt=0, le=MAX_LEVERAGE)
    finalize_trades: bool = False
    seed: int = Field(default=42, ge=0, description="seed of a variant comparison's bootstrap p-values (check-causality takes --seed): "
                                                   ">= 0; part of the run id")
    plugins: PluginModules = Field(default_factory=list)
