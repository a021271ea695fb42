"""Config layer: the bad-config catalogue (each error names the file and the key path)
and BuildSpecs (frozen, content-hashed, derived without touching the base)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import engine_helpers as h
from metaflow_nb.config import BuildSpecs, ConfigTranslator, deep_merge
from metaflow_nb.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SMA_YAML = ROOT / "config" / "runs" / "sma_cross.yaml"
OP_YAML = ROOT / "config" / "operations" / "sp500_daily.yaml"

GOOD = textwrap.dedent("""\
    name: demo
    direction: long_short
    workforce:
      opportunity_workers:
        - instance_id: sma_1
          plugin: sma_cross
          params: {fast: 10, slow: 20}
      planning_workers:
        exit_planning:
          - instance_id: exit_1
            plugin: reverse_on_opposite
            params: {exclusive_orders: true}
        size_planning:
          - instance_id: size_1
            plugin: all_in_sizer
    """)

DF = h.flat_bars([100.0 + i for i in range(30)])


def translate(path, operation=None, data=DF):
    return ConfigTranslator().translate(path, operation, data)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def error_of(tmp_path, text, name="strategy.yaml"):
    p = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as exc:
        translate(p)
    return p, str(exc.value)


# ====================================================================== bad-config catalogue


def test_good_blueprint_translates(tmp_path):
    specs = translate(write(tmp_path, "ok.yaml", GOOD))
    assert specs.params("sma_1") == {"fast": 10, "slow": 20}


def test_malformed_yaml_names_file_and_line(tmp_path):
    p, msg = error_of(tmp_path, "name: x\nworkforce: [unclosed\n  foo: 1\n")
    assert msg.startswith(f"{p}: malformed YAML (line 3, column 6): ")
    assert "expected ',' or ']'" in msg


def test_tab_indentation_is_malformed(tmp_path):
    p, msg = error_of(tmp_path, "name: x\nworkforce:\n\topportunity_workers: []\n")
    assert msg.startswith(f"{p}: malformed YAML (line 3, ")


def test_empty_file(tmp_path):
    p, msg = error_of(tmp_path, "")
    assert msg == f"{p}: the file is empty; expected a YAML mapping"
    p, msg = error_of(tmp_path, "# only a comment\n", "comment.yaml")
    assert msg == f"{p}: the file is empty; expected a YAML mapping"


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")])
def test_top_level_must_be_a_mapping(tmp_path, text, kind):
    p, msg = error_of(tmp_path, text)
    assert msg == f"{p}: expected a YAML mapping at the top level, got {kind}"


def test_unknown_top_level_key(tmp_path):
    p, msg = error_of(tmp_path, GOOD + "bogus_key: 1\n")
    assert msg == f"{p}: bogus_key: unknown key (got 1)"


def test_unknown_key_inside_a_worker_entry(tmp_path):
    text = GOOD.replace("params: {fast: 10, slow: 20}", "params: {fast: 10, slow: 20}\n      paramz: 3")
    p, msg = error_of(tmp_path, text)
    assert msg == f"{p}: workforce.opportunity_workers[0].paramz: unknown key (got 3)"


def test_unknown_param_of_a_plugin(tmp_path):
    p, msg = error_of(tmp_path, GOOD.replace("slow: 20", "slow: 20, fats: 3"))
    assert msg == f"{p}: workforce.opportunity_workers[0].params.fats: unknown key (got 3)"


def test_unknown_plugin_lists_known_plugins(tmp_path):
    p, msg = error_of(tmp_path, GOOD.replace("plugin: sma_cross", "plugin: sma_crosss"))
    prefix = f"{p}: workforce.opportunity_workers[0].plugin: unknown plugin 'sma_crosss'; known plugins: "
    assert msg.startswith(prefix)
    known, hint = msg[len(prefix):].split("; ")
    known = known.split(", ")
    assert {"sma_cross", "market_entry", "percent_stops", "all_in_sizer", "reverse_on_opposite"} <= set(known)
    # hunt24 L6: the hint check-causality gave, in every such message
    assert hint == ("a plugin of your own needs its module declared (plugins: [module] in the strategy, "
                    "--plugins module, or mf.use_plugins)")
    assert known == sorted(known)


def test_plugin_in_the_wrong_section(tmp_path):
    text = GOOD.replace("plugin: reverse_on_opposite\n        params: {exclusive_orders: true}",
                        "plugin: sma_cross")
    p, msg = error_of(tmp_path, text)
    prefix = (f"{p}: workforce.planning_workers.exit_planning[0].plugin: 'sma_cross' is an opportunity worker "
              f"and cannot be used in exit_planning; exit workers: ")
    assert msg.startswith(prefix)
    assert {"percent_stops", "reverse_on_opposite"} <= set(msg[len(prefix):].split(", "))


def test_param_out_of_bounds(tmp_path):
    p, msg = error_of(tmp_path, GOOD.replace("fast: 10", "fast: 0"))
    assert msg == f"{p}: workforce.opportunity_workers[0].params.fast: must be > 0 (got 0)"
    assert msg.startswith(f"{p}: workforce.opportunity_workers[0].params.fast: must be > 0")


def test_param_of_the_wrong_type(tmp_path):
    p, msg = error_of(tmp_path, GOOD.replace("fast: 10", "fast: ten"))
    assert msg.startswith(f"{p}: workforce.opportunity_workers[0].params.fast: ")
    assert "(got 'ten')" in msg


def test_fast_not_below_slow(tmp_path):
    p, msg = error_of(tmp_path, GOOD.replace("fast: 10", "fast: 20"))
    assert msg == f"{p}: workforce.opportunity_workers[0].params: fast (20) must be smaller than slow (20)"


def test_duplicate_instance_id(tmp_path):
    p, msg = error_of(tmp_path, GOOD.replace("instance_id: exit_1", "instance_id: sma_1"))
    assert msg == f"{p}: workforce: instance_id 'sma_1' is used twice; instance ids must be unique"


def test_no_opportunity_worker(tmp_path):
    p, msg = error_of(tmp_path, "name: x\nworkforce: {}\n")
    prefix = f"{p}: workforce.opportunity_workers: at least one opportunity worker is needed; known: "
    assert msg.startswith(prefix)
    assert "sma_cross" in msg[len(prefix):].split(", ")


def test_two_sizers(tmp_path):
    p, msg = error_of(tmp_path, GOOD + "      - instance_id: size_2\n        plugin: all_in_sizer\n")
    assert msg == f"{p}: workforce.planning_workers.size_planning: at most one worker, got 2"


def test_two_stop_providers(tmp_path):
    text = GOOD.replace("    size_planning:", textwrap.indent(textwrap.dedent("""\
        - instance_id: stops_a
          plugin: percent_stops
        - instance_id: stops_b
          plugin: percent_stops
        """), "      ") + "    size_planning:")
    p, msg = error_of(tmp_path, text)
    assert msg == (f"{p}: workforce.planning_workers.exit_planning: stops_a, stops_b all set a stop; "
                   f"keep one stop provider")


def test_bad_direction(tmp_path):
    p, msg = error_of(tmp_path, GOOD.replace("direction: long_short", "direction: sideways"))
    assert msg.startswith(f"{p}: direction: ")
    assert "(got 'sideways')" in msg


def test_missing_file(tmp_path):
    p = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as exc:
        translate(p)
    assert str(exc.value) == f"{p}: file not found"


def test_operation_errors_name_the_operation_file(tmp_path):
    op = write(tmp_path, "op.yaml", "name: o\ncash: -5\n")
    with pytest.raises(ConfigError) as exc:
        translate(SMA_YAML, op)
    # (a float bound prints as 0.0)
    assert str(exc.value) == f"{op}: cash: must be > 0.0 (got -5)"
    op = write(tmp_path, "op2.yaml", "name: o\ncomission: 0.001\n")
    with pytest.raises(ConfigError) as exc:
        translate(SMA_YAML, op)
    assert str(exc.value) == f"{op}: comission: unknown key (got 0.001)"


@pytest.mark.parametrize("start, end, ok", [
    ("2010-01-01", "2009-01-01", False), ("2009-12-15", "2009-12", True), ("2009-12-31 16:00", "2009-12-31", True),
    ("2010-01-01", "2009", False), ("2009-01-01T00:00Z", "2009-01-01", True),
    # hunt26 F2: a bound with an offset is that instant in UTC (the wall time was compared)
    ("2009-12-31T01:00+02:00", "2009-12-30 23:30", True), ("2009-12-31T03:00+02:00", "2009-12-30 23:30", False),
    ("2009-12-30 23:00", "2009-12-31T00:30+02:00", False)])
def test_a_start_after_the_end_names_the_operation_file(tmp_path, start, end, ok):
    """``end`` as a period (``2009-12`` runs to the end of December): only a start past
    its last instant is refused, before any data is read."""
    op = write(tmp_path, "op.yaml", f"name: o\ndata: {{source: sp500_daily, start: '{start}', end: '{end}'}}\n")
    if ok:
        translate(SMA_YAML, op)
        return
    with pytest.raises(ConfigError) as exc:
        translate(SMA_YAML, op)
    assert str(exc.value) == f"{op}: data: start {start} is after end {end}; expected start <= end"


def test_dict_blueprint_errors_name_the_origin():
    bp = h.blueprint(longs=[1])
    bp["workforce"]["opportunity_workers"][0]["params"]["longs"] = "x"
    with pytest.raises(ConfigError) as exc:
        translate(bp)
    assert str(exc.value).startswith("<strategy>: workforce.opportunity_workers[0].params.longs: ")


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# ====================================================================== BuildSpecs


@pytest.fixture(scope="module")
def specs():
    return ConfigTranslator().translate(SMA_YAML, OP_YAML, DF)


def test_specs_are_frozen(specs):
    with pytest.raises(dataclasses.FrozenInstanceError):
        specs.blueprint_json = "{}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        specs.data_fingerprint = "x"
    # the views are fresh copies: changing them changes nothing
    before = specs.hash
    bp = specs.blueprint
    bp["workforce"]["opportunity_workers"][0]["params"]["fast"] = 99
    specs.operation["cash"] = 1
    specs.workers()[0]["params"]["fast"] = 99
    assert specs.params("sma_1")["fast"] == 10
    assert specs.hash == before


def test_hash_equal_for_equal_content(specs, tmp_path):
    # the same content from a dict, with keys in another order and defaults spelled out
    import yaml
    doc = yaml.safe_load(SMA_YAML.read_text())
    doc = dict(reversed(list(doc.items())))
    doc["workforce"]["planning_workers"]["size_planning"][0]["params"] = {"whole_units": True}
    doc["workforce"]["context_workers"] = []
    op = yaml.safe_load(OP_YAML.read_text())
    op["finalize_trades"] = False
    again = ConfigTranslator().translate(doc, op, DF.copy())
    assert again.hash == specs.hash and again == specs and hash(again) == hash(specs)
    assert len(specs.hash) == 64 and specs.run_id == specs.hash[:16]
    # a copy of the YAML elsewhere: origin differs, the hash does not
    moved = ConfigTranslator().translate(write(tmp_path, "copy.yaml", SMA_YAML.read_text()), OP_YAML, DF)
    assert moved.origin != specs.origin and moved.hash == specs.hash


def test_hash_stable_across_processes(specs):
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        import engine_helpers as h
        from metaflow_nb.config import ConfigTranslator
        df = h.flat_bars([100.0 + i for i in range(30)])
        print(ConfigTranslator().translate({str(SMA_YAML)!r}, {str(OP_YAML)!r}, df).hash)
        """)
    hashes = set()
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             cwd=str(ROOT), timeout=120)
        assert out.returncode == 0, out.stderr
        hashes.add(out.stdout.strip().splitlines()[-1])
    assert hashes == {specs.hash}


