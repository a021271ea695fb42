"""Shared pieces of the benchmark workloads: synthetic data, timing, memory, configs."""
from __future__ import annotations

import copy
import gc
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
from numba import njit


def _package_root() -> Path:
    """The folder holding the ``metaflow_nb`` package under test.

    The package is imported from wherever ``PYTHONPATH`` (or the installed copy) puts it,
    so ``PYTHONPATH=/old/tree python benchmarks/run.py`` times the old code with these
    benchmarks; the checkout holding this file is added to ``sys.path`` only when
    ``metaflow_nb`` cannot be found otherwise (a clean clone, not installed). The bundled
    configs (``config/runs/...``) are read from the package's own tree when it has them.
    """
    import importlib.util
    here = Path(__file__).resolve().parents[2]
    spec = importlib.util.find_spec("metaflow_nb")
    if spec is None or not spec.origin:
        if str(here) not in sys.path:
            sys.path.insert(0, str(here))
        return here
    root = Path(spec.origin).resolve().parents[1]
    return root if (root / "config").is_dir() else here


#: the tree of the package under test (its configs and sample data are used)
ROOT = _package_root()

CORES = os.cpu_count() or 1

# ------------------------------------------------------------------ synthetic data
#: the generator's settings; every workload uses them (only the bar count varies)
DATA = {"seed": 20240601, "sigma": 0.003, "drift": 0.0002, "regime_bars": 400, "reversion": 2e-5,
        "noise": 0.5, "start": 100.0}


@njit(cache=True)
def _log_path(steps, reversion):
    """``x[i] = x[i-1] * (1 - reversion) + steps[i]``: a random walk pulled weakly to 0."""
    n = steps.shape[0]
    x = np.empty(n)
    v = 0.0
    keep = 1.0 - reversion
    for i in range(n):
        v = v * keep + steps[i]
        x[i] = v
    return x


#: first bar of each frequency: minute bars start in 2001; daily bars (one per calendar
#: day, weekends included) start in 1980 so that 100 000 of them (to 2253) end before
#: pandas' Timestamp limit (2262-04-11)
STARTS = {"min": "2001-01-01", "D": "1980-01-01"}


def synthetic_ohlcv(n: int, seed: int = DATA["seed"], freq: str = "min", sigma: Optional[float] = None,
                    ) -> pd.DataFrame:
    """Seeded geometric Brownian motion with alternating trend regimes, one bar a minute
    (``freq="min"``) or one a calendar day (``freq="D"``); the prices do not depend on ``freq``.

    Log returns are ``N(mu_t - sigma^2/2, sigma)``; ``mu_t`` is ``+drift`` and ``-drift``
    in turns over regimes of geometric random length (mean ``regime_bars``). The regimes
    give a moving-average cross a small edge, so with the workloads' commissions the
    equity of the benchmark strategies does not bleed to zero (a tool that stops trading
    at zero cash would do less work). A weak pull of the log price towards its start
    (``reversion`` per bar, a time constant of 50 000 bars) keeps 1e6-bar series within a
    band instead of wandering to zero; stops of 2 % and 5 % are hit regularly.

    OHLC: ``open[i] = close[i-1]``, ``high = max(open, close) * (1 + |e1|)``,
    ``low = min(open, close) * (1 - |e2|)`` with ``e ~ N(0, noise * sigma)``. ``sigma``:
    another volatility than ``DATA``'s (W7's basket).
    """
    rng = np.random.default_rng(seed)
    sigma = DATA["sigma"] if sigma is None else sigma
    drift, mean_len = DATA["drift"], DATA["regime_bars"]
    n_reg = n // mean_len * 3 + 16
    lens = rng.geometric(1.0 / mean_len, n_reg)
    sign = np.where(np.arange(n_reg) % 2 == 0, 1.0, -1.0)
    mu = np.repeat(sign * drift, lens)
    while mu.shape[0] < n:  # pragma: no cover - the regimes above cover n with room to spare
        mu = np.concatenate([mu, mu])
    steps = mu[:n] + rng.normal(-0.5 * sigma * sigma, sigma, n)
    close = DATA["start"] * np.exp(_log_path(steps, DATA["reversion"]))
    open_ = np.empty(n)
    open_[0] = DATA["start"]
    open_[1:] = close[:-1]
    e = np.abs(rng.normal(0.0, DATA["noise"] * sigma, (2, n)))
    high = np.maximum(open_, close) * (1.0 + e[0])
    low = np.minimum(open_, close) * (1.0 - e[1])
    index = pd.date_range(STARTS[freq], periods=n, freq=freq, name="time")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": np.full(n, 1000.0)}, index=index)


