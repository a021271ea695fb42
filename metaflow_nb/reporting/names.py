"""File names for runs: any run name becomes a safe, unique file stem.

>>> file_stems(["liquidity_targets", "../evil<script>", "a b", "a/b", "index", ".hidden"])
['liquidity_targets', 'evil_script', 'a_b', 'a_b_2', 'index_2', 'hidden']
"""
from __future__ import annotations

from typing import Iterable

from ..services.names import MAX_LEN, safe_stem

__all__ = ["MAX_LEN", "RESERVED", "file_stems", "safe_stem"]

#: stems the report folder uses itself
RESERVED = frozenset({"index", "manifest"})


def file_stems(names: Iterable[str], reserved: Iterable[str] = RESERVED) -> list[str]:
    """Safe stems for ``names`` in order; collisions (case-insensitive, as on macOS and
    Windows file systems) get ``_2``, ``_3`` ...

    >>> file_stems(["ATR", "atr", "manifest"])
    ['ATR', 'atr_2', 'manifest_2']
    """
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