def test_hash_changes_with_params_operation_and_data(specs):
    seen = {specs.hash}
    for other in (specs.with_params("sma_1", {"fast": 5}),
                  specs.with_params("size_1", {"whole_units": False}),
                  specs.with_overrides({"direction": "long_only"}),
                  specs.with_overrides({"operation": {"commission": 0.001}}),
                  ConfigTranslator().translate(SMA_YAML, OP_YAML, h.flat_bars([100.0 + i for i in range(31)])),
                  ConfigTranslator().translate(SMA_YAML, OP_YAML, h.flat_bars([101.0 + i for i in range(30)]))):
        assert other.hash not in seen
        seen.add(other.hash)


def test_with_params_returns_new_specs_and_leaves_the_base(specs):
    bp_before, hash_before = specs.blueprint_json, specs.hash
    faster = specs.with_params("sma_1", {"fast": 5})
    assert faster is not specs
    assert faster.params("sma_1") == {"fast": 5, "slow": 20}
    assert specs.params("sma_1") == {"fast": 10, "slow": 20}
    assert (specs.blueprint_json, specs.hash) == (bp_before, hash_before)
    assert faster.data_fingerprint == specs.data_fingerprint
    # the derived specs is validated like a file
    with pytest.raises(ConfigError, match=r"workforce\.opportunity_workers\[0\]\.params\.fast: must be > 0"):
        specs.with_params("sma_1", {"fast": 0})
    with pytest.raises(ConfigError, match=r"fast \(30\) must be smaller than slow \(20\)"):
        specs.with_params("sma_1", {"fast": 30})
    with pytest.raises(ConfigError, match=r"no worker instance 'sma_9'; instances: sma_1, "):
        specs.with_params("sma_9", {"fast": 5})
    assert (specs.blueprint_json, specs.hash) == (bp_before, hash_before)


