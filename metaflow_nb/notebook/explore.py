"""Live widget explorer: controls over a strategy's parameters, a backtest per change.

``explore(strategy, operation, parameter_space)`` builds ipywidgets controls from a
``parameter_space`` (the list form of the optimization configs, a ``{instance: {param:
spec}}`` dict, or a config file holding one) or, without one, from every plugin's
suggested ranges. Ranges become sliders (``continuous_update=False``: a drag runs once,
on release), value lists toggle buttons (booleans, up to four options) or dropdowns.

Every change re-runs the backtest through one :class:`OperationService` (its feature
cache makes path-only changes cheap) and redraws the metrics table and the
equity/drawdown chart in place: the chart is one reused matplotlib figure rendered to PNG
and fed to an ``Image`` widget, so nothing is cleared and nothing flickers.

Quick changes never show stale numbers: each request gets a generation number and a
result is only shown if no newer request was made meanwhile. In a kernel the runs happen
on one background thread that always takes the newest request (older pending ones are
skipped), so the front end stays responsive while a key is held down. Invalid
combinations (``fast >= slow``) put the error in the status line; nothing is raised.

On a basket operation (README "Portfolios") ``explore`` returns a :class:`BasketExplorer`:
an instrument selector over these controls and a portfolio view.
"""
from __future__ import annotations

import html
import math
import threading
import time
from decimal import Decimal
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..config.buildspecs import BuildSpecs
from ..config.meta import SpaceEntry, parse_parameter_space
from ..config.overrides import parse_param_overrides
from ..config.translator import ConfigTranslator
from ..errors import ConfigError
from ..services.formatting import METRIC_LABELS, format_metric, metrics_table_html
from ..services.tearsheet_page import data_label, fills_label
from ..workers.base import suggested_space

#: metrics shown in the explorer's table, in order
DEFAULT_METRICS = ("total_return_pct", "sharpe_ratio", "sortino_ratio", "max_drawdown_pct", "win_rate_pct",
                   "profit_factor", "total_trades", "exposure_pct", "opportunities_detected",
                   "opportunities_rejected", "final_equity")


# ---------------------------------------------------------------- parameter space

def normalize_space(space: Any, specs: BuildSpecs) -> list[SpaceEntry]:
    """``[(instance, param, spec)]`` from any accepted parameter_space form, checked against
    the specs' workers; ``spec`` is ``{start, end, step}`` or ``{values: [...]}``.

    A given space is parsed by :func:`metaflow_nb.config.meta.parse_parameter_space`, as
    the sweeps parse theirs. Without a space: every parameter of every worker that has a
    suggested range (the plugins' ``suggest=`` ranges, booleans, literals) and a value a
    control can show.

    >>> import metaflow_nb as mf
    >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
    >>> normalize_space({"sma_1": {"fast": [5, 10]}}, specs)
    [('sma_1', 'fast', {'values': [5, 10]})]
    """
    if space is not None:
        return parse_parameter_space(space, specs)
    out: list[SpaceEntry] = []
    for e in specs.entries():
        for p, spec in suggested_space(e.plugin).items():
            cur = e.params.get(p)
            if cur is None:
                continue  # "auto" (None) has no place on a slider; set it in the blueprint
            if "start" in spec and (isinstance(cur, bool) or not isinstance(cur, (int, float))):
                continue
            out.append((e.instance_id, p, spec))
    return out


def _decimals(*numbers: Any) -> int:
    return max((max(0, -Decimal(str(n)).normalize().as_tuple().exponent) for n in numbers), default=0)


def _label(v: Any) -> str:
    """A value as a control shows it: ``0.5``, ``2``, and every digit two close values
    need to look apart (``1.0000004``; 6 significant digits made both ``1``)."""
    if isinstance(v, float):
        short = f"{v:g}"
        return short if float(short) == v else repr(v)
    return str(v)


def _index_of(values: Sequence[Any], v: Any) -> int:
    """Position of ``v`` in ``values`` with True != 1 (bools only match bools)."""
    for i, x in enumerate(values):
        if isinstance(x, bool) != isinstance(v, bool):
            continue
        if x == v:
            return i
    return -1


