"""Write the golden files of the bundled configs (see README.md in this folder).

    PYTHONPATH=<checkout> python tests/goldens/make_goldens.py [--root <checkout>] [--out DIR]

Every artefact is produced through the public API only (``import metaflow_nb as mf``) and
serialized deterministically, so two runs of the same code give the same bytes:

* JSON with ``json.dumps`` (floats in their exact repr; NaN and infinities as the strings
  ``"nan"``, ``"inf"``, ``"-inf"``; ints stay ints), keys in the order the API gives them;
* tables with ``DataFrame.to_csv(lineterminator="\\n")``; the large ones (trades,
  journals) gzipped with ``mtime=0``;
* equity and position series as the sha256 of their values' raw bytes.

``tests/test_goldens.py`` imports this file and recomputes every case with the code under
test; the functions here are the single definition of what is pinned.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE.parents[1]

#: single runs: golden name -> (strategy, operation), paths relative to the project root
RUNS = {
    "sma_cross": ("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml"),
    "sma_cross_long_stops": ("config/runs/sma_cross_long_stops.yaml", "config/operations/sp500_daily.yaml"),
    "ict_smc_strategy": ("config/runs/ict_smc_strategy.yaml", "config/operations/ict_backtest.yaml"),
}
OPTIMIZATIONS = ("optimize_fvg_params", "sma_grid")       # config/optimizations/<name>.yaml
VARIANTS = ("exit_strategy_test",)                         # config/variants/<name>.yaml
WALK_FORWARDS = ("fvg_walk_forward",)                      # config/walk_forward/<name>.yaml

#: the sweeps run twice: with the API's default backend (the in-process batch engine) and
#: with backend="sequential" (the general engine, one full run per combination). Both must
#: give the same bytes, so they share one set of golden files.
ENGINES = {"batch": None, "general": "sequential"}


# ---------------------------------------------------------------- serialization
def plain(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars as Python ones, non-finite floats as strings."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else str(f)
    if isinstance(obj, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(obj).isoformat()
    return obj


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(plain(obj), indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def csv_bytes(frame: pd.DataFrame, index: bool = False) -> bytes:
    return frame.to_csv(index=index, lineterminator="\n").encode("utf-8")


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def payload(name: str, data: bytes) -> bytes:
    """The content of a golden file (gzip-ed files are compared uncompressed)."""
    return gzip.decompress(data) if name.endswith(".gz") else data


def series_digest(*series: pd.Series) -> dict[str, Any]:
    """Length, dtypes and sha256 over the raw bytes of the series' values, in order."""
    h = hashlib.sha256()
    for s in series:
        h.update(np.ascontiguousarray(s.to_numpy()).tobytes())
    return {"bars": int(len(series[0])), "dtypes": [str(s.dtype) for s in series], "sha256": h.hexdigest()}


def index_digest(series: pd.Series) -> str:
    return hashlib.sha256(np.ascontiguousarray(series.index.asi8).tobytes()).hexdigest()


@contextlib.contextmanager
def project_cwd(root: Path) -> Iterator[None]:
    """Meta configs resolve their base_* paths against the working directory first."""
    old = Path.cwd()
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(old)


# ---------------------------------------------------------------- artefacts
def result_files(prefix: str, res: Any) -> dict[str, bytes]:
    """Trades and journal of one BacktestResult."""
    return {f"{prefix}.trades.csv.gz": gz(csv_bytes(res.trades)),
            f"{prefix}.journal.csv.gz": gz(csv_bytes(res.journal))}


def run_artefacts(root: Path, name: str) -> dict[str, bytes]:
    import metaflow_nb as mf

    strategy, operation = RUNS[name]
    with project_cwd(root):
        res = mf.backtest(str(root / strategy), str(root / operation))
    summary = {"strategy": strategy, "operation": operation, "run_id": res.run_id,
               "spec_hash": res.specs.hash, "metrics": res.metrics,
               "trades": int(len(res.trades)), "journal_events": int(len(res.journal)),
               "equity_position": series_digest(res.equity, res.position),
               "equity_index_sha256": index_digest(res.equity)}
    return {f"runs/{name}.metrics.json": json_bytes(summary), **result_files(f"runs/{name}", res)}


def optimization_artefacts(root: Path, name: str, engine: str = "batch") -> dict[str, bytes]:
    import metaflow_nb as mf

    with project_cwd(root):
        opt = mf.optimize(str(root / "config" / "optimizations" / f"{name}.yaml"),
                          backend=ENGINES[engine], progress=False)
        stats = {k: v for k, v in opt.statistics.items() if not k.startswith("_")}
    if opt.engine != engine:
        raise AssertionError(f"optimization {name}: expected the {engine} engine to run, got {opt.engine}")
    summary = {"name": opt.name, "primary_metric": opt.target.primary_metric,
               "total_runs": opt.total_runs, "successful_runs": opt.successful_runs,
               "failed_runs": opt.failed_runs, "param_columns": opt.param_columns,
               "best_index": opt.best_index,
               "best_run_id": None if opt.best_row is None else opt.best_row["run_id"],
               "best_params": opt.best_params, "best_metrics": opt.best_metrics,
               "message": opt.message, "statistics": stats}
    table = opt.to_frame().drop(columns=["duration_s"])
    return {f"optimizations/{name}.results.csv": csv_bytes(table),
            f"optimizations/{name}.summary.json": json_bytes(summary)}