def test_with_overrides_returns_new_specs_and_leaves_the_base(specs):
    bp_before, op_before, hash_before = specs.blueprint_json, specs.operation_json, specs.hash
    other = specs.with_overrides({"direction": "long_only", "operation": {"commission": 0.001}})
    assert other.blueprint["direction"] == "long_only" and other.operation["commission"] == 0.001
    assert specs.blueprint["direction"] == "long_short" and specs.operation["commission"] == 0.002
    assert (specs.blueprint_json, specs.operation_json, specs.hash) == (bp_before, op_before, hash_before)


@pytest.mark.parametrize("override, key", [
    ({"bogus": 1}, "bogus"),
    ({"workforce": {"opportunity_workerz": []}}, "workforce.opportunity_workerz"),
    ({"workforce": {"planning_workers": {"exit_plan": []}}}, "workforce.planning_workers.exit_plan"),
    ({"operation": {"comission": 0.1}}, "operation.comission"),
])
def test_with_overrides_unknown_path_names_the_key(specs, override, key):
    with pytest.raises(ConfigError) as exc:
        specs.with_overrides(override)
    where = "operation" if key.startswith("operation.") else "blueprint"
    assert str(exc.value).startswith(f"{key}: no such key in the {where} (keys here: ")
    assert specs.blueprint["direction"] == "long_short"


