"""notebooks/explore.ipynb executes top to bottom (as nbconvert --execute would) without errors."""
from __future__ import annotations

import time

import nbformat
import pytest

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def test_explore_notebook_is_stored_without_outputs(root):
    nb = nbformat.read(root / "notebooks" / "explore.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    # every step is explained
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 10


@pytest.mark.slow
def test_explore_notebook_executes(root, artifacts, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # the kernel inherits this: whatever scratch the notebook makes must be gone when it ends
    scratch = tmp_path / "kernel-tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    path = root / "notebooks" / "explore.ipynb"
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - t0
    (artifacts / "notebooks").mkdir(exist_ok=True)
    nbformat.write(nb, artifacts / "notebooks" / "explore.executed.ipynb")

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, [f"{o.ename}: {o.evalue}" for o in errors]
    stderr = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not any("Traceback" in s or "Error" in s for s in stderr), stderr
    widgets = [o for o in outputs if WIDGET_MIME in o.get("data", {})]
    assert len(widgets) >= 3  # ICT explorer, SMA explorer, variant view
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 6  # equity x2, trades, heatmap, rejections, walk-forward
    assert nb.metadata.get("widgets"), "widget state is stored with the executed notebook"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "must be smaller than slow" in text  # the invalid-combination demo
    rich = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "engine batch" in rich  # the tour's text says engine="batch" runs the sweep
    assert "bundled baskets: ['sp500_20_close', 'us_stocks']" in text   # hunt47 F6
    assert elapsed < 90, f"the notebook took {elapsed:.0f} s"
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("mf-")], "the notebook left files in the temp dir"
