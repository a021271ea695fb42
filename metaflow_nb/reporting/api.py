"""``mf.report(config)``: run a config's workflow, execute its report notebooks with
papermill (one process each), export offline HTML, write ``index.html`` and ``manifest.json``.
"""
from __future__ import annotations

import glob
import html
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import ConfigError
from ..paths import user_path
from ..services.files import write_csv
from .execute import KERNEL, NotebookJob, NotebookOutcome, default_workers, run_notebooks
from .index import write_index
from .manifest import MANIFEST, RESULTS_CSV, build_manifest, read_manifest, write_manifest, written_files
from .plan import build_plan


@dataclass
class Page:
    """One executed notebook of a report and its HTML page."""

    name: str                  # file stem
    title: str
    kind: str                  # variant | optimization | best_run | walk_forward
    run: Optional[str]         # the run it shows (variant name ...), if one
    ok: bool
    error: str
    notebook: Path
    html: Optional[Path]
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The page as JSON-ready values (paths as text, an empty error as None).

        >>> p = Page("atr", "Exits: atr", "variant", "atr", True, "", Path("r/atr.ipynb"), Path("r/atr.html"))
        >>> p.to_dict()["html"], p.to_dict()["error"]
        ('r/atr.html', None)
        """
        return {"name": self.name, "title": self.title, "kind": self.kind, "run": self.run, "ok": self.ok,
                "error": self.error or None, "notebook": str(self.notebook),
                "html": str(self.html) if self.html else None}


@dataclass
class ReportResult:
    """A written report: ``folder``, ``index`` (Path), ``manifest`` (dict), ``pages`` and
    ``failed`` (the pages whose notebook raised, with the error)."""

    folder: Path
    index: Path
    manifest: dict[str, Any]
    pages: list[Page]
    archive: Optional[Path] = None   # <folder>.zip with archive=True: the folder as one file to mail

    @property
    def failed(self) -> list[Page]:
        """The pages whose notebook raised (each with its ``error``)."""
        return [p for p in self.pages if not p.ok]

    @property
    def manifest_path(self) -> Path:
        """Where the report's ``manifest.json`` is."""
        return self.folder / MANIFEST

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values: paths as text, the content digest, the failed
        pages with their errors and the timings (what ``report --json`` prints).

        >>> ok = Page("a", "A", "variant", "a", True, "", Path("r/a.ipynb"), Path("r/a.html"))
        >>> bad = Page("b", "B", "variant", "b", False, "ValueError: x", Path("r/b.ipynb"), None)
        >>> rep = ReportResult(Path("r"), Path("r/index.html"), {"content_sha256": "ab12"}, [ok, bad])
        >>> rep.to_dict()["pages"], rep.to_dict()["failed"][0]["error"]
        (['r/a.html', 'r/b.ipynb'], 'ValueError: x')
        """
        return {"folder": str(self.folder), "index": str(self.index), "manifest": str(self.manifest_path),
                "content_sha256": self.manifest["content_sha256"],
                "pages": [str(p.html or p.notebook) for p in self.pages],
                "failed": [{"name": p.name, "run": p.run, "error": p.error, "notebook": str(p.notebook)}
                           for p in self.failed],
                **({"archive": str(self.archive)} if self.archive else {}),
                "timings": self.manifest.get("timings", {})}

    def __repr__(self) -> str:
        bad = f", {len(self.failed)} failed" if self.failed else ""
        return f"ReportResult({str(self.index)!r}: {len(self.pages)} pages{bad})"

    def _repr_html_(self) -> str:
        try:
            href = os.path.relpath(self.index, Path.cwd())
        except ValueError:  # another drive on Windows
            href = self.index.as_uri()
        failed = "".join(f"<li style='color:#b00020'>{html.escape(p.run or p.name)} failed: {html.escape(p.error)}</li>"
                         for p in self.failed)
        return (f"<div class='mf-result'><b>Report</b>: <a href='{html.escape(href, quote=True)}' target='_blank'>"
                f"{html.escape(str(self.index))}</a> &middot; {len(self.pages)} pages"
                + (f"<ul>{failed}</ul>" if failed else "") + "</div>")


def is_meta_config(config: str | Path) -> bool:
    """True when ``config`` holds a variant, optimization or walk-forward config (one of
    their top-level keys); False for anything else (a strategy blueprint). A missing or
    unreadable file raises :class:`~metaflow_nb.errors.ConfigError`.

    >>> is_meta_config("config/variants/exit_strategy_test.yaml"), is_meta_config("config/runs/sma_cross.yaml")
    (True, False)
    """
    from ..config.loading import read_yaml
    from .plan import KINDS
    path = user_path(config)
    # read_yaml names a missing file, a folder or a pipe as such
    doc = read_yaml(path)
    return isinstance(doc, dict) and any(k in KINDS for k in doc)


def report_run(strategy: str | Path, operation: Optional[str | Path] = None, data: Optional[str] = None,
               out: Optional[str | Path] = None, *, log: bool = False) -> tuple[Path, Any]:
    """Run one strategy (on ``operation``, ``data`` replacing its data) and write its tear
    sheet page and trades CSV into ``out`` (default ``reports/``); returns ``(page, result)``.

    >>> import tempfile
    >>> page, res = report_run("config/runs/sma_cross.yaml", "config/operations/sp500_daily.yaml",
    ...                        out=tempfile.mkdtemp())
    >>> page.name == f"sma_cross-{res.run_id[:8]}.html"
    True
    """
    from ..config.portfolio import is_portfolio_operation
    from ..config.translator import ConfigTranslator
    from ..services.operation import OperationService
    folder = Path(out) if out is not None else Path.cwd() / "reports"
    if operation is not None and is_portfolio_operation(str(operation)):
        # a basket: its page (services/portfolio_page), not a single run's tear sheet
        if data is not None:
            raise ConfigError(f"{operation}: --data replaces one run's data; a basket operation names each "
                              f"instrument's data itself (instruments: or universe:)")
        from ..services.portfolio import run_portfolio
        bres = run_portfolio(str(strategy), str(operation))
        return bres.report(folder), bres
    specs = ConfigTranslator().translate(str(strategy), None if operation is None else str(operation), data)
    res = OperationService().run(specs)
    return res.report(folder, log=log), res


def _stage(folder: Path) -> Path:
    """A hidden folder beside ``folder`` where the new report is made: the previous one
    stays whole until the new one is done (an interrupted or failing run keeps it)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: is a file; expected a report folder")
    _remove_stale(folder)
    # named by this process: a report killed before it finished leaves it for the next to remove
    return Path(tempfile.mkdtemp(prefix=f".{folder.name}.{os.getpid()}-", suffix=".partial", dir=folder.parent))