def test_with_overrides_lists_replace_mappings_merge(specs):
    # a list replaces the whole list: the exit planner is swapped, not appended
    stops = [{"instance_id": "stops_1", "plugin": "percent_stops", "params": {"stop_loss_pct": 3.0}}]
    other = specs.with_overrides({"workforce": {"planning_workers": {"exit_planning": stops}}})
    pw = other.blueprint["workforce"]["planning_workers"]
    assert [w["instance_id"] for w in pw["exit_planning"]] == ["stops_1"]
    assert pw["exit_planning"][0]["params"] == {"stop_loss_pct": 3.0, "take_profit_pct": None,
                                                "reference": "signal_close"}
    # mappings merge: the sibling sections and the other workforce keys are kept
    assert pw["size_planning"] == specs.blueprint["workforce"]["planning_workers"]["size_planning"]
    assert pw["entry_planning"] == specs.blueprint["workforce"]["planning_workers"]["entry_planning"]
    assert other.blueprint["workforce"]["opportunity_workers"] == specs.blueprint["workforce"]["opportunity_workers"]
    assert other.blueprint["name"] == specs.blueprint["name"]
    # the operation merges key by key too
    op = specs.with_overrides({"operation": {"instrument": {"symbol": "XYZ"}}}).operation
    assert op["instrument"] == {**specs.operation["instrument"], "symbol": "XYZ"}
    assert op["cash"] == specs.operation["cash"]


def test_deep_merge_semantics():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": [1, 2, 3]}
    assert deep_merge(base, {"a": {"y": [9]}, "b": []}) == {"a": {"x": 1, "y": [9]}, "b": []}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": [1, 2, 3]}
    with pytest.raises(ConfigError, match=r"^a\.z: no such key in the blueprint \(keys here: x, y\)$"):
        deep_merge(base, {"a": {"z": 1}})
    assert deep_merge(base, {"c": 1}, strict=False)["c"] == 1


