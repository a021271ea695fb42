"""File names for runs: any run name becomes a safe, unique file stem.

>>> file_stems(["liquidity_targets", "../evil<script>", "a b", "a/b", "index", ".hidden"])
['liquidity_targets', 'evil_script', 'a_b', 'a_b_2', 'index_2', 'hidden']
"""
from __future__ import annotations

import re
from typing import Iterable

_BAD = re.compile(r"[^A-Za-z0-9_-]+")
#: stems the report folder uses itself
RESERVED = frozenset({"index", "manifest"})
MAX_LEN = 80


def safe_stem(name: str, fallback: str = "run") -> str:
    """Keep ``[A-Za-z0-9_-]``, collapse every other run of characters to ``_``, no leading
    or trailing ``_``/``-``/``.`` (so no hidden files, no options, no ``..``).

    >>> safe_stem("../evil<script>"), safe_stem("..."), safe_stem("-rf /")
    ('evil_script', 'run', 'rf')
    """
    stem = _BAD.sub("_", str(name)).strip("_-")
    stem = stem[:MAX_LEN].rstrip("_-")
    return stem or fallback


def file_stems(names: Iterable[str], reserved: Iterable[str] = RESERVED) -> list[str]:
    """Safe stems for ``names`` in order; collisions (case-insensitive, as on macOS and
    Windows file systems) get ``_2``, ``_3`` ..."""
    taken = {r.lower() for r in reserved}
    out = []
    for name in names:
        base = safe_stem(name)
        stem, k = base, 1
        while stem.lower() in taken:
            k += 1
            stem = f"{base}_{k}"
        taken.add(stem.lower())
        out.append(stem)
    return out
