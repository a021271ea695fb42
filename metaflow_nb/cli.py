"""``metaflow-nb`` command line: backtest, optimize, variants, walk-forward, report,
data, check-causality.

Bad input (data, config, parameters) ends with exit code 2 and a one-line message on
stderr, never a traceback; ``--json`` prints exactly one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from .errors import caused_by_interrupt
from .paths import user_path

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # a flag given twice kept its last value without a word (--data a --data b ran b)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        raise _UsageError(f"{self.prog}: {message}")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        ns, rest = super().parse_known_args(args, namespace)
        ns.__dict__.pop(_GIVEN, None)
        return ns, rest


#: the namespace attribute :class:`_StoreOnce` notes the flags given so far in
_GIVEN = "_flags_given"


class _StoreOnce(argparse.Action):
    """argparse's store, refusing a flag given a second time."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        given = namespace.__dict__.setdefault(_GIVEN, {})
        if option_string is not None and self.dest in given:
            flag = self.option_strings[-1] if self.option_strings else option_string
            parser.error(f"{flag} given twice ({given[self.dest]!r}, then {values!r}); expected it once")
        given[self.dest] = values
        setattr(namespace, self.dest, values)


class _UsageError(Exception):
    pass


# ------------------------------------------------------------------ backtest

def _cmd_backtest(args: argparse.Namespace) -> int:
    from .config.portfolio import is_portfolio_operation

    if args.operation is not None and is_portfolio_operation(args.operation):
        return _cmd_backtest_portfolio(args)
    from .api import build_specs
    from .services.operation import OperationService
    from .services.formatting import json_line, metrics_table_text

    specs = build_specs(args.strategy, args.operation, args.data, start=args.start, end=args.end,
                        timezone=args.timezone, date_column=args.date_column, timeframe=args.timeframe,
                        intrabar=args.intrabar)
    _refuse_overwriting_inputs(args, {**_flag_inputs(args), "data.source": specs.data_source,
                                      "data.intrabar": specs.operation["data"].get("intrabar")})
    res = OperationService().run(specs)
    from .services.names import safe_stem
    outputs = _write_outputs(args, res, f"{safe_stem(res.name)}-{res.run_id[:8]}", {}, lambda: {
        **res.to_dict(), "specs_hash": specs.hash, "blueprint": specs.blueprint, "operation": specs.operation,
        "data_fingerprint": specs.data_fingerprint})
    if args.json:
        print(json_line({"run_id": res.run_id, "name": res.name, "metrics": res.metrics,
                         "trades": int(len(res.trades)), "timings": res.timings, "outputs": outputs}))
    else:
        print(f"{res.name}  run {res.run_id}  {len(res.equity)} bars "
              f"{res.equity.index[0]} -> {res.equity.index[-1]}")
        print(metrics_table_text(res.metrics))
        print(res.costs().text())
        for k, v in outputs.items():
            print(f"{k}: {v}")
    return 0


def _write_outputs(args: argparse.Namespace, res: Any, folder: str, tables: dict[str, Callable[[], Any]],
                   result: Callable[[], dict[str, Any]]) -> dict[str, str]:
    """What ``--trades-csv`` and ``--out`` ask of a backtest (one run or a basket): the
    trades, journal and equity tables, ``tables``' frames (indexed) and ``result.json``
    under ``--out/folder``; returns the paths written, by name."""
    from .services.files import write_csv, write_text
    from .services.formatting import json_safe

    outputs: dict[str, str] = {}
    if args.trades_csv:
        p = Path(args.trades_csv)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_csv(res.trades, p, index=False)
        outputs["trades_csv"] = str(p.resolve())
    if args.out:
        out = Path(args.out) / folder
        out.mkdir(parents=True, exist_ok=True)
        frames = {"trades": (res.trades, False), "journal": (res.journal, False), "equity": (res.equity, True),
                  **{name: (make(), True) for name, make in tables.items()}}
        for name, (frame, index) in frames.items():
            write_csv(frame, out / f"{name}.csv", index=index)
            outputs[name] = str((out / f"{name}.csv").resolve())
        write_text(out / "result.json", json.dumps(json_safe(result()), indent=2))
        outputs["result"] = str((out / "result.json").resolve())
    return outputs