def test_default_entry_and_size_planners_are_filled_in():
    bp = {"name": "tiny", "workforce": {"opportunity_workers": [
        {"instance_id": "sma_1", "plugin": "sma_cross", "params": {"fast": 3, "slow": 7}}]}}
    s = ConfigTranslator().translate(bp, None, DF)
    pw = s.blueprint["workforce"]["planning_workers"]
    assert pw["entry_planning"] == [{"instance_id": "entry_default", "plugin": "market_entry", "params": {}}]
    assert pw["size_planning"] == [{"instance_id": "size_default", "plugin": "all_in_sizer",
                                    "params": {"whole_units": True}}]
    assert pw["exit_planning"] == []
    # plugin defaults are filled into params too
    assert s.blueprint["direction"] == "long_short"
    explicit = dict(bp, workforce={**bp["workforce"], "planning_workers": pw})
    assert ConfigTranslator().translate(explicit, None, DF).hash == s.hash


def test_translate_returns_buildspecs_unchanged():
    s = ConfigTranslator().translate(SMA_YAML, OP_YAML, DF)
    assert isinstance(s, BuildSpecs)
    assert ConfigTranslator().translate(s) is s


# ====================================================================== typed accessors


def test_typed_accessors_read_the_resolved_config(specs):
    bp, op = specs.blueprint, specs.operation
    assert specs.name == bp["name"] and specs.direction == bp["direction"]
    assert (specs.cash, specs.commission, specs.slippage, specs.leverage) == (
        float(op["cash"]), float(op["commission"]), float(op["slippage"]), float(op["leverage"]))
    assert isinstance(specs.cash, float) and specs.finalize_trades is bool(op["finalize_trades"])
    assert (specs.pip_size, specs.symbol, specs.seed) == (
        op["instrument"]["pip_size"], op["instrument"]["symbol"], op["seed"])
    d = op["data"]
    assert (specs.data_source, specs.data_start, specs.data_end, specs.trade_start) == (
        d["source"], d["start"], d["end"], d["trade_start"])


def test_workforce_sections_are_the_contracts_table_and_the_schema():
    from metaflow_nb.config import PLANNING_SECTIONS, WORKFORCE_SECTIONS, PlanningWorkers, Workforce
    from metaflow_nb.workers.base import SECTION_ROLES
    assert WORKFORCE_SECTIONS == tuple(SECTION_ROLES)
    assert PLANNING_SECTIONS == tuple(PlanningWorkers.model_fields)
    top = [s for s in WORKFORCE_SECTIONS if s not in PLANNING_SECTIONS]
    assert tuple(Workforce.model_fields) == (*top, "planning_workers")


def test_entries_carry_the_translators_models_and_a_read_only_view(specs):
    entries = specs.entries()
    assert [e.instance_id for e in entries] == [w["instance_id"] for w in specs.workers()]
    assert [e.section for e in entries] == [w["section"] for w in specs.workers()]
    sma = entries[0]
    assert sma.model is specs._models["sma_1"]  # the translator's model, not a second validation
    assert (sma.model.fast, sma.params["fast"]) == (10, 10)
    with pytest.raises(TypeError):
        sma.params["fast"] = 99
    assert specs.entries() is entries


def test_models_are_hash_neutral_and_travel_through_pickle(specs):
    import pickle
    bare = BuildSpecs(specs.blueprint_json, specs.operation_json, specs.data_fingerprint)
    assert bare._models is None
    assert bare == specs and hash(bare) == hash(specs) and bare.run_id == specs.run_id
    # specs built by hand validate lazily, once
    assert bare.entries()[0].model == specs.entries()[0].model and bare.entries() is bare.entries()
    specs.entries()  # caches read-only views, which must not reach the pickle
    again = pickle.loads(pickle.dumps(specs))
    assert again == specs and again.run_id == specs.run_id and again.origin == specs.origin
    assert again._models is not None and again.entries()[0].model == specs.entries()[0].model
    # derived specs carry their own freshly validated models
    faster = specs.with_params("sma_1", {"fast": 5})
    assert faster._models["sma_1"].fast == 5 and faster.entries()[0].model.fast == 5


def test_hash_with_params_and_hash_template_name_a_combination_like_its_specs(specs):
    import hashlib
    from metaflow_nb.config.buildspecs import canonical_json
    combo = {"sma_1": {"fast": 5, "slow": 30}, "size_1": {"whole_units": False}}
    want = specs.with_param_overrides(combo).hash
    resolved = {"sma_1": {"fast": 5, "slow": 30}, "size_1": {"whole_units": False}}
    assert specs.hash_with_params(resolved) == want
    parts = specs.hash_template(["sma_1", "size_1"])
    text = parts[0] + canonical_json(resolved["sma_1"]) + parts[1] + canonical_json(resolved["size_1"]) + parts[2]
    assert hashlib.sha256(text.encode()).hexdigest() == want
    assert specs.hash_with_params({}) == specs.hash
    assert specs.hash_template(["nope_1"]) is None


