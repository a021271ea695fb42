"""Files written whole or not at all.

A results folder is read by people and programs (``--resume``, ``report --verify``, a
spreadsheet): a full disk or a kill in the middle of a write must leave the old file (or
none), never a file cut mid-row, and the error must name the file it could not write.
"""
from __future__ import annotations

import os
import stat
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


class OutputWarning(UserWarning):
    """A command's output files could not be written (a full disk, a read-only folder):
    the results computed are kept in memory (printed by the command, returned in Python);
    the command's status says it failed."""


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], Any]) -> Path:
    """Write ``path`` through a temporary file in its folder (``write`` gets the binary
    file object), fsynced and renamed into place: a reader sees the whole file or none of
    it. A symbolic link is written through (its target replaced, the link kept), a path
    that is no regular file (a named pipe, ``/dev/stdout``) written in place, and a file
    written again keeps its mode. An OSError (a full disk: no file name in it) names
    ``path``.

    >>> import tempfile
    >>> p = atomic_write(Path(tempfile.mkdtemp()) / "a.txt", lambda f: f.write(b"whole"))
    >>> p.read_text()
    'whole'
    """
    path = Path(path)
    try:
        st = os.stat(path)   # through any link: a pipe behind /dev/stdout is a pipe
    except OSError:
        st = None
    fd_path = str(path) in ("/dev/stdout", "/dev/stderr") or str(path).startswith(("/dev/fd/", "/proc/self/fd/"))
    if fd_path or (st is not None and not stat.S_ISREG(st.st_mode)):
        # a stream of this process (--trades-csv /dev/stdout, piped or redirected), a named
        # pipe, a device: written in place, never replaced; a stream is appended to (what
        # the process printed there before stays; hunt66 F1)
        try:
            with open(path, "ab" if fd_path else "wb") as f:
                write(f)
        except OSError as exc:
            raise _named(exc, path, None) from None
        return path
    if path.is_symlink():
        path = Path(os.path.realpath(path))   # written through, the link stays (hunt63 F3)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    except OSError as exc:   # a read-only folder: the file it was for, not a name never made (hunt87 F4)
        raise _named(exc, path, exc.filename) from None
    try:
        if st is not None:   # a file written again keeps its permissions (a private one stays private)
            mode = stat.S_IMODE(st.st_mode) & 0o777   # never a setuid bit on the writer's file (hunt66 F8)
        else:   # mkstemp makes 0600; a new file gets the mode open() would give it (a shared folder)
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _named(exc, path, tmp) from None
        raise
    return path


def _named(exc: OSError, path: Path, tmp: str | None) -> OSError:
    """``exc`` naming ``path`` when it names no file, or the temporary one (a full disk
    says 'File too large' alone), else ``exc`` itself."""
    if exc.filename in (None, tmp):
        return OSError(exc.errno, exc.strerror or str(exc), str(path))
    return exc


def write_csv(frame: Any, path: str | os.PathLike[str], **options: Any) -> Path:
    """``frame.to_csv(path, **options)``, written whole or not at all (:func:`atomic_write`).

    >>> import pandas as pd, tempfile
    >>> p = write_csv(pd.DataFrame({"a": [1, 2]}), Path(tempfile.mkdtemp()) / "t.csv", index=False)
    >>> p.read_text().splitlines()
    ['a', '1', '2']
    """
    return atomic_write(path, lambda f: frame.to_csv(f, **options))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``text`` as UTF-8 in ``path``, written whole or not at all (:func:`atomic_write`).

    >>> import tempfile
    >>> write_text(Path(tempfile.mkdtemp()) / "r.json", "{}").read_text()
    '{}'
    """
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


@contextmanager
def outputs_kept(what: str) -> Iterator[None]:
    """Write ``what`` (a sweep's output files) in this block; an OSError there (a full disk,
    a read-only folder) becomes an :class:`OutputWarning` naming the file, and the block's
    other writes are skipped: the results the caller computed are still its to print or
    return, not lost with the error (hunt87 F1). The CLI ends such a command with status 2.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     with outputs_kept("the tables"):
    ...         raise OSError(28, "No space left on device", "out/all_results.csv")
    >>> print(caught[0].message)
    out/all_results.csv: No space left on device; the tables were not written (the results are kept: printed by the command, returned in Python)
    """
    try:
        yield
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        warnings.warn(f"{where}{exc.strerror or exc}; {what} were not written (the results are kept: printed by the "
                      f"command, returned in Python)", OutputWarning, stacklevel=3)