def _refuse_overwriting_inputs(args: argparse.Namespace, inputs: dict[str, Any]) -> None:
    """``--trades-csv`` naming one of the run's own files (``inputs``: the key or flag that
    names each): refused before anything is written (hunt70 F2: the trades went over the
    data file, exit 0)."""
    target = getattr(args, "trades_csv", None)
    if not target or not user_path(target).is_file():
        return
    from .data.loader import list_samples, sample_path
    from .errors import ConfigError
    samples = set(list_samples())
    for what, path in inputs.items():
        if isinstance(path, str) and path in samples:
            path = sample_path(path)   # a bundled sample's own file (hunt71 F4)
        if not isinstance(path, (str, os.PathLike)) or not user_path(path).is_file():
            continue   # a frame, nothing
        if os.path.samefile(user_path(target), user_path(path)):
            raise ConfigError(f"--trades-csv {target}: is the run's {what} ({Path(path).resolve()}); expected a new "
                              "file name for the trades (it would be written over)")


def _flag_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The files the command line names, by flag."""
    return {f"--{k}": getattr(args, k, None) for k in ("strategy", "operation", "data", "intrabar")}


def _cmd_backtest_portfolio(args: argparse.Namespace) -> int:
    """``backtest`` with an operation naming a basket: the portfolio's metrics, per-instrument
    breakdown and outputs (README "Portfolios")."""
    from .errors import ConfigError
    from .services.formatting import json_line
    from .services.portfolio import run_portfolio

    single = [f"--{k.replace('_', '-')}" for k in ("data", "start", "end", "timezone", "date_column", "timeframe",
                                                   "intrabar") if getattr(args, k) is not None]
    if single:
        raise ConfigError(f"{args.operation}: a portfolio operation names its instruments' data and dates itself; "
                          f"{', '.join(single)} {'is' if len(single) == 1 else 'are'} for single runs")
    from .services.portfolio import load_basket
    basket = load_basket(args.operation)
    _refuse_overwriting_inputs(args, {**_flag_inputs(args), **{it["key"]: it["source"] for it in basket[1]}})
    res = run_portfolio(args.strategy, basket)
    # the mode and run id in the name, as a single run's and the basket's page: another mode,
    # strategy or params of the same basket get a folder of their own
    from .services.names import safe_stem
    outputs = _write_outputs(args, res, f"{safe_stem(res.name)}-{res.mode}-{res.basket_specs.run_id[:8]}",
                             {"breakdown": res.breakdown, "correlation": res.correlation}, res.to_dict)
    if args.json:
        print(json_line({**res.to_dict(), "timings": res.timings, "outputs": outputs}))
    else:
        print(f"{res.name}  {res.mode}  run {res.basket_specs.run_id}")
        print(repr(res))
        for k, v in outputs.items():
            print(f"{k}: {v}")
    return 0


# ------------------------------------------------------------------ check-causality

EXIT_LOOK_AHEAD = 1


def _cuts_arg(text: str) -> "int | list[int]":
    """``--cuts 5`` (five random cuts) or ``--cuts 10,20,30`` (those bars; ``500,`` is one)."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()] if "," in text else [int(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number of cuts nor bar indices like 10,20,30") \
            from None
    from .limits import INT64_MAX, INT64_MIN   # config numbers fit in int64 too
    if any(not INT64_MIN <= v <= INT64_MAX for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers within int64 ({INT64_MIN}..{INT64_MAX})")
    return values if "," in text else values[0]


def _int_at_least(low: int, words: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``low``, else ``'<text>' is not <words>``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not {words}")
        from .limits import INT64_MAX
        if value > INT64_MAX:
            raise argparse.ArgumentTypeError(f"{text!r} is not {words} of at most {INT64_MAX} (int64)")
        return value
    return parse


_whole_number = _int_at_least(0, "a whole number >= 0")
_positive_int = _int_at_least(1, "a positive whole number")


def _params_arg(text: str) -> dict:
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    except _RepeatedKey as exc:   # json keeps the last one silently; a YAML config refuses it
        raise argparse.ArgumentTypeError(f"{exc.args[0]!r} written twice; expected each key once") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"period\": 14}'")
    return value


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _RepeatedKey(k)
        out[k] = v
    return out


def _cmd_check_causality(args: argparse.Namespace) -> int:
    from .api import check_causality
    from .services.formatting import json_line

    res = check_causality(args.config, data=args.data, operation=args.operation, cuts=args.cuts, seed=args.seed,
                          params=args.params, timezone=args.timezone, date_column=args.date_column)
    print(json_line(res.to_dict()) if args.json else repr(res))
    return 0 if res.ok else EXIT_LOOK_AHEAD


def _cmd_data(args: argparse.Namespace) -> int:
    from .api import describe_data
    from .services.formatting import json_line

    d = describe_data(args.source, timezone=args.timezone, date_column=args.date_column, calendar=args.calendar)
    print(json_line(d.to_dict()) if args.json else repr(d))
    return 0


# ------------------------------------------------------------------ parser

def add_plugins_option(p: argparse.ArgumentParser) -> None:
    """``--plugins mod1,mod2``: plugin modules declared for this command (as by
    ``mf.use_plugins``), on every subcommand that reads configs.

    >>> p = argparse.ArgumentParser()
    >>> add_plugins_option(p)
    >>> p.parse_args(["--plugins", "mf_rsi.workers"]).plugins
    'mf_rsi.workers'
    """
    p.add_argument("--plugins", default=None, metavar="MOD[,MOD...]",
                   help="plugin modules whose workers the configs use (imported; also passed to worker "
                        "processes); a 'module:Class' worker resolves only in a declared module")


def _plugin_modules(args: argparse.Namespace) -> list[str]:
    text = getattr(args, "plugins", None)
    if text is None:
        return []
    modules = [m.strip() for m in text.split(",") if m.strip()]
    if not modules:   # a typo that empties the list declared nothing, without a word
        from .errors import ConfigError
        raise ConfigError(f"--plugins {text!r}: names no module; expected MOD[,MOD...]")
    return modules


def _add_meta_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config file")
    p.add_argument("--backend", choices=["loky", "threads", "sequential", "dask"], default=None,
                   help="where runs execute (default: the config's parallel.backend, else loky)")
    p.add_argument("--scheduler", default=None, help="dask scheduler address (default: a local cluster)")
    p.add_argument("--workers", type=_positive_int, default=None, help="parallel workers (default: config or CPU count)")
    p.add_argument("--out", default=None, help="output folder (results store, tables)")
    p.add_argument("--resume", action="store_true",
                   help="skip runs already in the results store under --out (optimize, walk-forward)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_plugins_option(p)


def build_parser() -> argparse.ArgumentParser:
    """The ``metaflow-nb`` argument parser: one subcommand per verb.

    >>> args = build_parser().parse_args(["backtest", "--strategy", "sma_cross.yaml", "--data", "sp500_daily"])
    >>> args.command, args.data, args.json
    ('backtest', 'sp500_daily', False)
    """
    ap = _Parser(prog="metaflow-nb", description="Numba-accelerated causal backtests, sweeps, variant tests, "
                                                 "walk-forward validation and reports.")
    ap.add_argument("--version", action="version", version=f"metaflow-nb {_version()}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser("backtest", help="run one strategy")
    b.add_argument("--strategy", required=True, help="strategy blueprint YAML")
    b.add_argument("--operation", default=None, help="operation YAML (data, costs, cash)")
    b.add_argument("--data", default=None, help="bundled sample name or CSV/Parquet path (replaces the operation's)")
    b.add_argument("--start", default=None, help="first date (inclusive)")
    b.add_argument("--end", default=None, help="last date (inclusive)")
    b.add_argument("--timezone", default=None, metavar="ZONE",
                   help="the data's clock: zone of its naive timestamps, IANA (Europe/Berlin) or broker_ny+7 "
                        "(replaces the operation's data.timezone; default UTC)")
    b.add_argument("--date-column", default=None, metavar="NAME",
                   help="the data's timestamp column (replaces the operation's data.date_column)")
    b.add_argument("--timeframe", default=None, metavar="TF",
                   help="run on the data resampled to this coarser timeframe: 1h, 4h, 1d, ... (data.timeframe)")
    b.add_argument("--intrabar", default=None, metavar="FINER",
                   help="finer bars deciding bars that touched the stop and a target: 'source' (with "
                        "--timeframe) or a finer CSV/Parquet file or sample (data.intrabar)")
    b.add_argument("--json", action="store_true",
                   help="print one JSON object: run_id, name, metrics, trades, timings, outputs")
    b.add_argument("--trades-csv", default=None, help="write the trades table here")
    b.add_argument("--out", default=None, help="write trades, journal, equity and result.json under this folder")
    add_plugins_option(b)
    b.set_defaults(func=_cmd_backtest)

    for name, helptext in (("optimize", "grid search over a parameter_space"),
                           ("variants", "A/B test of blueprint variants"),
                           ("walk-forward", "optimize in-sample, test out-of-sample, roll")):
        p = sub.add_parser(name, help=helptext)
        _add_meta_options(p)
        if name != "variants":
            p.add_argument("--max-combinations", type=_positive_int, default=None, metavar="N",
                           help="the largest grid to build (default: the config's max_combinations, else "
                                "100000); a larger one is refused before anything is built")
            p.add_argument("--engine", choices=["auto", "batch", "general"], default=None,
                           help="batch: all combinations in one compiled kernel call; general: one full "
                                "backtest per combination; auto (default: the config's parallel.engine): "
                                "batch when it supports the sweep")
        p.set_defaults(func=_meta_command(name))

    r = sub.add_parser("report", help="papermill reports and an offline HTML comparison")
    r.add_argument("config", nargs="?", help="variant, optimization or walk-forward YAML, or a strategy YAML "
                                             "(one run's tear sheet)")
    r.add_argument("--operation", default=None, help="operation YAML of a strategy's single run")
    r.add_argument("--data", default=None, help="sample name or file replacing the single run's data")
    r.add_argument("--out", default=None, help="reports folder (default: reports/)")
    r.add_argument("--workers", type=_positive_int, default=None, help="notebooks executed in parallel")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.add_argument("--zip", action="store_true", help="also write the report folder as one <folder>.zip beside it "
                                                      "(what to mail: the index links its pages and manifest)")
    r.add_argument("--verify", default=None, metavar="DIR", help="re-execute a report folder and compare numbers")
    add_plugins_option(r)
    r.set_defaults(func=_report_command)

    d = sub.add_parser("data", help="how a data file is read: layout, columns, clock, spacing, calendar",
                       description="Reads a data file as every command does and prints how: its layout, the "
                                   "column of the time and of each price, the dates' format, the clock, and what "
                                   "its bars look like (spacing, weekdays, the largest gap, a year for "
                                   "annualization, the data.calendar they fit). Exit 2 for a file that cannot "
                                   "be read, with the line every command would print.")
    d.add_argument("source", help="bundled sample name or CSV/Parquet path")
    d.add_argument("--timezone", default=None, metavar="ZONE",
                   help="the file's clock: IANA zone or broker_ny+7 (default: naive times are UTC)")
    d.add_argument("--date-column", default=None, metavar="NAME", help="the timestamp column, if not found by name")
    d.add_argument("--calendar", default=None, metavar="NAME",
                   help="data.calendar for the year of annualization (fx_24x5, crypto_24x7, exchange; "
                        "default: measured)")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(func=_cmd_data)

    c = sub.add_parser("check-causality", help="prefix replay: does any worker use bars it could not have seen yet?",
                       description="Runs the strategy (or one worker) on the full data and on the first k bars for "
                                   "a few cuts k, and prints, per output that changed before k, the first bar that "
                                   "changed. Exit 1 when any output changed, 0 when none did, 2 for bad input.")
    c.add_argument("config", help="strategy YAML, or a plugin name to check one worker (with --params)")
    c.add_argument("--operation", default=None, help="operation YAML (data, pip size)")
    c.add_argument("--data", default=None, help="bundled sample name or CSV/Parquet path (replaces the operation's)")
    c.add_argument("--timezone", default=None, metavar="ZONE",
                   help="the data's clock: zone of its naive timestamps, IANA (Europe/Berlin) or broker_ny+7 "
                        "(replaces the operation's data.timezone; default UTC)")
    c.add_argument("--date-column", default=None, metavar="NAME",
                   help="the data's timestamp column (replaces the operation's data.date_column)")
    c.add_argument("--cuts", type=_cuts_arg, default=5, metavar="N|K1,K2,...",
                   help="N random cuts in the second half of the data (default 5; short prefixes of 2, 4, 8, ... bars "
                        "run too), or bar indices 10,20,30 (only those)")
    c.add_argument("--seed", type=_whole_number, default=0, help="seed of the random cuts (default 0)")
    c.add_argument("--params", type=_params_arg, default=None, metavar="JSON",
                   help="params of a single worker given by plugin name, e.g. '{\"period\": 14}'")
    c.add_argument("--json", action="store_true", help="print one JSON object: ok, cuts, findings")
    add_plugins_option(c)
    c.set_defaults(func=_cmd_check_causality)
    return ap


def _meta_command(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from . import meta_cli
        return meta_cli.run(name, args)
    return run


def _report_command(args: argparse.Namespace) -> int:
    from .reporting import cli as report_cli
    return report_cli.run(args)


def _version() -> str:
    from . import __version__
    return __version__


#: the options (argparse names) that take a path: a leading ~ in them is the home folder
PATH_OPTIONS = ("config", "source", "strategy", "operation", "data", "intrabar", "out", "trades_csv", "verify")


def _said_as(key: str) -> str:
    """An argument as the command line spells it: a positional one by its name, a flag as
    written (``trades_csv`` is ``--trades-csv``)."""
    return key if key in ("config", "source") else "--" + key.replace("_", "-")


def _check_options(args: argparse.Namespace) -> None:
    """Options checked before anything runs: dates are dates, and output folders can be
    made (no part of them is a file), so no finished work is lost to a bad path."""
    from .config.models import date_problem
    from .errors import ConfigError

    for key in PATH_OPTIONS:
        value = getattr(args, key, None)
        if isinstance(value, str) and value.startswith("~"):
            # the shell leaves it alone after '=' (--out=~/x made a folder named '~', hunt70 F3)
            setattr(args, key, os.path.expanduser(value))
            if getattr(args, key).startswith("~"):
                # an unknown user's ~name: no folder named '~name' is made in the working folder
                # for it (hunt113 F1)
                user = value[1:].split("/", 1)[0]
                raise ConfigError(f"{_said_as(key)} {value!r}: no user {user!r} on this machine; expected "
                                  f"~/... (your home folder), an existing user's ~name or another path")

    for key, value in vars(args).items():
        # '' is a value given empty, not no value: read as none, --out '' wrote nothing (or,
        # for report, into the working folder) without a word
        if isinstance(value, str) and not value.strip() and key != "plugins":   # --plugins says it itself
            raise ConfigError(f"{_said_as(key)}: empty; expected a value")
    for opt in ("start", "end"):
        value = getattr(args, opt, None)
        problem = None if value is None else date_problem(value)
        if problem:
            raise ConfigError(f"--{opt} {value!r}: {problem}")
    start, end = getattr(args, "start", None), getattr(args, "end", None)
    if start is not None and end is not None and len(end.strip()) >= 10:   # end="2018-12" keeps all December
        import pandas as pd
        try:
            after = pd.Timestamp(start) > pd.Timestamp(end)
        except (TypeError, ValueError):   # one with a zone, one without: the loader compares them
            after = False
        if after:
            raise ConfigError(f"--start {start} is after --end {end}; expected the start first")
    # the flags' own errors name the flags, not the operation's keys the user never wrote
    # (timeframe's message starts with the operation's key: its words only)
    from .data.clock import get_clock
    from .data.timeframe import parse_timeframe
    for opt, parse, words in (("timezone", get_clock, str), ("timeframe", parse_timeframe,
                                                              lambda e: str(e).split(": ", 1)[-1])):
        value = getattr(args, opt, None)
        if value is None:
            continue
        try:
            parse(value)
        except ValueError as exc:
            raise ConfigError(f"--{opt} {value!r}: {words(exc)}") from None
    intrabar = getattr(args, "intrabar", None)
    if intrabar is not None and intrabar != "source":
        from .data.loader import list_samples
        if intrabar not in list_samples() and not Path(intrabar).is_file():
            why = "is a folder" if Path(intrabar).is_dir() else "no such file"
            raise ConfigError(f"--intrabar {intrabar}: {why}; expected a finer data file (or 'source')")
    for opt, folder in (("out", lambda v: Path(v)), ("trades_csv", lambda v: Path(v).parent)):
        value = getattr(args, opt, None)
        if not value:
            continue
        option = "--" + opt.replace("_", "-")
        from .services.names import folder_problem
        problem = folder_problem(folder(value))
        if problem:
            raise ConfigError(f"{option} {value}: {problem}")
        if opt == "trades_csv" and Path(value).is_dir():
            raise ConfigError(f"{option} {value}: is a folder; expected a file name")


#: numba's thread settings a user may set in the environment
NUMBA_THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")


def _check_numba_environment() -> None:
    """Numba's thread settings, when the environment sets them, tried before any work: a
    bad one failed deep in the first compiled call with numba's traceback and exit 1, the
    status that means "every run failed" (hunt51 F5)."""
    given = [name for name in NUMBA_THREAD_VARIABLES if os.environ.get(name)]
    if not given:
        return   # nothing to try (and no numba import on this path)
    from .errors import ConfigError
    try:
        import numba
        from numba.np.ufunc import parallel
        parallel._launch_threads()   # loads the threading layer a prange would load
        numba.get_num_threads()
    except Exception as exc:  # noqa: BLE001 - whatever numba raises, the settings are the cause
        said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{', '.join(f'{n}={os.environ[n]!r}' for n in given)}: numba cannot start its threads "
                          f"({said}); expected a whole number of threads >= 1 and a threading layer this machine "
                          f"has (workqueue, omp; tbb needs 'pip install tbb'), or leave them unset") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``metaflow-nb`` console script: the command's exit status (an
    error is one line on stderr and status 2).

    >>> main(["backtest", "--strategy", "config/runs/missing.yaml", "--data", "sp500_daily"])
    2
    """
    from .errors import MetaflowError

    import warnings

    with _sigterm_as_interrupt() as terminated:
        return _main(argv, MetaflowError, warnings, terminated)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[list]:
    """SIGTERM (``kill``, ``docker stop``, a batch scheduler's time limit) handled as Ctrl-C
    is: it ended the process at once, and the runs buffered for the results store were
    lost (hunt61 F1). It goes to the SIGINT handler of the moment (an in-process sweep
    holds it until its run finishes); the list yielded is non-empty once it came. Only in
    the main thread and where SIGTERM still has its default action."""
    import threading

    came: list = []
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield came
        return

    def on_term(signum: int, frame: Any) -> None:
        came.append(signum)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield came
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _main(argv: Optional[Sequence[str]], MetaflowError: type, warnings: Any, terminated: list) -> int:
    try:
        args = build_parser().parse_args(argv)
        _check_options(args)
        _check_numba_environment()
        from .workers.registry import plugins_declared
        # warnings (pandas' parser warnings ...) are held back: shown after a command that
        # worked, dropped when it failed, so an error is one line
        with warnings.catch_warnings(record=True) as caught:
            # declared for this command only: main() may run again in the same process
            with plugins_declared(_plugin_modules(args), where="--plugins"):
                code = int(args.func(args) or 0)
        shown = set()
        from .services.files import OutputWarning
        if code == 0 and any(issubclass(w.category, OutputWarning) for w in caught):
            code = EXIT_BAD_INPUT   # its results printed, its files not written (hunt87 F1)
        for w in caught:
            if w.category.__module__.startswith("metaflow_nb"):
                # the package's own: one line each, once (no source line of the library)
                line = f"metaflow-nb: {w.category.__name__}: {w.message}"
                if line not in shown:
                    shown.add(line)
                    print(line, file=sys.stderr)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        return code
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except MetaflowError as exc:
        if caused_by_interrupt(exc):   # a plugin's call interrupted in compiled code: Ctrl-C, not bad input
            return _interrupted(terminated)
        print(f"metaflow-nb: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # the reader went away (| head, a pager quit): nothing is wrong with the input, so
        # no error line and not the bad-input code, but a pipeline's SIGPIPE status, and
        # stdout pointed at nothing so the interpreter's last flush cannot fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:  # any path: missing, a file where a folder should be, no space, no permission
        name = str(exc.filename) if exc.filename else ""
        if len(name) > 160:   # a 5,000-character path said whole (hunt113 F4)
            name = f"{name[:70]}...{name[-70:]} ({len(name):,} characters)"
        where = f"{name}: " if name else ""
        print(f"metaflow-nb: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RecursionError, OverflowError, MemoryError) as exc:
        print(f"metaflow-nb: error: the input asks for more than can be computed ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else 'out of memory'})", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return _interrupted(terminated)
    except Exception as exc:
        if caused_by_interrupt(exc):   # Ctrl-C reported as another exception (a serializer's)
            return _interrupted(terminated)
        raise


def _interrupted(terminated: list) -> int:
    """One line and the shell's status of a process Ctrl-C (SIGTERM) ended."""
    if terminated:
        print("metaflow-nb: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    print("metaflow-nb: interrupted", file=sys.stderr)
    return 130


def console() -> None:
    """The ``metaflow-nb`` console script: :func:`main` with ``sys.argv``, its status the
    process's. After an interruption (Ctrl-C, SIGTERM) the exit handlers run (the results
    stores' last flush is one) and the process leaves as the signal's default action
    would, without the interpreter's teardown: native thread pools torn down after an
    interruption aborted the process after ``metaflow-nb: terminated`` (status -6 where
    143 was due), and a thread a plugin left running would hold the exit. Otherwise the
    garbage is collected once and the rest frozen (see the comment below) before the
    normal exit.

    >>> import subprocess, sys
    >>> subprocess.run([sys.executable, "-c", "from metaflow_nb.cli import console; console()", "--help"],
    ...                capture_output=True).returncode
    0
    """
    code = main()
    if code in (130, 128 + signal.SIGTERM):
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed or vanished reader: nothing left to say
                pass
        os._exit(code)
    # The teardown's collector walked every object numba and pandas made (~0.4 s of a
    # ~2 s backtest). One collection runs the finalizers of what is garbage now; the
    # rest is frozen, so the teardown leaves it to the process's end.
    gc.collect()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console()
