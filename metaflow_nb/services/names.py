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
    import stat

    try:
        # one look: another sweep checking the same new folder may remove it meanwhile
        is_file = not stat.S_ISDIR(p.stat().st_mode)
    except OSError:
        is_file = False
    if is_file:
        return f"{p} is a file; expected a folder (or a path to create one)"
    from ..data.loader import link_problem   # pandas with it: not at the command line's start-up

    broken = link_problem(p)   # making a folder there said "File exists"
    if broken:
        return f"{broken}; expected a folder (or a path to create one)"
    return _unwritable(Path(value))


def _unwritable(folder: Path, tries: int = 30) -> Optional[str]:
    """Why nothing can be written into ``folder``, found by trying: the folders it needs
    are made and removed again, or a file is made in it and removed (permission bits do
    not say it for root, or for /proc and read-only mounts). Sweeps started together into
    one new folder check it together: a folder another made is no problem, and one
    another removed while this one used it is tried again (hunt79 F1)."""
    import errno
    import os
    import random
    import stat
    import tempfile
    import time

    for attempt in range(tries):
        made: list[Path] = []
        try:
            missing = []
            p = folder
            while not p.exists():
                missing.append(p)
                p = p.parent
            for m in reversed(missing):
                try:
                    m.mkdir()
                except FileExistsError:
                    # one look (a FileNotFoundError: made and removed by another caller
                    # meanwhile, tried again)
                    if not stat.S_ISDIR(m.stat().st_mode):
                        raise
                    continue   # another caller made it: theirs to remove
                made.append(m)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            if exc.errno == errno.ENOENT and attempt + 1 < tries:
                # a parent removed by another caller's clean-up: again, out of step with it
                time.sleep(random.random() * 0.002 * (attempt + 1))
                continue
            why = exc.strerror or str(exc)
            if exc.errno == errno.ENOENT:   # a folder the file system will not make (/proc)
                why = "the file system makes no folder there"
            return f"{folder} cannot be made or written into ({why}); expected a folder to write into"
        finally:
            for m in reversed(made):
                try:
                    os.rmdir(m)
                except OSError:
                    pass
        return None
    return None