def variant_artefacts(root: Path, name: str) -> dict[str, bytes]:
    import metaflow_nb as mf

    with project_cwd(root):
        cmp = mf.compare_variants(str(root / "config" / "variants" / f"{name}.yaml"),
                                  backend="sequential", progress=False)
    summary = cmp.to_dict()
    summary["table"] = cmp.table().reset_index(names="metric").to_dict(orient="records")
    summary["equity_position"] = {v.name: series_digest(v.result.equity, v.result.position)
                                  for v in cmp.variants if v.ok}
    files = {f"variants/{name}.runs.csv": csv_bytes(cmp.to_frame(), index=True),
             f"variants/{name}.summary.json": json_bytes(summary)}
    for v in cmp.variants:
        if v.ok:
            files.update(result_files(f"variants/{name}.{v.name}", v.result))
    return files


def walk_forward_artefacts(root: Path, name: str, engine: str = "batch") -> dict[str, bytes]:
    import metaflow_nb as mf

    with project_cwd(root):
        wf = mf.walk_forward(str(root / "config" / "walk_forward" / f"{name}.yaml"),
                             backend=ENGINES[engine], progress=False)
    summary = {"name": wf.name, "primary_metric": wf.primary_metric, "n_windows": int(len(wf.windows)),
               "walk_forward_efficiency": wf.efficiency, "oos_spread": wf.spread,
               "oos_metrics": wf.oos_metrics, "oos_run_ids": [r.run_id for r in wf.oos_results],
               "oos_equity": series_digest(wf.oos_equity), "oos_equity_index_sha256": index_digest(wf.oos_equity)}
    return {f"walk_forward/{name}.windows.csv": csv_bytes(wf.to_frame()),
            f"walk_forward/{name}.summary.json": json_bytes(summary)}


def cases() -> dict[str, Callable[[Path], dict[str, bytes]]]:
    """Every check: case id -> function(project root) -> {golden file: bytes}.

    Cases ending in ``[general]`` recompute files that the ``[batch]`` case also makes;
    only the latter are written by :func:`generate`."""
    out: dict[str, Callable[[Path], dict[str, bytes]]] = {}
    for n in RUNS:
        out[f"run:{n}"] = lambda root, n=n: run_artefacts(root, n)
    for n in OPTIMIZATIONS:
        for e in ENGINES:
            out[f"optimize:{n}[{e}]"] = lambda root, n=n, e=e: optimization_artefacts(root, n, e)
    for n in VARIANTS:
        out[f"variants:{n}"] = lambda root, n=n: variant_artefacts(root, n)
    for n in WALK_FORWARDS:
        for e in ENGINES:
            out[f"walk_forward:{n}[{e}]"] = lambda root, n=n, e=e: walk_forward_artefacts(root, n, e)
    return out


#: the engine revision the goldens' numbers were made under, with a digest of those numbers
REVISION_FILE = "engine_revision.json"


def numbers_digest(files: dict[str, bytes]) -> str:
    """sha256 of the single runs' numbers among golden ``files`` (name -> stored bytes):
    each run's metrics, counts and equity digests without its run id and spec hash, and its
    trades and journal. A change of these under one ``ENGINE_REVISION`` would let a results
    store made before it be reused (hunt88 F1)."""
    h = hashlib.sha256()
    for name in sorted(n for n in files if n.startswith("runs/")):
        data = payload(name, files[name])
        if name.endswith(".metrics.json"):
            doc = {k: v for k, v in json.loads(data).items() if k not in ("run_id", "spec_hash")}
            data = json_bytes(doc)
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def revision_record(files: dict[str, bytes], previous: Optional[dict[str, Any]]) -> dict[str, Any]:
    """``{engine_revision, numbers_sha256}`` for golden ``files``; SystemExit when their
    numbers differ from ``previous`` (the stored record) under the same revision: raise
    ``metaflow_nb.engine.codes.ENGINE_REVISION`` with a note on what changed first."""
    from metaflow_nb.engine.codes import ENGINE_REVISION

    digest = numbers_digest(files)
    if previous and previous.get("engine_revision") == ENGINE_REVISION and previous.get("numbers_sha256") != digest:
        raise SystemExit(f"the single runs' numbers changed under ENGINE_REVISION {ENGINE_REVISION}: raise it in "
                         "metaflow_nb/engine/codes.py (saying what changed) so that stores and reports made before "
                         "are computed again; not writing goldens")
    return {"engine_revision": ENGINE_REVISION, "numbers_sha256": digest}


def generate(out: Path, root: Path = DEFAULT_ROOT, check_general: bool = True) -> dict[str, bytes]:
    """Write every golden file under ``out``; the general-engine cases must match them."""
    files: dict[str, bytes] = {}
    for case, make in cases().items():
        made = make(root)
        if case.endswith("[general]"):
            if check_general:
                for fname, data in made.items():
                    if payload(fname, data) != payload(fname, files[fname]):
                        raise SystemExit(f"{case}: {fname} differs from the batch engine's; not writing goldens")
            continue
        files.update(made)
    stored = HERE / REVISION_FILE
    previous = json.loads(stored.read_text()) if stored.exists() else None
    files[REVISION_FILE] = json_bytes(revision_record(files, previous))
    for fname, data in sorted(files.items()):
        path = out / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="project root holding config/ (default: this checkout)")
    ap.add_argument("--out", type=Path, default=HERE, help="folder to write the goldens into (default: this folder)")
    args = ap.parse_args(argv)
    import metaflow_nb
    root = args.root.resolve()
    print(f"metaflow_nb from {Path(metaflow_nb.__file__).parent}; configs from {root}", file=sys.stderr)
    files = generate(args.out.resolve(), root)
    for fname, data in sorted(files.items()):
        print(f"{len(data):>8}  {fname}")


if __name__ == "__main__":
    main()
