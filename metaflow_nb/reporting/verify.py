"""``metaflow-nb report --verify DIR``: does the report still hold?

Re-runs every run the manifest names from its resolved blueprint and operation (no
notebooks), compares every metric in ``content.results`` to a relative 1e-12 (a run
recorded as ok must record each of ``METRIC_NAMES``), re-hashes the data files, checks
``content_sha256`` and each file the report wrote (every page ``content.pages`` lists
must have its sha256 under ``files``). For an optimization over one instrument it
also selects the best run again from the re-run metrics (the recorded target and
constraints) and recomputes the selection statistics (deflated Sharpe ratio, PBO, trials)
the pages open with. Any difference is listed; the command exits non-zero with a
one-line summary.

A manifest never causes an import: the plugin modules a report declared are recorded in
it, but only the verifier's own declarations (``--plugins``, ``mf.use_plugins``,
installed entry points) are imported. Every run's plugins are checked under that rule
before anything runs; an undeclared or unknown one is a ConfigError naming the manifest
and the key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..config.models import iter_section_workers, section_path
from ..config.translator import ConfigTranslator
from ..data import file_sha256
from ..engine.codes import ENGINE_REVISION
from ..engine.metrics import METRIC_NAMES
from ..errors import ConfigError
from ..workers.registry import get_plugin, is_declared, is_module_name, session_plugins
from ..services.formatting import counted, json_safe
from ..services.operation import OperationService
from .manifest import content_sha256, data_file, read_manifest

REL_TOL = 1e-12


@dataclass
class VerifyResult:
    """What ``--verify`` found in a report ``folder``: the ``differences`` (none: the
    report holds) and how many runs, metrics, data files and report files it checked.

    >>> res = VerifyResult(Path("reports/exits-1a2b3c4d"), runs=2, metrics=40, data_files=1)
    >>> res.ok, res.summary()
    (True, 'verify: ok: 2 runs, 40 metrics and 1 data file(s) match the manifest of reports/exits-1a2b3c4d (re-run from the configs the manifest records)')
    """

    folder: Path
    differences: list[str] = field(default_factory=list)
    runs: int = 0
    metrics: int = 0
    data_files: int = 0
    files: int = 0   # the report's own files found as it wrote them
    notes: list[str] = field(default_factory=list)   # what was not checked, and why

    @property
    def ok(self) -> bool:
        """True when no difference was found."""
        return not self.differences

    def summary(self) -> str:
        """One line: ``verify: ok: ...`` with what was checked, or ``verify: FAILED: ...``
        with the first six differences.

        >>> VerifyResult(Path("r"), ["data a.csv: file a.csv is missing"]).summary()
        'verify: FAILED: 1 difference(s) in r: data a.csv: file a.csv is missing'
        """
        if self.ok:
            written = f"; {self.files} report file(s) as written" if self.files else ""
            noted = "".join(f" ({n})" for n in self.notes)
            # the configs are the manifest's, not the YAML files beside it (hunt118 F8)
            return (f"verify: ok: {self.runs} runs, {self.metrics} metrics and {self.data_files} data file(s) "
                    f"match the manifest of {self.folder}{written} (re-run from the configs the manifest records)"
                    f"{noted}")
        shown = "; ".join(self.differences[:6])
        more = f"; ... and {len(self.differences) - 6} more" if len(self.differences) > 6 else ""
        return f"verify: FAILED: {len(self.differences)} difference(s) in {self.folder}: {shown}{more}"

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (what ``report --verify DIR --json`` prints).

        >>> VerifyResult(Path("r"), runs=1).to_dict()["ok"]
        True
        """
        return {"folder": str(self.folder), "ok": self.ok, "differences": self.differences, "runs": self.runs,
                "metrics": self.metrics, "data_files": self.data_files, "files": self.files, "notes": self.notes}


def same_number(a: Any, b: Any, rel: float = REL_TOL) -> bool:
    """Equal as report numbers: both missing (None / NaN), or within ``rel`` relative.

    >>> same_number(1.0, 1.0 + 1e-15), same_number(None, float("nan")), same_number(1.0, 1.001)
    (True, True, False)
    """
    def missing(x: Any) -> bool:
        return x is None or (isinstance(x, float) and math.isnan(x))

    if missing(a) or missing(b):
        return missing(a) and missing(b)
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    if math.isinf(a) or math.isinf(b):
        return a == b
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


