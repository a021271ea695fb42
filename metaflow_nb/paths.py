"""Paths as a user writes them, in configs, flags and arguments.

``pathlib.Path.expanduser`` raises RuntimeError for ``~name`` of a user this machine does
not know (hunt113 F1: a traceback and exit 1 where a missing file exits 2); the shell's
rule, which :func:`os.path.expanduser` follows, leaves such a path as written, and the
file is then not found like any other.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

__all__ = ["nul_problem", "user_path"]


def user_path(text: "str | os.PathLike[str]") -> Path:
    """``text`` as a Path, ``~`` and ``~user`` expanded as the shell does (an unknown
    user's ``~name`` stays as written).

    >>> user_path("~nosuchuser_mf/a.csv").as_posix()
    '~nosuchuser_mf/a.csv'
    >>> user_path("~/a.csv") == Path.home() / "a.csv"
    True
    """
    return Path(os.path.expanduser(os.fspath(text)))


def nul_problem(text: object) -> Optional[str]:
    """Why ``text`` cannot be a path (a NUL character: the system refuses it, and Python
    raises ValueError where a missing file is expected; hunt113 F2), or None.

    >>> nul_problem("a\\x00b.csv"), nul_problem("a.csv")
    ("'a\\\\x00b.csv': a path cannot hold a NUL character; expected a file path", None)
    """
    if isinstance(text, str) and "\0" in text:
        return f"{text!r}: a path cannot hold a NUL character; expected a file path"
    return None