def test_an_operation_given_as_the_strategy_and_the_reverse_say_so(tmp_path, capsys):
    from metaflow_nb.cli import main
    op = str(ROOT / "config/operations/sp500_daily.yaml")
    with pytest.raises(ConfigError, match=r"sp500_daily.yaml: is an operation \(keys cash, commission, data, "
                                          r"instrument, slippage\), not a strategy blueprint"):
        translate(op, op)
    with pytest.raises(ConfigError, match=r"sma_cross.yaml: is a strategy blueprint \(workforce: \.\.\.\), not an "
                                          r"operation"):
        translate(SMA_YAML, SMA_YAML)
    assert main(["report", op]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is an operation" in err
    assert main(["report", str(ROOT / "config")]) == 2
    assert capsys.readouterr().err == f"metaflow-nb: error: {ROOT / 'config'}: is a folder; expected a YAML file\n"


@pytest.mark.parametrize("text, key, line", [
    ("name: dup\ncash: 10000\ncommission: 0.002\ncommission: 0.0\n", "commission", 4),
    ("name: s\nworkforce:\n  opportunity_workers:\n    - {instance_id: a, plugin: sma_cross, "
     "params: {fast: 10, fast: 50}}\n", "fast", 4),
])
def test_a_key_written_twice_is_refused_naming_it(tmp_path, text, key, line):
    """YAML's loaders keep the last of two equal keys silently: a pasted second
    ``commission:`` replaced the first without a word."""
    from metaflow_nb.config.loading import read_yaml

    p = tmp_path / "dup.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_yaml(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}: malformed YAML (line {line}, ") and "\n" not in msg
    assert f"key '{key}' is written twice (first on line" in msg and msg.endswith("expected each key once")
    # a key merged in with << may be overridden, as YAML means it
    p.write_text("base: &b {cash: 1, commission: 0.1}\nop:\n  <<: *b\n  commission: 0.0\n")
    assert read_yaml(p)["op"] == {"cash": 1, "commission": 0.0}


@pytest.mark.parametrize("line, key", [
    ("      params: {fast: 010, slow: 20}", "params.fast"),     # YAML 1.1: octal 8
    ("      params: {fast: 0b101, slow: 20}", "params.fast"),   # YAML 1.1: binary 5
    ("      params: {fast: 1:30, slow: 200}", "params.fast"),   # YAML 1.1: base 60, 90
])
def test_yaml_1_1_integers_are_not_read_as_other_numbers(tmp_path, line, key):
    """hunt64 F1: PyYAML reads YAML 1.1 integers: 'fast: 010' ran as 8, 'cash: 010000' as
    4096, 'leverage: 1:30' (how FX writes 30:1) as 90, silently. They are read as YAML 1.2
    reads them, text, which a number refuses naming the key."""
    import metaflow_nb as mf

    text = Path("config/runs/sma_cross.yaml").read_text()
    text = text.replace("      params: {fast: 10, slow: 20}", line)
    assert line in text
    bp = tmp_path / "s.yaml"
    bp.write_text(text)
    with pytest.raises(ConfigError, match=rf"{bp}: .*{key}"):
        mf.backtest(str(bp), data="sp500_daily")


def test_yaml_decimals_hex_and_unquoted_times_read_as_written(tmp_path):
    """Decimal integers (with _ separators), hex, floats read as before; an unquoted clock
    time is the text it looks like (YAML 1.1 made 21:45 the number 1305)."""
    from metaflow_nb.config.loading import read_yaml

    p = tmp_path / "n.yaml"
    p.write_text("a: 10\nb: -3\nc: 1_000_000\nd: 0x1F\ne: 0\nf: 2.5\ng: 1e-4\nh: 21:45\ni: 010\nj: 09:30\n")
    assert read_yaml(p) == {"a": 10, "b": -3, "c": 1_000_000, "d": 31, "e": 0, "f": 2.5, "g": 1e-4, "h": "21:45",
                            "i": "010", "j": "09:30"}