def make_control(name: str, spec: Mapping[str, Any], current: Any, description: str = "") -> Any:
    """The widget for one parameter: IntSlider/FloatSlider (range, ``continuous_update=False``),
    ToggleButtons (booleans or at most four values) or Dropdown; value = ``current``
    clipped into the range (or the first option when ``current`` is not listed).

    >>> w = make_control("fast", {"start": 5, "end": 20, "step": 5}, 50)
    >>> type(w).__name__, w.value, type(make_control("mode", {"values": ["pips", "atr"]}, "atr")).__name__
    ('IntSlider', 20, 'ToggleButtons')
    """
    import ipywidgets as W

    style = {"description_width": "150px"}
    layout = W.Layout(width="400px")
    if "values" in spec:
        values = list(spec["values"])
        k = _index_of(values, current)
        value = values[k if k >= 0 else 0]
        options = [(_label(v), v) for v in values]
        if all(isinstance(v, bool) for v in values) or len(values) <= 4:
            # no built-in description: front ends put it on its own line above the buttons;
            # control_row() adds a label aligned with the sliders' descriptions instead
            w = W.ToggleButtons(options=options, value=value, tooltips=[description] * len(values),
                                style={"button_width": "auto"})
            w._mf_label = name
        else:
            w = W.Dropdown(options=options, value=value, description=name, style=style, layout=layout)
    else:
        start, end, step = spec["start"], spec["end"], spec["step"]
        integral = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end, step))
        cur = start if current is None or isinstance(current, bool) or not isinstance(current, (int, float)) \
            else min(max(current, start), end)
        if integral:
            w = W.IntSlider(min=start, max=end, step=step, value=int(round(cur)), description=name,
                            continuous_update=False, style=style, layout=layout)
            w._mf_step = step   # the space's step, which fit_step refines and restores
            fit_step(w, w.value)
        else:
            # a start between the steps (the blueprint's 0.75 on a step-0.3 slider) is held, as
            # reset holds it: the readout shows its every digit, not 0.8 beside a run of 0.75
            # (hunt104 F1); a few digits at most, as a float's noise would give seventeen
            d = max(_decimals(start, end, step), min(_decimals(round(float(cur), 6)), 6))
            w = W.FloatSlider(min=float(start), max=float(end), step=float(step), value=float(cur),
                              description=name, continuous_update=False, readout_format=f".{d}f",
                              style=style, layout=layout)
            w._mf_decimals = d
    if description:
        w.tooltip = description  # ipywidgets >= 8 (pyproject requires it)
    return w


def _span(spec: Mapping[str, Any]) -> str:
    """A parameter space entry in words: ``range 12..18, step 2`` or ``options 30, 50``."""
    if "values" in spec:
        return "options " + ", ".join(_label(v) for v in spec["values"])
    return f"range {_label(spec['start'])}..{_label(spec['end'])}, step {_label(spec['step'])}"


def check_control_value(name: str, ctl: Any, value: Any) -> None:
    """Refuse a value the control cannot show (a slider would clamp it to its end, and the
    run would not be the one asked for): a ConfigError naming the control and its range
    or options.

    >>> ctl = make_control("rsi_1.lower", {"start": 10, "end": 40, "step": 5}, 30)
    >>> check_control_value("rsi_1.lower", ctl, 55)
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: rsi_1.lower: 55 is outside the control's range 10..40 (step 5)
    """
    options = getattr(ctl, "options", None)
    if options is not None:
        listed = [v for _, v in options] if options and isinstance(options[0], tuple) else list(options)
        if _index_of(listed, value) < 0:
            raise ConfigError(f"{name}: {value!r} is not one of the control's options "
                              f"({', '.join(_label(v) for v in listed)})")
        return
    lo, hi, step = ctl.min, ctl.max, ctl.step
    span = f"{_label(lo)}..{_label(hi)} (step {_label(step)})"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"{name}: expected a number in the control's range {span} (got {value!r})")
    noise = 1e-6 * step   # float noise at an end (0.1 + 0.2 for 0.3) is that end
    if not lo - noise <= value <= hi + noise:
        raise ConfigError(f"{name}: {_label(value)} is outside the control's range {span}")
    if isinstance(lo, int) and not isinstance(lo, bool) and float(value) != int(value):
        raise ConfigError(f"{name}: expected a whole number in the control's range {span} (got {value!r})")
    # a FloatSlider's readout and its run (current_params rounds away drag noise) stand on its
    # steps: a value between them would be held but run rounded; 1e-6 of a step forgives float
    # noise (0.7 - 0.2). An IntSlider shows and runs any whole number in its range (its step
    # is refined to hold it: fit_step). The range's end is the slider's last position even
    # when it is no step.
    k = (value - lo) / step
    if getattr(ctl, "_mf_decimals", None) is not None and abs(k - round(k)) > 1e-6 and abs(value - hi) > noise:
        below = lo + math.floor(k) * step
        nearest = [_label(round(v, 12)) for v in (below, min(below + step, hi))]
        raise ConfigError(f"{name}: {_label(value)} is between the control's steps {span}; "
                          f"nearest {nearest[0]} or {nearest[1]}")


def fit_step(ctl: Any, value: Any) -> None:
    """Refine an integer slider's step so that ``value`` is one of them (the greatest
    common step): the front end draws the handle on a step, and a value between two read
    one number beside a handle at another (hunt54 F1: 7 on a step-5 slider, drawn at 5).

    >>> w = make_control("fast", {"start": 5, "end": 50, "step": 5}, 10)
    >>> fit_step(w, 7); w.step
    1
    >>> w = make_control("slow", {"start": 20, "end": 200, "step": 20}, 50); w.step
    10
    """
    if getattr(ctl, "options", None) is not None or getattr(ctl, "_mf_decimals", None) is not None:
        return
    # from the space's step, not the current one: a value back on a step restores it, so a
    # drag moves along the space's values again (hunt104 F2: step 1 stayed after a reset)
    step = getattr(ctl, "_mf_step", ctl.step)
    if not (isinstance(step, int) and isinstance(value, int)):
        return
    ctl.step = math.gcd(step, value - ctl.min) if value != ctl.max and (value - ctl.min) % step else step


