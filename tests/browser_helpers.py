"""What the real-browser tests share: Debian's Chromium (never a downloaded browser), the
flags it needs on this closed network, and why a test must skip."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

CHROMIUM = Path("/usr/bin/chromium")
# without the background-networking flags Chromium keeps dialling hosts this machine
# cannot reach; as root it needs --no-sandbox
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def browser_missing() -> Optional[str]:
    """Why no browser test can run here, or None when Chromium and Playwright are present."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (install Debian's chromium package: make browser)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None
