"""What an installed metaflow-nb carries: a wheel built from this tree holds the bundled
samples with their licences and the report templates, so reports work outside a source
checkout (the report planner finds its templates inside the package)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from metaflow_nb.reporting.plan import templates_dir

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ("backtest_report", "optimization_report", "variant_report", "walk_forward_report")


def test_report_templates_live_in_the_package():
    assert templates_dir().is_dir()
    assert templates_dir().parent == ROOT / "metaflow_nb" / "reporting"
    for name in TEMPLATES:
        assert (templates_dir() / f"{name}.ipynb").is_file(), name


@pytest.mark.slow
def test_wheel_ships_templates_and_samples(tmp_path):
    # built from a copy: an in-tree build leaves build/ behind, whose stale files a later
    # build may package
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "metaflow_nb", src / "metaflow_nb", ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                          "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # setuptools stops building a `license = {text = ...}` table after 2027-02-18: an SPDX
    # expression and the licence file instead
    assert "project.license` as a TOML table is deprecated" not in out.stdout + out.stderr
    wheel = next(tmp_path.glob("metaflow_nb-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: MIT" in zipfile.ZipFile(wheel).read(meta).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)[-10:]
    for name in TEMPLATES:
        assert f"metaflow_nb/reporting/templates/{name}.ipynb" in names, name
    samples = {n for n in names if n.startswith("metaflow_nb/data/samples/")}
    assert any(n.endswith(".csv") or n.endswith(".csv.gz") or n.endswith(".parquet") for n in samples), samples
    assert any("LICENSE" in n.upper() or "LICENCE" in n.upper() for n in samples), samples
    # the baskets' sub-folders, each file with its licence (issue #17)
    for name in ("us_stocks/AAPL.csv.gz", "us_stocks/LICENSE.md", "us_stocks/NASDAQ.LICENSE.md",
                 "sp500_20_close/XOM.csv.gz", "sp500_20_close/LICENSE"):
        assert f"metaflow_nb/data/samples/{name}" in names, name


def test_no_tracked_file_has_a_blank_or_padded_name():
    """hunt65 F3: a trades table named ' ' (a --trades-csv ' ' run) was committed, and every
    clone got it."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    bad = [n for n in names if n and any(part != part.strip() or not part.strip()
                                         for part in n.decode("utf-8", "replace").split("/"))]
    assert bad == []