def test_an_operations_missing_data_file_names_the_operation_the_key_and_both_places(tmp_path, monkeypatch):
    """hunt64 F4: 'data.source: data/missing.csv' said '<working folder>/data/missing.csv:
    file not found', naming no config or key, and not where the README says a relative
    source is looked for first (beside the operation)."""
    import metaflow_nb as mf
    from metaflow_nb.errors import DataError

    (tmp_path / "cfg").mkdir()
    op = tmp_path / "cfg" / "op.yaml"
    monkeypatch.chdir(tmp_path)
    # hunt70 F5: data.intrabar and an instrument's source, likewise (they named the working
    # folder's guess alone)
    for text, key, name in (
            ("name: o\ndata:\n  source: data/missing.csv\n", "data.source", "missing.csv"),
            ("name: o\ndata:\n  source: sp500_daily\n  timeframe: 1w\n  intrabar: data/fine.csv\n", "data.intrabar",
             "fine.csv"),
            ("instruments:\n  - {symbol: IBM, source: us_stocks}\n  - {symbol: XX, source: data/xx.csv}\n",
             "instruments[1].source: instrument 'XX'", "xx.csv")):
        op.write_text(text)
        with pytest.raises(DataError) as info:
            mf.backtest(str(ROOT / "config/runs/sma_cross.yaml"), str(op))
        assert str(info.value) == (f"{op}: {key}: 'data/{name}': no such file beside the operation "
                                   f"({tmp_path / 'cfg' / 'data' / name}) nor in the working folder "
                                   f"({tmp_path / 'data' / name})")
    # a data override replaces the source: nothing to look for
    op.write_text("name: o\ndata:\n  source: data/missing.csv\n")
    assert mf.backtest(str(ROOT / "config/runs/sma_cross.yaml"), str(op), data="sp500_daily").metrics["total_trades"] > 0


def test_a_meta_configs_inline_base_and_a_base_that_is_no_file_are_named(tmp_path):
    """hunt64 F3: an inline base_strategy's mistake was named '<strategy>: workforce...',
    not the config and its key; F5: base_strategy /dev/null (or a folder) was 'not found'."""
    import yaml

    import metaflow_nb as mf

    bp = yaml.safe_load((ROOT / "config/runs/sma_cross.yaml").read_text())
    bp["workforce"]["opportunity_workers"][0]["params"]["fsat"] = 3
    space = [{"worker_instance": "sma_1", "parameters": {"fast": [5, 10]}}]
    cfg = tmp_path / "opt.yaml"
    cfg.write_text(yaml.safe_dump({"optimization_config": {
        "name": "o", "base_strategy": bp, "base_operation": str(ROOT / "config/operations/sp500_daily.yaml"),
        "parameter_space": space}}))
    with pytest.raises(ConfigError) as info:
        mf.optimize(cfg, progress=False)
    assert str(info.value) == (f"{cfg}: optimization_config.base_strategy.workforce.opportunity_workers[0].params."
                               "fsat: unknown key (got 3)")
    for base, what in ((str(tmp_path), "a folder"), ("/dev/null", "no regular file")):
        cfg.write_text(yaml.safe_dump({"optimization_config": {
            "name": "o", "base_strategy": base, "base_operation": str(ROOT / "config/operations/sp500_daily.yaml"),
            "parameter_space": space}}))
        with pytest.raises(ConfigError, match=rf"{cfg}: optimization_config\.base_strategy: '{base}' is {what}"):
            mf.optimize(cfg, progress=False)