def control_row(ctl: Any) -> Any:
    """What is shown for a control: the control itself, or a labelled row for toggle buttons.

    >>> slider = make_control("fast", {"start": 5, "end": 20, "step": 5}, 10)
    >>> buttons = make_control("mode", {"values": ["pips", "atr"]}, "atr")
    >>> control_row(slider) is slider, type(control_row(buttons)).__name__
    (True, 'HBox')
    """
    import ipywidgets as W

    name = getattr(ctl, "_mf_label", None)
    if name is None:
        return ctl
    label = W.HTML(f"<div style='text-align:right;padding-right:8px;overflow:hidden;text-overflow:ellipsis' "
                   f"title='{html.escape(name)}'>{html.escape(name)}</div>", layout=W.Layout(width="150px"))
    return W.HBox([label, ctl], layout=W.Layout(width="400px", align_items="center"))


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


# ---------------------------------------------------------------- explorer

class UnknownControl(ConfigError, KeyError):
    """A parameter the explorer has no control for: the project's ConfigError (one line,
    exit 2 in a CLI) and the KeyError an unknown key was before (hunt116 F5)."""

    __str__ = Exception.__str__   # KeyError's would quote the message


class Explorer:
    """Controls + metrics table + equity/drawdown chart + status line, live.

    ``controls``: ``{"instance.param": widget}``; ``widget``: the top-level VBox.
    ``run_count``: backtests run (including invalid combinations and superseded runs);
    ``stale_dropped``: results not shown because a newer request existed;
    ``last_params``: ``{"instance.param": value}`` of the last shown run (also when it failed);
    ``last_result``: the last successful BacktestResult; ``last_error``: the message of the
    last shown run if it failed, else None; ``moved_from_blueprint``: the blueprint values
    the controls cannot hold (outside a range, between its steps, not an option), each with
    the nearest value the control starts at instead (the header says so, and names the start
    run); ``last_latency_ms``: change -> chart updated
    (``last_timings`` splits it into queued, backtest and chart milliseconds).
    """

    def __init__(self, specs: BuildSpecs, space: Optional[Sequence[SpaceEntry]] = None, data: Optional[pd.DataFrame] = None,
                 *, service: Any = None, debounce_ms: float = 0, background: Optional[bool] = None,
                 metrics: Iterable[str] = DEFAULT_METRICS, figsize: Sequence[float] = (9.5, 4.6), dpi: float = 80,
                 title: Optional[str] = None, run: bool = True, source: Optional[str] = None):
        import ipywidgets as W

        from ..services.operation import OperationService
        from .plots import LiveEquityChart

        self.base_specs = specs
        self.data = data
        self.service = service if service is not None else OperationService()
        self.space = list(normalize_space(None, specs) if space is None else space)
        self.metrics = tuple(metrics)
        self.debounce_ms = float(debounce_ms or 0)
        self.background = _in_kernel() if background is None else bool(background)
        self.title = title or specs.name

        self.run_count = 0
        self.stale_dropped = 0
        self.error_count = 0
        self.last_result: Any = None
        self.last_params: Optional[dict[str, Any]] = None
        self.last_error: Optional[str] = None
        self.last_latency_ms: Optional[float] = None
        self.latencies_ms: list[float] = []
        self.last_timings: dict[str, float] = {}
        self.baseline: Any = None
        self._generation = 0
        self._published = 0
        self._suspend = False
        self._closed = False
        self._lock = threading.RLock()       # counters and publication
        self._run_lock = threading.RLock()   # the service and the chart (re-entrant: a sync run may nest)
        self._cv = threading.Condition()
        self._pending: Optional[tuple[int, dict[str, Any], float]] = None
        self._busy = False
        self._thread: Optional[threading.Thread] = None
        self._chart = LiveEquityChart(figsize=figsize, dpi=dpi)

        workers = {e.instance_id: e for e in specs.entries()}
        self.controls: dict[str, Any] = {}
        groups: dict[str, list[Any]] = {}
        for inst, p, spec in self.space:
            w = workers[inst]
            field = type(w.model).model_fields.get(p)
            ctl = make_control(p, spec, w.params.get(p), description=(field.description or "") if field else "")
            ctl.add_class("mf-explorer-control")
            self.controls[f"{inst}.{p}"] = ctl
            groups.setdefault(inst, []).append(control_row(ctl))
            ctl.observe(self._on_change, names="value")
        self._base_values = self.current_params()
        #: ``["sma_1.fast 10 → 12 (range 12..18, step 2)", ...]``: blueprint values the controls
        #: cannot hold, and where they start instead
        self.moved_from_blueprint = [
            f"{inst}.{p} {_label(workers[inst].params.get(p))} \u2192 {_label(self._base_values[f'{inst}.{p}'])} "
            f"({_span(spec)})"
            for inst, p, spec in self.space
            if self._overrides({f"{inst}.{p}": self._base_values[f"{inst}.{p}"]})]

        if len(groups) <= 3:
            parts: list[Any] = []
            for inst, ctls in groups.items():
                parts.append(W.HTML(f"<b>{html.escape(inst)}</b> <i style='color:#666'>"
                                    f"{html.escape(workers[inst].plugin)}</i>"))
                parts.extend(ctls)
            self.controls_box = W.VBox(parts)
        else:
            self.controls_box = W.Accordion(children=[W.VBox(c) for c in groups.values()],
                                            titles=tuple(f"{i} ({workers[i].plugin})" for i in groups))
            self.controls_box.selected_index = 0
        reset = (("Reset to start", "Put every control back to its starting value: the blueprint's, or the "
                                    "nearest one the control holds (one run)") if self.moved_from_blueprint else
                 ("Reset to blueprint", "Put every control back to the blueprint's value (one run)"))
        self.reset_button = W.Button(description=reset[0], tooltip=reset[1], icon="undo", layout=W.Layout(width="190px"))
        self.reset_button.on_click(lambda _b: self.reset())
        self.header = W.HTML(
            f"<b>{html.escape(self.title)}</b> &middot; {html.escape(data_label(specs, source))} "
            + (f"&middot; ambiguous bars {html.escape(fills_label(specs))} " if specs.data_intrabar else "")
            + f"&middot; {self._start_run_text()} &middot; {len(self.controls)} controls{self._moved_html()}")
        self.metrics_html = W.HTML(layout=W.Layout(min_width="360px"))
        self.metrics_html.add_class("mf-explorer-metrics")
        self.status = W.HTML("not run yet")
        self.status.add_class("mf-explorer-status")
        self.image = W.Image(format="png", layout=W.Layout(width=f"{int(figsize[0] * dpi)}px"))
        self.image.add_class("mf-explorer-chart")
        left = W.VBox([self.controls_box, self.reset_button], layout=W.Layout(width="440px"))
        self.widget = W.VBox([self.header, W.HBox([left, self.metrics_html]), self.status, self.image])
        self.widget.add_class("mf-explorer")
        if run:
            self._request(force_sync=True)

    # ------------------------------------------------------------ parameters
    def current_params(self) -> dict[str, Any]:
        """``{"instance.param": value}`` as the controls show them.

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> ex = Explorer(specs, [("sma_1", "fast", {"values": [5, 10]})], run=False)
        >>> ex.current_params()
        {'sma_1.fast': 10}
        """
        out = {}
        for key, w in self.controls.items():
            v = w.value
            d = getattr(w, "_mf_decimals", None)
            if d is not None:
                v = round(float(v), d + 2)
            out[key] = v
        return out

    def _start_run_text(self) -> str:
        """The run the controls start at: the blueprint's, or the one of the nearest values
        the controls hold (an impossible start says why)."""
        if not self.moved_from_blueprint:
            return f"base run <code>{self.base_specs.run_id}</code>"
        try:
            start = f"start run <code>{self.specs_for(self._base_values).run_id}</code>"
        except ConfigError as exc:
            start = f"start: <i>{html.escape(str(exc))}</i>"
        return f"{start} (blueprint run <code>{self.base_specs.run_id}</code>)"

    def _moved_html(self) -> str:
        if not self.moved_from_blueprint:
            return ""
        n = len(self.moved_from_blueprint)
        items = "; ".join(html.escape(m).replace("\u2192", "&rarr;") for m in self.moved_from_blueprint)
        return (f"<div class='mf-explorer-moved' style='color:#8a5a00'>the controls cannot hold {n} blueprint "
                f"value{'s' if n > 1 else ''}; starting at the nearest: {items}</div>")

    def specs_for(self, params: Mapping[str, Any]) -> BuildSpecs:
        """The base specs with the given ``{"instance.param": value}`` applied (validated).

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> ex = Explorer(specs, [("sma_1", "fast", {"values": [5, 10]})], run=False)
        >>> ex.specs_for({"sma_1.fast": 5}).params("sma_1")
        {'fast': 5, 'slow': 20}
        """
        return self.base_specs.with_param_overrides(self._overrides(params))

    def _overrides(self, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """``{instance: {param: value}}`` of what ``params`` change in the blueprint."""
        changed: dict[str, dict[str, Any]] = {}
        for inst, ps in parse_param_overrides(params).items():
            cur = self.base_specs.params(inst)
            # only what differs from the blueprint: an untouched control keeps the base run id
            diff = {p: v for p, v in ps.items()
                    if p not in cur or cur[p] != v or isinstance(cur[p], bool) != isinstance(v, bool)}
            if diff:
                changed[inst] = diff
        return changed

    def set_params(self, values: Optional[Mapping[str, Any]] = None, **kw: Any) -> Optional[int]:
        """Set several controls at once (``{"fvg_det_1.min_gap_size": 6}`` or
        ``fvg_det_1__min_gap_size=6``) with a single re-run; returns its generation (None
        when nothing changed). A value a control cannot hold is refused before any moves.

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> ex = Explorer(specs, [("sma_1", "fast", {"values": [5, 10]})], run=False)
        >>> ex.set_params(sma_1__fast=5), ex.last_params, ex.run_count
        (1, {'sma_1.fast': 5}, 1)
        """
        vals: dict[str, Any] = {}
        for k, v in dict(values or {}).items():
            if isinstance(v, Mapping):   # {instance: {param: value}}, as opt.best_params has it
                vals.update({f"{k}.{p}": pv for p, pv in v.items()})
            else:
                vals[k] = v
        vals.update({k.replace("__", ".", 1): v for k, v in kw.items()})
        # NumPy numbers (an optimization table's rows) as the Python numbers the controls hold
        vals = {k: v.item() if isinstance(v, np.generic) else v for k, v in vals.items()}
        unknown = [k for k in vals if k not in self.controls]
        if unknown:
            raise UnknownControl(f"no control {', '.join(unknown)}; controls: {', '.join(self.controls)}")
        for k, v in vals.items():
            if k in self._base_values and _index_of([self._base_values[k]], v) == 0:
                continue  # the value the control started at (a blueprint's, off its steps maybe)
            check_control_value(k, self.controls[k], v)  # before any control moves: all or nothing
        changed = False
        self._suspend = True
        try:
            for k, v in vals.items():
                if self.controls[k].value != v:
                    fit_step(self.controls[k], v)
                    self.controls[k].value = v
                    changed = True
        finally:
            self._suspend = False
        return self._request() if changed else None

    def reset(self) -> Optional[int]:
        """Every control back to its starting value, then one run; returns its generation.

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> ex = Explorer(specs, [("sma_1", "fast", {"values": [5, 10]})], run=False)
        >>> _ = ex.set_params(sma_1__fast=5)
        >>> ex.reset(), ex.current_params()
        (2, {'sma_1.fast': 10})
        """
        return self.set_params(self._base_values)

    # ------------------------------------------------------------ runs
    def _on_change(self, change: Mapping[str, Any]) -> None:
        if self._suspend or self._closed:
            return
        owner = change.get("owner") if isinstance(change, Mapping) else None
        if owner is not None:
            fit_step(owner, change.get("new"))   # a drag from 7 (step 1) onto 10: step 5 again
        self._request()

    def refresh(self) -> int:
        """Re-run with the current control values; returns the run's generation.

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> ex = Explorer(specs, [("sma_1", "fast", {"values": [5, 10]})], run=False)
        >>> ex.refresh(), ex.run_count, ex.last_error
        (1, 1, None)
        """
        return self._request()

    def _request(self, force_sync: bool = False) -> int:
        t0 = time.perf_counter()
        params = self.current_params()
        with self._lock:
            self._generation += 1
            gen = self._generation
        if force_sync or not self.background:
            self._execute(gen, params, t0)
            return gen
        with self._cv:
            self._pending = (gen, params, t0)
            self._cv.notify_all()
        self._ensure_worker()
        return gen

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._worker_loop, name="mf-explorer", daemon=True)
            self._thread.start()

    def _worker_loop(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                if self.debounce_ms > 0:
                    while True:  # wait until no newer request came for debounce_ms
                        gen = self._pending[0]  # type: ignore[index]
                        self._cv.wait(self.debounce_ms / 1000.0)
                        if self._closed:
                            return
                        if self._pending is None or self._pending[0] == gen:
                            break
                job, self._pending = self._pending, None
                self._busy = True
            try:
                if job is not None:
                    self._execute(*job)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until no run is pending or in progress (background mode); True when idle,
        False after ``timeout`` seconds.

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> ex = Explorer(specs, [("sma_1", "fast", {"values": [5, 10]})], run=False)
        >>> ex.wait()  # nothing pending
        True
        """
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._pending is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def _is_stale(self, gen: int) -> bool:
        return gen != self._generation or gen <= self._published

    def _execute(self, gen: int, params: dict[str, Any], t0: float) -> None:
        if self._is_stale(gen):
            with self._lock:
                self.stale_dropped += 1
            return
        t1 = time.perf_counter()
        res, err = None, None
        try:
            with self._run_lock:
                res = self._run(params)
        except Exception as exc:  # noqa: BLE001 - every failure goes to the status line
            err = exc
        t2 = time.perf_counter()
        with self._lock:
            self.run_count += 1
            n = self.run_count
        if self._is_stale(gen):
            with self._lock:
                self.stale_dropped += 1
            return
        png = table = extra = None
        if res is not None:
            try:
                with self._run_lock:
                    if self.baseline is None:
                        self.baseline = res
                    png = self._chart.update(self._equity(res), self._chart_title(params),
                                             baseline=self._equity(self.baseline))
                table = self._metrics_table(res)
                extra = self._extra_views(res)
            except Exception as exc:  # noqa: BLE001
                res, err = None, exc
        t3 = time.perf_counter()
        with self._lock:
            if self._is_stale(gen):
                self.stale_dropped += 1
                return
            self._published = gen
            self.last_params = dict(params)
            if err is not None:
                self.error_count += 1
                self.last_error = f"{type(err).__name__}: {err}"
                shown = "" if self.last_result is None else " &middot; metrics and chart still show the last valid run"
                self.status.value = (f"<span style='color:#b00020'><b>run {n}: invalid</b> &mdash; "
                                     f"{html.escape(self.last_error)}</span>{shown}")
                self.last_latency_ms = (time.perf_counter() - t0) * 1000.0
                return
            self.last_result = res
            self.last_error = None
            self.metrics_html.value = table
            self.image.value = png
            self._show_extra(extra)
            lat = (time.perf_counter() - t0) * 1000.0
            self.last_latency_ms = lat
            self.latencies_ms.append(lat)
            self.last_timings = {"latency_ms": lat, "backtest_ms": (t2 - t1) * 1000.0,
                                 "chart_ms": (t3 - t2) * 1000.0, "queued_ms": (t1 - t0) * 1000.0}
            self.status.value = (f"<span style='color:#1a7f37'><b>run {n}: {lat:.0f} ms</b></span> "
                                 f"(backtest {(t2 - t1) * 1000:.0f} ms, chart {(t3 - t2) * 1000:.0f} ms) &middot; "
                                 f"{self._run_label(res)}")

    # ------------------------------------------------------------ what a run is (PortfolioExplorer: a basket's)
    def _run(self, params: Mapping[str, Any]) -> Any:
        """The backtest of the controls' values ``params``."""
        return self.service.run(self.specs_for(params), self.data)

    def _equity(self, res: Any) -> pd.Series:
        return res.equity

    def _run_label(self, res: Any) -> str:
        return f"run id <code>{res.run_id}</code>"

    def _extra_views(self, res: Any) -> Any:
        """What a subclass shows besides metrics and chart, made off the publication lock."""
        return None

    def _show_extra(self, extra: Any) -> None:
        pass

    # ------------------------------------------------------------ rendering
    def _changed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in params.items() if self._base_values.get(k) != v}

    def _chart_title(self, params: Mapping[str, Any]) -> str:
        ch = self._changed(params)
        if not ch:
            moved = len(self.moved_from_blueprint)
            return f"{self.title}: starting parameters" + (f" ({moved} differ from the blueprint)" if moved else "")
        txt = ", ".join(f"{k.split('.', 1)[1]}={_label(v)}" for k, v in ch.items())
        if len(txt) > 110:
            txt = txt[:107] + "..."
        return f"{self.title}: {txt}"

    def _metrics_table(self, res: Any) -> str:

        base = self.baseline.metrics if self.baseline is not None else {}
        rows = []
        for m in self.metrics:
            if m not in res.metrics:
                continue
            v, b = res.metrics.get(m), base.get(m)
            cur, ref = format_metric(m, v), format_metric(m, b)
            weight = "bold" if cur != ref else "normal"
            rows.append(f"<tr><th style='text-align:left;padding-right:12px'>{html.escape(METRIC_LABELS.get(m, (m,))[0])}"
                        f"</th><td style='text-align:right;font-weight:{weight};padding-right:12px'>{html.escape(cur)}</td>"
                        f"<td style='text-align:right;color:#888'>{html.escape(ref)}</td></tr>")
        return ("<table class='mf-metrics'><thead><tr><th></th><th style='text-align:right'>this run</th>"
                "<th style='text-align:right;color:#888'>first run</th></tr></thead><tbody>"
                + "".join(rows) + "</tbody></table>")

    # ------------------------------------------------------------ display
    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(include=include, exclude=exclude, **kwargs)

    def __repr__(self) -> str:
        return (f"Explorer({self.title!r}: {len(self.controls)} controls, {self.run_count} runs, "
                f"last {'n/a' if self.last_latency_ms is None else f'{self.last_latency_ms:.0f} ms'})")

    def close(self) -> None:
        """Stop the background thread and close the widgets; a control moved afterwards
        runs nothing.

        >>> import metaflow_nb as mf
        >>> specs = mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily")
        >>> ex = Explorer(specs, [("sma_1", "fast", {"values": [5, 10]})], run=False)
        >>> ex.close()
        >>> ex.controls["sma_1.fast"].value = 5
        >>> ex.run_count
        0
        """
        self._closed = True
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.widget.close()


