"""The plugin registry: a name belongs to one class; the same class re-imported keeps it."""
from __future__ import annotations

import importlib.util
import sys

import pytest

from metaflow_nb.workers.base import OpportunityWorker, get_plugin, register


def test_another_class_cannot_take_a_registered_name():
    get_plugin("sma_cross")  # built-ins register on first use
    with pytest.raises(TypeError, match="'sma_cross' is already registered by SmaCross"):
        @register
        class Impostor(OpportunityWorker):
            name = "sma_cross"


def test_the_same_file_imported_under_two_names_registers_once(tmp_path):
    src = tmp_path / "twice_plugin.py"
    src.write_text(
        "from metaflow_nb.workers.base import OpportunityWorker, register\n"
        "@register\n"
        "class Twice(OpportunityWorker):\n"
        "    name = 'test_registry_twice'\n")
    classes = []
    for module_name in ("twice_plugin", "pkg_alias.twice_plugin"):
        spec = importlib.util.spec_from_file_location(module_name, src)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            classes.append(module.Twice)
    assert classes[0] is not classes[1]
    assert get_plugin("test_registry_twice") is classes[1]
    for name in ("twice_plugin", "pkg_alias.twice_plugin"):
        sys.modules.pop(name, None)
