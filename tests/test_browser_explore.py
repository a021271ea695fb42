"""Real-browser test: JupyterLab + Debian Chromium run explore.ipynb and move an explorer slider.

Starts JupyterLab on a free port (random token, 127.0.0.1 only) over a temporary copy of
the project's ``config/`` and ``notebooks/``, opens ``explore.ipynb`` in headless
Chromium (``/usr/bin/chromium``, never a downloaded browser), runs all cells from the
Run menu, focuses the first slider of the live explorer, presses the right arrow key and
checks that the metrics table the kernel sends back changes. The screenshot goes to
``test-output/browser/explore.png``.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, browser_missing

#: hard bounds, so a hung server or page fails the test instead of blocking the suite
SERVER_START_S = 90
RUN_ALL_S = 300
UPDATE_S = 60

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _requirements() -> str | None:
    why = browser_missing()
    if why:
        return why
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        return f"jupyter is not installed next to {sys.executable}"
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return "jupyterlab is not installed (pip install -e '.[dev]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except Exception:  # noqa: BLE001 - not up yet
        return 0, b""


@pytest.fixture()
def lab(tmp_path, root):
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    project = tmp_path / "project"
    shutil.copytree(root / "config", project / "config")
    (project / "notebooks").mkdir(parents=True)
    shutil.copy2(root / "notebooks" / "explore.ipynb", project / "notebooks" / "explore.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    # no "would you like news?" toast over the screenshot
    notif = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notif.parent.mkdir(parents=True)
    notif.write_text(json.dumps({"fetchNews": "false"}))
    env = {**os.environ,
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = open(tmp_path / "jupyterlab.log", "wb")
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1",
           f"--notebook-dir={project}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.news_url=None", "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers often run as root
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=project,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while _get(f"{base}/api/status?token={token}")[0] != 200:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n"
                            + (tmp_path / "jupyterlab.log").read_text(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s")
            time.sleep(0.5)
        yield {"base": base, "token": token, "project": project, "log": tmp_path / "jupyterlab.log"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def _prompts(page) -> list[str]:
    return page.evaluate("""() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell'))
        .map(c => (c.querySelector('.jp-InputPrompt') || {}).textContent || '')""")


def test_explorer_slider_updates_metrics_in_a_real_browser(lab, artifacts):
    from playwright.sync_api import sync_playwright

    shots = artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    url = f"{lab['base']}/lab/tree/notebooks/explore.ipynb?token={lab['token']}&reset"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=90_000)
            # the kernel has to be up before Run All, or the first cells queue behind its start
            deadline = time.monotonic() + 90
            while True:
                code, body = _get(f"{lab['base']}/api/sessions?token={lab['token']}")
                sessions = json.loads(body or b"[]") if code == 200 else []
                if sessions and sessions[0]["kernel"]["execution_state"] == "idle":
                    break
                assert time.monotonic() < deadline, f"no idle kernel: {sessions}"
                time.sleep(0.5)
            page.locator(".jp-Notebook").first.click()
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

            deadline = time.monotonic() + RUN_ALL_S
            while True:
                prompts = _prompts(page)
                if prompts and all(re.search(r"\[\d+\]", t) for t in prompts):
                    break
                if time.monotonic() > deadline:
                    page.screenshot(path=str(shots / "explore-timeout.png"))
                    pytest.fail(f"Run All did not finish within {RUN_ALL_S} s; prompts: {prompts}")
                time.sleep(1)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
            assert not tracebacks, tracebacks

            explorer = page.locator(".mf-explorer").first
            explorer.scroll_into_view_if_needed()
            metrics = explorer.locator(".mf-explorer-metrics")
            status = explorer.locator(".mf-explorer-status")
            page.wait_for_function(
                "el => el.innerText.includes('Total return')", arg=metrics.element_handle(), timeout=30_000)
            before = metrics.inner_text()
            before_status = status.inner_text()
            slider = explorer.locator(".widget-slider").first
            label = slider.locator(".widget-label").first.inner_text()
            readout = slider.locator(".widget-readout").first
            value_before = readout.inner_text()
            handle = slider.locator(".noUi-handle").first
            handle.focus()
            page.keyboard.press("ArrowRight")

            deadline = time.monotonic() + UPDATE_S
            while metrics.inner_text() == before:
                if time.monotonic() > deadline:
                    page.screenshot(path=str(shots / "explore-no-update.png"))
                    pytest.fail(f"the metrics did not change within {UPDATE_S} s after moving {label!r} "
                                f"({value_before} -> {readout.inner_text()}); status: {status.inner_text()!r}")
                time.sleep(0.2)
            after = metrics.inner_text()
            assert readout.inner_text() != value_before
            page.wait_for_function("([el, old]) => el.innerText !== old && /run \\d+: \\d+ ms/.test(el.innerText)",
                                   arg=[status.element_handle(), before_status], timeout=UPDATE_S * 1000)
            assert "Total return" in after and after != before
            explorer.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "explore.png"))
        finally:
            browser.close()
