"""Router YAML and CLI: clear errors, the evaluate JSON contract on real shared data."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from route_switch.cli import main
from route_switch.routing.config import load_config
from route_switch.core.errors import ConfigError
from route_switch.core.spec import load_spec


@pytest.mark.parametrize("text, field, line", [
    ("tiers: [{name: a}]\n", "tiers[0].model", None),
    ("tiers: [{model: a, price_in: -1}]\n", "tiers[0].price_in", None),
    ("tiers: [{model: a}]\nselection: {tau: 2}\n", "selection.tau", None),
    ("tiers: [{model: a}]\nselection: [1]\n", "selection", None),
    ("tiers: [{model: a}\n  bad", None, 2),
    ("tiers: [{model: a}]\nselction: {tau: 0.2}\n", "selction", None),
    ("tiers: [{model: a}]\nestimator: 5\n", "estimator", None),
    ("tiers: [{model: a}]\nestimator: [a, b]\n", "estimator", None),
    ("", None, None),
    ("# only a comment\n", None, None),
])
def test_router_yaml_errors(tmp_path, text, field, line):
    p = tmp_path / "router.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value)
    assert e.value.field == field and (line is None or e.value.line is not None)


def test_specs_in_repo_are_valid():
    for name in ["zeroeval-26", "zeroeval-3tier", "dcrouter-9", "dcrouter-3tier", "routellm", "alpacaeval2"]:
        spec = load_spec(name)
        assert spec.source.endswith(".parquet")


def test_cli_error_is_one_line_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,model,score,cost_usd\nhello,m,0.5,-3\n")
    assert main(["evaluate", "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "row 1" in err and "cost_usd" in err and "Traceback" not in err


def test_router_lm_config_from_the_environment(tmp_path, monkeypatch):
    """Without --lm and --lm-config, the file $ROUTE_SWITCH_LM_CONFIG names; an explicit option wins."""
    from route_switch.cli import LM_CONFIG_ENV, _lm_cfg, build_parser

    parse = lambda *a: build_parser().parse_args(["optimize", "--evalset", "x", *a])  # noqa: E731
    monkeypatch.delenv(LM_CONFIG_ENV, raising=False)
    assert _lm_cfg(parse()) == {"kind": "local"}
    (tmp_path / "fake.yaml").write_text("kind: fake\nmode: fixed\nfixed_label: '2'\n")
    (tmp_path / "local.yaml").write_text("kind: local\nn_threads: 1\n")
    monkeypatch.setenv(LM_CONFIG_ENV, str(tmp_path / "fake.yaml"))
    assert _lm_cfg(parse()) == {"kind": "fake", "mode": "fixed", "fixed_label": "2"}
    assert _lm_cfg(parse("--lm", "local")) == {"kind": "local"}
    assert _lm_cfg(parse("--lm-config", str(tmp_path / "local.yaml"))) == {"kind": "local", "n_threads": 1}
    monkeypatch.setenv(LM_CONFIG_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"missing\.yaml.*\$ROUTE_SWITCH_LM_CONFIG names a file that does not exist"):
        _lm_cfg(parse())


@pytest.mark.shared_data
def test_evaluate_json_contract_on_shared_data(shared_data, tmp_path):
    models = "gemma-2-9b-it,llama-3.1-8b-instruct,llama-3.1-nemotron-51b-instruct"
    out = subprocess.run([sys.executable, "-m", "route_switch.cli", "evaluate", "--data", str(shared_data / "dcrouter.parquet"),
                          "--models", models, "--test-size", "0.3", "--seed", "0", "--json", "--out", str(tmp_path)],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    for key in ("cost_ratio_at_95", "cost_ratio_at_100", "aiq", "oracle_aiq", "best_single"):
        assert key in res
    assert set(res["best_single"]) >= {"name", "quality", "cost"}
    assert res["best_single"]["name"] in models.split(",")
    assert 0 < res["aiq"] <= res["oracle_aiq"] <= 1
    # the learned router must do better than random routing over the same range
    assert res["aiq"] > res["routers"]["random"]["aiq"]
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    assert res["table"][0]["cost_rel"] == 1.0


LLM_KEYS = ("aiq", "cost_ratio_at_95", "cost_ratio_at_100")


def _llm_contract(res: dict, n: int):
    for name in ("llm", "route-switch+llm", "route-switch@llm"):
        r = res["routers"][name]
        assert all(k in r for k in LLM_KEYS) and "lambda" in r and len(r["points"]) > 10
        assert 0 < r["aiq"] <= 1
    assert res["llm_eval"]["n"] == n and "fusion" in res["routers"]["route-switch+llm"]
    # the three are measured on the same queries: they share the all-cheapest and all-top end points
    ends = {name: (res["routers"][name]["points"][-1]["cost"], res["routers"][name]["points"][0]["cost"])
            for name in ("llm", "route-switch@llm")}
    assert ends["llm"][0] == pytest.approx(ends["route-switch@llm"][0])


def test_evaluate_with_program_fake_llm(tmp_path, capsys, monkeypatch):
    """`evaluate --program --llm-test-n` reports llm, fused and estimator-on-the-same-queries (FAKE router LM)."""
    from conftest import synthetic_records
    from route_switch.core.evalset import from_records, save_evalset

    monkeypatch.setenv("ROUTE_SWITCH_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "syn.parquet"
    save_evalset(from_records(synthetic_records(300)), data)
    assert main(["evaluate", "--data", str(data), "--models", "small,medium,large", "--test-size", "0.3",
                 "--seed", "0", "--program", "programs/default.yaml", "--llm-test-n", "40", "--lm", "fake", "--json",
                 "--out", str(tmp_path / "out")]) == 0
    _llm_contract(json.loads(capsys.readouterr().out), 40)


@pytest.mark.local_llm
@pytest.mark.shared_data
def test_evaluate_with_program_exact_form_real_llm(shared_data, tmp_path):
    """The exact command used to check the LLM path on other data, with the embedded model."""
    models = "gemma-2-9b-it,llama-3.1-8b-instruct,llama-3.1-nemotron-51b-instruct"
    out = subprocess.run([sys.executable, "-m", "route_switch.cli", "evaluate", "--data", str(shared_data / "dcrouter.parquet"),
                          "--models", models, "--test-size", "0.3", "--seed", "0", "--program", "programs/default.yaml",
                          "--llm-test-n", "12", "--json", "--out", str(tmp_path)], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    _llm_contract(res, 12)
    assert res["llm_eval"]["distribution"] == "probabilities" and res["llm_eval"]["invalid_test"] == 0


def test_config_round_trip_keeps_relative_llm_paths(tmp_path):
    from route_switch.routing.config import dump_config, load_config

    d = tmp_path / "a" / "r"
    d.mkdir(parents=True)
    text = ("tiers:\n- {name: s, model: s}\n- {name: l, model: l}\nselection: {tau: 0.1}\n"
            "llm: {program: ../../programs/default.yaml, fusion: fusion.json, tau: 0.2, timeout_s: 1.5}\n")
    (d / "router.yaml").write_text(text)
    first = load_config(d)
    dump_config(first, d / "router.yaml")
    second = load_config(d)
    assert second.llm == first.llm and second.llm["program"] == str(d / "../../programs/default.yaml")
    assert "program: ../../programs/default.yaml" in (d / "router.yaml").read_text()
    (d / "router.yaml").write_text(text.replace("tau: 0.2", "tau: 3"))
    with pytest.raises(ConfigError, match="llm.tau"):
        load_config(d)


def test_package_names_have_one_meaning():
    import importlib

    import route_switch

    first = route_switch.core.evaluate
    importlib.import_module("route_switch.core.evaluate")
    assert first is route_switch.core.evaluate and callable(route_switch.core.evaluate.evaluate)
    assert callable(route_switch.fit) and route_switch.TierFusion.__name__ == "TierFusion"
    with pytest.raises(AttributeError):
        route_switch.no_such_thing


def test_router_yaml_unknown_key_suggests_the_closest(tmp_path):
    p = tmp_path / "router.yaml"
    p.write_text("tiers: [{model: a}]\nselction: {tau: 0.2}\n")
    with pytest.raises(ConfigError, match="did you mean 'selection'"):
        load_config(p)
    p.write_text("tiers: [{model: a}]\nzzzz: 1\n")
    with pytest.raises(ConfigError, match="known keys: tiers, estimator"):
        load_config(p)
    p.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(p)


@pytest.mark.parametrize("option, value", [("--workers", "0"), ("--workers", "-3"), ("--workers", "1.5"),
                                           ("--watch-s", "nan"), ("--watch-s", "-1"), ("--watch-s", "inf"),
                                           ("--port", "99999"), ("--port", "-1"), ("--port", "http")])
def test_serve_options_are_checked_before_anything_starts(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--router", str(tmp_path), option, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {option}" in err and "Traceback" not in err, err


@pytest.mark.parametrize("kw, field", [({"workers": 0}, "workers"), ({"watch_s": float("nan")}, "watch_s"),
                                       ({"watch_s": -1}, "watch_s"), ({"port": 99999}, "port")])
def test_serve_api_refuses_bad_options(tmp_path, kw, field):
    from route_switch.server import serve

    with pytest.raises(ConfigError) as e:
        serve(tmp_path, **kw)
    assert e.value.field == field