def explore(strategy: Any, operation: Any = None, parameter_space: Any = None, data: Any = None,
            debounce_ms: float = 0, *, start: Optional[str] = None, end: Optional[str] = None,
            **options: Any) -> "Explorer | BasketExplorer":
    """Build an :class:`Explorer` for a blueprint (path, dict, model or BuildSpecs).

    ``parameter_space``: the list form of the configs (``[{worker_instance, parameters}]``),
    a dict ``{instance: {param: {start, end, step} | {values: [...]} | [...]}}``, a config
    file with a ``parameter_space``, or None (every plugin's suggested ranges).
    ``debounce_ms``: in a kernel, wait this long for a quieter moment before running.
    Other options go to :class:`Explorer` (``metrics``, ``figsize``, ``dpi``, ``background``,
    ``service``, ``title``).

    An ``operation`` naming a basket (README "Portfolios") gives a
    :class:`BasketExplorer`: an instrument selector
    over this explorer and a portfolio view.

    >>> ex = explore("config/runs/sma_cross.yaml", data="sp500_daily", parameter_space={"sma_1": {"fast": [5, 10]}})
    >>> list(ex.controls), ex.run_count, ex.last_error
    (['sma_1.fast'], 1, None)
    """
    from ..config.portfolio import is_portfolio_operation
    if operation is not None and is_portfolio_operation(operation):
        if data is not None or start is not None or end is not None:
            raise ConfigError(f"{operation}: data, start and end belong to one instrument's run; a basket "
                              f"operation names each instrument's data and dates itself")
        return BasketExplorer(strategy, operation, parameter_space, debounce_ms=debounce_ms, **options)
    specs = ConfigTranslator().translate(strategy, operation, data, start=start, end=end)
    frame = data if isinstance(data, pd.DataFrame) else None
    space = normalize_space(parameter_space, specs)
    if not space:
        raise ConfigError("nothing to explore: the parameter_space is empty and no worker of this strategy "
                          "suggests a range")
    return Explorer(specs, space, frame, debounce_ms=debounce_ms, **options)