def _remove_stale(folder: Path) -> None:
    """Remove what reports into ``folder`` that were killed before they finished left
    beside it (hunt87 F6: hidden ``.partial`` folders piled up): their staging folders and
    partial archives, named by the process that made them, once that process is gone
    (another report into the same folder may still be writing its own)."""
    from ..services.parallel import process_alive

    pattern = re.compile(rf"\.{re.escape(folder.name)}\.(\d+)-[^/]*\.(?:partial|zip-partial)")
    for p in folder.parent.glob(f".{glob.escape(folder.name)}.*"):
        m = pattern.fullmatch(p.name)
        if m and p.is_dir() and not p.is_symlink() and not process_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def _made_by_report(folder: Path) -> set[str]:
    """The files the report in ``folder`` wrote, as its manifest lists them (nothing
    without a readable manifest: only same-named files are then replaced)."""
    try:
        pages = read_manifest(folder)["content"]["pages"]
        names = {MANIFEST, "index.html", RESULTS_CSV}
        for p in pages:
            names.update({f"{p['name']}.ipynb", f"{p['name']}.html", f"{p['name']}_trades.csv"})
        return {n for n in names if Path(n).name == n}   # names only (read_manifest checked they are text)
    except Exception:  # noqa: BLE001 - no manifest, or not one of ours: touch nothing else
        return set()


def _publish(stage: Path, folder: Path) -> None:
    """Move the finished report from ``stage`` into ``folder``: the previous report's
    files are replaced or removed, anything else in the folder is left as it was; the
    manifest comes last, so a folder with a new manifest holds the whole new report."""
    folder.mkdir(parents=True, exist_ok=True)
    old = _made_by_report(folder)
    new = sorted(f.name for f in stage.iterdir() if f.is_file())
    for name in sorted(new, key=lambda n: (n == MANIFEST, n == "index.html", n)):
        os.replace(stage / name, folder / name)
    for name in old.difference(new):
        (folder / name).unlink(missing_ok=True)


def archive_folder(folder: Path) -> Path:
    """``folder`` as ``<folder>.zip`` beside it, written under a temporary name and renamed
    into place: a full disk leaves the previous zip (or none), never a broken one under
    the name of "the file to send" (hunt87 F3); an error names the zip.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "rep").mkdir(), (root / "rep" / "index.html").write_text("<p>hi</p>")
    >>> archive_folder(root / "rep").name, sorted(p.name for p in root.iterdir())
    ('rep.zip', ['rep', 'rep.zip'])
    """
    final = folder.with_name(f"{folder.name}.zip")
    if final.is_symlink():   # written through, the link stays (as every output file, hunt92 F3)
        final = Path(os.path.realpath(final))
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{os.getpid()}-", suffix=".zip-partial", dir=final.parent))
    try:
        made = tmp / f"{folder.name}.zip"
        _zip_sorted(folder, made)
        os.replace(made, final)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(final)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


