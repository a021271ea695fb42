"""File-name-safe spellings of run, strategy and basket names.

A name comes from a config the user may have been mailed: it must never pick the folder a
file lands in (``../``), nest folders (``/``) or hold characters a file system refuses.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

_BAD = re.compile(r"[^A-Za-z0-9_-]+")
MAX_LEN = 80


def safe_stem(name: str, fallback: str = "run") -> str:
    """Keep ``[A-Za-z0-9_-]``, collapse every other run of characters to ``_``, no leading
    or trailing ``_``/``-`` (so no hidden files, no options, no ``..``), at most 80 characters.

    >>> safe_stem("../evil<script>"), safe_stem("..."), safe_stem("-rf /")
    ('evil_script', 'run', 'rf')
    """
    stem = _BAD.sub("_", str(name)).strip("_-")
    stem = stem[:MAX_LEN].rstrip("_-")
    return stem or fallback


def folder_problem(value: Any) -> Optional[str]:
    """Why ``value`` cannot be (or become) a folder to write into: it, or the nearest of
    its parents that exists, is a file; None when it can.

    >>> folder_problem("/dev/null/x"), folder_problem("reports/new/deeper")
    ('/dev/null is a file; expected a folder (or a path to create one)', None)
    """
    p = Path(value)
    while not (p.exists() or p.is_symlink()) and p.parent != p:
        p = p.parent
    if p.exists() and not p.is_dir():
        return f"{p} is a file; expected a folder (or a path to create one)"
    return None