#: the selector's entry of the whole basket
PORTFOLIO = "portfolio"


class BasketExplorer:
    """The explorer on a basket operation: ``explore(strategy, BASKET_OP)`` returns one.

    Its selector lists ``portfolio`` and every symbol. ``portfolio`` shows the blueprint's
    portfolio run (total equity and per-account equity or per-instrument pnl, the metrics
    and costs line, the per-instrument breakdown); a symbol opens the ordinary
    :class:`Explorer` on that instrument's own data, costs and account (in ``mode:
    portfolio`` that is the instrument alone, not its share of the shared account: the
    shared run depends on every instrument at once). Each symbol's explorer is built the
    first time it is picked and kept, so switching back shows where it was left.

    Instrument selector + the selected view (``portfolio`` or one symbol's Explorer).

    ``selector``: the Dropdown; ``portfolio``: the blueprint's portfolio result;
    ``explorers``: ``{symbol: Explorer}`` built so far; ``current``: the Explorer shown, or
    None on the portfolio view; ``widget``: the top-level VBox.

    >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
    >>> ex = explore("config/runs/sma_cross.yaml", op, background=False)
    >>> list(ex.selector.options), ex.explorer_for("IBM").last_result.run_id == ex.portfolio.results["IBM"].run_id
    (['portfolio', 'FB', 'IBM'], True)
    """

    def __init__(self, strategy: Any, operation: Any, parameter_space: Any = None, **options: Any):
        import ipywidgets as W

        from ..services.portfolio import load_basket, run_portfolio

        self.strategy = strategy
        self.parameter_space = parameter_space
        # the title heads every view (a symbol's as "<title>: <symbol>"); picking a symbol asks
        # for its run, so each symbol's explorer runs when it opens, whatever ``run`` says
        self.title: Optional[str] = options.pop("title", None)
        options.pop("run", None)
        self.options = options
        self.basket = load_basket(operation)
        op, items, bars = self.basket
        self.items = {it["symbol"]: it for it in items}
        self.bars: dict[str, pd.DataFrame] = bars
        self.portfolio = run_portfolio(strategy, self.basket)
        self.explorers: dict[str, Explorer] = {}
        self.current: Optional[Explorer] = None
        self.selector = W.Dropdown(options=[PORTFOLIO, *self.items], value=PORTFOLIO, description="instrument",
                                   layout=W.Layout(width="320px"))
        self.selector.add_class("mf-basket-selector")
        self.body = W.VBox()
        self.portfolio_view = self._portfolio_widget()
        self.body.children = [self.portfolio_view]
        self.selector.observe(lambda ch: self.select(ch["new"]), names="value")
        self.widget = W.VBox([self.selector, self.body])
        self.widget.add_class("mf-basket-explorer")

    def explorer_for(self, symbol: str) -> Explorer:
        """The single-instrument explorer of ``symbol`` (built on first use): its own data,
        costs and account, the same parameter space.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM"]}, "data": {"start": "2011-01-01"}}
        >>> ex = explore("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10]}}, background=False)
        >>> ex.explorer_for("IBM").title, ex.explorer_for("IBM") is ex.explorers["IBM"]
        ('sma_cross on IBM', True)
        """
        if symbol not in self.items:
            raise ConfigError(f"instrument {symbol!r}: not in this basket (expected one of {', '.join(self.items)})")
        if symbol not in self.explorers:
            specs = ConfigTranslator().translate(self.strategy, self.items[symbol]["operation"],
                                                 data=self.bars[symbol])
            space = normalize_space(self.parameter_space, specs)
            if not space:
                raise ConfigError("nothing to explore: the parameter_space is empty and no worker of this "
                                  "strategy suggests a range")
            title = f"{self.title}: {symbol}" if self.title else f"{specs.name} on {symbol}"
            self.explorers[symbol] = Explorer(specs, space, self.bars[symbol], title=title,
                                              source=str(self.items[symbol]["source"]), **self.options)
        return self.explorers[symbol]

    def select(self, name: str) -> None:
        """Show ``portfolio`` or one symbol's explorer (also what the selector does); the
        symbol's explorer is built by :meth:`explorer_for` the first time."""
        if name == PORTFOLIO:
            self.current = None
            self.body.children = [self.portfolio_view]
        else:
            self.current = self.explorer_for(name)
            self.body.children = [self.current.widget]
        if self.selector.value != name:
            self.selector.value = name

    def _portfolio_widget(self) -> Any:
        specs = ConfigTranslator().translate(self.strategy, next(iter(self.items.values()))["operation"],
                                             data=next(iter(self.bars.values())))
        space = normalize_space(self.parameter_space, specs)
        if not space:
            raise ConfigError("nothing to explore: the parameter_space is empty and no worker of this strategy "
                              "suggests a range")
        self.portfolio_explorer = PortfolioExplorer(self.strategy, self.basket, specs, space, self.portfolio,
                                                    title=self.title, **self.options)
        pe = self.portfolio_explorer
        # the names the portfolio view's parts had before it got controls
        self.metrics_html, self.breakdown_html, self.image = pe.metrics_html, pe.breakdown_html, pe.image
        return pe.widget

    # the controls of the view shown, as a single explorer's (hunt116 F4: a raw AttributeError,
    # no word of portfolio_explorer)
    @property
    def shown(self) -> Explorer:
        """The explorer of the view shown: the selected symbol's, or the portfolio view's."""
        return self.current if self.current is not None else self.portfolio_explorer

    def set_params(self, values: Optional[Mapping[str, Any]] = None, **kw: Any) -> Optional[int]:
        """:meth:`Explorer.set_params` of the view shown (the portfolio view's controls run
        the whole basket).

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["FB", "IBM"]}, "data": {"start": "2012-01-01"}}
        >>> ex = explore("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10]}}, background=False)
        >>> ex.set_params({"sma_1": {"fast": 5}}), ex.current_params(), ex.last_result.mode
        (2, {'sma_1.fast': 5}, 'independent')
        """
        return self.shown.set_params(values, **kw)

    def current_params(self) -> dict[str, Any]:
        """:meth:`Explorer.current_params` of the view shown."""
        return self.shown.current_params()

    @property
    def controls(self) -> dict[str, Any]:
        """The controls of the view shown."""
        return self.shown.controls

    @property
    def last_result(self) -> Any:
        """The last successful run of the view shown (a PortfolioResult on the portfolio view)."""
        return self.shown.last_result

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(include=include, exclude=exclude, **kwargs)

    def __repr__(self) -> str:
        shown = PORTFOLIO if self.current is None else self.selector.value
        return (f"BasketExplorer({self.portfolio.name!r}: {len(self.items)} instruments, {self.portfolio.mode}, "
                f"showing {shown})")

    def close(self) -> None:
        """Close every instrument's explorer, the portfolio view's and the widgets; a
        control moved afterwards runs nothing.

        >>> op = {"universe": {"path": "us_stocks", "symbols": ["IBM"]}, "data": {"start": "2011-01-01"}}
        >>> ex = explore("config/runs/sma_cross.yaml", op, {"sma_1": {"fast": [5, 10]}}, background=False)
        >>> ex.close()
        >>> ex.portfolio_explorer.controls["sma_1.fast"].value = 5
        >>> ex.portfolio_explorer.run_count  # the blueprint's run only
        1
        """
        for ex in self.explorers.values():
            ex.close()
        self.portfolio_explorer.close()
        self.widget.close()