#: a zip entry's time: fixed, so one report's files make the same bytes whenever they are
#: zipped (hunt118 F6: two archives of one report differed by their files' times and order)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _zip_sorted(folder: Path, path: Path) -> None:
    """``folder`` (its files) into the zip ``path`` under ``<folder name>/``, in name order."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        top = zipfile.ZipInfo(f"{folder.name}/", _ZIP_TIME)
        top.external_attr = 0o40755 << 16
        z.writestr(top, b"")
        for p in sorted(f for f in folder.iterdir() if f.is_file()):
            info = zipfile.ZipInfo(f"{folder.name}/{p.name}", _ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, p.read_bytes())


def report(config: str | Path, out: Optional[str | Path] = None, workers: Optional[int] = None, *,
           timeout: float = 600.0, kernel: str = KERNEL, backend: str = "sequential",
           cwd: Optional[str | Path] = None, progress: bool | Callable[[str], None] = False,
           archive: bool = False) -> ReportResult:
    """Report a variant, optimization or walk-forward config (over one instrument or a
    basket: then each run is a portfolio run on a ``portfolio_report`` page).

    Writes ``<out>/<config-name>-<hash8>/`` (``out`` defaults to ``reports/`` under the
    working directory): per page ``<name>.ipynb`` (executed) and ``<name>.html``, then
    ``manifest.json`` and ``index.html``. ``workers`` notebooks run at once (default: one
    per CPU), each in its own process with kernel ``kernel`` and a ``timeout`` in
    seconds; ``cwd`` is where they run (default: the working directory). A notebook that
    fails is kept, marked failed in the index, and does not stop the others. ``archive``:
    also write the finished folder as one ``<folder>.zip`` beside it (what to mail: the
    index stands alone, its links to the pages and the manifest need the folder).

    ``config`` must be a path: the manifest names the file so that ``--verify`` can rerun
    it (a dict is refused before anything runs):

    >>> report({"variant_config": {}})
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: report: config must be the path of a variant, optimization or walk-forward YAML file (the report records it so --verify can rerun it), not a dict; write it to a file first (yaml.safe_dump)
    """
    t0 = time.perf_counter()
    say: Callable[[str], None] = (progress if callable(progress) else
                                  (lambda s: print(s, file=sys.stderr, flush=True)) if progress else (lambda s: None))
    run_dir = Path(cwd).resolve() if cwd is not None else Path.cwd()
    plan = build_plan(config, backend=backend)
    t1 = time.perf_counter()
    folder = user_path(out if out is not None else run_dir / "reports").resolve() / plan.folder_name
    stage = _stage(folder)
    try:
        for p in plan.pages:   # the trades CSVs the pages link to (the plan ran these runs already)
            if p.trades is not None and p.parameters.get("trades_csv"):
                write_csv(p.trades, stage / p.parameters["trades_csv"], index=False)
        if plan.results_table is not None:   # every run; the index and the page show the top ones
            write_csv(plan.results_table.drop(columns=["duration_s"], errors="ignore"), stage / RESULTS_CSV, index=False)
        jobs = [NotebookJob(p.stem, p.template, p.parameters, str(stage), str(run_dir), p.title, float(timeout),
                            kernel) for p in plan.pages]
        n = workers or default_workers(len(jobs))
        say(f"report {plan.name}: {len(plan.runs)} runs, {len(jobs)} notebooks on {n} worker(s) -> {folder}")

        def done(o: NotebookOutcome) -> None:
            say(f"  {o.name}: {'ok' if o.ok else 'FAILED ' + o.error} ({o.timings.get('wall_s', 0):.1f} s)")

        outcomes = run_notebooks(jobs, n, on_done=done)
        t2 = time.perf_counter()
        # the pages' files as they will be once the report is moved into its folder
        pages = [Page(p.stem, p.title, p.kind, p.run, o.ok, o.error, folder / f"{p.stem}.ipynb",
                      folder / f"{p.stem}.html" if o.html else None, o.timings) for p, o in zip(plan.pages, outcomes)]
        timings: dict[str, Any] = {"workflow_s": plan.timings.get("workflow_s", t1 - t0), "plan_s": t1 - t0,
                                   "notebooks_wall_s": t2 - t1, "workers": n,
                                   "notebooks": {p.name: p.timings for p in pages}}
        manifest = build_manifest(plan, pages, timings, folder)
        t3 = time.perf_counter()
        write_index(plan, pages, manifest, stage)
        timings.update({"index_s": time.perf_counter() - t3, "total_s": time.perf_counter() - t0})
        manifest["timings"] = timings
        manifest["files"] = written_files(stage)   # what --verify checks the pages still are
        write_manifest(manifest, stage)
        _publish(stage, folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    index = folder / "index.html"
    say(f"index: {index}")
    packed = None
    if archive:
        packed = archive_folder(folder)
        say(f"archive: {packed}")
    return ReportResult(folder, index, manifest, pages, packed)
