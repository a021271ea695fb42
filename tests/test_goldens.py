"""Golden tests: the bundled configs' results, byte for byte.

Every case of ``tests/goldens/make_goldens.py`` (the single definition of what is pinned
and how it is serialized) is recomputed with the code under test and compared with the
stored file (gzip-ed files uncompressed). The sweeps run on both engines, batch and
general, against the same files. See tests/goldens/README.md for regenerating.
"""
from __future__ import annotations

import csv
import difflib
import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import pytest

GOLDENS = Path(__file__).resolve().parent / "goldens"
ROOT = GOLDENS.parents[1]


def _load_generator():
    spec = importlib.util.spec_from_file_location("_mf_make_goldens", GOLDENS / "make_goldens.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


gen = _load_generator()
CASES = gen.cases()


# ---------------------------------------------------------------- diff messages
def _csv_diff(old: str, new: str, blocks: int = 5, cells: int = 10) -> str:
    """Header changes, then the changed blocks of data rows (numbered from 0 as in a frame
    read back with read_csv), with the cells of the first changed row of each block."""
    a, b = list(csv.reader(io.StringIO(old))), list(csv.reader(io.StringIO(new)))
    out = []
    header = a[0] if a else []
    if a[:1] != b[:1]:
        hb = b[0] if b else []
        out.append(f"header differs:\n  golden: {header}\n  now:    {hb}\n"
                   f"  missing now: {[c for c in header if c not in hb]}, new: {[c for c in hb if c not in header]}")
    if len(a) != len(b):
        out.append(f"data rows: golden {len(a) - 1}, now {len(b) - 1}")
    ta, tb = [tuple(r) for r in a[1:]], [tuple(r) for r in b[1:]]
    ops = [op for op in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes() if op[0] != "equal"]
    for tag, i1, i2, j1, j2 in ops[:blocks]:
        if tag == "replace":
            out.append(f"golden rows {i1}..{i2 - 1} -> now rows {j1}..{j2 - 1} changed")
            ra, rb = ta[i1], tb[j1]
            diff = [f"{header[k] if k < len(header) else k}: {x!r} -> {y!r}"
                    for k, (x, y) in enumerate(zip(ra, rb)) if x != y]
            if len(ra) != len(rb):
                diff.append(f"{len(ra)} -> {len(rb)} cells")
            more = f" (+{len(diff) - cells} more)" if len(diff) > cells else ""
            out.append(f"  first: row {i1}: " + "; ".join(diff[:cells]) + more)
        elif tag == "delete":
            out.append(f"golden rows {i1}..{i2 - 1} missing now; first: {dict(zip(header, ta[i1]))}")
        else:
            out.append(f"now rows {j1}..{j2 - 1} are new; first: {dict(zip(header, tb[j1]))}")
    if len(ops) > blocks:
        out.append(f"... and {len(ops) - blocks} more changed blocks")
    return "\n".join(out)


def _json_diff(old: Any, new: Any, path: str = "$", out: list[str] | None = None, limit: int = 12) -> list[str]:
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(old, dict) and isinstance(new, dict):
        if list(old) != list(new) and set(old) == set(new):
            out.append(f"{path}: key order {list(old)} -> {list(new)}")
        for k in old:
            if k not in new:
                out.append(f"{path}.{k}: missing now (golden {old[k]!r})")
            else:
                _json_diff(old[k], new[k], f"{path}.{k}", out, limit)
        out.extend(f"{path}.{k}: new key ({new[k]!r})" for k in new if k not in old)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            out.append(f"{path}: length {len(old)} -> {len(new)}")
        for i, (x, y) in enumerate(zip(old, new)):
            _json_diff(x, y, f"{path}[{i}]", out, limit)
    elif old != new or type(old) is not type(new):
        out.append(f"{path}: {old!r} -> {new!r}")
    return out


def _explain(name: str, old: bytes, new: bytes) -> str:
    if name.endswith(".json"):
        diffs = _json_diff(json.loads(old), json.loads(new))
        body = "\n".join(diffs) if diffs else "same values, different bytes (formatting)"
    elif ".csv" in name:
        body = _csv_diff(old.decode("utf-8"), new.decode("utf-8")) or "same cells, different bytes"
    else:
        body = f"{len(old)} -> {len(new)} bytes"
    return body


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("case", list(CASES))
def test_golden(case: str, tmp_path: Path) -> None:
    made = CASES[case](ROOT)
    failures = []
    for name, data in sorted(made.items()):
        stored = GOLDENS / name
        fresh = tmp_path / name
        fresh.parent.mkdir(parents=True, exist_ok=True)
        fresh.write_bytes(data)
        if not stored.exists():
            failures.append(f"{name}: no golden file (new artefact? see tests/goldens/README.md)")
            continue
        old, new = gen.payload(name, stored.read_bytes()), gen.payload(name, data)
        if old != new:
            failures.append(f"{name} differs from the golden (recomputed: {fresh}):\n{_explain(name, old, new)}")
    assert not failures, f"{case}: results changed\n\n" + "\n\n".join(failures)



def test_the_goldens_numbers_are_recorded_under_this_engine_revision() -> None:
    """hunt88 F1: numbers moved under one ENGINE_REVISION, so results stores made before
    were reused. The goldens record the revision their numbers were made under; the
    generator refuses new numbers under the same revision."""
    from metaflow_nb.engine.codes import ENGINE_REVISION

    record = json.loads((GOLDENS / gen.REVISION_FILE).read_text())
    files = {f"runs/{p.name}": p.read_bytes() for p in (GOLDENS / "runs").iterdir()}
    assert record == {"engine_revision": ENGINE_REVISION, "numbers_sha256": gen.numbers_digest(files)}, (
        "the goldens were made under another ENGINE_REVISION: regenerate them (tests/goldens/README.md)")
    moved = {**files, "runs/sma_cross.trades.csv.gz": gen.gz(b"trade_id\n0\n")}
    with pytest.raises(SystemExit, match=f"numbers changed under ENGINE_REVISION {ENGINE_REVISION}: raise it"):
        gen.revision_record(moved, record)
    assert gen.revision_record(moved, {**record, "engine_revision": ENGINE_REVISION - 1})["engine_revision"] == \
        ENGINE_REVISION
    # run ids may change with the numbers kept (a spelling of the resolved config)
    doc = json.loads(gen.payload("runs/sma_cross.metrics.json", files["runs/sma_cross.metrics.json"]))
    renamed = {**files, "runs/sma_cross.metrics.json": gen.json_bytes({**doc, "run_id": "0" * 16})}
    assert gen.revision_record(renamed, record) == record