class PortfolioExplorer(Explorer):
    """The portfolio view of a :class:`BasketExplorer`: the explorer's controls over the
    whole basket. A change re-runs the portfolio (``run_portfolio``: every instrument, and
    in ``mode: portfolio`` the one shared account) and shows its metrics, total equity and
    drawdown against the blueprint's run, and the per-instrument breakdown. Each account's
    equity (or each instrument's pnl on the shared account) is drawn on request: it takes
    about a quarter of a second on 20 instruments.

    ``portfolio``: the blueprint's run; ``last_result``: the run shown.
    """

    def __init__(self, strategy: Any, basket: Any, specs: BuildSpecs, space: Sequence[SpaceEntry], first: Any,
                 title: Optional[str] = None, **options: Any):
        import ipywidgets as W

        self.strategy = strategy
        self.basket = basket
        self.portfolio = first
        # the blueprint's run is made already: publishing it costs nothing, so it is shown
        options.pop("run", None)
        super().__init__(specs, space, None, title=title or f"{first.name}: portfolio", run=False, **options)
        # the run shown's costs and run id go with it (breakdown and status): they change with the controls
        self.header.value = (f"<b>{html.escape(title or first.name)}</b> &middot; {first.mode} &middot; "
                             f"{len(first.symbols)} instruments &middot; {len(first.index)} bars &middot; starting "
                             f"equity {first.starting_cash:,.0f} &middot; blueprint run "
                             f"<code>{first.basket_specs.run_id}</code> &middot; "
                             f"{len(self.controls)} controls{self._moved_html()}")
        self.breakdown_html = W.HTML()
        self.breakdown_html.add_class("mf-basket-breakdown")
        self.accounts_button = W.Button(description="Draw each account", icon="line-chart",
                                        layout=W.Layout(width="190px"),
                                        tooltip="Each account's equity (mode portfolio: each instrument's pnl) "
                                                "of the run shown")
        self.accounts_button.on_click(lambda _b: self.draw_accounts())
        self.accounts_image = W.Image(format="png", layout=W.Layout(width="100%", max_width="1100px",
                                                                    display="none"))
        self.accounts_image.add_class("mf-basket-accounts")
        self.widget.children = (*self.widget.children, self.breakdown_html, self.accounts_button,
                                self.accounts_image)
        self._request(force_sync=True)

    def _run(self, params: Mapping[str, Any]) -> Any:
        from ..services.portfolio import run_portfolio

        changed = self._overrides(params)
        if not changed:
            return self.portfolio  # the blueprint: its run is made already (runs are deterministic)
        return run_portfolio(self.strategy, self.basket, **changed)

    def _equity(self, res: Any) -> pd.Series:
        return res.equity["total"]

    def _run_label(self, res: Any) -> str:
        # the metrics count the closed trades the trades table lists, without building it
        return (f"run id <code>{res.basket_specs.run_id}</code> &middot; {int(res.metrics['total_trades'])} trades "
                f"on {len(res.symbols)} instruments")

    def _extra_views(self, res: Any) -> Any:
        from ..services.portfolio_page import breakdown_table_html

        return (f"<div class='mf-basket-costs'><i>{html.escape(res.costs_text())}</i></div>"
                "<div style='overflow-x:auto;max-width:100%'>" + breakdown_table_html(res) + "</div>")

    def _show_extra(self, extra: Any) -> None:
        self.breakdown_html.value = extra
        # the accounts drawn before belong to another run
        self.accounts_image.layout.display = "none"

    def draw_accounts(self) -> None:
        """Draw each account's equity (or each instrument's pnl) of the run shown, under
        the breakdown (hidden again when the next run is shown); what the *Draw each
        account* button does."""
        from ..services.plots import figure_png
        from ..services.portfolio_page import equity_figure

        if self.last_result is None:
            return
        self.accounts_image.value = figure_png(equity_figure(self.last_result))
        self.accounts_image.layout.display = None