def test_a_meta_configs_base_files_are_its_projects_whatever_the_working_folder(tmp_path, monkeypatch):
    """hunt70 F1: base_strategy was looked up in the working folder first, so a project's
    optimization run from another checkout of the same layout silently ran that checkout's
    strategy (with its own operation); beside the config and its parent folders come first,
    as data.source's place beside the operation does. hunt70 F3: a leading ~ is the home."""
    import shutil

    import yaml

    from metaflow_nb.config.meta import resolve_base_path

    for root in ("mine", "other"):
        (tmp_path / root / "config" / "runs").mkdir(parents=True)
        (tmp_path / root / "config" / "optimizations").mkdir()
    shutil.copy(ROOT / "config/runs/sma_cross.yaml", tmp_path / "mine/config/runs/s.yaml")
    shutil.copy(ROOT / "config/runs/sma_cross_long_stops.yaml", tmp_path / "other/config/runs/s.yaml")
    folder = tmp_path / "mine" / "config" / "optimizations"
    for cwd in (tmp_path / "other", tmp_path / "mine", folder):
        monkeypatch.chdir(cwd)
        assert resolve_base_path("config/runs/s.yaml", folder, "o.yaml", "base_strategy") == \
            str(tmp_path / "mine/config/runs/s.yaml")
    monkeypatch.chdir(tmp_path / "other")   # a file only the working folder has is still found
    (tmp_path / "other/config/runs/only.yaml").write_text("x: 1\n")
    assert resolve_base_path("config/runs/only.yaml", folder, "o.yaml", "base_strategy") == \
        str(tmp_path / "other/config/runs/only.yaml")
    monkeypatch.setenv("HOME", str(tmp_path / "mine"))
    assert resolve_base_path("~/config/runs/s.yaml", folder, "o.yaml", "base_strategy") == \
        str(tmp_path / "mine/config/runs/s.yaml")
    with pytest.raises(ConfigError, match=r"o\.yaml: base_strategy: file 'nope\.yaml' not found \(looked next to "
                                          r"the config, in its two parent folders and in the working folder\)"):
        resolve_base_path("nope.yaml", folder, "o.yaml", "base_strategy")


@pytest.mark.parametrize("params, where", [
    ("{fast: 10, slow: 20, yes: 5}", "params.True: "),         # a key YAML read as a boolean, not '[1]'
    ("{fast: 10, slow: 20, 'fast[0]': 5}", "params.fast[0]: "),  # a key written like an index stays
    ("{fast: 0x_, slow: 20}", "params.fast: "),                  # text, not a traceback
])
def test_key_paths_name_what_the_user_wrote(tmp_path, params, where):
    """hunt66 F4, F5, F7: a key 'fast[0]' was dropped from the path as if pydantic's own
    tag; a 'yes:' key showed as '[1]'; '0x_' and '._e5' ended in a traceback."""
    import metaflow_nb as mf

    text = Path("config/runs/sma_cross.yaml").read_text().replace("      params: {fast: 10, slow: 20}",
                                                                  f"      params: {params}")
    bp = tmp_path / "s.yaml"
    bp.write_text(text)
    with pytest.raises(ConfigError) as info:
        mf.backtest(str(bp), data="sp500_daily")
    assert f"opportunity_workers[0].{where}" in str(info.value), str(info.value)


def test_a_data_source_that_is_a_link_to_nothing_is_named_as_one(tmp_path):
    """hunt66 F6: the link's target was shown as the file 'beside the operation'."""
    import metaflow_nb as mf
    from metaflow_nb.errors import DataError

    (tmp_path / "prices.csv").symlink_to(tmp_path / "gone" / "target.csv")
    op = tmp_path / "op.yaml"
    op.write_text("name: o\ndata:\n  source: prices.csv\n")
    with pytest.raises(DataError) as info:
        mf.backtest(str(ROOT / "config/runs/sma_cross.yaml"), str(op))
    assert str(info.value) == (f"{op}: data.source: {tmp_path / 'prices.csv'} is a symbolic link to "
                               f"{tmp_path / 'gone' / 'target.csv'}, which does not exist")


def test_an_empty_list_or_mapping_and_a_huge_whole_number_are_said_in_the_configs_words(tmp_path):
    """hunt113 F4: pydantic's own words reached the line ('Dictionary should have at least 1
    item after validation, not 0')."""
    import fault_plugins as fp
    from metaflow_nb.config.meta import load_meta_config
    from metaflow_nb.errors import ConfigError

    strategy = str(fp.ROOT / "config" / "runs" / "sma_cross.yaml")
    for space, said in (([{"worker_instance": "sma_1", "parameters": {}}], "parameters: 0 given; expected at least 1"),
                        ([{"worker_instance": "sma_1", "parameters": {"fast": []}}],
                         "parameters.fast.values: 0 given; expected at least 1")):
        cfg = fp.write_optimization(tmp_path, space, strategy)
        with pytest.raises(ConfigError) as err:
            load_meta_config(cfg)
        assert said in str(err.value) and "Dictionary should" not in str(err.value), str(err.value)
    from metaflow_nb.config.loading import validate_model
    from metaflow_nb.config.models import Operation
    with pytest.raises(ConfigError, match=r"op.yaml: seed: expected a whole number of at most 19 digits"):
        validate_model(Operation, {"seed": 1e300}, "op.yaml")