def loaded(n: int, freq: str = "min") -> pd.DataFrame:
    """The synthetic frame through ``mf.load_data`` (validated once, as a notebook would)."""
    import metaflow_nb as mf
    return mf.load_data(synthetic_ohlcv(n, freq=freq))


# ------------------------------------------------------------------ the kernel adapter
def compiled_loop(specs: Any, bars: pd.DataFrame, records: bool = False,
                  ) -> tuple[Callable[[], Any], Callable[[Any], tuple[int, float]]]:
    """``(run, summary)``: the compiled simulation loop alone on ``specs`` and ``bars``.

    The ONE place the benchmarks know the kernel's call signature (W1, W3 and W6 use it):
    the inputs are prepared here, once and untimed; ``run()`` calls just the kernel and
    returns its raw output; ``summary(out)`` gives ``(closed trades, final equity)`` of it,
    outside the timed call. When the kernel's signature changes, only this function does.

    By default the loop is the one ``mf.backtest`` runs: on the run path that is
    ``engine.nb.run.run_events``, one compiled call (the bar loop keeping trades and
    journal, metrics folded bar by bar into a reused work array, no array per bar; then
    the metric vector from it; trees before it: ``simulate_events`` alone, whose metric
    vector was a second call). ``records=True`` (and older trees) time ``simulate``,
    which also keeps equity and position per bar: the kernel W1 has always compared with
    the floor.
    """
    try:  # the run path's named records
        from metaflow_nb.assembly.dataset import dataset_calendar, dataset_day_ends
        from metaflow_nb.assembly.run import prepare
        from metaflow_nb.engine.nb.simulate import simulate, simulate_events
        args = prepare(specs, bars).records
        # the run's trading calendar (FX days on ict_backtest), as run_one takes it; older
        # trees have none
        cal_name = getattr(specs, "data_calendar", None)
        cal_args = (cal_name,) if cal_name is not None else ()
        day_ends = dataset_day_ends(bars, *cal_args)
        day_eq = np.empty(len(day_ends))
        calendar = dataset_calendar(bars, 0, *cal_args)
        try:
            from metaflow_nb.engine.nb.run import run_events
        except ImportError:
            run_events = None

        def run() -> Any:
            if records:
                return simulate(*args)
            if run_events is not None:
                return run_events(*args, day_ends, day_eq, calendar)
            return simulate_events(*args, day_ends, day_eq)

        def summary(out: Any) -> tuple[int, float]:
            from metaflow_nb.engine.records import ACC_FINAL
            if records:
                return int(len(out.trades)), float(out.equity[-1])
            if run_events is not None:
                from metaflow_nb.engine.metrics import METRIC_NAMES
                return int(len(out[1])), float(out[0][METRIC_NAMES.index("final_equity")])
            final = out[0][ACC_FINAL]
            return int(len(out[1])), float(final)
    except ImportError:  # older trees (timing them with PYTHONPATH): positional kernel arguments
        from metaflow_nb.engine.nb.simulate import simulate
        from metaflow_nb.engine.simulation import prepare  # type: ignore[no-redef]
        old_args = prepare(specs, bars).args()

        def run() -> Any:
            return simulate(*old_args)

        def summary(out: Any) -> tuple[int, float]:
            equity, _, _, n_trades, _, _ = out
            return int(n_trades), float(equity[-1])

    return run, summary


def arrays(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.ascontiguousarray(df[c].to_numpy(np.float64)) for c in ("open", "high", "low", "close"))