def _first_three(items: list[str]) -> str:
    """The first three of a list of differences, ``...`` for more."""
    return ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")


def _short(h: Optional[str]) -> str:
    return (h or "none")[:12]


def _check_data(content: dict[str, Any], res: VerifyResult) -> None:
    for d in content.get("data", []):
        name = d.get("file") or d.get("source")
        p = Path(d["path"]) if d.get("path") else data_file(d.get("source", ""))
        if p is None or not p.is_file():
            res.differences.append(f"data {name}: file {d.get('path') or d.get('source')} is missing")
            continue
        res.data_files += 1
        now = file_sha256(p)
        if now != d.get("sha256"):
            res.differences.append(f"data {name}: sha256 changed ({_short(d.get('sha256'))} -> {_short(now)}), "
                                   f"the data file differs from the one reported")


def _other_packages(recorded: Any) -> str:
    """The recorded package versions this process does not have, ``name old -> new``.

    >>> _other_packages({"numpy": "1.0.0", "not-a-package-mf": None})
    'numpy 1.0.0 -> ...'
    """
    if not isinstance(recorded, dict):
        return ""
    from .manifest import package_versions

    now = package_versions()
    diff = [f"{k} {v} -> {now[k]}" for k, v in recorded.items() if k in now and v != now[k]]
    return ", ".join(diff)


def _check_files(man: dict[str, Any], res: VerifyResult) -> None:
    """Each file the report wrote (``files``: pages, notebooks, CSVs, index) is still as
    written: a page is what gets mailed, and no run can re-derive an edited one. Every
    page's .html and .ipynb that ``content.pages`` lists (inside the content hash) and the
    index must have an entry when the folder holds it or ``files`` records any file:
    ``files`` is outside the hash, so a dropped entry would leave an edited page
    unchecked (a manifest alone, its pages not beside it, records none).

    >>> res = VerifyResult(Path("no/such/report"))
    >>> page = {"name": "a", "notebook": "a.ipynb", "html": "a.html"}
    >>> _check_files({"content": {"pages": [page]}, "files": {"a.html": "0" * 64}}, res)
    >>> for d in res.differences: print(d)
    file a.ipynb: not recorded in the manifest's files (content.pages lists it)
    file index.html: not recorded in the manifest's files (every report writes it)
    file a.html: missing (the report wrote it)
    """
    if "files" not in man and man.get("content", {}).get("manifest_version", 1) < 2:
        # written before reports recorded their files (hunt88 F3): nothing to hold them to
        res.notes.append("its report files were not recorded by manifests of version 1: not checked")
        return
    files = man.get("files") or {}
    pages = man.get("content", {}).get("pages") or []
    listed = {n: "content.pages lists it" for p in pages for n in (p.get("html"), p.get("notebook")) if n}
    listed.setdefault("index.html", "every report writes it")
    for name in (*(p.get("trades_csv") for p in pages), man.get("content", {}).get("results_csv")):
        if isinstance(name, str) and name:
            listed.setdefault(name, "the report wrote it: content names it")
    for name, why in listed.items():
        if name not in files and (files or (res.folder / name).is_file()):
            res.differences.append(f"file {name}: not recorded in the manifest's files ({why})")
    inside = res.folder.resolve()
    for name, sha in files.items():
        p = res.folder / name
        if not p.resolve().is_relative_to(inside):
            # through a link in the folder (names with .. or absolute ones the manifest's
            # shape check refused): nothing elsewhere is read or vouched for (hunt81 F2)
            raise ConfigError(f"{res.folder / 'manifest.json'}: files[{name!r}]: expected a file of the report's own "
                              f"folder (it leads to {p.resolve()})")
        if not p.is_file():
            res.differences.append(f"file {name}: missing (the report wrote it)")
            continue
        now = file_sha256(p)
        if now != sha:
            res.differences.append(f"file {name}: changed since the report wrote it (sha256 {_short(sha)} -> "
                                   f"{_short(now)})")
        else:
            res.files += 1


