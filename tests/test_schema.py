"""Config schemas: unknown keys refused with a suggestion, errors naming file and field, one name per
knob across YAML and CLI (old flags warn), and a generated reference that covers every key."""
from __future__ import annotations

import argparse

import pytest

from route_switch.cli import build_parser, main
from route_switch.core.errors import ConfigError
from route_switch.core.fields import HELP, flag
from route_switch.core.schema.reference import files, markdown, rows


@pytest.mark.parametrize("text, field, says", [
    ("tiers: [{model: a, pricein: 1}]\n", "tiers[0].pricein", "did you mean 'price_in'?"),
    ("tiers: [{model: a}]\nllm: {program: p, timout_s: 1}\n", "llm.timout_s", "did you mean 'timeout_s'?"),
    ("tiers: [{model: a}]\nbypass: {max_token: 6}\n", "bypass.max_token", "did you mean 'max_tokens'?"),
    ("tiers: [{model: a}]\nroute_log: {path: l.jsonl, privacy: some}\n", "route_log.privacy", "'hash' or 'full'"),
    ("tiers: [{model: a}]\nstate: {redis_url: 'redis://:pw@h'}\n", "state.redis_url", "environment variable"),
    ("tiers: [{model: a, api_key: sk-1}]\n", "tiers[0].api_key", "API keys never go in files"),
    ("tiers: [{model: a}]\ndefault_tier: 2\n", "default_tier", "within [1, 1]"),
])
def test_router_yaml_names_file_and_dotted_field(tmp_path, text, field, says):
    from route_switch.routing.config import load_config

    p = tmp_path / "router.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.field == field and str(p) in str(e.value) and says in str(e.value)


def test_budgets_and_programs_suggest_the_closest_key(tmp_path):
    from route_switch.llm.program import ProgramError, RoutingProgram
    from route_switch.server.budgets import Budgets

    p = tmp_path / "budgets.yaml"
    p.write_text("keys: {a: {limit_usd: 1, polcy: refuse}}\n")
    with pytest.raises(ConfigError, match="did you mean 'policy'") as e:
        Budgets.from_file(p)
    assert e.value.field == "keys.a.polcy" and str(p) in str(e.value)
    p.write_text("keys: {123456: {limit_usd: 2}}\n")  # a numeric key id is still a key id
    b = Budgets.from_file(p)
    assert b.keys == {"123456": {"limit_usd": 2.0, "period": "month", "near": 0.8, "policy": "cap", "cap_tier": 1}}
    b.close()
    prog = tmp_path / "p.yaml"
    prog.write_text("name: x\ntiers: [{name: a, description: d}, {name: b, description: e}]\ninstructions: i\n")
    with pytest.raises(ProgramError, match="did you mean 'instruction'") as e:
        RoutingProgram.from_yaml(prog)
    assert e.value.field == "instructions"


def _fields(model, prefix=""):
    from route_switch.core.schema import _models_in

    out = set()
    for name, f in model.model_fields.items():
        if not f.exclude:
            out.add(prefix + (f.alias or name))
            for inner in _models_in(f.annotation)[:1]:
                out |= _fields(inner, prefix + (f.alias or name) + ".")
    return out


def test_the_reference_covers_every_field_of_every_file():
    text = markdown()
    for title, model in files().items():
        assert f"## {title}" in text
        documented = {k.replace("[]", "").replace(".<name>", "") for k, *_ in rows(model)}
        assert documented == _fields(model), title
        for key, _type, _default, description in rows(model):
            assert f"| `{key}` |" in text and description, f"{title}: {key} has no description"


def test_config_schema_command_prints_the_reference(tmp_path, capsys):
    assert main(["config-schema"]) == 0
    out = capsys.readouterr().out
    assert "| `llm.timeout_s` | number or null |" in out and "| `keys.<name>.limit_usd` |" in out
    assert main(["config-schema", "--out", str(tmp_path / "ref.md")]) == 0
    assert (tmp_path / "ref.md").read_text() == out


def test_each_shared_knob_is_a_schema_field_and_a_cli_flag():
    from route_switch.core.schema.router import RouterFile

    fields = _fields(RouterFile)
    options = {o for sp in next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
               .choices.values() for a in sp._actions for o in a.option_strings}
    for field in HELP:
        assert field in fields, field
        assert flag(field) in options or field == "llm.max_query_tokens", flag(field)
    assert flag("llm.timeout_s") == "--llm-timeout-s" and flag("selection.lambda") == "--lambda"


@pytest.mark.parametrize("argv, old, new, dest, value", [
    (["fit", "--evalset", "x", "--llm-n", "7"], "--llm-n", "--llm-fusion-n", "llm_fusion_n", 7),
    (["fit", "--evalset", "x", "--llm-timeout", "3"], "--llm-timeout", "--llm-timeout-s", "llm_timeout_s", 3.0),
    (["fit", "--evalset", "x", "--bypass-tokens", "6"], "--bypass-tokens", "--bypass-max-tokens", "bypass_max_tokens", 6),
    (["evaluate", "--evalset", "x", "--llm-n", "9"], "--llm-n", "--llm-test-n", "llm_test_n", 9),
    (["evaluate", "--evalset", "x", "--llm-fit-n", "5"], "--llm-fit-n", "--llm-fusion-n", "llm_fusion_n", 5),
    (["evaluate", "--evalset", "x", "--bypass", "8,16"], "--bypass", "--bypass-max-tokens", "bypass_max_tokens", "8,16"),
])
def test_old_flags_still_work_and_warn_once(argv, old, new, dest, value, capsys):
    args = build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert getattr(args, dest) == value
    assert err.count("deprecated") == 1 and old in err and new in err and len(err.strip().splitlines()) == 1
    build_parser().parse_args([new if a == old else a for a in argv])
    assert capsys.readouterr().err == ""


def test_the_committed_reference_is_what_the_schemas_generate():
    from pathlib import Path

    from route_switch.core.schema.reference import markdown

    committed = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text()
    assert committed == markdown(), "docs/reference.md is stale: route-switch config-schema --out docs/reference.md"
