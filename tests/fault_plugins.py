"""Faulty and slow opportunity workers for the meta-workflow fault tests.

Importing this module registers two plugins (both behave exactly like ``sma_cross``
unless told otherwise):

``test_faulty_cross``
    ``detect`` raises ``ValueError`` when ``fast == fail_when_fast``.
``test_interrupting_cross``
    ``detect`` sends this process a SIGINT (Ctrl-C) when ``fast == interrupt_when_fast``,
    and with ``chained`` raises ``RuntimeError`` from a ``KeyboardInterrupt`` instead (as
    a library call interrupted inside compiled code may report it).
``test_slow_cross``
    ``detect`` sleeps ``delay`` seconds (only when ``fast == slow_when_fast`` if that is
    set) and, when the environment variable ``MF_TEST_EXEC_LOG`` names a file, appends
    one line per execution to it (``pid fast slow thread``), so a test can count how many runs
    really executed, in whatever process.

A plugin registered only in the test process is unknown in loky/dask worker processes;
declare the module (``plugins: [fault_plugins]``, :func:`write_blueprint`'s ``plugins``)
and the workers import it before they look plugins up; ``"fault_plugins:SlowCross"``
then names a class in it (``tests/`` is on the workers' ``sys.path``; a CLI subprocess
gets it through :func:`child_env`).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional, Sequence

from metaflow_nb.workers import base as _base
from metaflow_nb.workers.base import FeatureContext, Signals, param
from metaflow_nb.workers.opportunity.sma_cross import SmaCross, SmaCrossParams

EXEC_LOG_ENV = "MF_TEST_EXEC_LOG"
TESTS_DIR = Path(__file__).resolve().parent


def _sleep(seconds: float) -> None:
    # module-level indirection so a test can make the slow worker fast (monkeypatch)
    time.sleep(seconds)


def _log_execution(fast: int, slow: int) -> None:
    path = os.environ.get(EXEC_LOG_ENV)
    if path:
        import threading
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {fast} {slow} {threading.current_thread().name}\n")


class FaultyCrossParams(SmaCrossParams):
    fail_when_fast: int = param(7, description="detect raises ValueError when fast equals this")


@_base.register
class FaultyCross(SmaCross):
    """sma_cross that raises ValueError for one value of ``fast``."""

    name = "test_faulty_cross"
    Params = FaultyCrossParams

    def detect(self, ctx: FeatureContext) -> Signals:
        p = self.params
        if p.fast == p.fail_when_fast:
            raise ValueError(f"test_faulty_cross refuses fast={p.fast}")  # REFUSES
        return super().detect(ctx)


class DyingCrossParams(SmaCrossParams):
    die_when_fast: int = param(7, description="detect ends its process (os._exit) when fast equals this")


@_base.register
class DyingCross(SmaCross):
    """sma_cross whose process dies for one value of ``fast``, as a crash, an out-of-memory
    kill or ``os._exit`` in a native extension ends a worker process."""

    name = "test_dying_cross"
    Params = DyingCrossParams

    def detect(self, ctx: FeatureContext) -> Signals:
        p = self.params
        if p.fast == p.die_when_fast:
            os._exit(3)
        return super().detect(ctx)


class InterruptingCrossParams(SmaCrossParams):
    interrupt_when_fast: int = param(7, description="detect is interrupted when fast equals this")
    chained: bool = param(False, description="raise RuntimeError from KeyboardInterrupt instead of a SIGINT")
    signal_name: str = param("SIGINT", description="the signal sent: SIGINT (Ctrl-C) or SIGTERM (kill, a scheduler)")


@_base.register
class InterruptingCross(SmaCross):
    """sma_cross whose detect is interrupted for one value of ``fast``."""

    name = "test_interrupting_cross"
    Params = InterruptingCrossParams

    def detect(self, ctx: FeatureContext) -> Signals:
        import signal
        p = self.params
        if p.fast == p.interrupt_when_fast:
            if p.chained:
                try:
                    raise KeyboardInterrupt
                except KeyboardInterrupt as exc:
                    raise RuntimeError("a compiled call returned a result with an exception set") from exc
            os.kill(os.getpid(), getattr(signal, p.signal_name))
            time.sleep(0.05)  # the signal arrives while the run goes on
        return super().detect(ctx)


class SlowCrossParams(SmaCrossParams):
    delay: float = param(0.0, ge=0, description="seconds to sleep in detect")
    slow_when_fast: Optional[int] = param(None, description="sleep only when fast equals this (None: always)")


@_base.register
class SlowCross(SmaCross):
    """sma_cross that sleeps in detect and logs every execution."""

    name = "test_slow_cross"
    Params = SlowCrossParams

    def detect(self, ctx: FeatureContext) -> Signals:
        p = self.params
        _log_execution(p.fast, p.slow)
        if p.delay > 0 and (p.slow_when_fast is None or p.fast == p.slow_when_fast):
            _sleep(p.delay)
        return super().detect(ctx)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a subprocess (CLI) in which ``import fault_plugins`` works."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


# ---------------------------------------------------------------- config helpers
# Small builders of blueprint and meta-config YAML files in a test's tmp_path, shared by
# the tests/test_meta_*.py files.

ROOT = TESTS_DIR.parent
SP500_OPERATION = ROOT / "config" / "operations" / "sp500_daily.yaml"


def write_yaml(path: Path, doc: dict) -> Path:
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_blueprint(folder: Path, plugin: str = "sma_cross", params: Optional[dict] = None,
                    base: str = "sma_cross.yaml", name: str = "blueprint.yaml",
                    plugins: Sequence[str] = ()) -> Path:
    """A copy of ``config/runs/<base>`` whose ``sma_1`` worker uses ``plugin`` with ``params``
    (and which declares the plugin modules ``plugins``)."""
    import yaml

    doc = yaml.safe_load((ROOT / "config" / "runs" / base).read_text())
    if plugins:
        doc["plugins"] = list(plugins)
    for w in doc["workforce"]["opportunity_workers"]:
        if w["instance_id"] == "sma_1":
            w["plugin"] = plugin
            w["params"] = {**w.get("params", {}), **(params or {})}
    return write_yaml(Path(folder) / name, doc)


def meta_doc(kind: str, strategy: Path | str, operation: Path | str = SP500_OPERATION, **body: object) -> dict:
    """``{kind: {name, base_operation, base_strategy, **body}}`` with absolute base paths."""
    return {kind: {"name": body.pop("name", f"test {kind}"), "base_operation": str(operation),
                   "base_strategy": str(strategy), **body}}


def write_optimization(folder: Path, space: list, strategy: Path | str, target: Optional[dict] = None,
                       name: str = "optimization.yaml", **extra: object) -> Path:
    body: dict = {"parameter_space": space, **extra}
    if target is not None:
        body["optimization_target"] = target
    return write_yaml(Path(folder) / name, meta_doc("optimization_config", strategy, **body))


def sma_space(fast: list, slow: Optional[list] = None, instance: str = "sma_1") -> list:
    params: dict = {"fast": {"values": list(fast)}}
    if slow is not None:
        params["slow"] = {"values": list(slow)}
    return [{"worker_instance": instance, "parameters": params}]


def store_records(out: Path) -> list[str]:
    """Keys (spec hashes) of the run records under ``<out>/store``, sorted."""
    from metaflow_nb.services.store import ResultsStore

    root = Path(out) / "store"
    return list(ResultsStore(root).keys()) if root.is_dir() else []


def put_raw_record(out: Path, key: str, raw: bytes) -> None:
    """Store ``raw`` as the record of ``key`` under ``<out>/store``, as a hand edit or
    another program would: in a new segment when it is UTF-8 text, else (a string column
    cannot hold it) as a file of the earlier layout, the key's segment rows dropped."""
    from metaflow_nb.services.store import ResultsStore

    store = ResultsStore(Path(out) / "store")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        store.drop([key])
        p = store.root / key[:2] / f"{key}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(raw)
        return
    store._write_segment([{"spec_hash": key, "record": text}])


def write_sp500_operation(folder: Path, start: str = "2014-01-01", end: Optional[str] = None,
                          name: str = "sp500_short.yaml") -> Path:
    """The sp500_daily operation cut to a date range (fewer days: cheaper bootstraps)."""
    import yaml

    doc = yaml.safe_load(SP500_OPERATION.read_text())
    doc["data"] = {**doc["data"], "start": start, **({"end": end} if end else {})}
    return write_yaml(Path(folder) / name, doc)


def refused(fast: int = 7, instance: str = "sma_1") -> str:
    """The error message of a run that ``test_faulty_cross`` refused: the worker instance,
    the method and this file's line, as ``metaflow_nb.workers.calls`` names them."""
    line = next(k for k, text in enumerate(Path(__file__).read_text().splitlines(), 1) if "# REFUSES" in text)
    where = os.path.relpath(__file__)
    where = where if not where.startswith("..") else os.path.abspath(__file__)
    return (f"{instance} (opportunity): detect raised ValueError: test_faulty_cross refuses fast={fast} "
            f"({where}:{line} in detect)")