def write_data(df: pd.DataFrame, folder: Path) -> Path:
    """The frame as a Parquet file (CSV if pyarrow is missing) for YAML operations."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import pyarrow  # noqa: F401
        p = folder / "bars.parquet"
        df.to_parquet(p)
    except ImportError:  # pragma: no cover - pyarrow is a dev dependency
        p = folder / "bars.csv"
        df.to_csv(p)
    return p


# ------------------------------------------------------------------ strategies and configs
def sma_blueprint(fast: int = 10, slow: int = 50, stop_loss_pct: Optional[float] = None,
                  whole_units: bool = True, stops: bool = False, fraction: Optional[float] = None) -> dict[str, Any]:
    """``config/runs/sma_cross.yaml`` (long/short, exclusive-order reversal, all-in) with the
    given periods; with ``stops`` a ``percent_stops`` stop from the fill price; with
    ``fraction`` a ``fixed_fraction_sizer`` instead of all in."""
    import yaml
    bp = yaml.safe_load((ROOT / "config/runs/sma_cross.yaml").read_text())
    bp = copy.deepcopy(bp)
    bp["name"] = "bench_sma_cross"
    bp["workforce"]["opportunity_workers"][0]["params"] = {"fast": fast, "slow": slow}
    pw = bp["workforce"]["planning_workers"]
    if stops:
        pw["exit_planning"].insert(0, {"instance_id": "stops_1", "plugin": "percent_stops",
                                       "params": {"stop_loss_pct": stop_loss_pct, "take_profit_pct": None,
                                                  "reference": "fill"}})
    if fraction is None:
        pw["size_planning"] = [{"instance_id": "size_1", "plugin": "all_in_sizer",
                                "params": {"whole_units": whole_units}}]
    else:
        pw["size_planning"] = [{"instance_id": "size_1", "plugin": "fixed_fraction_sizer",
                                "params": {"fraction": fraction, "whole_units": whole_units}}]
    return bp


def operation(cash: float, commission: float, source: str = "sp500_daily") -> dict[str, Any]:
    return {"name": "bench", "data": {"source": source}, "instrument": {"symbol": "SYN", "pip_size": 0.01},
            "cash": cash, "commission": commission, "slippage": 0.0, "seed": 42}


def write_yaml(path: Path, doc: dict) -> Path:
    import yaml
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def range_values(values: list) -> dict[str, Any]:
    return {"values": list(values)}


# ------------------------------------------------------------------ timing and memory
def timed(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> tuple[dict[str, float], Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeat`` times; median/min/all seconds.

    As ``timeit`` does, the garbage collector is off while timing (one collection before
    the timed calls): a collection before every call would also hand freed memory back,
    and every call would pay page faults for its fresh arrays. ``minflt_per_run``: the
    process's minor page faults per timed call (memory the allocator had to map afresh);
    unlike the times, it does not depend on what else the machine is running.
    """
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    faults0 = _minor_faults()
    try:
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
    finally:
        if was_enabled:
            gc.enable()
    faults = (_minor_faults() - faults0) / len(times)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times),
            "minflt_per_run": round(faults, 1)}, out


def timed_vbt(signals: Callable[[], tuple], portfolio: Callable[..., Any], repeat: int) -> tuple[dict, float, Any, Any]:
    """Time vectorbt's whole pipeline ``repeat`` times (``signals()``, then ``portfolio(*it)``
    and its final values) with the collector off, as :func:`timed` does. Returns the
    timing block, the median seconds of ``portfolio`` alone, the last portfolio and its
    final values."""
    times, pf_times = [], []
    gc.collect()
    gc.disable()
    try:
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            sig = signals()
            t1 = time.perf_counter()
            pf = portfolio(*sig)
            t2 = time.perf_counter()
            final = pf.final_value()
            times.append(time.perf_counter() - t0)
            pf_times.append(t2 - t1)
    finally:
        gc.enable()
    t = {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times)}
    return t, statistics.median(pf_times), pf, final


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def proc_status_mb(field: str) -> float:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ...) in MB; NaN where
    there is no such file (not Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MB.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process's own
    memory map. ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used there: it survives
    ``fork``/``exec``, so a job process would report at least its parent's RSS. Elsewhere
    ``ru_maxrss`` (KB on Linux/BSD, bytes on macOS).
    """
    hwm = proc_status_mb("VmHWM")
    if hwm == hwm:  # not NaN: read from /proc
        return hwm
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return own / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


def versions() -> dict[str, str]:
    """Installed versions of the tools (None when a peer is missing)."""
    from importlib import metadata
    out = {}
    for dist in ("metaflow-nb", "numba", "numpy", "pandas", "backtesting", "vectorbt", "vectorbt-rust"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def have(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def rel_diff(a: float, b: float) -> float:
    a, b = float(a), float(b)
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def vbt_engines() -> list[str]:
    """vectorbt engines to time: numba always, rust when vectorbt-rust is installed and usable."""
    engines = ["numba"]
    try:
        from vectorbt._engine import is_rust_available
        if is_rust_available():
            engines.append("rust")
    except ImportError:  # older vectorbt: numba only
        pass
    return engines