def _untrusted_config(run: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """A run's blueprint and operation without their declarations, and what the report declared."""
    bp, op = dict(run.get("blueprint") or {}), dict(run.get("operation") or {})
    claimed = [*(run.get("plugins") or []), *(bp.pop("plugins", None) or []), *(op.pop("plugins", None) or [])]
    return bp, op, [str(m) for m in dict.fromkeys(claimed)]


def check_plugins(content: dict[str, Any], manifest: str) -> None:
    """Every worker of every run resolves under the verifier's declarations, nothing from
    the manifest imported; else a one-line ConfigError naming the manifest and the key.

    >>> run = {"blueprint": {"workforce": {"opportunity_workers": [{"plugin": "this:Nope"}]}}}
    >>> check_plugins({"runs": [run]}, "r/manifest.json")
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: r/manifest.json: content.runs[0].blueprint.workforce.opportunity_workers[0].plugin: 'this:Nope': module 'this' is not declared; declare it with --plugins this
    """
    for i, run in enumerate(content.get("runs", [])):
        bp, _, claimed = _untrusted_config(run)
        for section, j, w in iter_section_workers(bp.get("workforce") or {}):
            name = w.get("plugin") if isinstance(w, dict) else None
            if not isinstance(name, str):
                continue  # the run's own resolution reports a malformed worker
            module = name.partition(":")[0]
            if ":" in name and is_module_name(module) and not is_declared(module, session_plugins()):
                # the config's wording says "plugins: [...]"; here only the verifier declares
                msg = f"{name!r}: module {module!r} is not declared; declare it with --plugins {module}"
            else:
                try:
                    get_plugin(name, declared=session_plugins())
                    continue
                except KeyError as exc:
                    msg = str(exc.args[0])
            trust = (f"; the report declared plugins: {', '.join(claimed)} (verify with --plugins "
                     f"{','.join(claimed)} if you trust them)" if claimed else "")
            where = ".".join(section_path(section))
            raise ConfigError(f"{manifest}: content.runs[{i}].blueprint.workforce.{where}[{j}].plugin: "
                              f"{msg}{trust}")


def check_config(content: dict[str, Any], manifest: str) -> None:
    """The parts of the report's config that verify reads are valid (an optimization's
    target, a walk-forward's whole config), checked before anything runs; else a one-line
    ConfigError naming the manifest and the key (``manifest._check_shape`` has checked that
    ``content.config`` and each root's body are mappings).

    >>> check_config({"kind": "optimization_config",
    ...               "config": {"optimization_config": {"optimization_target": {"goal": "up"}}}}, "r/manifest.json")
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: r/manifest.json: content.config.optimization_config.optimization_target.goal: Input should be 'maximize', 'minimize' or 'auto' (got 'up')
    """
    from ..config.loading import validate_model
    from ..config.meta import OptimizationTarget, load_meta_config, meta_origin

    kind, config = content.get("kind"), content.get("config") or {}
    if kind == "optimization_config":
        validate_model(OptimizationTarget, (config.get(kind) or {}).get("optimization_target") or {}, manifest,
                       ("content", "config", kind, "optimization_target"))
    elif kind == "walk_forward_config":
        try:
            load_meta_config(config, kind)
        except ConfigError as exc:   # named as a dict; name the manifest and its key instead
            msg, origin = str(exc), f"{meta_origin(config, kind)}: "
            msg = msg[len(origin):] if msg.startswith(origin) else msg
            sep = "." if msg.startswith((f"{kind}.", f"{kind}:")) else ": "
            raise ConfigError(f"{manifest}: content.config{sep}{msg}") from None


def _check_run(run: dict[str, Any], expected: dict[str, Any], svc: Any, res: VerifyResult) -> Optional[tuple]:
    """Re-run one run and compare its metrics; ``(specs, metrics, result)`` of a run that
    ran again (a BacktestResult, or a PortfolioResult for a run over a basket: what the
    selection, walk-forward and variant checks read), else None."""
    name = run["name"]
    bp, op, _ = _untrusted_config(run)
    basket = run.get("basket")
    if run.get("invalid_params"):
        _check_invalid(run, bp, op, basket, res)
        return None
    again = None
    try:
        if basket is not None:   # a portfolio run: resolving its basket runs it
            from ..services.portfolio import rerun_portfolio
            try:
                again = rerun_portfolio(bp, op, basket.get("window"))
            except Exception as exc:  # noqa: BLE001
                res.runs += 1
                if expected.get("status", "ok") == "ok":
                    res.differences.append(f"run {name}: failed on re-run: {type(exc).__name__}: {exc}")
                return None
            specs = again.basket_specs
        else:
            specs = ConfigTranslator().translate(bp, op)
    except Exception as exc:  # noqa: BLE001
        res.differences.append(f"run {name}: cannot be resolved any more: {type(exc).__name__}: {exc}")
        return None
    if specs.hash != run.get("specs_hash"):
        what = ("data fingerprint changed" if specs.data_fingerprint != run.get("data_fingerprint")
                else "resolved config changed")
        res.differences.append(f"run {name}: BuildSpecs hash {_short(run.get('specs_hash'))} -> {_short(specs.hash)} "
                               f"({what})")
    res.runs += 1
    try:
        ran = again if again is not None else svc.run(specs)
        metrics = json_safe(ran.metrics)
    except Exception as exc:  # noqa: BLE001
        if expected.get("status", "ok") == "ok":
            res.differences.append(f"run {name}: failed on re-run: {type(exc).__name__}: {exc}")
        return None
    if expected.get("status", "ok") != "ok":
        res.differences.append(f"run {name}: was {expected.get('status')} in the report but now runs")
        return None
    diffs = []
    recorded = expected.get("metrics") or {}
    for key, old in recorded.items():
        res.metrics += 1
        new = metrics.get(key)
        if not same_number(old, new):
            diffs.append(f"{key} {old!r} -> {new!r}")
    if diffs:
        res.differences.append(f"run {name}: {len(diffs)} metric(s) differ ({_first_three(diffs)})")
    # a run recorded as ok records every metric: a thinner record would be compared on less
    absent = [m for m in METRIC_NAMES if m not in recorded]
    if absent:
        res.differences.append(f"run {name}: {len(absent)} metric(s) not recorded ({_first_three(absent)})")
    return specs, metrics, ran


def _kept(content: dict[str, Any], run: dict[str, Any], hit: tuple) -> tuple:
    """What the checks after the runs read of a run that ran again: the walk-forward and
    variant checks the whole result; a basket optimization its portfolio's daily returns
    and, in independent mode, each symbol's metrics; a single sweep its metrics (a
    sweep's results would pile up)."""
    if content.get("kind") in ("walk_forward_config", "variant_config"):
        return hit
    if run.get("basket") is not None:
        res = hit[2]
        per = {sym: r.metrics for sym, r in res.results.items()} if res.mode == "independent" else None
        return hit[0], hit[1], _portfolio_returns(res), per
    return hit[:2]


def _portfolio_returns(res: Any) -> tuple[Any, float]:
    """A portfolio run's daily returns and periods a year."""
    from ..engine.metrics import daily_returns, periods_per_year
    cal = res.instrument_specs()[0].data_calendar
    return daily_returns(res.equity["total"], res.starting_cash, cal), periods_per_year(res.index, cal)


#: the selection statistics a report's pages open with, compared on --verify
SELECTION_KEYS = ("n_trials", "dsr", "psr", "dsr_significant", "pbo")


def _statistics_differ(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"dsr 0.5 -> 0.61"`` for each selection statistic (:data:`SELECTION_KEYS`) the
    recorded ``old`` and the recomputed ``new`` disagree on."""
    return [f"{k} {old.get(k)!r} -> {json_safe(new.get(k))!r}" for k in SELECTION_KEYS
            if (k in old or k in new) and not same_number(old.get(k), json_safe(new.get(k)))]


def _flat_params(run: dict[str, Any]) -> dict[str, Any]:
    """A manifest run's params as ``{"instance.param": value}``, a results table's columns."""
    return {f"{i}.{p}": v for i, ps in (run.get("params") or {}).items() for p, v in ps.items()}


def _check_selection(content: dict[str, Any], again: dict[str, tuple], res: VerifyResult) -> None:
    """An optimization's best run and selection statistics, recomputed from the runs just
    re-run (the manifest's target and constraints) and compared with its summary."""
    import pandas as pd

    from ..config.meta import OptimizationTarget
    from ..engine.metrics import METRIC_NAMES
    from ..services.optimization import OptimizationResult, restore_infinite_profit_factors, select_best
    from ..services.significance import optimization_statistics

    summary = content.get("summary") or {}
    cfg = (content.get("config") or {}).get("optimization_config") or {}
    runs = content.get("runs", [])
    if content.get("kind") != "optimization_config" or summary.get("basket") or not runs \
            or any(r.get("basket") is not None for r in runs):
        return
    target = OptimizationTarget(**(cfg.get("optimization_target") or {}))
    rows, columns, base = [], {}, None
    for run in runs:
        params = _flat_params(run)
        columns.update(dict.fromkeys(params))
        hit = again.get(run["name"])
        row = {**params, "status": "ok" if hit is not None else "failed", "error": "",
               "run_id": hit[0].run_id if hit is not None else run.get("run_id")}
        row.update({m: (hit[1].get(m) if hit is not None else None) for m in METRIC_NAMES})
        rows.append(row)
        base = base or (hit[0] if hit is not None else None)
    if base is None:
        return
    frame = pd.DataFrame(rows)
    for m in METRIC_NAMES:
        frame[m] = pd.to_numeric(frame[m], errors="coerce")
    restore_infinite_profit_factors(frame)   # the metrics were kept JSON-safe (inf as None), as the sweep's
    best, message = select_best(frame, target)
    best_id = None if best is None else frame["run_id"].iloc[best]
    if best_id != summary.get("best_run_id"):
        res.differences.append(f"selection: best run {summary.get('best_run_id')} -> {best_id}")
    if best is not None:
        params = json_safe(runs[best].get("params"))
        if params != summary.get("best_params"):
            res.differences.append(f"selection: best params {summary.get('best_params')} -> {params}")
        metrics = json_safe(again[runs[best]["name"]][1]) if runs[best]["name"] in again else {}
        changed = [k for k, v in (summary.get("best_metrics") or {}).items() if not same_number(v, metrics.get(k))]
        if changed:
            res.differences.append(f"selection: best run's metrics differ ({_first_three(changed)})")
    opt = OptimizationResult(str(summary.get("name", "")), target, list(columns), frame, best, message, base)
    st = optimization_statistics(opt)
    old = summary.get("statistics") or {}
    diffs = _statistics_differ(old, st)
    if diffs:
        res.differences.append(f"selection statistics: {len(diffs)} differ ({', '.join(diffs)})")


def _check_basket_selection(content: dict[str, Any], again: dict[str, tuple], res: VerifyResult) -> None:
    """A basket optimization's best combination and selection statistics (deflated Sharpe
    ratio, trials, PBO), and in independent mode each symbol's pick with its deflated
    Sharpe ratio, recomputed from the portfolio runs just re-run as
    :func:`~metaflow_nb.services.portfolio_meta.optimize_basket` computes them."""
    import pandas as pd

    from ..config.meta import OptimizationTarget
    from ..engine.metrics import METRIC_NAMES
    from ..services.optimization import restore_infinite_profit_factors
    from ..services.portfolio_meta import BasketOptimization, _deflated, rank_combinations

    summary = content.get("summary") or {}
    runs = content.get("runs", [])
    if content.get("kind") != "optimization_config" or not summary.get("basket") or not runs:
        return
    cfg = (content.get("config") or {}).get("optimization_config") or {}
    target = OptimizationTarget(**(cfg.get("optimization_target") or {}))
    metric, maximize = target.primary_metric, target.maximize()
    rows, returns = [], {}
    for k, run in enumerate(runs):
        params = _flat_params(run)
        hit = again.get(run["name"])
        rows.append({"combination": k, **params, **{m: (hit[1].get(m) if hit else None) for m in METRIC_NAMES},
                     "status": "ok" if hit else "failed", "error": ""})
        if hit:
            returns[k] = hit[2]
    if not returns:
        return
    frame = pd.DataFrame(rows)
    for m in METRIC_NAMES:
        frame[m] = pd.to_numeric(frame[m], errors="coerce")
    restore_infinite_profit_factors(frame)
    table = rank_combinations(frame, metric, maximize, target.constraints)
    # the first row's params, as optimize_basket records them: its best, or none when the
    # first row is the best of the ineligible (hunt62 F2)
    best = {c.replace(".", "__", 1): table[c].iloc[0] for c in table.columns if "." in c}
    eligible = bool(table["eligible"].iloc[0]) if "eligible" in table else True
    said = json_safe(best) if eligible else None
    if said != json_safe(summary.get("best_params")):
        res.differences.append(f"selection: best params {summary.get('best_params')} -> {said}")
    first = int(table["combination"].iloc[0])
    hit = again.get(runs[first]["name"])
    if hit is not None:   # the headline the pages open with is the best run's, re-run (as the single path checks)
        changed = [f"{k} {v!r} -> {hit[1].get(k)!r}" for k, v in (summary.get("best_metrics") or {}).items()
                   if not same_number(v, hit[1].get(k))]
        if changed:
            res.differences.append(f"selection: best run's metrics differ ({_first_three(changed)})")
    deflated = _deflated(returns[first][0], table["sharpe_ratio"].to_numpy(float),
                         int((table["status"] == "ok").sum()), returns[first][1]) if first in returns else None
    old = summary.get("statistics") or {}
    # PBO reads every combination's returns when the optimization kept them; else it says why not
    matrix = pd.DataFrame({k: r for k, (r, _) in returns.items()}) if "pbo" in old else None
    opt = BasketOptimization(metric, maximize, table, best, None, math.nan if deflated is None else deflated.dsr,
                             None, 0, returns=matrix, returns_note=str(old.get("pbo_note", "")), deflated=deflated)
    st = opt.statistics
    diffs = _statistics_differ(old, st)
    if diffs:
        res.differences.append(f"selection statistics: {len(diffs)} differ ({', '.join(diffs)})")
    if summary.get("best_per_instrument") is not None:
        _check_picks(content, again, target, [c for c in table.columns if "." in c], res)


def _check_picks(content: dict[str, Any], again: dict[str, tuple], target: Any, flat_cols: list[str],
                 res: VerifyResult) -> None:
    """Independent mode: each symbol's best combination, its metrics and deflated Sharpe
    ratio (:func:`~metaflow_nb.services.portfolio_meta.per_instrument_table`) from the
    re-run portfolios' accounts; a pick's daily returns come from its portfolio run again."""
    from ..services.portfolio import rerun_portfolio
    from ..services.portfolio_meta import per_instrument_table, single_returns, symbol_picks

    runs = content.get("runs", [])
    per = [{"symbol": sym, "combination": k, **_flat_params(run), **metrics}
           for k, run in enumerate(runs) if run["name"] in again and len(again[run["name"]]) > 3
           for sym, metrics in (again[run["name"]][3] or {}).items()]
    if not per:
        return

    ran: dict[int, Any] = {}   # symbols picking one combination share its portfolio run

    def pick_returns(symbol: str, k: int) -> tuple[Any, float]:
        if k not in ran:
            bp, op, _ = _untrusted_config(runs[k])
            ran[k] = rerun_portfolio(bp, op, (runs[k].get("basket") or {}).get("window"))
        return single_returns(ran[k].results[symbol])

    frame = per_instrument_table(per, flat_cols, target.primary_metric, target.maximize(), target.constraints,
                                 pick_returns)
    picks = symbol_picks(frame, target.primary_metric, target.maximize()).reset_index()
    new = {r["symbol"]: r for r in json_safe(picks.to_dict(orient="records"))}
    old = {r.get("symbol"): r for r in (content.get("summary") or {}).get("best_per_instrument") or []}
    diffs = _tree_differences(old, new)
    if diffs:
        res.differences.append(f"selection: best per instrument: {len(diffs)} differ ({_first_three(diffs)})")


def _check_walk_forward(content: dict[str, Any], again: dict[str, tuple], res: VerifyResult) -> None:
    """A walk-forward's stitched out-of-sample record, re-derived from the windows just
    re-run: its metrics, its test (statistics), the efficiency and the spread (the
    in-sample scores are the manifest's: each window's sweep is not run again)."""
    import pandas as pd

    from ..config.meta import WalkForwardConfig, expand_space, load_meta_config
    from ..services.walk_forward import (WalkForwardResult, stitch_basket_out_of_sample, stitch_out_of_sample,
                                         valid_combinations, window_efficiency)

    summary = content.get("summary") or {}
    runs = content.get("runs", [])
    if content.get("kind") != "walk_forward_config" or not runs:
        return
    if any(r["name"] not in again for r in runs):
        return  # a window that did not run again is a difference already
    root, model, raw, _ = load_meta_config(content.get("config") or {}, "walk_forward_config")
    assert isinstance(model, WalkForwardConfig)
    results = [again[r["name"]][2] for r in runs]
    cash = None   # over a basket: the stitched record's start (every account's cash)
    if runs[0].get("basket") is not None:   # each window one portfolio, on the whole basket's starting equity
        from ..services.portfolio_meta import BasketRunView
        cash = summary.get("starting_equity")
        if not isinstance(cash, (int, float)):
            return   # written before the record kept it: a window's run may not hold every instrument
        stitched, oos = stitch_basket_out_of_sample(results, float(cash))
        first = results[0].instrument_specs()[0]
        results = [BasketRunView(r) for r in results]
    else:
        first = results[0].specs
        stitched, oos = stitch_out_of_sample(results, first.cash, first.data_calendar)
    diffs = [f"{k} {v!r} -> {json_safe(oos.get(k))!r}" for k, v in (summary.get("oos_metrics") or {}).items()
             if not same_number(v, json_safe(oos.get(k)))]
    if diffs:
        res.differences.append(f"walk-forward: stitched out-of-sample metrics: {len(diffs)} differ "
                               f"({_first_three(diffs)})")
    frame = pd.DataFrame(summary.get("windows") or [])
    if "status" in frame:
        ok = frame.index[frame["status"] == "ok"]
        for k in (c for c in frame.columns if c.startswith("oos_") and c[4:] in results[0].metrics):
            frame[k] = pd.to_numeric(frame[k], errors="coerce")
            frame.loc[ok, k] = [r.metrics[k[4:]] for r in results[:len(ok)]]
    columns, combos = expand_space(model.parameter_space, raw["parameter_space"], "<manifest>", root, first,
                                   model.max_combinations)
    wf = WalkForwardResult(str(summary.get("name", "")), model.optimization_target.primary_metric, frame, stitched,
                           oos, float("nan"), {}, columns, results, trials_per_window=valid_combinations(first, combos),
                           starting_equity=None if cash is None else float(cash))
    st, old = wf.statistics, summary.get("statistics") or {}
    diffs = _statistics_differ(old, st)
    if diffs:
        res.differences.append(f"walk-forward: statistics: {len(diffs)} differ ({', '.join(diffs)})")
    if len(frame):
        eff, spread = window_efficiency(frame, model.windows, model.optimization_target.primary_metric)
        if not same_number(summary.get("walk_forward_efficiency"), json_safe(eff)):
            res.differences.append(f"walk-forward: walk_forward_efficiency {summary.get('walk_forward_efficiency')!r} "
                                   f"-> {json_safe(eff)!r}")
        spread, old = json_safe(spread), summary.get("oos_spread") or {}
        diffs = [f"{k} {old.get(k)!r} -> {spread.get(k)!r}" for k in sorted(set(old) | set(spread))
                 if not same_number(old.get(k), spread.get(k))]
        if diffs:
            res.differences.append(f"walk-forward: out-of-sample spread: {len(diffs)} differ ({', '.join(diffs)})")


def _tree_differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Where two JSON trees differ (numbers within :data:`REL_TOL`), as ``path old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += _tree_differences(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for k, (a, b) in enumerate(zip(old, new)) for d in _tree_differences(a, b, f"{path}[{k}]")]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None for v in (old, new))
    same = same_number(old, new) if numbers else old == new
    return [] if same else [f"{path} {old!r} -> {new!r}"]


def _check_variants(content: dict[str, Any], again: dict[str, tuple], res: VerifyResult) -> None:
    """A variant test's comparison, recomputed from the variants just re-run: the winners,
    the rejected-opportunity analysis and, with the report's one seed, the bootstrap
    p-values and stars (over a basket: of the portfolios' daily returns and journals)."""
    from ..services.parallel import RunOutcome
    from ..services.significance import variant_significance
    from ..services.variants import VariantComparison, VariantRun
    from .plan import summary_of

    runs = content.get("runs", [])
    if content.get("kind") != "variant_config" or not runs:
        return
    if any(r["name"] not in again for r in runs if r.get("status", "ok") == "ok"):
        return  # a variant that did not run again is a difference already
    cfg = (content.get("config") or {}).get("variant_config") or {}
    variants = []
    for r in runs:
        hit = again.get(r["name"])
        if hit is None:
            out = RunOutcome(0, str(r.get("run_id") or ""), str(r.get("specs_hash") or ""),
                             str(r.get("status") or "failed"), error_message=str(r.get("error") or ""))
            variants.append(VariantRun(r["name"], str(r.get("description") or ""), None, out))
            continue
        specs, metrics, result = hit
        if r.get("basket") is not None:   # a portfolio run, seen as one run (as the variant test sees it)
            from ..services.portfolio_meta import BasketRunView
            result = BasketRunView(result)
            specs = result.specs
        variants.append(VariantRun(r["name"], str(r.get("description") or ""), specs,
                                   RunOutcome(0, specs.run_id, specs.hash, "ok", metrics=metrics), result))
    cmp = VariantComparison(str(cfg.get("name", "")), variants,
                            primary_metric=str(cfg.get("primary_metric") or "sharpe_ratio"))
    seed = content.get("seed")
    keys = ["winners", "causal_analysis"]
    if isinstance(seed, int) and not isinstance(seed, bool):
        cmp.significance = variant_significance(cmp, seed=seed)
        keys.append("significance")
    old, new = content.get("summary") or {}, summary_of(cmp.to_dict())
    for key in keys:
        diffs = _tree_differences(old.get(key), new.get(key))
        if diffs:
            res.differences.append(f"variants: {key}: {len(diffs)} differ ({_first_three(diffs)})")


def _check_invalid(run: dict[str, Any], bp: dict[str, Any], op: dict[str, Any], basket: Optional[dict[str, Any]],
                   res: VerifyResult) -> None:
    """A combination the sweep refused (its parameters did not validate against the base
    blueprint): it must still be refused."""
    res.runs += 1
    params = run.get("params") or {}
    try:
        if basket is not None:
            from ..services.basket_specs import BasketPlanner
            from ..services.portfolio import load_basket
            BasketPlanner(bp, load_basket(op)).specs(params)
        else:
            ConfigTranslator().translate(bp, op).with_param_overrides(params)
    except ConfigError:
        return
    except Exception as exc:  # noqa: BLE001
        res.differences.append(f"run {run['name']}: cannot be resolved any more: {type(exc).__name__}: {exc}")
        return
    res.differences.append(f"run {run['name']}: its parameters {params} were refused in the report and now "
                           f"validate")


def verify(folder: str | Path) -> VerifyResult:
    """Re-execute the runs of a report folder and compare them with its manifest.

    >>> verify("no/such/report")
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: no/such/report: no manifest.json here; expected a report folder made by metaflow-nb report
    """
    man = read_manifest(folder)
    path = Path(folder)
    res = VerifyResult(path.parent if path.is_file() else path)
    content = man["content"]
    where = str(path if path.is_file() else path / "manifest.json")
    check_plugins(content, where)
    check_config(content, where)
    if content_sha256(content) != man.get("content_sha256"):
        res.differences.append("manifest: content_sha256 does not match its content (the manifest was edited)")
    _check_data(content, res)
    _check_files(man, res)
    svc = OperationService()
    results = content.get("results", {})
    again = {}
    for run in content.get("runs", []):
        hit = _check_run(run, results.get(run["name"], {}), svc, res)
        if hit is not None:
            again[run["name"]] = _kept(content, run, hit)
    _check_selection(content, again, res)
    _check_basket_selection(content, again, res)
    _check_walk_forward(content, again, res)
    _check_variants(content, again, res)
    made = content.get("engine_revision", 1)   # manifests before it: the first revision
    if res.differences:
        other = _other_packages(content.get("packages"))
        if other:   # a reason for the rest, as the engine revision below (hunt118 F7)
            res.differences.insert(0, f"manifest: made with other package versions ({other}), whose numbers may "
                                      f"differ for that reason alone")
    if res.differences and made != ENGINE_REVISION:
        # first: the line shows six differences, and this one explains the others (hunt88 F2)
        res.differences.insert(0, f"manifest: made under revision {made} of the engine's rules; this version has "
                                  f"revision {ENGINE_REVISION}, whose numbers may differ for that reason alone "
                                  "(metaflow_nb.engine.codes.ENGINE_REVISION)")
    pages = content.get("pages") or []
    failed = [pg.get("name", "?") for pg in pages if pg.get("status", "ok") != "ok"]
    if failed:   # verified as written, failures included: the line says the report is partial
        res.notes.append(f"{len(failed)} of {counted(len(pages), 'page')} failed when written: {', '.join(failed)}")
    if not content.get("runs") and not content.get("data"):   # "ok" would say it holds when nothing was checked
        res.differences.append("manifest: records no run and no data file (e.g. no walk-forward window had an "
                               "eligible combination): nothing to verify")
    return res
