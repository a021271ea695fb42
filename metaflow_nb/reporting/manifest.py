"""``manifest.json``: what a report is of, kept apart from how long it took.

``content`` holds everything that defines the report's numbers: the config document and,
per run, the resolved blueprint and operation, the BuildSpecs hash, status and metrics;
the data files with their sha256; package versions; the seed. ``content_sha256`` is the
sha256 of its canonical JSON with each data file's location read as the file's name and
sha256, so generating the same report twice gives the same digest, in any folder or checkout.
``timings`` and ``source`` (paths of this machine, creation time) sit outside the hash,
as does ``files``: the sha256 of each file the report wrote beside the manifest (pages,
notebooks, CSVs, index), which ``--verify`` checks are still as written (an executed
notebook carries its execution times, so they are no part of the content's digest).
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any, Iterable, Optional

from ..config.buildspecs import canonical_json
from ..config.meta import META_ROOTS
from ..data import file_sha256, list_samples, sample_path
from ..engine.codes import ENGINE_REVISION
from ..errors import ConfigError
from ..services.files import write_text
from ..services.formatting import json_safe

MANIFEST = "manifest.json"
#: an optimization report's table of every run, beside its pages
RESULTS_CSV = "all_results.csv"
#: 2: the content's digest reads a data file's location as its name and sha256 (1: as written)
MANIFEST_VERSION = 2
PACKAGES = ("metaflow-nb", "numpy", "pandas", "numba", "papermill", "nbconvert")


def package_versions() -> dict[str, Optional[str]]:
    """The installed version of each package that makes a report's numbers and pages
    (None when not installed), and Python's.

    >>> v = package_versions()
    >>> list(v)[:3], v["python"] == platform.python_version()
    (['metaflow-nb', 'numpy', 'pandas'], True)
    """
    out: dict[str, Optional[str]] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def data_file(source: str) -> Optional[Path]:
    """The file a data source reads: a bundled sample's file or the source path itself
    (None when there is no such file).

    >>> data_file("sp500_daily") == sample_path("sp500_daily"), data_file("no/such.csv")
    (True, None)
    """
    if source in list_samples():
        return sample_path(source)
    p = Path(source)
    return p if p.is_file() else None


def data_entries(sources: Iterable[str]) -> list[dict[str, Any]]:
    """The manifest's ``data`` list: each distinct source (sorted) with its file name,
    path and sha256 (None for a source without a file).

    >>> d = data_entries(["sp500_daily", "sp500_daily"])
    >>> len(d), d[0]["file"] == sample_path("sp500_daily").name, len(d[0]["sha256"])
    (1, True, 64)
    """
    out = []
    for src in sorted(set(sources)):
        f = data_file(src)
        out.append({"source": src, "file": f.name if f else None,
                    "path": str(f) if f else None, "sha256": file_sha256(f) if f else None})
    return out


def content_sha256(content: dict[str, Any]) -> str:
    """The sha256 of ``content``'s canonical JSON: the same for the same content,
    whatever the order of its keys. From manifest version 2 on, every place a data file
    listed under ``data`` sits (its ``path``, a ``source`` that is that path, wherever
    they appear) counts as the file's name and sha256: the same report made in another
    checkout, or in a copy of the project, has the same digest.

    >>> content_sha256({"a": 1, "b": [2]}) == content_sha256({"b": [2], "a": 1})
    True
    >>> here = {"manifest_version": 2, "data": [{"source": "/a/x.csv", "file": "x.csv", "path": "/a/x.csv",
    ...         "sha256": "f00"}], "runs": [{"operation": {"data": {"source": "/a/x.csv"}}}]}
    >>> there = json.loads(json.dumps(here).replace("/a/", "/b/"))
    >>> content_sha256(here) == content_sha256(there)
    True
    """
    if isinstance(content, dict) and content.get("manifest_version", 1) >= 2:
        content = _portable(content)
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def _portable(content: dict[str, Any]) -> Any:
    """``content`` with each location of a data file that ``data`` lists with its sha256
    replaced by that file's name and sha256 (what the digest reads)."""
    places: dict[str, str] = {}
    for d in content.get("data") or ():
        if isinstance(d, dict) and isinstance(d.get("path"), str) and d.get("sha256"):
            tag = f"<data file {d.get('file')} sha256 {d['sha256']}>"
            places[d["path"]] = tag
            if d.get("source") == d["path"]:
                places[d["source"]] = tag

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            return places.get(x, x)
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x
    return walk(content) if places else content


