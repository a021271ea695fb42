"""Imports every built-in plugin module so each registers itself."""
from __future__ import annotations

import importlib
import pkgutil

from . import context, opportunity, planning, threat

for _pkg in (context, opportunity, threat, planning):
    for _mod in pkgutil.iter_modules(_pkg.__path__):
        importlib.import_module(f"{_pkg.__name__}.{_mod.name}")
