"""``report --verify`` of a manifest of the wrong shape, or one recording less than a report
writes (hunt27 F1, F2, F5, F8).

A wrong-shaped manifest is bad input: exit 2 and one line naming ``manifest.json`` and the
deepest key at fault, never a traceback. A page the manifest lists (inside the content hash)
must have its sha256 under ``files``, and a run recorded as ok must record every metric.
The report is the shared variant report of ``test_reports`` (two runs on EURUSD).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from test_reports import edited_copy, generated


def _copy(folder: Path, tmp_path: Path, edit: Callable[[dict], Any]) -> Path:
    """A copy of a report folder whose manifest ``edit(manifest)`` changed, its content hash
    left as it was (``files`` is outside it)."""
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    man = json.loads((copy / "manifest.json").read_text())
    edit(man)
    (copy / "manifest.json").write_text(json.dumps(man))
    return copy


def _refused(folder: Path, capsys) -> str:
    """``report --verify folder`` exits 2 with one line on stderr; that line."""
    from metaflow_nb.cli import main
    assert main(["report", "--verify", str(folder)]) == 2
    out = capsys.readouterr()
    err = out.err.strip()
    assert "\n" not in err and "Traceback" not in err and err, out
    return err


def _set(*keys: str, value: Any) -> Callable[[dict], None]:
    def edit(man: dict) -> None:
        node = man
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return edit


# ------------------------------------------------------------------ F1, F8: shape errors
@pytest.mark.parametrize("edit, key, expected", [
    (_set("content", "config", value={"variant_config": "x"}), "content.config.variant_config",
     "expected dict (got str 'x')"),
    (_set("content", "config", value=["x"]), "content.config", "expected dict or null (got list ['x'])"),
    (_set("files", value=["index.html"]), "files", "expected dict or null (got list ['index.html'])"),
    (_set("files", "index.html", value=5), "files['index.html']", "expected str (got int 5)"),
    (_set("content", "results", "atr_based", "metrics", value=[1]), "content.results['atr_based'].metrics",
     "expected dict or null (got list [1])"),
], ids=["config-root", "config", "files", "files-entry", "results-metrics"])
def test_a_manifest_of_the_wrong_shape_is_bad_input(tmp_path, capsys, edit, key, expected):
    g = generated("variant")
    copy = _copy(g.folder, tmp_path, edit)
    err = _refused(copy, capsys)
    assert f"{copy / 'manifest.json'}: {key}: {expected}" in err, err


@pytest.mark.parametrize("content, key, expected", [
    ({"kind": "variant_config", "config": {"variant_config": 3}}, "content.config.variant_config",
     "expected dict (got int 3)"),
    ({"kind": "optimization_config", "config": {"optimization_config": {"optimization_target": [1]}},
      "runs": [{"name": "a"}]},
     "content.config.optimization_config.optimization_target", "Input should be a valid dictionary"),
    ({"kind": "optimization_config", "config": {"optimization_config": {"optimization_target": {"goal": "up"}}},
      "runs": [{"name": "a"}]},
     "content.config.optimization_config.optimization_target.goal", "Input should be 'maximize'"),
    ({"kind": "walk_forward_config", "config": {"walk_forward_config": {"windows": [1]}}, "runs": [{"name": "a"}]},
     "content.config.walk_forward_config", "windows"),
    ({"kind": "variant_config", "results": {"a": {"status": "ok", "metrics": [1]}}}, "content.results['a'].metrics",
     "expected dict or null (got list [1])"),
    ({"kind": "variant_config", "results": {"a": [1]}}, "content.results['a']", "expected dict (got list [1])"),
    # hunt49 F11: an unknown kind (hash recomputed) verified as ok
    ({"kind": "bogus", "runs": []}, "content.kind", "expected one of optimization_config, variant_config"),
], ids=["config-root", "target", "target-goal", "walk-forward", "results-metrics", "results", "kind"])
def test_a_hand_made_manifest_of_the_wrong_shape_is_bad_input(tmp_path, capsys, content, key, expected):
    """The config keys verify reads are checked before anything runs (a synthetic manifest)."""
    from metaflow_nb.reporting.manifest import content_sha256
    (tmp_path / "manifest.json").write_text(json.dumps({"content": content, "content_sha256": content_sha256(content)}))
    err = _refused(tmp_path, capsys)
    assert err.startswith(f"metaflow-nb: error: {tmp_path / 'manifest.json'}: {key}") or \
        f"{tmp_path / 'manifest.json'}: {key}" in err, err
    assert expected in err, err


# ------------------------------------------------------------------ F2: pages without a files entry
def test_a_page_the_manifest_lists_must_have_its_files_entry(tmp_path):
    """``content.pages`` (inside the content hash) lists each page's .html and .ipynb; an
    edited page whose ``files`` entry (outside the hash) was removed is a difference."""
    from metaflow_nb.reporting.verify import verify
    g = generated("variant")

    def drop(man: dict) -> None:
        for name in ("atr_based.html", "liquidity_targets.ipynb", "index.html"):
            del man["files"][name]

    copy = _copy(g.folder, tmp_path, drop)
    page = copy / "atr_based.html"
    text = page.read_text()
    assert "Sharpe ratio" in text
    page.write_text(text.replace("Sharpe ratio", "Sharpe ratio!", 1))   # the mailed page, edited
    (copy / "liquidity_targets.ipynb").unlink()   # a notebook removed with its entry
    res = verify(copy)
    assert not res.ok
    missing = sorted(d for d in res.differences if "not recorded in the manifest's files" in d)
    assert [d.split(":")[0] for d in missing] == ["file atr_based.html", "file index.html",
                                                  "file liquidity_targets.ipynb"], res.differences
    assert all(d.startswith("file ") for d in res.differences), res.differences


@pytest.mark.parametrize("edit", [lambda man: man.pop("files"), _set("files", value={})], ids=["absent", "empty"])
def test_a_manifest_without_its_files_map_fails(tmp_path, edit):
    """The pages beside the manifest cannot be checked: each is named (a manifest alone,
    its pages not beside it, is test_basket_reports' nothing-to-verify case)."""
    from metaflow_nb.reporting.verify import verify
    g = generated("variant")
    copy = _copy(g.folder, tmp_path, edit)
    res = verify(copy)
    named = sorted(d.split(":")[0][len("file "):] for d in res.differences
                   if "not recorded in the manifest's files" in d)
    assert named == ["atr_based.html", "atr_based.ipynb", "atr_based_trades.csv", "index.html",
                     "liquidity_targets.html", "liquidity_targets.ipynb", "liquidity_targets_trades.csv"], \
        res.differences   # the trades CSVs too: the content names them (hunt118 F3)


def test_an_intact_files_map_still_catches_an_edited_page(tmp_path):
    """What the README says of edited files holds while ``files`` is as written."""
    from metaflow_nb.reporting.verify import verify
    g = generated("variant")
    copy = _copy(g.folder, tmp_path, lambda man: None)
    assert verify(copy).ok
    page = copy / "atr_based.html"
    page.write_text(page.read_text().replace("Sharpe ratio", "Sharpe ratio!", 1))
    res = verify(copy)
    assert [d.split(" (")[0] for d in res.differences] == ["file atr_based.html: changed since the report wrote it"]


# ------------------------------------------------------------------ F5: every metric of an ok run
def test_a_run_recorded_ok_must_record_every_metric(tmp_path):
    from metaflow_nb.engine.metrics import METRIC_NAMES
    from metaflow_nb.reporting.verify import verify
    g = generated("variant")
    results = g.manifest["content"]["results"]
    assert all(r["status"] == "ok" and sorted(r["metrics"]) == sorted(METRIC_NAMES) for r in results.values())

    def thin(man: dict) -> None:
        res = man["content"]["results"]
        res["atr_based"]["metrics"] = {}
        del res["liquidity_targets"]["metrics"]["sharpe_ratio"]

    copy, _ = edited_copy(g.folder, tmp_path, thin)
    res = verify(copy)
    assert not res.ok
    assert f"run atr_based: {len(METRIC_NAMES)} metric(s) not recorded ({', '.join(METRIC_NAMES[:3])}, ...)" \
        in res.differences, res.differences
    assert "run liquidity_targets: 1 metric(s) not recorded (sharpe_ratio)" in res.differences, res.differences
    assert res.summary().startswith("verify: FAILED: 2 difference(s)"), res.summary()