def build_manifest(plan: Any, pages: list[Any], timings: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The manifest of a report folder (see the module docstring).

    >>> from types import SimpleNamespace as NS
    >>> plan = NS(runs=[], root="variant_config", name="t", config_path=Path("t.yaml"), config_doc={},
    ...           hash8="0" * 8, summary={})
    >>> man = build_manifest(plan, [], {"total_s": 1.5}, Path("reports/t"))
    >>> list(man), man["content"]["kind"], man["timings"]
    (['content', 'content_sha256', 'timings', 'source'], 'variant_config', {'total_s': 1.5})
    """
    runs, results, sources = [], {}, []
    csvs = {pp.stem: pp.trades_csv for pp in getattr(plan, "pages", None) or []}
    for r in plan.runs:
        specs = r.recorded
        op = specs.operation
        basket = getattr(specs, "record", None)   # a portfolio run (services.basket_specs.BasketSpecs)
        sources.extend(specs.data_sources if basket else [op["data"]["source"]])
        finer = (op.get("data") or {}).get("intrabar")
        if finer and finer != "source":
            sources.append(finer)   # a finer file decides fills: hashed and checked as the data are
        own = r.specs is not None
        runs.append({"name": r.name, "page": r.page, "specs_hash": specs.hash if own else None,
                     "run_id": specs.run_id if own else None,
                     "status": r.status, "error": r.error or None, "description": r.description or None,
                     "params": r.params, "data_fingerprint": specs.data_fingerprint,
                     "blueprint": specs.blueprint, "operation": op,
                     # the base blueprint, whose params did not validate with "params" applied
                     **({} if own else {"invalid_params": True}),
                     **({"basket": basket()} if basket else {}),
                     # for the reader only: --verify never imports what a manifest names
                     **({"plugins": list(specs.plugins)} if specs.plugins else {})})
        results[r.name] = {"status": r.status, "metrics": r.metrics}
    seeds = sorted({r.recorded.seed for r in plan.runs})
    content = json_safe({
        "manifest_version": MANIFEST_VERSION,
        "kind": plan.root,
        "name": plan.name,
        "config_file": plan.config_path.name,
        "config": plan.config_doc,
        "config_hash8": plan.hash8,
        "runs": runs,
        "results": results,
        "summary": plan.summary,
        "data": data_entries(sources),
        "packages": package_versions(),
        # whose fill and exit rules made the numbers (a run id does not name them)
        "engine_revision": ENGINE_REVISION,
        "seed": seeds[0] if len(seeds) == 1 else seeds,
        "pages": [{"name": p.name, "kind": p.kind, "run": p.run, "status": "ok" if p.ok else "failed",
                   "error": p.error or None, "notebook": f"{p.name}.ipynb",
                   "html": f"{p.name}.html" if p.html else None, "trades_csv": csvs.get(p.name)} for p in pages],
    })
    # the CSVs written beside the pages are named inside the content, so --verify holds each
    # to its entry under files (hunt118 F3: one dropped from files went unchecked)
    if getattr(plan, "results_table", None) is not None:
        content["results_csv"] = RESULTS_CSV
    canonical_json(content)  # raises on NaN / non-JSON values rather than writing them
    return {
        "content": content,
        "content_sha256": content_sha256(content),
        "timings": json_safe(timings),
        "source": {"config_path": str(plan.config_path), "folder": str(folder),
                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }


def written_files(folder: Path) -> dict[str, str]:
    """The sha256 of each file a report wrote in ``folder`` beside its manifest, by name.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "index.html").write_text("<p>hi</p>")
    ...     _ = (Path(tmp) / MANIFEST).write_text("{}")
    ...     files = written_files(Path(tmp))
    >>> list(files), files["index.html"] == hashlib.sha256(b"<p>hi</p>").hexdigest()
    (['index.html'], True)
    """
    return {p.name: file_sha256(p) for p in sorted(Path(folder).iterdir()) if p.is_file() and p.name != MANIFEST}


def write_manifest(manifest: dict[str, Any], folder: Path) -> Path:
    """Write ``manifest`` as ``folder/manifest.json`` (indented JSON; NaN refused);
    returns its path.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_manifest({"content": {}}, Path(tmp)).name
    'manifest.json'
    """
    return write_text(Path(folder) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is no JSON number (a manifest writes null)")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a report folder (or the manifest file itself), checked to have a
    manifest's shape; a missing, unreadable or malformed one is a ConfigError.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_manifest({"content": {"kind": "variant_config", "runs": []}}, Path(tmp))
    ...     read_manifest(tmp)["content"]["kind"]
    'variant_config'
    """
    p = Path(folder)
    if p.is_dir():
        p = p / MANIFEST
    if not p.is_file():
        raise ConfigError(f"{p}: no manifest.json here; expected a report folder made by metaflow-nb report")
    try:
        # NaN and Infinity are no JSON, and no manifest holds them (written as null)
        doc = json.loads(p.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except ValueError as exc:   # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("content"), dict):
        raise ConfigError(f"{p}: not a report manifest (no content section)")
    _check_shape(doc["content"], p)
    _check_files_shape(doc.get("files"), p)
    return doc


_TEXT = (str, type(None))
_MAP = (dict, type(None))
#: what a manifest's content holds: list sections, each item's keys and their types (a
#: hand-edited or damaged manifest is bad input, not a difference and not a traceback)
_SHAPE: dict[str, dict[str, tuple]] = {
    "runs": {"name": (str,), "blueprint": _MAP, "operation": _MAP, "params": _MAP, "basket": _MAP,
             "plugins": (list, type(None)), "specs_hash": _TEXT, "run_id": _TEXT, "status": _TEXT,
             "data_fingerprint": _TEXT},
    "data": {"source": _TEXT, "file": _TEXT, "path": _TEXT, "sha256": _TEXT},
    "pages": {"name": (str,), "html": _TEXT, "notebook": _TEXT, "trades_csv": _TEXT},
}


def _check_shape(content: dict[str, Any], path: Path) -> None:
    """Refuse a manifest whose content has the wrong shape, naming the key (ConfigError).

    >>> _check_shape({"runs": [{"blueprint": {}}]}, Path("r/manifest.json"))
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: r/manifest.json: content.runs[0].name: expected str (got nothing)
    >>> _check_shape({"results": {"a": {"status": "ok", "metrics": [1]}}}, Path("r/manifest.json"))
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: r/manifest.json: content.results['a'].metrics: expected dict or null (got list [1])
    """
    def bad(key: str, want: tuple, got: Any) -> ConfigError:
        return _bad(path, f"content.{key}", want, got)

    for key, want in (("kind", _TEXT), ("summary", _MAP), ("config", _MAP), ("results", _MAP),
                      ("results_csv", _TEXT)):
        if not isinstance(content.get(key), want):
            raise bad(key, want, content.get(key))
    kind = content.get("kind")
    if kind is not None and kind not in META_ROOTS:   # an unknown kind verified nothing and said ok
        raise ConfigError(f"{path}: content.kind: expected one of {', '.join(META_ROOTS)} (got {kind!r:.60})")
    for root, body in (content.get("config") or {}).items():   # the config document: {root key: its body}
        if not isinstance(body, dict):
            raise bad(f"config.{root}", (dict,), body)
    for name, result in (content.get("results") or {}).items():
        if not isinstance(result, dict):
            raise bad(f"results[{name!r}]", (dict,), result)
        if not isinstance(result.get("metrics"), _MAP):   # the deepest key at fault
            raise bad(f"results[{name!r}].metrics", _MAP, result.get("metrics"))
    for section, fields in _SHAPE.items():
        items = content.get(section, [])
        if not isinstance(items, list):
            raise bad(section, (list,), items)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise bad(f"{section}[{i}]", (dict,), item)
            for key, want in fields.items():
                got = item.get(key, _MISSING if str in want and type(None) not in want else None)
                if not isinstance(got, want):
                    raise bad(f"{section}[{i}].{key}", want, got)


def _check_files_shape(files: Any, path: Path) -> None:
    """Refuse a manifest whose ``files`` is not a mapping of file name -> sha256 string
    (absent in manifests written before it), naming the key (ConfigError).

    >>> _check_files_shape({"index.html": "ab12"}, Path("r/manifest.json"))
    >>> _check_files_shape(["index.html"], Path("r/manifest.json"))
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: r/manifest.json: files: expected dict or null (got list ['index.html'])
    >>> _check_files_shape({"index.html": 5}, Path("r/manifest.json"))
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: r/manifest.json: files['index.html']: expected str (got int 5)
    >>> _check_files_shape({"../x.html": "ab12"}, Path("r/manifest.json"))
    Traceback (most recent call last):
    ...
    metaflow_nb.errors.ConfigError: r/manifest.json: files['../x.html']: expected a file of the report's own folder (a name relative to it, without ..)
    """
    if not isinstance(files, _MAP):
        raise _bad(path, "files", _MAP, files)
    for name, sha in (files or {}).items():
        if not isinstance(sha, str):
            raise _bad(path, f"files[{name!r}]", (str,), sha)
        inside = PurePath(name)
        # the report's own files only: a mailed manifest must not have verify read (and
        # say whether there is, and hash) a file elsewhere on this machine (hunt76 F2)
        if not name or inside.is_absolute() or ".." in inside.parts:
            raise ConfigError(f"{path}: files[{name!r}]: expected a file of the report's own folder (a name relative "
                              f"to it, without ..)")


def _bad(path: Path, key: str, want: tuple, got: Any) -> ConfigError:
    """``path: key: expected <types> (got <type> <value>)``, one line."""
    names = " or ".join("null" if t is type(None) else t.__name__ for t in want)
    shown = "nothing" if got is _MISSING else f"{type(got).__name__} {got!r}"[:80]
    return ConfigError(f"{path}: {key}: expected {names} (got {shown})")


_MISSING = object()
